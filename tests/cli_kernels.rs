//! The real binary: `attnscope run` writes an output we reload and compare, `bench --json`
//! parses, bad inputs give one `error:` line and the right exit status.

use attnscope::export::npy_header;
use attnscope::inputs::{generate, load_npy, InputKind};
use attnscope::kernel::{max_rel_err, reference};
use attnscope::pattern::{PatternKind, PatternParams};
use std::path::Path;

mod common;

use common::{assert_error_line, bin, usage_error};

fn write_f64(path: &Path, a: &ndarray::Array2<f32>) {
    let mut b = npy_header("<f8", &[a.nrows(), a.ncols()]);
    for x in a.iter() {
        b.extend_from_slice(&(*x as f64).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

fn write_f32(path: &Path, a: &ndarray::Array2<f32>) {
    let mut b = npy_header("<f4", &[a.nrows(), a.ncols()]);
    for x in a.iter() {
        b.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn run_writes_the_attention_output() {
    let dir = tempfile::tempdir().unwrap();
    let qkv = generate(InputKind::Random { seed: 11 }, 150, 24);
    let (q, k, v) = (
        dir.path().join("q.npy"),
        dir.path().join("k.npy"),
        dir.path().join("v.npy"),
    );
    write_f32(&q, &qkv.q);
    write_f64(&k, &qkv.k); // float64 is accepted too
    write_f32(&v, &qkv.v);
    let p = PatternParams::new(PatternKind::Sparse, 150)
        .stride(8)
        .window(3)
        .causal(true)
        .build()
        .unwrap();
    let want = reference(&p, &qkv, Some(0.3));
    for kernel in ["masked", "csr", "block", "permuted"] {
        let out = dir.path().join(format!("o-{kernel}.npy"));
        let st = bin()
            .args([
                "run",
                "--pattern",
                "sparse",
                "--stride",
                "8",
                "--window",
                "3",
                "--causal",
            ])
            .args(["--kernel", kernel, "--scale", "0.3", "--block", "32"])
            .arg("--q")
            .arg(&q)
            .arg("--k")
            .arg(&k)
            .arg("--v")
            .arg(&v)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{kernel}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let got = load_npy(&out).unwrap();
        assert_eq!(got.dim(), (150, 24));
        let err = max_rel_err(&got, &want);
        assert!(err < 1e-4, "{kernel}: {err}");
    }
    // No pattern: dense, n from Q.
    let out = dir.path().join("dense.npy");
    let st = bin()
        .args(["run", "--kernel", "dense"])
        .arg("--q")
        .arg(&q)
        .arg("--k")
        .arg(&k)
        .arg("--v")
        .arg(&v)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let full = PatternParams::new(PatternKind::Dense, 150).build().unwrap();
    assert!(max_rel_err(&load_npy(&out).unwrap(), &reference(&full, &qkv, None)) < 1e-4);
}

#[test]
fn run_rejects_bad_inputs_without_leaving_files() {
    let dir = tempfile::tempdir().unwrap();
    let qkv = generate(InputKind::Random { seed: 1 }, 10, 4);
    let (q, k) = (dir.path().join("q.npy"), dir.path().join("k.npy"));
    write_f32(&q, &qkv.q);
    write_f32(&k, &qkv.k);
    let short = dir.path().join("short.npy");
    write_f32(&short, &qkv.v.slice(ndarray::s![..9, ..]).to_owned());
    let ints = dir.path().join("ints.npy");
    let mut b = npy_header("<i8", &[10, 4]);
    b.extend_from_slice(&[0u8; 320]);
    std::fs::write(&ints, b).unwrap();
    let out = dir.path().join("o.npy");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["--v".into(), short.display().to_string()],
            2,
            "V has shape",
        ),
        (vec!["--v".into(), ints.display().to_string()], 2, "dtype"),
        (
            vec![
                "--v".into(),
                dir.path().join("nope.npy").display().to_string(),
            ],
            1,
            "could not read",
        ),
        (
            vec![
                "--v".into(),
                k.display().to_string(),
                "--n".into(),
                "11".into(),
            ],
            2,
            "--n 11",
        ),
        (
            vec![
                "--v".into(),
                k.display().to_string(),
                "--pattern".into(),
                "bigbird".into(),
                "--block".into(),
                "2".into(),
                "--random".into(),
                "1".into(),
                "--kernel".into(),
                "permuted".into(),
            ],
            2,
            "permuted",
        ),
    ];
    for (extra, code, needle) in cases {
        let mut cmd = bin();
        cmd.arg("run")
            .arg("--q")
            .arg(&q)
            .arg("--k")
            .arg(&k)
            .arg("-o")
            .arg(&out);
        if !extra.iter().any(|a| a == "--kernel") {
            cmd.args(["--kernel", "csr"]);
        }
        let o = cmd.args(&extra).output().unwrap();
        assert_error_line(&o, code, needle, &extra);
        assert!(!out.exists());
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        4,
        "no stray files"
    );
}

#[test]
fn bench_json_parses() {
    let o = bin()
        .args([
            "bench",
            "--pattern",
            "sparse",
            "--n",
            "300",
            "--stride",
            "16",
            "--window",
            "4",
        ])
        .args(["--d", "32", "--repeats", "2", "--threads", "2", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 300);
    assert_eq!(v["d"], 32);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["pattern"], "sparse");
    assert_eq!(v["label"], "sparse(k=16, w=4)");
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["kernel"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dense", "masked", "csr", "block", "permuted"]);
    let p = PatternParams::new(PatternKind::Sparse, 300)
        .stride(16)
        .window(4)
        .build()
        .unwrap();
    let dense_ms = results[0]["median_ms"].as_f64().unwrap();
    for r in results {
        for key in [
            "median_ms",
            "min_ms",
            "flops_useful",
            "flops_executed",
            "gflops_useful",
            "speedup_vs_dense",
            "max_rel_err",
        ] {
            assert!(r.get(key).is_some(), "missing {key}");
        }
        assert_eq!(r["flops_useful"].as_u64().unwrap(), 4 * 32 * p.nnz());
        assert!(r["max_rel_err"].as_f64().unwrap() < 1e-4);
        // The derived figures follow from the measured ones.
        let median = r["median_ms"].as_f64().unwrap();
        let useful = r["flops_useful"].as_u64().unwrap() as f64;
        let gflops = r["gflops_useful"].as_f64().unwrap();
        assert!(
            (gflops - useful / (median * 1e6)).abs() <= 1e-9 * gflops,
            "{r}"
        );
        let speedup = r["speedup_vs_dense"].as_f64().unwrap();
        assert!((speedup - dense_ms / median).abs() <= 1e-9 * speedup, "{r}");
    }
    assert_eq!(
        results[0]["flops_executed"].as_u64().unwrap(),
        4 * 32 * 300 * 300
    );
    assert_eq!(
        results[2]["flops_executed"].as_u64().unwrap(),
        4 * 32 * p.nnz()
    );
}

#[test]
fn bench_rejects_bad_flags() {
    for (args, needle) in [
        (vec!["--kernels", "dense,flash"], "flash"),
        (vec!["--repeats", "0"], "--repeats"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--d", "0"], "--d"),
    ] {
        let mut all = vec!["bench", "--pattern", "local", "--n", "64", "--window", "2"];
        all.extend(args);
        usage_error(&all, needle);
    }
}
