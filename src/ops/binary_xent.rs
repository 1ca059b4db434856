//! Binary cross-entropy summed over each row's columns (shaders/binary_xent.wgsl).

use super::RowJob;
use crate::kernels::{Kernel, flags};
use crate::loss::{Batch, Dist};

/// From probabilities (logs clamped at −100) or logits (stable form).
pub(super) fn job<'a>(input: Dist<'a>, target: Batch<'a>) -> RowJob<'a> {
    let mut job = RowJob::new(Kernel::BinaryXent, *input.batch());
    job.b = Some(target);
    if input.is_logits() {
        job.params.flags = flags::P_LOGITS;
        job.grad_of = 1;
    }
    job
}
