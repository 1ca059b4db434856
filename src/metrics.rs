//! The evaluation report of cross-entropy with labels ([`Metrics`]) and of binary
//! cross-entropy ([`BinaryMetrics`]). Of cross-entropy: top-k accuracy, calibration (the
//! expected and maximum calibration errors over equal-width bins of the top-1 confidence),
//! the multiclass Brier score and per-class support and recall.
//!
//! The kernels (or the reference) give what each row contributes, a [`RowEval`]; a
//! [`Metrics`] adds rows up in counts and sums, in row order, so the result does not
//! depend on how rows were chunked, and two results of disjoint shards merge exactly
//! ([`Metrics::merge`]: counts add, sums add in f64).

use crate::error::{Error, Result};

mod binary;

pub use binary::{BinaryBin, BinaryMetrics};

/// What one row (not ignored) contributes to the report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowEval {
    /// The row's label, a class in `[0, cols)`.
    pub label: u32,
    /// Classes ranked above the label: those with a greater logit, and those with an
    /// equal one at a lower index (the tie rule of the argmax). [`RowEval::NAN_RANK`] on a
    /// NaN row, which counts as wrong for every k.
    pub rank: u32,
    /// The argmax (the predicted class).
    pub prediction: u32,
    /// The top-1 confidence `max_j p_j = exp(max − lse)`; NaN on a NaN row.
    pub confidence: f32,
    /// `Σ_j (p_j − [j = y])²`; NaN on a NaN row.
    pub brier: f32,
}

impl RowEval {
    /// The rank of a NaN row (NaN or `+inf` logits, or every class masked).
    pub const NAN_RANK: u32 = u32::MAX;

    /// The rank word of a record whose row has a label outside `[0, cols)` that is not the
    /// ignore index (`BAD_LABEL_RANK` in shaders/softmax_xent.wgsl): no evaluation.
    pub const BAD_LABEL_RANK: u32 = u32::MAX - 1;

    /// The row's evaluation from its record ([`crate::DeviceOutput::report`]); `None` for
    /// a row whose label is `ignore_index` or out of range ([`RowRecord::decode`] tells
    /// which).
    pub fn from_record(words: [u32; 8], ignore_index: Option<i64>) -> Option<RowEval> {
        RowRecord::decode(words, ignore_index).eval()
    }
}

/// A row's evaluation record ([`crate::DeviceOutput::report`], 8 u32 words: the argmax,
/// three words of the loss, the rank, the bits of the confidence and of the Brier term,
/// the label), decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowRecord {
    /// What the row contributes to the report.
    Eval(RowEval),
    /// The row's label is the ignore index: it contributes nothing.
    Ignored,
    /// The row's label is outside `[0, cols)` and not the ignore index: bad input, which
    /// the record's status reports as [`Error::Label`].
    BadLabel {
        /// The label as the kernel read it (an `i64` label, by its low 32 bits).
        label: i32,
    },
}

impl RowRecord {
    /// Decodes a record's words; `ignore_index` is the operation's
    /// ([`Op::ignore_index`](crate::Op::ignore_index)).
    pub fn decode(words: [u32; 8], ignore_index: Option<i64>) -> RowRecord {
        let label = words[7] as i32;
        if Some(i64::from(label)) == ignore_index {
            return RowRecord::Ignored;
        }
        if words[4] == RowEval::BAD_LABEL_RANK {
            return RowRecord::BadLabel { label };
        }
        RowRecord::Eval(RowEval {
            label: label as u32,
            rank: words[4],
            prediction: words[0],
            confidence: f32::from_bits(words[5]),
            brier: f32::from_bits(words[6]),
        })
    }

    /// Decodes the records in `bytes` (as read back: [`crate::REPORT_BYTES`] a row); a
    /// length that is not a whole number of records is [`Error::Readback`].
    pub fn decode_all(bytes: &[u8], ignore_index: Option<i64>) -> Result<Vec<RowRecord>> {
        if !bytes.len().is_multiple_of(32) {
            return Err(Error::Readback(format!("{} bytes given, a record is 32", bytes.len())));
        }
        let mut records = crate::error::try_vec(bytes.len() / 32, "report records")?;
        records.extend(bytes.chunks_exact(32).map(|r| {
            let words =
                std::array::from_fn(|i| u32::from_le_bytes([r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]]));
            RowRecord::decode(words, ignore_index)
        }));
        Ok(records)
    }

    /// The evaluation, where the row has one.
    pub fn eval(self) -> Option<RowEval> {
        match self {
            RowRecord::Eval(e) => Some(e),
            _ => None,
        }
    }
}

/// What to report: the k of top-k accuracy, the calibration bins, and whether per class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSpec {
    /// Each k of top-k accuracy (at least 1).
    pub top_k: Vec<u32>,
    /// Equal-width bins of the confidence, `[k/B, (k+1)/B)` with 1.0 in the last.
    pub bins: u32,
    /// Count support, hits and predictions per class (`classes` long).
    pub per_class: bool,
    /// Classes (the logits' columns).
    pub classes: u32,
}

impl MetricsSpec {
    /// The command line's defaults for `classes` classes: top-1 and top-5 accuracy, 15
    /// calibration bins, no per-class counts.
    pub fn new(classes: u32) -> MetricsSpec {
        MetricsSpec { top_k: vec![1, 5], bins: 15, per_class: false, classes }
    }
}

/// One confidence bin: its rows, those whose top-1 prediction was right, and the sum of
/// their confidences.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bin {
    /// Rows whose confidence falls in the bin.
    pub count: u64,
    /// Those whose top-1 prediction is the label.
    pub correct: u64,
    /// The sum of their confidences.
    pub confidence_sum: f64,
}

/// One class's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClassCounts {
    /// Rows labelled with the class.
    pub support: u64,
    /// Those predicted right (top-1).
    pub correct: u64,
    /// Rows predicted as the class.
    pub predicted: u64,
    /// The sum of the confidences of those predictions.
    pub predicted_confidence_sum: f64,
}

/// The report's counts and sums over the rows added so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// What is reported.
    pub spec: MetricsSpec,
    /// Rows added (rows not ignored).
    pub rows: u64,
    /// Rows whose label ranks first (top-1 hits: the accuracy's numerator).
    pub correct: u64,
    /// Per k of [`MetricsSpec::top_k`], the rows whose rank is under k.
    pub hits: Vec<u64>,
    /// The calibration bins.
    pub bins: Vec<Bin>,
    /// Rows whose confidence is NaN (NaN rows): in no bin; they make ECE and MCE NaN.
    pub nan_rows: u64,
    /// The sum of the rows' Brier terms.
    pub brier_sum: f64,
    /// Per-class counts, where asked for.
    pub classes: Option<Vec<ClassCounts>>,
}

impl Metrics {
    /// An empty report of `spec`; the per-class arrays are allocated here, and a failure
    /// to allocate them is an error, not an abort.
    pub fn new(spec: MetricsSpec) -> Result<Metrics> {
        if spec.bins == 0 || spec.top_k.contains(&0) {
            return Err(Error::Option { name: "metrics", detail: "top-k needs k ≥ 1 and calibration a bin".into() });
        }
        let classes = match spec.per_class {
            true => {
                let mut v = Vec::new();
                v.try_reserve_exact(spec.classes as usize).map_err(|_| {
                    Error::TooLarge(format!("per-class counts of {} classes do not fit in memory", spec.classes))
                })?;
                v.resize(spec.classes as usize, ClassCounts::default());
                Some(v)
            }
            false => None,
        };
        let (hits, bins) = (vec![0; spec.top_k.len()], vec![Bin::default(); spec.bins as usize]);
        Ok(Metrics { spec, rows: 0, correct: 0, hits, bins, nan_rows: 0, brier_sum: 0.0, classes })
    }

    /// The bin of a (non-NaN) confidence.
    pub fn bin_of(&self, confidence: f32) -> usize {
        let b = self.spec.bins as usize;
        ((f64::from(confidence) * b as f64).floor().max(0.0) as usize).min(b - 1)
    }

    /// Adds one row.
    pub fn push(&mut self, r: &RowEval) {
        self.rows += 1;
        for (hit, &k) in self.hits.iter_mut().zip(&self.spec.top_k) {
            *hit += u64::from(r.rank < k);
        }
        self.brier_sum += f64::from(r.brier);
        let correct = r.rank == 0;
        self.correct += u64::from(correct);
        if r.confidence.is_nan() {
            self.nan_rows += 1;
        } else {
            let at = self.bin_of(r.confidence);
            let bin = &mut self.bins[at];
            bin.count += 1;
            bin.correct += u64::from(correct);
            bin.confidence_sum += f64::from(r.confidence);
        }
        if let Some(classes) = &mut self.classes {
            if let Some(c) = classes.get_mut(r.label as usize) {
                c.support += 1;
                c.correct += u64::from(correct);
            }
            if let Some(c) = classes.get_mut(r.prediction as usize).filter(|_| !r.confidence.is_nan()) {
                c.predicted += 1;
                c.predicted_confidence_sum += f64::from(r.confidence);
            }
        }
    }

    /// Adds the rows of `other`, a report of the same spec over other rows.
    pub fn merge(&mut self, other: &Metrics) -> Result<()> {
        if other.spec != self.spec {
            return Err(Error::Option {
                name: "metrics",
                detail: "the reports to merge were made with different --top-k, --bins or classes".into(),
            });
        }
        self.rows += other.rows;
        self.correct += other.correct;
        self.hits.iter_mut().zip(&other.hits).for_each(|(a, b)| *a += b);
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.count += b.count;
            a.correct += b.correct;
            a.confidence_sum += b.confidence_sum;
        }
        self.nan_rows += other.nan_rows;
        self.brier_sum += other.brier_sum;
        if let (Some(a), Some(b)) = (&mut self.classes, &other.classes) {
            for (a, b) in a.iter_mut().zip(b) {
                a.support += b.support;
                a.correct += b.correct;
                a.predicted += b.predicted;
                a.predicted_confidence_sum += b.predicted_confidence_sum;
            }
        }
        Ok(())
    }

    /// The share of rows whose label ranks first (NaN with no rows).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.rows as f64
    }

    /// `(k, accuracy)` per k: the share of rows whose rank is under k (NaN with no rows).
    pub fn top_k_accuracy(&self) -> Vec<(u32, f64)> {
        self.spec.top_k.iter().zip(&self.hits).map(|(&k, &h)| (k, h as f64 / self.rows as f64)).collect()
    }

    /// The expected calibration error `Σ_b (n_b / n)·|acc_b − conf_b|` (L1, as torchmetrics'
    /// `MulticlassCalibrationError`); NaN with a NaN row or no rows.
    pub fn ece(&self) -> f64 {
        calibration_errors(self.bins.iter().map(|b| (b.count, b.gap())), self.nan_rows).0
    }

    /// The maximum calibration error `max_b |acc_b − conf_b|` over the bins holding rows.
    pub fn mce(&self) -> f64 {
        calibration_errors(self.bins.iter().map(|b| (b.count, b.gap())), self.nan_rows).1
    }

    /// The mean over rows of `Σ_j (p_j − [j = y])²`.
    pub fn brier(&self) -> f64 {
        self.brier_sum / self.rows as f64
    }

    /// The mean recall over the classes present (support > 0), as scikit-learn's
    /// `balanced_accuracy_score`; `None` without per-class counts.
    pub fn balanced_accuracy(&self) -> Option<f64> {
        let classes = self.classes.as_ref()?;
        let present: Vec<f64> =
            classes.iter().filter(|c| c.support > 0).map(|c| c.correct as f64 / c.support as f64).collect();
        Some(present.iter().sum::<f64>() / present.len() as f64)
    }
}

/// The expected and maximum calibration errors of bins given as (count, |accuracy −
/// confidence|): the count-weighted mean gap and the largest gap, over the bins holding
/// rows; both NaN with a NaN row (`nan`) or none in any bin.
pub(crate) fn calibration_errors(bins: impl Iterator<Item = (u64, f64)>, nan: u64) -> (f64, f64) {
    let held: Vec<(u64, f64)> = bins.filter(|b| b.0 > 0).collect();
    let n: u64 = held.iter().map(|b| b.0).sum();
    if nan > 0 || n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let ece = held.iter().map(|&(count, gap)| count as f64 / n as f64 * gap).sum();
    (ece, held.iter().map(|b| b.1).fold(0.0, f64::max))
}

impl Bin {
    /// The bin's accuracy (NaN when empty).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count as f64
    }

    /// The bin's mean confidence (NaN when empty).
    pub fn confidence(&self) -> f64 {
        self.confidence_sum / self.count as f64
    }

    fn gap(&self) -> f64 {
        (self.accuracy() - self.confidence()).abs()
    }
}

#[cfg(test)]
mod tests;
