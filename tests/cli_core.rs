//! The real binary: `stats` and `export` outputs, exit codes and `error:` lines.

mod common;

use common::{assert_error_line, attnscope, usage_error};

#[test]
fn stats_json_has_the_spec_fields() {
    let out = attnscope(&[
        "stats",
        "--pattern",
        "sparse",
        "--n",
        "64",
        "--stride",
        "4",
        "--window",
        "3",
        "--block",
        "16",
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pattern"], "sparse");
    assert_eq!(v["n"], 64);
    assert_eq!(v["nnz"], 1396);
    assert!((v["density"].as_f64().unwrap() - 1396.0 / 4096.0).abs() < 1e-12);
    assert_eq!(v["flops_useful"], 4 * 64 * 1396);
    assert_eq!(v["block"], 16);
    // Every 16×16 tile of this mask has a cell on the atrous lattice, none is all-allowed.
    assert_eq!(v["blocks_full"], 0);
    assert_eq!(v["blocks_partial"], 16);
    assert_eq!(v["blocks_empty"], 0);
    assert_eq!(v["block_density"], 1.0);
}

#[test]
fn stats_block_counts_of_a_band() {
    // local w=3, n=4096, B=64: 64 diagonal + 2·63 neighbouring tiles, all partial.
    let out = attnscope(&[
        "stats",
        "--pattern",
        "local",
        "--n",
        "4096",
        "--window",
        "3",
        "--json",
        "--d",
        "32",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nnz"], 4096 + 2 * (4095 + 4094 + 4093));
    assert_eq!(
        v["flops_useful"],
        4 * 32 * (4096 + 2 * (4095 + 4094 + 4093))
    );
    assert_eq!(v["blocks_partial"], 64 + 2 * 63);
    assert_eq!(v["blocks_full"], 0);
    assert_eq!(v["blocks_empty"], 64 * 64 - 190);
}

#[test]
fn stats_table_is_readable() {
    let out = attnscope(&["stats", "--pattern", "atrous", "--n", "16", "--stride", "4"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // 16 + 2·(12 + 8 + 4) = 64 allowed pairs.
    assert!(text.contains("nnz             64"), "{text}");
    assert!(text.contains("atrous(k=4)"), "{text}");
}

#[test]
fn bad_values_exit_2_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    let png = png.to_str().unwrap();
    let big_npy = dir.path().join("big.npy");
    let big_png = dir.path().join("big.png");
    let bmp = dir.path().join("mask.bmp");
    usage_error(
        &["stats", "--pattern", "atrous", "--n", "0", "--stride", "2"],
        "--n 0",
    );
    usage_error(
        &["stats", "--pattern", "atrous", "--n", "-3", "--stride", "2"],
        "-3",
    );
    usage_error(
        &[
            "stats",
            "--pattern",
            "atrous",
            "--n",
            "abc",
            "--stride",
            "2",
        ],
        "abc",
    );
    usage_error(
        &[
            "stats",
            "--pattern",
            "atrous",
            "--n",
            "99999999999",
            "--stride",
            "2",
        ],
        "99999999999",
    );
    usage_error(
        &["stats", "--pattern", "atrous", "--n", "8", "--stride", "0"],
        "--stride 0",
    );
    usage_error(&["stats", "--pattern", "atrous", "--n", "8"], "--stride");
    usage_error(&["stats", "--pattern", "local", "--n", "8"], "--window");
    usage_error(
        &["stats", "--pattern", "local", "--n", "8", "--window", "-1"],
        "-1",
    );
    usage_error(&["stats", "--pattern", "nope", "--n", "8"], "nope");
    usage_error(
        &[
            "stats",
            "--pattern",
            "fixed",
            "--n",
            "8",
            "--stride",
            "4",
            "--summary",
            "5",
        ],
        "--summary 5",
    );
    usage_error(
        &[
            "stats",
            "--pattern",
            "fixed",
            "--n",
            "8",
            "--stride",
            "4",
            "--summary",
            "0",
        ],
        "--summary 0",
    );
    usage_error(
        &[
            "stats",
            "--pattern",
            "local",
            "--n",
            "8",
            "--window",
            "1",
            "--block",
            "0",
        ],
        "--block 0",
    );
    usage_error(
        &[
            "stats",
            "--pattern",
            "local",
            "--n",
            "8",
            "--window",
            "1",
            "--d",
            "0",
        ],
        "--d 0",
    );
    usage_error(
        &["stats", "--pattern", "bigbird", "--n", "8", "--block", "0"],
        "--block",
    );
    usage_error(
        &["stats", "--pattern", "bigbird", "--n", "8", "--seed", "x"],
        "x",
    );
    usage_error(&["stats", "--n", "8"], "--pattern");
    usage_error(
        &["stats", "--pattern", "dense", "--n", "8", "--bogus"],
        "--bogus",
    );
    usage_error(&["frobnicate"], "frobnicate");
    usage_error(
        &[
            "export",
            "--pattern",
            "dense",
            "--n",
            "8",
            "-o",
            png,
            "--scale",
            "0",
        ],
        "--scale 0",
    );
    usage_error(
        &[
            "export",
            "--pattern",
            "dense",
            "--n",
            "8",
            "-o",
            png,
            "--colormap",
            "rainbow",
        ],
        "rainbow",
    );
    usage_error(
        &[
            "export",
            "--pattern",
            "dense",
            "--n",
            "8",
            "-o",
            png,
            "--grid",
            "0",
        ],
        "--grid 0",
    );
    usage_error(
        &[
            "export",
            "--pattern",
            "dense",
            "--n",
            "8",
            "-o",
            bmp.to_str().unwrap(),
        ],
        ".png, .npy or .py",
    );
    usage_error(
        &[
            "export",
            "--pattern",
            "dense",
            "--n",
            "40000",
            "-o",
            big_npy.to_str().unwrap(),
        ],
        "1 GiB",
    );
    usage_error(
        &[
            "export",
            "--pattern",
            "dense",
            "--n",
            "70000",
            "-o",
            big_png.to_str().unwrap(),
        ],
        "--scale",
    );
    usage_error(&["export", "--pattern", "dense", "--n", "8"], "--output");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file left"
    );
}

#[test]
fn io_failure_exits_1_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/m.png");
    let out = attnscope(&[
        "export",
        "--pattern",
        "dense",
        "--n",
        "8",
        "-o",
        missing.to_str().unwrap(),
    ]);
    let err = assert_error_line(&out, 1, "could not write", "export to a missing folder");
    assert!(err.starts_with("error: could not write"), "{err}");
}

#[test]
fn export_writes_png_and_npy_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("s.png");
    let out = attnscope(&[
        "export",
        "--pattern",
        "sparse",
        "--n",
        "64",
        "--stride",
        "4",
        "--window",
        "3",
        "-o",
        png.to_str().unwrap(),
        "--scale",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (128, 128));
    // (10, 2): distance 8, on the atrous lattice; (10, 5): distance 5, neither.
    assert_eq!(img.get_pixel(2 * 2, 10 * 2).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(5 * 2, 10 * 2).0, [0, 0, 0]);
    let npy = dir.path().join("s.npy");
    let out = attnscope(&[
        "export",
        "--pattern",
        "local",
        "--n",
        "5",
        "--window",
        "1",
        "--causal",
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let bytes = std::fs::read(&npy).unwrap();
    let payload = &bytes[bytes.len() - 25..];
    let want: Vec<u8> = (0..5)
        .flat_map(|i| (0..5).map(move |j: i32| (j <= i && i - j <= 1) as u8))
        .collect();
    assert_eq!(payload, want.as_slice());
}

#[test]
fn help_and_version_exit_0() {
    assert!(attnscope(&["--help"]).status.success());
    assert!(attnscope(&["--version"]).status.success());
    assert!(attnscope(&["export", "--help"]).status.success());
}

/// `reach … --layers 4096`: a table of about 160 kB (300 kB with `--json`), more than a pipe
/// buffer holds, so the binary is still writing when the reader goes away.
const LONG_OUTPUT: [&str; 11] = [
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
    "4096",
];

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // Like `attnscope reach … --json | head -2`: read two lines, then close the pipe.
    let mut child = common::bin()
        .args(LONG_OUTPUT)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "{");
    assert_eq!(lines.next().unwrap().unwrap(), "  \"n\": 64,");
    drop(lines);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err, "");
    assert_eq!(out.status.code(), Some(0), "{err}");
    // Closed before the first byte: the same quiet success, for the table as for JSON.
    for json in [true, false] {
        let mut child = common::bin()
            .args(LONG_OUTPUT)
            .args(json.then_some("--json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "json {json}: {err}");
        assert_eq!(out.status.code(), Some(0), "json {json}: {err}");
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_failed_write_to_stdout_exits_1_with_one_error_line() {
    // /dev/full refuses every write with ENOSPC: a run-time failure, not a closed reader.
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return;
    };
    let out = common::bin()
        .args(LONG_OUTPUT)
        .stdout(full)
        .output()
        .expect("binary runs");
    assert_error_line(
        &out,
        1,
        "could not write the output to stdout",
        "stdout = /dev/full",
    );
}
