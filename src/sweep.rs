//! Scaling sweep: the kernels of [`crate::bench`] over a range of sequence lengths.
//!
//! For each `n` the pattern is rebuilt at that length — with the stride and window as given
//! ([`Scaling::Fixed`]: work O(n·(w + n/k))) or with the Sparse Transformer's
//! k = w = ⌈√n⌉ ([`Scaling::SqrtN`]: work O(n√n)) — fresh seeded inputs are generated and
//! [`crate::bench::run_bench`] times every kernel ([`SweepRun`] does it step by step). The
//! same code feeds the app's sweep view and `attnscope bench --sweep 256..65536`; results
//! export as CSV.

use crate::bench::{BenchConfig, BenchError, BenchReport, BenchRun, Progress};
use crate::inputs::{try_generate, InputKind, Qkv};
use crate::kernel::KernelError;
use crate::pattern::{Pattern, PatternError, PatternParams, MAX_N};
use crate::presets::sqrt_stride;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// How the pattern's stride and window follow `n` during a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scaling {
    /// Stride and window stay as given.
    Fixed,
    /// Stride = window = ⌈√n⌉ at every n (Sparse Transformer).
    SqrtN,
}

/// What a sweep runs.
#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// Sequence lengths, in order.
    pub sizes: Vec<usize>,
    /// The pattern; its `n` is replaced by each size.
    pub params: PatternParams,
    /// How stride and window follow n.
    pub scaling: Scaling,
    /// Head dimension d.
    pub d: usize,
    /// Sample inputs generated at each n.
    pub input: InputKind,
    /// Kernels, repeats, threads, block size, dense time budget.
    pub bench: BenchConfig,
}

/// Progress of a sweep, for a progress bar.
#[derive(Clone, Debug)]
pub enum SweepProgress {
    /// Size `index` of `total` (length `n`) starts.
    Size {
        /// Position of this size, from 0.
        index: usize,
        /// Sizes in the sweep.
        total: usize,
        /// The sequence length.
        n: usize,
    },
    /// A benchmark event at size `index`.
    Kernel {
        /// Position of the current size, from 0.
        index: usize,
        /// Sizes in the sweep.
        total: usize,
        /// Kernels finished at this size.
        finished: usize,
        /// Kernels per size.
        kernels: usize,
        /// The event.
        event: Progress,
    },
    /// Size `index` is done.
    Done {
        /// Position of this size, from 0.
        index: usize,
        /// Sizes in the sweep.
        total: usize,
        /// Its results.
        report: BenchReport,
    },
}

impl SweepProgress {
    /// Fraction of the sweep done, in [0, 1], counting kernels within the current size.
    pub fn fraction(&self) -> f32 {
        match self {
            SweepProgress::Size { index, total, .. } => *index as f32 / (*total).max(1) as f32,
            SweepProgress::Kernel {
                index,
                total,
                finished,
                kernels,
                ..
            } => {
                let within = (*finished).min(*kernels) as f32 / (*kernels).max(1) as f32;
                (*index as f32 + within) / (*total).max(1) as f32
            }
            SweepProgress::Done { index, total, .. } => {
                (*index + 1) as f32 / (*total).max(1) as f32
            }
        }
    }
}

/// The results: one benchmark report per size, in order.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SweepReport {
    /// One report per completed size.
    pub points: Vec<BenchReport>,
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The pattern is invalid at some size.
    #[error("at n = {n}: {source}")]
    Pattern {
        /// The size.
        n: usize,
        /// The pattern's error.
        source: PatternError,
    },
    /// The benchmark failed at some size.
    #[error("at n = {n}: {source}")]
    Bench {
        /// The size.
        n: usize,
        /// The benchmark's error.
        source: BenchError,
    },
    /// The cancel flag was set; the sizes finished so far are kept.
    #[error("the sweep was cancelled after {} size(s)", .0.points.len())]
    Cancelled(SweepReport),
}

/// Parses `A..B` (powers-of-two steps A, 2A, 4A, … ≤ B) or a comma list `A,B,C`.
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, String> {
    let bad = || {
        format!("--sweep {s:?} is not a size range: expected A..B (e.g. 256..65536, doubling from A up to B) or a list A,B,C, with sizes from 1 to {MAX_N}")
    };
    let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
    let sizes: Vec<usize> = if let Some((a, b)) = s.split_once("..") {
        let (a, b) = (num(a)?, num(b)?);
        if a == 0 || a > b {
            return Err(bad());
        }
        std::iter::successors(Some(a), |&x| x.checked_mul(2))
            .take_while(|&x| x <= b)
            .collect()
    } else {
        s.split(',').map(num).collect::<Result<_, _>>()?
    };
    if sizes.is_empty() || sizes.iter().any(|&n| n == 0 || n > MAX_N) {
        return Err(bad());
    }
    Ok(sizes)
}

/// The pattern parameters used at length `n`.
pub fn params_at(params: &PatternParams, scaling: Scaling, n: usize) -> PatternParams {
    let mut p = params.clone();
    p.n = n;
    if scaling == Scaling::SqrtN {
        let k = sqrt_stride(n);
        p.stride = Some(k);
        p.window = Some(k);
    }
    p
}

/// Runs the sweep; `cancel` stops it between kernel runs and returns the sizes completed so far
/// in [`SweepError::Cancelled`].
pub fn run_sweep(
    cfg: &SweepConfig,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(SweepProgress),
) -> Result<SweepReport, SweepError> {
    let mut run = SweepRun::new(cfg.clone());
    loop {
        if let Some(report) = run.step(usize::MAX, cancel, progress)? {
            return Ok(report);
        }
    }
}

/// The size being benchmarked: its length, pattern, inputs, benchmark and kernels finished.
struct AtSize {
    n: usize,
    pattern: Pattern,
    qkv: Qkv,
    bench: BenchRun,
    finished: usize,
}

/// A [`run_sweep`] run one piece at a time, for a caller that must pause between pieces of
/// work (the app in a browser): the set-up of a size (its pattern and inputs), then the
/// steps of its benchmark ([`BenchRun::step`]). The report is the one [`run_sweep`] gives.
pub struct SweepRun {
    cfg: SweepConfig,
    report: SweepReport,
    index: usize,
    at: Option<AtSize>,
}

impl SweepRun {
    /// A sweep of `cfg` that has not started.
    pub fn new(cfg: SweepConfig) -> Self {
        Self {
            cfg,
            report: SweepReport::default(),
            index: 0,
            at: None,
        }
    }

    /// Does the next piece of work (`rows` reference rows at most per benchmark step).
    /// `Some(report)` once every size is done; [`SweepError::Cancelled`] with the sizes
    /// finished so far when `cancel` is seen set.
    pub fn step(
        &mut self,
        rows: usize,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(SweepProgress),
    ) -> Result<Option<SweepReport>, SweepError> {
        let total = self.cfg.sizes.len();
        let index = self.index;
        let Some(at) = &mut self.at else {
            let Some(&n) = self.cfg.sizes.get(index) else {
                return Ok(Some(std::mem::take(&mut self.report)));
            };
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(SweepError::Cancelled(std::mem::take(&mut self.report)));
            }
            progress(SweepProgress::Size { index, total, n });
            let pattern = params_at(&self.cfg.params, self.cfg.scaling, n)
                .build()
                .map_err(|source| SweepError::Pattern { n, source })?;
            let qkv =
                try_generate(self.cfg.input, n, self.cfg.d).map_err(|e| SweepError::Bench {
                    n,
                    source: BenchError::Kernel(KernelError::OutOfMemory(e)),
                })?;
            let bench = BenchRun::new(&pattern, &qkv, &self.cfg.bench)
                .map_err(|source| SweepError::Bench { n, source })?;
            self.at = Some(AtSize {
                n,
                pattern,
                qkv,
                bench,
                finished: 0,
            });
            return Ok(None);
        };
        let kernels = self.cfg.bench.kernels.len();
        let finished = &mut at.finished;
        let r = at
            .bench
            .step(&at.pattern, &at.qkv, rows, cancel, &mut |event| {
                if matches!(event, Progress::Finished(_)) {
                    *finished += 1;
                }
                progress(SweepProgress::Kernel {
                    index,
                    total,
                    finished: *finished,
                    kernels,
                    event,
                })
            });
        let n = at.n;
        match r {
            Ok(None) => Ok(None),
            Ok(Some(r)) => {
                progress(SweepProgress::Done {
                    index,
                    total,
                    report: r.clone(),
                });
                self.report.points.push(r);
                self.index += 1;
                self.at = None;
                Ok(None)
            }
            Err(BenchError::Cancelled) => {
                Err(SweepError::Cancelled(std::mem::take(&mut self.report)))
            }
            Err(source) => Err(SweepError::Bench { n, source }),
        }
    }
}

/// The CSV header of [`csv`].
pub const CSV_HEADER: &str = "n,d,pattern,threads,kernel,median_ms,min_ms,flops_useful,flops_executed,gflops_useful,speedup_vs_dense,max_rel_err,skipped";

/// One line per (size, kernel); empty fields for values a skipped kernel has not.
pub fn csv(report: &SweepReport) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x}")
        } else {
            String::new()
        }
    };
    for b in &report.points {
        for r in &b.results {
            let fields = [
                b.n.to_string(),
                b.d.to_string(),
                quote(&b.label),
                b.threads.to_string(),
                quote(&r.kernel),
                num(r.median_ms),
                num(r.min_ms),
                r.flops_useful.to_string(),
                r.flops_executed.to_string(),
                num(r.gflops_useful),
                r.speedup_vs_dense.map_or(String::new(), num),
                num(r.max_rel_err),
                r.skipped.as_deref().map_or(String::new(), quote),
            ];
            s += &fields.join(",");
            s.push('\n');
        }
    }
    s
}

/// Quotes a CSV field when it holds a comma, a quote or a line break.
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes [`csv`] to `path` atomically (no partial file on failure).
pub fn write_csv(report: &SweepReport, path: &Path) -> Result<(), crate::export::ExportError> {
    let text = csv(report);
    crate::export::atomic_write(path, |w| w.write_all(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelKind;
    use crate::pattern::PatternKind;
    use std::sync::atomic::Ordering;

    fn cfg(sizes: Vec<usize>, scaling: Scaling) -> SweepConfig {
        SweepConfig {
            sizes,
            params: PatternParams::new(PatternKind::Sparse, 1)
                .stride(8)
                .window(4),
            scaling,
            d: 16,
            input: InputKind::Random { seed: 1 },
            bench: BenchConfig {
                kernels: vec![KernelKind::Dense, KernelKind::Csr],
                repeats: 1,
                warmup: 0,
                threads: 1,
                ..BenchConfig::default()
            },
        }
    }

    /// The report without its times (which differ from run to run).
    fn untimed(r: &SweepReport) -> Vec<(usize, String, u64, u64, String, Option<String>)> {
        r.points
            .iter()
            .flat_map(|b| {
                b.results.iter().map(move |k| {
                    (
                        b.n,
                        k.kernel.clone(),
                        k.flops_useful,
                        k.flops_executed,
                        format!("{:e}", k.max_rel_err),
                        k.skipped.clone(),
                    )
                })
            })
            .collect()
    }

    #[test]
    fn a_sweep_run_step_by_step_equals_run_sweep() {
        let mut c = cfg(vec![100, 200], Scaling::SqrtN);
        c.bench.repeats = 2;
        c.bench.warmup = 1;
        let never = AtomicBool::new(false);
        let mut whole_events = Vec::new();
        let whole = run_sweep(&c, &never, &mut |e| whole_events.push(e.fraction())).unwrap();
        let mut run = SweepRun::new(c);
        let mut events = Vec::new();
        let mut steps = 0;
        let sliced = loop {
            steps += 1;
            match run.step(1, &never, &mut |e| events.push(e.fraction())) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => panic!("{e}"),
            }
        };
        // Per size: set-up, 64 reference rows one at a time (sample rows of n = 100 and 200),
        // per kernel a start and three runs, 64 dense reference rows for the dense kernel.
        assert!(steps > 2 * (64 + 2 * 4 + 64), "{steps} steps");
        assert_eq!(events, whole_events);
        assert_eq!(untimed(&sliced), untimed(&whole));
        assert!(sliced.points[1].results[0].median_ms.is_finite());
    }

    #[test]
    fn a_sweep_run_cancelled_between_steps_keeps_the_finished_sizes() {
        let c = cfg(vec![32, 64, 128], Scaling::Fixed);
        let cancel = AtomicBool::new(false);
        let mut run = SweepRun::new(c);
        // Step until the first size is done.
        let mut first_done = false;
        while !first_done {
            let out = run.step(1, &cancel, &mut |e| {
                first_done |= matches!(e, SweepProgress::Done { .. });
            });
            assert!(matches!(out, Ok(None)));
        }
        run.step(1, &cancel, &mut |_| {}).unwrap();
        cancel.store(true, Ordering::Relaxed);
        let mut outcome = run.step(1, &cancel, &mut |_| {});
        while let Ok(None) = outcome {
            outcome = run.step(1, &cancel, &mut |_| {});
        }
        match outcome {
            Err(SweepError::Cancelled(r)) => assert_eq!(r.points.len(), 1),
            other => panic!("expected a cancelled sweep, got {other:?}"),
        }
    }

    #[test]
    fn sizes_parse_as_doubling_ranges_or_lists() {
        assert_eq!(
            parse_sizes("256..65536").unwrap(),
            vec![256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]
        );
        assert_eq!(parse_sizes("100..500").unwrap(), vec![100, 200, 400]);
        assert_eq!(parse_sizes("64,100, 3").unwrap(), vec![64, 100, 3]);
        for bad in [
            "",
            "0..8",
            "9..8",
            "a..b",
            "1,,2",
            "1..",
            "0",
            "1..99999999999",
        ] {
            let e = parse_sizes(bad).unwrap_err();
            assert!(e.starts_with("--sweep"), "{bad}: {e}");
        }
    }

    #[test]
    fn sqrt_scaling_sets_stride_and_window() {
        let base = PatternParams::new(PatternKind::Sparse, 1)
            .stride(3)
            .window(2);
        let p = params_at(&base, Scaling::SqrtN, 1000);
        assert_eq!((p.n, p.stride, p.window), (1000, Some(32), Some(32)));
        let p = params_at(&base, Scaling::Fixed, 1000);
        assert_eq!((p.n, p.stride, p.window), (1000, Some(3), Some(2)));
    }

    #[test]
    fn sweep_runs_every_size_and_kernel_and_exports_csv() {
        let c = cfg(vec![32, 64, 128], Scaling::Fixed);
        let mut events = Vec::new();
        let r = run_sweep(&c, &AtomicBool::new(false), &mut |e| {
            events.push(e.fraction())
        })
        .unwrap();
        assert_eq!(r.points.len(), 3);
        assert!(events.windows(2).all(|w| w[0] <= w[1]), "{events:?}");
        assert_eq!(events.last(), Some(&1.0));
        for (pt, n) in r.points.iter().zip([32u64, 64, 128]) {
            assert_eq!(pt.n as u64, n);
            let p = params_at(&c.params, c.scaling, n as usize).build().unwrap();
            assert_eq!(pt.results[0].flops_executed, 4 * 16 * n * n);
            assert_eq!(pt.results[1].flops_useful, 4 * 16 * p.nnz());
            assert!(pt.results[1].max_rel_err < 1e-4);
        }
        let text = csv(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 1 + 3 * 2);
        // The pattern label holds commas, so it is quoted; 13 fields remain.
        assert!(
            lines[1].starts_with("32,16,\"sparse(k=8, w=4)\",1,dense,"),
            "{}",
            lines[1]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.csv");
        write_csv(&r, &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn cancel_keeps_the_finished_sizes() {
        let c = cfg(vec![32, 64, 128], Scaling::SqrtN);
        let cancel = AtomicBool::new(false);
        let e = run_sweep(&c, &cancel, &mut |e| {
            if let SweepProgress::Done { report, .. } = e {
                if report.n == 64 {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        })
        .unwrap_err();
        match e {
            SweepError::Cancelled(r) => {
                let ns: Vec<usize> = r.points.iter().map(|p| p.n).collect();
                assert_eq!(ns, vec![32, 64]);
                assert_eq!(r.points[1].label, "sparse(k=8, w=8)");
            }
            other => panic!("expected cancel, got {other}"),
        }
    }

    #[test]
    fn csv_quotes_fields_and_leaves_missing_values_empty() {
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("plain"), "plain");
        let r = SweepReport {
            points: vec![BenchReport {
                n: 8,
                d: 4,
                pattern: "dense".into(),
                label: "dense".into(),
                threads: 2,
                results: vec![crate::bench::KernelResult {
                    kernel: "dense".into(),
                    median_ms: f64::NAN,
                    min_ms: f64::NAN,
                    flops_useful: 1024,
                    flops_executed: 1024,
                    flops_computed: 1024,
                    gflops_useful: f64::NAN,
                    speedup_vs_dense: None,
                    max_rel_err: f64::NAN,
                    skipped: Some("too slow, estimated 9 s".into()),
                }],
            }],
        };
        assert_eq!(
            csv(&r).lines().nth(1).unwrap(),
            "8,4,dense,2,dense,,,1024,1024,,,,\"too slow, estimated 9 s\""
        );
    }
}
