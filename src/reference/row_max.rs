//! Row max and argmax: NaN beats everything, then `+inf`; ties go to the first index;
//! an all-`-inf` row gives `-inf` at index 0.

use super::{Reference, ones};
use crate::loss::Batch;

/// Row max and argmax.
pub(super) fn row_max(logits: &Batch) -> Reference {
    let mut values = Vec::with_capacity(logits.rows);
    let mut argmax = Vec::with_capacity(logits.rows);
    for r in 0..logits.rows {
        let (v, i) = max_arg(&super::row(logits, r));
        values.push(v);
        argmax.push(i as u32);
    }
    Reference { values, weights: ones(logits.rows), argmax: Some(argmax) }
}

/// The max of a row and the first index holding it.
pub(super) fn max_arg(x: &[f64]) -> (f64, usize) {
    if let Some(i) = x.iter().position(|v| v.is_nan()) {
        return (f64::NAN, i);
    }
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    (x[best], best)
}
