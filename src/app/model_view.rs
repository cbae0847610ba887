//! The Model tab: what the current pattern keeps and loses on a real pretrained model.
//!
//! One dense forward pass of a model over a text ([`crate::analysis::dense_pass`], on the
//! `attnscope-model` thread) keeps every layer's q, k, v. From it, without another pass:
//! - a layers × heads grid coloured by the mass the current pattern keeps (click a cell to open
//!   the head), from [`crate::analysis::DensePass::mass`];
//! - the open head's dense softmax with the pattern outlined, the tokens under the pointer, and
//!   the mass kept per query;
//! - "Use this head as input": the head's Q, K, V become the sample input of the Kernels and
//!   Attention views.
//!
//! The quality of the pattern (perplexity for a decoder, embedding cosine for an encoder) needs
//! one more pass with every layer restricted to it ([`crate::analysis::quality_against`]); the
//! trade-off chart runs the same for a family of patterns, one job at a time. Every job runs on
//! its own worker thread and restarts when the pattern changes (README "The Model tab").

use super::worker::{Job, Worker};
use super::{FileRequest, Shared, View};
use crate::analysis::{self, DensePass, LayerMass, Progress, Quality};
use crate::model::{self, Model, ModelError, Tokens};
use crate::pattern::{Pattern, PatternParams};
use crate::render::Colormap;
use egui::{Color32, RichText, Sense};
use egui_plot::{Line, Plot, PlotImage, PlotPoint, PlotPoints, Points};
use std::path::PathBuf;
use std::sync::Arc;

/// The sample text the tab runs on by default (an original short story, about 1,000 tokens).
pub const SAMPLE_TEXT: &str = include_str!("../../assets/sample.txt");

/// Largest number of tokens a run takes (docs/models.md).
pub const MAX_TOKENS: usize = 2048;

/// Largest side of the head image, in pixels.
const HEAD_SIDE: usize = 1024;

/// Decades the log colour scale of the head image spans.
const LOG_DECADES: f32 = 4.0;

/// Sink tokens of the "mass on the first tokens" column.
const SINK_TOKENS: usize = 4;

/// A [`Progress`] backed by a worker job.
struct JobProgress<'a> {
    job: &'a Job,
    /// Per-mille range the steps map to.
    from: u32,
    to: u32,
}

impl Progress for JobProgress<'_> {
    fn step(&self, done: usize, total: usize) {
        let span = (self.to - self.from) as usize;
        self.job
            .set_progress(self.from + (span * done / total.max(1)) as u32);
    }
    fn cancelled(&self) -> bool {
        self.job.cancelled()
    }
}

fn describe(e: &ModelError) -> String {
    e.to_string()
}

/// A model file or folder the tab can run.
#[derive(Clone, Debug, PartialEq)]
struct ModelChoice {
    label: String,
    path: PathBuf,
}

/// The models found in the models folders (README "Real models").
fn found_models() -> Vec<ModelChoice> {
    let mut out = Vec::new();
    if let Some(path) = model::find(model::SMOLLM2_FILE) {
        out.push(ModelChoice {
            label: "SmolLM2-135M (decoder)".into(),
            path,
        });
    }
    if let Some(path) = model::find(model::MINILM_DIR) {
        out.push(ModelChoice {
            label: "all-MiniLM-L6-v2 (encoder)".into(),
            path,
        });
    }
    out
}

/// The model a picked file stands for: a GGUF file itself, or the folder of a BERT file.
fn model_path_of(picked: PathBuf) -> PathBuf {
    let bert_file = picked
        .file_name()
        .and_then(|f| f.to_str())
        .is_some_and(|f| ["config.json", "model.safetensors", "tokenizer.json"].contains(&f));
    match picked.parent() {
        Some(dir) if bert_file => dir.to_path_buf(),
        _ => picked,
    }
}

/// Run a model over a text.
#[derive(Clone, Debug, PartialEq)]
struct RunJob {
    path: PathBuf,
    text: Arc<String>,
    max_tokens: usize,
}

/// One finished dense pass.
struct Run {
    job: RunJob,
    model: Arc<dyn Model>,
    tokens: Tokens,
    pass: DensePass,
    load_ms: f64,
    forward_ms: f64,
}

fn run_model(
    job: &RunJob,
    cache: &mut Option<(PathBuf, Arc<dyn Model>)>,
    ctl: &Job,
) -> Result<Run, String> {
    let t0 = web_time::Instant::now();
    let model = match cache {
        Some((p, m)) if *p == job.path => m.clone(),
        _ => {
            *cache = None;
            let m: Arc<dyn Model> = Arc::from(model::load(&job.path).map_err(|e| describe(&e))?);
            *cache = Some((job.path.clone(), m.clone()));
            m
        }
    };
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    ctl.set_progress(50);
    let tokens = model
        .tokenize(&job.text, job.max_tokens)
        .map_err(|e| describe(&e))?;
    let t1 = web_time::Instant::now();
    let progress = JobProgress {
        job: ctl,
        from: 50,
        to: 1000,
    };
    let pass =
        analysis::dense_pass(model.as_ref(), &tokens.ids, &progress).map_err(|e| describe(&e))?;
    Ok(Run {
        job: job.clone(),
        model,
        tokens,
        pass,
        load_ms,
        forward_ms: t1.elapsed().as_secs_f64() * 1e3,
    })
}

/// Work on a finished run with one pattern.
#[derive(Clone)]
struct PatternJob<T> {
    run: Arc<Run>,
    params: PatternParams,
    extra: T,
}

impl<T: PartialEq> PartialEq for PatternJob<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.run, &other.run)
            && self.params == other.params
            && self.extra == other.extra
    }
}

/// A job's answer, tagged with its job.
struct Answer<J, T> {
    job: J,
    outcome: Result<T, String>,
}

/// Which head to draw, and how.
#[derive(Clone, Debug, PartialEq)]
struct HeadLook {
    layer: usize,
    head: usize,
    log: bool,
    cmap: Colormap,
    dark: bool,
}

/// The open head: its image, probabilities (for the hover) and per-query mass.
struct HeadShown {
    image: Arc<egui::ColorImage>,
    probs: ndarray::Array2<f32>,
    query_mass: Vec<f64>,
    pattern: Pattern,
    /// Mass by distance, for the cheapest window keeping a share of the mass.
    profile: analysis::DistanceProfile,
}

fn head_image(job: &PatternJob<HeadLook>, ctl: &Job) -> Result<HeadShown, String> {
    let run = &job.run;
    let look = &job.extra;
    let p = job.params.build().map_err(|e| e.to_string())?;
    let p = run.pass.pattern(&p).map_err(|e| describe(&e))?;
    let probs = run
        .pass
        .probabilities(look.layer, look.head)
        .map_err(|e| describe(&e))?;
    ctl.set_progress(400);
    if ctl.cancelled() {
        return Err("cancelled".into());
    }
    // From the probabilities already computed, not a second pass over q and k.
    let query_mass = analysis::rows_mass(probs.view(), 0, &p);
    ctl.set_progress(700);
    let n = probs.nrows();
    let side = n.min(HEAD_SIDE);
    let vmax = probs
        .iter()
        .fold(0f32, |m, &x| m.max(x))
        .max(f32::MIN_POSITIVE);
    let lut = look.cmap.lut();
    // Cells the pattern does not allow are drawn faded towards the background; allowed cells
    // that touch a disallowed one (the mask's outline) in a contrasting colour.
    let bg = if look.dark {
        [27u8, 27, 27]
    } else {
        [248u8, 248, 248]
    };
    let outline = if look.dark {
        [255u8, 255, 255]
    } else {
        [220u8, 30, 30]
    };
    let cell = |t: usize| t * n / side;
    let mut allowed = vec![false; side * side];
    let mut keys = Vec::new();
    let mut row = vec![false; n];
    for y in 0..side {
        let i = (cell(y) + cell(y + 1).max(cell(y) + 1)) / 2;
        p.row_keys(i.min(n - 1), &mut keys);
        row.iter_mut().for_each(|r| *r = false);
        for &j in &keys {
            row[j as usize] = true;
        }
        for x in 0..side {
            let j = (cell(x) + cell(x + 1).max(cell(x) + 1)) / 2;
            allowed[y * side + x] = row[j.min(n - 1)];
        }
    }
    // The outline helps when the mask has a shape (a band, sink columns); for a fine comb
    // (atrous at a small stride) every allowed pixel is an edge and the outline would hide the
    // weights, so it is drawn only when edges are under a fifth of the allowed pixels.
    let is_edge = |y: usize, x: usize| {
        let at = |yy: usize, xx: usize| allowed[yy * side + xx];
        at(y, x)
            && ((x > 0 && !at(y, x - 1))
                || (x + 1 < side && !at(y, x + 1))
                || (y > 0 && !at(y - 1, x))
                || (y + 1 < side && !at(y + 1, x)))
    };
    let (mut edges, mut inside) = (0usize, 0usize);
    for y in 0..side {
        for x in 0..side {
            inside += allowed[y * side + x] as usize;
            edges += is_edge(y, x) as usize;
        }
    }
    let draw_outline = edges * 5 <= inside;
    let mut rgba = Vec::with_capacity(side * side * 4);
    for y in 0..side {
        let (r0, r1) = (cell(y), cell(y + 1).max(cell(y) + 1));
        for x in 0..side {
            let (c0, c1) = (cell(x), cell(x + 1).max(cell(x) + 1));
            let mut sum = 0f64;
            for i in r0..r1 {
                for j in c0..c1 {
                    sum += probs[[i, j]] as f64;
                }
            }
            let v = (sum / ((r1 - r0) * (c1 - c0)) as f64) as f32;
            let t = if look.log {
                if v <= 0.0 {
                    0.0
                } else {
                    ((v / vmax).log10() + LOG_DECADES) / LOG_DECADES
                }
            } else {
                (v / vmax).sqrt()
            };
            let c = lut[(t.clamp(0.0, 1.0) * 255.0).round() as usize];
            let inside = allowed[y * side + x];
            let edge = draw_outline && is_edge(y, x);
            let px = if edge {
                outline
            } else if inside {
                c
            } else {
                let mix = |a: u8, b: u8| ((a as u16 * 30 + b as u16 * 70) / 100) as u8;
                [mix(c[0], bg[0]), mix(c[1], bg[1]), mix(c[2], bg[2])]
            };
            rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
    }
    Ok(HeadShown {
        image: Arc::new(egui::ColorImage::from_rgba_unmultiplied(
            [side, side],
            &rgba,
        )),
        profile: analysis::DistanceProfile::of(probs.view(), SINK_TOKENS),
        probs,
        query_mass,
        pattern: p,
    })
}

/// Mass kept per (layer, head) and the sink column.
struct MassShown {
    layers: Vec<LayerMass>,
    label: String,
    density: f64,
}

/// Density of `p` relative to what the model sees (`j ≤ i` for a decoder).
fn seen_density(p: &Pattern, causal: bool) -> f64 {
    let n = p.n() as f64;
    let seen = if causal { n * (n + 1.0) / 2.0 } else { n * n };
    p.nnz() as f64 / seen.max(1.0)
}

fn mass_of(job: &PatternJob<()>, ctl: &Job) -> Result<MassShown, String> {
    let p = job.params.build().map_err(|e| e.to_string())?;
    let progress = JobProgress {
        job: ctl,
        from: 0,
        to: 1000,
    };
    let layers = job.run.pass.mass(&p, &progress).map_err(|e| describe(&e))?;
    let q = job.run.pass.pattern(&p).map_err(|e| describe(&e))?;
    Ok(MassShown {
        layers,
        label: q.label(),
        density: seen_density(&q, job.run.pass.info.causal),
    })
}

/// One point of the quality chart.
#[derive(Clone, Debug)]
struct QualityPoint {
    label: String,
    density: f64,
    quality: Quality,
}

impl QualityPoint {
    /// Perplexity (decoder) or cosine (encoder).
    fn value(&self) -> f64 {
        self.quality
            .ppl_pattern
            .or(self.quality.embedding_cosine)
            .unwrap_or(f64::NAN)
    }
}

fn quality_of(job: &PatternJob<()>, ctl: &Job) -> Result<QualityPoint, String> {
    let p = job.params.build().map_err(|e| e.to_string())?;
    let run = &job.run;
    let q = run.pass.pattern(&p).map_err(|e| describe(&e))?;
    let progress = JobProgress {
        job: ctl,
        from: 0,
        to: 1000,
    };
    let quality = analysis::quality_against(
        run.model.as_ref(),
        &run.tokens.ids,
        &q,
        &run.pass.reference,
        &progress,
    )
    .map_err(|e| describe(&e))?;
    Ok(QualityPoint {
        label: q.label(),
        density: seen_density(&q, run.pass.info.causal),
        quality,
    })
}

type RunAnswer = Answer<RunJob, Arc<Run>>;
type MassAnswer = Answer<PatternJob<()>, MassShown>;
type HeadAnswer = Answer<PatternJob<HeadLook>, HeadShown>;
type QualityAnswer = Answer<PatternJob<()>, QualityPoint>;

/// A worker body that answers each job with `work`'s outcome, or nothing once cancelled.
fn answering<J, T>(
    work: fn(&J, &Job) -> Result<T, String>,
) -> impl FnMut(J, &Job) -> Option<Answer<J, T>> + Send + 'static
where
    J: Send + 'static,
    T: Send + 'static,
{
    move |job, ctl| {
        let outcome = work(&job, ctl);
        (!ctl.cancelled()).then_some(Answer { job, outcome })
    }
}

/// The tab's workers, spawned on first show.
struct Workers {
    run: Worker<RunJob, RunAnswer>,
    mass: Worker<PatternJob<()>, MassAnswer>,
    head: Worker<PatternJob<HeadLook>, HeadAnswer>,
    quality: Worker<PatternJob<()>, QualityAnswer>,
    family: Worker<PatternJob<()>, QualityAnswer>,
    sink: Worker<Arc<Run>, (Arc<Run>, Vec<f64>)>,
}

impl Workers {
    fn spawn(ctx: &egui::Context) -> Self {
        let ctx = Some(ctx.clone());
        let mut cache = None;
        Self {
            run: Worker::spawn("attnscope-model", ctx.clone(), move |job: RunJob, ctl| {
                let outcome = run_model(&job, &mut cache, ctl).map(Arc::new);
                (!ctl.cancelled()).then_some(Answer { job, outcome })
            }),
            mass: Worker::spawn("attnscope-model-mass", ctx.clone(), answering(mass_of)),
            head: Worker::spawn("attnscope-model-head", ctx.clone(), answering(head_image)),
            quality: Worker::spawn(
                "attnscope-model-quality",
                ctx.clone(),
                answering(quality_of),
            ),
            family: Worker::spawn("attnscope-model-family", ctx.clone(), answering(quality_of)),
            sink: Worker::spawn("attnscope-model-sink", ctx, |run: Arc<Run>, ctl| {
                let s = run.pass.sink_mass(SINK_TOKENS);
                (!ctl.cancelled()).then_some((run, s))
            }),
        }
    }

    fn busy(&self) -> bool {
        self.run.busy()
            || self.mass.busy()
            || self.head.busy()
            || self.quality.busy()
            || self.family.busy()
            || self.sink.busy()
    }
}

/// Where the text comes from.
#[derive(Clone, Debug, PartialEq)]
enum TextSource {
    Sample,
    File(String),
    Typed,
}

/// State of the Model tab.
pub struct ModelView {
    workers: Option<Workers>,
    models: Vec<ModelChoice>,
    chosen: Option<usize>,
    text: String,
    source: TextSource,
    show_text: bool,
    started: bool,
    error: Option<String>,
    run: Option<Arc<Run>>,
    /// The run asked for and not yet answered.
    asked: Option<RunJob>,
    mass_asked: Option<PatternJob<()>>,
    mass: Option<MassAnswer>,
    head: Option<(usize, usize)>,
    log: bool,
    head_asked: Option<PatternJob<HeadLook>>,
    head_shown: Option<HeadAnswer>,
    head_texture: Option<egui::TextureHandle>,
    quality_asked: Option<PatternJob<()>>,
    quality: Option<QualityAnswer>,
    /// The trade-off family of the current run: expressions, and points computed so far.
    family: Vec<String>,
    family_points: Vec<QualityPoint>,
    family_next: usize,
    family_asked: Option<PatternJob<()>>,
    sink: Option<(Arc<Run>, Vec<f64>)>,
    hover_text: Option<String>,
    /// Share of the open head's mass the suggested windows keep, in percent.
    keep_percent: f64,
}

impl Default for ModelView {
    fn default() -> Self {
        let models = found_models();
        Self {
            workers: None,
            chosen: (!models.is_empty()).then_some(0),
            models,
            text: SAMPLE_TEXT.to_string(),
            source: TextSource::Sample,
            show_text: false,
            started: false,
            error: None,
            run: None,
            asked: None,
            mass_asked: None,
            mass: None,
            head: None,
            log: true,
            head_asked: None,
            head_shown: None,
            head_texture: None,
            quality_asked: None,
            quality: None,
            family: Vec::new(),
            family_points: Vec::new(),
            family_next: 0,
            family_asked: None,
            sink: None,
            hover_text: None,
            keep_percent: 90.0,
        }
    }
}

/// The pattern of the side panel, at the run's token count.
fn params_at(shared: &Shared, n: usize) -> PatternParams {
    let mut p = shared.settings.params.clone();
    p.n = n;
    p
}

impl ModelView {
    fn run_job(&self, max_tokens: usize) -> Option<RunJob> {
        let m = self.models.get(self.chosen?)?;
        Some(RunJob {
            path: m.path.clone(),
            text: Arc::new(self.text.clone()),
            max_tokens,
        })
    }

    fn start(&mut self, max_tokens: usize) {
        let Some(job) = self.run_job(max_tokens) else {
            self.error = Some(
                "no model: run scripts/get-models.sh (README \"Real models\") or use Open model…"
                    .into(),
            );
            return;
        };
        if self.text.trim().is_empty() {
            self.error = Some("the text is empty: type or load a text".into());
            return;
        }
        if let Some(w) = &self.workers {
            self.error = None;
            w.run.submit(job.clone());
            self.asked = Some(job);
            self.started = true;
        }
    }

    fn cancel(&mut self) {
        if let Some(w) = &self.workers {
            w.run.cancel();
        }
        self.asked = None;
    }

    /// Takes finished answers and submits the jobs the current state needs.
    fn pump(&mut self, shared: &Shared, dark: bool) {
        let Some(w) = &self.workers else { return };
        if let Some(a) = w.run.poll() {
            if self.asked.as_ref() == Some(&a.job) {
                self.asked = None;
                match a.outcome {
                    Ok(run) => {
                        self.error = None;
                        self.family = analysis::tradeoff_family(run.tokens.ids.len());
                        self.family_points.clear();
                        self.family_next = 0;
                        self.family_asked = None;
                        self.mass = None;
                        self.mass_asked = None;
                        self.head_shown = None;
                        self.head_asked = None;
                        self.quality = None;
                        self.quality_asked = None;
                        self.sink = None;
                        if self.head.is_some_and(|(l, h)| {
                            l >= run.pass.info.layers || h >= run.pass.info.heads
                        }) {
                            self.head = None;
                        }
                        w.sink.submit(run.clone());
                        self.run = Some(run);
                    }
                    Err(e) => self.error = Some(e),
                }
            }
        }
        let Some(run) = self.run.clone() else { return };
        let n = run.tokens.ids.len();
        let params = params_at(shared, n);
        let job = PatternJob {
            run: run.clone(),
            params: params.clone(),
            extra: (),
        };
        if self.mass_asked.as_ref() != Some(&job) {
            w.mass.submit(job.clone());
            self.mass_asked = Some(job.clone());
        }
        if let Some(a) = w.mass.poll() {
            // Open the head the pattern hurts most, until the user picks one.
            if self.head.is_none() {
                if let Ok(m) = &a.outcome {
                    self.head = worst_head(&m.layers);
                }
            }
            self.mass = Some(a);
        }
        if self.quality_asked.as_ref() != Some(&job) {
            w.quality.submit(job.clone());
            self.quality_asked = Some(job.clone());
        }
        if let Some(a) = w.quality.poll() {
            self.quality = Some(a);
        }
        if let Some((l, h)) = self.head {
            let hj = PatternJob {
                run: run.clone(),
                params: params.clone(),
                extra: HeadLook {
                    layer: l,
                    head: h,
                    log: self.log,
                    cmap: shared.settings.colormap,
                    dark,
                },
            };
            if self.head_asked.as_ref() != Some(&hj) {
                w.head.submit(hj.clone());
                self.head_asked = Some(hj);
            }
        }
        if let Some(a) = w.head.poll() {
            self.head_texture = None;
            self.head_shown = Some(a);
        }
        // The trade-off family runs after the current pattern's own quality, one at a time.
        if let Some(a) = w.family.poll() {
            if self
                .family_asked
                .as_ref()
                .is_some_and(|j| Arc::ptr_eq(&j.run, &a.job.run))
            {
                if let Ok(pt) = a.outcome {
                    self.family_points.push(pt);
                }
                self.family_asked = None;
                self.family_next += 1;
            }
        }
        if self.family_asked.is_none() && !w.quality.busy() && self.family_next < self.family.len()
        {
            let expr = &self.family[self.family_next];
            let fj = PatternJob {
                run: run.clone(),
                params: PatternParams::from_text(expr, n),
                extra: (),
            };
            w.family.submit(fj.clone());
            self.family_asked = Some(fj);
        }
        if let Some(s) = w.sink.poll() {
            self.sink = Some(s);
        }
    }
}

/// The (layer, head) with the smallest mass kept.
fn worst_head(layers: &[LayerMass]) -> Option<(usize, usize)> {
    layers
        .iter()
        .flat_map(|l| l.heads.iter().map(move |h| (l.layer, h.head, h.mass_kept)))
        .min_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(l, h, _)| (l, h))
}

/// A softmax weight: 4 decimals, or 3 significant digits below 0.001.
fn weight_text(w: f32) -> String {
    if w == 0.0 || w >= 1e-3 {
        format!("{w:.4}")
    } else {
        format!("{w:.2e}")
    }
}

/// A token's text for display: whitespace made visible, at most 24 characters.
fn show_token(t: &str) -> String {
    let s: String = t
        .replace('\n', "\\n")
        .replace('\t', "\\t")
        .chars()
        .take(24)
        .collect();
    format!("\"{s}\"")
}

impl View for ModelView {
    fn title(&self) -> &'static str {
        "Model"
    }

    fn hint(&self) -> &'static str {
        "what the pattern keeps and loses on a real pretrained model: mass kept per head, one head's attention, perplexity"
    }

    fn busy(&self) -> bool {
        self.workers.as_ref().is_some_and(|w| w.busy())
            || self.asked.is_some()
            || (self.run.is_some() && self.family_next < self.family.len())
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        if self.workers.is_none() {
            self.workers = Some(Workers::spawn(ui.ctx()));
        }
        if !self.started && self.chosen.is_some() {
            self.start(shared.settings.model_max_tokens);
        }
        let dark = ui.visuals().dark_mode;
        self.pump(shared, dark);
        self.toolbar(ui, shared);
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
        }
        if self.busy() {
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        let Some(run) = self.run.clone() else {
            if self.asked.is_none() && self.error.is_none() {
                ui.label("Pick a model and press Run.");
            }
            return;
        };
        egui::ScrollArea::vertical()
            .id_salt("model-scroll")
            .show(ui, |ui| {
                self.summary(ui, &run);
                ui.horizontal_top(|ui| {
                    ui.vertical(|ui| self.grid(ui, &run));
                    ui.separator();
                    ui.vertical(|ui| self.head_panel(ui, shared, &run));
                    ui.separator();
                    ui.vertical(|ui| self.quality_panel(ui, &run));
                });
            });
    }
}

impl ModelView {
    fn toolbar(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.horizontal(|ui| {
            ui.heading("Real model");
            let chosen = self
                .chosen
                .and_then(|c| self.models.get(c))
                .map_or("no model found".to_string(), |m| m.label.clone());
            egui::ComboBox::from_id_salt("model-choice")
                .selected_text(chosen)
                .show_ui(ui, |ui| {
                    for (i, m) in self.models.iter().enumerate() {
                        ui.selectable_value(&mut self.chosen, Some(i), m.label.as_str())
                            .on_hover_text(m.path.display().to_string());
                    }
                })
                .response
                .on_hover_text("The model to run (found in $ATTNSCOPE_MODELS or models/)");
            if ui
                .button("Open model…")
                .on_hover_text("A .gguf file (llama decoder) or a BERT folder's config.json")
                .clicked()
            {
                if let Some(p) = (shared.picker)(FileRequest::OpenModel) {
                    let path = model_path_of(p);
                    let label = path.file_name().map_or_else(
                        || path.display().to_string(),
                        |f| f.to_string_lossy().into_owned(),
                    );
                    self.models.push(ModelChoice { label, path });
                    self.chosen = Some(self.models.len() - 1);
                }
            }
            ui.separator();
            let text_name = match &self.source {
                TextSource::Sample => "sample text".to_string(),
                TextSource::File(f) => f.clone(),
                TextSource::Typed => "typed text".to_string(),
            };
            ui.toggle_value(&mut self.show_text, format!("Text: {text_name}"))
                .on_hover_text("Show the text to edit or paste into it");
            if ui
                .button("Load text…")
                .on_hover_text("A UTF-8 text file")
                .clicked()
            {
                if let Some(p) = (shared.picker)(FileRequest::OpenText) {
                    match std::fs::read(&p) {
                        Ok(bytes) => match String::from_utf8(bytes) {
                            Ok(t) => {
                                self.text = t;
                                self.source = TextSource::File(
                                    p.file_name()
                                        .map_or("file".into(), |f| f.to_string_lossy().into()),
                                );
                            }
                            Err(_) => {
                                self.error = Some(format!("{} is not UTF-8 text", p.display()))
                            }
                        },
                        Err(e) => self.error = Some(format!("cannot read {}: {e}", p.display())),
                    }
                }
            }
            if self.source != TextSource::Sample
                && ui
                    .button("Sample text")
                    .on_hover_text("Back to the sample text (assets/sample.txt)")
                    .clicked()
            {
                self.text = SAMPLE_TEXT.to_string();
                self.source = TextSource::Sample;
            }
            ui.separator();
            ui.label("max tokens");
            ui.add(
                egui::DragValue::new(&mut shared.settings.model_max_tokens)
                    .range(2..=MAX_TOKENS)
                    .speed(8.0),
            )
            .on_hover_text(format!(
                "The text is cut to this many tokens (2 … {MAX_TOKENS}; BERT models take at most 512)"
            ));
            ui.separator();
            let running = self.asked.is_some();
            if running {
                if ui.button("Cancel").on_hover_text("Stop the run").clicked() {
                    self.cancel();
                }
                let progress = self.workers.as_ref().map_or(0.0, |w| w.run.progress());
                ui.add(
                    egui::ProgressBar::new(progress)
                        .desired_width(160.0)
                        .text("dense forward pass"),
                );
            } else {
                let max_tokens = shared.settings.model_max_tokens;
                // Compared in place: no copy of the text per frame.
                let chosen = self.chosen.and_then(|c| self.models.get(c)).map(|m| &m.path);
                let stale = self.run.as_ref().is_some_and(|r| {
                    Some(&r.job.path) != chosen
                        || *r.job.text != self.text
                        || r.job.max_tokens != max_tokens
                });
                let run = ui.add_enabled(self.chosen.is_some(), egui::Button::new("Run"));
                if run
                    .on_hover_text("Run the model densely over the text (kept for every pattern)")
                    .clicked()
                {
                    self.start(max_tokens);
                }
                if stale {
                    ui.weak("(text or model changed: press Run)");
                }
            }
        });
        if self.show_text {
            let edit = ui.add(
                egui::TextEdit::multiline(&mut self.text)
                    .desired_rows(6)
                    .desired_width(f32::INFINITY)
                    .hint_text("Paste or type a text"),
            );
            if edit.changed() {
                self.source = TextSource::Typed;
            }
        }
    }

    fn summary(&self, ui: &mut egui::Ui, run: &Run) {
        let info = &run.pass.info;
        let kind = if info.causal { "decoder" } else { "encoder" };
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!(
                    "{} tokens · {} layers × {} heads ({} KV heads) · head dim {} · {kind}",
                    run.tokens.ids.len(),
                    info.layers,
                    info.heads,
                    info.kv_heads,
                    info.head_dim
                ))
                .strong(),
            );
            ui.weak(format!(
                "load {:.0} ms, dense pass {:.0} ms",
                run.load_ms, run.forward_ms
            ));
        });
    }

    /// The layers × heads grid of mass kept, and the sink column.
    fn grid(&mut self, ui: &mut egui::Ui, run: &Run) {
        let info = &run.pass.info;
        let Some(m) = &self.mass else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("mass kept…");
            });
            return;
        };
        let shown = match &m.outcome {
            Ok(s) => s,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                return;
            }
        };
        let mean = shown
            .layers
            .iter()
            .flat_map(|l| l.heads.iter().map(|h| h.mass_kept))
            .sum::<f64>()
            / (info.layers * info.heads).max(1) as f64;
        ui.label(RichText::new("Mass kept per head").strong())
            .on_hover_text(
                "Mean over queries of the dense softmax probability on keys the pattern allows \
                 (1 = the pattern keeps everything the head attends to)",
            );
        ui.label(format!("{}: mean {:.1} %", shown.label, 100.0 * mean));
        ui.weak(format!(
            "density {:.2} % of the cells the model sees",
            100.0 * shown.density
        ));
        let lut = Colormap::Viridis.lut();
        let sink = self
            .sink
            .as_ref()
            .filter(|(r, _)| std::ptr::eq(Arc::as_ptr(r), run))
            .map(|(_, s)| s.clone());
        // One painted block: a header row of head numbers, then one row per layer with its
        // number, a cell per head and a bar of the mass on the first tokens ("sink").
        let cw = 18.0f32;
        let ch = (480.0 / info.layers as f32).clamp(10.0, 22.0);
        let (label_w, head_h, gap, sink_w) = (24.0f32, 16.0f32, 8.0f32, 40.0f32);
        let size = egui::vec2(
            label_w + cw * info.heads as f32 + gap + sink_w,
            head_h + ch * info.layers as f32,
        );
        let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
        let painter = ui.painter_at(rect);
        let weak = ui.visuals().weak_text_color();
        let font = egui::FontId::proportional(10.0);
        let x0 = rect.min.x + label_w;
        let y0 = rect.min.y + head_h;
        for h in 0..info.heads {
            painter.text(
                egui::pos2(x0 + cw * (h as f32 + 0.5), y0 - 2.0),
                egui::Align2::CENTER_BOTTOM,
                h.to_string(),
                font.clone(),
                weak,
            );
        }
        let sink_x = x0 + cw * info.heads as f32 + gap;
        painter.text(
            egui::pos2(sink_x, y0 - 2.0),
            egui::Align2::LEFT_BOTTOM,
            "sink",
            font.clone(),
            weak,
        );
        let label_every = if ch >= 12.0 { 1 } else { 5 };
        for l in &shown.layers {
            let y = y0 + ch * l.layer as f32;
            if l.layer % label_every == 0 {
                painter.text(
                    egui::pos2(x0 - 4.0, y + ch / 2.0),
                    egui::Align2::RIGHT_CENTER,
                    l.layer.to_string(),
                    font.clone(),
                    weak,
                );
            }
            for hm in &l.heads {
                let r = egui::Rect::from_min_size(
                    egui::pos2(x0 + cw * hm.head as f32, y),
                    egui::vec2(cw, ch),
                );
                let name = format!("layer {} head {}", l.layer, hm.head);
                let resp = ui.interact(
                    r,
                    egui::Id::unique(("model-mass-cell", l.layer, hm.head)),
                    Sense::click(),
                );
                resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
                let t = hm.mass_kept.clamp(0.0, 1.0) as f32;
                let c = lut[(t * 255.0).round() as usize];
                painter.rect_filled(r.shrink(0.5), 0.0, Color32::from_rgb(c[0], c[1], c[2]));
                if self.head == Some((l.layer, hm.head)) || resp.hovered() {
                    painter.rect_stroke(
                        r,
                        0.0,
                        egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
                        egui::StrokeKind::Inside,
                    );
                }
                let resp = resp.on_hover_text(format!(
                    "{name}: keeps {:.1} % of the mass (worst query {:.1} %)",
                    100.0 * hm.mass_kept,
                    100.0 * hm.worst_query
                ));
                if resp.clicked() {
                    self.head = Some((l.layer, hm.head));
                }
            }
            if let Some(&s) = sink.as_ref().and_then(|s| s.get(l.layer)) {
                let r = egui::Rect::from_min_size(egui::pos2(sink_x, y), egui::vec2(sink_w, ch));
                painter.rect_filled(r.shrink(1.0), 0.0, ui.visuals().faint_bg_color);
                let bar = r.shrink(1.0);
                let bar = bar.with_max_x(bar.min.x + bar.width() * s.clamp(0.0, 1.0) as f32);
                painter.rect_filled(bar, 0.0, ui.visuals().selection.bg_fill);
                ui.interact(r, egui::Id::unique(("model-sink", l.layer)), Sense::hover())
                    .on_hover_text(format!(
                        "layer {}: {:.1} % of the attention of queries after the first \
                         {SINK_TOKENS} tokens goes to them (mean over heads)",
                        l.layer,
                        100.0 * s
                    ));
            }
        }
        // Colour key.
        ui.horizontal(|ui| {
            ui.weak("0 %");
            let (rect, _) = ui.allocate_exact_size(egui::vec2(110.0, 10.0), Sense::hover());
            for x in 0..110 {
                let c = lut[x * 255 / 109];
                let r = egui::Rect::from_min_size(
                    rect.min + egui::vec2(x as f32, 0.0),
                    egui::vec2(1.0, 10.0),
                );
                ui.painter()
                    .rect_filled(r, 0.0, Color32::from_rgb(c[0], c[1], c[2]));
            }
            ui.weak("100 %");
        });
    }

    fn head_panel(&mut self, ui: &mut egui::Ui, shared: &mut Shared, run: &Arc<Run>) {
        let Some((layer, head)) = self.head else {
            ui.label("Click a head in the grid to open it.");
            return;
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Layer {layer}, head {head}")).strong());
            ui.checkbox(&mut self.log, "log colour scale")
                .on_hover_text(format!(
                    "Colour by log10 of the weight over {LOG_DECADES} decades below the largest"
                ));
            if ui
                .button("Use this head as input")
                .on_hover_text(
                    "This head's Q, K, V become the sample input of the Kernels and Attention views \
                     (n = tokens, d = head dim)",
                )
                .clicked()
            {
                match run.pass.head(layer, head) {
                    Ok(qkv) => {
                        let name = format!("model head {layer}.{head}");
                        let (n, d) = (qkv.n(), qkv.d());
                        shared.use_input(qkv, name.clone());
                        shared.settings.d = d;
                        shared.info(format!(
                            "input: {name} (n = {n}, d = {d}): the Kernels and Attention views run on it"
                        ));
                    }
                    Err(e) => shared.error(describe(&e)),
                }
            }
        });
        let Some(a) = &self.head_shown else {
            ui.spinner();
            return;
        };
        let shown = match &a.outcome {
            Ok(s) => s,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                return;
            }
        };
        if (a.job.extra.layer, a.job.extra.head) != (layer, head) {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("opening the head…");
            });
        }
        let tex = self
            .head_texture
            .get_or_insert_with(|| {
                shared.textures.load(
                    "model-head",
                    shown.image.clone(),
                    egui::TextureOptions::NEAREST,
                )
            })
            .clone();
        let n = shown.probs.nrows();
        let nf = n as f64;
        let side = (ui.available_width() - 350.0).clamp(260.0, 640.0);
        let resp = Plot::new("model-head-plot")
            .invert_y(true)
            .data_aspect(1.0)
            .width(side)
            .height(side)
            .show_grid(false)
            .x_axis_label("key j")
            .y_axis_label("query i")
            .default_x_bounds(0.0, nf)
            .default_y_bounds(0.0, nf)
            .label_formatter(|_| None)
            .show(ui, |pu| {
                pu.add(
                    PlotImage::new(
                        "head",
                        tex.id(),
                        PlotPoint::new(nf / 2.0, nf / 2.0),
                        egui::vec2(n as f32, n as f32),
                    )
                    .allow_hover(false),
                );
                if pu.response().hovered() {
                    pu.pointer_coordinate()
                        .filter(|pt| pt.x >= 0.0 && pt.y >= 0.0 && pt.x < nf && pt.y < nf)
                        .map(|pt| (pt.y as usize, pt.x as usize))
                } else {
                    None
                }
            });
        if let Some((i, j)) = resp.inner {
            let tok = |t: usize| {
                run.tokens
                    .tokens
                    .get(t)
                    .map_or(String::new(), |s| show_token(s))
            };
            let text = format!(
                "query {i} {} to key {j} {}: weight {}; {}",
                tok(i),
                tok(j),
                weight_text(shown.probs[[i, j]]),
                shown.pattern.reason(i, j).describe()
            );
            self.hover_text = Some(text.clone());
            resp.response.on_hover_text_at_pointer(text);
        }
        ui.label(self.hover_text.clone().unwrap_or_else(|| {
            "Point at a cell: query and key tokens, weight, allowed or not".into()
        }));
        // Per-query mass kept.
        let mean = shown.query_mass.iter().sum::<f64>() / shown.query_mass.len().max(1) as f64;
        ui.label(format!("mass kept per query (mean {:.1} %)", 100.0 * mean));
        let pts: PlotPoints = shown
            .query_mass
            .iter()
            .enumerate()
            .map(|(i, &m)| [i as f64, 100.0 * m])
            .collect();
        Plot::new("model-query-mass")
            .width(side)
            .height(120.0)
            .include_y(0.0)
            .include_y(100.0)
            .x_axis_label("query i")
            .y_axis_label("% kept")
            .allow_drag(false)
            .allow_scroll(false)
            .allow_zoom(false)
            .show(ui, |pu| {
                pu.line(Line::new("mass kept", pts));
            });
        // The cheapest window (with and without sink tokens) keeping a share of this head.
        ui.horizontal(|ui| {
            ui.label("cheapest window keeping").on_hover_text(
                "The smallest w whose pattern keeps at least this share of this head's mass",
            );
            ui.add(
                egui::DragValue::new(&mut self.keep_percent)
                    .range(10.0..=99.9)
                    .speed(0.5)
                    .suffix(" %"),
            );
        });
        let target = self.keep_percent / 100.0;
        for with_sinks in [false, true] {
            let w = shown.profile.cheapest_window(target, with_sinks);
            let expr = if with_sinks {
                format!("local(w={w}) | sink(s={SINK_TOKENS})")
            } else {
                format!("local(w={w})")
            };
            ui.horizontal(|ui| {
                ui.monospace(&expr);
                ui.weak(format!(
                    "keeps {:.1} %",
                    100.0 * shown.profile.mass(w, with_sinks)
                ));
                if ui
                    .small_button("Use")
                    .on_hover_text("Make this the pattern (the side panel's expression)")
                    .clicked()
                {
                    let n = shared.settings.params.n;
                    shared.settings.params = PatternParams::from_text(&expr, n);
                }
            });
        }
    }

    fn quality_panel(&mut self, ui: &mut egui::Ui, run: &Run) {
        let causal = run.pass.info.causal;
        ui.label(RichText::new("Quality with every layer restricted").strong());
        match &self.quality {
            Some(a) if self.quality_asked.as_ref() == Some(&a.job) => {
                match &a.outcome {
                    Ok(pt) => {
                        if let (Some(d), Some(p)) = (pt.quality.ppl_dense, pt.quality.ppl_pattern) {
                            ui.label(
                            RichText::new(format!("perplexity {d:.2} dense, {p:.2} with the pattern"))
                                .size(18.0)
                                .strong(),
                        )
                        .on_hover_text(
                            "exp(mean next-token loss) over the text, with dense causal attention \
                             and with every layer restricted to the pattern (lower is better)",
                        );
                            ui.label(format!(
                                "loss {:.3} dense, {:.3} with the pattern ({:+.3} nats)",
                                pt.quality.loss_dense.unwrap_or(f64::NAN),
                                pt.quality.loss_pattern.unwrap_or(f64::NAN),
                                pt.quality.loss_pattern.unwrap_or(f64::NAN)
                                    - pt.quality.loss_dense.unwrap_or(f64::NAN)
                            ));
                        }
                        if let Some(c) = pt.quality.embedding_cosine {
                            ui.label(
                                RichText::new(format!("embedding cosine {c:.4}"))
                                    .size(18.0)
                                    .strong(),
                            )
                            .on_hover_text(
                                "Cosine between the mean-pooled sentence embeddings of the dense \
                             and the restricted pass (1 = unchanged)",
                            );
                        }
                        ui.weak(format!(
                            "{} · density {:.2} %",
                            pt.label,
                            100.0 * pt.density
                        ));
                    }
                    Err(e) => {
                        ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                    }
                }
            }
            _ => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    let p = self.workers.as_ref().map_or(0.0, |w| w.quality.progress());
                    ui.label(format!("forward pass with the pattern… {:.0} %", 100.0 * p));
                });
            }
        }
        ui.add_space(8.0);
        let what = if causal {
            "perplexity (log scale)"
        } else {
            "embedding cosine"
        };
        ui.label(RichText::new(format!("Trade-off: {what} vs density")).strong())
            .on_hover_text(
                "Windows of doubling width with and without 4 sink tokens, and sparse with \
                 k = w = √n; the current pattern is the large marker",
            );
        let done = self.family_points.len();
        let total = self.family.len();
        if done < total {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak(format!("{done} of {total} patterns"));
            });
        }
        let y = |v: f64| if causal { v.log10() } else { v };
        // Density on a log axis: windows of doubling width are evenly spaced.
        let x = |d: f64| (100.0 * d).max(1e-3).log10();
        let plain: PlotPoints = self
            .family_points
            .iter()
            .filter(|p| !p.label.contains("sink"))
            .map(|p| [x(p.density), y(p.value())])
            .collect();
        let sinks: PlotPoints = self
            .family_points
            .iter()
            .filter(|p| p.label.contains("sink"))
            .map(|p| [x(p.density), y(p.value())])
            .collect();
        let dense_y = match &run.pass.reference {
            analysis::Reference::Loss(l) => y(l.exp()),
            analysis::Reference::Embedding(_) => 1.0,
        };
        let current = self
            .quality
            .as_ref()
            .filter(|a| self.quality_asked.as_ref() == Some(&a.job))
            .and_then(|a| a.outcome.as_ref().ok())
            .map(|p| [x(p.density), y(p.value())]);
        let labels: Vec<(f64, f64, String)> = self
            .family_points
            .iter()
            .map(|p| (x(p.density), y(p.value()), p.label.clone()))
            .collect();
        Plot::new("model-tradeoff")
            .width(ui.available_width().clamp(280.0, 420.0))
            .height(320.0)
            .x_axis_label("density (%, log scale)")
            .x_axis_formatter(|m, _| {
                let v = 10f64.powf(m.value);
                if v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            })
            .y_axis_label(if causal { "perplexity" } else { "cosine" })
            .y_axis_formatter(move |m, _| {
                if causal {
                    format!("{:.3}", 10f64.powf(m.value))
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                        .to_string()
                } else {
                    format!("{:.3}", m.value)
                }
            })
            .legend(egui_plot::Legend::default().position(egui_plot::Corner::RightTop))
            .label_formatter(move |hover| {
                let pos = match hover {
                    egui_plot::HoverPosition::NearDataPoint { position, .. }
                    | egui_plot::HoverPosition::Elsewhere { position } => *position,
                };
                let best = labels.iter().min_by(|a, b| {
                    let d = |p: &(f64, f64, String)| (p.0 - pos.x).powi(2) + (p.1 - pos.y).powi(2);
                    d(a).total_cmp(&d(b))
                })?;
                let v = if causal { 10f64.powf(best.1) } else { best.1 };
                Some(format!(
                    "{}\ndensity {:.2} %\n{:.3}",
                    best.2,
                    10f64.powf(best.0),
                    v
                ))
            })
            .show(ui, |pu| {
                // Fixed colours: egui_plot's automatic ones shift as series appear.
                pu.points(
                    Points::new("local(w), sparse", plain)
                        .radius(3.5)
                        .color(Color32::from_rgb(230, 120, 40)),
                );
                pu.points(
                    Points::new("... | sink(s=4)", sinks)
                        .radius(3.5)
                        .shape(egui_plot::MarkerShape::Diamond)
                        .color(Color32::from_rgb(60, 140, 230)),
                );
                pu.points(
                    Points::new("dense", vec![[2.0, dense_y]])
                        .radius(4.0)
                        .shape(egui_plot::MarkerShape::Square)
                        .color(Color32::from_rgb(80, 180, 90)),
                );
                if let Some(c) = current {
                    pu.points(
                        Points::new("current pattern", vec![c])
                            .radius(8.0)
                            .shape(egui_plot::MarkerShape::Asterisk)
                            .color(Color32::from_rgb(220, 60, 200)),
                    );
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picked_bert_file_stands_for_its_folder() {
        assert_eq!(
            model_path_of(PathBuf::from("/m/minilm/config.json")),
            PathBuf::from("/m/minilm")
        );
        assert_eq!(
            model_path_of(PathBuf::from("/m/x.gguf")),
            PathBuf::from("/m/x.gguf")
        );
    }

    #[test]
    fn the_sample_text_is_long_enough() {
        // ≥ 600 tokens for any tokenizer taking ≥ 1 token per word.
        assert!(SAMPLE_TEXT.split_whitespace().count() >= 600);
    }
}
