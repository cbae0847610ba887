//! A BERT encoder read from a folder with `config.json`, `model.safetensors` and
//! `tokenizer.json` (e.g. all-MiniLM-L6-v2), and its forward pass.
//!
//! The forward pass, per token row `x` of the residual stream (all float32):
//!
//! ```text
//! x = LayerNorm(word[id] + position[t] + token_type[0])
//! per layer:
//!     q, k, v = x Wq + bq, x Wk + bk, x Wv + bv         split into heads of head_dim columns
//!     a       = softmax(q kᵀ / √head_dim  [+ pattern mask]) v   per head, attnscope's kernels
//!     x       = LayerNorm(x + a Wo + bo)
//!     x       = LayerNorm(x + GELU(x W1 + b1) W2 + b2)      GELU with the exact erf
//! ```
//!
//! The weights stay as the file stores them, `(out, in)` (PyTorch `Linear`), with Q, K and V
//! stacked so that one product `x · Wᵀ` ([`linalg::linear`]) gives all three.

use super::linalg::{self, linear};
use super::{attend_heads, Arch, Attention, Hooks, Model, ModelError, ModelInfo, Tokens};
use ndarray::{s, Array1, Array2, Array3, ArrayView2, Axis};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::path::{Path, PathBuf};

/// The fields of `config.json` the encoder needs.
#[derive(Debug, serde::Deserialize)]
struct Config {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    position_embedding_type: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// LayerNorm weights: `y = (x − mean) / sqrt(var + eps) · weight + bias` per row.
struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// One encoder layer, weights `(out, in)`.
struct Layer {
    /// `(3 · hidden, hidden)`: Q, K, V projections stacked.
    qkv_w: Array2<f32>,
    /// `3 · hidden`.
    qkv_b: Vec<f32>,
    /// `(hidden, hidden)`.
    out_w: Array2<f32>,
    out_b: Vec<f32>,
    attn_norm: LayerNorm,
    /// `(intermediate, hidden)`.
    ff_in_w: Array2<f32>,
    ff_in_b: Vec<f32>,
    /// `(hidden, intermediate)`.
    ff_out_w: Array2<f32>,
    ff_out_b: Vec<f32>,
    ff_norm: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    info: ModelInfo,
    tokenizer: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
    eps: f32,
    /// `(vocab, hidden)`.
    word: Array2<f32>,
    /// `(max_positions, hidden)`.
    position: Array2<f32>,
    /// Token type 0 (every token is in the first segment).
    token_type: Array1<f32>,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// Reads and checks the tensors of `model.safetensors`.
struct Weights<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
    /// `""` or `"bert."`, whichever the file's names use.
    prefix: &'static str,
}

impl<'a> Weights<'a> {
    fn format(&self, message: String) -> ModelError {
        ModelError::Format {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn view(&self, name: &str) -> Result<TensorView<'a>, ModelError> {
        let full = format!("{}{name}", self.prefix);
        self.st
            .tensor(&full)
            .map_err(|_| self.format(format!("tensor {full:?} is missing; expected a BERT checkpoint (embeddings.*, encoder.layer.N.*)")))
    }

    /// Tensor `name` as float32 values, checked to have `shape`.
    fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let t = self.view(name)?;
        if t.shape() != shape {
            return Err(self.format(format!(
                "tensor {}{name} has shape {:?}; config.json implies {shape:?}",
                self.prefix,
                t.shape()
            )));
        }
        let data = t.data();
        let out: Vec<f32> = match t.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.format(format!(
                    "tensor {}{name} has type {other:?}; expected F32, F16 or BF16",
                    self.prefix
                )))
            }
        };
        Ok(out)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        self.values(name, &[len])
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>, ModelError> {
        let v = self.values(name, &[rows, cols])?;
        Array2::from_shape_vec((rows, cols), v).map_err(|e| self.format(e.to_string()))
    }

    fn norm(&self, name: &str, len: usize) -> Result<LayerNorm, ModelError> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{name}.weight"), len)?,
            bias: self.vector(&format!("{name}.bias"), len)?,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Bert {
    /// Loads the encoder in folder `dir` (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let file = |name: &str| -> Result<PathBuf, ModelError> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::Format {
                    path: dir.to_path_buf(),
                    message: format!(
                        "the folder has no {name}; a BERT model folder holds config.json, model.safetensors and tokenizer.json"
                    ),
                })
            }
        };
        let config_path = file("config.json")?;
        let weights_path = file("model.safetensors")?;
        let tokenizer_path = file("tokenizer.json")?;

        let config_text = read(&config_path)?;
        let cfg: Config = serde_json::from_slice(&config_text).map_err(|e| ModelError::Format {
            path: config_path.clone(),
            message: format!("not a valid BERT config.json: {e}"),
        })?;
        check_config(&cfg, &config_path)?;

        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::Format {
                path: tokenizer_path.clone(),
                message: format!("not a valid tokenizer.json: {e}"),
            })?;
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Format {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let special = |name: &str| {
            tokenizer
                .token_to_id(name)
                .ok_or_else(|| ModelError::Format {
                    path: tokenizer_path.clone(),
                    message: format!("the vocabulary has no {name} token"),
                })
        };
        let (cls, sep) = (special("[CLS]")?, special("[SEP]")?);

        let bytes = read(&weights_path)?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Format {
            path: weights_path.clone(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_ok() {
            ""
        } else {
            "bert."
        };
        let w = Weights {
            path: &weights_path,
            st,
            prefix,
        };
        let h = cfg.hidden_size;
        let word = w.matrix("embeddings.word_embeddings.weight", cfg.vocab_size, h)?;
        let position = w.matrix(
            "embeddings.position_embeddings.weight",
            cfg.max_position_embeddings,
            h,
        )?;
        let types = w.view("embeddings.token_type_embeddings.weight")?;
        let type_rows = types.shape().first().copied().unwrap_or(0).max(1);
        let token_type = w
            .matrix("embeddings.token_type_embeddings.weight", type_rows, h)?
            .row(0)
            .to_owned();
        let embed_norm = w.norm("embeddings.LayerNorm", h)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| load_layer(&w, l, h, cfg.intermediate_size))
            .collect::<Result<Vec<_>, _>>()?;

        let heads = cfg.num_attention_heads;
        let info = ModelInfo {
            arch: Arch::Bert,
            layers: cfg.num_hidden_layers,
            heads,
            kv_heads: heads,
            head_dim: h / heads,
            causal: false,
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
            hidden: h,
        };
        Ok(Self {
            info,
            tokenizer,
            cls,
            sep,
            eps: cfg.layer_norm_eps as f32,
            word,
            position,
            token_type,
            embed_norm,
            layers,
        })
    }

    /// Runs one encoder layer on the residual stream `x` in place.
    fn layer(
        &self,
        l: usize,
        x: &mut Array2<f32>,
        attention: Attention<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<(), ModelError> {
        let layer = &self.layers[l];
        let (n, h) = x.dim();
        let (heads, hd) = (self.info.heads, self.info.head_dim);
        let qkv = linear(x.view(), layer.qkv_w.view(), Some(&layer.qkv_b));
        // (n, 3, heads, hd) → three (heads, n, hd) arrays in standard layout.
        let split = |part: usize| -> Array3<f32> {
            let cols = qkv.slice(s![.., part * h..(part + 1) * h]);
            let r = cols
                .into_shape_with_order((n, heads, hd))
                .map(|a| a.permuted_axes([1, 0, 2]).as_standard_layout().into_owned());
            match r {
                Ok(a) => a,
                // Not reachable: a column slice of a standard matrix reshapes row by row; copy.
                Err(_) => Array3::from_shape_fn((heads, n, hd), |(hh, i, c)| {
                    qkv[[i, part * h + hh * hd + c]]
                }),
            }
        };
        let (q, k, v) = (split(0), split(1), split(2));
        hooks.on_attention(l, q.view(), k.view(), v.view());
        let ctx = attend_heads(q.view(), k.view(), v.view(), attention.for_layer(l), false)?;
        let mut y = linear(ctx.view(), layer.out_w.view(), Some(&layer.out_b));
        y += &*x;
        let y = norm(&y, &layer.attn_norm, self.eps);
        let mut f = linear(y.view(), layer.ff_in_w.view(), Some(&layer.ff_in_b));
        f.par_mapv_inplace(gelu);
        let mut z = linear(f.view(), layer.ff_out_w.view(), Some(&layer.ff_out_b));
        z += &y;
        let z = norm(&z, &layer.ff_norm, self.eps);
        debug_assert_eq!(z.dim(), (n, h));
        *x = z;
        Ok(())
    }
}

fn check_config(cfg: &Config, path: &Path) -> Result<(), ModelError> {
    let bad = |message: String| ModelError::Format {
        path: path.to_path_buf(),
        message,
    };
    if let Some(t) = &cfg.model_type {
        if t != "bert" {
            return Err(bad(format!(
                "model_type is {t:?}; attnscope reads BERT encoders (\"bert\") from a folder"
            )));
        }
    }
    if cfg.hidden_size == 0
        || cfg.num_attention_heads == 0
        || cfg.num_hidden_layers == 0
        || cfg.intermediate_size == 0
        || cfg.max_position_embeddings == 0
        || cfg.vocab_size == 0
    {
        return Err(bad(
            "hidden_size, num_attention_heads, num_hidden_layers, intermediate_size, max_position_embeddings and vocab_size must all be ≥ 1".into(),
        ));
    }
    if cfg.hidden_size % cfg.num_attention_heads != 0 {
        return Err(bad(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            cfg.hidden_size, cfg.num_attention_heads
        )));
    }
    if cfg.hidden_act != "gelu" {
        return Err(bad(format!(
            "hidden_act is {:?}; attnscope implements \"gelu\" (exact erf)",
            cfg.hidden_act
        )));
    }
    if let Some(t) = &cfg.position_embedding_type {
        if t != "absolute" {
            return Err(bad(format!(
                "position_embedding_type is {t:?}; attnscope implements \"absolute\""
            )));
        }
    }
    if !(cfg.layer_norm_eps.is_finite() && cfg.layer_norm_eps >= 0.0) {
        return Err(bad(format!(
            "layer_norm_eps {} is not a non-negative number",
            cfg.layer_norm_eps
        )));
    }
    Ok(())
}

fn load_layer(w: &Weights<'_>, l: usize, h: usize, inter: usize) -> Result<Layer, ModelError> {
    let p = format!("encoder.layer.{l}");
    let q = w.matrix(&format!("{p}.attention.self.query.weight"), h, h)?;
    let k = w.matrix(&format!("{p}.attention.self.key.weight"), h, h)?;
    let v = w.matrix(&format!("{p}.attention.self.value.weight"), h, h)?;
    let qkv_w = ndarray::concatenate(Axis(0), &[q.view(), k.view(), v.view()])
        .map_err(|e| w.format(e.to_string()))?;
    let mut qkv_b = w.vector(&format!("{p}.attention.self.query.bias"), h)?;
    qkv_b.extend(w.vector(&format!("{p}.attention.self.key.bias"), h)?);
    qkv_b.extend(w.vector(&format!("{p}.attention.self.value.bias"), h)?);
    Ok(Layer {
        qkv_w,
        qkv_b,
        out_w: w.matrix(&format!("{p}.attention.output.dense.weight"), h, h)?,
        out_b: w.vector(&format!("{p}.attention.output.dense.bias"), h)?,
        attn_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
        ff_in_w: w.matrix(&format!("{p}.intermediate.dense.weight"), inter, h)?,
        ff_in_b: w.vector(&format!("{p}.intermediate.dense.bias"), inter)?,
        ff_out_w: w.matrix(&format!("{p}.output.dense.weight"), h, inter)?,
        ff_out_b: w.vector(&format!("{p}.output.dense.bias"), h)?,
        ff_norm: w.norm(&format!("{p}.output.LayerNorm"), h)?,
    })
}

/// LayerNorm of every row of `x`.
fn norm(x: &Array2<f32>, n: &LayerNorm, eps: f32) -> Array2<f32> {
    linalg::layer_norm(x.view(), &n.weight, &n.bias, eps)
}

/// GELU with the exact error function: `x · (1 + erf(x / √2)) / 2`.
pub(crate) fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
}

impl Model for Bert {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Tokens, ModelError> {
        let limit = max_tokens.min(self.info.max_positions);
        if limit < 3 {
            return Err(ModelError::Input(format!(
                "--max-tokens {max_tokens} leaves no room for a word: a BERT sequence is [CLS] … [SEP], so at least 3 tokens"
            )));
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Input(format!("the text could not be tokenized: {e}")))?;
        if enc.get_ids().is_empty() {
            return Err(ModelError::Input(
                "the text is empty: it has no tokens (give a non-empty --text FILE or --prompt)"
                    .into(),
            ));
        }
        let keep = enc.get_ids().len().min(limit - 2);
        let mut ids = Vec::with_capacity(keep + 2);
        let mut tokens = Vec::with_capacity(keep + 2);
        ids.push(self.cls);
        tokens.push("[CLS]".to_string());
        ids.extend_from_slice(&enc.get_ids()[..keep]);
        tokens.extend(enc.get_tokens()[..keep].iter().cloned());
        ids.push(self.sep);
        tokens.push("[SEP]".to_string());
        Ok(Tokens { ids, tokens })
    }

    fn forward(
        &self,
        ids: &[u32],
        attention: Attention<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<Array2<f32>, ModelError> {
        let n = ids.len();
        if n == 0 {
            return Err(ModelError::Input("no tokens to run the model on".into()));
        }
        if n > self.info.max_positions {
            return Err(ModelError::Input(format!(
                "{n} tokens is more than the {} positions this model was trained for",
                self.info.max_positions
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.info.vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.info.vocab
            )));
        }
        let h = self.info.hidden;
        let mut x = Array2::<f32>::zeros((n, h));
        for (t, (mut row, &id)) in x.outer_iter_mut().zip(ids).enumerate() {
            row.assign(&self.word.row(id as usize));
            row += &self.position.row(t);
            row += &self.token_type;
        }
        let mut x = norm(&x, &self.embed_norm, self.eps);
        for l in 0..self.layers.len() {
            if hooks.cancelled() {
                return Err(ModelError::Cancelled);
            }
            self.layer(l, &mut x, attention, hooks)?;
        }
        Ok(x)
    }

    fn logits(&self, _hidden: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        None
    }

    fn token_text(&self, id: u32) -> String {
        self.tokenizer.id_to_token(id).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_uses_the_exact_erf() {
        // Φ(1) = 0.8413447, so GELU(1) = Φ(1) and GELU(−1) = −(1 − Φ(1)); the tanh
        // approximation would give 0.8411920.
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) + 0.158_655_3).abs() < 1e-6);
    }
}
