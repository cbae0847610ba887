//! `attnscope model …` (docs/contract.md section 6) through the real binary: the JSON keys, the exported
//! head against `attnscope run`, and the `error:` line with exit 2 for bad input.

use attnscope::analysis::{self, Silent};
use attnscope::inputs::load_npy;
use attnscope::model::{attend_heads, Attention, Bert, Hooks, Model, MINILM_DIR};
use attnscope::pattern::{PatternKind, PatternParams};
use ndarray::{Array3, ArrayView3};
use serde_json::Value;
use std::path::PathBuf;

mod common;

use common::{attnscope_text, usage_error};

fn minilm() -> Option<PathBuf> {
    common::model_path(MINILM_DIR)
}

fn json(args: &[&str]) -> Value {
    let (code, out, err) = attnscope_text(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. It was not amused, and 42 \
                    other foxes agreed; the dog slept on.";

#[test]
fn info_and_tokens_print_the_keys_of_the_spec() {
    let Some(path) = minilm() else { return };
    let p = path.to_str().unwrap();
    let info = json(&["model", "info", "--model", p, "--json"]);
    assert_eq!(info["arch"], "bert");
    assert_eq!(info["layers"], 6);
    assert_eq!(info["heads"], 12);
    assert_eq!(info["kv_heads"], 12);
    assert_eq!(info["head_dim"], 32);
    assert_eq!(info["causal"], false);
    assert_eq!(info["vocab"], 30522);
    assert_eq!(info["max_positions"], 512);

    let t = json(&[
        "model",
        "tokens",
        "--model",
        p,
        "--prompt",
        "Hello, world! 123",
        "--json",
    ]);
    let ids: Vec<u64> = t["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![101, 7592, 1010, 2088, 999, 13138, 102]);
    assert_eq!(t["tokens"][0], "[CLS]");
    assert_eq!(t["tokens"][5], "123");

    // --text FILE and --max-tokens.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("text.txt");
    std::fs::write(&file, TEXT).unwrap();
    let f = file.to_str().unwrap();
    let t = json(&[
        "model",
        "tokens",
        "--model",
        p,
        "--text",
        f,
        "--max-tokens",
        "8",
        "--json",
    ]);
    assert_eq!(t["ids"].as_array().unwrap().len(), 8);
    assert_eq!(t["ids"][7], 102);

    // The readable forms.
    let (code, out, _) = attnscope_text(&["model", "info", "--model", p]);
    assert_eq!(code, 0);
    assert!(out.contains("arch") && out.contains("bert"));
}

#[test]
fn a_bare_name_is_looked_up_in_the_models_folder() {
    let Some(path) = minilm() else { return };
    let parent = path.parent().unwrap();
    for name in ["minilm", MINILM_DIR] {
        let out = common::bin()
            .args(["model", "info", "--model", name, "--json"])
            .env("ATTNSCOPE_MODELS", parent)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["arch"], "bert");
    }
}

#[test]
fn mass_and_quality_print_the_keys_of_the_spec() {
    let Some(path) = minilm() else { return };
    let p = path.to_str().unwrap();
    let m = json(&["model", "mass", "--model", p, "--prompt", TEXT, "--json"]);
    let n = m["n"].as_u64().unwrap();
    assert!(n > 20);
    assert_eq!(m["pattern"], "dense");
    assert_eq!(m["label"], "dense");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6);
    for (l, layer) in layers.iter().enumerate() {
        assert_eq!(layer["layer"], l as u64);
        let heads = layer["heads"].as_array().unwrap();
        assert_eq!(heads.len(), 12);
        for (h, head) in heads.iter().enumerate() {
            assert_eq!(head["head"], h as u64);
            assert!((head["mass_kept"].as_f64().unwrap() - 1.0).abs() < 1e-5);
            assert!((head["worst_query"].as_f64().unwrap() - 1.0).abs() < 1e-5);
        }
    }
    let m = json(&[
        "model",
        "mass",
        "--model",
        p,
        "--prompt",
        TEXT,
        "--pattern",
        "local",
        "--window",
        "2",
        "--json",
    ]);
    assert_eq!(m["label"], "local(w=2)");
    let kept = m["layers"][0]["heads"][0]["mass_kept"].as_f64().unwrap();
    assert!(kept > 0.0 && kept < 1.0);

    let q = json(&[
        "model",
        "quality",
        "--model",
        p,
        "--prompt",
        TEXT,
        "--pattern",
        "local",
        "--window",
        "2",
        "--json",
    ]);
    assert_eq!(q["n"], n);
    assert_eq!(q["pattern"], "local");
    let c = q["embedding_cosine"].as_f64().unwrap();
    assert!(c > 0.0 && c < 1.0, "{c}");
    assert!(q.get("ppl_dense").is_none());
    let q = json(&["model", "quality", "--model", p, "--prompt", TEXT, "--json"]);
    assert!((q["embedding_cosine"].as_f64().unwrap() - 1.0).abs() < 1e-12);

    let (code, out, _) = attnscope_text(&["model", "mass", "--model", p, "--prompt", TEXT]);
    assert_eq!(code, 0);
    assert!(out.contains("layer  5"), "{out}");
}

/// `model quality --schedule`: one pattern per layer, cycled (GPT-3's dense / banded layers).
#[test]
fn quality_runs_a_per_layer_schedule() {
    let Some(path) = minilm() else { return };
    let p = path.to_str().unwrap();
    let cos = |extra: &[&str]| {
        let mut args = vec!["model", "quality", "--model", p, "--prompt", TEXT, "--json"];
        args.extend_from_slice(extra);
        let q = json(&args);
        (q["embedding_cosine"].as_f64().unwrap(), q)
    };
    let (all_local, _) = cos(&["--pattern", "local", "--window", "2"]);
    // One entry is the same run as --pattern; a dense schedule is the dense model itself.
    let (one, q) = cos(&["--schedule", "local(w=2)"]);
    assert_eq!(one, all_local);
    assert_eq!(q["label"], "local(w=2)");
    assert!((cos(&["--schedule", "dense"]).0 - 1.0).abs() < 1e-12);
    // Alternating: half of MiniLM's 6 layers keep full attention, so the embedding moves less
    // than with every layer banded, and which half matters.
    let (alt, q) = cos(&["--schedule", "dense,local", "--window", "2"]);
    assert_eq!(q["pattern"], "dense,local");
    assert_eq!(q["label"], "schedule(dense | local(w=2))");
    assert!(all_local < alt && alt < 1.0, "{all_local} {alt}");
    let (other, _) = cos(&["--schedule", "local(w=2),dense"]);
    assert!(other < 1.0 && other != alt, "{other} {alt}");
    // --pattern and --schedule together, or a bad entry: one error line, exit 2.
    for bad in [
        vec!["--schedule", "dense,local", "--pattern", "local"],
        vec!["--schedule", "dense,nope"],
    ] {
        let mut args = vec!["model", "quality", "--model", p, "--prompt", TEXT];
        args.extend_from_slice(&bad);
        let (code, _, err) = attnscope_text(&args);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(
            err.starts_with("error:") && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}

/// Keeps layer `L`'s q, k, v.
struct Layer(usize, Option<(Array3<f32>, Array3<f32>, Array3<f32>)>);
impl Hooks for Layer {
    fn on_attention(
        &mut self,
        layer: usize,
        q: ArrayView3<'_, f32>,
        k: ArrayView3<'_, f32>,
        v: ArrayView3<'_, f32>,
    ) {
        if layer == self.0 {
            self.1 = Some((q.to_owned(), k.to_owned(), v.to_owned()));
        }
    }
}

#[test]
fn an_exported_head_run_through_attnscope_run_gives_the_models_attention_output() {
    let Some(path) = minilm() else { return };
    let p = path.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("head");
    let (layer, head) = (4, 9);
    let (code, _, err) = attnscope_text(&[
        "model",
        "qkv",
        "--model",
        p,
        "--prompt",
        TEXT,
        "--layer",
        "4",
        "--head",
        "9",
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let q = load_npy(&out_dir.join("q.npy")).unwrap();
    let n = q.nrows();
    assert_eq!(q.ncols(), 32);

    // The model's own attention output of that head, under the same pattern.
    let model = Bert::load(&path).unwrap();
    let ids = model.tokenize(TEXT, 512).unwrap().ids;
    assert_eq!(ids.len(), n);
    let mut hook = Layer(layer, None);
    model.forward(&ids, Attention::Dense, &mut hook).unwrap();
    let (mq, mk, mv) = hook.1.unwrap();
    let pattern = PatternParams::new(PatternKind::Sparse, n)
        .stride(6)
        .window(3)
        .build()
        .unwrap();
    let all = attend_heads(mq.view(), mk.view(), mv.view(), Some(&pattern), false).unwrap();
    let want = all
        .slice(ndarray::s![.., head * 32..(head + 1) * 32])
        .to_owned();
    let exported = analysis::head_qkv(&model, &ids, layer, head, &Silent).unwrap();
    assert_eq!(exported.q, q);

    for kernel in ["csr", "block", "masked"] {
        let out = dir.path().join(format!("o-{kernel}.npy"));
        let (code, _, err) = attnscope_text(&[
            "run",
            "--pattern",
            "sparse",
            "--stride",
            "6",
            "--window",
            "3",
            "--kernel",
            kernel,
            "--q",
            out_dir.join("q.npy").to_str().unwrap(),
            "--k",
            out_dir.join("k.npy").to_str().unwrap(),
            "--v",
            out_dir.join("v.npy").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let got = load_npy(&out).unwrap();
        let e = attnscope::kernel::max_rel_err(&got, &want);
        assert!(e < 1e-4, "{kernel}: {e}");
    }
}

#[test]
fn bad_model_requests_are_one_error_line_with_exit_2() {
    // Without any model on disk.
    usage_error(
        &["model", "info", "--model", "/nonexistent/model.gguf"],
        "not found",
    );
    usage_error(
        &["model", "info", "--model", "no-such-model-name"],
        "not found",
    );
    let empty = tempfile::tempdir().unwrap();
    usage_error(
        &["model", "info", "--model", empty.path().to_str().unwrap()],
        "config.json",
    );
    let notes = empty.path().join("notes.txt");
    std::fs::write(&notes, "not a model").unwrap();
    usage_error(
        &["model", "info", "--model", notes.to_str().unwrap()],
        "notes.txt",
    );
    usage_error(
        &["model", "tokens", "--model", "minilm", "--prompt", "   "],
        "empty",
    );
    usage_error(
        &["model", "tokens", "--model", "minilm"],
        "--text FILE or --prompt",
    );
    usage_error(
        &[
            "model",
            "tokens",
            "--model",
            "minilm",
            "--text",
            "/nonexistent/t.txt",
        ],
        "--text",
    );
    usage_error(
        &[
            "model",
            "tokens",
            "--model",
            "minilm",
            "--prompt",
            "a",
            "--max-tokens",
            "0",
        ],
        "--max-tokens",
    );

    let Some(path) = minilm() else { return };
    let p = path.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("out");
    let o = o.to_str().unwrap();
    usage_error(
        &[
            "model", "qkv", "--model", p, "--prompt", TEXT, "--layer", "6", "--head", "0", "-o", o,
        ],
        "--layer 6",
    );
    usage_error(
        &[
            "model", "qkv", "--model", p, "--prompt", TEXT, "--layer", "0", "--head", "12", "-o", o,
        ],
        "--head 12",
    );
    assert!(
        !dir.path().join("out").exists(),
        "nothing written on failure"
    );
    usage_error(
        &[
            "model", "mass", "--model", p, "--prompt", "a b c", "--n", "9",
        ],
        "--n 9",
    );
    usage_error(
        &[
            "model",
            "mass",
            "--model",
            p,
            "--prompt",
            "a b c",
            "--pattern",
            "local",
        ],
        "--window",
    );
    usage_error(
        &["model", "next", "--model", p, "--prompt", TEXT],
        "decoder",
    );
}
