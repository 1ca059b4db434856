//! The `xent` command line: a thin layer over the library.
//!
//! `xent demo` evaluates a generated prediction set on the default adapter and checks
//! it against the f64 CPU reference; `xent info` lists the adapters wgpu finds.
//! Errors print one line on stderr: status 2 for bad input, 1 for the machine.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use xent::{Batch, Context, Labels, Loss, RunOptions};

#[derive(Parser)]
#[command(name = "xent", version, about = "GPU loss kernels: cross-entropy, KL, entropy and more on wgpu")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate cross-entropy on a generated prediction set, on the GPU and on the CPU reference.
    Demo {
        /// Rows (predictions).
        #[arg(long, default_value_t = 20_000)]
        rows: usize,
        /// Columns (classes).
        #[arg(long, default_value_t = 4096)]
        cols: usize,
        /// Seed of the generated data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the adapters wgpu finds, the one `auto` picks, its limits and features.
    Info {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A failure: its one-line message and exit status.
struct Failure(String, u8);

impl From<xent::Error> for Failure {
    fn from(e: xent::Error) -> Self {
        let code = if e.is_bad_input() { 2 } else { 1 };
        Failure(e.to_string(), code)
    }
}

fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first statement of main, before any thread exists. Mesa warns on
        // stderr without a runtime dir, and stderr carries only our messages.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { rows, cols, seed } => demo(rows, cols, seed),
        Command::Info { json } => info(json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("xent: {message}");
            ExitCode::from(code)
        }
    }
}

/// xorshift64*: fast, seeded, good enough for synthetic logits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn demo(rows: usize, cols: usize, seed: u64) -> Result<(), Failure> {
    if rows == 0 || cols == 0 || cols > i32::MAX as usize {
        return Err(Failure(format!("--rows and --cols must be positive (got {rows} x {cols})"), 2));
    }
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let labels: Vec<i32> = (0..rows).map(|_| (rng.next() % cols as u64) as i32).collect();
    // logits with a signal on the label, so the loss is not just ln(cols)
    let mut logits: Vec<f32> = (0..rows * cols).map(|_| 3.0 * rng.unit()).collect();
    for (r, &y) in labels.iter().enumerate() {
        logits[r * cols + y as usize] += 4.0;
    }
    let loss = Loss::CrossEntropy {
        logits: Batch::new(&logits[..], rows, cols)?,
        labels: Labels::I32(&labels),
        options: Default::default(),
    };
    let bytes = (rows * cols * 4 + rows * 4) as f64;

    let ctx = Context::new_blocking()?;
    ctx.compute(&loss, &RunOptions::default())?; // compile the pipelines outside the timing
    let t = Instant::now();
    let gpu = ctx.compute(&loss, &RunOptions::default())?;
    let gpu_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cpu = xent::reference::compute(&loss, Default::default())?;
    let cpu_s = t.elapsed().as_secs_f64();

    let (g, c) = (gpu.sum / gpu.denominator, cpu.mean());
    let rel = ((g - c) / c).abs();
    let line = json!({
        "command": "demo",
        "op": "ce",
        "rows": rows,
        "cols": cols,
        "reduction": "mean",
        "value": number(g),
        "reference": number(c),
        "relative_error": rel,
        "adapter": ctx.adapter_label(),
        "seconds": gpu_s,
        "gbps": bytes / gpu_s / 1e9,
        "cpu_seconds": cpu_s,
        "cpu_gbps": bytes / cpu_s / 1e9,
    });
    println!("{line}");
    if rel > 1e-4 || !g.is_finite() {
        return Err(Failure(format!("GPU mean {g} differs from the reference {c} by {rel:.2e}"), 1));
    }
    Ok(())
}

/// A JSON number, or the strings "inf", "-inf", "nan" for non-finite values.
fn number(v: f64) -> Value {
    if v.is_nan() {
        json!("nan")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(v)
    }
}

fn info(as_json: bool) -> Result<(), Failure> {
    let adapters: Vec<Value> = xent::context::adapters(None)
        .iter()
        .map(|a| {
            let i = a.get_info();
            json!({"name": i.name, "backend": format!("{:?}", i.backend), "type": format!("{:?}", i.device_type)})
        })
        .collect();
    let ctx = Context::new_blocking()?;
    let (l, f, i) = (ctx.device().limits(), ctx.device().features(), ctx.adapter().get_info());
    let picked = json!({
        "adapter": ctx.adapter_label(),
        "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
        "max_buffer_size": l.max_buffer_size,
        "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
        "min_storage_buffer_offset_alignment": l.min_storage_buffer_offset_alignment,
        "shader_f16": f.contains(wgpu::Features::SHADER_F16),
        "subgroups": f.contains(wgpu::Features::SUBGROUP),
        "subgroup_sizes": [i.subgroup_min_size, i.subgroup_max_size],
        "timestamp_query": f.contains(wgpu::Features::TIMESTAMP_QUERY),
    });
    if as_json {
        println!("{}", json!({"adapters": adapters, "auto": picked}));
        return Ok(());
    }
    println!("adapters:");
    for a in &adapters {
        println!("  {} ({}, {})", a["name"].as_str().unwrap_or(""), a["backend"], a["type"]);
    }
    println!("auto picks: {}", ctx.adapter_label());
    if let Value::Object(fields) = picked {
        for (k, v) in fields.iter().filter(|(k, _)| *k != "adapter") {
            println!("  {k}: {v}");
        }
    }
    Ok(())
}
