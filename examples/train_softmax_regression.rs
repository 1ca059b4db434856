//! A tiny softmax-regression model trained on the GPU with xent's fused gradient.
//!
//! Each step is one encoder and one submit: the app's own forward kernel writes the
//! logits `Z = X·W`, xent records cross-entropy over them and overwrites them in place
//! with d(mean loss)/dZ, and the app's own update kernel applies `W -= lr·Xᵀ·dZ`. The
//! loss comes back through a future; the loop prints it and fails unless it falls at
//! every step.
//!
//! Run: `cargo run --example train_softmax_regression`

use rand::{Rng, SeedableRng};
use wgpu::util::DeviceExt;
use xent::{DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, Op, Recorder, Reduced};

const SHADER: &str = r#"
struct Dims { n: u32, d: u32, k: u32, lr: f32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;

// z[n, c] = Σ_j x[n, j]·w[j, c]
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= dims.n * dims.k { return; }
    let n = i / dims.k;
    let c = i % dims.k;
    var acc = 0.0;
    for (var j = 0u; j < dims.d; j++) { acc += x[n * dims.d + j] * w[j * dims.k + c]; }
    z[i] = acc;
}

// w[j, c] -= lr·Σ_n x[n, j]·g[n, c], with g the gradient xent wrote over z
@compute @workgroup_size(64)
fn update(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= dims.d * dims.k { return; }
    let j = i / dims.k;
    let c = i % dims.k;
    var acc = 0.0;
    for (var n = 0u; n < dims.n; n++) { acc += x[n * dims.d + j] * z[n * dims.k + c]; }
    w[i] -= dims.lr * acc;
}
"#;

const SAMPLES: usize = 2048;
const FEATURES: usize = 16;
const CLASSES: usize = 5;
const STEPS: usize = 30;
const LEARNING_RATE: f32 = 2.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // Data from a hidden linear model with noise: labels = argmax(X·W* + noise).
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let x: Vec<f32> = (0..SAMPLES * FEATURES).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let truth: Vec<f32> = (0..FEATURES * CLASSES).map(|_| rng.random_range(-2.0f32..2.0)).collect();
    let labels: Vec<i32> = (0..SAMPLES)
        .map(|n| {
            let score = |c: usize| {
                (0..FEATURES).map(|j| x[n * FEATURES + j] * truth[j * CLASSES + c]).sum::<f32>()
                    + rng.random_range(-0.5f32..0.5)
            };
            let scores: Vec<f32> = (0..CLASSES).map(score).collect();
            (0..CLASSES).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0) as i32
        })
        .collect();

    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let init = |label, contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
    };
    let dims: [u32; 4] = [SAMPLES as u32, FEATURES as u32, CLASSES as u32, LEARNING_RATE.to_bits()];
    let dims = init("dims", bytemuck::cast_slice(&dims), wgpu::BufferUsages::UNIFORM);
    let x_buf = init("features", bytemuck::cast_slice(&x), storage);
    let w_buf = init("weights", bytemuck::cast_slice(&vec![0.0f32; FEATURES * CLASSES]), storage);
    let y_buf = init("labels", bytemuck::cast_slice(&labels), storage);
    let empty = |label, size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    };
    let z_buf = empty("logits, then their gradient", (4 * SAMPLES * CLASSES) as u64, storage);
    let loss_buf = empty("loss", Reduced::BYTES, storage);

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("softmax regression"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let pipeline = |entry| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    };
    let (forward, update) = (pipeline("forward"), pipeline("update"));
    let group = |p: &wgpu::ComputePipeline| {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: dims.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: x_buf.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: w_buf.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: z_buf.as_entire_binding() },
            ],
        })
    };
    let (forward_group, update_group) = (group(&forward), group(&update));

    let recorder = Recorder::new(&device);
    let logits =
        DeviceBatch { buffer: &z_buf, offset: 0, rows: SAMPLES as u32, cols: CLASSES as u32, dtype: DType::F32 };
    let loss = DeviceLoss::new(
        Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false },
        logits,
    )
    .with_labels(DeviceLabels::i32(&y_buf, 0));
    // the loss of the logits, and the gradient of the mean written over them (the per-sample
    // losses are not wanted: the recorder keeps them in its scratch)
    let out = DeviceOutput::reduced(&loss_buf, 0).with_grad(DeviceGrad::of_mean_in_place());

    let mut previous = f64::INFINITY;
    for step in 0..STEPS {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&forward);
            pass.set_bind_group(0, &forward_group, &[]);
            pass.dispatch_workgroups((SAMPLES * CLASSES).div_ceil(64) as u32, 1, 1);
        }
        recorder.record(&mut encoder, &loss, &out)?;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&update);
            pass.set_bind_group(0, &update_group, &[]);
            pass.dispatch_workgroups((FEATURES * CLASSES).div_ceil(64) as u32, 1, 1);
        }
        // the mean and the status, copied out in the same submission
        let pending = recorder.encode_results(&mut encoder, &loss, &out)?;
        queue.submit([encoder.finish()]);

        // the future resolves once the app polls its device, as it would in its frame loop
        let results = pending.read();
        device.poll(wgpu::PollType::wait_indefinitely())?;
        let results = pollster::block_on(results)?;
        // a label out of range would be NaN here; the status names its row
        results.check()?;
        let mean = results.mean().ok_or("no reduction")?;
        println!("step {step:2}: loss {mean:.6}");
        if mean.is_nan() || mean >= previous {
            return Err(format!("the loss did not fall at step {step}: {previous} -> {mean}").into());
        }
        previous = mean;
    }
    if previous > 0.8 * (CLASSES as f64).ln() {
        return Err(format!("the loss barely fell: {previous}").into());
    }
    Ok(())
}
