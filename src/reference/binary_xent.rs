//! Binary cross-entropy summed over the row's columns.
//!
//! probabilities: `−(t·max(ln x, −100) + (1−t)·max(ln(1−x), −100))` (PyTorch's clamp);
//! logits: `max(x, 0) − x·t + ln(1 + exp(−|x|))`; a `-inf` logit is probability 0.

use super::{Reference, ones, outside_unit};
use crate::error::{Error, Result};
use crate::loss::{Batch, Dist};

fn clamped_ln(v: f64) -> f64 {
    v.ln().max(-100.0)
}

fn element(x: f64, t: f64, logits: bool) -> f64 {
    if !logits {
        return -(t * clamped_ln(x) + (1.0 - t) * clamped_ln(1.0 - x));
    }
    if x.is_nan() || x == f64::INFINITY {
        f64::NAN
    } else if x == f64::NEG_INFINITY {
        if t > 0.0 { f64::INFINITY } else { 0.0 }
    } else {
        x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
    }
}

/// Binary cross-entropy per row; targets and probabilities outside [0, 1] are errors.
pub(super) fn binary_xent(input: &Dist, target: &Batch) -> Result<Reference> {
    let x = input.batch();
    let logits = input.is_logits();
    for r in 0..x.rows {
        for j in 0..x.cols {
            let t = target.get(r, j);
            if let Some(why) = outside_unit(t) {
                return Err(Error::Value { row: r as u64, detail: format!("target {t} at column {j} {why}") });
            }
            let v = x.get(r, j);
            if let Some(why) = outside_unit(v).filter(|_| !logits) {
                return Err(Error::Value { row: r as u64, detail: format!("probability {v} at column {j} {why}") });
            }
        }
    }
    let values =
        (0..x.rows).map(|r| (0..x.cols).map(|j| element(x.get(r, j), target.get(r, j), logits)).sum()).collect();
    Ok(Reference { values, weights: ones(x.rows), argmax: None })
}
