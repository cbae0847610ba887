//! kittest tests of the teaching views (headless, wgpu on lavapipe): the receptive-field
//! slider, a preset click, the sweep's cancel. With `ATTNSCOPE_SCREENSHOTS=1` they also save
//! `screenshots/*.png`.

use attnscope::app::settings::{schedule_list, ScheduleRow};
use attnscope::app::{AttnApp, FilePicker, Settings};
use attnscope::pattern::{PatternKind, PatternParams};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::time::{Duration, Instant};

fn no_files() -> FilePicker {
    Box::new(|_| None)
}

fn harness(settings: Settings) -> Harness<'static, AttnApp> {
    Harness::builder()
        .with_size(egui::vec2(1500.0, 940.0))
        .wgpu()
        // The shell's status bar uses ✔ / ⚠, which the default fonts lack (tofu is fine here).
        .allow_missing_glyphs()
        .build_eframe(move |cc| AttnApp::with_settings(&cc.egui_ctx, settings, no_files()))
}

/// Steps the app until `done` holds (workers run on their own threads), at most 60 s.
fn step_until(
    h: &mut Harness<'static, AttnApp>,
    what: &str,
    done: impl Fn(&Harness<'static, AttnApp>) -> bool,
) {
    let t0 = Instant::now();
    while !done(h) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    h.step();
}

fn has_label(h: &Harness<'static, AttnApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// Saves `screenshots/NAME.png` when `ATTNSCOPE_SCREENSHOTS` is set.
fn screenshot(h: &mut Harness<'static, AttnApp>, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    screenshot_in(h, &dir, name);
}

/// Saves `DIR/NAME.png` when `ATTNSCOPE_SCREENSHOTS` is set.
fn screenshot_in(h: &mut Harness<'static, AttnApp>, dir: &std::path::Path, name: &str) {
    if std::env::var_os("ATTNSCOPE_SCREENSHOTS").is_none() {
        return;
    }
    let img = h.render().expect("render");
    std::fs::create_dir_all(dir).unwrap();
    img.save(dir.join(format!("{name}.png"))).unwrap();
}

fn seed_settings(tab: &str) -> Settings {
    Settings {
        tab: tab.to_string(),
        ..Settings::default()
    }
}

#[test]
fn reach_slider_changes_the_layer_shown() {
    // The seed's sparse pattern: n = 64, k = 4, w = 3.
    let mut h = harness(seed_settings("Receptive field"));
    step_until(&mut h, "the heatmap at L = 2", |h| {
        has_label(h, "after L = 2 layers: 4,096 of 4,096 pairs reachable")
    });
    step_until(&mut h, "the coverage curves", |h| has_label(h, "21 layers"));
    // Local w = 3 needs ⌈63 / 3⌉ = 21 layers, atrous never gets there, sparse in 2.
    assert!(has_label(&h, "not within 64"));
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "layers L")
        .set_value_accesskit(1.0);
    step_until(&mut h, "the heatmap at L = 1", |h| {
        has_label(h, "after L = 1 layer: 1,396 of 4,096 pairs reachable")
    });
    screenshot(&mut h, "receptive-field");
}

#[test]
fn preset_click_sets_every_control() {
    // Start far from the preset: Longformer at n = 4096.
    let mut settings = seed_settings("Teach");
    settings.params = PatternParams::new(PatternKind::Longformer, 4096)
        .window(9)
        .global(1);
    let mut h = harness(settings);
    h.run_steps(3);
    h.get_by_label("Seed: sparse").click();
    h.run_steps(2);
    let want = attnscope::presets::by_name("seed-sparse").unwrap();
    assert_eq!(h.state().shared.settings.params, want.params);
    assert!(h.state().shared.settings.schedule.is_empty());
    step_until(&mut h, "the explain numbers", |h| {
        has_label(h, "sparse(k=4, w=3)") && has_label(h, "1,396")
    });
    // GPT-3 sets the layer schedule too.
    h.get_by_label("GPT-3: dense / banded").click();
    h.run_steps(2);
    let s = &h.state().shared.settings;
    assert_eq!(s.params.kind, PatternKind::Local);
    assert_eq!(
        (s.params.n, s.params.window, s.params.causal),
        (2048, Some(128), true)
    );
    // Dense, then the band with its own w = 128: the list `reach --schedule` takes.
    assert_eq!(
        schedule_list(&s.schedule),
        "dense,local(w=128)",
        "{:?}",
        s.schedule
    );
    // …and counts as the active preset (its caption is shown).
    assert!(has_label(&h, "GPT-3 (Brown et al. 2020) alternates"));
    h.get_by_label("Seed: sparse").click();
    step_until(&mut h, "layers to full and the mask", |h| {
        has_label(h, "Stacking 2 layers connects every pair") && h.state().is_idle()
    });
    screenshot(&mut h, "teach");
}

#[test]
fn sweep_runs_in_the_background_and_cancels() {
    let mut h = harness(seed_settings("Scaling"));
    h.run_steps(3);
    // Large sizes so the sweep is still running when Cancel is clicked.
    h.get_by_label("Run sweep").click();
    h.run_steps(2);
    assert!(has_label(&h, "running:"));
    h.get_by_label("Cancel sweep").click();
    step_until(&mut h, "the cancelled sweep", |h| {
        has_label(h, "sweep cancelled after")
    });
    assert!(!has_label(&h, "running:"));
}

/// Picks `value` in the combo box labelled `label`.
fn choose(h: &mut Harness<'static, AttnApp>, label: &str, value: &str) {
    h.get_by_label(label).click();
    h.run_steps(2);
    h.get_by_label(value).click();
    h.run_steps(2);
}

#[test]
fn sweep_completes_and_draws_every_size() {
    let mut h = harness(seed_settings("Scaling"));
    h.run_steps(3);
    // 256, 512, 1024 with the csr, block and permuted kernels: quick even on a busy machine.
    choose(&mut h, "to n", "1024");
    for k in ["dense", "masked"] {
        h.get_by_role_and_label(egui::accesskit::Role::CheckBox, k)
            .click();
    }
    h.run_steps(2);
    h.get_by_label("Run sweep").click();
    step_until(&mut h, "the finished sweep", |h| {
        has_label(h, "sweep done: 3 size(s)")
    });
    assert!(has_label(&h, "largest n so far: 1024"));
    assert!(has_label(&h, "sparse(k=32, w=32)"));
}

/// The README screenshot of the Scaling view: 256 … 16384, every kernel (slow; run with
/// `ATTNSCOPE_SCREENSHOTS=1 cargo test --test app_teach -- --ignored`).
#[test]
#[ignore]
fn sweep_screenshot_full_range() {
    let mut h = harness(seed_settings("Scaling"));
    h.run_steps(3);
    h.get_by_label("Run sweep").click();
    let t0 = Instant::now();
    while !has_label(&h, "sweep done") {
        assert!(t0.elapsed() < Duration::from_secs(900), "sweep too slow");
        std::thread::sleep(Duration::from_millis(200));
        h.step();
    }
    h.step();
    screenshot(&mut h, "scaling");
}

#[test]
fn heatmap_export_writes_the_reach_cells() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let picker: FilePicker = Box::new(move |req| match req {
        attnscope::app::FileRequest::SaveFile(name) => Some(out.join(name)),
        _ => None,
    });
    let settings = seed_settings("Receptive field");
    let cmap = settings.colormap;
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 940.0))
        .wgpu()
        .allow_missing_glyphs()
        .build_eframe(move |cc| AttnApp::with_settings(&cc.egui_ctx, settings, picker));
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "layers L")
        .set_value_accesskit(1.0);
    step_until(&mut h, "the heatmap at L = 1", |h| {
        has_label(h, "after L = 1 layer")
    });
    h.get_by_label("Save heatmap PNG").click();
    let path = dir.path().join("reach.png");
    step_until(&mut h, "the exported PNG", |h| {
        path.exists() && has_label(h, "saved")
    });
    // n = 64 at the default 1024 px: 16 pixels per cell; layer 1 is the sparse mask itself.
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1024, 1024));
    let cell = |i: u32, j: u32| img.get_pixel(j * 16 + 8, i * 16 + 8).0;
    assert_eq!(cell(10, 7), cmap.rgb(1.0)); // distance 3: local window
    assert_eq!(cell(10, 2), cmap.rgb(1.0)); // distance 8: atrous stride
    assert_eq!(cell(10, 5), cmap.rgb(0.0)); // distance 5: neither
}

/// Reachable pairs after `layers` layers of the `reach --schedule` list `list` over `shared`,
/// from the library (what `attnscope reach --schedule LIST` prints).
fn cli_pairs(list: &str, shared: &PatternParams, layers: usize) -> u64 {
    let specs = attnscope::reach::parse_schedule(list).unwrap();
    let s = attnscope::reach::schedule_from(&specs, shared).unwrap();
    let r = attnscope::reach::compute(
        &s,
        &attnscope::reach::ReachOptions::new(layers),
        &std::sync::atomic::AtomicBool::new(false),
        &|_, _| {},
    )
    .unwrap();
    r.layers[layers - 1].reachable_pairs
}

#[test]
fn schedule_row_with_its_own_window_matches_the_cli() {
    // Two local layers at n = 64 that take the controls' w = 3; the heatmap shows L = 2.
    let shared = PatternParams::new(PatternKind::Local, 64).window(3);
    let mut settings = seed_settings("Receptive field");
    settings.params = shared.clone();
    settings.schedule = vec![
        ScheduleRow::shared(PatternKind::Local),
        ScheduleRow::shared(PatternKind::Local),
    ];
    let mut h = harness(settings);
    // Distance ≤ 6 after two layers: 64 + 2·(63 + … + 58) = 790.
    let before = cli_pairs("local,local", &shared, 2);
    assert_eq!(before, 790);
    step_until(&mut h, "the heatmap of the shared w", |h| {
        has_label(
            h,
            &format!("after L = 2 layers: {before} of 4,096 pairs reachable"),
        )
    });
    // Layer 1 gets its own w = 1 through the editor.
    h.get_by_label("layer 1 own w").click();
    h.run_steps(2);
    h.get_by_label("layer 1 w").set_value_accesskit(1.0);
    h.run_steps(2);
    assert_eq!(
        schedule_list(&h.state().shared.settings.schedule),
        "local(w=1),local"
    );
    // What `attnscope reach --n 64 --window 3 --schedule "local(w=1),local"` gives: distance
    // ≤ 4, 64 + 2·(63 + 62 + 61 + 60) = 556.
    let after = cli_pairs("local(w=1),local", &shared, 2);
    assert_eq!(after, 556);
    step_until(&mut h, "the heatmap of the row's own w", |h| {
        has_label(
            h,
            &format!("after L = 2 layers: {after} of 4,096 pairs reachable"),
        )
    });
    // The heatmap's label and the CLI line name the row's own w; layer 2 still follows the
    // controls.
    assert!(has_label(&h, "schedule(local(w=1) | local(w=3))"));
    assert!(has_label(&h, "--schedule \"local(w=1),local\""));
    assert!(h.query_by_label("layer 2 w").is_none());
    screenshot(&mut h, "receptive-field-schedule");
}

/// Steps until every worker is idle (after two frames, so a view just opened has submitted
/// its jobs).
fn settle(h: &mut Harness<'static, AttnApp>) {
    h.run_steps(2);
    step_until(h, "the workers", |h| h.state().is_idle());
    h.run_steps(3);
}

/// Large-font (projector) mode, checked by eye: `ATTNSCOPE_SCREENSHOTS=1 cargo test --test
/// app_teach projector` writes `screenshots/teach_projector.png` and the Masks and
/// Receptive-field tabs to `target/tmp/projector/`.
#[test]
fn projector_mode_teach_masks_and_receptive_field() {
    let look = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("projector");
    // A 1500 × 940-pixel window; zoom 1.5 keeps its pixels and makes it 1000 × 627 points, as
    // on a real window.
    let mut h = harness(seed_settings("Teach"));
    h.run_steps(3);
    h.get_by_label("Large fonts (projector)").click();
    h.run_steps(3);
    assert_eq!(h.ctx.zoom_factor(), 1.5);
    let size = h.ctx.content_rect().size();
    assert!(
        (size.x - 1000.0).abs() < 1.0 && (size.y - 626.7).abs() < 1.0,
        "{size:?}"
    );
    // The default settings are the seed's sparse pattern (the active preset).
    settle(&mut h);
    assert!(has_label(&h, "Stacking 2 layers connects every pair"));
    screenshot(&mut h, "teach_projector");
    h.state_mut().shared.settings.tab = "Masks".into();
    settle(&mut h);
    screenshot_in(&mut h, &look, "projector_masks");
    h.state_mut().shared.settings.tab = "Receptive field".into();
    settle(&mut h);
    assert!(has_label(
        &h,
        "after L = 2 layers: 4,096 of 4,096 pairs reachable"
    ));
    screenshot_in(&mut h, &look, "projector_receptive_field");
    // Nothing runs past the right edge (a long label once widened the view past it).
    let width = h.ctx.content_rect().width();
    let right = |h: &Harness<'static, AttnApp>, label: &str| h.get_by_label(label).rect().right();
    assert!(right(&h, "Save coverage CSV") <= width);
    // The GPT-3 layers plus a sparse row with its own k and w: the widest editor rows.
    h.state_mut().shared.settings.schedule = vec![
        ScheduleRow::shared(PatternKind::Dense),
        ScheduleRow::from_spec(
            &attnscope::reach::parse_schedule("local(w=2)").unwrap()[0],
            4,
            3,
        ),
        ScheduleRow::from_spec(
            &attnscope::reach::parse_schedule("sparse(k=8, w=1)").unwrap()[0],
            4,
            3,
        ),
    ];
    settle(&mut h);
    assert!(has_label(
        &h,
        "schedule(dense | local(w=2) | sparse(k=8, w=1)): every pair reachable after 1 layer"
    ));
    screenshot_in(&mut h, &look, "projector_receptive_field_schedule");
    for label in ["layer 3 k", "layer 3 w", "remove layer 3"] {
        assert!(right(&h, label) <= width, "{label}");
    }
    // BigBird has the longest rule and caption.
    h.state_mut().shared.settings.tab = "Teach".into();
    h.run_steps(2);
    h.get_by_label("BigBird").click();
    settle(&mut h);
    screenshot_in(&mut h, &look, "projector_teach_bigbird");
}
