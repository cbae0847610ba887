//! The controls side panel: pattern, n, stride, window, causal, block size, head dim, input,
//! threads. Invalid values are explained right under the control they concern.

use super::settings::{min_block, MAX_D};
use super::{FileRequest, InputChoice, Shared};
use crate::pattern::PatternKind;
use crate::render::Colormap;

/// State of the controls panel.
#[derive(Default)]
pub struct Controls {
    /// The pattern field as typed.
    expr_text: String,
    /// The settings' pattern text the field last showed (to follow menus, presets, keys).
    expr_synced: Option<String>,
    /// Why the typed expression was refused (the last good pattern stays on screen).
    expr_error: Option<String>,
    /// Whether the field had the keyboard focus last frame (then it is not overwritten).
    expr_typing: bool,
}

impl Controls {
    /// The pattern field: an expression validated as it is typed; a valid one becomes the
    /// selected pattern, a bad one shows its error in red and changes nothing.
    fn expression_field(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let s = &mut shared.settings;
        let current = s.params.text().to_string();
        if self.expr_synced.as_deref() != Some(current.as_str()) && !self.expr_typing {
            self.expr_text = current.clone();
            self.expr_synced = Some(current);
            self.expr_error = None;
        }
        let resp = ui
            .add(
                egui::TextEdit::singleline(&mut self.expr_text)
                    .id_salt("pattern expression")
                    .hint_text("(local(w=64) | sink(s=4)) & causal")
                    .desired_width(f32::INFINITY),
            )
            .accessible_name("pattern expression")
            .on_hover_text(
                "A pattern name or an expression: terms dense, local(w), atrous(k), sink(s), \
                 global(g), causal and the named patterns, joined by | (union) and & (intersection, \
                 binds tighter), with parentheses. A bare name takes k, w… from the controls below.",
            );
        self.expr_typing = resp.has_focus();
        if resp.changed() {
            let given = crate::pattern::PatternParams::from_text(&self.expr_text, s.params.n);
            let mut candidate = s.params.clone();
            candidate.kind = given.kind;
            candidate.expr = given.expr;
            match candidate.build() {
                Ok(_) => {
                    s.params = candidate;
                    self.expr_synced = Some(s.params.text().to_string());
                    self.expr_error = None;
                }
                Err(e) => self.expr_error = Some(e.to_string()),
            }
        }
        if let Some(e) = &self.expr_error {
            ui.label(
                egui::RichText::new(e)
                    .color(ui.visuals().error_fg_color)
                    .small(),
            )
            .accessible_name("pattern expression error");
        }
    }
}

/// What each pattern kind means, for the pattern menu's tooltips.
pub fn kind_hint(k: PatternKind) -> &'static str {
    match k {
        PatternKind::Dense => "every query sees every key",
        PatternKind::Local => "|i − j| ≤ w: a band of width 2w + 1",
        PatternKind::Atrous => "|i − j| mod k = 0: every k-th token (dilated)",
        PatternKind::Sparse => "local(w) ∪ atrous(k): the seed's sparse attention",
        PatternKind::Strided => {
            "Sparse Transformer strided: causal, i − j < l or (i − j) mod l = 0"
        }
        PatternKind::Fixed => {
            "Sparse Transformer fixed: same block of l, or one of the last c columns of a block"
        }
        PatternKind::Longformer => "window w plus g global tokens",
        PatternKind::Bigbird => "block window, global and seeded random blocks (block size B)",
        PatternKind::Custom => "a pattern expression, typed in the field below",
    }
}

fn problem(ui: &mut egui::Ui, shared: &Shared, flag: &str) {
    if let Some(m) = shared.problem(flag) {
        ui.label(
            egui::RichText::new(m.to_string())
                .color(ui.visuals().error_fg_color)
                .small(),
        );
    }
}

/// A usize control: typed value plus a (log) slider.
fn count_control(
    ui: &mut egui::Ui,
    label: &str,
    hint: &str,
    value: &mut usize,
    range: std::ops::RangeInclusive<usize>,
    log: bool,
) -> bool {
    let mut changed = false;
    ui.horizontal(|ui| {
        ui.label(label).on_hover_text(hint);
        changed |= ui
            .add(
                egui::DragValue::new(value)
                    .range(range.clone())
                    .speed(if log { 1.0 } else { 0.25 }),
            )
            .accessible_name(format!("{label} value"))
            .on_hover_text(format!("{hint} — type a value or drag"))
            .changed();
    });
    let slider = egui::Slider::new(value, range)
        .logarithmic(log)
        .show_value(false);
    changed |= ui
        .add(slider)
        .accessible_name(format!("{label} slider"))
        .on_hover_text(hint)
        .changed();
    changed
}

impl Controls {
    /// Draws the controls and edits `shared.settings`.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.spacing_mut().slider_width = 200.0;
        ui.heading("Pattern");
        let s = &mut shared.settings;
        let kind = s.params.kind;
        egui::ComboBox::from_label("pattern")
            .selected_text(kind.name())
            .show_ui(ui, |ui| {
                for k in PatternKind::ALL {
                    if ui
                        .selectable_value(&mut s.params.kind, k, k.name())
                        .on_hover_text(kind_hint(k))
                        .clicked()
                    {
                        s.params.expr = None;
                    }
                }
            })
            .response
            .on_hover_text(format!(
                "The selected pattern: {}. atrous, local and sparse are always shown; any other is added as a fourth map.",
                kind_hint(kind)
            ));
        self.expression_field(ui, shared);
        problem(ui, shared, "--pattern");
        let s = &mut shared.settings;
        let n_max = crate::APP_MAX_N;
        count_control(
            ui,
            "n",
            "Sequence length n (queries = keys), 1 … 65,536. PgUp / PgDn double / halve it.",
            &mut s.params.n,
            1..=n_max,
            true,
        );
        let n = s.params.n;
        problem(ui, shared, "--n");
        let s = &mut shared.settings;
        let (stride_label, stride_hint) = match kind {
            PatternKind::Strided | PatternKind::Fixed => (
                "stride l",
                "Stride l of the strided / fixed pattern (also the k of the atrous and sparse maps). ] / [ change it.",
            ),
            _ => (
                "stride k",
                "Stride k: atrous keeps keys at distances 0, k, 2k, … ] / [ change it.",
            ),
        };
        let mut k = s.stride();
        if count_control(ui, stride_label, stride_hint, &mut k, 1..=n.max(1), true) {
            s.params.stride = Some(k);
        }
        problem(ui, shared, "--stride");
        let s = &mut shared.settings;
        let mut w = s.window();
        let w_hint = if kind == PatternKind::Bigbird {
            "Window in blocks (BigBird) and window w of the local and sparse maps. . / , change it."
        } else {
            "Window w: local keeps keys with |i − j| ≤ w. . / , change it."
        };
        if count_control(
            ui,
            "window w",
            w_hint,
            &mut w,
            0..=n.saturating_sub(1).max(1),
            true,
        ) {
            s.params.window = Some(w);
        }
        problem(ui, shared, "--window");
        let s = &mut shared.settings;
        ui.checkbox(&mut s.params.causal, "causal (keys j ≤ i only)")
            .on_hover_text("Decoder-only models: intersect every mask with j ≤ i. Key C.");
        match kind {
            PatternKind::Fixed => {
                let mut c = s.params.summary.unwrap_or(1);
                if count_control(
                    ui,
                    "summary c",
                    "Summary columns c of the fixed pattern: the last c columns of each block of l are seen by every later query (1 … l).",
                    &mut c,
                    1..=s.stride().max(1),
                    false,
                ) {
                    s.params.summary = Some(c);
                }
                problem(ui, shared, "--summary");
            }
            PatternKind::Longformer | PatternKind::Bigbird => {
                let unit = if kind == PatternKind::Bigbird {
                    "blocks"
                } else {
                    "tokens"
                };
                count_control(
                    ui,
                    "global g",
                    &format!("Global {unit}: they see and are seen by every token."),
                    &mut s.params.global,
                    0..=n,
                    true,
                );
                problem(ui, shared, "--global");
                if kind == PatternKind::Bigbird {
                    let s = &mut shared.settings;
                    count_control(
                        ui,
                        "random r",
                        "Random key blocks per block row (seeded).",
                        &mut s.params.random,
                        0..=64,
                        false,
                    );
                    ui.horizontal(|ui| {
                        ui.label("seed")
                            .on_hover_text("Seed of BigBird's random blocks.");
                        ui.add(egui::DragValue::new(&mut s.params.seed))
                            .on_hover_text("Seed of BigBird's random blocks.");
                    });
                }
            }
            _ => {}
        }

        ui.separator();
        ui.heading("Blocks and compute");
        let s = &mut shared.settings;
        count_control(
            ui,
            "block B",
            "Block size B of block statistics, the block overlay, block kernels and BigBird blocks.",
            &mut s.block,
            1..=crate::pattern::MAX_BLOCK.min(n.max(1)),
            true,
        );
        if shared.problem("--block").is_some() {
            problem(ui, shared, "--block");
            let s = &mut shared.settings;
            let mb = min_block(n);
            if ui
                .button(format!("use B = {mb}"))
                .on_hover_text("Smallest block size the app can count at this n")
                .clicked()
            {
                s.block = mb;
            }
        }
        let s = &mut shared.settings;
        ui.checkbox(&mut s.show_blocks, "block overlay")
            .on_hover_text("Tint every B × B tile: green full, yellow partial, red empty. Key B.");
        count_control(
            ui,
            "head dim d",
            "Head dimension d: useful FLOPs = 4·d·nnz; also the width of the sample Q, K, V.",
            &mut s.d,
            1..=MAX_D,
            true,
        );
        problem(ui, shared, "--d");
        let s = &mut shared.settings;
        let max_threads = super::platform::max_threads();
        s.threads = s.threads.clamp(1, max_threads.max(1));
        count_control(
            ui,
            "threads",
            "Threads the kernels and benchmarks may use.",
            &mut s.threads,
            1..=max_threads.max(2),
            false,
        );
        ui.horizontal(|ui| {
            ui.label("input")
                .on_hover_text("Sample Q, K, V for kernels and attention weights.");
            ui.radio_value(&mut s.input, InputChoice::Random, "random")
                .on_hover_text("Seeded standard-normal Q, K, V");
            ui.radio_value(&mut s.input, InputChoice::Structured, "structured")
                .on_hover_text("Seeded inputs where nearby tokens are similar");
        });
        if let Some((_, name)) = &shared.loaded {
            // A model head (Model tab, "Use this head as input") is named; files are not.
            let (label, hint) = if name.starts_with("model head") {
                (name.clone(), "Q, K, V of a real model's head (Model tab)")
            } else {
                (
                    "loaded Q, K, V".to_string(),
                    "The Q, K, V loaded from .npy files",
                )
            };
            let s = &mut shared.settings;
            ui.radio_value(&mut s.input, InputChoice::Loaded, label)
                .on_hover_text(hint);
        }
        let s = &mut shared.settings;
        ui.horizontal(|ui| {
            ui.label("input seed")
                .on_hover_text("Seed of the sample input");
            ui.add(egui::DragValue::new(&mut s.input_seed))
                .on_hover_text("Seed of the sample input");
        });
        load_ui(ui, shared);

        ui.separator();
        ui.heading("Look");
        let s = &mut shared.settings;
        egui::ComboBox::from_label("colormap")
            .selected_text(s.colormap.name())
            .show_ui(ui, |ui| {
                for c in Colormap::ALL {
                    ui.selectable_value(&mut s.colormap, c, c.name());
                }
            })
            .response
            .on_hover_text("Colormap of the selected pattern's map and of the attention heatmaps");
    }
}

/// Loads Q, K, V from three `.npy` files picked one after the other.
pub fn load_qkv(shared: &mut Shared) {
    let mut paths = Vec::new();
    for which in ["Q", "K", "V"] {
        match (shared.picker)(FileRequest::OpenNpy(which)) {
            Some(p) => paths.push(p),
            None => return,
        }
    }
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |f| f.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let loaded =
        crate::inputs::load_qkv(&paths[0], &paths[1], &paths[2]).map_err(|e| e.to_string());
    take_loaded(shared, loaded.map(|q| (q, names)));
}

/// Uses Q, K, V read from `.npy` files (named `names`) as the input, or shows why they could
/// not be read (the desktop's dialogs and the browser's file chooser both end here).
pub fn take_loaded(shared: &mut Shared, loaded: Result<(crate::inputs::Qkv, Vec<String>), String>) {
    match loaded {
        Ok((q, names)) => {
            shared.info(format!(
                "loaded Q, K, V ({}), n = {}, d = {}",
                names.join(", "),
                q.n(),
                q.d()
            ));
            shared.use_input(q, names.join(", "));
        }
        Err(e) => {
            let msg = format!("could not load Q, K, V: {e}");
            shared.error(msg.clone());
            shared.load_error = Some(msg);
        }
    }
}

fn load_ui(ui: &mut egui::Ui, shared: &mut Shared) {
    ui.horizontal(|ui| {
        if ui
            .button("Load Q, K, V…")
            .on_hover_text(
                "Pick three .npy files (float32/float64, shape (n, d)): Q, then K, then V",
            )
            .clicked()
        {
            load_qkv(shared);
        }
        if let Some((q, names)) = &shared.loaded {
            ui.weak(format!("n = {}, d = {}", q.n(), q.d()))
                .on_hover_text(names.as_str());
        }
    });
    if let Some(e) = &shared.load_error {
        ui.label(
            egui::RichText::new(format!("error: {e}"))
                .color(ui.visuals().error_fg_color)
                .small(),
        );
    }
    if let Err(e) = shared.input_spec() {
        ui.label(
            egui::RichText::new(format!("error: {e}"))
                .color(ui.visuals().error_fg_color)
                .small(),
        );
    }
}
