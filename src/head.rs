//! A linear head on the owned device ([`Context::head`]): its weight and bias uploaded
//! once, the hidden states fed a chunk of rows at a time through the fused linear
//! cross-entropy ([`Op::LinearCrossEntropy`]), each row's loss and evaluation record read
//! back. The command line's `linear-ce` streams a file of hidden states through it.

use crate::context::Context;
use crate::embed::{DeviceBatch, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, REPORT_BYTES};
use crate::error::{Error, Result};
use crate::loss::{Batch, DType, Labels};
use crate::metrics::RowEval;
use crate::op::Op;
use crate::readback;
use crate::status::Status;

/// A linear head's weight and bias on the device, ready for chunks of hidden states.
pub struct Head<'c> {
    ctx: &'c Context,
    op: Op,
    softcap: Option<f32>,
    weight: wgpu::Buffer,
    dtype: DType,
    bias: Option<wgpu::Buffer>,
    classes: u32,
    d: u32,
}

/// Per-row results of a chunk of rows.
#[derive(Clone, Debug, Default)]
pub struct HeadRows {
    /// Each row's loss (0 on ignored rows).
    pub values: Vec<f32>,
    /// Each row's evaluation record (`None`: ignored), where asked for; else empty.
    pub evals: Vec<Option<RowEval>>,
}

impl Context {
    /// Uploads a linear head: `weight` `[classes, d]` and an optional f32 `bias`, for `op`
    /// ([`Op::LinearCrossEntropy`]) with the logits soft-capped at `softcap` where given.
    /// A weight larger than a device buffer is [`Error::TooLarge`].
    pub fn head(&self, op: Op, softcap: Option<f32>, weight: &Batch, bias: Option<&[f32]>) -> Result<Head<'_>> {
        // the options and the weight's and bias's shapes, checked as for a job of one row
        let probe = crate::Loss::new(op, Batch { rows: 1, ..*weight }).with_second(*weight);
        let probe = if let Some(b) = bias { probe.with_bias(b) } else { probe };
        let mut probe = probe.with_labels(&[0i32][..]);
        probe.softcap = softcap;
        probe.validate()?;
        let (classes, d) = (dim("classes", weight.rows)?, dim("d", weight.cols)?);
        let bytes = weight.data.len() as u64 * weight.data.dtype().size() as u64;
        let max = self.device.limits().max_buffer_size;
        if bytes > max {
            return Err(Error::TooLarge(format!(
                "the weight [{classes}, {d}] takes {bytes} bytes; this device's largest buffer is {max}: it must fit on the device"
            )));
        }
        self.scoped(|| {
            let weight_buffer = storage(&self.device, "xent head weight", weight.data.bytes(0, weight.data.len()))?;
            let bias = bias.map(|b| storage(&self.device, "xent head bias", bytemuck::cast_slice(b))).transpose()?;
            Ok(Head { ctx: self, op, softcap, weight: weight_buffer, dtype: weight.data.dtype(), bias, classes, d })
        })
    }
}

fn dim(name: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::TooLarge(format!("{name} = {n} is over 2^32")))
}

/// A storage buffer holding `bytes`, padded to a whole 4-byte word (a 16-bit tensor of odd
/// length, the padding zero as a new buffer is), written through its mapping at creation (no
/// copy of a large weight on the host).
fn storage(device: &wgpu::Device, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
    let size = (bytes.len() as u64).div_ceil(4).max(1) * 4;
    let usage = wgpu::BufferUsages::STORAGE;
    let buffer =
        device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: true });
    {
        let mut view = buffer.get_mapped_range_mut(..).map_err(|e| Error::Gpu(e.to_string()))?;
        view.slice(..bytes.len()).copy_from_slice(bytes);
    }
    buffer.unmap();
    Ok(buffer)
}

impl Head<'_> {
    /// The loss of each row of `hidden` (`[rows, d]`) against `labels`, and with `report`
    /// its evaluation record; `first_row` is the rows' place in the whole set (for errors).
    pub fn run(&self, hidden: &Batch, labels: &Labels, report: bool, first_row: u64) -> Result<HeadRows> {
        let rows = hidden.rows;
        if hidden.cols != self.d as usize || labels.len() != rows {
            return Err(Error::Shape {
                what: "hidden states",
                detail: format!("[{rows}, {}] with {} labels for a head of d = {}", hidden.cols, labels.len(), self.d),
            });
        }
        if rows == 0 {
            return Ok(HeadRows::default());
        }
        let ctx = self.ctx;
        let device = &ctx.device;
        let (out_bytes, report_bytes) = (4 * rows as u64, REPORT_BYTES * rows as u64);
        let labels32: Vec<i32> = (0..rows).map(|i| i32::try_from(labels.get(i)).unwrap_or(i32::MIN)).collect();
        let bytes = ctx.scoped(|| {
            let h = storage(device, "xent head hidden", hidden.data.bytes(0, hidden.data.len()))?;
            let y = storage(device, "xent head labels", bytemuck::cast_slice(&labels32))?;
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let per_row = crate::plan::buffer(device, "xent head losses", out_bytes, usage);
            let records = crate::plan::buffer(device, "xent head records", report_bytes.max(4), usage);
            let read = crate::plan::buffer(
                device,
                "xent head readback",
                out_bytes + report_bytes + Status::BYTES,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            let batch = |buffer, rows, cols, dtype| DeviceBatch { buffer, offset: 0, rows, cols, dtype };
            let mut loss = DeviceLoss::new(self.op, batch(&h, rows as u32, self.d, hidden.data.dtype()))
                .with_second(batch(&self.weight, self.classes, self.d, self.dtype))
                .with_labels(DeviceLabels::i32(&y, 0));
            if let Some(b) = &self.bias {
                loss = loss.with_bias(DeviceWeights { buffer: b, offset: 0 });
            }
            loss.softcap = self.softcap;
            let mut out = DeviceOutput::rows(&per_row);
            if report {
                out = out.with_report(&records, 0);
            }
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            let recorder = ctx.recorder();
            recorder.clear_status(&mut encoder);
            recorder.record(&mut encoder, &loss, &out)?;
            encoder.copy_buffer_to_buffer(&per_row, 0, &read, 0, out_bytes);
            if report {
                encoder.copy_buffer_to_buffer(&records, 0, &read, out_bytes, report_bytes);
            }
            encoder.copy_buffer_to_buffer(recorder.status(), 0, &read, out_bytes + report_bytes, Status::BYTES);
            ctx.queue.submit([encoder.finish()]);
            readback::read_blocking(device, &read, 0..read.size())
        })?;
        let (values, rest) = bytes.split_at(out_bytes as usize);
        let (records, status) = rest.split_at(report_bytes as usize);
        Status::from_bytes(status)?.check(u64::from(self.classes)).map_err(|e| shift(e, first_row))?;
        let ignore = self.op.ignore_index();
        let evals = if report {
            records
                .chunks_exact(REPORT_BYTES as usize)
                .map(|r| {
                    let words: [u32; 8] = std::array::from_fn(|i| {
                        u32::from_le_bytes([r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]])
                    });
                    RowEval::from_record(words, ignore)
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(HeadRows { values: bytemuck::pod_collect_to_vec(values), evals })
    }
}

/// The gradients of a linear head's mean loss, read back ([`Head::gradient`]).
#[derive(Clone, Debug, Default)]
pub struct HeadGradientsF32 {
    /// d(mean)/dH, `[rows, d]`.
    pub hidden: Vec<f32>,
    /// d(mean)/dW, `[classes, d]`.
    pub weight: Vec<f32>,
    /// d(mean)/db, `[classes]` (with a bias).
    pub bias: Option<Vec<f32>>,
    /// Each row's loss (0 on ignored rows).
    pub values: Vec<f32>,
}

impl Head<'_> {
    /// The gradients of the mean loss over every row of `hidden` (`[rows, d]`, all on the
    /// device at once) with respect to the hidden states, the weight and the bias, and each
    /// row's loss: the fused backward pass (`DeviceGrad::of_head_mean`), read back.
    pub fn gradient(&self, hidden: &Batch, labels: &Labels) -> Result<HeadGradientsF32> {
        let rows = hidden.rows;
        if hidden.cols != self.d as usize || labels.len() != rows || rows == 0 {
            return Err(Error::Shape {
                what: "hidden states",
                detail: format!("[{rows}, {}] with {} labels for a head of d = {}", hidden.cols, labels.len(), self.d),
            });
        }
        let (ctx, device) = (self.ctx, &self.ctx.device);
        let (d, v) = (u64::from(self.d), u64::from(self.classes));
        let sizes = [4 * rows as u64, 4 * rows as u64 * d, 4 * v * d, 4 * v];
        let labels32: Vec<i32> = (0..rows).map(|i| i32::try_from(labels.get(i)).unwrap_or(i32::MIN)).collect();
        let bytes = ctx.scoped(|| {
            let h = storage(device, "xent head hidden", hidden.data.bytes(0, hidden.data.len()))?;
            let y = storage(device, "xent head labels", bytemuck::cast_slice(&labels32))?;
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let outs: Vec<wgpu::Buffer> =
                sizes.iter().map(|&n| crate::plan::buffer(device, "xent head gradient", n, usage)).collect();
            let total: u64 = sizes.iter().sum::<u64>() + Status::BYTES;
            let read = crate::plan::buffer(
                device,
                "xent head readback",
                total,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            let batch = |buffer, rows, cols, dtype| DeviceBatch { buffer, offset: 0, rows, cols, dtype };
            let mut loss = DeviceLoss::new(self.op, batch(&h, rows as u32, self.d, hidden.data.dtype()))
                .with_second(batch(&self.weight, self.classes, self.d, self.dtype))
                .with_labels(DeviceLabels::i32(&y, 0));
            if let Some(b) = &self.bias {
                loss = loss.with_bias(DeviceWeights { buffer: b, offset: 0 });
            }
            loss.softcap = self.softcap;
            let db = self.bias.as_ref().map(|_| (&outs[3], 0));
            let grad = crate::DeviceGrad::of_head_mean(Some((&outs[1], 0)), Some((&outs[2], 0)), db);
            let out = DeviceOutput::rows(&outs[0]).with_grad(grad);
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            let recorder = ctx.recorder();
            recorder.clear_status(&mut encoder);
            recorder.record(&mut encoder, &loss, &out)?;
            let mut at = 0;
            for (buffer, &n) in outs.iter().zip(&sizes) {
                encoder.copy_buffer_to_buffer(buffer, 0, &read, at, n);
                at += n;
            }
            encoder.copy_buffer_to_buffer(recorder.status(), 0, &read, at, Status::BYTES);
            ctx.queue.submit([encoder.finish()]);
            readback::read_blocking(device, &read, 0..total)
        })?;
        let (parts, status) = bytes.split_at(sizes.iter().sum::<u64>() as usize);
        Status::from_bytes(status)?.check(v)?;
        let mut floats = sizes.iter().scan(0usize, |at, &n| {
            let part = &parts[*at..*at + n as usize];
            *at += n as usize;
            Some(bytemuck::pod_collect_to_vec::<u8, f32>(part))
        });
        let mut next = || floats.next().unwrap_or_default();
        let (values, hidden, weight, bias) = (next(), next(), next(), next());
        Ok(HeadGradientsF32 { hidden, weight, bias: self.bias.as_ref().map(|_| bias), values })
    }
}

/// `e` with the row it names counted from the whole set's first row.
fn shift(e: Error, first_row: u64) -> Error {
    match e {
        Error::Label { row, label, cols } => Error::Label { row: row + first_row, label, cols },
        Error::Value { row, detail } => Error::Value { row: row + first_row, detail },
        e => e,
    }
}
