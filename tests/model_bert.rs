//! The BERT encoder: a tiny synthetic checkpoint written here (safetensors F32 and F16, a
//! hand-made WordPiece tokenizer.json) for loading and error cases, and the real
//! all-MiniLM-L6-v2 against an independent float32 reference (`scripts/minilm_reference.py`:
//! Hugging Face `tokenizers` and a NumPy forward pass; its numbers are hard-coded below).

use attnscope::analysis::{self, Silent};
use attnscope::kernel::attention_weights;
use attnscope::model::{
    self, attend_heads, Attention, Bert, Hooks, Model, ModelError, NoHooks, MINILM_DIR,
};
use attnscope::pattern::{PatternKind, PatternParams};
use ndarray::{Array2, Array3, ArrayView3};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::OnceLock;

mod common;

// ---------------------------------------------------------------- a tiny synthetic checkpoint

const H: usize = 8;
const HEADS: usize = 2;
const LAYERS: usize = 2;
const INTER: usize = 16;
const VOCAB: usize = 8;
const POS: usize = 16;

fn config() -> String {
    format!(
        r#"{{"model_type": "bert", "hidden_size": {H}, "num_attention_heads": {HEADS},
            "num_hidden_layers": {LAYERS}, "intermediate_size": {INTER},
            "max_position_embeddings": {POS}, "vocab_size": {VOCAB}, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "hidden_act": "gelu"}}"#
    )
}

const TOKENIZER: &str = r###"{
  "version": "1.0", "truncation": {"max_length": 4, "strategy": "LongestFirst", "stride": 0},
  "padding": null,
  "added_tokens": [
    {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 3, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": null,
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "##s": 6, "!": 7}}
}"###;

/// Every tensor of the synthetic checkpoint: (name, shape).
fn tensor_shapes() -> Vec<(String, Vec<usize>)> {
    let mut t = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![VOCAB, H],
        ),
        ("embeddings.position_embeddings.weight".into(), vec![POS, H]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, H]),
        ("embeddings.LayerNorm.weight".into(), vec![H]),
        ("embeddings.LayerNorm.bias".into(), vec![H]),
    ];
    for l in 0..LAYERS {
        let p = format!("encoder.layer.{l}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![H, H]),
            ("attention.self.query.bias", vec![H]),
            ("attention.self.key.weight", vec![H, H]),
            ("attention.self.key.bias", vec![H]),
            ("attention.self.value.weight", vec![H, H]),
            ("attention.self.value.bias", vec![H]),
            ("attention.output.dense.weight", vec![H, H]),
            ("attention.output.dense.bias", vec![H]),
            ("attention.output.LayerNorm.weight", vec![H]),
            ("attention.output.LayerNorm.bias", vec![H]),
            ("intermediate.dense.weight", vec![INTER, H]),
            ("intermediate.dense.bias", vec![INTER]),
            ("output.dense.weight", vec![H, INTER]),
            ("output.dense.bias", vec![H]),
            ("output.LayerNorm.weight", vec![H]),
            ("output.LayerNorm.bias", vec![H]),
        ] {
            t.push((format!("{p}.{name}"), shape));
        }
    }
    t
}

/// Seeded weights, rounded to values float16 holds exactly (so F16 and F32 files agree).
fn weights() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    tensor_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let len: usize = shape.iter().product();
            let base = if name.contains("LayerNorm.weight") {
                1.0
            } else {
                0.0
            };
            let v = (0..len)
                .map(|_| half::f16::from_f32(base + rng.gen_range(-0.5f32..0.5)).to_f32())
                .collect();
            (name, shape, v)
        })
        .collect()
}

/// A safetensors file: an 8-byte little-endian header length, the JSON header, the data.
fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)], f16: bool) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, v) in tensors {
        let start = data.len();
        for &x in v {
            if f16 {
                data.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
            } else {
                data.extend_from_slice(&x.to_le_bytes());
            }
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": if f16 { "F16" } else { "F32" }, "shape": shape,
                               "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn write_tiny(dir: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], f16: bool) {
    std::fs::write(dir.join("config.json"), config()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors_bytes(tensors, f16),
    )
    .unwrap();
}

fn load_err(dir: &Path) -> String {
    match Bert::load(dir) {
        Ok(_) => panic!("{dir:?} should not load"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_safetensors_checkpoint_loads_from_f32_and_f16_alike() {
    let w = weights();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_tiny(a.path(), &w, false);
    write_tiny(b.path(), &w, true);
    let m32 = model::load(a.path()).unwrap();
    let m16 = model::load(b.path()).unwrap();
    let info = m32.info();
    assert_eq!(
        (
            info.layers,
            info.heads,
            info.kv_heads,
            info.head_dim,
            info.vocab,
            info.max_positions
        ),
        (LAYERS, HEADS, HEADS, H / HEADS, VOCAB, POS)
    );
    assert!(!info.causal);
    assert_eq!(info.arch, model::Arch::Bert);

    // The file's truncation (max_length 4) is disabled; [CLS] … [SEP] are added.
    let t = m32.tokenize("Hello worlds! hello", 512).unwrap();
    assert_eq!(t.ids, vec![2, 4, 5, 6, 7, 4, 3]);
    assert_eq!(
        t.tokens,
        vec!["[CLS]", "hello", "world", "##s", "!", "hello", "[SEP]"]
    );
    // --max-tokens cuts the words and keeps both special tokens.
    assert_eq!(
        m32.tokenize("Hello worlds! hello", 4).unwrap().ids,
        vec![2, 4, 5, 3]
    );
    assert!(matches!(
        m32.tokenize("  \n", 512),
        Err(ModelError::Input(_))
    ));
    assert_eq!(m32.token_text(5), "world");
    assert!(m32.logits(ndarray::Array2::zeros((1, H)).view()).is_none());

    let h32 = m32.forward(&t.ids, Attention::Dense, &mut NoHooks).unwrap();
    let h16 = m16.forward(&t.ids, Attention::Dense, &mut NoHooks).unwrap();
    assert_eq!(h32.dim(), (7, H));
    assert_eq!(h32, h16);
    // Every row leaves a LayerNorm whose weight is near 1: centred, unit variance-ish.
    for row in h32.outer_iter() {
        assert!(row.iter().all(|x| x.is_finite()));
    }
    // Out-of-range ids and too many positions are errors, not panics.
    assert!(matches!(
        m32.forward(&[2, 99], Attention::Dense, &mut NoHooks),
        Err(ModelError::Input(_))
    ));
    assert!(matches!(
        m32.forward(&[4; POS + 1], Attention::Dense, &mut NoHooks),
        Err(ModelError::Input(_))
    ));
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    let w = weights();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    assert!(load_err(d).contains("no config.json"));

    write_tiny(d, &w, false);
    std::fs::write(d.join("config.json"), "{ not json").unwrap();
    assert!(load_err(d).contains("not a valid BERT config.json"));

    std::fs::write(
        d.join("config.json"),
        config().replace("\"gelu\"", "\"relu\""),
    )
    .unwrap();
    assert!(load_err(d).contains("hidden_act"));

    std::fs::write(d.join("config.json"), config()).unwrap();
    let missing: Vec<_> = w
        .iter()
        .filter(|(n, _, _)| n != "encoder.layer.1.output.dense.weight")
        .cloned()
        .collect();
    std::fs::write(
        d.join("model.safetensors"),
        safetensors_bytes(&missing, false),
    )
    .unwrap();
    let e = load_err(d);
    assert!(
        e.contains("encoder.layer.1.output.dense.weight") && e.contains("missing"),
        "{e}"
    );

    let mut reshaped = w.clone();
    for t in &mut reshaped {
        if t.0 == "embeddings.position_embeddings.weight" {
            t.1 = vec![H, POS];
        }
    }
    std::fs::write(
        d.join("model.safetensors"),
        safetensors_bytes(&reshaped, false),
    )
    .unwrap();
    let e = load_err(d);
    assert!(
        e.contains("position_embeddings") && e.contains("shape"),
        "{e}"
    );

    let full = safetensors_bytes(&w, false);
    std::fs::write(d.join("model.safetensors"), &full[..full.len() / 2]).unwrap();
    assert!(load_err(d).contains("not a valid safetensors file"));

    std::fs::write(d.join("model.safetensors"), &full).unwrap();
    std::fs::write(d.join("tokenizer.json"), "[]").unwrap();
    assert!(load_err(d).contains("not a valid tokenizer.json"));

    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    assert!(load_err(d).contains("no tokenizer.json"));

    assert!(matches!(
        model::load(&d.join("nowhere")),
        Err(ModelError::Io { .. })
    ));
}

// ---------------------------------------------------------------- all-MiniLM-L6-v2

fn minilm() -> Option<&'static Bert> {
    static MODEL: OnceLock<Option<Bert>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            common::model_path(MINILM_DIR).map(|p| Bert::load(&p).expect("MiniLM loads"))
        })
        .as_ref()
}

/// The reference script's strings, ids (Hugging Face tokenizers) and float32 NumPy outputs.
const MIXED: &str = "Hello, world! 123 apples cost $4.50.\nNew line here.";
const MIXED_IDS: [u32; 18] = [
    101, 7592, 1010, 2088, 999, 13138, 18108, 3465, 1002, 1018, 1012, 2753, 1012, 2047, 2240, 2182,
    1012, 102,
];
const MIXED_HIDDEN_1: [f32; 6] = [-0.412704, 0.254662, 0.637777, 0.195469, -0.49331, -0.615438];
const MIXED_HIDDEN_LAST: [f32; 6] = [0.124889, 0.312523, 0.162173, 0.09998, 0.187114, -0.367758];
const MIXED_POOLED: [f32; 8] = [
    -0.018616, 0.213704, 0.015062, -0.106473, -0.150034, -0.339379, 0.142689, 0.118879,
];
const CAT: &str = "The cat sits on the mat.";
const CAT_IDS: [u32; 9] = [101, 1996, 4937, 7719, 2006, 1996, 13523, 1012, 102];
const CAT_POOLED: [f32; 8] = [
    0.787276, -0.19304, -0.145535, 0.243141, -0.213267, 0.245342, 0.183162, 0.218278,
];
const CAT2: &str = "A cat is sitting on a mat.";
const STOCKS: &str = "Stock markets fell sharply on Tuesday.";

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

fn embed(m: &Bert, text: &str) -> ndarray::Array1<f64> {
    let t = m.tokenize(text, 512).unwrap();
    let h = m.forward(&t.ids, Attention::Dense, &mut NoHooks).unwrap();
    analysis::mean_pool(h.view())
}

#[test]
fn minilm_tokenizes_like_hugging_face() {
    let Some(m) = minilm() else { return };
    let t = m.tokenize(MIXED, 512).unwrap();
    assert_eq!(t.ids, MIXED_IDS);
    assert_eq!(t.tokens[0], "[CLS]");
    assert_eq!(t.tokens[5], "123");
    assert_eq!(t.tokens[17], "[SEP]");
    assert_eq!(m.tokenize(CAT, 512).unwrap().ids, CAT_IDS);
    // The file's truncation (128) and padding are off: a long text gives all its tokens.
    let long = "word ".repeat(300);
    assert_eq!(m.tokenize(&long, 1000).unwrap().ids.len(), 302);
    let cut = m.tokenize(&long, 50).unwrap();
    assert_eq!(cut.ids.len(), 50);
    assert_eq!((cut.ids[0], cut.ids[49]), (101, 102));
    // Never more than the 512 positions.
    assert_eq!(
        m.tokenize(&"word ".repeat(600), 2048).unwrap().ids.len(),
        512
    );
}

#[test]
fn minilm_matches_a_float32_numpy_reference() {
    let Some(m) = minilm() else { return };
    let h = m
        .forward(&MIXED_IDS, Attention::Dense, &mut NoHooks)
        .unwrap();
    let row1: Vec<f32> = h.row(1).iter().copied().collect();
    let last: Vec<f32> = h.row(17).iter().copied().collect();
    close(&row1[..6], &MIXED_HIDDEN_1, 1e-3, "hidden[1]");
    close(&last[..6], &MIXED_HIDDEN_LAST, 1e-3, "hidden[17]");
    let pooled: Vec<f32> = analysis::mean_pool(h.view())
        .iter()
        .map(|&x| x as f32)
        .collect();
    close(&pooled[..8], &MIXED_POOLED, 1e-3, "pooled");
    let cat: Vec<f32> = embed(m, CAT).iter().map(|&x| x as f32).collect();
    close(&cat[..8], &CAT_POOLED, 1e-3, "pooled(cat)");
}

#[test]
fn minilm_finds_a_paraphrase_closer_than_an_unrelated_sentence() {
    let Some(m) = minilm() else { return };
    let (a, b, c) = (embed(m, CAT), embed(m, CAT2), embed(m, STOCKS));
    let para = analysis::cosine(&a, &b);
    let unrelated = analysis::cosine(&a, &c);
    // The reference gives 0.9718 and 0.0368.
    assert!(para > 0.9 && unrelated < 0.3, "{para} vs {unrelated}");
    assert!((para - 0.971757).abs() < 1e-3);
}

/// A text of a few hundred tokens, the same every run.
fn sample_ids(m: &Bert, max: usize) -> Vec<u32> {
    let text = "Sparse attention keeps a few keys per query: a window of neighbours, a stride \
                of distant tokens, or a handful of global ones. Whether a model can afford it \
                depends on where its attention actually goes. "
        .repeat(8);
    m.tokenize(&text, max).unwrap().ids
}

#[test]
fn minilm_mass_kept_is_one_for_dense_and_a_fraction_for_a_window() {
    let Some(m) = minilm() else { return };
    let ids = sample_ids(m, 200);
    let n = ids.len();
    let dense = PatternParams::new(PatternKind::Dense, n).build().unwrap();
    let layers = analysis::mass_kept(m, &ids, &dense, &Silent).unwrap();
    assert_eq!(layers.len(), 6);
    for l in &layers {
        assert_eq!(l.heads.len(), 12);
        for h in &l.heads {
            assert!((h.mass_kept - 1.0).abs() < 1e-5 && (h.worst_query - 1.0).abs() < 1e-5);
        }
    }
    let local = PatternParams::new(PatternKind::Local, n)
        .window(8)
        .build()
        .unwrap();
    let layers = analysis::mass_kept(m, &ids, &local, &Silent).unwrap();
    let mut spread = (f64::INFINITY, 0f64);
    for l in &layers {
        for h in &l.heads {
            assert!((0.0..=1.0).contains(&h.mass_kept) && h.worst_query <= h.mass_kept);
            spread = (spread.0.min(h.mass_kept), spread.1.max(h.mass_kept));
        }
    }
    // Real heads differ: some look locally, some far away (density is 17/200 ≈ 8 %).
    assert!(spread.1 - spread.0 > 0.2, "{spread:?}");

    // Brute force on one head: the dense weights of its exported q, k, summed over the window.
    let (layer, head) = (3, 5);
    let qkv = analysis::head_qkv(m, &ids, layer, head, &Silent).unwrap();
    let w = attention_weights(None, &qkv, None).unwrap();
    let per_query: Vec<f64> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| local.allows(i, j))
                .map(|j| w[[i, j]] as f64)
                .sum()
        })
        .collect();
    let want = per_query.iter().sum::<f64>() / n as f64;
    let worst = per_query.iter().copied().fold(f64::INFINITY, f64::min);
    let got = &layers[layer].heads[head];
    assert!(
        (got.mass_kept - want).abs() < 1e-5,
        "{} vs {want}",
        got.mass_kept
    );
    assert!((got.worst_query - worst).abs() < 1e-5);
}

#[test]
fn minilm_quality_is_exact_for_dense_and_drops_for_a_narrow_window() {
    let Some(m) = minilm() else { return };
    let ids = sample_ids(m, 256);
    let n = ids.len();
    let dense = PatternParams::new(PatternKind::Dense, n).build().unwrap();
    let q = analysis::quality(m, &ids, &dense, &Silent).unwrap();
    assert!((q.embedding_cosine.unwrap() - 1.0).abs() < 1e-12, "{q:?}");
    // A dense pattern runs the same kernels as dense attention: identical hidden states.
    let a = m.forward(&ids, Attention::Dense, &mut NoHooks).unwrap();
    let b = m
        .forward(&ids, Attention::Pattern(&dense), &mut NoHooks)
        .unwrap();
    assert_eq!(a, b);
    assert!(q.loss_dense.is_none() && q.ppl_pattern.is_none());
    let narrow = PatternParams::new(PatternKind::Local, n)
        .window(1)
        .build()
        .unwrap();
    let c = analysis::quality(m, &ids, &narrow, &Silent)
        .unwrap()
        .embedding_cosine
        .unwrap();
    let wide = PatternParams::new(PatternKind::Local, n)
        .window(64)
        .build()
        .unwrap();
    let cw = analysis::quality(m, &ids, &wide, &Silent)
        .unwrap()
        .embedding_cosine
        .unwrap();
    assert!(c < cw && cw < 1.0 && c > 0.0, "w=1: {c}, w=64: {cw}");
    // An encoder has no next-token logits.
    assert!(matches!(
        analysis::next_tokens(m, &ids, &dense, 3, &Silent),
        Err(ModelError::Input(_))
    ));
}

/// Keeps every layer's q, k, v.
#[derive(Default)]
struct Keep(Vec<(Array3<f32>, Array3<f32>, Array3<f32>)>);
impl Hooks for Keep {
    fn on_attention(
        &mut self,
        _layer: usize,
        q: ArrayView3<'_, f32>,
        k: ArrayView3<'_, f32>,
        v: ArrayView3<'_, f32>,
    ) {
        self.0.push((q.to_owned(), k.to_owned(), v.to_owned()));
    }
}

#[test]
fn minilm_hooks_see_what_the_exported_head_holds() {
    let Some(m) = minilm() else { return };
    let ids = sample_ids(m, 100);
    let mut keep = Keep::default();
    m.forward(&ids, Attention::Dense, &mut keep).unwrap();
    assert_eq!(keep.0.len(), 6);
    let (q, k, v) = &keep.0[2];
    assert_eq!(q.dim(), (12, ids.len(), 32));
    let head = analysis::head_qkv(m, &ids, 2, 7, &Silent).unwrap();
    assert_eq!(head.q, q.index_axis(ndarray::Axis(0), 7));
    assert_eq!(head.k, k.index_axis(ndarray::Axis(0), 7));
    assert_eq!(head.v, v.index_axis(ndarray::Axis(0), 7));
    // The forward pass's attention of a head is the kernel's output on that head's q, k, v.
    let p = PatternParams::new(PatternKind::Local, ids.len())
        .window(5)
        .build()
        .unwrap();
    let all: Array2<f32> = attend_heads(q.view(), k.view(), v.view(), Some(&p), false).unwrap();
    let one = attnscope::kernel::reference(&p, &head, None);
    let got = all.slice(ndarray::s![.., 7 * 32..8 * 32]).to_owned();
    assert!(attnscope::kernel::max_rel_err(&got, &one) < 1e-4);
    assert!(analysis::check_head(m.info(), 6, 0).is_err());
    assert!(analysis::check_head(m.info(), 0, 12).is_err());
}
