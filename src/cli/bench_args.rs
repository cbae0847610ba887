//! Arguments of `attnscope bench` and their checks, shared by the single-pattern run in
//! `bench.rs` and the scaling sweep in `sweep.rs` (so that neither imports the other).

use super::run::parse_kernel;
use super::{args::BenchPatternArgs, parse_count, CliError};
use crate::bench::{duration_text, estimate, BenchConfig, DEFAULT_TOTAL_BUDGET_MS};
use crate::kernel::KernelKind;

/// Arguments of `attnscope bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub pattern: BenchPatternArgs,
    /// Head dimension d (1 to 4096).
    #[arg(long, value_name = "D", default_value = "64", value_parser = parse_count)]
    pub d: usize,
    /// Comma-separated kernels (default all: dense,masked,csr,block,permuted).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_kernel)]
    pub kernels: Vec<KernelKind>,
    /// Timed runs per kernel (1 to 1000).
    #[arg(long, value_name = "R", default_value = "5", value_parser = parse_count)]
    pub repeats: usize,
    /// Untimed warm-up runs per kernel (0 to 100).
    #[arg(long, value_name = "W", default_value = "1", value_parser = parse_count)]
    pub warmup: usize,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "T", value_parser = parse_count)]
    pub threads: Option<usize>,
    /// Sample input: random or structured.
    #[arg(long, value_name = "KIND", default_value = "random", value_parser = ["random", "structured"])]
    pub input: String,
    /// Seed of the sample input.
    #[arg(long = "input-seed", value_name = "S", default_value = "0")]
    pub input_seed: u64,
    /// Skip kernels whose estimated time per run exceeds this many ms. Without it, a bench
    /// estimated to take more than 10 minutes in all is refused before it starts.
    #[arg(long = "budget-ms", value_name = "MS")]
    pub budget_ms: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Run over a range of n: A..B (doubling from A up to B) or a list A,B,C; takes the place
    /// of --n (give one or the other).
    #[arg(long, value_name = "A..B")]
    pub sweep: Option<String>,
    /// With --sweep: stride = window = ⌈√n⌉ at every n (Sparse Transformer).
    #[arg(long, requires = "sweep")]
    pub sqrt: bool,
    /// With --sweep: also write the results as CSV to FILE.
    #[arg(long, value_name = "FILE", requires = "sweep")]
    pub csv: Option<std::path::PathBuf>,
}

/// Kernels named in `--kernels` that cannot run `p` at all (a block layout too large for
/// memory) are refused before any work, naming what would work.
pub(super) fn check_kernels(
    p: &crate::pattern::Pattern,
    kernels: &[KernelKind],
    block: usize,
) -> Result<(), CliError> {
    for &k in kernels {
        crate::kernel::check_plan(k, p, block).map_err(|e| CliError::Usage(e.to_string()))?;
    }
    Ok(())
}

/// Without `--budget-ms`, refuses a bench estimated (from a short calibration) to take more
/// than [`DEFAULT_TOTAL_BUDGET_MS`], saying how long it would take.
pub(super) fn check_time(
    p: &crate::pattern::Pattern,
    d: usize,
    cfg: &BenchConfig,
    budget_ms: Option<f64>,
) -> Result<(), CliError> {
    if budget_ms.is_some() {
        return Ok(());
    }
    let est = estimate(p, d, cfg, DEFAULT_TOTAL_BUDGET_MS)?;
    let Some(est) = est else { return Ok(()) };
    if est.total_ms <= DEFAULT_TOTAL_BUDGET_MS {
        return Ok(());
    }
    let (slowest, per_run) = est.slowest().unwrap_or((KernelKind::Dense, est.total_ms));
    Err(CliError::Usage(format!(
        "this bench of {} at n = {} would take about {} ({slowest} alone about {} per run, {} \
         runs per kernel), more than the default budget of {}; give --budget-ms {:.0} to run \
         every kernel anyway, or a smaller --budget-ms to skip the kernels slower than that \
         per run (or a smaller --n, --repeats or --kernels list)",
        p.label(),
        p.n(),
        duration_text(est.total_ms),
        duration_text(per_run),
        est.runs,
        duration_text(DEFAULT_TOTAL_BUDGET_MS),
        per_run.ceil(),
    )))
}
