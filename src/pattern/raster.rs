//! Density rasters: a pattern of any `n` summarised on a pixel grid.
//!
//! Pixel `(x, y)` covers query rows `[y·n/H, (y+1)·n/H)` and key columns `[x·n/W, (x+1)·n/W)`
//! (integer division), and stores how many of its cells are allowed. When `n` fits on the
//! grid the raster is exactly `n × n`, one cell per pixel. Each pixel is one
//! [`Pattern::count_rect`], so a Toeplitz pattern costs O(H·W) after an O(n) table.

use super::Pattern;

/// Allowed-cell counts of a pattern on a `width × height` grid (row-major, row 0 = query 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Raster {
    /// Sequence length of the pattern.
    pub n: usize,
    /// Pixels across (key axis).
    pub width: usize,
    /// Pixels down (query axis).
    pub height: usize,
    /// Allowed cells under each pixel, row-major.
    pub counts: Vec<u64>,
    /// `width + 1` key boundaries: pixel column `x` covers keys `col_edges[x]..col_edges[x + 1]`.
    pub col_edges: Vec<usize>,
    /// `height + 1` query boundaries: pixel row `y` covers queries `row_edges[y]..row_edges[y + 1]`.
    pub row_edges: Vec<usize>,
}

impl Raster {
    /// Rasterises `p` onto at most `max_side × max_side` pixels (exactly `n × n` when
    /// `n ≤ max_side`), rows in parallel.
    pub fn build(p: &Pattern, max_side: usize) -> Self {
        let n = p.n();
        let side = n.min(max_side.max(1));
        Self::build_region(p, 0..n, 0..n, side, side)
    }

    /// Rasterises the sub-rectangle `rows × cols` of `p` onto `width × height` pixels
    /// (each at most the length of its range).
    pub fn build_region(
        p: &Pattern,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        width: usize,
        height: usize,
    ) -> Self {
        let mut r = Self::empty_region(p.n(), rows, cols, width, height);
        r.fill_rows(p, 0..r.height);
        r
    }

    /// The grid of [`Raster::build_region`] with every count still 0, to be filled band by
    /// band with [`Raster::fill_rows`] (a caller that must pause between bands); `n` is the
    /// pattern's length.
    pub fn empty_region(
        n: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        width: usize,
        height: usize,
    ) -> Self {
        let width = width.clamp(1, cols.len().max(1));
        let height = height.clamp(1, rows.len().max(1));
        Self {
            n,
            width,
            height,
            counts: vec![0u64; width * height],
            col_edges: edges(cols.start, cols.len(), width),
            row_edges: edges(rows.start, rows.len(), height),
        }
    }

    /// The grid of [`Raster::build`] with every count still 0 (see [`Raster::empty_region`]).
    pub fn empty(n: usize, max_side: usize) -> Self {
        let side = n.min(max_side.max(1));
        Self::empty_region(n, 0..n, 0..n, side, side)
    }

    /// Counts the pixel rows `ys` (clipped to the grid) of `p`, rows in parallel: after every
    /// row has been filled once the raster equals the one built in one go.
    pub fn fill_rows(&mut self, p: &Pattern, ys: std::ops::Range<usize>) {
        let (y0, y1) = (ys.start.min(self.height), ys.end.min(self.height));
        if y0 >= y1 {
            return;
        }
        let w = self.width;
        super::count::count_grid(
            p,
            &self.row_edges[y0..=y1],
            &self.col_edges,
            &mut self.counts[y0 * w..y1 * w],
        );
    }

    /// Cells under pixel `(x, y)`.
    pub fn area(&self, x: usize, y: usize) -> u64 {
        let cw = self.col_edges[x + 1] - self.col_edges[x];
        let ch = self.row_edges[y + 1] - self.row_edges[y];
        (cw * ch) as u64
    }

    /// Fraction of allowed cells under each pixel, in `[0, 1]`, row-major.
    pub fn fractions(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.counts.len());
        for y in 0..self.height {
            for x in 0..self.width {
                let a = self.area(x, y);
                let c = self.counts[y * self.width + x];
                out.push(if a == 0 { 0.0 } else { c as f32 / a as f32 });
            }
        }
        out
    }

    /// Sum of all pixel counts (equals the pattern's nnz for a full raster).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// `parts + 1` boundaries splitting `[start, start + len)` into `parts` near-equal pieces.
fn edges(start: usize, len: usize, parts: usize) -> Vec<usize> {
    (0..=parts)
        .map(|t| start + ((t as u128 * len as u128) / parts as u128) as usize)
        .collect()
}
