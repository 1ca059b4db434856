//! `lse_i = m + ln Σ_j exp(x_ij − m)`, `m = max_j x_ij`.

use super::{Reference, lse, ones, row};
use crate::loss::Batch;

/// Log-sum-exp per row.
pub(super) fn logsumexp(logits: &Batch) -> Reference {
    let values = (0..logits.rows).map(|r| lse(&row(logits, r))).collect();
    Reference { values, weights: ones(logits.rows), argmax: None }
}
