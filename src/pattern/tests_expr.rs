//! Expressions against a brute-force evaluation of docs/contract.md section 5, written straight from the
//! rules (not from the atoms the engine derives).

// Cell-by-cell comparisons read clearest as index loops over the brute-force matrix.
#![allow(clippy::needless_range_loop)]
use super::expr::{Expr, Term};
use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// docs/contract.md sections 1 and 5, cell by cell.
fn brute_term(t: &Term, n: usize, i: usize, j: usize) -> bool {
    let v = |k: &str| t.get(k) as i64;
    let (ii, jj) = (i as i64, j as i64);
    let d = ii - jj;
    let ad = d.abs();
    match t.kind {
        TermKind::Dense => true,
        TermKind::Local => ad <= v("w"),
        TermKind::Atrous => ad % v("k") == 0,
        TermKind::Sink => jj < v("s"),
        TermKind::Global => ii < v("g") || jj < v("g"),
        TermKind::Causal => jj <= ii,
        TermKind::Sparse => ad <= v("w") || ad % v("k") == 0,
        TermKind::Strided => jj <= ii && (d < v("l") || d % v("l") == 0),
        TermKind::Fixed => ii / v("l") == jj / v("l") || jj % v("l") >= v("l") - v("c"),
        TermKind::Longformer => ad <= v("w") || ii < v("g") || jj < v("g"),
        TermKind::Bigbird => {
            let b = v("b") as usize;
            let table = structure::BlockTable::bigbird(
                n,
                b,
                t.get("wb"),
                t.get("gb"),
                t.get("r"),
                t.get("seed"),
            );
            let (bi, bj) = (i / b, j / b);
            let (wb, gb) = (v("wb") as usize, v("gb") as usize);
            let structural = bi.abs_diff(bj) <= wb || bi < gb || bj < gb;
            structural || table.random[bi].contains(&(bj as u32))
        }
    }
}

fn brute(e: &Expr, n: usize, i: usize, j: usize) -> bool {
    match e {
        Expr::Term(t) => brute_term(t, n, i, j),
        Expr::Union(v) => v.iter().any(|m| brute(m, n, i, j)),
        Expr::Inter(v) => v.iter().all(|m| brute(m, n, i, j)),
    }
}

/// A random term as text.
fn random_term(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..11) {
        0 => "dense".into(),
        1 => format!("local(w={})", rng.gen_range(0..7)),
        2 => format!("atrous(k={})", rng.gen_range(1..7)),
        3 => format!("sink(s={})", rng.gen_range(0..6)),
        4 => format!("global(g={})", rng.gen_range(0..4)),
        5 => "causal".into(),
        6 => format!(
            "sparse(k={}, w={})",
            rng.gen_range(1..7),
            rng.gen_range(0..4)
        ),
        7 => format!("strided(l={})", rng.gen_range(1..7)),
        8 => {
            let l = rng.gen_range(1..7);
            format!("fixed(l={l}, c={})", rng.gen_range(1..=l))
        }
        9 => format!(
            "longformer(w={}, g={})",
            rng.gen_range(0..4),
            rng.gen_range(0..3)
        ),
        _ => format!(
            "bigbird(b={}, wb={}, gb={}, r={}, seed={})",
            rng.gen_range(1..9),
            rng.gen_range(0..2),
            rng.gen_range(0..2),
            rng.gen_range(0..3),
            rng.gen_range(0..100)
        ),
    }
}

/// A random expression of depth ≤ `depth`.
fn random_expr(rng: &mut ChaCha8Rng, depth: usize) -> String {
    if depth == 0 || rng.gen_bool(0.35) {
        return random_term(rng);
    }
    let parts = rng.gen_range(2..4);
    let op = if rng.gen_bool(0.5) { " | " } else { " & " };
    let members: Vec<String> = (0..parts)
        .map(|_| format!("({})", random_expr(rng, depth - 1)))
        .collect();
    members.join(op)
}

const SIZES: [usize; 9] = [1, 2, 5, 13, 31, 64, 65, 97, 130];

fn build(text: &str, n: usize, causal: bool) -> Option<Pattern> {
    match PatternParams::new(PatternKind::Custom, n)
        .expr(text)
        .causal(causal)
        .build()
    {
        Ok(p) => Some(p),
        Err(PatternError::TooComplex(_)) => None,
        Err(e) => panic!("{text}: {e}"),
    }
}

#[test]
fn random_expressions_match_brute_force_everywhere() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for case in 0..240 {
        let text = random_expr(&mut rng, 3);
        let n = SIZES[case % SIZES.len()];
        let causal = rng.gen_bool(0.3);
        let Some(p) = build(&text, n, causal) else {
            continue;
        };
        checked += 1;
        let e = p.expr().clone();
        let want: Vec<Vec<bool>> = (0..n)
            .map(|i| (0..n).map(|j| brute(&e, n, i, j)).collect())
            .collect();
        let nnz: u64 = want.iter().flatten().filter(|&&b| b).count() as u64;
        // The parsed expression is the text (plus causal): check it against the text itself.
        let again = expr::parse(&text, &PatternParams::new(PatternKind::Dense, n)).unwrap();
        let again = if causal { again.and_causal() } else { again };
        for i in 0..n {
            for j in 0..n {
                assert_eq!(p.allows(i, j), want[i][j], "{text} n={n} ({i},{j})");
                assert_eq!(brute(&again, n, i, j), want[i][j]);
            }
        }
        assert_eq!(p.nnz(), nnz, "{text} n={n}");
        // Row keys and counts of random ranges.
        let mut keys = Vec::new();
        for i in 0..n {
            p.row_keys(i, &mut keys);
            let want_keys: Vec<u32> = (0..n as u32).filter(|&j| want[i][j as usize]).collect();
            assert_eq!(keys, want_keys, "{text} n={n} row {i}");
            let a = rng.gen_range(0..=n);
            let b = rng.gen_range(a..=n);
            let c = (a..b).filter(|&j| want[i][j]).count() as u64;
            assert_eq!(
                p.count_in_range(i, a..b),
                c,
                "{text} n={n} row {i} {a}..{b}"
            );
        }
        // Rectangles.
        for _ in 0..20 {
            let (i0, j0) = (rng.gen_range(0..n), rng.gen_range(0..n));
            let (i1, j1) = (rng.gen_range(i0..=n), rng.gen_range(j0..=n));
            let c = (i0..i1)
                .flat_map(|i| (j0..j1).map(move |j| (i, j)))
                .filter(|&(i, j)| want[i][j])
                .count() as u64;
            assert_eq!(
                p.count_rect(i0..i1, j0..j1),
                c,
                "{text} n={n} [{i0},{i1})x[{j0},{j1})"
            );
        }
        // Raster and block statistics.
        let r = Raster::build(&p, 16);
        assert_eq!(r.total(), nnz, "{text} raster");
        for block in [1, 4, 7, 64] {
            let st = BlockStats::compute(&p, block).unwrap();
            let nb = n.div_ceil(block);
            let (mut full, mut partial, mut empty) = (0, 0, 0);
            for bi in 0..nb {
                for bj in 0..nb {
                    let cells: Vec<bool> = (bi * block..((bi + 1) * block).min(n))
                        .flat_map(|i| (bj * block..((bj + 1) * block).min(n)).map(move |j| (i, j)))
                        .map(|(i, j)| want[i][j])
                        .collect();
                    let on = cells.iter().filter(|&&b| b).count();
                    if on == 0 {
                        empty += 1;
                    } else if on == cells.len() {
                        full += 1;
                    } else {
                        partial += 1;
                    }
                }
            }
            assert_eq!(
                (st.blocks_full, st.blocks_partial, st.blocks_empty),
                (full, partial, empty),
                "{text} n={n} B={block}"
            );
        }
        // Labels parse back to the same mask.
        let label = p.label();
        let back = build(&label, n, false).expect("a label parses back");
        assert_eq!(back.label(), label, "label round trip of {text}");
        for i in 0..n {
            for j in 0..n {
                assert_eq!(back.allows(i, j), want[i][j], "label {label} ({i},{j})");
            }
        }
    }
    assert!(checked > 120, "only {checked} expressions were checked");
}

#[test]
fn large_rectangles_of_non_toeplitz_expressions_are_exact() {
    // n past the piece limits, so both the piece path and the row fallback run.
    for text in [
        "(local(w=40) | sink(s=4)) & causal",
        "sparse(k=16, w=5) | global(g=3)",
        "fixed(l=24, c=3) & atrous(k=3)",
        "bigbird(b=16, wb=1, gb=1, r=2, seed=3) | local(w=2)",
        "fixed(l=2, c=1) | sink(s=9)",
    ] {
        let n = 700;
        let p = build(text, n, false).unwrap();
        let e = p.expr().clone();
        for (i0, i1, j0, j1) in [(0, 700, 0, 700), (3, 690, 11, 555), (100, 400, 0, 30)] {
            let want = (i0..i1)
                .flat_map(|i| (j0..j1).map(move |j| (i, j)))
                .filter(|&(i, j)| brute(&e, n, i, j))
                .count() as u64;
            assert_eq!(p.count_rect(i0..i1, j0..j1), want, "{text}");
        }
    }
}

#[test]
fn and_binds_tighter_than_or() {
    let n = 40;
    let a = build("local(w=1) | atrous(k=5) & causal", n, false).unwrap();
    let b = build("local(w=1) | (atrous(k=5) & causal)", n, false).unwrap();
    let c = build("(local(w=1) | atrous(k=5)) & causal", n, false).unwrap();
    assert_eq!(a.label(), b.label());
    assert_eq!(a.label(), "local(w=1) | atrous(k=5, causal)");
    assert_eq!(c.label(), "(local(w=1) | atrous(k=5)) & causal");
    assert!(a.allows(0, 1)); // the window is not causal in a
    assert!(!c.allows(0, 1));
    assert!(!a.allows(0, 5) && a.allows(5, 0));
}

#[test]
fn spec_examples_have_the_expected_counts() {
    // local(w=32) | atrous(k=64) is sparse(k=64, w=32): same nnz as the README's 523,232.
    let e = build("local(w=32) | atrous(k=64)", 4096, false).unwrap();
    assert_eq!(e.nnz(), 523_232);
    let s = PatternParams::new(PatternKind::Sparse, 4096)
        .stride(64)
        .window(32)
        .build()
        .unwrap();
    assert_eq!(s.label(), "sparse(k=64, w=32)");
    // Window + 4 sinks, causal, n = 64, w = 3: row i sees min(i,3)+1 window keys plus the sinks
    // below its window: Σ_i (min(i,3)+1) + Σ_i |[0,4) ∩ [0, i−3)|.
    let ws = build("(local(w=3) | sink(s=4)) & causal", 64, false).unwrap();
    let window: u64 = (0..64u64).map(|i| i.min(3) + 1).sum();
    let sinks: u64 = (0..64u64).map(|i| i.saturating_sub(3).min(4)).sum();
    assert_eq!(ws.nnz(), window + sinks);
    assert_eq!(ws.label(), "(local(w=3) | sink(s=4)) & causal");
    // Dilated window: |i − j| ≤ 8 and a multiple of 4: 0, ±4, ±8 → 5 keys inside the sequence.
    let dw = build("local(w=8) & atrous(k=4)", 64, false).unwrap();
    assert_eq!(dw.row_nnz(32), 5);
    assert_eq!(dw.row_nnz(0), 3);
}

#[test]
fn bare_names_take_flags_and_old_labels_parse_back() {
    let flags = PatternParams::new(PatternKind::Custom, 64)
        .stride(4)
        .window(3);
    let p = Pattern::new(&PatternParams {
        expr: Some("sparse | sink(s=2)".into()),
        ..flags.clone()
    })
    .unwrap();
    assert_eq!(p.label(), "sparse(k=4, w=3) | sink(s=2)");
    for old in [
        "sparse(k=4, w=3, causal)",
        "strided(l=8)",
        "fixed(l=8, c=2, causal)",
        "longformer(w=3, g=2)",
        "bigbird(b=8, wb=1, gb=1, r=1, seed=0)",
        "atrous(k=16, causal)",
    ] {
        let p = build(old, 64, false).unwrap();
        assert_eq!(p.label(), old);
        assert_ne!(p.kind(), PatternKind::Custom, "{old} is a named pattern");
    }
}

#[test]
fn bad_expressions_name_the_place() {
    let flags = PatternParams::new(PatternKind::Custom, 64);
    let err = |text: &str| -> String {
        match Pattern::new(&PatternParams {
            expr: Some(text.into()),
            ..flags.clone()
        }) {
            Ok(_) => panic!("{text:?} was accepted"),
            Err(e) => e.to_string(),
        }
    };
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("(local(w=3)", "expected ')'"),
        ("local(w=3))", "unbalanced ')'"),
        ("local(w=3) |", "dangling operator"),
        ("& causal", "expected a term"),
        ("loacl(w=3)", "unknown term 'loacl'"),
        ("local(x=3)", "unknown key 'x'"),
        ("local(w=-1)", "out of range"),
        ("atrous(k=0)", "out of range"),
        ("local(w=3, w=4)", "given twice"),
        ("local", "local needs w"),
        ("fixed(l=4, c=5)", "summary columns"),
        ("local(w=3) sink(s=1)", "expected '|', '&' or the end"),
        ("local(w=3", "expected ',' or ')'"),
        ("local(w=3) # x", "unexpected character '#'"),
        ("causal(causal=maybe)", "not a boolean"),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(
            e.contains("at character") || e.contains("needs"),
            "{text:?} names no place: {e}"
        );
    }
    // The position points at the problem (1-based characters).
    assert!(err("local(w=3) | loacl").contains("at character 14"));
}
