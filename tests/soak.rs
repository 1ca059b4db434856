//! Ten thousand records on one recorder, alone in this test binary so that the process's
//! memory is this test's: after warm-up the recorder's scratch, wgpu's count of live
//! buffers and their bytes, and the resident memory stay flat.

mod common;

use common::{context, rng};
use wgpu::util::DeviceExt;
use xent::{
    DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, Op, Recorder, Reduced,
};

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

#[test]
fn soak_ten_thousand_records() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let (rows, cols) = (64usize, 32usize);
    let mut rng = rng(50);
    let logits = common::logits(&mut rng, rows * cols, 4.0);
    let mut labels = common::labels(&mut rng, rows, cols);
    labels[3] = -100;
    let weights = common::uniform(&mut rng, cols, 0.5, 2.0);
    let upload = |bytes: &[u8]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytes, usage: USAGE })
    };
    let (x, y, w) = (
        upload(bytemuck::cast_slice(&logits)),
        upload(bytemuck::cast_slice(&labels)),
        upload(bytemuck::cast_slice(&weights)),
    );
    let zeroed = |bytes: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: USAGE,
            mapped_at_creation: false,
        })
    };
    let (per_row, reduced, grad) = (zeroed(4 * rows as u64), zeroed(Reduced::BYTES), zeroed(4 * (rows * cols) as u64));
    let op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.1, z_loss: 0.0, entropy: false };
    let loss = DeviceLoss::new(
        op,
        DeviceBatch { buffer: &x, offset: 0, rows: rows as u32, cols: cols as u32, dtype: DType::F32 },
    )
    .with_labels(DeviceLabels::i32(&y, 0))
    .with_weights(DeviceWeights { buffer: &w, offset: 0 });
    let out = DeviceOutput::rows(&per_row).with_reduced(&reduced, 0).with_grad(DeviceGrad::of_mean_into(&grad, 0));
    let recorder = Recorder::new(device);
    let mut marks = Vec::new();
    for batch in 0..100 {
        let mut encoder = device.create_command_encoder(&Default::default());
        for _ in 0..100 {
            recorder.record(&mut encoder, &loss, &out).expect("record");
        }
        queue.submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        if batch == 10 || batch == 99 {
            let c = device.get_internal_counters();
            marks.push((recorder.scratch_bytes(), c.hal.buffers.read(), c.hal.buffer_memory.read(), resident_bytes()));
        }
    }
    let (warm, end) = (marks[0], marks[1]);
    eprintln!(
        "(scratch bytes, live buffers, buffer bytes, resident bytes) after 1,100 records {warm:?}, after 10,000 {end:?}"
    );
    assert_eq!(warm.0, end.0, "the recorder's scratch grew");
    assert!(end.1 <= warm.1, "live buffers grew: {} -> {}", warm.1, end.1);
    assert!(end.2 <= warm.2, "buffer memory grew: {} -> {}", warm.2, end.2);
    // 8,900 records: a leak of 1 KiB a record would be 8.7 MiB
    assert!(end.3 < warm.3 + (4 << 20), "resident memory grew: {} -> {} bytes", warm.3, end.3);

    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: Reduced::BYTES,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&reduced, 0, &staging, 0, Reduced::BYTES);
    queue.submit([encoder.finish()]);
    let bytes = xent::readback::read_blocking(device, &staging, 0..Reduced::BYTES).expect("readback");
    let r = Reduced::from_bytes(&bytes).expect("reduced");
    let host = xent::Loss::new(op, xent::Batch::new(&logits[..], rows, cols).expect("shape"))
        .with_labels(&labels[..])
        .with_weights(&weights[..]);
    let want = xent::reference::compute(&host, Default::default()).expect("reference");
    common::assert_scalar("mean after the soak", r.mean(), want.mean(), 1e-5, 1e-5);
}
