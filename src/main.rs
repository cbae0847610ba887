//! The `attnscope` binary: the CLI, or the desktop app when no subcommand is given.

use std::process::ExitCode;

fn main() -> ExitCode {
    match attnscope::cli::run(std::env::args_os()) {
        attnscope::cli::Outcome::Exit(code) => code,
        attnscope::cli::Outcome::Gui(_args) => {
            // The desktop app lands with the GUI issue; until then, show the help.
            attnscope::cli::finish(Err(attnscope::cli::CliError::Usage(
                "the desktop app is not built yet; run `attnscope --help` for the commands".into(),
            )))
        }
    }
}
