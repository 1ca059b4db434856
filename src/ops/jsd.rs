//! The generalized Jensen-Shannon divergence (shaders/jsd.wgsl): P and Q given as
//! probabilities or logits, logits at a temperature.

use super::RowJob;
use super::divergence::side_flags;
use crate::kernels::Kernel;
use crate::loss::Dist;

/// `β·KL(P‖M) + (1−β)·KL(Q‖M)` (forward KL at `β = 0`, reverse at `β = 1`), differentiable
/// in Q's logits.
pub(super) fn job<'a>(p: Dist<'a>, q: Dist<'a>, beta: f32, temperature: f32) -> RowJob<'a> {
    let mut job = RowJob::new(Kernel::Jsd, *p.batch());
    job.b = Some(*q.batch());
    job.params.flags = side_flags(&p, Some(&q));
    job.params.alpha = beta;
    job.params.temperature = temperature;
    job.params.inv_temperature = 1.0 / temperature;
    if q.is_logits() {
        job.grad_of = 2;
    }
    job
}
