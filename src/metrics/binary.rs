//! The evaluation report of binary cross-entropy: every element is a prediction
//! `p = x` (probabilities) or `σ(x)` (logits) of a target `t` in [0, 1]. Accuracy at the
//! threshold 0.5 (`p > 0.5` against `t > 0.5`), the calibration errors of `p` over
//! equal-width bins (per bin the mean target against the mean `p`, as torchmetrics'
//! `BinaryCalibrationError`), and the Brier score `mean (p − t)²` (scikit-learn's
//! `brier_score_loss`; every row has as many elements, so it is also the mean over rows of
//! the row's mean). Formed in f64, an element after another, so chunking does not matter.

use crate::error::{Error, Result};
use crate::loss::{Batch, Loss};
use crate::op::{Form, Op};

/// One bin of `p`: its elements, the sum of their targets and of their `p`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BinaryBin {
    /// Elements whose `p` falls in the bin.
    pub count: u64,
    /// The sum of their targets (the positives, for 0/1 targets).
    pub target_sum: f64,
    /// The sum of their `p`.
    pub probability_sum: f64,
}

/// The binary report's counts and sums over the elements added so far.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryMetrics {
    /// Elements added.
    pub elements: u64,
    /// Those whose prediction (`p > 0.5`) is the target's side (`t > 0.5`).
    pub correct: u64,
    /// Equal-width bins of `p`, `[k/B, (k+1)/B)` with 1.0 in the last.
    pub bins: Vec<BinaryBin>,
    /// Elements whose `p` is NaN (a NaN or `+inf` logit): wrong, in no bin; they make the
    /// calibration errors and the Brier score NaN.
    pub nan_elements: u64,
    /// The sum of `(p − t)²`.
    pub brier_sum: f64,
}

impl BinaryMetrics {
    /// An empty report over `bins` bins (at least one).
    pub fn new(bins: u32) -> Result<BinaryMetrics> {
        if bins == 0 {
            return Err(Error::Option { name: "metrics", detail: "calibration needs a bin".into() });
        }
        let bins = vec![BinaryBin::default(); bins as usize];
        Ok(BinaryMetrics { elements: 0, correct: 0, bins, nan_elements: 0, brier_sum: 0.0 })
    }

    /// Adds one prediction `p` of target `t`.
    pub fn push(&mut self, p: f64, t: f64) {
        self.elements += 1;
        self.brier_sum += (p - t) * (p - t);
        if p.is_nan() {
            self.nan_elements += 1;
            return;
        }
        self.correct += u64::from((p > 0.5) == (t > 0.5));
        let b = self.bins.len();
        let bin = &mut self.bins[((p * b as f64).floor().max(0.0) as usize).min(b - 1)];
        bin.count += 1;
        bin.target_sum += t;
        bin.probability_sum += p;
    }

    /// Adds every element of `loss`, a binary cross-entropy, in row order.
    pub fn add(&mut self, loss: &Loss) -> Result<()> {
        let Op::BinaryCrossEntropy { input } = loss.op else {
            return Err(Error::Option {
                name: "metrics",
                detail: "the binary report is of binary cross-entropy".into(),
            });
        };
        let (x, t): (&Batch, Option<&Batch>) = (loss.primary(), loss.inputs.second.as_ref());
        let Some(t) = t else { return Err(Error::Shape { what: "target", detail: "is not bound".into() }) };
        for i in 0..x.rows * x.cols {
            let v = x.data.get(i);
            let p = if input == Form::Logits { sigmoid(v) } else { v };
            self.push(p, t.data.get(i));
        }
        Ok(())
    }

    /// Adds the elements of `other`, a report over the same bins.
    pub fn merge(&mut self, other: &BinaryMetrics) -> Result<()> {
        if other.bins.len() != self.bins.len() {
            return Err(Error::Option { name: "metrics", detail: "the reports to merge have different --bins".into() });
        }
        self.elements += other.elements;
        self.correct += other.correct;
        self.nan_elements += other.nan_elements;
        self.brier_sum += other.brier_sum;
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.count += b.count;
            a.target_sum += b.target_sum;
            a.probability_sum += b.probability_sum;
        }
        Ok(())
    }

    /// The share of elements predicted on their target's side.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.elements as f64
    }

    /// `Σ_b (n_b / n)·|mean t_b − mean p_b|`; NaN with a NaN element or none.
    pub fn ece(&self) -> f64 {
        super::calibration_errors(self.bins.iter().map(|b| (b.count, b.gap())), self.nan_elements).0
    }

    /// `max_b |mean t_b − mean p_b|` over the bins holding elements.
    pub fn mce(&self) -> f64 {
        super::calibration_errors(self.bins.iter().map(|b| (b.count, b.gap())), self.nan_elements).1
    }

    /// The mean of `(p − t)²`.
    pub fn brier(&self) -> f64 {
        self.brier_sum / self.elements as f64
    }
}

impl BinaryBin {
    /// The bin's mean target (NaN when empty).
    pub fn target_mean(&self) -> f64 {
        self.target_sum / self.count as f64
    }

    /// The bin's mean `p` (NaN when empty).
    pub fn probability_mean(&self) -> f64 {
        self.probability_sum / self.count as f64
    }

    fn gap(&self) -> f64 {
        (self.target_mean() - self.probability_mean()).abs()
    }
}

/// `σ(x)` in f64: 0 at `-inf`, NaN for NaN and `+inf` (whose loss is NaN too).
fn sigmoid(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        return f64::NAN;
    }
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}
