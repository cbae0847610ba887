//! `block`: block-sparse attention over the pattern's [`BlockLayout`] (FlexAttention style).
//!
//! A parallel task owns one block row (B query rows). It walks the non-empty tiles of that row
//! in ascending key order: a full tile goes through the micro-kernel without any mask, a
//! partial tile with a per-row bit mask built from the rows' sorted key lists (one cursor per
//! row, so building all masks of a block row costs O(its nnz + its tiles · B)), and an empty
//! tile is never touched.

use super::engine::{chunk, chunks, dispatch, range_word, Arith, Cells, Packed, TileState, Work};
use super::{block_cells, padded_rows, panel_keys, AttentionKernel, KernelError, KernelKind};
use crate::inputs::Qkv;
use crate::pattern::{BlockKind, BlockLayout, Pattern};
use ndarray::Array2;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// The block-sparse kernel with block size `block`.
pub(crate) struct Block {
    /// Block size B.
    pub block: usize,
}

/// One block row.
struct BlockRow<'p, 'a, 'o> {
    pk: &'p Packed<'a>,
    p: &'p Pattern,
    layout: &'p BlockLayout,
    bi: usize,
    out: &'o mut [f32],
    keys: &'p mut Vec<Vec<u32>>,
}

impl Work for BlockRow<'_, '_, '_> {
    /// Score cells computed.
    type Out = u64;

    #[inline(always)]
    fn run<A: Arith>(self) -> u64 {
        let d = self.pk.d;
        let rows = self.layout.rows_of(self.bi);
        let nr = rows.len();
        let b = self.layout.block;
        let n = self.layout.n;
        let mut st = TileState::new(nr, d);
        let any_partial = self
            .layout
            .row(self.bi)
            .any(|(_, k, _)| k == BlockKind::Partial);
        let mut cursor = vec![0usize; nr];
        if any_partial {
            self.keys.resize_with(nr.max(self.keys.len()), Vec::new);
            for (r, i) in rows.clone().enumerate() {
                self.p.row_keys(i, &mut self.keys[r]);
            }
        }
        let mut words = vec![0u64; nr];
        for (bj, kind, _) in self.layout.row(self.bi) {
            let j0 = bj * b;
            let j1 = ((bj + 1) * b).min(n);
            for (ja, lo, hi) in chunks(j0, j1) {
                if kind == BlockKind::Full {
                    chunk::<A>(self.pk, &mut st, rows.start, ja, lo, hi, None, Cells::Chunk);
                    continue;
                }
                for (r, w) in words.iter_mut().enumerate() {
                    let keys = &self.keys[r];
                    let mut c = cursor[r];
                    while c < keys.len() && (keys[c] as usize) < lo {
                        c += 1;
                    }
                    let mut word = 0u64;
                    while c < keys.len() && (keys[c] as usize) < hi {
                        word |= 1u64 << (keys[c] as usize - ja);
                        c += 1;
                    }
                    cursor[r] = c;
                    *w = word & range_word(ja, lo, hi);
                }
                chunk::<A>(
                    self.pk,
                    &mut st,
                    rows.start,
                    ja,
                    lo,
                    hi,
                    Some(&words),
                    Cells::Chunk,
                );
            }
        }
        st.finish(self.out, d);
        st.cells
    }
}

impl AttentionKernel for Block {
    fn kind(&self) -> KernelKind {
        KernelKind::Block
    }

    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        block_cells(p, self.block)
    }

    fn computed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        // Every visited tile: its rows padded to groups of 4 × the panels of its keys (tiles
        // whose edges are not panel-aligned each compute their shared panel).
        let layout = BlockLayout::build(p, self.block)?;
        let b = self.block;
        let mut total = 0u64;
        for bi in 0..p.n().div_ceil(b) {
            let rows = padded_rows(layout.rows_of(bi).len());
            for (bj, _, _) in layout.row(bi) {
                total += rows * panel_keys(bj * b, ((bj + 1) * b).min(p.n()));
            }
        }
        Ok(total)
    }

    fn forward_counted(
        &self,
        p: &Pattern,
        qkv: &Qkv,
        scale: f32,
    ) -> Result<(Array2<f32>, u64), KernelError> {
        let layout = BlockLayout::build(p, self.block)?;
        let (n, d) = qkv.q.dim();
        let pk = Packed::new(qkv.q.view(), qkv.k.view(), qkv.v.view(), scale);
        let mut out = vec![0f32; n * d];
        let cells = AtomicU64::new(0);
        out.par_chunks_mut(self.block * d)
            .enumerate()
            .for_each_init(Vec::new, |keys, (bi, o)| {
                let c = dispatch(BlockRow {
                    pk: &pk,
                    p,
                    layout: &layout,
                    bi,
                    out: o,
                    keys,
                });
                cells.fetch_add(c, Ordering::Relaxed);
            });
        let out = Array2::from_shape_vec((n, d), out).expect("n × d output");
        Ok((out, cells.into_inner()))
    }
}
