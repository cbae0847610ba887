//! The export panel: the selected mask as PNG or `.npy` (written on the `attnscope-export`
//! thread with [`crate::export::write_mask`]) and a screenshot of the whole window as PNG.

use super::worker::Worker;
use super::{FileRequest, Shared};
use crate::export::PngOptions;
use crate::pattern::PatternParams;
use crate::render::Colormap;
use std::path::PathBuf;
use std::sync::mpsc;

/// One file to write.
pub struct ExportJob {
    params: PatternParams,
    path: PathBuf,
    opts: PngOptions,
}

/// The export section of the side panel.
pub struct ExportPanel {
    worker: Worker<ExportJob, Result<String, String>>,
    shots_tx: mpsc::Sender<Result<String, String>>,
    shots_rx: mpsc::Receiver<Result<String, String>>,
    shot_pending: bool,
    busy_since: Option<std::time::Instant>,
}

impl ExportPanel {
    /// Starts the export thread.
    pub fn new(ctx: &egui::Context) -> Self {
        let worker = Worker::spawn("attnscope-export", Some(ctx.clone()), |j: ExportJob, _| {
            let p = match j.params.build() {
                Ok(p) => p,
                Err(e) => return Some(Err(format!("cannot export: {e}"))),
            };
            Some(
                crate::export::write_mask(&p, &j.path, j.opts)
                    .map(|()| format!("saved {} to {}", p.label(), j.path.display()))
                    .map_err(|e| e.to_string()),
            )
        });
        let (shots_tx, shots_rx) = mpsc::channel();
        Self {
            worker,
            shots_tx,
            shots_rx,
            shot_pending: false,
            busy_since: None,
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
        self.busy_since = Some(std::time::Instant::now());
        self.worker.submit(ExportJob { params, path, opts });
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
                .add_enabled(!busy, egui::Button::new("Screenshot…"))
                .on_hover_text("Save the whole window as PNG (F12)")
                .clicked()
            {
                self.screenshot(&ui.ctx().clone(), shared);
            }
        });
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
            self.busy_since = None;
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
        let (save, shot) = ctx.input_mut(|i| {
            (
                i.consume_key(egui::Modifiers::COMMAND, egui::Key::S),
                i.consume_key(egui::Modifiers::NONE, egui::Key::F12),
            )
        });
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
    let [w, h] = image.size;
    let mut rgb = Vec::with_capacity(w * h * 3);
    for c in &image.pixels {
        let [r, g, b, _] = c.to_srgba_unmultiplied();
        rgb.extend_from_slice(&[r, g, b]);
    }
    crate::export::atomic_write(path, |out| {
        let mut enc = png::Encoder::new(out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        writer
            .write_image_data(&rgb)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(())
    })
    .map(|()| format!("saved a {w}×{h} screenshot to {}", path.display()))
    .map_err(|e| e.to_string())
}
