//! The `attnscope` binary: the CLI, or the desktop app when no subcommand is given; built for
//! `wasm32-unknown-unknown`, the same app in a browser (`scripts/build-web.sh`).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match attnscope::cli::run(std::env::args_os()) {
        attnscope::cli::Outcome::Exit(code) => code,
        attnscope::cli::Outcome::Gui(args) => match attnscope::app::run(move |s| args.apply(s)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => attnscope::cli::finish(Err(attnscope::cli::CliError::Runtime(e))),
        },
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    attnscope::app::run();
}
