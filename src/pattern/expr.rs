//! Pattern expressions: the grammar of the README's "Pattern expressions" section.
//!
//! ```text
//! expr    := union
//! union   := inter ( '|' inter )*          -- allowed if any side allows
//! inter   := atom ( '&' atom )*            -- allowed if every side allows ('&' binds tighter)
//! atom    := '(' expr ')' | term
//! term    := NAME [ '(' key=value { ',' key=value } ')' ]
//! ```
//!
//! A term is one entry of the table in [`super::terms`]; the parser only checks the shape
//! of the text and looks the names and keys up there. A bare name takes the parameters it
//! leaves out from the PATTERN flags ([`PatternParams`]), as `--pattern sparse --stride 4
//! --window 3` always did.
//!
//! [`Expr`]'s `Display` writes the canonical label: every term with all its parameters, `&`
//! groups inside `|` unparenthesised, `|` groups inside `&` in parentheses. A single named
//! pattern intersected with `causal` prints as today's labels did, `sparse(k=4, w=3, causal)`,
//! and every label parses back to the same mask.

use super::terms::{self, TermDef, TermKind};
use super::{PatternError, PatternParams};
use std::fmt;

/// One term with every parameter resolved, in the order of its definition's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// Which term.
    pub kind: TermKind,
    /// Its parameter values, one per key of [`TermDef::keys`].
    pub values: Vec<u64>,
}

impl Term {
    /// The definition of this term.
    pub fn def(&self) -> &'static TermDef {
        terms::def(self.kind)
    }

    /// The value of key `key` (0 when the term has no such key).
    pub fn get(&self, key: &str) -> u64 {
        self.def()
            .keys
            .iter()
            .position(|k| k.key == key)
            .map_or(0, |t| self.values[t])
    }
}

/// A parsed, validated pattern expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// One term.
    Term(Term),
    /// Allowed where any member allows (two or more members).
    Union(Vec<Expr>),
    /// Allowed where every member allows (two or more members).
    Inter(Vec<Expr>),
}

impl Expr {
    /// `self & causal`, unless `self` already is causal at its top level.
    pub fn and_causal(self) -> Expr {
        if self.is_top_causal() {
            return self;
        }
        let causal = Expr::Term(Term {
            kind: TermKind::Causal,
            values: Vec::new(),
        });
        match self {
            Expr::Inter(mut v) => {
                v.push(causal);
                Expr::Inter(v)
            }
            e => Expr::Inter(vec![e, causal]),
        }
    }

    /// Whether the expression is intersected with `causal` at its top level (or is a
    /// strided term, which is always causal).
    pub fn is_top_causal(&self) -> bool {
        match self {
            Expr::Term(t) => matches!(t.kind, TermKind::Causal | TermKind::Strided),
            Expr::Inter(v) => v.iter().any(Expr::is_top_causal),
            Expr::Union(_) => false,
        }
    }

    /// Members of the top-level union (the expression itself when it is not a union).
    pub fn union_members(&self) -> Vec<&Expr> {
        match self {
            Expr::Union(v) => v.iter().collect(),
            e => vec![e],
        }
    }

    /// Every term, left to right.
    pub fn terms(&self) -> Vec<&Term> {
        let mut out = Vec::new();
        self.collect_terms(&mut out);
        out
    }

    fn collect_terms<'a>(&'a self, out: &mut Vec<&'a Term>) {
        match self {
            Expr::Term(t) => out.push(t),
            Expr::Union(v) | Expr::Inter(v) => v.iter().for_each(|e| e.collect_terms(out)),
        }
    }

    /// The named term this expression is, possibly intersected with `causal`:
    /// `sparse(k=4, w=3) & causal` → (sparse term, true).
    pub fn single_term(&self) -> Option<(&Term, bool)> {
        match self {
            Expr::Term(t) => Some((t, t.kind == TermKind::Strided)),
            Expr::Inter(v) => {
                let mut named = None;
                for e in v {
                    match e {
                        Expr::Term(t) if t.kind == TermKind::Causal => {}
                        Expr::Term(t) if named.is_none() => named = Some(t),
                        _ => return None,
                    }
                }
                named.map(|t| (t, true))
            }
            Expr::Union(_) => None,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_term(f, self, false)
    }
}

fn write_term(f: &mut fmt::Formatter<'_>, t: &Term, causal: bool) -> fmt::Result {
    let def = t.def();
    f.write_str(def.name)?;
    let mut parts: Vec<String> = def
        .keys
        .iter()
        .zip(&t.values)
        .map(|(k, v)| format!("{}={v}", k.key))
        .collect();
    if causal && t.kind != TermKind::Strided {
        parts.push("causal".into());
    }
    if !parts.is_empty() {
        write!(f, "({})", parts.join(", "))?;
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((t, causal)) = self.single_term() {
            if t.kind != TermKind::Causal {
                return write_term(f, t, causal);
            }
        }
        match self {
            Expr::Term(t) => write_term(f, t, false),
            Expr::Union(v) => {
                for (x, e) in v.iter().enumerate() {
                    if x > 0 {
                        f.write_str(" | ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
            Expr::Inter(v) => {
                for (x, e) in v.iter().enumerate() {
                    if x > 0 {
                        f.write_str(" & ")?;
                    }
                    match e {
                        Expr::Union(_) => write!(f, "({e})")?,
                        _ => write!(f, "{e}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// A token of the expression text with its byte offset.
#[derive(Clone, Debug, PartialEq)]
enum Tok<'a> {
    Name(&'a str),
    Number(&'a str),
    Open,
    Close,
    Comma,
    Eq,
    Or,
    And,
    End,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Name(s) => format!("'{s}'"),
            Tok::Number(s) => format!("'{s}'"),
            Tok::Open => "'('".into(),
            Tok::Close => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'='".into(),
            Tok::Or => "'|'".into(),
            Tok::And => "'&'".into(),
            Tok::End => "the end".into(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<(Tok<'_>, usize)>, PatternError> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        let start = at;
        let single = match c {
            b'(' => Some(Tok::Open),
            b')' => Some(Tok::Close),
            b',' => Some(Tok::Comma),
            b'=' => Some(Tok::Eq),
            b'|' => Some(Tok::Or),
            b'&' => Some(Tok::And),
            _ => None,
        };
        if let Some(t) = single {
            out.push((t, start));
            at += 1;
        } else if c.is_ascii_whitespace() {
            at += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                at += 1;
            }
            out.push((Tok::Name(&text[start..at]), start));
        } else if c.is_ascii_digit() || c == b'-' || c == b'+' {
            at += 1;
            while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'.') {
                at += 1;
            }
            out.push((Tok::Number(&text[start..at]), start));
        } else {
            let ch = text[start..].chars().next().unwrap_or('?');
            return Err(syntax(
                text,
                start,
                format!("unexpected character '{ch}'; expected a term name, '(', ')', '|', '&', ',' or '='"),
            ));
        }
    }
    out.push((Tok::End, text.len()));
    Ok(out)
}

fn syntax(text: &str, at: usize, message: String) -> PatternError {
    PatternError::Syntax {
        expr: text.to_string(),
        at: text[..at.min(text.len())].chars().count() + 1,
        message,
        flag: None,
    }
}

struct Parser<'a, 'p> {
    text: &'a str,
    toks: Vec<(Tok<'a>, usize)>,
    pos: usize,
    flags: &'p PatternParams,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> &Tok<'a> {
        &self.toks[self.pos].0
    }

    fn offset(&self) -> usize {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> Tok<'a> {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err(&self, message: String) -> PatternError {
        syntax(self.text, self.offset(), message)
    }

    fn union(&mut self, depth: usize) -> Result<Expr, PatternError> {
        let mut members = vec![self.inter(depth)?];
        while *self.peek() == Tok::Or {
            self.bump();
            members.push(self.inter(depth)?);
        }
        Ok(flatten(members, true))
    }

    fn inter(&mut self, depth: usize) -> Result<Expr, PatternError> {
        let mut members = vec![self.atom(depth)?];
        while *self.peek() == Tok::And {
            self.bump();
            members.push(self.atom(depth)?);
        }
        Ok(flatten(members, false))
    }

    fn atom(&mut self, depth: usize) -> Result<Expr, PatternError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("parentheses nested more than {MAX_DEPTH} deep")));
        }
        match self.peek().clone() {
            Tok::Open => {
                self.bump();
                let e = self.union(depth + 1)?;
                match self.peek() {
                    Tok::Close => {
                        self.bump();
                        Ok(e)
                    }
                    t => Err(self.err(format!(
                        "expected ')' to close the '(' here, found {}",
                        t.describe()
                    ))),
                }
            }
            Tok::Name(name) => self.term(name),
            Tok::End => Err(self.err(if self.pos == 0 {
                "the pattern is empty; expected a term such as local(w=32)".into()
            } else {
                "expected a term after the operator, found the end (a dangling operator?)".into()
            })),
            t => Err(self.err(format!(
                "expected a term (e.g. local(w=32)) or '(', found {}",
                t.describe()
            ))),
        }
    }

    fn term(&mut self, name: &'a str) -> Result<Expr, PatternError> {
        let name_at = self.offset();
        self.bump();
        let lower = name.to_ascii_lowercase();
        let Some(def) = terms::by_name(&lower) else {
            return Err(syntax(
                self.text,
                name_at,
                format!(
                    "unknown term '{name}'; expected one of {}",
                    terms::names().join(", ")
                ),
            ));
        };
        let mut given: Vec<Option<u64>> = vec![None; def.keys.len()];
        let mut causal: Option<bool> = None;
        if *self.peek() == Tok::Open {
            self.bump();
            if *self.peek() == Tok::Close {
                self.bump();
            } else {
                loop {
                    let key_at = self.offset();
                    let key = match self.bump() {
                        Tok::Name(k) => k.to_ascii_lowercase(),
                        t => {
                            return Err(syntax(
                                self.text,
                                key_at,
                                format!(
                                    "expected a key of {} ({}), found {}",
                                    def.name,
                                    def.accepted(),
                                    t.describe()
                                ),
                            ))
                        }
                    };
                    let value: Option<&str> = if *self.peek() == Tok::Eq {
                        self.bump();
                        let v_at = self.offset();
                        match self.bump() {
                            Tok::Number(v) | Tok::Name(v) => Some(v),
                            t => {
                                return Err(syntax(
                                    self.text,
                                    v_at,
                                    format!(
                                        "expected a value after '{key}=', found {}",
                                        t.describe()
                                    ),
                                ))
                            }
                        }
                    } else {
                        None
                    };
                    if key == "causal" {
                        if causal.is_some() {
                            return Err(syntax(
                                self.text,
                                key_at,
                                format!("key 'causal' is given twice in {}", def.name),
                            ));
                        }
                        causal = Some(match value {
                            None | Some("true") => true,
                            Some("false") => false,
                            Some(v) => {
                                return Err(syntax(
                                    self.text,
                                    key_at,
                                    format!("causal={v} is not a boolean; write causal, causal=true or causal=false"),
                                ))
                            }
                        });
                    } else {
                        let Some(slot) = def.keys.iter().position(|k| k.key == key) else {
                            return Err(syntax(
                                self.text,
                                key_at,
                                format!(
                                    "unknown key '{key}' for {}; it takes {}",
                                    def.name,
                                    def.accepted()
                                ),
                            ));
                        };
                        let kd = &def.keys[slot];
                        if given[slot].is_some() {
                            return Err(syntax(
                                self.text,
                                key_at,
                                format!("key '{key}' is given twice in {}", def.name),
                            ));
                        }
                        let Some(v) = value else {
                            return Err(syntax(
                                self.text,
                                key_at,
                                format!(
                                    "key '{key}' of {} needs a value: {key}=N ({})",
                                    def.name,
                                    kd.range_text()
                                ),
                            ));
                        };
                        let parsed = v
                            .parse::<u64>()
                            .ok()
                            .filter(|x| *x >= kd.min && *x <= kd.max);
                        let Some(x) = parsed else {
                            return Err(syntax(
                                self.text,
                                key_at,
                                format!(
                                    "{}={v} in {} is out of range: expected {}",
                                    kd.key,
                                    def.name,
                                    kd.range_text()
                                ),
                            ));
                        };
                        given[slot] = Some(x);
                    }
                    match self.bump() {
                        Tok::Comma => continue,
                        Tok::Close => break,
                        t => {
                            return Err(self.err_at_prev(format!(
                                "expected ',' or ')' in the parameters of {}, found {}",
                                def.name,
                                t.describe()
                            )))
                        }
                    }
                }
            }
        }
        let values =
            terms::resolve(def, &given, self.flags).map_err(|(flag, message)| {
                match syntax(self.text, name_at, message) {
                    PatternError::Syntax {
                        expr, at, message, ..
                    } => PatternError::Syntax {
                        expr,
                        at,
                        message,
                        flag: flag.map(terms::Flag::flag),
                    },
                    e => e,
                }
            })?;
        let t = Expr::Term(Term {
            kind: def.kind,
            values,
        });
        Ok(match causal {
            Some(true) => t.and_causal(),
            _ => t,
        })
    }

    fn err_at_prev(&self, message: String) -> PatternError {
        let at = self.toks[self.pos.saturating_sub(1)].1;
        syntax(self.text, at, message)
    }
}

/// Deepest nesting of parentheses accepted.
const MAX_DEPTH: usize = 32;

/// Joins members into one node, splicing members of the same operator.
fn flatten(members: Vec<Expr>, union: bool) -> Expr {
    if members.len() == 1 {
        return members.into_iter().next().expect("one member");
    }
    let mut out = Vec::new();
    for m in members {
        match (m, union) {
            (Expr::Union(v), true) | (Expr::Inter(v), false) => out.extend(v),
            (m, _) => out.push(m),
        }
    }
    if union {
        Expr::Union(out)
    } else {
        Expr::Inter(out)
    }
}

/// Parses `text`; bare names take their missing parameters from `flags` (stride, window…).
pub fn parse(text: &str, flags: &PatternParams) -> Result<Expr, PatternError> {
    let toks = tokenize(text)?;
    let mut p = Parser {
        text,
        toks,
        pos: 0,
        flags,
    };
    let e = p.union(0)?;
    match p.peek() {
        Tok::End => Ok(e),
        Tok::Close => Err(p.err("unbalanced ')': no '(' to close".into())),
        t => Err(p.err(format!(
            "expected '|', '&' or the end, found {}",
            t.describe()
        ))),
    }
}
