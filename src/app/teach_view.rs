//! The Teach view: presets (one click sets every control, with a caption) and the explain
//! panel (the rule in one line of math, its cost, live numbers for the current settings, a
//! plain-language paragraph), with a large-font option for projectors.

use super::settings::ScheduleRow;
use super::worker::{Job, Sliced, Worker};
use super::{Shared, View};
use crate::pattern::{Pattern, PatternKind, PatternParams};
use crate::presets::{all, Preset};
use crate::reach::{LayerSpec, ReachOptions};
use crate::stats::group;
use egui::RichText;

/// Zoom factor of the large-font (projector) mode.
pub const PROJECTOR_ZOOM: f32 = 1.5;

/// The explain panel's reach question: the pattern (and schedule) whose layers-to-full we want.
#[derive(Clone, Debug, PartialEq)]
pub struct FullJob {
    /// The selected pattern.
    pub params: PatternParams,
    /// Per-layer patterns with their own parameters (empty = the pattern in every layer).
    pub schedule: Vec<LayerSpec>,
}

/// Layers shown in the Teach view's coverage bars.
pub const TEACH_LAYERS: usize = 6;

/// What the explain panel learns about reach: layers to full coverage (None = not within the
/// cap) and the share of pairs reachable after 1, 2, … [`TEACH_LAYERS`] layers.
#[derive(Clone, Debug, PartialEq)]
pub struct FullReach {
    /// Fewest layers after which every pair is reachable.
    pub layers_to_full: Option<usize>,
    /// Coverage in [0, 1] after l = 1, 2, … layers.
    pub coverage: Vec<f64>,
}

/// The reach of a job, or the error.
pub type FullOut = (FullJob, Result<FullReach, String>);

/// The coverage job (sliced like the Receptive-field view's: chunk by chunk, 8 layers at a
/// time in a browser).
fn full_job(job: FullJob, ctl: Job) -> Sliced<FullOut> {
    Box::pin(async move {
        let opts = ReachOptions {
            layers: TEACH_LAYERS,
            max_layers: super::reach_view::full_cap(job.params.n),
            raster_side: 0,
        };
        let r = super::reach_view::run(&job.params, &job.schedule, &opts, &ctl, 0.0, 1.0)
            .await
            .map(|r| FullReach {
                layers_to_full: r.layers_to_full,
                coverage: r.layers.iter().map(|l| l.coverage).collect(),
            });
        (!ctl.cancelled()).then_some((job, r))
    })
}

/// State of the Teach view.
#[derive(Default)]
pub struct TeachView {
    worker: Option<Worker<FullJob, FullOut>>,
    job: Option<FullJob>,
    full: Option<FullOut>,
    /// Cached pattern of the current settings (params it was built from, result).
    pattern: Option<(PatternParams, Result<Pattern, String>)>,
    /// The selected map's image on the GPU, and the image it was made from.
    mask: Option<(egui::TextureHandle, std::sync::Arc<egui::ColorImage>)>,
}

/// Applies a preset to the settings: pattern, block size (BigBird), layer schedule.
pub fn apply_preset(shared: &mut Shared, p: &Preset) {
    let s = &mut shared.settings;
    s.params = p.params.clone();
    if p.params.kind == PatternKind::Bigbird {
        s.block = p.params.block;
    }
    s.schedule = preset_rows(s, p);
    shared.pinned_row = None;
    shared.info(format!("preset: {}", p.title));
}

/// Whether the settings are exactly those of preset `p`.
pub fn is_active(shared: &Shared, p: &Preset) -> bool {
    let s = &shared.settings;
    let mut params = s.params.clone();
    if params.kind == PatternKind::Bigbird {
        params.block = s.block;
    }
    params == p.params && s.schedule == preset_rows(s, p)
}

/// The schedule rows of preset `p` (own k / w where its list gives them, the rest from the
/// settings' k and w), or none when the preset's list does not parse (a test checks each).
fn preset_rows(s: &super::Settings, p: &Preset) -> Vec<ScheduleRow> {
    let (k, w) = (
        p.params.stride.unwrap_or(s.stride()),
        p.params.window.unwrap_or(s.window()),
    );
    p.layers()
        .unwrap_or_default()
        .iter()
        .map(|spec| ScheduleRow::from_spec(spec, k, w))
        .collect()
}

/// The rule of a pattern in one line of math.
pub fn rule(p: &Pattern) -> String {
    let (k, w, g) = (p.stride(), p.window(), p.global());
    let base = match p.kind() {
        PatternKind::Dense => "allowed(i, j) for every i, j".to_string(),
        PatternKind::Local => format!("|i − j| ≤ w   (w = {w})"),
        PatternKind::Atrous => format!("(i − j) mod k = 0   (k = {k})"),
        PatternKind::Sparse => format!("|i − j| ≤ w  ∨  (i − j) mod k = 0   (k = {k}, w = {w})"),
        PatternKind::Strided => format!("0 ≤ i − j < l  ∨  (i − j) mod l = 0   (l = {k})"),
        PatternKind::Fixed => format!(
            "⌊j / l⌋ = ⌊i / l⌋  ∨  j mod l ≥ l − c   (l = {k}, c = {})",
            p.summary()
        ),
        PatternKind::Longformer => format!("|i − j| ≤ w  ∨  i < g  ∨  j < g   (w = {w}, g = {g})"),
        PatternKind::Bigbird => format!(
            "|⌊i/b⌋ − ⌊j/b⌋| ≤ w_b  ∨  ⌊i/b⌋ < g_b  ∨  ⌊j/b⌋ < g_b  ∨  random block   (b = {}, w_b = {w}, g_b = {g}, r = {})",
            p.bigbird_block(),
            p.params().random
        ),
        PatternKind::Custom => {
            // The expression with each distinct term's rule: `(local(w=8) | sink(s=4)) & causal
            //  where local: |i − j| ≤ w, sink: j < s, causal: j ≤ i`.
            let mut seen = Vec::new();
            for t in p.expr().terms() {
                let d = t.def();
                if !seen.iter().any(|(n, _)| *n == d.name) {
                    seen.push((d.name, d.rule));
                }
            }
            let rules: Vec<String> = seen.iter().map(|(n, r)| format!("{n}: {r}")).collect();
            return format!("{}   where {}", p.label(), rules.join(", "));
        }
    };
    if p.is_causal() && p.kind() != PatternKind::Strided {
        format!("{base}  ∧  j ≤ i")
    } else {
        base
    }
}

/// The cost of one head as a big-O formula.
pub fn complexity(kind: PatternKind) -> &'static str {
    match kind {
        PatternKind::Dense => "O(n² · d)",
        PatternKind::Local => "O(n · w · d)",
        PatternKind::Atrous => "O(n² / k · d)",
        PatternKind::Sparse => "O(n·(w + n/k)·d); with k = w = √n: O(n√n·d)",
        PatternKind::Strided => "O(n·(l + n/l)·d); with l = √n: O(n√n·d)",
        PatternKind::Fixed => "O(n · (l + c·n/l) · d)",
        PatternKind::Longformer => "O(n · (w + g) · d)",
        PatternKind::Bigbird => "O(n · b · (2w_b + 1 + g_b + r) · d)",
        PatternKind::Custom => "O(nnz · d): the sum of its terms' keys per query",
    }
}

/// One plain-language paragraph about the pattern at its current parameters.
pub fn paragraph(p: &Pattern, layers_to_full: Option<Option<usize>>) -> String {
    let (n, k, w) = (p.n(), p.stride(), p.window());
    let reach = match layers_to_full {
        Some(Some(1)) => "One layer already connects every pair.".to_string(),
        Some(Some(l)) => format!("Stacking {l} layers connects every pair of tokens."),
        Some(None) if p.is_causal() => {
            "A causal mask never lets a query see later tokens, so full coverage is impossible; \
             what matters is how fast every earlier token is reached."
                .to_string()
        }
        Some(None) => format!(
            "Even {} stacked layers do not connect every pair.",
            super::reach_view::full_cap(n)
        ),
        None => "(Computing how many layers connect every pair…)".to_string(),
    };
    let what = match p.kind() {
        PatternKind::Dense => format!(
            "Every token looks at all {n} tokens. This is the baseline: exact, but the work and \
             memory of the scores grow with n², so doubling the sequence quadruples the cost."
        ),
        PatternKind::Local => format!(
            "Every token looks only at its {w} neighbours on each side, like a convolution. The \
             cost grows linearly with n, but information moves at most {w} tokens per layer, so \
             distant tokens need about n / w layers to meet."
        ),
        PatternKind::Atrous => format!(
            "Every token looks at every {k}th token (a dilated, or atrous, pattern). It sees far \
             away at 1/{k} of the dense cost, but only tokens whose distance is a multiple of {k} \
             ever meet: the sequence splits into {k} groups that never exchange information, \
             however many layers are stacked."
        ),
        PatternKind::Sparse => format!(
            "Sparse attention is the union of the two: a local window of {w} and a stride of {k}. \
             In one layer a token gathers its neighbourhood; in the next it reads, through the \
             strided keys, tokens that have gathered theirs. When w ≥ k − 1 the windows close \
             the gaps between strides, so two layers connect every pair while each query reads \
             only about 2w + n/k keys."
        ),
        PatternKind::Strided => format!(
            "The Sparse Transformer's strided pattern (always causal): the previous {k} tokens \
             plus every {k}th token before them. Two layers reach every earlier token, which \
             suits data with a period such as image rows."
        ),
        PatternKind::Fixed => format!(
            "The Sparse Transformer's fixed pattern: each token sees its own block of {k} and the \
             last {} \"summary\" tokens of every block, which carry information between blocks.",
            p.summary()
        ),
        PatternKind::Longformer if p.global() == 0 => format!(
            "Longformer without global tokens is plain local attention: a sliding window of {w} \
             on each side, so information moves {w} tokens per layer."
        ),
        PatternKind::Longformer => format!(
            "Longformer: a sliding window of {w} on each side plus {} global tokens that see and \
             are seen by everyone, so any two tokens are connected through a global token in two \
             layers.",
            p.global()
        ),
        PatternKind::Bigbird => format!(
            "BigBird works on blocks of {} tokens: a window of neighbouring blocks, global \
             blocks and {} random blocks per block row. Whole blocks are either computed or \
             skipped, which is what makes it fast on real hardware.",
            p.bigbird_block(),
            p.params().random
        ),
        PatternKind::Custom => format!(
            "A composed pattern: {}. Each term of a union adds the keys it allows (its colour in \
             the map), each intersection keeps only the keys every side allows; on average a \
             query reads {:.1} of the {n} keys.",
            p.label(),
            p.nnz() as f64 / n.max(1) as f64
        ),
    };
    format!("{what} {reach}")
}

impl TeachView {
    fn sync(&mut self, ctx: &egui::Context, shared: &Shared) {
        if self.worker.is_none() {
            self.worker = Some(Worker::spawn_sliced(
                "attnscope-explain-reach",
                Some(ctx.clone()),
                full_job,
            ));
        }
        let s = &shared.settings;
        let mut params = s.params.clone();
        if params.kind == PatternKind::Bigbird {
            params.block = s.block;
        }
        if self.pattern.as_ref().map(|(p, _)| p) != Some(&params) {
            let built = params.build().map_err(|e| e.to_string());
            self.pattern = Some((params.clone(), built));
        }
        let mut sched_params = params.clone();
        sched_params.stride = Some(s.stride());
        sched_params.window = Some(s.window());
        let job = FullJob {
            params: if s.schedule.is_empty() {
                params
            } else {
                sched_params
            },
            schedule: s.layer_specs(),
        };
        if let Some(w) = &self.worker {
            if self.job.as_ref() != Some(&job) {
                w.submit(job.clone());
                self.job = Some(job);
            }
            if let Some(out) = w.poll() {
                self.full = Some(out);
            }
            if w.busy() {
                ctx.request_repaint_after(std::time::Duration::from_millis(100));
            }
        }
    }

    fn presets(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.heading("Presets");
        ui.label("One click sets the pattern, n, stride, window and layer schedule.");
        ui.add_space(4.0);
        let presets = all();
        let mut clicked = None;
        ui.horizontal_wrapped(|ui| {
            for p in &presets {
                if ui
                    .selectable_label(is_active(shared, p), RichText::new(p.title).size(15.0))
                    .on_hover_text(p.caption)
                    .clicked()
                {
                    clicked = Some(p.clone());
                }
            }
        });
        if let Some(p) = clicked {
            apply_preset(shared, &p);
        }
        ui.add_space(8.0);
        match presets.iter().find(|p| is_active(shared, p)) {
            Some(p) => {
                ui.label(RichText::new(p.title).size(18.0).strong());
                ui.add(egui::Label::new(RichText::new(p.caption).size(16.0)).wrap());
            }
            None => {
                ui.weak(
                    "The current settings are not a preset; hover a preset to read its caption.",
                );
            }
        }
        ui.add_space(10.0);
        self.figures(ui, shared);
    }

    /// The two figures of the argument side by side: the mask (what one layer costs) and the
    /// share of pairs reachable after 1 … 6 layers (what the stack sees).
    fn figures(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let side = ((ui.available_width() - 12.0) / 2.0).clamp(120.0, 320.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(side);
                ui.label(RichText::new("one layer: the mask").strong());
                self.mask_image(ui, shared, side);
                ui.weak("query i down, key j across");
            });
            ui.vertical(|ui| {
                ui.set_width(side);
                ui.label(RichText::new("stacked layers: pairs reachable").strong());
                self.coverage_bars(ui, side);
                ui.weak("share of all n² pairs (i, j) linked by a chain of allowed steps");
            });
        });
    }

    fn mask_image(&mut self, ui: &mut egui::Ui, shared: &mut Shared, side: f32) {
        let selected = shared.settings.selected_map();
        let image = shared.masks.as_ref().and_then(|m| {
            m.maps
                .iter()
                .find(|map| map.id == selected)
                .and_then(|map| map.full.as_ref())
                .map(|img| img.image.clone())
        });
        let Some(image) = image else {
            ui.add_sized([side, side], egui::Spinner::new());
            return;
        };
        let fresh = self
            .mask
            .as_ref()
            .is_some_and(|(_, shown)| std::sync::Arc::ptr_eq(shown, &image));
        if !fresh {
            let tex =
                shared
                    .textures
                    .load("teach-mask", image.clone(), egui::TextureOptions::NEAREST);
            self.mask = Some((tex, image));
        }
        if let Some((tex, _)) = &self.mask {
            ui.add(egui::Image::new((tex.id(), egui::vec2(side, side))));
        }
    }

    fn coverage_bars(&self, ui: &mut egui::Ui, side: f32) {
        let coverage = match self
            .full
            .as_ref()
            .filter(|(job, _)| Some(job) == self.job.as_ref())
        {
            Some((_, Ok(r))) => r.coverage.clone(),
            Some((_, Err(e))) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                return;
            }
            None => {
                ui.add_sized([side, side], egui::Spinner::new());
                return;
            }
        };
        let bars: Vec<egui_plot::Bar> = coverage
            .iter()
            .enumerate()
            .map(|(l, c)| {
                let full = *c >= 1.0;
                let colour = super::compute::rgb(if full {
                    super::compute::ALLOWED_RGB
                } else {
                    super::compute::BOTH_RGB
                });
                egui_plot::Bar::new((l + 1) as f64, 100.0 * c)
                    .width(0.7)
                    .fill(colour)
                    .name(format!("L = {}: {:.1} %", l + 1, 100.0 * c))
            })
            .collect();
        egui_plot::Plot::new("teach-coverage")
            .width(side)
            .height(side)
            .include_y(0.0)
            .include_y(100.0)
            .include_x(0.4)
            .include_x(TEACH_LAYERS as f64 + 0.6)
            .y_axis_label("% of pairs")
            .custom_x_axes(vec![egui_plot::AxisHints::new_x()
                .label("layers L")
                .formatter(|mark, _| {
                    let v = mark.value;
                    let whole = (v - v.round()).abs() < 1e-6;
                    if whole && (1.0..=TEACH_LAYERS as f64).contains(&v) {
                        format!("{}", v.round() as i64)
                    } else {
                        String::new()
                    }
                })
                .label_spacing(14.0..=20.0)])
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .allow_boxed_zoom(false)
            .show(ui, |pu| {
                pu.bar_chart(egui_plot::BarChart::new("coverage", bars));
            });
    }

    fn explain(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.horizontal(|ui| {
            ui.heading("Explain");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let mut large = ui.ctx().zoom_factor() > 1.2;
                if ui
                    .checkbox(&mut large, "Large fonts (projector)")
                    .on_hover_text("Scale the whole window by 1.5 for a projector")
                    .changed()
                {
                    ui.ctx()
                        .set_zoom_factor(if large { PROJECTOR_ZOOM } else { 1.0 });
                }
            });
        });
        let Some((_, built)) = &self.pattern else {
            return;
        };
        let p = match built {
            Ok(p) => p.clone(),
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                return;
            }
        };
        let d = shared.settings.d;
        ui.label(RichText::new(p.label()).size(20.0).strong());
        ui.add(egui::Label::new(RichText::new(rule(&p)).monospace().size(17.0)).wrap());
        ui.add(
            egui::Label::new(
                RichText::new(format!("cost of one head: {}", complexity(p.kind())))
                    .monospace()
                    .size(15.0),
            )
            .wrap(),
        );
        ui.add_space(6.0);
        let n = p.n() as u64;
        let nnz = p.nnz();
        let full = self
            .full
            .as_ref()
            .filter(|(job, _)| Some(job) == self.job.as_ref())
            .map(|(_, r)| r.clone());
        egui::Grid::new("explain-numbers")
            .num_columns(2)
            .spacing([16.0, 4.0])
            .show(ui, |ui| {
                let mut row = |k: &str, v: String| {
                    ui.label(k);
                    ui.label(RichText::new(v).strong());
                    ui.end_row();
                };
                row("n (tokens)", group(n));
                row("allowed pairs (nnz)", group(nnz));
                row(
                    "keys per query (mean)",
                    format!("{:.1}", nnz as f64 / n as f64),
                );
                row(
                    "useful FLOPs, 4·d·nnz",
                    format!("{} (d = {d})", group(4 * d as u64 * nnz)),
                );
                row("dense FLOPs, 4·d·n²", group(4 * d as u64 * n * n));
                row(
                    "ratio to dense",
                    format!(
                        "{} (dense costs {:.1}×)",
                        super::masks::pct(nnz as f64 / (n * n) as f64),
                        (n * n) as f64 / nnz.max(1) as f64
                    ),
                );
                let sched = if shared.settings.schedule.is_empty() {
                    String::new()
                } else {
                    " (layer schedule)".to_string()
                };
                row(
                    &format!("layers to reach every pair{sched}"),
                    match &full {
                        Some(Ok(FullReach {
                            layers_to_full: Some(l),
                            ..
                        })) => l.to_string(),
                        Some(Ok(_)) => {
                            format!("not within {}", super::reach_view::full_cap(p.n()))
                        }
                        Some(Err(e)) => e.clone(),
                        None => "computing…".to_string(),
                    },
                );
            });
        ui.add_space(8.0);
        let known = match &full {
            Some(Ok(r)) => Some(r.layers_to_full),
            _ => None,
        };
        ui.add(egui::Label::new(RichText::new(paragraph(&p, known)).size(15.0)).wrap());
    }
}

impl View for TeachView {
    fn title(&self) -> &'static str {
        "Teach"
    }

    fn hint(&self) -> &'static str {
        "presets with captions, and the current pattern explained with live numbers"
    }

    fn busy(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| w.busy())
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        self.sync(ui.ctx(), shared);
        let avail = ui.available_size();
        let left = (avail.x * 0.46).max(300.0);
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(left);
                egui::ScrollArea::vertical()
                    .id_salt("presets-scroll")
                    .show(ui, |ui| self.presets(ui, shared));
            });
            ui.separator();
            ui.vertical(|ui| {
                egui::ScrollArea::vertical()
                    .id_salt("explain-scroll")
                    .show(ui, |ui| self.explain(ui, shared));
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(p: PatternParams) -> Pattern {
        p.build().unwrap()
    }

    #[test]
    fn rules_name_the_parameters_and_the_causal_mask() {
        let sparse = build(
            PatternParams::new(PatternKind::Sparse, 64)
                .stride(4)
                .window(3),
        );
        assert_eq!(
            rule(&sparse),
            "|i − j| ≤ w  ∨  (i − j) mod k = 0   (k = 4, w = 3)"
        );
        let causal = build(
            PatternParams::new(PatternKind::Local, 64)
                .window(2)
                .causal(true),
        );
        assert_eq!(rule(&causal), "|i − j| ≤ w   (w = 2)  ∧  j ≤ i");
        // Strided is causal by definition: no extra clause.
        let strided = build(PatternParams::new(PatternKind::Strided, 64).stride(8));
        assert!(!rule(&strided).contains('∧'));
        for k in PatternKind::ALL {
            assert!(complexity(k).starts_with("O("));
        }
    }

    #[test]
    fn paragraphs_use_the_current_numbers_and_reach() {
        let atrous = build(PatternParams::new(PatternKind::Atrous, 64).stride(4));
        let text = paragraph(&atrous, Some(None));
        assert!(
            text.contains("every 4th token") && text.contains("4 groups"),
            "{text}"
        );
        assert!(text.contains("do not connect every pair"), "{text}");
        let sparse = build(
            PatternParams::new(PatternKind::Sparse, 64)
                .stride(4)
                .window(3),
        );
        assert!(paragraph(&sparse, Some(Some(2)))
            .ends_with("Stacking 2 layers connects every pair of tokens."));
        assert!(paragraph(&sparse, None).contains("Computing"));
        let lf = build(PatternParams::new(PatternKind::Longformer, 64).window(2));
        assert!(paragraph(&lf, None).contains("plain local attention"));
    }
}
