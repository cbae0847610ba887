//! The memory layout the tile engine and its AVX-512 micro-kernels share: block sizes, the
//! packed Q, K, V ([`Packed`]), the arguments of one micro-kernel call ([`GroupArgs`]) and the
//! vectorisable `exp2`. A leaf module: `engine.rs` and `avx512.rs` both import it, neither
//! imports the other's internals through it (see `engine.rs` for the algorithm).

// Micro-kernels index fixed-size lanes on purpose: it is what LLVM vectorises best.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;
use std::borrow::Cow;

/// Keys per packed panel (one 512-bit vector of f32).
pub(crate) const PANEL: usize = 16;
/// Keys per chunk handled by one micro-kernel call (4 panels).
pub(crate) const CHUNK: usize = 64;
/// Most panels of one micro-kernel call: a chunk's 4, or 5 where that saves a call (see
/// `engine::span`: a causal window of 64 keys needs 68 keys for 4 rows, i.e. 5 panels).
pub(crate) const WIDE: usize = 5;
/// Query rows per micro-kernel call.
pub(crate) const GROUP: usize = 4;
/// Query rows per parallel task (a query tile).
pub(crate) const TILE_ROWS: usize = 64;

/// `log2(e)`: scores are kept in base 2 so that softmax uses `exp2`.
pub(crate) const LOG2_E: f32 = std::f32::consts::LOG2_E;

/// `2^x` for `x ≤ 0` (exact 0 for `x ≤ −127`, including −∞), relative error ≈ 2e-7.
///
/// `x = n + f` with `n = round(x)` (by the 1.5·2²³ trick) and `f ∈ [−½, ½]`; `2^f` is a
/// degree-6 Taylor polynomial of `e^{f ln 2}` and `2^n` is built in the exponent bits. Only
/// float/integer lane operations, so LLVM vectorises loops of it.
#[inline(always)]
pub(crate) fn exp2(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    let x = x.clamp(-127.0, 127.0);
    let t = x + MAGIC;
    let n = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let f = x - (t - MAGIC);
    let p = 1.540_353e-4_f32;
    let p = p * f + 1.333_355_8e-3;
    let p = p * f + 9.618_129e-3;
    let p = p * f + 5.550_411e-2;
    let p = p * f + 0.240_226_5;
    let p = p * f + std::f32::consts::LN_2;
    let p = p * f + 1.0;
    let bits = ((n + 127).max(0) as u32) << 23;
    p * f32::from_bits(bits)
}

/// Q, K, V prepared for the tile engine (see the module docs for the layout).
pub(crate) struct Packed<'a> {
    /// Keys (the sequence length when the whole input is packed).
    pub n: usize,
    /// Head dimension.
    pub d: usize,
    /// Q · scale · log2(e), `(query rows + GROUP) × d`, padding rows zero; or Q as it is,
    /// read in place, when `q_scale` is not 1 (then rows past the last query row are other
    /// queries' rows, whose results are never kept). Row `r` starts at `r · q_stride`.
    pub qs: Cow<'a, [f32]>,
    /// Factor of the scores `qs · k` (`scale · log2(e)` for a Q read in place, else 1).
    pub q_scale: f32,
    /// Floats from one row of `qs` to the next (`d`; `k · d` when a residue group's rows are
    /// read in place from the input).
    pub q_stride: usize,
    /// Kᵀ in panels of [`PANEL`] keys, `ceil(n / PANEL) · d · PANEL` floats.
    pub kt: Vec<f32>,
    /// V: row `j` is `v[j · v_stride ..][..d]`.
    pub v: Cow<'a, [f32]>,
    /// Floats from one row of `v` to the next (`d` when packed; `k · d` when a residue group
    /// is read in place from the input).
    pub v_stride: usize,
}

impl<'a> Packed<'a> {
    /// Packs `q`, `k`, `v` (each `(n, d)`) with softmax scale `scale`.
    pub fn new(
        q: ndarray::ArrayView2<'_, f32>,
        k: ndarray::ArrayView2<'_, f32>,
        v: ndarray::ArrayView2<'a, f32>,
        scale: f32,
    ) -> Self {
        let (n, d) = q.dim();
        let v = match v.to_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(v.iter().copied().collect()),
        };
        Self {
            n,
            d,
            qs: Cow::Owned(pack_q(q, scale)),
            q_scale: 1.0,
            q_stride: d,
            kt: pack_kt(k),
            v,
            v_stride: d,
        }
    }
}

/// Q · scale · log2(e), `(n + GROUP) × d` (GROUP spare zero rows: a tile starting anywhere may
/// read a whole last group); in parallel.
fn pack_q(q: ndarray::ArrayView2<'_, f32>, scale: f32) -> Vec<f32> {
    let (n, d) = q.dim();
    let q = q.as_standard_layout();
    let src = q.as_slice().expect("standard layout");
    let mut qs = vec![0f32; (n + GROUP) * d];
    let f = scale * LOG2_E;
    qs[..n * d]
        .par_chunks_mut(d)
        .enumerate()
        .for_each(|(a, dst)| {
            for (x, y) in dst.iter_mut().zip(&src[a * d..(a + 1) * d]) {
                *x = y * f;
            }
        });
    qs
}

/// Kᵀ in panels of [`PANEL`] keys; in parallel over panels.
fn pack_kt(k: ndarray::ArrayView2<'_, f32>) -> Vec<f32> {
    let (n, d) = k.dim();
    let k = k.as_standard_layout();
    let src = k.as_slice().expect("standard layout");
    let panels = n.div_ceil(PANEL);
    let mut kt = vec![0f32; panels * d * PANEL];
    kt.par_chunks_mut(d * PANEL)
        .enumerate()
        .for_each(|(p, dst)| {
            for x in 0..PANEL.min(n - p * PANEL) {
                let i = p * PANEL + x;
                for (c, y) in src[i * d..(i + 1) * d].iter().enumerate() {
                    dst[c * PANEL + x] = *y;
                }
            }
        });
    kt
}

/// Arguments of one micro-kernel call.
pub(crate) struct GroupArgs<'p, 'a> {
    /// The packed inputs.
    pub pk: &'p Packed<'a>,
    /// First of the 4 query rows in `pk.qs`.
    pub q_row: usize,
    /// Panel-aligned first key of the chunk window.
    pub ja: usize,
    /// First key of the chunk.
    pub lo: usize,
    /// One past the last key of the chunk.
    pub hi: usize,
    /// Per-row allowed-key words (bit x = key ja + x, up to [`WIDE`] panels), if masked.
    pub bits: Option<[u128; GROUP]>,
    /// Send every cell through the mask select.
    pub always_mask: bool,
    /// Keys spliced into lanes of one of the call's panels, if any.
    pub splice: Option<Splice<'p>>,
}

/// Keys spliced into a call's panel: lanes no row of the call's group sees (keys outside every
/// row's band, next to it) carry a few other keys instead — sink columns — so that those need
/// no panel, and no call, of their own. The panels themselves are not changed: the kernel
/// takes these lanes' Kᵀ and V from here.
#[derive(Clone, Copy)]
pub(crate) struct Splice<'p> {
    /// Packed position of the first spliced lane; the keys fill `count` lanes from there,
    /// inside one panel.
    pub at: usize,
    /// Spliced keys, `1 ..= PANEL`.
    pub count: usize,
    /// Kᵀ of the spliced keys: `d` rows of [`PANEL`] floats, key `x` in lane `x`.
    pub kt: &'p [f32],
    /// V of the spliced keys: key `x`'s row at `x · d`.
    pub v: &'p [f32],
}

impl Splice<'_> {
    /// Whether packed position `j` is a spliced lane.
    #[inline(always)]
    pub fn holds(&self, j: usize) -> bool {
        j >= self.at && j < self.at + self.count
    }
}
