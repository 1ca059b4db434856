//! KL of a diagonal Gaussian from the standard normal, the VAE loss
//! (shaders/gaussian_kl.wgsl).

use super::RowJob;
use crate::kernels::Kernel;
use crate::loss::Batch;

/// `−½ Σ_j (1 + logvar − μ² − exp(logvar))` per row.
pub(super) fn job<'a>(mean: Batch<'a>, logvar: Batch<'a>) -> RowJob<'a> {
    let mut job = RowJob::new(Kernel::GaussianKl, mean);
    job.b = Some(logvar);
    job
}
