//! Analytic gradients in f64: d(reduced loss)/d(logits), `[rows, cols]` row-major, for
//! the operations that have one (the forms the kernels write; the tests also check these
//! against finite differences of the per-row values):
//!
//! - cross-entropy, labels: `(1−s)·w_y·(p − onehot(y)) + (s/K)·(W·p − w)`, `W = Σ_k w_k`,
//!   0 on ignored rows;
//! - cross-entropy with probability targets and KL(P‖Q) with Q as logits: `q·Σ_k P_k − P`;
//! - the Jensen-Shannon divergence with Q as logits: see `jsd::gradient`;
//! - entropy from logits: `−p·(log p + H)`;
//! - BCE from logits: `σ(x) − t`;
//! - distillation (student): `α·τ·(q − p) + (1−α)·(softmax(s) − onehot(y))`, with
//!   `q = softmax(s/τ)`, `p = softmax(t/τ)`.
//!
//! `Reduction::Mean` divides by the mean's denominator (rows, or Σ w_y over the rows not
//! ignored); `Sum` and `None` give the gradient of the sum of the per-row values.

use super::{log_softmax, log_softmax_at, row};
use crate::error::{Error, Result};
use crate::loss::{Batch, CrossEntropyOptions, Dist, Labels, Loss, Reduction};
use crate::op::{Form, Op};

fn probs(x: &[f64]) -> Vec<f64> {
    probs_at(x, 1.0)
}

/// `softmax(x / t)`, NaN where it is undefined.
fn probs_at(x: &[f64], t: f64) -> Vec<f64> {
    log_softmax_at(x, t).map_or_else(|| vec![f64::NAN; x.len()], |l| l.iter().map(|v| v.exp()).collect())
}

fn dist_row(d: &Dist, r: usize) -> Vec<f64> {
    match d {
        Dist::Logits(b) => probs(&row(b, r)),
        Dist::Probs(b) => row(b, r),
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}

/// The gradient of `loss` reduced by `reduction`, or an error for an operation (or input
/// form) without one.
pub fn gradient(loss: &Loss, reduction: Reduction) -> Result<Vec<f64>> {
    loss.validate()?;
    if let Some(capped) = super::softcap::capped(loss) {
        // of the logits as stored: the capped logits' gradient times d cap / dx
        let g = gradient(&capped.loss(loss), reduction)?;
        return Ok(g.iter().zip(super::softcap::chain(loss)).map(|(g, d)| g * d).collect());
    }
    let reference = super::compute(loss, Default::default())?;
    let scale = match reduction {
        Reduction::Mean => 1.0 / reference.denominator(),
        Reduction::Sum | Reduction::None => 1.0,
    };
    let mut g = Vec::new();
    let x = *loss.primary();
    let b = loss.secondary().copied().unwrap_or(x);
    let (p, _) = loss.dists();
    match loss.op {
        Op::CrossEntropy { .. } => {
            let labels = loss.labels().copied().unwrap_or(Labels::I32(&[]));
            cross_entropy(&x, &labels, &loss.ce_options(), &mut g)
        }
        Op::CrossEntropyProbs { z_loss, .. } => {
            for i in 0..x.rows {
                let (xr, t) = (row(&x, i), row(&b, i));
                let q = probs(&xr);
                // d(λ·lse²)/dx_j = 2λ·lse·q_j
                let z = if z_loss > 0.0 { 2.0 * f64::from(z_loss) * super::lse(&xr) } else { 0.0 };
                let mass: f64 = t.iter().sum();
                g.extend(q.iter().zip(&t).map(|(q, t)| q * (mass + z) - t));
            }
        }
        Op::KlDiv { q: Form::Logits, .. } => {
            for i in 0..b.rows {
                let (qr, pr) = (probs(&row(&b, i)), dist_row(&p, i));
                let mass: f64 = pr.iter().sum();
                g.extend(qr.iter().zip(&pr).map(|(q, p)| q * mass - p));
            }
        }
        Op::Jsd { q: Form::Logits, beta, temperature, .. } => {
            let (p, q) = loss.dists();
            super::jsd::gradient(&p, &q.unwrap_or(p), beta, temperature, &mut g)?
        }
        Op::Entropy { p: Form::Logits } => {
            for i in 0..x.rows {
                let h = reference.values[i];
                let lp = log_softmax(&row(&x, i));
                g.extend((0..x.cols).map(|j| match &lp {
                    None => f64::NAN,
                    Some(lp) if lp[j] == f64::NEG_INFINITY => 0.0,
                    Some(lp) => -lp[j].exp() * (lp[j] + h),
                }));
            }
        }
        Op::BinaryCrossEntropy { input: Form::Logits } => {
            for i in 0..x.rows {
                g.extend((0..x.cols).map(|j| sigmoid(x.get(i, j)) - b.get(i, j)));
            }
        }
        Op::Distill { temperature, alpha } => {
            let (student, teacher) = (x, b);
            let labels = loss.labels().copied().unwrap_or(Labels::I32(&[]));
            let (tau, alpha) = (f64::from(temperature), f64::from(alpha));
            for i in 0..student.rows {
                let q = probs_at(&row(&student, i), tau);
                let p = probs_at(&row(&teacher, i), tau);
                let sigma = probs(&row(&student, i));
                let y = labels.get(i);
                g.extend((0..student.cols).map(|j| {
                    let onehot = if j as i64 == y { 1.0 } else { 0.0 };
                    let kl = if alpha > 0.0 { alpha * tau * (q[j] - p[j]) } else { 0.0 };
                    let ce = if alpha < 1.0 { (1.0 - alpha) * (sigma[j] - onehot) } else { 0.0 };
                    kl + ce
                }));
            }
        }
        _ => {
            return Err(Error::Option {
                name: "grad",
                detail: "this operation has no gradient here: cross-entropy, KL and JSD with Q as logits, entropy, \
                         BCE and distillation from logits have one"
                    .into(),
            });
        }
    }
    g.iter_mut().for_each(|v| *v *= scale);
    Ok(g)
}

/// The gradient of the per-row cross-entropy with labels (weighted, smoothed, ignored rows
/// giving 0), appended to `g`.
fn cross_entropy(logits: &Batch, labels: &Labels, options: &CrossEntropyOptions, g: &mut Vec<f64>) {
    for i in 0..logits.rows {
        g.extend(cross_entropy_row(&row(logits, i), labels.get(i), options));
    }
}

/// The gradient of one row's cross-entropy with label `y` with respect to its logits `x`
/// (zeros for an ignored row).
pub(super) fn cross_entropy_row(x: &[f64], y: i64, options: &CrossEntropyOptions) -> Vec<f64> {
    let k = x.len();
    let w = |j: usize| options.class_weights.map_or(1.0, |w| f64::from(w[j]));
    let total: f64 = (0..k).map(w).sum();
    let s = f64::from(options.label_smoothing);
    if Some(y) == options.ignore_index {
        return vec![0.0; k];
    }
    let p = probs(x);
    let wy = w(y as usize);
    // d(λ·lse²)/dx_j = 2λ·lse·p_j
    let z = 2.0 * f64::from(options.z_loss) * if options.z_loss > 0.0 { super::lse(x) } else { 0.0 };
    (0..k)
        .map(|j| {
            let onehot = if j as i64 == y { 1.0 } else { 0.0 };
            (1.0 - s) * wy * (p[j] - onehot) + s / k as f64 * (total * p[j] - w(j)) + z * p[j]
        })
        .collect()
}
