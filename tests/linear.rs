//! The fused linear cross-entropy (`Op::LinearCrossEntropy`) on the device against its f64
//! reference: per-row losses, the mean, and the gradients of H, W and b; chunked runs
//! against one chunk; the device memory it takes against its budget; its argument errors.

mod common;
#[path = "linear/engine.rs"]
mod engine;

use common::{assert_close, context, rng, uniform};
use half::{bf16, f16};
use rand::Rng;
use wgpu::util::DeviceExt;
use xent::reference::{HeadGradients, head_gradients};
use xent::{
    Batch, DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, Error, Labels, Loss,
    Op, Recorder, Reduced, Reduction,
};

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);
const IGNORE: i32 = -100;

/// One test on the device at a time: wgpu's GL backend gives up (a panic) on a context
/// that another thread holds for over a second, as these products can.
static DEVICE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    DEVICE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A head's inputs on the host, f32 (widened from `dtype` where it is 16-bit, so the
/// reference sees exactly what the device reads).
struct Head {
    n: usize,
    d: usize,
    v: usize,
    dtype: DType,
    hidden: Vec<f32>,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    labels: Vec<i32>,
}

impl Head {
    fn new(shape: (usize, usize, usize), dtype: DType, bias: bool, ignored: bool, seed: u64) -> Head {
        let (n, d, v) = shape;
        let mut r = rng(seed);
        // logits of order 1 whatever d: entries of 1/sqrt(d)
        let s = 2.0 / (d as f32).sqrt();
        let round = |x: Vec<f32>| match dtype {
            DType::F32 => x,
            DType::F16 => x.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
            DType::Bf16 => x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect(),
        };
        let hidden = round(uniform(&mut r, n * d, -s, s));
        let weight = round(uniform(&mut r, v * d, -s, s));
        let bias = bias.then(|| uniform(&mut r, v, -0.5, 0.5));
        let labels = (0..n).map(|i| if ignored && i % 3 == 1 { IGNORE } else { r.random_range(0..v as i32) }).collect();
        Head { n, d, v, dtype, hidden, weight, bias, labels }
    }

    fn loss(&self, op: Op, softcap: Option<f32>) -> Loss<'_> {
        let mut loss = Loss::new(op, Batch::new(&self.hidden[..], self.n, self.d).expect("hidden"))
            .with_second(Batch::new(&self.weight[..], self.v, self.d).expect("weight"))
            .with_labels(Labels::I32(&self.labels));
        if let Some(b) = &self.bias {
            loss = loss.with_bias(&b[..]);
        }
        loss.softcap = softcap;
        loss
    }
}

/// The bytes of `x` in `dtype`.
fn bytes_of(x: &[f32], dtype: DType) -> Vec<u8> {
    let mut b: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(x).to_vec(),
        DType::F16 => x.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        DType::Bf16 => x.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
    };
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

fn upload(device: &wgpu::Device, bytes: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytes, usage: USAGE })
}

/// A buffer of `bytes` filled with a pattern, so an unwritten output shows.
fn filled(device: &wgpu::Device, bytes: usize) -> wgpu::Buffer {
    upload(device, &vec![0xA5; bytes.div_ceil(4) * 4])
}

fn read(buffer: &wgpu::Buffer) -> Vec<f32> {
    let ctx = context().expect("context");
    read_on((ctx.device(), ctx.queue()), buffer)
}

/// `buffer`'s words, copied out on `device` and read back.
fn read_on((device, queue): (&wgpu::Device, &wgpu::Queue), buffer: &wgpu::Buffer) -> Vec<f32> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
    queue.submit([encoder.finish()]);
    let bytes = xent::readback::read_blocking(device, &staging, 0..buffer.size()).expect("read");
    bytemuck::pod_collect_to_vec(&bytes)
}

/// What a record gave.
struct Results {
    per_row: Vec<f32>,
    reduced: Reduced,
    grads: [Vec<f32>; 3],
}

/// Records `op` over `head` with every output and the gradients of the mean.
fn run(recorder: &Recorder, head: &Head, op: Op, softcap: Option<f32>) -> Results {
    let ctx = context().expect("context");
    run_on((ctx.device(), ctx.queue()), recorder, head, (op, softcap))
}

/// [`run`] on `device`.
fn run_on(
    gpu: (&wgpu::Device, &wgpu::Queue),
    recorder: &Recorder,
    head: &Head,
    (op, softcap): (Op, Option<f32>),
) -> Results {
    let device = gpu.0;
    let read = |b: &wgpu::Buffer| read_on(gpu, b);
    let (h, w) =
        (upload(device, &bytes_of(&head.hidden, head.dtype)), upload(device, &bytes_of(&head.weight, head.dtype)));
    let b = head.bias.as_ref().map(|b| upload(device, bytemuck::cast_slice(b)));
    let y = upload(device, bytemuck::cast_slice(&head.labels));
    let (n, d, v) = (head.n, head.d, head.v);
    let batch =
        |buffer, rows, cols| DeviceBatch { buffer, offset: 0, rows: rows as u32, cols: cols as u32, dtype: head.dtype };
    let mut loss =
        DeviceLoss::new(op, batch(&h, n, d)).with_second(batch(&w, v, d)).with_labels(DeviceLabels::i32(&y, 0));
    if let Some(b) = &b {
        loss = loss.with_bias(DeviceWeights { buffer: b, offset: 0 });
    }
    loss.softcap = softcap;
    let (per_row, reduced) = (filled(device, 4 * n), filled(device, 16));
    let (dh, dw, db) = (filled(device, 4 * n * d), filled(device, 4 * v * d), filled(device, 4 * v));
    let grad = DeviceGrad::of_head_mean(Some((&dh, 0)), Some((&dw, 0)), b.as_ref().map(|_| (&db, 0)));
    let out = DeviceOutput::rows(&per_row).with_reduced(&reduced, 0).with_grad(grad);
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &loss, &out).expect("record");
    gpu.1.submit([encoder.finish()]);
    let reduced_bytes: Vec<u8> = bytemuck::cast_slice(&read(&reduced)).to_vec();
    Results {
        per_row: read(&per_row),
        reduced: Reduced::from_bytes(&reduced_bytes).expect("reduced"),
        grads: [read(&dh), read(&dw), if b.is_some() { read(&db) } else { Vec::new() }],
    }
}

/// `|g − r| <= tol·(1 + max|r|)`: gradients are sums of many small terms of either sign, so
/// the bound is on the scale of the largest.
fn assert_grad(what: &str, gpu: &[f32], reference: &[f64], tol: f64) {
    let scale = reference.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    assert_close(what, gpu, reference, tol * scale.max(1e-30), 0.0);
}

fn check(head: &Head, op: Op, softcap: Option<f32>, recorder: &Recorder) {
    let what = format!("[{}, {}] x [{}, {}] {:?} {op:?} cap {softcap:?}", head.n, head.d, head.v, head.d, head.dtype);
    let got = run(recorder, head, op, softcap);
    let loss = head.loss(op, softcap);
    let reference = xent::reference::compute(&loss, Default::default()).expect("reference");
    // the logits are sums of d products in f32: an error of about d·2^-24 of Σ|h·w|
    let tol = 2e-6 * (head.d as f64).sqrt().max(1.0) * 4.0;
    assert_close(&format!("{what}: per-row"), &got.per_row, &reference.values, tol * 10.0, tol * 10.0);
    common::assert_scalar(&format!("{what}: mean"), got.reduced.mean(), reference.mean(), 1e-5, 1e-5);
    let HeadGradients { hidden, weight, bias } = head_gradients(&loss, Reduction::Mean).expect("gradients");
    assert_grad(&format!("{what}: dH"), &got.grads[0], &hidden, 1e-4);
    assert_grad(&format!("{what}: dW"), &got.grads[1], &weight, 1e-4);
    if head.bias.is_some() {
        assert_grad(&format!("{what}: db"), &got.grads[2], &bias, 1e-4);
    }
}

const OPTIONS: Op = Op::LinearCrossEntropy { ignore_index: Some(IGNORE as i64), label_smoothing: 0.1, z_loss: 1e-3 };

/// Every d, V and N the kernels must get right, against the reference: d ∈ {1, 3, 64, 257},
/// V ∈ {1, 3, 257, 50257}, N ∈ {1, 7, 70000 (small d)}.
#[test]
fn losses_and_gradients_match_the_reference() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let shapes = [(1, 1, 1), (7, 3, 3), (7, 64, 257), (1, 257, 3), (7, 257, 50257), (70000, 3, 257), (70000, 1, 3)];
    for (i, &shape) in shapes.iter().enumerate() {
        let plain = Head::new(shape, DType::F32, i % 2 == 0, false, 10 + i as u64);
        check(&plain, Op::LINEAR_CE, None, &recorder);
        let ignoring = Head::new(shape, DType::F32, i % 2 == 1, shape.0 > 1, 20 + i as u64);
        check(&ignoring, OPTIONS, None, &recorder);
    }
}

/// 16-bit hidden states and weights, soft-capping, a bias, ignored rows.
#[test]
fn half_precision_inputs_and_soft_capping() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    for (i, dtype) in [DType::F16, DType::Bf16].into_iter().enumerate() {
        for shape in [(7, 3, 257), (33, 65, 131)] {
            let head = Head::new(shape, dtype, true, true, 40 + i as u64);
            check(&head, OPTIONS, None, &recorder);
            check(&head, OPTIONS, Some(5.0), &recorder);
        }
    }
}

/// The device's gradients of the mean against central differences of the loss itself (the
/// f64 reference's mean, the inputs moved by ±ε), with an ignored row, smoothing, z-loss,
/// soft-capping and a bias.
#[test]
fn gradients_match_central_differences() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut head = Head::new((5, 3, 6), DType::F32, true, true, 5);
    let (n, d, v) = (head.n, head.d, head.v);
    let got = run(&recorder, &head, OPTIONS, Some(3.0));
    let mean = |head: &Head| {
        xent::reference::compute(&head.loss(OPTIONS, Some(3.0)), Default::default()).expect("reference").mean()
    };
    let eps = 1e-3f32;
    let mut check = |which: usize, len: usize, got: &[f32]| {
        let numeric: Vec<f64> = (0..len)
            .map(|i| {
                let x = get(&head, which, i);
                let (up, down) = (x + eps, x - eps);
                set(&mut head, which, i, up);
                let plus = mean(&head);
                set(&mut head, which, i, down);
                let minus = mean(&head);
                set(&mut head, which, i, x);
                // over the step the f32 inputs took
                (plus - minus) / (f64::from(up) - f64::from(down))
            })
            .collect();
        // the f32 gradient to 1e-4 of the largest element: a 1% error in any fails
        assert_grad(&format!("input {which}"), got, &numeric, 1e-4);
    };
    check(0, n * d, &got.grads[0]);
    check(1, v * d, &got.grads[1]);
    check(2, v, &got.grads[2]);
}

/// Input `which` (0: H, 1: W, 2: b), element `i`.
fn get(head: &Head, which: usize, i: usize) -> f32 {
    match which {
        0 => head.hidden[i],
        1 => head.weight[i],
        _ => head.bias.as_ref().expect("bias")[i],
    }
}

/// Sets input `which`, element `i`, to `x`.
fn set(head: &mut Head, which: usize, i: usize, x: f32) {
    match which {
        0 => head.hidden[i] = x,
        1 => head.weight[i] = x,
        _ => head.bias.as_mut().expect("bias")[i] = x,
    }
}

/// A run in many chunks (a budget of a few rows' logits) gives the same bits as one chunk:
/// losses, the reduction and every gradient, dW and db accumulated over chunks included.
#[test]
fn chunked_runs_are_bit_identical_to_one_chunk() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let head = Head::new((300, 40, 517), DType::F32, true, true, 7);
    let whole = Recorder::new(ctx.device());
    let one = run(&whole, &head, OPTIONS, Some(20.0));
    for rows in [1u64, 7, 128] {
        let chunked = Recorder::new(ctx.device());
        chunked.set_logits_budget(xent::budget_for_rows(rows, head.v as u64));
        let many = run(&chunked, &head, OPTIONS, Some(20.0));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one.per_row), bits(&many.per_row), "per-row, chunks of {rows}");
        assert_eq!(one.reduced, many.reduced, "reduction, chunks of {rows}");
        for (k, name) in ["dH", "dW", "db"].iter().enumerate() {
            assert_eq!(bits(&one.grads[k]), bits(&many.grads[k]), "{name}, chunks of {rows}");
        }
    }
    // and run after run
    let again = run(&whole, &head, OPTIONS, Some(20.0));
    assert_eq!(one.grads, again.grads);
}

/// On a device that binds 64 KiB at most, the weight (82 KB) is over one binding and a chunk
/// takes 31 rows: every product goes in pieces (dH through W's rows in several, each adding
/// onto the last), and every output is the same bits as on the adapter's own limits.
#[test]
fn small_bindings_give_the_same_bits() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let adapter = ctx.adapter();
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 64 << 10,
        min_storage_buffer_offset_alignment: 256.max(adapter.limits().min_storage_buffer_offset_alignment),
        ..adapter.limits()
    };
    let descriptor = wgpu::DeviceDescriptor {
        required_limits: limits,
        required_features: ctx.device().features(),
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&descriptor)).expect("a device of small bindings");
    let head = Head::new((100, 40, 517), DType::F32, true, true, 17);
    let small = run_on((&device, &queue), &Recorder::new(&device), &head, (OPTIONS, Some(15.0)));
    let own = run(&Recorder::new(ctx.device()), &head, OPTIONS, Some(15.0));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&small.per_row), bits(&own.per_row), "per-row");
    assert_eq!(small.reduced, own.reduced);
    for (k, name) in ["dH", "dW", "db"].iter().enumerate() {
        assert_eq!(bits(&small.grads[k]), bits(&own.grads[k]), "{name}");
    }
}

/// N·V·4 bytes of logits over 1 GiB (N = 8192, V = 50257, d = 32): wgpu's own count of
/// buffer memory grows by no more than the budget beyond the inputs and outputs.
#[test]
fn device_memory_stays_within_the_logits_budget() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let (n, d, v) = (8192usize, 32usize, 50257usize);
    assert!((n * v * 4) as u64 > 1 << 30);
    let head = Head::new((n, d, v), DType::F32, true, false, 99);
    let device = ctx.device();
    let recorder = Recorder::new(device);
    let budget = 32u64 << 20;
    recorder.set_logits_budget(budget);
    let memory = || device.get_internal_counters().hal.buffer_memory.read() as i64;
    let (h, w) =
        (upload(device, bytemuck::cast_slice(&head.hidden)), upload(device, bytemuck::cast_slice(&head.weight)));
    let b = upload(device, bytemuck::cast_slice(head.bias.as_deref().unwrap_or(&[])));
    let y = upload(device, bytemuck::cast_slice(&head.labels));
    let (per_row, reduced) = (filled(device, 4 * n), filled(device, 16));
    let (dh, dw, db) = (filled(device, 4 * n * d), filled(device, 4 * v * d), filled(device, 4 * v));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let before = memory();
    let batch =
        |buffer, rows, cols| DeviceBatch { buffer, offset: 0, rows: rows as u32, cols: cols as u32, dtype: DType::F32 };
    let loss = DeviceLoss::new(Op::LINEAR_CE, batch(&h, n, d))
        .with_second(batch(&w, v, d))
        .with_labels(DeviceLabels::i32(&y, 0))
        .with_bias(DeviceWeights { buffer: &b, offset: 0 });
    let grad = DeviceGrad::of_head_mean(Some((&dh, 0)), Some((&dw, 0)), Some((&db, 0)));
    let out = DeviceOutput::rows(&per_row).with_reduced(&reduced, 0).with_grad(grad);
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &loss, &out).expect("record");
    ctx.queue().submit([encoder.finish()]);
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let grown = memory() - before;
    eprintln!("buffer memory grew by {grown} bytes (budget {budget}); recorder scratch {}", recorder.scratch_bytes());
    assert!(grown <= budget as i64, "grew by {grown} bytes, over the budget {budget}");
    assert!(recorder.scratch_bytes() <= budget);
    // the first rows against the reference (the whole set would take the f64 path minutes)
    let rows = 5;
    let part = Head {
        n: rows,
        hidden: head.hidden[..rows * d].to_vec(),
        labels: head.labels[..rows].to_vec(),
        ..Head::new((1, 1, 1), DType::F32, false, false, 0)
    };
    let part = Head { d, v, weight: head.weight.clone(), bias: head.bias.clone(), ..part };
    let reference = xent::reference::compute(&part.loss(Op::LINEAR_CE, None), Default::default()).expect("reference");
    assert_close("first rows", &read(&per_row)[..rows], &reference.values, 1e-4, 1e-4);
    let reduced_bytes: Vec<u8> = bytemuck::cast_slice(&read(&reduced)).to_vec();
    assert!(Reduced::from_bytes(&reduced_bytes).expect("reduced").mean().is_finite());
}

/// Bad arguments are typed errors before anything is recorded; a bad label is the status's.
#[test]
fn bad_arguments_are_errors() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    let device = ctx.device();
    let recorder = Recorder::new(device);
    let head = Head::new((4, 3, 5), DType::F32, false, false, 3);
    let (h, w) =
        (upload(device, bytemuck::cast_slice(&head.hidden)), upload(device, bytemuck::cast_slice(&head.weight)));
    let y = upload(device, bytemuck::cast_slice(&[0i32, 9, 1, 2]));
    let batch = |buffer, rows, cols| DeviceBatch { buffer, offset: 0, rows, cols, dtype: DType::F32 };
    let loss = DeviceLoss::new(Op::LINEAR_CE, batch(&h, 4, 3))
        .with_second(batch(&w, 5, 3))
        .with_labels(DeviceLabels::i32(&y, 0));
    let per_row = filled(device, 16);
    // its pipelines built ahead, as for every op, and the same argument checks
    let prepared = recorder.prepare(&loss, &DeviceOutput::rows(&per_row));
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    pollster::block_on(prepared).expect("prepare");
    let mut encoder = device.create_command_encoder(&Default::default());
    // a weight of another width
    let wide = DeviceLoss { inputs: xent::Inputs { second: Some(batch(&w, 3, 5)), ..loss.inputs }, ..loss };
    assert!(matches!(recorder.record(&mut encoder, &wide, &DeviceOutput::rows(&per_row)), Err(Error::Shape { .. })));
    // the gradient of the hidden states into the hidden states' buffer
    let grad = DeviceGrad::of_head_mean(Some((&h, 0)), None, None);
    let e = recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row).with_grad(grad)).unwrap_err();
    assert!(matches!(e, Error::Binding { .. }), "{e}");
    // a row's logits over the budget
    recorder.set_logits_budget(8);
    let e = recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row)).unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    recorder.set_logits_budget(xent::DEFAULT_LOGITS_BUDGET);
    // label 9 of 5 classes: the status names row 1
    recorder.clear_status(&mut encoder);
    recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row)).expect("record");
    let status = copy_status(&recorder, encoder);
    assert!(matches!(status.check(5), Err(Error::Label { row: 1, label: None, cols: 5 })), "{status:?}");
}

fn copy_status(recorder: &Recorder, mut encoder: wgpu::CommandEncoder) -> xent::Status {
    let ctx = context().expect("context");
    let out = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 8,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_buffer_to_buffer(recorder.status(), 0, &out, 0, 8);
    ctx.queue().submit([encoder.finish()]);
    let bytes = xent::readback::read_blocking(ctx.device(), &out, 0..8).expect("read");
    xent::Status::from_bytes(&bytes).expect("status")
}

/// `Head::gradient` (the owned device's head, read back) against the reference, with a
/// bias, ignored rows and soft-capping, in f32 and f16.
#[test]
fn owned_head_gradients_match_the_reference() {
    let _device = one_at_a_time();
    let Some(ctx) = context() else { return };
    for (dtype, shape) in [(DType::F32, (33, 17, 301)), (DType::F16, (9, 64, 130))] {
        let head = Head::new(shape, dtype, true, true, 61);
        let (n, d, v) = shape;
        let halves = |x: &[f32]| x.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>();
        let (h16, w16) = (halves(&head.hidden), halves(&head.weight));
        let (hb, wb) = match dtype {
            DType::F16 => (Batch::new(&h16[..], n, d).unwrap(), Batch::new(&w16[..], v, d).unwrap()),
            _ => (Batch::new(&head.hidden[..], n, d).unwrap(), Batch::new(&head.weight[..], v, d).unwrap()),
        };
        let owned = ctx.head(OPTIONS, Some(5.0), &wb, head.bias.as_deref()).expect("head");
        let got = owned.gradient(&hb, &Labels::I32(&head.labels)).expect("gradient");
        let loss = head.loss(OPTIONS, Some(5.0));
        let HeadGradients { hidden, weight, bias } = head_gradients(&loss, Reduction::Mean).expect("gradients");
        assert_grad("dH", &got.hidden, &hidden, 1e-4);
        assert_grad("dW", &got.weight, &weight, 1e-4);
        assert_grad("db", got.bias.as_deref().expect("db"), &bias, 1e-4);
        let reference = xent::reference::compute(&loss, Default::default()).expect("reference");
        assert_close("per-row", &got.values, &reference.values, 1e-4, 1e-4);
    }
}
