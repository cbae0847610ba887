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
//! 2. local pass, original order: each query tile resumes from its rows' states, walks the
//!    band `[i0 − w, i1 + w)` (a per-row range mask only on the band's edges), normalises.
//!
//! Causal patterns keep `j ≤ i` in both passes. Handles dense (one group), local (band only),
//! atrous (groups only), sparse, and strided (local `L − 1` ∪ atrous `L`, causal).

use super::engine::{
    chunk, chunks, dispatch, range_word, Arith, Packed, TileState, Work, TILE_ROWS,
};
use super::{AttentionKernel, KernelError, KernelKind};
use crate::inputs::Qkv;
use crate::pattern::{Pattern, PatternKind};
use ndarray::Array2;
use rayon::prelude::*;

/// The permuted band + residue-group kernel.
pub(crate) struct Permuted;

/// Query rows per band-pass task: small, so that a tile's key range `[i0 − w, i1 + w)` is not
/// much wider than one row's band `2w + 1`.
const BAND_ROWS: usize = 16;

/// How a pattern splits into a band and residue groups.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    n: usize,
    /// Stride of the atrous part.
    k: Option<usize>,
    /// Half-width of the local band.
    w: Option<usize>,
    causal: bool,
}

impl Plan {
    /// The split of `p`, if it has one.
    pub fn of(p: &Pattern) -> Option<Self> {
        let (k, w) = match p.kind() {
            PatternKind::Dense => (Some(1), None),
            PatternKind::Local => (None, Some(p.window())),
            PatternKind::Atrous => (Some(p.stride()), None),
            PatternKind::Sparse => (Some(p.stride()), Some(p.window())),
            PatternKind::Strided => (Some(p.stride()), Some(p.stride() - 1)),
            _ => return None,
        };
        Some(Self {
            n: p.n(),
            k,
            w,
            causal: p.is_causal(),
        })
    }

    /// Keys `[j0, j1)` of the band pass for query rows `[i0, i1)`.
    fn band_keys(&self, i0: usize, i1: usize) -> (usize, usize) {
        match self.w {
            None => (0, 0),
            Some(w) => {
                let j1 = if self.causal {
                    i1
                } else {
                    (i1 - 1).saturating_add(w).saturating_add(1).min(self.n)
                };
                (i0.saturating_sub(w), j1)
            }
        }
    }

    /// Residue groups: `(start in permuted order, size)` for residues `0 .. min(k, n)`.
    fn groups(&self) -> Vec<(usize, usize)> {
        let Some(k) = self.k else {
            return Vec::new();
        };
        let mut start = 0;
        (0..k.min(self.n))
            .map(|r| {
                let size = (self.n - r).div_ceil(k);
                let g = (start, size);
                start += size;
                g
            })
            .collect()
    }

    /// Group distances `|m − m'| ≤ e` are covered by the band, so the group pass skips them.
    fn excluded(&self) -> Option<usize> {
        Some(self.w? / self.k?)
    }

    /// Keys `[0, b)` (group-relative) the group pass visits for group rows `[m0, m1)`.
    fn group_keys(&self, size: usize, m1: usize) -> usize {
        if self.causal {
            m1
        } else {
            size
        }
    }

    /// Score cells both passes compute.
    fn cells(&self) -> u64 {
        let mut total = 0u64;
        for (_, size) in self.groups() {
            for m0 in (0..size).step_by(TILE_ROWS) {
                let m1 = (m0 + TILE_ROWS).min(size);
                total += ((m1 - m0) * self.group_keys(size, m1)) as u64;
            }
        }
        if self.w.is_some() {
            for i0 in (0..self.n).step_by(BAND_ROWS) {
                let i1 = (i0 + BAND_ROWS).min(self.n);
                let (j0, j1) = self.band_keys(i0, i1);
                total += ((i1 - i0) * (j1 - j0)) as u64;
            }
        }
        total
    }
}

/// A query tile of the group pass: rows `[m0, m1)` of the group starting at `g0`.
struct GroupTile<'p, 'a> {
    pk: &'p Packed<'a>,
    plan: Plan,
    g0: usize,
    size: usize,
    m0: usize,
    m1: usize,
}

impl Work for GroupTile<'_, '_> {
    type Out = TileState;

    #[inline(always)]
    fn run<A: Arith>(self) -> TileState {
        let rows = self.m1 - self.m0;
        let mut st = TileState::new(rows, self.pk.d);
        let b = self.plan.group_keys(self.size, self.m1);
        let e = self.plan.excluded();
        let causal = self.plan.causal;
        let g0 = self.g0;
        let mut words = vec![0u64; rows];
        for (ja, lo, hi) in chunks(g0, g0 + b) {
            let mut all = true;
            for (r, w) in words.iter_mut().enumerate() {
                let m = self.m0 + r;
                // Allowed group-relative keys: [0, a) ∪ [c, end).
                let (a, c, end) = match (e, causal) {
                    (None, false) => (self.size, self.size, self.size),
                    (None, true) => (m + 1, m + 1, m + 1),
                    (Some(e), false) => (m.saturating_sub(e), m + e + 1, self.size),
                    (Some(e), true) => (m.saturating_sub(e), m + 1, m + 1),
                };
                let word = range_word(ja, g0, g0 + a) | range_word(ja, g0 + c, g0 + end);
                let word = word & range_word(ja, lo, hi);
                all &= word == range_word(ja, lo, hi);
                *w = word;
            }
            let mask = if all { None } else { Some(words.as_slice()) };
            chunk::<A>(self.pk, &mut st, g0 + self.m0, ja, lo, hi, mask, false);
        }
        st
    }
}

/// A query tile of the band pass, resuming from `st`.
struct BandTile<'p, 'a, 'o> {
    pk: &'p Packed<'a>,
    plan: Plan,
    i0: usize,
    st: TileState,
    out: &'o mut [f32],
}

impl Work for BandTile<'_, '_, '_> {
    type Out = ();

    #[inline(always)]
    fn run<A: Arith>(mut self) {
        let d = self.pk.d;
        let rows = self.st.rows;
        let (j0, j1) = self.plan.band_keys(self.i0, self.i0 + rows);
        let w = self.plan.w.unwrap_or(0);
        let causal = self.plan.causal;
        let mut words = vec![0u64; rows];
        if j1 > j0 {
            for (ja, lo, hi) in chunks(j0, j1) {
                let mut all = true;
                for (r, word) in words.iter_mut().enumerate() {
                    let i = self.i0 + r;
                    let hi_i = if causal { i + 1 } else { i + w + 1 };
                    let x = range_word(ja, i.saturating_sub(w), hi_i) & range_word(ja, lo, hi);
                    all &= x == range_word(ja, lo, hi);
                    *word = x;
                }
                let mask = if all { None } else { Some(words.as_slice()) };
                chunk::<A>(self.pk, &mut self.st, self.i0, ja, lo, hi, mask, false);
            }
        }
        self.st.finish(self.out, d);
    }
}

impl AttentionKernel for Permuted {
    fn kind(&self) -> KernelKind {
        KernelKind::Permuted
    }

    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(plan(p)?.cells())
    }

    fn forward(&self, p: &Pattern, qkv: &Qkv, scale: f32) -> Result<Array2<f32>, KernelError> {
        let plan = plan(p)?;
        let (n, d) = qkv.q.dim();
        // Group pass: running states (m, l, acc) in permuted order; `inv[i]` is the permuted
        // position of token i.
        let mut state: Option<GroupStates> = None;
        if let Some(k) = plan.k {
            let perm: Vec<usize> = (0..k.min(n)).flat_map(|r| (r..n).step_by(k)).collect();
            let mut inv = vec![0usize; n];
            for (a, &i) in perm.iter().enumerate() {
                inv[i] = a;
            }
            let pk = Packed::permuted(qkv.q.view(), qkv.k.view(), qkv.v.view(), scale, &perm);
            drop(perm);
            let mut m = vec![f32::NEG_INFINITY; n];
            let mut l = vec![0f32; n];
            let mut acc = vec![0f32; n * d];
            // The tiles partition the permuted order: hand each its own slices.
            let mut jobs = Vec::new();
            let (mut mr, mut lr, mut ar) = (m.as_mut_slice(), l.as_mut_slice(), acc.as_mut_slice());
            for (g0, size) in plan.groups() {
                for m0 in (0..size).step_by(TILE_ROWS) {
                    let m1 = (m0 + TILE_ROWS).min(size);
                    let rows = m1 - m0;
                    let (a, b) = std::mem::take(&mut mr).split_at_mut(rows);
                    let (c, e) = std::mem::take(&mut lr).split_at_mut(rows);
                    let (f, h) = std::mem::take(&mut ar).split_at_mut(rows * d);
                    (mr, lr, ar) = (b, e, h);
                    jobs.push((g0, size, m0, m1, a, c, f));
                }
            }
            jobs.into_par_iter()
                .for_each(|(g0, size, m0, m1, ms, ls, accs)| {
                    let st = dispatch(GroupTile {
                        pk: &pk,
                        plan,
                        g0,
                        size,
                        m0,
                        m1,
                    });
                    ms.copy_from_slice(&st.m[..st.rows]);
                    ls.copy_from_slice(&st.l[..st.rows]);
                    accs.copy_from_slice(&st.acc[..st.rows * d]);
                });
            state = Some((m, l, acc, inv));
        }
        // Band pass in token order, resuming from the group pass's states.
        let pk = Packed::new(qkv.q.view(), qkv.k.view(), qkv.v.view(), scale);
        let mut out = vec![0f32; n * d];
        out.par_chunks_mut(BAND_ROWS * d)
            .enumerate()
            .for_each(|(t, o)| {
                let i0 = t * BAND_ROWS;
                let rows = o.len() / d;
                let mut st = TileState::new(rows, d);
                if let Some((m, l, acc, inv)) = &state {
                    for r in 0..rows {
                        let a = inv[i0 + r];
                        st.m[r] = m[a];
                        st.l[r] = l[a];
                        st.acc[r * d..(r + 1) * d].copy_from_slice(&acc[a * d..(a + 1) * d]);
                    }
                }
                dispatch(BandTile {
                    pk: &pk,
                    plan,
                    i0,
                    st,
                    out: o,
                });
            });
        Ok(Array2::from_shape_vec((n, d), out).expect("n × d output"))
    }
}

/// Group-pass results in permuted order: running max, running sum, accumulator (`n × d`), and
/// the permuted position of each token.
type GroupStates = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<usize>);

/// The plan of `p`, or [`KernelError::Unsupported`].
fn plan(p: &Pattern) -> Result<Plan, KernelError> {
    Plan::of(p).ok_or_else(|| KernelError::Unsupported {
        kernel: KernelKind::Permuted.name(),
        pattern: p.label(),
    })
}
