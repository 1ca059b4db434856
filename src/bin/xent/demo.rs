//! `xent generate` writes a synthetic prediction set; `xent demo` writes one, evaluates it
//! with `ce` on the default adapter and on the f64 reference, and compares the two.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use half::f16;
use serde_json::{Value, json};
use xent::npy::NpyWriter;

use crate::eval::{Input, Job};
use crate::{Base, Common, Device, Failure, Reduction};
use xent::Op;

#[derive(Args)]
pub struct GenerateArgs {
    /// Rows (predictions).
    #[arg(long, allow_negative_numbers = true)]
    rows: u64,
    /// Columns (classes).
    #[arg(long, allow_negative_numbers = true)]
    cols: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    seed: u64,
    /// Element type of the logits.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    dtype: Precision,
    /// Where to write the logits, [rows, cols].
    #[arg(long, value_name = "L.npy")]
    logits: PathBuf,
    /// Where to write the labels, [rows] <i8.
    #[arg(long, value_name = "Y.npy")]
    labels: PathBuf,
}

impl GenerateArgs {
    /// The files written, with their flags.
    pub fn outputs(&self) -> [crate::paths::Flagged<'_>; 2] {
        [("--logits", &self.logits), ("--labels", &self.labels)]
    }
}

#[derive(Args)]
pub struct DemoArgs {
    /// Rows (predictions).
    #[arg(long, default_value_t = 20_000, allow_negative_numbers = true)]
    rows: u64,
    /// Columns (classes).
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true)]
    cols: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    seed: u64,
    /// Keep the generated files in this directory (default: a temporary one, removed).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The JSON line even when stdout is a terminal (else a summary for people there).
    #[arg(long)]
    json: bool,
    /// Where to run (checked against the f64 reference): auto takes a real GPU, else the CPU
    /// engine; gpu the best adapter, a software one included; cpu the CPU engine.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    F16,
}

/// xorshift64*: fast, seeded, good enough for synthetic logits.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Writes `rows` predictions over `cols` classes: logits uniform in [-3, 3) plus 4 on the
/// label, so the loss is well below ln(cols) and top-1 accuracy is high but not 1.
pub(crate) fn write_set(
    rows: u64,
    cols: u64,
    seed: u64,
    dtype: Precision,
    logits: &Path,
    labels: &Path,
) -> Result<(), Failure> {
    if rows == 0 || cols == 0 || cols > i32::MAX as u64 {
        return Err(Failure::input(format!("--rows and --cols must be positive (got {rows} x {cols})")));
    }
    let mut l = match dtype {
        Precision::F32 => NpyWriter::create(logits, &[rows, cols])?,
        Precision::F16 => NpyWriter::create_as::<f16>(logits, &[rows, cols])?,
    };
    let mut y = NpyWriter::create_as::<i64>(labels, &[rows])?;
    let mut rng = Rng::new(seed);
    let chunk = ((16u64 << 20) / (4 * cols)).max(1);
    let (mut row_values, mut half_values, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    // a chunk is one row at least: a very wide row may not fit in memory
    let values = usize::try_from(chunk.min(rows) * cols).unwrap_or(usize::MAX);
    reserve(&mut row_values, values, "generated logits")?;
    if dtype == Precision::F16 {
        reserve(&mut half_values, values, "half-precision logits")?;
    }
    for start in (0..rows).step_by(chunk as usize) {
        let n = chunk.min(rows - start);
        row_values.clear();
        ys.clear();
        for _ in 0..n {
            let label = rng.next() % cols;
            let first = row_values.len();
            row_values.extend((0..cols).map(|_| 3.0 * rng.unit()));
            row_values[first + label as usize] += 4.0;
            ys.push(label as i64);
        }
        match dtype {
            Precision::F32 => l.write(&row_values)?,
            Precision::F16 => {
                half_values.clear();
                half_values.extend(row_values.iter().map(|&v| f16::from_f32(v)));
                l.write_as(&half_values)?;
            }
        }
        y.write_as(&ys)?;
    }
    l.finish()?;
    y.finish()?;
    Ok(())
}

/// Room for `n` values in `v`, or a failure (status 1) when memory runs out.
fn reserve<T>(v: &mut Vec<T>, n: usize, what: &str) -> Result<(), Failure> {
    v.try_reserve_exact(n).map_err(|_| {
        let bytes = (n as u64).saturating_mul(size_of::<T>() as u64);
        Failure::machine(format!("cannot allocate {bytes} bytes of memory for the {what}"))
    })
}

pub fn generate(a: &GenerateArgs) -> Result<(), Failure> {
    write_set(a.rows, a.cols, a.seed, a.dtype, &a.logits, &a.labels)?;
    let bytes = std::fs::metadata(&a.logits).map(|m| m.len()).unwrap_or(0);
    crate::process::emit(
        json!({"command": "generate", "rows": a.rows, "cols": a.cols, "logits": a.logits, "labels": a.labels, "bytes": bytes}),
    )
}

fn ce(logits: &Path, labels: &Path, device: Device) -> Result<Value, Failure> {
    ce_with(logits, labels, device, false)
}

/// `ce` of a file set on the GPU with no progress bar (`xent bench --e2e`).
pub(crate) fn ce_quietly(logits: &Path, labels: &Path) -> Result<Value, Failure> {
    ce_with(logits, labels, Device::Gpu, true)
}

fn ce_with(logits: &Path, labels: &Path, device: Device, quiet: bool) -> Result<Value, Failure> {
    let common = Common { reduction: Reduction::Mean, device, base: Base::E, chunk_rows: None, quiet, json: true };
    let op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let (l, y) = (Input::floats("--logits", logits.to_path_buf())?, Input::labels("--labels", labels.to_path_buf())?);
    Job::new(op.into(), l, None, Some(y), Default::default(), common)?.run()
}

pub fn demo(a: &DemoArgs) -> Result<(), Failure> {
    let temp;
    let dir = match &a.dir {
        Some(d) => d.as_path(),
        None => {
            temp = crate::process::TempDir::new()?;
            temp.path()
        }
    };
    let (logits, labels) = (dir.join("logits.npy"), dir.join("labels.npy"));
    write_set(a.rows, a.cols, a.seed, Precision::F32, &logits, &labels)?;
    let gpu = ce(&logits, &labels, a.device)?;
    let cpu = ce(&logits, &labels, Device::Reference)?;
    let (g, c) = (gpu["value"].as_f64().unwrap_or(f64::NAN), cpu["value"].as_f64().unwrap_or(f64::NAN));
    let rel = ((g - c) / c).abs();
    let line = json!({
        "command": "demo",
        "rows": a.rows,
        "cols": a.cols,
        "reduction": "mean",
        "value": gpu["value"],
        "adapter": gpu["adapter"],
        "device": gpu["device"],
        "seconds": gpu["seconds"],
        "gbps": gpu["gbps"],
        "accuracy": gpu["accuracy"],
        "perplexity": gpu["perplexity"],
        "reference": cpu["value"],
        "reference_seconds": cpu["seconds"],
        "reference_gbps": cpu["gbps"],
        "relative_error": crate::eval::number(rel),
        "files": a.dir.as_ref().map(|_| json!([logits, labels])),
    });
    if crate::summary::for_people(a.json) {
        crate::process::emit(crate::summary::summary(&line))?;
    } else {
        crate::process::emit(line)?;
    }
    if rel.is_nan() || rel > 1e-5 {
        let device = gpu["device"].as_str().unwrap_or("device");
        return Err(Failure::machine(format!("the {device} mean {g} differs from the reference {c} by {rel:.2e}")));
    }
    Ok(())
}
