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
    /// The rows of the whole job this record is a piece of (unless set, the record's own):
    /// the row kernels' layout, split parts included, and the tuner's choice are those of
    /// a job of this many rows, so that every piece of a job runs the same layout and any
    /// chunking gives the same bits.
    pub job_rows: Option<u64>,
    /// Per-row auxiliary records from this offset, instead of the recorder's scratch: eight
    /// u32 words a row, `[argmax, weight bits, z-term bits, entropy bits]` and the report's
    /// (see `report`) (the weight of the
    /// row in the mean; cross-entropy's z-loss term; with cross-entropy's `entropy` option,
    /// the row's entropy of `softmax(logits)` as f32 bits, for every row, ignored ones too,
    /// in the unit of the values, NaN where the row holds NaN or `+inf` or is all `-inf`).
    /// With that option the z word of an ignored row is `-0.0`, which marks it out of the
    /// host path's sum of entropies.
    pub aux: Option<(&'a wgpu::Buffer, u64)>,
    /// Cross-entropy with labels: each row's evaluation report into words 4-7 of its aux
    /// record (the label's rank among the classes, `u32::MAX` on a NaN row; the bits of the
    /// top-1 confidence and of `Σ_j (p_j − [j = y])²`; the label), from the loss's own pass.
    pub report: bool,
    /// Status words of the caller's own, instead of [`Recorder::status`].
    pub status: Option<&'a wgpu::Buffer>,
    /// The unit of the values of the operations that take a log base.
    pub base: LogBase,
    /// A baseline kernel run on the operation's bindings instead of its own.
    pub baseline: Option<Baseline>,
    /// The gradient's mean divides by the f32 in the first word of this buffer (copied in
    /// on the device), not by a denominator of the record's own rows: the fused linear
    /// cross-entropy's row chunks share the denominator of all its rows.
    pub grad_denominator: Option<&'a wgpu::Buffer>,
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
