//! Writing masks to disk: PNG (one cell = S×S pixels) and `.npy` (bool, shape (n, n)).
//!
//! Both stream one query row at a time from [`Pattern::row_keys`], so memory stays O(n·S)
//! whatever the size, and both write to a temporary file in the target directory that is
//! renamed into place only when complete: a failure never leaves a partial file.

pub mod flex;

use crate::pattern::Pattern;
use crate::render::{Colormap, GRID_RGB};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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
    #[error("cannot tell the format of {path:?}: the output file must end in .png, .npy or .py (FlexAttention mask_mod)")]
    UnknownFormat {
        /// The path given.
        path: String,
    },
    /// The output path is a directory (a usage error).
    #[error("{path:?} is a directory; give a file name for the output")]
    IsDirectory {
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
        Some("py") => write_flex(p, path),
        _ => Err(ExportError::UnknownFormat {
            path: path.display().to_string(),
        }),
    }
}

/// Writes a Python module defining the FlexAttention `mask_mod` of `p` ([`flex`]).
pub fn write_flex(p: &Pattern, path: &Path) -> Result<(), ExportError> {
    let text = flex::python_module(p);
    atomic_write(path, |w| w.write_all(text.as_bytes()))
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
    write_rgb_png(path, side, side, |push| {
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
                push(if horizontal { &grid_line } else { &line })?;
            }
        }
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

/// The project's one PNG encoder: an 8-bit RGB image of `width × height` pixels written
/// atomically to `path`; `rows` pushes the `height` rows top to bottom (`3 · width` bytes each)
/// through the function it is given, so no full-size buffer is ever needed.
pub fn write_rgb_png(
    path: &Path,
    width: usize,
    height: usize,
    rows: impl FnOnce(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()>,
) -> Result<(), ExportError> {
    atomic_write(path, |w| {
        let mut enc = png::Encoder::new(w, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(png_io)?;
        let mut stream = writer.stream_writer().map_err(png_io)?;
        rows(&mut |row: &[u8]| stream.write_all(row))?;
        stream.finish().map_err(png_io)?;
        Ok(())
    })
}

/// A PNG encoder error as an I/O error (the underlying one when there is one, so "No space
/// left on device" stays that).
pub(crate) fn png_io(e: png::EncodingError) -> std::io::Error {
    match e {
        png::EncodingError::IoError(e) => e,
        other => std::io::Error::other(other),
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes through a temporary file next to `path`, renamed over it only on success
/// (see [`AtomicFile`]).
pub fn atomic_write(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<(), ExportError> {
    AtomicFile::create(path)?.commit(body)
}

#[cfg(not(target_arch = "wasm32"))]
/// Temporary files being written right now, removed by [`remove_pending`] when a signal ends
/// the process. The lock is held while a file is created, renamed into place or removed, so a
/// signal never races with a rename.
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

#[cfg(not(target_arch = "wasm32"))]
fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(not(target_arch = "wasm32"))]
/// Removes every temporary file still being written and returns the lock, held, so that no
/// new one is created or renamed until the process ends (the CLI calls this when SIGINT,
/// SIGTERM or SIGHUP arrives, then ends with that signal).
pub fn remove_pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    let mut list = pending();
    for tmp in list.drain(..) {
        let _ = std::fs::remove_file(tmp);
    }
    list
}

#[cfg(not(target_arch = "wasm32"))]
/// An output file being written: a hidden temporary file (`.attnscope-*.part`) in the folder of
/// the final file, renamed over it by [`AtomicFile::commit`]. Created before the work starts, it
/// checks that the output can be written at all. Dropped without a commit (an error, a panic) it
/// is removed; a signal that ends the CLI removes it too ([`remove_pending`]).
///
/// An existing file keeps its permission bits; a new one gets the usual `0666` less the umask.
/// When the path is a symbolic link, the link stays and its target is replaced (atomically, in
/// the target's folder). Errors name the path the user gave, never the temporary file.
pub struct AtomicFile {
    /// The temporary file (None once committed).
    tmp: Option<tempfile::NamedTempFile>,
    /// The path as given, for messages.
    shown: String,
    /// Where the file ends up: the path, or the file a symbolic link points to.
    target: PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl AtomicFile {
    /// Creates the temporary file for `path` (checks that its folder exists and is writable).
    pub fn create(path: &Path) -> Result<Self, ExportError> {
        let shown = path.display().to_string();
        let io = |source| ExportError::Io {
            path: shown.clone(),
            source,
        };
        let target = resolve_links(path).map_err(io)?;
        let existing = std::fs::metadata(&target).ok();
        if existing.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(ExportError::IsDirectory { path: shown });
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(io(std::io::Error::from(std::io::ErrorKind::NotADirectory))),
            Err(e) => return Err(io(e)),
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix(".attnscope-").suffix(".part");
        #[cfg(unix)]
        {
            // tempfile creates 0600 files; a new output is created like any other file (0666
            // less the umask), an existing one keeps its mode (set below, umask aside).
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut list = pending();
        let tmp = builder
            .tempfile_in(dir)
            .map_err(|e| io(without_temp_path(e)))?;
        list.push(tmp.path().to_path_buf());
        drop(list);
        let keep_mode = existing.map(|m| tmp.as_file().set_permissions(m.permissions()));
        let file = Self {
            tmp: Some(tmp),
            shown: shown.clone(),
            target,
        };
        // On an error `file` is dropped here, which removes the temporary file.
        keep_mode
            .transpose()
            .map_err(|e| io(without_temp_path(e)))?;
        Ok(file)
    }

    /// Writes the whole file with `body`, flushes it to disk and renames it into place.
    pub fn commit(
        mut self,
        body: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
    ) -> Result<(), ExportError> {
        let io = |source| ExportError::Io {
            path: self.shown.clone(),
            source: without_temp_path(source),
        };
        let Some(mut tmp) = self.tmp.take() else {
            return Ok(());
        };
        let written = (|| {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            body(&mut w)?;
            w.flush()?;
            drop(w);
            tmp.as_file().sync_all()
        })();
        let mut list = pending();
        let tmp_path = tmp.path().to_path_buf();
        list.retain(|p| *p != tmp_path);
        // Removing the temporary file (an error) or renaming it happens under the lock.
        written.map_err(io)?;
        tmp.persist(&self.target).map_err(|e| io(e.error))?;
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let mut list = pending();
            list.retain(|p| p != tmp.path());
            drop(tmp);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// `path` with its symbolic links followed to the file they name (which need not exist yet);
/// at most 40 links, like the kernel.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut at = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(at),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

#[cfg(not(target_arch = "wasm32"))]
/// An error of the `tempfile` crate without the temporary file's path that it appends
/// (`… at path "/dir/.attnscope-KTMgYz.part"`, a name the user never gave).
fn without_temp_path(e: std::io::Error) -> std::io::Error {
    if e.get_ref().is_none() {
        return e;
    }
    let text = e.to_string();
    match text.rfind(" at path ") {
        Some(at) => std::io::Error::new(e.kind(), &text[..at]),
        None => e,
    }
}

/// Files written in a browser, `(path, bytes)`, until the app offers them as downloads.
#[cfg(target_arch = "wasm32")]
static WRITTEN: std::sync::Mutex<Vec<(PathBuf, Vec<u8>)>> = std::sync::Mutex::new(Vec::new());

/// In a browser (no file system): writes into memory; [`take_written`] hands the file over.
#[cfg(target_arch = "wasm32")]
pub fn atomic_write(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&mut Vec<u8>>) -> std::io::Result<()>,
) -> Result<(), ExportError> {
    let io = |source| ExportError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut bytes = Vec::new();
    {
        let mut w = BufWriter::new(&mut bytes);
        body(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    WRITTEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((path.to_path_buf(), bytes));
    Ok(())
}

/// The files [`atomic_write`] wrote in a browser since the last call, oldest first.
#[cfg(target_arch = "wasm32")]
pub fn take_written() -> Vec<(PathBuf, Vec<u8>)> {
    std::mem::take(&mut *WRITTEN.lock().unwrap_or_else(|e| e.into_inner()))
}
