//! Exported PNG and .npy masks decoded back and compared cell by cell with `Pattern::allows`.

use attnscope::export::{write_mask, PngOptions};
use attnscope::pattern::{Pattern, PatternKind, PatternParams};
use attnscope::render::{Colormap, GRID_RGB};
use std::path::Path;

fn specs() -> Vec<Pattern> {
    use PatternKind::*;
    [
        PatternParams::new(Sparse, 64).stride(4).window(3),
        PatternParams::new(Atrous, 37).stride(5).causal(true),
        PatternParams::new(Local, 23).window(2),
        PatternParams::new(Strided, 30).stride(6),
        PatternParams::new(Fixed, 30).stride(6).summary(2),
        PatternParams::new(Longformer, 40)
            .window(3)
            .global(2)
            .causal(true),
        PatternParams::new(Bigbird, 50)
            .block(5)
            .window(1)
            .global(1)
            .random(2)
            .seed(3),
    ]
    .iter()
    .map(|p| p.build().unwrap())
    .collect()
}

fn decode(path: &Path) -> image::RgbImage {
    image::open(path).expect("decodable PNG").to_rgb8()
}

#[test]
fn png_pixels_match_allows() {
    let dir = tempfile::tempdir().unwrap();
    for p in specs() {
        let path = dir.path().join("m.png");
        write_mask(&p, &path, PngOptions::default()).unwrap();
        let img = decode(&path);
        assert_eq!(img.dimensions(), (p.n() as u32, p.n() as u32));
        for i in 0..p.n() {
            for j in 0..p.n() {
                // row i = query i from the top, column j = key j from the left.
                let px = img.get_pixel(j as u32, i as u32).0;
                let want = if p.allows(i, j) {
                    [255, 255, 255]
                } else {
                    [0, 0, 0]
                };
                assert_eq!(px, want, "{} cell ({i}, {j})", p.label());
            }
        }
    }
}

#[test]
fn png_scale_and_colormap() {
    let dir = tempfile::tempdir().unwrap();
    let p = PatternParams::new(PatternKind::Sparse, 20)
        .stride(4)
        .window(1)
        .build()
        .unwrap();
    let path = dir.path().join("scaled.png");
    let opts = PngOptions {
        scale: 3,
        colormap: Colormap::Viridis,
        ..PngOptions::default()
    };
    write_mask(&p, &path, opts).unwrap();
    let img = decode(&path);
    assert_eq!(img.dimensions(), (60, 60));
    let (on, off) = (Colormap::Viridis.rgb(1.0), Colormap::Viridis.rgb(0.0));
    for y in 0..60u32 {
        for x in 0..60u32 {
            let want = if p.allows(y as usize / 3, x as usize / 3) {
                on
            } else {
                off
            };
            assert_eq!(img.get_pixel(x, y).0, want, "pixel ({x}, {y})");
        }
    }
}

#[test]
fn png_grid_lines_sit_on_block_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let p = PatternParams::new(PatternKind::Local, 12)
        .window(0)
        .build()
        .unwrap();
    let path = dir.path().join("grid.png");
    let opts = PngOptions {
        scale: 2,
        grid: Some(4),
        ..PngOptions::default()
    };
    write_mask(&p, &path, opts).unwrap();
    let img = decode(&path);
    // Lines at cells 4 and 8: pixel rows/columns 8 and 16.
    for t in 0..24u32 {
        assert_eq!(img.get_pixel(8, t).0, GRID_RGB);
        assert_eq!(img.get_pixel(t, 16).0, GRID_RGB);
    }
    // Not at pixel 9 (second pixel of cell 4), where the mask shows through.
    assert_eq!(img.get_pixel(9, 1).0, [0, 0, 0]);
    assert_eq!(img.get_pixel(9, 9).0, [255, 255, 255]);
}

/// Reads a bool .npy: checks the header and returns the (n, n) payload.
fn read_bool_npy(path: &Path) -> (String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header padded to 64 bytes");
    let header = String::from_utf8(bytes[10..10 + hlen].to_vec()).unwrap();
    (header, bytes[10 + hlen..].to_vec())
}

#[test]
fn npy_is_bool_c_order_true_allowed() {
    let dir = tempfile::tempdir().unwrap();
    for p in specs() {
        let path = dir.path().join("m.npy");
        write_mask(&p, &path, PngOptions::default()).unwrap();
        let (header, data) = read_bool_npy(&path);
        let n = p.n();
        assert!(header.contains("'descr': '|b1'"), "{header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        assert!(header.contains(&format!("'shape': ({n}, {n})")), "{header}");
        assert!(header.ends_with('\n'));
        assert_eq!(data.len(), n * n);
        for i in 0..n {
            for j in 0..n {
                assert_eq!(data[i * n + j], p.allows(i, j) as u8, "({i}, {j})");
            }
        }
    }
}

#[test]
fn failed_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = PatternParams::new(PatternKind::Local, 40_000)
        .window(1)
        .build()
        .unwrap();
    let path = dir.path().join("big.npy");
    let err = write_mask(&p, &path, PngOptions::default()).unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains("1 GiB"), "{err}");
    let path = dir.path().join("m.txt");
    assert!(write_mask(&p, &path, PngOptions::default()).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
