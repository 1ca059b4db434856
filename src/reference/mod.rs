//! The f64 CPU reference: an independent implementation of every operation, written
//! for clarity, that the GPU kernels are tested against (and the CLI's `--device cpu`).
//!
//! Inputs are widened to f64 exactly. Special values follow the contract: `-inf`
//! logits are masked classes, NaN or `+inf` logits make the row NaN, and a term whose
//! coefficient is zero contributes 0 (never `0 · inf = NaN`).

mod binary_xent;
mod distill;
mod divergence;
mod gaussian_kl;
mod gradient;
mod jsd;
mod linear_ce;
mod logsumexp;
mod metrics;
mod row_max;
mod softcap;
mod softmax;
mod softmax_xent;

use crate::error::{Error, Result};
use crate::loss::{Batch, Labels, LogBase, Loss, Reduction};
use crate::op::Op;

pub use gradient::gradient;
pub use linear_ce::{HeadGradients, head_gradients};
pub use metrics::row_evals;

/// Per-row results of the reference.
#[derive(Clone, Debug, Default)]
pub struct Reference {
    /// Per-row values (softmax: `rows * cols` values, row-major).
    pub values: Vec<f64>,
    /// Per-row contributions to the mean's denominator: 1, except cross-entropy with
    /// labels (0 for ignored rows, `W[y]` with class weights).
    pub weights: Vec<f64>,
    /// Per-row argmax for row max and cross-entropy with labels.
    pub argmax: Option<Vec<u32>>,
}

impl Reference {
    /// Sum of the values (Neumaier-compensated; NaN and infinities propagate).
    pub fn sum(&self) -> f64 {
        compensated_sum(&self.values)
    }

    /// The mean's denominator: the sum of the per-row weights.
    pub fn denominator(&self) -> f64 {
        compensated_sum(&self.weights)
    }

    /// `sum / denominator`; NaN when every row is ignored, as in PyTorch.
    pub fn mean(&self) -> f64 {
        self.sum() / self.denominator()
    }

    /// The values reduced by `r` (`None` gives the sum, as the command line reports it).
    pub fn reduce(&self, r: Reduction) -> f64 {
        match r {
            Reduction::Mean => self.mean(),
            Reduction::Sum | Reduction::None => self.sum(),
        }
    }
}

fn compensated_sum(v: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for &x in v {
        if !x.is_finite() {
            return v.iter().sum();
        }
        let t = sum + x;
        c += if sum.abs() >= x.abs() { (sum - t) + x } else { (x - t) + sum };
        sum = t;
    }
    sum + c
}

/// Computes `loss` per row in f64; values of operations that take a base are scaled.
pub fn compute(loss: &Loss, base: LogBase) -> Result<Reference> {
    loss.validate()?;
    if let Some(capped) = softcap::capped(loss) {
        return compute(&capped.loss(loss), base);
    }
    let a = loss.primary();
    // present: validate holds the inputs to the operation's signature
    let b = loss.secondary().unwrap_or(a);
    let labels = loss.labels().copied().unwrap_or(Labels::I32(&[]));
    let (p, q) = loss.dists();
    let mut r = match loss.op {
        Op::RowMax => row_max::row_max(a),
        Op::LogSumExp => logsumexp::logsumexp(a),
        Op::Softmax { temperature, log } => softmax::softmax(a, temperature, log),
        Op::CrossEntropy { .. } => softmax_xent::softmax_xent(a, &labels, &loss.ce_options())?,
        Op::CrossEntropyProbs { z_loss, .. } => softmax_xent::softmax_xent_probs(a, b, z_loss)?,
        Op::KlDiv { .. } => divergence::kl_div(&p, &q.unwrap_or(p))?,
        Op::Jsd { beta, temperature, .. } => jsd::jsd(&p, &q.unwrap_or(p), beta, temperature)?,
        Op::Entropy { .. } => divergence::entropy(&p)?,
        Op::BinaryCrossEntropy { .. } => binary_xent::binary_xent(&p, b)?,
        Op::GaussianKl => gaussian_kl::gaussian_kl(a, b),
        Op::Distill { temperature, alpha } => distill::distill(a, b, &labels, temperature, alpha)?,
        Op::LinearCrossEntropy { .. } => linear_ce::linear_ce(loss)?,
    };
    if loss.op.takes_base() {
        let s = base.scale();
        r.values.iter_mut().for_each(|v| *v *= s);
    }
    Ok(r)
}

/// The rows' z-loss terms `λ·lse(x_i)²` of cross-entropy with a z-loss (0 on ignored rows,
/// NaN where the row's log-softmax is not defined), scaled for `base`: their sum over the
/// mean's denominator is the z-loss's share of the mean. `None` for every other operation.
pub fn z_terms(loss: &Loss, base: LogBase) -> Result<Option<Vec<f64>>> {
    loss.validate()?;
    // decided before any capped copy is made: the command line asks for every chunk
    let (z_loss, ignore) = match loss.op {
        Op::CrossEntropy { z_loss, ignore_index, .. } if z_loss > 0.0 => (z_loss, ignore_index),
        Op::CrossEntropyProbs { z_loss, .. } if z_loss > 0.0 => (z_loss, None),
        _ => return Ok(None),
    };
    if let Some(capped) = softcap::capped(loss) {
        return z_terms(&capped.loss(loss), base);
    }
    let a = loss.primary();
    let terms = (0..a.rows)
        .map(|i| {
            if ignore.is_some() && loss.labels().map(|y| y.get(i)) == ignore {
                return 0.0;
            }
            let x = row(a, i);
            match log_softmax(&x) {
                Some(_) => softmax_xent::z_term(&x, z_loss) * base.scale(),
                None => f64::NAN,
            }
        })
        .collect();
    Ok(Some(terms))
}

/// The rows' entropies `H(softmax(x_i))` of cross-entropy with the `entropy` option, every
/// row (ignored ones too: it is a property of the logits), soft-capped logits where the job
/// caps them, scaled for `base`. `None` for every other operation.
pub fn entropies(loss: &Loss, base: LogBase) -> Result<Option<Vec<f64>>> {
    loss.validate()?;
    // decided before any capped copy is made: the command line asks for every chunk
    if !loss.op.has_entropy() {
        return Ok(None);
    }
    if let Some(capped) = softcap::capped(loss) {
        return entropies(&capped.loss(loss), base);
    }
    let a = loss.primary();
    Ok(Some((0..a.rows).map(|i| softmax_xent::entropy(&row(a, i)) * base.scale()).collect()))
}

/// Row `r` of `batch` widened to f64.
pub(crate) fn row(batch: &Batch, r: usize) -> Vec<f64> {
    (0..batch.cols).map(|c| batch.get(r, c)).collect()
}

/// The max of a row, or `None` where its log-sum-exp is not finite (NaN or `+inf`
/// anywhere, or every element `-inf`).
pub(crate) fn finite_max(x: &[f64]) -> Option<f64> {
    if x.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return None;
    }
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (m > f64::NEG_INFINITY).then_some(m)
}

/// The log-sum-exp of a row, max-subtracted: `-inf` entries are skipped, an all-`-inf`
/// row gives `-inf`, and NaN or `+inf` anywhere gives NaN.
pub(crate) fn lse(x: &[f64]) -> f64 {
    if x.iter().all(|v| *v == f64::NEG_INFINITY) {
        return f64::NEG_INFINITY;
    }
    finite_max(x).map_or(f64::NAN, |m| m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln())
}

/// `log_softmax(x / t)` of a row, or `None` where it is undefined (NaN/`+inf`, all
/// `-inf`): `(x_j − m)/t − log Σ_k exp((x_k − m)/t)` with `m` the row's max. The max is
/// subtracted before the division and before the log is added, so neither a large `m`
/// (`1e20 + ln 2` is `1e20`) nor a tiny `t` swallows the log.
pub(crate) fn log_softmax_at(x: &[f64], t: f64) -> Option<Vec<f64>> {
    let m = finite_max(x)?;
    let z: Vec<f64> = x.iter().map(|v| (v - m) / t).collect();
    let log_s = z.iter().map(|v| v.exp()).sum::<f64>().ln();
    Some(z.iter().map(|v| v - log_s).collect())
}

/// `log_softmax` of a row at temperature 1; see [`log_softmax_at`].
pub(crate) fn log_softmax(x: &[f64]) -> Option<Vec<f64>> {
    log_softmax_at(x, 1.0)
}

/// A rows-long vector of ones.
pub(crate) fn ones(rows: usize) -> Vec<f64> {
    vec![1.0; rows]
}

/// The first row whose label is outside `[0, cols)` and not `ignore`.
pub(crate) fn check_labels(labels: &Labels, cols: usize, ignore: Option<i64>) -> Result<()> {
    for i in 0..labels.len() {
        let y = labels.get(i);
        if Some(y) != ignore && !(0..cols as i64).contains(&y) {
            return Err(Error::Label { row: i as u64, label: Some(y), cols: cols as u64 });
        }
    }
    Ok(())
}

/// Why a probability is bad input (negative, NaN or `+inf`), if it is.
pub(crate) fn bad_probability(p: f64) -> Option<&'static str> {
    if p.is_nan() {
        Some("is NaN")
    } else if p < 0.0 {
        Some("is negative")
    } else if p == f64::INFINITY {
        Some("is infinite")
    } else {
        None
    }
}

/// Why a value that must lie in [0, 1] (a BCE target or probability) is bad input, if it is.
pub(crate) fn outside_unit(v: f64) -> Option<&'static str> {
    if v.is_infinite() {
        Some("is infinite")
    } else if !(0.0..=1.0).contains(&v) {
        Some("is outside [0, 1]")
    } else {
        None
    }
}

/// The first negative, NaN or infinite probability, by row then column.
pub(crate) fn check_probs(batch: &Batch) -> Result<()> {
    for r in 0..batch.rows {
        for c in 0..batch.cols {
            let p = batch.get(r, c);
            if let Some(why) = bad_probability(p) {
                return Err(Error::Value { row: r as u64, detail: format!("probability {p} at column {c} {why}") });
            }
        }
    }
    Ok(())
}
