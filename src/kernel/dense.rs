//! `dense` and `masked`: every query tile against every key chunk (n² cells).
//!
//! FlashAttention's loop order: a parallel task owns 64 query rows and streams all keys past
//! them in chunks of 64, keeping only the running max, sum and output accumulator of its rows
//! (O(64 · d) memory per task). `masked` first turns each of its query rows into a bit set of
//! allowed keys (from [`Pattern::row_keys`]) and then does the same work, sending every cell
//! through the mask select, as a framework does with a boolean mask.

use super::engine::{
    chunk, chunks, dispatch, Arith, Cells, Packed, TileState, Work, CHUNK, TILE_ROWS,
};
use super::{padded_rows, panel_keys, AttentionKernel, KernelError, KernelKind};
use crate::inputs::Qkv;
use crate::pattern::Pattern;
use ndarray::Array2;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// The dense kernel (ignores the pattern).
pub(crate) struct Dense;

/// The masked-dense kernel.
pub(crate) struct Masked;

/// One query tile of the dense / masked kernels.
struct DenseTile<'p, 'a, 'o> {
    pk: &'p Packed<'a>,
    i0: usize,
    out: &'o mut [f32],
    /// `rows × words_per_row` bit sets of allowed keys (masked kernel only).
    mask: Option<(&'p [u64], usize)>,
}

impl Work for DenseTile<'_, '_, '_> {
    /// Score cells computed.
    type Out = u64;

    #[inline(always)]
    fn run<A: Arith>(self) -> u64 {
        let d = self.pk.d;
        let rows = self.out.len() / d;
        let mut st = TileState::new(rows, d);
        let mut words = vec![0u64; rows];
        for (ja, lo, hi) in chunks(0, self.pk.n) {
            match self.mask {
                None => chunk::<A>(self.pk, &mut st, self.i0, ja, lo, hi, None, Cells::Chunk),
                Some((bits, per_row)) => {
                    for (r, w) in words.iter_mut().enumerate() {
                        *w = bits[r * per_row + ja / CHUNK];
                    }
                    chunk::<A>(
                        self.pk,
                        &mut st,
                        self.i0,
                        ja,
                        lo,
                        hi,
                        Some(&words),
                        Cells::AlwaysMask,
                    )
                }
            }
        }
        st.finish(self.out, d);
        st.cells
    }
}

/// Runs every query tile of `qkv` in parallel; `mask_of(i0, rows, buf)` fills the bit sets of
/// a tile (or returns false for no mask).
fn run_tiles(
    qkv: &Qkv,
    scale: f32,
    masked: Option<&Pattern>,
) -> Result<(Array2<f32>, u64), KernelError> {
    let (n, d) = qkv.q.dim();
    let pk = Packed::new(qkv.q.view(), qkv.k.view(), qkv.v.view(), scale);
    let mut out = vec![0f32; n * d];
    let per_row = n.div_ceil(CHUNK);
    let cells = AtomicU64::new(0);
    out.par_chunks_mut(TILE_ROWS * d).enumerate().for_each_init(
        || (Vec::<u64>::new(), Vec::<u32>::new()),
        |(bits, keys), (t, o)| {
            let i0 = t * TILE_ROWS;
            let rows = o.len() / d;
            let mask = masked.map(|p| {
                bits.clear();
                bits.resize(rows * per_row, 0);
                for r in 0..rows {
                    p.row_keys(i0 + r, keys);
                    let row = &mut bits[r * per_row..(r + 1) * per_row];
                    for &j in keys.iter() {
                        row[j as usize / 64] |= 1u64 << (j % 64);
                    }
                }
                (bits.as_slice(), per_row)
            });
            let c = dispatch(DenseTile {
                pk: &pk,
                i0,
                out: o,
                mask,
            });
            cells.fetch_add(c, Ordering::Relaxed);
        },
    );
    let out = Array2::from_shape_vec((n, d), out).expect("n × d output");
    Ok((out, cells.into_inner()))
}

/// Cells [`run_tiles`] computes: every tile's rows (padded to groups of 4) × every key
/// (padded to whole panels).
fn tile_cells(n: usize) -> u64 {
    let tiles = (0..n).step_by(TILE_ROWS);
    tiles
        .map(|i0| padded_rows((n - i0).min(TILE_ROWS)))
        .sum::<u64>()
        * panel_keys(0, n)
}

impl AttentionKernel for Dense {
    fn kind(&self) -> KernelKind {
        KernelKind::Dense
    }

    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(p.n() as u64 * p.n() as u64)
    }

    fn computed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(tile_cells(p.n()))
    }

    fn forward_counted(
        &self,
        _p: &Pattern,
        qkv: &Qkv,
        scale: f32,
    ) -> Result<(Array2<f32>, u64), KernelError> {
        run_tiles(qkv, scale, None)
    }
}

impl AttentionKernel for Masked {
    fn kind(&self) -> KernelKind {
        KernelKind::Masked
    }

    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(p.n() as u64 * p.n() as u64)
    }

    fn computed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(tile_cells(p.n()))
    }

    fn forward_counted(
        &self,
        p: &Pattern,
        qkv: &Qkv,
        scale: f32,
    ) -> Result<(Array2<f32>, u64), KernelError> {
        run_tiles(qkv, scale, Some(p))
    }
}
