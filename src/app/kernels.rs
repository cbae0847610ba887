//! The Kernels view: every attention kernel run on the sample input by
//! [`crate::bench::BenchRun`] step by step on the `attnscope-bench` worker, re-run (debounced)
//! whenever the settings change, cancelled by newer settings. Charts: useful vs executed FLOPs
//! per kernel and median time; a table with GFLOP/s, speedup vs dense next to the FLOP ratio,
//! and max error.

use super::worker::Worker;
use super::{InputSpec, Shared, View};
use crate::bench::{BenchConfig, BenchError, BenchRun, KernelResult, Progress};
use crate::kernel::KernelKind;
use crate::pattern::PatternParams;
use crate::stats::group;
use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Plot};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use web_time::Instant;

/// Settings must be still this long before a benchmark starts.
pub const DEBOUNCE: Duration = Duration::from_millis(400);

/// Kernels estimated to take longer than this per run are skipped (with the reason shown).
pub const BUDGET_MS: f64 = super::platform::KERNEL_RUN_BUDGET_MS;

/// One benchmark request.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchJob {
    params: PatternParams,
    input: InputSpec,
    block: usize,
    threads: usize,
}

enum Event {
    Started {
        kernel: KernelKind,
        index: usize,
        total: usize,
    },
    Finished(KernelResult),
    Done(Result<crate::bench::BenchReport, String>),
}

/// State of the Kernels view.
#[derive(Default)]
pub struct KernelsView {
    worker: Option<Worker<(BenchJob, mpsc::Sender<Event>), ()>>,
    events: Option<mpsc::Receiver<Event>>,
    /// The job shown (running or finished).
    job: Option<BenchJob>,
    /// The settings seen last and since when they have not changed.
    pending: Option<(BenchJob, Instant)>,
    results: Vec<KernelResult>,
    running: Option<(String, usize, usize)>,
    done: bool,
    error: Option<String>,
    label: String,
}

/// Reference rows computed per step of a sliced benchmark (each step a few milliseconds at
/// n = 4096 in a browser).
const ROWS_PER_STEP: usize = 8;

/// Runs every kernel on the sample input step by step ([`crate::bench::BenchRun`]), with a
/// checkpoint after each step: a run of a kernel, a batch of reference rows.
async fn run_job(
    job: BenchJob,
    tx: mpsc::Sender<Event>,
    ctl: &super::worker::Job,
    cache: &Mutex<super::InputCache>,
) {
    let p = match job.params.build() {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Event::Done(Err(e.to_string())));
            return;
        }
    };
    let qkv = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&job.input);
    if ctl.cancelled() {
        return;
    }
    ctl.checkpoint().await;
    let cfg = BenchConfig {
        kernels: KernelKind::ALL.to_vec(),
        repeats: 3,
        warmup: 1,
        threads: job.threads,
        block: job.block,
        dense_budget_ms: Some(BUDGET_MS),
    };
    let mut progress = |e: Progress| {
        let _ = tx.send(match e {
            Progress::Started {
                kernel,
                index,
                total,
            } => {
                ctl.set_progress((index * 1000 / total.max(1)) as u32);
                Event::Started {
                    kernel,
                    index,
                    total,
                }
            }
            Progress::Finished(r) => Event::Finished(r),
        });
    };
    // All reference rows at once (in parallel) when not sliced.
    let rows = ctl.batch(usize::MAX / ROWS_PER_STEP) * ROWS_PER_STEP;
    let done = match BenchRun::new(&p, &qkv, &cfg) {
        Err(e) => Err(e),
        Ok(mut run) => loop {
            match run.step(&p, &qkv, rows, ctl.cancel_flag(), &mut progress) {
                Ok(None) => ctl.checkpoint().await,
                Ok(Some(report)) => break Ok(report),
                Err(e) => break Err(e),
            }
        },
    };
    match done {
        Err(BenchError::Cancelled) => {}
        Err(e) => {
            let _ = tx.send(Event::Done(Err(e.to_string())));
        }
        Ok(report) => {
            let _ = tx.send(Event::Done(Ok(report)));
        }
    }
}

impl KernelsView {
    fn ensure_worker(&mut self, ctx: &egui::Context) {
        if self.worker.is_none() {
            let cache = Arc::new(Mutex::new(super::InputCache::default()));
            self.worker = Some(Worker::spawn_sliced(
                "attnscope-bench",
                Some(ctx.clone()),
                move |(job, tx): (BenchJob, mpsc::Sender<Event>), ctl| {
                    let cache = cache.clone();
                    Box::pin(async move {
                        run_job(job, tx, &ctl, &cache).await;
                        Some(())
                    })
                },
            ));
        }
    }

    fn current_job(shared: &Shared) -> Option<BenchJob> {
        let s = &shared.settings;
        let p = s.selected_pattern().ok()?;
        Some(BenchJob {
            params: p.params().clone(),
            input: shared.input_spec().ok()?,
            block: s.block,
            threads: s.threads,
        })
    }

    fn poll(&mut self) {
        let Some(rx) = &self.events else { return };
        let events: Vec<Event> = rx.try_iter().collect();
        for e in events {
            match e {
                Event::Started {
                    kernel,
                    index,
                    total,
                } => self.running = Some((kernel.name().to_string(), index, total)),
                Event::Finished(r) => self.results.push(r),
                Event::Done(Ok(report)) => {
                    self.results = report.results;
                    self.label = report.label;
                    self.running = None;
                    self.done = true;
                }
                Event::Done(Err(e)) => {
                    self.error = Some(e);
                    self.running = None;
                    self.done = true;
                }
            }
        }
    }
}

fn fmt_flops(v: f64) -> String {
    if v >= 1e12 {
        format!("{:.2} T", v / 1e12)
    } else if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn kernel_axis(
    names: Vec<String>,
) -> impl Fn(egui_plot::GridMark, &std::ops::RangeInclusive<f64>) -> String {
    move |m, _| {
        let v = m.value;
        if v.fract().abs() < 1e-9 && v >= 0.0 {
            names.get(v as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

const USEFUL: Color32 = Color32::from_rgb(80, 190, 120);
const EXECUTED: Color32 = Color32::from_rgb(235, 110, 70);
const TIME: Color32 = Color32::from_rgb(90, 150, 235);

impl View for KernelsView {
    fn title(&self) -> &'static str {
        "Kernels"
    }

    fn hint(&self) -> &'static str {
        "dense, masked, csr, block and permuted kernels timed on the sample input"
    }

    fn busy(&self) -> bool {
        self.pending.is_some() || self.running.is_some()
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        self.ensure_worker(ui.ctx());
        self.poll();
        let want = Self::current_job(shared);
        // Debounce: start only when the settings have been still for DEBOUNCE.
        if want != self.job {
            let now = Instant::now();
            match &self.pending {
                Some((j, _)) if Some(j) == want.as_ref() => {}
                _ => self.pending = want.clone().map(|j| (j, now)),
            }
            if let Some(w) = &self.worker {
                if self.running.is_some() {
                    w.cancel();
                    self.running = None;
                }
            }
        }
        if let Some((j, since)) = self.pending.clone() {
            if since.elapsed() >= DEBOUNCE {
                let (tx, rx) = mpsc::channel();
                if let Some(w) = &self.worker {
                    w.submit((j.clone(), tx));
                }
                self.events = Some(rx);
                self.job = Some(j);
                self.pending = None;
                self.results.clear();
                self.error = None;
                self.done = false;
                self.running = Some(("…".into(), 0, KernelKind::ALL.len()));
            } else {
                ui.ctx()
                    .request_repaint_after(DEBOUNCE.saturating_sub(since.elapsed()));
            }
        }
        if self.running.is_some() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }

        ui.horizontal(|ui| {
            ui.heading("Kernels on the sample input");
            if let Some(j) = &self.job {
                ui.label(format!(
                    "· {} · n = {} · {} · {} · B = {}",
                    if self.label.is_empty() {
                        j.params.kind.name().to_string()
                    } else {
                        self.label.clone()
                    },
                    group(j.params.n as u64),
                    j.input.describe(),
                    super::platform::threads_label(j.threads),
                    j.block
                ));
            }
        });
        if let Err(e) = shared.input_spec() {
            ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
        }
        if let Err(e) = shared.settings.selected_pattern() {
            ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
        }
        if let Some((k, i, t)) = self.running.clone() {
            ui.horizontal(|ui| {
                ui.add(
                    egui::ProgressBar::new(i as f32 / t.max(1) as f32)
                        .desired_width(240.0)
                        .text(format!("running {k} ({}/{t})", i + 1)),
                );
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop this benchmark")
                    .clicked()
                {
                    if let Some(w) = &self.worker {
                        w.cancel();
                    }
                    self.running = None;
                    self.error = Some("cancelled".into());
                }
            });
        } else if self.pending.is_some() {
            ui.weak("settings changed: starting shortly…");
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
        }
        if self.results.is_empty() {
            return;
        }
        let names: Vec<String> = self.results.iter().map(|r| r.kernel.clone()).collect();
        let avail = ui.available_size();
        let chart_h = (avail.y * 0.5).clamp(180.0, 360.0);
        let chart_w = (avail.x - 16.0) / 2.0;
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.label(RichText::new("FLOPs per kernel: useful (4·d·nnz) vs executed").strong());
                let useful: Vec<Bar> = self
                    .results
                    .iter()
                    .enumerate()
                    .map(|(t, r)| {
                        Bar::new(t as f64 - 0.18, r.flops_useful as f64)
                            .width(0.34)
                            .name(&r.kernel)
                    })
                    .collect();
                let executed: Vec<Bar> = self
                    .results
                    .iter()
                    .enumerate()
                    .map(|(t, r)| {
                        Bar::new(t as f64 + 0.18, r.flops_executed as f64)
                            .width(0.34)
                            .name(&r.kernel)
                    })
                    .collect();
                Plot::new("flops-chart")
                    .width(chart_w)
                    .height(chart_h)
                    .legend(Legend::default())
                    .allow_zoom(false)
                    .allow_drag(false)
                    .allow_scroll(false)
                    .show_grid([false, true])
                    .x_axis_formatter(kernel_axis(names.clone()))
                    .y_axis_formatter(|m, _| fmt_flops(m.value))
                    .include_y(0.0)
                    .show(ui, |pu| {
                        pu.add(BarChart::new("useful FLOPs", useful).color(USEFUL));
                        pu.add(BarChart::new("executed FLOPs", executed).color(EXECUTED));
                    });
            });
            ui.vertical(|ui| {
                ui.label(RichText::new("median time per run (ms)").strong());
                let bars: Vec<Bar> = self
                    .results
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.median_ms.is_finite())
                    .map(|(t, r)| Bar::new(t as f64, r.median_ms).width(0.6).name(&r.kernel))
                    .collect();
                Plot::new("time-chart")
                    .width(chart_w)
                    .height(chart_h)
                    .allow_zoom(false)
                    .allow_drag(false)
                    .allow_scroll(false)
                    .show_grid([false, true])
                    .x_axis_formatter(kernel_axis(names.clone()))
                    .include_y(0.0)
                    .include_x(-0.5)
                    .include_x(names.len() as f64 - 0.5)
                    .show(ui, |pu| {
                        pu.add(BarChart::new("median ms", bars).color(TIME));
                    });
            });
        });
        ui.add_space(6.0);
        egui::Grid::new("kernel-table")
            .striped(true)
            .num_columns(9)
            .spacing([18.0, 4.0])
            .show(ui, |ui| {
                for h in [
                    ("kernel", "The attention kernel"),
                    ("median ms", "Median wall time of one run"),
                    ("GFLOP/s", "Useful FLOPs per second of the median run"),
                    ("speedup vs dense", "Dense kernel's median time / this kernel's"),
                    ("dense FLOPs / executed", "How much less work than dense this kernel does: the speedup it could reach"),
                    ("executed / useful", "Work wasted on masked-out cells (1.00 = none)"),
                    ("computed / useful", "Cells the inner loops actually scored, counted while the kernel ran: whole 16-key panels and groups of 4 rows"),
                    ("max rel. error", "max |O − ref| / max |ref| on sampled rows, vs the f64 reference"),
                    ("note", ""),
                ] {
                    ui.label(RichText::new(h.0).strong()).on_hover_text(h.1);
                }
                ui.end_row();
                let dense_flops = self
                    .results
                    .iter()
                    .find(|r| r.kernel == "dense" || r.kernel == "masked")
                    .map(|r| r.flops_executed as f64)
                    .filter(|&f| f > 0.0);
                for r in &self.results {
                    ui.monospace(&r.kernel);
                    let num = |v: f64, digits: usize| {
                        if v.is_finite() {
                            format!("{v:.digits$}")
                        } else {
                            "—".to_string()
                        }
                    };
                    ui.monospace(num(r.median_ms, 3));
                    ui.monospace(num(r.gflops_useful, 1));
                    ui.monospace(r.speedup_vs_dense.map_or("—".into(), |s| format!("{s:.2}×")));
                    ui.monospace(match dense_flops {
                        Some(df) if r.flops_executed > 0 => format!("{:.2}×", df / r.flops_executed as f64),
                        _ => "—".into(),
                    });
                    for flops in [r.flops_executed, r.flops_computed] {
                        ui.monospace(if r.flops_useful > 0 && flops > 0 {
                            format!("{:.2}", flops as f64 / r.flops_useful as f64)
                        } else {
                            "—".into()
                        });
                    }
                    ui.monospace(if r.max_rel_err.is_finite() {
                        format!("{:.1e}", r.max_rel_err)
                    } else {
                        "—".into()
                    });
                    match &r.skipped {
                        Some(why) => ui.colored_label(Color32::from_rgb(230, 160, 60), format!("skipped: {why}")),
                        None => ui.label(""),
                    };
                    ui.end_row();
                }
            });
    }
}
