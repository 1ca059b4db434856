//! The f64 CPU reference: an independent implementation of every operation, written
//! for clarity, that the GPU kernels are tested against (and the CLI's `--device cpu`).
//!
//! Inputs are widened to f64 exactly. Special values follow the contract: `-inf`
//! logits are masked classes, NaN or `+inf` logits make the row NaN, and a term whose
//! coefficient is zero contributes 0 (never `0 · inf = NaN`).

pub mod binary_xent;
pub mod distill;
pub mod divergence;
pub mod gaussian_kl;
pub mod gradient;
pub mod logsumexp;
pub mod row_max;
pub mod softmax;
pub mod softmax_xent;

use crate::error::{Error, Result};
use crate::loss::{Batch, Labels, LogBase, Loss, Reduction};

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
    let mut r = match *loss {
        Loss::RowMax { logits } => row_max::row_max(&logits),
        Loss::LogSumExp { logits } => logsumexp::logsumexp(&logits),
        Loss::Softmax { logits, temperature, log } => softmax::softmax(&logits, temperature, log),
        Loss::CrossEntropy { logits, labels, options } => softmax_xent::softmax_xent(&logits, &labels, &options)?,
        Loss::CrossEntropyProbs { logits, target } => softmax_xent::softmax_xent_probs(&logits, &target)?,
        Loss::KlDiv { p, q } => divergence::kl_div(&p, &q)?,
        Loss::Entropy { p } => divergence::entropy(&p)?,
        Loss::BinaryCrossEntropy { input, target } => binary_xent::binary_xent(&input, &target)?,
        Loss::GaussianKl { mean, logvar } => gaussian_kl::gaussian_kl(&mean, &logvar),
        Loss::Distill { student, teacher, labels, temperature, alpha } => {
            distill::distill(&student, &teacher, &labels, temperature, alpha)?
        }
    };
    if loss.takes_base() {
        let s = base.scale();
        r.values.iter_mut().for_each(|v| *v *= s);
    }
    Ok(r)
}

/// Row `r` of `batch` widened to f64, each element divided by `temperature`.
pub(crate) fn row(batch: &Batch, r: usize, temperature: f64) -> Vec<f64> {
    (0..batch.cols).map(|c| batch.get(r, c) / temperature).collect()
}

/// The log-sum-exp of a row, max-subtracted: `-inf` entries are skipped, an all-`-inf`
/// row gives `-inf`, and NaN or `+inf` anywhere gives NaN.
pub(crate) fn lse(x: &[f64]) -> f64 {
    if x.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return f64::NAN;
    }
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// `log_softmax` of a row, or `None` where it is undefined (NaN/`+inf`, all `-inf`).
pub(crate) fn log_softmax(x: &[f64]) -> Option<Vec<f64>> {
    let l = lse(x);
    l.is_finite().then(|| x.iter().map(|v| v - l).collect())
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
            return Err(Error::Label { row: i as u64, detail: format!("{y} is outside [0, {cols})") });
        }
    }
    Ok(())
}

/// The first negative or NaN probability, by row then column.
pub(crate) fn check_probs(batch: &Batch) -> Result<()> {
    for r in 0..batch.rows {
        for c in 0..batch.cols {
            let p = batch.get(r, c);
            if p.is_nan() || p < 0.0 {
                let why = if p.is_nan() { "NaN" } else { "negative" };
                return Err(Error::Value { row: r as u64, detail: format!("probability {p} at column {c} is {why}") });
            }
        }
    }
    Ok(())
}
