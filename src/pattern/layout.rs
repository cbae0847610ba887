//! Memory layouts of a pattern that kernels walk: CSR (per-query key lists) and block-sparse
//! (per block row, the non-empty `B × B` tiles and whether each is full or partial).

use super::{Pattern, PatternError};
use rayon::prelude::*;

/// Most column indices a [`CsrLayout`] may hold (4 GiB of `u32`).
pub const MAX_CSR_ENTRIES: u64 = 1 << 30;

/// Largest block size of a [`BlockLayout`].
pub const MAX_BLOCK: usize = 4096;

/// Most tiles the block statistics of a non-Toeplitz pattern classify one by one.
pub const MAX_TILES: u64 = 1 << 30;

/// Most non-empty tiles a [`BlockLayout`] may store (each takes 9 bytes in the layout and 12
/// while it is built: 2²⁶ tiles ≈ 1.4 GB at the peak).
pub const MAX_LAYOUT_TILES: u64 = 1 << 26;

/// Compressed sparse rows: the allowed keys of each query, sorted ascending.
///
/// Row `i` is `col_indices[row_offsets[i]..row_offsets[i + 1]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrLayout {
    /// Sequence length.
    pub n: usize,
    /// `n + 1` offsets into `col_indices`.
    pub row_offsets: Vec<u64>,
    /// Allowed key indices, row after row.
    pub col_indices: Vec<u32>,
}

impl CsrLayout {
    /// Builds the layout in O(nnz) with rayon: row counts in O(1) each, a prefix sum, then
    /// every row written in parallel into its own slice.
    pub fn build(p: &Pattern) -> Result<Self, PatternError> {
        let n = p.n();
        let counts: Vec<u64> = (0..n)
            .into_par_iter()
            .with_min_len(1024)
            .map(|i| p.row_nnz(i))
            .collect();
        let mut row_offsets = Vec::with_capacity(n + 1);
        row_offsets.push(0u64);
        let mut acc = 0u64;
        for c in &counts {
            acc += c;
            row_offsets.push(acc);
        }
        if acc > MAX_CSR_ENTRIES {
            return Err(PatternError::TooLarge {
                what: "a CSR layout",
                needed: acc,
                limit: MAX_CSR_ENTRIES,
            });
        }
        let mut col_indices = vec![0u32; acc as usize];
        // Hand each row its own disjoint slice of `col_indices`.
        let mut slices: Vec<&mut [u32]> = Vec::with_capacity(n);
        let mut rest = col_indices.as_mut_slice();
        for &c in &counts {
            let (head, tail) = rest.split_at_mut(c as usize);
            slices.push(head);
            rest = tail;
        }
        slices
            .into_par_iter()
            .enumerate()
            .with_min_len(256)
            .for_each_init(Vec::new, |buf, (i, dst)| {
                p.row_keys(i, buf);
                dst.copy_from_slice(buf);
            });
        Ok(Self {
            n,
            row_offsets,
            col_indices,
        })
    }

    /// Allowed keys of query `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.col_indices[self.row_offsets[i] as usize..self.row_offsets[i + 1] as usize]
    }

    /// Number of allowed pairs.
    pub fn nnz(&self) -> u64 {
        self.col_indices.len() as u64
    }
}

/// Whether a `B × B` tile is fully allowed, partly allowed or empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// No allowed cell: a block-sparse kernel skips it.
    Empty,
    /// Some cells allowed: computed with a per-cell mask.
    Partial,
    /// Every (real) cell allowed: computed without a mask.
    Full,
}

/// Block statistics of a pattern for block size `B` (docs/contract.md section 2).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct BlockStats {
    /// Block size B.
    pub block: usize,
    /// Blocks whose every real cell is allowed.
    pub blocks_full: u64,
    /// Blocks with some but not all cells allowed.
    pub blocks_partial: u64,
    /// Blocks with no allowed cell.
    pub blocks_empty: u64,
    /// Real cells inside full and partial blocks (what a block kernel computes).
    pub cells_visited: u64,
    /// `cells_visited / n²`, in `[0, 1]`.
    pub block_density: f64,
}

impl BlockStats {
    /// Counts full / partial / empty tiles without storing the layout (memory O(1) per
    /// block row), block rows in parallel.
    pub fn compute(p: &Pattern, block: usize) -> Result<Self, PatternError> {
        check_block(p, block)?;
        let n = p.n();
        let nb = n.div_ceil(block);
        let span = |b: usize| b * block..((b + 1) * block).min(n);
        // Classify one tile: (full, partial, visited cells), weighted by `times` equal tiles.
        let tile = |bi: usize, bj: usize, times: u64| -> (u64, u64, u64) {
            let (r, c) = (span(bi), span(bj));
            let area = (r.len() * c.len()) as u64;
            match p.count_rect(r, c) {
                0 => (0, 0, 0),
                x if x == area => (times, 0, times * area),
                _ => (0, times, times * area),
            }
        };
        let add = |a: (u64, u64, u64), b: (u64, u64, u64)| (a.0 + b.0, a.1 + b.1, a.2 + b.2);
        let (full, partial, visited) = if p.is_toeplitz() {
            // A Toeplitz mask has the same count in every full-size tile on one block diagonal
            // δ = bi − bj: classify one tile per diagonal, then the ragged last row and column.
            // O(n / B) instead of O((n / B)²).
            let nf = n / block;
            let inner = (-(nf as i64) + 1..nf as i64)
                .into_par_iter()
                .map(|delta| {
                    let (bi, bj) = (delta.max(0) as usize, (-delta).max(0) as usize);
                    tile(bi, bj, nf as u64 - delta.unsigned_abs())
                })
                .reduce(|| (0, 0, 0), add);
            let edge = if nf < nb {
                // Last block row (every column) and last block column (every other row).
                let last = nb - 1;
                (0..nb)
                    .map(|bj| tile(last, bj, 1))
                    .chain((0..last).map(|bi| tile(bi, last, 1)))
                    .fold((0, 0, 0), add)
            } else {
                (0, 0, 0)
            };
            add(inner, edge)
        } else {
            let tiles = nb as u64 * nb as u64;
            if tiles > MAX_TILES {
                return Err(PatternError::BlockTooSmall {
                    what: "block statistics of this pattern",
                    block,
                    needed: tiles,
                    limit: MAX_TILES,
                    suggest: smallest_block(block, |b| all_tiles(n, b) <= MAX_TILES),
                });
            }
            (0..nb)
                .into_par_iter()
                .map(|bi| (0..nb).map(|bj| tile(bi, bj, 1)).fold((0, 0, 0), add))
                .reduce(|| (0, 0, 0), add)
        };
        Ok(Self::from_counts(n, block, full, partial, visited))
    }

    fn from_counts(n: usize, block: usize, full: u64, partial: u64, visited: u64) -> Self {
        let nb = n.div_ceil(block) as u64;
        Self {
            block,
            blocks_full: full,
            blocks_partial: partial,
            blocks_empty: nb * nb - full - partial,
            cells_visited: visited,
            block_density: visited as f64 / (n as f64 * n as f64),
        }
    }
}

/// Checks, before any work, that the [`BlockLayout`] of `p` at block size `block` fits its
/// limit ([`MAX_LAYOUT_TILES`] stored tiles for a Toeplitz mask, [`MAX_TILES`] classified tiles
/// for the others); the error names a block size that would fit. O(n).
pub fn check_layout(p: &Pattern, block: usize) -> Result<(), PatternError> {
    check_block(p, block)?;
    let diagonals = p.is_toeplitz().then(|| toeplitz_diagonals(p, block));
    check_layout_size(p, block, diagonals.as_deref())
}

fn check_layout_size(
    p: &Pattern,
    block: usize,
    diagonals: Option<&[i64]>,
) -> Result<(), PatternError> {
    let n = p.n();
    let nb = n.div_ceil(block);
    // The size of the layout is known before it is built: refuse one that would not fit
    // (naming a block size that would), rather than grow until memory runs out.
    let (bound, limit) = match diagonals {
        Some(ds) => (diagonal_tiles(ds, nb), MAX_LAYOUT_TILES),
        None => (all_tiles(n, block), MAX_TILES),
    };
    if bound > limit {
        let toeplitz = diagonals.is_some();
        return Err(PatternError::BlockTooSmall {
            what: "a block layout of this pattern",
            block,
            needed: bound,
            limit,
            suggest: smallest_block(block, |b| {
                if toeplitz {
                    diagonal_tiles(&toeplitz_diagonals(p, b), n.div_ceil(b)) <= MAX_LAYOUT_TILES
                } else {
                    all_tiles(n, b) <= MAX_TILES
                }
            }),
        });
    }
    Ok(())
}

/// Block diagonals δ = bi − bj (descending) of a Toeplitz mask at block size `block` that can
/// hold a non-empty tile: a tile on δ holds the distances `[δB − B + 1, δB + B − 1]`. O(n).
fn toeplitz_diagonals(p: &Pattern, block: usize) -> Vec<i64> {
    let n = p.n();
    let nb = n.div_ceil(block);
    let (b, ni) = (block as i64, n as i64);
    (-(nb as i64) + 1..nb as i64)
        .rev()
        .filter(|&delta| {
            let lo = (delta * b - b + 1).max(-ni + 1);
            let hi = (delta * b + b - 1).min(ni - 1);
            (lo..=hi).any(|d| p.allows_distance(d))
        })
        .collect()
}

/// Tiles on the block diagonals `ds` of an `nb × nb` tiling (`nb − |δ|` each).
fn diagonal_tiles(ds: &[i64], nb: usize) -> u64 {
    ds.iter().map(|d| nb as u64 - d.unsigned_abs()).sum()
}

/// Every tile of the tiling of `n` at block size `block`.
fn all_tiles(n: usize, block: usize) -> u64 {
    let nb = n.div_ceil(block) as u64;
    nb * nb
}

/// The smallest block size above `block` (doubling, then [`MAX_BLOCK`]) for which `fits`.
fn smallest_block(block: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    let mut b = block;
    while b < MAX_BLOCK {
        b = (b * 2).min(MAX_BLOCK);
        if fits(b) {
            return Some(b);
        }
    }
    None
}

fn check_block(p: &Pattern, block: usize) -> Result<(), PatternError> {
    if block == 0 || block > MAX_BLOCK {
        return Err(PatternError::OutOfRange {
            kind: p.kind(),
            flag: "--block",
            value: block as u64,
            range: format!("an integer from 1 to {MAX_BLOCK}"),
        });
    }
    Ok(())
}

/// Block-sparse layout: for each block row, its non-empty tiles in ascending block column.
///
/// Tiles of block row `bi` are entries `row_offsets[bi]..row_offsets[bi + 1]` of `cols`,
/// `kinds` and `counts`. Edge tiles of an `n` that is not a multiple of `B` are smaller.
#[derive(Clone, Debug)]
pub struct BlockLayout {
    /// Sequence length.
    pub n: usize,
    /// Block size B.
    pub block: usize,
    /// Blocks per side, `ceil(n / B)`.
    pub n_blocks: usize,
    /// `n_blocks + 1` offsets into `cols` / `kinds` / `counts`.
    pub row_offsets: Vec<usize>,
    /// Block column of each non-empty tile.
    pub cols: Vec<u32>,
    /// Full or partial, for each non-empty tile.
    pub kinds: Vec<BlockKind>,
    /// Allowed cells in each non-empty tile.
    pub counts: Vec<u32>,
    /// Summary counts.
    pub stats: BlockStats,
}

impl BlockLayout {
    /// Classifies every tile by counting its allowed cells with [`Pattern::count_rect`]
    /// (O(1) per tile for Toeplitz patterns), block rows in parallel.
    pub fn build(p: &Pattern, block: usize) -> Result<Self, PatternError> {
        let n = p.n();
        check_block(p, block)?;
        let nb = n.div_ceil(block);
        let span = |b: usize| b * block..((b + 1) * block).min(n);
        // Candidate block columns of block row bi. For a Toeplitz mask a tile on block diagonal
        // δ = bi − bj holds distances d ∈ [δB − B + 1, δB + B − 1]; only diagonals where some
        // such d is allowed can hold a non-empty tile, so the layout costs O(n + tiles).
        let diagonals: Option<Vec<i64>> = p.is_toeplitz().then(|| toeplitz_diagonals(p, block));
        check_layout_size(p, block, diagonals.as_deref())?;
        // Every layout is also counted as it is built, and refused past MAX_LAYOUT_TILES.
        let stored = std::sync::atomic::AtomicU64::new(0);
        let over = std::sync::atomic::AtomicBool::new(false);
        let rows: Vec<Vec<(u32, BlockKind, u32)>> = (0..nb)
            .into_par_iter()
            .map(|bi| {
                let r = span(bi);
                let mut tiles = Vec::new();
                let candidates: Box<dyn Iterator<Item = usize>> = match &diagonals {
                    Some(ds) => Box::new(
                        ds.iter()
                            .map(move |&delta| bi as i64 - delta)
                            .filter(|&bj| bj >= 0 && bj < nb as i64)
                            .map(|bj| bj as usize),
                    ),
                    None => Box::new(0..nb),
                };
                for bj in candidates {
                    if over.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let c = span(bj);
                    let area = (r.len() * c.len()) as u64;
                    let count = p.count_rect(r.clone(), c);
                    if count == 0 {
                        continue;
                    }
                    let kind = if count == area {
                        BlockKind::Full
                    } else {
                        BlockKind::Partial
                    };
                    tiles.push((bj as u32, kind, count as u32));
                }
                let before =
                    stored.fetch_add(tiles.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if before + tiles.len() as u64 > MAX_LAYOUT_TILES {
                    over.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                tiles
            })
            .collect();
        if over.into_inner() {
            return Err(PatternError::BlockTooSmall {
                what: "a block layout of this pattern",
                block,
                needed: stored.into_inner(),
                limit: MAX_LAYOUT_TILES,
                suggest: smallest_block(block, |b| all_tiles(n, b) <= MAX_LAYOUT_TILES),
            });
        }
        let total: usize = rows.iter().map(Vec::len).sum();
        let mut row_offsets = Vec::with_capacity(nb + 1);
        let mut cols = Vec::with_capacity(total);
        let mut kinds = Vec::with_capacity(total);
        let mut counts = Vec::with_capacity(total);
        let (mut full, mut partial, mut visited) = (0u64, 0u64, 0u64);
        row_offsets.push(0);
        for (bi, tiles) in rows.into_iter().enumerate() {
            let rlen = span(bi).len() as u64;
            for (bj, kind, count) in tiles {
                match kind {
                    BlockKind::Full => full += 1,
                    _ => partial += 1,
                }
                visited += rlen * span(bj as usize).len() as u64;
                cols.push(bj);
                kinds.push(kind);
                counts.push(count);
            }
            row_offsets.push(cols.len());
        }
        let stats = BlockStats::from_counts(n, block, full, partial, visited);
        Ok(Self {
            n,
            block,
            n_blocks: nb,
            row_offsets,
            cols,
            kinds,
            counts,
            stats,
        })
    }

    /// Query rows covered by block row `bi`.
    pub fn rows_of(&self, bi: usize) -> std::ops::Range<usize> {
        bi * self.block..((bi + 1) * self.block).min(self.n)
    }

    /// The non-empty tiles of block row `bi`: `(block column, kind, allowed cells)`.
    pub fn row(&self, bi: usize) -> impl Iterator<Item = (usize, BlockKind, u32)> + '_ {
        let r = self.row_offsets[bi]..self.row_offsets[bi + 1];
        r.map(move |t| (self.cols[t] as usize, self.kinds[t], self.counts[t]))
    }

    /// Kind of tile `(bi, bj)` (binary search in its block row).
    pub fn kind(&self, bi: usize, bj: usize) -> BlockKind {
        let r = self.row_offsets[bi]..self.row_offsets[bi + 1];
        match self.cols[r.clone()].binary_search(&(bj as u32)) {
            Ok(t) => self.kinds[r.start + t],
            Err(_) => BlockKind::Empty,
        }
    }

    /// Sum of allowed cells over all tiles (equals the pattern's nnz).
    pub fn nnz(&self) -> u64 {
        self.counts.iter().map(|&c| c as u64).sum()
    }
}
