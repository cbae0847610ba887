//! The command line: raw arguments (clap) → one validated config → the engine.
//!
//! Every failure ends here as one `error:` line on stderr: exit 2 for bad usage or bad input,
//! exit 1 for a failure at run time (I/O).

mod args;
mod bench;
mod bench_args;
mod export;
mod model;
mod reach;
mod run;
mod signals;
mod stats;
mod sweep;

pub use args::{parse_count, PatternArgs};

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// attnscope: see and measure sparse attention (atrous, local, sparse and friends).
#[derive(Debug, Parser)]
#[command(name = "attnscope", version, about, long_about = None)]
pub struct Cli {
    /// What to do; without a subcommand the desktop app opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands of docs/contract.md section 4.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the desktop app with these settings.
    Gui(GuiArgs),
    /// Write a mask as PNG (one cell = S×S pixels) or .npy (bool, shape (n, n)).
    Export(export::ExportArgs),
    /// Print nnz, density, FLOPs and block statistics of a pattern.
    Stats(stats::StatsArgs),
    /// Print the fraction of pairs reachable through L stacked layers (receptive field).
    Reach(reach::ReachArgs),
    /// Run one attention kernel on Q, K, V `.npy` files and write O as float32 `.npy`.
    Run(run::RunArgs),
    /// Time the kernels on a pattern: median/min ms, GFLOP/s, speedup, error.
    Bench(bench::BenchArgs),
    /// A real model's attention under a pattern: info, tokens, qkv, mass, quality, next.
    Model(model::ModelArgs),
}

/// Arguments of `attnscope gui`.
#[derive(Debug, clap::Args, Default)]
pub struct GuiArgs {
    /// The pattern to open with (all optional).
    #[command(flatten)]
    pub pattern: args::OptionalPatternArgs,
}

impl GuiArgs {
    /// Puts the given pattern flags over the app's saved settings (what `attnscope gui
    /// --pattern …` opens with); the app itself knows nothing of the command line.
    pub fn apply(&self, s: &mut crate::app::Settings) {
        s.params = self.pattern.params_over(&s.params);
        if let Some(b) = self.pattern.rest.block {
            s.block = b;
        }
    }
}

/// A failure at the command-line edge, with its exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or bad input: exit 2.
    Usage(String),
    /// Failure at run time (I/O): exit 1.
    Runtime(String),
}

impl CliError {
    /// The process exit status of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }

    /// The message, without the `error:` prefix.
    pub fn message(&self) -> &str {
        match self {
            CliError::Usage(m) | CliError::Runtime(m) => m,
        }
    }
}

impl From<crate::pattern::PatternError> for CliError {
    fn from(e: crate::pattern::PatternError) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl From<crate::export::ExportError> for CliError {
    fn from(e: crate::export::ExportError) -> Self {
        if e.is_usage() {
            CliError::Usage(e.to_string())
        } else {
            CliError::Runtime(e.to_string())
        }
    }
}

/// Checks a `--d` head dimension: 1 to [`crate::bench::MAX_D`] (FLOP counts then fit in 64
/// bits for every n).
pub(crate) fn check_d(d: usize) -> Result<(), CliError> {
    if d == 0 || d > crate::bench::MAX_D {
        return Err(CliError::Usage(format!(
            "--d {d} is out of range: expected a head dimension from 1 to {}",
            crate::bench::MAX_D
        )));
    }
    Ok(())
}

impl From<crate::kernel::KernelError> for CliError {
    fn from(e: crate::kernel::KernelError) -> Self {
        use crate::inputs::InputError;
        use crate::kernel::KernelError;
        match e {
            KernelError::OutOfMemory(_) | KernelError::Input(InputError::OutOfMemory(_)) => {
                CliError::Runtime(e.to_string())
            }
            other => CliError::Usage(other.to_string()),
        }
    }
}

impl From<crate::bench::BenchError> for CliError {
    fn from(e: crate::bench::BenchError) -> Self {
        use crate::bench::BenchError;
        match e {
            BenchError::Threads { .. } => CliError::Runtime(e.to_string()),
            BenchError::Kernel(k) => k.into(),
            other => CliError::Usage(other.to_string()),
        }
    }
}

/// What `main` should do after parsing.
pub enum Outcome {
    /// Open the desktop app with these optional settings.
    Gui(GuiArgs),
    /// Done; exit with this status.
    Exit(ExitCode),
}

/// Parses `args` and runs the command; GUI launches are handed back to `main`.
pub fn run<I, T>(args: I) -> Outcome
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return Outcome::Exit(clap_exit(e)),
    };
    if matches!(cli.command, Some(ref c) if !matches!(c, Command::Gui(_))) {
        signals::install();
    }
    let result = match cli.command {
        None => return Outcome::Gui(GuiArgs::default()),
        Some(Command::Gui(g)) => match g.pattern.validate() {
            Ok(_) => return Outcome::Gui(g),
            Err(e) => Err(e),
        },
        Some(Command::Export(a)) => export::run(a),
        Some(Command::Stats(a)) => stats::run(a),
        Some(Command::Reach(a)) => reach::run(a),
        Some(Command::Run(a)) => run::run(a),
        Some(Command::Bench(a)) => bench::run(a),
        Some(Command::Model(a)) => model::run(a),
    };
    Outcome::Exit(finish(result))
}

/// Prints `value` as one pretty JSON object (`--json`), or else the human table, on stdout
/// (see [`write_output`] for what happens when stdout is closed).
pub fn print_report<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let text = if json {
        let mut text =
            serde_json::to_string_pretty(value).map_err(|e| CliError::Runtime(e.to_string()))?;
        text.push('\n');
        text
    } else {
        table()
    };
    write_output(&mut std::io::stdout().lock(), &text)
}

/// Writes `text` to `out` (the locked stdout) and flushes it. A reader that went away early
/// (`attnscope … | head -2`: the pipe is closed, `BrokenPipe`) ends the output quietly as a
/// success, like `git log | head`; any other write error (a full disk, a closed descriptor) is a
/// run-time error, exit 1.
pub fn write_output(out: &mut impl std::io::Write, text: &str) -> Result<(), CliError> {
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Runtime(format!(
            "could not write the output to stdout: {e}"
        ))),
    }
}

/// Writes one line to stderr. A stderr that cannot be written (`2>/dev/full`, a closed
/// descriptor) loses the line but never stops the command: the exit status still tells.
pub fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints an error as one `error:` line and turns the result into an exit status.
pub fn finish(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.message().replace('\n', " ");
            note(&format!("error: {msg}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Help and version go to stdout with exit 0; any other clap error becomes one line, exit 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // Clap's message may continue on indented lines (e.g. the missing flags); keep
            // everything before the usage section, folded onto one line.
            let rendered = e.render().to_string();
            let text: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let joined = text.join(" ");
            let first = joined.strip_prefix("error: ").unwrap_or(&joined);
            let first = if first.is_empty() {
                "invalid arguments"
            } else {
                first
            };
            note(&format!("error: {first}"));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};

    /// A writer whose every write fails with `kind` (after `accept` bytes went through).
    struct Failing {
        kind: io::ErrorKind,
        accept: usize,
        written: Vec<u8>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.accept - self.written.len();
            if room == 0 {
                return Err(io::Error::from(self.kind));
            }
            let n = room.min(buf.len());
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_a_quiet_success_other_write_errors_exit_1() {
        let text = "line 1\nline 2\nline 3\n";
        let mut pipe = Failing {
            kind: io::ErrorKind::BrokenPipe,
            accept: 7,
            written: Vec::new(),
        };
        assert!(write_output(&mut pipe, text).is_ok());
        assert_eq!(pipe.written, b"line 1\n");
        let mut full = Failing {
            kind: io::ErrorKind::StorageFull,
            accept: 0,
            written: Vec::new(),
        };
        let e = write_output(&mut full, text).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(
            e.message()
                .starts_with("could not write the output to stdout"),
            "{}",
            e.message()
        );
        let mut ok = Vec::new();
        assert!(write_output(&mut ok, text).is_ok());
        assert_eq!(ok, text.as_bytes());
    }
}
