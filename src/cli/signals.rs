//! Signals at the command line (README, "Errors"): SIGINT, SIGTERM and SIGHUP remove the
//! temporary file of an output being written, then end the process by that same signal (a
//! shell shows 128 + the signal's number); SIGXFSZ (a file-size limit, `ulimit -f`) is caught
//! and does nothing, so a write past the limit fails as an ordinary write error (exit 1).

/// Installs the handlers: one named thread waits for the signals and does the cleaning, so
/// nothing runs inside a signal handler but a flag and a wake-up.
#[cfg(unix)]
pub fn install() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
    use std::sync::{atomic::AtomicBool, Arc};
    // A registered handler replaces the default action (end the process) of SIGXFSZ; the write
    // that hit the limit then returns EFBIG.
    let _ = signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false)));
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("attnscope-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // Held until the process ends: no temporary file is created or renamed after.
                let _held = crate::export::remove_pending();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                signal_hook::low_level::exit(128 + sig);
            }
        });
}

/// Nothing to install where there are no POSIX signals.
#[cfg(not(unix))]
pub fn install() {}
