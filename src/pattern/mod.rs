//! What is allowed: pattern specs, validation, exact counting, layouts and rasters.
//!
//! A [`Pattern`] is a validated attention mask over `n` queries (rows `i`) and `n` keys
//! (columns `j`). Every question about it is answered without touching all `n²` cells:
//!
//! - [`Pattern::allows`] answers one cell in O(1) (O(log) for BigBird),
//! - [`Pattern::count_in_range`] counts the allowed keys of one query in a key range in O(1)
//!   by closed-form arithmetic on the distance `d = i − j` (intervals and residues mod `k`),
//! - [`Pattern::count_rect`] counts a whole rectangle in O(1) for the patterns that depend
//!   only on `i − j` (double prefix sums over the distance), O(rows) otherwise,
//! - [`Pattern::row_keys`] lists the allowed keys of one query in O(row nnz).
//!
//! The definitions follow `SPEC.md` section 1 to the letter.

mod count;
mod layout;
mod raster;

pub use layout::{
    check_layout, BlockKind, BlockLayout, BlockStats, CsrLayout, MAX_BLOCK, MAX_CSR_ENTRIES,
    MAX_LAYOUT_TILES,
};
pub use raster::Raster;

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

/// Largest sequence length any pattern accepts (2²⁴ tokens).
pub const MAX_N: usize = 1 << 24;

/// Default block size of block statistics and block-sparse kernels (SPEC section 2).
pub const DEFAULT_BLOCK: usize = 64;

/// The family of an attention pattern (SPEC section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatternKind {
    /// Every query sees every key.
    Dense,
    /// `|i − j| ≤ W`.
    Local,
    /// `|i − j| mod K == 0` (dilated attention).
    Atrous,
    /// `local(W) ∪ atrous(K)`.
    Sparse,
    /// Sparse Transformer "strided": causal, `(i − j) < L` or `(i − j) mod L == 0`.
    Strided,
    /// Sparse Transformer "fixed": same block of `L`, or a summary column (`j mod L ≥ L − C`).
    Fixed,
    /// Sliding window of `W` plus `G` global tokens.
    Longformer,
    /// Block-level window, global blocks and seeded random blocks.
    Bigbird,
}

impl PatternKind {
    /// Every kind, in the order the app and the docs list them.
    pub const ALL: [PatternKind; 8] = [
        PatternKind::Dense,
        PatternKind::Local,
        PatternKind::Atrous,
        PatternKind::Sparse,
        PatternKind::Strided,
        PatternKind::Fixed,
        PatternKind::Longformer,
        PatternKind::Bigbird,
    ];

    /// The lowercase name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            PatternKind::Dense => "dense",
            PatternKind::Local => "local",
            PatternKind::Atrous => "atrous",
            PatternKind::Sparse => "sparse",
            PatternKind::Strided => "strided",
            PatternKind::Fixed => "fixed",
            PatternKind::Longformer => "longformer",
            PatternKind::Bigbird => "bigbird",
        }
    }

    /// Parses a lowercase pattern name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this pattern depends on `i − j` only (a Toeplitz mask).
    pub fn is_toeplitz(self) -> bool {
        matches!(
            self,
            PatternKind::Dense
                | PatternKind::Local
                | PatternKind::Atrous
                | PatternKind::Sparse
                | PatternKind::Strided
        )
    }
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Raw, unvalidated pattern parameters as a user typed them (CLI flags or GUI controls).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatternParams {
    /// Pattern family.
    pub kind: PatternKind,
    /// Sequence length (queries = keys = n).
    pub n: usize,
    /// Stride K (atrous, sparse) or L (strided, fixed).
    pub stride: Option<usize>,
    /// Window W in tokens (local, sparse, longformer) or in blocks (bigbird).
    pub window: Option<usize>,
    /// Intersect with `j ≤ i`.
    pub causal: bool,
    /// Global tokens G (longformer) or global blocks (bigbird).
    pub global: usize,
    /// Summary columns C of the fixed pattern, 1..=L (default 1).
    pub summary: Option<usize>,
    /// Block size B of BigBird (and of block statistics).
    pub block: usize,
    /// Random blocks R per block row (bigbird).
    pub random: usize,
    /// Seed of BigBird's random blocks.
    pub seed: u64,
}

impl PatternParams {
    /// Parameters of `kind` at length `n` with every optional value at its default.
    pub fn new(kind: PatternKind, n: usize) -> Self {
        Self {
            kind,
            n,
            stride: None,
            window: None,
            causal: false,
            global: 0,
            summary: None,
            block: DEFAULT_BLOCK,
            random: 0,
            seed: 0,
        }
    }

    /// Builder: sets the stride.
    pub fn stride(mut self, k: usize) -> Self {
        self.stride = Some(k);
        self
    }

    /// Builder: sets the window.
    pub fn window(mut self, w: usize) -> Self {
        self.window = Some(w);
        self
    }

    /// Builder: sets the causal flag.
    pub fn causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// Builder: sets the global count.
    pub fn global(mut self, g: usize) -> Self {
        self.global = g;
        self
    }

    /// Builder: sets the fixed pattern's summary count.
    pub fn summary(mut self, c: usize) -> Self {
        self.summary = Some(c);
        self
    }

    /// Builder: sets the block size.
    pub fn block(mut self, b: usize) -> Self {
        self.block = b;
        self
    }

    /// Builder: sets BigBird's random blocks per row.
    pub fn random(mut self, r: usize) -> Self {
        self.random = r;
        self
    }

    /// Builder: sets BigBird's seed.
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = s;
        self
    }

    /// Validates the parameters into a [`Pattern`].
    pub fn build(&self) -> Result<Pattern, PatternError> {
        Pattern::new(self)
    }
}

/// Why a set of pattern parameters was refused. Each message names the bad value and what
/// would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// `n` outside `1..=MAX_N`.
    #[error("--n {0} is out of range: the sequence length must be an integer from 1 to {MAX_N}")]
    BadN(usize),
    /// A parameter the pattern needs was not given.
    #[error("pattern {kind} needs {flag} (an integer {range})")]
    Missing {
        /// Pattern that needs it.
        kind: PatternKind,
        /// Flag name, e.g. `--stride K`.
        flag: &'static str,
        /// Accepted range, e.g. `≥ 1`.
        range: &'static str,
    },
    /// A parameter outside its accepted range.
    #[error("{flag} {value} is out of range for pattern {kind}: expected {range}")]
    OutOfRange {
        /// Pattern being built.
        kind: PatternKind,
        /// Flag name.
        flag: &'static str,
        /// Value given.
        value: u64,
        /// Accepted range, in words.
        range: String,
    },
    /// A block layout or block statistics at this block size would be too large; a larger
    /// block size would not.
    #[error("{what} at --block {block} would need {needed} tiles, more than the limit of {limit}; {}", match suggest {
        Some(b) => format!("use --block {b} or larger"),
        None => "use a smaller --n".to_string(),
    })]
    BlockTooSmall {
        /// What was being built.
        what: &'static str,
        /// The block size B given.
        block: usize,
        /// Tiles it would need (at least, when counted while building).
        needed: u64,
        /// The limit.
        limit: u64,
        /// The smallest block size that fits, if any.
        suggest: Option<usize>,
    },
    /// A layout would not fit in memory.
    #[error("{what} would need {needed} entries, more than the limit of {limit}; use a smaller --n or a sparser pattern")]
    TooLarge {
        /// What was being built.
        what: &'static str,
        /// Entries it would need.
        needed: u64,
        /// The limit.
        limit: u64,
    },
}

/// Why one cell is allowed (or not), for the app's hover inspector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reason {
    /// Inside the local window (local, sparse, longformer) or the strided band (`i − j < L`).
    pub local: bool,
    /// On the atrous / strided lattice (`(i − j) mod K == 0`).
    pub atrous: bool,
    /// Same block (fixed) or BigBird window block.
    pub block: bool,
    /// A summary column (fixed).
    pub summary: bool,
    /// A global row or column (longformer, bigbird).
    pub global: bool,
    /// A BigBird random block.
    pub random: bool,
    /// Everything allowed (dense).
    pub dense: bool,
    /// Removed because `j > i` under a causal mask.
    pub masked_by_causal: bool,
}

impl Reason {
    /// Whether the cell is allowed.
    pub fn allowed(&self) -> bool {
        !self.masked_by_causal
            && (self.local
                || self.atrous
                || self.block
                || self.summary
                || self.global
                || self.random
                || self.dense)
    }

    /// A short human description, e.g. `allowed: local + atrous`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (flag, name) in [
            (self.dense, "dense"),
            (self.local, "local window"),
            (self.atrous, "atrous stride"),
            (self.block, "same block"),
            (self.summary, "summary column"),
            (self.global, "global"),
            (self.random, "random block"),
        ] {
            if flag {
                parts.push(name);
            }
        }
        if self.masked_by_causal {
            "not allowed: future key (causal)".to_string()
        } else if parts.is_empty() {
            "not allowed".to_string()
        } else {
            format!("allowed: {}", parts.join(" + "))
        }
    }
}

/// A validated attention pattern over `n` tokens.
#[derive(Clone, Debug)]
pub struct Pattern {
    params: PatternParams,
    kind: PatternKind,
    n: usize,
    /// Stride K / L (1 when unused).
    k: usize,
    /// Window W in tokens, or BigBird window in blocks.
    w: usize,
    causal: bool,
    /// Global tokens (longformer) or global blocks (bigbird).
    g: usize,
    /// Summary columns (fixed).
    c: usize,
    /// BigBird block size.
    b: usize,
    /// BigBird: sorted allowed block columns per block row (empty for global rows: all allowed),
    /// random ones flagged by the parallel vector.
    bigbird: Option<BigBirdTable>,
    /// Double prefix sums of the distance profile, built on first use (Toeplitz patterns).
    toeplitz: OnceLock<count::Toeplitz>,
}

/// BigBird block-level layout: for each block row, the allowed block columns.
#[derive(Clone, Debug)]
struct BigBirdTable {
    /// Number of blocks per side.
    nb: usize,
    /// Allowed block columns per block row, sorted, deduplicated.
    cols: Vec<Vec<u32>>,
    /// Random block columns per block row, sorted (a subset of `cols`).
    random: Vec<Vec<u32>>,
}

impl Pattern {
    /// Validates `params` (SPEC section 1) and prepares the pattern.
    pub fn new(params: &PatternParams) -> Result<Self, PatternError> {
        let kind = params.kind;
        let n = params.n;
        if n == 0 || n > MAX_N {
            return Err(PatternError::BadN(n));
        }
        let need = |v: Option<usize>, flag: &'static str, range: &'static str| {
            v.ok_or(PatternError::Missing { kind, flag, range })
        };
        let positive = |v: usize, flag: &'static str| {
            if v == 0 {
                Err(PatternError::OutOfRange {
                    kind,
                    flag,
                    value: 0,
                    range: "an integer ≥ 1".into(),
                })
            } else {
                Ok(v)
            }
        };
        let mut k = 1;
        let mut w = 0;
        let mut c = 0;
        let mut b = 1;
        let g = params.global;
        match kind {
            PatternKind::Dense => {}
            PatternKind::Local => w = need(params.window, "--window W", "≥ 0")?,
            PatternKind::Atrous => {
                k = positive(need(params.stride, "--stride K", "≥ 1")?, "--stride")?
            }
            PatternKind::Sparse => {
                k = positive(need(params.stride, "--stride K", "≥ 1")?, "--stride")?;
                w = need(params.window, "--window W", "≥ 0")?;
            }
            PatternKind::Strided => {
                k = positive(need(params.stride, "--stride L", "≥ 1")?, "--stride")?
            }
            PatternKind::Fixed => {
                k = positive(need(params.stride, "--stride L", "≥ 1")?, "--stride")?;
                c = params.summary.unwrap_or(1);
                if c == 0 || c > k {
                    return Err(PatternError::OutOfRange {
                        kind,
                        flag: "--summary",
                        value: c as u64,
                        range: format!("an integer from 1 to the stride L = {k}"),
                    });
                }
            }
            PatternKind::Longformer => w = need(params.window, "--window W", "≥ 0")?,
            PatternKind::Bigbird => {
                b = positive(params.block, "--block")?;
                w = params.window.unwrap_or(1);
            }
        }
        let causal = params.causal || kind == PatternKind::Strided;
        let bigbird = (kind == PatternKind::Bigbird)
            .then(|| BigBirdTable::build(n, b, w, g, params.random, params.seed));
        Ok(Self {
            params: params.clone(),
            kind,
            n,
            k,
            w,
            causal,
            g,
            c,
            b,
            bigbird,
            toeplitz: OnceLock::new(),
        })
    }

    /// The parameters this pattern was built from.
    pub fn params(&self) -> &PatternParams {
        &self.params
    }

    /// Pattern family.
    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// Sequence length.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether the pattern is intersected with `j ≤ i` (always true for strided).
    pub fn is_causal(&self) -> bool {
        self.causal
    }

    /// A short label such as `sparse(k=4, w=3, causal)`.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        match self.kind {
            PatternKind::Dense => {}
            PatternKind::Local => parts.push(format!("w={}", self.w)),
            PatternKind::Atrous => parts.push(format!("k={}", self.k)),
            PatternKind::Sparse => {
                parts.push(format!("k={}", self.k));
                parts.push(format!("w={}", self.w));
            }
            PatternKind::Strided => parts.push(format!("l={}", self.k)),
            PatternKind::Fixed => {
                parts.push(format!("l={}", self.k));
                parts.push(format!("c={}", self.c));
            }
            PatternKind::Longformer => {
                parts.push(format!("w={}", self.w));
                parts.push(format!("g={}", self.g));
            }
            PatternKind::Bigbird => {
                parts.push(format!("b={}", self.b));
                parts.push(format!("wb={}", self.w));
                parts.push(format!("gb={}", self.g));
                parts.push(format!("r={}", self.params.random));
                parts.push(format!("seed={}", self.params.seed));
            }
        }
        if self.causal && self.kind != PatternKind::Strided {
            parts.push("causal".into());
        }
        if parts.is_empty() {
            self.kind.name().to_string()
        } else {
            format!("{}({})", self.kind.name(), parts.join(", "))
        }
    }

    /// Whether query `i` may attend to key `j`. Both must be `< n`.
    #[inline]
    pub fn allows(&self, i: usize, j: usize) -> bool {
        debug_assert!(i < self.n && j < self.n);
        if self.causal && j > i {
            return false;
        }
        let dist = i.abs_diff(j);
        match self.kind {
            PatternKind::Dense => true,
            PatternKind::Local => dist <= self.w,
            PatternKind::Atrous => dist % self.k == 0,
            PatternKind::Sparse => dist <= self.w || dist % self.k == 0,
            // causal already enforced, so i ≥ j here.
            PatternKind::Strided => dist < self.k || dist % self.k == 0,
            PatternKind::Fixed => i / self.k == j / self.k || j % self.k >= self.k - self.c,
            PatternKind::Longformer => dist <= self.w || i < self.g || j < self.g,
            PatternKind::Bigbird => {
                let t = self.bigbird.as_ref().expect("bigbird table");
                t.allows_block(i / self.b, j / self.b)
            }
        }
    }

    /// Why cell `(i, j)` is allowed or not (for the hover inspector).
    pub fn reason(&self, i: usize, j: usize) -> Reason {
        let dist = i.abs_diff(j);
        let mut r = Reason {
            masked_by_causal: self.causal && j > i,
            ..Reason::default()
        };
        match self.kind {
            PatternKind::Dense => r.dense = true,
            PatternKind::Local => r.local = dist <= self.w,
            PatternKind::Atrous => r.atrous = dist % self.k == 0,
            PatternKind::Sparse => {
                r.local = dist <= self.w;
                r.atrous = dist % self.k == 0;
            }
            PatternKind::Strided => {
                r.local = dist < self.k;
                r.atrous = dist % self.k == 0;
            }
            PatternKind::Fixed => {
                r.block = i / self.k == j / self.k;
                r.summary = j % self.k >= self.k - self.c;
            }
            PatternKind::Longformer => {
                r.local = dist <= self.w;
                r.global = i < self.g || j < self.g;
            }
            PatternKind::Bigbird => {
                let t = self.bigbird.as_ref().expect("bigbird table");
                let (bi, bj) = (i / self.b, j / self.b);
                r.block = bi.abs_diff(bj) <= self.w;
                r.global = bi < self.g || bj < self.g;
                r.random = t.random[bi].binary_search(&(bj as u32)).is_ok();
            }
        }
        r
    }

    /// Number of allowed keys `j` in `cols` for query `i`, in O(1) (O(blocks in row) for
    /// BigBird). `cols` is clipped to `0..n`.
    pub fn count_in_range(&self, i: usize, cols: Range<usize>) -> u64 {
        count::count_in_range(self, i, cols)
    }

    /// Number of allowed keys of query `i`.
    pub fn row_nnz(&self, i: usize) -> u64 {
        self.count_in_range(i, 0..self.n)
    }

    /// Number of allowed cells in the rectangle `rows × cols`: O(1) for patterns that depend
    /// only on `i − j` and for longformer, O(rows) otherwise.
    pub fn count_rect(&self, rows: Range<usize>, cols: Range<usize>) -> u64 {
        count::count_rect(self, rows, cols)
    }

    /// Total number of allowed `(i, j)` pairs, computed in O(n) (parallel).
    pub fn nnz(&self) -> u64 {
        use rayon::prelude::*;
        (0..self.n)
            .into_par_iter()
            .with_min_len(1024)
            .map(|i| self.row_nnz(i))
            .sum()
    }

    /// `nnz / n²`.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.n as f64 * self.n as f64)
    }

    /// Writes the allowed keys of query `i` into `out` (cleared first), sorted ascending,
    /// in O(row nnz) for every pattern but BigBird's global rows (O(n)).
    pub fn row_keys(&self, i: usize, out: &mut Vec<u32>) {
        count::row_keys(self, i, out)
    }

    /// Stride K (or L) — 1 when the pattern has none.
    pub fn stride(&self) -> usize {
        self.k
    }

    /// Window W (tokens; blocks for BigBird) — 0 when the pattern has none.
    pub fn window(&self) -> usize {
        self.w
    }

    /// Global tokens (longformer) or blocks (bigbird).
    pub fn global(&self) -> usize {
        self.g
    }

    /// Summary columns of the fixed pattern.
    pub fn summary(&self) -> usize {
        self.c
    }

    /// BigBird block size (1 for other patterns).
    pub fn bigbird_block(&self) -> usize {
        self.b
    }

    /// BigBird random block columns of block row `bi` (empty for other patterns).
    pub fn bigbird_random_blocks(&self, bi: usize) -> &[u32] {
        self.bigbird
            .as_ref()
            .and_then(|t| t.random.get(bi))
            .map_or(&[], |v| v.as_slice())
    }

    /// Distance profile of a Toeplitz pattern: is distance `d = i − j` allowed?
    pub(crate) fn allows_distance(&self, d: i64) -> bool {
        if self.causal && d < 0 {
            return false;
        }
        let dist = d.unsigned_abs() as usize;
        match self.kind {
            PatternKind::Dense => true,
            PatternKind::Local => dist <= self.w,
            PatternKind::Atrous => dist % self.k == 0,
            PatternKind::Sparse => dist <= self.w || dist % self.k == 0,
            PatternKind::Strided => dist < self.k || dist % self.k == 0,
            _ => unreachable!("allows_distance on a non-Toeplitz pattern"),
        }
    }
}

impl BigBirdTable {
    fn build(n: usize, b: usize, wb: usize, gb: usize, r: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        let nb = n.div_ceil(b);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut cols = Vec::with_capacity(nb);
        let mut random = Vec::with_capacity(nb);
        for bi in 0..nb {
            if bi < gb {
                // Global block row: sees every block column.
                cols.push((0..nb as u32).collect::<Vec<_>>());
                random.push(Vec::new());
                continue;
            }
            let lo = bi.saturating_sub(wb);
            let hi = (bi + wb).min(nb - 1);
            let mut row: Vec<u32> = (0..gb.min(nb) as u32).collect();
            row.extend(lo as u32..=hi as u32);
            row.sort_unstable();
            row.dedup();
            // Random blocks are drawn among the block columns not already allowed: sample
            // distinct ranks in 0..free, then map rank t to the t-th free column.
            let free = nb - row.len();
            let mut candidates: Vec<u32> = rand::seq::index::sample(&mut rng, free, r.min(free))
                .into_iter()
                .map(|t| nth_free_column(&row, t))
                .collect();
            candidates.sort_unstable();
            row.extend_from_slice(&candidates);
            row.sort_unstable();
            cols.push(row);
            random.push(candidates);
        }
        Self { nb, cols, random }
    }

    #[inline]
    fn allows_block(&self, bi: usize, bj: usize) -> bool {
        debug_assert!(bi < self.nb && bj < self.nb);
        self.cols[bi].binary_search(&(bj as u32)).is_ok()
    }
}

/// The `t`-th (0-based) column that is not in the sorted list `taken`.
fn nth_free_column(taken: &[u32], t: usize) -> u32 {
    let mut c = t as u32;
    for &x in taken {
        if x <= c {
            c += 1;
        } else {
            break;
        }
    }
    c
}

#[cfg(test)]
mod tests;
