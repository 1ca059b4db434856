//! Softmax cross-entropy, PyTorch's `F.cross_entropy(reduction='none')`:
//!
//! labels: `(1−s)·w_y·(lse − x_y) + (s/K)·Σ_j w_j·(lse − x_j) + λ·lse²` (the z-loss, not
//! weighted), weight `w_y`, 0 if ignored;
//! probability targets: `−Σ_j P_j·(x_j − lse) + λ·lse²`.
//!
//! A term with a zero coefficient contributes 0; a positive one on a `-inf` logit is `+inf`.
//! `lse − x_j` is taken as `−log_softmax(x)_j`, the max subtracted first (see
//! `reference::log_softmax`).

use super::row_max::max_arg;
use super::{Reference, check_labels, check_probs, log_softmax, lse, ones, row};
use crate::error::Result;
use crate::loss::{Batch, CrossEntropyOptions, Labels};

/// `c · (lse − x_j) = −c · log_softmax_j`, with `c = 0` giving 0 and `x_j = -inf` `±inf`.
fn term(c: f64, log_softmax: f64) -> f64 {
    if c == 0.0 { 0.0 } else { -c * log_softmax }
}

/// The z-loss term `λ·lse(x)²` of a row whose log-softmax is defined (0 without a z-loss).
pub(super) fn z_term(x: &[f64], z_loss: f32) -> f64 {
    if z_loss > 0.0 { f64::from(z_loss) * lse(x).powi(2) } else { 0.0 }
}

/// The entropy `−Σ_j p_j·log p_j` of `p = softmax(x)` (`torch.special.entr(p).sum()`): a
/// `-inf` logit (`p_j = 0`) contributes 0; NaN where the log-softmax is not defined (NaN or
/// `+inf` in the row, or every entry `-inf`).
pub(super) fn entropy(x: &[f64]) -> f64 {
    let Some(lp) = log_softmax(x) else { return f64::NAN };
    -lp.iter().filter(|v| **v > f64::NEG_INFINITY).map(|&v| v.exp() * v).sum::<f64>()
}

/// Cross-entropy with labels per row; labels outside `[0, cols)` that are not ignored are errors.
pub(super) fn softmax_xent(logits: &Batch, labels: &Labels, options: &CrossEntropyOptions) -> Result<Reference> {
    softmax_xent_rows((logits.rows, logits.cols), |i| row(logits, i), labels, options)
}

/// [`softmax_xent`] over `[rows, k]` logits given a row at a time by `row_of` (the linear
/// head's, formed in f64).
pub(super) fn softmax_xent_rows(
    (rows, k): (usize, usize),
    row_of: impl Fn(usize) -> Vec<f64>,
    labels: &Labels,
    options: &CrossEntropyOptions,
) -> Result<Reference> {
    check_labels(labels, k, options.ignore_index)?;
    let w = |j: usize| options.class_weights.map_or(1.0, |w| f64::from(w[j]));
    let s = f64::from(options.label_smoothing);
    let mut r = Reference { values: vec![0.0; rows], weights: vec![0.0; rows], argmax: Some(vec![0; rows]) };
    for i in 0..rows {
        let x = row_of(i);
        if let Some(a) = r.argmax.as_mut() {
            a[i] = max_arg(&x).1 as u32;
        }
        let y = labels.get(i);
        if Some(y) == options.ignore_index {
            continue;
        }
        let y = y as usize;
        r.weights[i] = w(y);
        let Some(lp) = log_softmax(&x) else {
            r.values[i] = f64::NAN;
            continue;
        };
        let mut loss = term((1.0 - s) * w(y), lp[y]);
        if s > 0.0 {
            loss += s / k as f64 * (0..k).map(|j| term(w(j), lp[j])).sum::<f64>();
        }
        r.values[i] = loss + z_term(&x, options.z_loss);
    }
    Ok(r)
}

/// Cross-entropy with probability targets per row; negative, NaN or infinite targets are errors.
pub(super) fn softmax_xent_probs(logits: &Batch, target: &Batch, z_loss: f32) -> Result<Reference> {
    check_probs(target)?;
    let values = (0..logits.rows)
        .map(|i| {
            let x = row(logits, i);
            match log_softmax(&x) {
                Some(lp) => (0..logits.cols).map(|j| term(target.get(i, j), lp[j])).sum::<f64>() + z_term(&x, z_loss),
                None => f64::NAN,
            }
        })
        .collect();
    Ok(Reference { values, weights: ones(logits.rows), argmax: None })
}
