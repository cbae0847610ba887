//! The user's settings: everything the controls edit, saved between runs.

use crate::pattern::{Pattern, PatternError, PatternKind, PatternParams};
use crate::reach::{stride_window_keys, LayerSpec};
use crate::render::Colormap;

/// Where the sample Q, K, V come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputChoice {
    /// Seeded standard-normal entries.
    Random,
    /// Seeded inputs with local structure (nearby tokens similar).
    Structured,
    /// Q, K, V loaded from `.npy` files.
    Loaded,
}

/// Dark or light look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ThemeChoice {
    /// Light text on dark panels.
    Dark,
    /// Dark text on light panels (projectors).
    Light,
}

/// All settings of the app (persisted with eframe's storage).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The selected pattern's parameters (stride and window also drive the atrous/local/sparse maps).
    pub params: PatternParams,
    /// Block size B of block statistics and the block overlay.
    pub block: usize,
    /// Head dimension d (FLOP counts and sample inputs).
    pub d: usize,
    /// Sample input kind.
    pub input: InputChoice,
    /// Seed of the random / structured sample input.
    pub input_seed: u64,
    /// Kernel threads.
    pub threads: usize,
    /// Colormap of the selected pattern's map and the attention heatmaps.
    pub colormap: Colormap,
    /// Draw the block overlay on the masks.
    pub show_blocks: bool,
    /// Log colour scale in the attention view.
    pub log_attention: bool,
    /// Look.
    pub theme: ThemeChoice,
    /// Pixels per exported cell.
    pub export_scale: u32,
    /// Draw block grid lines in exported PNGs.
    pub export_grid: bool,
    /// Width of a "Save view PNG" image, pixels.
    pub export_view_px: usize,
    /// Title of the open view.
    pub tab: String,
    /// Per-layer patterns of the receptive-field view, repeated cyclically (empty: every layer
    /// uses the selected pattern). Saved settings from before rows had their own k/w (a list of
    /// bare pattern names) still load.
    pub schedule: Vec<ScheduleRow>,
    /// Model tab: the text is cut to this many tokens (2 … 2048).
    pub model_max_tokens: usize,
}

/// One layer of the receptive-field view's schedule: a pattern that takes the controls' k and
/// w, or its own — the app's form of an entry `local(w=5)` of `attnscope reach --schedule`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "SavedRow")]
pub struct ScheduleRow {
    /// The layer's pattern.
    pub kind: PatternKind,
    /// Its own stride and window (None: the controls'); only those `kind` takes apply.
    pub own: Option<OwnStrideWindow>,
}

/// The stride k (or l) and window w (or BigBird's window blocks) of one schedule row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnStrideWindow {
    /// Stride k (atrous, sparse) or l (strided, fixed), ≥ 1.
    pub k: usize,
    /// Window w in tokens (local, sparse, longformer) or blocks (bigbird), ≥ 0.
    pub w: usize,
}

/// A saved schedule row: a bare pattern name (settings saved before rows had their own k/w)
/// or a full row.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SavedRow {
    Kind(PatternKind),
    Row {
        kind: PatternKind,
        #[serde(default)]
        own: Option<OwnStrideWindow>,
    },
}

impl From<SavedRow> for ScheduleRow {
    fn from(saved: SavedRow) -> Self {
        match saved {
            SavedRow::Kind(kind) => Self::shared(kind),
            SavedRow::Row { kind, own } => Self { kind, own },
        }
    }
}

impl ScheduleRow {
    /// A row of pattern `kind` with the controls' k and w.
    pub fn shared(kind: PatternKind) -> Self {
        Self { kind, own: None }
    }

    /// The row of a schedule entry: its own k / w where it gives one (the other filled in
    /// with `k` / `w`, the controls' values), else the controls'.
    pub fn from_spec(spec: &LayerSpec, k: usize, w: usize) -> Self {
        let own = (spec.stride.is_some() || spec.window.is_some()).then(|| OwnStrideWindow {
            k: spec.stride.unwrap_or(k),
            w: spec.window.unwrap_or(w),
        });
        Self {
            kind: spec.kind,
            own,
        }
    }

    /// The layer as `reach --schedule` reads it: own values only where `kind` takes them, and
    /// its entry written out (`local(w=5)`, `dense`).
    pub fn spec(&self) -> LayerSpec {
        LayerSpec::with_stride_window(self.kind, self.own.map(|o| o.k), self.own.map(|o| o.w))
    }

    /// Whether the row's pattern takes a stride or a window (so it can have its own).
    pub fn takes_stride_or_window(&self) -> bool {
        stride_window_keys(self.kind) != (None, None)
    }
}

/// The `reach --schedule` list of `rows`, e.g. `dense,local(w=5)`.
pub fn schedule_list(rows: &[ScheduleRow]) -> String {
    let entries: Vec<String> = rows.iter().map(|r| r.spec().entry).collect();
    entries.join(",")
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            params: PatternParams::new(PatternKind::Sparse, 64)
                .stride(4)
                .window(3),
            block: 16,
            d: 64,
            input: InputChoice::Random,
            input_seed: 0,
            threads: super::platform::max_threads(),
            colormap: Colormap::Viridis,
            show_blocks: false,
            log_attention: false,
            theme: ThemeChoice::Dark,
            export_scale: 4,
            export_grid: false,
            export_view_px: 3840,
            tab: String::new(),
            schedule: Vec::new(),
            model_max_tokens: 1024,
        }
    }
}

/// Largest number of `B × B` tiles the app counts (block statistics and overlay).
pub const MAX_TILES: u64 = 1 << 24;

/// Largest head dimension the app accepts.
pub const MAX_D: usize = 1024;

/// Which of the maps a pattern is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapId {
    /// atrous(k).
    Atrous,
    /// local(w).
    Local,
    /// sparse(k, w) = atrous ∪ local, coloured by which part allows each cell.
    Sparse,
    /// The pattern picked in the controls, when it is not one of the three above.
    Selected,
}

impl MapId {
    /// Short title.
    pub fn title(self) -> &'static str {
        match self {
            MapId::Atrous => "atrous",
            MapId::Local => "local",
            MapId::Sparse => "sparse = atrous ∪ local",
            MapId::Selected => "selected",
        }
    }
}

impl Settings {
    /// The layer schedule as reach layer specs (empty: the selected pattern in every layer).
    pub fn layer_specs(&self) -> Vec<LayerSpec> {
        self.schedule.iter().map(ScheduleRow::spec).collect()
    }

    /// Stride k used by the seed's three maps (the selected stride, default 4).
    pub fn stride(&self) -> usize {
        self.params.stride.unwrap_or(4)
    }

    /// Window w used by the seed's three maps (the selected window, default 3).
    pub fn window(&self) -> usize {
        self.params.window.unwrap_or(3)
    }

    /// The parameters of each map shown: atrous, local, sparse, plus the selected pattern
    /// when it is another kind.
    pub fn map_params(&self) -> Vec<(MapId, PatternParams)> {
        let p = &self.params;
        let base = |kind| PatternParams::new(kind, p.n).causal(p.causal);
        let mut v = vec![
            (
                MapId::Atrous,
                base(PatternKind::Atrous).stride(self.stride()),
            ),
            (MapId::Local, base(PatternKind::Local).window(self.window())),
            (
                MapId::Sparse,
                base(PatternKind::Sparse)
                    .stride(self.stride())
                    .window(self.window()),
            ),
        ];
        if !matches!(
            p.kind,
            PatternKind::Atrous | PatternKind::Local | PatternKind::Sparse
        ) {
            let mut sel = p.clone();
            if sel.kind == PatternKind::Bigbird {
                sel.block = self.block;
            }
            v.push((MapId::Selected, sel));
        }
        v
    }

    /// The map the selected pattern is shown in.
    pub fn selected_map(&self) -> MapId {
        match self.params.kind {
            PatternKind::Atrous => MapId::Atrous,
            PatternKind::Local => MapId::Local,
            PatternKind::Sparse => MapId::Sparse,
            _ => MapId::Selected,
        }
    }

    /// The selected pattern, validated.
    pub fn selected_pattern(&self) -> Result<Pattern, PatternError> {
        let (_, p) = self
            .map_params()
            .into_iter()
            .find(|(id, _)| *id == self.selected_map())
            .unwrap_or((MapId::Sparse, self.params.clone()));
        p.build()
    }

    /// Checks everything the controls can get wrong, returning `(flag, message)` pairs; the
    /// flag (`--n`, `--stride`, `--window`, `--summary`, `--block`, `--d`, …) says which
    /// control the message belongs next to.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let n = self.params.n;
        if n == 0 || n > crate::APP_MAX_N {
            out.push((
                "--n",
                format!(
                    "n = {n} is out of range: the app takes a sequence length from 1 to {}",
                    crate::APP_MAX_N
                ),
            ));
            return out;
        }
        for (_, p) in self.map_params() {
            if let Err(e) = p.build() {
                let flag = error_flag(&e);
                let msg = e.to_string();
                if !out.iter().any(|(_, m)| *m == msg) {
                    out.push((flag, msg));
                }
            }
        }
        if self.block == 0 || self.block > crate::pattern::MAX_BLOCK {
            out.push((
                "--block",
                format!(
                    "block size {} is out of range: expected 1 to {}",
                    self.block,
                    crate::pattern::MAX_BLOCK
                ),
            ));
        } else if tiles(n, self.block) > MAX_TILES {
            let min_b = min_block(n);
            out.push((
                "--block",
                format!(
                    "B = {} gives {} tiles at n = {n}; block statistics need at most {} tiles \
                     (B ≥ {min_b})",
                    self.block,
                    crate::stats::group(tiles(n, self.block)),
                    crate::stats::group(MAX_TILES)
                ),
            ));
        }
        if self.d == 0 || self.d > MAX_D {
            out.push((
                "--d",
                format!(
                    "head dim d = {} is out of range: expected 1 to {MAX_D}",
                    self.d
                ),
            ));
        }
        out
    }

    /// Clamps values that can only come from an old or edited settings file.
    pub fn sanitize(&mut self) {
        self.params.n = self.params.n.clamp(1, crate::APP_MAX_N);
        self.block = self.block.clamp(1, crate::pattern::MAX_BLOCK);
        self.d = self.d.clamp(1, MAX_D);
        self.threads = self.threads.max(1);
        self.export_scale = self.export_scale.clamp(1, 64);
        self.model_max_tokens = self.model_max_tokens.clamp(2, 2048);
        self.export_view_px = self.export_view_px.clamp(
            super::offscreen::MIN_VIEW_WIDTH,
            super::offscreen::MAX_VIEW_SIDE,
        );
        for own in self.schedule.iter_mut().filter_map(|r| r.own.as_mut()) {
            own.k = own.k.clamp(1, crate::APP_MAX_N);
            own.w = own.w.min(crate::APP_MAX_N);
        }
    }
}

/// Number of `B × B` tiles at length `n`.
pub fn tiles(n: usize, block: usize) -> u64 {
    let nb = n.div_ceil(block.max(1)) as u64;
    nb * nb
}

/// Smallest block size whose tile count fits [`MAX_TILES`] at length `n`.
pub fn min_block(n: usize) -> usize {
    (1..=crate::pattern::MAX_BLOCK)
        .find(|&b| tiles(n, b) <= MAX_TILES)
        .unwrap_or(crate::pattern::MAX_BLOCK)
}

/// The flag a pattern error is about.
pub fn error_flag(e: &PatternError) -> &'static str {
    match e {
        PatternError::BadN(_) => "--n",
        PatternError::Missing { flag, .. } | PatternError::OutOfRange { flag, .. } => {
            flag.split_whitespace().next().unwrap_or("--n")
        }
        PatternError::TooLarge { .. } => "--n",
        PatternError::BlockTooSmall { .. } => "--block",
        PatternError::Syntax {
            flag: Some(flag), ..
        } => flag,
        PatternError::Syntax { .. } | PatternError::TooComplex(_) => "--pattern",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_maps_share_stride_and_window() {
        let s = Settings::default();
        let maps = s.map_params();
        assert_eq!(maps.len(), 3);
        let nnz: Vec<u64> = maps
            .iter()
            .map(|(_, p)| p.build().map(|p| p.nnz()).unwrap_or(0))
            .collect();
        // n = 64, k = 4, w = 3: atrous 1024, local 436, sparse 1024 + 436 − 64.
        assert_eq!(nnz, vec![1024, 436, 1396]);
    }

    #[test]
    fn another_kind_adds_a_fourth_map() {
        let mut s = Settings::default();
        s.params.kind = PatternKind::Fixed;
        assert_eq!(s.map_params().len(), 4);
        assert_eq!(s.selected_map(), MapId::Selected);
    }

    /// An in-memory eframe storage, to read settings the way the app does.
    #[derive(Default)]
    struct Memory(std::collections::HashMap<String, String>);

    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.into(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    use eframe::Storage as _;

    #[test]
    fn schedules_saved_before_own_parameters_still_load() {
        let key = crate::app::STORAGE_KEY;
        let mut old = Memory::default();
        old.set_string(key, "(schedule: [dense, local], block: 8)".into());
        let s: Settings = eframe::get_value(&old, key).expect("old settings load");
        assert_eq!(
            s.schedule,
            [
                ScheduleRow::shared(PatternKind::Dense),
                ScheduleRow::shared(PatternKind::Local)
            ]
        );
        assert_eq!(s.block, 8);
        // A row without `own` and a full row; then a round trip of the current form.
        old.set_string(
            key,
            "(schedule: [(kind: atrous), (kind: local, own: Some((k: 4, w: 9)))])".into(),
        );
        let s: Settings = eframe::get_value(&old, key).expect("rows load");
        assert_eq!(s.schedule[0], ScheduleRow::shared(PatternKind::Atrous));
        assert_eq!(schedule_list(&s.schedule), "atrous,local(w=9)");
        let mut store = Memory::default();
        eframe::set_value(&mut store, key, &s);
        let back: Settings = eframe::get_value(&store, key).expect("round trip");
        assert_eq!(back, s);
    }

    #[test]
    fn rows_give_only_the_parameters_their_pattern_takes() {
        let own = Some(OwnStrideWindow { k: 8, w: 2 });
        let row = |kind| ScheduleRow { kind, own };
        assert_eq!(row(PatternKind::Local).spec().entry, "local(w=2)");
        assert_eq!(row(PatternKind::Sparse).spec().entry, "sparse(k=8, w=2)");
        assert_eq!(row(PatternKind::Dense).spec().entry, "dense");
        assert!(!row(PatternKind::Dense).takes_stride_or_window());
        assert_eq!(
            ScheduleRow::shared(PatternKind::Sparse).spec().entry,
            "sparse"
        );
        let spec = crate::reach::parse_schedule("local(w=128)").unwrap();
        assert_eq!(
            ScheduleRow::from_spec(&spec[0], 4, 3),
            ScheduleRow {
                kind: PatternKind::Local,
                own: Some(OwnStrideWindow { k: 4, w: 128 })
            }
        );
    }

    #[test]
    fn problems_name_the_control() {
        let mut s = Settings::default();
        s.params.stride = Some(0);
        let p = s.problems();
        assert_eq!(p[0].0, "--stride");
        s.params.stride = Some(4);
        s.params.n = 65_536;
        s.block = 4;
        assert_eq!(s.problems()[0].0, "--block");
        assert_eq!(min_block(65_536), 16);
    }
}
