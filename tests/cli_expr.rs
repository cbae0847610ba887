//! Pattern expressions on the command line (docs/contract.md section 5).

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(PathBuf::from(env!("CARGO_BIN_EXE_attnscope")))
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn stats_of_an_expression_counts_exactly_and_labels_canonically() {
    // docs/contract.md example: local(w=32) | atrous(k=64) is sparse(k=64, w=32).
    let v = json(&[
        "stats",
        "--pattern",
        "local(w=32)|atrous(k=64)",
        "--n",
        "4096",
        "--json",
    ]);
    assert_eq!(v["nnz"], 523_232);
    assert_eq!(v["label"], "local(w=32) | atrous(k=64)");
    let named = json(&[
        "stats",
        "--pattern",
        "sparse",
        "--n",
        "4096",
        "--stride",
        "64",
        "--window",
        "32",
        "--json",
    ]);
    assert_eq!(named["nnz"], v["nnz"]);
    assert_eq!(named["blocks_partial"], v["blocks_partial"]);
    // Window + 4 sinks for a decoder, with --causal on a bare expression.
    let ws = json(&[
        "stats",
        "--pattern",
        "local(w=3) | sink(s=4)",
        "--causal",
        "--n",
        "64",
        "--json",
    ]);
    let window: u64 = (0..64u64).map(|i| i.min(3) + 1).sum();
    let sinks: u64 = (0..64u64).map(|i| i.saturating_sub(3).min(4)).sum();
    assert_eq!(ws["nnz"], window + sinks);
    assert_eq!(ws["label"], "(local(w=3) | sink(s=4)) & causal");
    assert_eq!(ws["causal"], true);
    // The label parses back to the same counts.
    let back = json(&[
        "stats",
        "--pattern",
        ws["label"].as_str().unwrap(),
        "--n",
        "64",
        "--json",
    ]);
    assert_eq!(back["nnz"], ws["nnz"]);
    assert_eq!(back["label"], ws["label"]);
}

#[test]
fn bad_expressions_are_one_error_line_with_exit_2() {
    for (expr, want) in [
        ("local(w=3", "expected ',' or ')'"),
        ("local(w=3))", "unbalanced ')'"),
        ("local(w=3) |", "dangling operator"),
        ("", "empty"),
        ("loacl(w=3)", "unknown term 'loacl'"),
        ("atrous(z=3)", "unknown key 'z'"),
        ("atrous(k=0)", "out of range"),
    ] {
        let o = run(&["stats", "--pattern", expr, "--n", "64"]);
        assert_eq!(o.status.code(), Some(2), "{expr:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: "), "{expr:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{expr:?}: {err}");
        assert!(err.contains(want), "{expr:?}: {err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn every_command_takes_expressions() {
    let v = json(&[
        "reach",
        "--pattern",
        "local(w=1) | atrous(k=8)",
        "--n",
        "64",
        "--layers",
        "3",
        "--json",
    ]);
    assert_eq!(v["label"], "local(w=1) | atrous(k=8)");
    // local(w=1) | atrous(k=8): one layer sees 3 + the lattice; the window bridges nothing of
    // width 8 in one layer, so coverage grows but stays exact (checked against the library).
    let p = attnscope::pattern::PatternParams::new(attnscope::pattern::PatternKind::Custom, 64)
        .expr("local(w=1) | atrous(k=8)")
        .build()
        .unwrap();
    let want = attnscope::reach::coverage(&p, 3, 3).unwrap();
    for l in 0..3 {
        assert_eq!(
            v["layers"][l]["reachable_pairs"],
            want.layers[l].reachable_pairs
        );
    }
    let b = json(&[
        "bench",
        "--pattern",
        "(local(w=16) | sink(s=4)) & causal",
        "--n",
        "256",
        "--d",
        "16",
        "--repeats",
        "1",
        "--json",
    ]);
    let ran: Vec<_> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["skipped"].is_null())
        .collect();
    assert!(ran.len() >= 4, "{b}");
    for r in ran {
        let err = r["max_rel_err"].as_f64().unwrap();
        assert!(err < 1e-4, "{}: {err}", r["kernel"]);
    }
}
