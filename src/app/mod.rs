//! The desktop app (eframe/egui): a controls side panel and one tab per view.
//!
//! Each view is a plain state struct in its own file implementing [`View`]; views read and
//! edit only the [`Shared`] state (settings, worker results, pinned query), never each other.
//! Heavy work runs on named worker threads ([`worker::Worker`]) that cancel on new settings.
//!
//! Adding a view: write `src/app/my_view.rs` with a struct implementing [`View`], then add
//! `mod my_view;` and one line to [`all_views`].

mod attention;
pub mod compute;
mod controls;
pub mod dialogs;
mod export;
mod kernels;
mod masks;
#[cfg(not(target_arch = "wasm32"))]
pub mod model_view;
pub mod offscreen;
pub mod platform;
pub mod reach_view;
pub mod settings;
pub mod soft;
pub mod sweep_view;
pub mod teach_view;
pub mod textures;
pub mod worker;

pub use settings::{InputChoice, MapId, Settings, ThemeChoice};

use compute::{MaskJob, MaskResult, Region};
use std::path::PathBuf;
use std::sync::Arc;

/// Key under which the settings are saved in eframe's storage.
pub const STORAGE_KEY: &str = "attnscope.settings";

/// Largest side of a whole-matrix mask image, in pixels (also capped by the GPU's limit).
pub const MAX_IMAGE_SIDE: usize = 1024;

/// One tab of the main area.
pub trait View {
    /// The tab's title (also its saved id).
    fn title(&self) -> &'static str;
    /// One-line description shown as the tab's tooltip.
    fn hint(&self) -> &'static str;
    /// Draws the view and edits the shared state.
    fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared);
    /// Whether the view waits for background work (tests wait until it is false).
    fn busy(&self) -> bool {
        false
    }
    /// For "Save view PNG" at `scale` × the window's pixel density: work that redraws the
    /// view's images sharper for the PNG (run on the export thread, replacing textures by id).
    /// `None` when the on-screen images are already exact.
    fn sharper_images(&self, _shared: &Shared, _scale: f32) -> Option<offscreen::Sharpen> {
        None
    }
}

/// Every view, in tab order (tab `t` has shortcut key `t + 1`).
pub fn all_views() -> Vec<Box<dyn View>> {
    let views: Vec<Box<dyn View>> = vec![
        Box::new(masks::MasksView::default()),
        Box::new(kernels::KernelsView::default()),
        Box::new(attention::AttentionView::default()),
        Box::new(reach_view::ReachView::default()),
        Box::new(sweep_view::SweepView::default()),
        Box::new(teach_view::TeachView::default()),
    ];
    // Real models read files through mmap: desktop only (README "Run it in a browser").
    #[cfg(not(target_arch = "wasm32"))]
    let views = {
        let mut views = views;
        views.push(Box::new(model_view::ModelView::default()));
        views
    };
    views
}

/// What a file dialog is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileRequest {
    /// Where to save the mask as PNG.
    SaveMaskPng,
    /// Where to save the mask as `.npy`.
    SaveMaskNpy,
    /// Where to save a screenshot of the window.
    SaveScreenshot,
    /// Which `.npy` file to load as Q, K or V (the name says which).
    OpenNpy(&'static str),
    /// Where to save a teaching export; the default file name (its extension sets the filter).
    SaveFile(&'static str),
    /// Where to save the open view (its title) as PNG.
    SaveViewPng(&'static str),
    /// Which model to open: a `.gguf` file or a BERT folder's `config.json`.
    OpenModel,
    /// Which text file to run a model on.
    OpenText,
}

/// Picks a file for a request; `None` when the user cancels. Replaceable for tests.
pub type FilePicker = Box<dyn FnMut(FileRequest) -> Option<PathBuf>>;

/// A message shown in the status bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
}

/// Where the sample Q, K, V of a job come from.
#[derive(Clone, Debug)]
pub enum InputSpec {
    /// Generated from a seed.
    Generated {
        /// Random or structured, with its seed.
        kind: crate::inputs::InputKind,
        /// Tokens.
        n: usize,
        /// Head dimension.
        d: usize,
    },
    /// Loaded from `.npy` files.
    Loaded(Arc<crate::inputs::Qkv>),
}

impl PartialEq for InputSpec {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                InputSpec::Generated { kind, n, d },
                InputSpec::Generated {
                    kind: k2,
                    n: n2,
                    d: d2,
                },
            ) => kind == k2 && n == n2 && d == d2,
            (InputSpec::Loaded(a), InputSpec::Loaded(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl InputSpec {
    /// A short description, e.g. `random input (seed 0), d = 64`.
    pub fn describe(&self) -> String {
        match self {
            InputSpec::Generated { kind, d, .. } => {
                let seed = match kind {
                    crate::inputs::InputKind::Random { seed }
                    | crate::inputs::InputKind::Structured { seed } => *seed,
                };
                format!("{} input (seed {seed}), d = {d}", kind.name())
            }
            InputSpec::Loaded(q) => format!("loaded Q, K, V (n = {}, d = {})", q.n(), q.d()),
        }
    }
}

/// The last generated input of a worker, reused while `(kind, n, d)` stay the same.
#[derive(Default)]
pub struct InputCache {
    last: Option<(InputSpec, Arc<crate::inputs::Qkv>)>,
}

impl InputCache {
    /// The Q, K, V of `spec`.
    pub fn get(&mut self, spec: &InputSpec) -> Arc<crate::inputs::Qkv> {
        if let InputSpec::Loaded(q) = spec {
            return q.clone();
        }
        if let Some((s, q)) = &self.last {
            if s == spec {
                return q.clone();
            }
        }
        let InputSpec::Generated { kind, n, d } = spec else {
            unreachable!("loaded inputs returned above")
        };
        let q = Arc::new(crate::inputs::generate(*kind, *n, *d));
        self.last = Some((spec.clone(), q.clone()));
        q
    }
}

/// State every view may read and edit.
pub struct Shared {
    /// The settings the controls edit.
    pub settings: Settings,
    /// Invalid settings, `(flag, message)`.
    pub problems: Vec<(&'static str, String)>,
    /// The newest masks computed by the worker.
    pub masks: Option<Arc<MaskResult>>,
    /// Whether the masks worker is busy, and its progress 0…1.
    pub masks_busy: Option<f32>,
    /// The query row pinned by a click.
    pub pinned_row: Option<usize>,
    /// The cell under the mouse this frame, `(query i, key j)`.
    pub hover: Option<(usize, usize)>,
    /// The part of the matrix the mask views show: `(rows, cols)` (set by the Masks view).
    pub visible: Option<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// Pixels across one mask plot (set by the Masks view).
    pub plot_px: usize,
    /// Where the whole n × n matrix of the first map lies on screen, in points (set by the
    /// Masks view; lets tests point at a cell).
    pub matrix_rect: Option<egui::Rect>,
    /// The latest message for the status bar.
    pub status: Option<Status>,
    /// File dialogs.
    pub picker: FilePicker,
    /// CPU time of the previous `ui` pass, in milliseconds.
    pub frame_ms: f64,
    /// Largest texture side the GPU accepts, in pixels.
    pub max_texture_side: usize,
    /// Q, K, V loaded from `.npy` files, with the file names.
    pub loaded: Option<(Arc<crate::inputs::Qkv>, String)>,
    /// Why the last load failed.
    pub load_error: Option<String>,
    /// Show compute and frame times in the status bar (off for reproducible snapshots).
    pub show_timings: bool,
    /// The views' textures with their pixels (for "Save view PNG").
    pub textures: textures::TextureStore,
    /// Where the open view lies in the window, in points.
    pub view_rect: Option<egui::Rect>,
    /// Why no file dialog appeared and where files went instead (shown until dismissed).
    pub dialog_notice: dialogs::Notice,
}

impl Shared {
    /// Reports success in the status bar.
    pub fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    /// Reports a failure in the status bar.
    pub fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    /// Makes `qkv` (named `name`) the sample input of the Kernels and Attention views, with
    /// n set to its length when the app accepts it.
    pub fn use_input(&mut self, qkv: crate::inputs::Qkv, name: String) {
        let n = qkv.n();
        self.loaded = Some((Arc::new(qkv), name));
        self.load_error = None;
        self.settings.input = InputChoice::Loaded;
        if n <= crate::APP_MAX_N {
            self.settings.params.n = n;
        }
    }

    /// The problem attached to control `flag`, if any.
    pub fn problem(&self, flag: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, m)| m.as_str())
    }

    /// The sample input the settings ask for, or why it cannot be used.
    pub fn input_spec(&self) -> Result<InputSpec, String> {
        let s = &self.settings;
        let seed = s.input_seed;
        let kind = match s.input {
            InputChoice::Random => crate::inputs::InputKind::Random { seed },
            InputChoice::Structured => crate::inputs::InputKind::Structured { seed },
            InputChoice::Loaded => {
                let Some((q, _)) = &self.loaded else {
                    return Err("no Q, K, V loaded: use Load Q, K, V… or pick random".into());
                };
                if q.n() != s.params.n {
                    return Err(format!(
                        "the loaded Q, K, V have n = {}, the pattern has n = {}: set n = {}",
                        q.n(),
                        s.params.n,
                        q.n()
                    ));
                }
                return Ok(InputSpec::Loaded(q.clone()));
            }
        };
        if s.d == 0 || s.d > settings::MAX_D {
            return Err(format!("head dim d = {} is out of range", s.d));
        }
        Ok(InputSpec::Generated {
            kind,
            n: s.params.n,
            d: s.d,
        })
    }

    /// Side of whole-matrix images, in pixels.
    pub fn image_side(&self) -> usize {
        MAX_IMAGE_SIDE.min(self.max_texture_side).clamp(16, 8192)
    }
}

/// The attnscope window.
pub struct AttnApp {
    /// Shared state.
    pub shared: Shared,
    views: Vec<Box<dyn View>>,
    controls: controls::Controls,
    export: export::ExportPanel,
    masks_worker: worker::Worker<MaskJob, MaskResult>,
    last_job: Option<MaskJob>,
    /// When the settings last asked for new masks (for the latency reported once they show).
    masks_asked: Option<web_time::Instant>,
    applied_theme: Option<ThemeChoice>,
    help_open: bool,
}

impl AttnApp {
    /// Creates the app from eframe's creation context: saved settings (a file on the desktop,
    /// the browser's storage on the web), then `apply` on top (the command line's flags).
    pub fn new(cc: &eframe::CreationContext<'_>, apply: impl FnOnce(&mut Settings)) -> Self {
        let saved: Option<Settings> = cc.storage.and_then(|s| eframe::get_value(s, STORAGE_KEY));
        let mut settings = saved.unwrap_or_default();
        apply(&mut settings);
        let notice = dialogs::Notice::default();
        let picker = platform::picker(notice.clone());
        let mut app = Self::with_settings(&cc.egui_ctx, settings, picker);
        app.shared.dialog_notice = notice;
        app
    }

    /// Creates the app with these settings and file dialogs (tests inject a picker).
    pub fn with_settings(ctx: &egui::Context, mut settings: Settings, picker: FilePicker) -> Self {
        settings.sanitize();
        let masks_worker = worker::Worker::spawn_sliced(
            "attnscope-masks",
            Some(ctx.clone()),
            compute::mask_worker(),
        );
        let max_texture_side = ctx.input(|i| i.max_texture_side);
        let shared = Shared {
            problems: settings.problems(),
            settings,
            masks: None,
            masks_busy: None,
            pinned_row: None,
            hover: None,
            visible: None,
            plot_px: 512,
            matrix_rect: None,
            status: None,
            picker,
            frame_ms: 0.0,
            max_texture_side,
            loaded: None,
            load_error: None,
            show_timings: true,
            textures: textures::TextureStore::new(ctx),
            view_rect: None,
            dialog_notice: dialogs::Notice::default(),
        };
        Self {
            shared,
            views: all_views(),
            controls: controls::Controls::default(),
            export: export::ExportPanel::new(ctx),
            masks_worker,
            last_job: None,
            masks_asked: None,
            applied_theme: None,
            help_open: false,
        }
    }

    /// Whether every worker is idle and the masks match the settings (for tests).
    pub fn is_idle(&self) -> bool {
        let current = self.mask_job(self.shared.settings.theme == ThemeChoice::Dark);
        !self.masks_worker.busy()
            && self.shared.masks.as_ref().is_some_and(|m| m.job == current)
            && !self.export.busy()
            && !self.views.iter().any(|v| v.busy())
    }

    fn mask_job(&self, dark: bool) -> MaskJob {
        let s = &self.shared.settings;
        let side = self.shared.image_side();
        let n = s.params.n;
        let region = self.shared.visible.as_ref().and_then(|(rows, cols)| {
            let zoomed = rows.len() < n * 9 / 10 || cols.len() < n * 9 / 10;
            (n > side && zoomed && !rows.is_empty() && !cols.is_empty()).then(|| {
                let px = self.shared.plot_px.clamp(64, side);
                Region {
                    rows: rows.clone(),
                    cols: cols.clone(),
                    width: cols.len().min(px),
                    height: rows.len().min(px),
                }
            })
        });
        MaskJob {
            maps: s.map_params(),
            block: s.block,
            d: s.d,
            side,
            region,
            colormap: s.colormap,
            dark,
            blocks: s.show_blocks,
        }
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        use egui::Key;
        let s = &mut self.shared.settings;
        let n = s.params.n;
        ctx.input_mut(|i| {
            let mut press = |k: Key| i.consume_key(egui::Modifiers::NONE, k);
            if press(Key::PageUp) {
                s.params.n = (n * 2).min(crate::APP_MAX_N);
            }
            if press(Key::PageDown) {
                s.params.n = (n / 2).max(1);
            }
            if press(Key::CloseBracket) {
                s.params.stride = Some((s.stride() + 1).min(n.max(1)));
            }
            if press(Key::OpenBracket) {
                s.params.stride = Some(s.stride().saturating_sub(1).max(1));
            }
            if press(Key::Period) {
                s.params.window = Some((s.window() + 1).min(n));
            }
            if press(Key::Comma) {
                s.params.window = Some(s.window().saturating_sub(1));
            }
            if press(Key::C) {
                s.params.causal = !s.params.causal;
            }
            if press(Key::B) {
                s.show_blocks = !s.show_blocks;
            }
            if press(Key::T) {
                s.theme = match s.theme {
                    ThemeChoice::Dark => ThemeChoice::Light,
                    ThemeChoice::Light => ThemeChoice::Dark,
                };
            }
            if press(Key::Escape) {
                self.shared.pinned_row = None;
            }
            if press(Key::F1) {
                self.help_open = !self.help_open;
            }
            let digits = [
                Key::Num1,
                Key::Num2,
                Key::Num3,
                Key::Num4,
                Key::Num5,
                Key::Num6,
                Key::Num7,
                Key::Num8,
                Key::Num9,
            ];
            for (t, k) in digits.into_iter().enumerate() {
                if t < self.views.len() && press(k) {
                    s.tab = self.views[t].title().to_string();
                }
            }
        });
    }

    /// Says why no file dialog appeared and where the file went, until "OK" is clicked.
    fn dialog_notice_window(&mut self, ctx: &egui::Context) {
        let Some(text) = self.shared.dialog_notice.borrow().clone() else {
            return;
        };
        let mut dismissed = false;
        egui::Window::new("No file dialog")
            .collapsible(false)
            .resizable(false)
            .default_width(460.0)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                ui.label(text);
                ui.add_space(6.0);
                dismissed = ui.button("OK").clicked();
            });
        if dismissed {
            *self.shared.dialog_notice.borrow_mut() = None;
        }
    }

    fn help_window(&mut self, ctx: &egui::Context) {
        let mut open = self.help_open;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .show(ctx, |ui| {
                egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                    for (k, what) in SHORTCUTS {
                        ui.monospace(*k);
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            });
        self.help_open = open;
    }
}

/// Keyboard shortcuts (when no text field has focus).
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("PgUp / PgDn", "double / halve n"),
    ("] / [", "stride k + 1 / − 1"),
    (". / ,", "window w + 1 / − 1"),
    ("C", "toggle causal"),
    ("B", "toggle block overlay"),
    ("T", "dark / light theme"),
    ("1 … 9", "switch view"),
    ("Esc", "unpin the query row"),
    ("Ctrl+S", "save the mask as PNG"),
    ("Ctrl+Shift+S", "save the open view as PNG"),
    ("F12", "save a screenshot"),
    ("F1", "show this help"),
];

impl eframe::App for AttnApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let t0 = web_time::Instant::now();
        let ctx = ui.ctx().clone();
        self.handle_keys(&ctx);
        let theme = self.shared.settings.theme;
        if self.applied_theme != Some(theme) {
            ctx.set_theme(match theme {
                ThemeChoice::Dark => egui::Theme::Dark,
                ThemeChoice::Light => egui::Theme::Light,
            });
            self.applied_theme = Some(theme);
        }
        self.shared.problems = self.shared.settings.problems();
        // Masks: submit a job when the settings or the zoom changed; take the newest result.
        let job = self.mask_job(theme == ThemeChoice::Dark);
        if self.last_job.as_ref() != Some(&job) {
            self.masks_worker.submit(job.clone());
            self.last_job = Some(job);
            self.masks_asked = Some(web_time::Instant::now());
        }
        if let Some(r) = self.masks_worker.poll() {
            if self.last_job.as_ref() == Some(&r.job) {
                if let Some(t) = self.masks_asked.take() {
                    platform::masks_shown(r.elapsed_ms, t.elapsed().as_secs_f64() * 1e3);
                }
            }
            self.shared.masks = Some(Arc::new(r));
        }
        self.shared.masks_busy = self
            .masks_worker
            .busy()
            .then(|| self.masks_worker.progress());
        if self.shared.masks_busy.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
        if let Some(row) = self.shared.pinned_row {
            if row >= self.shared.settings.params.n {
                self.shared.pinned_row = None;
            }
        }
        self.shared.hover = None;

        egui::Panel::top("top").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("attnscope");
                ui.separator();
                let current = self.shared.settings.tab.clone();
                let mut chosen = None;
                for (t, v) in self.views.iter().enumerate() {
                    let selected = current == v.title()
                        || (t == 0 && !self.views.iter().any(|v| v.title() == current));
                    if ui
                        .selectable_label(selected, v.title())
                        .on_hover_text(format!("{} (key {})", v.hint(), t + 1))
                        .clicked()
                    {
                        chosen = Some(v.title().to_string());
                    }
                }
                if let Some(c) = chosen {
                    self.shared.settings.tab = c;
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui
                        .button("?")
                        .on_hover_text("Keyboard shortcuts (F1)")
                        .clicked()
                    {
                        self.help_open = !self.help_open;
                    }
                    let (label, next) = match self.shared.settings.theme {
                        ThemeChoice::Dark => ("Light theme", ThemeChoice::Light),
                        ThemeChoice::Light => ("Dark theme", ThemeChoice::Dark),
                    };
                    if ui
                        .button(label)
                        .on_hover_text("Switch between dark and light theme (T)")
                        .clicked()
                    {
                        self.shared.settings.theme = next;
                    }
                });
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if let Some(p) = self.shared.masks_busy {
                    ui.add(
                        egui::ProgressBar::new(p)
                            .desired_width(120.0)
                            .text("computing masks"),
                    );
                } else if let Some(m) = self
                    .shared
                    .masks
                    .as_ref()
                    .filter(|_| self.shared.show_timings)
                {
                    ui.weak(format!("masks computed in {:.1} ms", m.elapsed_ms));
                }
                if self.shared.show_timings {
                    ui.separator();
                    ui.weak(format!("UI pass {:.2} ms", self.shared.frame_ms));
                }
                ui.separator();
                if let Some(st) = &self.shared.status {
                    if st.error {
                        ui.colored_label(
                            ui.visuals().error_fg_color,
                            format!("error: {}", st.text),
                        );
                    } else {
                        ui.label(st.text.as_str());
                    }
                }
            });
        });
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(290.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.controls.ui(ui, &mut self.shared);
                    ui.separator();
                    self.export.ui(ui, &mut self.shared);
                });
            });
        let tab = self.shared.settings.tab.clone();
        let idx = self
            .views
            .iter()
            .position(|v| v.title() == tab)
            .unwrap_or(0);
        let central = egui::CentralPanel::default().show(ui, |ui| {
            if let Some(v) = self.views.get_mut(idx) {
                v.ui(ui, &mut self.shared);
            }
        });
        self.shared.view_rect = Some(central.response.rect);
        self.export.after_frame(&ctx, &mut self.shared);
        if self.export.take_view_request() {
            let picked = self.views.get_mut(idx).and_then(|v| {
                let path = (self.shared.picker)(FileRequest::SaveViewPng(v.title()))?;
                Some((v, path))
            });
            if let Some((v, path)) = picked {
                let size = central.response.rect.size();
                let width = self.shared.settings.export_view_px;
                let title = v.title();
                match offscreen::render_view(&ctx, v.as_mut(), &mut self.shared, size, width) {
                    Ok(frame) => self.export.save_view(frame, path, title, &mut self.shared),
                    Err(e) => self.shared.error(format!("cannot save the view: {e}")),
                }
            }
        }
        self.help_window(&ctx);
        self.dialog_notice_window(&ctx);
        platform::deliver_files(&mut self.shared);
        self.shared.frame_ms = t0.elapsed().as_secs_f64() * 1e3;
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.shared.settings);
    }
}

pub use platform::run;
