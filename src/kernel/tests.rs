//! Every kernel against the naive reference on every pattern, and the edge cases.

use super::*;
use crate::inputs::{generate, InputKind};
use crate::pattern::{PatternKind, PatternParams};
use proptest::prelude::*;

/// Patterns of every family (causal too) for sequence length `n`.
fn patterns(n: usize, k: usize, w: usize) -> Vec<Pattern> {
    let mut out = Vec::new();
    for causal in [false, true] {
        let params = [
            PatternParams::new(PatternKind::Dense, n),
            PatternParams::new(PatternKind::Local, n).window(w),
            PatternParams::new(PatternKind::Atrous, n).stride(k),
            PatternParams::new(PatternKind::Sparse, n)
                .stride(k)
                .window(w),
            PatternParams::new(PatternKind::Strided, n).stride(k),
            PatternParams::new(PatternKind::Fixed, n)
                .stride(k)
                .summary(1.max(k / 3)),
            PatternParams::new(PatternKind::Longformer, n)
                .window(w)
                .global(2),
            PatternParams::new(PatternKind::Bigbird, n)
                .block(8)
                .window(1)
                .global(1)
                .random(1)
                .seed(5),
        ];
        for p in params {
            out.push(p.causal(causal).build().expect("valid pattern"));
        }
    }
    out
}

/// Runs every kernel on `p` and compares with the reference (dense against full attention).
fn check_all(p: &Pattern, qkv: &Qkv, block: usize) {
    let want = reference(p, qkv, None);
    let full = PatternParams::new(PatternKind::Dense, p.n())
        .build()
        .unwrap();
    let want_full = reference(&full, qkv, None);
    for kind in KernelKind::ALL {
        let got = match run_kernel(kind, p, qkv, None, block) {
            Ok(o) => o,
            Err(KernelError::Unsupported { .. }) if !kind.supports(p) => continue,
            Err(e) => panic!("{kind} on {}: {e}", p.label()),
        };
        assert!(
            got.iter().all(|x| x.is_finite()),
            "{kind} on {}: non-finite",
            p.label()
        );
        let w = if kind == KernelKind::Dense {
            &want_full
        } else {
            &want
        };
        let err = max_rel_err(&got, w);
        assert!(
            err < 1e-4,
            "{kind} on {} (n={}, d={}, B={block}): rel err {err}",
            p.label(),
            p.n(),
            qkv.d()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn every_kernel_matches_reference_on_every_pattern(
        n in 1usize..200,
        d in 1usize..40,
        k in 1usize..20,
        w in 0usize..12,
        block in prop::sample::select(vec![16usize, 24, 64, 7]),
        seed in 0u64..1000,
    ) {
        let qkv = generate(InputKind::Random { seed }, n, d);
        for p in patterns(n, k, w) {
            check_all(&p, &qkv, block);
        }
    }
}

#[test]
fn larger_sizes_and_head_dims() {
    for (n, d, k, w) in [(333, 64, 16, 8), (257, 80, 64, 32), (130, 128, 5, 70)] {
        let qkv = generate(InputKind::Structured { seed: 1 }, n, d);
        for p in patterns(n, k, w) {
            check_all(&p, &qkv, 64);
        }
    }
}

#[test]
fn permuted_tasks_of_many_tiles_match_reference() {
    // Long enough that a band task holds several 16-row tiles and a residue group is split
    // over several tasks; every task packs its own Q, Kᵀ and V. Stride 2 gives residue groups
    // of 550 keys, more than one 64-row tile.
    let n = 1100;
    let qkv = generate(InputKind::Random { seed: 7 }, n, 24);
    let params = [
        PatternParams::new(PatternKind::Sparse, n)
            .stride(64)
            .window(32),
        PatternParams::new(PatternKind::Sparse, n)
            .stride(5)
            .window(12)
            .causal(true),
        PatternParams::new(PatternKind::Local, n).window(40),
        PatternParams::new(PatternKind::Dense, n),
        PatternParams::new(PatternKind::Dense, n).causal(true),
        PatternParams::new(PatternKind::Atrous, n).stride(3),
        PatternParams::new(PatternKind::Atrous, n).stride(2),
        PatternParams::new(PatternKind::Sparse, n)
            .stride(2)
            .window(7)
            .causal(true),
        PatternParams::new(PatternKind::Strided, n).stride(32),
    ];
    for p in params {
        let p = p.build().expect("valid pattern");
        let got = run_kernel(KernelKind::Permuted, &p, &qkv, None, 64).unwrap();
        let err = max_rel_err(&got, &reference(&p, &qkv, None));
        assert!(err < 1e-4, "{}: rel err {err}", p.label());
    }
}

#[test]
fn tiny_inputs() {
    for (n, d) in [(1, 1), (1, 7), (5, 1), (2, 3)] {
        let qkv = generate(InputKind::Random { seed: 9 }, n, d);
        for p in patterns(n, 1, 0) {
            check_all(&p, &qkv, 64);
        }
    }
}

#[test]
fn single_key_rows_copy_their_value() {
    // local(0): each query sees only itself, so O = V exactly.
    let qkv = generate(InputKind::Random { seed: 4 }, 100, 8);
    let p = PatternParams::new(PatternKind::Local, 100)
        .window(0)
        .build()
        .unwrap();
    for kind in KernelKind::ALL.into_iter().filter(|k| !k.is_dense_work()) {
        let o = run_kernel(kind, &p, &qkv, None, 64).unwrap();
        let err = max_rel_err(&o, &qkv.v);
        assert!(err < 1e-6, "{kind}: {err}");
    }
    // atrous with k ≥ n: the diagonal only.
    let p = PatternParams::new(PatternKind::Atrous, 100)
        .stride(500)
        .build()
        .unwrap();
    for kind in KernelKind::ALL
        .into_iter()
        .filter(|k| *k != KernelKind::Dense)
    {
        let o = run_kernel(kind, &p, &qkv, None, 16).unwrap();
        assert!(max_rel_err(&o, &qkv.v) < 1e-6, "{kind}");
    }
}

#[test]
fn huge_logits_stay_finite_and_pick_the_max() {
    // q · k / sqrt(d) reaches ±1e4: softmax becomes a hard max.
    let n = 70;
    let d = 4;
    let mut qkv = generate(InputKind::Random { seed: 2 }, n, d);
    qkv.q.fill(0.0);
    qkv.k.fill(0.0);
    for i in 0..n {
        qkv.q[[i, 0]] = 100.0;
        qkv.k[[i, 0]] = 2.0 * (i as f32 - 35.0); // key 69 has the largest logit 6.8e3
    }
    let p = PatternParams::new(PatternKind::Sparse, n)
        .stride(7)
        .window(2)
        .build()
        .unwrap();
    for kind in KernelKind::ALL {
        let o = run_kernel(kind, &p, &qkv, None, 16).unwrap();
        assert!(o.iter().all(|x| x.is_finite()), "{kind}");
        // Dense sees every key: every row is V[69].
        if kind == KernelKind::Dense {
            for i in 0..n {
                for c in 0..d {
                    assert!((o[[i, c]] - qkv.v[[69, c]]).abs() < 1e-5);
                }
            }
        }
    }
    let o = run_kernel(KernelKind::Csr, &p, &qkv, Some(1e4), 16).unwrap();
    assert!(o.iter().all(|x| x.is_finite()));
}

#[test]
fn rows_without_keys_are_zero() {
    let qkv = generate(InputKind::Random { seed: 2 }, 8, 4);
    let zero = engine::TileState::new(3, 4);
    let mut out = vec![1.0f32; 12];
    zero.finish(&mut out, 4);
    assert!(out.iter().all(|&x| x == 0.0));
    let w = attention_weights(None, &qkv, None).unwrap();
    for row in w.outer_iter() {
        assert!((row.sum() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let p = PatternParams::new(PatternKind::Dense, 10).build().unwrap();
    let qkv = generate(InputKind::Random { seed: 2 }, 8, 4);
    assert!(matches!(
        run_kernel(KernelKind::Csr, &p, &qkv, None, 64),
        Err(KernelError::LengthMismatch {
            pattern_n: 10,
            input_n: 8
        })
    ));
    let mut bad = generate(InputKind::Random { seed: 2 }, 10, 4);
    bad.v = ndarray::Array2::zeros((10, 3));
    for kind in KernelKind::ALL {
        assert!(matches!(
            run_kernel(kind, &p, &bad, None, 64),
            Err(KernelError::Input(_))
        ));
    }
    let empty = Qkv {
        q: ndarray::Array2::zeros((10, 0)),
        k: ndarray::Array2::zeros((10, 0)),
        v: ndarray::Array2::zeros((10, 0)),
    };
    assert!(run_kernel(KernelKind::Dense, &p, &empty, None, 64).is_err());
    let ok = generate(InputKind::Random { seed: 2 }, 10, 4);
    assert!(matches!(
        run_kernel(KernelKind::Dense, &p, &ok, Some(f32::NAN), 64),
        Err(KernelError::BadScale(_))
    ));
    assert!(run_kernel(KernelKind::Block, &p, &ok, None, 0).is_err());
    let bigbird = PatternParams::new(PatternKind::Bigbird, 10)
        .block(2)
        .random(1)
        .build()
        .unwrap();
    assert!(matches!(
        run_kernel(KernelKind::Permuted, &bigbird, &ok, None, 64),
        Err(KernelError::Unsupported { .. })
    ));
    let big = generate(InputKind::Random { seed: 2 }, MAX_WEIGHTS_N + 1, 1);
    assert!(matches!(
        attention_weights(None, &big, None),
        Err(KernelError::TooLarge { .. })
    ));
}

#[test]
fn weights_match_the_pattern() {
    let qkv = generate(InputKind::Structured { seed: 2 }, 50, 8);
    let p = PatternParams::new(PatternKind::Sparse, 50)
        .stride(5)
        .window(1)
        .causal(true)
        .build()
        .unwrap();
    let w = attention_weights(Some(&p), &qkv, None).unwrap();
    for i in 0..50 {
        let total: f32 = w.row(i).sum();
        assert!((total - 1.0).abs() < 1e-5);
        for j in 0..50 {
            assert_eq!(w[[i, j]] > 0.0, p.allows(i, j), "({i}, {j})");
        }
    }
    // O = W V.
    let o = reference(&p, &qkv, None);
    let wv = w.dot(&qkv.v);
    assert!(max_rel_err(&wv, &o) < 1e-5);
}

#[test]
fn executed_cells_follow_spec() {
    let p = PatternParams::new(PatternKind::Sparse, 300)
        .stride(10)
        .window(4)
        .build()
        .unwrap();
    assert_eq!(executed_cells(KernelKind::Dense, &p, 64), 90_000);
    assert_eq!(executed_cells(KernelKind::Masked, &p, 64), 90_000);
    assert_eq!(executed_cells(KernelKind::Csr, &p, 64), p.nnz());
    let bs = BlockStats::compute(&p, 32).unwrap();
    assert_eq!(executed_cells(KernelKind::Block, &p, 32), bs.cells_visited);
    let perm = executed_cells(KernelKind::Permuted, &p, 64);
    assert!(perm >= p.nnz() && perm < 90_000, "{perm}");
    // local(2), n = 64: 16 groups of 4 rows, each computing the 16-key panels that hold the
    // union of its rows' keys, [a − 2, a + 6) ∩ [0, 64): two panels for a = 12, 16, 28, 32,
    // 44, 48 (the union crosses a multiple of 16), one for the other ten.
    let l = PatternParams::new(PatternKind::Local, 64)
        .window(2)
        .build()
        .unwrap();
    assert_eq!(
        executed_cells(KernelKind::Permuted, &l, 64),
        4 * 16 * (6 * 2 + 10)
    );
    // The others compute whole panels and groups of 4 rows: n = 300 is 18.75 panels, its
    // five tiles of 64, 64, 64, 64, 44 rows are all whole groups.
    assert_eq!(computed_cells(KernelKind::Dense, &p, 64), 300 * 304);
    assert_eq!(computed_cells(KernelKind::Csr, &p, 64), p.nnz());
    // BigBird's random blocks have no band, residue or column structure: permuted cannot run.
    let bigbird = PatternParams::new(PatternKind::Bigbird, 64)
        .block(8)
        .random(1)
        .build()
        .unwrap();
    assert_eq!(executed_cells(KernelKind::Permuted, &bigbird, 64), 0);
    assert_eq!(flops_useful(&p, 64), 4 * 64 * p.nnz());
}

#[test]
fn kernel_names_round_trip() {
    for k in KernelKind::ALL {
        assert_eq!(KernelKind::from_name(k.name()), Some(k));
        assert_eq!(kernel(k, 64).kind(), k);
    }
    assert_eq!(KernelKind::from_name("flash"), None);
}

#[test]
fn portable_and_avx2_paths_match_reference() {
    // The forced path is set on the threads of a pool of this test's own (the switch is per
    // thread), so tests running meanwhile on other threads keep the best path.
    for path in [1u8, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .start_handler(move |_| engine::FORCE_PATH.with(|f| f.set(path)))
            .build()
            .unwrap();
        pool.install(|| {
            assert_eq!(engine::FORCE_PATH.with(std::cell::Cell::get), path);
            for (n, d) in [(131, 64), (70, 19)] {
                let qkv = generate(InputKind::Random { seed: path as u64 }, n, d);
                for p in patterns(n, 9, 4) {
                    check_all(&p, &qkv, 32);
                }
                for text in PERMUTED_SINKS {
                    let p = PatternParams::new(PatternKind::Custom, n)
                        .expr(text)
                        .build()
                        .unwrap();
                    check_all(&p, &qkv, 32);
                }
                // The csr kernel's last 1 … 3 keys of a row are scored one at a time there.
                let (_, counted) =
                    run_kernel_counted(KernelKind::Csr, &patterns(n, 9, 4)[3], &qkv, None, 32)
                        .unwrap();
                assert_eq!(counted, patterns(n, 9, 4)[3].nnz());
            }
        });
    }
    // This thread and the global pool were never switched.
    assert_eq!(engine::FORCE_PATH.with(std::cell::Cell::get), 0);
    let global = rayon::broadcast(|_| engine::FORCE_PATH.with(std::cell::Cell::get));
    assert!(global.iter().all(|&p| p == 0), "{global:?}");
}

/// One rule for non-finite input: every kernel refuses it with the same error, naming the array
/// and the first bad row (before this, csr returned NaN for a NaN query row and the others 0, a
/// NaN key was dropped silently, an infinite value gave 22 to 64 non-finite rows by kernel).
#[test]
fn every_kernel_refuses_non_finite_input_alike() {
    let n = 96;
    let p = PatternParams::new(PatternKind::Sparse, n)
        .stride(8)
        .window(3)
        .build()
        .unwrap();
    let clean = generate(InputKind::Random { seed: 4 }, n, 16);
    let mut cases = Vec::new();
    let mut q = clean.clone();
    q.q[[5, 3]] = f32::NAN;
    cases.push((q, "Q", 5));
    let mut k = clean.clone();
    k.k[[17, 0]] = f32::NAN;
    k.k[[40, 0]] = f32::INFINITY;
    cases.push((k, "K", 17));
    let mut v = clean.clone();
    v.v[[63, 15]] = f32::NEG_INFINITY;
    cases.push((v, "V", 63));
    for (qkv, what, row) in &cases {
        for kind in KernelKind::ALL {
            match run_kernel(kind, &p, qkv, None, 16) {
                Err(KernelError::Input(crate::inputs::InputError::NonFinite {
                    what: w,
                    row: r,
                    ..
                })) => {
                    assert_eq!((w.as_str(), r), (*what, *row), "{kind}");
                }
                other => panic!("{kind} on a non-finite {what}: {other:?}"),
            }
        }
    }
    for kind in KernelKind::ALL {
        assert!(run_kernel(kind, &p, &clean, None, 16).is_ok(), "{kind}");
    }
}

/// The block kernel refuses, before building anything, a tile list that would not fit in
/// memory, and names a block size that would (a distance-only pattern at B = 1 once grew past
/// 5 GB towards ~200 GB).
#[test]
fn block_layout_size_is_checked_up_front() {
    let p = PatternParams::new(PatternKind::Sparse, 1 << 20)
        .stride(64)
        .window(32)
        .build()
        .unwrap();
    let e = crate::pattern::check_layout(&p, 1).unwrap_err();
    match &e {
        crate::pattern::PatternError::BlockTooSmall {
            block: 1,
            needed,
            suggest: Some(b),
            ..
        } => {
            assert!(*needed > crate::pattern::MAX_LAYOUT_TILES, "{e}");
            assert_eq!(*b, 128, "{e}");
            assert!(crate::pattern::check_layout(&p, *b).is_ok());
            assert!(crate::pattern::check_layout(&p, b / 2).is_err());
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("use --block 128 or larger"), "{e}");
    // A small layout passes and is exactly as counted.
    let small = PatternParams::new(PatternKind::Sparse, 1000)
        .stride(64)
        .window(32)
        .build()
        .unwrap();
    assert!(crate::pattern::check_layout(&small, 1).is_ok());
}

/// Expressions of every term kind, causal or not, at sizes that are no multiple of a tile.
const EXPRESSIONS: [&str; 10] = [
    "(local(w=5) | sink(s=4)) & causal",
    "local(w=16) & atrous(k=4)",
    "local(w=3) | atrous(k=7) | global(g=2)",
    "sparse(k=6, w=2) & causal",
    "fixed(l=8, c=2) | sink(s=3)",
    "longformer(w=2, g=3) & atrous(k=2)",
    "bigbird(b=8, wb=1, gb=1, r=1, seed=4) | local(w=1)",
    "(strided(l=5) | global(g=1)) & local(w=20)",
    "atrous(k=3) | atrous(k=6)",
    "dense & causal | sink(s=2)",
];

#[test]
fn every_kernel_matches_reference_on_expressions() {
    for (x, text) in EXPRESSIONS.iter().enumerate() {
        for (n, d) in [(1, 3), (37, 8), (131, 16)] {
            let p = PatternParams::new(PatternKind::Custom, n)
                .expr(text)
                .build()
                .unwrap();
            let qkv = generate(InputKind::Random { seed: x as u64 }, n, d);
            for block in [7, 16, 64] {
                check_all(&p, &qkv, block);
            }
        }
    }
    // The permuted kernel takes band + residue expressions, causal or not.
    for text in [
        "local(w=16) | atrous(k=4)",
        "(local(w=3) | atrous(k=7)) & causal",
        "atrous(k=3) | atrous(k=6)",
    ] {
        let p = PatternParams::new(PatternKind::Custom, 50)
            .expr(text)
            .build()
            .unwrap();
        assert!(KernelKind::Permuted.supports(&p), "{text}");
    }
}

/// Expressions the permuted kernel takes with sink terms (and without), causal or not.
const PERMUTED_SINKS: &[&str] = &[
    "local(w=16) | sink(s=4)",
    "(local(w=3) | atrous(k=7) | sink(s=5)) & causal",
    "(local(w=64) | sink(s=4)) & causal",
    "atrous(k=5) | sink(s=70)",
    "sink(s=3)",
    "sparse(k=8, w=4) | sink(s=100) | sink(s=2)",
    "(atrous(k=3) | sink(s=130)) & causal",
    "local(w=0) | sink(s=1)",
    "(strided(l=6) | sink(s=9)) & causal",
    "longformer(w=5, g=3)",
    "longformer(w=2, g=70, causal)",
    "atrous(k=4) | global(g=2)",
    "local(w=1) | global(g=20) | sink(s=30)",
    "fixed(l=8, c=2)",
    "fixed(l=16, c=3, causal)",
    "fixed(l=5, c=5)",
    "fixed(l=128, c=8)",
    "fixed(l=100, c=1, causal)",
    "bigbird(b=16, wb=1, gb=0, r=0, seed=0)",
    "bigbird(b=7, wb=2, gb=1, r=0, seed=0)",
    "bigbird(b=64, wb=1, gb=2, r=0, seed=0) & causal",
    "bigbird(b=5, wb=0, gb=0, r=0, seed=1) | sink(s=3)",
    "bigbird(b=20, wb=1, gb=1, r=0, seed=0) | global(g=3)",
    // Sink keys spliced into free lanes of the band's panels: StreamingLLM's 4 sinks (after
    // the band in one group of 4 rows, before it in the 3 others), 13 that never fit, a
    // two-sided window, residues beside.
    "(local(w=64) | sink(s=4)) & causal",
    "(local(w=64) | sink(s=13)) & causal",
    "local(w=9) | sink(s=3)",
    "(sparse(k=7, w=9) | sink(s=2)) & causal",
    // No key allowed anywhere: neither pass runs, the output is zeros.
    "sink(s=0)",
];

#[test]
fn permuted_runs_sink_expressions_exactly() {
    for (x, text) in PERMUTED_SINKS.iter().enumerate() {
        for (n, d) in [(1, 4), (2, 8), (45, 8), (200, 16), (1100, 24)] {
            let p = PatternParams::new(PatternKind::Custom, n)
                .expr(text)
                .build()
                .unwrap();
            assert!(KernelKind::Permuted.supports(&p), "{text}");
            let qkv = generate(InputKind::Random { seed: x as u64 + 3 }, n, d);
            let want = reference(&p, &qkv, None);
            let got = run_kernel(KernelKind::Permuted, &p, &qkv, None, 64).unwrap();
            let err = max_rel_err(&got, &want);
            assert!(err < 1e-4, "{text} at n = {n}: rel err {err}");
        }
    }
    // More sink keys than the plan takes go to the other kernels.
    let wide = PatternParams::new(PatternKind::Custom, 10_000)
        .expr("local(w=4) | sink(s=5000)")
        .build()
        .unwrap();
    assert!(!KernelKind::Permuted.supports(&wide));
    // BigBird's random blocks have no part in the plan.
    let random = PatternParams::new(PatternKind::Custom, 300)
        .expr("bigbird(b=8, wb=1, gb=1, r=2, seed=0)")
        .build()
        .unwrap();
    assert!(!KernelKind::Permuted.supports(&random));
}

#[test]
fn permuted_global_rows_walk_their_keys_in_blocks() {
    // Global rows walk every key in blocks of 1024 packed as they go: 3 blocks here, the last
    // partial, in a task that also has tiles without global rows (sinks packed up front).
    let n = 2500;
    for (x, text) in [
        "longformer(w=6, g=21)",
        "local(w=3) | global(g=40) | sink(s=50)",
        "(local(w=3) | global(g=5)) & causal",
    ]
    .iter()
    .enumerate()
    {
        let p = PatternParams::new(PatternKind::Custom, n)
            .expr(text)
            .build()
            .unwrap();
        let qkv = generate(
            InputKind::Random {
                seed: x as u64 + 11,
            },
            n,
            16,
        );
        let (got, counted) = permuted::Permuted.forward_counted(&p, &qkv, 0.25).unwrap();
        let want = reference(&p, &qkv, Some(0.25));
        let err = max_rel_err(&got, &want);
        assert!(err < 1e-4, "{text}: rel err {err}");
        assert_eq!(
            counted,
            permuted::Permuted.computed_cells(&p).unwrap(),
            "{text}"
        );
    }
}

/// The cells every kernel's inner loops count while running equal the ones it reports
/// (`computed_cells`), on every pattern family, expressions and sizes that are not multiples
/// of a panel, a group or a tile; for permuted also the contract's executed cells.
#[test]
fn counted_cells_equal_reported_cells() {
    let mut cases: Vec<Pattern> = Vec::new();
    for (n, k, w) in [
        (1, 1, 0),
        (7, 3, 1),
        (61, 5, 2),
        (333, 16, 8),
        (1100, 9, 40),
    ] {
        cases.extend(patterns(n, k, w));
    }
    for text in EXPRESSIONS.iter().chain(PERMUTED_SINKS) {
        for n in [37, 131, 700] {
            cases.push(
                PatternParams::new(PatternKind::Custom, n)
                    .expr(text)
                    .build()
                    .unwrap(),
            );
        }
    }
    // Several pool sizes: the permuted kernel's task split depends on the thread count.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for p in &cases {
            let qkv = generate(InputKind::Random { seed: 1 }, p.n(), 8);
            for kind in KernelKind::ALL {
                if !kind.supports(p) {
                    continue;
                }
                for block in [16, 24] {
                    let (_, counted) = pool
                        .install(|| run_kernel_counted(kind, p, &qkv, None, block))
                        .unwrap();
                    let reported = computed_cells(kind, p, block);
                    assert_eq!(
                        counted,
                        reported,
                        "{kind} on {} at n = {}, B = {block}, {threads} threads",
                        p.label(),
                        p.n()
                    );
                    assert!(counted >= p.nnz(), "{kind} on {}", p.label());
                    if kind == KernelKind::Permuted {
                        assert_eq!(executed_cells(kind, p, block), counted);
                    }
                }
            }
        }
    }
}

/// Each allowed (query, key) pair enters a query's softmax exactly once, whichever pass of
/// the permuted plan holds it: with Q = 0 every score is equal, and with V = I (d = n) output
/// row i is the softmax weights themselves, 1 / nnz_i on row i's keys and 0 elsewhere. A pair
/// computed twice would weigh 2 / (nnz_i + 1), one computed never 0.
#[test]
fn permuted_computes_each_allowed_pair_once() {
    let n = 61;
    let qkv = Qkv {
        q: ndarray::Array2::zeros((n, n)),
        k: ndarray::Array2::from_shape_fn((n, n), |(i, j)| ((i * 7 + j * 3) % 5) as f32),
        v: ndarray::Array2::eye(n),
    };
    let mut cases: Vec<Pattern> = patterns(n, 5, 3);
    cases.extend(patterns(n, 16, 20));
    for text in PERMUTED_SINKS {
        cases.push(
            PatternParams::new(PatternKind::Custom, n)
                .expr(text)
                .build()
                .unwrap(),
        );
    }
    let mut keys = Vec::new();
    let mut checked = 0;
    for p in cases.iter().filter(|p| KernelKind::Permuted.supports(p)) {
        let out = run_kernel(KernelKind::Permuted, p, &qkv, None, 64).unwrap();
        for i in 0..n {
            p.row_keys(i, &mut keys);
            let w = 1.0 / keys.len() as f32;
            for j in 0..n {
                let want = if keys.contains(&(j as u32)) { w } else { 0.0 };
                let got = out[[i, j]];
                assert!(
                    (got - want).abs() < 1e-6,
                    "{} row {i} key {j}: weight {got}, want {want}",
                    p.label()
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} patterns ran");
}

/// Random unions of the terms the permuted planner takes (window, stride, sinks, global rows,
/// fixed's blocks and summary columns, and the named patterns made of them), causal or not, at
/// random n: where the planner takes one, its output matches the reference and the cells it
/// counted running equal the ones it reports.
#[test]
fn permuted_plans_of_random_unions_match_reference() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let mut planned = 0;
    for case in 0..160 {
        let n = if case % 5 == 0 {
            rng.gen_range(1..20)
        } else {
            rng.gen_range(20..300)
        };
        let terms = rng.gen_range(1..4);
        let mut parts = Vec::new();
        for _ in 0..terms {
            parts.push(match rng.gen_range(0..9) {
                0 => format!("local(w={})", rng.gen_range(0..40)),
                1 => format!("atrous(k={})", rng.gen_range(1..40)),
                2 => format!("sink(s={})", rng.gen_range(0..40)),
                3 => format!("global(g={})", rng.gen_range(0..20)),
                4 => format!(
                    "sparse(k={}, w={})",
                    rng.gen_range(1..30),
                    rng.gen_range(0..30)
                ),
                5 => {
                    let l = rng.gen_range(1..40);
                    format!("fixed(l={l}, c={})", rng.gen_range(1..=l))
                }
                6 => format!(
                    "longformer(w={}, g={})",
                    rng.gen_range(0..30),
                    rng.gen_range(0..9)
                ),
                7 => format!(
                    "bigbird(b={}, wb={}, gb={}, r=0, seed=0)",
                    rng.gen_range(1..40),
                    rng.gen_range(0..3),
                    rng.gen_range(0..3)
                ),
                _ => format!("strided(l={})", rng.gen_range(1..30)),
            });
        }
        let mut text = parts.join(" | ");
        if rng.gen_bool(0.4) {
            text = format!("({text}) & causal");
        }
        let p = PatternParams::new(PatternKind::Custom, n)
            .expr(&text)
            .build()
            .unwrap();
        if !KernelKind::Permuted.supports(&p) {
            continue;
        }
        planned += 1;
        let qkv = generate(InputKind::Random { seed: case }, n, 8);
        let want = reference(&p, &qkv, None);
        let (got, counted) = run_kernel_counted(KernelKind::Permuted, &p, &qkv, None, 64).unwrap();
        let err = max_rel_err(&got, &want);
        assert!(err < 1e-4, "{text} at n = {n}: rel err {err}");
        assert_eq!(
            counted,
            computed_cells(KernelKind::Permuted, &p, 64),
            "{text} at n = {n}"
        );
    }
    assert!(
        planned >= 60,
        "only {planned} of 160 random unions were planned"
    );
}
