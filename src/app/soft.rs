//! A software painter for egui: turns tessellated egui output ([`ClippedPrimitive`]s) into an
//! image on the CPU, at any pixels-per-point. The app uses it to export a whole view as a PNG
//! at a chosen resolution without a GPU round trip (and tests use it without any GPU at all).
//!
//! It follows egui_wgpu's shader to the letter: vertex colours and textures are premultiplied
//! sRGB ("gamma space"); a fragment is `vertex_colour * texel`, blended as premultiplied alpha
//! `dst = src + dst · (1 − src.a)` in gamma space. Textures are clamped to the edge and
//! sampled with their own filter (nearest for masks, bilinear for the font atlas). Triangles
//! cover a pixel when its centre is inside, with the top-left rule on edges, so two triangles
//! sharing an edge never paint a pixel twice.
//!
//! The image is split into horizontal bands painted in parallel (rayon); each band paints every
//! triangle that crosses it, in order, so the result does not depend on the thread count.

use egui::epaint::{ClippedPrimitive, Primitive, Vertex};
use egui::{Color32, ColorImage, TextureFilter, TextureId, TextureOptions, TexturesDelta};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows of pixels painted by one task.
const BAND_ROWS: usize = 16;

/// The textures a software paint can sample, by egui texture id.
#[derive(Clone, Default)]
pub struct SoftTextures {
    map: HashMap<TextureId, (Arc<ColorImage>, TextureOptions)>,
}

impl SoftTextures {
    /// Sets texture `id` to `image` (replacing any previous one).
    pub fn insert(&mut self, id: TextureId, image: Arc<ColorImage>, options: TextureOptions) {
        self.map.insert(id, (image, options));
    }

    /// Keeps only the textures whose id passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(TextureId) -> bool) {
        self.map.retain(|id, _| keep(*id));
    }

    /// Adds every texture of `other`, replacing those with the same id.
    pub fn overlay(&mut self, other: SoftTextures) {
        self.map.extend(other.map);
    }

    /// Applies the `set` part of one frame's delta: whole images and patches (the font atlas
    /// grows by patches). `free` is ignored: a painter that keeps a texture too long is harmless.
    /// The delta is consumed (egui asserts that no delta is dropped unapplied).
    pub fn apply(&mut self, mut delta: TexturesDelta) {
        for (id, deltas) in delta.set.drain() {
            let id = &id;
            for d in deltas {
                let egui::ImageData::Color(patch) = &d.image;
                match d.pos {
                    None => self.insert(*id, patch.clone(), d.options),
                    Some([x0, y0]) => {
                        let Some((img, opts)) = self.map.get_mut(id) else {
                            continue;
                        };
                        *opts = d.options;
                        let img = Arc::make_mut(img);
                        let [w, h] = img.size;
                        let [pw, ph] = patch.size;
                        for y in 0..ph.min(h.saturating_sub(y0)) {
                            let cols = pw.min(w.saturating_sub(x0));
                            let dst = (y0 + y) * w + x0;
                            img.pixels[dst..dst + cols]
                                .copy_from_slice(&patch.pixels[y * pw..y * pw + cols]);
                        }
                    }
                }
            }
        }
        delta.clear();
    }

    fn get(&self, id: TextureId) -> Option<&(Arc<ColorImage>, TextureOptions)> {
        self.map.get(&id)
    }
}

/// What the painter could not draw (reported, never fatal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PaintReport {
    /// Meshes whose texture was unknown (drawn with a white texture, like egui's default).
    pub missing_textures: Vec<TextureId>,
    /// Paint callbacks skipped (custom GPU drawing has no CPU equivalent).
    pub callbacks_skipped: usize,
}

/// A premultiplied RGBA colour in 0…1.
type Rgba = [f32; 4];

fn to_rgba(c: Color32) -> Rgba {
    let [r, g, b, a] = c.to_array();
    [
        r as f32 / 255.0,
        g as f32 / 255.0,
        b as f32 / 255.0,
        a as f32 / 255.0,
    ]
}

/// One triangle ready to rasterise, in pixel coordinates, counter-clockwise on screen
/// (positive signed area with y down).
struct Tri<'a> {
    p: [[f32; 2]; 3],
    uv: [[f32; 2]; 3],
    colour: [Rgba; 3],
    /// Bounding box in pixels, clipped: `[x0, y0, x1, y1)`.
    bbox: [usize; 4],
    texture: Option<&'a (Arc<ColorImage>, TextureOptions)>,
    /// Every vertex has the same colour and the texture is white there (solid fills): skip
    /// interpolation and sampling.
    solid: Option<Rgba>,
}

/// Paints `primitives` onto a `size = [width, height]` pixel image filled with `clear`, at
/// `pixels_per_point`. Returns the image (premultiplied, like egui's) and what was skipped.
pub fn paint(
    primitives: &[ClippedPrimitive],
    textures: &SoftTextures,
    size: [usize; 2],
    pixels_per_point: f32,
    clear: Color32,
) -> (ColorImage, PaintReport) {
    let [width, height] = size;
    let mut report = PaintReport::default();
    let mut tris = Vec::new();
    for cp in primitives {
        let mesh = match &cp.primitive {
            Primitive::Mesh(m) => m,
            Primitive::Callback(_) => {
                report.callbacks_skipped += 1;
                continue;
            }
        };
        // Scissor rectangle in whole pixels, as egui_wgpu rounds it.
        let clip = cp.clip_rect;
        let px =
            |v: f32, max: usize| (v * pixels_per_point).round().clamp(0.0, max as f32) as usize;
        let (cx0, cx1) = (px(clip.min.x, width), px(clip.max.x, width));
        let (cy0, cy1) = (px(clip.min.y, height), px(clip.max.y, height));
        if cx0 >= cx1 || cy0 >= cy1 {
            continue;
        }
        let texture = textures.get(mesh.texture_id);
        if texture.is_none() && !report.missing_textures.contains(&mesh.texture_id) {
            report.missing_textures.push(mesh.texture_id);
        }
        for idx in mesh.indices.chunks_exact(3) {
            let v: [&Vertex; 3] = [
                &mesh.vertices[idx[0] as usize],
                &mesh.vertices[idx[1] as usize],
                &mesh.vertices[idx[2] as usize],
            ];
            if let Some(t) = triangle(v, pixels_per_point, [cx0, cy0, cx1, cy1], texture) {
                tris.push(t);
            }
        }
    }

    let clear = to_rgba(clear);
    let mut pixels = vec![Color32::TRANSPARENT; width * height];
    pixels
        .par_chunks_mut((BAND_ROWS * width).max(1))
        .enumerate()
        .for_each(|(band, out)| {
            let y0 = band * BAND_ROWS;
            let rows = out.len() / width.max(1);
            let mut acc = vec![clear; out.len()];
            for t in tris
                .iter()
                .filter(|t| t.bbox[1] < y0 + rows && t.bbox[3] > y0)
            {
                fill(t, &mut acc, width, y0, rows);
            }
            for (o, c) in out.iter_mut().zip(&acc) {
                let q = |x: f32| (x.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
                *o = Color32::from_rgba_premultiplied(q(c[0]), q(c[1]), q(c[2]), q(c[3]));
            }
        });
    (ColorImage::new(size, pixels), report)
}

fn triangle<'a>(
    v: [&Vertex; 3],
    ppp: f32,
    clip: [usize; 4],
    texture: Option<&'a (Arc<ColorImage>, TextureOptions)>,
) -> Option<Tri<'a>> {
    let mut p = v.map(|v| [v.pos.x * ppp, v.pos.y * ppp]);
    let mut uv = v.map(|v| [v.uv.x, v.uv.y]);
    let mut colour = v.map(|v| to_rgba(v.color));
    let area = edge(p[0], p[1], p[2]);
    if !area.is_finite() || area == 0.0 {
        return None;
    }
    if area < 0.0 {
        p.swap(1, 2);
        uv.swap(1, 2);
        colour.swap(1, 2);
    }
    if colour
        .iter()
        .all(|c| c[3] == 0.0 && c[0] == 0.0 && c[1] == 0.0 && c[2] == 0.0)
    {
        return None;
    }
    let min_x = p.iter().map(|q| q[0]).fold(f32::INFINITY, f32::min);
    let max_x = p.iter().map(|q| q[0]).fold(f32::NEG_INFINITY, f32::max);
    let min_y = p.iter().map(|q| q[1]).fold(f32::INFINITY, f32::min);
    let max_y = p.iter().map(|q| q[1]).fold(f32::NEG_INFINITY, f32::max);
    // Pixels whose centre x + 0.5 can lie in [min, max].
    let span = |lo: f32, hi: f32, c0: usize, c1: usize| {
        let a = ((lo - 0.5).ceil().max(c0 as f32)) as usize;
        let b = (((hi - 0.5).floor() + 1.0).min(c1 as f32)).max(0.0) as usize;
        (a, b)
    };
    let (x0, x1) = span(min_x, max_x, clip[0], clip[2]);
    let (y0, y1) = span(min_y, max_y, clip[1], clip[3]);
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let solid = (colour[0] == colour[1] && colour[1] == colour[2] && white_at(texture, uv))
        .then_some(colour[0]);
    Some(Tri {
        p,
        uv,
        colour,
        bbox: [x0, y0, x1, y1],
        texture,
        solid,
    })
}

/// Whether all three uv fall on one opaque white texel (egui draws solid shapes with the white
/// texel of the font atlas), so sampling can be skipped.
fn white_at(texture: Option<&(Arc<ColorImage>, TextureOptions)>, uv: [[f32; 2]; 3]) -> bool {
    let Some((img, _)) = texture else {
        return true; // a missing texture samples as white
    };
    if uv[0] != uv[1] || uv[1] != uv[2] {
        return false;
    }
    // Bilinear sampling touches up to four texels around the point.
    let [w, h] = img.size;
    let fx = uv[0][0] * w as f32 - 0.5;
    let fy = uv[0][1] * h as f32 - 0.5;
    let (xa, ya) = (fx.floor(), fy.floor());
    for (dx, dy) in [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
        let x = ((xa + dx).max(0.0) as usize).min(w.saturating_sub(1));
        let y = ((ya + dy).max(0.0) as usize).min(h.saturating_sub(1));
        if img.pixels.get(y * w + x) != Some(&Color32::WHITE) {
            return false;
        }
    }
    true
}

/// Twice the signed area of `(a, b, c)`; positive when `c` is on the inner side of `a → b`.
fn edge(a: [f32; 2], b: [f32; 2], c: [f32; 2]) -> f32 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Whether edge `a → b` of a positively oriented triangle is a top or left edge (pixels
/// exactly on it belong to this triangle).
fn top_left(a: [f32; 2], b: [f32; 2]) -> bool {
    // Two triangles that share an edge walk it in opposite directions, so exactly one of them
    // sees `dy > 0` (or `dy == 0, dx < 0`) and owns the pixels lying exactly on it.
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    dy > 0.0 || (dy == 0.0 && dx < 0.0)
}

fn fill(t: &Tri, acc: &mut [Rgba], width: usize, y0: usize, rows: usize) {
    let [a, b, c] = t.p;
    let area = edge(a, b, c);
    let inv_area = 1.0 / area;
    let ys = t.bbox[1].max(y0);
    let ye = t.bbox[3].min(y0 + rows);
    let (xs, xe) = (t.bbox[0], t.bbox[2]);
    // Bias: a pixel exactly on a non-top-left edge is outside.
    let bias = |p: [f32; 2], q: [f32; 2]| {
        if top_left(p, q) {
            0.0
        } else {
            f32::MIN_POSITIVE
        }
    };
    let (b0, b1, b2) = (bias(b, c), bias(c, a), bias(a, b));
    for y in ys..ye {
        let py = y as f32 + 0.5;
        let row = (y - y0) * width;
        for x in xs..xe {
            let pt = [x as f32 + 0.5, py];
            let w0 = edge(b, c, pt);
            let w1 = edge(c, a, pt);
            let w2 = edge(a, b, pt);
            if w0 < b0 || w1 < b1 || w2 < b2 {
                continue;
            }
            let src = match t.solid {
                Some(c) => c,
                None => {
                    let (l0, l1, l2) = (w0 * inv_area, w1 * inv_area, w2 * inv_area);
                    let lerp =
                        |k: usize| l0 * t.colour[0][k] + l1 * t.colour[1][k] + l2 * t.colour[2][k];
                    let vc = [lerp(0), lerp(1), lerp(2), lerp(3)];
                    let u = l0 * t.uv[0][0] + l1 * t.uv[1][0] + l2 * t.uv[2][0];
                    let v = l0 * t.uv[0][1] + l1 * t.uv[1][1] + l2 * t.uv[2][1];
                    let tex = match t.texture {
                        Some((img, opts)) => sample(img, *opts, u, v, t),
                        None => [1.0; 4],
                    };
                    [
                        vc[0] * tex[0],
                        vc[1] * tex[1],
                        vc[2] * tex[2],
                        vc[3] * tex[3],
                    ]
                }
            };
            let d = &mut acc[row + x];
            let k = 1.0 - src[3];
            *d = [
                src[0] + d[0] * k,
                src[1] + d[1] * k,
                src[2] + d[2] * k,
                src[3] + d[3] * k,
            ];
        }
    }
}

/// Samples `img` at normalised `(u, v)`, clamped to the edge, with the filter the texture asks
/// for: its magnification filter when a texel covers more than a pixel, else its minification.
fn sample(img: &ColorImage, opts: TextureOptions, u: f32, v: f32, t: &Tri) -> Rgba {
    let [w, h] = img.size;
    if w == 0 || h == 0 {
        return [1.0; 4];
    }
    let filter = if opts.magnification == opts.minification {
        opts.magnification
    } else {
        // Texels per pixel along x, from the uv spread over the triangle's bounding box.
        let du = t.uv.iter().map(|q| q[0]).fold(f32::NEG_INFINITY, f32::max)
            - t.uv.iter().map(|q| q[0]).fold(f32::INFINITY, f32::min);
        let px = (t.bbox[2] - t.bbox[0]).max(1) as f32;
        if du * w as f32 / px > 1.0 {
            opts.minification
        } else {
            opts.magnification
        }
    };
    let texel = |x: isize, y: isize| {
        let x = x.clamp(0, w as isize - 1) as usize;
        let y = y.clamp(0, h as isize - 1) as usize;
        to_rgba(img.pixels[y * w + x])
    };
    match filter {
        TextureFilter::Nearest => texel(
            (u * w as f32).floor() as isize,
            (v * h as f32).floor() as isize,
        ),
        TextureFilter::Linear => {
            let fx = u * w as f32 - 0.5;
            let fy = v * h as f32 - 0.5;
            let (x0, y0) = (fx.floor(), fy.floor());
            let (tx, ty) = (fx - x0, fy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let (c00, c10, c01, c11) = (
                texel(x0, y0),
                texel(x0 + 1, y0),
                texel(x0, y0 + 1),
                texel(x0 + 1, y0 + 1),
            );
            let mut out = [0.0; 4];
            for k in 0..4 {
                let top = c00[k] + (c10[k] - c00[k]) * tx;
                let bottom = c01[k] + (c11[k] - c01[k]) * tx;
                out[k] = top + (bottom - top) * ty;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests;
