//! The Scaling view: the kernels over a range of n, in the background, on log-log axes.
//!
//! "Run sweep" starts [`crate::sweep::SweepRun`] on a named thread (in slices between frames
//! in a browser); each finished size is drawn as soon as it arrives, with a progress bar and a
//! Cancel button. Left: median time vs n per kernel with O(n²), O(n·w) and O(n√n) guide
//! slopes; right: FLOPs vs n (executed per kernel, useful dashed). The results export as CSV.

use super::settings::InputChoice;
use super::worker::Job;
use super::{FileRequest, Shared, View};
use crate::bench::{BenchConfig, BenchReport};
use crate::inputs::InputKind;
use crate::kernel::KernelKind;
use crate::sweep::{Scaling, SweepConfig, SweepError, SweepProgress, SweepReport, SweepRun};
use egui::{Color32, RichText};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, Points};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// Sizes offered for the sweep's range (powers of two).
pub const SIZES: [usize; 11] = [
    64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
];

/// Kernels whose estimated time per run exceeds this are skipped (ms).
pub const DENSE_BUDGET_MS: f64 = super::platform::SWEEP_RUN_BUDGET_MS;

/// Messages from the sweep thread.
enum Msg {
    /// Fraction done and what runs now.
    Progress(f32, String),
    /// One size finished.
    Point(BenchReport),
    /// The sweep ended: `Ok` when complete, `Err` with the reason otherwise.
    End(Result<f64, String>),
}

/// A sweep in flight.
struct Running {
    cancel: Arc<AtomicBool>,
    rx: mpsc::Receiver<Msg>,
    fraction: f32,
    doing: String,
}

/// State of the Scaling view.
pub struct SweepView {
    /// Smallest n.
    pub from: usize,
    /// Largest n.
    pub to: usize,
    /// How stride and window follow n.
    pub scaling: Scaling,
    /// Kernels to run.
    pub kernels: Vec<KernelKind>,
    /// Timed runs per kernel and size.
    pub repeats: usize,
    /// Results so far.
    pub report: SweepReport,
    /// How the last sweep ended (`None` while running or before the first).
    pub outcome: Option<Result<String, String>>,
    running: Option<Running>,
}

impl Default for SweepView {
    fn default() -> Self {
        Self {
            from: 256,
            to: super::platform::SWEEP_DEFAULT_TO_N,
            scaling: Scaling::SqrtN,
            kernels: KernelKind::ALL.to_vec(),
            repeats: 3,
            report: SweepReport::default(),
            outcome: None,
            running: None,
        }
    }
}

fn kernel_colour(t: usize) -> Color32 {
    const C: [[u8; 3]; 6] = [
        [230, 57, 70],
        [78, 154, 232],
        [242, 142, 43],
        [46, 204, 113],
        [155, 89, 182],
        [241, 196, 15],
    ];
    super::compute::rgb(C[t % C.len()])
}

/// `10^v` as a plain number for log axes (1, 10, 100, 1k, …), blank between decades.
fn pow10_label(v: f64) -> String {
    if (v - v.round()).abs() > 1e-6 {
        return String::new();
    }
    let x = 10f64.powf(v.round());
    if x >= 1e9 {
        format!("1e{}", v.round())
    } else if x >= 1e6 {
        format!("{}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{}k", x / 1e3)
    } else {
        format!("{x}")
    }
}

/// `2^v` as n on the log₂ n axis (256, 512, 1k, …), blank between integer exponents.
fn n_label(v: f64) -> String {
    if (v - v.round()).abs() > 1e-6 || v < 0.0 {
        return String::new();
    }
    let n = 1u64 << (v.round() as u32).min(62);
    if n >= 1024 {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

/// Reference rows per step of a sliced sweep.
const ROWS_PER_STEP: usize = 8;

/// Runs the sweep step by step ([`SweepRun`]) with a checkpoint after each step, sending
/// progress, each finished size and the end to the view.
async fn sweep_job(
    cfg: SweepConfig,
    cancel: &AtomicBool,
    ctl: &Job,
    tx: mpsc::Sender<Msg>,
    ctx: egui::Context,
) {
    let t0 = web_time::Instant::now();
    let mut run = SweepRun::new(cfg);
    let rows = ctl.batch(usize::MAX / ROWS_PER_STEP) * ROWS_PER_STEP;
    let mut progress = |e: SweepProgress| {
        let msg = match &e {
            SweepProgress::Size { n, .. } => format!("n = {n}"),
            SweepProgress::Kernel {
                event: crate::bench::Progress::Started { kernel, .. },
                ..
            } => format!("{} kernel", kernel.name()),
            SweepProgress::Kernel { .. } => String::new(),
            SweepProgress::Done { report, .. } => {
                let _ = tx.send(Msg::Point(report.clone()));
                format!("n = {} done", report.n)
            }
        };
        let _ = tx.send(Msg::Progress(e.fraction(), msg));
        // Soon, not at once: the view repaints every 100 ms while the sweep runs, and a repaint
        // per event would make a browser paint a frame between every two steps.
        ctx.request_repaint_after(std::time::Duration::from_millis(30));
    };
    let r = loop {
        match run.step(rows, cancel, &mut progress) {
            Ok(None) => ctl.checkpoint().await,
            Ok(Some(report)) => break Ok(report),
            Err(e) => break Err(e),
        }
    };
    let end = match r {
        Ok(_) => Ok(t0.elapsed().as_secs_f64()),
        Err(SweepError::Cancelled(r)) => {
            Err(format!("sweep cancelled after {} size(s)", r.points.len()))
        }
        Err(e) => Err(format!("sweep failed: {e}")),
    };
    let _ = tx.send(Msg::End(end));
    ctx.request_repaint();
}

impl SweepView {
    /// Whether a sweep is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    fn config(&self, shared: &Shared) -> SweepConfig {
        let s = &shared.settings;
        let mut params = s.params.clone();
        params.stride = Some(s.stride());
        params.window = Some(s.window());
        if params.kind == crate::pattern::PatternKind::Bigbird {
            params.block = s.block;
        }
        let sizes = SIZES
            .iter()
            .copied()
            .filter(|&n| n >= self.from && n <= self.to)
            .collect();
        let input = match s.input {
            InputChoice::Structured => InputKind::Structured { seed: s.input_seed },
            InputChoice::Random | InputChoice::Loaded => InputKind::Random { seed: s.input_seed },
        };
        SweepConfig {
            sizes,
            params,
            scaling: self.scaling,
            d: s.d,
            input,
            bench: BenchConfig {
                kernels: self.kernels.clone(),
                repeats: self.repeats.max(1),
                warmup: 1,
                threads: s.threads.max(1),
                block: s.block,
                dense_budget_ms: Some(DENSE_BUDGET_MS),
            },
        }
    }

    /// Starts a sweep with the current settings on a named thread.
    pub fn start(&mut self, ctx: &egui::Context, shared: &mut Shared) {
        let cfg = self.config(shared);
        if cfg.sizes.is_empty() || cfg.bench.kernels.is_empty() {
            self.outcome = Some(Err("choose at least one size and one kernel".into()));
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (cancel2, ctx2) = (cancel.clone(), ctx.clone());
        let spawned = super::platform::spawn_sliced("attnscope-sweep", move |ctl| {
            Box::pin(async move {
                sweep_job(cfg, &cancel2, &ctl, tx, ctx2).await;
                Some(())
            })
        });
        match spawned {
            Ok(_) => {
                self.report = SweepReport::default();
                self.outcome = None;
                self.running = Some(Running {
                    cancel,
                    rx,
                    fraction: 0.0,
                    doing: "starting".into(),
                });
            }
            Err(e) => self.outcome = Some(Err(format!("could not start the sweep: {e}"))),
        }
    }

    /// Asks the running sweep to stop (it ends after the current kernel run).
    pub fn cancel(&mut self) {
        if let Some(r) = &self.running {
            r.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn poll(&mut self, ctx: &egui::Context) {
        let Some(run) = &mut self.running else { return };
        let mut ended = None;
        for msg in run.rx.try_iter() {
            match msg {
                Msg::Progress(f, what) => {
                    run.fraction = f;
                    if !what.is_empty() {
                        run.doing = what;
                    }
                }
                Msg::Point(p) => self.report.points.push(p),
                Msg::End(r) => ended = Some(r),
            }
        }
        if let Some(r) = ended {
            self.outcome = Some(r.map(|s| {
                format!(
                    "sweep done: {} size(s) in {s:.1} s",
                    self.report.points.len()
                )
            }));
            self.running = None;
        } else {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn controls(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.horizontal_wrapped(|ui| {
            let size_box = |ui: &mut egui::Ui, label: &str, v: &mut usize| {
                egui::ComboBox::from_label(label)
                    .selected_text(v.to_string())
                    .show_ui(ui, |ui| {
                        for n in SIZES {
                            ui.selectable_value(v, n, n.to_string());
                        }
                    });
            };
            size_box(ui, "from n", &mut self.from);
            size_box(ui, "to n", &mut self.to);
            if self.from > self.to {
                std::mem::swap(&mut self.from, &mut self.to);
            }
            ui.separator();
            ui.radio_value(&mut self.scaling, Scaling::SqrtN, "k = w = √n")
                .on_hover_text("The Sparse Transformer's choice at every n: O(n√n) work");
            ui.radio_value(&mut self.scaling, Scaling::Fixed, "k, w as set")
                .on_hover_text("Keep the stride and window of the controls: O(n·(w + n/k)) work");
            ui.separator();
            ui.add(
                egui::Slider::new(&mut self.repeats, 1..=10)
                    .text("repeats")
                    .clamping(egui::SliderClamping::Always),
            )
            .on_hover_text("Timed runs per kernel and size (the median is plotted)");
        });
        ui.horizontal_wrapped(|ui| {
            ui.label("kernels:");
            for k in KernelKind::ALL {
                let mut on = self.kernels.contains(&k);
                if ui.checkbox(&mut on, k.name()).changed() {
                    if on {
                        self.kernels.push(k);
                        self.kernels
                            .sort_by_key(|x| KernelKind::ALL.iter().position(|y| y == x));
                    } else {
                        self.kernels.retain(|x| *x != k);
                    }
                }
            }
            ui.separator();
            let running = self.running.is_some();
            if ui
                .add_enabled(!running, egui::Button::new("Run sweep"))
                .on_hover_text("Time every chosen kernel at each n in the background")
                .clicked()
            {
                self.start(ui.ctx(), shared);
            }
            if ui
                .add_enabled(running, egui::Button::new("Cancel sweep"))
                .on_hover_text("Stop after the kernel run in progress; finished sizes stay")
                .clicked()
            {
                self.cancel();
            }
            if ui
                .add_enabled(
                    !self.report.points.is_empty(),
                    egui::Button::new("Save sweep CSV"),
                )
                .on_hover_text("One line per size and kernel: times, FLOPs, errors")
                .clicked()
            {
                if let Some(path) = (shared.picker)(FileRequest::SaveFile("sweep.csv")) {
                    match crate::sweep::write_csv(&self.report, &path) {
                        Ok(()) => shared.info(format!("saved {}", path.display())),
                        Err(e) => shared.error(e.to_string()),
                    }
                }
            }
        });
        ui.horizontal(|ui| {
            if let Some(run) = &self.running {
                ui.add(
                    egui::ProgressBar::new(run.fraction)
                        .desired_width(260.0)
                        .show_percentage(),
                );
                ui.label(format!("running: {}", run.doing));
            } else {
                match &self.outcome {
                    Some(Ok(m)) => {
                        ui.label(m.as_str());
                    }
                    Some(Err(m)) => {
                        ui.colored_label(ui.visuals().warn_fg_color, m.as_str());
                    }
                    None => {
                        ui.weak(format!(
                            "n from {} to {}, pattern {} — press Run sweep",
                            self.from,
                            self.to,
                            shared.settings.params.kind.name()
                        ));
                    }
                }
            }
        });
    }

    fn kernel_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for p in &self.report.points {
            for r in &p.results {
                if !names.contains(&r.kernel) {
                    names.push(r.kernel.clone());
                }
            }
        }
        names
    }

    fn time_plot(&self, ui: &mut egui::Ui, width: f32, height: f32) {
        let names = self.kernel_names();
        let guide = ui.visuals().weak_text_color();
        Plot::new("sweep-time")
            .legend(Legend::default().position(egui_plot::Corner::LeftTop))
            .width(width)
            .height(height)
            .x_axis_label("sequence length n (log scale)")
            .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 2.0, 4.0]))
            .y_axis_label("median time, ms (log)")
            .x_axis_formatter(|m, _| n_label(m.value))
            .y_axis_formatter(|m, _| pow10_label(m.value))
            .label_formatter(|_| None)
            .show(ui, |pu| {
                let mut firsts: Vec<[f64; 2]> = Vec::new();
                for (t, name) in names.iter().enumerate() {
                    let pts: Vec<[f64; 2]> = self
                        .report
                        .points
                        .iter()
                        .filter_map(|p| {
                            let r = p.results.iter().find(|r| &r.kernel == name)?;
                            (r.skipped.is_none() && r.median_ms > 0.0)
                                .then(|| [(p.n as f64).log2(), r.median_ms.log10()])
                        })
                        .collect();
                    if let Some(first) = pts.first() {
                        firsts.push(*first);
                    }
                    pu.line(
                        Line::new(name.clone(), PlotPoints::new(pts.clone()))
                            .color(kernel_colour(t))
                            .width(2.0),
                    );
                    pu.points(
                        Points::new(name.clone(), pts)
                            .color(kernel_colour(t))
                            .radius(3.5),
                    );
                }
                // Guides start at the smallest n, at the mean log time of the kernels there.
                let x0 = firsts.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
                let at_x0: Vec<f64> = firsts.iter().filter(|p| p[0] == x0).map(|p| p[1]).collect();
                let anchor = (!at_x0.is_empty())
                    .then(|| [x0, at_x0.iter().sum::<f64>() / at_x0.len() as f64]);
                // Guide slopes: O(n²) rises 2 decades per decade
                // of n, O(n√n) 1.5, O(n·w) (w fixed) 1. x is log₂ n, y is log₁₀ ms.
                if let (Some(a), Some(last)) = (anchor, self.report.points.last()) {
                    let x1 = (last.n as f64).log2();
                    for (label, slope, style) in [
                        ("O(n²)", 2.0, LineStyle::dashed_loose()),
                        ("O(n√n)", 1.5, LineStyle::dashed_dense()),
                        ("O(n·w), fixed w", 1.0, LineStyle::dotted_dense()),
                    ] {
                        pu.line(
                            Line::new(
                                label.to_string(),
                                PlotPoints::new(vec![
                                    a,
                                    [x1, a[1] + slope * (x1 - a[0]) * std::f64::consts::LOG10_2],
                                ]),
                            )
                            .color(guide)
                            .style(style)
                            .width(1.5),
                        );
                    }
                }
            });
    }

    fn flops_plot(&self, ui: &mut egui::Ui, width: f32, height: f32) {
        let names = self.kernel_names();
        let strong = ui.visuals().strong_text_color();
        Plot::new("sweep-flops")
            .legend(Legend::default().position(egui_plot::Corner::LeftTop))
            .width(width)
            .height(height)
            .x_axis_label("sequence length n (log scale)")
            .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 2.0, 4.0]))
            .y_axis_label("FLOPs per head (log)")
            .x_axis_formatter(|m, _| n_label(m.value))
            .y_axis_formatter(|m, _| pow10_label(m.value))
            .label_formatter(|_| None)
            .show(ui, |pu| {
                for (t, name) in names.iter().enumerate() {
                    let pts: Vec<[f64; 2]> = self
                        .report
                        .points
                        .iter()
                        .filter_map(|p| {
                            let r = p.results.iter().find(|r| &r.kernel == name)?;
                            (r.flops_executed > 0)
                                .then(|| [(p.n as f64).log2(), (r.flops_executed as f64).log10()])
                        })
                        .collect();
                    pu.line(
                        Line::new(format!("{name} executed"), PlotPoints::new(pts))
                            .color(kernel_colour(t))
                            .width(2.0),
                    );
                }
                let useful: Vec<[f64; 2]> = self
                    .report
                    .points
                    .iter()
                    .filter_map(|p| {
                        let r = p.results.iter().find(|r| r.kernel != "dense")?;
                        (r.flops_useful > 0)
                            .then(|| [(p.n as f64).log2(), (r.flops_useful as f64).log10()])
                    })
                    .collect();
                pu.line(
                    Line::new("useful 4·d·nnz", PlotPoints::new(useful))
                        .color(strong)
                        .style(LineStyle::dashed_loose())
                        .width(2.0),
                );
            });
    }

    fn table(&self, ui: &mut egui::Ui) {
        let Some(last) = self.report.points.last() else {
            return;
        };
        ui.label(RichText::new(format!("largest n so far: {} · {}", last.n, last.label)).strong());
        egui::Grid::new("sweep-last").striped(true).show(ui, |ui| {
            for h in ["kernel", "median ms", "GFLOP/s", "speedup vs dense", "note"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &last.results {
                ui.label(&r.kernel);
                if let Some(why) = &r.skipped {
                    ui.label("–");
                    ui.label("–");
                    ui.label("–");
                    ui.label(why);
                } else {
                    ui.label(format!("{:.3}", r.median_ms));
                    ui.label(format!("{:.1}", r.gflops_useful));
                    ui.label(
                        r.speedup_vs_dense
                            .map_or("–".into(), |s| format!("{s:.1}×")),
                    );
                    ui.label("");
                }
                ui.end_row();
            }
        });
    }
}

impl View for SweepView {
    fn title(&self) -> &'static str {
        "Scaling"
    }

    fn hint(&self) -> &'static str {
        "time and FLOPs of every kernel over a range of n, on log-log axes"
    }

    fn busy(&self) -> bool {
        self.running.is_some()
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        self.poll(ui.ctx());
        self.controls(ui, shared);
        ui.separator();
        let avail = ui.available_size();
        let w = ((avail.x - 16.0) / 2.0).max(200.0);
        let h = (avail.y - 150.0).clamp(200.0, 620.0);
        ui.horizontal_top(|ui| {
            self.time_plot(ui, w, h);
            self.flops_plot(ui, w, h);
        });
        self.table(ui);
    }
}
