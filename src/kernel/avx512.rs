//! The AVX-512 micro-kernels, written with `std::arch` intrinsics (LLVM does not reliably
//! vectorise the portable versions: it unrolls the 64-wide strips into scalar FMAs).
//!
//! Same math and layout as the portable code in `engine.rs` / `csr.rs`: 4 query rows × up to
//! 4 panels of 16 keys = 16 `zmm` score accumulators (5 panels, 20, for `engine::span`'s wide
//! calls); masking with one blend per panel from the
//! chunk's bit word; `exp2` as a degree-6 polynomial with the exponent built in the integer
//! lanes; `P V` in column strips of 64 (16 `zmm` accumulators), then 16, then a masked tail.
//! Only reached after runtime detection of AVX-512F (see `engine::dispatch`).

// Register tiles are indexed by constant lanes on purpose.
#![allow(clippy::needless_range_loop)]

use super::layout::{exp2, GroupArgs, GROUP, PANEL, WIDE};
use std::arch::x86_64::*;

/// `2^x` per lane for `x ≤ 0`; exactly 0 for `x ≤ −127` (including −∞).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp2_ps(x: __m512) -> __m512 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-127.0)),
        _mm512_set1_ps(127.0),
    );
    let t = _mm512_add_ps(x, _mm512_set1_ps(MAGIC));
    let n = _mm512_sub_epi32(
        _mm512_castps_si512(t),
        _mm512_set1_epi32(MAGIC.to_bits() as i32),
    );
    let f = _mm512_sub_ps(x, _mm512_sub_ps(t, _mm512_set1_ps(MAGIC)));
    let mut p = _mm512_set1_ps(1.540_353e-4);
    for c in [
        1.333_355_8e-3,
        9.618_129e-3,
        5.550_411e-2,
        0.240_226_5,
        std::f32::consts::LN_2,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    let e = _mm512_max_epi32(
        _mm512_add_epi32(n, _mm512_set1_epi32(127)),
        _mm512_setzero_si512(),
    );
    _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32::<23>(e)))
}

/// Where a [`Splice`](super::layout::Splice)'s keys go in the QK loop: which panel of the
/// call, which lanes, the spliced key each lane takes, and the spliced keys' Kᵀ.
struct SpliceLanes {
    panel: usize,
    lanes: __mmask16,
    from: __m512i,
    kt: *const f32,
}

/// `S = Q Kᵀ` for the 4 query rows at `q` against `NP` panels of Kᵀ at `kt`, in registers
/// (with `SPLICE`, `sp`'s lanes of its panel from its keys instead).
///
/// # Safety
/// AVX-512F and FMA must be available; `q` holds 4 rows of d floats, `qs` floats apart, `kt`
/// NP · d · 16, and with `SPLICE` `sp.kt` d · 16.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,fma")]
unsafe fn qk<const NP: usize, const SPLICE: bool>(
    q: *const f32,
    qs: usize,
    d: usize,
    kt: *const f32,
    sp: &SpliceLanes,
) -> [[__m512; NP]; GROUP] {
    let mut s = [[_mm512_setzero_ps(); NP]; GROUP];
    for c in 0..d {
        let qb = [
            _mm512_set1_ps(*q.add(c)),
            _mm512_set1_ps(*q.add(qs + c)),
            _mm512_set1_ps(*q.add(2 * qs + c)),
            _mm512_set1_ps(*q.add(3 * qs + c)),
        ];
        for p in 0..NP {
            let mut kv = _mm512_loadu_ps(kt.add((p * d + c) * PANEL));
            if SPLICE && p == sp.panel {
                // The spliced lanes take their keys' column c, moved to those lanes.
                let other = _mm512_loadu_ps(sp.kt.add(c * PANEL));
                kv = _mm512_mask_permutexvar_ps(kv, sp.lanes, sp.from, other);
            }
            for r in 0..GROUP {
                s[r][p] = _mm512_fmadd_ps(qb[r], kv, s[r][p]);
            }
        }
    }
    s
}

/// Lane mask of the first `len` lanes (`len ≤ 16`).
#[inline]
fn tail(len: usize) -> __mmask16 {
    ((1u32 << len) - 1) as __mmask16
}

/// The micro-kernel (see `engine::group` for the portable twin).
///
/// # Safety
/// AVX-512F must be available; `a` must describe valid rows and panels of `a.pk` (as built by
/// `engine::chunk`), and `m`, `l` hold 4 rows, `acc` 4 · d floats.
// Never inlined: inlined into the engine's walks, its code moved with every edit of theirs or
// its own, and their timings by up to 4–6 % either way (measured on the causal sparse
// pattern); a call costs a few ns of a call's ~300.
#[inline(never)]
#[target_feature(enable = "avx512f,avx512vl,fma")]
pub(super) unsafe fn group<const NP: usize>(
    a: &GroupArgs<'_, '_>,
    m: &mut [f32],
    l: &mut [f32],
    acc: &mut [f32],
) {
    match a.splice {
        None => group_with::<NP, false>(a, m, l, acc),
        Some(_) => group_spliced::<NP>(a, m, l, acc),
    }
}

/// [`group_with`] for calls with spliced keys, kept out of line: the plain calls' code stays
/// as compact as without splices.
///
/// # Safety
/// As [`group_with`].
#[inline(never)]
#[target_feature(enable = "avx512f,avx512vl,fma")]
unsafe fn group_spliced<const NP: usize>(
    a: &GroupArgs<'_, '_>,
    m: &mut [f32],
    l: &mut [f32],
    acc: &mut [f32],
) {
    group_with::<NP, true>(a, m, l, acc)
}

/// [`group`], compiled apart for calls with spliced keys (whose two extra instructions per
/// column stay out of every other call).
///
/// # Safety
/// As [`group`]; a splice's lanes lie in the call's panels and its Kᵀ, V hold its keys.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,fma")]
unsafe fn group_with<const NP: usize, const SPLICE: bool>(
    a: &GroupArgs<'_, '_>,
    m: &mut [f32],
    l: &mut [f32],
    acc: &mut [f32],
) {
    let pk = a.pk;
    let d = pk.d;
    debug_assert!(m.len() == GROUP && l.len() == GROUP && acc.len() == GROUP * d);
    debug_assert!((a.q_row + GROUP - 1) * pk.q_stride + d <= pk.qs.len());
    debug_assert!((a.ja / PANEL + NP) * d * PANEL <= pk.kt.len());
    debug_assert!((a.hi - 1) * pk.v_stride + d <= pk.v.len());
    // SAFETY (all pointer reads below): bounds checked by the debug assertions above, which
    // `engine::chunk` guarantees: Q has its 4 rows (padded, or real rows read in place), K is
    // packed to whole panels, keys < n.
    let q = pk.qs.as_ptr().add(a.q_row * pk.q_stride);
    let kt = pk.kt.as_ptr().add((a.ja / PANEL) * d * PANEL);
    let sp = match a.splice {
        Some(sp) if SPLICE => {
            debug_assert!(sp.at >= a.ja && sp.at + sp.count <= a.ja + NP * PANEL);
            debug_assert!(sp.count <= PANEL - (sp.at - a.ja) % PANEL);
            debug_assert!(sp.kt.len() >= d * PANEL && sp.v.len() >= sp.count * d);
            let lane0 = (sp.at - a.ja) % PANEL;
            SpliceLanes {
                panel: (sp.at - a.ja) / PANEL,
                lanes: tail(sp.count) << lane0,
                // Lane x takes spliced key x − lane0 (lanes outside the mask are kept).
                from: _mm512_sub_epi32(
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                    _mm512_set1_epi32(lane0 as i32),
                ),
                kt: sp.kt.as_ptr(),
            }
        }
        _ => SpliceLanes {
            panel: NP,
            lanes: 0,
            from: _mm512_setzero_si512(),
            kt: std::ptr::null(),
        },
    };
    let mut s = qk::<NP, SPLICE>(q, pk.q_stride, d, kt, &sp);
    if pk.q_scale != 1.0 {
        let f = _mm512_set1_ps(pk.q_scale);
        for row in s.iter_mut() {
            for x in row.iter_mut() {
                *x = _mm512_mul_ps(*x, f);
            }
        }
    }
    // With a splice, the keys `[lo, hi)` as runs of V rows `(j0, j1, row of j0, stride)`: the
    // packed V, and the spliced keys' own rows for their lanes (a run of their own, so that
    // P V has no per-key test; an empty run is skipped by its loop).
    let mut runs = [(0, 0, std::ptr::null::<f32>(), 0); 3];
    if let (Some(sp), true) = (a.splice, SPLICE) {
        let v_at = |j: usize| pk.v.as_ptr().add(j * pk.v_stride);
        let (s0, s1) = (
            sp.at.clamp(a.lo, a.hi),
            (sp.at + sp.count).clamp(a.lo, a.hi),
        );
        runs = [
            (a.lo, s0, v_at(a.lo), pk.v_stride),
            (s0, s1, sp.v.as_ptr().add((s0 - sp.at) * d), d),
            (s1, a.hi, v_at(s1), pk.v_stride),
        ];
    }
    // Runs `$body` for every key of the call with `$vr`, its V row, and `$x`, its lane.
    macro_rules! each_key {
        (|$vr:ident, $x:ident| $body:block) => {
            if SPLICE {
                for &(j0, j1, row, stride) in &runs {
                    for j in j0..j1 {
                        let $x = j - a.ja;
                        let $vr = row.add((j - j0) * stride);
                        $body
                    }
                }
            } else {
                for j in a.lo..a.hi {
                    let $x = j - a.ja;
                    let $vr = pk.v.as_ptr().add(j * pk.v_stride);
                    $body
                }
            }
        };
    }
    let full = (1u128 << (NP * PANEL)) - 1;
    let range = {
        let (lo, hi) = (a.lo - a.ja, a.hi - a.ja);
        (u128::MAX >> (128 - (hi - lo))) << lo
    };
    let neg_inf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut alpha = [1f32; GROUP];
    let mut pbuf = [[0f32; WIDE * PANEL]; GROUP];
    for r in 0..GROUP {
        let word = a.bits.map_or(u128::MAX, |b| b[r]) & full & range;
        if a.always_mask || word != full {
            for p in 0..NP {
                let k = (word >> (p * PANEL)) as __mmask16;
                s[r][p] = _mm512_mask_blend_ps(k, neg_inf, s[r][p]);
            }
        }
        let mut mx = s[r][0];
        for p in 1..NP {
            mx = _mm512_max_ps(mx, s[r][p]);
        }
        let m_new = m[r].max(_mm512_reduce_max_ps(mx));
        if m_new == f32::NEG_INFINITY {
            continue; // nothing allowed yet: P stays 0
        }
        let mb = _mm512_set1_ps(m_new);
        let mut sum = _mm512_setzero_ps();
        for p in 0..NP {
            let e = exp2_ps(_mm512_sub_ps(s[r][p], mb));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(pbuf[r].as_mut_ptr().add(p * PANEL), e);
        }
        alpha[r] = exp2(m[r] - m_new);
        l[r] = l[r] * alpha[r] + _mm512_reduce_add_ps(sum);
        m[r] = m_new;
    }
    let accp = acc.as_mut_ptr();
    let al = [
        _mm512_set1_ps(alpha[0]),
        _mm512_set1_ps(alpha[1]),
        _mm512_set1_ps(alpha[2]),
        _mm512_set1_ps(alpha[3]),
    ];
    // Strips of 64 columns: 4 rows × 4 vectors of accumulators.
    let mut c0 = 0;
    while c0 + 64 <= d {
        let mut t = [[_mm512_setzero_ps(); 4]; GROUP];
        for r in 0..GROUP {
            for x in 0..4 {
                t[r][x] = _mm512_mul_ps(al[r], _mm512_loadu_ps(accp.add(r * d + c0 + 16 * x)));
            }
        }
        each_key!(|row, x| {
            let vr = row.add(c0);
            let vv = [
                _mm512_loadu_ps(vr),
                _mm512_loadu_ps(vr.add(16)),
                _mm512_loadu_ps(vr.add(32)),
                _mm512_loadu_ps(vr.add(48)),
            ];
            for r in 0..GROUP {
                let pb = _mm512_set1_ps(pbuf[r][x]);
                for y in 0..4 {
                    t[r][y] = _mm512_fmadd_ps(pb, vv[y], t[r][y]);
                }
            }
        });
        for r in 0..GROUP {
            for x in 0..4 {
                _mm512_storeu_ps(accp.add(r * d + c0 + 16 * x), t[r][x]);
            }
        }
        c0 += 64;
    }
    // Strips of 16 (the last one masked).
    while c0 < d {
        let k = tail((d - c0).min(16));
        let mut t = [_mm512_setzero_ps(); GROUP];
        for r in 0..GROUP {
            t[r] = _mm512_mul_ps(al[r], _mm512_maskz_loadu_ps(k, accp.add(r * d + c0)));
        }
        each_key!(|row, x| {
            let vv = _mm512_maskz_loadu_ps(k, row.add(c0));
            for r in 0..GROUP {
                t[r] = _mm512_fmadd_ps(_mm512_set1_ps(pbuf[r][x]), vv, t[r]);
            }
        });
        for r in 0..GROUP {
            _mm512_mask_storeu_ps(accp.add(r * d + c0), k, t[r]);
        }
        c0 += 16;
    }
}

/// One panel of Kᵀ: `dst[c · 16 + x] = keys[x][c]` for `c < d`, `x < 16` (missing keys
/// give zeros), as 16 × 16 blocks transposed in registers: whole-row loads and whole-row
/// stores instead of 16 strided reads per stored vector.
///
/// # Safety
/// AVX-512F must be available; `keys.len() ≤ 16`, every key has at least `d` floats and `dst`
/// at least `16 · d`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_panel(keys: &[&[f32]], d: usize, dst: &mut [f32]) {
    debug_assert!(keys.len() <= PANEL && dst.len() >= PANEL * d);
    debug_assert!(keys.iter().all(|k| k.len() >= d));
    let mut c0 = 0;
    while c0 < d {
        let k = tail((d - c0).min(16));
        // SAFETY: masked loads stay within the first d floats of each key.
        let r: [__m512; 16] = std::array::from_fn(|x| match keys.get(x) {
            Some(key) => unsafe { _mm512_maskz_loadu_ps(k, key.as_ptr().add(c0)) },
            None => _mm512_setzero_ps(),
        });
        // Pairs of rows interleaved by 32, then 64 bits, then 128-bit lanes twice.
        let t: [__m512; 16] = std::array::from_fn(|x| {
            let (a, b) = (r[x & !1], r[x | 1]);
            if x & 1 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let u: [__m512; 16] = std::array::from_fn(|x| {
            // Blocks of 4: (t0, t2) lo, (t0, t2) hi, (t1, t3) lo, (t1, t3) hi.
            let b = x & !3;
            let (a, c) = match x & 3 {
                0 | 1 => (t[b], t[b + 2]),
                _ => (t[b + 1], t[b + 3]),
            };
            let (a, c) = (_mm512_castps_pd(a), _mm512_castps_pd(c));
            _mm512_castpd_ps(if x & 1 == 0 {
                _mm512_unpacklo_pd(a, c)
            } else {
                _mm512_unpackhi_pd(a, c)
            })
        });
        // v[x] for x < 8 from (u[x % 4], u[4 + x % 4]), for x ≥ 8 from (u[8 + x % 4], u[12 + x % 4]);
        // 0x88 keeps lanes 0 and 2 of each, 0xDD lanes 1 and 3.
        let v: [__m512; 16] = std::array::from_fn(|x| {
            let h = x & 8;
            let (a, b) = (u[h + (x & 3)], u[h + 4 + (x & 3)]);
            if x & 4 == 0 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            }
        });
        for c in 0..(d - c0).min(16) {
            // Column c: lanes c of keys 0–3, 4–7, 8–11, 12–15.
            let (a, b) = (v[c & 7], v[8 + (c & 7)]);
            let col = if c < 8 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xDD>(a, b)
            };
            // SAFETY: c0 + c < d, so the 16 floats lie inside dst.
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add((c0 + c) * PANEL), col) };
        }
        c0 += 16;
    }
}

/// One CSR row: `out = softmax(q · k_j for j in keys) · V`, q pre-scaled for base 2.
///
/// # Safety
/// AVX-512F must be available; `q`, `out` have `d` floats; `k`, `v` are `n × d` row-major
/// with every key `< n`.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,fma")]
pub(super) unsafe fn csr_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: &[u32],
    d: usize,
    acc: &mut [f32],
    out: &mut [f32],
) {
    debug_assert!(q.len() >= d && out.len() >= d && acc.len() >= d);
    debug_assert!(keys
        .iter()
        .all(|&j| (j as usize + 1) * d <= k.len().min(v.len())));
    let strips = d.div_ceil(16);
    let mask = |s: usize| tail((d - 16 * s).min(16));
    acc[..d].fill(0.0);
    let accp = acc.as_mut_ptr();
    let mut m = f32::NEG_INFINITY;
    let mut l = 0f32;
    let mut scores = [0f32; 16];
    for js in keys.chunks(16) {
        // Scores of up to 16 keys, 4 at a time sharing the loads of q.
        for (t4, quad) in js.chunks(4).enumerate() {
            let mut a4 = [_mm512_setzero_ps(); 4];
            for s in 0..strips {
                let qv = _mm512_maskz_loadu_ps(mask(s), q.as_ptr().add(16 * s));
                for (t, &j) in quad.iter().enumerate() {
                    let kv =
                        _mm512_maskz_loadu_ps(mask(s), k.as_ptr().add(j as usize * d + 16 * s));
                    a4[t] = _mm512_fmadd_ps(qv, kv, a4[t]);
                }
            }
            for t in 0..quad.len() {
                scores[4 * t4 + t] = _mm512_reduce_add_ps(a4[t]);
            }
        }
        let live = tail(js.len());
        let sv = _mm512_mask_blend_ps(
            live,
            _mm512_set1_ps(f32::NEG_INFINITY),
            _mm512_loadu_ps(scores.as_ptr()),
        );
        let m_new = m.max(_mm512_reduce_max_ps(sv));
        let pv = exp2_ps(_mm512_sub_ps(sv, _mm512_set1_ps(m_new)));
        let alpha = exp2(m - m_new);
        l = l * alpha + _mm512_reduce_add_ps(pv);
        m = m_new;
        let mut p = [0f32; 16];
        _mm512_storeu_ps(p.as_mut_ptr(), pv);
        for s in 0..strips {
            let ms = mask(s);
            let mut t = _mm512_mul_ps(
                _mm512_set1_ps(alpha),
                _mm512_maskz_loadu_ps(ms, accp.add(16 * s)),
            );
            for (x, &j) in js.iter().enumerate() {
                let vv = _mm512_maskz_loadu_ps(ms, v.as_ptr().add(j as usize * d + 16 * s));
                t = _mm512_fmadd_ps(_mm512_set1_ps(p[x]), vv, t);
            }
            _mm512_mask_storeu_ps(accp.add(16 * s), ms, t);
        }
    }
    let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
    for (o, a) in out[..d].iter_mut().zip(&acc[..d]) {
        *o = a * inv;
    }
}
