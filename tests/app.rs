//! Headless GUI tests (egui_kittest, wgpu on lavapipe): clicks and slider moves change the
//! numbers shown, export writes the right pixels, snapshots of the main views.
//!
//! `cargo test --test app screenshots -- --ignored` writes `screenshots/*.png` (a tool, not a check).

use attnscope::app::{AttnApp, FilePicker, FileRequest, Settings, ThemeChoice};
use attnscope::pattern::{PatternKind, PatternParams};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn no_files() -> FilePicker {
    Box::new(|_| None)
}

fn harness(settings: Settings, picker: FilePicker) -> Harness<'static, AttnApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 940.0))
        .with_max_steps(10_000)
        .build_eframe(move |cc| AttnApp::with_settings(&cc.egui_ctx, settings, picker));
    // Timings differ from run to run; keep them out of snapshots.
    h.state_mut().shared.show_timings = false;
    h
}

/// Steps until every worker is idle and the frame is stable.
fn settle(h: &mut Harness<'static, AttnApp>) {
    for _ in 0..4000 {
        h.step();
        if h.state().is_idle() {
            h.run_steps(3);
            if h.state().is_idle() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    panic!("the app did not become idle");
}

fn has_label(h: &Harness<'static, AttnApp>, text: &str) -> bool {
    h.query_by_label(text).is_some()
}

#[test]
fn moving_the_stride_slider_changes_the_counts() {
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    // n = 64, k = 4, w = 3: sparse nnz = 1024 + 436 − 64.
    assert!(has_label(&h, "1,396"));
    h.get_by_label("stride k slider").set_value_accesskit(8.0);
    settle(&mut h);
    assert_eq!(h.state().shared.settings.params.stride, Some(8));
    // atrous(8) = 64 + 2·(56 + 48 + … + 8) = 512; sparse = 512 + 436 − 64 = 884.
    assert!(has_label(&h, "512"), "atrous nnz for k = 8");
    assert!(has_label(&h, "884"), "sparse nnz for k = 8");
    assert!(!has_label(&h, "1,396"));
}

#[test]
fn typing_n_changes_the_counts() {
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    h.get_by_label("n value").set_value_accesskit(128.0);
    settle(&mut h);
    assert_eq!(h.state().shared.settings.params.n, 128);
    // local(3) at n = 128: 7·128 − 2·(1 + 2 + 3) = 884.
    assert!(has_label(&h, "884"));
}

#[test]
fn picking_another_pattern_adds_its_map() {
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    assert!(!has_label(&h, "fixed(l=4, c=1)"));
    h.get_by_label("pattern").click();
    h.run_steps(2);
    h.get_by_label("fixed").click();
    settle(&mut h);
    assert_eq!(h.state().shared.settings.params.kind, PatternKind::Fixed);
    assert!(has_label(&h, "fixed(l=4, c=1)"));
}

#[test]
fn typing_an_expression_changes_the_counts_and_a_bad_one_keeps_the_map() {
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    // (local(w=3) | sink(s=4)) & causal at n = 64: Σ (min(i, 3) + 1) + Σ min(max(i − 3, 0), 4).
    let window: u64 = (0..64u64).map(|i| i.min(3) + 1).sum();
    let sinks: u64 = (0..64u64).map(|i| i.saturating_sub(3).min(4)).sum();
    let want = format!("{}", window + sinks);
    assert!(!has_label(&h, &want));
    h.get_by_label("pattern expression").focus();
    h.run_steps(2);
    // Select the field's text ("sparse") and type over it.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(2);
    h.get_by_label("pattern expression")
        .type_text("(local(w=3) | sink(s=4)) & causal");
    settle(&mut h);
    let s = &h.state().shared.settings.params;
    assert_eq!(s.kind, PatternKind::Custom);
    assert_eq!(s.expr.as_deref(), Some("(local(w=3) | sink(s=4)) & causal"));
    assert!(
        has_label(&h, &want),
        "nnz {want} of the typed expression is shown"
    );
    assert!(
        has_label(&h, "sink(s=4)"),
        "the legend names the union's members"
    );
    // A bad expression: the message appears, the settings and the map stay.
    h.get_by_label("pattern expression").focus();
    h.run_steps(2);
    h.key_press(egui::Key::End);
    h.run_steps(2);
    h.get_by_label("pattern expression").type_text(" |");
    settle(&mut h);
    let typed = h.get_by_label("pattern expression").value();
    assert_eq!(
        typed.as_deref(),
        Some("(local(w=3) | sink(s=4)) & causal |")
    );
    let s = &h.state().shared.settings.params;
    assert_eq!(s.expr.as_deref(), Some("(local(w=3) | sink(s=4)) & causal"));
    assert!(
        has_label(&h, &want),
        "the last good pattern stays on screen"
    );
    // The message under the field names the place.
    // (A label's accessible text is its value: the message itself.)
    let message = h
        .get_by_label_contains("expected a term after the operator")
        .value()
        .unwrap_or_default();
    assert!(
        message.contains("at character 36") && message.contains("expected a term"),
        "the error is shown under the field: {message:?}"
    );
}

#[test]
fn an_invalid_value_is_explained_and_can_be_fixed() {
    let mut s = Settings::default();
    s.params.n = 65_536;
    s.block = 4; // 16384² tiles: more than the app counts
    let mut h = harness(s, no_files());
    settle(&mut h);
    assert!(h
        .query_by_label_contains("B = 4 gives 268,435,456 tiles at n = 65536")
        .is_some());
    // The maps are still drawn and counted: atrous(4) at n = 65536 has 65536² / 4 + … pairs.
    let atrous = PatternParams::new(PatternKind::Atrous, 65_536)
        .stride(4)
        .build()
        .expect("pattern");
    assert!(has_label(&h, &attnscope::stats::group(atrous.nnz())));
    h.get_by_label("use B = 16").click();
    settle(&mut h);
    assert_eq!(h.state().shared.settings.block, 16);
    assert!(h.query_by_label_contains("tiles at n =").is_none());
}

fn picker_to(dir: &Path) -> FilePicker {
    let dir = dir.to_path_buf();
    Box::new(move |req| {
        Some(match req {
            FileRequest::SaveMaskPng => dir.join("mask.png"),
            FileRequest::SaveMaskNpy => dir.join("mask.npy"),
            FileRequest::SaveScreenshot => dir.join("window.png"),
            FileRequest::OpenNpy(which) => dir.join(format!("{which}.npy")),
            FileRequest::SaveFile(name) => dir.join(name),
            FileRequest::SaveViewPng(_) => dir.join("view.png"),
            FileRequest::OpenModel => dir.join("model.gguf"),
            FileRequest::OpenText => dir.join("text.txt"),
        })
    })
}

fn wait_for(path: &Path, h: &mut Harness<'static, AttnApp>) {
    for _ in 0..2000 {
        h.step();
        if path.exists() && h.state().is_idle() {
            h.run_steps(2);
            return;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    panic!("{} was not written", path.display());
}

#[test]
fn save_png_writes_the_mask_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Settings {
        export_scale: 2,
        ..Settings::default()
    };
    let mut h = harness(s, picker_to(dir.path()));
    settle(&mut h);
    h.get_by_label("Save PNG…").click();
    let path: PathBuf = dir.path().join("mask.png");
    wait_for(&path, &mut h);
    let img = image::open(&path).expect("png").to_rgb8();
    assert_eq!(img.dimensions(), (128, 128));
    let p = PatternParams::new(PatternKind::Sparse, 64)
        .stride(4)
        .window(3)
        .build()
        .expect("pattern");
    for i in 0..64 {
        for j in 0..64 {
            let px = img.get_pixel(2 * j + 1, 2 * i + 1).0;
            let want = if p.allows(i as usize, j as usize) {
                255
            } else {
                0
            };
            assert_eq!(px, [want; 3], "cell ({i}, {j})");
        }
    }
    let status = h.state().shared.status.clone().expect("status");
    assert!(
        !status.error && status.text.contains("mask.png"),
        "{status:?}"
    );
}

#[test]
fn without_a_file_dialog_saves_go_to_a_folder_and_a_window_says_where() {
    // What the app does once rfd has answered "cancel" at once (no portal, no zenity):
    // files go to a folder under their default names, never over an existing file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("mask.png"), b"keep me").unwrap();
    let notice = attnscope::app::dialogs::Notice::default();
    let picker =
        attnscope::app::dialogs::folder_picker(dir.path().to_path_buf(), Some(notice.clone()));
    let mut h = harness(Settings::default(), picker);
    h.state_mut().shared.dialog_notice = notice;
    settle(&mut h);
    assert!(!has_label(&h, "No file dialog"));
    h.get_by_label("Save PNG…").click();
    let path = dir.path().join("mask-2.png");
    wait_for(&path, &mut h);
    assert_eq!(
        std::fs::read(dir.path().join("mask.png")).unwrap(),
        b"keep me"
    );
    assert_eq!(image::open(&path).expect("png").width(), 64 * 4);
    assert!(has_label(&h, "No file dialog"), "the notice window is open");
    let shown = path.display().to_string();
    let names_it =
        |v: &str| v.contains("No file dialog is available") && v.contains(shown.as_str());
    assert_eq!(
        h.query_all_by(|n| n.value().is_some_and(|v| names_it(&v)))
            .count(),
        1,
        "the window names {shown}"
    );
    h.get_by_label("OK").click();
    h.run_steps(3);
    assert!(!has_label(&h, "No file dialog"), "OK closes the window");
}

#[test]
fn save_npy_writes_a_bool_matrix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(Settings::default(), picker_to(dir.path()));
    settle(&mut h);
    h.get_by_label("Save .npy…").click();
    let path = dir.path().join("mask.npy");
    wait_for(&path, &mut h);
    let a: ndarray::Array2<bool> = ndarray_npy::read_npy(&path).expect("npy");
    assert_eq!(a.dim(), (64, 64));
    assert_eq!(a.iter().filter(|&&b| b).count(), 1396);
    assert!(a[[10, 2]] && a[[10, 7]] && !a[[10, 5]]);
}

#[test]
fn a_failed_export_is_shown_in_the_window() {
    let mut h = harness(
        Settings::default(),
        Box::new(|_| Some(PathBuf::from("/nonexistent-dir/attnscope/mask.png"))),
    );
    settle(&mut h);
    h.get_by_label("Save PNG…").click();
    for _ in 0..500 {
        h.step();
        if h.state().shared.status.as_ref().is_some_and(|s| s.error) {
            break;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    let st = h.state().shared.status.clone().expect("status");
    assert!(st.error && st.text.contains("nonexistent-dir"), "{st:?}");
    h.run_steps(2);
    assert!(h.query_by_label_contains("could not write").is_some());
}

#[test]
fn screenshot_writes_a_png_of_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(Settings::default(), picker_to(dir.path()));
    h.set_render_every_step(true);
    settle(&mut h);
    h.get_by_label("Screenshot…").click();
    let path = dir.path().join("window.png");
    wait_for(&path, &mut h);
    let img = image::open(&path).expect("png");
    assert_eq!((img.width(), img.height()), (1500, 940));
}

/// Zooms the maps around cell `(i, i)` by `factor` (pinch / Ctrl+scroll).
fn zoom_at(h: &mut Harness<'static, AttnApp>, n: usize, i: usize, factor: f32) {
    h.hover_at(cell_pos(h, n, i, i));
    h.run_steps(1);
    h.event(egui::Event::Zoom(factor));
    h.run_steps(2);
    h.remove_cursor();
    h.run_steps(1);
}

#[test]
fn zooming_in_redraws_the_visible_part_one_cell_per_pixel() {
    let mut s = Settings::default();
    s.params.n = 65_536;
    s.params.stride = Some(256);
    s.params.window = Some(16);
    s.block = 64;
    let mut h = harness(s, no_files());
    settle(&mut h);
    for _ in 0..4 {
        zoom_at(&mut h, 65_536, 1000, 8.0);
    }
    settle(&mut h);
    let m = h.state().shared.masks.clone().expect("masks");
    let sparse = m
        .maps
        .iter()
        .find(|m| m.id == attnscope::app::MapId::Sparse)
        .expect("sparse");
    let region = sparse
        .region
        .as_ref()
        .expect("a sharper image of the zoomed region");
    assert!(
        region.rows.len() < 65_536 / 100,
        "visible rows {:?}",
        region.rows
    );
    assert!(region.rows.contains(&1000) && region.cols.contains(&1000));
    // Few enough cells for one pixel each.
    assert_eq!(
        (region.width, region.height),
        (region.cols.len(), region.rows.len())
    );
}

/// `(name, settings, deterministic)`: only deterministic views are compared as snapshots
/// (the Kernels view shows measured times).
fn snapshot_settings() -> Vec<(&'static str, Settings, bool)> {
    let seed = Settings::default();
    let mut blocks = Settings::default();
    blocks.params.n = 256;
    blocks.params.stride = Some(16);
    blocks.params.window = Some(8);
    blocks.block = 32;
    blocks.show_blocks = true;
    let mut big = Settings::default();
    big.params.n = 65_536;
    big.params.stride = Some(256);
    big.params.window = Some(256);
    big.block = 64;
    big.params.causal = true;
    let mut zoomed = big.clone();
    zoomed.params.causal = false;
    zoomed.params.window = Some(16);
    zoomed.show_blocks = true;
    let mut fixed = Settings::default();
    fixed.params.kind = PatternKind::Fixed;
    fixed.params.n = 128;
    fixed.params.stride = Some(16);
    fixed.params.summary = Some(2);
    fixed.theme = ThemeChoice::Light;
    let mut pinned = Settings::default();
    pinned.params.n = 4096;
    pinned.params.stride = Some(64);
    pinned.params.window = Some(64);
    pinned.block = 64;
    pinned.params.kind = PatternKind::Longformer;
    pinned.params.global = 128;
    let mut kernels = Settings::default();
    kernels.params.n = 2048;
    kernels.params.stride = Some(45);
    kernels.params.window = Some(45);
    kernels.block = 64;
    kernels.tab = "Kernels".into();
    let mut attention = Settings::default();
    attention.params.n = 256;
    attention.params.stride = Some(16);
    attention.params.window = Some(8);
    attention.input = attnscope::app::InputChoice::Structured;
    attention.log_attention = true;
    attention.tab = "Attention".into();
    vec![
        ("masks_seed", seed, true),
        ("masks_blocks", blocks, true),
        ("masks_65536_causal", big.clone(), true),
        ("masks_65536_zoomed", zoomed, true),
        ("masks_fixed_light", fixed, true),
        ("masks_longformer_4096", pinned, true),
        ("kernels_2048", kernels, false),
        ("attention_structured_log", attention, true),
    ]
}

/// Extra state of some views: a pinned row and a hovered cell on the Longformer maps.
fn prepare(name: &str, h: &mut Harness<'static, AttnApp>) {
    if name == "masks_65536_zoomed" {
        for _ in 0..4 {
            zoom_at(h, 65_536, 1000, 8.0);
        }
        settle(h);
    }
    if name == "masks_longformer_4096" {
        h.state_mut().shared.pinned_row = Some(1000);
        h.run_steps(2);
        h.hover_at(cell_pos(h, 4096, 1000, 40));
        h.run_steps(3);
    }
}

#[test]
fn snapshots_of_the_main_views() {
    let mut results = egui_kittest::SnapshotResults::new();
    for (name, s, deterministic) in snapshot_settings() {
        if !deterministic {
            continue;
        }
        let mut h = harness(s, no_files());
        settle(&mut h);
        prepare(name, &mut h);
        results.add(h.try_snapshot(name));
    }
}

/// A tool, not a check: writes `screenshots/*.png` for the README
/// (`cargo test --test app screenshots -- --ignored`).
#[test]
#[ignore = "a tool: writes screenshots/*.png, run with --ignored"]
fn screenshots() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&out).expect("screenshots dir");
    for (name, s, _) in snapshot_settings() {
        let mut h = harness(s, no_files());
        settle(&mut h);
        prepare(name, &mut h);
        let img = h.render().expect("render");
        img.save(out.join(format!("{name}.png"))).expect("save");
    }
    // A "Save view PNG" figure: the Masks tab with the block overlay, 2400 px wide.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Settings {
        show_blocks: true,
        block: 8,
        ..Settings::default()
    };
    let mut h = harness(s, picker_to(dir.path()));
    settle(&mut h);
    let (img, _) = save_view(&mut h, dir.path(), 2400);
    img.save(out.join("view_masks_2400.png")).expect("save");
}

fn median_ms(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[v.len() - 1])
}

/// A tool, not a check: prints the CPU time of one UI pass at n = 4096 and n = 65,536 for every
/// view, and while a slider is dragged (n changes every frame); measured, not asserted
/// (`cargo test --release --test app frame_time -- --ignored --nocapture`).
#[test]
#[ignore = "a tool: prints frame times, run with --ignored --nocapture"]
fn frame_time() {
    for n in [4096usize, 65_536] {
        let mut s = Settings::default();
        s.params.n = n;
        s.params.stride = Some(64);
        s.params.window = Some(64);
        s.block = 64;
        s.show_blocks = true;
        s.params.kind = PatternKind::Longformer;
        s.params.global = 16;
        let mut h = harness(s, no_files());
        settle(&mut h);
        h.state_mut().shared.pinned_row = Some(n / 3);
        for tab in ["Masks", "Kernels", "Attention"] {
            h.state_mut().shared.settings.tab = tab.into();
            h.run_steps(5);
            let mut times = Vec::new();
            for _ in 0..30 {
                h.step();
                times.push(h.state().shared.frame_ms);
            }
            let (med, max) = median_ms(times);
            println!(
                "frame time n = {n}, {tab}: median {med:.2} ms, max {max:.2} ms (UI pass, CPU)"
            );
        }
        h.state_mut().shared.settings.tab = "Masks".into();
        h.run_steps(3);
        let mut times = Vec::new();
        for t in 0..30 {
            // A slider drag: a new n (and a new masks job) every frame.
            h.state_mut().shared.settings.params.n = n - (t % 7);
            h.step();
            times.push(h.state().shared.frame_ms);
        }
        let (med, max) = median_ms(times);
        println!("frame time n = {n}, Masks while dragging n: median {med:.2} ms, max {max:.2} ms");
    }
}

fn open_tab(h: &mut Harness<'static, AttnApp>, title: &str) {
    h.get_by_label(title).click();
    h.run_steps(2);
    settle(h);
}

#[test]
fn kernels_view_runs_every_kernel_and_shows_the_flop_ratio() {
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    open_tab(&mut h, "Kernels");
    for k in ["dense", "masked", "csr", "block", "permuted"] {
        assert!(has_label(&h, k), "row of kernel {k}");
    }
    // n = 64, sparse(4, 3): dense executes 4096 cells for 1396 useful ones.
    // 2.93 = 4096 / 1396 six times: executed / useful and computed / useful of dense, masked
    // and block (B = 16: every block of sparse(4, 3) holds an allowed cell). No other column
    // prints two decimals without a unit (GFLOP/s has one, times three), so a measured value
    // cannot match by chance.
    assert_eq!(h.query_all_by_label("2.93").count(), 6);
    // permuted: the cells it reports computing (the kernel tests check them against the count
    // taken while it runs).
    let p = PatternParams::new(PatternKind::Sparse, 64)
        .stride(4)
        .window(3)
        .build()
        .expect("pattern");
    let permuted =
        attnscope::kernel::computed_cells(attnscope::kernel::KernelKind::Permuted, &p, 64);
    let ratio = format!("{:.2}", permuted as f64 / 1396.0);
    // Its executed and computed cells are the same count (no contract figure of its own).
    assert_eq!(
        h.query_all_by_label(&ratio).count(),
        2,
        "permuted computed / useful {ratio}"
    );
    assert!(
        h.query_all_by_label("1.00").count() >= 1,
        "csr executes only useful cells"
    );
    assert!(h.query_by_label_contains("error:").is_none());
}

#[test]
fn attention_view_shows_the_mass_the_mask_keeps() {
    use attnscope::inputs::{generate, InputKind};
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    open_tab(&mut h, "Attention");
    let p = PatternParams::new(PatternKind::Sparse, 64)
        .stride(4)
        .window(3)
        .build()
        .expect("pattern");
    let qkv = generate(InputKind::Random { seed: 0 }, 64, 64);
    let w = attnscope::kernel::attention_weights(None, &qkv, None).expect("weights");
    let mut kept = 0.0f64;
    for i in 0..64 {
        for j in 0..64 {
            if p.allows(i, j) {
                kept += w[[i, j]] as f64;
            }
        }
    }
    let want = format!(
        "mass kept by sparse(k=4, w=3): {:.1} %",
        100.0 * kept / 64.0
    );
    assert!(has_label(&h, &want), "expected {want:?}");
}

fn write_garbage(dir: &Path) {
    for which in ["Q", "K", "V"] {
        std::fs::write(
            dir.join(format!("{which}.npy")),
            b"this is not a numpy file",
        )
        .expect("write");
    }
}

#[test]
fn a_bad_npy_shows_an_error_and_the_app_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_garbage(dir.path());
    let mut h = harness(Settings::default(), picker_to(dir.path()));
    settle(&mut h);
    h.get_by_label("Load Q, K, V…").click();
    h.run_steps(3);
    // In the status bar and under the Load button.
    assert_eq!(
        h.query_all_by_label_contains("could not load Q, K, V")
            .count(),
        2
    );
    assert!(h.state().shared.loaded.is_none());
    // Still alive and responsive: the kernels still run on the random input.
    open_tab(&mut h, "Kernels");
    assert!(has_label(&h, "csr"));
}

#[test]
fn good_npy_files_become_the_sample_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let qkv = attnscope::inputs::generate(attnscope::inputs::InputKind::Random { seed: 7 }, 96, 8);
    for (which, a) in [("Q", &qkv.q), ("K", &qkv.k), ("V", &qkv.v)] {
        ndarray_npy::write_npy(dir.path().join(format!("{which}.npy")), a).expect("write");
    }
    let mut h = harness(Settings::default(), picker_to(dir.path()));
    settle(&mut h);
    h.get_by_label("Load Q, K, V…").click();
    settle(&mut h);
    assert_eq!(h.state().shared.settings.params.n, 96);
    assert_eq!(
        h.state().shared.settings.input,
        attnscope::app::InputChoice::Loaded
    );
    open_tab(&mut h, "Kernels");
    assert!(h
        .query_by_label_contains("loaded Q, K, V (n = 96, d = 8)")
        .is_some());
}

/// Screen position of cell (i, j) of the first map.
fn cell_pos(h: &Harness<'static, AttnApp>, n: usize, i: usize, j: usize) -> egui::Pos2 {
    let r = h.state().shared.matrix_rect.expect("matrix drawn");
    egui::pos2(
        r.left() + (j as f32 + 0.5) / n as f32 * r.width(),
        r.top() + (i as f32 + 0.5) / n as f32 * r.height(),
    )
}

#[test]
fn hovering_explains_a_cell_and_clicking_pins_its_row() {
    let mut h = harness(Settings::default(), no_files());
    settle(&mut h);
    h.hover_at(cell_pos(&h, 64, 10, 2));
    h.run_steps(2);
    assert_eq!(h.state().shared.hover, Some((10, 2)));
    assert!(has_label(
        &h,
        "query i = 10 · key j = 2 · distance i − j = 8"
    ));
    // Distance 8: on the atrous lattice, outside the window.
    assert!(h.query_all_by_label("allowed: atrous stride").count() >= 2);
    assert!(has_label(&h, "not allowed"));
    let pos = cell_pos(&h, 64, 10, 2);
    h.event(egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: egui::Modifiers::NONE,
    });
    h.event(egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    h.run_steps(3);
    assert_eq!(h.state().shared.pinned_row, Some(10));
    // Query 10 of sparse(4, 3) sees 2, 6, …, 62 (16 keys) and 7, 8, 9, 11, 12, 13.
    assert!(has_label(&h, "sparse(k=4, w=3): 22 of 64"));
    assert!(has_label(&h, "atrous(k=4): 16 of 64"));
    assert!(has_label(&h, "local(w=3): 7 of 64"));
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    assert_eq!(h.state().shared.pinned_row, None);
}

/// The open view saved as PNG `width_px` wide; returns the image and the view's rectangle.
fn save_view(
    h: &mut Harness<'static, AttnApp>,
    dir: &Path,
    width_px: usize,
) -> (image::RgbImage, egui::Rect) {
    h.state_mut().shared.settings.export_view_px = width_px;
    settle(h);
    let path = dir.join("view.png");
    let _ = std::fs::remove_file(&path);
    h.get_by_label("Save view PNG…").click();
    wait_for(&path, h);
    let status = h.state().shared.status.clone().expect("status");
    assert!(
        !status.error && status.text.contains("view.png"),
        "{status:?}"
    );
    let rect = h.state().shared.view_rect.expect("view rect");
    (image::open(&path).expect("png").to_rgb8(), rect)
}

#[test]
fn save_view_png_draws_the_masks_at_the_chosen_width() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(Settings::default(), picker_to(dir.path()));
    settle(&mut h);
    let (img, view) = save_view(&mut h, dir.path(), 3000);
    let ppp = 3000.0 / view.width();
    let matrix = h.state().shared.matrix_rect.expect("matrix rect");
    assert_eq!(img.width(), 3000);
    // The empty panel below the statistics is left out; the maps are in.
    assert!(img.height() < (view.height() * ppp).round() as u32);
    assert!(img.height() as f32 > (matrix.max.y - view.min.y) * ppp);
    // The first map is atrous(k = 4): every cell centre has the mask colour or the background.
    let atrous = PatternParams::new(PatternKind::Atrous, 64)
        .stride(4)
        .build()
        .expect("pattern");
    let bg = attnscope::app::compute::background(true);
    let cell = matrix.width() / 64.0;
    for i in 0..64 {
        for j in 0..64 {
            let x = (matrix.min.x - view.min.x + (j as f32 + 0.5) * cell) * ppp;
            let y = (matrix.min.y - view.min.y + (i as f32 + 0.5) * cell) * ppp;
            let got = img.get_pixel(x as u32, y as u32).0;
            let want = if atrous.allows(i, j) {
                attnscope::app::compute::ATROUS_RGB
            } else {
                bg
            };
            assert_eq!(got, want, "cell ({i}, {j}) at pixel ({x:.0}, {y:.0})");
        }
    }
}

#[test]
fn the_cpu_view_png_matches_the_gpu_render_of_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(Settings::default(), picker_to(dir.path()));
    settle(&mut h);
    let view = h.state().shared.view_rect.expect("view rect");
    let ppp = h.ctx.pixels_per_point();
    let width = (view.width() * ppp).round() as usize;
    let (cpu, _) = save_view(&mut h, dir.path(), width);
    let gpu = h.render().expect("gpu render");
    let (x0, y0) = (
        (view.min.x * ppp).round() as u32,
        (view.min.y * ppp).round() as u32,
    );
    let (mut diff, mut far, mut count) = (0u64, 0u64, 0u64);
    for y in 0..cpu.height().min(gpu.height() - y0) {
        for x in 0..cpu.width().min(gpu.width() - x0) {
            let a = cpu.get_pixel(x, y).0;
            let b = gpu.get_pixel(x0 + x, y0 + y).0;
            let d = (0..3)
                .map(|k| a[k].abs_diff(b[k]) as u64)
                .max()
                .unwrap_or(0);
            diff += d;
            far += u64::from(d > 48);
            count += 1;
        }
    }
    let mean = diff as f64 / count as f64;
    let far_share = far as f64 / count as f64;
    eprintln!(
        "cpu vs gpu: mean max-channel diff {mean:.3}, {far} of {count} pixels differ by > 48"
    );
    assert!(count > 500_000, "compared {count} pixels");
    assert!(mean < 1.0, "mean difference {mean}");
    assert!(far_share < 0.002, "{far} pixels differ by more than 48");
}

#[test]
fn save_view_png_draws_the_receptive_field_charts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Settings {
        tab: "Receptive field".into(),
        ..Settings::default()
    };
    let mut h = harness(s, picker_to(dir.path()));
    settle(&mut h);
    let (img, view) = save_view(&mut h, dir.path(), 2000);
    assert_eq!(img.width(), 2000);
    // The empty part of the panel below the heatmap and the schedule is cropped.
    let full = (view.height() * 2000.0 / view.width()).round() as u32;
    assert!(
        img.height() < full * 9 / 10,
        "{} of {full} rows",
        img.height()
    );
    // The coverage curves are drawn in the three map colours.
    let near = |p: [u8; 3], c: [u8; 3]| (0..3).all(|k| p[k].abs_diff(c[k]) <= 6);
    for c in [
        attnscope::app::compute::ATROUS_RGB,
        attnscope::app::compute::LOCAL_RGB,
        attnscope::app::compute::BOTH_RGB,
    ] {
        let n = img.pixels().filter(|p| near(p.0, c)).count();
        assert!(n > 200, "colour {c:?}: {n} pixels");
    }
}

#[test]
fn save_view_png_redraws_large_masks_one_pixel_per_cell() {
    // n = 2048 is drawn on screen from a 1024-pixel image (2 × 2 cells a texel); a PNG wide
    // enough gets the atrous map redrawn with one texel per cell, so every cell is exact.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Settings::default();
    s.params.n = 2048;
    s.params.stride = Some(3);
    s.params.window = Some(5);
    let mut h = harness(s, picker_to(dir.path()));
    settle(&mut h);
    let (img, view) = save_view(&mut h, dir.path(), 8000);
    let ppp = 8000.0 / view.width();
    let matrix = h.state().shared.matrix_rect.expect("matrix rect");
    // Widgets snap to whole pixels at each density, so the map may sit a few pixels away from
    // where the window has it: find its corners in the PNG. Cells (0, 0) and (2047, 2047) are
    // orange, and so is nothing outside the map around them.
    let orange = attnscope::app::compute::ATROUS_RGB;
    let ex = ((matrix.min.x - view.min.x) * ppp) as i64;
    let ey = ((matrix.min.y - view.min.y) * ppp) as i64;
    let side = (matrix.width() * ppp) as i64;
    let find = |xs: std::ops::Range<i64>, ys: std::ops::Range<i64>, last: bool| {
        let mut hits = Vec::new();
        for y in ys.clone() {
            for x in xs.clone() {
                if img.get_pixel(x as u32, y as u32).0 == orange {
                    hits.push((x, y));
                }
            }
        }
        let xs: Vec<i64> = hits.iter().map(|p| p.0).collect();
        let ys: Vec<i64> = hits.iter().map(|p| p.1).collect();
        if last {
            (
                *xs.iter().max().expect("corner"),
                *ys.iter().max().expect("corner"),
            )
        } else {
            (
                *xs.iter().min().expect("corner"),
                *ys.iter().min().expect("corner"),
            )
        }
    };
    let (x0, y0) = find(ex - 12..ex + 4, ey - 12..ey + 4, false);
    let (x1, y1) = find(
        ex + side - 4..ex + side + 12,
        ey + side - 4..ey + side + 12,
        true,
    );
    // Cells are 1–2 pixels wide (2048 texels over ~2200 pixels), so the PNG cannot be read
    // cell by cell with sub-pixel certainty; but with one texel per cell every pixel is exactly
    // orange or background, and a third of the cells are orange. From the on-screen image
    // (2 × 2 cells a texel) most pixels would have an in-between tint.
    assert!(
        x1 - x0 > 2048 && y1 - y0 > 2048,
        "map {x0}..{x1} × {y0}..{y1}"
    );
    let bg = attnscope::app::compute::background(true);
    let (mut orange_px, mut other, mut total) = (0u64, 0u64, 0u64);
    for y in y0 + 2..y1 - 2 {
        for x in x0 + 2..x1 - 2 {
            let p = img.get_pixel(x as u32, y as u32).0;
            total += 1;
            if p == orange {
                orange_px += 1;
            } else if p != bg {
                other += 1;
            }
        }
    }
    assert_eq!(
        other, 0,
        "{other} of {total} pixels are neither a cell nor the background"
    );
    let share = orange_px as f64 / total as f64;
    assert!((share - 1.0 / 3.0).abs() < 0.02, "orange share {share}");
}

#[test]
fn save_view_png_works_on_every_tab() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A short text keeps the Model tab's forward passes quick.
    let s = Settings {
        model_max_tokens: 32,
        ..Settings::default()
    };
    let mut h = harness(s, picker_to(dir.path()));
    settle(&mut h);
    let tabs: Vec<&str> = attnscope::app::all_views()
        .iter()
        .map(|v| v.title())
        .collect();
    assert_eq!(tabs.len(), 7);
    for tab in tabs {
        h.state_mut().shared.settings.tab = tab.into();
        settle(&mut h);
        let (img, _) = save_view(&mut h, dir.path(), 1024);
        assert_eq!(img.width(), 1024, "{tab}");
        let status = h.state().shared.status.clone().expect("status");
        // Every image of the view was found (the Attention heatmaps, the reach heatmap, …).
        assert!(
            status.text.contains(&format!("the {tab} view")) && !status.text.contains("could not"),
            "{tab}: {status:?}"
        );
        // Not a blank panel: at least 2 % of the pixels differ from the panel background.
        let bg = img.get_pixel(img.width() - 1, img.height() - 1).0;
        let drawn = img.pixels().filter(|p| p.0 != bg).count();
        assert!(
            drawn * 50 > (img.width() * img.height()) as usize,
            "{tab}: {drawn} pixels drawn"
        );
    }
}

#[test]
fn save_view_png_keeps_the_zoom_of_the_window() {
    // Zoomed in to about 16 rows around query 1000 of n = 65,536: the PNG shows the same
    // rows (the offscreen pass starts from the window's plot memory), with the diagonal cells
    // of the atrous map (i = j) in the mask colour.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Settings::default();
    s.params.n = 65_536;
    s.params.stride = Some(256);
    s.params.window = Some(16);
    let mut h = harness(s, picker_to(dir.path()));
    settle(&mut h);
    for _ in 0..4 {
        zoom_at(&mut h, 65_536, 1000, 8.0);
    }
    settle(&mut h);
    let (rows, cols) = h.state().shared.visible.clone().expect("visible part");
    assert!(rows.len() < 40 && rows.contains(&1000), "{rows:?}");
    let (img, view) = save_view(&mut h, dir.path(), 3000);
    let ppp = 3000.0 / view.width();
    // Where the window draws cell (1000, 1000) of the first (atrous) map, in PNG pixels.
    let m = h.state().shared.matrix_rect.expect("matrix rect");
    let cell = m.width() / 65_536.0;
    let x = (m.min.x - view.min.x + 1000.5 * cell) * ppp;
    let y = (m.min.y - view.min.y + 1000.5 * cell) * ppp;
    assert!(cell * ppp > 40.0, "a cell is {} px", cell * ppp);
    assert!(cols.contains(&1000));
    let orange = attnscope::app::compute::ATROUS_RGB;
    assert_eq!(
        img.get_pixel(x as u32, y as u32).0,
        orange,
        "cell (1000, 1000)"
    );
    // Cell (1000, 1001) is not allowed by atrous(256).
    let x2 = x + cell * ppp;
    assert_ne!(
        img.get_pixel(x2 as u32, y as u32).0,
        orange,
        "cell (1000, 1001)"
    );
}
