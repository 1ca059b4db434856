//! The engine's fused gradients: d(`factor` · Σ_rows value)/d(input) for the operations
//! that have one ([`Op::grad_of`]), one row at a time in f32 over [`super::math`]'s lanes,
//! in the forms and under the special-value rules the kernels write them
//! (shaders/softmax_xent.wgsl, divergence.wgsl, jsd.wgsl, binary_xent.wgsl, distill.wgsl):
//! a NaN row's gradient is NaN, an ignored row's 0, a masked class's 0; soft-capped logits
//! take the chain factor `1 − (z/c)²` of their capped value `z`. JSD's gradient is formed
//! in f64, as its value is (`wide.rs`).

use rayon::prelude::*;

use super::Engine;
use super::math::{Stats, exp, stats, sums};
use super::plan::Plan;
use crate::error::{Error, Result};
use crate::loss::{Loss, Reduction};
use crate::op::{Form, Op};
use crate::stream::{Output, RunOptions};

/// Elements of one task of the gradient pass.
const TASK_ELEMENTS: usize = 1 << 15;

impl Engine {
    /// The fused gradient of `scale` times `loss` reduced by `reduction` (the mean divides
    /// by its denominator; `Sum` and `None` give the gradient of the sum of the per-row
    /// values), written into `grad` (`[rows, cols]` of the differentiated input,
    /// [`Op::grad_of`]) as the GPU kernels write it; returns the forward pass's reductions.
    /// An operation without a gradient, or a `grad` of another length, is an error.
    pub fn gradient(&self, loss: &Loss, reduction: Reduction, scale: f32, grad: &mut [f32]) -> Result<Output> {
        if !loss.op.has_gradient() {
            return Err(Error::Option { name: "op", detail: format!("{} writes no gradient", loss.op.name()) });
        }
        let plan = Plan::new(loss, &RunOptions::default())?;
        let (rows, cols) = (loss.primary().rows, plan.cols);
        if grad.len() != rows * cols {
            return Err(Error::Shape {
                what: "gradient",
                detail: format!("of {} elements does not hold [{rows}, {cols}]", grad.len()),
            });
        }
        // the forward pass checks every row and gives the mean's denominator
        let out = self.compute(loss, &RunOptions::default())?;
        let per_row = match reduction {
            Reduction::Mean => f64::from(scale) / out.denominator,
            Reduction::Sum | Reduction::None => f64::from(scale),
        };
        let factor = (per_row * f64::from(plan.scale)) as f32;
        let task = (TASK_ELEMENTS / cols).max(1);
        let arch = self.arch;
        self.install(|| {
            grad.par_chunks_mut(task * cols).enumerate().for_each(|(k, g)| {
                arch.dispatch(GradTask { plan: &plan, chunk: loss, first: k * task, factor, grad: g })
            })
        });
        Ok(out)
    }
}

/// Rows of the gradient pass that one thread runs, dispatched by pulp (see `stream.rs`).
struct GradTask<'t, 'a> {
    plan: &'t Plan,
    chunk: &'t Loss<'a>,
    first: usize,
    factor: f32,
    grad: &'t mut [f32],
}

impl pulp::WithSimd for GradTask<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let mut scratch = [Vec::new(), Vec::new()];
        for (i, g) in self.grad.chunks_mut(self.plan.cols).enumerate() {
            self.plan.grad_row(self.chunk, self.first + i, &mut scratch, self.factor, g);
        }
    }
}

/// `1 − (z/c)²`, the soft-capping's derivative at the capped value `z` (1 uncapped).
#[inline(always)]
fn chain(z: f32, cap: Option<f32>) -> f32 {
    match cap {
        Some(c) => {
            let r = z / c;
            1.0 - r * r
        }
        None => 1.0,
    }
}

/// `softmax(x)_j` from the row's stats: 0 on a masked class.
#[inline(always)]
fn prob(st: &Stats, v: f32) -> f32 {
    exp((v - st.m) - st.log_s)
}

/// `softmax(x/t)_j` from stats at temperature `t`.
#[inline(always)]
fn prob_at(st: &Stats, v: f32, t: f32) -> f32 {
    if t == 1.0 { prob(st, v) } else { exp((v - st.m) / t - st.log_s) }
}

/// Writes the gradient of `factor` times row's value into `g`: `a` and `b` the row's float
/// inputs (widened and capped), `label` its label (checked by the forward pass).
#[inline(always)]
pub(crate) fn row(plan: &Plan, a: &[f32], b: &[f32], label: i64, factor: f32, g: &mut [f32]) {
    let [cap_a, cap_b] = plan.cap;
    match plan.op {
        Op::CrossEntropy { ignore_index, label_smoothing, z_loss, .. } => {
            if Some(label) == ignore_index {
                g.fill(0.0);
                return;
            }
            let Some(st) = stats(a, 1.0) else { return g.fill(f32::NAN) };
            let y = label as usize;
            let w = |j: usize| plan.weights.as_ref().map_or(1.0, |w| w[j]);
            let w_total = match &plan.weights {
                Some(wt) => sums(wt, |v| [v])[0],
                None => a.len() as f32,
            };
            let c_target = factor * (1.0 - label_smoothing) * w(y);
            let c_smooth = factor * label_smoothing / a.len() as f32;
            let c_z = factor * 2.0 * z_loss * (st.m + st.log_s);
            for (j, (o, &x)) in g.iter_mut().zip(a).enumerate() {
                let p = prob(&st, x);
                let mut v = c_smooth * (w_total * p - w(j));
                if z_loss > 0.0 {
                    v += c_z * p;
                }
                v += c_target * if j == y { p - 1.0 } else { p };
                *o = v * chain(x, cap_a);
            }
        }
        Op::CrossEntropyProbs { z_loss, .. } => {
            // of the logits `a`, against the targets `b`
            let Some(st) = stats(a, 1.0) else { return g.fill(f32::NAN) };
            let [total] = sums(b, |p| [p]);
            let z = if z_loss > 0.0 { 2.0 * z_loss * (st.m + st.log_s) } else { 0.0 };
            for ((o, &x), &p) in g.iter_mut().zip(a).zip(b) {
                *o = factor * (prob(&st, x) * (total + z) - p) * chain(x, cap_a);
            }
        }
        Op::KlDiv { p, q: Form::Logits } => {
            // of Q's logits `b`: q·Σ P − P
            let Some(sq) = stats(b, 1.0) else { return g.fill(f32::NAN) };
            let sp = match p {
                Form::Logits => match stats(a, 1.0) {
                    Some(sp) => Some(sp),
                    None => return g.fill(f32::NAN),
                },
                Form::Probs => None,
            };
            let pj = |v: f32| sp.as_ref().map_or(v, |sp| prob(sp, v));
            let [total] = sums(a, |v| [pj(v)]);
            for ((o, &x), &y) in g.iter_mut().zip(a).zip(b) {
                *o = factor * (prob(&sq, y) * total - pj(x)) * chain(y, cap_b);
            }
        }
        Op::Jsd { p, q: Form::Logits, beta, temperature } => {
            super::wide::jsd_grad(p, a, b, beta, temperature, factor, g);
            if cap_b.is_some() {
                g.iter_mut().zip(b).for_each(|(o, &y)| *o *= chain(y, cap_b));
            }
        }
        Op::Entropy { p: Form::Logits } => {
            let Some(st) = stats(a, 1.0) else { return g.fill(f32::NAN) };
            let [_, t] = sums(a, |v| {
                let e = exp(v - st.m);
                [e, if e == 0.0 { 0.0 } else { e * (v - st.m) }]
            });
            let h = st.log_s - t / st.s;
            for (o, &x) in g.iter_mut().zip(a) {
                let log_p = (x - st.m) - st.log_s;
                let p = exp(log_p);
                *o = if p == 0.0 { 0.0 } else { -factor * p * (log_p + h) * chain(x, cap_a) };
            }
        }
        Op::BinaryCrossEntropy { input: Form::Logits } => {
            for ((o, &x), &t) in g.iter_mut().zip(a).zip(b) {
                *o = factor * (sigmoid(x) - t);
            }
        }
        Op::Distill { temperature, alpha } => distill(a, b, label as usize, temperature, alpha, factor, cap_a, g),
        _ => g.fill(f32::NAN),
    }
}

/// `σ(x)` without overflow: `1/(1 + e^−x)` or `e^x/(1 + e^x)`; NaN stays NaN.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + exp(-x))
    } else if x < 0.0 {
        let e = exp(x);
        e / (1.0 + e)
    } else {
        x
    }
}

/// Distillation's gradient of the student `s`: `α·τ·(softmax(s/τ) − softmax(t/τ)) +
/// (1−α)·(softmax(s) − onehot(y))`, NaN where any of the three is undefined.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn distill(s: &[f32], t: &[f32], y: usize, tau: f32, alpha: f32, factor: f32, cap: Option<f32>, g: &mut [f32]) {
    let (st_s, st_t, st_ce) = (stats(s, tau), stats(t, tau), stats(s, 1.0));
    let (Some(st_s), Some(st_t), Some(st_ce)) = (st_s, st_t, st_ce) else { return g.fill(f32::NAN) };
    let (c_kl, c_ce) = (factor * alpha * tau, factor * (1.0 - alpha));
    for (j, (o, (&sj, &tj))) in g.iter_mut().zip(s.iter().zip(t)).enumerate() {
        let mut v = 0.0;
        if alpha > 0.0 {
            v = c_kl * (prob_at(&st_s, sj, tau) - prob_at(&st_t, tj, tau));
        }
        if alpha < 1.0 {
            let sigma = prob(&st_ce, sj);
            v += c_ce * if j == y { sigma - 1.0 } else { sigma };
        }
        *o = v * chain(sj, cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cross-entropy's gradient of a row sums to 0 (softmax minus a one-hot) and is
    /// softmax minus the one-hot, against the formula in f64.
    #[test]
    fn cross_entropy_row_is_softmax_minus_onehot() {
        let x = [0.5f32, -1.0, 2.0, 0.0, f32::NEG_INFINITY];
        let st = stats(&x, 1.0).unwrap();
        let s: f64 = x.iter().map(|&v| (f64::from(v) - 2.0).exp()).sum();
        for (j, &v) in x.iter().enumerate() {
            let want = (f64::from(v) - 2.0).exp() / s - if j == 2 { 1.0 } else { 0.0 };
            let got = f64::from(prob(&st, v)) - if j == 2 { 1.0 } else { 0.0 };
            assert!((got - want).abs() < 1e-6, "{j}: {got} {want}");
        }
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(f32::NAN).is_nan());
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
    }
}
