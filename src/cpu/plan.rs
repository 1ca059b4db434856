//! What a job runs on the engine, fixed from its template: the operation, which inputs are
//! soft-capped, the log base's factor, the class weights, what is kept; and how a chunk's
//! rows are widened to f32 for the row functions.

use super::row::{self, Fault, RowOut};
use crate::error::{Error, Result};
use crate::loss::{Floats, Loss};
use crate::op::{Domain, Op};
use crate::stream::RunOptions;

/// A job's fixed description.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) op: Op,
    pub(crate) cols: usize,
    /// `c` of the soft-capping, per float input (first, second), where it applies.
    pub(crate) cap: [Option<f32>; 2],
    /// The factor of the values that take a base (1, or `log2 e` for bits).
    pub(crate) scale: f32,
    pub(crate) weights: Option<Vec<f32>>,
    /// The report's records are made (cross-entropy with labels).
    pub(crate) report: bool,
    /// The rows' argmax is kept.
    pub(crate) argmax: bool,
    pub(crate) options: RunOptions,
}

impl Plan {
    /// The plan of `template`'s job, checked as the GPU path checks it.
    pub(crate) fn new(template: &Loss, options: &RunOptions) -> Result<Plan> {
        template.validate()?;
        let op = template.op;
        if op.head().is_some() {
            return Err(Error::Option {
                name: "op",
                detail: "the CPU engine runs the row operations; linear-ce runs on the GPU or the f64 reference".into(),
            });
        }
        let sig = op.signature();
        let capped = |domain| template.softcap.filter(|_| domain == Domain::Logits);
        let cap = [capped(sig.first.domain), sig.second.and_then(|s| capped(s.domain))];
        let scale = if op.takes_base() { options.base.scale() as f32 } else { 1.0 };
        Ok(Plan {
            op,
            cols: template.primary().cols,
            cap,
            scale,
            weights: template.inputs.weights.filter(|_| matches!(op, Op::CrossEntropy { .. })).map(<[f32]>::to_vec),
            report: options.report && matches!(op, Op::CrossEntropy { .. }),
            argmax: options.keep_argmax && op.has_argmax(),
            options: *options,
        })
    }

    /// The plan of cross-entropy `op` over `cols` logits a row that the caller forms (a
    /// linear head's), soft-capped at `softcap` by the caller, with the report's records
    /// where `report`.
    pub(crate) fn of_logits(op: Op, cols: usize, softcap: Option<f32>, report: bool) -> Plan {
        let options = RunOptions { report, ..Default::default() };
        Plan { op, cols, cap: [softcap, None], scale: 1.0, weights: None, report, argmax: false, options }
    }

    /// Whether cross-entropy's rows find the first index of their max: the argmax is kept,
    /// or the report ranks and scores it.
    pub(crate) fn keeps_argmax(&self) -> bool {
        self.argmax || self.report
    }

    /// Whether a row's results include a row of values (softmax) instead of one.
    pub(crate) fn softmax(&self) -> bool {
        self.op.writes_rows()
    }

    /// Runs row `i` of `chunk` into `out` (softmax's row), with `scratch` for widening:
    /// inlined, with everything it calls, into the caller's instruction set.
    #[inline(always)]
    pub(crate) fn row(
        &self,
        chunk: &Loss,
        i: usize,
        scratch: &mut [Vec<f32>; 2],
        out: &mut [f32],
    ) -> std::result::Result<RowOut, Fault> {
        let [sa, sb] = scratch;
        // the first index of the max only where cross-entropy keeps the argmax
        let first = matches!(self.op, Op::CrossEntropy { .. }) && self.keeps_argmax();
        let (a, ka) = widen_max(chunk.inputs.first.data, i, self.cols, self.cap[0], first, sa);
        let (b, kb) = match chunk.inputs.second {
            Some(b) => widen_max(b.data, i, self.cols, self.cap[1], false, sb),
            None => (&[][..], None),
        };
        let label = chunk.inputs.labels.map_or(0, |y| y.get(i));
        row::run(self, [a, b], [ka, kb], label, out)
    }

    /// Writes the gradient of `factor` times row `i`'s value into `g` (see `grad.rs`).
    #[inline(always)]
    pub(crate) fn grad_row(&self, chunk: &Loss, i: usize, scratch: &mut [Vec<f32>; 2], factor: f32, g: &mut [f32]) {
        let [sa, sb] = scratch;
        let a = widen(chunk.inputs.first.data, i, self.cols, self.cap[0], sa);
        let b = match chunk.inputs.second {
            Some(b) => widen(b.data, i, self.cols, self.cap[1], sb),
            None => &[],
        };
        let label = chunk.inputs.labels.map_or(0, |y| y.get(i));
        super::grad::row(self, a, b, label, factor, g)
    }
}

/// [`widen`], and the row's max (and its first index where `first`: [`row::Known`]) where
/// they come with the widening: f16 rows on AVX-512 are widened and their max found in one
/// pass.
#[inline(always)]
fn widen_max<'s>(
    data: Floats<'s>,
    i: usize,
    cols: usize,
    cap: Option<f32>,
    first: bool,
    scratch: &'s mut Vec<f32>,
) -> (&'s [f32], row::Known) {
    #[cfg(target_arch = "x86_64")]
    if let (Floats::F16(v), None) = (data, cap)
        && super::avx512::available()
        && cols < (i32::MAX as usize)
    {
        scratch.resize(cols, 0.0);
        let src = &v[i * cols..(i + 1) * cols];
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        let known = unsafe {
            if first {
                super::avx512::widen_f16_max::<true>(src, scratch)
            } else {
                super::avx512::widen_f16_max::<false>(src, scratch)
            }
        };
        return (scratch, Some(known));
    }
    (widen(data, i, cols, cap, scratch), None)
}

/// Row `i` of `data` as f32: the slice itself where it is f32 and not capped, else widened
/// (exactly) and capped into `scratch`.
#[inline(always)]
fn widen<'s>(data: Floats<'s>, i: usize, cols: usize, cap: Option<f32>, scratch: &'s mut Vec<f32>) -> &'s [f32] {
    let range = i * cols..(i + 1) * cols;
    if let (Floats::F32(v), None) = (data, cap) {
        return &v[range];
    }
    scratch.resize(cols, 0.0);
    match data {
        Floats::F32(v) => scratch.copy_from_slice(&v[range]),
        Floats::F16(v) => widen_f16(&v[range], scratch),
        Floats::Bf16(v) => {
            for (o, b) in scratch.iter_mut().zip(&v[range]) {
                *o = f32::from_bits(u32::from(b.to_bits()) << 16);
            }
        }
    }
    if let Some(c) = cap {
        // Gemma 2's c·tanh(x/c), formed in f64 and stored as f32 as the reference does
        let c = f64::from(c);
        scratch.iter_mut().for_each(|v| *v = (c * (f64::from(*v) / c).tanh()) as f32);
    }
    scratch
}

/// f16 to f32, exactly (a signalling NaN made quiet): AVX-512's 16-lane conversion where
/// the CPU has it, else F16C's or NEON's through `half` (which detects them at run time).
fn widen_f16(src: &[half::f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        unsafe {
            widen_f16_avx512(src, dst)
        };
        return;
    }
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst)
}

/// [`widen_f16`] 16 lanes at a time (`vcvtph2ps`), the tail through `half`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(unsafe_code)]
fn widen_f16_avx512(src: &[half::f16], dst: &mut [f32]) {
    use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm512_cvtph_ps, _mm512_storeu_ps};
    let n = src.len().min(dst.len());
    let whole = n / 16 * 16;
    for (s, d) in src[..whole].chunks_exact(16).zip(dst[..whole].chunks_exact_mut(16)) {
        // the next rows' lines, as the row loops ask for them (every other one twice)
        super::math::prefetch_at(s.as_ptr().wrapping_add(4096).cast());
        // SAFETY: `s` holds 16 f16 (32 bytes) and `d` 16 f32 (64 bytes); unaligned loads
        // and stores; AVX-512F is enabled on this function
        unsafe {
            let h = _mm256_loadu_si256(s.as_ptr().cast::<__m256i>());
            _mm512_storeu_ps(d.as_mut_ptr(), _mm512_cvtph_ps(h));
        }
    }
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(&src[whole..n], &mut dst[whole..n]);
}

#[cfg(test)]
mod tests {
    /// Every f16 bit pattern widens to its value (NaN to a NaN).
    #[test]
    fn every_f16_widens_exactly() {
        let all: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
        let mut scratch = Vec::new();
        let got = super::widen(crate::loss::Floats::F16(&all), 0, all.len(), None, &mut scratch);
        for (h, &v) in all.iter().zip(got) {
            let want = f64::from(h.to_f32());
            assert!(f64::from(v) == want || (v.is_nan() && want.is_nan()), "{:#06x}: {v} {want}", h.to_bits());
        }
    }
}
