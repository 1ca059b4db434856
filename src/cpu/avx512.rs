//! AVX-512 forms of the engine's hottest loops (the max pass, and the sums of exponentials
//! of log-sum-exp, cross-entropy and the evaluation report), on `__m512` values.
//!
//! They do what [`super::math`]'s loops do, operation for operation on the same 16 lanes:
//! the same clamp, reduction and fused multiply-adds in `exp`, element `j` in lane `j % 16`,
//! a row's last partial chunk as a whole one whose lanes past the row add 0 (or are `-inf`
//! to a max), the same blocks, tree and f64 total. So their bits are math.rs's (tested
//! below on random rows with every special value). What differs is the machine code: inlined
//! into a task's one large function, math.rs's arrays of lanes are kept in memory by the
//! compiler (a store and a load on every step of an accumulator's chain, and masked stores
//! in the max), while `__m512` values stay in registers: the pass over a row runs about
//! twice as fast.
//!
//! Every function here needs AVX-512F (the f16 widening BW and VL too): callers check
//! [`available`] first.

#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m512, __m512i, __mmask16, _CMP_EQ_OQ, _CMP_GT_OQ, _CMP_NLT_UQ, _mm512_add_epi32, _mm512_add_ps,
    _mm512_cmp_ps_mask, _mm512_cmplt_epi32_mask, _mm512_div_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_loadu_ps,
    _mm512_mask_add_ps, _mm512_mask_loadu_ps, _mm512_mask_mov_epi32, _mm512_mask_mov_ps, _mm512_maskz_mov_ps,
    _mm512_maskz_mul_ps, _mm512_maskz_scalef_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps,
    _mm512_setr_epi32, _mm512_setzero_ps, _mm512_setzero_si512, _mm512_storeu_epi32, _mm512_storeu_ps, _mm512_sub_ps,
};

use super::math::{BLOCK, LANES, fold_first, lanes_max, prefetch, prefetch_at, tree};

/// Whether the CPU has AVX-512F, BW and VL and `XENT_CPU_SIMD` pins no narrower set (found
/// once; a load afterwards).
#[inline(always)]
pub(crate) fn available() -> bool {
    super::avx512_allowed()
}

/// The first `n` lanes (`n ≤ 16`).
#[inline(always)]
fn first_lanes(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// 16 elements from `x` (which holds at least 16).
#[target_feature(enable = "avx512f")]
#[inline]
fn load(x: &[f32]) -> __m512 {
    debug_assert!(x.len() >= LANES);
    // SAFETY: `x` holds at least 16 f32 (every caller passes a whole chunk); unaligned load
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

/// The first `x.len() < 16` lanes from `x`, the others `fill`.
#[target_feature(enable = "avx512f")]
#[inline]
fn load_part(x: &[f32], fill: __m512) -> __m512 {
    // SAFETY: the mask covers `x.len()` lanes, all inside `x`; masked-off lanes are not read
    unsafe { _mm512_mask_loadu_ps(fill, first_lanes(x.len().min(LANES)), x.as_ptr()) }
}

/// The lanes as an array.
#[target_feature(enable = "avx512f")]
#[inline]
fn lanes(v: __m512) -> [f32; LANES] {
    let mut a = [0.0f32; LANES];
    // SAFETY: `a` holds 16 f32
    unsafe { _mm512_storeu_ps(a.as_mut_ptr(), v) };
    a
}

/// [`super::math::exp`] on 16 lanes, operation for operation, for `x ≤ 88` or NaN (every
/// caller passes `x − m` with `m` the max of the `x`, which is `≤ 0`, or NaN).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn exp(x: __m512) -> __m512 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0;
    let s = _mm512_set1_ps;
    // the portable form's `x.clamp(-88, 88)` changes no lane here: the ceiling none at `x ≤
    // 88`, the floor none that is kept (below −87.34 a lane is 0 whatever `e` is, and
    // `vscalefps` needs no bound on `n`)
    let c = x;
    let shifted = _mm512_fmadd_ps(c, s(LOG2E), s(MAGIC));
    let n = _mm512_sub_ps(shifted, s(MAGIC));
    // (−n)·a + b is −(n·a) + b exactly
    let r = _mm512_fnmadd_ps(n, s(LN2_LO), _mm512_fnmadd_ps(n, s(LN2_HI), c));
    let mut p = s(1.387_969_1e-3);
    p = _mm512_fmadd_ps(p, r, s(8.368_693e-3));
    p = _mm512_fmadd_ps(p, r, s(4.166_722_7e-2));
    p = _mm512_fmadd_ps(p, r, s(1.666_652_1e-1));
    p = _mm512_fmadd_ps(p, r, s(0.499_999_97));
    let e = _mm512_fmadd_ps(_mm512_fmadd_ps(p, r, s(1.0)), r, s(1.0));
    // `e·2^n` by `vscalefps`, one instruction for the portable form's five (the power of two
    // built in the exponent bits, then a multiply): the same single rounding of the same
    // exact product wherever the result is kept (there `n ≥ −126`, so the portable form's
    // floor at `2^−126` does not apply); lanes below −87.34 (NaN compares false) are 0,
    // whatever their `e` (NaN for `-inf`)
    // (not-less-than, unordered: the complement of an ordered `<`, in one compare)
    let kept = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, s(-87.336_54));
    _mm512_maskz_scalef_ps(kept, e, n)
}

/// The sums of `f` over `n` elements, [`super::math::sums`]'s blocks and lanes: `load(j,
/// len)` gives the lanes from element `j` (`len` of them; where `len < 16` the rest are 0),
/// `f` what they add to each sum, given `j` too.
#[target_feature(enable = "avx512f")]
#[inline]
fn sums_by<const K: usize, V>(
    n: usize,
    load: impl Fn(usize, usize) -> V,
    f: impl Fn(V, usize) -> [__m512; K],
) -> [f32; K] {
    let mut total = [0.0f64; K];
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let mut acc = [_mm512_setzero_ps(); K];
        let mut j = start;
        while j + LANES <= end {
            let v = f(load(j, LANES), j);
            for k in 0..K {
                acc[k] = _mm512_add_ps(acc[k], v[k]);
            }
            j += LANES;
        }
        if j < end {
            // the padding's lanes are 0 and add nothing (an accumulator from +0 is never −0)
            let v = f(load(j, end - j), j);
            let keep = first_lanes(end - j);
            for k in 0..K {
                acc[k] = _mm512_mask_add_ps(acc[k], keep, acc[k], v[k]);
            }
        }
        for k in 0..K {
            total[k] += f64::from(tree(lanes(acc[k])));
        }
    }
    total.map(|t| t as f32)
}

/// The lanes of `x` from element `j` (`len` of them, the rest 0); with `AHEAD` a whole chunk
/// asks for the line ahead (the next rows, where `x` is the input itself).
#[target_feature(enable = "avx512f")]
#[inline]
fn lanes_at<const AHEAD: bool>(x: &[f32], j: usize, len: usize) -> __m512 {
    if len == LANES {
        if AHEAD {
            prefetch(&x[j..]);
        }
        load(&x[j..])
    } else {
        load_part(&x[j..j + len], _mm512_setzero_ps())
    }
}

/// [`super::math::sums`] with `f` on 16 lanes (and the index of the first).
#[target_feature(enable = "avx512f")]
#[inline]
fn sums<const K: usize>(x: &[f32], f: impl Fn(__m512, usize) -> [__m512; K]) -> [f32; K] {
    sums_by(x.len(), |j, len| lanes_at::<true>(x, j, len), f)
}

/// [`super::math::sums2`] with `f` on 16 lanes of each row.
#[target_feature(enable = "avx512f")]
#[inline]
fn sums2<const AHEAD: bool, const K: usize>(
    a: &[f32],
    b: &[f32],
    f: impl Fn(__m512, __m512) -> [__m512; K],
) -> [f32; K] {
    let n = a.len().min(b.len());
    sums_by(n, |j, len| (lanes_at::<AHEAD>(a, j, len), lanes_at::<AHEAD>(b, j, len)), |(x, y), _| f(x, y))
}

/// KL's pass over two rows of logits with maxima `mp` and `mq`:
/// `[Σ e_j, Σ e_j·((x_j − mp) − (y_j − mq)), Σ e^(y_j − mq)]`, `e_j = e^(x_j − mp)`, the
/// middle term 0 where `e_j` is 0.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn kl_sums(a: &[f32], b: &[f32], mp: f32, mq: f32, ahead: bool) -> [f32; 3] {
    let (mp, mq) = (_mm512_set1_ps(mp), _mm512_set1_ps(mq));
    let f = |x, y| {
        let (dx, dy) = (_mm512_sub_ps(x, mp), _mm512_sub_ps(y, mq));
        let e = exp(dx);
        let nonzero = _mm512_cmp_ps_mask::<{ std::arch::x86_64::_CMP_NEQ_UQ }>(e, _mm512_setzero_ps());
        [e, _mm512_maskz_mul_ps(nonzero, e, _mm512_sub_ps(dx, dy)), exp(dy)]
    };
    if ahead { sums2::<true, 3>(a, b, f) } else { sums2::<false, 3>(a, b, f) }
}

/// `Σ e^(x_j − m)`, or `Σ e^((x_j − m)/t)` where `t ≠ 1`: [`super::math::stats_at`]'s sum.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn exp_sum(x: &[f32], m: f32, t: f32) -> f32 {
    let (m, tv) = (_mm512_set1_ps(m), _mm512_set1_ps(t));
    if t == 1.0 {
        sums(x, |v, _| [exp(_mm512_sub_ps(v, m))])[0]
    } else {
        sums(x, |v, _| [exp(_mm512_div_ps(_mm512_sub_ps(v, m), tv))])[0]
    }
}

/// The report's sums of cross-entropy: `[Σ e_j, Σ e_j², rank]`, `e_j = e^(x_j − m)`, the rank
/// the classes above the label (`x_j > xy`, or `x_j = xy` with `j < before`; rows shorter
/// than `i32::MAX`), all in one pass.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn report_sums(x: &[f32], m: f32, xy: f32, before: usize) -> [f32; 3] {
    let (m, xy, one) = (_mm512_set1_ps(m), _mm512_set1_ps(xy), _mm512_set1_ps(1.0));
    let before = _mm512_set1_epi32(before.min(x.len()) as i32);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    sums(x, |v, j| {
        let e = exp(_mm512_sub_ps(v, m));
        let earlier = _mm512_cmplt_epi32_mask(_mm512_add_epi32(_mm512_set1_epi32(j as i32), iota), before);
        let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, xy) | (_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(v, xy) & earlier);
        [e, _mm512_mul_ps(e, e), _mm512_maskz_mov_ps(above, one)]
    })
}

/// The max pass's 4·16 lanes: each lane's max, and with `FIRST` the chunk where it first
/// appeared.
struct MaxLanes<const FIRST: bool> {
    m: [__m512; 4],
    at: [__m512i; 4],
}

impl<const FIRST: bool> MaxLanes<FIRST> {
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn new() -> Self {
        MaxLanes { m: [_mm512_set1_ps(f32::NEG_INFINITY); 4], at: [_mm512_setzero_si512(); 4] }
    }

    /// Chunk `k`'s 64 elements.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn step(&mut self, k: u32, v: [__m512; 4]) {
        let kv = _mm512_set1_epi32(k as i32);
        for ((m, at), v) in self.m.iter_mut().zip(&mut self.at).zip(v) {
            if FIRST {
                let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, *m);
                *m = _mm512_mask_mov_ps(*m, gt, v);
                *at = _mm512_mask_mov_epi32(*at, gt, kv);
            } else {
                // `vmaxps` keeps its second operand unless the first is greater (a NaN, or an
                // equal zero, keeps `m`): the same lane as the compare and move above
                *m = _mm512_max_ps(v, *m);
            }
        }
    }

    /// The last, partial chunk `k` (`rest`, shorter than 64), padded with `-inf`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn step_part(&mut self, k: u32, rest: &[f32]) {
        let inf = _mm512_set1_ps(f32::NEG_INFINITY);
        let part = |q: usize| load_part(rest.get(q * LANES..).unwrap_or(&[]), inf);
        self.step(k, [part(0), part(1), part(2), part(3)]);
    }

    /// The lanes as arrays, in element order.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn arrays(&self) -> ([f32; 4 * LANES], [u32; 4 * LANES]) {
        let (mut ms, mut ats) = ([0.0f32; 4 * LANES], [0u32; 4 * LANES]);
        for q in 0..4 {
            // SAFETY: each store writes 16 elements inside the 64 of its array
            unsafe {
                _mm512_storeu_ps(ms[q * LANES..].as_mut_ptr(), self.m[q]);
                _mm512_storeu_epi32(ats[q * LANES..].as_mut_ptr().cast(), self.at[q]);
            }
        }
        (ms, ats)
    }
}

/// The max pass over `x`: its 4·16 lanes.
#[target_feature(enable = "avx512f")]
#[inline]
fn max_lanes<const FIRST: bool>(x: &[f32]) -> ([f32; 4 * LANES], [u32; 4 * LANES]) {
    let mut lanes = MaxLanes::<FIRST>::new();
    let (chunks, rest) = x.as_chunks::<{ 4 * LANES }>();
    for (k, c) in chunks.iter().enumerate() {
        lanes.step(k as u32, [load(&c[..]), load(&c[16..]), load(&c[32..]), load(&c[48..])]);
    }
    if !rest.is_empty() {
        lanes.step_part(chunks.len() as u32, rest);
    }
    lanes.arrays()
}

/// f16 `src` widened into `dst` (exactly: `vcvtph2ps`, as plan.rs's widening) and the max
/// pass over it in the same pass: [`max_of`] of `dst`, and with `FIRST` [`max_first`]'s index
/// too (rows shorter than `i32::MAX`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
pub(crate) fn widen_f16_max<const FIRST: bool>(src: &[half::f16], dst: &mut [f32]) -> (f32, Option<usize>) {
    use std::arch::x86_64::{_mm256_maskz_loadu_epi16, _mm512_cvtph_ps, _mm512_mask_storeu_ps};
    const WIDE: usize = 4 * LANES;
    let n = src.len().min(dst.len());
    let mut lanes = MaxLanes::<FIRST>::new();
    let whole = n / WIDE * WIDE;
    for (k, (s, d)) in src[..whole].chunks_exact(WIDE).zip(dst[..whole].chunks_exact_mut(WIDE)).enumerate() {
        // the next rows' lines (one request a line), as the passes that compute ask
        prefetch_at(s.as_ptr().wrapping_add(4096).cast());
        prefetch_at(s[2 * LANES..].as_ptr().wrapping_add(4096).cast());
        lanes.step(k as u32, widen_chunk(s, d));
    }
    if whole < n {
        // the last, partial chunk by masked loads and stores (a copy through a buffer would
        // stall the wide loads that follow it), padded with `-inf` as the max pass pads it
        let (src, dst) = (&src[whole..n], &mut dst[whole..n]);
        let mut v = [_mm512_set1_ps(f32::NEG_INFINITY); 4];
        for (q, v) in v.iter_mut().enumerate() {
            let count = src.len().saturating_sub(q * LANES).min(LANES);
            if count == 0 {
                break;
            }
            let mask = first_lanes(count);
            // SAFETY: the mask covers `count` elements from `q·16`, all inside `src` and
            // `dst`; masked-off elements are neither read nor written
            unsafe {
                let w = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, src.as_ptr().add(q * LANES).cast()));
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(q * LANES), mask, w);
                *v = _mm512_mask_mov_ps(*v, mask, w);
            }
        }
        lanes.step((whole / WIDE) as u32, v);
    }
    let (m, at) = lanes.arrays();
    if FIRST {
        let (m, first) = fold_first(&m, &at);
        (m, Some(first))
    } else {
        (lanes_max(&m), None)
    }
}

/// 64 f16 from `s` widened into `d`, and as four vectors.
#[target_feature(enable = "avx512f")]
#[inline]
fn widen_chunk(s: &[half::f16], d: &mut [f32]) -> [__m512; 4] {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm512_cvtph_ps};
    assert!(s.len() >= 4 * LANES && d.len() >= 4 * LANES);
    let mut v = [_mm512_setzero_ps(); 4];
    for (q, v) in v.iter_mut().enumerate() {
        // SAFETY: `s` holds 64 f16 and `d` 64 f32 (asserted above): each load reads 16 f16
        // (32 bytes) and each store writes 16 f32 (64 bytes) inside them; unaligned
        unsafe {
            *v = _mm512_cvtph_ps(_mm256_loadu_si256(s[q * LANES..].as_ptr().cast::<__m256i>()));
            _mm512_storeu_ps(d[q * LANES..].as_mut_ptr(), *v);
        }
    }
    v
}

/// [`super::math::max_of`].
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn max_of(x: &[f32]) -> f32 {
    lanes_max(&max_lanes::<false>(x).0)
}

/// [`super::math::max_first`] (rows shorter than `u32::MAX / 2`).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn max_first(x: &[f32]) -> (f32, usize) {
    let (m, at) = max_lanes::<true>(x);
    fold_first(&m, &at)
}

/// Unused lanes masked to zero (a helper the tests share).
#[cfg(test)]
#[target_feature(enable = "avx512f")]
fn zero_past(v: __m512, n: usize) -> __m512 {
    _mm512_maskz_mov_ps(first_lanes(n.min(LANES)), v)
}

#[cfg(test)]
mod tests {
    use super::super::math;
    use super::*;

    /// Random rows with every special value, at lengths around the chunks and blocks.
    fn rows() -> Vec<Vec<f32>> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for n in [1usize, 2, 15, 16, 17, 31, 63, 64, 65, 127, 1000, 4095, 4096, 4097, 9000] {
            for kind in 0..6 {
                let row: Vec<f32> = (0..n)
                    .map(|_| {
                        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                        let v = ((u - 0.5) * 40.0) as f32;
                        match (kind, next() % 97) {
                            (1, 0) => f32::NEG_INFINITY,
                            (2, 0) => f32::NAN,
                            (3, _) => v * 500.0,
                            (4, 0) => f32::INFINITY,
                            (5, _) => (v * 4.0).round() / 4.0,
                            _ => v,
                        }
                    })
                    .collect();
                out.push(row);
            }
        }
        out.push(vec![f32::NEG_INFINITY; 70]);
        out.push(vec![-0.0, 0.0, -0.0]);
        out
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn the_same_bits_as_the_portable_loops() {
        if !available() {
            eprintln!("no AVX-512 here: nothing to compare");
            return;
        }
        for x in rows() {
            let n = x.len();
            // SAFETY: the CPU has AVX-512F, BW and VL (checked above)
            let (m, first) = unsafe { max_first(&x) };
            let (want_m, want_first) = math::max_first_portable(&x);
            assert_eq!((m.to_bits(), first), (want_m.to_bits(), want_first), "max first of {n}");
            // SAFETY: as above
            let m = unsafe { max_of(&x) };
            assert!(same(m, math::max_of_portable(&x)), "max of {n}");
            // the sums are taken with a finite max only (the callers' rule), so x − m ≤ 0
            if !m.is_finite() {
                continue;
            }
            let mm = m;
            for t in [1.0f32, 0.7] {
                let [want] = math::sums(&x, |v| [if t == 1.0 { math::exp(v - mm) } else { math::exp((v - mm) / t) }]);
                // SAFETY: as above
                let got = unsafe { exp_sum(&x, mm, t) };
                assert!(same(got, want), "exp sum of {n} at {t}");
            }
            let b: Vec<f32> = x.iter().rev().map(|v| v * 0.5 - 1.0).collect();
            let mb = math::max_of_portable(&b);
            let want = math::sums2(&x, &b, |u, w| {
                let e = math::exp(u - mm);
                [e, if e == 0.0 { 0.0 } else { e * ((u - mm) - (w - mb)) }, math::exp(w - mb)]
            });
            // SAFETY: as above
            let got = unsafe { kl_sums(&x, &b, mm, mb, n % 2 == 0) };
            assert!((0..3).all(|k| same(got[k], want[k])), "kl sums of {n}: {got:?} {want:?}");
            for y in [0, n / 2, n - 1] {
                let xy = x[y];
                let [s, q, greater] = math::sums(&x, |v| {
                    let e = math::exp(v - mm);
                    [e, e * e, if v > xy { 1.0 } else { 0.0 }]
                });
                let equal = x[..y].iter().filter(|&&v| v == xy).count() as f32;
                let want = [s, q, greater + equal];
                // SAFETY: as above
                let got = unsafe { report_sums(&x, mm, xy, y) };
                assert!((0..3).all(|k| same(got[k], want[k])), "report sums of {n} at {y}: {got:?} {want:?}");
            }
        }
    }

    /// f16 rows widened with their max in one pass: the widening's values and `max_first`'s.
    #[test]
    fn f16_widened_with_its_max() {
        if !available() {
            return;
        }
        for x in rows() {
            let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v * 0.01)).collect();
            let mut got = vec![0.0f32; h.len()];
            // SAFETY: the CPU has AVX-512F, BW and VL (checked above)
            let (m, first) = unsafe { widen_f16_max::<true>(&h, &mut got) };
            let want: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
            assert!(got.iter().zip(&want).all(|(&g, &w)| same(g, w)), "widened {}", h.len());
            let (wm, wf) = math::max_first_portable(&want);
            assert_eq!((m.to_bits(), first), (wm.to_bits(), Some(wf)), "max first of {}", h.len());
            let mut got = vec![0.0f32; h.len()];
            // SAFETY: as above
            let (m, first) = unsafe { widen_f16_max::<false>(&h, &mut got) };
            assert!(got.iter().zip(&want).all(|(&g, &w)| same(g, w)), "widened {}", h.len());
            assert!(same(m, math::max_of_portable(&want)) && first.is_none(), "max of {}", h.len());
        }
    }

    /// `exp` lane by lane against the portable one over a sweep and its edges.
    #[test]
    fn exp_has_the_portable_bits() {
        if !available() {
            return;
        }
        let mut xs: Vec<f32> = (0..200_000).map(|i| -100.0 + i as f32 * 0.000_97).filter(|&x| x <= 88.0).collect();
        // every f32 from −87.40 to −86.96, where results leave the normal range (2^−126)
        let mut x = -87.4f32;
        while x < -86.96 {
            xs.push(x);
            x = f32::from_bits(x.to_bits() - 1);
        }
        xs.extend([f32::NAN, f32::NEG_INFINITY, -0.0, 0.0, -87.336_54, -88.0, 88.0, 87.9, 1.0]);
        xs.extend([f32::MIN, -1e30, -1e4, -150.0, f32::MIN_POSITIVE, -f32::MIN_POSITIVE]);
        // (arguments over 88 are not taken: every caller passes x − max ≤ 0)
        for c in xs.chunks(LANES) {
            // SAFETY: the CPU has AVX-512F, BW and VL (checked above)
            let got = unsafe { lanes(zero_past(exp(load_part(c, _mm512_setzero_ps())), c.len())) };
            for (i, &v) in c.iter().enumerate() {
                assert!(same(got[i], math::exp(v)), "exp({v}): {} against {}", got[i], math::exp(v));
            }
        }
    }
}
