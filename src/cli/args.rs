//! Pattern flags shared by every subcommand (docs/contract.md section 4, `PATTERN`).

use super::CliError;
use crate::pattern::{Pattern, PatternKind, PatternParams, DEFAULT_BLOCK};

/// Parses a non-negative integer flag value.
pub fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("expected a non-negative integer, got {s:?}"))
}

/// Parses a 64-bit seed.
fn parse_seed(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("expected an integer from 0 to {}, got {s:?}", u64::MAX))
}

/// A `--pattern` value as typed: a name of the eight patterns or an expression (README,
/// "Pattern expressions"); it is checked when the pattern is built, with `--n` and the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternText(pub String);

impl PatternText {
    /// The pattern named `kind`.
    pub fn of(kind: PatternKind) -> Self {
        Self(kind.name().to_string())
    }

    /// The raw parameters at length `n` (flags not yet applied).
    pub fn params(&self, n: usize) -> PatternParams {
        PatternParams::from_text(&self.0, n)
    }
}

/// Takes a pattern name or expression as typed.
fn parse_pattern(s: &str) -> Result<PatternText, String> {
    Ok(PatternText(s.to_string()))
}

/// `--pattern NAME --n N [--stride K] [--window W] [--causal] [--global G] [--summary C]
/// [--block B] [--random R] [--seed S]`.
#[derive(Debug, Clone, clap::Args)]
pub struct PatternArgs {
    /// Pattern: dense, local, atrous, sparse, strided, fixed, longformer, bigbird, or an
    /// expression such as "(local(w=64) | sink(s=4)) & causal".
    #[arg(long, value_name = "EXPR", value_parser = parse_pattern)]
    pub pattern: PatternText,
    /// Sequence length n (1 to 16777216).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub n: usize,
    #[command(flatten)]
    pub rest: PatternExtras,
}

/// The PATTERN flags of `bench`: `--n` is required unless `--sweep` gives the sizes, and may not
/// be given together with it (its value would be ignored).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchPatternArgs {
    /// Pattern: dense, local, atrous, sparse, strided, fixed, longformer, bigbird, or an
    /// expression such as "(local(w=64) | sink(s=4)) & causal".
    #[arg(long, value_name = "EXPR", value_parser = parse_pattern)]
    pub pattern: PatternText,
    /// Sequence length n (1 to 16777216); leave it out with --sweep, which gives the sizes.
    #[arg(long, value_name = "N", value_parser = parse_count, required_unless_present = "sweep")]
    pub n: Option<usize>,
    #[command(flatten)]
    pub rest: PatternExtras,
}

impl BenchPatternArgs {
    /// The PATTERN flags at length `n` (the `--n` given, or one size of a sweep).
    pub fn at(&self, n: usize) -> PatternArgs {
        PatternArgs {
            pattern: self.pattern.clone(),
            n,
            rest: self.rest.clone(),
        }
    }
}

/// The PATTERN flags of `reach`: `--pattern` is required unless `--schedule` gives every layer's
/// pattern, and may not be given together with it (its value would be ignored); `--n` and the
/// other flags are shared by every layer of a schedule. `reach` checks the pair itself, so that
/// a missing `--pattern` can point to `--schedule`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReachPatternArgs {
    /// Pattern: dense, local, atrous, sparse, strided, fixed, longformer, bigbird; leave it out
    /// with --schedule, which gives each layer's pattern.
    #[arg(long, value_name = "EXPR", value_parser = parse_pattern)]
    pub pattern: Option<PatternText>,
    /// Sequence length n (1 to 16777216), of every layer.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub n: usize,
    #[command(flatten)]
    pub rest: PatternExtras,
}

impl ReachPatternArgs {
    /// The PATTERN flags of pattern `kind` (the `--pattern` given, or a schedule entry's).
    pub fn with_kind(&self, kind: PatternKind) -> PatternArgs {
        PatternArgs {
            pattern: PatternText::of(kind),
            n: self.n,
            rest: self.rest.clone(),
        }
    }
}

/// The optional pattern parameters.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PatternExtras {
    /// Stride K (atrous, sparse) or L (strided, fixed), ≥ 1.
    #[arg(long, value_name = "K", value_parser = parse_count)]
    pub stride: Option<usize>,
    /// Window W ≥ 0 in tokens (local, sparse, longformer) or blocks (bigbird, default 1).
    #[arg(long, value_name = "W", value_parser = parse_count)]
    pub window: Option<usize>,
    /// Keep only keys j ≤ i (decoder-only models).
    #[arg(long)]
    pub causal: bool,
    /// Global tokens (longformer) or global blocks (bigbird), ≥ 0.
    #[arg(long, value_name = "G", value_parser = parse_count)]
    pub global: Option<usize>,
    /// Summary columns C of the fixed pattern, 1..=L (default 1).
    #[arg(long, value_name = "C", value_parser = parse_count)]
    pub summary: Option<usize>,
    /// Block size B (bigbird blocks; block statistics and block kernels), default 64.
    #[arg(long, value_name = "B", value_parser = parse_count)]
    pub block: Option<usize>,
    /// Random blocks per block row (bigbird), ≥ 0.
    #[arg(long, value_name = "R", value_parser = parse_count)]
    pub random: Option<usize>,
    /// Seed of bigbird's random blocks.
    #[arg(long, value_name = "S", value_parser = parse_seed)]
    pub seed: Option<u64>,
}

impl PatternExtras {
    /// The block size for statistics and block kernels (`--block`, default 64), validated.
    pub fn block(&self) -> Result<usize, CliError> {
        let b = self.block.unwrap_or(DEFAULT_BLOCK);
        if b == 0 || b > crate::pattern::MAX_BLOCK {
            return Err(CliError::Usage(format!(
                "--block {b} is out of range: expected an integer from 1 to {}",
                crate::pattern::MAX_BLOCK
            )));
        }
        Ok(b)
    }

    fn apply(&self, mut p: PatternParams) -> PatternParams {
        p.stride = self.stride;
        p.window = self.window;
        p.causal = self.causal;
        p.global = self.global.unwrap_or(0);
        p.summary = self.summary;
        p.block = self.block.unwrap_or(DEFAULT_BLOCK);
        p.random = self.random.unwrap_or(0);
        p.seed = self.seed.unwrap_or(0);
        p
    }
}

impl PatternArgs {
    /// The raw parameters.
    pub fn params(&self) -> PatternParams {
        self.rest.apply(self.pattern.params(self.n))
    }

    /// The block size for statistics and block kernels (`--block`, default 64), validated.
    pub fn block(&self) -> Result<usize, CliError> {
        self.rest.block()
    }

    /// Validates into a pattern.
    pub fn build(&self) -> Result<Pattern, CliError> {
        self.block()?;
        Ok(self.params().build()?)
    }
}

/// Pattern flags where every one is optional (`attnscope gui`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OptionalPatternArgs {
    /// Pattern: dense, local, atrous, sparse, strided, fixed, longformer, bigbird, or an
    /// expression such as "(local(w=64) | sink(s=4)) & causal".
    #[arg(long, value_name = "EXPR", value_parser = parse_pattern)]
    pub pattern: Option<PatternText>,
    /// Sequence length n (1 to 65536 in the app).
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub n: Option<usize>,
    #[command(flatten)]
    pub rest: PatternExtras,
}

impl OptionalPatternArgs {
    /// Whether any flag was given.
    pub fn is_empty(&self) -> bool {
        self.pattern.is_none() && self.n.is_none()
    }

    /// The parameters these flags give, on top of `base` (the app's saved settings).
    pub fn params_over(&self, base: &PatternParams) -> PatternParams {
        let mut p = base.clone();
        if let Some(t) = &self.pattern {
            let given = t.params(p.n);
            p.kind = given.kind;
            p.expr = given.expr;
        }
        if let Some(n) = self.n {
            p.n = n;
        }
        let r = &self.rest;
        p.stride = r.stride.or(p.stride);
        p.window = r.window.or(p.window);
        p.causal |= r.causal;
        p.global = r.global.unwrap_or(p.global);
        p.summary = r.summary.or(p.summary);
        p.block = r.block.unwrap_or(p.block);
        p.random = r.random.unwrap_or(p.random);
        p.seed = r.seed.unwrap_or(p.seed);
        p
    }

    /// The pattern these flags give at sequence length `n`, taken from the data (`--pattern`
    /// defaults to dense), and the block size for block kernels. A `--n` given must equal `n`;
    /// `source` says where `n` comes from, e.g. `Q, which has n = 150 rows`.
    pub fn build_at(&self, n: usize, source: &str) -> Result<(Pattern, usize), CliError> {
        if let Some(given) = self.n {
            if given != n {
                return Err(CliError::Usage(format!(
                    "--n {given} does not match {source}; omit --n or give {n}"
                )));
            }
        }
        let base = PatternParams::new(PatternKind::Dense, n);
        let params = self.params_over(&base);
        let block = params.block;
        if block == 0 || block > crate::pattern::MAX_BLOCK {
            return Err(CliError::Usage(format!(
                "--block {block} is out of range: expected an integer from 1 to {}",
                crate::pattern::MAX_BLOCK
            )));
        }
        Ok((params.build()?, block))
    }

    /// Checks the flags that were given (a pattern with missing parameters takes the
    /// app's defaults, so only values given are checked here).
    pub fn validate(&self) -> Result<(), CliError> {
        if let Some(n) = self.n {
            if n == 0 || n > crate::APP_MAX_N {
                return Err(CliError::Usage(format!(
                    "--n {n} is out of range: the app takes a sequence length from 1 to {}",
                    crate::APP_MAX_N
                )));
            }
        }
        self.rest.block()?;
        // No limit on a pattern's parameters depends on n, so the flags are checked the same
        // way with or without --n: for the pattern given, or else for every pattern (the app
        // may open on any), missing values taken from the app's defaults (stride 4, window 3,
        // a stride that fits a given --summary).
        let n = self.n.unwrap_or(64);
        let bases: Vec<PatternParams> = match &self.pattern {
            Some(_) => vec![PatternParams::new(PatternKind::Sparse, n)],
            None => PatternKind::ALL
                .iter()
                .map(|&k| PatternParams::new(k, n))
                .collect(),
        };
        for base in bases {
            let mut p = self.params_over(&base);
            p.stride = p.stride.or(Some(self.rest.summary.unwrap_or(1).max(4)));
            p.window = p.window.or(Some(3));
            p.build()?;
        }
        Ok(())
    }
}
