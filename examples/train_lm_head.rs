//! A small language-model head trained on the GPU with xent's fused linear cross-entropy.
//!
//! The hidden states `H [N, d]` stand for a frozen backbone's output; the head `W [V, d]`
//! and its bias `b [V]` are trained. Each step is one encoder and one submit: xent records
//! the loss of `H·Wᵀ + b` against the next tokens with the gradients `dW` and `db`, a chunk
//! of rows at a time within a logits budget far below `N·V` (the `[N, V]` logits never
//! exist), and the app's own kernel applies `W -= lr·dW`, `b -= lr·db`. The loop prints the
//! loss and fails unless it falls at every step.
//!
//! Run: `cargo run --example train_lm_head`

use rand::{Rng, SeedableRng};
use wgpu::util::DeviceExt;
use xent::{
    DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, Op, Recorder, Reduced,
};

const SHADER: &str = r#"
struct Step { n: u32, lr: f32 }
@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;

// param -= lr·grad, elementwise
@compute @workgroup_size(64)
fn sgd(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < step.n { param[id.x] -= step.lr * grad[id.x]; }
}
"#;

const TOKENS: usize = 4096;
const WIDTH: usize = 32;
const VOCABULARY: usize = 1000;
const STEPS: usize = 20;
const LEARNING_RATE: f32 = 30.0;
/// Chunks of 128 rows: 1/32 of the `[N, V]` logits at a time.
const CHUNK_ROWS: u64 = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // Tokens from a hidden head with noise: next token = argmax(W*·h + noise).
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let hidden: Vec<f32> = (0..TOKENS * WIDTH).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let truth: Vec<f32> = (0..VOCABULARY * WIDTH).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let labels: Vec<i32> = (0..TOKENS)
        .map(|n| {
            let h = &hidden[n * WIDTH..(n + 1) * WIDTH];
            let score = |v: usize| {
                h.iter().zip(&truth[v * WIDTH..(v + 1) * WIDTH]).map(|(a, b)| a * b).sum::<f32>()
                    + rng.random_range(-0.5f32..0.5)
            };
            let scores: Vec<f32> = (0..VOCABULARY).map(score).collect();
            (0..VOCABULARY).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap_or(0) as i32
        })
        .collect();

    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let init = |label, contents: &[u8], usage| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage })
    };
    let empty = |label, size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
    };
    let h_buf = init("hidden states", bytemuck::cast_slice(&hidden), storage);
    let w_buf = init("head weight", bytemuck::cast_slice(&vec![0.0f32; VOCABULARY * WIDTH]), storage);
    let b_buf = init("head bias", bytemuck::cast_slice(&vec![0.0f32; VOCABULARY]), storage);
    let y_buf = init("next tokens", bytemuck::cast_slice(&labels), storage);
    let dw_buf = empty("dW", (4 * VOCABULARY * WIDTH) as u64, storage);
    let db_buf = empty("db", (4 * VOCABULARY) as u64, storage);
    let loss_buf = empty("loss", Reduced::BYTES, storage);

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("sgd"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    let sgd = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("sgd"),
        layout: None,
        module: &module,
        entry_point: Some("sgd"),
        compilation_options: Default::default(),
        cache: None,
    });
    // one bind group per parameter: (W, dW) and (b, db)
    let update = |n: usize, param: &wgpu::Buffer, grad: &wgpu::Buffer| {
        let step =
            init("step", bytemuck::cast_slice(&[n as u32, LEARNING_RATE.to_bits()]), wgpu::BufferUsages::UNIFORM);
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &sgd.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: step.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: param.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: grad.as_entire_binding() },
            ],
        });
        (group, n.div_ceil(64) as u32)
    };
    let updates = [update(VOCABULARY * WIDTH, &w_buf, &dw_buf), update(VOCABULARY, &b_buf, &db_buf)];

    let recorder = Recorder::new(&device);
    recorder.set_logits_budget(xent::budget_for_rows(CHUNK_ROWS, VOCABULARY as u64));
    let batch = |buffer, rows: usize| DeviceBatch {
        buffer,
        offset: 0,
        rows: rows as u32,
        cols: WIDTH as u32,
        dtype: DType::F32,
    };
    let loss = DeviceLoss::new(Op::LINEAR_CE, batch(&h_buf, TOKENS))
        .with_second(batch(&w_buf, VOCABULARY))
        .with_bias(DeviceWeights { buffer: &b_buf, offset: 0 })
        .with_labels(DeviceLabels::i32(&y_buf, 0));
    // the mean loss, and the gradients of the mean with respect to W and b (not H: frozen)
    let grad = DeviceGrad::of_head_mean(None, Some((&dw_buf, 0)), Some((&db_buf, 0)));
    let out = DeviceOutput::reduced(&loss_buf, 0).with_grad(grad);

    let mut previous = f64::INFINITY;
    for step in 0..STEPS {
        let mut encoder = device.create_command_encoder(&Default::default());
        recorder.record(&mut encoder, &loss, &out)?;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&sgd);
            for (group, workgroups) in &updates {
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(*workgroups, 1, 1);
            }
        }
        // the mean and the status (a label out of range would be NaN; the status names its row)
        let pending = recorder.encode_results(&mut encoder, &loss, &out)?;
        queue.submit([encoder.finish()]);
        let results = pending.read_blocking(&device)?;
        results.check()?;
        let mean = results.mean().ok_or("no reduction")?;
        println!("step {step:2}: loss {mean:.4} (perplexity {:.1})", mean.exp());
        if mean.is_nan() || mean >= previous {
            return Err(format!("the loss did not fall at step {step}: {mean} after {previous}").into());
        }
        previous = mean;
    }
    println!(
        "the [{TOKENS}, {VOCABULARY}] logits never existed: {} bytes of logits at a time",
        recorder.logits_budget()
    );
    Ok(())
}
