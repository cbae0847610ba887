//! `attnscope run`: load Q, K, V from `.npy`, run one kernel, write O as float32 `.npy`.

use super::args::OptionalPatternArgs;
use super::CliError;
use crate::export::{npy_header, AtomicFile};
use crate::inputs::load_qkv;
use crate::kernel::{run_kernel, KernelKind};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `attnscope run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pattern (default dense; n is taken from Q, `--n` if given must agree).
    #[command(flatten)]
    pub pattern: OptionalPatternArgs,
    /// Kernel: dense, masked, csr, block, permuted.
    #[arg(long, value_name = "NAME", value_parser = parse_kernel)]
    pub kernel: KernelKind,
    /// Queries, float32 or float64 `.npy` of shape (n, d).
    #[arg(long, value_name = "Q.npy")]
    pub q: PathBuf,
    /// Keys, same shape as Q.
    #[arg(long, value_name = "K.npy")]
    pub k: PathBuf,
    /// Values, same shape as Q.
    #[arg(long, value_name = "V.npy")]
    pub v: PathBuf,
    /// Output file: float32 `.npy` of shape (n, d).
    #[arg(short = 'o', long = "output", value_name = "OUT.npy")]
    pub output: PathBuf,
    /// Softmax scale (default 1/sqrt(d)).
    #[arg(long, value_name = "X", value_parser = parse_scale)]
    pub scale: Option<f32>,
}

/// Parses a kernel name.
pub(crate) fn parse_kernel(s: &str) -> Result<KernelKind, String> {
    KernelKind::from_name(&s.trim().to_ascii_lowercase()).ok_or_else(|| {
        let names: Vec<_> = KernelKind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown kernel {s:?}; expected one of {}", names.join(", "))
    })
}

/// Parses a finite softmax scale.
fn parse_scale(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("expected a finite number, got {s:?}")),
    }
}

pub fn run(a: RunArgs) -> Result<(), CliError> {
    let is_npy = a
        .output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if !is_npy {
        return Err(CliError::Usage(format!(
            "cannot write {:?}: the output of run is a float32 .npy array, the file must end in .npy",
            a.output.display().to_string()
        )));
    }
    // Opened first, so an output that cannot be written fails before the work.
    let output = AtomicFile::create(&a.output)?;
    let qkv = load_qkv(&a.q, &a.k, &a.v).map_err(|e| {
        if e.is_usage() {
            CliError::Usage(e.to_string())
        } else {
            CliError::Runtime(e.to_string())
        }
    })?;
    let (n, d) = qkv.q.dim();
    let (p, block) = a
        .pattern
        .build_at(n, &format!("Q, which has n = {n} rows"))?;
    let out = run_kernel(a.kernel, &p, &qkv, a.scale, block)?;
    output.commit(|w| {
        w.write_all(&npy_header("<f4", &[n, d]))?;
        for x in out.iter() {
            w.write_all(&x.to_le_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}
