//! The fused gradient (`return_grad=True`): the gradient of `scale` times the sum of the
//! per-row values with respect to the input the operation differentiates
//! ([`xent::Op::grad_of`]), as the row kernel writes it in its pass. On the GPU it is
//! recorded through the library's embedding API (`Recorder::record` with a
//! [`DeviceGrad`]) a chunk of rows at a time, each chunk's inputs uploaded and its
//! gradient read back; on the CPU path it is the engine's (`Engine::gradient`).

use xent::wgpu;
use xent::wgpu::util::DeviceExt;
use xent::{
    Batch, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, Error, GradTarget, Loss,
    Reduction, Result, Status,
};

/// Bytes of one chunk's float input on the device.
const CHUNK_BYTES: u64 = 32 << 20;

/// The gradient of `scale · Σ_rows value` on `ctx`'s device, `[rows, cols]` f32.
pub(crate) fn gpu(ctx: &xent::Context, loss: &Loss, scale: f32) -> Result<Vec<f32>> {
    loss.validate()?;
    let (rows, cols) = (loss.primary().rows, loss.primary().cols);
    let limit = CHUNK_BYTES.min(ctx.device().limits().max_storage_buffer_binding_size);
    let step = ((limit / (4 * cols as u64)).max(1) as usize).min(rows.max(1));
    let mut grad = Vec::with_capacity(rows * cols);
    let mut start = 0;
    while start < rows {
        let n = step.min(rows - start);
        let part = chunk(ctx, loss, start, n, scale).map_err(|e| shift(e, start as u64))?;
        grad.extend(part);
        start += n;
    }
    Ok(grad)
}

/// Rows `start..start + n` of `batch`.
fn rows_of<'a>(batch: &Batch<'a>, start: usize, n: usize) -> Result<Batch<'a>> {
    let c = batch.cols;
    let data = match batch.data {
        xent::Floats::F32(v) => xent::Floats::F32(&v[start * c..(start + n) * c]),
        xent::Floats::F16(v) => xent::Floats::F16(&v[start * c..(start + n) * c]),
        xent::Floats::Bf16(v) => xent::Floats::Bf16(&v[start * c..(start + n) * c]),
    };
    Batch::new(data, n, c)
}

fn storage(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    // a 16-bit input of odd length padded to a whole word
    let mut padded;
    let contents = if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
        bytes
    } else {
        padded = bytes.to_vec();
        padded.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
        &padded
    };
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

fn chunk(ctx: &xent::Context, loss: &Loss, start: usize, n: usize, scale: f32) -> Result<Vec<f32>> {
    let device = ctx.device();
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let result = record_chunk(ctx, loss, start, n, scale);
    let oom = pollster::block_on(oom.pop());
    let validation = pollster::block_on(validation.pop());
    match validation.or(oom) {
        Some(e) => Err(Error::Gpu(e.to_string())),
        None => result,
    }
}

fn record_chunk(ctx: &xent::Context, loss: &Loss, start: usize, n: usize, scale: f32) -> Result<Vec<f32>> {
    let device = ctx.device();
    let first = rows_of(loss.primary(), start, n)?;
    let cols = first.cols;
    let upload = |b: &Batch, label| storage(device, label, b.data.bytes(0, b.data.len()));
    let a = upload(&first, "xent python a");
    let second = loss.inputs.second.map(|b| rows_of(&b, start, n)).transpose()?;
    let b = second.as_ref().map(|s| upload(s, "xent python b"));
    let labels: Option<Vec<i64>> = loss.inputs.labels.map(|y| (start..start + n).map(|i| y.get(i)).collect());
    let y = labels.as_ref().map(|v| storage(device, "xent python labels", bytemuck::cast_slice(v)));
    let w = loss.inputs.weights.map(|w| storage(device, "xent python weights", bytemuck::cast_slice(w)));
    let grad_bytes = (n * cols * 4) as u64;
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let g = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("xent python grad"),
        size: grad_bytes,
        usage,
        mapped_at_creation: false,
    });
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("xent python grad readback"),
        size: grad_bytes + Status::BYTES,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let batch =
        |buffer, b: &Batch| DeviceBatch { buffer, offset: 0, rows: n as u32, cols: cols as u32, dtype: b.data.dtype() };
    let mut dl = DeviceLoss::new(loss.op, batch(&a, &first));
    dl.softcap = loss.softcap;
    if let (Some(buf), Some(s)) = (&b, &second) {
        dl = dl.with_second(batch(buf, s));
    }
    if let Some(buf) = &y {
        dl = dl.with_labels(DeviceLabels::i64(buf, 0));
    }
    if let Some(buf) = &w {
        dl = dl.with_weights(DeviceWeights { buffer: buf, offset: 0 });
    }
    let target = GradTarget::Buffer { buffer: &g, offset: 0 };
    let out = DeviceOutput::grad_only(DeviceGrad { target, reduction: Reduction::Sum, scale });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    let recorder = ctx.recorder();
    recorder.clear_status(&mut encoder);
    recorder.record(&mut encoder, &dl, &out)?;
    encoder.copy_buffer_to_buffer(&g, 0, &read, 0, grad_bytes);
    encoder.copy_buffer_to_buffer(recorder.status(), 0, &read, grad_bytes, Status::BYTES);
    ctx.queue().submit([encoder.finish()]);
    let bytes = xent::readback::read_blocking(device, &read, 0..read.size())?;
    let (values, status) = bytes.split_at(grad_bytes as usize);
    Status::from_bytes(status)?.check(cols as u64)?;
    Ok(bytemuck::pod_collect_to_vec(values))
}

/// `e` with the row it names counted from the whole batch's first row.
fn shift(e: Error, start: u64) -> Error {
    match e {
        Error::Label { row, label, cols } => Error::Label { row: row + start, label, cols },
        Error::Value { row, detail } => Error::Value { row: row + start, detail },
        e => e,
    }
}

/// The same gradient on the CPU engine.
pub(crate) fn cpu(engine: &xent::cpu::Engine, loss: &Loss, scale: f32) -> Result<Vec<f32>> {
    let p = loss.primary();
    let n = p.rows * p.cols;
    let mut g = Vec::new();
    g.try_reserve_exact(n).map_err(|_| Error::HostMemory(format!("{n} floats of the gradient")))?;
    g.resize(n, 0.0);
    engine.gradient(loss, Reduction::Sum, scale, &mut g)?;
    Ok(g)
}
