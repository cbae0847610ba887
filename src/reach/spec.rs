//! Layer schedules written as text: the `--schedule` list of `attnscope reach`.
//!
//! A list is comma-separated entries, one per layer (repeated cyclically). Each entry is a
//! pattern name, optionally followed by its own parameters in parentheses, written as the
//! pattern's label writes them — `local(w=64)`, `sparse(k=4, w=3)`, `atrous(k=16, causal)` — so a
//! label printed by `reach` can be pasted back. Commas inside parentheses separate parameters,
//! commas outside separate layers. A parameter an entry leaves out comes from the shared
//! PATTERN flags (`--stride`, `--window`, `--causal`, …); one it gives holds for that layer only.
//!
//! ```
//! use attnscope::pattern::{PatternKind, PatternParams};
//! use attnscope::reach::{parse_schedule, schedule_from};
//!
//! // The shared flags say w = 5; the first layer uses w = 1, the second w = 5.
//! let shared = PatternParams::new(PatternKind::Local, 16).window(5);
//! let layers = parse_schedule("local(w=1),local").unwrap();
//! let s = schedule_from(&layers, &shared).unwrap();
//! assert_eq!(s.names(), "local,local");
//! assert_eq!(s.label(), "schedule(local(w=1) | local(w=5))");
//! ```

use super::{ReachError, Schedule};
use crate::pattern::{PatternError, PatternKind, PatternParams, MAX_BLOCK};

/// Which pattern parameter an entry key sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Stride,
    Window,
    Global,
    Summary,
    Block,
    Random,
    Seed,
}

/// The keys a pattern takes in an entry (its label's keys), with what each sets.
fn keys(kind: PatternKind) -> &'static [(&'static str, Field, &'static str)] {
    use Field::*;
    use PatternKind as K;
    match kind {
        K::Dense | K::Custom => &[],
        K::Local => &[("w", Window, "window")],
        K::Atrous => &[("k", Stride, "stride")],
        K::Sparse => &[("k", Stride, "stride"), ("w", Window, "window")],
        K::Strided => &[("l", Stride, "stride")],
        K::Fixed => &[("l", Stride, "stride"), ("c", Summary, "summary columns")],
        K::Longformer => &[("w", Window, "window"), ("g", Global, "global tokens")],
        K::Bigbird => &[
            ("b", Block, "block size"),
            ("wb", Window, "window blocks"),
            ("gb", Global, "global blocks"),
            ("r", Random, "random blocks per row"),
            ("seed", Seed, "seed"),
        ],
    }
}

/// The values a field accepts, inclusive.
fn range(field: Field) -> (u64, u64) {
    match field {
        Field::Stride | Field::Summary => (1, usize::MAX as u64),
        Field::Block => (1, MAX_BLOCK as u64),
        Field::Window | Field::Global | Field::Random => (0, usize::MAX as u64),
        Field::Seed => (0, u64::MAX),
    }
}

/// The range of a field in words: `≥ 1`, `from 1 to 4096`.
fn range_text(field: Field) -> String {
    match range(field) {
        (lo, hi) if hi == MAX_BLOCK as u64 => format!("from {lo} to {hi}"),
        (lo, _) => format!("≥ {lo}"),
    }
}

/// What `kind` accepts in an entry, for error messages: `w (window ≥ 0), causal`.
fn accepted(kind: PatternKind) -> String {
    let mut parts: Vec<String> = keys(kind)
        .iter()
        .map(|&(key, field, what)| format!("{key} ({what} {})", range_text(field)))
        .collect();
    parts.push("causal".into());
    parts.join(", ")
}

/// The entry keys of `kind`'s stride and window — `k` or `l`; `w` or `wb` — or None where the
/// pattern takes no such parameter (dense takes neither, local only a window).
pub fn stride_window_keys(kind: PatternKind) -> (Option<&'static str>, Option<&'static str>) {
    (key_of(kind, Field::Stride), key_of(kind, Field::Window))
}

/// The key that sets `field` in an entry of `kind`, if `kind` takes it.
fn key_of(kind: PatternKind, field: Field) -> Option<&'static str> {
    keys(kind)
        .iter()
        .find(|(_, f, _)| *f == field)
        .map(|&(k, _, _)| k)
}

/// One layer of a schedule list: a pattern and the parameters its entry gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// The entry as typed (trimmed), for error messages.
    pub entry: String,
    /// The layer's pattern.
    pub kind: PatternKind,
    /// Stride K / L given in the entry (`k=`, `l=`).
    pub stride: Option<usize>,
    /// Window W in tokens, or BigBird window blocks (`w=`, `wb=`).
    pub window: Option<usize>,
    /// Global tokens or BigBird global blocks (`g=`, `gb=`).
    pub global: Option<usize>,
    /// Summary columns of the fixed pattern (`c=`).
    pub summary: Option<usize>,
    /// BigBird block size in tokens (`b=`).
    pub block: Option<usize>,
    /// BigBird random blocks per block row (`r=`).
    pub random: Option<usize>,
    /// BigBird seed (`seed=`).
    pub seed: Option<u64>,
    /// Causal mask of this layer (`causal`, `causal=false`).
    pub causal: Option<bool>,
}

impl LayerSpec {
    /// An entry `entry` of pattern `kind` that gives no parameter of its own.
    pub fn new(entry: &str, kind: PatternKind) -> Self {
        Self {
            entry: entry.into(),
            kind,
            stride: None,
            window: None,
            global: None,
            summary: None,
            block: None,
            random: None,
            seed: None,
            causal: None,
        }
    }

    /// A layer of pattern `kind` with its own stride and window where given and where `kind`
    /// takes them (see [`stride_window_keys`]); its `entry` is written as an entry of the list,
    /// `local(w=5)`, `sparse(k=4, w=3)`, `dense`, so [`parse_schedule`] reads it back as this
    /// layer. The app's schedule editor builds its layers with this.
    pub fn with_stride_window(
        kind: PatternKind,
        stride: Option<usize>,
        window: Option<usize>,
    ) -> Self {
        let (k_key, w_key) = stride_window_keys(kind);
        let mut spec = Self::new(kind.name(), kind);
        spec.stride = stride.filter(|_| k_key.is_some());
        spec.window = window.filter(|_| w_key.is_some());
        let params: Vec<String> = [(k_key, spec.stride), (w_key, spec.window)]
            .into_iter()
            .filter_map(|(key, v)| Some(format!("{}={}", key?, v?)))
            .collect();
        if !params.is_empty() {
            spec.entry = format!("{}({})", kind.name(), params.join(", "));
        }
        spec
    }

    /// The layer's parameters: `shared` with this entry's kind and every parameter it gives.
    pub fn apply(&self, shared: &PatternParams) -> PatternParams {
        let mut p = shared.clone();
        p.kind = self.kind;
        p.stride = self.stride.or(p.stride);
        p.window = self.window.or(p.window);
        p.global = self.global.unwrap_or(p.global);
        p.summary = self.summary.or(p.summary);
        p.block = self.block.unwrap_or(p.block);
        p.random = self.random.unwrap_or(p.random);
        p.seed = self.seed.unwrap_or(p.seed);
        p.causal = self.causal.unwrap_or(p.causal);
        p
    }

    /// Sets `field`; false when the entry had already given it.
    fn set(&mut self, field: Field, value: u64) -> bool {
        let v = value as usize;
        match field {
            Field::Stride => self.stride.replace(v).is_none(),
            Field::Window => self.window.replace(v).is_none(),
            Field::Global => self.global.replace(v).is_none(),
            Field::Summary => self.summary.replace(v).is_none(),
            Field::Block => self.block.replace(v).is_none(),
            Field::Random => self.random.replace(v).is_none(),
            Field::Seed => self.seed.replace(value).is_none(),
        }
    }
}

/// Why a schedule list was refused. Each message names the entry and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleSpecError {
    /// An entry is empty (`dense,,local`, a trailing comma, or an empty list).
    #[error("--schedule {list:?} has an empty entry; expected a comma-separated list of patterns, e.g. dense,local(w=64)")]
    EmptyEntry {
        /// The whole list.
        list: String,
    },
    /// An entry's name is not a pattern.
    #[error("--schedule entry {entry:?} is not a pattern; expected a comma-separated list of {names}, each optionally with its own parameters, e.g. local(w=64)")]
    UnknownPattern {
        /// The entry.
        entry: String,
        /// The pattern names, comma-separated.
        names: String,
    },
    /// Parentheses or `key=value` pairs are malformed.
    #[error("--schedule entry {entry:?} is malformed ({why}); expected NAME or NAME(key=value, …), e.g. local(w=64) or atrous(k=16, causal)")]
    Syntax {
        /// The entry.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// A key the entry's pattern does not take.
    #[error(
        "--schedule entry {entry:?}: {key:?} is not a parameter of {kind}; {kind} takes {accepted}"
    )]
    UnknownKey {
        /// The entry.
        entry: String,
        /// The key as typed.
        key: String,
        /// The entry's pattern.
        kind: PatternKind,
        /// The keys it takes.
        accepted: String,
    },
    /// A key given twice in one entry.
    #[error("--schedule entry {entry:?} gives {key} twice; give each parameter once")]
    Repeated {
        /// The entry.
        entry: String,
        /// The key.
        key: String,
    },
    /// A value that is not a number or is out of range.
    #[error("--schedule entry {entry:?}: {key}={value} is not accepted; expected {expected}")]
    BadValue {
        /// The entry.
        entry: String,
        /// The key.
        key: String,
        /// The value as typed.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A parameter the layer's pattern needs is in neither the entry nor the shared flags.
    #[error("--schedule entry {entry:?}: pattern {kind} needs {flag}; give it in the entry, e.g. {kind}({key}=3), or as the shared flag {flag}")]
    Missing {
        /// The entry.
        entry: String,
        /// The entry's pattern.
        kind: PatternKind,
        /// The entry key that would give it.
        key: &'static str,
        /// The shared flag that would give it, e.g. `--window W`.
        flag: &'static str,
    },
    /// The layer's parameters do not make a valid pattern.
    #[error("--schedule entry {entry:?}: {source}")]
    Pattern {
        /// The entry.
        entry: String,
        /// Why the pattern was refused.
        source: PatternError,
    },
    /// The layers do not make a schedule.
    #[error(transparent)]
    Schedule(#[from] ReachError),
}

/// Splits `list` at the commas outside parentheses.
fn split_entries(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// Parses a schedule list such as `dense,local(w=64)` or `atrous(k=16),local(w=4)` (see the
/// module docs); every entry is checked for syntax, keys and ranges.
pub fn parse_schedule(list: &str) -> Result<Vec<LayerSpec>, ScheduleSpecError> {
    split_entries(list)
        .into_iter()
        .map(|raw| {
            if raw.trim().is_empty() {
                Err(ScheduleSpecError::EmptyEntry { list: list.into() })
            } else {
                parse_entry(raw.trim())
            }
        })
        .collect()
}

/// Parses one trimmed, non-empty entry: `NAME` or `NAME(key=value, …)`.
fn parse_entry(entry: &str) -> Result<LayerSpec, ScheduleSpecError> {
    let syntax = |why: &str| ScheduleSpecError::Syntax {
        entry: entry.into(),
        why: why.into(),
    };
    let (name, inner) = match (entry.find('('), entry.rfind(')')) {
        (None, None) => (entry, ""),
        (None, Some(_)) => return Err(syntax("')' without '('")),
        (Some(_), None) => return Err(syntax("missing ')'")),
        (Some(open), Some(close)) => {
            if close < open {
                return Err(syntax("')' before '('"));
            }
            if !entry[close + 1..].trim().is_empty() {
                return Err(syntax("text after ')'"));
            }
            let inner = &entry[open + 1..close];
            let (opens, closes) = (entry.matches('(').count(), entry.matches(')').count());
            if closes > opens {
                return Err(syntax("one ')' too many"));
            }
            if opens > closes {
                return Err(syntax("missing ')'"));
            }
            if inner.contains(['(', ')']) {
                return Err(syntax("nested parentheses"));
            }
            (entry[..open].trim(), inner)
        }
    };
    let kind = PatternKind::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
        let names: Vec<_> = PatternKind::ALL.iter().map(|k| k.name()).collect();
        ScheduleSpecError::UnknownPattern {
            entry: entry.into(),
            names: names.join(", "),
        }
    })?;
    let mut spec = LayerSpec::new(entry, kind);
    if inner.trim().is_empty() {
        return Ok(spec);
    }
    for param in inner.split(',') {
        let param = param.trim();
        if param.is_empty() {
            return Err(syntax("an empty parameter between commas"));
        }
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (param.to_ascii_lowercase(), None),
        };
        let bad_value = |expected: &str| ScheduleSpecError::BadValue {
            entry: entry.into(),
            key: key.clone(),
            value: value.unwrap_or_default().into(),
            expected: expected.into(),
        };
        if key == "causal" {
            let causal = match value.map(str::to_ascii_lowercase).as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(_) => return Err(bad_value("causal, causal=true or causal=false")),
            };
            if spec.causal.replace(causal).is_some() {
                return Err(ScheduleSpecError::Repeated {
                    entry: entry.into(),
                    key,
                });
            }
            continue;
        }
        let Some(&(_, field, what)) = keys(kind).iter().find(|(k, _, _)| *k == key) else {
            return Err(ScheduleSpecError::UnknownKey {
                entry: entry.into(),
                key,
                kind,
                accepted: accepted(kind),
            });
        };
        let Some(value) = value else {
            return Err(syntax(&format!("{key} needs a value, e.g. {key}=4")));
        };
        let (lo, hi) = range(field);
        let expected = format!("an integer {} ({what})", range_text(field));
        let v = value
            .parse::<u64>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| bad_value(&expected))?;
        if !spec.set(field, v) {
            return Err(ScheduleSpecError::Repeated {
                entry: entry.into(),
                key,
            });
        }
    }
    Ok(spec)
}

/// Builds the schedule of `layers`, each on top of the shared parameters `shared` (whose `n`
/// every layer takes).
pub fn schedule_from(
    layers: &[LayerSpec],
    shared: &PatternParams,
) -> Result<Schedule, ScheduleSpecError> {
    let patterns = layers
        .iter()
        .map(|spec| spec.apply(shared).build().map_err(|e| spec.explain(e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Schedule::new(patterns)?)
}

impl LayerSpec {
    /// Whether the entry gave `field` itself (rather than the shared flags).
    fn gives(&self, field: Field) -> bool {
        match field {
            Field::Stride => self.stride.is_some(),
            Field::Window => self.window.is_some(),
            Field::Global => self.global.is_some(),
            Field::Summary => self.summary.is_some(),
            Field::Block => self.block.is_some(),
            Field::Random => self.random.is_some(),
            Field::Seed => self.seed.is_some(),
        }
    }

    /// Says why this layer's pattern was refused in the entry's own terms: a missing parameter
    /// names its key and flag, a bad value the entry gave names its key.
    fn explain(&self, source: PatternError) -> ScheduleSpecError {
        let field_of = |flag: &str| {
            [
                ("--window", Field::Window),
                ("--stride", Field::Stride),
                ("--summary", Field::Summary),
                ("--block", Field::Block),
            ]
            .into_iter()
            .find(|(f, _)| flag.starts_with(f))
            .map(|(_, field)| field)
        };
        match &source {
            PatternError::Missing { kind, flag, .. } => {
                if let Some(key) = field_of(flag).and_then(|f| key_of(*kind, f)) {
                    return ScheduleSpecError::Missing {
                        entry: self.entry.clone(),
                        kind: *kind,
                        key,
                        flag,
                    };
                }
            }
            PatternError::OutOfRange {
                kind,
                flag,
                value,
                range,
            } => {
                if let Some(field) = field_of(flag).filter(|&f| self.gives(f)) {
                    if let Some(key) = key_of(*kind, field) {
                        return ScheduleSpecError::BadValue {
                            entry: self.entry.clone(),
                            key: key.into(),
                            value: value.to_string(),
                            expected: range.clone(),
                        };
                    }
                }
            }
            _ => {}
        }
        ScheduleSpecError::Pattern {
            entry: self.entry.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reach::{compute, ReachOptions};
    use std::sync::atomic::AtomicBool;

    fn pairs(list: &str, shared: &PatternParams, layers: usize) -> Vec<u64> {
        let s = schedule_from(&parse_schedule(list).unwrap(), shared).unwrap();
        let r = compute(
            &s,
            &ReachOptions::new(layers),
            &AtomicBool::new(false),
            &|_, _| {},
        )
        .unwrap();
        r.layers.iter().map(|l| l.reachable_pairs).collect()
    }

    #[test]
    fn entries_override_the_shared_window_per_layer() {
        // n = 16 has 2·(16 − d) pairs at distance d ≥ 1. local(w=1) then local(w=2) reaches
        // distance 1, 3, 4, 6 after 1, 2, 3, 4 layers (the schedule repeats):
        //   16 + 30 = 46;  46 + 28 + 26 = 100;  100 + 24 = 124;  124 + 22 + 20 = 166.
        let shared = PatternParams::new(PatternKind::Local, 16).window(5);
        assert_eq!(
            pairs("local(w=1),local(w=2)", &shared, 4),
            [46, 100, 124, 166]
        );
        // An entry without parameters keeps the shared w = 5: distance 6 after two layers.
        assert_eq!(pairs("local(w=1), local", &shared, 2), [46, 166]);
        let s = schedule_from(&parse_schedule("LOCAL( W = 1 ),local").unwrap(), &shared).unwrap();
        assert_eq!(s.names(), "local,local");
        assert_eq!(s.label(), "schedule(local(w=1) | local(w=5))");
    }

    #[test]
    fn layers_with_own_stride_and_window_read_back_from_their_entry() {
        use PatternKind as K;
        assert_eq!(stride_window_keys(K::Dense), (None, None));
        assert_eq!(stride_window_keys(K::Local), (None, Some("w")));
        assert_eq!(stride_window_keys(K::Sparse), (Some("k"), Some("w")));
        assert_eq!(stride_window_keys(K::Strided), (Some("l"), None));
        assert_eq!(stride_window_keys(K::Bigbird), (None, Some("wb")));
        for (kind, k, w, entry) in [
            (K::Local, Some(4), Some(5), "local(w=5)"),
            (K::Sparse, Some(4), Some(3), "sparse(k=4, w=3)"),
            (K::Sparse, None, Some(3), "sparse(w=3)"),
            (K::Atrous, Some(16), Some(1), "atrous(k=16)"),
            (K::Fixed, Some(8), Some(1), "fixed(l=8)"),
            (K::Bigbird, Some(2), Some(1), "bigbird(wb=1)"),
            (K::Dense, Some(2), Some(1), "dense"),
            (K::Local, None, None, "local"),
        ] {
            let spec = LayerSpec::with_stride_window(kind, k, w);
            assert_eq!(spec.entry, entry);
            assert_eq!(parse_schedule(entry).unwrap(), [spec]);
        }
        // The same counts as the hand-checked list above.
        let shared = PatternParams::new(PatternKind::Local, 16).window(5);
        let layers = [
            LayerSpec::with_stride_window(K::Local, None, Some(1)),
            LayerSpec::with_stride_window(K::Local, None, Some(2)),
        ];
        let s = schedule_from(&layers, &shared).unwrap();
        assert_eq!(s.label(), "schedule(local(w=1) | local(w=2))");
    }

    #[test]
    fn atrous_then_local_counts_by_hand() {
        // atrous(k=4): 16 + 2·(12 + 8 + 4) = 64 pairs. Then local(w=1): an inner query reads
        // 3 neighbours, i.e. 3 residues mod 4 = 12 keys; queries 0 and 15 read 2 = 8 keys:
        // 14·12 + 2·8 = 184. Then atrous again: every residue class of queries meets an inner
        // neighbour, 16·12 = 192; local again: all 4 residues, 256.
        let shared = PatternParams::new(PatternKind::Dense, 16);
        assert_eq!(
            pairs("atrous(k=4),local(w=1)", &shared, 4),
            [64, 184, 192, 256]
        );
    }

    #[test]
    fn labels_paste_back_as_entries() {
        use PatternKind as K;
        let n = 40;
        let layers = [
            PatternParams::new(K::Sparse, n).stride(4).window(3),
            PatternParams::new(K::Atrous, n).stride(16).causal(true),
            PatternParams::new(K::Strided, n).stride(6),
            PatternParams::new(K::Fixed, n)
                .stride(6)
                .summary(2)
                .causal(true),
            PatternParams::new(K::Longformer, n).window(3).global(2),
            PatternParams::new(K::Bigbird, n)
                .block(4)
                .window(1)
                .global(1)
                .random(2)
                .seed(7),
        ];
        // Shared values that differ from every entry's, so each must come from the entry.
        let shared = PatternParams::new(K::Dense, n)
            .stride(9)
            .window(9)
            .global(5)
            .summary(1)
            .block(8)
            .random(0)
            .seed(1);
        let labels: Vec<String> = layers.iter().map(|p| p.build().unwrap().label()).collect();
        let list = labels.join(",");
        let s = schedule_from(&parse_schedule(&list).unwrap(), &shared).unwrap();
        assert_eq!(s.label(), format!("schedule({})", labels.join(" | ")));
        assert_eq!(s.names(), "sparse,atrous,strided,fixed,longformer,bigbird");
        // causal=false switches a shared --causal off for one layer.
        let causal = shared.clone().causal(true);
        let s = schedule_from(
            &parse_schedule("dense(causal=false),dense").unwrap(),
            &causal,
        );
        assert_eq!(s.unwrap().label(), "schedule(dense | dense(causal))");
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry() {
        let shared = PatternParams::new(PatternKind::Local, 16).window(2);
        for (list, entry, needle) in [
            (
                "local(w=abc)",
                "local(w=abc)",
                "w=abc is not accepted; expected an integer ≥ 0",
            ),
            (
                "dense,atrous(k=0)",
                "atrous(k=0)",
                "k=0 is not accepted; expected an integer ≥ 1",
            ),
            ("local(w=-1)", "local(w=-1)", "w=-1 is not accepted"),
            (
                "local(x=3)",
                "local(x=3)",
                "\"x\" is not a parameter of local; local takes w (window ≥ 0), causal",
            ),
            ("dense(w=2)", "dense(w=2)", "dense takes causal"),
            ("local(w=1, w=2)", "local(w=1, w=2)", "gives w twice"),
            ("local(w=3,dense", "local(w=3,dense", "missing ')'"),
            ("local)", "local)", "')' without '('"),
            ("local(w=1)x", "local(w=1)x", "text after ')'"),
            ("local((w=1))", "local((w=1))", "nested parentheses"),
            ("local(w=3))", "local(w=3))", "one ')' too many"),
            ("local((w=3)", "local((w=3)", "missing ')'"),
            ("local(w)", "local(w)", "w needs a value"),
            (
                "local(w=1,,causal)",
                "local(w=1,,causal)",
                "an empty parameter",
            ),
            (
                "local:w=64",
                "local:w=64",
                "is not a pattern; expected a comma-separated list of dense, local",
            ),
            ("bigbird(b=5000)", "bigbird(b=5000)", "from 1 to 4096"),
            (
                "fixed(l=4, c=9)",
                "fixed(l=4, c=9)",
                "9 is out of range for fixed: the summary columns must be from 1 to l = 4",
            ),
            (
                "dense(causal=maybe)",
                "dense(causal=maybe)",
                "causal=true or causal=false",
            ),
            (
                "atrous",
                "atrous",
                "atrous needs k (stride, an integer ≥ 1): write atrous(k=N) or give --stride N",
            ),
        ] {
            let e = parse_schedule(list)
                .and_then(|l| schedule_from(&l, &shared))
                .expect_err(list)
                .to_string();
            assert!(
                e.starts_with(&format!("--schedule entry {entry:?}")),
                "{list}: {e}"
            );
            assert!(e.contains(needle), "{list}: {e}");
        }
        for list in ["", "dense,,local", "dense,", " , "] {
            let e = parse_schedule(list).expect_err(list);
            assert_eq!(e, ScheduleSpecError::EmptyEntry { list: list.into() });
        }
    }
}
