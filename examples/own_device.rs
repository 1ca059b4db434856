//! An app that owns its wgpu device records a cross-entropy loss on its own buffers,
//! inside its own encoder, after work of its own, and reads the result with a future.
//!
//! Run: `cargo run --example own_device`

use wgpu::util::DeviceExt;
use xent::{DType, DeviceBatch, DeviceLabels, DeviceLoss, DeviceOutput, Op, Recorder, Reduced};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The app's own device (any adapter; a software one on machines without a GPU).
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // The app's data, already on the GPU: 4 rows of 3 classes in the middle of a larger
    // buffer (at a bindable offset), and labels.
    let (rows, cols) = (4u32, 3u32);
    let logits: [f32; 12] = [2.0, 0.5, -1.0, 0.1, 0.2, 3.0, 1.0, 1.0, 1.0, -2.0, 4.0, 0.0];
    let labels: [i32; 4] = [0, 2, 1, 1];
    let offset = u64::from(device.limits().min_storage_buffer_offset_alignment);
    let mut bytes = vec![0u8; offset as usize];
    bytes.extend_from_slice(bytemuck::cast_slice(&logits));
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let logits_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("app logits"),
        contents: &bytes,
        usage,
    });
    let labels_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("app labels"),
        contents: bytemuck::cast_slice(&labels),
        usage,
    });
    let per_row = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app per-row loss"),
        size: 4 * u64::from(rows),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let reduced = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app loss"),
        size: Reduced::BYTES,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });

    // The app's frame: its own work, then the loss, then the copy of its results; one submit.
    let recorder = Recorder::new(&device);
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.clear_buffer(&per_row, 0, None);
    let ce = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let loss = DeviceLoss::new(ce, DeviceBatch { buffer: &logits_buf, offset, rows, cols, dtype: DType::F32 })
        .with_labels(DeviceLabels::i32(&labels_buf, 0));
    let out = DeviceOutput::rows(&per_row).with_reduced(&reduced, 0);
    // a fresh status, so that a bad row it names is of this record
    recorder.clear_status(&mut encoder);
    recorder.record(&mut encoder, &loss, &out)?;
    // the reduction and the status (the rows at fault: a label out of range gives NaN, not
    // an error, on the device), copied into a buffer the results own
    let pending = recorder.encode_results(&mut encoder, &loss, &out)?;
    queue.submit([encoder.finish()]);

    // The results as a future; the app polls its device as it always does.
    let results = pending.read();
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let results = pollster::block_on(results)?;
    results.check()?;
    let mean = results.mean().ok_or("no reduction")?;

    // The same loss on the f64 reference.
    let host = xent::Loss::new(ce, xent::Batch::new(&logits[..], rows as usize, cols as usize)?)
        .with_labels(xent::Labels::I32(&labels));
    let reference = xent::reference::compute(&host, Default::default())?.mean();
    println!("mean cross-entropy: {mean:.6} (reference {reference:.6})");
    if (mean - reference).abs() > 1e-5 {
        return Err(format!("GPU {mean} differs from the reference {reference}").into());
    }
    Ok(())
}
