//! The engine's rows of the generalized Jensen-Shannon divergence and of distillation,
//! accumulated in f64: both take the difference of nearly equal sums (JSD's mixture, and
//! `τ²·KL` at large temperatures, where the one-pass KL cancels), which f32 keeps only
//! with a second pass of its own. Streaming passes over the row, no per-row allocation.

use super::row::Fault;
use crate::op::Form;

/// The max of a row and whether its log-softmax is defined (no NaN, no `+inf`, not all
/// `-inf`).
#[inline(always)]
fn finite_max(x: &[f32]) -> Option<f64> {
    let mut m = f64::NEG_INFINITY;
    for &v in x {
        if v.is_nan() || v == f32::INFINITY {
            return None;
        }
        m = m.max(f64::from(v));
    }
    (m > f64::NEG_INFINITY).then_some(m)
}

/// `(m, ln Σ_j e^((x_j − m)/t))` of a logits row, where defined.
#[inline(always)]
fn log_sum(x: &[f32], t: f64) -> Option<(f64, f64)> {
    let m = finite_max(x)?;
    Some((m, x.iter().map(|&v| ((f64::from(v) - m) / t).exp()).sum::<f64>().ln()))
}

/// A distribution's log-probability of element `v`: `(v − m)/t − L` from logits, `ln v`
/// from probabilities.
#[derive(Clone, Copy)]
enum Logs {
    Logits { m: f64, t: f64, l: f64 },
    Probs,
}

impl Logs {
    fn of(form: Form, x: &[f32], t: f64) -> Result<Option<Logs>, Fault> {
        Ok(match form {
            Form::Logits => log_sum(x, t).map(|(m, l)| Logs::Logits { m, t, l }),
            Form::Probs if x.iter().any(|p| !(0.0..f32::INFINITY).contains(p)) => return Err(Fault::Value),
            Form::Probs => Some(Logs::Probs),
        })
    }

    fn at(self, v: f32) -> f64 {
        match self {
            Logs::Logits { m, t, l } => (f64::from(v) - m) / t - l,
            Logs::Probs => f64::from(v).ln(),
        }
    }
}

/// `JSD_β(P‖Q) = β·KL(P‖M) + (1−β)·KL(Q‖M)`, `M = β·P + (1−β)·Q`; `KL(P‖Q)` at `β = 0`,
/// `KL(Q‖P)` at `β = 1`. A term of weight 0 adds 0; weight on `m_j = 0` is `+inf`.
#[inline(always)]
pub(crate) fn jsd(p: Form, q: Form, a: &[f32], b: &[f32], beta: f32, temperature: f32) -> Result<f32, Fault> {
    let t = f64::from(temperature);
    let (lp, lq) = (Logs::of(p, a, t)?, Logs::of(q, b, t)?);
    let (Some(lp), Some(lq)) = (lp, lq) else { return Ok(f32::NAN) };
    let beta = f64::from(beta);
    let (mut kl_p, mut kl_q) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (lpj, lqj) = (lp.at(x), lq.at(y));
        let (pj, qj) = (lpj.exp(), lqj.exp());
        let lm = if beta == 0.0 {
            lqj
        } else if beta == 1.0 {
            lpj
        } else {
            (beta * pj + (1.0 - beta) * qj).ln()
        };
        let term = |w: f64, lw: f64| match (w, lm) {
            (0.0, _) => 0.0,
            (_, f64::NEG_INFINITY) => f64::INFINITY,
            _ => w * (lw - lm),
        };
        if beta < 1.0 {
            kl_p += term(pj, lpj);
        }
        if beta > 0.0 {
            kl_q += term(qj, lqj);
        }
    }
    Ok(match beta {
        0.0 => kl_p,
        1.0 => kl_q,
        _ => beta * kl_p + (1.0 - beta) * kl_q,
    } as f32)
}

/// `g(ρ) = (e^ρ − 1 − ρ)/ρ²`, by its series near 0.
#[inline(always)]
fn psi_over_sq(rho: f64) -> f64 {
    if rho.abs() < 0.1 {
        let mut acc = 0.0;
        let mut fact = [1.0f64; 12];
        for n in 1..12 {
            fact[n] = fact[n - 1] * n as f64;
        }
        for n in (0..10).rev() {
            acc = acc * rho + 1.0 / fact[n + 2];
        }
        acc
    } else {
        (rho.exp_m1() - rho) / (rho * rho)
    }
}

/// `τ²·KL(softmax(t/τ) ‖ softmax(s/τ))` in non-negative terms of logit units (see the
/// reference's `distill`): with `d_j = (s_j − m_s) − (t_j − m_t)` over the classes the
/// teacher keeps, `c = ln Σ_k e^(b_k − L)` over every class (`b_k = (s_k − m_s)/τ`, the
/// classes the teacher rules out included) and `r_j = d_j − τ·c`, each kept class adds
/// `p_j·r_j²·g(r_j/τ)`, and the student's mass on the classes ruled out, `Q_out`, adds
/// `τ²·Q_out`.
#[inline(always)]
fn scaled_kl(t: &[f32], s: &[f32], tau: f64) -> Option<f64> {
    let (mt, l) = log_sum(t, tau)?;
    let ms = finite_max(s)?;
    let live = || {
        t.iter().zip(s).filter(|(tj, _)| **tj > f32::NEG_INFINITY).map(move |(&tj, &sj)| {
            let (tj, sj) = (f64::from(tj), f64::from(sj));
            ((tj - mt) / tau - l, (sj - ms) / tau - l, (sj - ms) - (tj - mt))
        })
    };
    // b_k − L of the classes the teacher rules out
    let ruled_out = || {
        t.iter().zip(s).filter(|(tj, _)| **tj == f32::NEG_INFINITY).map(move |(_, &sj)| (f64::from(sj) - ms) / tau - l)
    };
    if live().any(|(_, _, d)| d == f64::NEG_INFINITY) {
        return Some(f64::INFINITY);
    }
    let e: f64 =
        live().map(|(lp, bl, d)| if d / tau > 1.0 { bl.exp() - lp.exp() } else { lp.exp() * (d / tau).exp_m1() }).sum();
    let c = (e + ruled_out().map(f64::exp).sum::<f64>()).ln_1p();
    let q_out: f64 = ruled_out().map(|bl| (bl - c).exp()).sum();
    let kept: f64 = live()
        .map(|(lp, bl, d)| {
            let r = d - tau * c;
            let rho = r / tau;
            if rho.abs() <= 1.0 {
                lp.exp() * r * r * psi_over_sq(rho)
            } else {
                tau * tau * ((bl - c).exp() - lp.exp() * (1.0 + rho))
            }
        })
        .sum();
    Some(kept + tau * tau * q_out)
}

/// `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·(lse(s) − s_y)`, a term of weight 0 left
/// out; `s` the student's row, `t` the teacher's.
#[inline(always)]
pub(crate) fn distill(s: &[f32], t: &[f32], y: usize, temperature: f32, alpha: f32) -> f32 {
    let (tau, alpha) = (f64::from(temperature), f64::from(alpha));
    let mut v = 0.0;
    if alpha > 0.0 {
        v += scaled_kl(t, s, tau).map_or(f64::NAN, |kl| alpha * kl);
    }
    if alpha < 1.0 {
        v += log_sum(s, 1.0).map_or(f64::NAN, |(m, l)| (1.0 - alpha) * (l - (f64::from(s[y]) - m)));
    }
    v as f32
}

/// The gradient of `factor · JSD_β(P‖Q)` with respect to Q's logits `b`, into `g` (see the
/// reference's `jsd::gradient`): `(q_j·Σ_k p_k − p_j)/τ` at `β = 0`, else
/// `w·q_j·(log q_j − log m_j − B)/τ` with `w = 1 − β` (1 at `β = 1`) and
/// `B = Σ_k q_k (log q_k − log m_k)`; NaN on a NaN row and, at `β > 0`, on a row whose
/// divergence is infinite. Formed in f64, stored as f32.
pub(crate) fn jsd_grad(p: Form, a: &[f32], b: &[f32], beta: f32, temperature: f32, factor: f32, g: &mut [f32]) {
    let t = f64::from(temperature);
    let (Ok(Some(lp)), Some((mq, l))) = (Logs::of(p, a, t), log_sum(b, t)) else {
        return g.fill(f32::NAN);
    };
    let lq = Logs::Logits { m: mq, t, l };
    let (beta, k) = (f64::from(beta), f64::from(factor) / t);
    let pq = |x: f32, y: f32| {
        let (lpj, lqj) = (lp.at(x), lq.at(y));
        (lpj, lqj, lpj.exp(), lqj.exp())
    };
    if beta == 0.0 {
        let mass: f64 = a.iter().map(|&x| lp.at(x).exp()).sum();
        for ((o, &x), &y) in g.iter_mut().zip(a).zip(b) {
            let (_, _, pj, qj) = pq(x, y);
            *o = (k * (qj * mass - pj)) as f32;
        }
        return;
    }
    let log_m = |lpj: f64, pj: f64, qj: f64| {
        if beta == 1.0 { lpj } else { (beta * pj + (1.0 - beta) * qj).ln() }
    };
    // B, and whether the divergence is infinite (weight on m_j = 0)
    let (mut big_b, mut infinite) = (0.0f64, false);
    for (&x, &y) in a.iter().zip(b) {
        let (lpj, lqj, pj, qj) = pq(x, y);
        let lm = log_m(lpj, pj, qj);
        let weighs = |w: f64| w != 0.0 && lm == f64::NEG_INFINITY;
        infinite |= (beta < 1.0 && weighs(pj)) || weighs(qj);
        if qj != 0.0 && lm > f64::NEG_INFINITY {
            big_b += qj * (lqj - lm);
        }
    }
    if infinite {
        return g.fill(f32::NAN);
    }
    let w = if beta == 1.0 { 1.0 } else { 1.0 - beta };
    for ((o, &x), &y) in g.iter_mut().zip(a).zip(b) {
        let (lpj, lqj, pj, qj) = pq(x, y);
        *o = if qj == 0.0 { 0.0 } else { (k * w * qj * (lqj - log_m(lpj, pj, qj) - big_b)) as f32 };
    }
}
