//! The `attnscope` binary: the CLI, or the desktop app when no subcommand is given.

use std::process::ExitCode;

fn main() -> ExitCode {
    match attnscope::cli::run(std::env::args_os()) {
        attnscope::cli::Outcome::Exit(code) => code,
        attnscope::cli::Outcome::Gui(args) => match attnscope::app::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => attnscope::cli::finish(Err(attnscope::cli::CliError::Runtime(e))),
        },
    }
}
