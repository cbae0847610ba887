//! `attnscope bench`: time every kernel on a pattern, as a table or one JSON object.

pub use super::bench_args::BenchArgs;
use super::bench_args::{check_kernels, check_time};
use super::CliError;
use crate::bench::{default_threads, run_bench, table, BenchConfig, MAX_REPEATS, MAX_WARMUP};
use crate::inputs::{try_generate, InputKind};
use crate::kernel::KernelKind;
use std::sync::atomic::AtomicBool;

pub fn run(a: BenchArgs) -> Result<(), CliError> {
    // One pattern at --n, or none here: a sweep builds it at each of its sizes.
    let single = match (a.pattern.n, &a.sweep) {
        (Some(n), Some(spec)) => {
            return Err(CliError::Usage(format!(
                "--n {n} cannot be used with --sweep {spec:?}: the sweep gives the sequence \
                 lengths; leave out --n (or --sweep to time one length)"
            )))
        }
        (Some(n), None) => Some(a.pattern.at(n).build()?),
        (None, Some(_)) => None,
        (None, None) => {
            return Err(CliError::Usage(format!(
                "--n is missing: give the sequence length N (1 to {}) or --sweep A..B",
                crate::pattern::MAX_N
            )))
        }
    };
    let block = a.pattern.rest.block()?;
    super::check_d(a.d)?;
    if a.repeats == 0 || a.repeats > MAX_REPEATS {
        return Err(CliError::Usage(format!(
            "--repeats {} is out of range: expected from 1 to {MAX_REPEATS} timed runs",
            a.repeats
        )));
    }
    if a.warmup > MAX_WARMUP {
        return Err(CliError::Usage(format!(
            "--warmup {} is out of range: expected from 0 to {MAX_WARMUP} warm-up runs",
            a.warmup
        )));
    }
    let threads = a.threads.unwrap_or_else(default_threads);
    if threads == 0 || threads > 1024 {
        return Err(CliError::Usage(format!(
            "--threads {threads} is out of range: expected an integer from 1 to 1024"
        )));
    }
    if let Some(b) = a.budget_ms {
        if !(b.is_finite() && b > 0.0) {
            return Err(CliError::Usage(format!(
                "--budget-ms {b} is out of range: expected a positive number of milliseconds"
            )));
        }
    }
    if !a.kernels.is_empty() {
        if let Some(p) = &single {
            check_kernels(p, &a.kernels, block)?;
        }
    }
    let kind = match a.input.as_str() {
        "structured" => InputKind::Structured { seed: a.input_seed },
        _ => InputKind::Random { seed: a.input_seed },
    };
    let cfg = BenchConfig {
        kernels: if a.kernels.is_empty() {
            KernelKind::ALL.to_vec()
        } else {
            a.kernels.clone()
        },
        repeats: a.repeats,
        warmup: a.warmup,
        threads,
        block,
        dense_budget_ms: a.budget_ms,
    };
    let Some(p) = single else {
        return super::sweep::run(&a, kind, cfg);
    };
    let n = p.n();
    let elements = n as u64 * a.d as u64;
    if elements > crate::inputs::MAX_ELEMENTS {
        return Err(CliError::Usage(format!(
            "--n {n} with --d {} needs {elements} elements per input; at most {} are accepted",
            a.d,
            crate::inputs::MAX_ELEMENTS
        )));
    }
    check_time(&p, a.d, &cfg, a.budget_ms)?;
    let qkv = try_generate(kind, n, a.d).map_err(|e| CliError::Runtime(e.to_string()))?;
    let cancel = AtomicBool::new(false);
    let verbose = !a.json;
    let report = run_bench(&p, &qkv, &cfg, &cancel, &mut |ev| {
        if verbose {
            if let crate::bench::Progress::Started {
                kernel,
                index,
                total,
            } = ev
            {
                super::note(&format!("[{}/{}] {kernel}…", index + 1, total));
            }
        }
    })?;
    super::print_report(a.json, &report, || table(&report))
}
