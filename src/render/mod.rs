//! Colormaps and rasters → RGBA. The same code colours the screen and the exported PNG.

use crate::pattern::Raster;

/// A colormap for mask and density images: 0 = no allowed cell, 1 = every cell allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Colormap {
    /// Black → white.
    Gray,
    /// Perceptually uniform purple → yellow.
    Viridis,
    /// Black → purple → cream.
    Magma,
    /// Black → red → yellow.
    Inferno,
    /// Blue → pink → yellow.
    Plasma,
    /// Colour-blind friendly blue → yellow.
    Cividis,
    /// Rainbow-like, high contrast.
    Turbo,
    /// White → dark blue (allowed cells dark; for printing).
    Blues,
}

impl Colormap {
    /// Every colormap, in menu order.
    pub const ALL: [Colormap; 8] = [
        Colormap::Gray,
        Colormap::Viridis,
        Colormap::Magma,
        Colormap::Inferno,
        Colormap::Plasma,
        Colormap::Cividis,
        Colormap::Turbo,
        Colormap::Blues,
    ];

    /// Lowercase name used by `--colormap`.
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Gray => "gray",
            Colormap::Viridis => "viridis",
            Colormap::Magma => "magma",
            Colormap::Inferno => "inferno",
            Colormap::Plasma => "plasma",
            Colormap::Cividis => "cividis",
            Colormap::Turbo => "turbo",
            Colormap::Blues => "blues",
        }
    }

    /// Parses a name (case-insensitive; `grey` is accepted).
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let lower = if lower == "grey" {
            "gray".to_string()
        } else {
            lower
        };
        Self::ALL.into_iter().find(|c| c.name() == lower)
    }

    /// Colour of value `t ∈ [0, 1]` (clamped; NaN maps to 0).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } as f64;
        let grad = match self {
            Colormap::Gray => {
                let v = (t * 255.0).round() as u8;
                return [v, v, v];
            }
            Colormap::Viridis => colorous::VIRIDIS,
            Colormap::Magma => colorous::MAGMA,
            Colormap::Inferno => colorous::INFERNO,
            Colormap::Plasma => colorous::PLASMA,
            Colormap::Cividis => colorous::CIVIDIS,
            Colormap::Turbo => colorous::TURBO,
            Colormap::Blues => colorous::BLUES,
        };
        let c = grad.eval_continuous(t);
        [c.r, c.g, c.b]
    }

    /// A 256-entry lookup table of [`Colormap::rgb`].
    pub fn lut(self) -> [[u8; 3]; 256] {
        let mut lut = [[0u8; 3]; 256];
        for (v, e) in lut.iter_mut().enumerate() {
            *e = self.rgb(v as f32 / 255.0);
        }
        lut
    }
}

/// Colour of block grid lines in images (a red that stands out on every colormap).
pub const GRID_RGB: [u8; 3] = [230, 57, 70];

/// Colours a raster: each pixel's allowed fraction through `cmap`, as RGBA8 row-major.
pub fn raster_rgba(r: &Raster, cmap: Colormap) -> Vec<u8> {
    let lut = cmap.lut();
    let mut out = Vec::with_capacity(r.counts.len() * 4);
    for f in r.fractions() {
        let c = lut[(f * 255.0).round() as usize];
        out.extend_from_slice(&[c[0], c[1], c[2], 255]);
    }
    out
}
