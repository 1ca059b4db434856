//! `−½ Σ_j (1 + lv_j − μ_j² − exp(lv_j))`: the KL of N(μ, exp(lv)) from N(0, 1).
//! Any NaN makes the row NaN; an infinite μ or log-variance makes it `+inf`.

use super::{Reference, ones};
use crate::loss::Batch;

fn element(mu: f64, lv: f64) -> f64 {
    if mu.is_nan() || lv.is_nan() {
        f64::NAN
    } else if !mu.is_finite() || !lv.is_finite() {
        f64::INFINITY
    } else {
        -0.5 * (1.0 + lv - mu * mu - lv.exp())
    }
}

/// The Gaussian KL per row.
pub(super) fn gaussian_kl(mean: &Batch, logvar: &Batch) -> Reference {
    let values =
        (0..mean.rows).map(|r| (0..mean.cols).map(|j| element(mean.get(r, j), logvar.get(r, j))).sum()).collect();
    Reference { values, weights: ones(mean.rows), argmax: None }
}
