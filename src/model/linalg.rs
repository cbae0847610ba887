//! Dense linear algebra of the forward passes: `Y = X Wᵀ` through the `gemm` crate (AVX-512 /
//! AVX2 / FMA micro-kernels, threads on the current rayon pool), and row-wise norms.
//!
//! Weights are stored as the files store them, `(out, in)` row-major, so a linear layer is
//! `Y (n, out) = X (n, in) · Wᵀ`: the GEMM reads `Wᵀ` through strides, no transposed copy.
//! `gemm` was measured against `matrixmultiply` (ndarray's backend, with its threading feature)
//! on the shapes of SmolLM2 and was the faster of the two on this 2-core AVX-512 machine.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Zip};

/// `out = x · wᵀ` (or `out += x · wᵀ` when `accumulate`), with `x` `(m, k)`, `w` `(n, k)` and
/// `out` `(m, n)`; any strides. Panics when the shapes disagree (a programming error: callers
/// size `out` from `x` and `w`).
pub fn matmul_t(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    mut out: ArrayViewMut2<'_, f32>,
    accumulate: bool,
) {
    let (m, k) = x.dim();
    let n = w.nrows();
    assert_eq!(
        w.ncols(),
        k,
        "matmul_t: x is (m, {k}) but w has {} columns",
        w.ncols()
    );
    assert_eq!(out.dim(), (m, n), "matmul_t: out has the wrong shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let (xs, ws) = (x.strides(), w.strides());
    let (os0, os1) = (out.strides()[0], out.strides()[1]);
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= 1 << 15 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the pointers and strides come from live ndarray views of the checked shapes
    // (m, k), (n, k) and (m, n); `out` is borrowed mutably, so it aliases neither input. The
    // right-hand side (k, n) is wᵀ: element (p, j) = w[j, p], column stride ws[0], row
    // stride ws[1]. gemm computes out = alpha·out + beta·x·wᵀ, reading out only when
    // `accumulate` (alpha = 1).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            os1,
            os0,
            accumulate,
            x.as_ptr(),
            xs[1],
            xs[0],
            w.as_ptr(),
            ws[0],
            ws[1],
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `x · wᵀ` as a new `(m, n)` array, plus `bias` (length n) on every row when given.
pub fn linear(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>, bias: Option<&[f32]>) -> Array2<f32> {
    let mut out = Array2::zeros((x.nrows(), w.nrows()));
    if let Some(b) = bias {
        for mut row in out.outer_iter_mut() {
            row.iter_mut().zip(b).for_each(|(o, b)| *o = *b);
        }
    }
    matmul_t(x, w, out.view_mut(), bias.is_some());
    out
}

/// Row-wise RMSNorm: `x / sqrt(mean(x²) + eps) · weight` (`weight` has one entry per column).
pub fn rms_norm(x: ArrayView2<'_, f32>, weight: &[f32], eps: f32) -> Array2<f32> {
    let mut out = Array2::zeros(x.raw_dim());
    Zip::from(out.axis_iter_mut(Axis(0)))
        .and(x.axis_iter(Axis(0)))
        .par_for_each(|mut o, row| {
            let ms =
                row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len().max(1) as f64;
            let r = (1.0 / (ms + eps as f64).sqrt()) as f32;
            for ((o, &v), &w) in o.iter_mut().zip(row.iter()).zip(weight) {
                *o = v * r * w;
            }
        });
    out
}

/// Row-wise LayerNorm: `(x − mean) / sqrt(var + eps) · weight + bias` (population variance).
pub fn layer_norm(x: ArrayView2<'_, f32>, weight: &[f32], bias: &[f32], eps: f32) -> Array2<f32> {
    let mut out = Array2::zeros(x.raw_dim());
    Zip::from(out.axis_iter_mut(Axis(0)))
        .and(x.axis_iter(Axis(0)))
        .par_for_each(|mut o, row| {
            let len = row.len().max(1) as f64;
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / len;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len;
            let r = 1.0 / (var + eps as f64).sqrt();
            for (((o, &v), &w), &b) in o.iter_mut().zip(row.iter()).zip(weight).zip(bias) {
                *o = ((v as f64 - mean) * r) as f32 * w + b;
            }
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Naive `x · wᵀ` in f64.
    fn naive(x: &Array2<f32>, w: &Array2<f32>) -> Array2<f64> {
        Array2::from_shape_fn((x.nrows(), w.nrows()), |(i, j)| {
            (0..x.ncols())
                .map(|p| x[[i, p]] as f64 * w[[j, p]] as f64)
                .sum()
        })
    }

    fn filled(rows: usize, cols: usize, seed: u32) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            let h = (i as u32).wrapping_mul(2654435761) ^ (j as u32).wrapping_mul(40503) ^ seed;
            (h % 1000) as f32 / 500.0 - 1.0
        })
    }

    #[test]
    fn matmul_t_matches_naive_over_many_shapes() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 64, 33),
            (64, 576, 192),
            (130, 97, 260),
        ] {
            let x = filled(m, k, 1);
            let w = filled(n, k, 2);
            let want = naive(&x, &w);
            let got = linear(x.view(), w.view(), None);
            let err = got
                .iter()
                .zip(want.iter())
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-4 * k as f64, "({m}, {k}, {n}): {err}");
            // Accumulate into a non-zero output, and read a transposed (strided) x.
            let xt = x.t().to_owned();
            let mut acc = Array2::from_elem((m, n), 1.0f32);
            matmul_t(xt.t(), w.view(), acc.view_mut(), true);
            for (a, w) in acc.iter().zip(want.iter()) {
                assert!((*a as f64 - (w + 1.0)).abs() < 1e-4 * k as f64);
            }
        }
    }

    #[test]
    fn linear_adds_the_bias() {
        let x = Array2::from_shape_vec((1, 2), vec![1.0, 2.0]).expect("shape");
        let w = Array2::from_shape_vec((2, 2), vec![1.0, 0.0, 3.0, 4.0]).expect("shape");
        let y = linear(x.view(), w.view(), Some(&[0.5, -1.0]));
        assert_eq!(y.as_slice(), Some(&[1.5, 10.0][..]));
    }

    #[test]
    fn norms_by_hand() {
        // Row (3, 4): mean square 12.5, RMS √12.5; LayerNorm mean 3.5, variance 0.25.
        let x = Array2::from_shape_vec((1, 2), vec![3.0f32, 4.0]).expect("shape");
        let r = rms_norm(x.view(), &[1.0, 2.0], 0.0);
        let s = 12.5f32.sqrt();
        assert!((r[[0, 0]] - 3.0 / s).abs() < 1e-6 && (r[[0, 1]] - 8.0 / s).abs() < 1e-6);
        let l = layer_norm(x.view(), &[1.0, 1.0], &[0.0, 10.0], 0.0);
        assert!((l[[0, 0]] + 1.0).abs() < 1e-6 && (l[[0, 1]] - 11.0).abs() < 1e-6);
    }
}
