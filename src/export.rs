//! Writing masks to disk: PNG (one cell = S×S pixels) and `.npy` (bool, shape (n, n)).
//!
//! Both stream one query row at a time from [`Pattern::row_keys`], so memory stays O(n·S)
//! whatever the size, and both write to a temporary file in the target directory that is
//! renamed into place only when complete: a failure never leaves a partial file.

use crate::pattern::Pattern;
use crate::render::{Colormap, GRID_RGB};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Largest side of an exported PNG, in pixels.
pub const MAX_PNG_SIDE: u64 = 65_536;

/// Largest dense `.npy` mask, in bytes (1 GiB).
pub const MAX_NPY_BYTES: u64 = 1 << 30;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output would be too large (a usage error).
    #[error("{0}")]
    TooLarge(String),
    /// The file extension is not one we write (a usage error).
    #[error("cannot tell the format of {path:?}: the output file must end in .png or .npy")]
    UnknownFormat {
        /// The path given.
        path: String,
    },
    /// Writing failed (a run-time error).
    #[error("could not write {path:?}: {source}")]
    Io {
        /// The path being written.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    /// Whether the error is the user's input (exit 2) rather than a run-time failure (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, ExportError::Io { .. })
    }
}

/// PNG export options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PngOptions {
    /// Pixels per cell side (≥ 1).
    pub scale: u32,
    /// Colours of forbidden (0) and allowed (1) cells.
    pub colormap: Colormap,
    /// Draw block grid lines every `B` cells.
    pub grid: Option<usize>,
}

impl Default for PngOptions {
    fn default() -> Self {
        Self {
            scale: 1,
            colormap: Colormap::Gray,
            grid: None,
        }
    }
}

/// Writes `p` to `path`, by extension: `.png` with `opts`, or `.npy`.
pub fn write_mask(p: &Pattern, path: &Path, opts: PngOptions) -> Result<(), ExportError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => write_png(p, path, opts),
        Some("npy") => write_npy(p, path),
        _ => Err(ExportError::UnknownFormat {
            path: path.display().to_string(),
        }),
    }
}

/// Writes the mask as a PNG: row i = query i from the top, column j = key j from the left,
/// allowed cells in the colormap's 1 colour, others in its 0 colour.
pub fn write_png(p: &Pattern, path: &Path, opts: PngOptions) -> Result<(), ExportError> {
    let n = p.n() as u64;
    let s = opts.scale.max(1) as u64;
    let side = n * s;
    if side > MAX_PNG_SIDE {
        return Err(ExportError::TooLarge(format!(
            "a PNG of n = {n} at --scale {s} would be {side}×{side} pixels, more than the limit of \
             {MAX_PNG_SIDE}; use a smaller --scale or --n (or export .npy)"
        )));
    }
    let (side, s, n) = (side as usize, s as usize, n as usize);
    let off = opts.colormap.rgb(0.0);
    let on = opts.colormap.rgb(1.0);
    let grid = opts.grid.filter(|&b| b > 0);
    atomic_write(path, |w| {
        let mut enc = png::Encoder::new(w, side as u32, side as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(png_io)?;
        let mut stream = writer.stream_writer().map_err(png_io)?;
        let mut keys = Vec::new();
        let mut line = vec![0u8; side * 3];
        let mut grid_line = vec![0u8; side * 3];
        for px in grid_line.chunks_exact_mut(3) {
            px.copy_from_slice(&GRID_RGB);
        }
        for i in 0..n {
            for px in line.chunks_exact_mut(3) {
                px.copy_from_slice(&off);
            }
            p.row_keys(i, &mut keys);
            for &j in &keys {
                let j = j as usize;
                for px in line[j * s * 3..(j + 1) * s * 3].chunks_exact_mut(3) {
                    px.copy_from_slice(&on);
                }
            }
            if let Some(b) = grid {
                // Vertical lines: the first pixel column of every block after the first.
                for c in (b..n).step_by(b) {
                    line[c * s * 3..c * s * 3 + 3].copy_from_slice(&GRID_RGB);
                }
            }
            for r in 0..s {
                let horizontal = grid.is_some_and(|b| i > 0 && i % b == 0 && r == 0);
                stream.write_all(if horizontal { &grid_line } else { &line })?;
            }
        }
        stream.finish().map_err(png_io)?;
        Ok(())
    })
}

/// Writes the mask as a NumPy `.npy`: dtype bool, shape (n, n), C order, true = allowed.
pub fn write_npy(p: &Pattern, path: &Path) -> Result<(), ExportError> {
    let n = p.n();
    let bytes = n as u64 * n as u64;
    if bytes > MAX_NPY_BYTES {
        return Err(ExportError::TooLarge(format!(
            "a dense .npy of n = {n} would be {bytes} bytes (n²), more than the 1 GiB limit; \
             use --n 32768 or less"
        )));
    }
    atomic_write(path, |w| {
        w.write_all(&npy_header("|b1", &[n, n]))?;
        let mut keys = Vec::new();
        let mut line = vec![0u8; n];
        for i in 0..n {
            line.fill(0);
            p.row_keys(i, &mut keys);
            for &j in &keys {
                line[j as usize] = 1;
            }
            w.write_all(&line)?;
        }
        Ok(())
    })
}

/// An NPY 1.0 header for a C-order array of `descr` (e.g. `<f4`, `|b1`) and `shape`.
pub fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// A PNG encoder error as an I/O error (the underlying one when there is one, so "No space
/// left on device" stays that).
pub(crate) fn png_io(e: png::EncodingError) -> std::io::Error {
    match e {
        png::EncodingError::IoError(e) => e,
        other => std::io::Error::other(other),
    }
}

/// Writes through a temporary file next to `path`, renamed over it only on success.
pub fn atomic_write(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".attnscope-").suffix(".part");
    #[cfg(unix)]
    {
        // tempfile creates 0600 files; an exported mask should be readable like any other file.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        body(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
