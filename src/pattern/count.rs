//! Exact counting without visiting cells.
//!
//! Row counts come from the expression's structure (`structure.rs`): intervals, residue
//! classes and periodic columns per conjunction, inclusion–exclusion across them.
//!
//! Rectangle counts of a Toeplitz expression (allowed iff `f(i − j)`) use double prefix sums
//! over the distance. With `P(x) = Σ_{d < x} f(d)` the keys of row `a` in `[j0, j1)` number
//! `P(a − j0 + 1) − P(a − j1 + 1)`; summing over rows with `Q(x) = Σ_{y < x} P(y)` gives
//!
//! ```text
//! count(i0..i1 × j0..j1) = Q(i1−j0+1) − Q(i0−j0+1) − Q(i1−j1+1) + Q(i0−j1+1)
//! ```
//!
//! so any rectangle costs four table reads after an O(n) build. Other expressions cut the
//! rectangle into pieces on which they reduce to a Toeplitz form, one table per form.

use super::Pattern;
use std::ops::Range;

pub(super) fn count_in_range(p: &Pattern, i: usize, cols: Range<usize>) -> u64 {
    let n = p.n;
    let j0 = cols.start.min(n);
    let j1 = cols.end.min(n);
    p.dnf.count_in_range(i, j0, j1)
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

/// Most pieces one rectangle is cut into before counting row by row instead.
const MAX_PIECES: usize = 64;

pub(super) fn count_rect(p: &Pattern, rows: Range<usize>, cols: Range<usize>) -> u64 {
    let n = p.n;
    let (i0, i1) = (rows.start.min(n), rows.end.min(n));
    let (j0, j1) = (cols.start.min(n), cols.end.min(n));
    if i0 >= i1 || j0 >= j1 {
        return 0;
    }
    if p.dnf.is_toeplitz() {
        return p
            .toeplitz
            .get_or_init(|| Toeplitz::new(n, |d| p.allows_distance(d)))
            .rect(i0, i1, j0, j1);
    }
    let by_rows = || -> u64 { (i0..i1).map(|i| p.dnf.count_in_range(i, j0, j1)).sum() };
    if p.reduced.is_empty() {
        return by_rows();
    }
    let limit = MAX_PIECES.min(i1 - i0);
    let mut total = 0u64;
    let done = p.dnf.for_each_piece(i0..i1, j0..j1, limit, |r, c, mask| {
        if mask != 0 {
            total += p.reduced[mask as usize]
                .get_or_init(|| Toeplitz::new(n, |d| p.dnf.reduced_distance(mask, d)))
                .rect(r.start, r.end, c.start, c.end);
        }
    });
    if done {
        total
    } else {
        by_rows()
    }
}
