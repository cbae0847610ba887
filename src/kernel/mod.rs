//! How attention is computed: one trait ([`AttentionKernel`]) and five implementations of
//! `O = softmax(scale · Q Kᵀ + mask) V` for one head, plus the naive reference.
//!
//! | kernel | work (score cells) | how |
//! |---|---|---|
//! | [`KernelKind::Dense`] | n² | tiled, streaming online softmax, ignores the pattern (the baseline) |
//! | [`KernelKind::Masked`] | n² | the same with a per-cell boolean mask (PyTorch SDPA with a mask) |
//! | [`KernelKind::Csr`] | nnz | per query, only its allowed keys, gathered |
//! | [`KernelKind::Block`] | visited blocks | block-sparse tiles: empty skipped, full unmasked, partial masked |
//! | [`KernelKind::Permuted`] | band + residue groups | local band in token order; atrous part with tokens reordered by `i mod k`, where it is dense |
//!
//! Every kernel keeps memory O(n·d) (plus the pattern's layout for `block`), runs query tiles in
//! parallel on the current rayon pool, and uses the AVX-512 or AVX2 code path when the CPU has
//! one (see [`simd_path`]).
//!
//! ```
//! use attnscope::inputs::{generate, InputKind};
//! use attnscope::kernel::{max_rel_err, reference, run_kernel, KernelKind};
//! use attnscope::pattern::{PatternKind, PatternParams};
//!
//! let p = PatternParams::new(PatternKind::Sparse, 100).stride(8).window(3).build()?;
//! let qkv = generate(InputKind::Random { seed: 1 }, 100, 16);
//! let want = reference(&p, &qkv, None);
//! for kind in KernelKind::ALL.into_iter().filter(|k| *k != KernelKind::Dense) {
//!     let got = run_kernel(kind, &p, &qkv, None, 64)?;
//!     assert!(max_rel_err(&got, &want) < 1e-4);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(target_arch = "x86_64")]
mod avx512;
mod block;
mod csr;
mod dense;
mod engine;
mod layout;
mod permuted;
#[cfg(test)]
mod tests;

pub use engine::simd_path;

use crate::inputs::{InputError, Qkv};
use crate::pattern::{BlockStats, Pattern, PatternError};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// Largest n for which [`attention_weights`] builds the `n × n` matrix.
pub const MAX_WEIGHTS_N: usize = 4096;

/// The kernels attnscope implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum KernelKind {
    /// Full attention, tiled and streaming (online softmax): n² cells, the pattern is ignored.
    Dense,
    /// Dense work with the pattern applied as a per-cell boolean mask: n² cells.
    Masked,
    /// Per query, only its allowed keys (gathered): nnz cells.
    Csr,
    /// Block-sparse tiles of the block layout: cells of every non-empty block.
    Block,
    /// Local band in token order plus the atrous part in `i mod k` order (local, atrous, sparse,
    /// strided and dense patterns only).
    Permuted,
}

impl KernelKind {
    /// Every kernel, in display order.
    pub const ALL: [KernelKind; 5] = [
        KernelKind::Dense,
        KernelKind::Masked,
        KernelKind::Csr,
        KernelKind::Block,
        KernelKind::Permuted,
    ];

    /// Lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Dense => "dense",
            KernelKind::Masked => "masked",
            KernelKind::Csr => "csr",
            KernelKind::Block => "block",
            KernelKind::Permuted => "permuted",
        }
    }

    /// Parses a lowercase kernel name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this kernel computes every one of the n² cells whatever the pattern.
    pub fn is_dense_work(self) -> bool {
        matches!(self, KernelKind::Dense | KernelKind::Masked)
    }

    /// Whether this kernel can run pattern `p` (only [`KernelKind::Permuted`] is restricted).
    pub fn supports(self, p: &Pattern) -> bool {
        self != KernelKind::Permuted || permuted::Plan::of(p).is_some()
    }
}

impl std::fmt::Display for KernelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a kernel could not run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The inputs are empty or Q, K, V disagree.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The pattern's n differs from the inputs' n.
    #[error(
        "the pattern has n = {pattern_n} but the inputs have n = {input_n} rows; they must agree"
    )]
    LengthMismatch {
        /// n of the pattern.
        pattern_n: usize,
        /// Rows of Q.
        input_n: usize,
    },
    /// The kernel does not handle this pattern.
    #[error("kernel {kernel} does not handle the pattern {pattern}; it runs unions of one band (window, same block or BigBird window blocks), residue classes, up to 4096 sink columns or global rows, and periodic columns, optionally & causal: local, atrous, sparse, strided, dense, fixed, longformer, bigbird without random blocks, with sinks (use csr or block)")]
    Unsupported {
        /// Kernel name.
        kernel: &'static str,
        /// Pattern label.
        pattern: String,
    },
    /// The scale is not a finite number.
    #[error("scale {0} is not a finite number")]
    BadScale(f32),
    /// A result would be too large.
    #[error("{what} needs n ≤ {limit}, got n = {n}")]
    TooLarge {
        /// What was asked.
        what: &'static str,
        /// n asked for.
        n: usize,
        /// Largest n accepted.
        limit: usize,
    },
    /// Memory for the output or a working copy could not be reserved.
    #[error(transparent)]
    OutOfMemory(#[from] crate::memory::OutOfMemory),
    /// A layout of the pattern could not be built.
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// One attention kernel (candle-style: each implementation is a small struct).
pub trait AttentionKernel: Send + Sync {
    /// Which kernel this is.
    fn kind(&self) -> KernelKind;

    /// Score cells this kernel executes for `p` as the contract counts them (executed FLOPs
    /// = 4 · d · cells, docs/contract.md §2): n² for dense and masked, nnz for csr, the cells
    /// of the visited blocks for block, and for permuted the cells it computes
    /// ([`AttentionKernel::computed_cells`]).
    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError>;

    /// Score cells [`AttentionKernel::forward_counted`] computes for `p`, exactly, padding
    /// included: the micro-kernels score 4 query rows × whole 16-key panels, so a tile's
    /// last rows and a range's partial panels count in full.
    fn computed_cells(&self, p: &Pattern) -> Result<u64, KernelError>;

    /// `softmax(scale · Q Kᵀ + mask) V` as `(n, d)`, and the score cells the inner loops
    /// actually computed (counted as they run); `qkv` is validated and matches `p.n()`,
    /// `scale` is finite.
    fn forward_counted(
        &self,
        p: &Pattern,
        qkv: &Qkv,
        scale: f32,
    ) -> Result<(Array2<f32>, u64), KernelError>;

    /// [`AttentionKernel::forward_counted`]'s output alone.
    fn forward(&self, p: &Pattern, qkv: &Qkv, scale: f32) -> Result<Array2<f32>, KernelError> {
        Ok(self.forward_counted(p, qkv, scale)?.0)
    }
}

/// The implementation of `kind`; `block` is the tile size of the block kernel.
pub fn kernel(kind: KernelKind, block: usize) -> Box<dyn AttentionKernel> {
    match kind {
        KernelKind::Dense => Box::new(dense::Dense),
        KernelKind::Masked => Box::new(dense::Masked),
        KernelKind::Csr => Box::new(csr::Csr),
        KernelKind::Block => Box::new(block::Block { block }),
        KernelKind::Permuted => Box::new(permuted::Permuted),
    }
}

/// The softmax scale: `scale` if given, else `1 / sqrt(d)`.
pub fn effective_scale(scale: Option<f32>, d: usize) -> Result<f32, KernelError> {
    match scale {
        Some(s) if !s.is_finite() => Err(KernelError::BadScale(s)),
        Some(s) => Ok(s),
        None => Ok(1.0 / (d.max(1) as f32).sqrt()),
    }
}

/// Checks the inputs against the pattern.
fn check(p: &Pattern, qkv: &Qkv) -> Result<(), KernelError> {
    qkv.validate()?;
    if qkv.n() != p.n() {
        return Err(KernelError::LengthMismatch {
            pattern_n: p.n(),
            input_n: qkv.n(),
        });
    }
    Ok(())
}

/// Runs kernel `kind` on pattern `p` (block size `block` for the block kernel) on the current
/// rayon pool; `scale` defaults to `1 / sqrt(d)`.
pub fn run_kernel(
    kind: KernelKind,
    p: &Pattern,
    qkv: &Qkv,
    scale: Option<f32>,
    block: usize,
) -> Result<Array2<f32>, KernelError> {
    check(p, qkv)?;
    check_plan(kind, p, block)?;
    check_memory(kind, qkv.n(), qkv.d())?;
    let scale = effective_scale(scale, qkv.d())?;
    kernel(kind, block).forward(p, qkv, scale)
}

/// [`run_kernel`], also returning the score cells the kernel's inner loops computed.
pub fn run_kernel_counted(
    kind: KernelKind,
    p: &Pattern,
    qkv: &Qkv,
    scale: Option<f32>,
    block: usize,
) -> Result<(Array2<f32>, u64), KernelError> {
    check(p, qkv)?;
    check_plan(kind, p, block)?;
    check_memory(kind, qkv.n(), qkv.d())?;
    let scale = effective_scale(scale, qkv.d())?;
    kernel(kind, block).forward_counted(p, qkv, scale)
}

/// Checks, before any work, that kernel `kind` can lay out `p` within its memory limits (the
/// block kernel's tile list, [`crate::pattern::check_layout`]).
pub fn check_plan(kind: KernelKind, p: &Pattern, block: usize) -> Result<(), KernelError> {
    if kind == KernelKind::Block {
        crate::pattern::check_layout(p, block)?;
    }
    Ok(())
}

/// Checks, before any work, that the buffers kernel `kind` allocates on `n × d` inputs can be
/// reserved: the output and the packed copies of Q and Kᵀ, `3 · n · d` floats.
pub fn check_memory(kind: KernelKind, n: usize, d: usize) -> Result<(), KernelError> {
    let bytes = 3 * (n as u64).saturating_mul(d as u64).saturating_mul(4);
    crate::memory::check_available(
        bytes,
        format!("kernel {}'s output and working copies", kind.name()),
    )?;
    Ok(())
}

/// Score cells kernel `kind` executes on `p` as the contract counts them (0 when it cannot
/// run `p`).
pub fn executed_cells(kind: KernelKind, p: &Pattern, block: usize) -> u64 {
    kernel(kind, block).executed_cells(p).unwrap_or(0)
}

/// Score cells kernel `kind` computes on `p`, padding included (0 when it cannot run `p`).
pub fn computed_cells(kind: KernelKind, p: &Pattern, block: usize) -> u64 {
    kernel(kind, block).computed_cells(p).unwrap_or(0)
}

/// Rows `rows` in groups of [`engine::GROUP`], padded: what the micro-kernels compute.
fn padded_rows(rows: usize) -> u64 {
    (rows.div_ceil(engine::GROUP) * engine::GROUP) as u64
}

/// Keys of the 16-key panels that `[j0, j1)` touches (panels aligned at multiples of 16).
fn panel_keys(j0: usize, j1: usize) -> u64 {
    if j1 <= j0 {
        return 0;
    }
    ((j1.div_ceil(engine::PANEL) - j0 / engine::PANEL) * engine::PANEL) as u64
}

/// Useful FLOPs of one head on `p` (docs/contract.md §2): `4 · d · nnz`.
pub fn flops_useful(p: &Pattern, d: usize) -> u64 {
    4 * d as u64 * p.nnz()
}

/// Cells a block-sparse kernel visits with block size `block`.
fn block_cells(p: &Pattern, block: usize) -> Result<u64, KernelError> {
    Ok(BlockStats::compute(p, block)?.cells_visited)
}

/// Naive reference, written for clarity: for each query `i`, the keys `j` with
/// `p.allows(i, j)`, scores in f64, softmax with the max subtracted, weighted sum of V.
/// A row without allowed keys is zero.
pub fn reference(p: &Pattern, qkv: &Qkv, scale: Option<f32>) -> Array2<f32> {
    let (n, d) = qkv.q.dim();
    let scale = scale.unwrap_or(1.0 / (d.max(1) as f32).sqrt()) as f64;
    let mut out = Array2::<f32>::zeros((n, d));
    out.outer_iter_mut()
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            let keys: Vec<usize> = (0..qkv.k.nrows()).filter(|&j| p.allows(i, j)).collect();
            let o = softmax_row(qkv, i, &keys, scale);
            for (dst, v) in row.iter_mut().zip(o) {
                *dst = v as f32;
            }
        });
    out
}

/// Reference output rows `rows` (f64), keys from [`Pattern::row_keys`] (all keys when `p` is
/// `None`): O(row nnz · d) per row, for checking kernels at large n on a sample of rows.
pub fn reference_rows(
    p: Option<&Pattern>,
    qkv: &Qkv,
    scale: Option<f32>,
    rows: &[usize],
) -> Vec<Vec<f64>> {
    let (n, d) = qkv.q.dim();
    let scale = scale.unwrap_or(1.0 / (d.max(1) as f32).sqrt()) as f64;
    rows.par_iter()
        .map(|&i| {
            let keys: Vec<usize> = match p {
                Some(p) => {
                    let mut buf = Vec::new();
                    p.row_keys(i, &mut buf);
                    buf.into_iter().map(|j| j as usize).collect()
                }
                None => (0..n).collect(),
            };
            softmax_row(qkv, i, &keys, scale)
        })
        .collect()
}

/// `Σ_j softmax(scale · q_i · k_j) v_j` over `keys`, in f64.
fn softmax_row(qkv: &Qkv, i: usize, keys: &[usize], scale: f64) -> Vec<f64> {
    let d = qkv.q.ncols();
    let q = qkv.q.row(i);
    let scores: Vec<f64> = keys
        .iter()
        .map(|&j| {
            let k = qkv.k.row(j);
            scale
                * q.iter()
                    .zip(k.iter())
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
        })
        .collect();
    let mut out = vec![0f64; d];
    let Some(max) = scores.iter().copied().reduce(f64::max) else {
        return out;
    };
    let mut total = 0f64;
    for (&j, s) in keys.iter().zip(&scores) {
        let e = (s - max).exp();
        total += e;
        for (o, v) in out.iter_mut().zip(qkv.v.row(j)) {
            *o += e * *v as f64;
        }
    }
    for o in &mut out {
        *o /= total;
    }
    out
}

/// Normwise relative error `max |got − want| / max |want|` (absolute when `want` is zero);
/// NaN anywhere gives infinity. Normwise, so an output entry near zero (a cancelling average)
/// is judged against the output's scale, as `numpy.allclose` with `atol` would.
pub fn max_rel_err(got: &Array2<f32>, want: &Array2<f32>) -> f64 {
    let g: Vec<f64> = got.iter().map(|&x| x as f64).collect();
    let w: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    rel_err(&g, &w)
}

/// [`max_rel_err`] of rows `rows` of `got` against [`reference_rows`] output.
pub fn max_rel_err_rows(got: ArrayView2<'_, f32>, rows: &[usize], want: &[Vec<f64>]) -> f64 {
    let g: Vec<f64> = rows
        .iter()
        .flat_map(|&i| got.row(i).iter().map(|&x| x as f64).collect::<Vec<_>>())
        .collect();
    let w: Vec<f64> = want.iter().flatten().copied().collect();
    rel_err(&g, &w)
}

/// `max |g − w| / max |w|`, or `max |g − w|` when `w` is zero; NaN gives infinity.
fn rel_err(g: &[f64], w: &[f64]) -> f64 {
    let diff = g
        .iter()
        .zip(w)
        .map(|(a, b)| (a - b).abs())
        .fold(
            0.0,
            |m: f64, x| if x.is_nan() { f64::INFINITY } else { m.max(x) },
        );
    let norm = w.iter().fold(0.0, |m: f64, x| m.max(x.abs()));
    if norm > 0.0 {
        diff / norm
    } else {
        diff
    }
}

/// The `n × n` softmax probabilities (row = query, column = key), masked by `p` (dense when
/// `None`); rows without an allowed key are zero. Refuses `n >` [`MAX_WEIGHTS_N`].
pub fn attention_weights(
    p: Option<&Pattern>,
    qkv: &Qkv,
    scale: Option<f32>,
) -> Result<Array2<f32>, KernelError> {
    qkv.validate()?;
    let (n, d) = qkv.q.dim();
    if let Some(p) = p {
        check(p, qkv)?;
    }
    if n > MAX_WEIGHTS_N {
        return Err(KernelError::TooLarge {
            what: "the attention-weight matrix",
            n,
            limit: MAX_WEIGHTS_N,
        });
    }
    let scale = effective_scale(scale, d)? as f64;
    let mut out = Array2::<f32>::zeros((n, n));
    out.outer_iter_mut()
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut row)| {
            let q = qkv.q.row(i);
            let allowed = |j: usize| p.is_none_or(|p| p.allows(i, j));
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    if allowed(j) {
                        let k = qkv.k.row(j);
                        scale
                            * q.iter()
                                .zip(k.iter())
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum::<f64>()
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max == f64::NEG_INFINITY {
                return;
            }
            let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for (o, s) in row.iter_mut().zip(&scores) {
                *o = ((s - max).exp() / total) as f32;
            }
        });
    Ok(out)
}
