//! Losses recorded on the caller's device, buffers and encoder.
//!
//! An app that already holds a `wgpu::Device` describes its inputs as buffer ranges with a
//! shape and dtype ([`DeviceLoss`]), says which results it wants and where (the per-row
//! values, the reduction over rows, its mean, the gradient of the mean or of the sum:
//! [`DeviceOutput`]), and [`Recorder::record`] appends the passes to its
//! `CommandEncoder`. Nothing is submitted, polled or read back: the app submits when it
//! likes and reads the results with [`Recorder::encode_results`] (the reduction, the status
//! and the report, decoded; a future that resolves when the app polls, or `read_blocking`),
//! or copies buffers out itself and reads them with [`crate::readback::read`].
//!
//! Every argument is checked before anything is recorded (usage flags, offsets, sizes,
//! shapes, options), so a bad argument is an [`Error`](crate::Error) naming the buffer and
//! the fix, never a panic or a wgpu validation error. Inputs larger than the adapter's binding limit are
//! split into row ranges inside the recorder.
//!
//! Aliasing: the per-row output and the reduction target must not overlap any input of
//! the same record. The recorder's own scratch buffers are reused from record to record;
//! wgpu orders the passes of one encoder and of successive submissions, so many records
//! may be queued before one submit.

mod blocks;
mod extras;
mod inputs;
mod linear;
mod recorder;
mod results;
mod validate;

pub(crate) use crate::ops::Strided;
pub(crate) use blocks::BlockSum;
pub use extras::{Baseline, RecordExtras};
pub use inputs::{
    DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, GradTarget, LabelType,
    REPORT_BYTES, Reduced,
};
pub use linear::{DEFAULT_LOGITS_BUDGET, budget_for_rows};
pub use recorder::Recorder;
pub use results::{PendingResults, RecordResults};
