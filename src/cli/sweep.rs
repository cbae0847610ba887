//! `attnscope bench --sweep A..B`: the kernels over a range of n, as a table, JSON or CSV.

use super::bench_args::BenchArgs;
use super::CliError;
use crate::bench::BenchConfig;
use crate::inputs::{InputKind, MAX_ELEMENTS};
use crate::sweep::{parse_sizes, run_sweep, Scaling, SweepConfig, SweepError, SweepProgress};
use std::sync::atomic::AtomicBool;

/// Runs the sweep that `bench --sweep` asked for.
pub fn run(a: &BenchArgs, input: InputKind, bench: BenchConfig) -> Result<(), CliError> {
    let spec = a.sweep.as_deref().unwrap_or_default();
    let sizes = parse_sizes(spec).map_err(CliError::Usage)?;
    if let Some(&n) = sizes
        .iter()
        .find(|&&n| n as u64 * a.d as u64 > MAX_ELEMENTS)
    {
        return Err(CliError::Usage(format!(
            "--sweep size n = {n} with --d {} needs more than {MAX_ELEMENTS} elements per input; use a smaller range",
            a.d
        )));
    }
    let cfg = SweepConfig {
        sizes,
        // `n` is replaced by each size of the sweep (`params_at`).
        params: a.pattern.at(1).params(),
        scaling: if a.sqrt {
            Scaling::SqrtN
        } else {
            Scaling::Fixed
        },
        d: a.d,
        input,
        bench,
    };
    // Every size's pattern is checked before any timing, so a bad flag is the only line printed.
    // So are the kernels named in --kernels, and, without --budget-ms, the time of the largest
    // size (the slowest one).
    let at = |e: CliError, n: usize| match e {
        CliError::Usage(m) => CliError::Usage(format!("at n = {n}: {m}")),
        other => other,
    };
    for &n in &cfg.sizes {
        let p = crate::sweep::params_at(&cfg.params, cfg.scaling, n)
            .build()
            .map_err(|e| CliError::Usage(format!("at n = {n}: {e}")))?;
        if !a.kernels.is_empty() {
            super::bench_args::check_kernels(&p, &a.kernels, cfg.bench.block)
                .map_err(|e| at(e, n))?;
        }
    }
    if let Some(&n) = cfg.sizes.iter().max() {
        let p = crate::sweep::params_at(&cfg.params, cfg.scaling, n)
            .build()
            .map_err(|e| CliError::Usage(format!("at n = {n}: {e}")))?;
        super::bench_args::check_time(&p, a.d, &cfg.bench, a.budget_ms).map_err(|e| at(e, n))?;
    }
    // The CSV file is opened (as a temporary file beside it) before any timing, so a path that
    // cannot be written fails at once rather than after the whole sweep.
    let csv = match &a.csv {
        Some(path) => Some(crate::export::AtomicFile::create(path)?),
        None => None,
    };
    let verbose = !a.json;
    let report = run_sweep(&cfg, &AtomicBool::new(false), &mut |e| {
        if !verbose {
            return;
        }
        match e {
            SweepProgress::Size { index, total, n } => {
                super::note(&format!("[size {}/{total}] n = {n}", index + 1))
            }
            SweepProgress::Kernel {
                event: crate::bench::Progress::Started { kernel, .. },
                ..
            } => super::note(&format!("  {kernel}…")),
            _ => {}
        }
    })
    .map_err(|e| match e {
        SweepError::Bench { n, source } => match CliError::from(source) {
            CliError::Usage(m) => CliError::Usage(format!("at n = {n}: {m}")),
            CliError::Runtime(m) => CliError::Runtime(format!("at n = {n}: {m}")),
        },
        other => CliError::Usage(other.to_string()),
    })?;
    let written = match csv {
        Some(file) => {
            let text = crate::sweep::csv(&report);
            file.commit(|w| std::io::Write::write_all(w, text.as_bytes()))
        }
        None => Ok(()),
    };
    // The results are printed even when the CSV could not be written; the error still ends
    // the command with exit 1.
    super::print_report(a.json, &report, || table(&report))?;
    Ok(written?)
}

/// One line per (n, kernel).
fn table(r: &crate::sweep::SweepReport) -> String {
    let mut s = format!(
        "{:>8}  {:<10} {:>12} {:>12} {:>10}  {}\n",
        "n", "kernel", "median_ms", "GFLOP/s", "speedup", "pattern"
    );
    for p in &r.points {
        for k in &p.results {
            match &k.skipped {
                Some(why) => {
                    s += &format!("{:>8}  {:<10} skipped: {why}\n", p.n, k.kernel);
                }
                None => {
                    s += &format!(
                        "{:>8}  {:<10} {:>12.3} {:>12.2} {:>10}  {}\n",
                        p.n,
                        k.kernel,
                        k.median_ms,
                        k.gflops_useful,
                        k.speedup_vs_dense
                            .map_or("-".to_string(), |x| format!("{x:.2}x")),
                        p.label
                    );
                }
            }
        }
    }
    s
}
