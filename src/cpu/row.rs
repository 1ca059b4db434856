//! One row of an operation on the engine, in f32 over [`super::math`]'s lanes: the value,
//! what it adds to the mean's denominator, the z-loss term, the entropy, the argmax and the
//! report's record, under the kernels' rules for special values: `-inf` logits are masked
//! classes, NaN or `+inf` logits make the row NaN, a term with a zero coefficient adds 0.

use super::math::{self, Stats, argmax, exp, has_nan, max_of, stats, sums, sums2};
use super::plan::Plan;
use crate::metrics::RowEval;
use crate::op::{Form, Op};

/// What one row gives.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RowOut {
    pub(crate) value: f32,
    /// Its part of the mean's denominator: 1, or `W[y]` (0 for an ignored row).
    pub(crate) weight: f32,
    /// Cross-entropy's z-loss term `λ·lse²` (0 without one, or for an ignored row).
    pub(crate) z: f32,
    /// Cross-entropy's `entropy` option: `H(softmax(x))`.
    pub(crate) entropy: f32,
    /// The row's argmax (row max and cross-entropy with labels).
    pub(crate) argmax: u32,
    /// The evaluation report's record (cross-entropy with labels, not ignored).
    pub(crate) eval: Option<RowEval>,
    /// Whether the row is left out of the sums of entropies (an ignored row).
    pub(crate) ignored: bool,
}

/// Bad input in a row: the message is worded from the data by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A label outside `[0, cols)` that is not ignored.
    Label,
    /// A probability or target outside its domain.
    Value,
}

type RowResult = Result<RowOut, Fault>;

/// A row's max ([`math::max_of`]), or its max and the first index of it
/// ([`math::max_first`]), where already known.
pub(crate) type Known = Option<(f32, Option<usize>)>;

/// Runs `plan`'s operation on one row: `a` and `b` its float inputs (widened and capped),
/// with their max and its first index where the widening found them, `label` its label,
/// `out` its softmax row (softmax only).
#[inline(always)]
pub(crate) fn run(plan: &Plan, [a, b]: [&[f32]; 2], known: [Known; 2], label: i64, out: &mut [f32]) -> RowResult {
    let one = |value: f32| Ok(RowOut { value, weight: 1.0, ..Default::default() });
    let mut r = match plan.op {
        Op::RowMax => {
            let value = if has_nan(a) { f32::NAN } else { max_of(a) };
            let argmax = if plan.argmax { argmax(a) as u32 } else { 0 };
            Ok(RowOut { value, weight: 1.0, argmax, ..Default::default() })
        }
        Op::LogSumExp => one(lse(a, known[0])),
        Op::Softmax { temperature, log } => {
            softmax(a, temperature, log, out);
            one(0.0)
        }
        Op::CrossEntropy { ignore_index, label_smoothing, z_loss, entropy } => {
            let options = CeOptions { ignore_index, label_smoothing, z_loss, entropy };
            cross_entropy(plan, &options, a, known[0], label)
        }
        Op::CrossEntropyProbs { z_loss, .. } => ce_probs(plan, a, b, z_loss),
        Op::KlDiv { p, q } => kl(p, q, [a, b], known).and_then(one),
        Op::Entropy { p } => entropy_of(p, a).and_then(one),
        Op::BinaryCrossEntropy { input } => bce(input, a, b).and_then(one),
        Op::GaussianKl => one(gaussian_kl(a, b)),
        Op::Jsd { p, q, beta, temperature } => super::wide::jsd(p, q, a, b, beta, temperature).and_then(one),
        Op::Distill { temperature, alpha } => {
            if !(0..a.len() as i64).contains(&label) {
                return Err(Fault::Label);
            }
            one(super::wide::distill(a, b, label as usize, temperature, alpha))
        }
        Op::LinearCrossEntropy { .. } => one(f32::NAN),
    }?;
    if plan.op.takes_base() {
        r.value *= plan.scale;
        r.z *= plan.scale;
        r.entropy *= plan.scale;
    }
    Ok(r)
}

/// `log Σ_j e^(x_j)`: NaN with a NaN or `+inf`, `-inf` for a row of `-inf`.
#[inline(always)]
fn lse(x: &[f32], known: Known) -> f32 {
    let m = known.map_or_else(|| max_of(x), |k| k.0);
    if m == f32::INFINITY {
        return f32::NAN;
    }
    if m == f32::NEG_INFINITY {
        return if has_nan(x) { f32::NAN } else { f32::NEG_INFINITY };
    }
    // a NaN makes the sum NaN
    let st = math::stats_at(x, m, 1.0);
    st.m + st.log_s
}

/// `softmax(x/t)` or its log into `out`; NaN where it is undefined. The max is subtracted
/// before the temperature divides.
#[inline(always)]
fn softmax(x: &[f32], t: f32, log: bool, out: &mut [f32]) {
    let Some(st) = stats(x, t) else {
        out.fill(f32::NAN);
        return;
    };
    let (m, s, log_s) = (st.m, st.s, st.log_s);
    let scaled = |v: f32| if t == 1.0 { v - m } else { (v - m) / t };
    for (o, &v) in out.iter_mut().zip(x) {
        *o = if log { scaled(v) - log_s } else { exp(scaled(v)) / s };
    }
}

/// `c·(lse − x_j)` as `c·((m − x_j) + ln s)`: 0 where `c` is 0 (also on a masked class).
#[inline(always)]
fn term(c: f32, m_minus_x: f32, log_s: f32) -> f32 {
    if c == 0.0 { 0.0 } else { c * (m_minus_x + log_s) }
}

/// The options of [`Op::CrossEntropy`].
struct CeOptions {
    ignore_index: Option<i64>,
    label_smoothing: f32,
    z_loss: f32,
    entropy: bool,
}

/// Cross-entropy against a label, with its options, entropy and report record.
#[inline(always)]
fn cross_entropy(plan: &Plan, options: &CeOptions, x: &[f32], known: Known, label: i64) -> RowResult {
    let &CeOptions { ignore_index, label_smoothing, z_loss, entropy } = options;
    let ignored = Some(label) == ignore_index;
    if !ignored && !(0..x.len() as i64).contains(&label) {
        return Err(Fault::Label);
    }
    // the argmax where it is used comes with the max, in its pass
    let wants_argmax = plan.keeps_argmax();
    let (m, first) = match known {
        Some((m, Some(first))) => (m, first),
        Some((m, None)) if !wants_argmax => (m, 0),
        _ if wants_argmax => math::max_first(x),
        _ => (max_of(x), 0),
    };
    let w = |j: usize| plan.weights.as_ref().map_or(1.0, |w| w[j]);
    // the label's logit, for the report's rank (NaN for an ignored row: counts nothing)
    let xy = if ignored { f32::NAN } else { x[label as usize] };
    let before = if ignored { 0 } else { label as usize };
    // s = Σ e_j, t = Σ e_j·(x_j − m) (entropy), q = Σ e_j² (the report's Brier term) and
    // the classes whose logit is above the label's, in one pass (s has the same bits
    // whichever are formed beside it); a NaN makes s NaN
    let [s, t, q, above] = match (m.is_finite(), entropy, plan.report) {
        (false, ..) => [f32::NAN; 4],
        (true, false, false) => [math::stats_at(x, m, 1.0).s, 0.0, 0.0, 0.0],
        (true, true, false) => {
            let [s, t] = sums(x, |v| entropy_terms(v, m));
            [s, t, 0.0, 0.0]
        }
        (true, false, true) => {
            let [s, q, rank] = report_sums(x, m, xy, before);
            [s, 0.0, q, rank]
        }
        (true, true, true) => {
            let [s, t, q, greater] = sums(x, |v| {
                let [e, t] = entropy_terms(v, m);
                [e, t, e * e, if v > xy { 1.0 } else { 0.0 }]
            });
            [s, t, q, greater + equal_before(x, xy, before)]
        }
    };
    let ok = !s.is_nan();
    // without NaN the argmax is the first place of the max
    let argmax = match (wants_argmax, ok) {
        (false, _) => 0,
        (true, true) => first as u32,
        (true, false) => argmax(x) as u32,
    };
    let mut r = RowOut { argmax, ignored, ..Default::default() };
    let log_s = s.ln();
    if entropy {
        r.entropy = if ok { log_s - t / s } else { f32::NAN };
    }
    if ignored {
        return Ok(r);
    }
    let y = label as usize;
    r.weight = w(y);
    if !ok {
        r.value = f32::NAN;
        r.z = if z_loss > 0.0 { f32::NAN } else { 0.0 };
        r.eval = plan.report.then_some(RowEval {
            label: y as u32,
            rank: u32::MAX,
            prediction: r.argmax,
            confidence: f32::NAN,
            brier: f32::NAN,
        });
        return Ok(r);
    }
    let mut loss = term((1.0 - label_smoothing) * w(y), m - x[y], log_s);
    if label_smoothing > 0.0 {
        let [a, total] = match &plan.weights {
            Some(wt) => sums2(x, wt, |v, w| [if w == 0.0 { 0.0 } else { w * (m - v) }, w]),
            None => sums(x, |v| [m - v, 1.0]),
        };
        loss += label_smoothing / x.len() as f32 * (a + log_s * total);
    }
    if z_loss > 0.0 {
        let lse = m + log_s;
        r.z = z_loss * lse * lse;
    }
    r.value = loss + r.z;
    if plan.report {
        r.eval = Some(report(x, y, (m, s, q, above), r.argmax));
    }
    Ok(r)
}

/// KL's pass over two rows of logits with maxima `mp`, `mq`: both sums of exponentials and
/// `Σ e_j·(log p_j − log q_j + the logs' sums)`, `e_j = e^(x_j − mp)` (0 where `e_j` is);
/// `ahead` where the rows are the input itself, not a widening's copy.
#[inline(always)]
fn kl_sums(a: &[f32], b: &[f32], mp: f32, mq: f32, ahead: bool) -> [f32; 3] {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        return unsafe { super::avx512::kl_sums(a, b, mp, mq, ahead) };
    }
    // (`ahead`, whether to ask for the next rows' lines, is a hint for the AVX-512 form)
    let _ = ahead;
    sums2(a, b, |x, y| {
        let e = exp(x - mp);
        [e, if e == 0.0 { 0.0 } else { e * ((x - mp) - (y - mq)) }, exp(y - mq)]
    })
}

/// `[Σ e_j, Σ e_j², rank]`, `e_j = e^(x_j − m)`: the report's sums of a row whose label's
/// logit is `xy` at `before`, and its rank: the classes ranked above the label (a greater
/// logit, or an equal one at a lower index; a count, exact in f32).
#[inline(always)]
fn report_sums(x: &[f32], m: f32, xy: f32, before: usize) -> [f32; 3] {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() && x.len() < i32::MAX as usize {
        // SAFETY: the CPU has AVX-512F, BW and VL (checked just above)
        #[allow(unsafe_code)]
        return unsafe { super::avx512::report_sums(x, m, xy, before) };
    }
    let [s, q, greater] = sums(x, |v| {
        let e = exp(v - m);
        [e, e * e, if v > xy { 1.0 } else { 0.0 }]
    });
    [s, q, greater + equal_before(x, xy, before)]
}

/// The classes before `before` whose logit equals `xy`.
#[inline(always)]
fn equal_before(x: &[f32], xy: f32, before: usize) -> f32 {
    sums(&x[..before], |v| [if v == xy { 1.0 } else { 0.0 }])[0]
}

/// `[e^(v − m), e^(v − m)·(v − m)]`, the second 0 on a masked class.
#[inline(always)]
fn entropy_terms(v: f32, m: f32) -> [f32; 2] {
    let e = exp(v - m);
    [e, if e == 0.0 { 0.0 } else { e * (v - m) }]
}

/// The report's record of a row whose log-softmax is defined.
#[inline(always)]
fn report(x: &[f32], y: usize, (m, s, q, above): (f32, f32, f32, f32), prediction: u32) -> RowEval {
    let xy = x[y];
    let ey = exp(xy - m);
    let rest = (s - ey) / s;
    let brier = (q - ey * ey) / (s * s) + rest * rest;
    RowEval { label: y as u32, rank: above as u32, prediction, confidence: 1.0 / s, brier }
}

/// Whether a probability is outside its domain (negative, NaN, `+inf`).
#[inline(always)]
fn bad_probability(p: f32) -> bool {
    !(0.0..f32::INFINITY).contains(&p)
}

/// Cross-entropy against target probabilities `p` (their checks first).
#[inline(always)]
fn ce_probs(plan: &Plan, x: &[f32], p: &[f32], z_loss: f32) -> RowResult {
    if p.iter().any(|&v| bad_probability(v)) {
        return Err(Fault::Value);
    }
    let mut r = RowOut { weight: 1.0, ..Default::default() };
    let Some(Stats { m, s, log_s }) = stats(x, 1.0) else {
        r.value = f32::NAN;
        r.z = if z_loss > 0.0 { f32::NAN } else { 0.0 };
        r.entropy = f32::NAN;
        return Ok(r);
    };
    // Σ P_j·(lse − x_j) = Σ P_j·(m − x_j) + ln s·Σ P_j
    let [a, total] = sums2(x, p, |v, pj| [if pj == 0.0 { 0.0 } else { pj * (m - v) }, pj]);
    if plan.op.has_entropy() {
        let [_, t] = sums(x, |v| entropy_terms(v, m));
        r.entropy = log_s - t / s;
    }
    if z_loss > 0.0 {
        let lse = m + log_s;
        r.z = z_loss * lse * lse;
    }
    r.value = a + log_s * total + r.z;
    Ok(r)
}

/// `KL(P‖Q)`; `p_j = 0` adds 0, `p_j > 0` where `q_j = 0` is `+inf`.
#[inline(always)]
fn kl(p: Form, q: Form, [a, b]: [&[f32]; 2], [ka, kb]: [Known; 2]) -> Result<f32, Fault> {
    check(p, a)?;
    check(q, b)?;
    let zero_or = |pj: f32, v: f32| if pj == 0.0 { 0.0 } else { pj * v };
    Ok(match (p, q) {
        (Form::Logits, Form::Logits) => {
            let max = |x, k: Known| k.map_or_else(|| max_of(x), |k| k.0);
            let (mp, mq) = (max(a, ka), max(b, kb));
            if !mp.is_finite() || !mq.is_finite() {
                return Ok(f32::NAN);
            }
            // (a NaN in either row makes its sum NaN, and so the value)
            // one pass: both sums of exponentials and Σ e_j·(log p_j − log q_j + the logs' sums)
            // (rows the widening wrote are in cache: its pass asked for the next rows' lines)
            let [sp, u, sq] = kl_sums(a, b, mp, mq, ka.is_none() || kb.is_none());
            u / sp - sp.ln() + sq.ln()
        }
        (Form::Logits, Form::Probs) => {
            let Some(sp) = stats(a, 1.0) else { return Ok(f32::NAN) };
            let [u] = sums2(a, b, |x, qj| [zero_or(exp(x - sp.m), (x - sp.m) - qj.ln())]);
            u / sp.s - sp.log_s
        }
        (Form::Probs, Form::Logits) => {
            let Some(sq) = stats(b, 1.0) else { return Ok(f32::NAN) };
            let [u, total] = sums2(a, b, |pj, y| [zero_or(pj, pj.ln() - (y - sq.m)), pj]);
            u + sq.log_s * total
        }
        (Form::Probs, Form::Probs) => sums2(a, b, |pj, qj| [zero_or(pj, pj.ln() - qj.ln())])[0],
    })
}

/// The value checks of an input given as probabilities.
#[inline(always)]
fn check(form: Form, x: &[f32]) -> Result<(), Fault> {
    match form {
        Form::Probs if x.iter().any(|&v| bad_probability(v)) => Err(Fault::Value),
        _ => Ok(()),
    }
}

/// `H(P) = −Σ_j p_j·ln p_j`.
#[inline(always)]
fn entropy_of(p: Form, x: &[f32]) -> Result<f32, Fault> {
    check(p, x)?;
    Ok(match p {
        Form::Logits => match stats(x, 1.0) {
            Some(st) => {
                let [_, t] = sums(x, |v| entropy_terms(v, st.m));
                st.log_s - t / st.s
            }
            None => f32::NAN,
        },
        Form::Probs => -sums(x, |v| [if v == 0.0 { 0.0 } else { v * v.ln() }])[0],
    })
}

/// Binary cross-entropy summed over the row (targets in [0, 1] checked first).
#[inline(always)]
fn bce(input: Form, x: &[f32], t: &[f32]) -> Result<f32, Fault> {
    let outside = |v: f32| !(0.0..=1.0).contains(&v);
    for (&xj, &tj) in x.iter().zip(t) {
        if outside(tj) || (input == Form::Probs && outside(xj)) {
            return Err(Fault::Value);
        }
    }
    Ok(match input {
        Form::Probs => sums2(x, t, |xj, tj| {
            let (lx, l1x) = (xj.ln().max(-100.0), (1.0 - xj).ln().max(-100.0));
            [-(tj * lx + (1.0 - tj) * l1x)]
        })[0],
        Form::Logits => sums2(x, t, |xj, tj| {
            [if xj.is_nan() || xj == f32::INFINITY {
                f32::NAN
            } else if xj == f32::NEG_INFINITY {
                if tj > 0.0 { f32::INFINITY } else { 0.0 }
            } else {
                xj.max(0.0) - xj * tj + exp(-xj.abs()).ln_1p()
            }]
        })[0],
    })
}

/// `−½ Σ_j (1 + lv_j − μ_j² − e^lv_j)`; NaN with a NaN, `+inf` with an infinity.
#[inline(always)]
fn gaussian_kl(mu: &[f32], lv: &[f32]) -> f32 {
    sums2(mu, lv, |m, l| {
        [if m.is_nan() || l.is_nan() {
            f32::NAN
        } else if !m.is_finite() || !l.is_finite() {
            f32::INFINITY
        } else {
            -0.5 * (((1.0 + l) - m * m) - l.exp())
        }]
    })[0]
}
