//! The generalized Jensen-Shannon divergence, plainly: `M = β·P + (1−β)·Q` formed in f64,
//! then `β·KL(P‖M) + (1−β)·KL(Q‖M)`; `KL(P‖Q)` at `β = 0` and `KL(Q‖P)` at `β = 1`
//! (Liger-Kernel's conventions). Inputs given as logits are read as `softmax(x/τ)`.

use super::{Reference, check_probs, log_softmax_at, ones, row};
use crate::error::Result;
use crate::loss::Dist;

/// Log-probabilities of row `r` (`-inf` for zeros), or `None` for a NaN row.
fn log_probs(d: &Dist, r: usize, temperature: f64) -> Option<Vec<f64>> {
    match d {
        Dist::Logits(b) => log_softmax_at(&row(b, r), temperature),
        Dist::Probs(b) => Some(row(b, r).iter().map(|p| p.ln()).collect()),
    }
}

/// One row's divergence and what its gradient needs.
struct Row {
    value: f64,
    /// `Σ_j q_j (log q_j − log m_j)`.
    b: f64,
    log_m: Vec<f64>,
    p: Vec<f64>,
    q: Vec<f64>,
}

fn jsd_row(lp: &[f64], lq: &[f64], beta: f64) -> Row {
    let p: Vec<f64> = lp.iter().map(|v| v.exp()).collect();
    let q: Vec<f64> = lq.iter().map(|v| v.exp()).collect();
    let log_m: Vec<f64> = if beta == 0.0 {
        lq.to_vec()
    } else if beta == 1.0 {
        lp.to_vec()
    } else {
        p.iter().zip(&q).map(|(p, q)| (beta * p + (1.0 - beta) * q).ln()).collect()
    };
    // KL(W‖M): terms with w_j = 0 are 0, w_j > 0 with m_j = 0 is +inf
    let kl = |w: &[f64], lw: &[f64]| -> f64 {
        (0..w.len())
            .map(|j| match (w[j], log_m[j]) {
                (0.0, _) => 0.0,
                (_, f64::NEG_INFINITY) => f64::INFINITY,
                (wj, lm) => wj * (lw[j] - lm),
            })
            .sum()
    };
    let a = if beta < 1.0 { kl(&p, lp) } else { 0.0 };
    let b = if beta > 0.0 { kl(&q, lq) } else { 0.0 };
    let value = match beta {
        0.0 => a,
        1.0 => b,
        _ => beta * a + (1.0 - beta) * b,
    };
    Row { value, b, log_m, p, q }
}

fn rows(p: &Dist, q: &Dist, beta: f32, temperature: f32) -> Result<Vec<Option<Row>>> {
    for d in [p, q] {
        if let Dist::Probs(b) = d {
            check_probs(b)?;
        }
    }
    let t = f64::from(temperature);
    Ok((0..p.batch().rows)
        .map(|r| Some(jsd_row(&log_probs(p, r, t)?, &log_probs(q, r, t)?, f64::from(beta))))
        .collect())
}

/// `JSD_β(P‖Q)` per row; negative, NaN or infinite probabilities are errors.
pub(super) fn jsd(p: &Dist, q: &Dist, beta: f32, temperature: f32) -> Result<Reference> {
    let values: Vec<f64> =
        rows(p, q, beta, temperature)?.iter().map(|r| r.as_ref().map_or(f64::NAN, |r| r.value)).collect();
    Ok(Reference { weights: ones(values.len()), values, argmax: None })
}

/// The gradient of each row's value with respect to Q's logits, appended to `g`:
/// `(q_j·Σ_k p_k − p_j)/τ` at `β = 0`, else `w·q_j·(log q_j − log m_j − B)/τ` with
/// `w = 1 − β` (1 at `β = 1`) and `B = Σ_k q_k (log q_k − log m_k)`; NaN on a NaN row
/// and, at `β > 0`, on a row whose divergence is infinite.
pub(super) fn gradient(p: &Dist, q: &Dist, beta: f32, temperature: f32, g: &mut Vec<f64>) -> Result<()> {
    let cols = q.batch().cols;
    let (beta, k) = (f64::from(beta), 1.0 / f64::from(temperature));
    let w = if beta == 1.0 { 1.0 } else { 1.0 - beta };
    for r in rows(p, q, beta as f32, temperature)? {
        match r {
            Some(r) if beta == 0.0 => {
                let mass: f64 = r.p.iter().sum();
                g.extend((0..cols).map(|j| k * (r.q[j] * mass - r.p[j])));
            }
            Some(r) if r.value.is_finite() => g.extend((0..cols).map(|j| match r.q[j] {
                0.0 => 0.0,
                qj => k * w * qj * (qj.ln() - r.log_m[j] - r.b),
            })),
            _ => g.extend(std::iter::repeat_n(f64::NAN, cols)),
        }
    }
    Ok(())
}
