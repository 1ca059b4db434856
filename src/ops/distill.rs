//! Knowledge-distillation loss (shaders/distill.wgsl).

use super::RowJob;
use crate::kernels::Kernel;
use crate::loss::{Batch, Labels};

/// `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·CE(s, y)` per row.
pub(super) fn job<'a>(
    student: Batch<'a>,
    teacher: Batch<'a>,
    labels: Labels<'a>,
    temperature: f32,
    alpha: f32,
) -> RowJob<'a> {
    let mut job = RowJob::new(Kernel::Distill, student);
    job.b = Some(teacher);
    job.labels = Some(labels);
    // (a subnormal temperature's inverse is over f32::MAX)
    job.params.inv_temperature = (1.0 / temperature).min(f32::MAX);
    job.params.temperature = temperature;
    job.params.alpha = alpha;
    job.grad_of = 1;
    job
}
