//! What the crate's own callers add to a record: the host path ([`crate::Stream`]) and
//! `xent bench` record through [`Recorder::record_with`](super::Recorder::record_with) into
//! buffers they own.

use crate::loss::LogBase;

/// What the crate's own callers add to a record.
#[doc(hidden)]
#[derive(Clone, Copy, Default)]
pub struct RecordExtras<'a> {
    /// The job row of the record's first row (rows in the status words count from it).
    pub first_row: u64,
    /// Per-row (argmax, weight) words from this offset, instead of the recorder's scratch.
    pub aux: Option<(&'a wgpu::Buffer, u64)>,
    /// Status words of the caller's own, instead of [`Recorder::status`].
    pub status: Option<&'a wgpu::Buffer>,
    /// The unit of the values of the operations that take a log base.
    pub base: LogBase,
    /// A baseline kernel run on the operation's bindings instead of its own.
    pub baseline: Option<Baseline>,
    /// Timestamps around the passes of each row range, and the queries the set holds:
    /// range `i` writes queries `2i` and `2i + 1`.
    pub timestamps: Option<(&'a wgpu::QuerySet, u32)>,
}

/// The kernels `xent bench` measures an operation against, on its bindings.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// A copy of the first input's words to the per-row output (bind them as a softmax's
    /// rows of f32 values): the memory roofline.
    Copy,
    /// The simplest correct kernel: one workgroup per row, two passes (lse, or
    /// cross-entropy where labels are bound).
    Naive,
}
