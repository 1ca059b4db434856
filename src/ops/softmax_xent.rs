//! Softmax cross-entropy from logits and integer labels (shaders/softmax_xent.wgsl),
//! with PyTorch's ignore index, class weights and label smoothing.

use super::RowJob;
use crate::kernels::{Kernel, flags};
use crate::loss::{Batch, CrossEntropyOptions, Labels};

/// Per-row loss, argmax (for accuracy) and weight `W[y]` (the mean's denominator).
pub(super) fn job<'a>(logits: Batch<'a>, labels: Labels<'a>, options: CrossEntropyOptions<'a>) -> RowJob<'a> {
    let mut job = RowJob::new(Kernel::SoftmaxXent, logits);
    job.labels = Some(labels);
    job.class_weights = options.class_weights;
    job.weighted = true;
    job.argmax = true;
    job.grad_of = 1;
    job.params.smoothing = options.label_smoothing;
    job.params.z_loss = options.z_loss;
    if let Some(i) = options.ignore_index {
        job.params.flags |= flags::IGNORE;
        // validated to fit i32 by Loss::validate
        job.params.ignore_index = i as i32;
    }
    if options.class_weights.is_some() {
        job.params.flags |= flags::WEIGHTS;
    }
    job
}
