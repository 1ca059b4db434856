//! The engine's loops over one row: plain Rust over 16 fixed lanes, which the compiler
//! vectorises for the instruction set [`pulp`] picks at run time (the engine runs each job
//! inside `Arch::dispatch`, and everything here is `#[inline(always)]` so that it is
//! compiled with that set's features). Where the CPU has AVX-512 (F, BW, VL), the hottest of them
//! (the max pass, the sums of exponentials) run in `avx512.rs`'s forms, with these bits.
//!
//! Element `j` of a row always goes to lane `j % 16`, the lanes are combined by one fixed
//! tree, a row's last partial chunk is run as a whole one whose lanes past the row add 0
//! (or `-inf` to a max), and no multiply is fused with an add unless written so (Rust never
//! contracts; `mul_add` rounds once on every instruction set, in hardware where the CPU has
//! FMA, in software where it has not): the bits are the same on every instruction set,
//! thread count and chunking.
//!
//! `exp` is a vectorisable `expf` (Cody-Waite reduction by ln 2; `1 + r + r²·P(r)`, `P` of
//! degree 4 fitted to `e^r` on `|r| ≤ ln 2 / 2` by minimax of the relative error, evaluated by
//! fused multiply-adds; the power of two built in the exponent bits); within 2 ulp on
//! `[-87.3, 88]` (the engine takes it of `x − max ≤ 0`), 0 below (where f32 has no normal
//! result) and for `-inf`, `e^88` above.

/// Lanes of every accumulation.
pub(crate) const LANES: usize = 16;

/// How far ahead of a chunk of a row its successor is asked for, in elements: a row's pass
/// asks for the lines of the next rows (a chunk's rows lie one after another), which arrive
/// while this one computes, one line per line read.
const AHEAD: usize = 2048;

/// Asks the CPU for the cache line `AHEAD` elements past `x`'s first. A hint: it changes no
/// result, and an address past the data is only formed (wrapping), never read.
#[inline(always)]
pub(crate) fn prefetch(x: &[f32]) {
    prefetch_at(x.as_ptr().wrapping_add(AHEAD).cast());
}

/// Asks the CPU for the cache line of `p` (see [`prefetch`]).
#[inline(always)]
pub(crate) fn prefetch_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault; SSE is in every
    // x86-64 CPU
    #[allow(unsafe_code)]
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `e^x` in f32 (see the module's notes); NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer, which then sits in the low mantissa bits
    const MAGIC: f32 = 12_582_912.0;
    let c = x.clamp(-88.0, 88.0);
    let shifted = c.mul_add(LOG2E, MAGIC);
    let n = shifted - MAGIC;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, c));
    let mut p = 1.387_969_1e-3_f32;
    p = p.mul_add(r, 8.368_693e-3);
    p = p.mul_add(r, 4.166_722_7e-2);
    p = p.mul_add(r, 1.666_652_1e-1);
    p = p.mul_add(r, 0.499_999_97);
    let e = p.mul_add(r, 1.0).mul_add(r, 1.0);
    let k = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let scale = f32::from_bits(((k + 127).max(1) as u32) << 23);
    let v = e * scale;
    if x < -87.336_54 { 0.0 } else { v }
}

/// The lanes summed by a fixed tree.
#[inline(always)]
pub(crate) fn tree(mut a: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            a[i] += a[i + w];
        }
        w /= 2;
    }
    a[0]
}

/// Elements of a block: its lanes are summed in f32, then blocks are added in f64, so a row
/// of millions of elements loses no more than one of a few thousand.
pub(crate) const BLOCK: usize = 4096;

/// `K` sums over a row: `f(x_j)` gives what element `j` adds to each; element `j` goes to
/// lane `j % LANES` of its block.
#[inline(always)]
pub(crate) fn sums<const K: usize>(x: &[f32], f: impl Fn(f32) -> [f32; K]) -> [f32; K] {
    let mut total = [0.0f64; K];
    for block in x.chunks(BLOCK) {
        let mut acc = [[0.0f32; LANES]; K];
        let (chunks, rest) = block.as_chunks::<LANES>();
        for c in chunks {
            prefetch(c);
            for i in 0..LANES {
                let v = f(c[i]);
                for k in 0..K {
                    acc[k][i] += v[k];
                }
            }
        }
        if !rest.is_empty() {
            // the last partial chunk as a whole one: its lanes past the row add 0
            let mut pad = [0.0f32; LANES];
            pad[..rest.len()].copy_from_slice(rest);
            for i in 0..LANES {
                let v = f(pad[i]);
                for k in 0..K {
                    acc[k][i] += if i < rest.len() { v[k] } else { 0.0 };
                }
            }
        }
        for k in 0..K {
            total[k] += f64::from(tree(acc[k]));
        }
    }
    total.map(|t| t as f32)
}

/// [`sums`] over two rows of the same length, element by element.
#[inline(always)]
pub(crate) fn sums2<const K: usize>(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> [f32; K]) -> [f32; K] {
    let n = a.len().min(b.len());
    let mut total = [0.0f64; K];
    for (a, b) in a[..n].chunks(BLOCK).zip(b[..n].chunks(BLOCK)) {
        let mut acc = [[0.0f32; LANES]; K];
        let ((ca, ra), (cb, rb)) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
        for (ca, cb) in ca.iter().zip(cb) {
            prefetch(ca);
            prefetch(cb);
            for i in 0..LANES {
                let v = f(ca[i], cb[i]);
                for k in 0..K {
                    acc[k][i] += v[k];
                }
            }
        }
        if !ra.is_empty() {
            let (mut pa, mut pb) = ([0.0f32; LANES], [0.0f32; LANES]);
            pa[..ra.len()].copy_from_slice(ra);
            pb[..rb.len()].copy_from_slice(rb);
            for i in 0..LANES {
                let v = f(pa[i], pb[i]);
                for k in 0..K {
                    acc[k][i] += if i < ra.len() { v[k] } else { 0.0 };
                }
            }
        }
        for k in 0..K {
            total[k] += f64::from(tree(acc[k]));
        }
    }
    total.map(|t| t as f32)
}

/// The max of a row, NaN ignored (`-inf` for a row of `-inf` or NaN). In 4·16 lanes: four
/// chains of compares in flight, folded into one and then by a tree (a max is exact, so the
/// lanes change no value; they may change only which zero, `+0` or `-0`, a row of zeros has
/// as its max).
#[inline(always)]
pub(crate) fn max_of(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        return unsafe { super::avx512::max_of(x) };
    }
    max_of_portable(x)
}

/// [`max_of`] in plain Rust (every instruction set; the AVX-512 form's bits).
#[inline(always)]
pub(crate) fn max_of_portable(x: &[f32]) -> f32 {
    const WIDE: usize = 4 * LANES;
    let mut m = [f32::NEG_INFINITY; WIDE];
    let (chunks, rest) = x.as_chunks::<WIDE>();
    for c in chunks {
        for i in 0..WIDE {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    if !rest.is_empty() {
        let mut pad = [f32::NEG_INFINITY; WIDE];
        pad[..rest.len()].copy_from_slice(rest);
        for i in 0..WIDE {
            m[i] = if pad[i] > m[i] { pad[i] } else { m[i] };
        }
    }
    lanes_max(&m)
}

/// The max of 4·16 lanes: the four chains into one, then a tree over the lanes.
#[inline(always)]
pub(crate) fn lanes_max(m: &[f32; 4 * LANES]) -> f32 {
    let mut r = [f32::NEG_INFINITY; LANES];
    for chain in m.as_chunks::<LANES>().0 {
        for i in 0..LANES {
            r[i] = if chain[i] > r[i] { chain[i] } else { r[i] };
        }
    }
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            r[i] = if r[i + w] > r[i] { r[i + w] } else { r[i] };
        }
        w /= 2;
    }
    r[0]
}

/// [`max_of`] and the first index of the max, in the same pass: each lane keeps the chunk
/// where its max first appeared, and the first index is the least of the lanes holding the
/// row's max. Where there is no NaN it is the argmax (a NaN is skipped, as by `max_of`).
#[inline(always)]
pub(crate) fn max_first(x: &[f32]) -> (f32, usize) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() && x.len() < (u32::MAX as usize) / 2 {
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        return unsafe { super::avx512::max_first(x) };
    }
    max_first_portable(x)
}

/// [`max_first`] in plain Rust (every instruction set; the AVX-512 form's bits).
#[inline(always)]
pub(crate) fn max_first_portable(x: &[f32]) -> (f32, usize) {
    const WIDE: usize = 4 * LANES;
    if x.len() >= (u32::MAX as usize) / 2 {
        let m = max_of(x);
        return (m, first(x, m));
    }
    let mut m = [f32::NEG_INFINITY; WIDE];
    let mut at = [0u32; WIDE];
    let (chunks, rest) = x.as_chunks::<WIDE>();
    let mut step = |k: u32, c: &[f32; WIDE]| {
        for i in 0..WIDE {
            let gt = c[i] > m[i];
            m[i] = if gt { c[i] } else { m[i] };
            at[i] = if gt { k } else { at[i] };
        }
    };
    for (k, c) in chunks.iter().enumerate() {
        step(k as u32, c);
    }
    if !rest.is_empty() {
        let mut pad = [f32::NEG_INFINITY; WIDE];
        pad[..rest.len()].copy_from_slice(rest);
        step(chunks.len() as u32, &pad);
    }
    fold_first(&m, &at)
}

/// The row's max from the 4·16 lanes of the max pass, and its first index from the chunk
/// where each lane's max first appeared: the least index among the lanes holding the max.
#[inline(always)]
pub(crate) fn fold_first(m: &[f32; 4 * LANES], at: &[u32; 4 * LANES]) -> (f32, usize) {
    const WIDE: usize = 4 * LANES;
    let max = lanes_max(m);
    let mut first = u32::MAX;
    for i in 0..WIDE {
        let index = at[i] * WIDE as u32 + i as u32;
        first = first.min(if m[i] == max { index } else { u32::MAX });
    }
    (max, first as usize)
}

/// Whether a row holds a NaN.
#[inline(always)]
pub(crate) fn has_nan(x: &[f32]) -> bool {
    let [n] = sums(x, |v| [if v.is_nan() { 1.0 } else { 0.0 }]);
    n != 0.0
}

/// The first index of the row's max, NaN beating everything, then `+inf`; 0 for a row of
/// `-inf`.
pub(crate) fn argmax(x: &[f32]) -> usize {
    if let Some(i) = x.iter().position(|v| v.is_nan()) {
        return i;
    }
    let max = max_of(x);
    x.iter().position(|&v| v == max).unwrap_or(0)
}

/// The first index of `v` in a row (its length where there is none), a lane-wide compare
/// at a time.
#[inline(always)]
pub(crate) fn first(x: &[f32], v: f32) -> usize {
    let (chunks, rest) = x.as_chunks::<LANES>();
    for (k, c) in chunks.iter().enumerate() {
        let mut hit = false;
        for e in c {
            hit |= *e == v;
        }
        if hit {
            return k * LANES + c.iter().position(|&e| e == v).unwrap_or(0);
        }
    }
    let done = chunks.len() * LANES;
    done + rest.iter().position(|&e| e == v).unwrap_or(rest.len())
}

/// A logits row's maximum and its sum of exponentials at a temperature: what log-softmax
/// and log-sum-exp take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats {
    /// The row's max.
    pub(crate) m: f32,
    /// `Σ_j e^((x_j − m)/t)`.
    pub(crate) s: f32,
    /// `ln s`.
    pub(crate) log_s: f32,
}

/// [`Stats`] of a row at temperature `t` (1: no division), where its log-softmax is
/// defined: no NaN (which makes the sum NaN), no `+inf`, not every element `-inf` (the max
/// is not finite).
#[inline(always)]
pub(crate) fn stats(x: &[f32], t: f32) -> Option<Stats> {
    let m = max_of(x);
    if !m.is_finite() {
        return None;
    }
    let st = stats_at(x, m, t);
    (!st.s.is_nan()).then_some(st)
}

/// [`Stats`] of a row whose max `m` is known and finite.
#[inline(always)]
pub(crate) fn stats_at(x: &[f32], m: f32, t: f32) -> Stats {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        let s = unsafe { super::avx512::exp_sum(x, m, t) };
        return Stats { m, s, log_s: s.ln() };
    }
    let [s] = if t == 1.0 { sums(x, |v| [exp(v - m)]) } else { sums(x, |v| [exp((v - m) / t)]) };
    Stats { m, s, log_s: s.ln() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorised exp against f64's over a sweep of the range it is used on (arguments
    /// up to 0: `x − max`, and a little past) and its edges.
    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.3f32;
        while x < 80.0 {
            let (got, want) = (f64::from(exp(x)), f64::from(x).exp());
            let ulp = f64::from(f32::EPSILON) * want;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sums_put_element_j_in_lane_j_mod_16() {
        let x: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let [s, c] = sums(&x, |v| [v, 1.0]);
        assert_eq!((s, c), ((0..37).sum::<i32>() as f32, 37.0));
        assert_eq!(max_of(&[1.0, f32::NAN, 3.0]), 3.0);
        assert!(has_nan(&[1.0, f32::NAN, 3.0]) && !has_nan(&[f32::NEG_INFINITY, f32::INFINITY]));
        assert_eq!(argmax(&[1.0, f32::NAN, 3.0, f32::NAN]), 1);
        assert_eq!(argmax(&[1.0, f32::INFINITY, 3.0, f32::INFINITY]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
    }

    /// The max and its first index in one pass, against a plain scan, over row lengths
    /// around the 64-lane chunks and ties placed in every lane.
    #[test]
    fn max_first_is_the_first_place_of_the_max() {
        for n in [1usize, 2, 15, 16, 17, 63, 64, 65, 129, 1000, 4099] {
            for tie in [0usize, 1, 17, 63, 64, 200] {
                let mut x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 / 100.0).collect();
                if tie < n {
                    x[tie] = 20.0;
                    x[n - 1] = 20.0;
                }
                let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let want = x.iter().position(|&v| v == m).unwrap();
                assert_eq!(max_first(&x), (m, want), "{n} columns, ties at {tie} and {}", n - 1);
            }
        }
        assert_eq!(max_first(&[0.0, -0.0, 1.0, 1.0]), (1.0, 2));
    }
}
