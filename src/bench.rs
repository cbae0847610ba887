//! The timing harness shared by the desktop app and `attnscope bench`.
//!
//! For each kernel: warm-up runs, then `repeats` timed runs on a rayon pool of the requested
//! thread count; median and minimum wall time, useful FLOPs (`4·d·nnz`, docs/contract.md §2) and executed
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
use web_time::Instant;

/// Query rows checked against the reference per kernel.
pub const ERROR_SAMPLE_ROWS: usize = 64;

/// Most timed runs per kernel.
pub const MAX_REPEATS: usize = 1000;

/// Most untimed warm-up runs per kernel.
pub const MAX_WARMUP: usize = 100;

/// Largest head dimension d the harness and `attnscope stats`/`bench` accept.
pub const MAX_D: usize = 4096;

/// Time a whole benchmark may take without an explicit budget, ms (10 minutes).
pub const DEFAULT_TOTAL_BUDGET_MS: f64 = 600_000.0;

/// A rate every machine this runs on beats, FLOPs per ms (1 GFLOP/s): work that would fit the
/// budget even at this rate needs no calibration.
const SLOWEST_RATE_FLOPS_PER_MS: f64 = 1e6;

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
    /// FLOPs the kernel executes as the contract counts them, `4 · d · cells` (n² for dense
    /// and masked, nnz for csr, visited blocks for block, docs/contract.md §2).
    pub flops_executed: u64,
    /// FLOPs of the score cells the kernel's inner loops computed, counted while it ran
    /// (padding of partial 16-key panels and 4-row groups included), `4 · d · cells`.
    pub flops_computed: u64,
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
    /// Pattern name as on the command line, e.g. `sparse` (docs/contract.md section 4).
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
    let mut run = BenchRun::new(p, qkv, cfg)?;
    loop {
        if let Some(report) = run.step(p, qkv, usize::MAX, cancel, progress)? {
            return Ok(report);
        }
    }
}

/// Where a benchmark's kernels run: a rayon pool of the requested size, or in a browser (no
/// threads can be started there) rayon's global pool, which runs on the calling thread.
enum Pool {
    Own(rayon::ThreadPool),
    Caller,
}

impl Pool {
    fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match self {
            Pool::Own(pool) => pool.install(op),
            Pool::Caller => op(),
        }
    }
}

/// A kernel being timed: its result so far, the times of its timed runs, the runs done and
/// the output of the last one.
struct Timing {
    index: usize,
    result: KernelResult,
    times: Vec<f64>,
    runs: usize,
    last: Option<ndarray::Array2<f32>>,
}

/// What a [`BenchRun`] does at its next step.
enum Stage {
    /// Reference rows of the pattern (the ones not computed yet).
    Reference,
    /// The dense kernel's rate, for the time budget: a warm-up run, then (with its problem)
    /// the timed run.
    Calibrate(Option<Box<(Pattern, Qkv)>>),
    /// Kernel `index` starts (or the report, past the last kernel).
    Kernel(usize),
    /// One warm-up or timed run of a kernel.
    Run(Timing),
    /// Reference rows of full attention, for the dense kernel's error.
    DenseReference(Timing, Vec<Vec<f64>>),
    /// The report has been returned.
    Done,
}

/// A [`run_bench`] run one piece at a time, for a caller that must pause between pieces of
/// work (the app in a browser runs a step or a few per slice between frames): a batch of
/// reference rows, the calibration, the start of a kernel (its estimate or why it is
/// skipped), one run of a kernel. The report is the one [`run_bench`] gives; every step
/// takes the pattern and inputs given to [`BenchRun::new`].
pub struct BenchRun {
    cfg: BenchConfig,
    pool: Pool,
    scale: f32,
    rows: Vec<usize>,
    useful: u64,
    want_pattern: Vec<Vec<f64>>,
    want_dense: Option<Vec<Vec<f64>>>,
    rate_flops_per_ms: Option<f64>,
    results: Vec<KernelResult>,
    stage: Stage,
}

impl BenchRun {
    /// Checks `cfg` and the inputs and starts the thread pool; no kernel runs yet.
    pub fn new(p: &Pattern, qkv: &Qkv, cfg: &BenchConfig) -> Result<Self, BenchError> {
        if cfg.repeats == 0 || cfg.repeats > MAX_REPEATS {
            return Err(BenchError::Config(format!(
                "repeats must be from 1 to {MAX_REPEATS}, got {}",
                cfg.repeats
            )));
        }
        if cfg.warmup > MAX_WARMUP {
            return Err(BenchError::Config(format!(
                "warm-up runs must be from 0 to {MAX_WARMUP}, got {}",
                cfg.warmup
            )));
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
        let pool = if cfg!(target_arch = "wasm32") {
            Pool::Caller
        } else {
            Pool::Own(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(cfg.threads)
                    .thread_name(|i| format!("attnscope-bench-{i}"))
                    .build()
                    .map_err(|e| BenchError::Threads {
                        threads: cfg.threads,
                        reason: e.to_string(),
                    })?,
            )
        };
        let (n, d) = qkv.q.dim();
        Ok(Self {
            cfg: cfg.clone(),
            pool,
            scale: 1.0 / (d as f32).sqrt(),
            rows: sample_rows(n),
            useful: flops_useful(p, d),
            want_pattern: Vec::new(),
            want_dense: None,
            rate_flops_per_ms: None,
            results: Vec::new(),
            stage: Stage::Reference,
        })
    }

    /// Kernels finished so far and kernels in all.
    pub fn kernels(&self) -> (usize, usize) {
        (self.results.len(), self.cfg.kernels.len())
    }

    /// Does the next piece of work: up to `rows` reference rows (in parallel), the
    /// calibration, a kernel's start or one of its runs. `Some(report)` once every kernel is
    /// done; [`BenchError::Cancelled`] when `cancel` is seen set.
    pub fn step(
        &mut self,
        p: &Pattern,
        qkv: &Qkv,
        rows: usize,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<BenchReport>, BenchError> {
        let d = qkv.d();
        let scale = self.scale;
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Reference => {
                let done = self.want_pattern.len();
                let end = done.saturating_add(rows.max(1)).min(self.rows.len());
                let part = &self.rows[done..end];
                let mut want = self
                    .pool
                    .install(|| reference_rows(Some(p), qkv, None, part));
                self.want_pattern.append(&mut want);
                self.stage = if end < self.rows.len() {
                    Stage::Reference
                } else if self.cfg.dense_budget_ms.is_some() {
                    Stage::Calibrate(None)
                } else {
                    Stage::Kernel(0)
                };
            }
            Stage::Calibrate(None) => {
                let problem = self.pool.install(|| calibration_warm_up(qkv, scale))?;
                self.stage = Stage::Calibrate(Some(Box::new(problem)));
            }
            Stage::Calibrate(Some(problem)) => {
                let (dense, small) = *problem;
                let rate = self
                    .pool
                    .install(|| calibration_rate(&dense, &small, scale))?;
                self.rate_flops_per_ms = Some(rate);
                self.stage = Stage::Kernel(0);
            }
            Stage::Kernel(index) => {
                let Some(&kind) = self.cfg.kernels.get(index) else {
                    return Ok(Some(self.report(p, qkv)));
                };
                if cancel.load(Ordering::Relaxed) {
                    return Err(BenchError::Cancelled);
                }
                progress(Progress::Started {
                    kernel: kind,
                    index,
                    total: self.cfg.kernels.len(),
                });
                let mut result = KernelResult {
                    kernel: kind.name().to_string(),
                    median_ms: f64::NAN,
                    min_ms: f64::NAN,
                    flops_useful: self.useful,
                    flops_executed: 0,
                    flops_computed: 0,
                    gflops_useful: f64::NAN,
                    speedup_vs_dense: None,
                    max_rel_err: f64::NAN,
                    skipped: None,
                };
                let k = kernel(kind, self.cfg.block);
                match k.executed_cells(p) {
                    Err(e) => result.skipped = Some(e.to_string()),
                    Ok(cells) => {
                        result.flops_executed = 4 * d as u64 * cells;
                        let estimate = self
                            .rate_flops_per_ms
                            .map(|r| result.flops_executed as f64 / r);
                        match (estimate, self.cfg.dense_budget_ms) {
                            (Some(est), Some(budget)) if est > budget => {
                                // Not run, so not counted: the kernel's exact prediction (a run
                                // counts its own below, without building a block layout twice).
                                result.flops_computed =
                                    4 * d as u64 * k.computed_cells(p).unwrap_or(0);
                                result.skipped = Some(format!(
                                    "estimated {} per run, over the budget of {}",
                                    duration_text(est),
                                    duration_text(budget)
                                ));
                            }
                            _ => {
                                crate::kernel::check_memory(kind, qkv.n(), d)?;
                                self.stage = Stage::Run(Timing {
                                    index,
                                    result,
                                    times: Vec::with_capacity(self.cfg.repeats),
                                    runs: 0,
                                    last: None,
                                });
                                return Ok(None);
                            }
                        }
                    }
                }
                self.finish_kernel(result, progress);
                self.stage = Stage::Kernel(index + 1);
            }
            Stage::Run(mut t) => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(BenchError::Cancelled);
                }
                let kind = self.cfg.kernels[t.index];
                let k = kernel(kind, self.cfg.block);
                // The previous run's output is only kept for the check after the last run:
                // dropped first, the peak memory holds one output, not two.
                t.last = None;
                let start = Instant::now();
                let out = self.pool.install(|| k.forward_counted(p, qkv, scale));
                let ms = start.elapsed().as_secs_f64() * 1e3;
                match out {
                    Ok((o, counted)) => {
                        t.result.flops_computed = 4 * d as u64 * counted;
                        if t.runs >= self.cfg.warmup {
                            t.times.push(ms);
                        }
                        t.runs += 1;
                        t.last = Some(o);
                        if t.runs < self.cfg.warmup + self.cfg.repeats {
                            self.stage = Stage::Run(t);
                        } else if kind == KernelKind::Dense && self.want_dense.is_none() {
                            self.stage = Stage::DenseReference(t, Vec::new());
                        } else {
                            self.check(t, progress);
                        }
                    }
                    Err(e) => {
                        t.result.skipped = Some(e.to_string());
                        self.finish_kernel(t.result, progress);
                        self.stage = Stage::Kernel(t.index + 1);
                    }
                }
            }
            Stage::DenseReference(t, mut want) => {
                let done = want.len();
                let end = done.saturating_add(rows.max(1)).min(self.rows.len());
                let part = &self.rows[done..end];
                want.append(&mut self.pool.install(|| reference_rows(None, qkv, None, part)));
                if end < self.rows.len() {
                    self.stage = Stage::DenseReference(t, want);
                } else {
                    self.want_dense = Some(want);
                    self.check(t, progress);
                }
            }
            Stage::Done => {}
        }
        Ok(None)
    }

    /// The error, times and rate of a kernel whose runs are done; then the next kernel.
    fn check(&mut self, mut t: Timing, progress: &mut dyn FnMut(Progress)) {
        if let Some(out) = &t.last {
            let want = if self.cfg.kernels[t.index] == KernelKind::Dense {
                self.want_dense.as_deref().unwrap_or(&[])
            } else {
                &self.want_pattern
            };
            let r = &mut t.result;
            r.max_rel_err = max_rel_err_rows(out.view(), &self.rows, want);
            r.min_ms = t.times.iter().copied().fold(f64::INFINITY, f64::min);
            r.median_ms = median(&mut t.times);
            r.gflops_useful = self.useful as f64 / (r.median_ms * 1e6);
        }
        self.finish_kernel(t.result, progress);
        self.stage = Stage::Kernel(t.index + 1);
    }

    /// Adds a kernel's result (with its speedup over a dense run so far) and reports it.
    fn finish_kernel(&mut self, mut result: KernelResult, progress: &mut dyn FnMut(Progress)) {
        let dense_ms = self
            .results
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
        self.results.push(result);
    }

    /// The report, once every kernel is done.
    fn report(&mut self, p: &Pattern, qkv: &Qkv) -> BenchReport {
        let mut results = std::mem::take(&mut self.results);
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
        let (n, d) = qkv.q.dim();
        BenchReport {
            n,
            d,
            pattern: p.name(),
            label: p.label(),
            threads: self.cfg.threads,
            results,
        }
    }
}

/// Dense kernel rate in FLOPs per ms, measured on the first `min(n, 1024)` tokens.
/// Tokens of the dense problem [`calibrate`] times: smaller in a browser (one thread, and each
/// of its two runs is one step of a [`BenchRun`] that must not hold the page long).
const CALIBRATION_N: usize = if cfg!(target_arch = "wasm32") {
    256
} else {
    1024
};

fn calibrate(qkv: &Qkv, scale: f32) -> Result<f64, BenchError> {
    let (p, small) = calibration_warm_up(qkv, scale)?;
    calibration_rate(&p, &small, scale)
}

/// The dense problem [`calibrate`] times (the first `min(n, CALIBRATION_N)` tokens), after
/// one untimed run of it.
fn calibration_warm_up(qkv: &Qkv, scale: f32) -> Result<(Pattern, Qkv), BenchError> {
    let m = qkv.n().min(CALIBRATION_N);
    let small = Qkv {
        q: qkv.q.slice(ndarray::s![..m, ..]).to_owned(),
        k: qkv.k.slice(ndarray::s![..m, ..]).to_owned(),
        v: qkv.v.slice(ndarray::s![..m, ..]).to_owned(),
    };
    let p = PatternParams::new(PatternKind::Dense, m)
        .build()
        .map_err(KernelError::from)?;
    kernel(KernelKind::Dense, DEFAULT_BLOCK).forward(&p, &small, scale)?;
    Ok((p, small))
}

/// The dense kernel's rate on the problem of [`calibration_warm_up`], FLOPs per ms, from one
/// timed run.
fn calibration_rate(p: &Pattern, small: &Qkv, scale: f32) -> Result<f64, BenchError> {
    let (m, d) = small.q.dim();
    let t = Instant::now();
    kernel(KernelKind::Dense, DEFAULT_BLOCK).forward(p, small, scale)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    Ok(4.0 * d as f64 * (m * m) as f64 / ms.max(1e-6))
}

/// A duration for people: `0.000001 ms`, `12.5 ms`, `4.2 s`, `26 min`, `2.6 h`.
pub fn duration_text(ms: f64) -> String {
    if !ms.is_finite() {
        return format!("{ms} ms");
    }
    if ms >= 3_600_000.0 {
        format!("{:.1} h", ms / 3_600_000.0)
    } else if ms >= 60_000.0 {
        format!("{:.1} min", ms / 60_000.0)
    } else if ms >= 1_000.0 {
        format!("{:.1} s", ms / 1_000.0)
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        // Two significant digits, so a tiny budget never reads as 0 ms.
        let digits = (-ms.log10()).ceil().clamp(0.0, 19.0) as usize + 1;
        let text = format!("{ms:.digits$}");
        format!("{} ms", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// How long a benchmark of `cfg` on `p` at head dimension `d` would take, from the dense
/// kernel's rate on this machine: each kernel's executed FLOPs at that rate, times its runs
/// (warm-up and timed). `None` when even at 1 GFLOP/s the whole run stays within `budget_ms`
/// (no calibration is needed then). The calibration takes one dense pass over 1024 tokens.
pub fn estimate(
    p: &Pattern,
    d: usize,
    cfg: &BenchConfig,
    budget_ms: f64,
) -> Result<Option<BenchEstimate>, BenchError> {
    let runs = (cfg.warmup + cfg.repeats) as f64;
    let cells: Vec<(KernelKind, u64)> = cfg
        .kernels
        .iter()
        .filter_map(|&kind| Some((kind, kernel(kind, cfg.block).executed_cells(p).ok()?)))
        .collect();
    let flops = |c: u64| 4.0 * d as f64 * c as f64;
    let worst: f64 = cells.iter().map(|&(_, c)| flops(c) * runs).sum();
    if worst / SLOWEST_RATE_FLOPS_PER_MS <= budget_ms {
        return Ok(None);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .thread_name(|i| format!("attnscope-calibrate-{i}"))
        .build()
        .map_err(|e| BenchError::Threads {
            threads: cfg.threads,
            reason: e.to_string(),
        })?;
    let m = p.n().min(1024);
    let sample = crate::inputs::generate(crate::inputs::InputKind::Random { seed: 0 }, m, d);
    let rate = pool.install(|| calibrate(&sample, 1.0 / (d as f32).sqrt()))?;
    let per_run: Vec<(KernelKind, f64)> = cells
        .into_iter()
        .map(|(kind, c)| (kind, flops(c) / rate))
        .collect();
    Ok(Some(BenchEstimate {
        total_ms: per_run.iter().map(|&(_, ms)| ms * runs).sum(),
        runs: cfg.warmup + cfg.repeats,
        per_run_ms: per_run,
    }))
}

/// The estimated time of a benchmark (see [`estimate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BenchEstimate {
    /// Estimated ms of one run of each kernel that can run the pattern.
    pub per_run_ms: Vec<(KernelKind, f64)>,
    /// Runs per kernel (warm-up and timed).
    pub runs: usize,
    /// Estimated ms of the whole benchmark.
    pub total_ms: f64,
}

impl BenchEstimate {
    /// The slowest kernel and its estimated ms per run.
    pub fn slowest(&self) -> Option<(KernelKind, f64)> {
        self.per_run_ms
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// A fixed-width table of a report, one kernel per line.
pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "pattern {}  n = {}  d = {}  threads = {}\n",
        r.label, r.n, r.d, r.threads
    );
    s.push_str(&format!(
        "{:<9} {:>11} {:>11} {:>10} {:>12} {:>12} {:>9} {:>10}\n",
        "kernel",
        "median ms",
        "min ms",
        "GFLOP/s",
        "exec/useful",
        "comp/useful",
        "speedup",
        "max rel err"
    ));
    for k in &r.results {
        if let Some(why) = &k.skipped {
            s.push_str(&format!("{:<9} skipped: {why}\n", k.kernel));
            continue;
        }
        let ratio = k.flops_executed as f64 / k.flops_useful.max(1) as f64;
        let computed = k.flops_computed as f64 / k.flops_useful.max(1) as f64;
        let speedup = k
            .speedup_vs_dense
            .map_or("–".to_string(), |x| format!("{x:.2}×"));
        s.push_str(&format!(
            "{:<9} {:>11.3} {:>11.3} {:>10.1} {:>12.2} {:>12.2} {:>9} {:>10.1e}\n",
            k.kernel,
            k.median_ms,
            k.min_ms,
            k.gflops_useful,
            ratio,
            computed,
            speedup,
            k.max_rel_err
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_right_at_every_size() {
        assert_eq!(duration_text(0.000001), "0.000001 ms");
        assert_eq!(duration_text(0.5), "0.5 ms");
        assert_eq!(duration_text(0.0), "0 ms");
        assert_eq!(duration_text(12.34), "12.3 ms");
        assert_eq!(duration_text(4_200.0), "4.2 s");
        assert_eq!(duration_text(1_560_000.0), "26.0 min");
        assert_eq!(duration_text(9_360_000.0), "2.6 h");
    }

    #[test]
    fn a_bench_run_step_by_step_equals_run_bench() {
        let p = PatternParams::new(PatternKind::Sparse, 300)
            .stride(17)
            .window(5)
            .build()
            .unwrap();
        let qkv = crate::inputs::generate(crate::inputs::InputKind::Random { seed: 3 }, 300, 16);
        let cfg = BenchConfig {
            repeats: 2,
            threads: 1,
            ..Default::default()
        };
        let never = AtomicBool::new(false);
        let name = |e: &Progress| match e {
            Progress::Started { kernel, index, .. } => format!("start {} {index}", kernel.name()),
            Progress::Finished(r) => format!("done {}", r.kernel),
        };
        let mut whole_events = Vec::new();
        let whole =
            run_bench(&p, &qkv, &cfg, &never, &mut |e| whole_events.push(name(&e))).unwrap();
        let mut run = BenchRun::new(&p, &qkv, &cfg).unwrap();
        let mut events = Vec::new();
        let mut steps = 0;
        let stepped = loop {
            steps += 1;
            if let Some(r) = run
                .step(&p, &qkv, 5, &never, &mut |e| events.push(name(&e)))
                .unwrap()
            {
                break r;
            }
        };
        // 64 reference rows 5 at a time, per kernel a start and 1 + 2 runs, the dense
        // reference 5 rows at a time, the report.
        assert_eq!(steps, 13 + 5 * 4 + 13 + 1);
        assert_eq!(events, whole_events);
        assert_eq!(stepped.results.len(), KernelKind::ALL.len());
        for (a, b) in whole.results.iter().zip(&stepped.results) {
            assert_eq!(
                (&a.kernel, a.flops_useful, a.flops_executed, &a.skipped),
                (&b.kernel, b.flops_useful, b.flops_executed, &b.skipped)
            );
            assert_eq!(a.flops_computed, b.flops_computed, "{}", a.kernel);
            assert_eq!(
                a.max_rel_err.to_bits(),
                b.max_rel_err.to_bits(),
                "{}",
                a.kernel
            );
            assert!(b.median_ms.is_finite() && b.max_rel_err < 1e-4);
        }
        assert!(stepped.results[1].speedup_vs_dense.is_some());
    }

    #[test]
    fn repeats_and_warmup_are_bounded_in_the_library() {
        let p = PatternParams::new(PatternKind::Local, 32)
            .window(1)
            .build()
            .unwrap();
        let qkv = crate::inputs::generate(crate::inputs::InputKind::Random { seed: 0 }, 32, 8);
        let never = AtomicBool::new(false);
        for (repeats, warmup) in [(MAX_REPEATS + 1, 0), (usize::MAX, 0), (1, MAX_WARMUP + 1)] {
            let cfg = BenchConfig {
                kernels: vec![KernelKind::Csr],
                repeats,
                warmup,
                threads: 1,
                ..Default::default()
            };
            let e = run_bench(&p, &qkv, &cfg, &never, &mut |_| {}).unwrap_err();
            assert!(matches!(e, BenchError::Config(_)), "{e}");
        }
    }
}
