//! The terms of pattern expressions: ONE entry per term.
//!
//! Each [`TermDef`] says, once, what a term is called, which keys it takes (with their
//! ranges and the PATTERN flag a bare name takes them from), its rule in one line, and the
//! structure it allows as [`Atom`]s (a band of distances, a residue class, a set of columns or
//! rows, blocks). Everything else — `allows`, the "why" of a cell, exact counts, row keys,
//! rasters, block statistics, the receptive field and the kernel plans — is derived from the
//! atoms in [`super::structure`] for any expression.
//!
//! Adding a term means adding one variant to [`TermKind`] and one entry to [`TERMS`]
//! (README, "How to add a term"); `sink` and `global` were added that way.

use super::structure::{Atom, BlockTable, Node};
use super::{PatternParams, MAX_BLOCK};
use std::sync::Arc;

/// Every term of the expression grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TermKind {
    /// Every key.
    Dense,
    /// `|i − j| ≤ w`.
    Local,
    /// `|i − j| mod k == 0`.
    Atrous,
    /// `j < s`: the first `s` keys ("attention sinks").
    Sink,
    /// `i < g` or `j < g`.
    Global,
    /// `j ≤ i`.
    Causal,
    /// `local(w) | atrous(k)`.
    Sparse,
    /// Sparse Transformer "strided": causal, `i − j < l` or `(i − j) mod l == 0`.
    Strided,
    /// Sparse Transformer "fixed": same block of `l`, or `j mod l ≥ l − c`.
    Fixed,
    /// `local(w) | global(g)`.
    Longformer,
    /// BigBird's block window, global and seeded random blocks.
    Bigbird,
}

/// Which PATTERN flag a bare name takes a key's value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// `--stride`.
    Stride,
    /// `--window`.
    Window,
    /// `--global`.
    Global,
    /// `--summary`.
    Summary,
    /// `--block`.
    Block,
    /// `--random`.
    Random,
    /// `--seed`.
    Seed,
}

impl Flag {
    /// The flag as typed on the command line, e.g. `--stride`.
    pub fn flag(self) -> &'static str {
        match self {
            Flag::Stride => "--stride",
            Flag::Window => "--window",
            Flag::Global => "--global",
            Flag::Summary => "--summary",
            Flag::Block => "--block",
            Flag::Random => "--random",
            Flag::Seed => "--seed",
        }
    }

    /// The flag's value in `p`, if given (flags with a default always give one).
    fn value(self, p: &PatternParams) -> Option<u64> {
        match self {
            Flag::Stride => p.stride.map(|v| v as u64),
            Flag::Window => p.window.map(|v| v as u64),
            Flag::Global => Some(p.global as u64),
            Flag::Summary => p.summary.map(|v| v as u64),
            Flag::Block => Some(p.block as u64),
            Flag::Random => Some(p.random as u64),
            Flag::Seed => Some(p.seed),
        }
    }
}

/// One key of a term, e.g. `w` of `local`.
#[derive(Clone, Copy, Debug)]
pub struct KeyDef {
    /// The key as written: `w`.
    pub key: &'static str,
    /// What it is, in words: `window`.
    pub what: &'static str,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
    /// The flag a bare name takes it from (`None`: it must be written).
    pub flag: Option<Flag>,
    /// The value when neither the term nor the flag gives one (`None`: required).
    pub default: Option<u64>,
}

impl KeyDef {
    /// The accepted range in words: `an integer ≥ 1`, `an integer from 1 to 4096`.
    pub fn range_text(&self) -> String {
        if self.max >= usize::MAX as u64 {
            format!("an integer ≥ {}", self.min)
        } else {
            format!("an integer from {} to {}", self.min, self.max)
        }
    }
}

/// The one description of a term.
pub struct TermDef {
    /// Which term.
    pub kind: TermKind,
    /// Name in expressions and labels.
    pub name: &'static str,
    /// Its keys, in label order.
    pub keys: &'static [KeyDef],
    /// The rule in one line of math.
    pub rule: &'static str,
    /// Checks between keys (e.g. `c ≤ l`), on the resolved values.
    pub check: fn(&[u64]) -> Result<(), String>,
    /// The structure it allows at sequence length `n`, from the resolved values.
    pub atoms: fn(&[u64], usize) -> Node,
}

impl TermDef {
    /// What the term accepts, for error messages: `w (window, an integer ≥ 0), causal`.
    pub fn accepted(&self) -> String {
        let mut parts: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{} ({}, {})", k.key, k.what, k.range_text()))
            .collect();
        parts.push("causal".into());
        parts.join(", ")
    }
}

const MAX: u64 = usize::MAX as u64;

const fn key(key: &'static str, what: &'static str, min: u64, flag: Option<Flag>) -> KeyDef {
    KeyDef {
        key,
        what,
        min,
        max: MAX,
        flag,
        default: None,
    }
}

const fn with_default(k: KeyDef, default: u64) -> KeyDef {
    KeyDef {
        default: Some(default),
        ..k
    }
}

fn ok(_: &[u64]) -> Result<(), String> {
    Ok(())
}

fn band(lo: i64, hi: i64) -> Node {
    Node::Atom(Atom::Band { lo, hi })
}

/// `|i − j| ≤ w` as a band of distances.
fn window(w: u64) -> Node {
    let w = w.min(i64::MAX as u64) as i64;
    band(-w, w)
}

/// Every term's one description.
pub static TERMS: [TermDef; 11] = [
    TermDef {
        kind: TermKind::Dense,
        name: "dense",
        keys: &[],
        rule: "every key",
        check: ok,
        atoms: |_, _| band(i64::MIN, i64::MAX),
    },
    TermDef {
        kind: TermKind::Local,
        name: "local",
        keys: &[key("w", "window", 0, Some(Flag::Window))],
        rule: "|i − j| ≤ w",
        check: ok,
        atoms: |v, _| window(v[0]),
    },
    TermDef {
        kind: TermKind::Atrous,
        name: "atrous",
        keys: &[key("k", "stride", 1, Some(Flag::Stride))],
        rule: "|i − j| mod k = 0",
        check: ok,
        atoms: |v, _| Node::Atom(Atom::Residue { k: v[0] }),
    },
    TermDef {
        kind: TermKind::Sink,
        name: "sink",
        keys: &[key("s", "sink tokens", 0, None)],
        rule: "j < s",
        check: ok,
        atoms: |v, _| Node::Atom(Atom::Cols { end: v[0] }),
    },
    TermDef {
        kind: TermKind::Global,
        name: "global",
        keys: &[key("g", "global tokens", 0, Some(Flag::Global))],
        rule: "i < g or j < g",
        check: ok,
        atoms: |v, _| {
            Node::Union(vec![
                Node::Atom(Atom::Rows { end: v[0] }),
                Node::Atom(Atom::Cols { end: v[0] }),
            ])
        },
    },
    TermDef {
        kind: TermKind::Causal,
        name: "causal",
        keys: &[],
        rule: "j ≤ i",
        check: ok,
        atoms: |_, _| band(0, i64::MAX),
    },
    TermDef {
        kind: TermKind::Sparse,
        name: "sparse",
        keys: &[
            key("k", "stride", 1, Some(Flag::Stride)),
            key("w", "window", 0, Some(Flag::Window)),
        ],
        rule: "|i − j| ≤ w or |i − j| mod k = 0",
        check: ok,
        atoms: |v, _| Node::Union(vec![window(v[1]), Node::Atom(Atom::Residue { k: v[0] })]),
    },
    TermDef {
        kind: TermKind::Strided,
        name: "strided",
        keys: &[key("l", "stride", 1, Some(Flag::Stride))],
        rule: "j ≤ i and (i − j < l or (i − j) mod l = 0)",
        check: ok,
        atoms: |v, _| {
            let l = v[0].min(i64::MAX as u64) as i64;
            Node::Inter(vec![
                Node::Union(vec![band(0, l - 1), Node::Atom(Atom::Residue { k: v[0] })]),
                band(0, i64::MAX),
            ])
        },
    },
    TermDef {
        kind: TermKind::Fixed,
        name: "fixed",
        keys: &[
            key("l", "stride", 1, Some(Flag::Stride)),
            with_default(key("c", "summary columns", 1, Some(Flag::Summary)), 1),
        ],
        rule: "⌊j/l⌋ = ⌊i/l⌋ or j mod l ≥ l − c",
        check: |v| {
            if v[1] > v[0] {
                Err(format!(
                    "the summary columns must be from 1 to l = {}",
                    v[0]
                ))
            } else {
                Ok(())
            }
        },
        atoms: |v, _| {
            Node::Union(vec![
                Node::Atom(Atom::SameBlock { l: v[0] }),
                Node::Atom(Atom::PeriodicCols { l: v[0], c: v[1] }),
            ])
        },
    },
    TermDef {
        kind: TermKind::Longformer,
        name: "longformer",
        keys: &[
            key("w", "window", 0, Some(Flag::Window)),
            with_default(key("g", "global tokens", 0, Some(Flag::Global)), 0),
        ],
        rule: "|i − j| ≤ w or i < g or j < g",
        check: ok,
        atoms: |v, _| {
            Node::Union(vec![
                window(v[0]),
                Node::Atom(Atom::Rows { end: v[1] }),
                Node::Atom(Atom::Cols { end: v[1] }),
            ])
        },
    },
    TermDef {
        kind: TermKind::Bigbird,
        name: "bigbird",
        keys: &[
            KeyDef {
                max: MAX_BLOCK as u64,
                ..with_default(key("b", "block size", 1, Some(Flag::Block)), 64)
            },
            with_default(key("wb", "window blocks", 0, Some(Flag::Window)), 1),
            with_default(key("gb", "global blocks", 0, Some(Flag::Global)), 0),
            with_default(key("r", "random blocks per row", 0, Some(Flag::Random)), 0),
            KeyDef {
                max: u64::MAX,
                ..with_default(key("seed", "seed", 0, Some(Flag::Seed)), 0)
            },
        ],
        rule: "block window wb, gb global blocks, r random blocks per block row",
        check: ok,
        atoms: |v, n| {
            let table = BlockTable::bigbird(n, v[0] as usize, v[1], v[2], v[3], v[4]);
            Node::Atom(Atom::Blocks(Arc::new(table)))
        },
    },
];

/// The definition of `kind`.
pub fn def(kind: TermKind) -> &'static TermDef {
    TERMS
        .iter()
        .find(|d| d.kind == kind)
        .expect("every TermKind has an entry in TERMS")
}

/// The definition named `name` (lowercase).
pub fn by_name(name: &str) -> Option<&'static TermDef> {
    TERMS.iter().find(|d| d.name == name)
}

/// Every term name, in table order.
pub fn names() -> Vec<&'static str> {
    TERMS.iter().map(|d| d.name).collect()
}

/// The values of `def`'s keys: given in the term, else from the flags, else the default.
pub fn resolve(
    def: &TermDef,
    given: &[Option<u64>],
    flags: &PatternParams,
) -> Result<Vec<u64>, (Option<Flag>, String)> {
    let mut values = Vec::with_capacity(def.keys.len());
    for (k, g) in def.keys.iter().zip(given) {
        let from_flag = k.flag.and_then(|f| f.value(flags));
        let v = match (g, from_flag, k.default) {
            (Some(v), _, _) => *v,
            (None, Some(v), _) => {
                if v < k.min || v > k.max {
                    return Err((
                        k.flag,
                        format!(
                            "{} {v} is out of range for {}: expected {}",
                            k.flag.map_or(k.key, Flag::flag),
                            def.name,
                            k.range_text()
                        ),
                    ));
                }
                v
            }
            (None, None, Some(d)) => d,
            (None, None, None) => {
                let how = match k.flag {
                    Some(f) => format!("write {}({}=N) or give {} N", def.name, k.key, f.flag()),
                    None => format!("write {}({}=N)", def.name, k.key),
                };
                return Err((
                    k.flag,
                    format!(
                        "{} needs {} ({}, {}): {how}",
                        def.name,
                        k.key,
                        k.what,
                        k.range_text()
                    ),
                ));
            }
        };
        values.push(v);
    }
    // A check between keys concerns the last key that has a flag (fixed: c ≤ l); the message
    // names it as the user gave it: `c=5` in the term, or `--summary 5`.
    (def.check)(&values).map_err(|m| {
        let x = def.keys.iter().rposition(|k| k.flag.is_some()).unwrap_or(0);
        let k = &def.keys[x];
        let v = values.get(x).copied().unwrap_or(0);
        let named = match (given.get(x).copied().flatten(), k.flag) {
            (None, Some(f)) => format!("{} {v}", f.flag()),
            _ => format!("{}={v}", k.key),
        };
        (
            k.flag,
            format!("{named} is out of range for {}: {m}", def.name),
        )
    })?;
    Ok(values)
}
