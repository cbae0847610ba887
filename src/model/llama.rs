//! The llama-architecture decoder read from a GGUF file (e.g. SmolLM2-135M-Instruct) and its
//! forward pass, written here.
//!
//! Per layer, on the residual stream `x` `(n, hidden)`:
//!
//! ```text
//! h = RMSNorm(x) · attn_norm            RMSNorm(x) = x / sqrt(mean(x²) + eps)
//! q, k, v = h Wqᵀ, h Wkᵀ, h Wvᵀ         one GEMM with the three weights stacked
//! q, k = rope(q), rope(k)               adjacent pairs (x[2i], x[2i+1]) turned by pos · θ^(−2i/d)
//! o_h = softmax(q_h k_gᵀ / √d) v_g      query head h reads KV head g = h / (heads / kv_heads),
//!                                       through attnscope's kernels (causal, or a pattern)
//! x += o Woᵀ
//! h = RMSNorm(x) · ffn_norm
//! x += (silu(h Wgateᵀ) ⊙ h Wupᵀ) Wdownᵀ
//! ```
//!
//! then a final RMSNorm; logits are `hidden · Eᵀ` with `E` the token embeddings (tied) or
//! `output.weight`. The GGUF converter permuted the rows of Wq and Wk so that rotary pairs are
//! adjacent; rotating halves instead runs but silently corrupts every attention map.
//! Weights are dequantised to f32 at load; activations stay f32.

use super::gguf::{Gguf, MetaValue};
use super::linalg::{matmul_t, rms_norm};
use super::{Arch, Attention, Hooks, Model, ModelError, ModelInfo, Tokens};

use crate::pattern::{Pattern, PatternKind, PatternParams};
use ndarray::{s, Array2, Array3, ArrayView2, Axis};
use rayon::prelude::*;
use std::path::Path;

/// One transformer layer's weights, f32, each matrix `(out, in)` row-major.
struct Layer {
    attn_norm: Vec<f32>,
    /// Wq, Wk, Wv stacked: `(heads·d + 2·kv_heads·d, hidden)`.
    wqkv: Array2<f32>,
    /// `(hidden, heads·d)`.
    wo: Array2<f32>,
    ffn_norm: Vec<f32>,
    /// Wgate and Wup stacked: `(2·ff, hidden)`.
    wgate_up: Array2<f32>,
    /// `(hidden, ff)`.
    wdown: Array2<f32>,
}

/// A llama decoder loaded from GGUF.
pub struct Llama {
    info: ModelInfo,
    tokenizer: tokenizers::Tokenizer,
    bos: Option<u32>,
    /// RMSNorm epsilon.
    eps: f32,
    /// Rotary base θ.
    rope_theta: f64,
    /// Dimensions of each head that rotate (the first `rope_dim`).
    rope_dim: usize,
    /// Position divisor of linear rope scaling (1 without scaling).
    rope_scale: f64,
    /// Feed-forward width.
    ff: usize,
    /// Token embeddings `(vocab, hidden)`.
    embed: Array2<f32>,
    /// Output projection `(vocab, hidden)` when not tied to `embed`.
    output: Option<Array2<f32>>,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
}

impl Llama {
    /// Loads the llama decoder in the GGUF file at `path`.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let g = Gguf::open(path)?;
        let arch = g.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(g.error(format!(
                "architecture {arch} is not supported; attnscope reads llama-architecture GGUF files"
            )));
        }
        let key = |k: &str| format!("llama.{k}");
        let dim = |k: &str| -> Result<usize, ModelError> {
            let v = g.meta_u64(&key(k))?;
            if v == 0 || v > 1 << 20 {
                return Err(g.error(format!("llama.{k} = {v} is out of range")));
            }
            Ok(v as usize)
        };
        let layers = dim("block_count")?;
        let hidden = dim("embedding_length")?;
        let heads = dim("attention.head_count")?;
        let kv_heads = match g.meta(&key("attention.head_count_kv")) {
            None => heads,
            Some(_) => dim("attention.head_count_kv")?,
        };
        let ff = dim("feed_forward_length")?;
        if hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(g.error(format!(
                "{heads} heads and {kv_heads} KV heads do not divide a width of {hidden}"
            )));
        }
        let head_dim = hidden / heads;
        let rope_dim = match g.meta(&key("rope.dimension_count")) {
            None => head_dim,
            Some(_) => dim("rope.dimension_count")?,
        };
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(g.error(format!(
                "rope.dimension_count {rope_dim} does not fit a head of {head_dim}"
            )));
        }
        let rope_scale = match g
            .meta(&key("rope.scaling.type"))
            .and_then(MetaValue::as_str)
        {
            None | Some("none") => 1.0,
            Some("linear") => g.meta_f64_or(&key("rope.scaling.factor"), 1.0)?.max(1e-6),
            Some(other) => {
                return Err(g.error(format!(
                    "rope scaling {other} is not supported (none or linear)"
                )))
            }
        };
        let eps = g.meta_f64_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)? as f32;
        let rope_theta = g.meta_f64_or(&key("rope.freq_base"), 10_000.0)?;
        let max_positions = g.meta_u64(&key("context_length")).unwrap_or(2048) as usize;

        let tok = g.tokenizer()?;
        let h = hidden as u64;
        let embed_t = g
            .tensor("token_embd.weight")
            .ok_or_else(|| g.error("tensor token_embd.weight is missing"))?;
        let vocab = embed_t.dims.get(1).copied().unwrap_or(0) as usize;
        if vocab == 0 || tok.tokenizer.get_vocab_size(true) > vocab {
            return Err(g.error(format!(
                "the tokenizer has {} tokens but token_embd.weight has {vocab} rows",
                tok.tokenizer.get_vocab_size(true)
            )));
        }
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<Array2<f32>, ModelError> {
            let data = g.tensor_f32(name, Some(&[cols as u64, rows as u64][..]))?;
            Array2::from_shape_vec((rows, cols), data).map_err(|e| g.error(e.to_string()))
        };
        let vector = |name: &str| g.tensor_f32(name, Some(&[h][..]));
        let embed = matrix("token_embd.weight", vocab, hidden)?;
        let output = match g.tensor("output.weight") {
            Some(_) => Some(matrix("output.weight", vocab, hidden)?),
            None => None,
        };
        let (qd, kvd) = (heads * head_dim, kv_heads * head_dim);
        // Dequantises `parts` (name, rows) one under the other into one `(Σ rows, hidden)`.
        let stacked = |parts: &[(String, usize)]| -> Result<Array2<f32>, ModelError> {
            let rows: usize = parts.iter().map(|p| p.1).sum();
            let mut out = Array2::zeros((rows, hidden));
            let flat = out
                .as_slice_mut()
                .ok_or_else(|| g.error("internal: a new array is not contiguous"))?;
            let mut start = 0;
            for (name, r) in parts {
                let end = start + r * hidden;
                g.tensor_into(name, Some(&[h, *r as u64][..]), &mut flat[start..end])?;
                start = end;
            }
            Ok(out)
        };
        let mut blocks = Vec::with_capacity(layers);
        for l in 0..layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            blocks.push(Layer {
                attn_norm: vector(&name("attn_norm"))?,
                wqkv: stacked(&[
                    (name("attn_q"), qd),
                    (name("attn_k"), kvd),
                    (name("attn_v"), kvd),
                ])?,
                wo: matrix(&name("attn_output"), hidden, qd)?,
                ffn_norm: vector(&name("ffn_norm"))?,
                wgate_up: stacked(&[(name("ffn_gate"), ff), (name("ffn_up"), ff)])?,
                wdown: matrix(&name("ffn_down"), hidden, ff)?,
            });
        }
        let final_norm = vector("output_norm.weight")?;
        Ok(Llama {
            info: ModelInfo {
                arch: Arch::Llama,
                layers,
                heads,
                kv_heads,
                head_dim,
                causal: true,
                vocab,
                max_positions,
                hidden,
            },
            tokenizer: tok.tokenizer,
            bos: tok.bos,
            eps,
            rope_theta,
            rope_dim,
            rope_scale,
            ff,
            embed,
            output,
            layers: blocks,
            final_norm,
        })
    }

    /// `(cos, sin)` tables `(n, rope_dim / 2)` of the rotary angles `pos · θ^(−2i/rope_dim)`.
    fn rope_tables(&self, n: usize) -> (Array2<f32>, Array2<f32>) {
        let half = self.rope_dim / 2;
        let mut cos = Array2::zeros((n, half));
        let mut sin = Array2::zeros((n, half));
        for p in 0..n {
            for i in 0..half {
                let inv = self.rope_theta.powf(-2.0 * i as f64 / self.rope_dim as f64);
                let angle = p as f64 / self.rope_scale * inv;
                cos[[p, i]] = angle.cos() as f32;
                sin[[p, i]] = angle.sin() as f32;
            }
        }
        (cos, sin)
    }

    /// Splits the stacked projection `qkv` `(n, (heads + 2·kv_heads)·d)` into per-head
    /// `q (heads, n, d)`, `k`, `v (kv_heads, n, d)`, rotating q and k.
    fn split_heads(
        &self,
        qkv: ArrayView2<'_, f32>,
        cos: &Array2<f32>,
        sin: &Array2<f32>,
    ) -> (Array3<f32>, Array3<f32>, Array3<f32>) {
        let (n, d) = (qkv.nrows(), self.info.head_dim);
        let (heads, kv) = (self.info.heads, self.info.kv_heads);
        let mut q = Array3::zeros((heads, n, d));
        let mut k = Array3::zeros((kv, n, d));
        let mut v = Array3::zeros((kv, n, d));
        let half = self.rope_dim / 2;
        let fill = |dst: &mut Array3<f32>, first: usize, rotate: bool| {
            dst.outer_iter_mut()
                .into_par_iter()
                .enumerate()
                .for_each(|(h, mut head)| {
                    let col = (first + h) * d;
                    for (p, mut row) in head.outer_iter_mut().enumerate() {
                        let src = qkv.slice(s![p, col..col + d]);
                        row.assign(&src);
                        if rotate {
                            for i in 0..half {
                                let (c, s) = (cos[[p, i]], sin[[p, i]]);
                                let (a, b) = (row[2 * i], row[2 * i + 1]);
                                row[2 * i] = a * c - b * s;
                                row[2 * i + 1] = a * s + b * c;
                            }
                        }
                    }
                });
        };
        fill(&mut q, 0, true);
        fill(&mut k, heads, true);
        fill(&mut v, heads + kv, false);
        (q, k, v)
    }

    /// Attention output `(n, heads·d)` of one layer, each head through attnscope's kernel for
    /// `pattern`.
    fn attend(
        &self,
        q: &Array3<f32>,
        k: &Array3<f32>,
        v: &Array3<f32>,
        pattern: &Pattern,
    ) -> Result<Array2<f32>, ModelError> {
        // Heads in parallel (each kernel also splits its query tiles over the pool).
        super::attend_heads(q.view(), k.view(), v.view(), Some(pattern), true)
    }
}

/// `x ← silu(gate) ⊙ up` for the stacked `(n, 2·ff)` projection, written into `(n, ff)`.
fn swiglu(gate_up: &Array2<f32>, ff: usize) -> Array2<f32> {
    let n = gate_up.nrows();
    let mut out = Array2::zeros((n, ff));
    out.outer_iter_mut()
        .into_par_iter()
        .zip(gate_up.outer_iter().into_par_iter())
        .for_each(|(mut o, gu)| {
            let (g, u) = gu.split_at(Axis(0), ff);
            for ((o, &g), &u) in o.iter_mut().zip(g.iter()).zip(u.iter()) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
    out
}

impl Model for Llama {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Tokens, ModelError> {
        if text.is_empty() {
            return Err(ModelError::Input("the text is empty".into()));
        }
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::Input(format!("cannot tokenize the text: {e}")))?;
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend_from_slice(enc.get_ids());
        ids.truncate(max_tokens);
        if ids.is_empty() {
            return Err(ModelError::Input("the text gives no tokens".into()));
        }
        let tokens = ids.iter().map(|&id| self.token_text(id)).collect();
        Ok(Tokens { ids, tokens })
    }

    fn forward(
        &self,
        ids: &[u32],
        attention: Attention<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<Array2<f32>, ModelError> {
        let n = ids.len();
        let info = &self.info;
        if n == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= info.vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                info.vocab
            )));
        }
        let dense = PatternParams::new(PatternKind::Dense, n)
            .causal(true)
            .build()
            .map_err(|e| ModelError::Input(e.to_string()))?;
        let (cos, sin) = self.rope_tables(n);
        let mut x = Array2::zeros((n, info.hidden));
        for (mut row, &id) in x.outer_iter_mut().zip(ids) {
            row.assign(&self.embed.row(id as usize));
        }
        for (l, layer) in self.layers.iter().enumerate() {
            if hooks.cancelled() {
                return Err(ModelError::Cancelled);
            }
            let pattern = attention.for_layer(l).unwrap_or(&dense);
            if pattern.n() != n {
                return Err(ModelError::Input(format!(
                    "the pattern has n = {} but the text has {n} tokens",
                    pattern.n()
                )));
            }
            let h = rms_norm(x.view(), &layer.attn_norm, self.eps);
            let mut qkv = Array2::zeros((n, layer.wqkv.nrows()));
            matmul_t(h.view(), layer.wqkv.view(), qkv.view_mut(), false);
            let (q, k, v) = self.split_heads(qkv.view(), &cos, &sin);
            hooks.on_attention(l, q.view(), k.view(), v.view());
            let o = self.attend(&q, &k, &v, pattern)?;
            matmul_t(o.view(), layer.wo.view(), x.view_mut(), true);
            let h = rms_norm(x.view(), &layer.ffn_norm, self.eps);
            let mut gate_up = Array2::zeros((n, 2 * self.ff));
            matmul_t(h.view(), layer.wgate_up.view(), gate_up.view_mut(), false);
            let act = swiglu(&gate_up, self.ff);
            matmul_t(act.view(), layer.wdown.view(), x.view_mut(), true);
        }
        if hooks.cancelled() {
            return Err(ModelError::Cancelled);
        }
        Ok(rms_norm(x.view(), &self.final_norm, self.eps))
    }

    fn logits(&self, hidden: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        let w = self.output.as_ref().unwrap_or(&self.embed);
        let mut out = Array2::zeros((hidden.nrows(), w.nrows()));
        matmul_t(hidden, w.view(), out.view_mut(), false);
        Some(out)
    }

    fn token_text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    //! Tests on the real SmolLM2 file (`crate::model::find(SMOLLM2_FILE)`): under `CI=true` a
    //! missing model fails; elsewhere the test says why and returns. Expected ids and values
    //! come from `scripts/reference_llama.py` (the `gguf` package's dequantisation, a BPE and
    //! a NumPy float32 forward written independently of this file).
    use super::*;
    use crate::inputs::Qkv;
    use crate::kernel::{attention_weights, max_rel_err, reference};
    use crate::model::{find, NoHooks, SMOLLM2_FILE};
    use std::sync::OnceLock;

    fn model() -> Option<&'static Llama> {
        static MODEL: OnceLock<Option<Llama>> = OnceLock::new();
        let m = MODEL.get_or_init(|| {
            let Some(path) = find(SMOLLM2_FILE) else {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{SMOLLM2_FILE} is missing under CI=true: run scripts/get-models.sh"
                );
                return None;
            };
            Some(Llama::load(&path).expect("the SmolLM2 GGUF loads"))
        });
        if m.is_none() {
            eprintln!("skipped: {SMOLLM2_FILE} not found (scripts/get-models.sh fetches it)");
        }
        m.as_ref()
    }

    /// Normwise relative error of `got` against `want`.
    fn rel(got: &[f32], want: &[f64]) -> f64 {
        let norm = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
        let diff = got
            .iter()
            .zip(want)
            .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
        diff / norm
    }

    #[test]
    fn info_from_metadata() {
        let Some(m) = model() else { return };
        let i = m.info();
        assert_eq!(
            (i.layers, i.heads, i.kv_heads, i.head_dim, i.hidden),
            (30, 9, 3, 64, 576)
        );
        assert_eq!((i.vocab, i.max_positions, i.causal), (49152, 8192, true));
        assert_eq!(m.bos, None, "SmolLM2's GGUF says add_bos_token = false");
    }

    #[test]
    fn token_ids_match_the_reference_bpe() {
        let Some(m) = model() else { return };
        let cases: [(&str, &[u32]); 6] = [
            ("The capital of France is", &[504, 3575, 282, 4649, 314]),
            (
                "Hello, world! It's 2024-11-30: 3.14159 × 42 = 131.95…",
                &[
                    19556, 28, 905, 17, 657, 506, 216, 34, 32, 34, 36, 29, 33, 33, 29, 35, 32, 42,
                    216, 35, 30, 33, 36, 33, 37, 41, 15493, 216, 36, 34, 446, 216, 33, 35, 33, 30,
                    41, 37, 2829,
                ],
            ),
            (
                "line one\nline two\n\n  indented\ttab  \n",
                &[
                    1311, 582, 198, 1311, 827, 8866, 641, 6574, 197, 15999, 32057,
                ],
            ),
            (
                "naïve café — 東京 🚀 Привет",
                &[
                    3546, 46494, 37366, 1841, 17097, 247, 126, 16736, 122, 15107, 244, 218, 5470,
                    249, 46879, 16464, 32547,
                ],
            ),
            (
                "<|im_start|>user\nHi!<|im_end|>",
                &[1, 4093, 198, 26843, 17, 2],
            ),
            (
                "don't won't I'm they're we've he'll she'd   x",
                &[
                    12420, 982, 3763, 982, 339, 5248, 502, 2316, 392, 3543, 384, 3060, 1041, 6737,
                    256, 1792,
                ],
            ),
        ];
        for (text, want) in cases {
            let t = m.tokenize(text, 512).expect("tokenize");
            assert_eq!(t.ids, want, "{text:?}");
            assert_eq!(t.tokens.len(), t.ids.len());
        }
        let t = m.tokenize("The capital of France is", 3).expect("cut");
        assert_eq!(t.ids, [504, 3575, 282]);
        assert_eq!(t.tokens, ["The", " capital", " of"]);
        assert!(matches!(m.tokenize("", 10), Err(ModelError::Input(_))));
    }

    /// Layer, q, k, v of one captured layer.
    type Captured = (usize, Array3<f32>, Array3<f32>, Array3<f32>);

    /// Captures q, k, v of every layer listed.
    struct Capture {
        layers: Vec<usize>,
        got: Vec<Captured>,
    }

    impl Hooks for Capture {
        fn on_attention(
            &mut self,
            layer: usize,
            q: ndarray::ArrayView3<'_, f32>,
            k: ndarray::ArrayView3<'_, f32>,
            v: ndarray::ArrayView3<'_, f32>,
        ) {
            if self.layers.contains(&layer) {
                self.got
                    .push((layer, q.to_owned(), k.to_owned(), v.to_owned()));
            }
        }
    }

    #[test]
    fn forward_matches_the_numpy_reference_and_says_paris() {
        let Some(m) = model() else { return };
        let ids = [504, 3575, 282, 4649, 314];
        let mut cap = Capture {
            layers: vec![0, 15, 29],
            got: Vec::new(),
        };
        let hidden = m
            .forward(&ids, Attention::Dense, &mut cap)
            .expect("forward");
        let logits = m.logits(hidden.view()).expect("a decoder has logits");
        let last = logits.row(4);
        let best = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .expect("non-empty");
        assert_eq!(m.token_text(best as u32), " Paris");
        // Values of scripts/reference_llama.py on the same ids (float32 NumPy).
        let picked: Vec<f32> = [7042, 260, 4528, 2250, 1315, 0, 100, 49151]
            .iter()
            .map(|&i| last[i])
            .collect();
        let want_logits = [
            17.37125587463379,
            14.888589859008789,
            13.244969367980957,
            13.00946044921875,
            12.951507568359375,
            1.6136373281478882,
            1.3192152976989746,
            -7.993910789489746,
        ];
        assert!(rel(&picked, &want_logits) < 1e-3, "logits {picked:?}");
        let want_hidden = [
            -0.9730885624885559,
            -2.1336727142333984,
            -0.5213025212287903,
            0.31386786699295044,
            -0.07772098481655121,
            -1.337810754776001,
            -0.05086956545710564,
            0.8459089994430542,
        ];
        let h: Vec<f32> = hidden.row(4).iter().take(8).copied().collect();
        assert!(rel(&h, &want_hidden) < 1e-3, "hidden {h:?}");
        let row = |a: &Array3<f32>, head: usize, pos: usize| -> Vec<f32> {
            a.slice(s![head, pos, ..8]).to_vec()
        };
        let layer = |l: usize| cap.got.iter().find(|g| g.0 == l).expect("captured");
        let want_q15 = [
            1.0437487363815308,
            0.05773767828941345,
            0.3518437147140503,
            -0.47297462821006775,
            -0.15481305122375488,
            -1.9576879739761353,
            -0.1287088692188263,
            -0.8448744416236877,
        ];
        assert!(rel(&row(&layer(15).1, 4, 3), &want_q15) < 1e-3);
        let want_k29 = [
            0.24924780428409576,
            -0.5090688467025757,
            0.15162117779254913,
            0.9283294677734375,
            0.6662505269050598,
            -0.37508565187454224,
            0.015589453279972076,
            -0.4077322781085968,
        ];
        assert!(rel(&row(&layer(29).2, 2, 4), &want_k29) < 1e-3);
        let want_v0 = [
            0.0329156294465065,
            -0.005040658637881279,
            0.054784346371889114,
            0.018025647848844528,
            -0.030784085392951965,
            0.07044060528278351,
            -0.005110275000333786,
            0.00977296382188797,
        ];
        assert!(rel(&row(&layer(0).3, 1, 2), &want_v0) < 1e-3);
    }

    #[test]
    fn attention_of_a_head_equals_the_reference_kernel() {
        let Some(m) = model() else { return };
        let text = "In the beginning the universe was created. This has made a lot of people \
                    very angry and been widely regarded as a bad move. 42 is the answer.";
        let ids = m.tokenize(text, 512).expect("tokenize").ids;
        let n = ids.len();
        let mut cap = Capture {
            layers: vec![3],
            got: Vec::new(),
        };
        m.forward(&ids, Attention::Dense, &mut cap)
            .expect("forward");
        let (_, q, k, v) = &cap.got[0];
        let local = PatternParams::new(PatternKind::Local, n)
            .window(8)
            .causal(true)
            .build()
            .expect("pattern");
        let dense = PatternParams::new(PatternKind::Dense, n)
            .causal(true)
            .build()
            .expect("pattern");
        for p in [&dense, &local] {
            let out = m.attend(q, k, v, p).expect("attend");
            for head in [0, 4, 8] {
                let g = head / 3;
                let qkv = Qkv {
                    q: q.index_axis(Axis(0), head).to_owned(),
                    k: k.index_axis(Axis(0), g).to_owned(),
                    v: v.index_axis(Axis(0), g).to_owned(),
                };
                let want = reference(p, &qkv, None);
                let got = out.slice(s![.., head * 64..(head + 1) * 64]).to_owned();
                assert!(max_rel_err(&got, &want) < 1e-4, "{} head {head}", p.label());
                let w = attention_weights(Some(p), &qkv, None).expect("weights");
                for (i, row) in w.outer_iter().enumerate() {
                    assert!((row.sum() - 1.0).abs() < 1e-5, "row {i}");
                    assert!(row.iter().skip(i + 1).all(|&x| x == 0.0), "causal row {i}");
                }
            }
        }
    }

    #[test]
    fn a_pattern_changes_the_output_and_bad_input_is_refused() {
        let Some(m) = model() else { return };
        let ids: Vec<u32> = m
            .tokenize("one two three four five six seven eight nine ten", 64)
            .expect("tokenize")
            .ids;
        let n = ids.len();
        let dense = m
            .forward(&ids, Attention::Dense, &mut NoHooks)
            .expect("dense");
        let wide = PatternParams::new(PatternKind::Local, n)
            .window(n)
            .causal(true)
            .build()
            .expect("pattern");
        let same = m
            .forward(&ids, Attention::Pattern(&wide), &mut NoHooks)
            .expect("wide");
        assert!(
            max_rel_err(&same, &dense) < 1e-4,
            "a window covering n is dense causal"
        );
        let narrow = PatternParams::new(PatternKind::Local, n)
            .window(1)
            .causal(true)
            .build()
            .expect("pattern");
        let local = m
            .forward(&ids, Attention::Pattern(&narrow), &mut NoHooks)
            .expect("local");
        assert!(max_rel_err(&local, &dense) > 1e-2);
        assert!(matches!(
            m.forward(&[49152], Attention::Dense, &mut NoHooks),
            Err(ModelError::Input(_))
        ));
        assert!(matches!(
            m.forward(&ids[..3], Attention::Pattern(&narrow), &mut NoHooks),
            Err(ModelError::Input(_))
        ));
        struct Stop;
        impl Hooks for Stop {
            fn cancelled(&self) -> bool {
                true
            }
        }
        assert!(matches!(
            m.forward(&ids, Attention::Dense, &mut Stop),
            Err(ModelError::Cancelled)
        ));
    }

    #[test]
    fn a_non_llama_gguf_is_refused() {
        // A GGUF with general.architecture = bert and nothing else.
        let mut f = b"GGUF".to_vec();
        f.extend(3u32.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        f.extend(1u64.to_le_bytes());
        let key = b"general.architecture";
        f.extend((key.len() as u64).to_le_bytes());
        f.extend(key);
        f.extend(8u32.to_le_bytes());
        f.extend(4u64.to_le_bytes());
        f.extend(b"bert");
        let mut file = tempfile::NamedTempFile::new().expect("temp");
        std::io::Write::write_all(&mut file, &f).expect("write");
        match Llama::load(file.path()) {
            Err(ModelError::Format { message, .. }) => assert!(message.contains("bert")),
            other => panic!("expected a format error, got {:?}", other.err()),
        }
    }
}
