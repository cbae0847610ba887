//! Sample inputs for the kernels: seeded Gaussian Q/K/V, a structured input whose attention is
//! local and periodic, and `.npy` loading (float32 or float64, shape `(n, d)`).
//!
//! ```
//! use attnscope::inputs::{generate, InputKind};
//! let qkv = generate(InputKind::Random { seed: 7 }, 128, 16);
//! assert_eq!(qkv.q.dim(), (128, 16));
//! assert_eq!(qkv, generate(InputKind::Random { seed: 7 }, 128, 16)); // same seed, same input
//! ```

use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::io::Read;
use std::path::Path;

/// Period, in tokens, of the stripes of the structured input.
pub const STRUCTURED_PERIOD: usize = 16;

/// Largest number of elements (`n · d`) one loaded array may hold (2³⁰ = 4 GiB of f32).
pub const MAX_ELEMENTS: u64 = 1 << 30;

/// Queries, keys and values of one head, each of shape `(n, d)`, f32, C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Qkv {
    /// Queries, `(n, d)`.
    pub q: Array2<f32>,
    /// Keys, `(n, d)`.
    pub k: Array2<f32>,
    /// Values, `(n, d)`.
    pub v: Array2<f32>,
}

impl Qkv {
    /// Sequence length n (rows of Q).
    pub fn n(&self) -> usize {
        self.q.nrows()
    }

    /// Head dimension d (columns of Q).
    pub fn d(&self) -> usize {
        self.q.ncols()
    }

    /// Checks that Q, K and V are non-empty, all `(n, d)`, in standard (C) layout and hold only
    /// finite values (the one rule for non-finite input: refused before any kernel runs, so
    /// every kernel gives the same answer, an error naming the array and the first bad row).
    pub fn validate(&self) -> Result<(), InputError> {
        self.validate_shapes()?;
        for (name, a) in [("Q", &self.q), ("K", &self.k), ("V", &self.v)] {
            check_finite(name, a)?;
        }
        Ok(())
    }

    /// The shape part of [`Qkv::validate`].
    fn validate_shapes(&self) -> Result<(), InputError> {
        let (n, d) = self.q.dim();
        if n == 0 || d == 0 {
            return Err(InputError::Empty {
                what: "Q".into(),
                shape: vec![n, d],
            });
        }
        for (name, a) in [("K", &self.k), ("V", &self.v)] {
            if a.dim() != (n, d) {
                return Err(InputError::Mismatch {
                    what: name,
                    expected: (n, d),
                    got: a.dim(),
                });
            }
        }
        Ok(())
    }
}

/// The first value of `a` (row-major) that is NaN or infinite, as an error naming `what`.
fn check_finite(what: &str, a: &Array2<f32>) -> Result<(), InputError> {
    use rayon::prelude::*;
    let d = a.ncols().max(1);
    let Some(slice) = a.as_slice() else {
        // Not C order: walk it element by element.
        return match a.indexed_iter().find(|(_, x)| !x.is_finite()) {
            Some(((row, col), &value)) => Err(InputError::NonFinite {
                what: what.to_string(),
                row,
                col,
                value: value as f64,
            }),
            None => Ok(()),
        };
    };
    let bad = slice
        .par_chunks(d)
        .position_first(|row| row.iter().any(|x| !x.is_finite()));
    match bad {
        Some(row) => {
            let col = slice[row * d..(row + 1) * d]
                .iter()
                .position(|x| !x.is_finite())
                .unwrap_or(0);
            Err(InputError::NonFinite {
                what: what.to_string(),
                row,
                col,
                value: slice[row * d + col] as f64,
            })
        }
        None => Ok(()),
    }
}

/// Which sample input to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InputKind {
    /// Q, K, V with independent standard normal entries.
    Random {
        /// RNG seed (ChaCha8).
        seed: u64,
    },
    /// Q and K carry sinusoidal position features (period [`STRUCTURED_PERIOD`] plus a slow
    /// component), so attention is strongest nearby and at multiples of the period; V random.
    Structured {
        /// RNG seed of the small noise and of V.
        seed: u64,
    },
}

impl InputKind {
    /// Short name: `random` or `structured`.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Random { .. } => "random",
            InputKind::Structured { .. } => "structured",
        }
    }
}

/// Why inputs could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Reading the file failed.
    #[error("could not read {path:?}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path is a directory, not a file.
    #[error("{path:?} is a directory; expected a .npy file")]
    IsDirectory {
        /// The path given.
        path: String,
    },
    /// The file is not a valid `.npy` file.
    #[error("{path:?} is not a valid .npy file: {reason}")]
    BadFormat {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The element type is not float32 or float64.
    #[error("{path:?} has dtype {descr:?}; expected float32 ('<f4') or float64 ('<f8')")]
    Dtype {
        /// The file.
        path: String,
        /// The numpy type descriptor found.
        descr: String,
    },
    /// The array is not two-dimensional.
    #[error("{path:?} has shape {shape:?} (rank {}); expected a 2-D array of shape (n, d)", shape.len())]
    Rank {
        /// The file.
        path: String,
        /// The shape found.
        shape: Vec<usize>,
    },
    /// The file holds fewer bytes than its header announces.
    #[error(
        "{path:?} is truncated: its header announces {expected} data bytes but only {got} follow"
    )]
    Truncated {
        /// The file.
        path: String,
        /// Bytes announced.
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// An array has no elements.
    #[error("{what} has shape {shape:?}; expected n ≥ 1 and d ≥ 1")]
    Empty {
        /// The array (a path or Q/K/V).
        what: String,
        /// The shape found.
        shape: Vec<usize>,
    },
    /// K or V does not have the shape of Q.
    #[error(
        "{what} has shape {got:?} but Q has shape {expected:?}; Q, K and V must all be (n, d)"
    )]
    Mismatch {
        /// K or V.
        what: &'static str,
        /// Shape of Q.
        expected: (usize, usize),
        /// Shape found.
        got: (usize, usize),
    },
    /// A value is NaN, infinite, or (read from float64) outside the float32 range.
    #[error(
        "{what} row {row} (column {col}) holds {value}; every value must be a finite number \
         within the float32 range (±3.4e38), fix or drop that row"
    )]
    NonFinite {
        /// The array: Q, K or V, with its file when loaded from one.
        what: String,
        /// First bad row (from 0).
        row: usize,
        /// Its first bad column (from 0).
        col: usize,
        /// The value found.
        value: f64,
    },
    /// Memory for the array could not be reserved.
    #[error(transparent)]
    OutOfMemory(#[from] crate::memory::OutOfMemory),
    /// The array is too large to load.
    #[error("{path:?} has {elements} elements; at most {MAX_ELEMENTS} are accepted")]
    TooLarge {
        /// The file.
        path: String,
        /// Elements announced.
        elements: u64,
    },
}

impl InputError {
    /// Whether this is bad input (exit 2) rather than a failure to read (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, InputError::Io { .. } | InputError::OutOfMemory(_))
    }
}

/// Generates a seeded sample input of `n` tokens and head dimension `d`.
pub fn generate(kind: InputKind, n: usize, d: usize) -> Qkv {
    match kind {
        InputKind::Random { seed } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut gauss = |_| -> f32 { StandardNormal.sample(&mut rng) };
            let q = Array2::from_shape_fn((n, d), &mut gauss);
            let k = Array2::from_shape_fn((n, d), &mut gauss);
            let v = Array2::from_shape_fn((n, d), &mut gauss);
            Qkv { q, k, v }
        }
        InputKind::Structured { seed } => structured(seed, n, d),
    }
}

/// [`generate`], after checking that the three `(n, d)` arrays can be reserved.
pub fn try_generate(
    kind: InputKind,
    n: usize,
    d: usize,
) -> Result<Qkv, crate::memory::OutOfMemory> {
    let bytes = 3 * (n as u64).saturating_mul(d as u64).saturating_mul(4);
    crate::memory::check_available(bytes, format!("the Q, K and V inputs (n = {n}, d = {d})"))?;
    Ok(generate(kind, n, d))
}

/// Sinusoidal position features: feature pair `f` of token `i` is `(cos θ, sin θ)` with
/// `θ = ω_f · i`, so `q_i · k_j = Σ_f a_f² cos(ω_f (i − j))` depends only on the distance.
/// Frequencies `ω_f = 2π f / P` (harmonics of the period P) add up to a Dirichlet kernel that
/// peaks at distances that are multiples of P; one slow frequency (`π / n`) makes near peaks
/// stronger than far ones. The amplitude makes the scaled logits span about ±6, so softmax is
/// sharp. A little Gaussian noise (σ = 0.05) keeps rows distinct; V is standard normal.
fn structured(seed: u64, n: usize, d: usize) -> Qkv {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pairs = d.div_ceil(2).max(1);
    let period = STRUCTURED_PERIOD as f64;
    let omega = |f: usize| -> f64 {
        if f == 0 {
            std::f64::consts::PI / n.max(1) as f64
        } else {
            2.0 * std::f64::consts::PI * f as f64 / period
        }
    };
    // Σ_f a² ≈ 6 · sqrt(d) so that scale · q·k peaks near 6 at distance 0.
    let amp = (6.0 * (d as f64).sqrt() / pairs as f64).sqrt();
    let feature = |i: usize, c: usize| -> f64 {
        let f = c / 2;
        let theta = omega(f) * i as f64;
        if c.is_multiple_of(2) {
            amp * theta.cos()
        } else {
            amp * theta.sin()
        }
    };
    let mut noise = |_| -> f64 {
        let z: f64 = StandardNormal.sample(&mut rng);
        0.05 * z
    };
    let mut q = Array2::<f32>::zeros((n, d));
    let mut k = Array2::<f32>::zeros((n, d));
    for i in 0..n {
        for c in 0..d {
            let base = feature(i, c);
            q[[i, c]] = (base + noise(())) as f32;
            k[[i, c]] = (base + noise(())) as f32;
        }
    }
    let v = Array2::from_shape_fn((n, d), |_| -> f32 { StandardNormal.sample(&mut rng) });
    Qkv { q, k, v }
}

/// Loads Q, K and V from three `.npy` files (float32 or float64, shape `(n, d)`, n taken
/// from Q) and checks that they agree.
pub fn load_qkv(q: &Path, k: &Path, v: &Path) -> Result<Qkv, InputError> {
    let named = |name: &str, path: &Path| {
        let what = format!("{name} ({:?})", path.display().to_string());
        load_npy(path)
            .map_err(|e| match e {
                InputError::NonFinite {
                    row, col, value, ..
                } => InputError::NonFinite {
                    what: what.clone(),
                    row,
                    col,
                    value,
                },
                other => other,
            })
            .and_then(|a| check_finite(&what, &a).map(|()| a))
    };
    let qkv = Qkv {
        q: named("Q", q)?,
        k: named("K", k)?,
        v: named("V", v)?,
    };
    qkv.validate_shapes()?;
    Ok(qkv)
}

/// Loads one float32/float64 `(n, d)` array from an `.npy` file (NPY format 1.0–3.0, either
/// byte order, C or Fortran order), converted to f32.
pub fn load_npy(path: &Path) -> Result<Array2<f32>, InputError> {
    let shown = path.display().to_string();
    let io = |source| InputError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(InputError::IsDirectory { path: shown });
    }
    read_npy(
        std::io::BufReader::with_capacity(1 << 20, file),
        meta.len(),
        &shown,
    )
}

/// Reads one float32/float64 `(n, d)` array of `len` bytes in `.npy` format from `r` (the
/// bytes of a file the browser handed over, or an open file); `shown` names it in errors.
pub fn read_npy(mut r: impl Read, len: u64, shown: &str) -> Result<Array2<f32>, InputError> {
    let shown = shown.to_string();
    let io = |source| InputError::Io {
        path: shown.clone(),
        source,
    };
    let header = read_header(&mut r, &shown, len)?;
    let shape = header.shape.clone();
    if shape.len() != 2 {
        return Err(InputError::Rank { path: shown, shape });
    }
    let (rows, cols) = (shape[0], shape[1]);
    if rows == 0 || cols == 0 {
        return Err(InputError::Empty {
            what: format!("{shown:?}"),
            shape,
        });
    }
    let elements = (rows as u64).saturating_mul(cols as u64);
    if elements > MAX_ELEMENTS {
        return Err(InputError::TooLarge {
            path: shown,
            elements,
        });
    }
    let expected = elements * header.item_size as u64;
    let available = len.saturating_sub(header.data_offset);
    if available < expected {
        return Err(InputError::Truncated {
            path: shown,
            expected,
            got: available,
        });
    }
    if available > expected {
        return Err(InputError::BadFormat {
            path: shown,
            reason: format!(
                "{} bytes follow the {expected} data bytes its header announces",
                available - expected
            ),
        });
    }
    let mut bytes =
        crate::memory::try_filled(expected as usize, 0u8, format!("reading {shown:?}"))?;
    r.read_exact(&mut bytes).map_err(io)?;
    let values: Vec<f32> = match (header.item_size, header.big_endian) {
        (4, false) => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        (4, true) => bytes
            .chunks_exact(4)
            .map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        (_, big) => {
            let read = |b: &[u8]| {
                let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                if big {
                    f64::from_be_bytes(a)
                } else {
                    f64::from_le_bytes(a)
                }
            };
            // A finite float64 beyond the float32 range would silently become ±inf.
            if let Some((at, value)) = bytes
                .chunks_exact(8)
                .map(read)
                .enumerate()
                .find(|(_, x)| x.is_finite() && x.abs() > f32::MAX as f64)
            {
                // The element's (row, column) in the file's order.
                let (row, col) = if header.fortran_order {
                    (at % rows, at / rows)
                } else {
                    (at / cols, at % cols)
                };
                return Err(InputError::NonFinite {
                    what: format!("{shown:?}"),
                    row,
                    col,
                    value,
                });
            }
            bytes.chunks_exact(8).map(|b| read(b) as f32).collect()
        }
    };
    let bad = |e: ndarray::ShapeError| InputError::BadFormat {
        path: shown.clone(),
        reason: e.to_string(),
    };
    if header.fortran_order {
        let t = Array2::from_shape_vec((cols, rows), values).map_err(bad)?;
        Ok(t.t().as_standard_layout().into_owned())
    } else {
        Array2::from_shape_vec((rows, cols), values).map_err(bad)
    }
}

/// The parsed part of an `.npy` header.
struct NpyHeader {
    item_size: usize,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
    data_offset: u64,
}

/// Reads the magic, version and header dictionary.
fn read_header(r: &mut impl Read, path: &str, file_len: u64) -> Result<NpyHeader, InputError> {
    let bad = |reason: String| InputError::BadFormat {
        path: path.to_string(),
        reason,
    };
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|_| {
        bad(format!(
            "only {file_len} bytes, too short for the .npy magic"
        ))
    })?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad(
            "it does not start with the .npy magic \\x93NUMPY".into()
        ));
    }
    let (len_bytes, prefix) = match pre[6] {
        1 => (2usize, 10u64),
        2 | 3 => (4, 12),
        v => return Err(bad(format!("unknown .npy format version {v}"))),
    };
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb[..len_bytes])
        .map_err(|_| bad("the header length is cut off".into()))?;
    let hlen = u32::from_le_bytes(lb) as u64;
    if prefix + hlen > file_len {
        return Err(bad(format!(
            "the header announces {hlen} bytes but the file has only {file_len}"
        )));
    }
    let mut text = vec![0u8; hlen as usize];
    r.read_exact(&mut text)
        .map_err(|_| bad("the header is cut off".into()))?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let descr = dict_value(&text, "descr")
        .ok_or_else(|| bad("the header has no 'descr'".into()))?
        .trim_matches(|c| c == '\'' || c == '"')
        .to_string();
    let (item_size, big_endian) = match descr.as_str() {
        "<f4" | "=f4" | "f4" => (4, false),
        ">f4" => (4, true),
        "<f8" | "=f8" | "f8" => (8, false),
        ">f8" => (8, true),
        _ => {
            return Err(InputError::Dtype {
                path: path.to_string(),
                descr,
            })
        }
    };
    let fortran_order = match dict_value(&text, "fortran_order") {
        Some("True") => true,
        Some("False") => false,
        _ => return Err(bad("the header has no valid 'fortran_order'".into())),
    };
    let shape_text =
        dict_value(&text, "shape").ok_or_else(|| bad("the header has no 'shape'".into()))?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad(format!("cannot read the shape {shape_text:?}")))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad(format!("cannot read the shape {shape_text:?}")))?;
    Ok(NpyHeader {
        item_size,
        big_endian,
        fortran_order,
        shape,
        data_offset: prefix + hlen,
    })
}

/// The raw text of `key`'s value in a numpy header dictionary (a quoted string, `True`/`False`,
/// a parenthesised tuple or a bracketed list).
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text
        .find(&format!("'{key}'"))
        .or_else(|| text.find(&format!("\"{key}\"")))?;
    let rest = text[at + key.len() + 2..].trim_start().strip_prefix(':')?;
    let rest = rest.trim_start();
    let end = if rest.starts_with('(') {
        // A tuple without its ')' is returned whole, so the caller can say it cannot read it.
        rest.find(')')
            .map_or(rest.trim_end_matches([' ', '}', '\n']).len(), |e| e + 1)
    } else if rest.starts_with('[') {
        // A structured dtype: a list of tuples, up to its matching ']'.
        let mut depth = 0usize;
        let mut end = rest.len();
        for (at, ch) in rest.char_indices() {
            match ch {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        end
    } else if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        rest[1..].find(q)? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::npy_header;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
        let mut b = npy_header("<f4", shape);
        for v in values {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn random_is_seeded_and_gaussian() {
        let a = generate(InputKind::Random { seed: 1 }, 256, 32);
        let b = generate(InputKind::Random { seed: 2 }, 256, 32);
        assert_ne!(a.q, b.q);
        let mean = a.q.mean().unwrap();
        let var = a.q.mapv(|x| (x - mean) * (x - mean)).mean().unwrap();
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn structured_scores_are_local_and_periodic() {
        let n = 256;
        let d = 32;
        let qkv = generate(InputKind::Structured { seed: 3 }, n, d);
        let s = |i: usize, j: usize| qkv.q.row(i).dot(&qkv.k.row(j)) / (d as f32).sqrt();
        let i = 128;
        // Peaks at distance 0 and at multiples of the period, low in between.
        assert!(s(i, i) > 4.0, "{}", s(i, i));
        assert!(s(i, i - STRUCTURED_PERIOD) > 3.0);
        assert!(s(i, i - STRUCTURED_PERIOD / 2) < 1.0);
        // Near peaks beat far ones.
        assert!(s(i, i - STRUCTURED_PERIOD) > s(i, i - 7 * STRUCTURED_PERIOD));
    }

    #[test]
    fn loads_f32_f64_and_fortran() {
        let dir = tempfile::tempdir().unwrap();
        let vals: Vec<f32> = (0..6).map(|x| x as f32 * 0.5).collect();
        let p32 = write(dir.path(), "a.npy", &npy_f32(&[2, 3], &vals));
        let a = load_npy(&p32).unwrap();
        assert_eq!(a, ndarray::arr2(&[[0.0, 0.5, 1.0], [1.5, 2.0, 2.5]]));
        let mut b64 = npy_header("<f8", &[2, 3]);
        for v in &vals {
            b64.extend_from_slice(&(*v as f64).to_le_bytes());
        }
        let p64 = write(dir.path(), "b.npy", &b64);
        assert_eq!(load_npy(&p64).unwrap(), a);
        // Fortran order: the same bytes read column-major.
        let mut f = npy_header("<f4", &[2, 3]);
        let at = f
            .windows(5)
            .position(|w| w == b"False")
            .expect("header has fortran_order False");
        f[at..at + 5].copy_from_slice(b"True ");
        for v in [0.0f32, 1.5, 0.5, 2.0, 1.0, 2.5] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        let pf = write(dir.path(), "f.npy", &f);
        assert_eq!(load_npy(&pf).unwrap(), a);
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut i4 = npy_header("<i4", &[2, 2]);
        i4.extend_from_slice(&[0u8; 16]);
        let e = load_npy(&write(dir.path(), "i.npy", &i4)).unwrap_err();
        assert!(matches!(e, InputError::Dtype { .. }), "{e}");
        assert!(e.to_string().contains("<i4"));
        let r3 = npy_f32(&[2, 2, 2], &[0.0; 8]);
        let e = load_npy(&write(dir.path(), "r.npy", &r3)).unwrap_err();
        assert!(matches!(e, InputError::Rank { .. }), "{e}");
        let r1 = npy_f32(&[4], &[0.0; 4]);
        let e = load_npy(&write(dir.path(), "r1.npy", &r1)).unwrap_err();
        assert!(matches!(e, InputError::Rank { .. }), "{e}");
        let mut t = npy_f32(&[4, 4], &[1.0; 16]);
        t.truncate(t.len() - 5);
        let e = load_npy(&write(dir.path(), "t.npy", &t)).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::Truncated {
                    expected: 64,
                    got: 59,
                    ..
                }
            ),
            "{e}"
        );
        let e = load_npy(&write(dir.path(), "x.npy", b"hello")).unwrap_err();
        assert!(matches!(e, InputError::BadFormat { .. }), "{e}");
        let e = load_npy(&write(dir.path(), "z.npy", &npy_f32(&[0, 4], &[]))).unwrap_err();
        assert!(matches!(e, InputError::Empty { .. }), "{e}");
        let e = load_npy(&dir.path().join("missing.npy")).unwrap_err();
        assert!(!e.is_usage());
    }

    /// A header with `dict` as its dictionary (padded like numpy's), then `data`.
    fn with_dict(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut text = dict.to_string();
        let unpadded = 10 + text.len() + 1;
        text.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        text.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn odd_headers_are_described_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        // A structured dtype is shown whole, not cut at its first comma.
        let structured = with_dict(
            "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,), }",
            &[0u8; 16],
        );
        let e = load_npy(&write(dir.path(), "s.npy", &structured)).unwrap_err();
        assert!(matches!(e, InputError::Dtype { .. }), "{e}");
        assert!(
            e.to_string().contains("[('a', '<f4'), ('b', '<f4')]"),
            "{e}"
        );
        // A shape without its ')' is unreadable, not missing.
        let open = with_dict(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, }",
            &[0u8; 24],
        );
        let e = load_npy(&write(dir.path(), "o.npy", &open)).unwrap_err();
        assert!(
            e.to_string().contains("cannot read the shape \"(2, 3,"),
            "{e}"
        );
        // A directory is called a directory.
        let e = load_npy(dir.path()).unwrap_err();
        assert!(matches!(e, InputError::IsDirectory { .. }), "{e}");
        assert!(e.is_usage());
    }

    #[test]
    fn non_finite_and_out_of_range_values_are_refused_naming_array_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok.npy", &npy_f32(&[3, 2], &[0.5; 6]));
        let mut vals = [0.5f32; 6];
        vals[3] = f32::NAN;
        let nan = write(dir.path(), "nan.npy", &npy_f32(&[3, 2], &vals));
        let e = load_qkv(&nan, &ok, &ok).unwrap_err();
        assert!(
            matches!(e, InputError::NonFinite { row: 1, col: 1, .. }),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("Q (") && text.contains("nan.npy"),
            "{text}"
        );
        assert!(text.contains("row 1"), "{text}");
        vals[3] = f32::INFINITY;
        let inf = write(dir.path(), "inf.npy", &npy_f32(&[3, 2], &vals));
        let e = load_qkv(&ok, &ok, &inf).unwrap_err();
        assert!(e.to_string().starts_with("V ("), "{e}");
        // A float64 beyond the float32 range would become inf: refused, naming its row.
        let mut b64 = npy_header("<f8", &[3, 2]);
        for v in [0.0f64, 1.0, 2.0, 3.0, 1e39, 5.0] {
            b64.extend_from_slice(&v.to_le_bytes());
        }
        let big = write(dir.path(), "big.npy", &b64);
        let e = load_qkv(&ok, &big, &ok).unwrap_err();
        assert!(
            matches!(e, InputError::NonFinite { row: 2, col: 0, .. }),
            "{e}"
        );
        assert!(e.to_string().starts_with("K ("), "{e}");
        assert!(e.is_usage());
        assert!(load_qkv(&ok, &ok, &ok).is_ok());
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = write(dir.path(), "q.npy", &npy_f32(&[3, 2], &[0.0; 6]));
        let k = write(dir.path(), "k.npy", &npy_f32(&[3, 2], &[0.0; 6]));
        let v = write(dir.path(), "v.npy", &npy_f32(&[2, 3], &[0.0; 6]));
        let e = load_qkv(&q, &k, &v).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::Mismatch {
                    what: "V",
                    expected: (3, 2),
                    got: (2, 3)
                }
            ),
            "{e}"
        );
        assert!(load_qkv(&q, &k, &k).is_ok());
    }
}
