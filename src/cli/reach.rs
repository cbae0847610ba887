//! `attnscope reach`: how much of the sequence each query can see after L stacked layers.

use super::{
    args::{PatternArgs, ReachPatternArgs},
    parse_count, CliError,
};
use crate::pattern::PatternKind;
use crate::reach::{self, ReachLayer, ReachOptions, ReachReport, Schedule};
use std::sync::atomic::AtomicBool;

/// Arguments of `attnscope reach`.
#[derive(Debug, clap::Args)]
pub struct ReachArgs {
    #[command(flatten)]
    pub pattern: ReachPatternArgs,
    /// Number of stacked layers L (1 to 4096); coverage is printed for l = 1..L.
    #[arg(long, value_name = "L", value_parser = parse_count)]
    pub layers: usize,
    /// Per-layer patterns, repeated cyclically, in place of --pattern (give one or the other):
    /// e.g. dense,local for GPT-3. An entry may give its own parameters in parentheses, as labels print them:
    /// "local(w=64),dense" or "atrous(k=16),local(w=4, causal)" (quote the list for the
    /// shell). Keys: local w; atrous k; sparse k, w; strided l; fixed l, c; longformer w, g;
    /// bigbird b, wb, gb, r, seed; every pattern causal. What an entry leaves out comes from
    /// the PATTERN flags (--stride, --window, --causal, …); every layer takes --n.
    #[arg(long, value_name = "LIST")]
    pub schedule: Option<String>,
    /// Search for full coverage up to this many layers (default: L).
    #[arg(long, value_name = "M", value_parser = parse_count)]
    pub max_layers: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The JSON object of `reach --json` (docs/contract.md section 4, plus the full-coverage search).
#[derive(serde::Serialize)]
struct ReachJson<'a> {
    n: usize,
    /// Pattern name(s) as on the command line: `sparse`, or `dense,local` for a schedule.
    pattern: &'a str,
    /// Pattern with its parameters, e.g. `sparse(k=4, w=3)`.
    label: &'a str,
    layers: &'a [ReachLayer],
    layers_to_full: Option<usize>,
    max_layers: usize,
}

/// Builds the schedule: the single `--pattern`, or one pattern per `--schedule` entry (its own
/// parameters over the shared flags). Exactly one of the two must be given.
fn schedule(a: &ReachArgs) -> Result<Schedule, CliError> {
    a.pattern.rest.block()?;
    let list =
        match (&a.pattern.pattern, &a.schedule) {
            (Some(text), Some(list)) => {
                return Err(CliError::Usage(format!(
                    "--pattern {:?} cannot be used with --schedule {list:?}: the schedule gives \
                 every layer's pattern; leave out --pattern (or --schedule to stack one pattern)",
                    text.0
                )))
            }
            (Some(text), None) => {
                let one = PatternArgs {
                    pattern: text.clone(),
                    n: a.pattern.n,
                    rest: a.pattern.rest.clone(),
                };
                return Ok(Schedule::single(one.build()?));
            }
            (None, Some(list)) => list,
            (None, None) => return Err(CliError::Usage(
                "--pattern is missing: give the pattern NAME of every layer, or --schedule LIST \
                 with one pattern per layer"
                    .into(),
            )),
        };
    let usage = |e: reach::ScheduleSpecError| CliError::Usage(e.to_string());
    let layers = reach::parse_schedule(list).map_err(usage)?;
    // Every entry names its pattern; the kind here is replaced layer by layer.
    let shared = a.pattern.with_kind(PatternKind::Dense).params();
    reach::schedule_from(&layers, &shared).map_err(usage)
}

pub fn run(a: ReachArgs) -> Result<(), CliError> {
    let s = schedule(&a)?;
    let opts = ReachOptions {
        layers: a.layers,
        max_layers: a.max_layers.unwrap_or(a.layers),
        raster_side: 0,
    };
    let r = reach::compute(&s, &opts, &AtomicBool::new(false), &|_, _| {})
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let names = s.names();
    let obj = ReachJson {
        n: r.n,
        pattern: &names,
        label: &r.pattern,
        layers: &r.layers,
        layers_to_full: r.layers_to_full,
        max_layers: r.max_layers,
    };
    super::print_report(a.json, &obj, || table(&r))
}

/// The human-readable table.
fn table(r: &ReachReport) -> String {
    let mut s = format!("reach of {}, n = {}\n", r.pattern, r.n);
    s += &format!(
        "{:>6}  {:>20}  {:>9}\n",
        "layers", "reachable_pairs", "coverage"
    );
    for l in &r.layers {
        s += &format!(
            "{:>6}  {:>20}  {:>8}%\n",
            l.layer,
            l.reachable_pairs,
            crate::stats::percent_text(l.coverage, 4)
        );
    }
    s += &match r.layers_to_full {
        Some(l) => format!("every pair is reachable after {l} layer(s)\n"),
        None => format!(
            "not every pair is reachable within {} layer(s)\n",
            r.max_layers
        ),
    };
    s
}
