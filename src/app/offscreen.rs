//! "Save view PNG": draws the current view again, offscreen, at a chosen resolution.
//!
//! The view runs in a fresh egui context that is given a copy of the window's memory (so plot
//! zoom, theme, zoom factor and open sections are the same) and the same size in points as the
//! view has on screen, but more pixels per point. Its shapes are tessellated there and painted
//! on the CPU by [`super::soft`] on the export thread. The result is the view as seen
//! on screen, sharp at any resolution (text and lines are re-rasterised, not scaled up; a view
//! that offers it, like the Masks maps, redraws its images at the PNG's density through
//! [`View::sharper_images`]). The empty part of the panel below the view's content is left
//! out.

use super::soft::{self, PaintReport, SoftTextures};
use super::worker::Job;
use super::{Shared, View};
use egui::epaint::ClippedPrimitive;
use egui::{Color32, ColorImage, Rect, Vec2};

/// Largest side of a view PNG, in pixels.
pub const MAX_VIEW_SIDE: usize = 16384;

/// Smallest width of a view PNG, in pixels.
pub const MIN_VIEW_WIDTH: usize = 256;

/// Passes run offscreen before the one that is kept (grids and plots size themselves from the
/// previous pass).
const WARMUP_PASSES: usize = 2;

/// Redraws some of a view's images at the PNG's resolution, replacing textures by id (UVs
/// are relative, so a larger image of the same region drops in). Runs on the export thread.
pub type Sharpen = Box<dyn FnOnce(&mut SoftTextures, &Job) + Send>;

/// A view laid out and tessellated offscreen, ready to paint.
pub struct OffscreenFrame {
    primitives: Vec<ClippedPrimitive>,
    textures: SoftTextures,
    sharpen: Option<Sharpen>,
    /// Image size in pixels, `[width, height]`.
    pub size_px: [usize; 2],
    /// Pixels per point of the image.
    pub pixels_per_point: f32,
    clear: Color32,
}

impl OffscreenFrame {
    /// Paints the frame on the CPU (the slow part: run it off the UI thread), leaving out the
    /// empty rows of the panel below the content (keeping a margin of 8 points). Images are
    /// first redrawn at the PNG's resolution where the view offers it; `None` when `ctl` is
    /// cancelled meanwhile.
    pub fn paint(mut self, ctl: &Job) -> Option<(ColorImage, PaintReport)> {
        if let Some(sharpen) = self.sharpen.take() {
            sharpen(&mut self.textures, ctl);
        }
        if ctl.cancelled() {
            return None;
        }
        let (image, report) = soft::paint(
            &self.primitives,
            &self.textures,
            self.size_px,
            self.pixels_per_point,
            self.clear,
        );
        let [w, h] = image.size;
        let empty = image
            .pixels
            .chunks_exact(w.max(1))
            .rev()
            .take_while(|row| row.iter().all(|c| *c == self.clear))
            .count();
        let margin = (8.0 * self.pixels_per_point).round() as usize;
        let keep = (h - empty + margin).min(h).max(1);
        if keep == h {
            return Some((image, report));
        }
        let mut pixels = image.pixels;
        pixels.truncate(keep * w);
        Some((ColorImage::new([w, keep], pixels), report))
    }
}

/// The pixel size of a view of `size_pt` points exported `width_px` wide, or why it cannot be.
pub fn image_size(size_pt: Vec2, width_px: usize) -> Result<([usize; 2], f32), String> {
    if !(size_pt.x >= 1.0 && size_pt.y >= 1.0) {
        return Err("the view has no size yet: show it once, then save".into());
    }
    if !(MIN_VIEW_WIDTH..=MAX_VIEW_SIDE).contains(&width_px) {
        return Err(format!(
            "view width {width_px} px is out of range: choose {MIN_VIEW_WIDTH}…{MAX_VIEW_SIDE} px"
        ));
    }
    let ppp = width_px as f32 / size_pt.x;
    let height_px = (size_pt.y * ppp).round().max(1.0) as usize;
    if height_px > MAX_VIEW_SIDE {
        return Err(format!(
            "the view would be {width_px}×{height_px} px, over {MAX_VIEW_SIDE} px: choose a smaller width"
        ));
    }
    Ok(([width_px, height_px], ppp))
}

/// Runs `view` offscreen in a rectangle of `size_pt` points, `width_px` pixels wide, with the
/// window context `main`'s memory and style. Restores every part of `shared` a view writes
/// while drawing (zoom, hover, sizes), so the window is unaffected.
pub fn render_view(
    main: &egui::Context,
    view: &mut dyn View,
    shared: &mut Shared,
    size_pt: Vec2,
    width_px: usize,
) -> Result<OffscreenFrame, String> {
    let (size_px, ppp) = image_size(size_pt, width_px)?;
    let ctx = egui::Context::default();
    let memory = main.memory(|m| m.clone());
    ctx.memory_mut(|m| *m = memory);
    ctx.all_styles_mut(|s| s.animation_time = 0.0);
    let zoom = main.zoom_factor();
    let mut input = egui::RawInput {
        screen_rect: Some(Rect::from_min_size(egui::Pos2::ZERO, size_pt)),
        max_texture_side: Some(MAX_VIEW_SIDE),
        time: Some(main.input(|i| i.time)),
        ..Default::default()
    };
    input
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .native_pixels_per_point = Some(ppp / zoom);

    let saved = (
        shared.plot_px,
        shared.visible.clone(),
        shared.matrix_rect,
        shared.hover,
        shared.pinned_row,
    );
    let mut textures = SoftTextures::default();
    let mut pass = || {
        let mut out = ctx.run_ui(input.clone(), |ui| {
            egui::CentralPanel::default().show(ui, |ui| view.ui(ui, shared));
        });
        textures.apply(std::mem::take(&mut out.textures_delta));
        out
    };
    for _ in 0..WARMUP_PASSES {
        pass();
    }
    let out = pass();
    (
        shared.plot_px,
        shared.visible,
        shared.matrix_rect,
        shared.hover,
        shared.pinned_row,
    ) = saved;
    // The offscreen context owns only its font atlas; every other image is the window's.
    textures.overlay(shared.textures.soft_textures());
    let sharpen = view.sharper_images(shared, ppp / main.pixels_per_point());
    let clear = ctx.global_style().visuals.panel_fill;
    let primitives = ctx.tessellate(out.shapes, out.pixels_per_point);
    Ok(OffscreenFrame {
        primitives,
        textures,
        sharpen,
        size_px,
        pixels_per_point: out.pixels_per_point,
        clear,
    })
}
