//! Row max/argmax and log-sum-exp (shaders/row_stats.wgsl): one online pass.

use super::RowJob;
use crate::kernels::Kernel;
use crate::loss::Batch;

/// Max and argmax of each row (argmax in `aux[2 row]`).
pub(super) fn row_max(logits: Batch) -> RowJob {
    RowJob { argmax: true, ..RowJob::new(Kernel::RowMax, logits) }
}

/// `log Σ_j exp(x_ij)` of each row.
pub(super) fn logsumexp(logits: Batch) -> RowJob {
    RowJob::new(Kernel::LogSumExp, logits)
}
