//! Real models: file readers (GGUF, safetensors), tokenizers and forward passes with hooks.
//!
//! Two families are supported (see `docs/models.md`):
//!
//! - a llama-architecture **decoder** stored as one GGUF file (e.g. SmolLM2-135M-Instruct),
//! - a BERT **encoder** stored as a folder with `config.json`, `model.safetensors` and
//!   `tokenizer.json` (e.g. all-MiniLM-L6-v2).
//!
//! Both implement [`Model`]. Activations stay float32; the attention of every layer runs
//! through attnscope's own kernels (`crate::kernel`), dense or restricted to a pattern.

mod bert;
pub mod gguf;
pub mod linalg;
pub mod llama;

pub use bert::Bert;

use crate::inputs::Qkv;
use crate::kernel::{run_kernel, KernelKind};
use crate::pattern::{Pattern, PatternKind, PatternParams, DEFAULT_BLOCK};
use ndarray::{s, Array2, ArrayView3};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Which architecture a model file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama-style decoder (causal): RMSNorm, rotary embeddings, grouped-query attention, SwiGLU.
    Llama,
    /// BERT encoder (bidirectional): LayerNorm, learned positions, GELU.
    Bert,
}

/// The shape of a loaded model (`attnscope model info`, docs/contract.md section 6).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// Architecture.
    pub arch: Arch,
    /// Transformer layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Key/value heads per layer (`heads` without grouped-query attention).
    pub kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Whether attention is causal (decoder).
    pub causal: bool,
    /// Vocabulary size.
    pub vocab: usize,
    /// Largest number of positions the model was trained for.
    pub max_positions: usize,
    /// Width of the residual stream.
    pub hidden: usize,
}

/// Token ids exactly as the model is run on them, with the text of each token.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tokens {
    /// Token ids, special tokens the tokenizer adds included.
    pub ids: Vec<u32>,
    /// The text of each token (same length as `ids`).
    pub tokens: Vec<String>,
}

/// How the attention of each layer is computed in a forward pass.
#[derive(Clone, Copy, Debug)]
pub enum Attention<'a> {
    /// Full attention (causal for a decoder).
    Dense,
    /// Every layer restricted to this pattern (built at the sequence's n; for a causal model
    /// the caller passes a pattern already intersected with `causal`).
    Pattern(&'a Pattern),
    /// Layer `l` restricted to `patterns[l % len]` (`None` = dense), e.g. GPT-3's alternating
    /// dense / banded schedule.
    PerLayer(&'a [Option<Pattern>]),
}

impl<'a> Attention<'a> {
    /// The pattern layer `layer` runs with (`None` = dense).
    pub fn for_layer(&self, layer: usize) -> Option<&'a Pattern> {
        match *self {
            Attention::Dense => None,
            Attention::Pattern(p) => Some(p),
            Attention::PerLayer([]) => None,
            Attention::PerLayer(list) => list[layer % list.len()].as_ref(),
        }
    }
}

/// Observes a forward pass layer by layer.
pub trait Hooks {
    /// The attention inputs of layer `layer`: `q` is `(heads, n, head_dim)` (after rotary
    /// embedding for llama), `k` and `v` are `(kv_heads, n, head_dim)`; query head `h` reads
    /// KV head `h / (heads / kv_heads)`. Exactly what enters `softmax(q kᵀ / √head_dim) v`.
    fn on_attention(
        &mut self,
        _layer: usize,
        _q: ArrayView3<'_, f32>,
        _k: ArrayView3<'_, f32>,
        _v: ArrayView3<'_, f32>,
    ) {
    }

    /// Whether the pass should stop (checked between layers); the pass then returns
    /// [`ModelError::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// Hooks that observe nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// A loaded model.
pub trait Model: Send + Sync {
    /// Shape of the model.
    fn info(&self) -> &ModelInfo;

    /// Tokenizes `text` exactly as the model is run on it (special tokens included), cut to
    /// at most `max_tokens` tokens. An empty text is an error.
    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Tokens, ModelError>;

    /// Runs the model on `ids`, every layer's attention as `attention` says, and returns the
    /// last hidden states `(n, hidden)` (after the final norm for llama; BERT's last layer).
    fn forward(
        &self,
        ids: &[u32],
        attention: Attention<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<Array2<f32>, ModelError>;

    /// Next-token logits `(rows, vocab)` of the given hidden-state rows (decoder only:
    /// `None` for an encoder).
    fn logits(&self, hidden: ndarray::ArrayView2<'_, f32>) -> Option<Array2<f32>>;

    /// The text of token `id`.
    fn token_text(&self, id: u32) -> String;
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The path does not exist or cannot be read.
    #[error("cannot read model {path}: {source}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a model attnscope can read (truncated, bad magic, unsupported type…).
    #[error("{path}: {message}")]
    Format {
        /// The path given.
        path: PathBuf,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// A bad request (empty text, layer or head out of range…).
    #[error("{0}")]
    Input(String),
    /// The pass was cancelled through [`Hooks::cancelled`].
    #[error("cancelled")]
    Cancelled,
    /// An attention kernel failed.
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
}

/// Loads the model at `path`: a `.gguf` file (llama) or a folder with `config.json`,
/// `model.safetensors` and `tokenizer.json` (BERT).
pub fn load(path: &Path) -> Result<Box<dyn Model>, ModelError> {
    let meta = std::fs::metadata(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(Box::new(Bert::load(path)?));
    }
    Ok(Box::new(llama::Llama::load(path)?))
}

/// The kernel a forward pass runs for pattern `p`: `dense` when `p` allows every pair,
/// else `permuted` where it applies (bands and residue classes), else `block`.
pub fn attention_kernel(p: &Pattern) -> KernelKind {
    let n = p.n() as u64;
    if p.nnz() == n * n {
        KernelKind::Dense
    } else if KernelKind::Permuted.supports(p) {
        KernelKind::Permuted
    } else {
        KernelKind::Block
    }
}

/// Full attention over `n` tokens as a pattern: dense, intersected with `j ≤ i` when `causal`.
pub fn dense_pattern(n: usize, causal: bool) -> Result<Pattern, ModelError> {
    PatternParams::new(PatternKind::Dense, n)
        .causal(causal)
        .build()
        .map_err(|e| ModelError::Input(e.to_string()))
}

/// Attention of every query head through attnscope's kernels: `q` is `(heads, n, head_dim)`,
/// `k` and `v` are `(kv_heads, n, head_dim)` (query head `h` reads KV head
/// `h / (heads / kv_heads)`), `pattern` restricts every head (`None`: dense, causal when
/// `causal`). Returns `(n, heads · head_dim)`, head `h` in columns `h · head_dim ..`.
pub fn attend_heads(
    q: ArrayView3<'_, f32>,
    k: ArrayView3<'_, f32>,
    v: ArrayView3<'_, f32>,
    pattern: Option<&Pattern>,
    causal: bool,
) -> Result<Array2<f32>, ModelError> {
    let (heads, n, hd) = q.dim();
    let kv_heads = k.dim().0;
    if kv_heads == 0 || heads % kv_heads != 0 || k.dim() != v.dim() || k.dim().1 != n {
        return Err(ModelError::Input(format!(
            "attention inputs disagree: q {:?}, k {:?}, v {:?}",
            q.dim(),
            k.dim(),
            v.dim()
        )));
    }
    let dense;
    let p = match pattern {
        Some(p) => p,
        None => {
            dense = dense_pattern(n, causal)?;
            &dense
        }
    };
    let kind = attention_kernel(p);
    let group = heads / kv_heads;
    let outs = (0..heads)
        .into_par_iter()
        .map(|h| {
            let qkv = Qkv {
                q: q.index_axis(ndarray::Axis(0), h).to_owned(),
                k: k.index_axis(ndarray::Axis(0), h / group).to_owned(),
                v: v.index_axis(ndarray::Axis(0), h / group).to_owned(),
            };
            run_kernel(kind, p, &qkv, None, DEFAULT_BLOCK)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ctx = Array2::<f32>::zeros((n, heads * hd));
    for (h, o) in outs.iter().enumerate() {
        ctx.slice_mut(s![.., h * hd..(h + 1) * hd]).assign(o);
    }
    Ok(ctx)
}

/// File name of the SmolLM2 decoder inside a models folder.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Folder name of the all-MiniLM-L6-v2 encoder inside a models folder.
pub const MINILM_DIR: &str = "all-MiniLM-L6-v2";

/// The folders searched for models, in order: `$ATTNSCOPE_MODELS`, then `models/` in the
/// current folder, then `models/` beside the crate (where `scripts/get-models.sh` puts them).
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("ATTNSCOPE_MODELS") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    dirs
}

/// The first existing `name` (file or folder) in [`model_dirs`].
pub fn find(name: &str) -> Option<PathBuf> {
    model_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.exists())
}
