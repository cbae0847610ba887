//! One dense forward pass kept for interactive use (the app's Model tab).
//!
//! [`dense_pass`] runs the model once with dense attention and keeps what every layer's
//! attention saw: q `(heads, n, head_dim)`, k and v `(kv_heads, n, head_dim)`. For SmolLM2 at
//! n = 2048 that is 30 · (9 + 2 · 3) · 2048 · 64 floats = 236 MB, against 1.1 GB for every
//! head's n × n probabilities. From it, a new pattern's mass kept ([`DensePass::mass`]) needs
//! no new forward pass, and one head's probabilities are recomputed on demand
//! ([`DensePass::probabilities`]). The pass also keeps the dense reference of
//! [`super::quality`]: the loss of a decoder or the pooled embedding of an encoder, so the
//! quality of a pattern costs one more pass ([`quality_against`]).

use super::mass::{head_probabilities, layer_mass, LayerMass};
use super::{cosine, for_model, mean_pool, next_token_loss, pass, Observe, Progress, Quality};
use crate::inputs::Qkv;
use crate::model::{Attention, Model, ModelError, ModelInfo};
use crate::pattern::Pattern;
use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Axis};

/// What one layer's attention received in the dense pass.
pub struct LayerInputs {
    /// Queries `(heads, n, head_dim)` (after rotary embedding for llama).
    pub q: Array3<f32>,
    /// Keys `(kv_heads, n, head_dim)`.
    pub k: Array3<f32>,
    /// Values `(kv_heads, n, head_dim)`.
    pub v: Array3<f32>,
}

/// The dense result a pattern's quality is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Reference {
    /// Decoder: mean next-token cross-entropy (nats) over positions 1 … n−1.
    Loss(f64),
    /// Encoder: the mean-pooled last hidden states.
    Embedding(Array1<f64>),
}

/// The reference of `hidden`, the last hidden states of a dense pass on `ids`.
pub fn reference(
    model: &dyn Model,
    hidden: ArrayView2<'_, f32>,
    ids: &[u32],
) -> Result<Reference, ModelError> {
    if model.info().causal {
        Ok(Reference::Loss(next_token_loss(model, hidden, ids)?))
    } else {
        Ok(Reference::Embedding(mean_pool(hidden)))
    }
}

/// A dense forward pass with every layer's attention inputs kept.
pub struct DensePass {
    /// The model's shape.
    pub info: ModelInfo,
    /// One entry per layer.
    pub layers: Vec<LayerInputs>,
    /// The dense loss or embedding.
    pub reference: Reference,
}

/// Runs `model` densely on `ids` and keeps every layer's q, k, v (progress: one step per layer).
pub fn dense_pass(
    model: &dyn Model,
    ids: &[u32],
    progress: &dyn Progress,
) -> Result<DensePass, ModelError> {
    if ids.is_empty() {
        return Err(ModelError::Input("the text has no tokens".into()));
    }
    let info = model.info().clone();
    if info.causal && ids.len() < 2 {
        return Err(ModelError::Input(
            "a decoder needs at least 2 tokens: the loss is over positions 1 … n−1".into(),
        ));
    }
    let mut layers = Vec::with_capacity(info.layers);
    let mut keep = Observe {
        progress,
        before: 0,
        total: info.layers,
        observe: |_: usize,
                  q: ArrayView3<'_, f32>,
                  k: ArrayView3<'_, f32>,
                  v: ArrayView3<'_, f32>| {
            layers.push(LayerInputs {
                q: q.to_owned(),
                k: k.to_owned(),
                v: v.to_owned(),
            });
        },
    };
    let hidden = model.forward(ids, Attention::Dense, &mut keep)?;
    let reference = reference(model, hidden.view(), ids)?;
    Ok(DensePass {
        info,
        layers,
        reference,
    })
}

impl DensePass {
    /// Tokens of the pass.
    pub fn n(&self) -> usize {
        self.layers.first().map_or(0, |l| l.q.dim().1)
    }

    /// The KV head query head `head` reads.
    fn kv_head(&self, head: usize) -> usize {
        head / (self.info.heads / self.info.kv_heads.max(1)).max(1)
    }

    /// Checks `layer` and `head` against the model.
    fn check(&self, layer: usize, head: usize) -> Result<(), ModelError> {
        super::check_head(&self.info, layer, head)
    }

    /// Mass kept by `p` (∩ causal for a decoder) for every (layer, head): the same numbers as
    /// [`super::mass_kept`], from the kept q and k (progress: one step per layer).
    pub fn mass(&self, p: &Pattern, progress: &dyn Progress) -> Result<Vec<LayerMass>, ModelError> {
        let p = self.pattern(p)?;
        let mut out = Vec::with_capacity(self.layers.len());
        for (l, x) in self.layers.iter().enumerate() {
            if progress.cancelled() {
                return Err(ModelError::Cancelled);
            }
            out.push(layer_mass(l, x.q.view(), x.k.view(), &p, self.info.causal));
            progress.step(l + 1, self.layers.len());
        }
        Ok(out)
    }

    /// `p` as the model runs it (∩ causal for a decoder), checked against the token count.
    pub fn pattern(&self, p: &Pattern) -> Result<Pattern, ModelError> {
        if p.n() != self.n() {
            return Err(ModelError::Input(format!(
                "the pattern has n = {} but the text has {} tokens",
                p.n(),
                self.n()
            )));
        }
        for_model(p, &self.info)
    }

    /// Q, K, V of one query head, each `(n, head_dim)` (what [`super::head_qkv`] returns).
    pub fn head(&self, layer: usize, head: usize) -> Result<Qkv, ModelError> {
        self.check(layer, head)?;
        let x = &self.layers[layer];
        let kv = self.kv_head(head);
        Ok(Qkv {
            q: x.q.index_axis(Axis(0), head).to_owned(),
            k: x.k.index_axis(Axis(0), kv).to_owned(),
            v: x.v.index_axis(Axis(0), kv).to_owned(),
        })
    }

    /// The dense softmax probabilities of one head, `(n, n)`.
    pub fn probabilities(&self, layer: usize, head: usize) -> Result<Array2<f32>, ModelError> {
        self.check(layer, head)?;
        let x = &self.layers[layer];
        Ok(head_probabilities(
            x.q.index_axis(Axis(0), head),
            x.k.index_axis(Axis(0), self.kv_head(head)),
            self.info.causal,
        ))
    }

    /// Per layer, the mean over heads and queries `i ≥ first` of the dense probability on
    /// keys `0 … first−1`: the "attention sink" of the first tokens (0..1).
    pub fn sink_mass(&self, first: usize) -> Vec<f64> {
        let n = self.n();
        let first = first.min(n);
        self.layers
            .iter()
            .map(|x| {
                let heads = x.q.dim().0;
                let mut total = 0.0;
                for h in 0..heads {
                    let p = head_probabilities(
                        x.q.index_axis(Axis(0), h),
                        x.k.index_axis(Axis(0), self.kv_head(h)),
                        self.info.causal,
                    );
                    let rows = n - first;
                    if rows == 0 {
                        continue;
                    }
                    let s: f64 = (first..n)
                        .map(|i| (0..first).map(|j| p[[i, j]] as f64).sum::<f64>())
                        .sum();
                    total += s / rows as f64;
                }
                total / heads.max(1) as f64
            })
            .collect()
    }
}

/// Quality of `p` (∩ causal for a decoder) against a dense `reference` of the same `ids`:
/// one forward pass (progress: one step per layer). [`super::quality`] is a dense pass, its
/// [`reference`], then this.
pub fn quality_against(
    model: &dyn Model,
    ids: &[u32],
    p: &Pattern,
    reference: &Reference,
    progress: &dyn Progress,
) -> Result<Quality, ModelError> {
    super::check(ids, p)?;
    let info = model.info().clone();
    let p = for_model(p, &info)?;
    let hidden = pass(model, ids, Attention::Pattern(&p), progress, 0, info.layers)?;
    quality_of(model, hidden.view(), ids, reference)
}

/// The [`Quality`] of a pass whose last hidden states are `hidden`, against `reference`.
pub(super) fn quality_of(
    model: &dyn Model,
    hidden: ArrayView2<'_, f32>,
    ids: &[u32],
    reference: &Reference,
) -> Result<Quality, ModelError> {
    Ok(match reference {
        Reference::Loss(loss_dense) => {
            let loss_pattern = next_token_loss(model, hidden, ids)?;
            Quality {
                loss_dense: Some(*loss_dense),
                loss_pattern: Some(loss_pattern),
                ppl_dense: Some(loss_dense.exp()),
                ppl_pattern: Some(loss_pattern.exp()),
                embedding_cosine: None,
            }
        }
        Reference::Embedding(dense) => Quality {
            loss_dense: None,
            loss_pattern: None,
            ppl_dense: None,
            ppl_pattern: None,
            embedding_cosine: Some(cosine(dense, &mean_pool(hidden))),
        },
    })
}

/// The patterns of the Model tab's trade-off chart at `n` tokens, as expressions: local
/// windows of widths 8 … n/2 (doubling) with and without 4 sink tokens, and the Sparse
/// Transformer's `sparse` with k = w = ⌈√n⌉.
pub fn tradeoff_family(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut w = 8;
    while w <= n / 2 {
        out.push(format!("local(w={w})"));
        out.push(format!("local(w={w}) | sink(s=4)"));
        w *= 2;
    }
    let root = (n as f64).sqrt().ceil().max(1.0) as usize;
    out.push(format!("sparse(k={root}, w={root})"));
    out
}
