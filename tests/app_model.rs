//! The Model tab (egui_kittest, wgpu on lavapipe) on SmolLM2 and a short text: the grid of
//! mass kept shows the numbers `attnscope model mass` prints, clicking a head opens it, the
//! quality is the one `attnscope model quality` prints, and "Use this head as input" hands the
//! head's Q, K, V to the other views.
//!
//! `cargo test --test app_model screenshots -- --ignored` writes `screenshots/model_*.png`.

use attnscope::analysis::{self, Silent};
use attnscope::app::model_view::SAMPLE_TEXT;
use attnscope::app::{AttnApp, InputChoice, Settings};
use attnscope::model::{self, SMOLLM2_FILE};
use attnscope::pattern::{PatternKind, PatternParams};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

fn harness(settings: Settings) -> Harness<'static, AttnApp> {
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 940.0))
        .with_max_steps(10_000)
        .build_eframe(move |cc| AttnApp::with_settings(&cc.egui_ctx, settings, Box::new(|_| None)));
    h.state_mut().shared.show_timings = false;
    h
}

/// Steps until every worker (the model's forward passes included) is idle.
fn settle(h: &mut Harness<'static, AttnApp>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        h.step();
        if h.state().is_idle() {
            h.run_steps(3);
            if h.state().is_idle() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the app did not become idle within 300 s");
}

fn has_label(h: &Harness<'static, AttnApp>, text: &str) -> bool {
    h.query_by_label(text).is_some()
}

const TOKENS: usize = 40;

fn model_settings() -> Settings {
    Settings {
        tab: "Model".into(),
        model_max_tokens: TOKENS,
        params: PatternParams::new(PatternKind::Local, TOKENS).window(4),
        ..Settings::default()
    }
}

#[test]
fn the_model_tab_shows_the_mass_grid_and_opens_a_clicked_head() {
    let Some(path) = common::model_path(SMOLLM2_FILE) else {
        return;
    };
    // What the CLI's functions say for the same text, model and pattern.
    let m = model::load(&path).expect("model loads");
    let tokens = m.tokenize(SAMPLE_TEXT, TOKENS).expect("tokens");
    assert_eq!(tokens.ids.len(), TOKENS);
    let p = PatternParams::new(PatternKind::Local, TOKENS)
        .window(4)
        .build()
        .expect("pattern");
    let layers = analysis::mass_kept(m.as_ref(), &tokens.ids, &p, &Silent).expect("mass");
    let mean = layers
        .iter()
        .flat_map(|l| l.heads.iter().map(|h| h.mass_kept))
        .sum::<f64>()
        / (30 * 9) as f64;
    let label = analysis::for_model(&p, m.info()).expect("causal").label();
    let q = analysis::quality(m.as_ref(), &tokens.ids, &p, &Silent).expect("quality");

    let mut h = harness(model_settings());
    settle(&mut h);
    assert!(
        has_label(
            &h,
            &format!("{TOKENS} tokens · 30 layers × 9 heads (3 KV heads) · head dim 64 · decoder")
        ),
        "the run's summary"
    );
    // The grid: one cell per (layer, head), and the mean mass the CLI computes.
    for (l, hd) in [(0, 0), (29, 8), (12, 4)] {
        assert!(
            has_label(&h, &format!("layer {l} head {hd}")),
            "cell {l}.{hd}"
        );
    }
    let want = format!("{label}: mean {:.1} %", 100.0 * mean);
    assert!(has_label(&h, &want), "grid mean {want:?}");
    // The quality of the pattern: the numbers of `attnscope model quality`.
    let ppl = format!(
        "perplexity {:.2} dense, {:.2} with the pattern",
        q.ppl_dense.expect("decoder"),
        q.ppl_pattern.expect("decoder")
    );
    assert!(has_label(&h, &ppl), "quality {ppl:?}");

    // Clicking a cell opens that head.
    assert!(!has_label(&h, "Layer 7, head 2"));
    h.get_by_label("layer 7 head 2").click();
    settle(&mut h);
    assert!(has_label(&h, "Layer 7, head 2"), "the clicked head is open");
    let head_mass = analysis::query_mass(
        analysis::head_qkv(m.as_ref(), &tokens.ids, 7, 2, &Silent)
            .expect("head")
            .q
            .view(),
        analysis::head_qkv(m.as_ref(), &tokens.ids, 7, 2, &Silent)
            .expect("head")
            .k
            .view(),
        &analysis::for_model(&p, m.info()).expect("causal"),
        true,
    );
    let head_mean = head_mass.iter().sum::<f64>() / TOKENS as f64;
    let want = format!("mass kept per query (mean {:.1} %)", 100.0 * head_mean);
    assert!(has_label(&h, &want), "per-query mass {want:?}");

    // The cheapest windows keeping 90 % of this head, from its distance profile; "Use" makes
    // the first one the pattern.
    let head = analysis::head_qkv(m.as_ref(), &tokens.ids, 7, 2, &Silent).expect("head");
    let probs = analysis::head_probabilities(head.q.view(), head.k.view(), true);
    let prof = analysis::DistanceProfile::of(probs.view(), 4);
    let w = prof.cheapest_window(0.9, false);
    let ws = prof.cheapest_window(0.9, true);
    assert!(
        has_label(&h, &format!("local(w={w})")),
        "cheapest window {w}"
    );
    assert!(
        has_label(&h, &format!("local(w={ws}) | sink(s=4)")),
        "with sinks {ws}"
    );
    h.query_all_by_label("Use")
        .next()
        .expect("a Use button")
        .click();
    settle(&mut h);
    assert_eq!(
        h.state().shared.settings.params.expr.as_deref(),
        Some(format!("local(w={w})").as_str())
    );

    // "Use this head as input": the head's Q, K, V become the other views' input.
    h.get_by_label("Use this head as input").click();
    settle(&mut h);
    let shared = &h.state().shared;
    let (qkv, name) = shared.loaded.as_ref().expect("loaded");
    assert_eq!(name, "model head 7.2");
    assert_eq!((qkv.n(), qkv.d()), (TOKENS, 64));
    assert_eq!(shared.settings.input, InputChoice::Loaded);
    assert_eq!(shared.settings.params.n, TOKENS);
    let want = analysis::head_qkv(m.as_ref(), &tokens.ids, 7, 2, &Silent).expect("head");
    assert_eq!(qkv.q, want.q, "the head's own q");
    assert_eq!(qkv.v, want.v, "the head's own v");
    assert!(
        has_label(&h, "model head 7.2"),
        "the input selector names it"
    );
}

#[test]
fn a_pattern_change_recomputes_the_grid() {
    let Some(_) = common::model_path(SMOLLM2_FILE) else {
        return;
    };
    let mut h = harness(model_settings());
    settle(&mut h);
    assert!(has_label(&h, "layer 0 head 0"));
    let shown = |h: &Harness<'static, AttnApp>, w: &str| {
        h.query_all_by_label_contains(&format!("local(w={w}"))
            .any(|n| format!("{n:?}").contains(": mean "))
    };
    assert!(shown(&h, "4") && !shown(&h, "12"));
    h.state_mut().shared.settings.params.window = Some(12);
    settle(&mut h);
    assert!(shown(&h, "12"), "the grid follows the new window");
    assert!(!shown(&h, "4"));
}

/// A tool, not a check: writes `screenshots/model_*.png` for the README.
#[test]
#[ignore = "a tool: writes screenshots/model_*.png, run with --ignored"]
fn screenshots() {
    let Some(_) = common::model_path(SMOLLM2_FILE) else {
        return;
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&out).expect("screenshots dir");
    let s = Settings {
        tab: "Model".into(),
        model_max_tokens: 1024,
        params: PatternParams::from_text("local(w=64) | sink(s=4)", 1024),
        ..Settings::default()
    };
    let mut h = harness(s);
    settle(&mut h);
    h.get_by_label("layer 5 head 3").click();
    settle(&mut h);
    h.render()
        .expect("render")
        .save(out.join("model_smollm2.png"))
        .expect("save");
}
