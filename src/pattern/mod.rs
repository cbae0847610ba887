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
//! The definitions follow docs/contract.md section 1 to the letter.

mod count;
pub mod expr;
mod layout;
mod raster;
pub mod structure;
pub mod terms;

pub use expr::Expr;
pub use layout::{
    check_layout, BlockKind, BlockLayout, BlockStats, CsrLayout, MAX_BLOCK, MAX_CSR_ENTRIES,
    MAX_LAYOUT_TILES,
};
pub use raster::Raster;
pub use terms::TermKind;

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use structure::{Atom, BlockTable, Conj, Dnf, Node};

/// Largest sequence length any pattern accepts (2²⁴ tokens).
pub const MAX_N: usize = 1 << 24;

/// Default block size of block statistics and block-sparse kernels (docs/contract.md section 2).
pub const DEFAULT_BLOCK: usize = 64;

/// The family of an attention pattern (docs/contract.md section 1).
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
    /// Any other pattern expression (`PatternParams::expr`).
    Custom,
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
            PatternKind::Custom => "custom",
        }
    }

    /// Parses a lowercase pattern name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The expression term of a named pattern (`None` for [`PatternKind::Custom`]).
    pub fn term(self) -> Option<TermKind> {
        Some(match self {
            PatternKind::Dense => TermKind::Dense,
            PatternKind::Local => TermKind::Local,
            PatternKind::Atrous => TermKind::Atrous,
            PatternKind::Sparse => TermKind::Sparse,
            PatternKind::Strided => TermKind::Strided,
            PatternKind::Fixed => TermKind::Fixed,
            PatternKind::Longformer => TermKind::Longformer,
            PatternKind::Bigbird => TermKind::Bigbird,
            PatternKind::Custom => return None,
        })
    }

    /// The named pattern of a term, if it is one of the eight.
    pub fn of_term(t: TermKind) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.term() == Some(t))
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
    /// The pattern expression when `kind` is [`PatternKind::Custom`] (README, "Pattern
    /// expressions"); bare names in it take their missing parameters from the fields above.
    #[serde(default)]
    pub expr: Option<String>,
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
            expr: None,
        }
    }

    /// Parameters of the pattern written `text`: a bare name of the eight patterns keeps
    /// its [`PatternKind`] (parameters from the flags); anything else is an expression.
    pub fn from_text(text: &str, n: usize) -> Self {
        let t = text.trim();
        match PatternKind::from_name(&t.to_ascii_lowercase()) {
            Some(kind) => Self::new(kind, n),
            None => Self::new(PatternKind::Custom, n).expr(t),
        }
    }

    /// Builder: makes this an expression pattern.
    pub fn expr(mut self, text: &str) -> Self {
        self.kind = PatternKind::Custom;
        self.expr = Some(text.to_string());
        self
    }

    /// The pattern as written: the expression, or the bare name.
    pub fn text(&self) -> &str {
        match (&self.kind, &self.expr) {
            (PatternKind::Custom, Some(e)) => e,
            (kind, _) => kind.name(),
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
    /// A pattern expression that does not parse or names a bad term, key or value.
    #[error("in pattern \"{expr}\" at character {at}: {message}")]
    Syntax {
        /// The expression as given.
        expr: String,
        /// 1-based character position of the problem.
        at: usize,
        /// What is wrong and what would be accepted.
        message: String,
        /// The PATTERN flag the bad value came from (`--stride`…), when it came from one.
        flag: Option<&'static str>,
    },
    /// An expression whose union of intersections has too many parts.
    #[error("pattern \"{0}\" expands to more than {max} unions of intersections; simplify it", max = structure::MAX_CONJ)]
    TooComplex(String),
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reason {
    /// What allows the cell (roles such as `local window`, or union members' labels).
    pub by: Vec<String>,
    /// Whether the cell is outside a top-level `causal` (a future key).
    pub masked_by_causal: bool,
}

impl Reason {
    /// Whether the cell is allowed.
    pub fn allowed(&self) -> bool {
        !self.masked_by_causal && !self.by.is_empty()
    }

    /// A short human description, e.g. `allowed: local window + atrous stride`.
    pub fn describe(&self) -> String {
        if self.masked_by_causal {
            "not allowed: future key (causal)".to_string()
        } else if self.by.is_empty() {
            "not allowed".to_string()
        } else {
            format!("allowed: {}", self.by.join(" + "))
        }
    }
}

/// A validated attention pattern over `n` tokens: an expression and the structure derived
/// from it.
#[derive(Clone, Debug)]
pub struct Pattern {
    params: PatternParams,
    kind: PatternKind,
    n: usize,
    expr: Expr,
    dnf: Dnf,
    /// Labels of the top-level union members.
    members: Vec<String>,
    causal: bool,
    /// Double prefix sums of the distance profile (Toeplitz expressions), built on first use.
    toeplitz: OnceLock<count::Toeplitz>,
    /// Tables of the reduced forms of a non-Toeplitz expression, by conjunction mask.
    reduced: Arc<Vec<OnceLock<count::Toeplitz>>>,
}

/// Largest n for which a non-Toeplitz expression keeps prefix-sum tables of its reduced
/// forms (16 MiB each); above, rectangles are counted row by row.
const REDUCED_TABLE_MAX_N: usize = 1 << 20;

impl Pattern {
    /// Validates `params` (docs/contract.md sections 1 and 5) and prepares the pattern.
    pub fn new(params: &PatternParams) -> Result<Self, PatternError> {
        let n = params.n;
        if n == 0 || n > MAX_N {
            return Err(PatternError::BadN(n));
        }
        let text = match (params.kind, &params.expr) {
            (PatternKind::Custom, Some(e)) => e.clone(),
            (PatternKind::Custom, None) => {
                return Err(PatternError::Syntax {
                    expr: String::new(),
                    at: 1,
                    message: "the pattern is empty; expected a term such as local(w=32)".into(),
                    flag: None,
                })
            }
            (kind, _) => kind.name().to_string(),
        };
        let mut expr = expr::parse(&text, params)?;
        if params.causal {
            expr = expr.and_causal();
        }
        Self::from_expr(expr, n, params.clone())
    }

    /// The pattern of an already parsed expression at length `n`.
    pub fn from_expr(expr: Expr, n: usize, params: PatternParams) -> Result<Self, PatternError> {
        if n == 0 || n > MAX_N {
            return Err(PatternError::BadN(n));
        }
        let too_complex = || PatternError::TooComplex(expr.to_string());
        let mut conjs = Vec::new();
        let mut members = Vec::new();
        for (m, (member, label)) in split_members(&expr).into_iter().enumerate() {
            members.push(label);
            for atoms in structure::to_conjs(&node_of(&member, n)).ok_or_else(too_complex)? {
                conjs.push(Conj { atoms, member: m });
            }
        }
        if conjs.len() > structure::MAX_CONJ {
            return Err(too_complex());
        }
        let dnf = Dnf { conjs };
        let kind = match expr.single_term() {
            Some((t, _)) => PatternKind::of_term(t.kind).unwrap_or(PatternKind::Custom),
            None => PatternKind::Custom,
        };
        let causal = expr.is_top_causal();
        let reduced = if dnf.is_toeplitz() || n > REDUCED_TABLE_MAX_N {
            Vec::new()
        } else {
            (0..1usize << dnf.conjs.len())
                .map(|_| OnceLock::new())
                .collect()
        };
        Ok(Self {
            params,
            kind,
            n,
            expr,
            dnf,
            members,
            causal,
            toeplitz: OnceLock::new(),
            reduced: Arc::new(reduced),
        })
    }

    /// The parameters this pattern was built from.
    pub fn params(&self) -> &PatternParams {
        &self.params
    }

    /// The named family (a single named term, possibly `& causal`), else
    /// [`PatternKind::Custom`].
    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// The pattern's name in JSON `pattern` fields: the family name of a named pattern
    /// (`sparse`), the canonical label of any other expression.
    pub fn name(&self) -> String {
        match self.kind {
            PatternKind::Custom => self.label(),
            k => k.name().to_string(),
        }
    }

    /// The expression, every parameter resolved.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The structure every count is derived from.
    pub fn dnf(&self) -> &Dnf {
        &self.dnf
    }

    /// Labels of the union members, the parts the map colours apart: the members of a
    /// top-level union, or of the one union inside a top-level intersection (`(a | b) &
    /// causal` → `a`, `b`); one entry when there is no union.
    pub fn member_labels(&self) -> &[String] {
        &self.members
    }

    /// The union members as patterns of their own at the same `n` (each with the
    /// intersection around the union, see [`Pattern::member_labels`]).
    pub fn members(&self) -> Vec<Pattern> {
        split_members(&self.expr)
            .into_iter()
            .filter_map(|(m, _)| Pattern::from_expr(m, self.n, self.params.clone()).ok())
            .collect()
    }

    /// Sequence length.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether the pattern is intersected with `j ≤ i` at its top level (always for strided).
    pub fn is_causal(&self) -> bool {
        self.causal
    }

    /// Whether the mask depends on `i − j` only.
    pub fn is_toeplitz(&self) -> bool {
        self.dnf.is_toeplitz()
    }

    /// The canonical label, an expression that parses back to the same mask, such as
    /// `sparse(k=4, w=3, causal)` or `(local(w=64) | sink(s=4)) & causal`.
    pub fn label(&self) -> String {
        self.expr.to_string()
    }

    /// The same pattern intersected with `causal`.
    pub fn and_causal(&self) -> Result<Pattern, PatternError> {
        if self.causal {
            return Ok(self.clone());
        }
        let mut params = self.params.clone();
        params.causal = true;
        Pattern::from_expr(self.expr.clone().and_causal(), self.n, params)
    }

    /// Whether query `i` may attend to key `j`. Both must be `< n`.
    #[inline]
    pub fn allows(&self, i: usize, j: usize) -> bool {
        debug_assert!(i < self.n && j < self.n);
        self.dnf.allows(i, j)
    }

    /// Why cell `(i, j)` is allowed or not (for the hover inspector).
    pub fn reason(&self, i: usize, j: usize) -> Reason {
        let masked_by_causal = self.causal && j > i;
        let mut by: Vec<String> = Vec::new();
        if !masked_by_causal {
            for c in &self.dnf.conjs {
                if c.atoms.iter().all(|a| a.allows(i, j)) {
                    let role = if self.kind == PatternKind::Custom {
                        self.members[c.member].clone()
                    } else {
                        role(&c.atoms, self.kind, i, j).to_string()
                    };
                    if !by.contains(&role) {
                        by.push(role);
                    }
                }
            }
        }
        Reason {
            by,
            masked_by_causal,
        }
    }

    /// Number of allowed keys `j` in `cols` for query `i` (`cols` clipped to `0..n`): O(1)
    /// per conjunction subset (inclusion–exclusion), O(blocks) with a block table.
    pub fn count_in_range(&self, i: usize, cols: Range<usize>) -> u64 {
        count::count_in_range(self, i, cols)
    }

    /// Number of allowed keys of query `i`.
    pub fn row_nnz(&self, i: usize) -> u64 {
        self.count_in_range(i, 0..self.n)
    }

    /// Number of allowed cells in the rectangle `rows × cols`: O(1) for Toeplitz expressions,
    /// O(pieces) otherwise (see `structure`), O(rows) as the last resort.
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

    /// Writes the allowed keys of query `i` into `out` (cleared first), sorted ascending.
    pub fn row_keys(&self, i: usize, out: &mut Vec<u32>) {
        self.dnf.row_keys(i, self.n, out)
    }

    /// The named term's value of `key` (0 when the pattern is no named term or lacks it).
    fn term_value(&self, key: &str) -> u64 {
        self.expr.single_term().map_or(0, |(t, _)| t.get(key))
    }

    /// Stride K (or L) of a named pattern — 1 when it has none.
    pub fn stride(&self) -> usize {
        match self.kind {
            PatternKind::Atrous | PatternKind::Sparse => self.term_value("k") as usize,
            PatternKind::Strided | PatternKind::Fixed => self.term_value("l") as usize,
            _ => 1,
        }
    }

    /// Window W of a named pattern (tokens; blocks for BigBird) — 0 when it has none.
    pub fn window(&self) -> usize {
        match self.kind {
            PatternKind::Local | PatternKind::Sparse | PatternKind::Longformer => {
                self.term_value("w") as usize
            }
            PatternKind::Bigbird => self.term_value("wb") as usize,
            _ => 0,
        }
    }

    /// Global tokens (longformer) or blocks (bigbird).
    pub fn global(&self) -> usize {
        match self.kind {
            PatternKind::Longformer => self.term_value("g") as usize,
            PatternKind::Bigbird => self.term_value("gb") as usize,
            _ => 0,
        }
    }

    /// Summary columns of the fixed pattern.
    pub fn summary(&self) -> usize {
        self.term_value("c") as usize
    }

    /// BigBird block size (1 for other patterns).
    pub fn bigbird_block(&self) -> usize {
        self.block_table().map_or(1, |t| t.b)
    }

    /// BigBird random block columns of block row `bi` (empty for other patterns).
    pub fn bigbird_random_blocks(&self, bi: usize) -> &[u32] {
        self.block_table()
            .and_then(|t| t.random.get(bi))
            .map_or(&[], |v| v.as_slice())
    }

    /// The first block table among the atoms (BigBird).
    pub fn block_table(&self) -> Option<&BlockTable> {
        self.dnf
            .conjs
            .iter()
            .flat_map(|c| &c.atoms)
            .find_map(|a| match a {
                Atom::Blocks(t) => Some(t.as_ref()),
                _ => None,
            })
    }

    /// Distance profile of a Toeplitz pattern: is distance `d = i − j` allowed?
    pub(crate) fn allows_distance(&self, d: i64) -> bool {
        self.dnf.allows_distance(d)
    }
}

/// The union members of `e` with their labels: `a | b` → (a, "a"), (b, "b"); `(a | b) & c`
/// → (a & c, "a"), (b & c, "b"); anything else is one member.
fn split_members(e: &Expr) -> Vec<(Expr, String)> {
    match e {
        Expr::Union(v) => v.iter().map(|m| (m.clone(), m.to_string())).collect(),
        Expr::Inter(v) => {
            let unions: Vec<usize> = (0..v.len())
                .filter(|&x| matches!(v[x], Expr::Union(_)))
                .collect();
            match unions.as_slice() {
                [u] => {
                    let Expr::Union(parts) = &v[*u] else {
                        unreachable!("filtered on unions")
                    };
                    parts
                        .iter()
                        .map(|m| {
                            let mut all = v.clone();
                            all[*u] = m.clone();
                            (Expr::Inter(all), m.to_string())
                        })
                        .collect()
                }
                _ => vec![(e.clone(), e.to_string())],
            }
        }
        Expr::Term(_) => vec![(e.clone(), e.to_string())],
    }
}

/// The atoms a term expands to at length `n`, under `expr`'s unions and intersections.
fn node_of(e: &Expr, n: usize) -> Node {
    match e {
        Expr::Term(t) => (t.def().atoms)(&t.values, n),
        Expr::Union(v) => Node::Union(v.iter().map(|m| node_of(m, n)).collect()),
        Expr::Inter(v) => Node::Inter(v.iter().map(|m| node_of(m, n)).collect()),
    }
}

/// What a conjunction of a named pattern is, in words (the hover inspector's "why").
fn role(atoms: &[Atom], kind: PatternKind, i: usize, j: usize) -> &'static str {
    let main = atoms.iter().find(|a| {
        !matches!(
            a,
            Atom::Band {
                lo: 0,
                hi: i64::MAX
            }
        )
    });
    match main {
        None => "dense",
        Some(Atom::Band { lo, hi }) if *lo == i64::MIN && *hi == i64::MAX => "dense",
        Some(Atom::Band { .. }) => "local window",
        Some(Atom::Residue { .. }) => "atrous stride",
        Some(Atom::Cols { .. }) if kind == PatternKind::Custom => "sink",
        Some(Atom::Cols { .. }) | Some(Atom::Rows { .. }) => "global",
        Some(Atom::SameBlock { .. }) => "same block",
        Some(Atom::PeriodicCols { .. }) => "summary column",
        Some(Atom::Blocks(t)) => {
            let (bi, bj) = (i / t.b, j / t.b);
            if (bi as u64) < t.gb || (bj as u64) < t.gb {
                "global"
            } else if t
                .random
                .get(bi)
                .is_some_and(|r| r.binary_search(&(bj as u32)).is_ok())
            {
                "random block"
            } else {
                "same block"
            }
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_expr;
