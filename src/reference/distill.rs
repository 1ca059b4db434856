//! Distillation: `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·(lse(s) − s_y)`;
//! a term with a zero coefficient (α = 0 or 1) is skipped.

use super::{Reference, check_labels, log_softmax, lse, ones, row};
use crate::error::Result;
use crate::loss::{Batch, Labels};

fn kl_row(lp: &[f64], lq: &[f64]) -> f64 {
    lp.iter()
        .zip(lq)
        .map(|(&a, &b)| {
            if a == f64::NEG_INFINITY {
                0.0
            } else if b == f64::NEG_INFINITY {
                f64::INFINITY
            } else {
                a.exp() * (a - b)
            }
        })
        .sum()
}

/// The distillation loss per row; labels outside `[0, cols)` are errors.
pub fn distill(student: &Batch, teacher: &Batch, labels: &Labels, temperature: f32, alpha: f32) -> Result<Reference> {
    check_labels(labels, student.cols, None)?;
    let (tau, alpha) = (f64::from(temperature), f64::from(alpha));
    let values = (0..student.rows)
        .map(|r| {
            let mut v = 0.0;
            if alpha > 0.0 {
                let lp = log_softmax(&row(teacher, r, tau));
                let lq = log_softmax(&row(student, r, tau));
                v += match (lp, lq) {
                    (Some(lp), Some(lq)) => alpha * tau * tau * kl_row(&lp, &lq),
                    _ => f64::NAN,
                };
            }
            if alpha < 1.0 {
                let s = row(student, r, 1.0);
                let (l, sy) = (lse(&s), s[labels.get(r) as usize]);
                v += if !l.is_finite() { f64::NAN } else { (1.0 - alpha) * (l - sy) };
            }
            v
        })
        .collect();
    Ok(Reference { values, weights: ones(student.rows), argmax: None })
}
