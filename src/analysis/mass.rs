//! Mass kept: how much of a head's dense softmax probability falls on the keys a pattern allows.
//!
//! For query `i` of one head, with scores `s_ij = q_i · k_j / √d` over the keys the model sees
//! (all `j`, or `j ≤ i` for a causal model), `P_ij = exp(s_ij − max) / Σ exp(s_ij − max)` and
//! `mass_i = Σ_{j allowed} P_ij`. A head's summary is the mean and the minimum of `mass_i`.
//! Scores are computed `TILE` query rows at a time (one `TILE × n` product), so memory stays
//! `O(TILE · n)` per worker whatever n is.

use crate::pattern::Pattern;
use ndarray::{s, Array2, ArrayView2, ArrayView3, Axis};
use rayon::prelude::*;

/// Query rows scored at once.
const TILE: usize = 64;

/// Mass kept by one head.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HeadMass {
    /// Query head index.
    pub head: usize,
    /// Mean over queries of the probability on allowed keys (0..1).
    pub mass_kept: f64,
    /// The smallest per-query mass (0..1).
    pub worst_query: f64,
}

/// Mass kept by every head of one layer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerMass {
    /// Layer index.
    pub layer: usize,
    /// One entry per query head.
    pub heads: Vec<HeadMass>,
}

/// Dense probabilities of rows `rows` of one head, `(rows.len(), n)`; keys `j > i` are 0 when
/// `causal`.
fn prob_tile(
    q: ArrayView2<'_, f32>,
    k: ArrayView2<'_, f32>,
    rows: std::ops::Range<usize>,
    causal: bool,
) -> Array2<f32> {
    let scale = 1.0 / (q.ncols().max(1) as f32).sqrt();
    let qt = q.slice(s![rows.clone(), ..]);
    let mut p = qt.dot(&k.t());
    for (r, mut row) in p.outer_iter_mut().enumerate() {
        let i = rows.start + r;
        let seen = if causal { i + 1 } else { row.len() };
        let max = row
            .iter()
            .take(seen)
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x * scale));
        let mut total = 0f64;
        for (j, x) in row.iter_mut().enumerate() {
            if j < seen {
                *x = (*x * scale - max).exp();
                total += *x as f64;
            } else {
                *x = 0.0;
            }
        }
        let inv = (1.0 / total) as f32;
        row.mapv_inplace(|x| x * inv);
    }
    p
}

/// Per-query mass kept by `p` on one head: `q` and `k` are `(n, head_dim)`; keys `j > i` are
/// not seen (nor allowed) when `causal`.
pub fn query_mass(
    q: ArrayView2<'_, f32>,
    k: ArrayView2<'_, f32>,
    p: &Pattern,
    causal: bool,
) -> Vec<f64> {
    let n = q.nrows();
    let tiles: Vec<usize> = (0..n).step_by(TILE).collect();
    tiles
        .par_iter()
        .flat_map_iter(|&t0| {
            let rows = t0..(t0 + TILE).min(n);
            let probs = prob_tile(q, k, rows.clone(), causal);
            rows_mass(probs.view(), rows.start, p)
        })
        .collect()
}

/// Per-query mass kept by `p` given dense probabilities `probs` of queries `i0 ..` (row =
/// query; keys a causal head does not see are 0, so they add nothing).
pub fn rows_mass(probs: ArrayView2<'_, f32>, i0: usize, p: &Pattern) -> Vec<f64> {
    let mut keys = Vec::new();
    probs
        .outer_iter()
        .enumerate()
        .map(|(r, row)| {
            p.row_keys(i0 + r, &mut keys);
            let mass: f64 = keys.iter().map(|&j| row[j as usize] as f64).sum();
            mass.min(1.0)
        })
        .collect()
}

/// Mean and minimum of per-query masses.
fn summarize(head: usize, masses: &[f64]) -> HeadMass {
    let mass_kept = masses.iter().sum::<f64>() / masses.len().max(1) as f64;
    let worst_query = masses.iter().copied().fold(f64::INFINITY, f64::min);
    HeadMass {
        head,
        mass_kept,
        worst_query: if worst_query.is_finite() {
            worst_query
        } else {
            0.0
        },
    }
}

/// Mass kept by `p` for every query head of one layer: `q` is `(heads, n, head_dim)`, `k` is
/// `(kv_heads, n, head_dim)` (head `h` reads KV head `h / (heads / kv_heads)`).
pub(crate) fn layer_mass(
    layer: usize,
    q: ArrayView3<'_, f32>,
    k: ArrayView3<'_, f32>,
    p: &Pattern,
    causal: bool,
) -> LayerMass {
    let heads = q.dim().0;
    let group = heads / k.dim().0.max(1);
    let heads = (0..heads)
        .into_par_iter()
        .map(|h| {
            let masses = query_mass(
                q.index_axis(Axis(0), h),
                k.index_axis(Axis(0), h / group.max(1)),
                p,
                causal,
            );
            summarize(h, &masses)
        })
        .collect();
    LayerMass { layer, heads }
}

/// The dense softmax probabilities of one head, `(n, n)` (row = query, column = key; keys
/// `j > i` are 0 when `causal`), for showing one head: recomputed on demand, never kept for
/// every head.
pub fn head_probabilities(
    q: ArrayView2<'_, f32>,
    k: ArrayView2<'_, f32>,
    causal: bool,
) -> Array2<f32> {
    let n = q.nrows();
    let mut out = Array2::<f32>::zeros((n, k.nrows()));
    out.axis_chunks_iter_mut(Axis(0), TILE)
        .into_par_iter()
        .enumerate()
        .for_each(|(t, mut dst)| {
            let rows = t * TILE..(t * TILE + dst.nrows());
            dst.assign(&prob_tile(q, k, rows, causal));
        });
    out
}

/// One head's dense probability by query–key distance, for the cheapest window that keeps a
/// share of its mass: `near[d]` is the mean over queries of `Σ_{|i−j| = d} P_ij`, `sink[d]` the
/// same restricted to the first `sinks` keys. Mass kept by `local(w)` is `Σ_{d ≤ w} near[d]`,
/// by `local(w) | sink(s)` that plus `Σ_{d > w} sink[d]` (both ∩ what the head sees).
#[derive(Clone, Debug, PartialEq)]
pub struct DistanceProfile {
    near: Vec<f64>,
    /// Suffix sums: `sink_after[d] = Σ_{d' ≥ d} sink[d']`.
    sink_after: Vec<f64>,
    /// Sink tokens of `sink_after`.
    pub sinks: usize,
}

impl DistanceProfile {
    /// The profile of `probs` (`(n, n)`, row = query), with `sinks` sink tokens.
    pub fn of(probs: ArrayView2<'_, f32>, sinks: usize) -> Self {
        let n = probs.nrows();
        let mut near = vec![0f64; n.max(1)];
        let mut sink = vec![0f64; n.max(1) + 1];
        for (i, row) in probs.outer_iter().enumerate() {
            for (j, &p) in row.iter().enumerate() {
                let d = i.abs_diff(j);
                near[d] += p as f64;
                if j < sinks {
                    sink[d] += p as f64;
                }
            }
        }
        let scale = 1.0 / n.max(1) as f64;
        near.iter_mut().for_each(|x| *x *= scale);
        for d in (0..sink.len() - 1).rev() {
            sink[d] = sink[d] * scale + sink[d + 1];
        }
        Self {
            near,
            sink_after: sink,
            sinks,
        }
    }

    /// Mass kept by `local(w)`, or `local(w) | sink(s = self.sinks)` when `with_sinks`.
    pub fn mass(&self, w: usize, with_sinks: bool) -> f64 {
        let w = w.min(self.near.len() - 1);
        let window: f64 = self.near[..=w].iter().sum();
        let sinks = if with_sinks {
            self.sink_after[w + 1]
        } else {
            0.0
        };
        (window + sinks).min(1.0)
    }

    /// The smallest window `w` whose pattern keeps at least `target` (0..1) of the mass.
    pub fn cheapest_window(&self, target: f64, with_sinks: bool) -> usize {
        // The mass only grows with w: binary search.
        let (mut lo, mut hi) = (0, self.near.len() - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.mass(mid, with_sinks) >= target - 1e-12 {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}
