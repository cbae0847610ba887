//! Receptive field over stacked layers: which keys can influence query `i` after `L` layers.
//!
//! One attention layer lets query `i` read the previous layer's state at every key `m` its
//! pattern allows. After `L` layers, key `j` influences query `i` iff there is a chain
//! `i = m_L → m_{L−1} → … → m_0 = j` with every step allowed by its layer's pattern:
//!
//! ```text
//! R_0 = I,    R_l[i] = OR over m in row_l(i) of R_{l−1}[m]     (rows are bitsets over keys j)
//! ```
//!
//! Every built-in pattern allows the diagonal, so a residual connection changes nothing and
//! `R_l ⊇ R_{l−1}`.
//!
//! **Exact and light on memory.** Column `j` of `R_l` depends only on column `j` of
//! `R_{l−1}`: it is the set of queries reached by the single source key `j`. So the keys are
//! split into chunks of 512 columns; each chunk keeps an `n × 512`-bit state (4 MiB at
//! n = 65,536) and is pushed through all layers on its own, chunks in parallel (rayon). No
//! `n²` matrix is ever held, and no float product is formed.
//!
//! **Fast rows.** A row of every built-in pattern is a union of a few terms, each ORed in
//! O(1) row operations instead of one per allowed key:
//!
//! - a key interval `[a, b]` (local windows, fixed blocks, BigBird block runs, global
//!   prefixes) — a range-OR structure (prefix / suffix ORs inside segments of 32 rows plus a
//!   sparse table over segments) answers any interval with at most 4 row ORs;
//! - the residue class `j ≡ i (mod k)` (atrous, sparse, strided, and dense as k = 1) — one OR
//!   per class, or under a causal mask the running OR `C[i] = R[i] | C[i − k]`;
//! - the summary columns of the fixed pattern — one OR of all of them, or a running OR per
//!   block under a causal mask.
//!
//! A chunk stops early once its state repeats after a full cycle of the schedule (a fixed
//! point, e.g. atrous after two layers or any full chunk); later layers copy its counts.

mod spec;

pub use spec::{parse_schedule, schedule_from, stride_window_keys, LayerSpec, ScheduleSpecError};

use crate::pattern::{Pattern, PatternError, PatternKind, Raster};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Largest sequence length `reach` accepts (the work grows as n²).
pub const REACH_MAX_N: usize = 1 << 18;

/// Largest number of layers (reported or searched for full coverage).
pub const MAX_LAYERS: usize = 4096;

/// Largest raster side of the reach heatmaps (pixels).
pub const MAX_RASTER_SIDE: usize = 1024;

/// 64-bit words per chunk row: a chunk covers `64 · CW` = 512 keys.
const CW: usize = 8;
/// Keys per chunk.
const CHUNK_KEYS: usize = 64 * CW;
/// One row of a chunk's state: which of the chunk's keys reach this query.
type Row = [u64; CW];
/// Rows per segment of the range-OR structure.
const SEG: usize = 32;

/// Why a reach computation was refused or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReachError {
    /// The number of layers is out of range.
    #[error("--layers {0} is out of range: expected an integer from 1 to {MAX_LAYERS}")]
    BadLayers(usize),
    /// The full-coverage search cap is out of range.
    #[error("--max-layers {0} is out of range: expected an integer from 1 to {MAX_LAYERS}")]
    BadMaxLayers(usize),
    /// `n` is too large for an n² computation.
    #[error(
        "--n {0} is too large for reach: the work grows as n², expected n from 1 to {REACH_MAX_N}"
    )]
    TooLarge(usize),
    /// A schedule with no layer.
    #[error("the layer schedule is empty: give at least one pattern")]
    EmptySchedule,
    /// Schedule entries of different lengths.
    #[error("every layer of a schedule needs the same n: layer 1 has n = {first}, layer {layer} has n = {other}")]
    MismatchedN {
        /// n of the first entry.
        first: usize,
        /// 1-based index of the offending entry.
        layer: usize,
        /// Its n.
        other: usize,
    },
    /// A pattern could not be rebuilt (BigBird without its causal mask).
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// The cancel flag was set.
    #[error("reach computation cancelled")]
    Cancelled,
}

/// The pattern of each layer, repeated cyclically: layer `l` (1-based) uses entry
/// `(l − 1) mod len` (GPT-3: `[dense, local]` alternates).
#[derive(Clone, Debug)]
pub struct Schedule {
    layers: Vec<Pattern>,
}

impl Schedule {
    /// Every layer uses `p`.
    pub fn single(p: Pattern) -> Self {
        Self { layers: vec![p] }
    }

    /// A cyclic schedule; every entry must have the same `n`.
    pub fn new(layers: Vec<Pattern>) -> Result<Self, ReachError> {
        let first = layers.first().ok_or(ReachError::EmptySchedule)?.n();
        if let Some((t, p)) = layers.iter().enumerate().find(|(_, p)| p.n() != first) {
            return Err(ReachError::MismatchedN {
                first,
                layer: t + 1,
                other: p.n(),
            });
        }
        Ok(Self { layers })
    }

    /// Sequence length.
    pub fn n(&self) -> usize {
        self.layers[0].n()
    }

    /// Number of entries before the schedule repeats.
    pub fn period(&self) -> usize {
        self.layers.len()
    }

    /// The entries, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.layers
    }

    /// The pattern of layer `l` (1-based).
    pub fn pattern_for(&self, l: usize) -> &Pattern {
        &self.layers[(l.max(1) - 1) % self.layers.len()]
    }

    /// The pattern names of the layers, comma-separated (`sparse`, `dense,local`).
    pub fn names(&self) -> String {
        let names: Vec<String> = self.layers.iter().map(|p| p.name()).collect();
        names.join(",")
    }

    /// The pattern's label, or `schedule(a | b | …)` for several entries.
    pub fn label(&self) -> String {
        if self.layers.len() == 1 {
            self.layers[0].label()
        } else {
            let parts: Vec<String> = self.layers.iter().map(Pattern::label).collect();
            format!("schedule({})", parts.join(" | "))
        }
    }
}

/// What to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachOptions {
    /// Layers reported: 1..=layers.
    pub layers: usize,
    /// Search for full coverage up to this many layers (at least `layers` is used).
    pub max_layers: usize,
    /// Side of the per-layer heatmaps in pixels (0 = none; exactly n × n when n ≤ side).
    pub raster_side: usize,
}

impl ReachOptions {
    /// Report `layers` layers, search full coverage within them, no heatmaps.
    pub fn new(layers: usize) -> Self {
        Self {
            layers,
            max_layers: layers,
            raster_side: 0,
        }
    }
}

/// Reachability after one number of stacked layers (docs/contract.md section 4, `reach --json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReachLayer {
    /// Number of stacked layers l (1-based).
    pub layer: usize,
    /// Pairs (i, j) such that key j can influence query i through l layers.
    pub reachable_pairs: u64,
    /// `reachable_pairs / n²`, in [0, 1].
    pub coverage: f64,
}

/// The result of [`compute`].
#[derive(Clone, Debug)]
pub struct ReachReport {
    /// Sequence length.
    pub n: usize,
    /// Label of the pattern or schedule.
    pub pattern: String,
    /// One entry per layer count 1..=layers.
    pub layers: Vec<ReachLayer>,
    /// Fewest layers after which every pair is reachable, if within `max_layers`.
    pub layers_to_full: Option<usize>,
    /// The search cap used for `layers_to_full`.
    pub max_layers: usize,
    /// Per-layer heatmaps (reachable cells under each pixel), layers 1..=layers; empty when
    /// no raster was asked for.
    pub rasters: Vec<Raster>,
}

/// Computes reachability through the schedule: counts per layer, layers to full coverage,
/// and optional heatmaps. Chunks of 512 keys run in parallel; `progress(done, total)` is
/// called after each chunk; setting `cancel` stops the work with [`ReachError::Cancelled`].
pub fn compute(
    schedule: &Schedule,
    opts: &ReachOptions,
    cancel: &AtomicBool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<ReachReport, ReachError> {
    let mut run = ReachRun::new(schedule, opts)?;
    run.run(usize::MAX, cancel, progress)?;
    run.finish()
}

/// A [`compute`] that runs its chunks of 512 keys a few at a time, for a caller that must
/// pause between pieces of work (the app in a browser runs one chunk per slice between
/// frames). The report is the same whatever the batches.
pub struct ReachRun {
    n: usize,
    plans: Vec<Plan>,
    layers: usize,
    max_layers: usize,
    geom: Option<RasterGeom>,
    label: String,
    n_chunks: usize,
    /// Chunks done.
    done: usize,
    /// Reachable pairs per layer 0..=max_layers over the chunks done.
    counts: Vec<u64>,
    /// Per reported layer, the heatmap over the chunks done.
    rasters: Vec<Raster>,
    /// Buffers reused by batches of one chunk (and the state of `partial`).
    scratch: Option<Scratch>,
    /// The chunk [`ReachRun::run_layers`] is part-way through.
    partial: Option<Chunk>,
}

impl ReachRun {
    /// Checks the options and prepares the schedule's layers; no chunk runs yet.
    pub fn new(schedule: &Schedule, opts: &ReachOptions) -> Result<Self, ReachError> {
        let n = schedule.n();
        if opts.layers == 0 || opts.layers > MAX_LAYERS {
            return Err(ReachError::BadLayers(opts.layers));
        }
        if opts.max_layers == 0 || opts.max_layers > MAX_LAYERS {
            return Err(ReachError::BadMaxLayers(opts.max_layers));
        }
        if n > REACH_MAX_N {
            return Err(ReachError::TooLarge(n));
        }
        let plans: Vec<Plan> = schedule
            .patterns()
            .iter()
            .map(Plan::new)
            .collect::<Result<_, _>>()?;
        let side = opts.raster_side.min(MAX_RASTER_SIDE).min(n);
        let geom = (side > 0).then(|| RasterGeom::new(n, side));
        let max_layers = opts.max_layers.max(opts.layers);
        Ok(Self {
            n,
            plans,
            layers: opts.layers,
            max_layers,
            rasters: match &geom {
                Some(g) => (0..opts.layers).map(|_| g.empty_raster()).collect(),
                None => Vec::new(),
            },
            geom,
            label: schedule.label(),
            n_chunks: n.div_ceil(CHUNK_KEYS),
            done: 0,
            counts: vec![0; max_layers + 1],
            scratch: None,
            partial: None,
        })
    }

    /// `(chunks done, chunks in all)`.
    pub fn chunks(&self) -> (usize, usize) {
        (self.done, self.n_chunks)
    }

    /// Whether every chunk has run.
    pub fn is_done(&self) -> bool {
        self.done >= self.n_chunks
    }

    /// Pushes the next chunk through up to `layers` more layers (finer pieces than
    /// [`ReachRun::run`] when a chunk goes through many layers); `progress(done, total)` once
    /// the chunk is done; [`ReachError::Cancelled`] once `cancel` is set.
    pub fn run_layers(
        &mut self,
        layers: usize,
        cancel: &AtomicBool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), ReachError> {
        if self.is_done() {
            return Ok(());
        }
        let job = Job {
            n: self.n,
            plans: &self.plans,
            layers: self.layers,
            max_layers: self.max_layers,
            geom: self.geom.as_ref(),
            cancel,
        };
        let n = self.n;
        let scratch = self.scratch.get_or_insert_with(|| Scratch::new(n));
        let c = self.done;
        let mut chunk = match self.partial.take() {
            Some(chunk) => chunk,
            None => job.start_chunk(c, scratch),
        };
        match job.advance(&mut chunk, scratch, layers.max(1)) {
            None => return Err(ReachError::Cancelled),
            Some(false) => self.partial = Some(chunk),
            Some(true) => {
                self.absorb(chunk.into_result());
                progress(c + 1, self.n_chunks);
            }
        }
        Ok(())
    }

    /// Runs the next `count` chunks (at most those left), in parallel when more than one;
    /// `progress(done, total)` after each; [`ReachError::Cancelled`] once `cancel` is set. A
    /// chunk [`ReachRun::run_layers`] left part-way is finished instead, as the whole call.
    pub fn run(
        &mut self,
        count: usize,
        cancel: &AtomicBool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<(), ReachError> {
        if self.partial.is_some() {
            // Finish the chunk run_layers started first.
            self.run_layers(usize::MAX, cancel, progress)?;
            return Ok(());
        }
        let first = self.done;
        let last = first.saturating_add(count).min(self.n_chunks);
        let job = Job {
            n: self.n,
            plans: &self.plans,
            layers: self.layers,
            max_layers: self.max_layers,
            geom: self.geom.as_ref(),
            cancel,
        };
        let total = self.n_chunks;
        let done = AtomicUsize::new(first);
        let batch: Vec<Option<ChunkResult>> = if last == first + 1 {
            let n = self.n;
            let scratch = self.scratch.get_or_insert_with(|| Scratch::new(n));
            let r = job.run_chunk(first, scratch);
            progress(first + 1, total);
            vec![r]
        } else {
            (first..last)
                .into_par_iter()
                .map_init(
                    || Scratch::new(self.n),
                    |scratch, c| {
                        let r = job.run_chunk(c, scratch);
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                        r
                    },
                )
                .collect()
        };
        if cancel.load(Ordering::Relaxed) || batch.iter().any(Option::is_none) {
            return Err(ReachError::Cancelled);
        }
        for r in batch.into_iter().flatten() {
            self.absorb(r);
        }
        Ok(())
    }

    /// Adds a finished chunk's counts and heatmap columns.
    fn absorb(&mut self, r: ChunkResult) {
        for (total, c) in self.counts.iter_mut().zip(&r.counts) {
            *total += c;
        }
        if let Some(g) = &self.geom {
            for (raster, strip) in self.rasters.iter_mut().zip(&r.strips) {
                let width = r.x_hi - r.x_lo;
                for y in 0..g.side {
                    for (dx, v) in strip[y * width..(y + 1) * width].iter().enumerate() {
                        raster.counts[y * g.side + r.x_lo + dx] += v;
                    }
                }
            }
        }
        self.done += 1;
    }

    /// The report, once every chunk has run ([`ReachError::Cancelled`] before).
    pub fn finish(self) -> Result<ReachReport, ReachError> {
        if !self.is_done() {
            return Err(ReachError::Cancelled);
        }
        let (n, max_layers, counts) = (self.n, self.max_layers, &self.counts);
        let all = (n as u64) * (n as u64);
        let layers = (1..=self.layers)
            .map(|l| ReachLayer {
                layer: l,
                reachable_pairs: counts[l],
                coverage: counts[l] as f64 / all as f64,
            })
            .collect();
        let layers_to_full = (1..=max_layers).find(|&l| counts[l] == all);
        Ok(ReachReport {
            n,
            pattern: self.label,
            layers,
            layers_to_full,
            max_layers,
            rasters: self.rasters,
        })
    }
}

/// Convenience: coverage of `p` repeated over `layers` layers, full coverage searched within
/// `max_layers`, no heatmaps, no cancel.
pub fn coverage(p: &Pattern, layers: usize, max_layers: usize) -> Result<ReachReport, ReachError> {
    let opts = ReachOptions {
        layers,
        max_layers,
        raster_side: 0,
    };
    compute(
        &Schedule::single(p.clone()),
        &opts,
        &AtomicBool::new(false),
        &|_, _| {},
    )
}

/// Largest side of an exported heatmap PNG, in pixels.
pub const MAX_PNG_SIDE: usize = 8192;

/// Writes a reach heatmap as an RGB PNG of about `side_px × side_px` pixels: each raster pixel
/// becomes an `s × s` square with `s = max(1, side_px / raster side)`, coloured by the
/// fraction of reachable cells under it through `cmap`. Written atomically.
pub fn write_heatmap_png(
    r: &Raster,
    cmap: crate::render::Colormap,
    side_px: usize,
    path: &std::path::Path,
) -> Result<(), crate::export::ExportError> {
    let s = (side_px / r.width.max(1)).max(1);
    let (w, h) = (r.width * s, r.height * s);
    if w > MAX_PNG_SIDE || h > MAX_PNG_SIDE {
        return Err(crate::export::ExportError::TooLarge(format!(
            "a heatmap of {w}×{h} pixels is more than the limit of {MAX_PNG_SIDE}; choose a smaller resolution"
        )));
    }
    let lut = cmap.lut();
    let fractions = r.fractions();
    crate::export::write_rgb_png(path, w, h, |push| {
        let mut line = vec![0u8; w * 3];
        for y in 0..r.height {
            for x in 0..r.width {
                let c = lut[(fractions[y * r.width + x] * 255.0).round() as usize];
                for px in line[x * s * 3..(x + 1) * s * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&c);
                }
            }
            for _ in 0..s {
                push(&line)?;
            }
        }
        Ok(())
    })
}

/// How one layer's rows are assembled from O(1) terms.
#[derive(Clone, Debug)]
enum Plan {
    /// Residue class `j ≡ i (mod k)` (if `k`), union window `|i − j| ≤ w` (if `w`).
    /// Covers dense (k = 1), local, atrous, sparse and strided (k = L, w = L − 1, causal).
    Lattice {
        k: Option<usize>,
        w: Option<usize>,
        causal: bool,
    },
    /// Same block of `l`, or a summary column (`j mod l ≥ l − c`).
    Fixed { l: usize, c: usize, causal: bool },
    /// Window `w`, `g` global rows and columns.
    Longformer { w: usize, g: usize, causal: bool },
    /// Any other expression: each row's keys from the pattern, as runs of consecutive keys
    /// (O(row nnz) per row and layer).
    Keys(Box<Pattern>),
    /// Key runs `[a, b]` allowed to each block row of size `b` (without the causal mask).
    BigBird {
        b: usize,
        runs: Vec<Vec<(usize, usize)>>,
        causal: bool,
    },
}

impl Plan {
    fn new(p: &Pattern) -> Result<Self, ReachError> {
        let causal = p.is_causal();
        let (k, w) = (p.stride(), p.window());
        Ok(match p.kind() {
            PatternKind::Dense => Plan::Lattice {
                k: Some(1),
                w: None,
                causal,
            },
            PatternKind::Local => Plan::Lattice {
                k: None,
                w: Some(w),
                causal,
            },
            PatternKind::Atrous => Plan::Lattice {
                k: Some(k),
                w: None,
                causal,
            },
            PatternKind::Sparse => Plan::Lattice {
                k: Some(k),
                w: Some(w),
                causal,
            },
            // (i − j) < L or (i − j) mod L == 0, causal: a sparse pattern with w = L − 1.
            PatternKind::Strided => Plan::Lattice {
                k: Some(k),
                w: Some(k - 1),
                causal: true,
            },
            PatternKind::Fixed => Plan::Fixed {
                l: k,
                c: p.summary(),
                causal,
            },
            PatternKind::Longformer => Plan::Longformer {
                w,
                g: p.global(),
                causal,
            },
            PatternKind::Bigbird => {
                // Rows of one block row share their keys; take them from the pattern without
                // its causal mask and clip per row.
                let mut params = p.params().clone();
                params.causal = false;
                let open = params.build()?;
                let b = p.bigbird_block();
                let n = p.n();
                let mut keys = Vec::new();
                let runs = (0..n.div_ceil(b))
                    .map(|bi| {
                        open.row_keys(bi * b, &mut keys);
                        key_runs(&keys)
                    })
                    .collect();
                Plan::BigBird { b, runs, causal }
            }
            PatternKind::Custom => Plan::Keys(Box::new(p.clone())),
        })
    }
}

/// Maximal runs `[a, b]` of consecutive keys in a sorted list.
fn key_runs(keys: &[u32]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &j in keys {
        let j = j as usize;
        match runs.last_mut() {
            Some((_, b)) if *b + 1 == j => *b = j,
            _ => runs.push((j, j)),
        }
    }
    runs
}

/// Pixel geometry of the heatmaps (same edges as [`Raster::build`]).
struct RasterGeom {
    side: usize,
    edges: Vec<usize>,
    /// Pixel row of each query.
    row_of: Vec<u32>,
}

impl RasterGeom {
    fn new(n: usize, side: usize) -> Self {
        let edges: Vec<usize> = (0..=side)
            .map(|t| ((t as u128 * n as u128) / side as u128) as usize)
            .collect();
        let mut row_of = vec![0u32; n];
        for y in 0..side {
            for r in &mut row_of[edges[y]..edges[y + 1]] {
                *r = y as u32;
            }
        }
        Self {
            side,
            edges,
            row_of,
        }
    }

    fn empty_raster(&self) -> Raster {
        Raster {
            n: *self.edges.last().unwrap_or(&0),
            width: self.side,
            height: self.side,
            counts: vec![0; self.side * self.side],
            col_edges: self.edges.clone(),
            row_edges: self.edges.clone(),
        }
    }
}

/// Shared, read-only inputs of every chunk.
struct Job<'a> {
    n: usize,
    plans: &'a [Plan],
    layers: usize,
    max_layers: usize,
    geom: Option<&'a RasterGeom>,
    cancel: &'a AtomicBool,
}

/// What one chunk of keys contributes.
struct ChunkResult {
    /// Reachable pairs in this chunk's columns, per layer 0..=max_layers.
    counts: Vec<u64>,
    /// First pixel column touched by the chunk.
    x_lo: usize,
    /// One past the last pixel column touched.
    x_hi: usize,
    /// Per reported layer: `side × (x_hi − x_lo)` counts, row-major.
    strips: Vec<Vec<u64>>,
}

/// Per-thread buffers, reused across chunks.
struct Scratch {
    cur: Vec<Row>,
    next: Vec<Row>,
    snapshot: Vec<Row>,
    class: Vec<Row>,
    range: RangeOr,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Self {
            cur: vec![[0; CW]; n],
            next: vec![[0; CW]; n],
            snapshot: vec![[0; CW]; n],
            class: Vec::new(),
            range: RangeOr::new(n),
        }
    }
}

impl Job<'_> {
    /// Pushes keys `c·512 ..` through every layer; `None` when cancelled.
    fn run_chunk(&self, c: usize, s: &mut Scratch) -> Option<ChunkResult> {
        let mut chunk = self.start_chunk(c, s);
        while !self.advance(&mut chunk, s, usize::MAX)? {}
        Some(chunk.into_result())
    }

    /// Keys `c·512 ..` at layer 0 (the identity), in `s`.
    fn start_chunk(&self, c: usize, s: &mut Scratch) -> Chunk {
        let n = self.n;
        let k0 = c * CHUNK_KEYS;
        let k1 = (k0 + CHUNK_KEYS).min(n);
        // R_0 = identity restricted to this chunk's columns.
        for row in s.cur.iter_mut() {
            *row = [0; CW];
        }
        for j in k0..k1 {
            let b = j - k0;
            s.cur[j][b / 64] |= 1u64 << (b % 64);
        }
        s.snapshot.copy_from_slice(&s.cur);
        let segs: Vec<(usize, usize, usize)> = match self.geom {
            Some(g) => (0..g.side)
                .filter_map(|x| {
                    let (a, b) = (g.edges[x].max(k0), g.edges[x + 1].min(k1));
                    (a < b).then(|| (x, a - k0, b - k0))
                })
                .collect(),
            None => Vec::new(),
        };
        let x_lo = segs.first().map_or(0, |s| s.0);
        let x_hi = segs.last().map_or(0, |s| s.0 + 1);
        let mut counts = vec![0u64; self.max_layers + 1];
        counts[0] = (k1 - k0) as u64;
        Chunk {
            segs,
            x_lo,
            x_hi,
            counts,
            strips: Vec::new(),
            next_layer: 1,
        }
    }

    /// Pushes `chunk` (its state in `s`) through up to `layers` more layers: `Some(true)` once
    /// it has been through every layer, `None` when cancelled.
    fn advance(&self, chunk: &mut Chunk, s: &mut Scratch, layers: usize) -> Option<bool> {
        let n = self.n;
        let width = chunk.x_hi - chunk.x_lo;
        let period = self.plans.len();
        let last = chunk.next_layer.saturating_add(layers);
        while chunk.next_layer <= self.max_layers {
            let l = chunk.next_layer;
            if l >= last {
                return Some(false);
            }
            if self.cancel.load(Ordering::Relaxed) {
                return None;
            }
            let plan = &self.plans[(l - 1) % period];
            step(plan, n, &s.cur, &mut s.next, &mut s.range, &mut s.class);
            std::mem::swap(&mut s.cur, &mut s.next);
            chunk.counts[l] = s.cur.iter().map(popcount).sum();
            if let (Some(g), true) = (self.geom, l <= self.layers) {
                let mut strip = vec![0u64; g.side * width];
                for (i, row) in s.cur.iter().enumerate() {
                    let y = g.row_of[i] as usize;
                    for &(x, a, b) in &chunk.segs {
                        strip[y * width + x - chunk.x_lo] += popcount_bits(row, a, b);
                    }
                }
                chunk.strips.push(strip);
            }
            if l % period == 0 {
                if s.cur == s.snapshot {
                    // A full cycle changed nothing: every later layer repeats the last cycle.
                    for t in l + 1..=self.max_layers {
                        chunk.counts[t] = chunk.counts[t - period];
                        if self.geom.is_some() && t <= self.layers {
                            chunk.strips.push(chunk.strips[t - period - 1].clone());
                        }
                    }
                    chunk.next_layer = self.max_layers + 1;
                    break;
                }
                s.snapshot.copy_from_slice(&s.cur);
            }
            chunk.next_layer = l + 1;
        }
        Some(true)
    }
}

/// A chunk part-way through the layers (its bit state is in a [`Scratch`]).
struct Chunk {
    /// `(pixel column, first key, one past the last key)` of the chunk's keys per column.
    segs: Vec<(usize, usize, usize)>,
    x_lo: usize,
    x_hi: usize,
    counts: Vec<u64>,
    strips: Vec<Vec<u64>>,
    /// The next layer to compute (1-based; past `max_layers` when done).
    next_layer: usize,
}

impl Chunk {
    fn into_result(self) -> ChunkResult {
        ChunkResult {
            counts: self.counts,
            x_lo: self.x_lo,
            x_hi: self.x_hi,
            strips: self.strips,
        }
    }
}

#[inline]
fn popcount(r: &Row) -> u64 {
    r.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// Set bits of `r` at positions `a..b` (bit `t` = word `t / 64`, bit `t % 64`).
#[inline]
fn popcount_bits(r: &Row, a: usize, b: usize) -> u64 {
    let mut total = 0u64;
    let mut t = a;
    while t < b {
        let w = t / 64;
        let lo = t % 64;
        let hi = (b - w * 64).min(64);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        total += u64::from((r[w] & mask).count_ones());
        t = w * 64 + hi;
    }
    total
}

#[inline]
fn or_into(a: &mut Row, b: &Row) {
    for t in 0..CW {
        a[t] |= b[t];
    }
}

#[inline]
fn or(a: &Row, b: &Row) -> Row {
    let mut r = *a;
    or_into(&mut r, b);
    r
}

/// One layer: `out[i] = OR over m in row(i) of cur[m]`, term by term.
fn step(
    plan: &Plan,
    n: usize,
    cur: &[Row],
    out: &mut [Row],
    range: &mut RangeOr,
    class: &mut Vec<Row>,
) {
    match *plan {
        Plan::Lattice { k, w, causal } => {
            match k {
                Some(k) if causal => {
                    // Running OR along each residue class: C[i] = cur[i] | C[i − k].
                    for i in 0..n {
                        out[i] = if i >= k {
                            or(&cur[i], &out[i - k])
                        } else {
                            cur[i]
                        };
                    }
                }
                Some(k) => {
                    class.clear();
                    class.resize(k.min(n), [0; CW]);
                    for (m, row) in cur.iter().enumerate() {
                        or_into(&mut class[m % k], row);
                    }
                    for (i, o) in out.iter_mut().enumerate() {
                        *o = class[i % k];
                    }
                }
                None => out.fill([0; CW]),
            }
            if let Some(w) = w {
                range.build(cur);
                for (i, o) in out.iter_mut().enumerate() {
                    let hi = if causal { i } else { (i + w).min(n - 1) };
                    or_into(o, &range.query(cur, i.saturating_sub(w), hi));
                }
            }
        }
        Plan::Fixed { l, c, causal } => {
            range.build(cur);
            let is_summary = |m: usize| m % l >= l - c;
            if causal {
                let mut before = [0; CW];
                for bs in (0..n).step_by(l) {
                    let be = (bs + l).min(n);
                    for (i, o) in out.iter_mut().enumerate().take(be).skip(bs) {
                        *o = or(&range.query(cur, bs, i), &before);
                    }
                    for m in (bs..be).filter(|&m| is_summary(m)) {
                        or_into(&mut before, &cur[m]);
                    }
                }
            } else {
                let mut summary = [0; CW];
                for m in (0..n).filter(|&m| is_summary(m)) {
                    or_into(&mut summary, &cur[m]);
                }
                for (i, o) in out.iter_mut().enumerate() {
                    let bs = i - i % l;
                    *o = or(&range.query(cur, bs, (bs + l - 1).min(n - 1)), &summary);
                }
            }
        }
        Plan::Longformer { w, g, causal } => {
            range.build(cur);
            let g = g.min(n);
            let globals = if g > 0 {
                range.query(cur, 0, g - 1)
            } else {
                [0; CW]
            };
            let everything = range.query(cur, 0, n - 1);
            for (i, o) in out.iter_mut().enumerate() {
                *o = if i < g {
                    if causal {
                        range.query(cur, 0, i)
                    } else {
                        everything
                    }
                } else {
                    let hi = if causal { i } else { (i + w).min(n - 1) };
                    or(&range.query(cur, i.saturating_sub(w), hi), &globals)
                };
            }
        }
        Plan::Keys(ref p) => {
            range.build(cur);
            let mut keys = Vec::new();
            for (i, o) in out.iter_mut().enumerate() {
                p.row_keys(i, &mut keys);
                let mut acc = [0; CW];
                for (a, e) in key_runs(&keys) {
                    or_into(&mut acc, &range.query(cur, a, e));
                }
                *o = acc;
            }
        }
        Plan::BigBird {
            b,
            ref runs,
            causal,
        } => {
            range.build(cur);
            for (i, o) in out.iter_mut().enumerate() {
                let mut acc = [0; CW];
                for &(a, e) in &runs[i / b] {
                    let e = if causal { e.min(i) } else { e };
                    if a <= e {
                        or_into(&mut acc, &range.query(cur, a, e));
                    }
                }
                *o = acc;
            }
        }
    }
}

/// O(1) OR of any interval of rows: prefix and suffix ORs inside segments of `SEG` rows, and
/// a sparse table over whole segments (`table[t][x]` = OR of segments `x .. x + 2^t`).
/// `[a, b]` across segments = `suffix[a] | table(middle segments) | prefix[b]`; inside one
/// segment a prefix, a suffix, or (short interior intervals) a direct OR of < `SEG` rows.
struct RangeOr {
    n: usize,
    prefix: Vec<Row>,
    suffix: Vec<Row>,
    table: Vec<Vec<Row>>,
}

impl RangeOr {
    fn new(n: usize) -> Self {
        Self {
            n,
            prefix: vec![[0; CW]; n],
            suffix: vec![[0; CW]; n],
            table: Vec::new(),
        }
    }

    fn build(&mut self, cur: &[Row]) {
        let n = self.n;
        for (m, row) in cur.iter().enumerate().take(n) {
            self.prefix[m] = if m % SEG == 0 {
                *row
            } else {
                or(&self.prefix[m - 1], row)
            };
        }
        for m in (0..n).rev() {
            self.suffix[m] = if m == n - 1 || (m + 1) % SEG == 0 {
                cur[m]
            } else {
                or(&self.suffix[m + 1], &cur[m])
            };
        }
        let n_seg = n.div_ceil(SEG);
        let levels = usize::BITS as usize - n_seg.leading_zeros() as usize; // floor(log2) + 1
        self.table.resize_with(levels, Vec::new);
        let base = &mut self.table[0];
        base.clear();
        base.extend((0..n_seg).map(|x| self.prefix[((x + 1) * SEG).min(n) - 1]));
        for t in 1..levels {
            let (lower, upper) = self.table.split_at_mut(t);
            let prev = &lower[t - 1];
            let half = 1 << (t - 1);
            let len = n_seg + 1 - (1 << t);
            let cur_level = &mut upper[0];
            cur_level.clear();
            cur_level.extend((0..len).map(|x| or(&prev[x], &prev[x + half])));
        }
    }

    /// OR of `cur[a..=b]` (`a ≤ b < n`); `cur` must be the rows given to [`RangeOr::build`].
    #[inline]
    fn query(&self, cur: &[Row], a: usize, b: usize) -> Row {
        debug_assert!(a <= b && b < self.n);
        let (sa, sb) = (a / SEG, b / SEG);
        if sa == sb {
            if a % SEG == 0 {
                return self.prefix[b];
            }
            if b == self.n - 1 || (b + 1) % SEG == 0 {
                return self.suffix[a];
            }
            let mut r = cur[a];
            for row in &cur[a + 1..=b] {
                or_into(&mut r, row);
            }
            return r;
        }
        let mut r = or(&self.suffix[a], &self.prefix[b]);
        if sb > sa + 1 {
            let (x, y) = (sa + 1, sb - 1);
            let t = (usize::BITS - 1 - (y - x + 1).leading_zeros()) as usize;
            or_into(&mut r, &self.table[t][x]);
            or_into(&mut r, &self.table[t][y + 1 - (1 << t)]);
        }
        r
    }
}

#[cfg(test)]
mod tests;
