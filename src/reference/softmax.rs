//! `softmax(x/T)_j = exp(x_j/T − lse(x/T))`; log-softmax is `x_j/T − lse(x/T)`, taken as
//! `(x_j − m)/T − log Σ_k exp((x_k − m)/T)` with `m` the row's max. A row with NaN or
//! `+inf`, or only `-inf`, is NaN in every column.

use super::{Reference, log_softmax_at, ones, row};
use crate::loss::Batch;

/// Softmax (or log-softmax) of `x / temperature`, `rows * cols` values.
pub(super) fn softmax(logits: &Batch, temperature: f32, log: bool) -> Reference {
    let mut values = Vec::with_capacity(logits.rows * logits.cols);
    for r in 0..logits.rows {
        match log_softmax_at(&row(logits, r), f64::from(temperature)) {
            Some(lp) => values.extend(lp.iter().map(|&v| if log { v } else { v.exp() })),
            None => values.extend(std::iter::repeat_n(f64::NAN, logits.cols)),
        }
    }
    Reference { values, weights: ones(logits.rows), argmax: None }
}
