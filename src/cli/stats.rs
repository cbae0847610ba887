//! `attnscope stats`: exact counts of a pattern, as a table or one JSON object.

use super::{args::PatternArgs, parse_count, CliError};
use crate::stats::PatternStats;

/// Arguments of `attnscope stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub pattern: PatternArgs,
    /// Head dimension d for the FLOP counts (1 to 4096).
    #[arg(long, value_name = "D", default_value = "64", value_parser = parse_count)]
    pub d: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: StatsArgs) -> Result<(), CliError> {
    super::check_d(a.d)?;
    let block = a.pattern.block()?;
    let p = a.pattern.build()?;
    let s = PatternStats::compute(&p, a.d, block)?;
    super::print_report(a.json, &s, || s.table())
}
