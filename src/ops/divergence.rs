//! KL divergence, cross-entropy with probability targets and entropy
//! (shaders/divergence.wgsl): `c_pp·Σ p log p − c_pq·Σ p log q` with P and Q given as
//! probabilities or logits.

use super::RowJob;
use crate::kernels::{Kernel, flags};
use crate::loss::{Batch, Dist};

pub(super) fn side_flags(p: &Dist, q: Option<&Dist>) -> u32 {
    let mut f = if p.is_logits() { flags::P_LOGITS } else { 0 };
    if let Some(q) = q {
        f |= flags::HAS_B;
        if q.is_logits() {
            f |= flags::Q_LOGITS;
        }
    }
    f
}

/// `KL(P‖Q) = Σ_j p_j (log p_j − log q_j)`.
pub(super) fn kl_div<'a>(p: Dist<'a>, q: Dist<'a>) -> RowJob<'a> {
    let mut job = RowJob::new(Kernel::Divergence, *p.batch());
    job.b = Some(*q.batch());
    job.params.flags = side_flags(&p, Some(&q)) | flags::TERM_PLOGP | flags::TERM_PLOGQ;
    if q.is_logits() {
        job.grad_of = 2;
    }
    job
}

/// `H(P, Q) = −Σ_j p_j log softmax(x)_j`: P the target probabilities, Q from logits.
pub(super) fn cross_entropy<'a>(target: Batch<'a>, logits: Batch<'a>) -> RowJob<'a> {
    let (p, q) = (Dist::Probs(target), Dist::Logits(logits));
    let mut job = RowJob::new(Kernel::Divergence, target);
    job.b = Some(logits);
    job.params.flags = side_flags(&p, Some(&q)) | flags::TERM_PLOGQ;
    job.grad_of = 2;
    job
}

/// `H(P) = −Σ_j p_j log p_j`.
pub(super) fn entropy(p: Dist) -> RowJob {
    let mut job = RowJob::new(Kernel::Divergence, *p.batch());
    job.params.flags = side_flags(&p, None) | flags::TERM_PLOGP | flags::NEGATE;
    if p.is_logits() {
        job.grad_of = 1;
    }
    job
}
