//! Helpers shared by the tests that run the real `attnscope` binary (`mod common;` in each;
//! every test crate uses a part of them).
#![allow(dead_code)]

use std::fmt::Debug;
use std::process::{Command, Output};

/// A command for the `attnscope` binary Cargo built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attnscope"))
}

/// Runs `attnscope ARGS` to completion.
pub fn attnscope(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// Runs `attnscope ARGS`: (exit status, or −1 when killed by a signal; stdout; stderr).
pub fn attnscope_text(args: &[&str]) -> (i32, String, String) {
    let out = attnscope(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that `out` exited with `code`, printed nothing on stdout and exactly one stderr line
/// starting with `error: ` that mentions `needle`; returns stderr for further checks. `what`
/// names the case in failure messages.
pub fn assert_error_line(out: &Output, code: i32, needle: &str, what: impl Debug) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{what:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{what:?}: one line, got {err:?}");
    assert!(err.starts_with("error: "), "{what:?}: {err}");
    assert!(
        err.contains(needle),
        "{what:?}: {err:?} should mention {needle:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{what:?}: stdout should be empty, got {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Runs `attnscope ARGS` and asserts a usage error: exit 2, nothing on stdout, exactly one stderr
/// line starting with `error: ` that mentions `needle`. Returns that line.
pub fn usage_error(args: &[&str], needle: &str) -> String {
    assert_error_line(&attnscope(args), 2, needle, args)
}

/// The path of model `name` (a file or folder in `attnscope::model::model_dirs()`), or `None`
/// with a note on stderr when it is absent. Under `CI=true` an absent model fails the test:
/// CI fetches the models with `scripts/get-models.sh`, so a missing one is never a silent pass.
pub fn model_path(name: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = attnscope::model::find(name) {
        return Some(p);
    }
    let dirs = attnscope::model::model_dirs();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("model {name} not found in {dirs:?} under CI=true: run scripts/get-models.sh");
    }
    eprintln!("skipped: model {name} not found in {dirs:?} (run scripts/get-models.sh)");
    None
}
