use super::*;
use egui::epaint::Mesh;
use egui::{pos2, Pos2, Rect};

const BG: Color32 = Color32::from_rgb(10, 20, 30);

fn prim(mesh: Mesh, clip: Rect) -> ClippedPrimitive {
    ClippedPrimitive {
        clip_rect: clip,
        primitive: Primitive::Mesh(mesh),
    }
}

fn everywhere() -> Rect {
    Rect::from_min_max(pos2(-1e4, -1e4), pos2(1e4, 1e4))
}

fn rect_mesh(r: Rect, c: Color32) -> Mesh {
    let mut m = Mesh::default();
    m.add_colored_rect(r, c);
    m
}

fn at(img: &ColorImage, x: usize, y: usize) -> Color32 {
    img.pixels[y * img.size[0] + x]
}

#[test]
fn an_opaque_rect_covers_exactly_its_pixels_at_two_pixels_per_point() {
    // Points (1, 1)–(3, 2) at 2 px/pt are pixels x in 2..6, y in 2..4.
    let r = Rect::from_min_max(pos2(1.0, 1.0), pos2(3.0, 2.0));
    let (img, report) = paint(
        &[prim(rect_mesh(r, Color32::RED), everywhere())],
        &SoftTextures::default(),
        [8, 6],
        2.0,
        BG,
    );
    assert_eq!(img.size, [8, 6]);
    for y in 0..6 {
        for x in 0..8 {
            let inside = (2..6).contains(&x) && (2..4).contains(&y);
            let want = if inside { Color32::RED } else { BG };
            assert_eq!(at(&img, x, y), want, "pixel ({x}, {y})");
        }
    }
    // No texture was given: the white default was used and reported.
    assert_eq!(report.missing_textures, vec![TextureId::default()]);
}

#[test]
fn a_translucent_rect_has_no_seam_on_its_diagonal() {
    // Premultiplied half-transparent white over black: 128 + 0·(1 − 0.5) = 128 everywhere,
    // also on the diagonal the two triangles share (painted twice it would be 192).
    let half = Color32::from_rgba_premultiplied(128, 128, 128, 128);
    let r = Rect::from_min_max(pos2(0.0, 0.0), pos2(7.0, 5.0));
    let (img, _) = paint(
        &[prim(rect_mesh(r, half), everywhere())],
        &SoftTextures::default(),
        [7, 5],
        1.0,
        Color32::BLACK,
    );
    for (k, c) in img.pixels.iter().enumerate() {
        assert_eq!(c.r(), 128, "pixel {k}: {c:?}");
        assert_eq!(c.a(), 255, "pixel {k}: opaque background stays opaque");
    }
}

#[test]
fn adjacent_rects_tile_without_gaps_or_overlap() {
    // Two translucent rects that share the edge x = 3.5 (a fractional pixel position).
    let half = Color32::from_rgba_premultiplied(100, 0, 0, 100);
    let left = rect_mesh(Rect::from_min_max(pos2(0.0, 0.0), pos2(3.5, 4.0)), half);
    let right = rect_mesh(Rect::from_min_max(pos2(3.5, 0.0), pos2(8.0, 4.0)), half);
    let (img, _) = paint(
        &[prim(left, everywhere()), prim(right, everywhere())],
        &SoftTextures::default(),
        [8, 4],
        1.0,
        Color32::BLACK,
    );
    for (k, c) in img.pixels.iter().enumerate() {
        assert_eq!(c.r(), 100, "pixel {k} painted once");
    }
}

#[test]
fn the_clip_rect_limits_painting_in_whole_pixels() {
    let r = Rect::from_min_max(pos2(0.0, 0.0), pos2(10.0, 10.0));
    let clip = Rect::from_min_max(pos2(2.0, 3.0), pos2(5.0, 4.0));
    let (img, _) = paint(
        &[prim(rect_mesh(r, Color32::GREEN), clip)],
        &SoftTextures::default(),
        [10, 10],
        1.0,
        BG,
    );
    let green: usize = img.pixels.iter().filter(|c| **c == Color32::GREEN).count();
    assert_eq!(green, 3);
    assert_eq!(at(&img, 2, 3), Color32::GREEN);
    assert_eq!(at(&img, 4, 3), Color32::GREEN);
    assert_eq!(at(&img, 5, 3), BG);
}

fn textured_quad(r: Rect, id: TextureId) -> Mesh {
    let mut m = Mesh::with_texture(id);
    m.add_rect_with_uv(
        r,
        Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
        Color32::WHITE,
    );
    m
}

#[test]
fn a_nearest_texture_is_upscaled_into_sharp_quadrants() {
    let (a, b) = (Color32::from_rgb(200, 0, 0), Color32::from_rgb(0, 0, 200));
    let tex = ColorImage::new([2, 2], vec![a, b, b, a]);
    let id = TextureId::Managed(7);
    let mut textures = SoftTextures::default();
    textures.insert(id, Arc::new(tex), TextureOptions::NEAREST);
    let quad = textured_quad(Rect::from_min_max(Pos2::ZERO, pos2(8.0, 8.0)), id);
    let (img, report) = paint(&[prim(quad, everywhere())], &textures, [8, 8], 1.0, BG);
    assert!(report.missing_textures.is_empty());
    for y in 0..8 {
        for x in 0..8 {
            let want = if (x < 4) == (y < 4) { a } else { b };
            assert_eq!(at(&img, x, y), want, "pixel ({x}, {y})");
        }
    }
}

#[test]
fn a_linear_texture_blends_neighbouring_texels() {
    // A 2×1 texture black | white stretched over 4 pixels: centres at u = 1/8, 3/8, 5/8, 7/8
    // sample at texel x = -0.25, 0.25, 0.75, 1.25 → 0, 0.25, 0.75, 1 (clamped at the ends).
    let tex = ColorImage::new([2, 1], vec![Color32::BLACK, Color32::WHITE]);
    let id = TextureId::Managed(3);
    let mut textures = SoftTextures::default();
    textures.insert(id, Arc::new(tex), TextureOptions::LINEAR);
    let quad = textured_quad(Rect::from_min_max(Pos2::ZERO, pos2(4.0, 1.0)), id);
    let (img, _) = paint(&[prim(quad, everywhere())], &textures, [4, 1], 1.0, BG);
    let reds: Vec<u8> = img.pixels.iter().map(|c| c.r()).collect();
    assert_eq!(reds, vec![0, 64, 191, 255]);
}

#[test]
fn patches_update_part_of_a_texture() {
    let id = TextureId::Managed(0);
    let mut textures = SoftTextures::default();
    let mut delta = TexturesDelta::default();
    delta.set.insert(
        id,
        [egui::epaint::ImageDelta::full(
            ColorImage::filled([3, 2], Color32::BLACK),
            TextureOptions::NEAREST,
        )]
        .into_iter()
        .collect(),
    );
    textures.apply(delta);
    let mut patch = TexturesDelta::default();
    patch.set.insert(
        id,
        [egui::epaint::ImageDelta::partial(
            [1, 1],
            ColorImage::filled([2, 1], Color32::WHITE),
            TextureOptions::NEAREST,
        )]
        .into_iter()
        .collect(),
    );
    textures.apply(patch);
    let (img, _) = textures.get(id).expect("set");
    let whites: Vec<bool> = img.pixels.iter().map(|c| *c == Color32::WHITE).collect();
    assert_eq!(whites, vec![false, false, false, false, true, true]);
}

#[test]
fn egui_text_is_painted_with_the_font_atlas() {
    // A real egui pass: the label's glyphs come from the atlas in the textures delta.
    let ctx = egui::Context::default();
    let mut input = egui::RawInput {
        screen_rect: Some(Rect::from_min_size(Pos2::ZERO, egui::vec2(200.0, 60.0))),
        ..Default::default()
    };
    input
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .native_pixels_per_point = Some(3.0);
    let mut textures = SoftTextures::default();
    let mut out = None;
    for _ in 0..2 {
        let o = ctx.run_ui(input.clone(), |ui| {
            egui::Frame::NONE.fill(Color32::WHITE).show(ui, |ui| {
                ui.colored_label(Color32::BLACK, "Hello attnscope");
            });
        });
        let mut o = o;
        textures.apply(std::mem::take(&mut o.textures_delta));
        out = Some(o);
    }
    let out = out.expect("ran");
    assert_eq!(out.pixels_per_point, 3.0);
    let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
    let (img, report) = paint(&prims, &textures, [600, 180], 3.0, Color32::WHITE);
    assert!(report.missing_textures.is_empty(), "{report:?}");
    // Dark glyph pixels exist, only in the first text line (the top ~25 px at 3×).
    let dark: Vec<(usize, usize)> = (0..180)
        .flat_map(|y| (0..600).map(move |x| (x, y)))
        .filter(|&(x, y)| at(&img, x, y).r() < 100)
        .collect();
    assert!(dark.len() > 300, "only {} dark pixels", dark.len());
    assert!(dark.iter().all(|&(_, y)| y < 3 * 25), "text below its line");
}
