//! What a caller hands the recorder: its buffers as typed ranges, the operation over them,
//! and where the results go.

use crate::error::{Error, Result};
use crate::loss::{DType, Reduction};
#[cfg(doc)]
use crate::op::Op;
use crate::op::Task;

/// A row-major `[rows, cols]` input of `dtype` starting `offset` bytes into `buffer`.
#[derive(Clone, Copy, Debug)]
pub struct DeviceBatch<'a> {
    /// The caller's buffer; it needs `BufferUsages::STORAGE`.
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start: a multiple of the element size.
    pub offset: u64,
    /// Rows of the batch.
    pub rows: u32,
    /// Columns (classes) of every row.
    pub cols: u32,
    /// Element type: f32, or f16 / bf16 widened exactly on load.
    pub dtype: DType,
}

/// The element type of [`DeviceLabels`]: what a `.npy` file of labels usually holds, read
/// on the device as it is (no conversion pass, no copy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LabelType {
    /// 32-bit signed integers, little-endian.
    #[default]
    I32,
    /// 64-bit signed integers, little-endian. A label outside the i32 range is reported as
    /// an out-of-range label of its row (it is never a valid class, nor an ignore index).
    I64,
    /// Bytes, 0 to 255. They are read in 4-byte words, so the buffer must hold the whole
    /// word that the last label is in.
    U8,
}

impl LabelType {
    /// Bytes per label: 4, 8 or 1.
    pub fn size(self) -> usize {
        match self {
            LabelType::I32 => 4,
            LabelType::I64 => 8,
            LabelType::U8 => 1,
        }
    }

    /// The type's name as NumPy spells it: `int32`, `int64`, `uint8`.
    pub fn name(self) -> &'static str {
        match self {
            LabelType::I32 => "int32",
            LabelType::I64 => "int64",
            LabelType::U8 => "uint8",
        }
    }
}

/// `rows` integer labels of `dtype` starting `offset` bytes into `buffer`: build it with
/// [`DeviceLabels::i32`], [`DeviceLabels::i64`] or [`DeviceLabels::u8`].
///
/// A label must be a class index in `[0, cols)` or the operation's ignore index; any other
/// value, an i64 beyond the i32 range included, is reported by the record's status as an
/// out-of-range label of its row ([`Error::Label`](crate::Error::Label)).
#[derive(Clone, Copy, Debug)]
pub struct DeviceLabels<'a> {
    /// The caller's buffer; it needs `BufferUsages::STORAGE`.
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start: a multiple of the label size ([`LabelType::size`]).
    pub offset: u64,
    /// The labels' element type.
    pub dtype: LabelType,
}

impl<'a> DeviceLabels<'a> {
    /// i32 labels from `offset` (a multiple of 4) in `buffer`.
    pub fn i32(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceLabels { buffer, offset, dtype: LabelType::I32 }
    }

    /// i64 labels from `offset` (a multiple of 8) in `buffer`.
    pub fn i64(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceLabels { buffer, offset, dtype: LabelType::I64 }
    }

    /// u8 labels from `offset` (any byte) in `buffer`; the buffer must hold the whole
    /// 4-byte word that the last label is in.
    pub fn u8(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceLabels { buffer, offset, dtype: LabelType::U8 }
    }
}

/// `cols` f32 class weights starting `offset` bytes into `buffer`.
#[derive(Clone, Copy, Debug)]
pub struct DeviceWeights<'a> {
    /// The caller's buffer; it needs `BufferUsages::STORAGE`.
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start: a multiple of the device's
    /// `min_storage_buffer_offset_alignment` (the weights are bound from there).
    pub offset: u64,
}

/// An operation over device buffers: `DeviceLoss::new(op, logits).with_labels(labels)`.
///
/// The semantics are those of [`Op`] (and of the command line's contract); every float
/// input of one operation has the same shape and dtype.
pub type DeviceLoss<'a> = Task<DeviceBatch<'a>, DeviceLabels<'a>, DeviceWeights<'a>>;

/// Where a record writes: any of the per-row values, the reduction over rows, its mean
/// and the gradient (softmax needs the per-row buffer: its rows of values are its result).
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceOutput<'a> {
    /// Per-row values, f32: `rows` of them (softmax: `rows * cols`), `STORAGE` usage.
    /// `None`: the recorder keeps them in scratch of its own (for the reduction).
    pub per_row: Option<&'a wgpu::Buffer>,
    /// Bytes from `per_row`'s start: a multiple of 4.
    pub per_row_offset: u64,
    /// The reduction over rows, [`Reduced::BYTES`] bytes (`COPY_DST` usage; not for softmax).
    pub reduced: Option<(&'a wgpu::Buffer, u64)>,
    /// The mean over rows as one f32 word, for the app's own shaders (`COPY_DST` usage;
    /// not for softmax): `sum / denominator` of [`Reduced`], NaN and infinities by IEEE
    /// division's rules, the quotient within WGSL's 2.5 ULP of the f32 division.
    pub mean: Option<(&'a wgpu::Buffer, u64)>,
    /// The gradient with respect to the logits, written in the same pass.
    pub grad: Option<DeviceGrad<'a>>,
    /// Cross-entropy with labels: each row's evaluation record, [`REPORT_BYTES`] a row from
    /// this offset (a multiple of 4; `STORAGE` usage), written in the same pass; read them
    /// back with [`Recorder::encode_results`](crate::Recorder::encode_results) and
    /// [`RecordResults::metrics`](crate::RecordResults::metrics), or decode a record with
    /// [`RowRecord::decode`](crate::metrics::RowRecord::decode).
    pub report: Option<(&'a wgpu::Buffer, u64)>,
}

/// Bytes of a row's evaluation record ([`DeviceOutput::report`]).
pub const REPORT_BYTES: u64 = 32;

impl<'a> DeviceOutput<'a> {
    /// Per-row values from the start of `per_row`; no reduction, no gradient.
    pub fn rows(per_row: &'a wgpu::Buffer) -> Self {
        DeviceOutput { per_row: Some(per_row), ..Self::default() }
    }

    /// The reduction over rows ([`Reduced`]) at `offset` in `buffer`; the per-row values
    /// stay in the recorder's scratch.
    pub fn reduced(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceOutput { reduced: Some((buffer, offset)), ..Self::default() }
    }

    /// The gradient alone: no per-row values, no reduction.
    pub fn grad_only(grad: DeviceGrad<'a>) -> Self {
        DeviceOutput { grad: Some(grad), ..Self::default() }
    }

    /// Also writes the per-row values from `offset` (a multiple of 4) in `buffer`.
    pub fn with_rows(self, buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceOutput { per_row: Some(buffer), per_row_offset: offset, ..self }
    }

    /// Also writes the reduction over rows at `offset` in `buffer`.
    pub fn with_reduced(self, buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceOutput { reduced: Some((buffer, offset)), ..self }
    }

    /// Also writes each row's evaluation record from `offset` in `buffer` (see
    /// [`DeviceOutput::report`]).
    pub fn with_report(self, buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceOutput { report: Some((buffer, offset)), ..self }
    }

    /// Also writes the mean over rows as one f32 word at `offset` (a multiple of 4) in `buffer`.
    pub fn with_mean(self, buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceOutput { mean: Some((buffer, offset)), ..self }
    }

    /// Also writes the gradient.
    pub fn with_grad(self, grad: DeviceGrad<'a>) -> Self {
        DeviceOutput { grad: Some(grad), ..self }
    }
}

/// The gradient d(loss)/d(logits), f32, `[rows, cols]`, written by the pass that
/// computes the loss (no second kernel, no second read of the data for the elementwise
/// losses). Which logits: cross-entropy's (with labels or probability targets), Q's in
/// KL (Q given as logits), entropy's, BCE's (given as logits) and the distillation
/// student's.
#[derive(Clone, Copy, Debug)]
pub struct DeviceGrad<'a> {
    /// A separate buffer, or over the logits.
    pub target: GradTarget<'a>,
    /// [`Reduction::Mean`]: the gradient of the mean over rows (divided by rows, or for
    /// cross-entropy with labels by Σ w_y over the rows not ignored, summed on the
    /// device); `Sum` and `None`: the gradient of the sum of the per-row values.
    pub reduction: Reduction,
    /// A factor on every element: the upstream gradient of the loss, usually 1.
    pub scale: f32,
}

impl<'a> DeviceGrad<'a> {
    /// The gradient of the mean over rows into `buffer` from `offset`.
    pub fn of_mean_into(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceGrad { target: GradTarget::Buffer { buffer, offset }, reduction: Reduction::Mean, scale: 1.0 }
    }

    /// The gradient of the sum over rows into `buffer` from `offset`.
    pub fn of_sum_into(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceGrad { reduction: Reduction::Sum, ..Self::of_mean_into(buffer, offset) }
    }

    /// The gradient of the mean over rows, written over the logits themselves.
    pub fn of_mean_in_place() -> Self {
        DeviceGrad { target: GradTarget::InPlace, reduction: Reduction::Mean, scale: 1.0 }
    }

    /// The gradient of the sum over rows, written over the logits themselves.
    pub fn of_sum_in_place() -> Self {
        DeviceGrad { reduction: Reduction::Sum, ..Self::of_mean_in_place() }
    }

    /// The gradients of a linear head's mean ([`Op::LinearCrossEntropy`]): of the hidden
    /// states, the weight and the bias, each where given (see [`GradTarget::Head`]).
    pub fn of_head_mean(
        hidden: Option<(&'a wgpu::Buffer, u64)>,
        weight: Option<(&'a wgpu::Buffer, u64)>,
        bias: Option<(&'a wgpu::Buffer, u64)>,
    ) -> Self {
        DeviceGrad { target: GradTarget::Head { hidden, weight, bias }, reduction: Reduction::Mean, scale: 1.0 }
    }

    /// The gradient of the mean into `buffer` from `offset`.
    #[deprecated(note = "the name hides the reduction: use `DeviceGrad::of_mean_into` (or `of_sum_into`)")]
    pub fn into_buffer(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        Self::of_mean_into(buffer, offset)
    }

    /// The gradient of the mean over the logits themselves.
    #[deprecated(note = "the name hides the reduction: use `DeviceGrad::of_mean_in_place` (or `of_sum_in_place`)")]
    pub fn in_place() -> Self {
        Self::of_mean_in_place()
    }
}

/// Where a gradient goes.
///
/// Aliasing rules: a separate range must be in a buffer that no input, label or class
/// weight of the record is in (wgpu cannot bind one buffer for reading and writing in a
/// dispatch) and must not overlap the per-row output or the reduction target. `InPlace`
/// overwrites the differentiated logits (f32 only); the record then reads them through
/// the gradient binding, so the loss is still that of the original logits, and the other
/// inputs must be in other buffers.
#[derive(Clone, Copy, Debug)]
pub enum GradTarget<'a> {
    /// `rows * cols` f32 from `offset`.
    Buffer {
        /// The caller's buffer; it needs `BufferUsages::STORAGE`.
        buffer: &'a wgpu::Buffer,
        /// Bytes from the buffer's start: a multiple of 4.
        offset: u64,
    },
    /// Over the logits.
    InPlace,
    /// The gradients of a linear head ([`Op::LinearCrossEntropy`]), f32, each where given:
    /// of the hidden states (`[rows, d]`), of the weight (`[classes, d]`) and of the bias
    /// (`classes`), as (buffer, byte offset, a multiple of 4). Each buffer needs
    /// `BufferUsages::STORAGE` and must hold no input of the record. Each gradient is
    /// written over what the range held, not added to it (within the record, `dW` and `db`
    /// sum over its chunks of rows: the first chunk writes, the next ones add).
    Head {
        /// d(loss)/dH.
        hidden: Option<(&'a wgpu::Buffer, u64)>,
        /// d(loss)/dW.
        weight: Option<(&'a wgpu::Buffer, u64)>,
        /// d(loss)/db.
        bias: Option<(&'a wgpu::Buffer, u64)>,
    },
}

/// The reduction over rows as written by a record: decode the bytes read back with
/// [`Reduced::from_bytes`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reduced {
    /// Σ of the per-row values (deterministic tree order).
    pub sum: f64,
    /// The mean's denominator: rows, or `Σ W[y]` over non-ignored rows for weighted CE.
    pub denominator: f64,
}

impl Reduced {
    /// Bytes of the reduction target: (sum bits, flags, denominator bits, flags) as u32.
    pub const BYTES: u64 = 16;

    /// Decodes the 16 bytes a record wrote (NaN and infinities come from the flag words).
    pub fn from_bytes(bytes: &[u8]) -> Result<Reduced> {
        let words: Vec<u32> = bytes
            .get(..16)
            .ok_or_else(|| Error::Readback(format!("{} bytes given, a reduction is 16", bytes.len())))?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Reduced {
            sum: crate::readback::flagged(words[0], words[1]),
            denominator: crate::readback::flagged(words[2], words[3]),
        })
    }

    /// `sum / denominator`: the `mean` reduction (NaN when every row is ignored).
    pub fn mean(&self) -> f64 {
        self.sum / self.denominator
    }
}
