//! `xent bench --linear NxDxV`: the fused linear cross-entropy (loss and the gradients of
//! H, W and b) against the unfused path on the same adapter in the same run: xent's own
//! product writing all `[N, V]` logits, `ce` with its gradient over them, then the two
//! products of the backward. Wall clock around record, submit and wait (both paths alike);
//! GFLOP/s over `2·N·V·d` forward and twice that backward; the device memory each takes
//! beyond its inputs and outputs.

use serde_json::{Value, json};
use wgpu::util::DeviceExt;
use xent::{
    Context, DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, Op, Recorder,
};

use super::median;
use crate::Failure;
use crate::demo::Rng;

/// Parses `NxDxV`.
pub(super) fn parse(s: &str) -> Result<(u64, u64, u64), Failure> {
    let bad = || Failure::input(format!("--linear: {s:?} is not ROWSxDxCLASSES (e.g. 4096x256x32768)"));
    let v: Vec<u64> =
        s.split(['x', 'X']).map(|p| p.trim().parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    match v[..] {
        [n, d, k] if n > 0 && d > 0 && k > 0 && n * d < 1 << 31 && k * d < 1 << 31 => Ok((n, d, k)),
        _ => Err(bad()),
    }
}

/// The device buffers of one shape.
struct Buffers {
    h: wgpu::Buffer,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    y: wgpu::Buffer,
    outputs: [wgpu::Buffer; 4],
}

impl Buffers {
    fn new(device: &wgpu::Device, (n, d, k): (u64, u64, u64), dtype: DType) -> Buffers {
        let mut rng = Rng::new(n ^ d ^ k);
        let s = 2.0 / (d as f32).sqrt();
        let mut values = |count: u64, dtype: DType| -> Vec<u8> {
            let v: Vec<f32> = (0..count).map(|_| s * rng.unit()).collect();
            let mut bytes = match dtype {
                DType::F32 => bytemuck::cast_slice(&v).to_vec(),
                DType::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                DType::Bf16 => v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
            };
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
            bytes
        };
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let init = |contents: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents, usage })
        };
        let (h, w, b) = (init(&values(n * d, dtype)), init(&values(k * d, dtype)), init(&values(k, DType::F32)));
        let labels: Vec<i32> = (0..n).map(|i| ((i * 7919) % k) as i32).collect();
        let y = init(bytemuck::cast_slice(&labels));
        let out = |bytes: u64| empty(device, bytes, usage);
        let outputs = [out(4 * n), out(16), out(4 * n * d), out(4 * k * d)];
        Buffers { h, w, b, y, outputs }
    }
}

/// One line: the fused and the unfused path at `shape` in `dtype`.
pub(super) fn linear(ctx: &Context, shape: (u64, u64, u64), dtype: DType, iters: usize) -> Result<Value, Failure> {
    let (n, d, k) = shape;
    let device = ctx.device();
    let bufs = Buffers::new(device, shape, dtype);
    let batch = |buffer, rows: u64| DeviceBatch { buffer, offset: 0, rows: rows as u32, cols: d as u32, dtype };
    let loss = DeviceLoss::new(Op::LINEAR_CE, batch(&bufs.h, n))
        .with_second(batch(&bufs.w, k))
        .with_bias(DeviceWeights { buffer: &bufs.b, offset: 0 })
        .with_labels(DeviceLabels::i32(&bufs.y, 0));
    let [per_row, reduced, dh, dw] = &bufs.outputs;
    let grad = DeviceGrad::of_head_mean(Some((dh, 0)), Some((dw, 0)), None);
    let out = DeviceOutput::rows(per_row).with_reduced(reduced, 0).with_grad(grad);
    // one run, record to result
    let once = |record: &dyn Fn(&mut wgpu::CommandEncoder) -> xent::Result<()>| -> Result<f64, Failure> {
        let started = std::time::Instant::now();
        let mut encoder = device.create_command_encoder(&Default::default());
        record(&mut encoder)?;
        ctx.queue().submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Failure::machine(e.to_string()))?;
        Ok(started.elapsed().as_secs_f64())
    };
    let (fused, unfused) = (Recorder::new(device), Recorder::new(device));
    let fused_run = |e: &mut wgpu::CommandEncoder| fused.record(e, &loss, &out);
    once(&fused_run)?; // compiles and warms up
    let fused_outputs = read_all(ctx, &bufs.outputs)?;
    let logits_bytes = 4 * n * k;
    let logits = (logits_bytes <= device.limits().max_buffer_size)
        .then(|| empty(device, logits_bytes, wgpu::BufferUsages::STORAGE));
    let unfused_run = |e: &mut wgpu::CommandEncoder| match &logits {
        Some(logits) => unfused.record_linear_unfused(e, &loss, &out, logits),
        None => Ok(()),
    };
    let mut same = None;
    if logits.is_some() {
        once(&unfused_run)?;
        same = Some(read_all(ctx, &bufs.outputs)? == fused_outputs);
    }
    // the two alternate, run by run, so that a shared machine's drift falls on both
    let (mut fused_times, mut unfused_times) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        fused_times.push(once(&fused_run)?);
        if logits.is_some() {
            unfused_times.push(once(&unfused_run)?);
        }
    }
    let fused_seconds = median(&mut fused_times);
    let unfused_seconds = logits.as_ref().map(|_| median(&mut unfused_times));
    let unfused_bytes = logits.as_ref().map(|l| l.size() + unfused.scratch_bytes());
    let flops = 6.0 * (n * k * d) as f64;
    Ok(json!({
        "op": "linear-ce",
        "rows": n,
        "d": d,
        "classes": k,
        "dtype": match dtype { DType::F32 => "f32", DType::F16 => "f16", DType::Bf16 => "bf16" },
        "seconds": fused_seconds,
        // forward 2·N·V·d, backward (dH and dW) twice that
        "gflops": flops / fused_seconds / 1e9,
        "unfused_seconds": unfused_seconds,
        "unfused_gflops": unfused_seconds.map(|s| flops / s / 1e9),
        "fused_over_unfused": unfused_seconds.map(|s| fused_seconds / s),
        "extra_bytes": fused.scratch_bytes(),
        "unfused_extra_bytes": unfused_bytes,
        "logits_budget": fused.logits_budget(),
        // the two paths add the same terms in the same order
        "bit_identical": same,
        "timing": "wall clock around record, submit and wait",
        "adapter": ctx.adapter_label(),
    }))
}

fn empty(device: &wgpu::Device, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor { label: None, size, usage, mapped_at_creation: false })
}

/// The bytes of each of `buffers` (`COPY_SRC`), copied out and read back.
fn read_all(ctx: &Context, buffers: &[wgpu::Buffer]) -> Result<Vec<Vec<u8>>, Failure> {
    let device = ctx.device();
    let mut encoder = device.create_command_encoder(&Default::default());
    let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
    let copies: Vec<wgpu::Buffer> = buffers
        .iter()
        .map(|b| {
            let copy = empty(device, b.size(), usage);
            encoder.copy_buffer_to_buffer(b, 0, &copy, 0, b.size());
            copy
        })
        .collect();
    ctx.queue().submit([encoder.finish()]);
    copies.iter().map(|c| Ok(xent::readback::read_blocking(device, c, 0..c.size())?)).collect()
}

/// A table row for a linear line.
pub(super) fn table_row(v: &Value) -> String {
    let f = |key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let mib = |key: &str| f(key) / (1u64 << 20) as f64;
    format!(
        "linear-ce {}x{}x{} {}: fused {:.1} ms ({:.1} GFLOP/s, {:.0} MiB extra), unfused {:.1} ms ({:.1} GFLOP/s, \
         {:.0} MiB extra), fused/unfused {:.2}, bit-identical {}",
        v["rows"],
        v["d"],
        v["classes"],
        v["dtype"].as_str().unwrap_or(""),
        f("seconds") * 1e3,
        f("gflops"),
        mib("extra_bytes"),
        f("unfused_seconds") * 1e3,
        f("unfused_gflops"),
        mib("unfused_extra_bytes"),
        f("fused_over_unfused"),
        v["bit_identical"],
    )
}
