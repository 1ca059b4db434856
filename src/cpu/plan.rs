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
        let a = widen(chunk.inputs.first.data, i, self.cols, self.cap[0], sa);
        let b = match chunk.inputs.second {
            Some(b) => widen(b.data, i, self.cols, self.cap[1], sb),
            None => &[],
        };
        let label = chunk.inputs.labels.map_or(0, |y| y.get(i));
        row::run(self, a, b, label, out)
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
        Floats::F16(v) => {
            for (o, h) in scratch.iter_mut().zip(&v[range]) {
                *o = f16_to_f32(h.to_bits());
            }
        }
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

/// An f16's value as f32, exactly (zeros, subnormals, normals, infinities, NaN with its
/// payload): integer operations and one conversion, which the compiler vectorises for the
/// caller's instruction set.
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let v = if em >= 0x7c00 {
        // infinities and NaN: the exponent all ones
        f32::from_bits((em << 13) | 0x7f80_0000)
    } else if em < 0x0400 {
        // zeros and subnormals: em·2^-24
        em as f32 * 5.960_464_5e-8
    } else {
        // normals: the exponent rebiased from 15 to 127
        f32::from_bits((em << 13) + (112 << 23))
    };
    f32::from_bits(v.to_bits() | sign)
}

#[cfg(test)]
mod tests {
    /// Every f16 bit pattern widens as `half` widens it.
    #[test]
    fn every_f16_widens_exactly() {
        for bits in 0..=u16::MAX {
            let (got, want) = (super::f16_to_f32(bits), half::f16::from_bits(bits).to_f32());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}: {got} {want}");
        }
    }
}
