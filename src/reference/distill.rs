//! Distillation: `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·(lse(s) − s_y)`;
//! a term with a zero coefficient (α = 0 or 1) is skipped.
//!
//! KL shrinks as 1/τ² while its terms shrink as 1/τ, so `τ²·KL` from the usual sum loses
//! everything to cancellation as τ grows (and τ² itself overflows f32 past 1.8e19). It is
//! taken in a form of non-negative terms in logit units instead: with `ρ_j = log q_j −
//! log p_j` over the classes with `p_j > 0` and `Σ_j p_j e^ρ_j = 1 − Q_out` (`Q_out` the
//! student's mass on the classes the teacher rules out with `-inf`, 0 where it rules out
//! none),
//!
//!   KL = Σ_j p_j·ψ(ρ_j) + Q_out,   ψ(ρ) = e^ρ − 1 − ρ ≥ 0,   so
//!   τ²·KL = Σ_j p_j·r_j²·g(ρ_j) + τ²·Q_out
//!
//! with `r_j = τ·ρ_j` and `g(ρ) = ψ(ρ)/ρ²`. Without ruled-out classes, as τ → ∞ it tends
//! to half the variance of `t − s` over the classes.

use super::{Reference, check_labels, finite_max, log_softmax, ones, row};
use crate::error::Result;
use crate::loss::{Batch, Labels};

/// `g(ρ) = (e^ρ − 1 − ρ)/ρ²`, by its series near 0 (where the difference cancels).
fn g(rho: f64) -> f64 {
    if rho.abs() < 0.1 {
        // Σ_n ρ^n/(n+2)!, to n = 9: the rest is under 1e-19 of the sum
        (0..10).rev().fold(0.0, |acc, n| acc * rho + 1.0 / factorial(n + 2))
    } else {
        (rho.exp_m1() - rho) / (rho * rho)
    }
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

/// `τ²·KL(softmax(t/τ) ‖ softmax(s/τ))` of one row, or `None` where either side's
/// softmax is undefined.
fn scaled_kl(t: &[f64], s: &[f64], tau: f64) -> Option<f64> {
    let (mt, ms) = (finite_max(t)?, finite_max(s)?);
    // a_j = (t_j − m_t)/τ, log p_j = a_j − L; b_j = (s_j − m_s)/τ
    let a: Vec<f64> = t.iter().map(|v| (v - mt) / tau).collect();
    let l = a.iter().map(|v| v.exp()).sum::<f64>().ln();
    // the classes with p_j > 0: (log p_j, b_j − L, d_j), with the raw difference
    // d_j = (s_j − m_s) − (t_j − m_t) = τ·(b_j − a_j)
    let terms: Vec<(f64, f64, f64)> = (0..t.len())
        .filter(|&j| t[j] > f64::NEG_INFINITY)
        .map(|j| (a[j] - l, (s[j] - ms) / tau - l, (s[j] - ms) - (t[j] - mt)))
        .collect();
    if terms.iter().any(|&(_, _, d)| d == f64::NEG_INFINITY) {
        return Some(f64::INFINITY); // p_j > 0 where q_j = 0
    }
    // ρ_j = d_j/τ − c with c = log Σ_k e^(b_k − L) over every class k: the student's
    // softmax is over all of them, those the teacher rules out (p_k = 0) included. Over the
    // classes with p_j > 0, e^(b_j − L) = p_j·e^(d_j/τ), so e^c − 1 = Σ_j p_j·expm1(d_j/τ) +
    // Σ_(p_k = 0) e^(b_k − L), taken by log1p
    let kept: f64 = terms
        .iter()
        .map(|&(lp, bl, d)| if d / tau > 1.0 { bl.exp() - lp.exp() } else { lp.exp() * (d / tau).exp_m1() })
        .sum();
    let ruled_out: Vec<f64> =
        (0..t.len()).filter(|&j| t[j] == f64::NEG_INFINITY).map(|j| (s[j] - ms) / tau - l).collect();
    let c = (kept + ruled_out.iter().map(|bl| bl.exp()).sum::<f64>()).ln_1p();
    // Σ_(p_j > 0) p_j·e^ρ_j = 1 − Q_out, the student's mass on the classes ruled out, so
    // KL = −Σ_j p_j·ρ_j = Σ_j p_j·ψ(ρ_j) + Q_out
    let q_out: f64 = ruled_out.iter().map(|bl| (bl - c).exp()).sum::<f64>();
    let tau_c = tau * c;
    let scaled = terms.iter().map(|&(lp, bl, d)| {
        let r = d - tau_c;
        let rho = r / tau;
        if rho.abs() <= 1.0 {
            lp.exp() * r * r * g(rho)
        } else {
            // p·ψ(ρ) = q_j − p·(1 + ρ), without e^ρ alone (it overflows where p underflows)
            tau * tau * ((bl - c).exp() - lp.exp() * (1.0 + rho))
        }
    });
    Some(scaled.sum::<f64>() + tau * tau * q_out)
}

/// The distillation loss per row; labels outside `[0, cols)` are errors.
pub(super) fn distill(
    student: &Batch,
    teacher: &Batch,
    labels: &Labels,
    temperature: f32,
    alpha: f32,
) -> Result<Reference> {
    check_labels(labels, student.cols, None)?;
    let (tau, alpha) = (f64::from(temperature), f64::from(alpha));
    let values = (0..student.rows)
        .map(|r| {
            let s = row(student, r);
            let mut v = 0.0;
            if alpha > 0.0 {
                v += scaled_kl(&row(teacher, r), &s, tau).map_or(f64::NAN, |kl| alpha * kl);
            }
            if alpha < 1.0 {
                v += log_softmax(&s).map_or(f64::NAN, |lp| -(1.0 - alpha) * lp[labels.get(r) as usize]);
            }
            v
        })
        .collect();
    Ok(Reference { values, weights: ones(student.rows), argmax: None })
}
