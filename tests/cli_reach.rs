//! `attnscope reach` through the real binary: exit codes, JSON keys, values.

mod common;

use common::{attnscope_text, usage_error};

#[test]
fn reach_json_has_the_spec_keys_and_exact_values() {
    let (code, stdout, stderr) = attnscope_text(&[
        "reach",
        "--pattern",
        "sparse",
        "--n",
        "64",
        "--stride",
        "4",
        "--window",
        "3",
        "--layers",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(v["n"], 64);
    assert_eq!(v["pattern"], "sparse");
    assert_eq!(v["label"], "sparse(k=4, w=3)");
    let layers = v["layers"].as_array().expect("layers list");
    assert_eq!(layers.len(), 3);
    // Layer 1 is the mask itself: nnz = 1396 (local 436 + atrous 1024 − diagonal 64).
    assert_eq!(layers[0]["layer"], 1);
    assert_eq!(layers[0]["reachable_pairs"], 1396);
    assert!((layers[0]["coverage"].as_f64().unwrap() - 1396.0 / 4096.0).abs() < 1e-12);
    // w = k − 1: every pair after two layers.
    assert_eq!(layers[1]["reachable_pairs"], 4096);
    assert_eq!(layers[1]["coverage"], 1.0);
    assert_eq!(layers[2]["layer"], 3);
    assert_eq!(v["layers_to_full"], 2);
}

#[test]
fn reach_table_and_schedule() {
    let (code, stdout, _) = attnscope_text(&[
        "reach",
        "--pattern",
        "atrous",
        "--n",
        "64",
        "--stride",
        "4",
        "--layers",
        "8",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("reach of atrous(k=4), n = 64"), "{stdout}");
    assert!(stdout.contains("25.0000%"), "{stdout}");
    assert!(
        stdout.contains("not every pair is reachable within 8 layer(s)"),
        "{stdout}"
    );

    let (code, stdout, stderr) = attnscope_text(&[
        "reach",
        "--n",
        "100",
        "--window",
        "2",
        "--schedule",
        "local,dense",
        "--layers",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["pattern"], "local,dense");
    assert_eq!(v["label"], "schedule(local(w=2) | dense)");
    assert_eq!(v["layers"][0]["reachable_pairs"], 100 + 2 * 99 + 2 * 98);
    assert_eq!(v["layers"][1]["coverage"], 1.0);
}

#[test]
fn reach_full_coverage_search_cap() {
    let (code, stdout, _) = attnscope_text(&[
        "reach",
        "--pattern",
        "local",
        "--n",
        "64",
        "--window",
        "3",
        "--layers",
        "1",
        "--max-layers",
        "30",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    assert_eq!(v["layers_to_full"], 21); // ceil(63 / 3)
    assert_eq!(v["max_layers"], 30);
}

#[test]
fn reach_bad_input_is_one_error_line_with_exit_2() {
    let local_64 = |extra: &[&'static str]| {
        let base = ["reach", "--pattern", "local", "--n", "64", "--window", "3"];
        [&base[..], extra].concat()
    };
    usage_error(&local_64(&["--layers", "0"]), "--layers 0");
    usage_error(&local_64(&[]), "--layers");
    usage_error(
        &["reach", "--pattern", "atrous", "--n", "64", "--layers", "2"],
        "--stride",
    );
    usage_error(
        &[
            "reach",
            "--pattern",
            "dense",
            "--n",
            "300000",
            "--layers",
            "1",
        ],
        "--n 300000",
    );
    let err = usage_error(
        &[
            "reach",
            "--n",
            "64",
            "--layers",
            "2",
            "--schedule",
            "dense,nope",
        ],
        "\"nope\"",
    );
    assert!(err.contains("dense, local"), "{err}");
}

#[test]
fn bench_sweep_runs_every_size_and_writes_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv");
    let (code, stdout, stderr) = attnscope_text(&[
        "bench",
        "--pattern",
        "sparse",
        "--stride",
        "4",
        "--window",
        "3",
        "--kernels",
        "csr,block",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--sweep",
        "32..128",
        "--sqrt",
        "--json",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let points = v["points"].as_array().unwrap();
    let ns: Vec<u64> = points.iter().map(|p| p["n"].as_u64().unwrap()).collect();
    assert_eq!(ns, vec![32, 64, 128]);
    // k = w = ⌈√n⌉: 6 at n = 32, 8 at 64, 12 at 128.
    assert_eq!(points[2]["pattern"], "sparse");
    assert_eq!(points[2]["label"], "sparse(k=12, w=12)");
    assert_eq!(points[0]["results"].as_array().unwrap().len(), 2);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 1 + 3 * 2);
    assert!(text.starts_with("n,d,pattern,threads,kernel,median_ms"));

    let err = usage_error(
        &["bench", "--pattern", "dense", "--sweep", "64..8"],
        "is not a size range",
    );
    assert!(err.starts_with("error: --sweep \"64..8\""), "{err}");
}

#[test]
fn bench_sweep_and_n_are_one_or_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv");
    let one_line = |args: &[&str], starts: &str, needle: &str| {
        let err = usage_error(args, needle);
        assert!(err.starts_with(starts), "{args:?}: {err}");
    };
    // Both: the value of --n would be ignored, so it is refused; no CSV is written.
    one_line(
        &[
            "bench",
            "--pattern",
            "dense",
            "--n",
            "64",
            "--sweep",
            "32..64",
            "--csv",
            csv.to_str().unwrap(),
        ],
        "error: --n 64 cannot be used with --sweep \"32..64\"",
        "leave out --n",
    );
    assert!(!csv.exists());
    // Neither: --n is still required without --sweep.
    one_line(&["bench", "--pattern", "dense"], "error: ", "--n <N>");
    // A pattern that is invalid at the sweep's sizes fails before any timing (one line only).
    one_line(
        &["bench", "--pattern", "local", "--sweep", "16..32"],
        "error: at n = 16: in pattern \"local\" at character 1: local needs w",
        "--window",
    );
}

/// `reach --n 16 --window 5 --schedule LIST` plus `extra`.
fn reach_16_args<'a>(schedule: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "reach",
        "--n",
        "16",
        "--window",
        "5",
        "--schedule",
        schedule,
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `attnscope` with [`reach_16_args`].
fn reach_16(schedule: &str, extra: &[&str]) -> (i32, String, String) {
    attnscope_text(&reach_16_args(schedule, extra))
}

#[test]
fn reach_schedule_entries_take_their_own_parameters() {
    // n = 16 has 2·(16 − d) pairs at distance d ≥ 1. local(w=1) then local(w=2) reaches distance
    // 1, 3, 4, 6 after 1..4 layers: 46, 46 + 28 + 26 = 100, 100 + 24 = 124, 124 + 22 + 20 = 166.
    // The shared --window 5 must not leak into either entry.
    let (code, stdout, stderr) = reach_16("local(w=1),local(w=2)", &["--layers", "4", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["pattern"], "local,local");
    assert_eq!(v["label"], "schedule(local(w=1) | local(w=2))");
    let pairs: Vec<u64> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reachable_pairs"].as_u64().unwrap())
        .collect();
    assert_eq!(pairs, [46, 100, 124, 166]);
    assert_eq!(v["layers"][1]["coverage"], 100.0 / 256.0);

    // An entry without parameters takes the shared flags: local(w=1) then local(w=5) reaches
    // distance 6 after two layers.
    let (code, stdout, stderr) = reach_16("local(w=1), local", &["--layers", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("reach of schedule(local(w=1) | local(w=5)), n = 16"),
        "{stdout}"
    );
    let row2: Vec<&str> = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("2 "))
        .expect("a row for layer 2")
        .split_whitespace()
        .collect();
    assert_eq!(row2[..2], ["2", "166"], "{stdout}");
}

#[test]
fn reach_schedule_bad_entries_exit_2_naming_the_entry() {
    for (list, needle) in [
        (
            "local(w=abc),dense",
            "\"local(w=abc)\": w=abc is not accepted",
        ),
        (
            "dense,atrous(k=0)",
            "\"atrous(k=0)\": k=0 is not accepted; expected an integer ≥ 1",
        ),
        (
            "local(x=3)",
            "\"x\" is not a parameter of local; local takes w (window ≥ 0), causal",
        ),
        (
            "dense(w=2)",
            "\"dense(w=2)\": \"w\" is not a parameter of dense",
        ),
        (
            "local(w=3,dense",
            "\"local(w=3,dense\" is malformed (missing ')')",
        ),
        ("local:w=64", "\"local:w=64\" is not a pattern"),
        ("dense,,local", "\"dense,,local\" has an empty entry"),
        (
            "atrous",
            "\"atrous\": in pattern \"atrous\" at character 1: atrous needs k",
        ),
    ] {
        let err = usage_error(&reach_16_args(list, &["--layers", "2"]), needle);
        assert!(err.starts_with("error: --schedule "), "{list}: {err}");
    }
}

#[test]
fn reach_schedule_and_pattern_are_one_or_the_other() {
    // Both: every layer's pattern comes from the schedule, so --pattern would be ignored.
    let err = usage_error(
        &reach_16_args("dense,local", &["--pattern", "atrous", "--layers", "2"]),
        "leave out --pattern",
    );
    assert!(
        err.starts_with(
            "error: --pattern \"atrous\" cannot be used with --schedule \"dense,local\""
        ),
        "{err}"
    );
    // Neither: the message points to both ways of giving the pattern.
    let err = usage_error(
        &["reach", "--n", "16", "--window", "5", "--layers", "2"],
        "--pattern is missing",
    );
    assert!(err.contains("--schedule LIST"), "{err}");
    // --n is still needed with a schedule.
    usage_error(
        &["reach", "--schedule", "dense", "--layers", "1"],
        "--n <N>",
    );
    // The schedule alone: dense then local(w=5) at n = 16 reaches every pair in one layer.
    let (code, stdout, stderr) = reach_16("dense,local", &["--layers", "2", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["pattern"], "dense,local");
    assert_eq!(v["label"], "schedule(dense | local(w=5))");
    assert_eq!(v["layers"][0]["reachable_pairs"], 256);
    assert_eq!(v["layers_to_full"], 1);
}
