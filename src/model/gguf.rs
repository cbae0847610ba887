//! GGUF reader (versions 2 and 3): header, metadata, tensor table and dequantisation to f32,
//! over a memory-mapped file.
//!
//! Layout (all little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count; then the metadata (`string` key, `u32` value type, value; strings are a `u64` byte
//! length and UTF-8 bytes; arrays a `u32` element type, `u64` count and the elements); then one
//! entry per tensor (`string` name, `u32` dimension count, `u64` per dimension with the fastest
//! first, `u32` ggml type, `u64` offset); the tensor data starts at the next multiple of
//! `general.alignment` (default 32) and every tensor's offset is relative to that start.
//!
//! Every length read from the file is checked against the bytes that remain before anything
//! is allocated, so a truncated or hostile file gives [`ModelError::Format`], never a panic.

use super::ModelError;
use half::{bf16, f16};
use memmap2::Mmap;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the tensor data when the file does not set `general.alignment`, in bytes.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a GGUF tensor may have.
pub const MAX_DIMS: usize = 4;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// UTF-8 `string` (invalid bytes replaced).
    Str(String),
    /// `array` of values of one type.
    Array(Vec<MetaValue>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer (any non-negative integer type).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer (any integer type that fits).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float (float or integer types).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The ggml tensor types this reader dequantises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    Bf16,
    /// 32 values: f16 scale d, 16 bytes of 4-bit q; x = d·(q − 8).
    Q4_0,
    /// 32 values: f16 scale d and minimum m, 16 bytes of 4-bit q; x = d·q + m.
    Q4_1,
    /// 32 values: f16 d, 32 high bits, 16 bytes of low nibbles; x = d·(q − 16).
    Q5_0,
    /// 32 values: f16 d and m, 32 high bits, 16 bytes of low nibbles; x = d·q + m.
    Q5_1,
    /// 32 values: f16 scale d, 32 signed bytes q; x = d·q.
    Q8_0,
    /// 256 values in 8 sub-blocks of 32 with 6-bit scales and minimums; x = d·s·q − dmin·m.
    Q4K,
    /// 256 values in 16 sub-blocks of 16 with 8-bit scales, 6-bit q; x = d·s·(q − 32).
    Q6K,
}

impl GgmlType {
    /// Every type this reader dequantises.
    pub const ALL: [GgmlType; 10] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ];

    /// The type with ggml code `code` (`None` when this reader does not dequantise it).
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// ggml's numeric code of the type.
    pub fn code(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q6K => 14,
            GgmlType::Bf16 => 30,
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q4K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::Bf16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4K => 144,
            GgmlType::Q6K => 210,
        }
    }
}

/// ggml's name of type code `code` (for messages; `type N` when unknown).
pub fn type_name(code: u32) -> String {
    const NAMES: [&str; 36] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4",
        "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("type {code}"), |s| (*s).to_string())
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, fastest first (ggml's `ne`): a matrix `[cols, rows]` is stored row by row.
    pub dims: Vec<u64>,
    /// ggml type code (see [`GgmlType`]).
    pub type_code: u32,
    /// Offset of the data from the start of the data section, in bytes.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of values.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// `(rows, cols)` of the tensor read as a row-major matrix (a vector is one row).
    pub fn matrix_shape(&self) -> (usize, usize) {
        let cols = self.dims.first().copied().unwrap_or(1) as usize;
        let rows = self.dims.iter().skip(1).product::<u64>() as usize;
        (rows, cols)
    }
}

/// A parsed GGUF file; tensor data stays in the memory map until dequantised.
pub struct Gguf {
    path: PathBuf,
    map: Mmap,
    /// Format version (2 or 3).
    pub version: u32,
    /// Every metadata key and value.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor table, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Start of the tensor data in the file, in bytes.
    pub data_offset: u64,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

/// Bounds-checked little-endian reader over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A parse failure before the path is attached.
type Parse<T> = Result<T, String>;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, len: u64, what: &str) -> Parse<&'a [u8]> {
        if len > self.remaining() as u64 {
            return Err(format!(
                "truncated: {what} needs {len} bytes at offset {} but the file has {} left",
                self.pos,
                self.remaining()
            ));
        }
        let len = len as usize;
        let s = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Parse<String> {
        let len = self.u64(what)?;
        let s = self.take(len, what)?;
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    /// A value of GGUF type `ty`; `depth` guards against nested arrays.
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Parse<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.array(key)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(key)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetaValue::U32(self.u32(key)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => MetaValue::Bool(u8::from_le_bytes(self.array(key)?) != 0),
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(format!("metadata {key}: arrays nested too deeply"));
                }
                let elem = self.u32(key)?;
                let count = self.u64(key)?;
                // Every element takes at least one byte (a string at least eight), so a count
                // beyond the remaining bytes is a lie: refuse before allocating.
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    _ => return Err(format!("metadata {key}: unknown array element type {elem}")),
                };
                if count.saturating_mul(min) > self.remaining() as u64 {
                    return Err(format!(
                        "truncated: metadata {key} claims {count} elements but the file has {} bytes left",
                        self.remaining()
                    ));
                }
                let mut out = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    out.push(self.value(elem, key, depth + 1)?);
                }
                MetaValue::Array(out)
            }
            10 => MetaValue::U64(self.u64(key)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(key)?)),
            _ => return Err(format!("metadata {key}: unknown value type {ty}")),
        })
    }
}

/// Parses header, metadata and tensor table of `bytes`.
/// Header, metadata and tensor table of a file, before the map is attached.
struct Parsed {
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    data_offset: u64,
}

fn parse(bytes: &[u8]) -> Parse<Parsed> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.take(4, "the magic number")?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file: it starts with {magic:02x?}, a GGUF file starts with \"GGUF\""
        ));
    }
    let version = c.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (versions 2 and 3 are)"
        ));
    }
    let n_tensors = c.u64("the tensor count")?;
    let n_meta = c.u64("the metadata count")?;
    // A metadata entry takes at least 8 + 4 + 1 bytes, a tensor entry 8 + 4 + 8 + 4 + 8.
    if n_meta.saturating_mul(13) > c.remaining() as u64
        || n_tensors.saturating_mul(32) > c.remaining() as u64
    {
        return Err(format!(
            "truncated: the header claims {n_meta} metadata entries and {n_tensors} tensors but the file has {} bytes left",
            c.remaining()
        ));
    }
    let mut metadata = BTreeMap::new();
    for _ in 0..n_meta {
        let key = c.string("a metadata key")?;
        let ty = c.u32(&key)?;
        let value = c.value(ty, &key, 0)?;
        metadata.insert(key, value);
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string("a tensor name")?;
        let n_dims = c.u32(&name)? as usize;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "tensor {name} has {n_dims} dimensions (at most {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64(&name)?);
        }
        let type_code = c.u32(&name)?;
        let offset = c.u64(&name)?;
        tensors.push(TensorInfo {
            name,
            dims,
            type_code,
            offset,
        });
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => return Err(format!("general.alignment {v:?} is not a power of two")),
        },
    };
    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    for t in &tensors {
        let elements = t
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor {}: dimensions {:?} overflow", t.name, t.dims))?;
        if let Some(ty) = GgmlType::from_code(t.type_code) {
            let bv = ty.block_values() as u64;
            if elements % bv != 0 {
                return Err(format!(
                    "tensor {}: {elements} values is not a whole number of {} blocks of {bv}",
                    t.name,
                    type_name(t.type_code)
                ));
            }
            let size = (elements / bv).saturating_mul(ty.block_bytes() as u64);
            let end = data_offset.saturating_add(t.offset).saturating_add(size);
            if end > file_len {
                return Err(format!(
                    "truncated: tensor {} needs bytes up to {end} but the file has {file_len}",
                    t.name
                ));
            }
        }
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        data_offset,
    })
}

impl Gguf {
    /// Opens and parses the GGUF file at `path` (memory-mapped).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let format = |message: String| ModelError::Format {
            path: path.to_path_buf(),
            message,
        };
        if len < 24 {
            return Err(format(format!(
                "truncated: {len} bytes, a GGUF header alone takes 24"
            )));
        }
        // SAFETY: the map is only read; a file changed by another process while mapped gives
        // wrong values, which every read below bounds-checks, not undefined behaviour in Rust
        // code that could turn into memory unsafety beyond that (the documented memmap2 caveat).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let p = parse(&map).map_err(format)?;
        Ok(Gguf {
            path: path.to_path_buf(),
            map,
            version: p.version,
            metadata: p.metadata,
            tensors: p.tensors,
            data_offset: p.data_offset,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A [`ModelError::Format`] about this file.
    pub fn error(&self, message: impl Into<String>) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    /// Metadata value `key`.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// Metadata `key` as an unsigned integer, or an error naming the key.
    pub fn meta_u64(&self, key: &str) -> Result<u64, ModelError> {
        self.meta(key)
            .and_then(MetaValue::as_u64)
            .ok_or_else(|| self.error(format!("metadata {key} is missing or not an integer")))
    }

    /// Metadata `key` as a float, or `default` when it is absent.
    pub fn meta_f64_or(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.meta(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.error(format!("metadata {key} is not a number"))),
        }
    }

    /// Metadata `key` as a string, or an error naming the key.
    pub fn meta_str(&self, key: &str) -> Result<&str, ModelError> {
        self.meta(key)
            .and_then(MetaValue::as_str)
            .ok_or_else(|| self.error(format!("metadata {key} is missing or not a string")))
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of tensor `t` (checked against the file at open).
    fn raw(&self, t: &TensorInfo, ty: GgmlType) -> &[u8] {
        let size = t.elements() as usize / ty.block_values() * ty.block_bytes();
        let start = (self.data_offset + t.offset) as usize;
        &self.map[start..start + size]
    }

    /// Tensor `name` dequantised to f32 (row-major, `dims` fastest first), checked to have
    /// `dims` when given.
    pub fn tensor_f32(&self, name: &str, dims: Option<&[u64]>) -> Result<Vec<f32>, ModelError> {
        let t = self.checked(name, dims)?;
        let mut out = vec![0f32; t.elements() as usize];
        self.tensor_into(name, dims, &mut out)?;
        Ok(out)
    }

    /// Dequantises tensor `name` (checked to have `dims` when given) into `out`, which must
    /// hold exactly its values (e.g. a row range of a stacked weight matrix).
    pub fn tensor_into(
        &self,
        name: &str,
        dims: Option<&[u64]>,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let t = self.checked(name, dims)?;
        let ty = GgmlType::from_code(t.type_code).ok_or_else(|| {
            self.error(format!(
                "tensor {name} has type {}; attnscope reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K and Q6_K",
                type_name(t.type_code)
            ))
        })?;
        if out.len() as u64 != t.elements() {
            return Err(self.error(format!(
                "tensor {name} has {} values, {} expected",
                t.elements(),
                out.len()
            )));
        }
        dequantize(ty, self.raw(t, ty), out);
        Ok(())
    }

    /// The entry of tensor `name`, checked to have `dims` when given.
    fn checked(&self, name: &str, dims: Option<&[u64]>) -> Result<&TensorInfo, ModelError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| self.error(format!("tensor {name} is missing")))?;
        match dims {
            Some(want) if t.dims != want => Err(self.error(format!(
                "tensor {name} has dimensions {:?}, expected {want:?}",
                t.dims
            ))),
            _ => Ok(t),
        }
    }
}

/// Dequantises `bytes` (whole blocks of `ty`) into `out` (`bytes.len() / block_bytes ·
/// block_values` values), in parallel over chunks of blocks.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let (bb, bv) = (ty.block_bytes(), ty.block_values());
    const CHUNK_BLOCKS: usize = 1024;
    bytes
        .par_chunks(bb * CHUNK_BLOCKS)
        .zip(out.par_chunks_mut(bv * CHUNK_BLOCKS))
        .for_each(|(src, dst)| {
            for (b, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(bv)) {
                dequantize_block(ty, b, y);
            }
        });
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises one block `b` of `ty` into `y` (`block_values` values).
fn dequantize_block(ty: GgmlType, b: &[u8], y: &mut [f32]) {
    match ty {
        GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => y[0] = f16_at(b, 0),
        GgmlType::Bf16 => y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        GgmlType::Q4_0 => {
            let d = f16_at(b, 0);
            for (j, &q) in b[2..18].iter().enumerate() {
                y[j] = d * ((q & 0x0f) as i32 - 8) as f32;
                y[j + 16] = d * ((q >> 4) as i32 - 8) as f32;
            }
        }
        GgmlType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for (j, &q) in b[4..20].iter().enumerate() {
                y[j] = d * (q & 0x0f) as f32 + m;
                y[j + 16] = d * (q >> 4) as f32 + m;
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            // Low nibbles as Q4; bit j of `qh` is the fifth bit of value j (j < 32).
            let q5_1 = ty == GgmlType::Q5_1;
            let d = f16_at(b, 0);
            let (m, h) = if q5_1 { (f16_at(b, 2), 4) } else { (0.0, 2) };
            let qh = u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]);
            for (j, &q) in b[h + 4..h + 20].iter().enumerate() {
                let lo = (q & 0x0f) as u32 | (((qh >> j) & 1) << 4);
                let hi = (q >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
                if q5_1 {
                    y[j] = d * lo as f32 + m;
                    y[j + 16] = d * hi as f32 + m;
                } else {
                    y[j] = d * (lo as i32 - 16) as f32;
                    y[j + 16] = d * (hi as i32 - 16) as f32;
                }
            }
        }
        GgmlType::Q8_0 => {
            let d = f16_at(b, 0);
            for (dst, &q) in y.iter_mut().zip(&b[2..34]) {
                *dst = d * (q as i8) as f32;
            }
        }
        GgmlType::Q4K => {
            // d, dmin (f16), 12 bytes of packed 6-bit scales/minimums for 8 sub-blocks, then
            // 128 bytes: each group of 64 values takes 32 bytes, low nibbles first.
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let sc = &b[4..16];
            let qs = &b[16..144];
            for g in 0..4 {
                let (s0, m0) = scale_min_k4(2 * g, sc);
                let (s1, m1) = scale_min_k4(2 * g + 1, sc);
                let (d0, d1) = (d * s0 as f32, d * s1 as f32);
                let (n0, n1) = (dmin * m0 as f32, dmin * m1 as f32);
                let q = &qs[32 * g..32 * g + 32];
                for l in 0..32 {
                    y[64 * g + l] = d0 * (q[l] & 0x0f) as f32 - n0;
                    y[64 * g + 32 + l] = d1 * (q[l] >> 4) as f32 - n1;
                }
            }
        }
        GgmlType::Q6K => {
            // ql[128] low nibbles, qh[64] high 2-bit pairs, 16 signed scales, f16 d; two halves
            // of 128 values, each from 64 ql bytes, 32 qh bytes and 8 scales.
            let d = f16_at(b, 208);
            for half in 0..2 {
                let ql = &b[64 * half..64 * half + 64];
                let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                let sc = &b[192 + 8 * half..192 + 8 * half + 8];
                let y = &mut y[128 * half..128 * half + 128];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                }
            }
        }
    }
}

/// Scale and minimum (6 bits each) of sub-block `j` (0..8) of a Q4_K block from its 12
/// packed bytes: sub-blocks 0–3 use the low 6 bits of bytes j and j + 4; 4–7 combine a nibble
/// of byte j + 4 with the top 2 bits of bytes j − 4 and j.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The tokenizer a GGUF file describes, with whether it prepends a BOS token.
pub struct GgufTokenizer {
    /// Byte-level BPE from `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, control
    /// tokens (`token_type` 3) matched as special tokens.
    pub tokenizer: tokenizers::Tokenizer,
    /// The BOS id to prepend (`tokenizer.ggml.add_bos_token`; `None` when false or absent).
    pub bos: Option<u32>,
}

/// Pre-tokenizer names (`tokenizer.ggml.pre`) whose split is "every digit alone, then the
/// GPT-2 regex" (llama.cpp's table; SmolLM2 says `smollm`).
const DIGITS_THEN_GPT2: [&str; 6] = [
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
];
/// Pre-tokenizer names that split with the GPT-2 regex alone.
const GPT2_ONLY: [&str; 4] = ["gpt-2", "mpt", "olmo", "jais"];

impl Gguf {
    /// Builds the byte-level BPE tokenizer of a `tokenizer.ggml.model = gpt2` file, with the
    /// pre-tokenizer named by `tokenizer.ggml.pre`.
    pub fn tokenizer(&self) -> Result<GgufTokenizer, ModelError> {
        use tokenizers::models::bpe::BPE;
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::pre_tokenizers::digits::Digits;
        use tokenizers::pre_tokenizers::sequence::Sequence;
        use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

        let model = self.meta_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(self.error(format!(
                "tokenizer.ggml.model is {model}; attnscope reads byte-level BPE (gpt2) tokenizers"
            )));
        }
        let pre = self
            .meta("tokenizer.ggml.pre")
            .and_then(MetaValue::as_str)
            .unwrap_or("(missing)");
        let byte_level = PreTokenizerWrapper::from(ByteLevel::new(false, true, true));
        let pre_tokenizer = if DIGITS_THEN_GPT2.contains(&pre) {
            Sequence::new(vec![Digits::new(true).into(), byte_level])
        } else if GPT2_ONLY.contains(&pre) {
            Sequence::new(vec![byte_level])
        } else {
            return Err(self.error(format!(
                "tokenizer.ggml.pre {pre} is not supported (attnscope reads {} and {})",
                DIGITS_THEN_GPT2.join(", "),
                GPT2_ONLY.join(", ")
            )));
        };
        let strings = |key: &str| -> Result<Vec<String>, ModelError> {
            let list = self
                .meta(key)
                .and_then(MetaValue::as_array)
                .ok_or_else(|| self.error(format!("metadata {key} is missing or not an array")))?;
            list.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.error(format!("metadata {key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match self.meta("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .ok_or_else(|| self.error("tokenizer.ggml.token_type is not an array"))?
                .iter()
                .map(|t| t.as_i64().unwrap_or(1))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let vocab: ahash::AHashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| self.error(format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| self.error(format!("cannot build the BPE tokenizer: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
        // Control tokens (type 3) are matched whole in the text, as llama.cpp and HF do.
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == 3)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        tokenizer.add_special_tokens(&specials);
        let add_bos = self
            .meta("tokenizer.ggml.add_bos_token")
            .and_then(MetaValue::as_bool)
            .unwrap_or(false);
        let bos = if add_bos {
            let id = self.meta_u64("tokenizer.ggml.bos_token_id")?;
            if id >= tokens.len() as u64 {
                return Err(self.error(format!("bos_token_id {id} is outside the vocabulary")));
            }
            Some(id as u32)
        } else {
            None
        };
        Ok(GgufTokenizer { tokenizer, bos })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_bits().to_le_bytes()
    }

    fn deq(ty: GgmlType, block: &[u8]) -> Vec<f32> {
        assert_eq!(block.len(), ty.block_bytes());
        let mut y = vec![f32::NAN; ty.block_values()];
        dequantize(ty, block, &mut y);
        y
    }

    #[test]
    fn q8_0_block() {
        // d = 0.5, q_j = j − 16 → x_j = (j − 16) / 2.
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let y = deq(GgmlType::Q8_0, &b);
        assert_eq!(y[0], -8.0);
        assert_eq!(y[16], 0.0);
        assert_eq!(y[31], 7.5);
    }

    #[test]
    fn q4_0_block() {
        // d = 2, byte j = (15 − (j % 16)) << 4 | j % 16: low nibble j → x_j = 2 (j − 8),
        // high nibble 15 − j → x_{j+16} = 2 (7 − j).
        let mut b = h(2.0).to_vec();
        b.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let y = deq(GgmlType::Q4_0, &b);
        assert_eq!(&y[..3], &[-16.0, -14.0, -12.0]);
        assert_eq!(y[15], 14.0);
        assert_eq!(y[16], 14.0);
        assert_eq!(y[31], -16.0);
    }

    #[test]
    fn q4_1_block() {
        // d = 0.25, m = −1, byte j = 0xA0 | (j % 16): x_j = j/4 − 1, x_{j+16} = 10/4 − 1 = 1.5.
        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend((0..16u8).map(|j| 0xa0 | j));
        let y = deq(GgmlType::Q4_1, &b);
        assert_eq!(y[0], -1.0);
        assert_eq!(y[4], 0.0);
        assert_eq!(y[15], 2.75);
        assert!(y[16..].iter().all(|&x| x == 1.5));
    }

    #[test]
    fn q5_blocks() {
        // Q5_0: d = 1, all nibbles 0, qh bit 0 and bit 16 set: x_0 = 16 − 16 = 0,
        // x_16 = 0, every other x = −16.
        let mut b = h(1.0).to_vec();
        b.extend(0x0001_0001u32.to_le_bytes());
        b.extend([0u8; 16]);
        let y = deq(GgmlType::Q5_0, &b);
        assert_eq!(y[0], 0.0);
        assert_eq!(y[16], 0.0);
        assert_eq!(y[1], -16.0);
        assert_eq!(y[31], -16.0);
        // Q5_1: d = 0.5, m = 1, byte 3 = 0x21, qh bit 19 set: x_3 = 0.5·1 + 1 = 1.5,
        // x_19 = 0.5·(2 + 16) + 1 = 10.
        let mut b = h(0.5).to_vec();
        b.extend(h(1.0));
        b.extend((1u32 << 19).to_le_bytes());
        let mut qs = [0u8; 16];
        qs[3] = 0x21;
        b.extend(qs);
        let y = deq(GgmlType::Q5_1, &b);
        assert_eq!(y[3], 1.5);
        assert_eq!(y[19], 10.0);
        assert_eq!(y[0], 1.0);
    }

    #[test]
    fn float_types() {
        assert_eq!(deq(GgmlType::F32, &1.25f32.to_le_bytes()), vec![1.25]);
        assert_eq!(deq(GgmlType::F16, &h(-3.5)), vec![-3.5]);
        let bf = bf16::from_f32(6.0).to_bits().to_le_bytes();
        assert_eq!(deq(GgmlType::Bf16, &bf), vec![6.0]);
    }

    #[test]
    fn q4_k_block() {
        // d = 1, dmin = 0.5; sub-block 0: scale 2, min 4 (bytes 0 and 4); sub-block 5: scale
        // 3 + 16 (nibble 3 of byte 9, top bits 01 of byte 1), min 1 + 32 (nibble 1 of byte 9,
        // top bits 10 of byte 5). qs byte 0 = 0x07 (value 0 gets 7), group 2 byte 0 = 0x50
        // (value 160 = sub-block 5's first gets 5).
        let mut b = h(1.0).to_vec();
        b.extend(h(0.5));
        let mut sc = [0u8; 12];
        sc[0] = 2;
        sc[4] = 4;
        sc[9] = 0x13;
        sc[1] = 0b0100_0000;
        sc[5] = 0b1000_0000;
        b.extend(sc);
        let mut qs = [0u8; 128];
        qs[0] = 0x07;
        qs[64] = 0x50;
        b.extend(qs);
        let y = deq(GgmlType::Q4K, &b);
        assert_eq!(y[0], 2.0 * 7.0 - 0.5 * 4.0);
        assert_eq!(y[1], -2.0);
        assert_eq!(y[160], 19.0 * 5.0 - 0.5 * 33.0);
        assert_eq!(y[161], -16.5);
        // Sub-block 1 (bytes 1 and 5 low bits are 0): scale 0, min 0.
        assert_eq!(y[32], 0.0);
    }

    #[test]
    fn q6_k_block() {
        // d = 0.5; scales[0] = 2, scales[2] = −1, scales[9] = 3; ql[0] = 0x21, qh[0] = 0b10:
        // q1 (value 0) = 1 | 2<<4 = 33 → 33 − 32 = 1; value 64 (q3) = 2 | 0 = 2 − 32 = −30;
        // value 32 (q2) = 0 − 32, scale −1; second half value 128 + 16 uses scales[8 + 1].
        let mut b = vec![0u8; 210];
        b[0] = 0x21;
        b[128] = 0b10;
        b[192] = 2;
        b[194] = (-1i8) as u8;
        b[192 + 9] = 3;
        b[208..210].copy_from_slice(&h(0.5));
        let y = deq(GgmlType::Q6K, &b);
        assert_eq!(y[0], 0.5 * 2.0 * 1.0);
        assert_eq!(y[32], 16.0); // 0.5 · (−1) · (0 − 32)
        assert_eq!(y[64], 0.0); // scales[4] = 0
        assert_eq!(y[128 + 16], 0.5 * 3.0 * -32.0);
    }

    /// Writes a GGUF v3 file: metadata `entries` (already encoded) and tensors.
    fn gguf_bytes(
        version: u32,
        entries: &[Vec<u8>],
        tensors: &[(&str, &[u64], u32, &[u8])],
    ) -> Vec<u8> {
        let mut f = b"GGUF".to_vec();
        f.extend(version.to_le_bytes());
        f.extend((tensors.len() as u64).to_le_bytes());
        f.extend((entries.len() as u64).to_le_bytes());
        for e in entries {
            f.extend(e);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in tensors {
            f.extend(s(name));
            f.extend((dims.len() as u32).to_le_bytes());
            for d in *dims {
                f.extend(d.to_le_bytes());
            }
            f.extend(ty.to_le_bytes());
            f.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while f.len() % 32 != 0 {
            f.push(0);
        }
        for (_, _, _, data) in tensors {
            f.extend(*data);
            while f.len() % 32 != 0 {
                f.push(0);
            }
        }
        f
    }

    fn s(x: &str) -> Vec<u8> {
        let mut v = (x.len() as u64).to_le_bytes().to_vec();
        v.extend(x.as_bytes());
        v
    }

    fn kv(key: &str, ty: u32, value: &[u8]) -> Vec<u8> {
        let mut v = s(key);
        v.extend(ty.to_le_bytes());
        v.extend(value);
        v
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f
    }

    fn tiny() -> Vec<u8> {
        let mut arr = 8u32.to_le_bytes().to_vec();
        arr.extend(2u64.to_le_bytes());
        arr.extend(s("a"));
        arr.extend(s("héllo"));
        let mut q8 = h(0.5).to_vec();
        q8.extend((0..32).map(|j| j as u8));
        let f32s: Vec<u8> = [1.0f32, -2.0, 3.5]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        gguf_bytes(
            3,
            &[
                kv("general.architecture", 8, &s("llama")),
                kv("llama.block_count", 4, &7u32.to_le_bytes()),
                kv("llama.rope.freq_base", 6, &1e4f32.to_le_bytes()),
                kv("flag", 7, &[1]),
                kv("big", 10, &(u64::MAX - 1).to_le_bytes()),
                kv("neg", 5, &(-3i32).to_le_bytes()),
                kv("list", 9, &arr),
            ],
            &[("w", &[32, 1], 8, &q8), ("norm", &[3], 0, &f32s)],
        )
    }

    #[test]
    fn tiny_file_reads_back() {
        let f = write(&tiny());
        let g = Gguf::open(f.path()).expect("parse");
        assert_eq!(g.version, 3);
        assert_eq!(g.meta_str("general.architecture").ok(), Some("llama"));
        assert_eq!(g.meta_u64("llama.block_count").ok(), Some(7));
        assert_eq!(g.meta_f64_or("llama.rope.freq_base", 0.0).ok(), Some(1e4));
        assert_eq!(g.meta_f64_or("absent", 2.5).ok(), Some(2.5));
        assert_eq!(g.meta("flag").and_then(MetaValue::as_bool), Some(true));
        assert_eq!(g.meta_u64("big").ok(), Some(u64::MAX - 1));
        assert_eq!(g.meta("neg").and_then(MetaValue::as_i64), Some(-3));
        assert!(g.meta_u64("neg").is_err());
        let list = g.meta("list").and_then(MetaValue::as_array).expect("list");
        assert_eq!(list[1].as_str(), Some("héllo"));
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.data_offset % 32, 0);
        assert_eq!(g.tensor("w").map(|t| t.matrix_shape()), Some((1, 32)));
        let w = g.tensor_f32("w", Some(&[32, 1][..])).expect("w");
        assert_eq!(w[0], 0.0);
        assert_eq!(w[31], 15.5);
        assert_eq!(
            g.tensor_f32("norm", None).expect("norm"),
            vec![1.0, -2.0, 3.5]
        );
        assert!(g.tensor_f32("w", Some(&[16, 2][..])).is_err());
        assert!(g.tensor_f32("missing", None).is_err());
    }

    #[test]
    fn alignment_is_honoured() {
        let f32s: Vec<u8> = [4.0f32, 5.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut bytes = gguf_bytes(
            2,
            &[kv("general.alignment", 4, &64u32.to_le_bytes())],
            &[("x", &[2], 0, &f32s)],
        );
        // The writer aligned to 32: move the data to the next multiple of 64.
        let start = bytes.len() - 32;
        let aligned = start.div_ceil(64) * 64;
        let data = bytes.split_off(start);
        bytes.resize(aligned, 0);
        bytes.extend(data);
        let f = write(&bytes);
        let g = Gguf::open(f.path()).expect("parse");
        assert_eq!(g.data_offset, aligned as u64);
        assert_eq!(g.tensor_f32("x", None).expect("x"), vec![4.0, 5.0]);
    }

    fn format_error(bytes: &[u8]) -> String {
        let f = write(bytes);
        match Gguf::open(f.path()) {
            Err(ModelError::Format { message, .. }) => message,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn bad_magic_and_version() {
        let mut b = tiny();
        b[0] = b'X';
        assert!(format_error(&b).contains("not a GGUF file"));
        let mut b = tiny();
        b[4] = 9;
        assert!(format_error(&b).contains("version 9"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = tiny();
        for len in 0..b.len() - 1 {
            // The last tensor's padding is not needed; everything before its data end is.
            let msg = format_error(&b[..len.min(b.len() - 32 + 11)]);
            assert!(msg.contains("truncated"), "len {len}: {msg}");
        }
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes()); // a key of 2⁶⁴ − 1 bytes
        b.extend([0u8; 16]);
        assert!(format_error(&b).contains("truncated"));
        // An array claiming 2⁶⁰ elements.
        let mut arr = 4u32.to_le_bytes().to_vec();
        arr.extend((1u64 << 60).to_le_bytes());
        let b = gguf_bytes(3, &[kv("x", 9, &arr)], &[]);
        assert!(format_error(&b).contains("claims"));
        // A tensor whose data would run past the end of the file.
        let b = gguf_bytes(3, &[], &[("t", &[1 << 40, 1 << 20], 0, &[0u8; 4])]);
        assert!(format_error(&b).contains("truncated"));
        // Dimensions whose product overflows.
        let b = gguf_bytes(3, &[], &[("t", &[u64::MAX, 3], 0, &[0u8; 4])]);
        assert!(format_error(&b).contains("overflow"));
        // Too many dimensions, unknown value type.
        let b = gguf_bytes(3, &[], &[("t", &[1, 1, 1, 1, 1], 0, &[0u8; 4])]);
        assert!(format_error(&b).contains("dimensions"));
        let b = gguf_bytes(3, &[kv("x", 99, &[0u8; 8])], &[]);
        assert!(format_error(&b).contains("unknown value type"));
    }

    #[test]
    fn unsupported_type_and_missing_file() {
        let b = gguf_bytes(3, &[], &[("t", &[256], 10, &[0u8; 84])]);
        let f = write(&b);
        let g = Gguf::open(f.path()).expect("the table parses");
        let err = g.tensor_f32("t", None).expect_err("Q2_K is not read");
        assert!(err.to_string().contains("Q2_K"), "{err}");
        assert!(matches!(
            Gguf::open(Path::new("/nonexistent/x.gguf")),
            Err(ModelError::Io { .. })
        ));
    }
}
