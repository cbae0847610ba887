//! The Attention view: softmax weights of the sample input, dense next to the selected sparse
//! pattern (computed by [`crate::kernel::attention_weights`] on the `attnscope-attention`
//! thread), and the share of the dense attention mass that the sparse mask keeps.
//!
//! Mass kept = mean over queries i of Σ_{j allowed} P_dense(i, j): 1 means the mask keeps every
//! key the dense softmax cares about.

use super::worker::Worker;
use super::{InputSpec, Shared, View};
use crate::kernel::MAX_WEIGHTS_N;
use crate::pattern::PatternParams;
use crate::render::Colormap;
use egui::RichText;
use egui_plot::{Plot, PlotImage, PlotPoint};
use std::sync::{Arc, Mutex};

/// Largest side of an attention image, in pixels (n above it is averaged down).
pub const ATTN_SIDE: usize = 1024;

/// Decades shown by the log colour scale.
pub const LOG_DECADES: f32 = 6.0;

/// One request.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnJob {
    params: PatternParams,
    input: InputSpec,
    cmap: Colormap,
    log: bool,
}

/// The worker's answer.
pub struct AttnResult {
    job: AttnJob,
    outcome: Result<AttnImages, String>,
}

struct AttnImages {
    dense: std::sync::Arc<egui::ColorImage>,
    sparse: std::sync::Arc<egui::ColorImage>,
    /// Mean over queries of the dense mass on allowed keys.
    mass_kept: f64,
    /// Smallest per-query kept mass.
    mass_min: f64,
    max_weight: f32,
    label: String,
}

/// Averages an `n × n` matrix down to `side × side` and colours it.
fn colour(w: &ndarray::Array2<f32>, side: usize, vmax: f32, log: bool, cmap: Colormap) -> Vec<u8> {
    let n = w.nrows();
    let lut = cmap.lut();
    let mut out = Vec::with_capacity(side * side * 4);
    let edge = |t: usize| t * n / side;
    for y in 0..side {
        for x in 0..side {
            let (r0, r1, c0, c1) = (
                edge(y),
                edge(y + 1).max(edge(y) + 1),
                edge(x),
                edge(x + 1).max(edge(x) + 1),
            );
            let mut sum = 0.0f64;
            for i in r0..r1 {
                for j in c0..c1 {
                    sum += w[[i, j]] as f64;
                }
            }
            let v = (sum / ((r1 - r0) * (c1 - c0)) as f64) as f32;
            let t = if log {
                if v <= 0.0 {
                    0.0
                } else {
                    ((v / vmax).log10() + LOG_DECADES) / LOG_DECADES
                }
            } else {
                v / vmax
            };
            let c = lut[(t.clamp(0.0, 1.0) * 255.0).round() as usize];
            out.extend_from_slice(&[c[0], c[1], c[2], 255]);
        }
    }
    out
}

/// RGBA8 → an egui image (on the worker thread).
fn image(side: usize, rgba: &[u8]) -> Arc<egui::ColorImage> {
    Arc::new(egui::ColorImage::from_rgba_unmultiplied([side, side], rgba))
}

/// The weights and images of `job`, with a checkpoint after each of its pieces (the dense
/// weights, the pattern's weights, the mass kept, each image): a sliced job pauses there.
async fn compute(
    job: &AttnJob,
    cache: &Mutex<super::InputCache>,
    ctl: &super::worker::Job,
) -> Option<Result<AttnImages, String>> {
    let p = match job.params.build() {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    let max_n = super::platform::ATTENTION_MAX_N;
    if p.n() > max_n {
        let why = if super::platform::IN_BROWSER {
            format!(
                " in the browser (the n × n softmax runs on the page's one thread; the desktop \
                 app shows up to n = {MAX_WEIGHTS_N})"
            )
        } else {
            String::new()
        };
        return Some(Err(format!(
            "n = {} is too large for the attention view: the n × n weights are shown up to n = {max_n}{why}",
            p.n()
        )));
    }
    let qkv = cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&job.input);
    ctl.set_progress(100);
    ctl.checkpoint().await;
    let dense = match crate::kernel::attention_weights(None, &qkv, None) {
        Ok(w) => w,
        Err(e) => return Some(Err(e.to_string())),
    };
    if ctl.cancelled() {
        return None;
    }
    ctl.set_progress(400);
    ctl.checkpoint().await;
    let sparse = match crate::kernel::attention_weights(Some(&p), &qkv, None) {
        Ok(w) => w,
        Err(e) => return Some(Err(e.to_string())),
    };
    if ctl.cancelled() {
        return None;
    }
    ctl.set_progress(700);
    ctl.checkpoint().await;
    let n = p.n();
    let mut keys = Vec::new();
    let (mut total, mut min) = (0.0f64, f64::INFINITY);
    for i in 0..n {
        p.row_keys(i, &mut keys);
        let kept: f64 = keys.iter().map(|&j| dense[[i, j as usize]] as f64).sum();
        total += kept;
        min = min.min(kept);
    }
    let vmax = dense
        .iter()
        .chain(sparse.iter())
        .fold(0.0f32, |m, &v| m.max(v))
        .max(f32::MIN_POSITIVE);
    let side = n.min(ATTN_SIDE);
    ctl.set_progress(800);
    ctl.checkpoint().await;
    let dense = image(side, &colour(&dense, side, vmax, job.log, job.cmap));
    ctl.set_progress(900);
    ctl.checkpoint().await;
    if ctl.cancelled() {
        return None;
    }
    Some(Ok(AttnImages {
        dense,
        sparse: image(side, &colour(&sparse, side, vmax, job.log, job.cmap)),
        mass_kept: total / n as f64,
        mass_min: min,
        max_weight: vmax,
        label: p.label(),
    }))
}

/// State of the Attention view.
#[derive(Default)]
pub struct AttentionView {
    worker: Option<Worker<AttnJob, AttnResult>>,
    submitted: Option<AttnJob>,
    shown: Option<AttnResult>,
    textures: Option<(egui::TextureHandle, egui::TextureHandle)>,
}

impl AttentionView {
    fn job(shared: &Shared) -> Result<AttnJob, String> {
        let s = &shared.settings;
        let p = s.selected_pattern().map_err(|e| e.to_string())?;
        Ok(AttnJob {
            params: p.params().clone(),
            input: shared.input_spec()?,
            cmap: s.colormap,
            log: s.log_attention,
        })
    }
}

impl View for AttentionView {
    fn title(&self) -> &'static str {
        "Attention"
    }

    fn hint(&self) -> &'static str {
        "softmax weights of the sample input, dense vs the selected pattern, and the mass kept"
    }

    fn busy(&self) -> bool {
        self.worker.as_ref().is_some_and(|w| w.busy())
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        if self.worker.is_none() {
            let cache = Arc::new(Mutex::new(super::InputCache::default()));
            self.worker = Some(Worker::spawn_sliced(
                "attnscope-attention",
                Some(ui.ctx().clone()),
                move |job: AttnJob, ctl| {
                    let cache = cache.clone();
                    Box::pin(async move {
                        let outcome = compute(&job, &cache, &ctl).await?;
                        Some(AttnResult { job, outcome })
                    })
                },
            ));
        }
        let Some(worker) = &self.worker else { return };
        let job = Self::job(shared);
        ui.horizontal(|ui| {
            ui.heading("Attention weights");
            ui.checkbox(&mut shared.settings.log_attention, "log colour scale")
                .on_hover_text(format!("Colour by log10 of the weight over {LOG_DECADES} decades below the largest weight"));
        });
        match &job {
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
            }
            Ok(j) => {
                if self.submitted.as_ref() != Some(j) {
                    worker.submit(j.clone());
                    self.submitted = Some(j.clone());
                }
            }
        }
        if let Some(r) = worker.poll() {
            if let Ok(img) = &r.outcome {
                let mut make = |name: &str, image: &std::sync::Arc<egui::ColorImage>| {
                    shared
                        .textures
                        .load(name, image.clone(), egui::TextureOptions::NEAREST)
                };
                self.textures = Some((
                    make("attn-dense", &img.dense),
                    make("attn-sparse", &img.sparse),
                ));
            }
            self.shown = Some(r);
        }
        if worker.busy() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("computing softmax weights…");
            });
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(100));
        }
        let Some(r) = &self.shown else { return };
        let img = match &r.outcome {
            Ok(img) => img,
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
                return;
            }
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("mass kept by {}: {:.1} %", img.label, 100.0 * img.mass_kept)).strong().size(16.0))
                .on_hover_text("Mean over queries of the dense softmax probability that falls on keys the mask allows");
            ui.separator();
            ui.label(format!("worst query keeps {:.1} %", 100.0 * img.mass_min));
            ui.separator();
            ui.label(format!("largest weight {:.3}", img.max_weight));
            ui.separator();
            ui.weak(r.job.input.describe());
        });
        let Some((td, ts)) = &self.textures else {
            return;
        };
        let n = r.job.params.n as f64;
        let avail = ui.available_size();
        let side = ((avail.x - 20.0) / 2.0).min(avail.y - 30.0).max(120.0);
        let link = egui::Id::unique("attention-zoom");
        ui.horizontal_top(|ui| {
            for (id, title, tex) in [
                ("attn-dense", "dense softmax".to_string(), td),
                ("attn-sparse", format!("{} softmax", img.label), ts),
            ] {
                ui.vertical(|ui| {
                    ui.label(RichText::new(title).strong());
                    Plot::new(id)
                        .link_axis(link, [true, true])
                        .invert_y(true)
                        .data_aspect(1.0)
                        .width(side)
                        .height(side)
                        .show_grid(false)
                        .x_axis_label("key j")
                        .y_axis_label("query i")
                        .default_x_bounds(0.0, n)
                        .default_y_bounds(0.0, n)
                        .label_formatter(|_| None)
                        .show(ui, |pu| {
                            pu.add(PlotImage::new(
                                "weights",
                                tex.id(),
                                PlotPoint::new(n / 2.0, n / 2.0),
                                egui::vec2(n as f32, n as f32),
                            ));
                        });
                });
            }
        });
    }
}
