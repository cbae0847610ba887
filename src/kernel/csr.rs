//! `csr`: per query, only its allowed keys (nnz cells), gathered.
//!
//! Keys come from [`Pattern::row_keys`] one row at a time, so memory is O(n · d + row nnz)
//! whatever the pattern: no CSR array of all nnz indices is needed (at n = 2²⁰ the sparse
//! pattern has ~1.7·10¹⁰ of them). For each group of 4 keys: four dot products
//! `q · k_j` over d in 16-lane accumulators, then the online-softmax update and
//! `acc += p_j · v_j` over d.

// Micro-kernels index fixed-size lanes on purpose: it is what LLVM vectorises best.
#![allow(clippy::needless_range_loop)]

use super::engine::{dispatch, exp2, Arith, Packed, Work, TILE_ROWS};
use super::{AttentionKernel, KernelError, KernelKind};
use crate::inputs::Qkv;
use crate::pattern::Pattern;
use ndarray::Array2;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// The CSR (gather) kernel.
pub(crate) struct Csr;

/// Lanes of the dot-product accumulators.
const LANES: usize = 16;
/// Keys scored together (sharing the loads of q).
const KEYS: usize = 4;

/// Rows `i0 .. i0 + out.len() / d`.
struct CsrRows<'p, 'a, 'o> {
    pk: &'p Packed<'a>,
    k: &'p [f32],
    p: &'p Pattern,
    i0: usize,
    out: &'o mut [f32],
    keys: &'p mut Vec<u32>,
}

/// `q · k` over d for `N` keys with 16-lane accumulators.
#[inline(always)]
fn dot<A: Arith, const N: usize>(q: &[f32], k: [&[f32]; N], d: usize) -> [f32; N] {
    let mut acc = [[0f32; LANES]; N];
    let full = d / LANES * LANES;
    let mut c = 0;
    while c < full {
        let qv: &[f32; LANES] = q[c..c + LANES].try_into().expect("16 lanes");
        for (t, kr) in k.iter().enumerate() {
            let kv: &[f32; LANES] = kr[c..c + LANES].try_into().expect("16 lanes");
            for x in 0..LANES {
                acc[t][x] = A::fma(qv[x], kv[x], acc[t][x]);
            }
        }
        c += LANES;
    }
    let mut s = [0f32; N];
    for t in 0..N {
        let mut total: f32 = acc[t].iter().sum();
        for c in full..d {
            total = A::fma(q[c], k[t][c], total);
        }
        s[t] = total;
    }
    s
}

impl Work for CsrRows<'_, '_, '_> {
    /// Score cells computed: the rows' keys.
    type Out = u64;

    #[inline(always)]
    fn run<A: Arith>(self) -> u64 {
        let d = self.pk.d;
        let v = &self.pk.v;
        let mut acc = vec![0f32; d];
        let mut cells = 0u64;
        for (r, o) in self.out.chunks_exact_mut(d).enumerate() {
            let i = self.i0 + r;
            self.p.row_keys(i, self.keys);
            cells += self.keys.len() as u64;
            let q = &self.pk.qs[i * d..(i + 1) * d];
            #[cfg(target_arch = "x86_64")]
            if A::AVX512 {
                // SAFETY: AVX-512 was detected at run time; `row_keys` gives keys < n and
                // K, V are n × d.
                unsafe { super::avx512::csr_row(q, self.k, v, self.keys, d, &mut acc, o) };
                continue;
            }
            acc.fill(0.0);
            let mut m = f32::NEG_INFINITY;
            let mut l = 0f32;
            for js in self.keys.chunks(KEYS) {
                // Four keys share the loads of q; a last group of 1 … 3 keys is scored one
                // key at a time, so exactly the row's keys are scored.
                let key = |t: usize| &self.k[js[t] as usize * d..(js[t] as usize + 1) * d];
                let mut s = [0f32; KEYS];
                if js.len() == KEYS {
                    s = dot::<A, KEYS>(q, std::array::from_fn(key), d);
                } else {
                    for (t, x) in s.iter_mut().enumerate().take(js.len()) {
                        *x = dot::<A, 1>(q, [key(t)], d)[0];
                    }
                }
                let live = js.len();
                let mx = s[..live].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let m_new = m.max(mx);
                let alpha = exp2(m - m_new);
                if alpha != 1.0 {
                    for a in acc.iter_mut() {
                        *a *= alpha;
                    }
                }
                l *= alpha;
                m = m_new;
                for (t, &j) in js.iter().enumerate() {
                    let pj = exp2(s[t] - m);
                    l += pj;
                    let vr = &v[j as usize * d..(j as usize + 1) * d];
                    for (a, x) in acc.iter_mut().zip(vr) {
                        *a = A::fma(pj, *x, *a);
                    }
                }
            }
            if l > 0.0 {
                let inv = 1.0 / l;
                for (dst, a) in o.iter_mut().zip(&acc) {
                    *dst = a * inv;
                }
            } else {
                o.fill(0.0);
            }
        }
        cells
    }
}

impl AttentionKernel for Csr {
    fn kind(&self) -> KernelKind {
        KernelKind::Csr
    }

    fn executed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(p.nnz())
    }

    fn computed_cells(&self, p: &Pattern) -> Result<u64, KernelError> {
        Ok(p.nnz())
    }

    fn forward_counted(
        &self,
        p: &Pattern,
        qkv: &Qkv,
        scale: f32,
    ) -> Result<(Array2<f32>, u64), KernelError> {
        let (n, d) = qkv.q.dim();
        let pk = Packed::new(qkv.q.view(), qkv.k.view(), qkv.v.view(), scale);
        let k_std = qkv.k.as_standard_layout();
        let k = k_std.as_slice().expect("standard layout");
        let mut out = vec![0f32; n * d];
        let cells = AtomicU64::new(0);
        out.par_chunks_mut(TILE_ROWS * d)
            .enumerate()
            .for_each_init(Vec::new, |keys, (t, o)| {
                let c = dispatch(CsrRows {
                    pk: &pk,
                    k,
                    p,
                    i0: t * TILE_ROWS,
                    out: o,
                    keys,
                });
                cells.fetch_add(c, Ordering::Relaxed);
            });
        let out = Array2::from_shape_vec((n, d), out).expect("n × d output");
        Ok((out, cells.into_inner()))
    }
}
