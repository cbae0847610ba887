//! Criterion benches of every kernel on the seed's sparse pattern (k = 64, w = 32) and on
//! dense attention, n = 2048, d = 64. `cargo bench --bench kernels`.

use attnscope::inputs::{generate, InputKind};
use attnscope::kernel::{run_kernel, KernelKind};
use attnscope::pattern::{PatternKind, PatternParams};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn kernels(c: &mut Criterion) {
    let n = 2048;
    let d = 64;
    let qkv = generate(InputKind::Random { seed: 0 }, n, d);
    let cases = [
        PatternParams::new(PatternKind::Dense, n)
            .build()
            .expect("dense"),
        PatternParams::new(PatternKind::Sparse, n)
            .stride(64)
            .window(32)
            .build()
            .expect("sparse"),
        PatternParams::new(PatternKind::Local, n)
            .window(32)
            .build()
            .expect("local"),
    ];
    for p in &cases {
        let mut g = c.benchmark_group(p.label());
        g.sample_size(10);
        g.throughput(Throughput::Elements(4 * d as u64 * p.nnz()));
        for kind in KernelKind::ALL {
            if !kind.supports(p) || (kind.is_dense_work() && p.kind() != PatternKind::Dense) {
                continue;
            }
            g.bench_with_input(BenchmarkId::from_parameter(kind.name()), &kind, |b, &k| {
                b.iter(|| run_kernel(k, p, &qkv, None, 64).expect("kernel runs"))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
