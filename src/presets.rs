//! Presets: one click (or one name) sets every pattern control, with a caption for class.
//!
//! Each preset is plain data: pattern parameters, an optional per-layer schedule (a list as
//! `attnscope reach --schedule` takes it, e.g. `dense,local(w=128)`, repeated cyclically like
//! [`crate::reach::Schedule`]) and a one-sentence caption.

use crate::pattern::{Pattern, PatternError, PatternKind, PatternParams};
use crate::reach::{parse_schedule, schedule_from, LayerSpec, Schedule, ScheduleSpecError};

/// A named set of pattern settings with a caption.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// Short identifier (lowercase, no spaces), e.g. `seed-sparse`.
    pub name: &'static str,
    /// Title shown on the button.
    pub title: &'static str,
    /// One or two sentences shown under the controls.
    pub caption: &'static str,
    /// The pattern settings.
    pub params: PatternParams,
    /// Per-layer patterns for the receptive-field view, written as a `reach --schedule` list;
    /// what an entry leaves out comes from `params` (None = every layer uses `params`).
    pub schedule: Option<&'static str>,
}

impl Preset {
    /// The validated pattern.
    pub fn pattern(&self) -> Result<Pattern, PatternError> {
        self.params.build()
    }

    /// The layers of `schedule` (empty without one).
    pub fn layers(&self) -> Result<Vec<LayerSpec>, ScheduleSpecError> {
        self.schedule.map_or(Ok(Vec::new()), parse_schedule)
    }

    /// The layer schedule: one entry per layer of `schedule`, or the single pattern.
    pub fn layer_schedule(&self) -> Result<Schedule, ScheduleSpecError> {
        schedule_of(&self.params, &self.layers()?)
    }
}

/// The schedule of `layers`, each on top of `params` exactly as `reach --schedule` builds it
/// ([`schedule_from`]), or `params` alone when `layers` is empty.
pub fn schedule_of(
    params: &PatternParams,
    layers: &[LayerSpec],
) -> Result<Schedule, ScheduleSpecError> {
    if layers.is_empty() {
        let p = params
            .build()
            .map_err(|e| ScheduleSpecError::Schedule(e.into()))?;
        return Ok(Schedule::single(p));
    }
    schedule_from(layers, params)
}

/// The Sparse Transformer's stride and window for length `n`: k = w = ⌈√n⌉ (64 at n = 4096).
pub fn sqrt_stride(n: usize) -> usize {
    let mut k = (n as f64).sqrt() as usize;
    while k * k < n {
        k += 1;
    }
    while k > 1 && (k - 1) * (k - 1) >= n {
        k -= 1;
    }
    k.max(1)
}

/// Sparse attention with k = w = ⌈√n⌉: O(n√n) work, every pair reachable in two layers.
pub fn sparse_sqrt(n: usize, causal: bool) -> PatternParams {
    let k = sqrt_stride(n);
    PatternParams::new(PatternKind::Sparse, n)
        .stride(k)
        .window(k)
        .causal(causal)
}

/// Every preset, in the order the app lists them.
pub fn all() -> Vec<Preset> {
    use PatternKind as K;
    let p = PatternParams::new;
    vec![
        Preset {
            name: "seed-atrous",
            title: "Seed: atrous",
            caption: "Atrous (dilated) attention, n = 64, k = 4: each query sees every 4th key. \
                      Cheap, but tokens whose distance is not a multiple of 4 never meet, \
                      however many layers are stacked.",
            params: p(K::Atrous, 64).stride(4),
            schedule: None,
        },
        Preset {
            name: "seed-local",
            title: "Seed: local",
            caption: "Local attention, n = 64, w = 3: each query sees the 3 keys on each side. \
                      Information travels 3 tokens per layer, so the whole sequence needs \
                      about n / w = 21 layers.",
            params: p(K::Local, 64).window(3),
            schedule: None,
        },
        Preset {
            name: "seed-sparse",
            title: "Seed: sparse",
            caption: "Sparse = local or atrous, n = 64, k = 4, w = 3: the window bridges the gaps \
                      of the stride, so every query reaches every key in two layers at a third \
                      of the dense cost.",
            params: p(K::Sparse, 64).stride(4).window(3),
            schedule: None,
        },
        Preset {
            name: "seed-sparse-causal",
            title: "Seed: sparse, causal",
            caption: "The seed's sparse pattern for a decoder (keys j ≤ i only): half the work, \
                      and still every past token within two layers.",
            params: p(K::Sparse, 64).stride(4).window(3).causal(true),
            schedule: None,
        },
        Preset {
            name: "sparse-sqrt",
            title: "k = w = √n",
            caption: "The Sparse Transformer's choice k = w = √n at n = 4096 (k = w = 64): \
                      O(n√n) work instead of O(n²), under 5% of the dense FLOPs, and still \
                      full coverage after two layers.",
            params: sparse_sqrt(4096, false),
            schedule: None,
        },
        Preset {
            name: "sparse-sqrt-causal",
            title: "k = w = √n, causal",
            caption: "The same √n choice for a decoder at n = 4096: every past token reachable \
                      in two layers.",
            params: sparse_sqrt(4096, true),
            schedule: None,
        },
        Preset {
            name: "strided",
            title: "Sparse Transformer: strided",
            caption: "Strided (Child et al. 2019), n = 1024, l = 32: the previous 32 tokens plus \
                      every 32nd one before them; always causal. Suits data with a period, \
                      like image rows.",
            params: p(K::Strided, 1024).stride(32),
            schedule: None,
        },
        Preset {
            name: "fixed",
            title: "Sparse Transformer: fixed",
            caption: "Fixed (Child et al. 2019), n = 1024, l = 32, c = 4: each query sees its own \
                      block of 32 and the last 4 \"summary\" tokens of every block.",
            params: p(K::Fixed, 1024).stride(32).summary(4),
            schedule: None,
        },
        Preset {
            name: "fixed-causal",
            title: "Sparse Transformer: fixed, causal",
            caption: "The fixed pattern as used for text: own block and summary tokens, past \
                      only.",
            params: p(K::Fixed, 1024).stride(32).summary(4).causal(true),
            schedule: None,
        },
        Preset {
            name: "longformer",
            title: "Longformer",
            caption: "Longformer (Beltagy et al. 2020), n = 4096: a sliding window of 256 keys \
                      on each side plus 4 global tokens that see and are seen by everyone.",
            params: p(K::Longformer, 4096).window(256).global(4),
            schedule: None,
        },
        Preset {
            name: "bigbird",
            title: "BigBird",
            caption: "BigBird (Zaheer et al. 2020), n = 4096, blocks of 64: 3 window blocks, 2 \
                      global blocks and 3 random blocks per block row — a block-sparse layout \
                      that GPUs run fast.",
            params: p(K::Bigbird, 4096)
                .block(64)
                .window(1)
                .global(2)
                .random(3)
                .seed(0),
            schedule: None,
        },
        Preset {
            name: "window-sinks",
            title: "Window + sinks (StreamingLLM)",
            caption: "A causal sliding window of 64 plus 4 \"sink\" tokens that every query keeps \
                      (StreamingLLM): n = 1024, each query reads at most 69 keys, and the first \
                      tokens — where trained decoders park spare attention — are never dropped.",
            params: p(K::Custom, 1024).expr("(local(w=64) | sink(s=4)) & causal"),
            schedule: None,
        },
        Preset {
            name: "dilated-window",
            title: "Dilated window",
            caption: "A window of 256 in which only every 4th key is kept: local(w=256) & \
                      atrous(k=4), n = 1024. It reaches as far as a window of 256 at the cost of \
                      a window of 64, but, like atrous, splits the tokens into 4 groups.",
            params: p(K::Custom, 1024).expr("local(w=256) & atrous(k=4)"),
            schedule: None,
        },
        Preset {
            name: "gpt3",
            title: "GPT-3: dense / banded",
            caption: "GPT-3 (Brown et al. 2020) alternates dense and locally banded layers, \
                      n = 2048, causal band of 128: the banded layers are cheap and every dense \
                      layer restores full (causal) reach.",
            params: p(K::Local, 2048).window(128).causal(true),
            // The band carries its own w, so the schedule reads as the layers GPT-3 stacks
            // (and pastes into `reach --schedule`) whatever the shared window is set to.
            schedule: Some("dense,local(w=128)"),
        },
    ]
}

/// The preset called `name`.
pub fn by_name(name: &str) -> Option<Preset> {
    all().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reach::{compute, ReachOptions};
    use std::sync::atomic::AtomicBool;

    #[test]
    fn every_preset_builds_with_a_unique_name_and_a_caption() {
        let presets = all();
        assert_eq!(presets.len(), 14);
        for (t, p) in presets.iter().enumerate() {
            assert!(p.pattern().is_ok(), "{}", p.name);
            assert!(p.layer_schedule().is_ok(), "{}", p.name);
            assert!(p.caption.len() > 40 && p.caption.len() < 260, "{}", p.name);
            assert!(!p.name.contains(' '));
            assert!(presets[..t].iter().all(|q| q.name != p.name));
            assert_eq!(by_name(p.name).as_ref(), Some(p));
        }
        assert_eq!(by_name("nope"), None);
    }

    #[test]
    fn seed_presets_have_the_seed_counts() {
        let nnz = |name: &str| by_name(name).unwrap().pattern().unwrap().nnz();
        assert_eq!(nnz("seed-atrous"), 1024); // 64 · 16
        assert_eq!(nnz("seed-local"), 64 * 7 - 2 * (1 + 2 + 3)); // 436
        assert_eq!(nnz("seed-sparse"), 1396);
        // Causal: the lower triangle of the sparse mask, diagonal included.
        assert_eq!(nnz("seed-sparse-causal"), (1396 - 64) / 2 + 64);
        // Window of 64 (causal: min(i, 64) + 1 keys) plus the sinks below each window.
        let window: u64 = (0..1024u64).map(|i| i.min(64) + 1).sum();
        let sinks: u64 = (0..1024u64).map(|i| i.saturating_sub(64).min(4)).sum();
        assert_eq!(nnz("window-sinks"), window + sinks);
        // Distances 0, ±4, …, ±256 inside [0, n): 129 keys in the middle rows.
        let dw = by_name("dilated-window").unwrap().pattern().unwrap();
        assert_eq!(dw.row_nnz(512), 129);
        assert_eq!(dw.row_nnz(0), 65);
    }

    #[test]
    fn caption_claims_hold() {
        // "a third of the dense cost", "half the work", "under 5% of the dense FLOPs".
        let density = |name: &str| by_name(name).unwrap().pattern().unwrap().density();
        assert!((0.30..0.37).contains(&density("seed-sparse")));
        let half = density("seed-sparse-causal") / density("seed-sparse");
        assert!((0.5..0.55).contains(&half));
        assert!(density("sparse-sqrt") < 0.05);
        let two = |name: &str| {
            let p = by_name(name).unwrap().pattern().unwrap();
            crate::reach::coverage(&p, 1, 30).unwrap().layers_to_full
        };
        assert_eq!(two("seed-sparse"), Some(2));
        assert_eq!(two("sparse-sqrt"), Some(2));
        assert_eq!(two("seed-local"), Some(21));
        assert_eq!(two("seed-atrous"), None);
        for name in ["seed-sparse-causal", "sparse-sqrt-causal"] {
            let p = by_name(name).unwrap().pattern().unwrap();
            let n = p.n() as u64;
            let r = crate::reach::coverage(&p, 2, 2).unwrap();
            assert!(r.layers[0].reachable_pairs < n * (n + 1) / 2);
            assert_eq!(r.layers[1].reachable_pairs, n * (n + 1) / 2, "{name}");
        }
    }

    #[test]
    fn sqrt_stride_is_the_ceiling_square_root() {
        for (n, k) in [
            (1, 1),
            (2, 2),
            (4, 2),
            (5, 3),
            (64, 8),
            (4096, 64),
            (4097, 65),
        ] {
            assert_eq!(sqrt_stride(n), k, "n={n}");
        }
        let p = sparse_sqrt(1024, false).build().unwrap();
        assert_eq!((p.stride(), p.window()), (32, 32));
    }

    #[test]
    fn gpt3_schedule_alternates_dense_and_causal_band() {
        let s = by_name("gpt3").unwrap().layer_schedule().unwrap();
        assert_eq!(s.period(), 2);
        assert_eq!(s.pattern_for(1).kind(), PatternKind::Dense);
        assert!(s.pattern_for(1).is_causal());
        assert_eq!(s.pattern_for(2).kind(), PatternKind::Local);
        assert_eq!(s.label(), "schedule(dense(causal) | local(w=128, causal))");
        assert_eq!(s.pattern_for(3).kind(), PatternKind::Dense);
        // One causal dense layer already reaches every past token.
        let r = compute(
            &s,
            &ReachOptions::new(2),
            &AtomicBool::new(false),
            &|_, _| {},
        )
        .unwrap();
        let n = 2048u64;
        assert_eq!(r.layers[0].reachable_pairs, n * (n + 1) / 2);
        assert_eq!(r.layers[1].reachable_pairs, n * (n + 1) / 2);
    }
}
