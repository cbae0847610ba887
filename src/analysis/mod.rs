//! What a pattern keeps and loses on a real model's attention: the numbers the CLI
//! (`attnscope model mass | quality | next`) and the app's Model tab both show, from one
//! set of functions (see `docs/models.md`).
//!
//! - [`mass_kept`]: per (layer, head), the mean over queries of the dense softmax probability
//!   that falls on keys the pattern allows, and the worst query. Computed from the q and k the
//!   forward pass hands to its hooks, one row tile at a time: no `n × n` matrix is kept, only
//!   two numbers per head. [`head_probabilities`] recomputes one head's full matrix on demand.
//! - [`quality`]: for a decoder, the next-token loss and perplexity with dense (causal) attention
//!   and with every layer restricted to the pattern; for an encoder, the cosine between the
//!   mean-pooled last hidden states of both passes.
//! - [`next_tokens`]: the most probable next tokens after a prompt, under a pattern.
//!
//! Every function takes a [`Progress`] so that a worker thread can show progress and cancel.
//! For a causal model every pattern is intersected with `j ≤ i` ([`for_model`]).

mod capture;
mod mass;

pub use capture::{
    dense_pass, quality_against, reference, tradeoff_family, DensePass, LayerInputs, Reference,
};
pub use mass::{head_probabilities, query_mass, rows_mass, DistanceProfile, HeadMass, LayerMass};

use crate::inputs::Qkv;
use crate::model::{Attention, Hooks, Model, ModelError, ModelInfo};
use crate::pattern::Pattern;
use ndarray::{Array1, Array2, ArrayView2, ArrayView3, Axis};

/// Reports progress of a long analysis and asks whether to stop (the app's worker implements
/// it; the CLI passes [`Silent`]).
pub trait Progress: Sync {
    /// `done` of `total` steps (layers of forward passes) are finished.
    fn step(&self, _done: usize, _total: usize) {}

    /// Whether to stop; the analysis then returns [`ModelError::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that reports nothing and never cancels.
pub struct Silent;
impl Progress for Silent {}

/// Hooks that count layers for a [`Progress`] and hand each layer's q/k/v to `observe`.
struct Observe<'a, F> {
    progress: &'a dyn Progress,
    /// Steps finished before this pass.
    before: usize,
    /// Steps of the whole analysis.
    total: usize,
    observe: F,
}

impl<F> Hooks for Observe<'_, F>
where
    F: FnMut(usize, ArrayView3<'_, f32>, ArrayView3<'_, f32>, ArrayView3<'_, f32>),
{
    fn on_attention(
        &mut self,
        layer: usize,
        q: ArrayView3<'_, f32>,
        k: ArrayView3<'_, f32>,
        v: ArrayView3<'_, f32>,
    ) {
        (self.observe)(layer, q, k, v);
        self.progress.step(self.before + layer + 1, self.total);
    }

    fn cancelled(&self) -> bool {
        self.progress.cancelled()
    }
}

/// One forward pass with progress: steps `before + 1 ..= before + layers` of `total`.
fn pass(
    model: &dyn Model,
    ids: &[u32],
    attention: Attention<'_>,
    progress: &dyn Progress,
    before: usize,
    total: usize,
) -> Result<Array2<f32>, ModelError> {
    let mut hooks = Observe {
        progress,
        before,
        total,
        observe: |_: usize,
                  _: ArrayView3<'_, f32>,
                  _: ArrayView3<'_, f32>,
                  _: ArrayView3<'_, f32>| {},
    };
    model.forward(ids, attention, &mut hooks)
}

/// The pattern a model's attention runs with: `p` itself for an encoder, `p ∩ causal` for a
/// causal model (docs/contract.md section 6).
pub fn for_model(p: &Pattern, info: &ModelInfo) -> Result<Pattern, ModelError> {
    if !info.causal || p.is_causal() {
        return Ok(p.clone());
    }
    p.and_causal().map_err(|e| ModelError::Input(e.to_string()))
}

/// Checks that `ids` is non-empty and that `p` was built for `ids.len()` tokens.
fn check(ids: &[u32], p: &Pattern) -> Result<(), ModelError> {
    if ids.is_empty() {
        return Err(ModelError::Input("the text has no tokens".into()));
    }
    if p.n() != ids.len() {
        return Err(ModelError::Input(format!(
            "the pattern has n = {} but the text has {} tokens; build the pattern at the token count",
            p.n(),
            ids.len()
        )));
    }
    Ok(())
}

/// Mass kept by pattern `p` for every (layer, head) of the dense forward pass on `ids`
/// (docs/contract.md section 6, `model mass`). `p` is intersected with causal for a causal model.
pub fn mass_kept(
    model: &dyn Model,
    ids: &[u32],
    p: &Pattern,
    progress: &dyn Progress,
) -> Result<Vec<LayerMass>, ModelError> {
    check(ids, p)?;
    let info = model.info().clone();
    let p = for_model(p, &info)?;
    let mut layers = Vec::with_capacity(info.layers);
    let mut hooks = Observe {
        progress,
        before: 0,
        total: info.layers,
        observe: |layer: usize,
                  q: ArrayView3<'_, f32>,
                  k: ArrayView3<'_, f32>,
                  _v: ArrayView3<'_, f32>| {
            layers.push(mass::layer_mass(layer, q, k, &p, info.causal));
        },
    };
    model.forward(ids, Attention::Dense, &mut hooks)?;
    Ok(layers)
}

/// Q, K and V of query head `head` of layer `layer` on `ids`, each `(n, head_dim)`: exactly what
/// enters `softmax(q kᵀ / √head_dim) v` (k and v of the KV head that `head` reads). The pass
/// stops after that layer.
pub fn head_qkv(
    model: &dyn Model,
    ids: &[u32],
    layer: usize,
    head: usize,
    progress: &dyn Progress,
) -> Result<Qkv, ModelError> {
    let info = model.info();
    check_head(info, layer, head)?;
    let group = info.heads / info.kv_heads.max(1);
    struct Capture<'a> {
        layer: usize,
        head: usize,
        group: usize,
        progress: &'a dyn Progress,
        total: usize,
        got: Option<Qkv>,
    }
    impl Hooks for Capture<'_> {
        fn on_attention(
            &mut self,
            layer: usize,
            q: ArrayView3<'_, f32>,
            k: ArrayView3<'_, f32>,
            v: ArrayView3<'_, f32>,
        ) {
            self.progress.step(layer + 1, self.total);
            if layer == self.layer {
                let kv = self.head / self.group;
                self.got = Some(Qkv {
                    q: q.index_axis(Axis(0), self.head).to_owned(),
                    k: k.index_axis(Axis(0), kv).to_owned(),
                    v: v.index_axis(Axis(0), kv).to_owned(),
                });
            }
        }
        fn cancelled(&self) -> bool {
            self.got.is_some() || self.progress.cancelled()
        }
    }
    let mut cap = Capture {
        layer,
        head,
        group,
        progress,
        total: layer + 1,
        got: None,
    };
    match model.forward(ids, Attention::Dense, &mut cap) {
        Ok(_) | Err(ModelError::Cancelled) => {}
        Err(e) => return Err(e),
    }
    cap.got.ok_or(ModelError::Cancelled)
}

/// Checks `layer` and `head` against the model's shape.
pub fn check_head(info: &ModelInfo, layer: usize, head: usize) -> Result<(), ModelError> {
    if layer >= info.layers {
        return Err(ModelError::Input(format!(
            "--layer {layer} is out of range: this model has layers 0 to {}",
            info.layers - 1
        )));
    }
    if head >= info.heads {
        return Err(ModelError::Input(format!(
            "--head {head} is out of range: this model has heads 0 to {}",
            info.heads - 1
        )));
    }
    Ok(())
}

/// How well the model does with its attention restricted to a pattern (docs/contract.md section 6,
/// `model quality`): the decoder fields or the encoder field are set.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Quality {
    /// Mean next-token cross-entropy (nats) over positions 1 … n−1, dense causal attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_dense: Option<f64>,
    /// The same with every layer restricted to the pattern (∩ causal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_pattern: Option<f64>,
    /// `exp(loss_dense)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppl_dense: Option<f64>,
    /// `exp(loss_pattern)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppl_pattern: Option<f64>,
    /// Encoder: cosine of the mean-pooled last hidden states, dense vs pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_cosine: Option<f64>,
}

/// Rows of logits computed at once when scoring a text (bounds memory to
/// `LOGIT_ROWS × vocab` floats).
const LOGIT_ROWS: usize = 128;

/// Mean next-token cross-entropy (nats) of `ids` given the last hidden states `hidden`:
/// logits at position t predict `ids[t + 1]`, averaged over t = 0 … n−2.
pub fn next_token_loss(
    model: &dyn Model,
    hidden: ArrayView2<'_, f32>,
    ids: &[u32],
) -> Result<f64, ModelError> {
    let n = ids.len();
    if n < 2 || hidden.nrows() != n {
        return Err(ModelError::Input(format!(
            "the loss needs at least 2 tokens (got {n})"
        )));
    }
    let mut total = 0f64;
    let mut start = 0;
    while start < n - 1 {
        let end = (start + LOGIT_ROWS).min(n - 1);
        let logits = model
            .logits(hidden.slice(ndarray::s![start..end, ..]))
            .ok_or_else(|| ModelError::Input("this model has no next-token logits".into()))?;
        for (r, row) in logits.outer_iter().enumerate() {
            let target = ids[start + r + 1] as usize;
            let Some(&logit) = row.get(target) else {
                return Err(ModelError::Input(format!(
                    "token id {target} is outside the vocabulary of {} tokens",
                    row.len()
                )));
            };
            total += log_sum_exp(row.iter().copied()) - logit as f64;
        }
        start = end;
    }
    Ok(total / (n - 1) as f64)
}

/// `ln Σ exp(x)`, in f64 with the maximum subtracted.
fn log_sum_exp(xs: impl Iterator<Item = f32> + Clone) -> f64 {
    let max = xs.clone().fold(f32::NEG_INFINITY, f32::max) as f64;
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.map(|x| (x as f64 - max).exp()).sum::<f64>().ln()
}

/// Mean of the rows of `hidden` (mean pooling over every token).
pub fn mean_pool(hidden: ArrayView2<'_, f32>) -> Array1<f64> {
    let mut m = Array1::<f64>::zeros(hidden.ncols());
    for row in hidden.outer_iter() {
        for (a, &b) in m.iter_mut().zip(row) {
            *a += b as f64;
        }
    }
    m / hidden.nrows().max(1) as f64
}

/// Cosine of two vectors, clamped to [−1, 1] (0 when either is zero).
pub fn cosine(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
    let (na, nb) = (a.dot(a).sqrt(), b.dot(b).sqrt());
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (a.dot(b) / (na * nb)).clamp(-1.0, 1.0)
    }
}

/// Quality of pattern `p` on `ids` (two forward passes: dense, then every layer restricted to
/// `p`, intersected with causal for a causal model).
pub fn quality(
    model: &dyn Model,
    ids: &[u32],
    p: &Pattern,
    progress: &dyn Progress,
) -> Result<Quality, ModelError> {
    quality_schedule(model, ids, std::slice::from_ref(p), progress)
}

/// Quality of a per-layer schedule on `ids`: layer `l` (from 0) is restricted to
/// `layers[l mod len]` (∩ causal for a causal model), e.g. GPT-3's `[dense, local]`. A dense
/// entry runs the model's own dense attention.
pub fn quality_schedule(
    model: &dyn Model,
    ids: &[u32],
    layers: &[Pattern],
    progress: &dyn Progress,
) -> Result<Quality, ModelError> {
    if layers.is_empty() {
        return Err(ModelError::Input(
            "the schedule is empty: give at least one pattern".into(),
        ));
    }
    for p in layers {
        check(ids, p)?;
    }
    let info = model.info().clone();
    if info.causal && ids.len() < 2 {
        return Err(ModelError::Input(
            "quality needs at least 2 tokens: the loss is over positions 1 … n−1".into(),
        ));
    }
    let n = ids.len() as u64;
    let per_layer = layers
        .iter()
        .map(|p| {
            let full = p.nnz() == n * n;
            (!full).then(|| for_model(p, &info)).transpose()
        })
        .collect::<Result<Vec<Option<Pattern>>, ModelError>>()?;
    let attention = match per_layer.as_slice() {
        [Some(p)] => Attention::Pattern(p),
        [None] => Attention::Dense,
        list => Attention::PerLayer(list),
    };
    let total = 2 * info.layers;
    let dense = pass(model, ids, Attention::Dense, progress, 0, total)?;
    let reference = reference(model, dense.view(), ids)?;
    let sparse = pass(model, ids, attention, progress, info.layers, total)?;
    capture::quality_of(model, sparse.view(), ids, &reference)
}

/// One candidate next token.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NextToken {
    /// Token id.
    pub id: u32,
    /// Its text.
    pub token: String,
    /// Softmax probability (0..1).
    pub prob: f64,
}

/// The `top` most probable tokens after `ids`, most probable first, with every layer
/// restricted to `p` (∩ causal). Needs a decoder.
pub fn next_tokens(
    model: &dyn Model,
    ids: &[u32],
    p: &Pattern,
    top: usize,
    progress: &dyn Progress,
) -> Result<Vec<NextToken>, ModelError> {
    check(ids, p)?;
    let info = model.info().clone();
    if !info.causal {
        return Err(ModelError::Input(
            "next needs a decoder (causal) model with next-token logits; this model is an encoder"
                .into(),
        ));
    }
    let p = for_model(p, &info)?;
    let hidden = pass(model, ids, Attention::Pattern(&p), progress, 0, info.layers)?;
    let last = hidden.slice(ndarray::s![ids.len() - 1.., ..]);
    let logits = model
        .logits(last)
        .ok_or_else(|| ModelError::Input("this model has no next-token logits".into()))?;
    let row = logits.row(0);
    let lse = log_sum_exp(row.iter().copied());
    let mut order: Vec<usize> = (0..row.len()).collect();
    let top = top.min(order.len());
    if top == 0 {
        return Ok(Vec::new());
    }
    order.select_nth_unstable_by(top - 1, |&a, &b| row[b].total_cmp(&row[a]));
    order.truncate(top);
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    Ok(order
        .into_iter()
        .map(|id| NextToken {
            id: id as u32,
            token: model.token_text(id as u32),
            prob: (row[id] as f64 - lse).exp(),
        })
        .collect())
}

#[cfg(test)]
mod tests;
