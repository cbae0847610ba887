//! The numbers of a pattern that the app shows and `attnscope stats` prints (docs/contract.md section 2).

use crate::pattern::{BlockStats, Pattern, PatternError};

/// Exact statistics of one pattern for head dimension `d` and block size `block`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PatternStats {
    /// Pattern name, e.g. `sparse`.
    pub pattern: String,
    /// Pattern with its parameters, e.g. `sparse(k=4, w=3)`.
    pub label: String,
    /// Sequence length.
    pub n: usize,
    /// Head dimension the FLOPs are counted for.
    pub d: usize,
    /// Whether the mask is causal.
    pub causal: bool,
    /// Allowed (i, j) pairs.
    pub nnz: u64,
    /// nnz / n².
    pub density: f64,
    /// Useful FLOPs of one head: 4·d·nnz.
    pub flops_useful: u64,
    /// FLOPs of dense attention: 4·d·n².
    pub flops_dense: u64,
    /// Softmax exponentials (= nnz).
    pub exps: u64,
    /// Block size B.
    pub block: usize,
    /// Full tiles.
    pub blocks_full: u64,
    /// Partial tiles.
    pub blocks_partial: u64,
    /// Empty tiles.
    pub blocks_empty: u64,
    /// Cells inside non-empty tiles.
    pub cells_visited: u64,
    /// cells_visited / n².
    pub block_density: f64,
    /// Executed FLOPs of a block-sparse kernel: 4·d·cells_visited.
    pub flops_block: u64,
    /// Fewest / mean / most allowed keys per query.
    pub row_nnz_min: u64,
    /// Mean allowed keys per query.
    pub row_nnz_mean: f64,
    /// Most allowed keys per query.
    pub row_nnz_max: u64,
}

impl PatternStats {
    /// Computes every figure in O(n + (n/B)²).
    pub fn compute(p: &Pattern, d: usize, block: usize) -> Result<Self, PatternError> {
        use rayon::prelude::*;
        if d == 0 || d > crate::bench::MAX_D {
            // 4 · d · n² must fit in 64 bits: d ≤ 4096 and n ≤ 2²⁴ give at most 2⁶².
            return Err(PatternError::OutOfRange {
                kind: p.kind(),
                flag: "--d",
                value: d as u64,
                range: format!("a head dimension from 1 to {}", crate::bench::MAX_D),
            });
        }
        let n = p.n();
        let (nnz, lo, hi) = (0..n)
            .into_par_iter()
            .with_min_len(1024)
            .map(|i| {
                let c = p.row_nnz(i);
                (c, c, c)
            })
            .reduce(
                || (0, u64::MAX, 0),
                |a, b| (a.0 + b.0, a.1.min(b.1), a.2.max(b.2)),
            );
        let b: BlockStats = BlockStats::compute(p, block)?;
        let n2 = n as u64 * n as u64;
        let flops = |cells: u64| 4 * d as u64 * cells;
        Ok(Self {
            pattern: p.name(),
            label: p.label(),
            n,
            d,
            causal: p.is_causal(),
            nnz,
            density: nnz as f64 / n2 as f64,
            flops_useful: flops(nnz),
            flops_dense: flops(n2),
            exps: nnz,
            block,
            blocks_full: b.blocks_full,
            blocks_partial: b.blocks_partial,
            blocks_empty: b.blocks_empty,
            cells_visited: b.cells_visited,
            block_density: b.block_density,
            flops_block: flops(b.cells_visited),
            row_nnz_min: lo,
            row_nnz_mean: nnz as f64 / n as f64,
            row_nnz_max: hi,
        })
    }

    /// A human-readable table, one figure per line.
    pub fn table(&self) -> String {
        let pct = |x: f64| format!("{:.4} %", 100.0 * x);
        let rows: Vec<(&str, String)> = vec![
            ("pattern", self.label.clone()),
            ("n", group(self.n as u64)),
            ("nnz", group(self.nnz)),
            ("density", pct(self.density)),
            (
                "keys per query",
                format!(
                    "min {} · mean {:.1} · max {}",
                    group(self.row_nnz_min),
                    self.row_nnz_mean,
                    group(self.row_nnz_max)
                ),
            ),
            (
                "useful FLOPs",
                format!("{} (d = {}, 4·d·nnz)", group(self.flops_useful), self.d),
            ),
            ("dense FLOPs", group(self.flops_dense)),
            (
                "dense / useful",
                format!("{:.2}×", self.flops_dense as f64 / self.flops_useful as f64),
            ),
            ("softmax exps", group(self.exps)),
            ("block size", self.block.to_string()),
            (
                "blocks",
                format!(
                    "{} full · {} partial · {} empty",
                    group(self.blocks_full),
                    group(self.blocks_partial),
                    group(self.blocks_empty)
                ),
            ),
            ("block density", pct(self.block_density)),
            ("block FLOPs", group(self.flops_block)),
        ];
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

/// `100 · x` with at least `digits` decimals (no `%` sign), more when needed so that a fraction
/// below 1 never reads as 100 and one above 0 never as 0: 992 unreached pairs of 16,777,216
/// show as `99.994`, not `100.0`. Past 12 decimals the digits are cut, not rounded.
pub fn percent_text(x: f64, digits: usize) -> String {
    let p = 100.0 * x;
    let misleading = |text: &str| {
        let shown: f64 = text.parse().unwrap_or(p);
        (x < 1.0 && shown >= 100.0) || (x > 0.0 && shown <= 0.0)
    };
    for d in digits..=12 {
        let text = format!("{p:.d$}");
        if !misleading(&text) {
            return text;
        }
    }
    let cut = (p * 1e12).floor() / 1e12;
    format!("{cut:.12}")
}

/// `1234567` → `1,234,567`.
pub fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (t, ch) in s.chars().enumerate() {
        if t > 0 && (s.len() - t) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
