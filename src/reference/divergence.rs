//! `KL(P‖Q) = Σ_j p_j (log p_j − log q_j)` and `H(P) = −Σ_j p_j log p_j`, with P and Q
//! given as probabilities or logits (`log p_j = x_j − lse(x)`). `p_j = 0` contributes
//! 0; `p_j > 0` with `q_j = 0` is `+inf`.

use super::{Reference, check_probs, log_softmax, ones, row};
use crate::error::Result;
use crate::loss::Dist;

/// Log-probabilities of row `r` (`-inf` for zeros), or `None` for a NaN row.
fn log_probs(d: &Dist, r: usize) -> Option<Vec<f64>> {
    match d {
        Dist::Logits(b) => log_softmax(&row(b, r)),
        Dist::Probs(b) => Some(row(b, r).iter().map(|p| p.ln()).collect()),
    }
}

fn check(d: &Dist) -> Result<()> {
    match d {
        Dist::Probs(b) => check_probs(b),
        Dist::Logits(_) => Ok(()),
    }
}

fn per_row(rows: usize, f: impl Fn(usize) -> f64) -> Reference {
    Reference { values: (0..rows).map(f).collect(), weights: ones(rows), argmax: None }
}

/// `KL(P‖Q)` per row; negative, NaN or infinite probabilities are errors.
pub(super) fn kl_div(p: &Dist, q: &Dist) -> Result<Reference> {
    check(p)?;
    check(q)?;
    Ok(per_row(p.batch().rows, |r| {
        let (Some(lp), Some(lq)) = (log_probs(p, r), log_probs(q, r)) else { return f64::NAN };
        lp.iter()
            .zip(&lq)
            .map(|(&a, &b)| {
                let pj = a.exp();
                if pj == 0.0 {
                    0.0
                } else if b == f64::NEG_INFINITY {
                    f64::INFINITY
                } else {
                    pj * (a - b)
                }
            })
            .sum()
    }))
}

/// `H(P)` per row; negative, NaN or infinite probabilities are errors.
pub(super) fn entropy(p: &Dist) -> Result<Reference> {
    check(p)?;
    Ok(per_row(p.batch().rows, |r| {
        let Some(lp) = log_probs(p, r) else { return f64::NAN };
        -lp.iter().map(|&a| if a == f64::NEG_INFINITY { 0.0 } else { a.exp() * a }).sum::<f64>()
    }))
}
