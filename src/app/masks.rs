//! The Masks view: atrous | local | sparse (| selected) heatmaps side by side with one shared
//! zoom, their counts, a hover inspector, a pinned query row and the block overlay.
//!
//! Axes: key j across (left → right), query i down (top → bottom), one plot unit per token.
//! The images come finished from the masks worker ([`super::compute`]); this view only
//! uploads them as `NEAREST` textures when a new result arrives.

use super::compute::{
    background, member_rgb, rgb, MapOut, ALLOWED_RGB, ATROUS_RGB, BOTH_RGB, EMPTY_RGBA, FULL_RGBA,
    LOCAL_RGB, PARTIAL_RGBA,
};
use super::settings::MapId;
use super::{Shared, View};
use crate::pattern::Pattern;
use crate::stats::group;
use egui::{Color32, RichText};
use egui_plot::{Line, Plot, PlotImage, PlotPoint, PlotPoints};
use std::collections::HashMap;

/// Highlight colour of the pinned query's keys (cyan).
pub const PIN_RGB: [u8; 3] = [0, 229, 255];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Layer {
    Full,
    Region,
    BlocksFull,
    BlocksRegion,
}

/// A texture and the `(rows, cols)` of the matrix it covers.
type Uploaded = (
    egui::TextureHandle,
    std::ops::Range<usize>,
    std::ops::Range<usize>,
);

/// State of the Masks view: uploaded textures and the result they came from.
#[derive(Default)]
pub struct MasksView {
    textures: HashMap<(MapId, Layer), Uploaded>,
    /// Address of the result the textures were made from.
    uploaded: usize,
    /// `n` the plots were last shown at (a change resets the zoom).
    shown_n: usize,
}

fn swatch(ui: &mut egui::Ui, c: Color32, text: &str) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    ui.painter().rect_filled(rect, 2.0, c);
    ui.label(text);
}

/// A percentage with enough digits for tiny densities.
/// Never rounds a fraction below 1 up to 100 % ([`crate::stats::percent_text`]).
pub fn pct(x: f64) -> String {
    let p = 100.0 * x;
    let digits = if p == 0.0 || p >= 10.0 {
        1
    } else if p >= 0.1 {
        2
    } else {
        4
    };
    format!("{} %", crate::stats::percent_text(x, digits))
}

/// The pattern's title with its parameters, e.g. `atrous(k=4)`.
fn map_title(m: &MapOut) -> String {
    match &m.pattern {
        Ok(p) => p.label(),
        Err(_) => m.id.title().to_string(),
    }
}

impl MasksView {
    fn upload(
        &mut self,
        store: &mut super::textures::TextureStore,
        result: &super::compute::MaskResult,
    ) {
        let ptr = result as *const _ as usize;
        if ptr == self.uploaded {
            return;
        }
        self.uploaded = ptr;
        let mut keep = Vec::new();
        for m in &result.maps {
            for (layer, img) in [
                (Layer::Full, &m.full),
                (Layer::Region, &m.region),
                (Layer::BlocksFull, &m.blocks_full),
                (Layer::BlocksRegion, &m.blocks_region),
            ] {
                let Some(img) = img else { continue };
                keep.push((m.id, layer));
                let image = img.image.clone();
                let name = format!("mask-{:?}-{:?}", m.id, layer);
                match self.textures.get_mut(&(m.id, layer)) {
                    Some((tex, rows, cols)) => {
                        store.set(tex, image, egui::TextureOptions::NEAREST);
                        *rows = img.rows.clone();
                        *cols = img.cols.clone();
                    }
                    None => {
                        let tex = store.load(&name, image, egui::TextureOptions::NEAREST);
                        self.textures
                            .insert((m.id, layer), (tex, img.rows.clone(), img.cols.clone()));
                    }
                }
            }
        }
        self.textures.retain(|k, _| keep.contains(k));
    }

    fn image(&self, id: MapId, layer: Layer, name: &str) -> Option<PlotImage> {
        let (tex, rows, cols) = self.textures.get(&(id, layer))?;
        let center = PlotPoint::new(
            (cols.start + cols.end) as f64 / 2.0,
            (rows.start + rows.end) as f64 / 2.0,
        );
        Some(PlotImage::new(
            name.to_string(),
            tex.id(),
            center,
            egui::vec2(cols.len() as f32, rows.len() as f32),
        ))
    }

    /// One heatmap; returns `(hovered cell, clicked row, visible bounds, plot width px,
    /// matrix rect on screen)`.
    #[allow(clippy::type_complexity)]
    fn plot(
        &self,
        ui: &mut egui::Ui,
        m: &MapOut,
        n: usize,
        side: f32,
        shared: &Shared,
        reset: bool,
    ) -> (
        Option<(usize, usize)>,
        Option<usize>,
        egui_plot::PlotBounds,
        f32,
        egui::Rect,
    ) {
        let link = egui::Id::unique("masks-zoom");
        let nf = n as f64;
        let int_fmt = |mark: egui_plot::GridMark, _: &std::ops::RangeInclusive<f64>| {
            // Tick values come from float steps (9.999999999 for 10): round, then check.
            let v = mark.value;
            let r = v.round();
            if (v - r).abs() <= 1e-6 * r.abs().max(1.0) && r >= 0.0 {
                format!("{}", r as i64)
            } else {
                String::new()
            }
        };
        let mut plot = Plot::new(("mask-plot", m.id as u8))
            .link_axis(link, [true, true])
            .link_cursor(link, [true, true])
            .invert_y(true)
            .data_aspect(1.0)
            .show_grid(false)
            .width(side)
            .height(side)
            // Integer labels shown from 32 points apart (egui_plot's default of 60 leaves a
            // 400-point map of 64 tokens with only "0" under it).
            .custom_x_axes(vec![egui_plot::AxisHints::new_x()
                .label("key j")
                .formatter(int_fmt)
                .label_spacing(32.0..=48.0)])
            .y_axis_label("query i")
            .y_axis_formatter(int_fmt)
            .default_x_bounds(0.0, nf)
            .default_y_bounds(0.0, nf)
            .allow_double_click_reset(true)
            .allow_boxed_zoom(false)
            .set_margin_fraction(egui::Vec2::ZERO)
            .label_formatter(|_| None)
            .show_x(false)
            .show_y(false);
        if reset {
            plot = plot.reset();
        }
        let pattern = m.pattern.as_ref().ok().cloned();
        let block = shared.settings.block;
        let show_blocks = shared.settings.show_blocks;
        let pinned = shared.pinned_row;
        let full = self.image(m.id, Layer::Full, m.id.title());
        let region = self.image(m.id, Layer::Region, m.id.title());
        let bfull = show_blocks
            .then(|| self.image(m.id, Layer::BlocksFull, "blocks"))
            .flatten();
        let bregion = show_blocks
            .then(|| self.image(m.id, Layer::BlocksRegion, "blocks"))
            .flatten();
        let dark = ui.visuals().dark_mode;
        let resp = plot.show(ui, |pu| {
            for img in [full, region, bfull, bregion].into_iter().flatten() {
                pu.add(img.allow_hover(false));
            }
            let b = pu.plot_bounds();
            if show_blocks {
                grid_lines(pu, &b, n, block, dark);
            }
            if let (Some(i), Some(p)) = (pinned, pattern.as_ref()) {
                pin_overlay(pu, &b, p, i);
            }
            let mut hovered = None;
            let mut clicked = None;
            if pu.response().hovered() {
                if let Some(pt) = pu.pointer_coordinate() {
                    if pt.x >= 0.0 && pt.y >= 0.0 && pt.x < nf && pt.y < nf {
                        let (i, j) = (pt.y as usize, pt.x as usize);
                        hovered = Some((i, j));
                        if pu.response().clicked() {
                            clicked = Some(i);
                        }
                    }
                }
            }
            (hovered, clicked)
        });
        let (hovered, clicked) = resp.inner;
        let w = resp.response.rect.width() * ui.ctx().pixels_per_point();
        if let (Some((i, j)), Some(p)) = (hovered, m.pattern.as_ref().ok()) {
            resp.response.clone().on_hover_ui_at_pointer(|ui| {
                ui.label(format!("query i = {i}, key j = {j}"));
                ui.label(p.reason(i, j).describe());
            });
        }
        let matrix = resp
            .transform
            .rect_from_values(&PlotPoint::new(0.0, 0.0), &PlotPoint::new(nf, nf));
        (hovered, clicked, *resp.transform.bounds(), w, matrix)
    }
}

/// Red/grey block grid lines when at most 64 blocks are visible across.
fn grid_lines(
    pu: &mut egui_plot::PlotUi<'_>,
    b: &egui_plot::PlotBounds,
    n: usize,
    block: usize,
    dark: bool,
) {
    let (x0, x1) = (b.min()[0].max(0.0), b.max()[0].min(n as f64));
    let (y0, y1) = (b.min()[1].max(0.0), b.max()[1].min(n as f64));
    let visible = ((x1 - x0).max(y1 - y0) / block as f64).ceil();
    if !(1.0..=64.0).contains(&visible) {
        return;
    }
    let colour = if dark {
        Color32::from_rgba_unmultiplied(255, 255, 255, 90)
    } else {
        Color32::from_rgba_unmultiplied(0, 0, 0, 90)
    };
    let nf = n as f64;
    let mut t = block;
    while t < n {
        let v = t as f64;
        if v >= x0 && v <= x1 {
            pu.line(
                Line::new("grid", PlotPoints::new(vec![[v, 0.0], [v, nf]]))
                    .color(colour)
                    .width(1.0)
                    .allow_hover(false),
            );
        }
        if v >= y0 && v <= y1 {
            pu.line(
                Line::new("grid", PlotPoints::new(vec![[0.0, v], [nf, v]]))
                    .color(colour)
                    .width(1.0)
                    .allow_hover(false),
            );
        }
        t += block;
    }
}

/// The pinned row: a band over query `i` with its allowed keys in cyan.
fn pin_overlay(pu: &mut egui_plot::PlotUi<'_>, b: &egui_plot::PlotBounds, p: &Pattern, i: usize) {
    let n = p.n();
    let nf = n as f64;
    // At least ~3 screen pixels thick.
    let px_per_unit = pu.transform().dpos_dvalue_y().abs().max(1e-9);
    let thick = (3.0 / px_per_unit).max(1.0);
    let y0 = i as f64 + 0.5 - thick / 2.0;
    let y1 = i as f64 + 0.5 + thick / 2.0;
    let x0 = b.min()[0].max(0.0).floor() as usize;
    let x1 = (b.max()[0].min(nf).ceil() as usize).max(x0 + 1).min(n);
    let band = Color32::from_rgba_unmultiplied(0, 0, 0, 150);
    pu.polygon(
        egui_plot::Polygon::new(
            "pinned",
            PlotPoints::new(vec![[0.0, y0], [nf, y0], [nf, y1], [0.0, y1]]),
        )
        .fill_color(band)
        .stroke(egui::Stroke::NONE)
        .allow_hover(false),
    );
    // Runs of allowed keys in the visible columns, at most ~800 segments.
    let parts = (x1 - x0).min(800);
    let cyan = rgb(PIN_RGB);
    let mut run: Option<f64> = None;
    let edge = |t: usize| x0 + (t * (x1 - x0)) / parts;
    let y = i as f64 + 0.5;
    let px_per_unit_x = pu.transform().dpos_dvalue_x().abs().max(1e-9);
    let mut segs = Vec::new();
    for t in 0..=parts {
        let on = t < parts && p.count_in_range(i, edge(t)..edge(t + 1)) > 0;
        match (on, run) {
            (true, None) => run = Some(edge(t) as f64),
            (false, Some(s)) => {
                segs.push((s, edge(t) as f64));
                run = None;
            }
            _ => {}
        }
    }
    for (s, e) in segs {
        // Keep single keys visible: at least 2 px wide.
        let e = e.max(s + 2.0 / px_per_unit_x);
        pu.line(
            Line::new("pinned", PlotPoints::new(vec![[s, y], [e, y]]))
                .color(cyan)
                .width((thick * pu.transform().dpos_dvalue_y().abs()).clamp(2.0, 8.0) as f32)
                .allow_hover(false),
        );
    }
}

/// The statistics under one map.
fn stats_ui(ui: &mut egui::Ui, m: &MapOut, d: usize) {
    let grid = egui::Grid::new(("stats", m.id as u8))
        .num_columns(2)
        .spacing([12.0, 2.0]);
    grid.show(ui, |ui| match (&m.pattern, &m.stats) {
        (Err(e), _) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("error: {e}"));
            ui.end_row();
        }
        (Ok(_), Ok(s)) => {
            ui.label("nnz").on_hover_text("Allowed (query, key) pairs");
            ui.label(group(s.nnz));
            ui.end_row();
            ui.label("density").on_hover_text("nnz / n²");
            ui.label(pct(s.density));
            ui.end_row();
            ui.label("useful FLOPs").on_hover_text(format!("4·d·nnz with d = {d}"));
            ui.label(group(s.flops_useful));
            ui.end_row();
            ui.label("vs dense").on_hover_text("dense FLOPs / useful FLOPs");
            ui.label(format!("{:.2}× fewer", s.flops_dense as f64 / s.flops_useful.max(1) as f64));
            ui.end_row();
            ui.label("block density").on_hover_text(format!(
                "Cells inside visited B × B tiles / n² (B = {}): what a block-sparse kernel computes",
                s.block
            ));
            ui.label(format!("{} (B = {})", pct(s.block_density), s.block));
            ui.end_row();
            ui.label("tiles full/part/empty")
                .on_hover_text("full / partial / empty B × B tiles");
            ui.label(format!(
                "{} / {} / {}",
                group(s.blocks_full),
                group(s.blocks_partial),
                group(s.blocks_empty)
            ))
            .on_hover_text("full / partial / empty B × B tiles");
            ui.end_row();
        }
        (Ok(p), Err(why)) => {
            ui.label("nnz");
            ui.label(group(m.nnz));
            ui.end_row();
            ui.label("density");
            let n = p.n() as f64;
            ui.label(pct(m.nnz as f64 / (n * n)));
            ui.end_row();
            ui.label("useful FLOPs");
            ui.label(group(4 * d as u64 * m.nnz));
            ui.end_row();
            ui.label("block density");
            ui.weak(why);
            ui.end_row();
        }
    });
}

/// One token strip: which keys query `i` sees, across the whole sequence.
fn token_strip(ui: &mut egui::Ui, p: &Pattern, i: usize, colour: Color32, dark: bool) {
    let n = p.n();
    let width = ui.available_width().max(50.0);
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(width, 16.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, rgb(background(dark)));
    let cells = n.min(rect.width() as usize).max(1);
    let w = rect.width() / cells as f32;
    let gap = if n <= cells / 3 { 1.0 } else { 0.0 };
    let edge = |t: usize| t * n / cells;
    for t in 0..cells {
        if p.count_in_range(i, edge(t)..edge(t + 1).max(edge(t) + 1)) > 0 {
            let x = rect.left() + t as f32 * w;
            painter.rect_filled(
                egui::Rect::from_min_max(
                    egui::pos2(x, rect.top()),
                    egui::pos2(x + w - gap, rect.bottom()),
                ),
                0.0,
                colour,
            );
        }
    }
    // The query itself.
    let xq = rect.left() + (i as f32 + 0.5) / n as f32 * rect.width();
    painter.line_segment(
        [
            egui::pos2(xq, rect.top() - 2.0),
            egui::pos2(xq, rect.bottom() + 2.0),
        ],
        egui::Stroke::new(2.0, if dark { Color32::WHITE } else { Color32::BLACK }),
    );
    if let Some(pos) = resp.hover_pos() {
        let j =
            (((pos.x - rect.left()) / rect.width()) * n as f32).clamp(0.0, (n - 1) as f32) as usize;
        resp.on_hover_text(format!("key j = {j}: {}", p.reason(i, j).describe()));
    }
}

fn map_colour(id: MapId) -> Color32 {
    match id {
        MapId::Atrous => rgb(ATROUS_RGB),
        MapId::Local => rgb(LOCAL_RGB),
        MapId::Sparse => rgb(BOTH_RGB),
        MapId::Selected => rgb(PIN_RGB),
    }
}

/// Largest side of a mask image redrawn for a view PNG, in pixels.
const MAX_SHARP_SIDE: usize = 8192;

impl View for MasksView {
    fn title(&self) -> &'static str {
        "Masks"
    }

    /// The maps again at the PNG's pixel density (up to one pixel per cell), so a 4K PNG of
    /// n = 65,536 is not the on-screen 1024-pixel image scaled up.
    fn sharper_images(&self, shared: &Shared, scale: f32) -> Option<super::offscreen::Sharpen> {
        let result = shared.masks.as_ref()?;
        let n = result.job.maps.first()?.1.n;
        let side = ((shared.plot_px as f32 * scale).ceil() as usize)
            .min(n)
            .min(MAX_SHARP_SIDE);
        if side <= result.job.side {
            return None; // the on-screen images already have a pixel per cell, or more
        }
        let mut job = result.job.clone();
        job.side = side;
        if let Some(r) = &mut job.region {
            r.width = r.cols.len().min(side);
            r.height = r.rows.len().min(side);
        }
        let ids: HashMap<(MapId, Layer), egui::TextureId> = self
            .textures
            .iter()
            .map(|(key, (tex, _, _))| (*key, tex.id()))
            .collect();
        Some(Box::new(move |textures, ctl| {
            let mut cache = super::compute::MaskCache::default();
            let sharp = super::compute::run_mask_job(job, &mut cache, ctl);
            let Some(sharp) = super::worker::run_to_end(sharp) else {
                return;
            };
            for m in sharp.maps {
                for (layer, img) in [
                    (Layer::Full, m.full),
                    (Layer::Region, m.region),
                    (Layer::BlocksFull, m.blocks_full),
                    (Layer::BlocksRegion, m.blocks_region),
                ] {
                    if let (Some(img), Some(id)) = (img, ids.get(&(m.id, layer))) {
                        textures.insert(*id, img.image, egui::TextureOptions::NEAREST);
                    }
                }
            }
        }))
    }

    fn hint(&self) -> &'static str {
        "atrous | local | sparse heatmaps with counts, hover inspector and block overlay"
    }

    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(result) = shared.masks.clone() else {
            ui.spinner();
            return;
        };
        self.upload(&mut shared.textures, &result);
        let n = result.job.maps.first().map_or(1, |(_, p)| p.n).max(1);
        let reset = n != self.shown_n;
        self.shown_n = n;
        let dark = ui.visuals().dark_mode;
        let k = result.maps.len().max(1);
        let spacing = ui.spacing().item_spacing.x;
        let avail = ui.available_size();
        let col_w = ((avail.x - spacing * (k as f32 - 1.0)) / k as f32).max(120.0);
        let side = col_w.min(avail.y - 260.0).max(120.0);
        let selected = shared.settings.selected_map();
        let mut hovered: Option<(usize, usize)> = None;
        let mut clicked: Option<usize> = None;
        let mut bounds = None;
        ui.horizontal_top(|ui| {
            for (t, m) in result.maps.iter().enumerate() {
                ui.allocate_ui(egui::vec2(col_w, avail.y), |ui| {
                    ui.set_width(col_w);
                    ui.vertical(|ui| {
                        ui.horizontal(|ui| {
                            let mut title = RichText::new(map_title(m)).strong();
                            if m.id == selected {
                                title = title.underline();
                            }
                            ui.label(title).on_hover_text(if m.id == selected {
                                "the selected pattern (exported by Save PNG)"
                            } else {
                                "always shown: the seed's atrous | local | sparse"
                            });
                        });
                        ui.horizontal(|ui| match m.id {
                            MapId::Sparse => {
                                swatch(ui, rgb(LOCAL_RGB), "local only");
                                swatch(ui, rgb(ATROUS_RGB), "atrous only");
                                swatch(ui, rgb(BOTH_RGB), "both");
                            }
                            MapId::Atrous => swatch(ui, rgb(ATROUS_RGB), "|i − j| mod k = 0"),
                            MapId::Local => swatch(ui, rgb(LOCAL_RGB), "|i − j| ≤ w"),
                            MapId::Selected => match &m.pattern {
                                Ok(p) if p.member_labels().len() > 1 => {
                                    for (x, label) in p.member_labels().iter().enumerate() {
                                        swatch(ui, rgb(member_rgb(x)), label);
                                    }
                                }
                                _ => {
                                    ui.label(
                                        RichText::new(format!(
                                            "colormap {}",
                                            shared.settings.colormap.name()
                                        ))
                                        .small(),
                                    );
                                }
                            },
                        });
                        let (h, c, b, w, rect) = self.plot(ui, m, n, side, shared, reset);
                        if h.is_some() {
                            hovered = h;
                        }
                        if c.is_some() {
                            clicked = c;
                        }
                        if t == 0 {
                            bounds = Some(b);
                            shared.plot_px = w as usize;
                            shared.matrix_rect = Some(rect);
                        }
                        stats_ui(ui, m, shared.settings.d);
                    });
                });
            }
        });
        if shared.settings.show_blocks {
            ui.horizontal(|ui| {
                ui.label(RichText::new("block overlay:").small());
                let c = |v: [u8; 4]| rgb([v[0], v[1], v[2]]);
                swatch(ui, c(FULL_RGBA), "full tile (no mask needed)");
                swatch(ui, c(PARTIAL_RGBA), "partial tile (masked)");
                swatch(ui, c(EMPTY_RGBA), "empty tile (skipped)");
            });
        }
        if let Some(b) = bounds {
            let nf = n as f64;
            let r0 = b.min()[1].clamp(0.0, nf).floor() as usize;
            let r1 = b.max()[1].clamp(0.0, nf).ceil() as usize;
            let c0 = b.min()[0].clamp(0.0, nf).floor() as usize;
            let c1 = b.max()[0].clamp(0.0, nf).ceil() as usize;
            shared.visible = (r1 > r0 && c1 > c0).then_some((r0..r1, c0..c1));
        }
        if let Some(i) = clicked {
            shared.pinned_row = if shared.pinned_row == Some(i) {
                None
            } else {
                Some(i)
            };
        }
        shared.hover = hovered;
        ui.separator();
        self.inspector(ui, shared, &result.maps, dark);
    }
}

impl MasksView {
    fn inspector(&self, ui: &mut egui::Ui, shared: &Shared, maps: &[MapOut], dark: bool) {
        let ok = |ui: &egui::Ui, allowed: bool| {
            if allowed {
                rgb(ALLOWED_RGB)
            } else {
                ui.visuals().weak_text_color()
            }
        };
        egui::ScrollArea::vertical().id_salt("inspector").show(ui, |ui| {
            match shared.hover {
                Some((i, j)) => {
                    ui.label(
                        RichText::new(format!(
                            "query i = {i} · key j = {j} · distance i − j = {}",
                            i as i64 - j as i64
                        ))
                        .strong(),
                    );
                    egui::Grid::new("why").num_columns(2).show(ui, |ui| {
                        for m in maps {
                            if let Ok(p) = &m.pattern {
                                if i < p.n() && j < p.n() {
                                    let r = p.reason(i, j);
                                    ui.label(p.label());
                                    ui.colored_label(ok(ui, r.allowed()), r.describe());
                                    ui.end_row();
                                }
                            }
                        }
                    });
                }
                None => {
                    ui.weak("Hover a cell to see why it is allowed · click to pin its query row · scroll to zoom, drag to pan, double-click to reset");
                }
            }
            if let Some(i) = shared.pinned_row {
                ui.add_space(4.0);
                ui.label(RichText::new(format!("pinned query i = {i}: the keys it sees (Esc or click it again to unpin)")).strong());
                for m in maps {
                    let Ok(p) = &m.pattern else { continue };
                    if i >= p.n() {
                        continue;
                    }
                    ui.horizontal(|ui| {
                        ui.add_sized(
                            [230.0, 18.0],
                            egui::Label::new(format!(
                                "{}: {} of {}",
                                p.label(),
                                group(p.row_nnz(i)),
                                group(p.n() as u64)
                            )),
                        );
                        token_strip(ui, p, i, map_colour(m.id), dark);
                    });
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::pct;
    use crate::pattern::{PatternKind, PatternParams};

    #[test]
    fn pct_never_rounds_a_partial_coverage_up_to_100() {
        // sparse(k = 64, w = 32), n = 4096: two layers leave 992 pairs unreached.
        let p = PatternParams::new(PatternKind::Sparse, 4096)
            .stride(64)
            .window(32)
            .build()
            .unwrap();
        let r = crate::reach::coverage(&p, 2, 3).unwrap();
        let all = 4096u64 * 4096;
        assert_eq!(all - r.layers[1].reachable_pairs, 992);
        assert_eq!(pct(r.layers[1].coverage), "99.99 %");
        assert_eq!(r.layers_to_full, Some(3));
        assert_eq!(pct(1.0), "100.0 %");
        assert_eq!(pct(0.5), "50.0 %");
        assert_eq!(pct(0.0), "0.0 %");
        // A tiny non-zero share is never shown as 0.
        assert_eq!(pct(1e-9), "0.0000001 %");
        assert_eq!(pct(1.0 - 1e-15), "99.999999999999 %");
    }
}
