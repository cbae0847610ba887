//! The structure every question about an expression is derived from.
//!
//! Each term expands to [`Atom`]s combined by union and intersection ([`Node`]); the whole
//! expression is then flattened into a union of conjunctions ([`Dnf`]), each conjunction a
//! list of atoms that must all hold. For one query row `i`, every atom is one of a few shapes
//! of key sets, and so is their intersection ([`RowSet`]):
//!
//! | atom | keys of row `i` |
//! |---|---|
//! | `Band { lo, hi }` (local, causal, dense) | the interval `[i − hi, i − lo]` |
//! | `Residue { k }` (atrous) | the class `j ≡ i (mod k)` |
//! | `Cols { end }` (sink, global columns) | the interval `[0, end)` |
//! | `Rows { end }` (global rows) | all keys if `i < end`, else none |
//! | `SameBlock { l }` (fixed) | the interval of `i`'s block of `l` |
//! | `PeriodicCols { l, c }` (fixed's summaries) | `j mod l ∈ [l − c, l)` |
//! | `Blocks` (BigBird) | the allowed block columns of `i`'s block row |
//!
//! Intervals intersect to an interval and residue classes to one residue class (Chinese
//! remainder theorem), so a conjunction's keys in a range are counted in O(1) (O(c) with
//! periodic columns, O(blocks) with a block table). A union is counted by inclusion–exclusion
//! over its conjunctions, pruning every subset whose intersection is already empty.
//!
//! Rectangles: an expression whose atoms are all bands and residues depends on `i − j` only
//! and is counted in O(1) from double prefix sums over the distance (`count.rs`). Otherwise
//! the rectangle is cut where the other atoms change value (column `end`, row `end`, block
//! edges, period edges); inside each piece they are constants, the expression reduces to
//! bands and residues, and each piece is one O(1) lookup in the table of its reduced form.

use std::ops::Range;
use std::sync::Arc;

/// One primitive set of `(i, j)` cells.
#[derive(Clone, Debug)]
pub enum Atom {
    /// `lo ≤ i − j ≤ hi` (`i64::MIN` / `i64::MAX` for an open end).
    Band {
        /// Smallest allowed `i − j`.
        lo: i64,
        /// Largest allowed `i − j`.
        hi: i64,
    },
    /// `(i − j) mod k == 0`.
    Residue {
        /// The modulus, ≥ 1.
        k: u64,
    },
    /// `j < end`.
    Cols {
        /// One past the last allowed key.
        end: u64,
    },
    /// `i < end`.
    Rows {
        /// One past the last query that sees every key.
        end: u64,
    },
    /// `⌊i / l⌋ == ⌊j / l⌋`.
    SameBlock {
        /// Block length, ≥ 1.
        l: u64,
    },
    /// `j mod l ≥ l − c`.
    PeriodicCols {
        /// Period, ≥ 1.
        l: u64,
        /// Columns per period, `1..=l`.
        c: u64,
    },
    /// A block-level table (BigBird).
    Blocks(Arc<BlockTable>),
}

impl Atom {
    /// Whether the atom depends on `i − j` only.
    pub fn is_toeplitz(&self) -> bool {
        matches!(self, Atom::Band { .. } | Atom::Residue { .. })
    }

    /// Whether cell `(i, j)` is in the atom.
    #[inline]
    pub fn allows(&self, i: usize, j: usize) -> bool {
        match self {
            Atom::Band { lo, hi } => {
                let d = i as i64 - j as i64;
                *lo <= d && d <= *hi
            }
            Atom::Residue { k } => (i.abs_diff(j) as u64) % k == 0,
            Atom::Cols { end } => (j as u64) < *end,
            Atom::Rows { end } => (i as u64) < *end,
            Atom::SameBlock { l } => i as u64 / l == j as u64 / l,
            Atom::PeriodicCols { l, c } => j as u64 % l >= l - c,
            Atom::Blocks(t) => t.allows(i, j),
        }
    }

    /// Whether distance `d = i − j` is in a Toeplitz atom.
    #[inline]
    fn allows_distance(&self, d: i64) -> bool {
        match self {
            Atom::Band { lo, hi } => *lo <= d && d <= *hi,
            Atom::Residue { k } => d.unsigned_abs() % k == 0,
            _ => unreachable!("allows_distance on a non-Toeplitz atom"),
        }
    }
}

/// Atoms combined by union and intersection: what one term expands to.
#[derive(Clone, Debug)]
pub enum Node {
    /// One atom.
    Atom(Atom),
    /// Any member.
    Union(Vec<Node>),
    /// Every member.
    Inter(Vec<Node>),
}

/// One conjunction: every atom must hold. `member` is the top-level union member it came
/// from (for colours and the "why" of a cell).
#[derive(Clone, Debug)]
pub struct Conj {
    /// The atoms (empty = every cell).
    pub atoms: Vec<Atom>,
    /// Index of the expression's top-level union member this conjunction belongs to.
    pub member: usize,
}

/// Most conjunctions an expression may flatten to.
pub const MAX_CONJ: usize = 16;

/// An expression as a union of conjunctions.
#[derive(Clone, Debug)]
pub struct Dnf {
    /// The conjunctions.
    pub conjs: Vec<Conj>,
}

/// Flattens `node` into conjunctions (`None` when there would be more than [`MAX_CONJ`]).
pub fn to_conjs(node: &Node) -> Option<Vec<Vec<Atom>>> {
    match node {
        Node::Atom(a) => Some(vec![vec![a.clone()]]),
        Node::Union(v) => {
            let mut out = Vec::new();
            for m in v {
                out.extend(to_conjs(m)?);
                if out.len() > MAX_CONJ {
                    return None;
                }
            }
            Some(out)
        }
        Node::Inter(v) => {
            let mut acc: Vec<Vec<Atom>> = vec![Vec::new()];
            for m in v {
                let rhs = to_conjs(m)?;
                if acc.len() * rhs.len() > MAX_CONJ {
                    return None;
                }
                let mut next = Vec::with_capacity(acc.len() * rhs.len());
                for a in &acc {
                    for b in &rhs {
                        let mut c = a.clone();
                        c.extend(b.iter().cloned());
                        next.push(c);
                    }
                }
                acc = next;
            }
            Some(acc)
        }
    }
}

impl Dnf {
    /// Whether every atom depends on `i − j` only.
    pub fn is_toeplitz(&self) -> bool {
        self.conjs
            .iter()
            .all(|c| c.atoms.iter().all(Atom::is_toeplitz))
    }

    /// Whether `(i, j)` is allowed.
    #[inline]
    pub fn allows(&self, i: usize, j: usize) -> bool {
        self.conjs
            .iter()
            .any(|c| c.atoms.iter().all(|a| a.allows(i, j)))
    }

    /// Whether distance `d` is allowed (Toeplitz expressions only).
    pub fn allows_distance(&self, d: i64) -> bool {
        self.conjs
            .iter()
            .any(|c| c.atoms.iter().all(|a| a.allows_distance(d)))
    }

    /// The row sets of row `i` restricted to keys `[j0, j1)`, one per conjunction (empty ones
    /// dropped).
    fn row_sets(&self, i: usize, j0: u64, j1: u64) -> Vec<RowSet> {
        self.conjs
            .iter()
            .filter_map(|c| RowSet::of(&c.atoms, i, j0, j1))
            .collect()
    }

    /// Allowed keys of row `i` in `[j0, j1)`.
    pub fn count_in_range(&self, i: usize, j0: usize, j1: usize) -> u64 {
        if j0 >= j1 {
            return 0;
        }
        let sets = self.row_sets(i, j0 as u64, j1 as u64);
        count_union(&sets)
    }

    /// Allowed keys of row `i` in `[0, n)`, ascending, into `out` (cleared first).
    pub fn row_keys(&self, i: usize, n: usize, out: &mut Vec<u32>) {
        out.clear();
        let sets = self.row_sets(i, 0, n as u64);
        match sets.len() {
            0 => {}
            1 => sets[0].push_keys(out),
            _ => {
                let mut lists: Vec<Vec<u32>> = sets
                    .iter()
                    .map(|s| {
                        let mut v = Vec::new();
                        s.push_keys(&mut v);
                        v
                    })
                    .collect();
                merge_sorted(&mut lists, out);
            }
        }
    }

    /// Cuts of the row axis (`rows`) and key axis (`cols`) inside `[lo, hi)` where a
    /// non-Toeplitz atom changes value, appended (unsorted) to `out`; `false` if more than
    /// `limit` cuts would be needed.
    pub(super) fn cuts(
        &self,
        rows: bool,
        lo: u64,
        hi: u64,
        limit: usize,
        out: &mut Vec<u64>,
    ) -> bool {
        let start = out.len();
        let periodic = |l: u64, offsets: &[u64], out: &mut Vec<u64>| -> bool {
            // Values x in (lo, hi) with x mod l in offsets.
            let first_period = lo / l;
            let last_period = (hi.saturating_sub(1)) / l;
            if (last_period - first_period + 1) as usize * offsets.len() > limit {
                return false;
            }
            for t in first_period..=last_period {
                for &o in offsets {
                    let x = t * l + o;
                    if x > lo && x < hi {
                        out.push(x);
                    }
                }
            }
            true
        };
        for c in &self.conjs {
            for a in &c.atoms {
                let ok = match (a, rows) {
                    (Atom::Cols { end }, false) | (Atom::Rows { end }, true) => {
                        if *end > lo && *end < hi {
                            out.push(*end);
                        }
                        true
                    }
                    (Atom::SameBlock { l }, _) => periodic(*l, &[0], out),
                    (Atom::PeriodicCols { l, c }, false) => periodic(*l, &[0, l - c], out),
                    (Atom::Blocks(t), _) => periodic(t.b as u64, &[0], out),
                    _ => true,
                };
                if !ok || out.len() - start > limit {
                    return false;
                }
            }
        }
        true
    }

    /// The conjunctions that survive in a piece where every non-Toeplitz atom is constant
    /// (evaluated at the piece's corner `(i, j)`), as a bit mask, plus whether one of them
    /// became "every cell" (then the piece is full up to its Toeplitz atoms).
    /// Whether no atom is a block table: then [`Self::reduce_at`]`(i, j)` is
    /// `row_mask(i) & col_mask(j)` with, for every `(bit, l)` of [`Self::same_blocks`], the bit
    /// cleared where `⌊i/l⌋ ≠ ⌊j/l⌋`.
    pub(super) fn separable(&self) -> bool {
        self.conjs
            .iter()
            .all(|c| c.atoms.iter().all(|a| !matches!(a, Atom::Blocks(_))))
    }

    /// The same-block atoms, as `(conjunction bit, block length)`.
    pub(super) fn same_blocks(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (x, c) in self.conjs.iter().enumerate() {
            for a in &c.atoms {
                if let Atom::SameBlock { l } = a {
                    out.push((1u64 << x, *l));
                }
            }
        }
        out
    }

    /// The conjunctions whose row-only atoms (`Rows`) allow query `i`, as a bit mask.
    pub(super) fn row_mask(&self, i: usize) -> u64 {
        let mut mask = 0u64;
        for (x, c) in self.conjs.iter().enumerate() {
            if c.atoms
                .iter()
                .all(|a| !matches!(a, Atom::Rows { .. }) || a.allows(i, 0))
            {
                mask |= 1 << x;
            }
        }
        mask
    }

    /// The conjunctions whose column-only atoms (`Cols`, `PeriodicCols`) allow key `j`.
    pub(super) fn col_mask(&self, j: usize) -> u64 {
        let mut mask = 0u64;
        for (x, c) in self.conjs.iter().enumerate() {
            if c.atoms.iter().all(|a| {
                !matches!(a, Atom::Cols { .. } | Atom::PeriodicCols { .. }) || a.allows(0, j)
            }) {
                mask |= 1 << x;
            }
        }
        mask
    }

    pub(super) fn reduce_at(&self, i: usize, j: usize) -> u64 {
        let mut mask = 0u64;
        for (x, c) in self.conjs.iter().enumerate() {
            if c.atoms.iter().all(|a| a.is_toeplitz() || a.allows(i, j)) {
                mask |= 1 << x;
            }
        }
        mask
    }

    /// The Toeplitz profile of the conjunctions in `mask`, keeping only their band and
    /// residue atoms.
    pub fn reduced_distance(&self, mask: u64, d: i64) -> bool {
        self.conjs.iter().enumerate().any(|(x, c)| {
            mask & (1 << x) != 0
                && c.atoms
                    .iter()
                    .filter(|a| a.is_toeplitz())
                    .all(|a| a.allows_distance(d))
        })
    }

    /// Splits `rows × cols` into pieces on which every non-Toeplitz atom is constant and
    /// calls `f(rows, cols, mask)` for each, `mask` the conjunctions alive there; `false`
    /// (and no call) if that needs more than `limit` pieces.
    pub fn for_each_piece(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        limit: usize,
        mut f: impl FnMut(Range<usize>, Range<usize>, u64),
    ) -> bool {
        thread_local! {
            static CUTS: std::cell::RefCell<(Vec<u64>, Vec<u64>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        CUTS.with(|cell| {
            let (rc, cc) = &mut *cell.borrow_mut();
            rc.clear();
            cc.clear();
            rc.extend([rows.start as u64, rows.end as u64]);
            cc.extend([cols.start as u64, cols.end as u64]);
            if !self.cuts(true, rows.start as u64, rows.end as u64, limit, rc)
                || !self.cuts(false, cols.start as u64, cols.end as u64, limit, cc)
            {
                return false;
            }
            if rc.len() > 2 {
                rc.sort_unstable();
                rc.dedup();
            }
            if cc.len() > 2 {
                cc.sort_unstable();
                cc.dedup();
            }
            if (rc.len() - 1) * (cc.len() - 1) > limit {
                return false;
            }
            for r in rc.windows(2) {
                for c in cc.windows(2) {
                    let (i0, i1, j0, j1) =
                        (r[0] as usize, r[1] as usize, c[0] as usize, c[1] as usize);
                    f(i0..i1, j0..j1, self.reduce_at(i0, j0));
                }
            }
            true
        })
    }
}

/// Merges sorted lists into `out`, without duplicates.
fn merge_sorted(lists: &mut [Vec<u32>], out: &mut Vec<u32>) {
    let total: usize = lists.iter().map(Vec::len).sum();
    out.reserve(total);
    for l in lists.iter() {
        out.extend_from_slice(l);
    }
    out.sort_unstable();
    out.dedup();
}

/// The keys of one row allowed by one conjunction: `j ∈ [a, b)`, `j ≡ r (mod m)`, every
/// periodic-column constraint, and every block table's allowed blocks.
#[derive(Clone, Debug)]
struct RowSet {
    a: u64,
    b: u64,
    r: u64,
    m: u64,
    periodic: Vec<(u64, u64)>,
    /// Block tables with the block row of this query.
    blocks: Vec<(Arc<BlockTable>, usize)>,
}

/// `gcd(a, b)`.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The class `x ≡ r1 (mod m1)`, `x ≡ r2 (mod m2)` as `(r, lcm)`, or None if there is none.
/// A modulus above `cap` (no two keys of one row can share it) is kept as is: then only the
/// one solution below `cap` matters, and `r` is that solution.
fn crt(r1: u64, m1: u64, r2: u64, m2: u64) -> Option<(u64, u64)> {
    let g = gcd(m1, m2);
    if (r1 % g) != (r2 % g) {
        return None;
    }
    let (m1i, m2i) = (m1 as i128, m2 as i128);
    let lcm = m1i / g as i128 * m2i;
    // Solve r1 + m1 t ≡ r2 (mod m2): t ≡ (r2 − r1)/g · inv(m1/g) (mod m2/g).
    let m2g = m2i / g as i128;
    let diff = (r2 as i128 - r1 as i128) / g as i128;
    let inv = mod_inverse((m1i / g as i128).rem_euclid(m2g.max(1)), m2g.max(1));
    let t = (diff.rem_euclid(m2g.max(1)) * inv).rem_euclid(m2g.max(1));
    let r = (r1 as i128 + m1i * t).rem_euclid(lcm);
    let cap = u64::MAX as i128;
    if lcm > cap {
        // Beyond any key: a class with one member r (if r fits) behaves like modulus "∞".
        return u64::try_from(r).ok().map(|r| (r, u64::MAX));
    }
    Some((r as u64, lcm as u64))
}

/// Inverse of `a` modulo `m` (`a`, `m` coprime; 0 when `m = 1`).
fn mod_inverse(a: i128, m: i128) -> i128 {
    if m == 1 {
        return 0;
    }
    let (mut old_r, mut r) = (a, m);
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(m)
}

/// Number of `j` in `[a, b)` with `j ≡ r (mod m)`.
#[inline]
fn congruent(a: u64, b: u64, r: u64, m: u64) -> u64 {
    if b <= a {
        return 0;
    }
    if m == 1 {
        return b - a;
    }
    let below = |x: u64| if x > r { (x - r - 1) / m + 1 } else { 0 };
    below(b) - below(a)
}

impl RowSet {
    /// The keys of row `i` in `[j0, j1)` allowed by every atom of `atoms` (None if empty).
    fn of(atoms: &[Atom], i: usize, j0: u64, j1: u64) -> Option<Self> {
        let mut s = RowSet {
            a: j0,
            b: j1,
            r: 0,
            m: 1,
            periodic: Vec::new(),
            blocks: Vec::new(),
        };
        let iu = i as u64;
        let ii = i as i64;
        for atom in atoms {
            match atom {
                Atom::Band { lo, hi } => {
                    // i − hi ≤ j ≤ i − lo
                    let lo_j = ii.saturating_sub(*hi);
                    let hi_j = ii.saturating_sub(*lo);
                    if hi_j < 0 {
                        return None;
                    }
                    s.a = s.a.max(lo_j.max(0) as u64);
                    s.b = s.b.min((hi_j as u64).saturating_add(1));
                }
                Atom::Residue { k } => {
                    let (r, m) = crt(s.r, s.m, iu % k, *k)?;
                    s.r = r;
                    s.m = m;
                }
                Atom::Cols { end } => s.b = s.b.min(*end),
                Atom::Rows { end } => {
                    if iu >= *end {
                        return None;
                    }
                }
                Atom::SameBlock { l } => {
                    let start = iu / l * l;
                    s.a = s.a.max(start);
                    s.b = s.b.min(start.saturating_add(*l));
                }
                Atom::PeriodicCols { l, c } => s.periodic.push((*l, *c)),
                Atom::Blocks(t) => s.blocks.push((t.clone(), i / t.b)),
            }
            if s.a >= s.b {
                return None;
            }
        }
        Some(s)
    }

    /// The intersection of two row sets of the same row (None if empty).
    fn and(&self, o: &RowSet) -> Option<RowSet> {
        let a = self.a.max(o.a);
        let b = self.b.min(o.b);
        if a >= b {
            return None;
        }
        let (r, m) = crt(self.r, self.m, o.r, o.m)?;
        let mut periodic = self.periodic.clone();
        periodic.extend_from_slice(&o.periodic);
        let mut blocks = self.blocks.clone();
        blocks.extend(o.blocks.iter().cloned());
        Some(RowSet {
            a,
            b,
            r,
            m,
            periodic,
            blocks,
        })
    }

    /// With a block table: the set cut into the key runs of the first table's block row (each
    /// keeping the other constraints), in ascending order.
    fn block_parts(&self) -> Option<Vec<RowSet>> {
        let ((t, bi), rest) = self.blocks.split_first()?;
        let parts = t
            .runs(*bi)
            .into_iter()
            .map(|(c0, c1)| (self.a.max(c0), self.b.min(c1)))
            .filter(|(a, b)| a < b)
            .map(|(a, b)| RowSet {
                a,
                b,
                r: self.r,
                m: self.m,
                periodic: self.periodic.clone(),
                blocks: rest.to_vec(),
            })
            .collect();
        Some(parts)
    }

    /// Number of keys in the set.
    fn count(&self) -> u64 {
        if let Some(parts) = self.block_parts() {
            return parts.iter().map(RowSet::count).sum();
        }
        count_periodic(self.a, self.b, self.r, self.m, &self.periodic)
    }

    /// Appends the keys in ascending order.
    fn push_keys(&self, out: &mut Vec<u32>) {
        if let Some(parts) = self.block_parts() {
            parts.iter().for_each(|p| p.push_keys(out));
            return;
        }
        let (a, b) = (self.a, self.b);
        let first = if self.m == 1 {
            a
        } else {
            let off = (self.r + self.m - a % self.m) % self.m;
            match a.checked_add(off) {
                Some(f) => f,
                None => return,
            }
        };
        let ok = |j: u64| self.periodic.iter().all(|&(l, c)| j % l >= l - c);
        if self.m == 1 && self.periodic.len() == 1 {
            // Whole runs of summary columns.
            let (l, c) = self.periodic[0];
            let mut t = a / l;
            loop {
                let s0 = (t * l + l - c).max(a);
                let s1 = ((t + 1) * l).min(b);
                if t * l >= b {
                    break;
                }
                if s0 < s1 {
                    out.extend(s0 as u32..s1 as u32);
                }
                t += 1;
            }
            return;
        }
        let mut j = first;
        while j < b {
            if ok(j) {
                out.push(j as u32);
            }
            j = match j.checked_add(self.m) {
                Some(x) => x,
                None => break,
            };
        }
    }
}

/// Keys in `[a, b)` with `j ≡ r (mod m)` and `j mod l ≥ l − c` for every `(l, c)`.
fn count_periodic(a: u64, b: u64, r: u64, m: u64, periodic: &[(u64, u64)]) -> u64 {
    if a >= b {
        return 0;
    }
    let Some(((l, c), rest)) = periodic.split_first() else {
        return congruent(a, b, r, m);
    };
    let (l, c) = (*l, *c);
    if m == 1 && rest.is_empty() {
        let below = |x: u64| (x / l) * c + (x % l).saturating_sub(l - c);
        return below(b) - below(a);
    }
    // One residue class per allowed column offset.
    let mut total = 0;
    for t in l - c..l {
        if let Some((r2, m2)) = crt(r, m, t, l) {
            total += count_periodic(a, b, r2, m2, rest);
        }
    }
    total
}

/// `|A₁ ∪ … ∪ A_m|` by inclusion–exclusion, skipping every superset of an empty intersection.
fn count_union(sets: &[RowSet]) -> u64 {
    match sets.len() {
        0 => 0,
        1 => sets[0].count(),
        _ => {
            let mut total: i64 = 0;
            for (x, s) in sets.iter().enumerate() {
                ie(sets, x + 1, s, 1, &mut total);
            }
            total as u64
        }
    }
}

fn ie(sets: &[RowSet], next: usize, acc: &RowSet, size: usize, total: &mut i64) {
    let c = acc.count() as i64;
    if c == 0 {
        return;
    }
    *total += if size % 2 == 1 { c } else { -c };
    for y in next..sets.len() {
        if let Some(both) = acc.and(&sets[y]) {
            ie(sets, y + 1, &both, size + 1, total);
        }
    }
}

/// A block-level mask: block row `bi` sees the sorted block columns `cols[bi]`.
#[derive(Clone, Debug)]
pub struct BlockTable {
    /// Tokens.
    pub n: usize,
    /// Block size.
    pub b: usize,
    /// Number of blocks per side.
    pub nb: usize,
    /// Allowed block columns per block row, sorted.
    pub cols: Vec<Vec<u32>>,
    /// The random block columns per block row, sorted (a subset of `cols`).
    pub random: Vec<Vec<u32>>,
    /// Window blocks.
    pub wb: u64,
    /// Global blocks.
    pub gb: u64,
}

impl BlockTable {
    /// BigBird's table (docs/contract.md section 1): block row `bi` sees block columns within `wb` of
    /// `bi`, the first `gb` block rows and columns are global, plus `r` random block columns
    /// per block row drawn from a ChaCha8 RNG seeded with `seed`.
    pub fn bigbird(n: usize, b: usize, wb: u64, gb: u64, r: u64, seed: u64) -> Self {
        use rand::SeedableRng;
        let nb = n.div_ceil(b);
        let wb_u = wb.min(nb as u64) as usize;
        let gb_u = gb.min(nb as u64) as usize;
        let r = r.min(nb as u64) as usize;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut cols = Vec::with_capacity(nb);
        let mut random = Vec::with_capacity(nb);
        for bi in 0..nb {
            if bi < gb_u {
                cols.push((0..nb as u32).collect::<Vec<_>>());
                random.push(Vec::new());
                continue;
            }
            let lo = bi.saturating_sub(wb_u);
            let hi = (bi + wb_u).min(nb - 1);
            let mut row: Vec<u32> = (0..gb_u as u32).collect();
            row.extend(lo as u32..=hi as u32);
            row.sort_unstable();
            row.dedup();
            // Random blocks among the block columns not already allowed: distinct ranks in
            // 0..free, rank t mapped to the t-th free column.
            let free = nb - row.len();
            let mut picks: Vec<u32> = rand::seq::index::sample(&mut rng, free, r.min(free))
                .into_iter()
                .map(|t| nth_free_column(&row, t))
                .collect();
            picks.sort_unstable();
            row.extend_from_slice(&picks);
            row.sort_unstable();
            cols.push(row);
            random.push(picks);
        }
        Self {
            n,
            b,
            nb,
            cols,
            random,
            wb,
            gb,
        }
    }

    /// Whether cell `(i, j)` lies in an allowed block.
    #[inline]
    pub fn allows(&self, i: usize, j: usize) -> bool {
        let (bi, bj) = (i / self.b, j / self.b);
        bi < self.nb && self.cols[bi].binary_search(&(bj as u32)).is_ok()
    }

    /// Maximal key runs `[c0, c1)` of block row `bi`.
    fn runs(&self, bi: usize) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let Some(row) = self.cols.get(bi) else {
            return out;
        };
        for &bj in row {
            let c0 = bj as u64 * self.b as u64;
            let c1 = (c0 + self.b as u64).min(self.n as u64);
            match out.last_mut() {
                Some((_, e)) if *e == c0 => *e = c1,
                _ => out.push((c0, c1)),
            }
        }
        out
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
mod tests {
    use super::*;

    #[test]
    fn crt_combines_classes_and_detects_empty_ones() {
        for (r1, m1, r2, m2) in [
            (1u64, 4u64, 3u64, 6u64),
            (0, 4, 2, 6),
            (2, 5, 3, 7),
            (0, 1, 5, 9),
        ] {
            let want: Vec<u64> = (0..200).filter(|x| x % m1 == r1 && x % m2 == r2).collect();
            match crt(r1, m1, r2, m2) {
                None => assert!(want.is_empty(), "{r1} {m1} {r2} {m2}"),
                Some((r, m)) => {
                    let got: Vec<u64> = (0..200).filter(|x| x % m == r).collect();
                    assert_eq!(got, want, "{r1} {m1} {r2} {m2}");
                }
            }
        }
    }

    #[test]
    fn periodic_counts_match_brute_force() {
        for (a, b, r, m, per) in [
            (0u64, 100u64, 0u64, 1u64, vec![(8u64, 2u64)]),
            (3, 97, 1, 3, vec![(8, 3)]),
            (5, 200, 2, 4, vec![(6, 2), (10, 5)]),
        ] {
            let want = (a..b)
                .filter(|j| j % m == r && per.iter().all(|&(l, c)| j % l >= l - c))
                .count() as u64;
            assert_eq!(count_periodic(a, b, r, m, &per), want);
        }
    }
}
