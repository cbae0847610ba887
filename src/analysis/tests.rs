use super::*;
use crate::inputs::{generate, InputKind};
use crate::kernel::attention_weights;
use crate::model::{Arch, Tokens};
use crate::pattern::{PatternKind, PatternParams};

fn sparse(n: usize, causal: bool) -> Pattern {
    PatternParams::new(PatternKind::Sparse, n)
        .stride(7)
        .window(3)
        .causal(causal)
        .build()
        .unwrap()
}

#[test]
fn dense_keeps_all_the_mass() {
    let qkv = generate(InputKind::Random { seed: 3 }, 150, 16);
    for causal in [false, true] {
        let p = PatternParams::new(PatternKind::Dense, 150).build().unwrap();
        let m = query_mass(qkv.q.view(), qkv.k.view(), &p, causal);
        assert_eq!(m.len(), 150);
        for (i, x) in m.iter().enumerate() {
            assert!((x - 1.0).abs() < 1e-5, "query {i}: {x}");
        }
    }
}

#[test]
fn mass_matches_a_brute_force_sum_of_the_dense_probabilities() {
    // Structured input: attention concentrated on nearby and periodic keys, so the
    // masses spread over (0, 1) instead of sitting at the density.
    for (kind, causal) in [
        (InputKind::Random { seed: 5 }, false),
        (InputKind::Structured { seed: 9 }, false),
        (InputKind::Structured { seed: 9 }, true),
    ] {
        let n = 130;
        let qkv = generate(kind, n, 16);
        let p = sparse(n, causal);
        let got = query_mass(qkv.q.view(), qkv.k.view(), &p, causal);
        let seen = if causal {
            Some(
                PatternParams::new(PatternKind::Dense, n)
                    .causal(true)
                    .build()
                    .unwrap(),
            )
        } else {
            None
        };
        let w = attention_weights(seen.as_ref(), &qkv, None).unwrap();
        for i in 0..n {
            let want: f64 = (0..n)
                .filter(|&j| p.allows(i, j))
                .map(|j| w[[i, j]] as f64)
                .sum();
            assert!(
                (got[i] - want).abs() < 1e-5,
                "{kind:?} causal={causal} query {i}: {} vs {want}",
                got[i]
            );
            assert!((0.0..=1.0).contains(&got[i]));
        }
        let probs = head_probabilities(qkv.q.view(), qkv.k.view(), causal);
        for (a, b) in probs.iter().zip(w.iter()) {
            assert!((a - b).abs() < 1e-5);
        }
        for row in probs.outer_iter() {
            assert!((row.sum() - 1.0).abs() < 1e-4);
        }
    }
}

#[test]
fn layer_mass_reads_the_shared_kv_head_under_grouped_query_attention() {
    let n = 40;
    let (a, b) = (
        generate(InputKind::Random { seed: 1 }, n, 8),
        generate(InputKind::Structured { seed: 2 }, n, 8),
    );
    // Four query heads, two KV heads: heads 0, 1 read KV 0 (from a), heads 2, 3 read KV 1 (b).
    let q = ndarray::stack(Axis(0), &[a.q.view(), b.q.view(), b.q.view(), a.q.view()]).unwrap();
    let k = ndarray::stack(Axis(0), &[a.k.view(), b.k.view()]).unwrap();
    let p = PatternParams::new(PatternKind::Local, n)
        .window(2)
        .build()
        .unwrap();
    let got = mass::layer_mass(4, q.view(), k.view(), &p, false);
    assert_eq!(got.layer, 4);
    let want = |q: &ndarray::Array2<f32>, k: &ndarray::Array2<f32>| {
        let m = query_mass(q.view(), k.view(), &p, false);
        m.iter().sum::<f64>() / n as f64
    };
    assert_eq!(got.heads[0].mass_kept, want(&a.q, &a.k));
    assert_eq!(got.heads[1].mass_kept, want(&b.q, &a.k));
    assert_eq!(got.heads[2].mass_kept, want(&b.q, &b.k));
    assert_eq!(got.heads[3].mass_kept, want(&a.q, &b.k));
    for h in &got.heads {
        assert!(h.worst_query <= h.mass_kept && h.worst_query >= 0.0);
    }
}

/// A stand-in decoder whose last hidden state is the one-hot of the token and whose logits
/// are fixed: enough to check the loss arithmetic by hand.
struct Fixed {
    info: ModelInfo,
}

impl Model for Fixed {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn tokenize(&self, _text: &str, _max: usize) -> Result<Tokens, ModelError> {
        Ok(Tokens::default())
    }
    fn forward(
        &self,
        ids: &[u32],
        _attention: Attention<'_>,
        _hooks: &mut dyn Hooks,
    ) -> Result<Array2<f32>, ModelError> {
        let mut h = Array2::zeros((ids.len(), 3));
        for (t, &id) in ids.iter().enumerate() {
            h[[t, id as usize]] = 1.0;
        }
        Ok(h)
    }
    /// Logits `[2, 1, 0]` after token 0, `[0, 0, ln 2]`-ish otherwise: `hidden · M`.
    fn logits(&self, hidden: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        let m = ndarray::array![[2.0f32, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]];
        Some(hidden.dot(&m))
    }
    fn token_text(&self, id: u32) -> String {
        format!("t{id}")
    }
}

fn fixed() -> Fixed {
    Fixed {
        info: ModelInfo {
            arch: Arch::Llama,
            layers: 1,
            heads: 1,
            kv_heads: 1,
            head_dim: 1,
            causal: true,
            vocab: 3,
            max_positions: 16,
            hidden: 3,
        },
    }
}

#[test]
fn the_loss_is_the_mean_next_token_cross_entropy() {
    let m = fixed();
    let ids = [0u32, 1, 2, 1];
    let h = m
        .forward(&ids, Attention::Dense, &mut crate::model::NoHooks)
        .unwrap();
    let loss = next_token_loss(&m, h.view(), &ids).unwrap();
    let lse = |a: [f64; 3]| a.iter().map(|x| x.exp()).sum::<f64>().ln();
    // t=0 (token 0) predicts 1: logits [2,1,0]; t=1 (token 1) predicts 2: [0,0,0];
    // t=2 (token 2) predicts 1: [0,3,0].
    let want =
        ((lse([2.0, 1.0, 0.0]) - 1.0) + lse([0.0, 0.0, 0.0]) + (lse([0.0, 3.0, 0.0]) - 3.0)) / 3.0;
    assert!((loss - want).abs() < 1e-9, "{loss} vs {want}");
    assert!(next_token_loss(&m, h.slice(ndarray::s![..1, ..]), &ids[..1]).is_err());

    let p = PatternParams::new(PatternKind::Local, 4)
        .window(1)
        .build()
        .unwrap();
    let q = quality(&m, &ids, &p, &Silent).unwrap();
    assert_eq!(q.loss_dense, q.loss_pattern);
    assert!((q.ppl_dense.unwrap() - want.exp()).abs() < 1e-9);
    assert!(q.embedding_cosine.is_none());
}

#[test]
fn next_tokens_are_sorted_and_their_probabilities_are_a_softmax() {
    let m = fixed();
    let p = PatternParams::new(PatternKind::Dense, 2).build().unwrap();
    let top = next_tokens(&m, &[1, 0], &p, 5, &Silent).unwrap();
    let z = 2f64.exp() + 1f64.exp() + 1.0;
    assert_eq!(top.len(), 3);
    assert_eq!(top.iter().map(|t| t.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!((top[0].prob - 2f64.exp() / z).abs() < 1e-6);
    assert!((top[2].prob - 1.0 / z).abs() < 1e-6);
    assert_eq!(top[1].token, "t1");
    // The pattern must be built at the token count.
    assert!(next_tokens(&m, &[1, 0, 2], &p, 1, &Silent).is_err());
}

#[test]
fn cancelling_stops_before_the_first_layer() {
    struct Stop;
    impl Progress for Stop {
        fn cancelled(&self) -> bool {
            true
        }
    }
    struct Layers(ModelInfo);
    impl Model for Layers {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn tokenize(&self, _: &str, _: usize) -> Result<Tokens, ModelError> {
            Ok(Tokens::default())
        }
        fn forward(
            &self,
            ids: &[u32],
            _: Attention<'_>,
            hooks: &mut dyn Hooks,
        ) -> Result<Array2<f32>, ModelError> {
            if hooks.cancelled() {
                return Err(ModelError::Cancelled);
            }
            Ok(Array2::zeros((ids.len(), 1)))
        }
        fn logits(&self, _: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
            None
        }
        fn token_text(&self, _: u32) -> String {
            String::new()
        }
    }
    let mut info = fixed().info;
    info.causal = false;
    let m = Layers(info);
    let p = PatternParams::new(PatternKind::Dense, 3).build().unwrap();
    assert!(matches!(
        mass_kept(&m, &[1, 2, 3], &p, &Stop),
        Err(ModelError::Cancelled)
    ));
    assert!(matches!(
        quality(&m, &[1, 2, 3], &p, &Stop),
        Err(ModelError::Cancelled)
    ));
}

#[test]
fn the_distance_profile_gives_the_mass_of_windows_with_and_without_sinks() {
    // Brute force: the profile's mass of local(w) and local(w) | sink(s=4) equals the mean of
    // query_mass for those patterns, causal and not, and the cheapest window is minimal.
    for causal in [false, true] {
        let n = 90;
        let qkv = generate(InputKind::Structured { seed: 4 }, n, 16);
        let probs = head_probabilities(qkv.q.view(), qkv.k.view(), causal);
        let prof = DistanceProfile::of(probs.view(), 4);
        for w in [0usize, 1, 3, 10, 40, 89] {
            for sinks in [false, true] {
                let text = if sinks {
                    format!("local(w={w}) | sink(s=4)")
                } else {
                    format!("local(w={w})")
                };
                let p = PatternParams::from_text(&text, n).build().unwrap();
                let m = query_mass(qkv.q.view(), qkv.k.view(), &p, causal);
                let want = m.iter().sum::<f64>() / n as f64;
                let got = prof.mass(w, sinks);
                assert!(
                    (got - want).abs() < 1e-6,
                    "{text} causal={causal}: {got} vs {want}"
                );
            }
        }
        for target in [0.5, 0.9, 0.99] {
            for sinks in [false, true] {
                let w = prof.cheapest_window(target, sinks);
                assert!(prof.mass(w, sinks) >= target - 1e-9);
                assert!(w == 0 || prof.mass(w - 1, sinks) < target, "{w} is minimal");
            }
        }
        assert!(prof.cheapest_window(0.9, true) <= prof.cheapest_window(0.9, false));
    }
}
