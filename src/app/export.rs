//! The export panel: the selected mask as PNG or `.npy` (written on the `attnscope-export`
//! thread with [`crate::export::write_mask`]), the open view as PNG at a chosen width (drawn
//! offscreen by [`super::offscreen`], painted and written on the same thread) and a screenshot
//! of the whole window as PNG.

use super::offscreen::{OffscreenFrame, MAX_VIEW_SIDE, MIN_VIEW_WIDTH};
use super::worker::Worker;
use super::{FileRequest, Shared};
use crate::export::PngOptions;
use crate::pattern::PatternParams;
use crate::render::Colormap;
use std::path::PathBuf;
use std::sync::mpsc;

/// One file to write.
pub enum ExportJob {
    /// The selected mask, as PNG or `.npy` by the extension.
    Mask {
        /// The pattern.
        params: PatternParams,
        /// Where to write.
        path: PathBuf,
        /// Scale, colours and grid of a PNG.
        opts: PngOptions,
    },
    /// A view drawn offscreen, to paint and write as PNG.
    View {
        /// The tessellated view.
        frame: Box<OffscreenFrame>,
        /// Where to write.
        path: PathBuf,
        /// The view's title.
        title: &'static str,
    },
}

/// Writes one file on the export thread; `None` when a newer job cancelled it.
fn write_job(job: ExportJob, ctl: &super::worker::Job) -> Option<Result<String, String>> {
    match job {
        ExportJob::Mask { params, path, opts } => Some(match params.build() {
            Err(e) => Err(format!("cannot export: {e}")),
            Ok(p) => crate::export::write_mask(&p, &path, opts)
                .map(|()| format!("saved {} to {}", p.label(), path.display()))
                .map_err(|e| e.to_string()),
        }),
        ExportJob::View { frame, path, title } => {
            let (image, report) = frame.paint(ctl)?;
            let [w, h] = image.size;
            let mut msg = format!("saved the {title} view ({w}×{h} px) to {}", path.display());
            let lost = report.missing_textures.len() + report.callbacks_skipped;
            if lost > 0 {
                msg += &format!(" ({lost} image(s) or custom drawing(s) could not be drawn)");
            }
            Some(save_png(&image, &path).map(|()| msg))
        }
    }
}

/// The export section of the side panel.
pub struct ExportPanel {
    worker: Worker<ExportJob, Result<String, String>>,
    shots_tx: mpsc::Sender<Result<String, String>>,
    shots_rx: mpsc::Receiver<Result<String, String>>,
    shot_pending: bool,
    view_requested: bool,
}

impl ExportPanel {
    /// Starts the export thread.
    pub fn new(ctx: &egui::Context) -> Self {
        let worker = Worker::spawn("attnscope-export", Some(ctx.clone()), write_job);
        let (shots_tx, shots_rx) = mpsc::channel();
        Self {
            worker,
            shots_tx,
            shots_rx,
            shot_pending: false,
            view_requested: false,
        }
    }

    /// Whether a file is being written.
    pub fn busy(&self) -> bool {
        self.worker.busy() || self.shot_pending
    }

    /// Asks for a path and writes the selected mask there.
    pub fn export_mask(&mut self, shared: &mut Shared, req: FileRequest) {
        let params = match shared.settings.selected_pattern() {
            Ok(p) => p.params().clone(),
            Err(e) => {
                shared.error(format!("cannot export: {e}"));
                return;
            }
        };
        let Some(path) = (shared.picker)(req) else {
            return;
        };
        let s = &shared.settings;
        let opts = PngOptions {
            scale: s.export_scale,
            colormap: Colormap::Gray,
            grid: s.export_grid.then_some(s.block),
        };
        shared.info(format!("writing {} …", path.display()));
        self.worker.submit(ExportJob::Mask { params, path, opts });
    }

    /// Notes that the open view should be saved as PNG: after this frame's view the app asks
    /// for a path, draws the view offscreen and hands it to [`Self::save_view`].
    pub fn request_view(&mut self) {
        self.view_requested = true;
    }

    /// Whether a view PNG was requested this frame (once).
    pub fn take_view_request(&mut self) -> bool {
        std::mem::take(&mut self.view_requested)
    }

    /// Paints and writes a view drawn offscreen, on the export thread.
    pub fn save_view(
        &mut self,
        frame: OffscreenFrame,
        path: PathBuf,
        title: &'static str,
        shared: &mut Shared,
    ) {
        let [w, h] = frame.size_px;
        shared.info(format!("drawing the {title} view at {w}×{h} px …"));
        self.worker.submit(ExportJob::View {
            frame: Box::new(frame),
            path,
            title,
        });
    }

    /// Asks for a path and saves a screenshot of the next frame there.
    pub fn screenshot(&mut self, ctx: &egui::Context, shared: &mut Shared) {
        let Some(path) = (shared.picker)(FileRequest::SaveScreenshot) else {
            return;
        };
        let tx = self.shots_tx.clone();
        let repaint = ctx.clone();
        self.shot_pending = true;
        ctx.request_screenshot(move |image| {
            let _ = tx.send(save_screenshot(&image, &path));
            repaint.request_repaint();
        });
        ctx.request_repaint();
    }

    /// Draws the export controls.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.heading("Export");
        let label = shared
            .settings
            .selected_pattern()
            .map(|p| p.label())
            .unwrap_or_else(|_| "invalid pattern".into());
        ui.label(format!("mask: {label}"));
        ui.horizontal(|ui| {
            ui.label("scale")
                .on_hover_text("Pixels per cell side in the PNG");
            ui.add(
                egui::DragValue::new(&mut shared.settings.export_scale)
                    .range(1..=64)
                    .suffix(" px/cell"),
            )
            .on_hover_text("Pixels per cell side in the PNG");
            ui.checkbox(&mut shared.settings.export_grid, "grid")
                .on_hover_text("Draw red block lines every B cells in the PNG");
        });
        let busy = self.busy();
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(!busy, egui::Button::new("Save PNG…"))
                .on_hover_text("Save the selected mask as PNG: row i = query i from the top, allowed cells white (Ctrl+S)")
                .clicked()
            {
                self.export_mask(shared, FileRequest::SaveMaskPng);
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Save .npy…"))
                .on_hover_text("Save the selected mask as a NumPy bool array of shape (n, n)")
                .clicked()
            {
                self.export_mask(shared, FileRequest::SaveMaskNpy);
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Save mask_mod .py…"))
                .on_hover_text("Save the selected pattern as a Python module defining a FlexAttention mask_mod(b, h, q_idx, kv_idx) (works with torch tensors and NumPy arrays)")
                .clicked()
            {
                self.export_mask(shared, FileRequest::SaveFile("mask_mod.py"));
            }
            if ui
                .button("Copy as FlexAttention mask_mod")
                .on_hover_text("Copy the Python mask_mod of the selected pattern to the clipboard, for torch.nn.attention.flex_attention.create_block_mask")
                .clicked()
            {
                match shared.settings.selected_pattern() {
                    Ok(p) => {
                        ui.ctx().copy_text(crate::export::flex::python_module(&p));
                        shared.info(format!("copied the FlexAttention mask_mod of {} to the clipboard", p.label()));
                    }
                    Err(e) => shared.error(format!("cannot copy: {e}")),
                }
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Screenshot…"))
                .on_hover_text("Save the whole window as PNG (F12)")
                .clicked()
            {
                self.screenshot(&ui.ctx().clone(), shared);
            }
        });
        ui.horizontal(|ui| {
            ui.label("view width")
                .on_hover_text("Width of the PNG of the open view, in pixels");
            ui.add(
                egui::DragValue::new(&mut shared.settings.export_view_px)
                    .range(MIN_VIEW_WIDTH..=MAX_VIEW_SIDE)
                    .speed(16)
                    .suffix(" px"),
            )
            .on_hover_text("Width of the PNG of the open view, in pixels");
            if let Some(r) = shared.view_rect {
                let x = shared.settings.export_view_px as f32
                    / (r.width() * ui.ctx().pixels_per_point()).max(1.0);
                ui.weak(format!("{x:.1}× the screen"));
            }
        });
        if ui
            .add_enabled(!busy, egui::Button::new("Save view PNG…"))
            .on_hover_text(
                "Save the open view (maps, block overlay, charts) as a PNG of the chosen width, \
                 drawn again at that resolution (Ctrl+Shift+S)",
            )
            .clicked()
        {
            self.request_view();
        }
        if busy {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("writing…");
            });
        }
    }

    /// Collects finished exports and handles the export shortcuts; call once per frame.
    pub fn after_frame(&mut self, ctx: &egui::Context, shared: &mut Shared) {
        if let Some(r) = self.worker.poll() {
            match r {
                Ok(m) => shared.info(m),
                Err(e) => shared.error(e),
            }
        }
        if let Ok(r) = self.shots_rx.try_recv() {
            self.shot_pending = false;
            match r {
                Ok(m) => shared.info(m),
                Err(e) => shared.error(e),
            }
        }
        if self.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        if self.busy() || ctx.egui_wants_keyboard_input() {
            return;
        }
        let (view, save, shot) = ctx.input_mut(|i| {
            (
                i.consume_key(
                    egui::Modifiers::COMMAND | egui::Modifiers::SHIFT,
                    egui::Key::S,
                ),
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::S),
                i.consume_key(egui::Modifiers::NONE, egui::Key::F12),
            )
        });
        if view {
            self.request_view();
        }
        if save {
            self.export_mask(shared, FileRequest::SaveMaskPng);
        }
        if shot {
            self.screenshot(ctx, shared);
        }
    }
}

/// Writes an egui screenshot as an RGB PNG (atomically).
pub fn save_screenshot(image: &egui::ColorImage, path: &std::path::Path) -> Result<String, String> {
    save_png(image, path)?;
    let [w, h] = image.size;
    Ok(format!("saved a {w}×{h} screenshot to {}", path.display()))
}

/// Writes an egui image as an RGB PNG (atomically).
fn save_png(image: &egui::ColorImage, path: &std::path::Path) -> Result<(), String> {
    let [w, h] = image.size;
    // Row by row: a 16384-px view never needs a second full-size buffer.
    crate::export::write_rgb_png(path, w, h, |push| {
        let mut row = Vec::with_capacity(w * 3);
        for pixels in image.pixels.chunks_exact(w.max(1)) {
            row.clear();
            for c in pixels {
                let [r, g, b, _] = c.to_srgba_unmultiplied();
                row.extend_from_slice(&[r, g, b]);
            }
            push(&row)?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}
