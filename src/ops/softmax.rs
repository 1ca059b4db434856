//! Softmax and log-softmax with temperature (shaders/softmax.wgsl), `[rows, cols]` out.

use super::RowJob;
use crate::kernels::{Kernel, flags};
use crate::loss::Batch;

/// `softmax(x / temperature)` per row, or its log.
pub(super) fn job(logits: Batch, temperature: f32, log: bool) -> RowJob {
    let mut job = RowJob::new(Kernel::Softmax, logits);
    // (a subnormal temperature's inverse is over f32::MAX)
    job.params.inv_temperature = (1.0 / temperature).min(f32::MAX);
    job.params.flags = if log { flags::LOG } else { 0 };
    job.out_per_row = logits.cols as u64;
    job
}
