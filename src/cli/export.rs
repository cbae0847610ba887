//! `attnscope export`: a mask as PNG or .npy.

use super::{args::PatternArgs, parse_count, CliError};
use crate::export::{write_flex, write_mask, write_npy, write_png, PngOptions};
use crate::render::Colormap;
use std::path::PathBuf;

/// Arguments of `attnscope export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub pattern: PatternArgs,
    /// Output file: .png, .npy or .py (FlexAttention mask_mod).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// PNG pixels per cell side (1 to 1024; n × S at most 65536); PNG only.
    #[arg(long, value_name = "S", default_value = "1", value_parser = parse_count)]
    pub scale: usize,
    /// PNG colormap: gray, viridis, magma, inferno, plasma, cividis, turbo, blues; PNG only.
    #[arg(long, value_name = "NAME", default_value = "gray")]
    pub colormap: String,
    /// Draw block grid lines every B cells (PNG only).
    #[arg(long, value_name = "B", value_parser = parse_count)]
    pub grid: Option<usize>,
    /// Output format: png, npy or flex (a Python FlexAttention mask_mod); default: by the
    /// file's extension (.png, .npy, .py).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// The output format: `--format`, else the file's extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Npy,
    Flex,
}

pub fn run(a: ExportArgs) -> Result<(), CliError> {
    let format = match a.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("png") => Some(Format::Png),
        Some("npy") => Some(Format::Npy),
        Some("flex") | Some("py") => Some(Format::Flex),
        Some(other) => {
            return Err(CliError::Usage(format!(
                "unknown --format {other:?}; expected png, npy or flex"
            )))
        }
        None => None,
    };
    let is_png = match format {
        Some(f) => f == Format::Png,
        None => a
            .output
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("png")),
    };
    // --scale, --colormap and --grid shape the PNG only; a .npy or .py ignores them.
    if !is_png {
        let p = a.pattern.build()?;
        match format {
            None => write_mask(&p, &a.output, PngOptions::default())?,
            Some(Format::Npy) => write_npy(&p, &a.output)?,
            Some(_) => write_flex(&p, &a.output)?,
        }
        return Ok(());
    }
    if !(1..=1024).contains(&a.scale) {
        return Err(CliError::Usage(format!(
            "--scale {} is out of range: expected an integer from 1 to 1024",
            a.scale
        )));
    }
    let colormap = Colormap::from_name(&a.colormap).ok_or_else(|| {
        let names: Vec<_> = Colormap::ALL.iter().map(|c| c.name()).collect();
        CliError::Usage(format!(
            "unknown --colormap {:?}; expected one of {}",
            a.colormap,
            names.join(", ")
        ))
    })?;
    if a.grid == Some(0) {
        return Err(CliError::Usage(
            "--grid 0 is out of range: expected a block size ≥ 1".into(),
        ));
    }
    let p = a.pattern.build()?;
    let opts = PngOptions {
        scale: a.scale as u32,
        colormap,
        grid: a.grid,
    };
    match format {
        None => write_mask(&p, &a.output, opts)?,
        Some(_) => write_png(&p, &a.output, opts)?,
    }
    Ok(())
}
