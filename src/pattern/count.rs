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

/// Counts of every pixel of the grid `ys × xs` (pixel edges, ascending) into `counts`
/// (row-major, `xs.len() − 1` per row): the raster's path. Same pieces and sums as
/// [`count_rect`], but the cuts of each pixel row and each pixel column (where a non-Toeplitz
/// atom changes) are found once, not once per pixel.
pub(super) fn count_grid(p: &Pattern, ys: &[usize], xs: &[usize], counts: &mut [u64]) {
    use rayon::prelude::*;
    let width = xs.len().saturating_sub(1);
    if width == 0 {
        return;
    }
    let n = p.n;
    if p.dnf.is_toeplitz() || p.reduced.is_empty() {
        counts
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(y, line)| {
                for (x, v) in line.iter_mut().enumerate() {
                    *v = count_rect(p, ys[y]..ys[y + 1], xs[x]..xs[x + 1]);
                }
            });
        return;
    }
    // Pieces of [lo, hi): sorted cut points including both ends, and per piece the mask of
    // conjunctions its row-only (or column-only) atoms allow; None past MAX_PIECES.
    let separable = p.dnf.separable();
    let same_blocks = p.dnf.same_blocks();
    let pieces = |rows: bool, lo: usize, hi: usize| -> Option<(Vec<u64>, Vec<u64>)> {
        let mut v = vec![lo as u64, hi as u64];
        if !p.dnf.cuts(rows, lo as u64, hi as u64, MAX_PIECES, &mut v) {
            return None;
        }
        v.sort_unstable();
        v.dedup();
        let masks = v[..v.len() - 1]
            .iter()
            .map(|&t| {
                if rows {
                    p.dnf.row_mask(t as usize)
                } else {
                    p.dnf.col_mask(t as usize)
                }
            })
            .collect();
        Some((v, masks))
    };
    let col_pieces: Vec<Option<(Vec<u64>, Vec<u64>)>> = (0..width)
        .into_par_iter()
        .map(|x| pieces(false, xs[x].min(n), xs[x + 1].min(n)))
        .collect();
    counts
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(y, line)| {
            let (i0, i1) = (ys[y].min(n), ys[y + 1].min(n));
            let row_pieces = pieces(true, i0, i1);
            for (x, v) in line.iter_mut().enumerate() {
                let (j0, j1) = (xs[x].min(n), xs[x + 1].min(n));
                if i0 >= i1 || j0 >= j1 {
                    *v = 0;
                    continue;
                }
                *v = match (&row_pieces, &col_pieces[x]) {
                    (Some((rc, rm)), Some((cc, cm)))
                        if (rc.len() - 1) * (cc.len() - 1) <= MAX_PIECES.min(i1 - i0) =>
                    {
                        let mut total = 0u64;
                        for (r, &row_mask) in rc.windows(2).zip(rm) {
                            for (c, &col_mask) in cc.windows(2).zip(cm) {
                                let (a0, a1, b0, b1) =
                                    (r[0] as usize, r[1] as usize, c[0] as usize, c[1] as usize);
                                let mask = if separable {
                                    // A piece lies inside one block row and column of every
                                    // same-block atom (its edges are cuts).
                                    same_blocks
                                        .iter()
                                        .fold(row_mask & col_mask, |m, &(bit, l)| {
                                            if a0 as u64 / l == b0 as u64 / l {
                                                m
                                            } else {
                                                m & !bit
                                            }
                                        })
                                } else {
                                    p.dnf.reduce_at(a0, b0)
                                };
                                if mask != 0 {
                                    total += p.reduced[mask as usize]
                                        .get_or_init(|| {
                                            Toeplitz::new(n, |d| p.dnf.reduced_distance(mask, d))
                                        })
                                        .rect(a0, a1, b0, b1);
                                }
                            }
                        }
                        total
                    }
                    _ => count_rect(p, i0..i1, j0..j1),
                };
            }
        });
}
