//! The shared tile engine: packing, the online-softmax micro-kernel, a vectorised `exp2`, and
//! runtime selection of AVX-512 / AVX2 code paths.
//!
//! Layout. Q is pre-multiplied by `scale · log2(e)` (so softmax can use `exp2`) and padded to a
//! multiple of [`GROUP`] rows. K is packed transposed in panels of [`PANEL`] keys: panel `p`
//! holds `Kᵀ[:, 16p .. 16p+16]` as `d` rows of 16 floats, zero-padded past `n`. V stays
//! row-major: row `j` at `j · v_stride` (the input's rows, or every k-th of them).
//!
//! Micro-kernel. For [`GROUP`] = 4 query rows and a chunk of up to [`CHUNK`] = 64 keys (4
//! panels) starting at a panel boundary `ja`, it computes the 4 × 64 score tile
//! `S[r][x] = Σ_c q[r][c] · Kᵀ[c][ja + x]` as 16 accumulators of 16 lanes (one 16-lane load of
//! `Kᵀ` per `c` and panel, broadcast `q`), masks cells with −∞, updates the running max `m`
//! and sum `l` of each row (FlashAttention's online softmax), then accumulates
//! `acc[r][:] = α_r · acc[r][:] + Σ_j P[r][j] · V[j][:]` in 64-wide column strips held in
//! registers. Memory per query tile is O(tile · d): no `n × n` matrix ever exists. A band
//! walked by [`span`] may also take [`WIDE`] = 5 panels (80 keys, 20 accumulators) in one call.

// Micro-kernels index fixed-size lanes on purpose: it is what LLVM vectorises best.
#![allow(clippy::needless_range_loop)]

pub(crate) use super::layout::{
    exp2, GroupArgs, Packed, Splice, CHUNK, GROUP, LOG2_E, PANEL, TILE_ROWS, WIDE,
};

/// Fused or plain multiply-add, chosen per instruction set.
pub(crate) trait Arith: Copy {
    /// Whether the explicit AVX-512 micro-kernels (`avx512.rs`) may be used.
    // Off x86_64 (the web build) only the portable `Plain` path exists.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const AVX512: bool = false;
    /// `a · b + c`.
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// The AVX-512 path: explicit intrinsics micro-kernels, fused multiply-add elsewhere.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Avx512;

impl Arith for Avx512 {
    const AVX512: bool = true;
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// Fused multiply-add (only used inside functions compiled with the `fma` feature).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Fused;

impl Arith for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// Separate multiply and add (portable; `mul_add` would call a slow library routine).
#[derive(Clone, Copy)]
pub(crate) struct Plain;

impl Arith for Plain {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// A piece of work that is compiled once per instruction set.
pub(crate) trait Work {
    /// What the work returns.
    type Out;
    /// Runs with multiply-add flavour `A`; implementations must be `#[inline(always)]` so the
    /// body is compiled with the caller's target features.
    fn run<A: Arith>(self) -> Self::Out;
}

/// Runs `w` with the best instruction set this CPU has (AVX-512, AVX2+FMA, or portable).
pub(crate) fn dispatch<W: Work>(w: W) -> W::Out {
    #[cfg(test)]
    match FORCE_PATH.with(std::cell::Cell::get) {
        1 => return w.run::<Plain>(),
        #[cfg(target_arch = "x86_64")]
        2 if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma") =>
        {
            // SAFETY: the features were detected at run time.
            return unsafe { run_avx2(w) };
        }
        _ => {}
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected at run time.
            return unsafe { run_avx512(w) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected at run time.
            return unsafe { run_avx2(w) };
        }
    }
    w.run::<Plain>()
}

#[cfg(test)]
thread_local! {
    /// Tests only, per thread: 0 = best path, 1 = portable, 2 = AVX2 + FMA without the
    /// AVX-512 micro-kernels. A test sets it on the threads of its own rayon pool, so tests
    /// running meanwhile on other threads keep the best path.
    pub(crate) static FORCE_PATH: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Name of the code path [`dispatch`] picks on this CPU.
pub fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2";
        }
    }
    "portable"
}

/// # Safety
/// The CPU must support AVX-512F, AVX-512VL, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn run_avx512<W: Work>(w: W) -> W::Out {
    w.run::<Avx512>()
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<W: Work>(w: W) -> W::Out {
    w.run::<Fused>()
}

/// How many rows ahead the gathers prefetch: their rows are often far apart (a residue
/// group's are k · d floats apart), which the hardware prefetchers do not follow.
pub(crate) const PREFETCH_ROWS: usize = 8;

/// Asks for row `i` of `src` (`d` floats per row) to be brought into the cache; nothing past
/// the end of `src`.
#[inline(always)]
pub(crate) fn prefetch_row(src: &[f32], i: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(row) = src.get(i * d..(i + 1) * d) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = row.as_ptr().cast::<i8>();
        for off in (0..std::mem::size_of_val(row)).step_by(64) {
            // SAFETY: a prefetch never faults; the address lies inside `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (src, i, d);
}

/// Fills `dst` with the source rows `rows` of `src` (row-major, `d` columns) times `f`, then
/// [`GROUP`] zero rows: a task-local Q in the layout of [`Packed::qs`]. Sequential: it runs
/// inside a task, on data the task is about to use. Every float is written once (no zero fill
/// first: the buffer is reused from task to task).
#[inline(always)]
pub(crate) fn gather_q(
    dst: &mut Vec<f32>,
    src: &[f32],
    d: usize,
    f: f32,
    rows: impl ExactSizeIterator<Item = usize> + Clone,
) {
    let count = rows.len();
    dst.resize((count + GROUP) * d, 0.0);
    let mut ahead = rows.clone().skip(PREFETCH_ROWS);
    for (o, i) in dst.chunks_exact_mut(d).zip(rows) {
        if let Some(a) = ahead.next() {
            prefetch_row(src, a, d);
        }
        for (o, y) in o.iter_mut().zip(&src[i * d..(i + 1) * d]) {
            *o = y * f;
        }
    }
    dst[count * d..].fill(0.0);
}

/// Fills `dst` with the source rows `rows` of `src`, transposed into panels
/// of [`PANEL`] keys as [`Packed::kt`], zero past the last key. Each panel is written one
/// 16-float row at a time (a scatter of each source row is much slower).
#[inline(always)]
pub(crate) fn gather_kt<A: Arith>(
    dst: &mut Vec<f32>,
    src: &[f32],
    d: usize,
    mut rows: impl ExactSizeIterator<Item = usize> + Clone,
) {
    let count = rows.len();
    let mut ahead = rows.clone().skip(PANEL);
    // No zero fill first (the buffer is reused from task to task): every panel is written
    // whole, its missing keys as zeros.
    dst.resize(count.div_ceil(PANEL) * d * PANEL, 0.0);
    for panel in dst.chunks_exact_mut(d * PANEL) {
        for a in ahead.by_ref().take(PANEL) {
            prefetch_row(src, a, d);
        }
        let mut keys: [&[f32]; PANEL] = [&[]; PANEL];
        let mut live = 0;
        for (slot, i) in keys.iter_mut().zip(&mut rows) {
            *slot = &src[i * d..(i + 1) * d];
            live += 1;
        }
        let keys = &keys[..live];
        #[cfg(target_arch = "x86_64")]
        if A::AVX512 {
            // SAFETY: `A::AVX512` is only used after runtime detection of AVX-512F; at most
            // PANEL keys of d floats each, and the panel holds d · PANEL floats.
            unsafe { super::avx512::transpose_panel(keys, d, panel) };
            continue;
        }
        if live < PANEL {
            panel.fill(0.0);
        }
        for (c, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
            for (o, key) in dst.iter_mut().zip(keys) {
                *o = key[c];
            }
        }
    }
}

/// Running softmax state and output accumulator of one query tile.
#[derive(Default)]
pub(crate) struct TileState {
    /// Rows of the tile (≤ [`TILE_ROWS`]); the buffers are padded to a multiple of [`GROUP`].
    pub rows: usize,
    /// Running max of each row (base-2 scaled logits), −∞ before any allowed key.
    pub m: Vec<f32>,
    /// Running sum of `2^(s − m)` of each row.
    pub l: Vec<f32>,
    /// Unnormalised output, `padded rows × d`.
    pub acc: Vec<f32>,
    /// Score cells computed so far through this state, padding included: [`GROUP`] rows ×
    /// the panels of every micro-kernel call (kept across [`TileState::reset`]; the kernels
    /// add it up to report what they counted, see `AttentionKernel::forward_counted`).
    pub cells: u64,
}

impl TileState {
    /// A fresh state for `rows` query rows of dimension `d`.
    pub fn new(rows: usize, d: usize) -> Self {
        let padded = rows.div_ceil(GROUP) * GROUP;
        Self {
            rows,
            m: vec![f32::NEG_INFINITY; padded],
            l: vec![0.0; padded],
            acc: vec![0.0; padded * d],
            cells: 0,
        }
    }

    /// Makes this a fresh state for `rows` query rows of dimension `d`, reusing the buffers.
    pub fn reset(&mut self, rows: usize, d: usize) {
        let padded = rows.div_ceil(GROUP) * GROUP;
        self.rows = rows;
        self.m.clear();
        self.m.resize(padded, f32::NEG_INFINITY);
        self.l.clear();
        self.l.resize(padded, 0.0);
        self.acc.clear();
        self.acc.resize(padded * d, 0.0);
    }

    /// Makes this the state of `rows` query rows of dimension `d` resumed from their running
    /// max `m`, sum `l` and accumulator `acc` (`rows × d`), reusing the buffers (only the
    /// padding rows are filled).
    pub fn resume(&mut self, d: usize, m: &[f32], l: &[f32], acc: &[f32]) {
        let rows = m.len();
        debug_assert!(l.len() == rows && acc.len() == rows * d);
        let padded = rows.div_ceil(GROUP) * GROUP;
        self.rows = rows;
        for (v, src, fill) in [(&mut self.m, m, f32::NEG_INFINITY), (&mut self.l, l, 0.0)] {
            v.resize(padded, fill);
            v[..rows].copy_from_slice(src);
            v[rows..].fill(fill);
        }
        self.acc.resize(padded * d, 0.0);
        self.acc[..rows * d].copy_from_slice(acc);
        self.acc[rows * d..].fill(0.0);
    }

    /// Makes this the state of `m.len()` query rows (a multiple of [`GROUP`]) resumed from
    /// their running max `m` and sum `l`, whose accumulator rows stay where they are (passed
    /// to [`chunk_spliced`] and finished with [`TileState::finish_in_place`]): nothing of
    /// the `rows × d` accumulator is copied in or out.
    pub fn resume_in_place(&mut self, m: &[f32], l: &[f32]) {
        debug_assert!(m.len() == l.len() && m.len() % GROUP == 0);
        self.rows = m.len();
        self.m.clear();
        self.m.extend_from_slice(m);
        self.l.clear();
        self.l.extend_from_slice(l);
    }

    /// Turns the accumulator rows `acc` (`rows × d`, see [`TileState::resume_in_place`])
    /// into `acc / l` in place; a row that saw no allowed key becomes zero.
    pub fn finish_in_place(&self, acc: &mut [f32], d: usize) {
        for (r, row) in acc.chunks_exact_mut(d).take(self.rows).enumerate() {
            let normalise = normaliser(self.l[r]);
            for x in row {
                *x = normalise(*x);
            }
        }
    }

    /// Writes `acc / l` into `out` (`rows × d`); a row that saw no allowed key becomes zero.
    pub fn finish(&self, out: &mut [f32], d: usize) {
        for (r, dst) in out.chunks_exact_mut(d).take(self.rows).enumerate() {
            self.finish_row(r, dst);
        }
    }

    /// [`TileState::finish`] into rows that may not have been initialised yet.
    #[inline(always)]
    pub fn finish_uninit(&self, out: &mut [std::mem::MaybeUninit<f32>], d: usize) {
        for (r, dst) in out.chunks_exact_mut(d).take(self.rows).enumerate() {
            for (o, x) in dst.iter_mut().zip(self.row_result(r, d)) {
                o.write(x);
            }
        }
    }

    /// Writes row `r`'s `acc / l` into `dst` (`d` floats); zero if the row saw no allowed key.
    #[inline(always)]
    pub fn finish_row(&self, r: usize, dst: &mut [f32]) {
        let d = dst.len();
        for (o, x) in dst.iter_mut().zip(self.row_result(r, d)) {
            *o = x;
        }
    }

    /// Row `r`'s `acc / l` (`d` floats), zero if the row saw no allowed key.
    #[inline(always)]
    pub fn row_result(&self, r: usize, d: usize) -> impl Iterator<Item = f32> + '_ {
        let normalise = normaliser(self.l[r]);
        self.acc[r * d..(r + 1) * d]
            .iter()
            .map(move |&a| normalise(a))
    }
}

/// `a ↦ a / l` for a row whose softmax sum is `l`, or `a ↦ 0` when the row saw no allowed key.
#[inline(always)]
fn normaliser(l: f32) -> impl Fn(f32) -> f32 + Copy {
    let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
    move |a| if l > 0.0 { a * inv } else { 0.0 }
}

/// One key chunk seen by a whole query tile: keys `[lo, hi)` inside the panel-aligned window
/// starting at `ja` (`ja % PANEL == 0`, `ja ≤ lo < hi ≤ ja + CHUNK`).
///
/// `q_row0` is the first row of the tile in `pk.qs`. `words[r]` (if given) has bit `x` set
/// when tile row `r` may see key `ja + x`; cells outside `[lo, hi)` are always masked.
/// `cells` says which cells are computed (see [`Cells`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn chunk<A: Arith>(
    pk: &Packed<'_>,
    st: &mut TileState,
    q_row0: usize,
    ja: usize,
    lo: usize,
    hi: usize,
    words: Option<&[u64]>,
    cells: Cells,
) {
    chunk_spliced::<A>(pk, st, q_row0, ja, lo, hi, words, cells, &[], None);
}

/// [`chunk`], with keys spliced into the panels of some groups of 4 rows: `splices[g]` for
/// group `g` of the tile (its rows' words must allow the spliced lanes). A splice applies to
/// the call whose panels hold its lanes. With `acc`, the tile's accumulator rows are there
/// (padded rows × d, e.g. the output rows themselves, see [`TileState::resume_in_place`])
/// instead of in `st.acc`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn chunk_spliced<A: Arith>(
    pk: &Packed<'_>,
    st: &mut TileState,
    q_row0: usize,
    ja: usize,
    lo: usize,
    hi: usize,
    words: Option<&[u64]>,
    cells: Cells,
    splices: &[Option<Splice<'_>>],
    mut acc: Option<&mut [f32]>,
) {
    let always_mask = cells == Cells::AlwaysMask;
    debug_assert!(ja % PANEL == 0 && ja <= lo && lo < hi && hi <= ja + CHUNK && hi <= pk.n);
    let groups = st.rows.div_ceil(GROUP);
    let range = range_word(ja, lo, hi);
    for g in 0..groups {
        let mut bits = words.map(|w| {
            let mut b = [0u64; GROUP];
            for (r, slot) in b.iter_mut().enumerate() {
                *slot = w.get(g * GROUP + r).copied().unwrap_or(0);
            }
            b
        });
        // Narrow: only the keys some of the 4 rows allow, from the panel of the first to the
        // last (a band's edge group skips whole panels and part of its P V), nothing when
        // there is none. Exact: a chunk with no allowed key leaves (m, l, acc) unchanged.
        let (mut gja, mut glo, mut ghi) = (ja, lo, hi);
        if let (Some(b), Cells::Narrow) = (bits, cells) {
            let any = b.iter().fold(0, |a, &w| a | w) & range;
            if any == 0 {
                continue;
            }
            let first = any.trailing_zeros() as usize;
            let shift = first / PANEL * PANEL;
            (gja, glo, ghi) = (
                ja + shift,
                ja + first,
                ja + CHUNK - any.leading_zeros() as usize,
            );
            bits = Some(b.map(|w| w >> shift));
        }
        let bits = bits.map(|b| b.map(u128::from));
        let np = (ghi - gja).div_ceil(PANEL);
        let splice = splices
            .get(g)
            .copied()
            .flatten()
            .filter(|sp| sp.at >= gja && sp.at < gja + np * PANEL);
        let args = GroupArgs {
            pk,
            q_row: q_row0 + g * GROUP,
            ja: gja,
            lo: glo,
            hi: ghi,
            bits,
            always_mask,
            splice,
        };
        call::<A>(&args, np, st, g, acc.as_deref_mut());
    }
}

/// A band seen by a whole query tile, group by group: tile row `r` sees the keys
/// `keys[r] = [lo, hi)` (packed positions; none when `lo ≥ hi`) and, with a splice for its
/// group, the spliced keys set in `spliced[r]` (bit `x`: the key in lane `sp.at + x`). Each
/// group of 4 rows computes the panels from the one of the first key its rows see to their
/// last key ([`Cells::Narrow`] over the whole band rather than chunk by chunk), in calls of 4
/// panels, or of [`WIDE`] when exactly that many are left: a causal window of 64 keys (68 for
/// 4 rows, 5 panels) then takes one call per group instead of two. The rows' keys should
/// form one interval, or the panels between its pieces are computed too. `q_row0`,
/// `splices` and `acc` as in [`chunk_spliced`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn span<A: Arith>(
    pk: &Packed<'_>,
    st: &mut TileState,
    q_row0: usize,
    keys: &[(usize, usize)],
    spliced: &[u64],
    splices: &[Option<Splice<'_>>],
    mut acc: Option<&mut [f32]>,
) {
    let rows = st.rows;
    let groups = rows.div_ceil(GROUP);
    debug_assert!(rows <= TILE_ROWS && keys.len() >= rows && spliced.len() >= rows);
    // Each group's first key and one past its last, and the next panel it walks (none when
    // it has no key or has walked them all).
    let mut bounds = [(0, 0); TILE_ROWS / GROUP];
    let mut next = [None; TILE_ROWS / GROUP];
    for g in 0..groups {
        let splice = splices.get(g).copied().flatten();
        let (mut first, mut end) = (usize::MAX, 0);
        for r in g * GROUP..((g + 1) * GROUP).min(rows) {
            let (lo, hi) = keys[r];
            if lo < hi {
                (first, end) = (first.min(lo), end.max(hi));
            }
            if let (Some(sp), w) = (splice, spliced[r]) {
                if w != 0 {
                    first = first.min(sp.at + w.trailing_zeros() as usize);
                    end = end.max(sp.at + 64 - w.leading_zeros() as usize);
                }
            }
        }
        if first < end {
            debug_assert!(end <= pk.n);
            bounds[g] = (first, end);
            next[g] = Some(first / PANEL);
        }
    }
    // Call by call, every group's first call, then every group's second, …: a block band's
    // groups share their keys, whose panels are then reused while in cache (as chunk by chunk).
    let mut more = true;
    while more {
        more = false;
        for g in 0..groups {
            let Some(p) = next[g] else { continue };
            let (first, end) = bounds[g];
            let left = (end - 1) / PANEL + 1 - p;
            let np = if left == WIDE {
                WIDE
            } else {
                left.min(CHUNK / PANEL)
            };
            next[g] = (np < left).then_some(p + np);
            more |= next[g].is_some();
            let (gja, gend) = (p * PANEL, (p + np) * PANEL);
            let splice = splices
                .get(g)
                .copied()
                .flatten()
                .filter(|sp| sp.at >= gja && sp.at < gend);
            let bits = std::array::from_fn(|x| {
                let r = g * GROUP + x;
                if r >= rows {
                    return 0;
                }
                let (lo, hi) = (keys[r].0.max(gja), keys[r].1.min(gend));
                let mut w = if lo < hi {
                    (u128::MAX >> (128 - (hi - lo))) << (lo - gja)
                } else {
                    0
                };
                if let Some(sp) = splice {
                    w |= u128::from(spliced[r]) << (sp.at - gja);
                }
                w
            });
            let args = GroupArgs {
                pk,
                q_row: q_row0 + g * GROUP,
                ja: gja,
                lo: gja.max(first),
                hi: gend.min(end),
                bits: Some(bits),
                always_mask: false,
                splice,
            };
            call::<A>(&args, np, st, g, acc.as_deref_mut());
        }
    }
}

/// One micro-kernel call of `np ≤ WIDE` panels for group `g` of the tile: its rows' `m`, `l`
/// in `st`, their accumulators in `acc` if given (the tile's rows, see [`chunk_spliced`]), else
/// in `st.acc`; its cells counted in `st.cells`.
#[inline(always)]
fn call<A: Arith>(
    args: &GroupArgs<'_, '_>,
    np: usize,
    st: &mut TileState,
    g: usize,
    acc: Option<&mut [f32]>,
) {
    st.cells += (GROUP * np * PANEL) as u64;
    let m = &mut st.m[g * GROUP..(g + 1) * GROUP];
    let l = &mut st.l[g * GROUP..(g + 1) * GROUP];
    let rows = g * GROUP * args.pk.d..(g + 1) * GROUP * args.pk.d;
    let acc = match acc {
        Some(acc) => &mut acc[rows],
        None => &mut st.acc[rows],
    };
    #[cfg(target_arch = "x86_64")]
    if A::AVX512 {
        // SAFETY: `A::AVX512` is only used after runtime detection of AVX-512F/VL + FMA;
        // the arguments satisfy the bounds `avx512::group` documents.
        unsafe {
            match np {
                1 => super::avx512::group::<1>(args, m, l, acc),
                2 => super::avx512::group::<2>(args, m, l, acc),
                3 => super::avx512::group::<3>(args, m, l, acc),
                4 => super::avx512::group::<4>(args, m, l, acc),
                _ => super::avx512::group::<WIDE>(args, m, l, acc),
            }
        }
        return;
    }
    match np {
        1 => group::<A, 1>(args, m, l, acc),
        2 => group::<A, 2>(args, m, l, acc),
        3 => group::<A, 3>(args, m, l, acc),
        4 => group::<A, 4>(args, m, l, acc),
        _ => group::<A, WIDE>(args, m, l, acc),
    }
}

/// Which cells of a chunk [`chunk`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cells {
    /// All of them for every group of 4 rows, masking only where the words say so.
    Chunk,
    /// All of them, every cell through the mask select even when all are allowed (what a
    /// framework does with a boolean mask).
    AlwaysMask,
    /// Per group of 4 rows, the keys from the panel of the first key the rows allow to the last
    /// one; none when they allow none. For the extra keys of band tiles, which only some rows
    /// see (a band itself is walked by [`span`], narrowed the same way over all its chunks).
    Narrow,
}

/// The micro-kernel: [`GROUP`] query rows against `NP` panels (see the module docs).
#[inline(always)]
fn group<A: Arith, const NP: usize>(
    a: &GroupArgs<'_, '_>,
    m: &mut [f32],
    l: &mut [f32],
    acc: &mut [f32],
) {
    let pk = a.pk;
    let d = pk.d;
    let width = NP * PANEL;
    // S = Q Kᵀ for 4 rows × NP panels.
    let mut s = [[[0f32; PANEL]; NP]; GROUP];
    let q_row = |r: usize| {
        let at = (a.q_row + r) * pk.q_stride;
        &pk.qs[at..at + d]
    };
    let p0 = a.ja / PANEL;
    let kt = &pk.kt[p0 * d * PANEL..(p0 + NP) * d * PANEL];
    let (q0, q1, q2, q3) = (q_row(0), q_row(1), q_row(2), q_row(3));
    for c in 0..d {
        let qc = [q0[c], q1[c], q2[c], q3[c]];
        for p in 0..NP {
            let mut kv: [f32; PANEL] = kt[(p * d + c) * PANEL..(p * d + c + 1) * PANEL]
                .try_into()
                .expect("panel slice has PANEL floats");
            if let Some(sp) = a.splice {
                for (x, k) in kv.iter_mut().enumerate() {
                    let j = a.ja + p * PANEL + x;
                    if sp.holds(j) {
                        *k = sp.kt[c * PANEL + j - sp.at];
                    }
                }
            }
            for r in 0..GROUP {
                for x in 0..PANEL {
                    s[r][p][x] = A::fma(qc[r], kv[x], s[r][p][x]);
                }
            }
        }
    }
    if pk.q_scale != 1.0 {
        for x in s.iter_mut().flatten().flatten() {
            *x *= pk.q_scale;
        }
    }
    // Mask, online softmax: P = 2^(S − m_new), α = 2^(m_old − m_new).
    let partial = a.lo > a.ja || a.hi < a.ja + width;
    let mut alpha = [1f32; GROUP];
    for r in 0..GROUP {
        let row = &mut s[r];
        let full = (1u128 << width) - 1;
        let mut word = a.bits.map_or(u128::MAX, |b| b[r]) & full;
        if partial {
            let lo = a.lo - a.ja;
            let hi = a.hi - a.ja;
            let range = (u128::MAX >> (128 - (hi - lo))) << lo;
            word &= range;
        }
        if a.always_mask || word != full {
            for p in 0..NP {
                let w = (word >> (p * PANEL)) as u32;
                for x in 0..PANEL {
                    if (w >> x) & 1 == 0 {
                        row[p][x] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let mut mx = [f32::NEG_INFINITY; PANEL];
        for panel in row.iter() {
            for x in 0..PANEL {
                mx[x] = mx[x].max(panel[x]);
            }
        }
        let mx = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let m_new = m[r].max(mx);
        if m_new == f32::NEG_INFINITY {
            // Nothing allowed yet in this row: P = 0, state unchanged.
            for panel in row.iter_mut() {
                *panel = [0.0; PANEL];
            }
            continue;
        }
        let mut sum = [0f32; PANEL];
        for panel in row.iter_mut() {
            for x in 0..PANEL {
                let e = exp2(panel[x] - m_new);
                panel[x] = e;
                sum[x] += e;
            }
        }
        let sum: f32 = sum.iter().sum();
        alpha[r] = exp2(m[r] - m_new);
        l[r] = l[r] * alpha[r] + sum;
        m[r] = m_new;
    }
    // acc = α · acc + P V, in column strips of 64, 16, then 1.
    let mut c0 = 0;
    while c0 + 64 <= d {
        pv_strip::<A, 64, NP>(a, &s, &alpha, acc, c0);
        c0 += 64;
    }
    while c0 + 16 <= d {
        pv_strip::<A, 16, NP>(a, &s, &alpha, acc, c0);
        c0 += 16;
    }
    while c0 < d {
        pv_strip::<A, 1, NP>(a, &s, &alpha, acc, c0);
        c0 += 1;
    }
}

/// Columns `c0 .. c0 + W` of `acc = α · acc + P V` for the 4 rows of a micro-kernel call.
#[inline(always)]
fn pv_strip<A: Arith, const W: usize, const NP: usize>(
    a: &GroupArgs<'_, '_>,
    p: &[[[f32; PANEL]; NP]; GROUP],
    alpha: &[f32; GROUP],
    acc: &mut [f32],
    c0: usize,
) {
    let d = a.pk.d;
    let v = &a.pk.v;
    let vs = a.pk.v_stride;
    let mut t = [[0f32; W]; GROUP];
    for r in 0..GROUP {
        let src = &acc[r * d + c0..r * d + c0 + W];
        for x in 0..W {
            t[r][x] = src[x] * alpha[r];
        }
    }
    for j in a.lo..a.hi {
        let x = j - a.ja;
        let pj = [
            p[0][x / PANEL][x % PANEL],
            p[1][x / PANEL][x % PANEL],
            p[2][x / PANEL][x % PANEL],
            p[3][x / PANEL][x % PANEL],
        ];
        let vr: &[f32; W] = match a.splice.filter(|sp| sp.holds(j)) {
            Some(sp) => {
                let at = (j - sp.at) * d + c0;
                sp.v[at..at + W].try_into()
            }
            None => v[j * vs + c0..j * vs + c0 + W].try_into(),
        }
        .expect("V strip has W floats");
        for r in 0..GROUP {
            for y in 0..W {
                t[r][y] = A::fma(pj[r], vr[y], t[r][y]);
            }
        }
    }
    for r in 0..GROUP {
        acc[r * d + c0..r * d + c0 + W].copy_from_slice(&t[r]);
    }
}

/// The chunks `(ja, lo, hi)` of the key range `[j0, j1)`.
///
/// An iterator rather than a callback on purpose: a closure body is compiled as its own
/// function without the caller's `#[target_feature]`s, and `mul_add` there becomes a slow
/// library call.
#[inline(always)]
pub(crate) fn chunks(j0: usize, j1: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let first = j0 - j0 % PANEL;
    let end = if j1 > j0 { j1 } else { first };
    (first..end)
        .step_by(CHUNK)
        .map(move |ja| (ja, ja.max(j0), (ja + CHUNK).min(j1)))
}

/// Bits `x` of a chunk word set for keys `ja + x` in `[a, b)`.
#[inline(always)]
pub(crate) fn range_word(ja: usize, a: usize, b: usize) -> u64 {
    let a = a.max(ja);
    let b = b.min(ja + CHUNK);
    if a >= b {
        return 0;
    }
    let (lo, hi) = (a - ja, b - ja);
    (u64::MAX >> (64 - (hi - lo))) << lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_matches_std() {
        let mut worst = 0f64;
        let mut x = -126.0f32;
        while x <= 0.0 {
            let got = exp2(x) as f64;
            let want = (x as f64).exp2();
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp2(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp2(-1000.0), 0.0);
        assert_eq!(exp2(0.0), 1.0);
    }

    #[test]
    fn range_words() {
        assert_eq!(range_word(0, 0, 64), u64::MAX);
        assert_eq!(range_word(64, 60, 66), 0b11);
        assert_eq!(range_word(16, 20, 22), 0b11 << 4);
        assert_eq!(range_word(0, 70, 80), 0);
    }

    #[test]
    fn gathered_kt_panels_hold_the_keys_transposed() {
        for (n, d) in [(1, 1), (7, 19), (16, 64), (37, 80), (40, 16)] {
            let src: Vec<f32> = (0..n * d).map(|x| x as f32 * 0.5 - 3.0).collect();
            // Every other row, backwards: any row order works.
            let rows: Vec<usize> = (0..n).rev().step_by(2).collect();
            let mut want = Vec::new();
            gather_kt::<Plain>(&mut want, &src, d, rows.iter().copied());
            assert_eq!(want.len(), rows.len().div_ceil(PANEL) * d * PANEL);
            for (a, &i) in rows.iter().enumerate() {
                for c in 0..d {
                    let at = (a / PANEL) * d * PANEL + c * PANEL + a % PANEL;
                    assert_eq!(want[at], src[i * d + c], "n={n} d={d} key {a} col {c}");
                }
            }
            let padded = want.iter().filter(|&&x| x == 0.0).count();
            assert!(padded >= (rows.len().div_ceil(PANEL) * PANEL - rows.len()) * d);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // The in-register 16 × 16 transposes give the same panels, padding included.
                let mut got = vec![7.0; 3];
                gather_kt::<Avx512>(&mut got, &src, d, rows.iter().copied());
                assert_eq!(got, want, "n={n} d={d}");
            }
        }
    }

    #[test]
    fn chunks_cover_the_range_once() {
        let seen: Vec<_> = chunks(21, 150).collect();
        assert_eq!(seen, vec![(16, 21, 80), (80, 80, 144), (144, 144, 150)]);
        assert_eq!(chunks(5, 5).count(), 0);
    }
}
