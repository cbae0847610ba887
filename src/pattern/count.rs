//! Exact counting without visiting cells.
//!
//! Row counts use interval arithmetic and residue counting: the keys of query `i` allowed by
//! local(W) are the interval `[i − W, i + W]`, those allowed by atrous(K) are the residue class
//! `j ≡ i (mod K)`, and a union is counted by inclusion–exclusion.
//!
//! Rectangle counts of a Toeplitz pattern (allowed iff `f(i − j)`) use double prefix sums over
//! the distance. With `P(x) = Σ_{d < x} f(d)` the keys of row `a` in `[j0, j1)` number
//! `P(a − j0 + 1) − P(a − j1 + 1)`; summing over rows with `Q(x) = Σ_{y < x} P(y)` gives
//!
//! ```text
//! count(i0..i1 × j0..j1) = Q(i1−j0+1) − Q(i0−j0+1) − Q(i1−j1+1) + Q(i0−j1+1)
//! ```
//!
//! so any rectangle costs four table reads after an O(n) build.

use super::{Pattern, PatternKind};
use std::ops::Range;

/// Length of `[a, b)`, zero when empty.
#[inline]
fn len(a: usize, b: usize) -> u64 {
    b.saturating_sub(a) as u64
}

/// Length of `[a, b) ∩ [c, d)`.
#[inline]
fn inter(a: usize, b: usize, c: usize, d: usize) -> u64 {
    len(a.max(c), b.min(d))
}

/// Number of `j` in `[a, b)` with `j mod k == r` (`r < k`).
#[inline]
fn congruent(a: usize, b: usize, r: usize, k: usize) -> u64 {
    // Number of j in [0, x) with j ≡ r (mod k).
    let below = |x: usize| {
        if x > r {
            ((x - r - 1) / k + 1) as u64
        } else {
            0
        }
    };
    if b <= a {
        0
    } else {
        below(b) - below(a)
    }
}

/// Number of summary columns (`j mod l ≥ l − c`) in `[0, x)`.
#[inline]
fn summary_below(x: usize, l: usize, c: usize) -> u64 {
    ((x / l) * c) as u64 + (x % l).saturating_sub(l - c) as u64
}

/// Number of summary columns in `[a, b)`.
#[inline]
fn summary_in(a: usize, b: usize, l: usize, c: usize) -> u64 {
    if b <= a {
        0
    } else {
        summary_below(b, l, c) - summary_below(a, l, c)
    }
}

/// The local window of query `i`: `[i − w, i + w]` clipped to `[0, n)`, as a half-open range.
#[inline]
fn window(i: usize, w: usize, n: usize) -> (usize, usize) {
    (
        i.saturating_sub(w),
        i.saturating_add(w).saturating_add(1).min(n),
    )
}

pub(super) fn count_in_range(p: &Pattern, i: usize, cols: Range<usize>) -> u64 {
    let n = p.n;
    let j0 = cols.start.min(n);
    let mut j1 = cols.end.min(n);
    if p.causal {
        j1 = j1.min(i + 1);
    }
    if j0 >= j1 {
        return 0;
    }
    let (k, w) = (p.k, p.w);
    match p.kind {
        PatternKind::Dense => len(j0, j1),
        PatternKind::Local => {
            let (lo, hi) = window(i, w, n);
            inter(j0, j1, lo, hi)
        }
        PatternKind::Atrous => congruent(j0, j1, i % k, k),
        PatternKind::Sparse => {
            let (lo, hi) = window(i, w, n);
            inter(j0, j1, lo, hi) + congruent(j0, j1, i % k, k)
                - congruent(j0.max(lo), j1.min(hi), i % k, k)
        }
        PatternKind::Strided => {
            // Band (i − k, i] plus the lattice j ≡ i (mod k) strictly below the band.
            let lo = (i + 1).saturating_sub(k);
            inter(j0, j1, lo, i + 1) + congruent(j0, j1.min(lo), i % k, k)
        }
        PatternKind::Fixed => {
            let c = p.c;
            let b0 = (i / k) * k;
            let b1 = (b0 + k).min(n);
            inter(j0, j1, b0, b1) + summary_in(j0, j1, k, c)
                - summary_in(j0.max(b0), j1.min(b1), k, c)
        }
        PatternKind::Longformer => {
            if i < p.g {
                return len(j0, j1);
            }
            let (lo, hi) = window(i, w, n);
            inter(j0, j1, lo, hi) + inter(j0, j1, 0, p.g) - inter(j0, j1, lo, hi.min(p.g))
        }
        PatternKind::Bigbird => {
            let b = p.b;
            let bi = i / b;
            if bi < p.g {
                return len(j0, j1);
            }
            let t = p.bigbird.as_ref().expect("bigbird table");
            let row = &t.cols[bi];
            let start = row.partition_point(|&bj| (bj as usize + 1) * b <= j0);
            let mut total = 0;
            for &bj in &row[start..] {
                let c0 = bj as usize * b;
                if c0 >= j1 {
                    break;
                }
                total += inter(j0, j1, c0, (c0 + b).min(n));
            }
            total
        }
    }
}

pub(super) fn row_keys(p: &Pattern, i: usize, out: &mut Vec<u32>) {
    out.clear();
    let n = p.n;
    let jmax = if p.causal { i + 1 } else { n };
    let (k, w) = (p.k, p.w);
    let push_range = |out: &mut Vec<u32>, a: usize, b: usize| {
        out.extend(a as u32..b.min(jmax) as u32);
    };
    // Lattice j ≡ r (mod k) in [a, b).
    let push_lattice = |out: &mut Vec<u32>, a: usize, b: usize, r: usize| {
        let b = b.min(jmax);
        if a >= b {
            return;
        }
        let first = a + (r + k - a % k) % k;
        out.extend((first..b).step_by(k).map(|j| j as u32));
    };
    match p.kind {
        PatternKind::Dense => push_range(out, 0, n),
        PatternKind::Local => {
            let (lo, hi) = window(i, w, n);
            push_range(out, lo, hi);
        }
        PatternKind::Atrous => push_lattice(out, 0, n, i % k),
        PatternKind::Sparse => {
            let (lo, hi) = window(i, w, n);
            push_lattice(out, 0, lo, i % k);
            push_range(out, lo, hi);
            push_lattice(out, hi, n, i % k);
        }
        PatternKind::Strided => {
            let lo = (i + 1).saturating_sub(k);
            push_lattice(out, 0, lo, i % k);
            push_range(out, lo, i + 1);
        }
        PatternKind::Fixed => {
            let c = p.c;
            let b0 = (i / k) * k;
            let b1 = (b0 + k).min(n);
            let push_summaries = |out: &mut Vec<u32>, from_block: usize, to_block: usize| {
                for t in from_block..to_block {
                    let s0 = t * k + k - c;
                    push_range(out, s0.min(n), ((t + 1) * k).min(n));
                }
            };
            push_summaries(out, 0, i / k);
            push_range(out, b0, b1);
            push_summaries(out, i / k + 1, n.div_ceil(k));
        }
        PatternKind::Longformer => {
            if i < p.g {
                push_range(out, 0, n);
            } else {
                let (lo, hi) = window(i, w, n);
                if p.g >= lo {
                    push_range(out, 0, hi.max(p.g.min(n)));
                } else {
                    push_range(out, 0, p.g);
                    push_range(out, lo, hi);
                }
            }
        }
        PatternKind::Bigbird => {
            let b = p.b;
            let bi = i / b;
            if bi < p.g {
                push_range(out, 0, n);
                return;
            }
            let t = p.bigbird.as_ref().expect("bigbird table");
            for &bj in &t.cols[bi] {
                let c0 = bj as usize * b;
                if c0 >= jmax {
                    break;
                }
                push_range(out, c0, (c0 + b).min(n));
            }
        }
    }
}

/// Double prefix sums `Q` of a distance profile `f(d)`, `d ∈ [−n, n]` (see module docs).
#[derive(Clone, Debug)]
pub(super) struct Toeplitz {
    n: usize,
    /// `q[x + n] = Q(x)` for `x ∈ [−n, n + 1]`.
    q: Vec<i64>,
}

impl Toeplitz {
    /// Builds the table of the profile `f` over `n` tokens in O(n).
    pub(super) fn new(n: usize, f: impl Fn(i64) -> bool) -> Self {
        let ni = n as i64;
        let mut q = Vec::with_capacity(2 * n + 2);
        q.push(0i64);
        let mut prefix = 0i64; // P(x)
        for x in -ni..=ni {
            // q holds Q(x) at its last entry; append Q(x + 1) = Q(x) + P(x).
            let last = *q.last().expect("non-empty");
            q.push(last + prefix);
            if x.abs() < ni && f(x) {
                prefix += 1;
            }
        }
        Self { n, q }
    }

    #[inline]
    fn q_at(&self, x: i64) -> i64 {
        self.q[(x + self.n as i64) as usize]
    }

    /// Allowed cells in `rows × cols` (both already clipped to `0..n`, non-empty).
    #[inline]
    pub(super) fn rect(&self, i0: usize, i1: usize, j0: usize, j1: usize) -> u64 {
        let (i0, i1, j0, j1) = (i0 as i64, i1 as i64, j0 as i64, j1 as i64);
        let v = self.q_at(i1 - j0 + 1) - self.q_at(i0 - j0 + 1) - self.q_at(i1 - j1 + 1)
            + self.q_at(i0 - j1 + 1);
        v as u64
    }
}

/// Cells `(a, b)` of `rows × cols` with `b ≤ a`, in O(1).
fn causal_area(i0: usize, i1: usize, j0: usize, j1: usize) -> u64 {
    let width = len(j0, j1);
    // S(x) = Σ_{a < x} clamp(a + 1 − j0, 0, width)
    let s = |x: usize| -> u64 {
        let t = x.saturating_sub(j0) as u64;
        let m = t.min(width);
        m * (m + 1) / 2 + (t - m) * width
    };
    s(i1) - s(i0)
}

pub(super) fn count_rect(p: &Pattern, rows: Range<usize>, cols: Range<usize>) -> u64 {
    let n = p.n;
    let (i0, i1) = (rows.start.min(n), rows.end.min(n));
    let (j0, j1) = (cols.start.min(n), cols.end.min(n));
    if i0 >= i1 || j0 >= j1 {
        return 0;
    }
    match p.kind {
        k if k.is_toeplitz() => p
            .toeplitz
            .get_or_init(|| Toeplitz::new(n, |d| p.allows_distance(d)))
            .rect(i0, i1, j0, j1),
        PatternKind::Longformer => {
            // allowed = local ∪ global rows ∪ global cols
            //         = (R \ R') ∪ (local ∩ R'), R' = rows ≥ G × cols ≥ G.
            let causal = p.causal;
            let area = |a0: usize, a1: usize, b0: usize, b1: usize| -> u64 {
                if a0 >= a1 || b0 >= b1 {
                    0
                } else if causal {
                    causal_area(a0, a1, b0, b1)
                } else {
                    len(a0, a1) * len(b0, b1)
                }
            };
            let (g0, g1) = (i0.max(p.g), j0.max(p.g));
            let outside = area(i0, i1, j0, j1) - area(g0, i1, g1, j1);
            let local = if g0 < i1 && g1 < j1 {
                let w = p.w;
                p.toeplitz
                    .get_or_init(|| {
                        Toeplitz::new(n, |d| (!causal || d >= 0) && d.unsigned_abs() as usize <= w)
                    })
                    .rect(g0, i1, g1, j1)
            } else {
                0
            };
            outside + local
        }
        PatternKind::Fixed => fixed_rect(p, i0, i1, j0, j1),
        PatternKind::Bigbird => bigbird_rect(p, i0, i1, j0, j1),
        _ => (i0..i1).map(|i| count_in_range(p, i, j0..j1)).sum(),
    }
}

/// Cells of `[a0, a1) × [b0, b1)`, only those with `b ≤ a` when `causal`.
#[inline]
fn area(causal: bool, a0: usize, a1: usize, b0: usize, b1: usize) -> u64 {
    if a0 >= a1 || b0 >= b1 {
        0
    } else if causal {
        causal_area(a0, a1, b0, b1)
    } else {
        len(a0, a1) * len(b0, b1)
    }
}

/// Fixed pattern, `allowed = blocks ∪ summary columns`, by inclusion–exclusion per block of L:
/// O(1 + (cols)/L) whatever the number of rows.
fn fixed_rect(p: &Pattern, i0: usize, i1: usize, j0: usize, j1: usize) -> u64 {
    let (n, l, c, causal) = (p.n, p.k, p.c, p.causal);
    let blk = |t: usize| (t * l, ((t + 1) * l).min(n));
    let summ = |t: usize| ((t * l + l - c).min(n), ((t + 1) * l).min(n));
    let mut total = 0u64;
    // Blocks that meet both the rows and the columns.
    let (t0, t1) = ((i0 / l).max(j0 / l), ((i1 - 1) / l).min((j1 - 1) / l));
    if t0 <= t1 {
        for t in t0..=t1 {
            let (b0, b1) = blk(t);
            let (r0, r1) = (i0.max(b0), i1.min(b1));
            total += area(causal, r0, r1, j0.max(b0), j1.min(b1));
            // Minus the summary cells already counted inside this block.
            let (s0, s1) = summ(t);
            total -= area(causal, r0, r1, j0.max(s0), j1.min(s1));
        }
    }
    // Summary columns meet every row.
    for t in j0 / l..=(j1 - 1) / l {
        let (s0, s1) = summ(t);
        total += area(causal, i0, i1, j0.max(s0), j1.min(s1));
    }
    total
}

/// BigBird: sum over the block rows met by the rectangle of their allowed block columns met
/// by it, each an area (a triangle under a causal mask).
fn bigbird_rect(p: &Pattern, i0: usize, i1: usize, j0: usize, j1: usize) -> u64 {
    let (n, b, causal) = (p.n, p.b, p.causal);
    let t = p.bigbird.as_ref().expect("bigbird table");
    let mut total = 0u64;
    for bi in i0 / b..=(i1 - 1) / b {
        let (r0, r1) = (i0.max(bi * b), i1.min(((bi + 1) * b).min(n)));
        if bi < p.g {
            total += area(causal, r0, r1, j0, j1);
            continue;
        }
        let row = &t.cols[bi];
        let start = row.partition_point(|&bj| (bj as usize + 1) * b <= j0);
        for &bj in &row[start..] {
            let c0 = bj as usize * b;
            if c0 >= j1 {
                break;
            }
            total += area(causal, r0, r1, j0.max(c0), j1.min((c0 + b).min(n)));
        }
    }
    total
}
