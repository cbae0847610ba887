//! `permuted`: the sparse pattern as a band plus dense residue groups.
//!
//! sparse(k, w) = local(w) ∪ atrous(k). The atrous part links `i` and `j` exactly when
//! `i ≡ j (mod k)`: reorder the tokens by `(i mod k, i div k)` (the Sparse Transformer's
//! "strided transpose") and it becomes k dense diagonal blocks, one per residue class, of
//! ~n/k tokens each — full tiles, no mask except a thin diagonal band. The local part is a
//! band in the original order. The two key sets are made disjoint (a residue-group key is
//! skipped when `|i − j| ≤ w`, i.e. when its group distance is ≤ ⌊w/k⌋) and their online
//! softmax states are merged:
//!
//! 1. atrous pass, permuted order: query tiles of each group against the group's keys;
//!    the running `(m, l, acc)` of every query is kept (O(n · d)).
//! 2. local pass, original order: each query tile resumes from its rows' states (in place:
//!    the accumulators stay in the output rows), walks the band `[i0 − w, i1 + w)` (a per-row
//!    range mask only on the band's edges), normalises.
//!
//! Causal patterns keep `j ≤ i` in both passes. Handles dense (one group), local (band only),
//! atrous (groups only), sparse, and strided (local `L − 1` ∪ atrous `L`, causal), each also
//! with `sink(s)` columns (StreamingLLM's first tokens) and global rows `i < g` (Longformer's
//! `global(g)` is both), s, g ≤ [`MAX_SINKS`]: before its band, each band-pass tile walks the
//! "extra" keys — a row's sink keys, or every key for a global row — that neither the band nor
//! the row's residue class already covers (a per-row mask), packed once per task. The band may
//! also be fixed's same-block part (`⌊i / l⌋ = ⌊j / l⌋`), and the extra keys fixed's summary
//! columns `j mod l ≥ l − c`, gathered into one dense panel that every query reads; or BigBird's
//! window blocks (`|⌊i / b⌋ − ⌊j / b⌋| ≤ wb`, its global blocks being sink columns and global
//! rows; random blocks are not planned). Block bands run in 64-row tiles. A few sink keys
//! are spliced into lanes of the band's own panels that no row of a group of 4 sees (just
//! before its first band key or after its last), so that they cost no panel and no call of
//! their own (StreamingLLM's window + 4 sinks: 16 cells fewer per row).

use super::engine::{
    chunk, chunk_spliced, chunks, dispatch, gather_kt, gather_q, prefetch_row, range_word, span,
    Arith, Cells, Packed, Splice, TileState, Work, CHUNK, GROUP, LOG2_E, PANEL, PREFETCH_ROWS,
    TILE_ROWS,
};
use super::{padded_rows, panel_keys, AttentionKernel, KernelError, KernelKind};
use crate::inputs::Qkv;
use crate::pattern::structure::Atom;
use crate::pattern::Pattern;
use ndarray::Array2;
use rayon::prelude::*;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The permuted band + residue-group kernel.
pub(crate) struct Permuted;

/// Query rows per band-pass tile (a task holds 1 … 16 tiles): small, so that a tile's key
/// range `[i0 − w, i1 + w)` is not much wider than one row's band `2w + 1`.
const BAND_ROWS: usize = 16;

/// Keys per block of a global row's walk: Kᵀ of 256 KB at d = 64, which stays in L2 from its
/// packing to its reading (a multiple of CHUNK, so the walk's chunks are those of one pass).
const EXTRA_BLOCK: usize = 1024;

/// Most sink keys the plan takes (a wider `sink` is a block of global columns, better served
/// by the block kernel; it also bounds the cost of counting the cells exactly).
pub(crate) const MAX_SINKS: usize = 4096;

/// The band part: one interval of keys per query row, growing with the row.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Band {
    /// `|i − j| ≤ w`.
    Window(usize),
    /// `⌊i / l⌋ = ⌊j / l⌋`: fixed's same-block part.
    Block(usize),
    /// `|⌊i / b⌋ − ⌊j / b⌋| ≤ wb`: BigBird's window blocks, as `(b, wb)`.
    Blocks(usize, usize),
}

/// How a pattern splits into a band, residue groups and extra keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    n: usize,
    /// Stride of the atrous part.
    k: Option<usize>,
    /// The band, if any.
    band: Option<Band>,
    /// Sink keys `[0, s)` every query sees (`j ≤ i` too when causal), `1 ≤ s ≤ n`.
    sinks: Option<usize>,
    /// Global rows: queries `i < r` see every key (`j ≤ i` when causal), `1 ≤ r ≤ n`.
    rows: Option<usize>,
    /// Periodic columns `j mod l ≥ l − c` every query sees (fixed's summary columns), as
    /// `(l, c)`; the extra keys are then these columns in order (never with sinks, global rows
    /// or residue groups).
    periodic: Option<(usize, usize)>,
    /// Bits at multiples of k below 64: the residue class of a row inside a 64-key chunk is
    /// this shifted (0 without a residue part).
    comb: u64,
    causal: bool,
}

impl Plan {
    /// The split of `p`, if its structure has one: a union of at most one band (`|i − j| ≤ w`
    /// or the same block of l), residue classes `(i − j) mod k = 0` (dense is `k = 1`), sink
    /// columns `j < s`, global rows `i < g` and periodic columns `j mod l ≥ l − c`, optionally
    /// all `& causal`.
    pub fn of(p: &Pattern) -> Option<Self> {
        let causal = p.is_causal();
        let n = p.n();
        let mut k: Option<usize> = None;
        let mut band: Option<Band> = None;
        let mut sinks: Option<usize> = None;
        let mut rows: Option<usize> = None;
        let mut periodic: Option<(usize, usize)> = None;
        // A count of at most MAX_SINKS keys or rows.
        let bounded = |end: u64| {
            let end = usize::try_from(end).ok()?.min(n);
            (end <= MAX_SINKS).then_some(end)
        };
        for c in &p.dnf().conjs {
            let mut main: Option<&Atom> = None;
            for a in &c.atoms {
                match a {
                    Atom::Band {
                        lo: 0,
                        hi: i64::MAX,
                    } if causal => {}
                    a if main.is_none() => main = Some(a),
                    _ => return None,
                }
            }
            match main {
                // A conjunction of `causal` alone: every key j ≤ i.
                None => k = Some(1),
                Some(Atom::Band { lo, hi }) if *lo == i64::MIN && *hi == i64::MAX => k = Some(1),
                Some(Atom::Band { lo, hi })
                    if *hi >= 0 && (*lo == -*hi || (causal && *lo <= 0)) =>
                {
                    let width = usize::try_from(*hi).ok()?;
                    band = match band {
                        None => Some(Band::Window(width)),
                        Some(Band::Window(x)) => Some(Band::Window(x.max(width))),
                        Some(_) => return None,
                    };
                }
                Some(Atom::SameBlock { l }) => {
                    let l = usize::try_from(*l).ok()?;
                    match band {
                        None => band = Some(Band::Block(l)),
                        Some(b) if b == Band::Block(l) => {}
                        Some(_) => return None,
                    }
                }
                // BigBird without random blocks: its window blocks are the band, its global
                // blocks sink columns and global rows.
                Some(Atom::Blocks(t)) if t.random.iter().all(Vec::is_empty) => {
                    let wb = usize::try_from(t.wb.min(t.nb as u64)).ok()?;
                    let blocks = Band::Blocks(t.b, wb);
                    match band {
                        None => band = Some(blocks),
                        Some(b) if b == blocks => {}
                        Some(_) => return None,
                    }
                    let g = t.gb.min(t.nb as u64).saturating_mul(t.b as u64);
                    if g > 0 {
                        let g = bounded(g)?;
                        sinks = Some(sinks.map_or(g, |s| s.max(g)));
                        rows = Some(rows.map_or(g, |r| r.max(g)));
                    }
                }
                Some(Atom::Residue { k: kk }) => {
                    let kk = usize::try_from(*kk).ok()?;
                    // Two residue classes only combine when one divides the other.
                    k = match k {
                        None => Some(kk),
                        Some(x) if x % kk == 0 => Some(kk),
                        Some(x) if kk % x == 0 => Some(x),
                        Some(_) => return None,
                    };
                }
                Some(Atom::Cols { end }) => {
                    let end = bounded(*end)?;
                    sinks = Some(sinks.map_or(end, |s| s.max(end)));
                }
                Some(Atom::Rows { end }) => {
                    let end = bounded(*end)?;
                    rows = Some(rows.map_or(end, |r| r.max(end)));
                }
                Some(Atom::PeriodicCols { l, c }) => {
                    let lc = (usize::try_from(*l).ok()?, usize::try_from(*c).ok()?);
                    if periodic.is_some_and(|x| x != lc) {
                        return None;
                    }
                    periodic = Some(lc);
                }
                Some(_) => return None,
            }
        }
        // One residue group (k = 1) already holds every key a sink or a global row adds.
        let sinks = sinks.filter(|&s| s > 0 && k != Some(1));
        let rows = rows.filter(|&r| r > 0 && k != Some(1));
        // The group pass's band exclusion knows windows only; periodic extra keys come alone.
        if matches!(band, Some(Band::Block(_) | Band::Blocks(..))) && k.is_some()
            || periodic.is_some() && (k.is_some() || sinks.is_some() || rows.is_some())
        {
            return None;
        }
        let comb = match k {
            None => 0,
            Some(k) => (0..64).step_by(k.min(64)).fold(0u64, |c, x| c | 1 << x),
        };
        Some(Self {
            n,
            k,
            band,
            sinks,
            rows,
            periodic,
            comb,
            causal,
        })
    }

    /// Whether the band pass runs: there is a band or extra keys.
    fn band_pass(&self) -> bool {
        self.band.is_some() || self.has_extra()
    }

    /// Whether there are extra keys: sinks, global rows or periodic columns.
    fn has_extra(&self) -> bool {
        self.sinks.is_some() || self.rows.is_some() || self.periodic.is_some()
    }

    /// Query rows per band-pass tile: [`BAND_ROWS`] for a sliding window; a whole
    /// [`TILE_ROWS`] for blocks, whose rows share their keys (more rows reuse each packed
    /// key panel while it is in cache).
    fn tile_rows(&self) -> usize {
        match self.band {
            Some(Band::Block(_) | Band::Blocks(..)) => TILE_ROWS,
            _ => BAND_ROWS,
        }
    }

    /// Row `i`'s band keys `[lo, hi)`.
    fn row_band(&self, i: usize) -> Option<(usize, usize)> {
        let (lo, hi) = match self.band? {
            Band::Window(w) => (i.saturating_sub(w), i.saturating_add(w).saturating_add(1)),
            Band::Block(l) => {
                let lo = i / l * l;
                (lo, lo.saturating_add(l))
            }
            Band::Blocks(b, wb) => {
                let bi = i / b;
                (
                    bi.saturating_sub(wb) * b,
                    bi.saturating_add(wb).saturating_add(1).saturating_mul(b),
                )
            }
        };
        Some((lo, if self.causal { i + 1 } else { hi.min(self.n) }))
    }

    /// The extra key at packed position `x` (the extra keys are packed in key order).
    fn extra_key(&self, x: usize) -> usize {
        match self.periodic {
            Some((l, c)) => x / c * l + (l - c) + x % c,
            None => x,
        }
    }

    /// Extra keys below key `j` (the packed position of the first extra key ≥ j).
    fn extra_rank(&self, j: usize) -> usize {
        match self.periodic {
            Some((l, c)) => j / l * c + (j % l).saturating_sub(l - c),
            None => j,
        }
    }

    /// Extra keys (packed positions `[0, x)`) query rows `[i0, i1)` may need: their sink
    /// keys, every key (up to the diagonal when causal) when a global row is among them, or
    /// the periodic columns (up to the diagonal when causal).
    fn extra_keys(&self, i0: usize, i1: usize) -> usize {
        let all = if self.causal { i1 } else { self.n };
        if self.periodic.is_some() {
            return self.extra_rank(all);
        }
        match self.rows {
            Some(r) if i0 < r => all,
            _ => self.sinks.map_or(0, |s| s.min(all)),
        }
    }

    /// Row `i`'s extra keys in the chunk window at packed position `ja`, limited to
    /// `[lo, hi)`, that neither the band nor the residue groups compute: bit `x` for packed
    /// position `ja + x`.
    #[inline(always)]
    fn extra_word(&self, i: usize, ja: usize, lo: usize, hi: usize) -> u64 {
        let mut word = range_word(ja, lo, hi) & range_word(ja, 0, self.extra_keys(i, i + 1));
        if word == 0 {
            return 0;
        }
        if let Some((b0, b1)) = self.row_band(i) {
            word &= !range_word(ja, self.extra_rank(b0), self.extra_rank(b1));
        }
        if let Some(k) = self.k {
            // Keys j ≡ i (mod k): the group pass holds those outside the band (the band the
            // rest), so none is an extra key here (no residues with periodic columns: packed
            // positions are keys).
            let first = (i as i64 - ja as i64).rem_euclid(k as i64) as u32;
            word &= !self.comb.checked_shl(first).unwrap_or(0);
        }
        word
    }

    /// Where group `g` (4 rows) of band tile `[t0, t1)` splices its sink keys into its band's
    /// panels (see `engine::Splice`): the token index whose lane takes sink 0, or `None` when
    /// the group walks its sink keys in a panel of their own. The lanes are those before the
    /// group's first band key in its first panel, or after its last band key in its last panel,
    /// when there are enough of them inside the tile's band keys (packed, with their V rows):
    /// keys no row of the group sees. StreamingLLM's window + 4 sinks splices in 3 groups of 4.
    fn splice_at(&self, t0: usize, t1: usize, g: usize) -> Option<usize> {
        if !matches!(self.band, Some(Band::Window(_)))
            || self.periodic.is_some()
            || self.rows.is_some_and(|r| t0 < r)
        {
            return None;
        }
        let count = self.extra_keys(t0, t1);
        let last = (g + GROUP).min(t1) - 1;
        if count == 0 || (g..=last).all(|i| self.extra_word(i, 0, 0, count) == 0) {
            return None; // no row of the group needs a sink key beyond its band
        }
        let (j0, j1) = self.band_keys(t0, t1);
        let (b0, _) = self.row_band(g)?;
        let (_, b1) = self.row_band(last)?;
        let first = b0 - b0 % PANEL;
        let end = b1.div_ceil(PANEL) * PANEL;
        if b0 - first >= count && first >= j0 {
            Some(first)
        } else if end - b1 >= count && end <= j1 {
            Some(end - count)
        } else {
            None
        }
    }

    /// Keys `[j0, j1)` of the band pass for query rows `[i0, i1)`.
    fn band_keys(&self, i0: usize, i1: usize) -> (usize, usize) {
        match (self.row_band(i0), self.row_band(i1 - 1)) {
            (Some((j0, _)), Some((_, j1))) => (j0, j1),
            _ => (0, 0),
        }
    }

    /// Sizes of the residue groups `0 .. min(k, n)` (group `r` holds tokens `r, r + k, …`).
    fn group_sizes(&self) -> Vec<usize> {
        let Some(k) = self.k else {
            return Vec::new();
        };
        (0..k.min(self.n))
            .map(|r| (self.n - r).div_ceil(k))
            .collect()
    }

    /// Group distances `|m − m'| ≤ e` are covered by the band, so the group pass skips them.
    fn excluded(&self) -> Option<usize> {
        match self.band? {
            Band::Window(w) => Some(w / self.k?),
            Band::Block(_) | Band::Blocks(..) => None,
        }
    }

    /// Keys `[0, b)` (group-relative) the group pass visits for group rows `[m0, m1)`.
    fn group_keys(&self, size: usize, m1: usize) -> usize {
        if self.causal {
            m1
        } else {
            size
        }
    }

    /// Score cells both passes compute, padding included (what `forward_counted` counts).
    fn cells(&self) -> u64 {
        let mut total = 0u64;
        // Group pass: every tile of 64 group rows (padded to groups of 4) against its keys
        // (padded to whole panels), no narrowing; causal, each group of 4 rows narrowed to
        // the panels of its keys `[0, last + 1)` (`[0, last − e)` with a band).
        for size in self.group_sizes() {
            if self.causal {
                for g in (0..size).step_by(GROUP) {
                    let last = (g + GROUP).min(size) - 1;
                    let end = match self.excluded() {
                        None => last + 1,
                        Some(e) => last.saturating_sub(e),
                    };
                    total += GROUP as u64 * panel_keys(0, end);
                }
                continue;
            }
            for m0 in (0..size).step_by(TILE_ROWS) {
                let m1 = (m0 + TILE_ROWS).min(size);
                total += padded_rows(m1 - m0) * panel_keys(0, self.group_keys(size, m1));
            }
        }
        // Band pass: each group of 4 rows of a band tile walks the panels of its rows' union
        // of keys, one interval (`engine::span`; how it splits them into calls does not
        // change the count). Tiles start at multiples of
        // the tile rows and a task's keys at a multiple of PANEL, so panels are aligned at
        // multiples of 16 of the token index.
        if self.band.is_some() {
            for a in (0..self.n).step_by(GROUP) {
                let last = (a + GROUP).min(self.n) - 1;
                let (j0, j1) = self.band_keys(a, last + 1);
                total += GROUP as u64 * panel_keys(j0, j1);
            }
        }
        // Extra keys, walked per tile as the kernel does.
        if self.has_extra() {
            let tile = self.tile_rows();
            for t0 in (0..self.n).step_by(tile) {
                let t1 = (t0 + tile).min(self.n);
                let x = self.extra_keys(t0, t1);
                for g in (t0..t1).step_by(GROUP) {
                    if self.splice_at(t0, t1, g).is_none() {
                        total += GROUP as u64 * self.extra_group_keys(g..(g + GROUP).min(t1), x);
                    }
                }
            }
        }
        total
    }

    /// Keys the narrowed micro-kernel calls of query rows `rows` (one group) compute over the
    /// extra keys `[0, x)`. Without residues a row's extra keys are `[0, E) ∖ band`, so only
    /// the chunks holding one of those bounds need their words; in the runs of chunks between
    /// them every row sees all of a chunk or none of it.
    fn extra_group_keys(&self, rows: std::ops::Range<usize>, x: usize) -> u64 {
        let exact = |ja: usize| {
            let hi = (ja + CHUNK).min(x);
            narrowed_keys(
                rows.clone()
                    .fold(0, |a, i| a | self.extra_word(i, ja, ja, hi)),
            )
        };
        if self.k.is_some() {
            return chunks(0, x).map(|(ja, _, _)| exact(ja)).sum();
        }
        if x == 0 {
            return 0;
        }
        // The chunks holding a bound: at most 3 per row of the group, and the last chunk.
        let mut special = [0usize; 3 * GROUP + 1];
        let mut count = 0;
        for i in rows.clone() {
            let mut bounds = [self.extra_keys(i, i + 1), 0, 0];
            if let Some((b0, b1)) = self.row_band(i) {
                bounds[1] = self.extra_rank(b0);
                bounds[2] = self.extra_rank(b1);
            }
            // A bound's chunk is walked exactly (also one starting at the bound: the run
            // before it then ends there).
            for b in bounds.into_iter().filter(|&b| b < x) {
                special[count] = b / CHUNK;
                count += 1;
            }
        }
        special[count] = (x - 1) / CHUNK;
        let special = &mut special[..=count];
        special.sort_unstable();
        let mut total = 0;
        let mut next = 0;
        for &c in special.iter() {
            if c < next {
                continue; // a repeated chunk, already walked
            }
            // Chunks [next, c) are uniform: each row's word is all or nothing.
            if c > next
                && rows
                    .clone()
                    .any(|i| self.extra_word(i, next * CHUNK, next * CHUNK, next * CHUNK + 1) != 0)
            {
                total += ((c - next) * CHUNK) as u64;
            }
            total += exact(c * CHUNK);
            next = c + 1;
        }
        total
    }
}

/// Keys of the panels a narrowed micro-kernel call computes for chunk bits `any` (see
/// `engine::chunk`): from the panel of the first set bit to the last set bit.
fn narrowed_keys(any: u64) -> u64 {
    if any == 0 {
        return 0;
    }
    let first = any.trailing_zeros() as usize / PANEL * PANEL;
    let end = CHUNK - any.leading_zeros() as usize;
    ((end - first).div_ceil(PANEL) * PANEL) as u64
}

/// The inputs as row-major `n × d` slices, and `f = scale · log2 e` for Q.
struct Src<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    d: usize,
    f: f32,
}

/// Per-worker buffers, reused from task to task: the task's packed Q, Kᵀ (and V of a large
/// group), a tile state and the mask words of a tile.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    st: TileState,
    words: Vec<u64>,
    /// Kᵀ of the extra keys (sinks or periodic columns).
    kt_extra: Vec<f32>,
    /// Kᵀ of one block of a global row's keys.
    kt_block: Vec<f32>,
}

impl Scratch {
    /// The packed Q and Kᵀ as a [`Packed`] of `n` keys with values `v`, one row every
    /// `v_stride` floats.
    fn take<'a>(&mut self, n: usize, d: usize, v: Cow<'a, [f32]>, v_stride: usize) -> Packed<'a> {
        Packed {
            n,
            d,
            qs: Cow::Owned(std::mem::take(&mut self.q)),
            q_scale: 1.0,
            q_stride: d,
            kt: std::mem::take(&mut self.kt),
            v,
            v_stride,
        }
    }

    /// Makes `pk` read its queries in place: rows of `q`, `stride` floats apart, their scores
    /// scaled by `f`. The packed Q buffer stays here for a later gather.
    fn q_in_place<'a>(&mut self, pk: &mut Packed<'a>, q: &'a [f32], stride: usize, f: f32) {
        if let Cow::Owned(buf) = std::mem::replace(&mut pk.qs, Cow::Borrowed(q)) {
            self.q = buf;
        }
        (pk.q_scale, pk.q_stride) = (f, stride);
    }

    /// Gives the buffers of `pk` back for the next task.
    fn give(&mut self, pk: Packed<'_>) {
        if let Cow::Owned(q) = pk.qs {
            self.q = q;
        }
        self.kt = pk.kt;
        if let Cow::Owned(v) = pk.v {
            self.v = v;
        }
    }
}

/// One [`Scratch`] per worker thread for one `forward`: a task borrows its thread's, so the
/// buffers are allocated (and their pages touched) once per thread, not once per task.
struct Scratches(Vec<Mutex<Scratch>>);

impl Scratches {
    fn new() -> Self {
        Self(
            (0..rayon::current_num_threads())
                .map(|_| Mutex::default())
                .collect(),
        )
    }

    /// The calling worker's scratch. Tasks never nest, so a worker's lock is free whenever
    /// it starts a task; the lock only guards against a caller outside the pool.
    fn mine(&self) -> MutexGuard<'_, Scratch> {
        let i = rayon::current_thread_index().unwrap_or(0) % self.0.len();
        self.0[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the group pass leaves each token's result: its output row (`acc`, or `acc / l` when
/// there is no band pass) and its running max and sum. A token is `r + k · m` for one residue
/// `r` and one group row `m`; group tasks own disjoint `(r, [m0, m1))`, so no two tasks ever
/// touch the same row, which is what makes the shared raw pointers sound.
struct TokenRows<'a> {
    out: *mut f32,
    m: *mut f32,
    l: *mut f32,
    n: usize,
    d: usize,
    /// Keep the state for the band pass (else write the normalised output).
    keep: bool,
    _rows: PhantomData<&'a mut [f32]>,
}

// SAFETY: see the type's docs: writes go to disjoint rows, one task per token.
unsafe impl Sync for TokenRows<'_> {}

impl<'a> TokenRows<'a> {
    fn new(
        out: &'a mut [MaybeUninit<f32>],
        m: &'a mut [f32],
        l: &'a mut [f32],
        d: usize,
        keep: bool,
    ) -> Self {
        let n = out.len() / d;
        assert!(
            m.len() >= n && l.len() >= n,
            "running state for every token"
        );
        Self {
            out: out.as_mut_ptr().cast::<f32>(),
            m: m.as_mut_ptr(),
            l: l.as_mut_ptr(),
            n,
            d,
            keep,
            _rows: PhantomData,
        }
    }

    /// Stores row `r` of `st` as token `i`'s result.
    ///
    /// # Safety
    /// No other thread may read or write token `i` during the call.
    #[inline(always)]
    unsafe fn put(&self, i: usize, st: &TileState, r: usize) {
        assert!(i < self.n);
        let d = self.d;
        let acc = &st.acc[r * d..(r + 1) * d];
        // SAFETY: `i < n` rows of `d` floats; the caller owns token `i`. Written through the
        // raw pointer: the row may not have been initialised yet.
        unsafe {
            let dst = self.out.add(i * d);
            if self.keep {
                std::ptr::copy_nonoverlapping(acc.as_ptr(), dst, d);
                // `m`, `l` have at least n entries.
                *self.m.add(i) = st.m[r];
                *self.l.add(i) = st.l[r];
            } else {
                for (c, x) in st.row_result(r, d).enumerate() {
                    dst.add(c).write(x);
                }
            }
        }
    }
}

/// A group-pass task: rows `[m0, m1)` of residue group `r` (size `size`) against the group's
/// keys. It gathers the group's Kᵀ and V (rows strided by k in the input) into the worker's
/// scratch, so the permuted copies are small and used while still in cache; its Q rows are
/// read in place.
struct GroupTask<'s, 'a> {
    src: &'s Src<'a>,
    plan: Plan,
    r: usize,
    size: usize,
    m0: usize,
    m1: usize,
    scratch: &'s mut Scratch,
    dst: &'s TokenRows<'a>,
}

impl Work for GroupTask<'_, '_> {
    /// Score cells computed.
    type Out = u64;

    #[inline(always)]
    fn run<A: Arith>(self) -> u64 {
        let Self {
            src,
            plan,
            r,
            size,
            m0,
            m1,
            scratch,
            dst,
        } = self;
        let (d, k) = (src.d, plan.k.unwrap_or(1));
        let keys = plan.group_keys(size, m1);
        gather_kt::<A>(&mut scratch.kt, src.k, d, (0..keys).map(|j| r + k * j));
        // V of the group, rows r, r + k, r + 2k, …, copied: read in place, rows k · d floats
        // apart fall into the same few L1 cache sets (and each needs its own TLB entry), and
        // every group of 4 query rows reads them all again.
        let mut v = std::mem::take(&mut scratch.v);
        v.clear();
        for j in 0..keys {
            prefetch_row(src.v, r + k * (j + PREFETCH_ROWS), d);
            let i = r + k * j;
            v.extend_from_slice(&src.v[i * d..(i + 1) * d]);
        }
        let mut pk = scratch.take(keys, d, Cow::Owned(v), d);
        // Q is read in place, rows k · d floats apart (the scale goes to the scores).
        scratch.q_in_place(&mut pk, &src.q[(r + k * m0) * d..], k * d, src.f);
        let st = &mut scratch.st;
        st.cells = 0;
        let e = plan.excluded();
        let causal = plan.causal;
        for t0 in (m0..m1).step_by(TILE_ROWS) {
            let t1 = (t0 + TILE_ROWS).min(m1);
            let rows = t1 - t0;
            // The tile's queries are rows `q_row ..` of `pk.qs`: in place, or gathered (with
            // zero padding rows) when its last group of 4 rows would reach past the residue
            // group's last row, i.e. past the input's end.
            let gather = t0 + rows.div_ceil(GROUP) * GROUP > size;
            let q_row = if gather {
                gather_q(&mut scratch.q, src.q, d, src.f, (t0..t1).map(|m| r + k * m));
                pk.qs = Cow::Owned(std::mem::take(&mut scratch.q));
                (pk.q_scale, pk.q_stride) = (1.0, d);
                0
            } else {
                t0 - m0
            };
            st.reset(rows, d);
            if causal {
                // Causal rows see a triangle, one interval of group-relative keys each
                // (`[0, m + 1)`, or `[0, m − e)` beside a band): each group of 4 rows walks
                // only its keys' panels, in as few calls as `engine::span` can.
                let mut keys = [(0, 0); TILE_ROWS];
                for (x, k) in keys[..rows].iter_mut().enumerate() {
                    let m = t0 + x;
                    *k = (0, e.map_or(m + 1, |e| m.saturating_sub(e)));
                }
                let none = [0u64; TILE_ROWS];
                span::<A>(&pk, st, q_row, &keys[..rows], &none, &[], None);
            } else {
                scratch.words.resize(rows, 0);
                let words = &mut scratch.words[..rows];
                // Group-relative keys; this tile's queries are rows `q_row ..` of `pk.qs`.
                for (ja, lo, hi) in chunks(0, size) {
                    let range = range_word(ja, lo, hi);
                    let mut all = true;
                    for (x, w) in words.iter_mut().enumerate() {
                        let m = t0 + x;
                        // Allowed group-relative keys: all, or [0, m − e) ∪ [m + e + 1, size)
                        // beside a band.
                        let word = match e {
                            None => range,
                            Some(e) => {
                                range_word(ja, 0, m.saturating_sub(e))
                                    | range_word(ja, m + e + 1, size)
                            }
                        } & range;
                        all &= word == range;
                        *w = word;
                    }
                    let mask = if all { None } else { Some(&*words) };
                    chunk::<A>(&pk, st, q_row, ja, lo, hi, mask, Cells::Chunk);
                }
            }
            for x in 0..rows {
                // SAFETY: token r + k · (t0 + x) belongs to this task only (see `TokenRows`).
                unsafe { dst.put(r + k * (t0 + x), st, x) };
            }
        }
        let cells = st.cells;
        scratch.give(pk);
        cells
    }
}

/// A band-pass task: token rows `[i0, i0 + out.len() / d)` in tiles of `Plan::tile_rows`, each
/// resuming from its rows' group-pass state (if any), walking its extra keys not covered
/// otherwise (if any), then its band. Q, Kᵀ of the task's band keys (from a multiple of
/// [`PANEL`], so that panels are aligned alike in every task) and Kᵀ of its extra keys are
/// packed into the worker's scratch; V is read in place (gathered for periodic columns).
struct BandTask<'s, 'a> {
    src: &'s Src<'a>,
    plan: Plan,
    i0: usize,
    /// The task's output rows: written once, at the end of each tile (or, resumed, updated
    /// in place by the tile's micro-kernel calls, then normalised).
    out: &'s mut [MaybeUninit<f32>],
    /// Whether the group pass ran: then `out` holds each row's `acc` (initialised) and `m`,
    /// `l` its running max and sum, which the tiles resume from; else a tile starts fresh and
    /// `out` may be uninitialised.
    resume: bool,
    m: &'s [f32],
    l: &'s [f32],
    scratch: &'s mut Scratch,
}

impl Work for BandTask<'_, '_> {
    /// Score cells computed.
    type Out = u64;

    #[inline(always)]
    fn run<A: Arith>(self) -> u64 {
        let Self {
            src,
            plan,
            i0,
            out,
            resume,
            m,
            l,
            scratch,
        } = self;
        let d = src.d;
        let i1 = i0 + out.len() / d;
        let (first, end) = plan.band_keys(i0, i1);
        let base = first - first % PANEL;
        gather_kt::<A>(&mut scratch.kt, src.k, d, base..end);
        let mut pk = scratch.take(end - base, d, Cow::Borrowed(&src.v[base * d..end * d]), d);
        // Q is read in place (its rows are contiguous here; the scale goes to the scores),
        // unless the task's last group of 4 rows would read past the input's end.
        if (i1 + GROUP) * d <= src.q.len() {
            scratch.q_in_place(&mut pk, &src.q[i0 * d..], d, src.f);
        } else {
            gather_q(pk.qs.to_mut(), src.q, d, src.f, i0..i1);
        }
        // The extra keys of the task's tiles without global rows, packed on their own: sinks
        // are keys 0 … x − 1, whose V rows are read in place; periodic columns' V rows are
        // gathered. (A global row's tile walks every key, packed block by block as it goes.)
        let extra = match plan.rows {
            Some(r) if r >= i1 => 0,
            Some(r) if r > i0 => plan.extra_keys(r, i1),
            _ => plan.extra_keys(i0, i1),
        };
        let keys = (0..extra).map(|x| plan.extra_key(x));
        gather_kt::<A>(&mut scratch.kt_extra, src.k, d, keys.clone());
        let v = if plan.periodic.is_some() {
            let mut v = std::mem::take(&mut scratch.v);
            v.clear();
            for j in keys {
                v.extend_from_slice(&src.v[j * d..(j + 1) * d]);
            }
            Cow::Owned(v)
        } else {
            Cow::Borrowed(&src.v[..extra * d])
        };
        let mut sk = Packed {
            n: extra,
            d,
            qs: Cow::Borrowed(&[]),
            // The band's Q, lent for the walk over these keys, with its scale.
            q_scale: pk.q_scale,
            q_stride: d,
            kt: std::mem::take(&mut scratch.kt_extra),
            v,
            v_stride: d,
        };
        let st = &mut scratch.st;
        st.cells = 0;
        let tile = plan.tile_rows();
        for t0 in (i0..i1).step_by(tile) {
            let t1 = (t0 + tile).min(i1);
            let rows = t1 - t0;
            let o = &mut out[(t0 - i0) * d..(t1 - i0) * d];
            // A resumed tile of whole groups of 4 rows works in place on its output rows,
            // which hold the group pass's accumulators: nothing is copied in or out. (A last
            // tile of other rows goes through `st`.)
            // SAFETY (both casts): the group pass wrote every token's row (see `resume`).
            let mut in_place = (resume && rows % GROUP == 0)
                .then(|| unsafe { &mut *(std::ptr::from_mut(&mut *o) as *mut [f32]) });
            if in_place.is_some() {
                st.resume_in_place(&m[t0 - i0..t1 - i0], &l[t0 - i0..t1 - i0]);
            } else if resume {
                let acc = unsafe { &*(std::ptr::from_ref(&*o) as *const [f32]) };
                st.resume(d, &m[t0 - i0..t1 - i0], &l[t0 - i0..t1 - i0], acc);
            } else {
                st.reset(rows, d);
            }
            let tile_extra = plan.extra_keys(t0, t1);
            scratch.words.resize(rows, 0);
            let words = &mut scratch.words[..rows];
            // Sink keys spliced into the band's panels, per group of 4 rows (packed position of
            // sink 0's lane).
            let mut splices = [None; TILE_ROWS / GROUP];
            let groups = rows.div_ceil(GROUP);
            for (x, sp) in splices[..groups].iter_mut().enumerate() {
                *sp = plan.splice_at(t0, t1, t0 + x * GROUP).map(|at| Splice {
                    at: at - base,
                    count: tile_extra,
                    kt: &sk.kt[..d * PANEL],
                    v: &sk.v[..tile_extra * d],
                });
            }
            let splices = &splices[..groups];
            // Extra keys first (packed positions); the tile's queries are rows `t0 − i0 ..`
            // of the packed Q, lent to the extra keys' panel for the walk.
            if tile_extra > 0 {
                std::mem::swap(&mut pk.qs, &mut sk.qs);
                // Keys `[b0, b1)` at a time: all of them when packed up front; for a global
                // row's tile, blocks of EXTRA_BLOCK keys (non-periodic: packed position = key),
                // each packed just before it is walked, so that its Kᵀ is read from L2, not
                // from the 2 MB of a whole packed K (n = 8192) in L3.
                let whole = tile_extra <= sk.n;
                let step = if whole { tile_extra } else { EXTRA_BLOCK };
                for b0 in (0..tile_extra).step_by(step) {
                    let b1 = (b0 + step).min(tile_extra);
                    let block = if whole {
                        None
                    } else {
                        gather_kt::<A>(&mut scratch.kt_block, src.k, d, b0..b1);
                        Some(Packed {
                            n: b1 - b0,
                            d,
                            qs: Cow::Borrowed(&sk.qs),
                            q_scale: sk.q_scale,
                            q_stride: d,
                            kt: std::mem::take(&mut scratch.kt_block),
                            v: Cow::Borrowed(&src.v[b0 * d..b1 * d]),
                            v_stride: d,
                        })
                    };
                    let keys = block.as_ref().unwrap_or(&sk);
                    for (ja, lo, hi) in chunks(0, b1 - b0) {
                        let range = range_word(ja, lo, hi);
                        let mut all = true;
                        for (x, word) in words.iter_mut().enumerate() {
                            *word = match splices[x / GROUP] {
                                Some(_) => 0, // walked with the band
                                None => plan.extra_word(t0 + x, b0 + ja, b0 + lo, b0 + hi),
                            };
                            all &= *word == range;
                        }
                        let mask = if all { None } else { Some(&*words) };
                        let acc = in_place.as_deref_mut();
                        let (q_row, cells) = (t0 - i0, Cells::Narrow);
                        chunk_spliced::<A>(keys, st, q_row, ja, lo, hi, mask, cells, &[], acc);
                    }
                    if let Some(block) = block {
                        scratch.kt_block = block.kt;
                    }
                }
                std::mem::swap(&mut pk.qs, &mut sk.qs);
            }
            // The band, keys relative to `base`: each row's interval and spliced sink keys,
            // which each group of 4 rows walks in as few calls as `engine::span` can.
            if plan.band.is_some() {
                let mut keys = [(0, 0); TILE_ROWS];
                let mut spliced = [0u64; TILE_ROWS];
                for x in 0..rows {
                    let (b0, b1) = plan.row_band(t0 + x).unwrap_or((base, base));
                    keys[x] = (b0 - base, b1 - base);
                    if let Some(sp) = splices[x / GROUP] {
                        spliced[x] = plan.extra_word(t0 + x, 0, 0, sp.count);
                    }
                }
                let acc = in_place.as_deref_mut();
                span::<A>(&pk, st, t0 - i0, &keys, &spliced, splices, acc);
            }
            match in_place {
                Some(acc) => st.finish_in_place(acc, d),
                None => st.finish_uninit(o, d),
            }
        }
        let cells = st.cells;
        scratch.kt_extra = sk.kt;
        if let Cow::Owned(v) = sk.v {
            scratch.v = v;
        }
        scratch.give(pk);
        cells
    }
}

impl AttentionKernel for Permuted {
    fn kind(&self) -> KernelKind {
        KernelKind::Permuted
    }

    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        // No contract figure of its own: what it computes, counted exactly.
        self.computed_cells(p)
    }

    fn computed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(plan(p)?.cells())
    }

    fn forward_counted(
        &self,
        p: &Pattern,
        qkv: &Qkv,
        scale: f32,
    ) -> Result<(Array2<f32>, u64), KernelError> {
        let plan = plan(p)?;
        let (n, d) = qkv.q.dim();
        let (q, k, v) = (
            qkv.q.as_standard_layout(),
            qkv.k.as_standard_layout(),
            qkv.v.as_standard_layout(),
        );
        let src = Src {
            q: q.as_slice().expect("standard layout"),
            k: k.as_slice().expect("standard layout"),
            v: v.as_slice().expect("standard layout"),
            d,
            f: scale * LOG2_E,
        };
        // Enough tasks that every worker stays busy; few enough that packing stays small.
        let tasks = 8 * rayon::current_num_threads();
        let band = plan.band_pass();
        let cells = AtomicU64::new(0);
        let scratches = Scratches::new();
        // Every row of the output is written by the passes (each in its own worker, which also
        // touches its pages first), not zero-filled up front on one thread.
        let grouped = plan.k.is_some();
        let mut out: Box<[MaybeUninit<f32>]> = Box::new_uninit_slice(n * d);
        if !grouped && !band {
            out.fill(MaybeUninit::new(0.0)); // no key allowed anywhere
        }
        let mut m = vec![f32::NEG_INFINITY; n];
        let mut l = vec![0f32; n];
        // Group pass: leaves every token's (acc, m, l) in `out`, `m`, `l` (or its final row
        // when there is no band).
        if plan.k.is_some() {
            let groups = plan.group_sizes();
            let per_group = tasks.div_ceil(groups.len().max(1));
            let mut jobs = Vec::new();
            for (r, &size) in groups.iter().enumerate() {
                let rows = size.div_ceil(per_group).div_ceil(TILE_ROWS) * TILE_ROWS;
                for m0 in (0..size).step_by(rows) {
                    jobs.push((r, size, m0, (m0 + rows).min(size)));
                }
            }
            let dst = TokenRows::new(&mut out, &mut m, &mut l, d, band);
            jobs.into_par_iter().for_each(|(r, size, m0, m1)| {
                let scratch = &mut *scratches.mine();
                let c = dispatch(GroupTask {
                    src: &src,
                    plan,
                    r,
                    size,
                    m0,
                    m1,
                    scratch,
                    dst: &dst,
                });
                cells.fetch_add(c, Ordering::Relaxed);
            });
        }
        // Band pass in token order, resuming from the group pass's states.
        if band {
            let tile = plan.tile_rows();
            let rows = tile * (n / tile / tasks).clamp(1, 64 / tile * 16);
            out.par_chunks_mut(rows * d)
                .zip(m.par_chunks(rows))
                .zip(l.par_chunks(rows))
                .enumerate()
                .for_each(|(t, ((o, m), l))| {
                    let scratch = &mut *scratches.mine();
                    let c = dispatch(BandTask {
                        src: &src,
                        plan,
                        i0: t * rows,
                        out: o,
                        resume: grouped,
                        m,
                        l,
                        scratch,
                    });
                    cells.fetch_add(c, Ordering::Relaxed);
                });
        }
        // SAFETY: every float was written: by the group pass (every token), the band pass
        // (every row) or the zero fill when neither runs.
        let out = unsafe { out.assume_init() }.into_vec();
        let out = Array2::from_shape_vec((n, d), out).expect("n × d output");
        Ok((out, cells.into_inner()))
    }
}

/// The plan of `p`, or [`KernelError::Unsupported`].
fn plan(p: &Pattern) -> Result<Plan, KernelError> {
    Plan::of(p).ok_or_else(|| KernelError::Unsupported {
        kernel: KernelKind::Permuted.name(),
        pattern: p.label(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{PatternKind, PatternParams};

    fn plan_of(text: &str, n: usize) -> Plan {
        let p = PatternParams::new(PatternKind::Custom, n)
            .expr(text)
            .build()
            .unwrap();
        Plan::of(&p).unwrap()
    }

    #[test]
    fn sink_keys_splice_into_free_lanes_of_the_band() {
        let p = plan_of("(local(w=64) | sink(s=4)) & causal", 1024);
        // Tile [512, 528). Rows 512 … 515 see keys 448 … 515: 12 free lanes after them, up to
        // 528; the three later groups start 4, 8, 12 lanes into the panel at 448.
        assert_eq!(p.splice_at(512, 528, 512), Some(524));
        for g in [516, 520, 524] {
            assert_eq!(p.splice_at(512, 528, g), Some(448), "group {g}");
        }
        // The first rows hold the sinks in their band: nothing to splice.
        assert_eq!(p.splice_at(0, 16, 0), None);
        // Row 67 needs sinks 0 … 2 beyond its band.
        assert_eq!(p.splice_at(64, 80, 64), Some(76));
        // The last tile of a sequence ending mid-panel has no lanes after its band.
        assert_eq!(p.splice_at(1008, 1024, 1008), Some(1020));
        let short = plan_of("(local(w=64) | sink(s=4)) & causal", 1018);
        assert_eq!(short.splice_at(1008, 1018, 1008), None);
        // 13 sink keys fit no group's free lanes (12 at most).
        let p13 = plan_of("(local(w=64) | sink(s=13)) & causal", 1024);
        assert!((512..528)
            .step_by(GROUP)
            .all(|g| p13.splice_at(512, 528, g).is_none()));
        // Global rows see every key: their tiles walk the extra keys apart.
        let lf = plan_of("longformer(w=5, g=3)", 1024);
        assert_eq!(lf.splice_at(0, 16, 0), None);
        assert!(lf.splice_at(512, 528, 512).is_some());
        // From row 16 on every group splices but the 12 of rows 16 … 63, whose band holds
        // the sinks (row 67 needs sinks 0 … 2 beyond its band).
        let spliced = (16..1024)
            .step_by(BAND_ROWS)
            .flat_map(|t0| (t0..t0 + BAND_ROWS).step_by(GROUP).map(move |g| (t0, g)))
            .filter(|&(t0, g)| p.splice_at(t0, t0 + BAND_ROWS, g).is_some())
            .count();
        assert_eq!(spliced, 240, "groups of 252 from row 16 on");
    }
}
