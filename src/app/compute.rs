//! The work behind the Masks view, run on the `attnscope-masks` worker thread: build each
//! pattern, count its statistics, rasterise it (whole and zoomed region) and colour the pixels.
//!
//! Pixel `(x, y)` of an image covers queries `rows` and keys `cols` split as in
//! [`Raster`]; the UI only uploads the finished RGBA buffers as `NEAREST` textures.

use super::settings::{tiles, MapId, MAX_TILES};
use super::worker::{Job, Sliced};
use crate::pattern::{BlockKind, Pattern, PatternParams, Raster};
use crate::render::Colormap;
use crate::stats::PatternStats;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Colour of cells allowed by the local window only (blue).
pub const LOCAL_RGB: [u8; 3] = [78, 154, 232];
/// Colour of cells allowed by the atrous stride only (orange).
pub const ATROUS_RGB: [u8; 3] = [242, 142, 43];
/// Colour of cells allowed by both (magenta).
pub const BOTH_RGB: [u8; 3] = [235, 70, 150];
/// Colour of "allowed" / "reaches every pair" in text and bars (green).
pub const ALLOWED_RGB: [u8; 3] = [80, 200, 120];

/// Colours of the members of a union in the selected map, in order (then repeated).
pub const MEMBER_RGB: [[u8; 3]; 6] = [
    LOCAL_RGB,
    ATROUS_RGB,
    [80, 200, 120],
    [170, 110, 230],
    [230, 200, 60],
    [90, 210, 220],
];

/// The colour of union member `x`.
pub fn member_rgb(x: usize) -> [u8; 3] {
    MEMBER_RGB[x % MEMBER_RGB.len()]
}

/// An RGB triple as an egui colour.
pub fn rgb(c: [u8; 3]) -> egui::Color32 {
    egui::Color32::from_rgb(c[0], c[1], c[2])
}
/// Block overlay tint of full tiles (green).
pub const FULL_RGBA: [u8; 4] = [60, 200, 90, 80];
/// Block overlay tint of partial tiles (yellow).
pub const PARTIAL_RGBA: [u8; 4] = [250, 210, 40, 55];
/// Block overlay tint of empty tiles (grey-red).
pub const EMPTY_RGBA: [u8; 4] = [200, 60, 60, 80];

/// Background of mask images (cells with nothing allowed).
pub fn background(dark: bool) -> [u8; 3] {
    if dark {
        [18, 20, 24]
    } else {
        [252, 252, 252]
    }
}

/// A sub-rectangle of the matrix and the pixel grid to draw it on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// Query rows.
    pub rows: Range<usize>,
    /// Key columns.
    pub cols: Range<usize>,
    /// Pixels across.
    pub width: usize,
    /// Pixels down.
    pub height: usize,
}

/// One request to the masks worker.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskJob {
    /// The maps to draw.
    pub maps: Vec<(MapId, PatternParams)>,
    /// Block size B.
    pub block: usize,
    /// Head dimension d (FLOPs).
    pub d: usize,
    /// Largest side of the whole-matrix images, in pixels.
    pub side: usize,
    /// A zoomed region to draw sharper, if the view shows only part of the matrix.
    pub region: Option<Region>,
    /// Colormap of the selected pattern.
    pub colormap: Colormap,
    /// Dark background.
    pub dark: bool,
    /// Also draw the block overlay.
    pub blocks: bool,
}

/// An RGBA image of part of a mask.
#[derive(Clone, Debug)]
pub struct MaskImage {
    /// RGBA8, row-major, `width × height`.
    pub rgba: Vec<u8>,
    /// The same pixels as an egui image, made here so the UI thread only hands it to the GPU.
    pub image: Arc<egui::ColorImage>,
    /// Pixels across.
    pub width: usize,
    /// Pixels down.
    pub height: usize,
    /// Query rows covered.
    pub rows: Range<usize>,
    /// Key columns covered.
    pub cols: Range<usize>,
}

/// Everything the Masks view shows for one map.
#[derive(Clone, Debug)]
pub struct MapOut {
    /// Which map.
    pub id: MapId,
    /// The pattern, or why it is invalid.
    pub pattern: Result<Arc<Pattern>, String>,
    /// Statistics, or why they were skipped.
    pub stats: Result<PatternStats, String>,
    /// Allowed pairs (also known when block statistics are skipped).
    pub nnz: u64,
    /// The whole matrix.
    pub full: Option<MaskImage>,
    /// The zoomed region, sharper.
    pub region: Option<MaskImage>,
    /// Block overlay over the whole matrix.
    pub blocks_full: Option<MaskImage>,
    /// Block overlay over the zoomed region.
    pub blocks_region: Option<MaskImage>,
}

/// The worker's answer to a [`MaskJob`].
#[derive(Clone, Debug)]
pub struct MaskResult {
    /// The job answered.
    pub job: MaskJob,
    /// One entry per map, in job order.
    pub maps: Vec<MapOut>,
    /// Time the worker spent, in milliseconds.
    pub elapsed_ms: f64,
}

/// What the worker keeps between jobs so that zooming does not recount statistics.
#[derive(Default)]
pub struct MaskCache {
    stats: HashMap<(String, usize, usize), StatsEntry>,
    full: HashMap<FullKey, Raster>,
}

/// Statistics (or why skipped) and nnz of one pattern.
type StatsEntry = (Result<PatternStats, String>, u64);

/// `(parameters as text, side)`: `PatternParams` is not `Hash`.
#[derive(Clone, PartialEq, Eq, Hash)]
struct FullKey(String, usize);

impl MaskCache {
    fn stats(
        &mut self,
        p: &Pattern,
        params: &PatternParams,
        block: usize,
        d: usize,
    ) -> (Result<PatternStats, String>, u64) {
        let key = (format!("{params:?}"), block, d);
        if let Some(v) = self.stats.get(&key) {
            return v.clone();
        }
        let v = if tiles(p.n(), block) > MAX_TILES {
            (
                Err(format!(
                    "block statistics skipped: {} tiles of B = {block}",
                    crate::stats::group(tiles(p.n(), block))
                )),
                p.nnz(),
            )
        } else {
            match PatternStats::compute(p, d, block) {
                Ok(s) => {
                    let nnz = s.nnz;
                    (Ok(s), nnz)
                }
                Err(e) => (Err(e.to_string()), p.nnz()),
            }
        };
        if self.stats.len() > 64 {
            self.stats.clear();
        }
        self.stats.insert(key, v.clone());
        v
    }

    /// The whole-matrix raster of `p` at `side`, counted band by band (a sliced job pauses
    /// between bands); `None` when cancelled.
    async fn full_raster(
        &mut self,
        p: &Pattern,
        params: &PatternParams,
        side: usize,
        ctl: &Job,
        progress: impl Fn(f32),
    ) -> Option<Raster> {
        let key = FullKey(format!("{params:?}"), side);
        if let Some(r) = self.full.get(&key) {
            return Some(r.clone());
        }
        let r = fill_sliced(p, Raster::empty(p.n(), side), ctl, progress).await?;
        if self.full.len() > 16 {
            self.full.clear();
        }
        self.full.insert(key, r.clone());
        Some(r)
    }
}

/// Pixels of one band of a raster counted between two checkpoints of a sliced job (a few
/// milliseconds of counting in a browser at n = 4096).
pub const BAND_PIXELS: usize = 1 << 15;

/// Fills every row of `r` with `p`'s counts, [`Job::batch`] bands of [`BAND_PIXELS`] at a
/// time with a checkpoint after each, reporting the share done; `None` when cancelled.
pub async fn fill_sliced(
    p: &Pattern,
    mut r: Raster,
    ctl: &Job,
    progress: impl Fn(f32),
) -> Option<Raster> {
    let band = (BAND_PIXELS / r.width.max(1)).max(1);
    let mut y = 0;
    while y < r.height {
        let rows = ctl.batch(r.height.div_ceil(band)) * band;
        r.fill_rows(p, y..y + rows);
        y = (y + rows).min(r.height);
        if ctl.cancelled() {
            return None;
        }
        progress(y as f32 / r.height as f32);
        ctl.checkpoint().await;
    }
    Some(r)
}

/// The masks worker's job for [`super::worker::Worker::spawn_sliced`]: [`run_mask_job`] with
/// the cache kept between jobs (a job dropped between slices drops the cache with it).
pub fn mask_worker() -> impl FnMut(MaskJob, Job) -> Sliced<MaskResult> + Send + 'static {
    let cache = Arc::new(Mutex::new(MaskCache::default()));
    move |job, ctl| {
        let cache = cache.clone();
        Box::pin(async move {
            let lock = || cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut mine = std::mem::take(&mut *lock());
            let out = run_mask_job(job, &mut mine, &ctl).await;
            *lock() = mine;
            out
        })
    }
}

/// Runs one job, pausing at checkpoints between maps, raster bands and images when sliced;
/// `None` when cancelled.
pub async fn run_mask_job(job: MaskJob, cache: &mut MaskCache, ctl: &Job) -> Option<MaskResult> {
    let t0 = web_time::Instant::now();
    let mut maps = Vec::with_capacity(job.maps.len());
    // Rasters of the atrous and local maps, kept to colour the sparse map by origin.
    let mut parts: HashMap<MapId, (Raster, Option<Raster>)> = HashMap::new();
    let total = job.maps.len().max(1) as f32;
    for (step, (id, params)) in job.maps.iter().enumerate() {
        if ctl.cancelled() {
            return None;
        }
        // Share of map `step` done → progress of the whole job.
        let at = |f: f32| ctl.set_progress(((step as f32 + f) / total * 1000.0) as u32);
        at(0.0);
        let p = match params.build() {
            Ok(p) => Arc::new(p),
            Err(e) => {
                maps.push(MapOut {
                    id: *id,
                    pattern: Err(e.to_string()),
                    stats: Err(e.to_string()),
                    nnz: 0,
                    full: None,
                    region: None,
                    blocks_full: None,
                    blocks_region: None,
                });
                continue;
            }
        };
        let (stats, nnz) = cache.stats(&p, params, job.block, job.d);
        ctl.checkpoint().await;
        let full_r = cache
            .full_raster(&p, params, job.side, ctl, |f| at(0.1 + 0.5 * f))
            .await?;
        let region_r = match job.region.as_ref().filter(|_| p.n() > job.side) {
            Some(g) => {
                let empty = Raster::empty_region(
                    p.n(),
                    clip(&g.rows, p.n()),
                    clip(&g.cols, p.n()),
                    g.width,
                    g.height,
                );
                Some(fill_sliced(&p, empty, ctl, |f| at(0.6 + 0.2 * f)).await?)
            }
            None => None,
        };
        if ctl.cancelled() {
            return None;
        }
        // Union members' rasters on each grid, to colour the selected map by member.
        let by_member = matches!(id, MapId::Selected) && p.member_labels().len() > 1;
        let mut member_parts: Vec<Vec<Raster>> = Vec::new();
        if by_member {
            let members = p.members();
            for r in std::iter::once(&full_r).chain(region_r.as_ref()) {
                let mut grid = Vec::new();
                for m in &members {
                    let rows = r.row_edges[0]..r.row_edges[r.height];
                    let cols = r.col_edges[0]..r.col_edges[r.width];
                    let empty = Raster::empty_region(m.n(), rows, cols, r.width, r.height);
                    grid.push(fill_sliced(m, empty, ctl, |_| {}).await?);
                }
                member_parts.push(grid);
            }
        }
        let full = {
            let members = member_parts.first().map(Vec::as_slice);
            let paint = painter(*id, &job, &full_r, origin(&parts, &full_r), members);
            paint_sliced(&full_r, paint, ctl).await?
        };
        at(0.85);
        let region = match &region_r {
            Some(r) => {
                let members = member_parts.get(1).map(Vec::as_slice);
                let paint = painter(*id, &job, r, origin(&parts, r), members);
                Some(paint_sliced(r, paint, ctl).await?)
            }
            None => None,
        };
        at(0.9);
        let (blocks_full, blocks_region) = if job.blocks && tiles(p.n(), job.block) <= MAX_TILES {
            let whole = paint_sliced(&full_r, block_overlay(&p, job.block, &full_r), ctl).await?;
            let zoomed = match &region_r {
                Some(r) => Some(paint_sliced(r, block_overlay(&p, job.block, r), ctl).await?),
                None => None,
            };
            (Some(whole), zoomed)
        } else {
            (None, None)
        };
        if matches!(id, MapId::Atrous | MapId::Local) {
            parts.insert(*id, (full_r, region_r));
        }
        maps.push(MapOut {
            id: *id,
            pattern: Ok(p),
            stats,
            nnz,
            full: Some(full),
            region,
            blocks_full,
            blocks_region,
        });
        ctl.checkpoint().await;
    }
    ctl.set_progress(1000);
    Some(MaskResult {
        job,
        maps,
        elapsed_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

fn clip(r: &Range<usize>, n: usize) -> Range<usize> {
    let s = r.start.min(n.saturating_sub(1));
    s..r.end.clamp(s + 1, n)
}

/// How map `id` is coloured on the grid of `r`: the sparse map by origin when `origin` holds
/// the local and atrous rasters on that grid, a union by member when `members` holds its
/// members' rasters.
fn painter<'a>(
    id: MapId,
    job: &MaskJob,
    r: &'a Raster,
    origin: Option<(&'a Raster, &'a Raster)>,
    members: Option<&'a [Raster]>,
) -> PaintRows<'a> {
    match (id, origin, members) {
        (MapId::Sparse, Some((local, atrous)), _) => composite(r, local, atrous, job.dark),
        (MapId::Sparse, None, _) => tinted(r, BOTH_RGB, job.dark),
        (MapId::Atrous, ..) => tinted(r, ATROUS_RGB, job.dark),
        (MapId::Local, ..) => tinted(r, LOCAL_RGB, job.dark),
        (MapId::Selected, _, Some(parts)) => members_image(r, parts, job.dark),
        (MapId::Selected, _, None) => mapped(r, job.colormap),
    }
}

/// The local and atrous maps' rasters on the grid of `r`, if both have one.
fn origin<'a>(
    parts: &'a HashMap<MapId, (Raster, Option<Raster>)>,
    r: &Raster,
) -> Option<(&'a Raster, &'a Raster)> {
    let pick = |m: MapId| {
        parts.get(&m).and_then(|(f, reg)| {
            if same_grid(f, r) {
                Some(f)
            } else {
                reg.as_ref().filter(|g| same_grid(g, r))
            }
        })
    };
    Some((pick(MapId::Local)?, pick(MapId::Atrous)?))
}

fn same_grid(a: &Raster, b: &Raster) -> bool {
    a.col_edges == b.col_edges && a.row_edges == b.row_edges
}

/// The RGBA pixels of some rows of an image of a raster: `paint(rows, out)` appends the
/// pixels of rows `rows` to `out`.
pub type PaintRows<'a> = Box<dyn FnMut(Range<usize>, &mut Vec<u8>) + 'a>;

/// The image of `r` painted by `paint`, [`Job::batch`] bands of [`BAND_PIXELS`] at a time
/// (and turned into an egui image the same way) with a checkpoint after each band; `None`
/// when cancelled.
pub async fn paint_sliced(r: &Raster, mut paint: PaintRows<'_>, ctl: &Job) -> Option<MaskImage> {
    let band = (BAND_PIXELS / r.width.max(1)).max(1);
    let bands = |y: usize| ctl.batch((r.height - y).div_ceil(band)) * band;
    let mut rgba = Vec::with_capacity(r.width * r.height * 4);
    let mut y = 0;
    while y < r.height {
        let end = (y + bands(y)).min(r.height);
        paint(y..end, &mut rgba);
        y = end;
        if ctl.cancelled() {
            return None;
        }
        ctl.checkpoint().await;
    }
    // `ColorImage::from_rgba_unmultiplied`, band by band.
    let mut pixels = Vec::with_capacity(r.width * r.height);
    let mut y = 0;
    while y < r.height {
        let end = (y + bands(y)).min(r.height);
        pixels.extend(
            rgba[y * r.width * 4..end * r.width * 4]
                .chunks_exact(4)
                .map(|p| egui::Color32::from_rgba_unmultiplied(p[0], p[1], p[2], p[3])),
        );
        y = end;
        ctl.checkpoint().await;
    }
    Some(MaskImage {
        image: Arc::new(egui::ColorImage::new([r.width, r.height], pixels)),
        rgba,
        width: r.width,
        height: r.height,
        rows: r.row_edges[0]..r.row_edges[r.height],
        cols: r.col_edges[0]..r.col_edges[r.width],
    })
}

/// `v` (≥ 0) rounded half away from zero, saturated to a byte. `f32::round` is a library call
/// in WebAssembly; this is one add and a conversion.
fn round_u8(v: f32) -> u8 {
    (v + 0.5) as u8
}

fn lerp(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let m = |x: u8, y: u8| round_u8(x as f32 + (y as f32 - x as f32) * t);
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

/// Display intensity of a pixel whose cells are allowed in share `f`: 0 stays 0, any allowed
/// cell is clearly visible (≥ 0.35), a full pixel is 1; √ keeps sparse lattices readable when
/// one pixel covers many cells. At one cell per pixel this is exactly 0 or 1.
pub fn intensity(f: f32) -> f32 {
    if f <= 0.0 {
        0.0
    } else {
        0.35 + 0.65 * f.min(1.0).sqrt()
    }
}

/// The allowed share of pixel `(x, y)` of `r` (as [`Raster::fractions`]).
fn fraction(r: &Raster, x: usize, y: usize) -> f32 {
    let a = r.area(x, y);
    if a == 0 {
        0.0
    } else {
        r.counts[y * r.width + x] as f32 / a as f32
    }
}

/// Background → `rgb` by the allowed share of each pixel (through [`intensity`]).
pub fn tinted(r: &Raster, rgb: [u8; 3], dark: bool) -> PaintRows<'_> {
    let bg = background(dark);
    Box::new(move |ys, out| {
        // Neighbouring pixels mostly share their share: colour each new value once.
        let mut last = (f32::NAN, [0u8; 3]);
        for y in ys {
            for x in 0..r.width {
                let f = fraction(r, x, y);
                if f != last.0 {
                    last = (f, lerp(bg, rgb, intensity(f)));
                }
                let c = last.1;
                out.extend_from_slice(&[c[0], c[1], c[2], 255]);
            }
        }
    })
}

/// The colormap of each pixel's allowed share (through [`intensity`]).
pub fn mapped(r: &Raster, cmap: Colormap) -> PaintRows<'_> {
    let lut = cmap.lut();
    Box::new(move |ys, out| {
        for y in ys {
            for x in 0..r.width {
                let c = lut[round_u8(intensity(fraction(r, x, y)) * 255.0) as usize];
                out.extend_from_slice(&[c[0], c[1], c[2], 255]);
            }
        }
    })
}

/// The sparse map coloured by origin: the local-only, atrous-only and both cells of a pixel
/// mixed by count (`both = local + atrous − sparse`), over the background by [`intensity`].
pub fn composite<'a>(
    sparse: &'a Raster,
    local: &'a Raster,
    atrous: &'a Raster,
    dark: bool,
) -> PaintRows<'a> {
    let bg = background(dark);
    Box::new(move |ys, out| {
        // Neighbouring pixels mostly share their counts: mix each new combination once.
        let mut last = (None, [0u8; 4]);
        for y in ys {
            for x in 0..sparse.width {
                let t = y * sparse.width + x;
                let key = (
                    sparse.area(x, y),
                    sparse.counts[t],
                    local.counts[t],
                    atrous.counts[t],
                );
                if last.0 != Some(key) {
                    let (area, s, l, a) = key;
                    let area = area.max(1) as f32;
                    let both = (l + a).saturating_sub(s);
                    let lo = l.saturating_sub(both) as f32;
                    let ao = a.saturating_sub(both) as f32;
                    let b = both as f32;
                    let allowed = (lo + ao + b).max(1.0);
                    let t = intensity(s as f32 / area);
                    let mix = |k: usize| {
                        let c = (lo * LOCAL_RGB[k] as f32
                            + ao * ATROUS_RGB[k] as f32
                            + b * BOTH_RGB[k] as f32)
                            / allowed;
                        round_u8((bg[k] as f32 + (c - bg[k] as f32) * t).clamp(0.0, 255.0))
                    };
                    last = (Some(key), [mix(0), mix(1), mix(2), 255]);
                }
                out.extend_from_slice(&last.1);
            }
        }
    })
}

/// A union coloured by member: each pixel mixes the colours of the members that allow its
/// cells, weighted by their counts, over the background by the union's share [`intensity`];
/// `parts` are the members' rasters on the grid of `r`, in member order.
pub fn members_image<'a>(r: &'a Raster, parts: &'a [Raster], dark: bool) -> PaintRows<'a> {
    let bg = background(dark);
    Box::new(move |ys, out| {
        for y in ys {
            for x in 0..r.width {
                let t = y * r.width + x;
                let area = r.area(x, y).max(1) as f32;
                let weights: Vec<f32> = parts.iter().map(|m| m.counts[t] as f32).collect();
                let total = weights.iter().sum::<f32>().max(1.0);
                let level = intensity(r.counts[t] as f32 / area);
                let mix = |k: usize| {
                    let c: f32 = weights
                        .iter()
                        .enumerate()
                        .map(|(m, w)| w * member_rgb(m)[k] as f32)
                        .sum::<f32>()
                        / total;
                    (bg[k] as f32 + (c - bg[k] as f32) * level)
                        .round()
                        .clamp(0.0, 255.0) as u8
                };
                out.extend_from_slice(&[mix(0), mix(1), mix(2), 255]);
            }
        }
    })
}

/// The block overlay on the grid of `r`: each pixel takes the kind of the `B × B` tile under
/// its centre (full, partial or empty, as `BlockLayout` classifies tiles).
pub fn block_overlay<'a>(p: &'a Pattern, block: usize, r: &'a Raster) -> PaintRows<'a> {
    let n = p.n();
    let span = move |b: usize| b * block..((b + 1) * block).min(n);
    let kind = move |bi: usize, bj: usize| {
        let (rows, cols) = (span(bi), span(bj));
        let area = (rows.len() * cols.len()) as u64;
        match p.count_rect(rows, cols) {
            0 => BlockKind::Empty,
            c if c == area => BlockKind::Full,
            _ => BlockKind::Partial,
        }
    };
    let mid = |e: &[usize], t: usize| (e[t] + e[t + 1].max(e[t] + 1) - 1) / 2;
    let bjs: Vec<usize> = (0..r.width).map(|x| mid(&r.col_edges, x) / block).collect();
    // The last line painted and its block row: rows in the same block row repeat it.
    let mut last: Option<(usize, Vec<u8>)> = None;
    Box::new(move |ys, out| {
        for y in ys {
            let bi = mid(&r.row_edges, y) / block;
            if let Some((lbi, line)) = &last {
                if *lbi == bi {
                    out.extend_from_slice(line);
                    continue;
                }
            }
            let mut line = Vec::with_capacity(r.width * 4);
            let mut prev: Option<(usize, [u8; 4])> = None;
            for &bj in &bjs {
                let c = match prev {
                    Some((pbj, c)) if pbj == bj => c,
                    _ => match kind(bi, bj) {
                        BlockKind::Full => FULL_RGBA,
                        BlockKind::Partial => PARTIAL_RGBA,
                        BlockKind::Empty => EMPTY_RGBA,
                    },
                };
                prev = Some((bj, c));
                line.extend_from_slice(&c);
            }
            out.extend_from_slice(&line);
            last = Some((bi, line));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::settings::Settings;

    fn job(s: &Settings) -> MaskJob {
        MaskJob {
            maps: s.map_params(),
            block: s.block,
            d: s.d,
            side: 256,
            region: None,
            colormap: Colormap::Gray,
            dark: true,
            blocks: true,
        }
    }

    fn run(j: MaskJob) -> MaskResult {
        let w: super::super::worker::Worker<MaskJob, MaskResult> =
            super::super::worker::Worker::spawn_sliced("attnscope-test", None, mask_worker());
        w.submit(j);
        for _ in 0..5000 {
            if let Some(r) = w.poll() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("no result");
    }

    #[test]
    fn sparse_cells_are_coloured_by_origin() {
        let s = Settings::default(); // n = 64, k = 4, w = 3
        let r = run(job(&s));
        let sparse = r
            .maps
            .iter()
            .find(|m| m.id == MapId::Sparse)
            .expect("sparse");
        let img = sparse.full.as_ref().expect("image");
        assert_eq!((img.width, img.height), (64, 64));
        let px = |i: usize, j: usize| {
            let t = (i * 64 + j) * 4;
            [img.rgba[t], img.rgba[t + 1], img.rgba[t + 2]]
        };
        assert_eq!(px(10, 10), BOTH_RGB); // distance 0: both
        assert_eq!(px(10, 9), LOCAL_RGB); // distance 1: local only
        assert_eq!(px(10, 2), ATROUS_RGB); // distance 8: atrous only
        assert_eq!(px(10, 5), background(true)); // distance 5: neither
        assert_eq!(sparse.nnz, 1396);
        let st = sparse.stats.as_ref().expect("stats");
        assert_eq!(st.flops_useful, 4 * 64 * 1396);
    }

    #[test]
    fn large_n_is_downsampled_and_zoom_is_sharp() {
        let mut s = Settings::default();
        s.params.n = 65_536;
        s.block = 64;
        let mut j = job(&s);
        j.region = Some(Region {
            rows: 1000..1064,
            cols: 1000..1064,
            width: 64,
            height: 64,
        });
        let r = run(j);
        for m in &r.maps {
            let f = m.full.as_ref().expect("full");
            assert_eq!((f.width, f.height), (256, 256));
            let g = m.region.as_ref().expect("region");
            assert_eq!((g.width, g.height, g.rows.clone()), (64, 64, 1000..1064));
            assert!(m.blocks_full.is_some());
        }
        let sparse = &r.maps[2];
        let g = sparse.region.as_ref().expect("region");
        // Query 1010 vs key 1002 (distance 8): atrous only, exact at one cell per pixel.
        let t = (10 * 64 + 2) * 4;
        assert_eq!(&g.rgba[t..t + 3], &ATROUS_RGB);
    }

    /// `job` run in slices that each stop at the first checkpoint (a spent budget): the
    /// result and the progress seen after each slice.
    fn sliced(job: MaskJob, ctl: &Job) -> (Option<MaskResult>, Vec<u32>) {
        let ctl2 = ctl.clone();
        let mut fut: Sliced<MaskResult> =
            Box::pin(async move { run_mask_job(job, &mut MaskCache::default(), &ctl2).await });
        let mut progress = Vec::new();
        loop {
            match super::super::worker::poll_slice(&mut fut, std::time::Duration::ZERO) {
                std::task::Poll::Ready(out) => return (out, progress),
                std::task::Poll::Pending => progress.push(ctl.progress_per_mille()),
            }
        }
    }

    fn zoomed_job() -> MaskJob {
        let mut s = Settings::default();
        s.params.n = 2048;
        let mut j = job(&s);
        j.side = 512;
        j.region = Some(Region {
            rows: 300..700,
            cols: 100..400,
            width: 300,
            height: 200,
        });
        j
    }

    #[test]
    fn a_sliced_mask_job_draws_exactly_what_one_go_draws() {
        let j = zoomed_job();
        let whole = super::super::worker::run_to_end(run_mask_job(
            j.clone(),
            &mut MaskCache::default(),
            &Job::new(),
        ))
        .expect("result");
        let (sliced, progress) = sliced(j, &Job::sliced());
        let sliced = sliced.expect("result");
        // Three maps of 512 × 512 pixels in bands of BAND_PIXELS, and their zoomed regions:
        // many slices, progress never going back.
        assert!(progress.len() >= 3 * 8, "{} slices", progress.len());
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        assert!(
            progress[0] < 300 && *progress.last().unwrap() >= 900,
            "{progress:?}"
        );
        assert_eq!(whole.maps.len(), sliced.maps.len());
        let same = |a: &Option<MaskImage>, b: &Option<MaskImage>| match (a, b) {
            (Some(a), Some(b)) => {
                (a.width, a.height, &a.rows, &a.cols, &a.rgba)
                    == (b.width, b.height, &b.rows, &b.cols, &b.rgba)
            }
            (None, None) => true,
            _ => false,
        };
        for (a, b) in whole.maps.iter().zip(&sliced.maps) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.nnz, b.nnz);
            assert_eq!(a.stats, b.stats);
            assert!(a.region.is_some() && a.blocks_full.is_some());
            for (x, y) in [
                (&a.full, &b.full),
                (&a.region, &b.region),
                (&a.blocks_full, &b.blocks_full),
                (&a.blocks_region, &b.blocks_region),
            ] {
                assert!(same(x, y), "{:?} differs", a.id);
            }
        }
    }

    #[test]
    fn a_union_coloured_by_member_is_the_same_sliced() {
        let s = Settings {
            params: PatternParams::new(crate::pattern::PatternKind::Custom, 700)
                .expr("local(w=5) | atrous(k=9)"),
            ..Default::default()
        };
        let mut j = job(&s);
        j.maps.retain(|(id, _)| *id == MapId::Selected);
        assert_eq!(j.maps.len(), 1);
        let whole = super::super::worker::run_to_end(run_mask_job(
            j.clone(),
            &mut MaskCache::default(),
            &Job::new(),
        ))
        .expect("result");
        let (sliced, _) = sliced(j, &Job::sliced());
        let (a, b) = (&whole.maps[0], &sliced.expect("result").maps[0]);
        let (a, b) = (
            a.full.as_ref().expect("image"),
            b.full.as_ref().expect("image"),
        );
        assert_eq!(a.rgba, b.rgba);
        // Coloured by member: local cells blue.
        let b = background(true);
        assert!(a.rgba[..3] != b[..], "{:?}", &a.rgba[..3]);
    }

    #[test]
    fn a_mask_job_cancelled_between_slices_stops() {
        let ctl = Job::sliced();
        let ctl2 = ctl.clone();
        let mut fut: Sliced<MaskResult> =
            Box::pin(
                async move { run_mask_job(zoomed_job(), &mut MaskCache::default(), &ctl2).await },
            );
        let poll = |fut: &mut Sliced<MaskResult>| {
            super::super::worker::poll_slice(fut, std::time::Duration::ZERO)
        };
        for _ in 0..5 {
            assert!(poll(&mut fut).is_pending());
        }
        ctl.cancel();
        assert!(matches!(poll(&mut fut), std::task::Poll::Ready(None)));
        assert!(ctl.progress_per_mille() < 500);
    }
}
