//! Criterion benchmark of the density raster: n = 65,536 onto 1024×1024 pixels.

use attnscope::pattern::{PatternKind, PatternParams, Raster};
use criterion::{criterion_group, criterion_main, Criterion};

fn raster(c: &mut Criterion) {
    let n = 65_536;
    let mut group = c.benchmark_group("raster_65536_to_1024");
    group.sample_size(20);
    let cases = [
        (
            "sparse_k256_w128",
            PatternParams::new(PatternKind::Sparse, n)
                .stride(256)
                .window(128),
        ),
        (
            "local_w128",
            PatternParams::new(PatternKind::Local, n).window(128),
        ),
        (
            "atrous_k256_causal",
            PatternParams::new(PatternKind::Atrous, n)
                .stride(256)
                .causal(true),
        ),
        (
            "strided_l256",
            PatternParams::new(PatternKind::Strided, n).stride(256),
        ),
        (
            "longformer_w128_g64",
            PatternParams::new(PatternKind::Longformer, n)
                .window(128)
                .global(64),
        ),
        (
            "fixed_l256_c16",
            PatternParams::new(PatternKind::Fixed, n)
                .stride(256)
                .summary(16),
        ),
        (
            "bigbird_b64_r3",
            PatternParams::new(PatternKind::Bigbird, n)
                .window(1)
                .global(1)
                .random(3)
                .seed(1),
        ),
        (
            "expr_window_sinks_causal",
            PatternParams::new(PatternKind::Custom, n).expr("(local(w=64) | sink(s=4)) & causal"),
        ),
        (
            "expr_dilated_window",
            PatternParams::new(PatternKind::Custom, n).expr("local(w=256) & atrous(k=4)"),
        ),
        (
            "expr_sparse_global_sink",
            PatternParams::new(PatternKind::Custom, n)
                .expr("local(w=64) | atrous(k=256) | global(g=16) | sink(s=4)"),
        ),
        (
            "expr_fixed_and_window",
            PatternParams::new(PatternKind::Custom, n).expr("fixed(l=256, c=16) & local(w=512)"),
        ),
    ];
    for (name, params) in cases {
        // Build the pattern once per iteration too: the O(n) prefix table is part of the cost.
        group.bench_function(name, |b| {
            b.iter(|| {
                let p = params.build().expect("valid");
                Raster::build(&p, 1024)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, raster);
criterion_main!(benches);
