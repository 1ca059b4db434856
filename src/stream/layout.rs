//! How a piece's rows sit in its device buffers ([`Layout`]), and the bytes uploaded into
//! them and read back out.

use half::{bf16, f16};

use super::RunOptions;
use crate::context::Context;
use crate::error::try_vec;
use crate::error::{Error, Result};
use crate::kernels::{AUX_WORDS, Kernel};
use crate::loss::{Batch, DType, Labels};
use crate::ops::RowJob;
use crate::plan;

/// Elements before a chunk's first row in its upload: the kernels read a row in octets
/// aligned to eight elements of the binding (shaders/common/row_reduce.wgsl), and where a
/// row has several lanes, which lane takes which element follows that alignment. Placing
/// row `start` where it lies in the whole batch (modulo 8) gives every chunking the same
/// lanes, so the same bits.
pub(super) fn lead_elements(start: usize, cols: usize) -> usize {
    (start * cols) % 8
}

/// Bytes of rows `start..start + n` of `batch` as `dtype` after `lead` zero elements,
/// padded to whole words.
pub(super) fn rows_bytes(batch: &Batch, dtype: DType, start: usize, n: usize, lead: usize) -> Result<Vec<u8>> {
    let (s, e) = (start * batch.cols, (start + n) * batch.cols);
    let len = ((lead + e - s) * dtype.size()).div_ceil(4) * 4;
    let mut bytes = try_vec(len, "an upload of rows")?;
    bytes.resize(lead * dtype.size(), 0);
    if batch.data.dtype() == dtype {
        bytes.extend_from_slice(batch.data.bytes(s, e));
    } else {
        match dtype {
            DType::F32 => bytes.extend((s..e).flat_map(|i| (batch.data.get(i) as f32).to_le_bytes())),
            DType::F16 => bytes.extend((s..e).flat_map(|i| f16::from_f64(batch.data.get(i)).to_le_bytes())),
            DType::Bf16 => bytes.extend((s..e).flat_map(|i| bf16::from_f64(batch.data.get(i)).to_le_bytes())),
        }
    }
    bytes.resize(len, 0);
    Ok(bytes)
}

/// Rows `start..start + n` of `batch` into `buffer` from its start, as [`rows_bytes`] lays
/// them out. Where the batch already holds `dtype` they are copied once: into the buffer
/// itself where it is mapped for writing (`MAP_WRITE` storage, on adapters whose memory
/// is the host's), else straight into the queue's staging memory (`write_buffer_with`),
/// never first into a vector of their own.
pub(super) fn upload_rows(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    buffer: &wgpu::Buffer,
    batch: &Batch,
    (dtype, start, n, lead): (DType, usize, usize, usize),
) -> Result<()> {
    let converted = (batch.data.dtype() != dtype).then(|| rows_bytes(batch, dtype, start, n, lead)).transpose()?;
    let data = match &converted {
        Some(bytes) => &bytes[..],
        None => batch.data.bytes(start * batch.cols, (start + n) * batch.cols),
    };
    let head = if converted.is_some() { 0 } else { lead * dtype.size() };
    let len = (head + data.len()).div_ceil(4) * 4;
    let Some(size) = wgpu::BufferSize::new(len as u64) else { return Ok(()) };
    if buffer.usage().contains(wgpu::BufferUsages::MAP_WRITE) {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.map_async(wgpu::MapMode::Write, ..size.get(), move |r| {
            let _ = tx.send(r);
        });
        // the slot's last piece is done (the stream waited for it), so the mapping needs no
        // wait for the piece still running in the other slot: poll without blocking
        let mapped = loop {
            device.poll(wgpu::PollType::Poll).map_err(|e| Error::Gpu(format!("mapping an upload: {e}")))?;
            match rx.try_recv() {
                Ok(r) => break r.map_err(|e| Error::Gpu(e.to_string())),
                Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::yield_now(),
                Err(e) => return Err(Error::Gpu(e.to_string())),
            }
        };
        let mut view =
            mapped.and_then(|()| buffer.get_mapped_range_mut(..size.get()).map_err(|e| Error::Gpu(e.to_string())))?;
        fill(view.slice(..), head, data);
        drop(view);
        buffer.unmap();
        return Ok(());
    }
    let mut view = queue
        .write_buffer_with(buffer, 0, size)
        .ok_or_else(|| Error::Gpu(format!("no staging memory for an upload of {len} bytes")))?;
    fill(view.slice(..), head, data);
    Ok(())
}

/// `head` zero bytes, `data`, then zeros to the end (at most 28 and 3 bytes).
fn fill(mut w: wgpu::WriteOnly<[u8]>, head: usize, data: &[u8]) {
    let zeros = [0u8; 32];
    let tail = w.len() - head - data.len();
    w.slice(..head).copy_from_slice(&zeros[..head]);
    w.slice(head..head + data.len()).copy_from_slice(data);
    w.slice(head + data.len()..).copy_from_slice(&zeros[..tail]);
}

/// Labels narrowed to i32; values that do not fit become `i32::MIN`, which is never in
/// range nor the ignore index, so the kernel reports the row.
pub(super) fn labels_bytes(labels: &Labels, start: usize, n: usize) -> Result<Vec<u8>> {
    let mut bytes = try_vec(4 * n, "an upload of labels")?;
    bytes.extend((start..start + n).flat_map(|i| i32::try_from(labels.get(i)).unwrap_or(i32::MIN).to_le_bytes()));
    Ok(bytes)
}

/// Every `step`-th little-endian word of `bytes`, through `f`.
pub(super) fn words<T>(bytes: &[u8], step: usize, what: &str, f: impl Fn(u32) -> T) -> Result<Vec<T>> {
    let mut v = try_vec(bytes.len() / 4 / step, what)?;
    v.extend(bytes.chunks_exact(4).step_by(step).map(|c| f(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))));
    Ok(v)
}

/// Bytes of a row's auxiliary record.
pub(super) const AUX_BYTES: u64 = 4 * AUX_WORDS as u64;

/// Row-kernel invocations of one piece at most on GL, where wgpu drives the device
/// through one context that a submission holds until the device is done with it, and a
/// thread that waits 6 s for it panics (wgpu-hal's GL backend): pieces of bounded work
/// keep every submission short (about a second on llvmpipe), so that jobs on other
/// threads get their turn. The bytes of a piece are bounded anyway (the chunk size); this
/// bounds the rows of narrow rows that take many lanes each.
const GL_PIECE_INVOCATIONS: u64 = 1 << 24;

/// Bytes a row of a job takes in each buffer of a piece.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(super) cols: u64,
    pub(super) dtype: DType,
    /// Each float input.
    pub(super) input: u64,
    pub(super) inputs: u64,
    pub(super) labels: u64,
    /// Per-row values (softmax: a row of them).
    pub(super) out: u64,
    /// Auxiliary records (argmax, weight, z term, entropy).
    pub(super) aux: u64,
    /// Values read back, then aux records (for their argmax and entropy).
    pub(super) values_back: u64,
    pub(super) aux_back: u64,
    /// Which words of the aux records read back are kept.
    pub(super) argmax_kept: bool,
    pub(super) entropy_kept: bool,
    /// The evaluation report's words (cross-entropy with labels).
    pub(super) report_kept: bool,
    pub(super) softmax: bool,
}

impl Layout {
    pub(crate) fn new(job: &RowJob, dtype: DType, options: &RunOptions) -> Layout {
        let cols = job.a.cols as u64;
        let input = cols * dtype.size() as u64;
        let softmax = job.writes_rows();
        let out = 4 * job.out_per_row;
        let (argmax_kept, entropy_kept) = (options.keep_argmax && job.argmax, options.keep_entropy && job.entropy);
        let report_kept = options.report && job.kernel == Kernel::SoftmaxXent;
        let aux = if job.uses_aux() || report_kept { AUX_BYTES } else { 0 };
        Layout {
            cols,
            dtype,
            input,
            inputs: if job.b.is_some() { 2 } else { 1 },
            labels: if job.labels.is_some() { 4 } else { 0 },
            out,
            aux,
            values_back: if softmax || options.keep_values { out } else { 0 },
            // whole aux records are copied back, and the words asked for kept
            aux_back: if argmax_kept || entropy_kept || report_kept { AUX_BYTES } else { 0 },
            argmax_kept,
            entropy_kept,
            report_kept,
            softmax,
        }
    }

    /// The most rows of one piece: every binding of a piece within the adapter's limit
    /// (with room for an incomplete block carried over), the piece's device bytes within
    /// the chunk size, and on GL its invocations within [`GL_PIECE_INVOCATIONS`].
    pub(crate) fn piece_rows(&self, ctx: &Context, rows: u64) -> Result<u64> {
        let (layout, limits) = (self, ctx.device.limits());
        let (align, max_binding) =
            (u64::from(limits.min_storage_buffer_offset_alignment), limits.max_storage_buffer_binding_size);
        let too_large = |need| {
            Error::TooLarge(format!(
                "a row of {} columns needs {need} bytes but the adapter binds at most {max_binding}",
                layout.cols
            ))
        };
        let by_input = plan::chunk_rows(rows, layout.input, max_binding, align, u64::MAX).map_err(too_large)?;
        // per-row outputs hold an incomplete block besides the piece's rows
        let per_row = layout.out.max(layout.aux);
        let room = max_binding.saturating_sub(layout.carry_rows() * per_row);
        let by_output = plan::chunk_rows(rows, per_row, room, align, u64::MAX).map_err(too_large)?;
        let by_memory = (ctx.chunk_bytes / layout.device_row_bytes()).max(1);
        let by_work = if ctx.adapter.get_info().backend == wgpu::Backend::Gl {
            let l = ctx.recorder.kernels().layout_for(rows, layout.cols);
            (GL_PIECE_INVOCATIONS / (u64::from(l.lanes) * u64::from(l.parts)).max(1)).max(1)
        } else {
            u64::MAX
        };
        Ok(by_input.min(by_output).min(by_memory).min(by_work))
    }

    /// Rows of an incomplete reduction block a piece takes over from the one before.
    pub(super) fn carry_rows(&self) -> u64 {
        if self.softmax { 0 } else { plan::REDUCE_BLOCK }
    }

    /// The bytes of a row on the device in one piece's buffers.
    pub(super) fn device_row_bytes(&self) -> u64 {
        (self.inputs * self.input + self.labels + self.out + self.aux + self.values_back + self.aux_back).max(1)
    }

    /// Where the aux records of a piece of `n` rows start in its readback.
    pub(super) fn aux_at(&self, n: u64) -> u64 {
        (self.values_back * n).next_multiple_of(8)
    }
}
