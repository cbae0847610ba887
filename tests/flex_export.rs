//! The FlexAttention export: the emitted `mask_mod`, evaluated with NumPy on index grids,
//! equals the mask attnscope exports as `.npy` (CI installs NumPy; no PyTorch needed).

use std::path::PathBuf;
use std::process::Command;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_attnscope"))
}

/// A Python with NumPy: `$ATTNSCOPE_PYTHON`, else `python3`. Outside CI a missing NumPy skips
/// the test with a message; under `CI=true` it is a failure.
fn python() -> Option<String> {
    let py = std::env::var("ATTNSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{py} cannot import numpy; CI must install it (see .ci/run)");
    }
    eprintln!("skipping: {py} cannot import numpy (set ATTNSCOPE_PYTHON to a Python with NumPy)");
    None
}

const CHECK: &str = r#"
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("m", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
want = np.load(sys.argv[2])
n = want.shape[0]
q, kv = np.indices((n, n))
got = np.asarray(m.mask_mod(0, 0, q, kv), dtype=bool)
got = np.broadcast_to(got, (n, n))
bad = np.argwhere(got != want)
if len(bad):
    print("mismatch at", bad[:5].tolist(), "of", len(bad))
    sys.exit(1)
# One cell at a time too (scalars, as FlexAttention's vmap hands them in).
for i, j in [(0, 0), (n - 1, 0), (0, n - 1), (n // 2, n // 3)]:
    assert bool(m.mask_mod(0, 0, np.int64(i), np.int64(j))) == bool(want[i, j]), (i, j)
print("ok", int(want.sum()), m.LABEL)
"#;

#[test]
fn emitted_mask_mod_equals_the_mask() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 8] = [
        &[
            "--pattern",
            "sparse",
            "--n",
            "64",
            "--stride",
            "4",
            "--window",
            "3",
        ],
        &[
            "--pattern",
            "(local(w=5) | sink(s=4)) & causal",
            "--n",
            "77",
        ],
        &["--pattern", "local(w=16) & atrous(k=4)", "--n", "100"],
        &["--pattern", "strided", "--n", "50", "--stride", "7"],
        &["--pattern", "fixed(l=8, c=3) | global(g=2)", "--n", "45"],
        &["--pattern", "longformer(w=2, g=3) & causal", "--n", "33"],
        &[
            "--pattern",
            "bigbird(b=8, wb=1, gb=1, r=2, seed=5)",
            "--n",
            "70",
        ],
        &[
            "--pattern",
            "bigbird(b=4, wb=0, gb=0, r=1, seed=1) | dense & causal",
            "--n",
            "20",
        ],
    ];
    for (x, args) in cases.iter().enumerate() {
        let py_path = dir.path().join(format!("m{x}.py"));
        let npy_path = dir.path().join(format!("m{x}.npy"));
        for out in [&py_path, &npy_path] {
            let o = Command::new(bin())
                .arg("export")
                .args(*args)
                .arg("-o")
                .arg(out)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let o = Command::new(&py)
            .args(["-c", CHECK])
            .arg(&py_path)
            .arg(&npy_path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let text = std::fs::read_to_string(&py_path).unwrap();
        assert!(text.contains("def mask_mod(b, h, q_idx, kv_idx):"));
        assert!(text.contains("create_block_mask(mask_mod"));
    }
}

#[test]
fn format_flag_writes_flex_whatever_the_extension_and_refuses_unknown_formats() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mask.txt");
    let o = Command::new(bin())
        .args([
            "export",
            "--pattern",
            "local(w=2) | sink(s=1)",
            "--n",
            "16",
            "--format",
            "flex",
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("LABEL = \"local(w=2) | sink(s=1)\""),
        "{text}"
    );
    let o = Command::new(bin())
        .args([
            "export",
            "--pattern",
            "dense",
            "--n",
            "4",
            "--format",
            "svg",
            "-o",
        ])
        .arg(dir.path().join("x.svg"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: unknown --format \"svg\""));
}
