//! Reliability of the `attnscope` binary under signals, odd output paths, an unwritable stderr
//! and limits (README, "Errors").

mod common;
use common::{assert_error_line, attnscope, attnscope_text, bin, usage_error};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("dir readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Starts a 1 GiB `.npy` export into `dir`, waits until its temporary file exists (the export
/// is running), sends `signal` and checks that the process ended by that signal and left
/// nothing behind.
#[cfg(unix)]
fn interrupted_export_leaves_nothing(signal: &str, number: i32) {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.npy");
    let mut child = bin()
        .args(["export", "--pattern", "sparse", "--n", "32768"])
        .args(["--stride", "64", "--window", "32", "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let start = Instant::now();
    loop {
        let found = names(dir.path());
        if found.iter().any(|n| n.ends_with(".part")) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "{signal}: the export ended before its temporary file was seen: {found:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{signal}: no temporary file after 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "{signal}: kill failed");
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(number),
        "{signal}: the export should end by the signal (it was still running), got {status:?}"
    );
    assert_eq!(
        names(dir.path()),
        Vec::<String>::new(),
        "{signal}: nothing may remain"
    );
}

#[cfg(unix)]
#[test]
fn sigint_during_an_export_removes_the_temporary_file() {
    interrupted_export_leaves_nothing("INT", 2);
}

#[cfg(unix)]
#[test]
fn sigterm_during_an_export_removes_the_temporary_file() {
    interrupted_export_leaves_nothing("TERM", 15);
}

#[cfg(unix)]
#[test]
fn sighup_during_an_export_removes_the_temporary_file() {
    interrupted_export_leaves_nothing("HUP", 1);
}

/// A file-size limit (`ulimit -f`) makes the write fail as an ordinary error: exit 1, one
/// `error:` line, no temporary file (SIGXFSZ would otherwise end the process and leave it).
#[cfg(unix)]
#[test]
fn a_file_size_limit_is_a_write_error_that_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.npy");
    // ulimit -f counts 1024-byte blocks: 1 MiB, far below the 16 MiB mask.
    let cmd = "ulimit -f 1024; exec \"$0\" export --pattern local --n 4096 --window 3 \
               -o \"$1\"";
    let run = std::process::Command::new("sh")
        .args(["-c", cmd, env!("CARGO_BIN_EXE_attnscope")])
        .arg(&out)
        .output()
        .expect("sh runs");
    let err = assert_error_line(&run, 1, "big.npy", "ulimit -f");
    assert!(!err.contains(".part"), "{err}");
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

/// An output path in a missing folder fails before any work, naming the path given (never the
/// temporary file); `bench --sweep --csv` fails before timing anything.
#[test]
fn unwritable_outputs_fail_first_naming_the_given_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nodir").join("c.csv");
    let missing_s = missing.to_str().unwrap();
    let out = attnscope(&[
        "bench",
        "--pattern",
        "local",
        "--window",
        "2",
        "--sweep",
        "64,128",
        "--kernels",
        "csr",
        "--repeats",
        "1",
        "--csv",
        missing_s,
    ]);
    let err = assert_error_line(&out, 1, missing_s, "bench --csv");
    assert!(!err.contains(".part"), "{err}");
    // Before timing: no progress line was printed (assert_error_line checks one line only).
    let npy = dir.path().join("nodir").join("m.npy");
    let out = attnscope(&[
        "export",
        "--pattern",
        "local",
        "--n",
        "16",
        "--window",
        "1",
        "-o",
        npy.to_str().unwrap(),
    ]);
    let err = assert_error_line(&out, 1, npy.to_str().unwrap(), "export");
    assert!(!err.contains(".part"), "{err}");
    let as_dir = dir.path().join("d.npy");
    std::fs::create_dir(&as_dir).unwrap();
    let err = usage_error(
        &[
            "export",
            "--pattern",
            "local",
            "--n",
            "16",
            "--window",
            "1",
            "-o",
            as_dir.to_str().unwrap(),
        ],
        "is a directory",
    );
    assert!(!err.contains(".part"), "{err}");
}

/// When the CSV cannot be written at the end of a sweep (here a file-size limit of 0 blocks:
/// the temporary file can be created, not filled), the table is printed anyway, then one
/// `error:` line naming the CSV, exit 1, and nothing is left behind.
#[cfg(unix)]
#[test]
fn a_csv_that_fails_at_the_end_still_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    let cmd = "ulimit -f 0; exec \"$0\" bench --pattern local --window 2 --sweep 64,128 \
               --kernels csr --repeats 1 --csv \"$1\"";
    let run = std::process::Command::new("sh")
        .args(["-c", cmd, env!("CARGO_BIN_EXE_attnscope")])
        .arg(&csv)
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("csr"), "the table is printed: {stdout:?}");
    assert!(stdout.contains("128"), "{stdout:?}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(last.contains("c.csv"), "{stderr}");
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

/// Overwriting keeps the file's permission bits; a symbolic link stays a link and its target
/// gets the new content.
#[cfg(unix)]
#[test]
fn overwriting_keeps_the_mode_and_writes_through_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.npy");
    std::fs::write(&file, b"old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
        "export",
        "--pattern",
        "local",
        "--n",
        "8",
        "--window",
        "1",
        "-o",
    ];
    let (code, _, err) = attnscope_text(&[&args[..], &[file.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{err}");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let written = std::fs::read(&file).unwrap();
    assert_eq!(written.len(), 128 + 64, "header + 8×8 cells");

    // A link in one folder to a file in another.
    let other = tempfile::tempdir().unwrap();
    let target = other.path().join("real.npy");
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("link.npy");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, _, err) = attnscope_text(&[&args[..], &[link.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), written);
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // A relative link to a file that does not exist yet creates it beside the link.
    let dangling = dir.path().join("dangling.npy");
    std::os::unix::fs::symlink("new.npy", &dangling).unwrap();
    let (code, _, err) = attnscope_text(&[&args[..], &[dangling.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.path().join("new.npy")).unwrap(), written);
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".part")));
    assert!(names(other.path()).iter().all(|n| !n.ends_with(".part")));
}

/// A directory given as an input is called a directory.
#[test]
fn a_directory_as_input_is_called_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = dir.path().join("o.npy");
    let out = attnscope(&[
        "run",
        "--kernel",
        "csr",
        "--q",
        d,
        "--k",
        d,
        "--v",
        d,
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = assert_error_line(&out, 2, "is a directory", "--q DIR");
    assert!(err.contains(d), "{err}");
    assert!(!err.contains("magic"), "{err}");
}

/// A stderr that cannot be written (`2>/dev/full`) never makes the binary panic: a usage error
/// still exits 2 and a successful bench still prints its result and exits 0.
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_stderr_never_panics() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    let out = bin()
        .args(["stats", "--pattern", "nonsense", "--n", "1"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["stats", "--pattern", "dense", "--n", "0"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["bench", "--pattern", "local", "--n", "64", "--window", "2"])
        .args(["--kernels", "csr,dense", "--repeats", "1"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("csr") && stdout.contains("dense"),
        "{stdout}"
    );
}

/// Writes a float32 `.npy` of shape (n, d) holding `f(i, j)`.
fn npy_f32(path: &Path, n: usize, d: usize, f: impl Fn(usize, usize) -> f32) {
    let mut b = attnscope::export::npy_header("<f4", &[n, d]);
    for i in 0..n {
        for j in 0..d {
            b.extend_from_slice(&f(i, j).to_le_bytes());
        }
    }
    std::fs::write(path, b).unwrap();
}

/// `--repeats` and `--warmup` are bounded (1e12 aborted, u64::MAX panicked, 1e8 ran for ever).
#[test]
fn repeats_and_warmup_are_bounded() {
    let base = ["bench", "--pattern", "local", "--n", "64", "--window", "2"];
    for (flag, value) in [
        ("--repeats", "1000000000000"),
        ("--repeats", "18446744073709551615"),
        ("--repeats", "100000000"),
        ("--repeats", "1001"),
        ("--warmup", "18446744073709551615"),
        ("--warmup", "101"),
    ] {
        let err = usage_error(&[&base[..], &[flag, value]].concat(), flag);
        assert!(err.contains("out of range"), "{err}");
    }
    let (code, out, err) = attnscope_text(
        &[
            &base[..],
            &["--kernels", "csr", "--repeats", "1000", "--warmup", "100"],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("csr"), "{out}");
}

/// `--d` is bounded everywhere (stats printed "useful FLOPs 0" and "NaN×" at d = 2⁴⁰).
#[test]
fn head_dimension_is_bounded_everywhere() {
    for cmd in ["stats", "bench"] {
        let err = usage_error(
            &[
                cmd,
                "--pattern",
                "dense",
                "--n",
                "65536",
                "--d",
                "1099511627776",
            ],
            "--d 1099511627776 is out of range",
        );
        assert!(err.contains("1 to 4096"), "{err}");
    }
    let (code, out, err) = attnscope_text(&[
        "stats",
        "--pattern",
        "dense",
        "--n",
        "65536",
        "--d",
        "4096",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["flops_useful"].as_u64(), Some(4 * 4096 * (1u64 << 32)));
}

/// The block kernel's tile list is estimated before any work: refused with a larger --block
/// named, exit 2, in `bench` and in `run`.
#[test]
fn an_oversized_block_layout_is_refused_naming_a_block_size() {
    let err = usage_error(
        &[
            "bench",
            "--pattern",
            "sparse",
            "--n",
            "1048576",
            "--stride",
            "64",
            "--window",
            "32",
            "--kernels",
            "block",
            "--block",
            "1",
        ],
        "use --block 128 or larger",
    );
    assert!(err.contains("--block 1 "), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.npy");
    npy_f32(&q, 1 << 20, 1, |i, _| (i % 7) as f32);
    let q = q.to_str().unwrap();
    let out = dir.path().join("o.npy");
    usage_error(
        &[
            "run",
            "--kernel",
            "block",
            "--pattern",
            "sparse",
            "--stride",
            "64",
            "--window",
            "32",
            "--block",
            "1",
            "--q",
            q,
            "--k",
            q,
            "--v",
            q,
            "-o",
            out.to_str().unwrap(),
        ],
        "use --block 128 or larger",
    );
    assert!(!out.exists());
    assert_eq!(names(dir.path()), vec!["q.npy".to_string()]);
}

/// A bench that would take hours is refused before it starts, saying how long it would take;
/// --budget-ms lets it run (skipping what is over the budget).
#[test]
fn an_hours_long_bench_is_refused_with_its_estimate() {
    let err = usage_error(
        &["bench", "--pattern", "dense", "--n", "1048576"],
        "would take about",
    );
    assert!(err.contains("--budget-ms"), "{err}");
    assert!(
        err.contains(" h ") || err.contains(" h,") || err.contains(" h)"),
        "{err}"
    );
    // With a budget every kernel over it is skipped, and the run is quick.
    let (code, out, err) = attnscope_text(&[
        "bench",
        "--pattern",
        "local",
        "--n",
        "65536",
        "--window",
        "2",
        "--kernels",
        "dense,csr",
        "--repeats",
        "1",
        "--budget-ms",
        "1000",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dense     skipped: estimated"), "{out}");
    // A tiny budget is printed with its digits, never as "0 ms".
    let (code, out, err) = attnscope_text(&[
        "bench",
        "--pattern",
        "local",
        "--n",
        "64",
        "--window",
        "2",
        "--kernels",
        "csr",
        "--repeats",
        "1",
        "--budget-ms",
        "0.000001",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("over the budget of 0.000001 ms"), "{out}");
    assert!(!out.contains(" 0 ms"), "{out}");
}

/// Non-finite input is refused by `run` naming the array and the first bad row; so is a
/// float64 value beyond the float32 range.
#[test]
fn run_refuses_non_finite_input_naming_array_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.npy");
    npy_f32(&ok, 16, 4, |i, j| (i + j) as f32 * 0.1);
    let nan = dir.path().join("nan.npy");
    npy_f32(&nan, 16, 4, |i, _| if i == 9 { f32::NAN } else { 0.5 });
    let out = dir.path().join("o.npy");
    let (ok_s, nan_s, out_s) = (
        ok.to_str().unwrap(),
        nan.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    for (q, k, v, what) in [
        (nan_s, ok_s, ok_s, "Q ("),
        (ok_s, nan_s, ok_s, "K ("),
        (ok_s, ok_s, nan_s, "V ("),
    ] {
        for kernel in ["dense", "csr", "block", "permuted", "masked"] {
            let err = usage_error(
                &[
                    "run", "--kernel", kernel, "--q", q, "--k", k, "--v", v, "-o", out_s,
                ],
                what,
            );
            assert!(err.contains("row 9"), "{err}");
            assert!(err.contains("nan.npy"), "{err}");
        }
    }
    assert!(!out.exists());
    let (code, _, err) = attnscope_text(&[
        "run", "--kernel", "csr", "--q", ok_s, "--k", ok_s, "--v", ok_s, "-o", out_s,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.exists());
}

/// `gui` checks its flags the same way with or without --n, before opening any window.
#[test]
fn gui_flags_are_checked_before_a_window_opens() {
    for (args, needle) in [
        (vec!["gui", "--stride", "0"], "--stride"),
        (vec!["gui", "--block", "0"], "--block"),
        (
            vec![
                "gui",
                "--pattern",
                "fixed",
                "--stride",
                "8",
                "--summary",
                "9",
            ],
            "--summary",
        ),
        (
            vec!["gui", "--pattern", "atrous", "--stride", "0"],
            "--stride",
        ),
        (vec!["gui", "--n", "64", "--stride", "0"], "--stride"),
    ] {
        // No display: were the flags not checked first, opening the window would fail (exit 1).
        let out = bin()
            .args(&args)
            .env("DISPLAY", "")
            .env("WAYLAND_DISPLAY", "")
            .output()
            .unwrap();
        assert_error_line(&out, 2, needle, &args);
    }
}

/// Smaller messages: `run -o` must be a .npy; PNG-only flags do not fail a .npy export.
#[test]
fn output_formats_are_checked_alike() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q.npy");
    npy_f32(&q, 8, 2, |i, j| (i * j) as f32);
    let q = q.to_str().unwrap();
    let txt = dir.path().join("out.txt");
    usage_error(
        &[
            "run",
            "--kernel",
            "csr",
            "--q",
            q,
            "--k",
            q,
            "--v",
            q,
            "-o",
            txt.to_str().unwrap(),
        ],
        "must end in .npy",
    );
    assert!(!txt.exists());
    let npy = dir.path().join("x.npy");
    let (code, _, err) = attnscope_text(&[
        "export",
        "--pattern",
        "local",
        "--n",
        "8",
        "--window",
        "1",
        "-o",
        npy.to_str().unwrap(),
        "--scale",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(&npy).unwrap().len(), 128 + 64);
    // For a PNG --scale 0 is still out of range.
    let png = dir.path().join("x.png");
    usage_error(
        &[
            "export",
            "--pattern",
            "local",
            "--n",
            "8",
            "--window",
            "1",
            "-o",
            png.to_str().unwrap(),
            "--scale",
            "0",
        ],
        "--scale 0",
    );
}

/// A memory limit turns a too-large allocation into one `error:` line, exit 1 (it aborted
/// with a backtrace).
#[cfg(target_os = "linux")]
#[test]
fn a_memory_limit_is_one_error_line() {
    let cmd = "ulimit -v 4000000; exec \"$0\" bench --pattern local --n 16777216 --window 1 \
               --kernels csr";
    let out = std::process::Command::new("sh")
        .args(["-c", cmd, env!("CARGO_BIN_EXE_attnscope")])
        .output()
        .unwrap();
    let err = assert_error_line(&out, 1, "could not reserve", "ulimit -v");
    assert!(err.contains("GB of memory"), "{err}");
}
