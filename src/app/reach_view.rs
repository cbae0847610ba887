//! The Receptive-field view: which keys can influence each query after L stacked layers.
//!
//! Left: the heatmap of `R_L` for the selected pattern (or the layer schedule), with a slider
//! for L. Right: coverage vs L for atrous, local and sparse at the current n, k, w (plus the
//! selected pattern), the layers each needs to reach every pair, the schedule editor and the
//! exports. All numbers come from [`crate::reach::compute`] on two named worker threads.

use super::compute::{ATROUS_RGB, BOTH_RGB, LOCAL_RGB};
use super::settings::{schedule_list, OwnStrideWindow, ScheduleRow};
use super::worker::{Job, Sliced, Worker};
use super::{FileRequest, Shared, View};
use crate::pattern::{PatternKind, PatternParams};
use crate::presets::schedule_of;
use crate::reach::{compute, stride_window_keys, LayerSpec, ReachOptions, ReachReport, ReachRun};
use crate::render::{raster_rgba, Colormap};
use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot, PlotImage, PlotPoint, PlotPoints, VLine};
use std::sync::{mpsc, Arc};

/// Layers the slider and the heatmaps cover.
pub const VIEW_LAYERS: usize = 8;
/// Layers the coverage chart shows.
pub const CHART_LAYERS: usize = 16;
/// Full coverage is searched up to this many layers (n ≤ 16,384).
pub const FULL_CAP: usize = 64;

/// The full-coverage search cap at length `n`: FULL_CAP, or CHART_LAYERS above n = 16,384 so a
/// slow-growing pattern (local, small w) does not keep the cores busy for a minute.
pub fn full_cap(n: usize) -> usize {
    if n > 16_384 {
        CHART_LAYERS
    } else {
        FULL_CAP
    }
}
/// Resolutions offered for the heatmap PNG, in pixels.
pub const EXPORT_SIDES: [usize; 5] = [512, 1024, 2048, 4096, 8192];

/// What the heatmap worker computes: the selected pattern or schedule through `VIEW_LAYERS`.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatJob {
    /// The pattern (kind and parameters).
    pub params: PatternParams,
    /// Per-layer patterns with their own parameters (empty = `params` in every layer).
    pub schedule: Vec<LayerSpec>,
    /// Heatmap side in pixels.
    pub side: usize,
    /// Colormap of the images.
    pub colormap: Colormap,
}

/// The heatmap worker's answer.
pub struct HeatOut {
    /// The job it answers.
    pub job: HeatJob,
    /// The report (with one raster per layer), or why it failed.
    pub report: Result<ReachReport, String>,
    /// RGBA images, one per layer.
    pub images: Vec<Vec<u8>>,
    /// Wall time of the computation, ms.
    pub elapsed_ms: f64,
}

/// What the chart worker computes: coverage vs layers of several patterns.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveJob {
    /// `(name, parameters, schedule)` of each curve.
    pub curves: Vec<(String, PatternParams, Vec<LayerSpec>)>,
}

/// One curve of the chart.
pub struct Curve {
    /// Legend name.
    pub name: String,
    /// Its report (CHART_LAYERS layers, full coverage searched to FULL_CAP), or the error.
    pub report: Result<ReachReport, String>,
}

/// The chart worker's answer.
pub struct CurveOut {
    /// One entry per curve.
    pub curves: Vec<Curve>,
}

/// Layers of one reach chunk computed between two checkpoints of a sliced job.
const LAYERS_PER_PIECE: usize = 8;

/// Reach of `params` (or `schedule`) with a checkpoint after each piece: all chunks at once
/// in parallel when the job is not sliced (the desktop), otherwise [`LAYERS_PER_PIECE`]
/// layers of one chunk at a time; progress goes from `base` to `base + span`.
pub(super) async fn run(
    params: &PatternParams,
    schedule: &[LayerSpec],
    opts: &ReachOptions,
    job: &Job,
    base: f32,
    span: f32,
) -> Result<ReachReport, String> {
    let s = schedule_of(params, schedule).map_err(|e| e.to_string())?;
    let mut reach = ReachRun::new(&s, opts).map_err(|e| e.to_string())?;
    let progress = |done: usize, total: usize| {
        let f = base + span * done as f32 / total.max(1) as f32;
        job.set_progress((f * 1000.0) as u32);
    };
    while !reach.is_done() {
        let done = if job.is_sliced() {
            // A chunk that goes through 64 layers at n = 4096 takes ~ 60 ms in a browser.
            reach.run_layers(LAYERS_PER_PIECE, job.cancel_flag(), &progress)
        } else {
            reach.run(usize::MAX, job.cancel_flag(), &progress)
        };
        done.map_err(|e| e.to_string())?;
        job.checkpoint().await;
    }
    reach.finish().map_err(|e| e.to_string())
}

/// The heatmap worker's job (sliced: chunk by chunk, then image by image).
fn heat_job(job: HeatJob, ctl: Job) -> Sliced<HeatOut> {
    Box::pin(async move { run_heat(job, &ctl).await })
}

async fn run_heat(job: HeatJob, ctl: &Job) -> Option<HeatOut> {
    let t0 = web_time::Instant::now();
    let opts = ReachOptions {
        layers: VIEW_LAYERS,
        max_layers: full_cap(job.params.n),
        raster_side: job.side,
    };
    let report = run(&job.params, &job.schedule, &opts, ctl, 0.0, 1.0).await;
    if ctl.cancelled() {
        return None;
    }
    let mut images = Vec::new();
    if let Ok(r) = &report {
        for ras in &r.rasters {
            images.push(raster_rgba(ras, job.colormap));
            ctl.checkpoint().await;
        }
    }
    if ctl.cancelled() {
        return None;
    }
    Some(HeatOut {
        job,
        report,
        images,
        elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// The chart worker's job (sliced: curve by curve, chunk by chunk).
fn curves_job(job: CurveJob, ctl: Job) -> Sliced<CurveOut> {
    Box::pin(async move { run_curves(job, &ctl).await })
}

async fn run_curves(job: CurveJob, ctl: &Job) -> Option<CurveOut> {
    let n = job.curves.first().map_or(1, |c| c.1.n);
    let opts = ReachOptions {
        layers: CHART_LAYERS,
        max_layers: full_cap(n),
        raster_side: 0,
    };
    let k = job.curves.len().max(1) as f32;
    let mut curves = Vec::new();
    for (t, (name, params, schedule)) in job.curves.iter().enumerate() {
        let report = run(params, schedule, &opts, ctl, t as f32 / k, 1.0 / k).await;
        if ctl.cancelled() {
            return None;
        }
        curves.push(Curve {
            name: name.clone(),
            report,
        });
    }
    Some(CurveOut { curves })
}

/// State of the Receptive-field view.
pub struct ReachView {
    /// Number of stacked layers shown in the heatmap (1..=VIEW_LAYERS).
    pub layer: usize,
    /// Chosen heatmap PNG resolution, pixels.
    pub export_side: usize,
    heat_worker: Option<Worker<HeatJob, HeatOut>>,
    curve_worker: Option<Worker<CurveJob, CurveOut>>,
    heat_job: Option<HeatJob>,
    curve_job: Option<CurveJob>,
    heat: Option<Arc<HeatOut>>,
    curves: Option<Arc<CurveOut>>,
    texture: Option<(egui::TextureHandle, usize, usize)>,
    export_rx: Option<mpsc::Receiver<Result<String, String>>>,
}

impl Default for ReachView {
    fn default() -> Self {
        Self {
            layer: 2,
            export_side: 1024,
            heat_worker: None,
            curve_worker: None,
            heat_job: None,
            curve_job: None,
            heat: None,
            curves: None,
            texture: None,
            export_rx: None,
        }
    }
}

/// The curves of the chart: the seed's three maps at the current n, k, w (and causal), plus
/// the selected pattern or schedule when it is something else.
pub fn chart_curves(shared: &Shared) -> Vec<(String, PatternParams, Vec<LayerSpec>)> {
    let s = &shared.settings;
    let p = &s.params;
    let (k, w) = (s.stride(), s.window());
    let base = |kind| PatternParams::new(kind, p.n).causal(p.causal);
    let mut v = vec![
        (
            format!("atrous k={k}"),
            base(PatternKind::Atrous).stride(k),
            Vec::new(),
        ),
        (
            format!("local w={w}"),
            base(PatternKind::Local).window(w),
            Vec::new(),
        ),
        (
            format!("sparse k={k} w={w}"),
            base(PatternKind::Sparse).stride(k).window(w),
            Vec::new(),
        ),
    ];
    let seed_kind = matches!(
        p.kind,
        PatternKind::Atrous | PatternKind::Local | PatternKind::Sparse
    );
    if !s.schedule.is_empty() || !seed_kind {
        v.push((
            selected_name(shared),
            selected_params(shared),
            s.layer_specs(),
        ));
    }
    v
}

/// The selected pattern's parameters with the seed maps' stride and window filled in (so any
/// kind of a schedule entry has what it needs).
fn selected_params(shared: &Shared) -> PatternParams {
    let s = &shared.settings;
    let mut p = s.params.clone();
    p.stride = Some(s.stride());
    p.window = Some(s.window());
    if p.kind == PatternKind::Bigbird {
        p.block = s.block;
    }
    p
}

/// The legend name of the selected pattern's curve: its name, or "layer schedule" (the layers
/// themselves are listed under the heatmap and in the editor; a name as long as the list
/// pushed the table past the window edge).
fn selected_name(shared: &Shared) -> String {
    let s = &shared.settings;
    if s.schedule.is_empty() {
        s.params.kind.name().to_string()
    } else {
        "layer schedule".to_string()
    }
}

fn curve_colour(t: usize, dark: bool) -> Color32 {
    let c = match t {
        0 => ATROUS_RGB,
        1 => LOCAL_RGB,
        2 => BOTH_RGB,
        _ if dark => [240, 240, 240],
        _ => [30, 30, 30],
    };
    super::compute::rgb(c)
}

/// "after 2 layers" / "not within 64 layers".
pub fn full_text(r: &ReachReport) -> String {
    match r.layers_to_full {
        Some(1) => "1 layer".to_string(),
        Some(l) => format!("{l} layers"),
        None => format!("not within {}", r.max_layers),
    }
}

impl ReachView {
    fn ensure_workers(&mut self, ctx: &egui::Context) {
        if self.heat_worker.is_none() {
            self.heat_worker = Some(Worker::spawn_sliced(
                "attnscope-reach-heat",
                Some(ctx.clone()),
                heat_job,
            ));
        }
        if self.curve_worker.is_none() {
            self.curve_worker = Some(Worker::spawn_sliced(
                "attnscope-reach-curves",
                Some(ctx.clone()),
                curves_job,
            ));
        }
    }

    /// Submits new jobs when the settings changed and takes finished results.
    fn sync(&mut self, ctx: &egui::Context, shared: &Shared) {
        self.ensure_workers(ctx);
        let s = &shared.settings;
        let heat = HeatJob {
            params: selected_params(shared),
            schedule: s.layer_specs(),
            side: shared.image_side().min(512),
            colormap: s.colormap,
        };
        let curves = CurveJob {
            curves: chart_curves(shared),
        };
        if let Some(w) = &self.heat_worker {
            if self.heat_job.as_ref() != Some(&heat) {
                w.submit(heat.clone());
                self.heat_job = Some(heat);
            }
            if let Some(out) = w.poll() {
                self.heat = Some(Arc::new(out));
                self.texture = None;
            }
        }
        if let Some(w) = &self.curve_worker {
            if self.curve_job.as_ref() != Some(&curves) {
                w.submit(curves.clone());
                self.curve_job = Some(curves);
            }
            if let Some(out) = w.poll() {
                self.curves = Some(Arc::new(out));
            }
        }
        if self.computing() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    /// Whether a worker is still computing.
    pub fn computing(&self) -> bool {
        self.heat_worker.as_ref().is_some_and(|w| w.busy())
            || self.curve_worker.as_ref().is_some_and(|w| w.busy())
    }

    fn heatmap(&mut self, ui: &mut egui::Ui, side: f32, store: &mut super::textures::TextureStore) {
        let Some(heat) = self.heat.clone() else {
            ui.spinner();
            return;
        };
        let report = match &heat.report {
            Ok(r) => r,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                return;
            }
        };
        let l = self.layer.clamp(1, report.rasters.len().max(1));
        let Some(raster) = report.rasters.get(l - 1) else {
            return;
        };
        let ptr = Arc::as_ptr(&heat) as usize;
        if self.texture.as_ref().map(|t| (t.1, t.2)) != Some((ptr, l)) {
            let img = egui::ColorImage::from_rgba_unmultiplied(
                [raster.width, raster.height],
                &heat.images[l - 1],
            );
            let tex = store.load(
                "reach-heatmap",
                Arc::new(img),
                egui::TextureOptions::NEAREST,
            );
            self.texture = Some((tex, ptr, l));
        }
        let Some((tex, _, _)) = &self.texture else {
            return;
        };
        let n = report.n as f64;
        let image = PlotImage::new(
            "reach",
            tex.id(),
            PlotPoint::new(n / 2.0, n / 2.0),
            egui::vec2(n as f32, n as f32),
        );
        let layer = &report.layers[l - 1];
        let pairs = layer.reachable_pairs;
        Plot::new("reach-heatmap")
            .invert_y(true)
            .data_aspect(1.0)
            .show_grid(false)
            .width(side)
            .height(side)
            .x_axis_label("key j")
            .y_axis_label("query i")
            .default_x_bounds(0.0, n)
            .default_y_bounds(0.0, n)
            .allow_boxed_zoom(false)
            .show_x(false)
            .show_y(false)
            .label_formatter(|_| None)
            .show(ui, |pu| {
                pu.image(image.allow_hover(false));
                if let Some(pt) = pu.pointer_coordinate() {
                    if pu.response().hovered() && pt.x >= 0.0 && pt.y >= 0.0 && pt.x < n && pt.y < n
                    {
                        let (i, j) = (pt.y as usize, pt.x as usize);
                        pu.response().clone().on_hover_text_at_pointer(format!(
                            "query i = {i}, key j = {j}, distance {}",
                            i.abs_diff(j)
                        ));
                    }
                }
            });
        ui.label(
            RichText::new(format!(
                "after L = {l} layer{}: {} of {} pairs reachable ({})",
                if l == 1 { "" } else { "s" },
                crate::stats::group(pairs),
                crate::stats::group(report.n as u64 * report.n as u64),
                super::masks::pct(layer.coverage)
            ))
            .strong(),
        );
        ui.label(format!(
            "{}: every pair reachable after {} · computed in {:.0} ms",
            report.pattern,
            full_text(report),
            heat.elapsed_ms
        ));
    }

    fn chart(&self, ui: &mut egui::Ui, height: f32) {
        let Some(out) = self.curves.clone() else {
            ui.spinner();
            return;
        };
        let dark = ui.visuals().dark_mode;
        let layer = self.layer as f64;
        // Room above 100 % for the legend (top right), so it never covers a curve at full
        // coverage: its rows take a fixed number of points, the plot fewer of them when the
        // window is small or zoomed (large-font mode).
        let legend_h =
            out.curves.len() as f32 * (ui.text_style_height(&egui::TextStyle::Body) + 4.0) + 24.0;
        let plot_h = (height - 40.0).max(1.0);
        let legend_frac = (legend_h / plot_h).clamp(0.26, 0.6) as f64;
        let y_top = 100.0 / (1.0 - legend_frac);
        // The plot keeps its bounds in memory: a new headroom (zoom, another curve) is a new id.
        Plot::new(("reach-coverage", y_top.round() as i64))
            .legend(Legend::default().position(egui_plot::Corner::RightTop))
            .height(height)
            .x_axis_label("stacked layers L")
            .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
            .y_axis_label("pairs reachable (%)")
            .default_x_bounds(0.5, CHART_LAYERS as f64 + 0.5)
            .default_y_bounds(0.0, y_top)
            // The headroom above 100 % is for the legend: no tick labels there.
            .y_axis_formatter(|m, _| {
                if m.value <= 100.0 + 1e-9 {
                    format!("{:.0}", m.value)
                } else {
                    String::new()
                }
            })
            .allow_scroll(false)
            .allow_zoom(false)
            .allow_drag(false)
            .show(ui, |pu| {
                for (t, c) in out.curves.iter().enumerate() {
                    let Ok(r) = &c.report else { continue };
                    let pts: Vec<[f64; 2]> = r
                        .layers
                        .iter()
                        .map(|l| [l.layer as f64, 100.0 * l.coverage])
                        .collect();
                    pu.line(
                        Line::new(c.name.clone(), PlotPoints::new(pts))
                            .color(curve_colour(t, dark))
                            .width(2.5),
                    );
                    pu.points(
                        egui_plot::Points::new(
                            c.name.clone(),
                            r.layers
                                .iter()
                                .map(|l| [l.layer as f64, 100.0 * l.coverage])
                                .collect::<Vec<_>>(),
                        )
                        .color(curve_colour(t, dark))
                        .radius(3.0),
                    );
                }
                pu.vline(VLine::new("", layer).color(Color32::GRAY).width(1.0));
            });
        egui::Grid::new("reach-full")
            .num_columns(3)
            .striped(true)
            .show(ui, |ui| {
                ui.label(RichText::new("pattern").strong());
                ui.label(RichText::new(format!("reach at L = {}", self.layer)).strong());
                ui.label(RichText::new("layers to reach every pair").strong());
                ui.end_row();
                for (t, c) in out.curves.iter().enumerate() {
                    ui.colored_label(curve_colour(t, dark), &c.name);
                    match &c.report {
                        Ok(r) => {
                            let cov = r
                                .layers
                                .get(self.layer.saturating_sub(1))
                                .map_or(0.0, |l| l.coverage);
                            ui.label(super::masks::pct(cov));
                            ui.label(full_text(r));
                        }
                        Err(e) => {
                            ui.colored_label(ui.visuals().error_fg_color, e);
                            ui.label("");
                        }
                    }
                    ui.end_row();
                }
            });
    }

    fn schedule_editor(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.label(RichText::new("Layer schedule").strong())
            .on_hover_text(
                "Each layer can use its own pattern (GPT-3 alternates dense and banded layers); \
             the list repeats. Every entry takes the n and causal of the controls, and their k \
             and w unless it has its own.",
            );
        let (shared_k, shared_w) = (shared.settings.stride(), shared.settings.window());
        let schedule = &mut shared.settings.schedule;
        let mut same = schedule.is_empty();
        if ui
            .checkbox(&mut same, "same pattern in every layer")
            .on_hover_text("Off: choose a pattern per layer below")
            .changed()
        {
            *schedule = if same {
                Vec::new()
            } else {
                vec![
                    ScheduleRow::shared(shared.settings.params.kind),
                    ScheduleRow::shared(PatternKind::Dense),
                ]
            };
        }
        let schedule = &mut shared.settings.schedule;
        let mut remove = None;
        for (t, row) in schedule.iter_mut().enumerate() {
            ui.horizontal_wrapped(|ui| {
                if schedule_row(ui, t + 1, row, (shared_k, shared_w)) {
                    remove = Some(t);
                }
            });
        }
        if let Some(t) = remove {
            schedule.remove(t);
        }
        ui.horizontal_wrapped(|ui| {
            if !schedule.is_empty()
                && schedule.len() < VIEW_LAYERS
                && ui
                    .button("+ layer")
                    .on_hover_text("Add a layer to the repeating schedule")
                    .clicked()
            {
                schedule.push(ScheduleRow::shared(PatternKind::Local));
            }
            if ui
                .button("GPT-3: dense / local")
                .on_hover_text("Alternate dense and locally banded layers, as GPT-3 does")
                .clicked()
            {
                *schedule = vec![
                    ScheduleRow::shared(PatternKind::Dense),
                    ScheduleRow::shared(PatternKind::Local),
                ];
            }
        });
        if !schedule.is_empty() {
            let list = schedule_list(schedule);
            ui.add(
                egui::Label::new(
                    RichText::new(format!("CLI: --schedule \"{list}\""))
                        .monospace()
                        .weak(),
                )
                .wrap(),
            )
            .on_hover_text(
                "The same layers for attnscope reach (with --n and the shared --stride, --window, \
                 --causal of the controls)",
            );
        }
    }

    fn exports(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        if let Some(rx) = &self.export_rx {
            match rx.try_recv() {
                Ok(Ok(msg)) => {
                    shared.info(msg);
                    self.export_rx = None;
                }
                Ok(Err(e)) => {
                    shared.error(e);
                    self.export_rx = None;
                }
                Err(mpsc::TryRecvError::Empty) => {
                    ui.ctx()
                        .request_repaint_after(std::time::Duration::from_millis(100));
                }
                Err(mpsc::TryRecvError::Disconnected) => self.export_rx = None,
            }
        }
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::from_label("PNG side")
                .selected_text(format!("{} px", self.export_side))
                .show_ui(ui, |ui| {
                    for s in EXPORT_SIDES {
                        ui.selectable_value(&mut self.export_side, s, format!("{s} px"));
                    }
                });
            let busy = self.export_rx.is_some();
            if ui
                .add_enabled(!busy, egui::Button::new("Save heatmap PNG"))
                .on_hover_text(
                    "The heatmap at the current L, at about the chosen resolution (one cell = \
                     an integer number of pixels when n is small)",
                )
                .clicked()
            {
                self.export_heatmap(shared);
            }
            if ui
                .button("Save coverage CSV")
                .on_hover_text("Coverage per layer of every curve in the chart")
                .clicked()
            {
                self.export_csv(shared);
            }
        });
    }

    fn export_heatmap(&mut self, shared: &mut Shared) {
        // Export what is on screen: the job of the heatmap shown.
        let Some(job) = self.heat.as_ref().map(|h| h.job.clone()) else {
            shared.error("the heatmap is still being computed");
            return;
        };
        let Some(path) = (shared.picker)(FileRequest::SaveFile("reach.png")) else {
            return;
        };
        let (layer, side) = (self.layer, self.export_side);
        let (tx, rx) = mpsc::channel();
        self.export_rx = Some(rx);
        let spawned = super::platform::spawn("attnscope-reach-export", move || {
            let result = (|| {
                let s = schedule_of(&job.params, &job.schedule).map_err(|e| e.to_string())?;
                let opts = ReachOptions {
                    layers: layer,
                    max_layers: layer,
                    raster_side: side.min(crate::reach::MAX_RASTER_SIDE * 8),
                };
                let never = std::sync::atomic::AtomicBool::new(false);
                let r = compute(&s, &opts, &never, &|_, _| {}).map_err(|e| e.to_string())?;
                let raster = r.rasters.last().ok_or("no heatmap computed")?;
                crate::reach::write_heatmap_png(raster, job.colormap, side, &path)
                    .map_err(|e| e.to_string())?;
                Ok(format!("saved {}", path.display()))
            })();
            let _ = tx.send(result);
        });
        if let Err(e) = spawned {
            shared.error(format!("could not start the export: {e}"));
            self.export_rx = None;
        }
    }

    fn export_csv(&mut self, shared: &mut Shared) {
        let Some(out) = self.curves.clone() else {
            shared.error("the coverage curves are still being computed");
            return;
        };
        let Some(path) = (shared.picker)(FileRequest::SaveFile("coverage.csv")) else {
            return;
        };
        let text = coverage_csv(&out.curves);
        match crate::export::atomic_write(&path, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())
        }) {
            Ok(()) => shared.info(format!("saved {}", path.display())),
            Err(e) => shared.error(e.to_string()),
        }
    }
}

/// One row of the schedule editor: its pattern, optionally its own k / w (only for patterns
/// that take them), and a remove button. `shared_kw` are the controls' k and w, the starting
/// values of a row's own. Returns whether "remove" was clicked.
fn schedule_row(
    ui: &mut egui::Ui,
    layer: usize,
    row: &mut ScheduleRow,
    shared_kw: (usize, usize),
) -> bool {
    ui.label(format!("layer {layer}"));
    egui::ComboBox::from_id_salt(("schedule", layer))
        .selected_text(row.kind.name())
        .show_ui(ui, |ui| {
            for k in PatternKind::ALL {
                ui.selectable_value(&mut row.kind, k, k.name());
            }
        })
        .response
        .accessible_name(format!("layer {layer} pattern"))
        .on_hover_text("The pattern of this layer");
    let (k_key, w_key) = stride_window_keys(row.kind);
    if k_key.is_some() || w_key.is_some() {
        let keys: Vec<&str> = [k_key, w_key].into_iter().flatten().collect();
        let keys = keys.join(", ");
        let mut own = row.own.is_some();
        if ui
            .checkbox(&mut own, "own")
            .accessible_name(format!("layer {layer} own {keys}"))
            .on_hover_text(format!(
                "Give this layer its own {keys} instead of the controls' (like \
                 {}({}=…) in reach --schedule)",
                row.kind.name(),
                k_key.or(w_key).unwrap_or("w")
            ))
            .changed()
        {
            row.own = own.then_some(OwnStrideWindow {
                k: shared_kw.0,
                w: shared_kw.1,
            });
        }
        if let Some(o) = &mut row.own {
            for (key, value, min) in [(k_key, &mut o.k, 1), (w_key, &mut o.w, 0)] {
                let Some(key) = key else { continue };
                ui.label(key);
                ui.add(
                    egui::DragValue::new(value)
                        .range(min..=crate::APP_MAX_N)
                        .speed(0.25),
                )
                .accessible_name(format!("layer {layer} {key}"))
                .on_hover_text(format!("This layer's own {key} — type a value or drag"));
            }
        }
    }
    ui.small_button("remove")
        .accessible_name(format!("remove layer {layer}"))
        .on_hover_text("Remove this layer from the schedule")
        .clicked()
}

/// `pattern,n,layer,reachable_pairs,coverage,layers_to_full` lines for every curve.
pub fn coverage_csv(curves: &[Curve]) -> String {
    let mut s = String::from("pattern,n,layer,reachable_pairs,coverage,layers_to_full\n");
    for c in curves {
        let Ok(r) = &c.report else { continue };
        let full = r.layers_to_full.map_or(String::new(), |l| l.to_string());
        for l in &r.layers {
            s += &format!(
                "\"{}\",{},{},{},{},{}\n",
                r.pattern.replace('"', "\"\""),
                r.n,
                l.layer,
                l.reachable_pairs,
                l.coverage,
                full
            );
        }
    }
    s
}

impl View for ReachView {
    fn title(&self) -> &'static str {
        "Receptive field"
    }

    fn hint(&self) -> &'static str {
        "which keys can influence each query after L stacked layers; coverage vs L"
    }

    fn busy(&self) -> bool {
        self.computing() || self.export_rx.is_some()
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        self.sync(ui.ctx(), shared);
        let busy = [
            self.heat_worker
                .as_ref()
                .filter(|w| w.busy())
                .map(|w| w.progress()),
            self.curve_worker
                .as_ref()
                .filter(|w| w.busy())
                .map(|w| w.progress()),
        ];
        ui.horizontal(|ui| {
            ui.add(
                egui::Slider::new(&mut self.layer, 1..=VIEW_LAYERS)
                    .text("layers L")
                    .clamping(egui::SliderClamping::Always),
            )
            .on_hover_text("Number of stacked attention layers");
            for (name, p) in ["heatmap", "curves"].iter().zip(busy) {
                if let Some(p) = p {
                    ui.add(
                        egui::ProgressBar::new(p)
                            .desired_width(110.0)
                            .text(format!("computing {name}")),
                    );
                }
            }
            ui.separator();
            // Wrapped to the window: on one long line it widened the whole view past the window
            // edge in large-font mode.
            ui.add(
                egui::Label::new(
                    "key j reaches query i after L layers when a chain of L allowed steps leads \
                     from i back to j",
                )
                .wrap(),
            );
        });
        ui.separator();
        let avail = ui.available_size();
        // Half the width, but at least 420 points for the chart and the schedule editor (they
        // were cut off at the right in large-font mode).
        let side = (avail.x * 0.5)
            .min(avail.x - 420.0)
            .min(avail.y - 60.0)
            .max(160.0);
        ui.horizontal_top(|ui| {
            let left = ui
                .vertical(|ui| {
                    ui.set_width(side);
                    self.heatmap(ui, side, &mut shared.textures);
                })
                .response
                .rect;
            // A line only as tall as the columns (a `separator` here would span the whole
            // panel, and "Save view PNG" could not crop the empty part below the content).
            let gap = ui.spacing().item_spacing.x;
            let line_x = ui.cursor().left() + gap * 0.5;
            ui.add_space(gap);
            let right = ui
                .vertical(|ui| {
                    // Scrolls when a long schedule does not fit (large-font mode, small windows).
                    egui::ScrollArea::vertical()
                        .id_salt("reach-side")
                        .show(ui, |ui| {
                            let chart_h = (avail.y * 0.45).max(160.0);
                            self.chart(ui, chart_h);
                            ui.separator();
                            self.schedule_editor(ui, shared);
                            ui.separator();
                            self.exports(ui, shared);
                        });
                })
                .response
                .rect;
            ui.painter().vline(
                line_x,
                left.top()..=left.bottom().max(right.bottom()),
                ui.visuals().widgets.noninteractive.bg_stroke,
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::worker::{poll_slice, run_to_end};
    use std::task::Poll;

    /// `fut` polled in slices that each stop at the first checkpoint: its answer, the slices
    /// and the progress after each.
    fn in_slices<R>(mut fut: Sliced<R>, ctl: &Job) -> (Option<R>, Vec<u32>) {
        let mut progress = Vec::new();
        loop {
            match poll_slice(&mut fut, std::time::Duration::ZERO) {
                Poll::Ready(out) => return (out, progress),
                Poll::Pending => progress.push(ctl.progress_per_mille()),
            }
        }
    }

    #[test]
    fn the_heatmaps_and_curves_are_the_same_in_slices() {
        let n = 1500;
        let heat = HeatJob {
            params: PatternParams::new(PatternKind::Sparse, n)
                .stride(40)
                .window(5),
            schedule: Vec::new(),
            side: 300,
            colormap: Colormap::Viridis,
        };
        let whole = run_to_end(heat_job(heat.clone(), Job::new())).expect("heat");
        let ctl = Job::sliced();
        let (sliced, progress) = in_slices(heat_job(heat, ctl.clone()), &ctl);
        let sliced = sliced.expect("heat");
        // 3 chunks of 512 keys, 8 layers at a time, then the 8 images one by one.
        assert!(progress.len() >= 3 + 8, "{progress:?}");
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        assert_eq!(sliced.images, whole.images);
        let (a, b) = (
            whole.report.expect("report"),
            sliced.report.expect("report"),
        );
        assert_eq!((&a.layers, a.layers_to_full), (&b.layers, b.layers_to_full));
        assert_eq!(a.rasters, b.rasters);

        let curves = CurveJob {
            curves: vec![
                (
                    "local".into(),
                    PatternParams::new(PatternKind::Local, n).window(9),
                    Vec::new(),
                ),
                (
                    "atrous".into(),
                    PatternParams::new(PatternKind::Atrous, n).stride(7),
                    Vec::new(),
                ),
            ],
        };
        let whole = run_to_end(curves_job(curves.clone(), Job::new())).expect("curves");
        let ctl = Job::sliced();
        let (sliced, progress) = in_slices(curves_job(curves, ctl.clone()), &ctl);
        // Local w = 9 needs many layers: more than one piece of 8 per chunk.
        assert!(progress.len() > 2 * 3, "{progress:?}");
        for (a, b) in whole.curves.iter().zip(&sliced.expect("curves").curves) {
            let (a, b) = (a.report.as_ref().expect("a"), b.report.as_ref().expect("b"));
            assert_eq!((&a.layers, a.layers_to_full), (&b.layers, b.layers_to_full));
        }
    }

    #[test]
    fn a_heat_job_cancelled_between_slices_stops() {
        let heat = HeatJob {
            params: PatternParams::new(PatternKind::Local, 3000).window(4),
            schedule: Vec::new(),
            side: 256,
            colormap: Colormap::Gray,
        };
        let ctl = Job::sliced();
        let mut fut = heat_job(heat, ctl.clone());
        for _ in 0..3 {
            assert!(poll_slice(&mut fut, std::time::Duration::ZERO).is_pending());
        }
        ctl.cancel();
        assert!(matches!(
            poll_slice(&mut fut, std::time::Duration::ZERO),
            Poll::Ready(None)
        ));
    }
}
