//! What a job computes besides its reductions, and what it gives back.

use crate::loss::LogBase;

/// What to compute besides the reductions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// The unit of the values of the operations that take a log base.
    pub base: LogBase,
    /// Read back the per-row values (softmax: always).
    pub keep_values: bool,
    /// Read back the per-row argmax (row max and cross-entropy with labels).
    pub keep_argmax: bool,
    /// Read back the per-row entropy (cross-entropy with the `entropy` option).
    pub keep_entropy: bool,
    /// Cross-entropy with labels: each row's evaluation report, read back as
    /// [`Rows::evals`](crate::Rows::evals) (add them up with [`crate::metrics::Metrics`]).
    pub report: bool,
    /// Force at most this many rows per piece (tests of the chunked path).
    pub chunk_rows: Option<u64>,
}

/// The result of a job.
#[derive(Clone, Debug)]
pub struct Output {
    /// Rows of the job.
    pub rows: usize,
    /// Columns of the job.
    pub cols: usize,
    /// Sum of the per-row values (a deterministic tree sum on the GPU; softmax: of all values).
    pub sum: f64,
    /// The mean's denominator: rows, or `Σ W[y]` over non-ignored rows for cross-entropy.
    pub denominator: f64,
    /// Of cross-entropy with a z-loss: the sum of the rows' `λ·lse²` terms (part of `sum`;
    /// `z_sum / denominator` is the z-loss's share of the mean).
    pub z_sum: Option<f64>,
    /// Of cross-entropy with the `entropy` option: the sum of the rows' entropies of
    /// `softmax(logits)` over the rows not ignored (a tree sum like `sum`, so chunking does
    /// not change it), in the unit of the values. Not part of `sum`.
    pub entropy_sum: Option<f64>,
    /// Per-row values (softmax: `rows * cols`), if asked for.
    pub values: Option<Vec<f32>>,
    /// Per-row argmax, if asked for and the operation has one.
    pub argmax: Option<Vec<u32>>,
    /// Per-row entropy of every row (ignored ones too), if asked for and the operation
    /// computes it.
    pub entropy: Option<Vec<f32>>,
}

impl Output {
    /// The value reduced over rows (`None` gives the sum, as the CLI reports it).
    pub fn reduce(&self, reduction: crate::Reduction) -> f64 {
        match reduction {
            crate::Reduction::Mean => self.sum / self.denominator,
            _ => self.sum,
        }
    }
}
