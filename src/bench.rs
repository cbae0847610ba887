//! The timing harness shared by the desktop app and `attnscope bench`.
//!
//! For each kernel: warm-up runs, then `repeats` timed runs on a rayon pool of the requested
//! thread count; median and minimum wall time, useful FLOPs (`4·d·nnz`, SPEC §2) and executed
//! FLOPs (`4·d·cells computed`), useful GFLOP/s, speedup over our dense kernel, and the normwise
//! relative error against the f64 reference on a sample of query rows
//! ([`ERROR_SAMPLE_ROWS`] rows spread evenly over the sequence, so checking stays O(sample · n · d)
//! even at n = 2²⁰). `dense` is checked against full attention, every other kernel against the
//! pattern.
//!
//! ```
//! use attnscope::bench::{run_bench, BenchConfig};
//! use attnscope::inputs::{generate, InputKind};
//! use attnscope::kernel::KernelKind;
//! use attnscope::pattern::{PatternKind, PatternParams};
//! use std::sync::atomic::AtomicBool;
//!
//! let p = PatternParams::new(PatternKind::Local, 256).window(8).build()?;
//! let qkv = generate(InputKind::Random { seed: 0 }, 256, 32);
//! let cfg = BenchConfig { kernels: vec![KernelKind::Dense, KernelKind::Csr], repeats: 2, ..Default::default() };
//! let report = run_bench(&p, &qkv, &cfg, &AtomicBool::new(false), &mut |_| {})?;
//! assert_eq!(report.results.len(), 2);
//! assert!(report.results[1].max_rel_err < 1e-4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::inputs::Qkv;
use crate::kernel::{
    flops_useful, kernel, max_rel_err_rows, reference_rows, KernelError, KernelKind,
};
use crate::pattern::{Pattern, PatternKind, PatternParams, DEFAULT_BLOCK};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Query rows checked against the reference per kernel.
pub const ERROR_SAMPLE_ROWS: usize = 64;

/// What to benchmark and how.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// Kernels to run, in this order.
    pub kernels: Vec<KernelKind>,
    /// Timed runs per kernel (≥ 1).
    pub repeats: usize,
    /// Untimed warm-up runs per kernel.
    pub warmup: usize,
    /// Worker threads (≥ 1).
    pub threads: usize,
    /// Block size B of the block kernel.
    pub block: usize,
    /// Skip a kernel whose estimated time per run exceeds this many milliseconds (the estimate
    /// is its executed FLOPs at the dense kernel's rate, measured on a small problem first).
    pub dense_budget_ms: Option<f64>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            kernels: KernelKind::ALL.to_vec(),
            repeats: 5,
            warmup: 1,
            threads: default_threads(),
            block: DEFAULT_BLOCK,
            dense_budget_ms: None,
        }
    }
}

/// The machine's available parallelism (1 if unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measurements of one kernel.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KernelResult {
    /// Kernel name.
    pub kernel: String,
    /// Median wall time of one run, ms (NaN when skipped).
    pub median_ms: f64,
    /// Fastest run, ms (NaN when skipped).
    pub min_ms: f64,
    /// Useful FLOPs, `4 · d · nnz`.
    pub flops_useful: u64,
    /// FLOPs the kernel executes, `4 · d · cells computed`.
    pub flops_executed: u64,
    /// Useful FLOPs per second of the median run, GFLOP/s.
    pub gflops_useful: f64,
    /// Our dense kernel's median time / this kernel's median time (None without a dense run).
    pub speedup_vs_dense: Option<f64>,
    /// Normwise relative error `max |O − ref| / max |ref|` against the f64 reference on the
    /// sampled rows (NaN when skipped).
    pub max_rel_err: f64,
    /// Why the kernel was not run, if it was not.
    pub skipped: Option<String>,
}

/// A whole benchmark run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Sequence length.
    pub n: usize,
    /// Head dimension.
    pub d: usize,
    /// Pattern name as on the command line, e.g. `sparse` (SPEC section 4).
    pub pattern: String,
    /// Pattern with its parameters, e.g. `sparse(k=64, w=32)`.
    pub label: String,
    /// Worker threads used.
    pub threads: usize,
    /// One entry per kernel, in the order asked.
    pub results: Vec<KernelResult>,
}

/// Progress events, for the GUI's progress bar.
#[derive(Clone, Debug)]
pub enum Progress {
    /// Kernel `index` of `total` starts.
    Started {
        /// The kernel.
        kernel: KernelKind,
        /// Its position, from 0.
        index: usize,
        /// Kernels in the run.
        total: usize,
    },
    /// A kernel is done.
    Finished(KernelResult),
}

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The cancel flag was set.
    #[error("the benchmark was cancelled")]
    Cancelled,
    /// The configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// The inputs do not fit the pattern.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The thread pool could not be built.
    #[error("could not start {threads} worker threads: {reason}")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// The pool builder's error.
        reason: String,
    },
}

/// Rows checked against the reference: up to [`ERROR_SAMPLE_ROWS`], evenly spread, including
/// the first and the last.
pub fn sample_rows(n: usize) -> Vec<usize> {
    if n <= ERROR_SAMPLE_ROWS {
        return (0..n).collect();
    }
    let mut rows: Vec<usize> = (0..ERROR_SAMPLE_ROWS)
        .map(|t| t * (n - 1) / (ERROR_SAMPLE_ROWS - 1))
        .collect();
    rows.dedup();
    rows
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    }
}

/// Benchmarks `cfg.kernels` on `p` with inputs `qkv`; stops with [`BenchError::Cancelled`] as
/// soon as `cancel` is seen set (between runs).
pub fn run_bench(
    p: &Pattern,
    qkv: &Qkv,
    cfg: &BenchConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<BenchReport, BenchError> {
    if cfg.repeats == 0 {
        return Err(BenchError::Config("repeats must be at least 1".to_string()));
    }
    if cfg.threads == 0 {
        return Err(BenchError::Config("threads must be at least 1".to_string()));
    }
    qkv.validate().map_err(KernelError::from)?;
    if qkv.n() != p.n() {
        return Err(KernelError::LengthMismatch {
            pattern_n: p.n(),
            input_n: qkv.n(),
        }
        .into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .thread_name(|i| format!("attnscope-bench-{i}"))
        .build()
        .map_err(|e| BenchError::Threads {
            threads: cfg.threads,
            reason: e.to_string(),
        })?;
    bench_in_pool(&pool, p, qkv, cfg, cancel, progress)
}

fn bench_in_pool(
    pool: &rayon::ThreadPool,
    p: &Pattern,
    qkv: &Qkv,
    cfg: &BenchConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<BenchReport, BenchError> {
    let (n, d) = qkv.q.dim();
    let scale = 1.0 / (d as f32).sqrt();
    let rows = sample_rows(n);
    let want_pattern = pool.install(|| reference_rows(Some(p), qkv, None, &rows));
    let mut want_dense: Option<Vec<Vec<f64>>> = None;
    let useful = flops_useful(p, d);
    let rate_flops_per_ms = match cfg.dense_budget_ms {
        Some(_) => Some(pool.install(|| calibrate(qkv, scale))?),
        None => None,
    };
    let total = cfg.kernels.len();
    let mut results: Vec<KernelResult> = Vec::with_capacity(total);
    for (index, &kind) in cfg.kernels.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(BenchError::Cancelled);
        }
        progress(Progress::Started {
            kernel: kind,
            index,
            total,
        });
        let k = kernel(kind, cfg.block);
        let mut result = KernelResult {
            kernel: kind.name().to_string(),
            median_ms: f64::NAN,
            min_ms: f64::NAN,
            flops_useful: useful,
            flops_executed: 0,
            gflops_useful: f64::NAN,
            speedup_vs_dense: None,
            max_rel_err: f64::NAN,
            skipped: None,
        };
        match k.executed_cells(p) {
            Err(e) => result.skipped = Some(e.to_string()),
            Ok(cells) => {
                result.flops_executed = 4 * d as u64 * cells;
                let estimate = rate_flops_per_ms.map(|r| result.flops_executed as f64 / r);
                match (estimate, cfg.dense_budget_ms) {
                    (Some(est), Some(budget)) if est > budget => {
                        result.skipped = Some(format!(
                            "estimated {est:.0} ms per run, over the budget of {budget:.0} ms"
                        ));
                    }
                    _ => {
                        let mut times = Vec::with_capacity(cfg.repeats);
                        let mut last = None;
                        for run in 0..cfg.warmup + cfg.repeats {
                            if cancel.load(Ordering::Relaxed) {
                                return Err(BenchError::Cancelled);
                            }
                            let t = Instant::now();
                            let out = pool.install(|| k.forward(p, qkv, scale));
                            let ms = t.elapsed().as_secs_f64() * 1e3;
                            let out = match out {
                                Ok(o) => o,
                                Err(e) => {
                                    result.skipped = Some(e.to_string());
                                    break;
                                }
                            };
                            if run >= cfg.warmup {
                                times.push(ms);
                            }
                            last = Some(out);
                        }
                        if let (Some(out), None) = (last, &result.skipped) {
                            let want = if kind == KernelKind::Dense {
                                want_dense.get_or_insert_with(|| {
                                    pool.install(|| reference_rows(None, qkv, None, &rows))
                                })
                            } else {
                                &want_pattern
                            };
                            result.max_rel_err = max_rel_err_rows(out.view(), &rows, want);
                            result.min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
                            result.median_ms = median(&mut times);
                            result.gflops_useful = useful as f64 / (result.median_ms * 1e6);
                        }
                    }
                }
            }
        }
        let dense_ms = results
            .iter()
            .chain(std::iter::once(&result))
            .find(|r| r.kernel == KernelKind::Dense.name() && r.median_ms.is_finite())
            .map(|r| r.median_ms);
        if let Some(dm) = dense_ms {
            if result.median_ms.is_finite() {
                result.speedup_vs_dense = Some(dm / result.median_ms);
            }
        }
        progress(Progress::Finished(result.clone()));
        results.push(result);
    }
    // A dense run listed after other kernels still gives them a speedup.
    if let Some(dm) = results
        .iter()
        .find(|r| r.kernel == KernelKind::Dense.name() && r.median_ms.is_finite())
        .map(|r| r.median_ms)
    {
        for r in &mut results {
            if r.median_ms.is_finite() {
                r.speedup_vs_dense = Some(dm / r.median_ms);
            }
        }
    }
    Ok(BenchReport {
        n,
        d,
        pattern: p.kind().name().to_string(),
        label: p.label(),
        threads: cfg.threads,
        results,
    })
}

/// Dense kernel rate in FLOPs per ms, measured on the first `min(n, 1024)` tokens.
fn calibrate(qkv: &Qkv, scale: f32) -> Result<f64, BenchError> {
    let m = qkv.n().min(1024);
    let d = qkv.d();
    let small = Qkv {
        q: qkv.q.slice(ndarray::s![..m, ..]).to_owned(),
        k: qkv.k.slice(ndarray::s![..m, ..]).to_owned(),
        v: qkv.v.slice(ndarray::s![..m, ..]).to_owned(),
    };
    let p = PatternParams::new(PatternKind::Dense, m)
        .build()
        .map_err(KernelError::from)?;
    let dense = kernel(KernelKind::Dense, DEFAULT_BLOCK);
    dense.forward(&p, &small, scale)?;
    let t = Instant::now();
    dense.forward(&p, &small, scale)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    Ok(4.0 * d as f64 * (m * m) as f64 / ms.max(1e-6))
}

/// A fixed-width table of a report, one kernel per line.
pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "pattern {}  n = {}  d = {}  threads = {}\n",
        r.label, r.n, r.d, r.threads
    );
    s.push_str(&format!(
        "{:<9} {:>11} {:>11} {:>10} {:>12} {:>9} {:>10}\n",
        "kernel", "median ms", "min ms", "GFLOP/s", "exec/useful", "speedup", "max rel err"
    ));
    for k in &r.results {
        if let Some(why) = &k.skipped {
            s.push_str(&format!("{:<9} skipped: {why}\n", k.kernel));
            continue;
        }
        let ratio = k.flops_executed as f64 / k.flops_useful.max(1) as f64;
        let speedup = k
            .speedup_vs_dense
            .map_or("–".to_string(), |x| format!("{x:.2}×"));
        s.push_str(&format!(
            "{:<9} {:>11.3} {:>11.3} {:>10.1} {:>12.2} {:>9} {:>10.1e}\n",
            k.kernel, k.median_ms, k.min_ms, k.gflops_useful, ratio, speedup, k.max_rel_err
        ));
    }
    s
}
