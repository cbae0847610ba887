//! Reachability against brute force: boolean matrix powers over `Pattern::allows`.

use super::*;
use crate::pattern::{PatternKind, PatternParams};
use rand::{Rng, SeedableRng};

/// `R_l` for l = 1..=layers as dense boolean matrices (row = query, column = key).
fn brute(schedule: &[Pattern], layers: usize) -> Vec<Vec<Vec<bool>>> {
    let n = schedule[0].n();
    let mut cur: Vec<Vec<bool>> = (0..n).map(|i| (0..n).map(|j| i == j).collect()).collect();
    let mut out = Vec::new();
    for l in 1..=layers {
        let p = &schedule[(l - 1) % schedule.len()];
        let next: Vec<Vec<bool>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (0..n).any(|m| p.allows(i, m) && cur[m][j]))
                    .collect()
            })
            .collect();
        out.push(next.clone());
        cur = next;
    }
    out
}

fn count(m: &[Vec<bool>]) -> u64 {
    m.iter().flatten().filter(|&&b| b).count() as u64
}

fn random_pattern(rng: &mut impl Rng, n: usize) -> Pattern {
    let kind = PatternKind::ALL[rng.gen_range(0..PatternKind::ALL.len())];
    let mut p = PatternParams::new(kind, n)
        .causal(rng.gen_bool(0.3))
        .stride(rng.gen_range(1..=n.min(12)))
        .window(rng.gen_range(0..=n.min(10)))
        .global(rng.gen_range(0..=3));
    if kind == PatternKind::Fixed {
        let k = p.stride.unwrap_or(1);
        p = p.summary(rng.gen_range(1..=k));
    }
    if kind == PatternKind::Bigbird {
        p = p
            .block(rng.gen_range(1..=8))
            .window(rng.gen_range(0..=2))
            .global(rng.gen_range(0..=2))
            .random(rng.gen_range(0..=2))
            .seed(rng.gen());
    }
    p.build().expect("valid random pattern")
}

fn exact(schedule: Schedule, layers: usize) -> ReachReport {
    let n = schedule.n();
    let opts = ReachOptions {
        layers,
        max_layers: layers,
        raster_side: n,
    };
    compute(&schedule, &opts, &AtomicBool::new(false), &|_, _| {}).expect("reach")
}

/// Every layer's heatmap (one pixel per cell) and count equal the brute force.
fn check_against_brute(patterns: Vec<Pattern>, layers: usize) {
    let label = Schedule::new(patterns.clone()).unwrap().label();
    let expect = brute(&patterns, layers);
    let got = exact(Schedule::new(patterns).unwrap(), layers);
    let n = got.n;
    for (l, m) in expect.iter().enumerate() {
        assert_eq!(got.layers[l].layer, l + 1);
        assert_eq!(
            got.layers[l].reachable_pairs,
            count(m),
            "{label} layer {}",
            l + 1
        );
        let r = &got.rasters[l];
        assert_eq!((r.width, r.height), (n, n));
        for (i, row) in m.iter().enumerate() {
            for (j, &cell) in row.iter().enumerate() {
                assert_eq!(
                    r.counts[i * n + j],
                    u64::from(cell),
                    "{label} layer {} cell ({i}, {j})",
                    l + 1
                );
            }
        }
    }
    let full = expect
        .iter()
        .position(|m| count(m) == (n * n) as u64)
        .map(|t| t + 1);
    assert_eq!(got.layers_to_full, full, "{label}");
}

#[test]
fn random_patterns_match_brute_force() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for _ in 0..150 {
        let n = rng.gen_range(1..=40);
        let p = random_pattern(&mut rng, n);
        let layers = rng.gen_range(1..=5);
        check_against_brute(vec![p], layers);
    }
}

#[test]
fn random_schedules_match_brute_force() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..60 {
        let n = rng.gen_range(1..=36);
        let len = rng.gen_range(2..=3);
        let ps = (0..len).map(|_| random_pattern(&mut rng, n)).collect();
        check_against_brute(ps, rng.gen_range(1..=6));
    }
}

/// Bitset brute force (one OR per allowed key) for sizes past one 512-key chunk and past
/// the range structure's segments.
fn bitset_brute(p: &Pattern, layers: usize) -> Vec<u64> {
    let n = p.n();
    let words = n.div_ceil(64);
    let mut cur = vec![0u64; n * words];
    for i in 0..n {
        cur[i * words + i / 64] |= 1 << (i % 64);
    }
    let mut keys = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..layers {
        let mut next = vec![0u64; n * words];
        for i in 0..n {
            p.row_keys(i, &mut keys);
            for &m in &keys {
                for t in 0..words {
                    next[i * words + t] |= cur[m as usize * words + t];
                }
            }
        }
        counts.push(next.iter().map(|w| u64::from(w.count_ones())).sum());
        cur = next;
    }
    counts
}

#[test]
fn larger_patterns_across_chunks_match_bitset_brute_force() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for _ in 0..14 {
        let n = rng.gen_range(500..=1300);
        let p = random_pattern(&mut rng, n);
        let layers = rng.gen_range(1..=4);
        let got = coverage(&p, layers, layers).unwrap();
        let want = bitset_brute(&p, layers);
        let counts: Vec<u64> = got.layers.iter().map(|l| l.reachable_pairs).collect();
        assert_eq!(counts, want, "{}", p.label());
    }
    // Wide windows and long strides stress the sparse table across many segments.
    for (kind, k, w, causal) in [
        (PatternKind::Local, 1, 40, false),
        (PatternKind::Local, 1, 100, true),
        (PatternKind::Sparse, 37, 20, false),
        (PatternKind::Sparse, 37, 20, true),
        (PatternKind::Strided, 29, 0, true),
    ] {
        let p = PatternParams::new(kind, 1100)
            .stride(k)
            .window(w)
            .causal(causal)
            .build()
            .unwrap();
        let got = coverage(&p, 3, 3).unwrap();
        let counts: Vec<u64> = got.layers.iter().map(|l| l.reachable_pairs).collect();
        assert_eq!(counts, bitset_brute(&p, 3), "{}", p.label());
    }
}

#[test]
fn local_reaches_exactly_distance_l_times_w() {
    for (n, w) in [(64, 3), (50, 1), (97, 5)] {
        let p = PatternParams::new(PatternKind::Local, n)
            .window(w)
            .build()
            .unwrap();
        let r = exact(Schedule::single(p), 8);
        for l in 1..=8 {
            let raster = &r.rasters[l - 1];
            for i in 0..n {
                for j in 0..n {
                    let want = i.abs_diff(j) <= l * w;
                    assert_eq!(raster.counts[i * n + j] == 1, want, "n={n} w={w} l={l}");
                }
            }
        }
    }
}

#[test]
fn atrous_never_leaves_its_residue_class() {
    for (n, k) in [(64, 4), (100, 7), (30, 30)] {
        let p = PatternParams::new(PatternKind::Atrous, n)
            .stride(k)
            .build()
            .unwrap();
        let nnz = p.nnz();
        let r = exact(Schedule::single(p), 8);
        for l in 1..=8 {
            let raster = &r.rasters[l - 1];
            for i in 0..n {
                for j in 0..n {
                    let same_class = i.abs_diff(j) % k == 0;
                    assert_eq!(raster.counts[i * n + j] == 1, same_class, "k={k} l={l}");
                }
            }
            assert_eq!(r.layers[l - 1].reachable_pairs, nnz);
        }
        assert_eq!(r.layers_to_full, None);
    }
}

#[test]
fn sparse_with_window_at_least_k_minus_1_covers_everything_in_two_layers() {
    for (n, k, w) in [(64, 4, 3), (256, 16, 16), (1024, 32, 31), (2000, 45, 50)] {
        let p = PatternParams::new(PatternKind::Sparse, n)
            .stride(k)
            .window(w)
            .build()
            .unwrap();
        let r = coverage(&p, 2, 8).unwrap();
        assert!(r.layers[0].coverage < 1.0);
        assert_eq!(r.layers[1].reachable_pairs, (n * n) as u64);
        assert_eq!(r.layers_to_full, Some(2), "n={n} k={k} w={w}");
    }
}

#[test]
fn sparse_with_a_small_window_is_decided_by_brute_force() {
    for (n, k, w) in [(40, 8, 1), (40, 8, 2), (36, 9, 3), (30, 6, 0)] {
        let p = PatternParams::new(PatternKind::Sparse, n)
            .stride(k)
            .window(w)
            .build()
            .unwrap();
        let expect = brute(std::slice::from_ref(&p), 10);
        let want = expect
            .iter()
            .position(|m| count(m) == (n * n) as u64)
            .map(|t| t + 1);
        let got = coverage(&p, 1, 10).unwrap();
        assert_eq!(got.layers_to_full, want, "n={n} k={k} w={w}");
    }
    // w = 0 leaves only the residue class: never full.
    let p = PatternParams::new(PatternKind::Sparse, 30)
        .stride(6)
        .window(0)
        .build()
        .unwrap();
    assert_eq!(coverage(&p, 1, 50).unwrap().layers_to_full, None);
}

#[test]
fn local_needs_about_n_over_w_layers() {
    // Distance n − 1 is first covered after ceil((n − 1) / w) layers.
    for (n, w) in [(64, 3), (1000, 7), (600, 600)] {
        let p = PatternParams::new(PatternKind::Local, n)
            .window(w)
            .build()
            .unwrap();
        let r = coverage(&p, 1, 200).unwrap();
        assert_eq!(
            r.layers_to_full,
            Some((n - 1).div_ceil(w).max(1)),
            "n={n} w={w}"
        );
    }
}

#[test]
fn gpt3_alternating_schedule_is_full_after_the_first_dense_layer() {
    let n = 300;
    let dense = PatternParams::new(PatternKind::Dense, n).build().unwrap();
    let local = PatternParams::new(PatternKind::Local, n)
        .window(4)
        .build()
        .unwrap();
    let s = Schedule::new(vec![local.clone(), dense]).unwrap();
    assert_eq!(s.label(), "schedule(local(w=4) | dense)");
    let opts = ReachOptions::new(4);
    let r = compute(&s, &opts, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert_eq!(r.layers[0].reachable_pairs, local.nnz());
    assert_eq!(r.layers[1].coverage, 1.0);
    assert_eq!(r.layers_to_full, Some(2));
}

#[test]
fn downsampled_heatmaps_sum_to_the_counts() {
    let p = PatternParams::new(PatternKind::Sparse, 1500)
        .stride(40)
        .window(5)
        .causal(true)
        .build()
        .unwrap();
    let opts = ReachOptions {
        layers: 3,
        max_layers: 3,
        raster_side: 97,
    };
    let r = compute(
        &Schedule::single(p),
        &opts,
        &AtomicBool::new(false),
        &|_, _| {},
    )
    .unwrap();
    for (raster, layer) in r.rasters.iter().zip(&r.layers) {
        assert_eq!((raster.width, raster.height), (97, 97));
        assert_eq!(raster.total(), layer.reachable_pairs);
        // Causal: nothing above the diagonal's pixel band.
        assert_eq!(raster.counts[96], 0);
    }
}

#[test]
fn progress_reports_every_chunk_and_cancel_stops() {
    let p = PatternParams::new(PatternKind::Local, 2000)
        .window(2)
        .build()
        .unwrap();
    let calls = AtomicUsize::new(0);
    let s = Schedule::single(p);
    let r = compute(
        &s,
        &ReachOptions::new(2),
        &AtomicBool::new(false),
        &|done, total| {
            assert!(done <= total);
            assert_eq!(total, 4);
            calls.fetch_add(1, Ordering::Relaxed);
        },
    );
    assert!(r.is_ok());
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    let cancelled = compute(
        &s,
        &ReachOptions::new(2),
        &AtomicBool::new(true),
        &|_, _| {},
    );
    assert_eq!(cancelled.unwrap_err(), ReachError::Cancelled);
}

#[test]
fn bad_requests_are_refused_with_clear_errors() {
    let p = PatternParams::new(PatternKind::Local, 10)
        .window(1)
        .build()
        .unwrap();
    let e = coverage(&p, 0, 1).unwrap_err();
    assert_eq!(e, ReachError::BadLayers(0));
    assert!(e.to_string().contains("--layers 0"));
    assert_eq!(
        coverage(&p, 1, MAX_LAYERS + 1).unwrap_err(),
        ReachError::BadMaxLayers(MAX_LAYERS + 1)
    );
    let big = PatternParams::new(PatternKind::Dense, REACH_MAX_N + 1)
        .build()
        .unwrap();
    assert_eq!(
        coverage(&big, 1, 1).unwrap_err(),
        ReachError::TooLarge(REACH_MAX_N + 1)
    );
    let other = PatternParams::new(PatternKind::Dense, 11).build().unwrap();
    let e = Schedule::new(vec![p, other]).unwrap_err();
    assert!(e.to_string().contains("layer 2 has n = 11"), "{e}");
    assert_eq!(
        Schedule::new(vec![]).unwrap_err(),
        ReachError::EmptySchedule
    );
}

#[test]
fn helpers_count_bits_and_runs() {
    let mut r = [0u64; CW];
    r[0] = u64::MAX;
    r[1] = 0b1011;
    assert_eq!(popcount(&r), 67);
    assert_eq!(popcount_bits(&r, 60, 66), 4 + 2);
    assert_eq!(popcount_bits(&r, 0, 64), 64);
    assert_eq!(popcount_bits(&r, 65, 512), 2);
    assert_eq!(key_runs(&[0, 1, 2, 5, 7, 8]), vec![(0, 2), (5, 5), (7, 8)]);
}

#[test]
fn heatmap_png_pixels_match_the_reach_cells() {
    let p = PatternParams::new(PatternKind::Local, 10)
        .window(1)
        .build()
        .unwrap();
    let r = exact(Schedule::single(p), 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reach.png");
    let cmap = crate::render::Colormap::Gray;
    write_heatmap_png(&r.rasters[1], cmap, 45, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    // 10 cells at 4 pixels each (45 / 10 rounded down).
    assert_eq!(img.dimensions(), (40, 40));
    let (on, off) = (cmap.rgb(1.0), cmap.rgb(0.0));
    for i in 0..10u32 {
        for j in 0..10u32 {
            let want = if i.abs_diff(j) <= 2 { on } else { off };
            assert_eq!(img.get_pixel(j * 4 + 3, i * 4 + 1).0, want, "({i}, {j})");
        }
    }
    let e = write_heatmap_png(&r.rasters[1], cmap, 100_000, &dir.path().join("big.png"));
    assert!(e.unwrap_err().to_string().contains("limit of 8192"));
    assert!(!dir.path().join("big.png").exists());
}

#[test]
fn expressions_match_brute_force() {
    use crate::pattern::{PatternKind, PatternParams};
    for text in [
        "(local(w=2) | sink(s=3)) & causal",
        "local(w=8) & atrous(k=3)",
        "local(w=1) | global(g=2)",
        "fixed(l=5, c=1) | sink(s=2)",
        "bigbird(b=4, wb=0, gb=1, r=1, seed=2) | local(w=1)",
    ] {
        for n in [1, 23, 40] {
            let p = PatternParams::new(PatternKind::Custom, n)
                .expr(text)
                .build()
                .unwrap();
            check_against_brute(vec![p], 4);
        }
    }
}

#[test]
fn a_run_in_batches_of_one_chunk_equals_compute() {
    // n = 2000: four chunks, the last one partial; a schedule of two patterns and heatmaps.
    let n = 2000;
    let layers = vec![
        PatternParams::new(PatternKind::Sparse, n)
            .stride(45)
            .window(7)
            .build()
            .unwrap(),
        PatternParams::new(PatternKind::Local, n)
            .window(30)
            .causal(true)
            .build()
            .unwrap(),
    ];
    let s = Schedule::new(layers).unwrap();
    let opts = ReachOptions {
        layers: 6,
        max_layers: 40,
        raster_side: 300,
    };
    let never = AtomicBool::new(false);
    let whole = compute(&s, &opts, &never, &|_, _| {}).unwrap();
    let mut run = ReachRun::new(&s, &opts).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let mut calls = 0;
    while !run.is_done() {
        run.run(1, &never, &|done, total| {
            seen.lock().unwrap().push((done, total))
        })
        .unwrap();
        calls += 1;
    }
    assert_eq!(calls, 4);
    assert_eq!(
        seen.into_inner().unwrap(),
        vec![(1, 4), (2, 4), (3, 4), (4, 4)]
    );
    let sliced = run.finish().unwrap();
    assert_eq!(sliced.layers, whole.layers);
    assert_eq!(sliced.layers_to_full, whole.layers_to_full);
    assert_eq!(sliced.rasters, whole.rasters);
    assert!(whole.layers[5].reachable_pairs > whole.layers[0].reachable_pairs);
    // Three layers at a time: each chunk goes through up to 40 layers in several calls (and
    // `run` finishes a chunk left part-way).
    let mut run = ReachRun::new(&s, &opts).unwrap();
    let mut calls = 0;
    while !run.is_done() {
        if calls == 1 {
            run.run(2, &never, &|_, _| {}).unwrap();
            assert_eq!(run.chunks(), (1, 4));
        } else {
            run.run_layers(3, &never, &|_, _| {}).unwrap();
        }
        calls += 1;
    }
    assert!(calls > 8, "{calls} calls");
    let by_layers = run.finish().unwrap();
    assert_eq!(by_layers.layers, whole.layers);
    assert_eq!(by_layers.layers_to_full, whole.layers_to_full);
    assert_eq!(by_layers.rasters, whole.rasters);
}

#[test]
fn an_unfinished_or_cancelled_run_reports_cancelled() {
    let p = PatternParams::new(PatternKind::Local, 1500)
        .window(3)
        .build()
        .unwrap();
    let s = Schedule::single(p);
    let opts = ReachOptions::new(4);
    let mut run = ReachRun::new(&s, &opts).unwrap();
    run.run(1, &AtomicBool::new(false), &|_, _| {}).unwrap();
    assert_eq!(run.chunks(), (1, 3));
    assert_eq!(
        run.run_layers(2, &AtomicBool::new(true), &|_, _| {}),
        Err(ReachError::Cancelled)
    );
    assert_eq!(
        run.run(1, &AtomicBool::new(true), &|_, _| {}),
        Err(ReachError::Cancelled)
    );
    assert!(matches!(run.finish(), Err(ReachError::Cancelled)));
}
