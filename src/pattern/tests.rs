//! Hand-computed counts and brute-force property tests of the pattern engine.

use super::*;
use proptest::prelude::*;

fn nnz_of(p: PatternParams) -> u64 {
    p.build().expect("valid pattern").nnz()
}

/// Brute force: count allowed cells by visiting every one.
fn brute_nnz(p: &Pattern) -> u64 {
    let n = p.n();
    (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .filter(|&(i, j)| p.allows(i, j))
        .count() as u64
}

#[test]
fn hand_counts_of_small_patterns() {
    use PatternKind::*;
    // local W=1, n=5: 5 diagonal + 2·4 neighbours.
    assert_eq!(nnz_of(PatternParams::new(Local, 5).window(1)), 13);
    // atrous K=2, n=4: d=0 (4) + d=±2 (2·2).
    assert_eq!(nnz_of(PatternParams::new(Atrous, 4).stride(2)), 8);
    // sparse K=2, W=1, n=4: everything but d=±3, the diagonal counted once.
    assert_eq!(
        nnz_of(PatternParams::new(Sparse, 4).stride(2).window(1)),
        14
    );
    // causal local W=1, n=5: 5 + 4.
    assert_eq!(
        nnz_of(PatternParams::new(Local, 5).window(1).causal(true)),
        9
    );
    // causal atrous K=2, n=4: 4 + 2.
    assert_eq!(
        nnz_of(PatternParams::new(Atrous, 4).stride(2).causal(true)),
        6
    );
    // strided L=2, n=4 (always causal): d=0 (4) + d=1 (3) + d=2 (2).
    assert_eq!(nnz_of(PatternParams::new(Strided, 4).stride(2)), 9);
    // fixed L=2, C=1, n=4: blocks (8) + summary columns 1 and 3 (8) − overlap (4).
    assert_eq!(
        nnz_of(PatternParams::new(Fixed, 4).stride(2).summary(1)),
        12
    );
    // fixed L=2, C=1, n=4, causal: lower triangles of blocks (6) + col 1 rows 2,3 (2) .
    assert_eq!(
        nnz_of(
            PatternParams::new(Fixed, 4)
                .stride(2)
                .summary(1)
                .causal(true)
        ),
        8
    );
    // longformer W=0, G=1, n=4: row 0 ∪ column 0 (7) + the other 3 diagonal cells.
    assert_eq!(
        nnz_of(PatternParams::new(Longformer, 4).window(0).global(1)),
        10
    );
    // bigbird n=8, B=2, Wb=0, Gb=1, R=0: global row (16) + 3 rows × 2 blocks × 4 cells.
    assert_eq!(
        nnz_of(PatternParams::new(Bigbird, 8).block(2).window(0).global(1)),
        40
    );
    // bigbird n=8, B=2, Wb=0, Gb=0, R=1: every block row gets its diagonal and one more block.
    assert_eq!(
        nnz_of(PatternParams::new(Bigbird, 8).block(2).window(0).random(1)),
        32
    );
}

#[test]
fn seed_examples() {
    use PatternKind::*;
    // n = 64, k = 4, w = 3 (the seed's example).
    // local: 64 + 2·(63 + 62 + 61) = 436
    // atrous: 64 + 2·Σ_{m=1}^{15} (64 − 4m) = 64 + 960 = 1024
    // sparse: 436 + 1024 − 64 (the diagonal counted twice) = 1396
    assert_eq!(nnz_of(PatternParams::new(Local, 64).window(3)), 436);
    assert_eq!(nnz_of(PatternParams::new(Atrous, 64).stride(4)), 1024);
    assert_eq!(
        nnz_of(PatternParams::new(Sparse, 64).stride(4).window(3)),
        1396
    );
}

#[test]
fn edge_cases() {
    use PatternKind::*;
    for kind in PatternKind::ALL {
        let mut p = PatternParams::new(kind, 1).stride(1).window(0);
        p.block = 1;
        assert_eq!(nnz_of(p), 1, "{kind} at n = 1");
    }
    // K = 1 is dense; K > n keeps only the diagonal.
    assert_eq!(nnz_of(PatternParams::new(Atrous, 7).stride(1)), 49);
    assert_eq!(nnz_of(PatternParams::new(Atrous, 7).stride(9)), 7);
    // W ≥ n − 1 is dense, also far beyond n.
    assert_eq!(nnz_of(PatternParams::new(Local, 7).window(6)), 49);
    assert_eq!(nnz_of(PatternParams::new(Local, 7).window(1 << 40)), 49);
    // G ≥ n is dense.
    assert_eq!(
        nnz_of(PatternParams::new(Longformer, 7).window(0).global(9)),
        49
    );
    // Bigbird with the same seed is the same mask; another seed differs here.
    let bb = |seed| {
        PatternParams::new(Bigbird, 256)
            .block(8)
            .window(1)
            .global(1)
            .random(3)
            .seed(seed)
            .build()
            .unwrap()
    };
    let (a, b, c) = (bb(7), bb(7), bb(8));
    let cells = |p: &Pattern| {
        (0..256)
            .flat_map(|i| (0..256).map(move |j| (i, j)))
            .map(|(i, j)| p.allows(i, j))
            .collect::<Vec<_>>()
    };
    assert_eq!(cells(&a), cells(&b));
    assert_ne!(cells(&a), cells(&c));
    assert_eq!(a.nnz(), c.nnz(), "random blocks change places, not count");
}

#[test]
fn bad_parameters_are_refused() {
    use PatternKind::*;
    assert_eq!(
        PatternParams::new(Local, 0).window(1).build().unwrap_err(),
        PatternError::BadN(0)
    );
    let flag_of = |e: PatternError| match e {
        PatternError::Syntax { flag, .. } => flag,
        e => panic!("{e}"),
    };
    let missing = PatternParams::new(Atrous, 8).build().unwrap_err();
    assert!(missing.to_string().contains("atrous needs k"), "{missing}");
    assert_eq!(flag_of(missing), Some("--stride"));
    let zero = PatternParams::new(Atrous, 8).stride(0).build().unwrap_err();
    assert!(
        zero.to_string().contains("--stride 0 is out of range"),
        "{zero}"
    );
    assert_eq!(flag_of(zero), Some("--stride"));
    let c = PatternParams::new(Fixed, 8)
        .stride(4)
        .summary(5)
        .build()
        .unwrap_err();
    assert!(c.to_string().contains("--summary 5 is out of range"), "{c}");
    assert_eq!(flag_of(c), Some("--summary"));
    let e = PatternParams::new(Fixed, 8)
        .stride(4)
        .summary(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("--summary 0"), "{e}");
}

#[test]
fn every_row_allows_its_diagonal() {
    for kind in PatternKind::ALL {
        let p = PatternParams::new(kind, 50)
            .stride(7)
            .window(2)
            .summary(3)
            .block(4)
            .random(2)
            .causal(true)
            .build()
            .unwrap();
        for i in 0..50 {
            assert!(p.allows(i, i), "{kind} row {i}");
        }
    }
}

#[test]
fn block_stats_of_a_band_by_hand() {
    // local W=1, n=6, B=3: two diagonal tiles partial (7 of 9 cells), the two off-diagonal
    // tiles partial (1 cell each): 4 partial, 0 full, 0 empty.
    let p = PatternParams::new(PatternKind::Local, 6)
        .window(1)
        .build()
        .unwrap();
    let l = BlockLayout::build(&p, 3).unwrap();
    assert_eq!(
        (
            l.stats.blocks_full,
            l.stats.blocks_partial,
            l.stats.blocks_empty
        ),
        (0, 4, 0)
    );
    assert_eq!(l.nnz(), 16);
    // local W=0 (diagonal), n=5, B=2: tiles on the diagonal only; the last one is 1×1 and full.
    let p = PatternParams::new(PatternKind::Local, 5)
        .window(0)
        .build()
        .unwrap();
    let l = BlockLayout::build(&p, 2).unwrap();
    assert_eq!(
        (
            l.stats.blocks_full,
            l.stats.blocks_partial,
            l.stats.blocks_empty
        ),
        (1, 2, 6)
    );
    // visited cells 4 + 4 + 1 = 9 of 25: the edge tile counts its one real cell.
    assert_eq!(l.stats.cells_visited, 9);
    assert!((l.stats.block_density - 9.0 / 25.0).abs() < 1e-12);
}

fn any_params() -> impl Strategy<Value = PatternParams> {
    (
        prop::sample::select(PatternKind::ALL.to_vec()),
        1usize..48,
        1usize..12,
        0usize..12,
        any::<bool>(),
        0usize..6,
        1usize..12,
        1usize..9,
        0usize..4,
        0u64..1000,
    )
        .prop_map(|(kind, n, k, w, causal, g, c, b, r, seed)| PatternParams {
            expr: None,
            kind,
            n,
            stride: Some(k),
            window: Some(w),
            causal,
            global: g,
            summary: Some(c.min(k)),
            block: b,
            random: r,
            seed,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn count_in_range_matches_brute_force(params in any_params(), a in 0usize..60, b in 0usize..60, i in 0usize..48) {
        let p = params.build().unwrap();
        let i = i % p.n();
        let brute = (a..b.min(p.n())).filter(|&j| p.allows(i, j)).count() as u64;
        prop_assert_eq!(p.count_in_range(i, a..b), brute);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn count_rect_matches_brute_force(params in any_params(), r in (0usize..50, 0usize..50), c in (0usize..50, 0usize..50)) {
        let p = params.build().unwrap();
        let n = p.n();
        let (r0, r1) = (r.0.min(r.1), r.0.max(r.1));
        let (c0, c1) = (c.0.min(c.1), c.0.max(c.1));
        let mut brute = 0u64;
        for i in r0..r1.min(n) {
            for j in c0..c1.min(n) {
                brute += p.allows(i, j) as u64;
            }
        }
        prop_assert_eq!(p.count_rect(r0..r1, c0..c1), brute);
    }

    #[test]
    fn nnz_and_csr_match_allows(params in any_params()) {
        let p = params.build().unwrap();
        let n = p.n();
        prop_assert_eq!(p.nnz(), brute_nnz(&p));
        let csr = CsrLayout::build(&p).unwrap();
        prop_assert_eq!(csr.nnz(), p.nnz());
        for i in 0..n {
            let expect: Vec<u32> = (0..n as u32).filter(|&j| p.allows(i, j as usize)).collect();
            prop_assert_eq!(csr.row(i), expect.as_slice(), "row {}", i);
        }
    }

    #[test]
    fn block_layout_matches_brute_force(params in any_params(), block in 1usize..10) {
        let p = params.build().unwrap();
        let n = p.n();
        let l = BlockLayout::build(&p, block).unwrap();
        prop_assert_eq!(l.nnz(), p.nnz());
        let nb = n.div_ceil(block);
        let (mut full, mut partial, mut empty, mut visited) = (0u64, 0u64, 0u64, 0u64);
        for bi in 0..nb {
            for bj in 0..nb {
                let rows = bi * block..((bi + 1) * block).min(n);
                let cols = bj * block..((bj + 1) * block).min(n);
                let area = (rows.len() * cols.len()) as u64;
                let count = rows.clone().flat_map(|i| cols.clone().map(move |j| (i, j)))
                    .filter(|&(i, j)| p.allows(i, j)).count() as u64;
                let kind = if count == 0 { BlockKind::Empty } else if count == area { BlockKind::Full } else { BlockKind::Partial };
                prop_assert_eq!(l.kind(bi, bj), kind);
                match kind {
                    BlockKind::Empty => empty += 1,
                    BlockKind::Full => { full += 1; visited += area }
                    BlockKind::Partial => { partial += 1; visited += area }
                }
            }
        }
        prop_assert_eq!((l.stats.blocks_full, l.stats.blocks_partial, l.stats.blocks_empty), (full, partial, empty));
        prop_assert_eq!(l.stats.cells_visited, visited);
        prop_assert!(l.stats.block_density <= 1.0);
    }

    #[test]
    fn raster_sums_to_nnz(params in any_params(), side in 1usize..60) {
        let p = params.build().unwrap();
        let r = Raster::build(&p, side);
        prop_assert_eq!(r.total(), p.nnz());
        let weighted: f64 = r.fractions().iter().enumerate()
            .map(|(t, &f)| f as f64 * r.area(t % r.width, t / r.width) as f64).sum();
        prop_assert!((weighted - p.nnz() as f64).abs() < 1e-3 * (1.0 + p.nnz() as f64));
        if p.n() <= side {
            prop_assert_eq!((r.width, r.height), (p.n(), p.n()));
            for i in 0..p.n() {
                for j in 0..p.n() {
                    prop_assert_eq!(r.counts[i * p.n() + j], p.allows(i, j) as u64);
                }
            }
        }
    }
}

#[test]
fn count_rect_on_every_rectangle_of_small_masks() {
    let n = 11;
    for kind in PatternKind::ALL {
        for causal in [false, true] {
            let p = PatternParams::new(kind, n)
                .stride(3)
                .window(1)
                .summary(2)
                .block(3)
                .global(1)
                .random(1)
                .seed(5)
                .causal(causal)
                .build()
                .unwrap();
            for i0 in 0..n {
                for i1 in i0 + 1..=n {
                    for j0 in 0..n {
                        for j1 in j0 + 1..=n {
                            let brute = (i0..i1)
                                .flat_map(|i| (j0..j1).map(move |j| (i, j)))
                                .filter(|&(i, j)| p.allows(i, j))
                                .count() as u64;
                            assert_eq!(
                                p.count_rect(i0..i1, j0..j1),
                                brute,
                                "{} rows {i0}..{i1} cols {j0}..{j1}",
                                p.label()
                            );
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The per-diagonal shortcut of Toeplitz masks agrees with the tile-by-tile layout.
    #[test]
    fn block_stats_shortcut_matches_layout(params in any_params(), n in 1usize..300, block in 1usize..40) {
        let mut params = params;
        params.n = n;
        let p = params.build().unwrap();
        let fast = BlockStats::compute(&p, block).unwrap();
        let slow = BlockLayout::build(&p, block).unwrap().stats;
        prop_assert_eq!(fast, slow);
    }
}
