//! `xent bench`: device time of every row kernel on a grid of shapes, against a copy of
//! the same input bytes on the same adapter (the roofline), against the simplest correct
//! kernel (one workgroup per row, two passes) and against the f64 CPU reference.
//!
//! Inputs are uploaded once; only the row kernels are timed (the reduction over rows is
//! a separate, tiny dispatch). Device time comes from timestamp queries around each pass
//! where the adapter has `TIMESTAMP_QUERY`, else from the wall clock around submit and
//! wait, and every line says which.

use std::time::Instant;

use clap::Args;
use half::f16;
use serde_json::{Value, json};
use wgpu::util::DeviceExt;
use xent::kernels::{Kernel, RowParams};
use xent::ops::{self, Bound, Dispatch, RowBindings};
use xent::plan;
use xent::{Batch, Context, DType, Dist, Floats, Labels, LogBase, Loss};

use crate::Failure;
use crate::demo::Rng;

#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as ROWSxCOLS, comma-separated (default: the grid).
    #[arg(long, value_delimiter = ',', value_name = "RxC")]
    shapes: Vec<String>,
    /// Operations (CLI names), comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_name = "OP")]
    ops: Vec<String>,
    /// Element types: f32, f16 (default: both).
    #[arg(long, value_delimiter = ',', value_name = "DTYPE")]
    dtypes: Vec<String>,
    /// Timed repetitions per kernel (the median is reported).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    iters: usize,
    /// A quick pass for CI: shapes divided by 64 in rows, one repetition.
    #[arg(long)]
    quick: bool,
    /// One JSON object per line and per measurement instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw GB/s against columns per operation, with the copy roofline, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
}

const DEFAULT_SHAPES: [(u64, u64); 5] = [(8192, 4096), (65536, 1000), (512, 65536), (1_048_576, 10), (64, 1_048_576)];
/// Words per row of the copy kernel.
const COPY_COLS: u64 = 1024;
const OPS: [&str; 8] = ["lse", "softmax", "ce", "kl", "entropy", "bce", "gaussian-kl", "distill"];

/// Host inputs of one shape and dtype, shared by every operation.
struct Data {
    rows: usize,
    cols: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    a16: Vec<f16>,
    b16: Vec<f16>,
    targets: Vec<f32>,
    targets16: Vec<f16>,
    labels: Vec<i32>,
}

impl Data {
    fn new(rows: usize, cols: usize, seed: u64) -> Data {
        let mut rng = Rng::new(seed);
        let n = rows * cols;
        let a: Vec<f32> = (0..n).map(|_| 4.0 * rng.unit()).collect();
        let b: Vec<f32> = (0..n).map(|_| 4.0 * rng.unit()).collect();
        let targets: Vec<f32> = (0..n).map(|_| 0.5 + 0.5 * rng.unit()).collect();
        let labels = (0..rows).map(|_| (rng.next() % cols as u64) as i32).collect();
        let half = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect();
        Data { rows, cols, a16: half(&a), b16: half(&b), targets16: half(&targets), a, b, targets, labels }
    }

    fn batch<'a>(&self, v32: &'a [f32], v16: &'a [f16], dtype: DType) -> Batch<'a> {
        let data = if dtype == DType::F16 { Floats::F16(v16) } else { Floats::F32(v32) };
        Batch { data, rows: self.rows, cols: self.cols }
    }

    /// The operation `op` over these inputs.
    fn loss(&self, op: &str, dtype: DType) -> Option<Loss<'_>> {
        let a = self.batch(&self.a, &self.a16, dtype);
        let b = self.batch(&self.b, &self.b16, dtype);
        let t = self.batch(&self.targets, &self.targets16, dtype);
        let y = Labels::I32(&self.labels);
        Some(match op {
            "lse" => Loss::LogSumExp { logits: a },
            "softmax" => Loss::Softmax { logits: a, temperature: 1.0, log: false },
            "ce" => Loss::CrossEntropy { logits: a, labels: y, options: Default::default() },
            "kl" => Loss::KlDiv { p: Dist::Logits(a), q: Dist::Logits(b) },
            "entropy" => Loss::Entropy { p: Dist::Logits(a) },
            "bce" => Loss::BinaryCrossEntropy { input: Dist::Logits(a), target: t },
            "gaussian-kl" => Loss::GaussianKl { mean: a, logvar: b },
            "distill" => Loss::Distill { student: a, teacher: b, labels: y, temperature: 2.0, alpha: 0.5 },
            _ => return None,
        })
    }
}

/// Device buffers of one job and the timing machinery of the adapter.
struct Bench<'c> {
    ctx: &'c Context,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    max_pieces: u32,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);

fn upload(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let mut padded = bytes.to_vec();
    // whole 16-byte vectors, as the library allocates: inputs are read as vec4
    padded.resize(bytes.len().max(16).div_ceil(16) * 16, 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &padded,
        usage: STORAGE | wgpu::BufferUsages::COPY_SRC,
    })
}

fn empty(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).div_ceil(16) * 16,
        usage: STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// The aligned binding of bytes `start..start + len` of `buffer`.
fn window(buffer: &wgpu::Buffer, start: u64, len: u64, elem: u64, align: u64) -> Bound<'_> {
    Bound { buffer, window: plan::window(start, len, elem, align, buffer.size()) }
}

/// One dispatch's inputs as device buffers: what a kernel reads and writes.
struct Job {
    kernel: Kernel,
    params: RowParams,
    dtype: DType,
    rows: u64,
    cols: u64,
    elem: u64,
    out_per_row: u64,
    a: wgpu::Buffer,
    b: Option<wgpu::Buffer>,
    labels: Option<wgpu::Buffer>,
    weights: wgpu::Buffer,
    out: wgpu::Buffer,
    aux: wgpu::Buffer,
    status: wgpu::Buffer,
    /// Where the copy kernel writes: the size of `a`.
    copy_out: wgpu::Buffer,
    /// Bytes a kernel must move at least: inputs read once plus outputs written.
    bytes: u64,
}

impl<'c> Bench<'c> {
    fn new(ctx: &'c Context) -> Bench<'c> {
        let d = ctx.device();
        let max_pieces = 64u32;
        let queries = d.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            let set = d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("xent bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * max_pieces,
            });
            let size = 16 * u64::from(max_pieces);
            let resolve = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent bench resolve"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent bench readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        Bench { ctx, queries, max_pieces }
    }

    fn timing(&self) -> &'static str {
        if self.queries.is_some() { "timestamp" } else { "wall" }
    }

    /// Uploads the inputs of `loss` once.
    fn job(&self, loss: &Loss, dtype: DType) -> Job {
        let d = self.ctx.device();
        let job = ops::job(loss, LogBase::Nats);
        let (rows, cols) = (job.a.rows as u64, job.a.cols as u64);
        let elem = dtype.size() as u64;
        let a = upload(d, "a", job.a.data.bytes(0, job.a.data.len()));
        let b = job.b.as_ref().map(|b| upload(d, "b", b.data.bytes(0, b.data.len())));
        let labels = job.labels.as_ref().map(|y| {
            let v: Vec<i32> = (0..y.len()).map(|i| y.get(i) as i32).collect();
            upload(d, "labels", bytemuck::cast_slice(&v))
        });
        let out_len = rows * job.out_per_row;
        let in_bytes =
            rows * cols * elem * (1 + u64::from(job.b.is_some())) + if job.labels.is_some() { 4 * rows } else { 0 };
        Job {
            kernel: job.kernel,
            params: job.params,
            dtype,
            rows,
            cols,
            elem,
            out_per_row: job.out_per_row,
            a,
            b,
            labels,
            weights: empty(d, "weights", 4),
            out: empty(d, "out", 4 * out_len),
            aux: empty(d, "aux", 8 * rows),
            status: upload(d, "status", bytemuck::cast_slice(&[u32::MAX; 2])),
            copy_out: empty(d, "copy", rows * cols * elem),
            bytes: in_bytes + 4 * out_len,
        }
    }

    /// Whether the copy kernel's output holds `job`'s input words (after a run of it): a
    /// roofline that skipped work would flatter every ratio.
    fn check_copy(&self, job: &Job) -> Result<(), Failure> {
        let d = self.ctx.device();
        let len = (job.rows * job.cols * job.elem / 4 / COPY_COLS).max(1) * 4 * COPY_COLS;
        let read = |buffer: &wgpu::Buffer| -> Result<Vec<u8>, Failure> {
            let staging = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent bench copy check"),
                size: len,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            });
            let mut encoder = d.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, len);
            self.ctx.queue().submit([encoder.finish()]);
            Ok(xent::readback::read_blocking(d, &staging, 0..len)?)
        };
        if read(&job.a)? != read(&job.copy_out)? {
            return Err(Failure::machine("the copy kernel's output differs from its input".to_string()));
        }
        Ok(())
    }

    /// Median device seconds of `kernel` over `job`'s rows, dispatched in pieces that fit
    /// the binding limit.
    fn time(&self, job: &Job, kernel: Kernel, iters: usize) -> Result<f64, Failure> {
        let d = self.ctx.device();
        let limits = d.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let (rows, cols, elem) = (job.rows, job.cols, job.elem);
        let copy = kernel == Kernel::Copy;
        // the copy runs over the input words as rows of COPY_COLS words (a tail under one
        // row is left out: at most 4 KiB)
        let (units, unit_bytes, unit_out) = if copy {
            ((rows * cols * elem / 4 / COPY_COLS).max(1), 4 * COPY_COLS, COPY_COLS)
        } else {
            (rows, cols * elem, job.out_per_row)
        };
        let row_bytes = unit_bytes.max(4 * unit_out);
        let per_piece = plan::chunk_rows(units, row_bytes, limits.max_storage_buffer_binding_size, align, u64::MAX)
            .map_err(|need| Failure::input(format!("one row needs {need} bytes, over the binding limit")))?;
        let pieces: Vec<(u64, u64)> = plan::chunks(units, per_piece).collect();
        if pieces.len() > self.max_pieces as usize {
            return Err(Failure::input(format!("{} pieces: too many for one timed run", pieces.len())));
        }
        let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let times = self.time_pieces(job, kernel, iters, &pieces, unit_bytes, unit_out);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Failure::machine(format!("benchmarking {}: {e}", kernel.entry())));
        }
        times
    }

    fn time_pieces(
        &self,
        job: &Job,
        kernel: Kernel,
        iters: usize,
        pieces: &[(u64, u64)],
        unit_bytes: u64,
        unit_out: u64,
    ) -> Result<f64, Failure> {
        let d = self.ctx.device();
        let align = u64::from(d.limits().min_storage_buffer_offset_alignment);
        let (cols, elem) = (job.cols, job.elem);
        let copy = kernel == Kernel::Copy;
        let win = |buf, start, len, e| window(buf, start, len, e, align);
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters.max(1) {
            let mut encoder = d.create_command_encoder(&Default::default());
            for (i, &(start, n)) in pieces.iter().enumerate() {
                let (a, out) = if copy {
                    let b = 4 * COPY_COLS;
                    (win(&job.a, start * b, n * b, 4), win(&job.copy_out, start * b, n * b, 4))
                } else {
                    let o = 4 * unit_out;
                    (win(&job.a, start * unit_bytes, n * unit_bytes, elem), win(&job.out, start * o, n * o, 4))
                };
                let bindings = RowBindings {
                    a,
                    b: match &job.b {
                        Some(b) if !copy => win(b, start * unit_bytes, n * unit_bytes, elem),
                        _ => win(&job.weights, 0, 4, 4),
                    },
                    labels: match &job.labels {
                        Some(y) if !copy => win(y, 4 * start, 4 * n, 4),
                        _ => win(&job.weights, 0, 4, 4),
                    },
                    class_weights: win(&job.weights, 0, 4, 4),
                    out,
                    aux: if copy { win(&job.aux, 0, 8, 4) } else { win(&job.aux, 8 * start, 8 * n, 4) },
                    status: &job.status,
                    grad: win(&job.aux, 0, 8, 4),
                };
                let dispatch = Dispatch {
                    kernel,
                    template: &job.params,
                    dtype: if copy { DType::F32 } else { job.dtype },
                    rows: n,
                    cols: if copy { COPY_COLS } else { cols },
                    row_offset: start,
                    grad: Default::default(),
                    grad_denominator: None,
                };
                let ts = self.queries.as_ref().map(|(set, _, _)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                });
                ops::encode_rows_timed(self.ctx.kernels(), &mut encoder, &dispatch, &bindings, ts)?;
            }
            let started = Instant::now();
            if let Some((set, resolve, read)) = &self.queries {
                let n = 2 * pieces.len() as u32;
                encoder.resolve_query_set(set, 0..n, resolve, 0);
                encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 8 * u64::from(n));
                self.ctx.queue().submit([encoder.finish()]);
                let bytes = xent::readback::read_blocking(d, read, 0..8 * u64::from(n))?;
                let ticks: &[u64] = bytemuck::cast_slice(&bytes);
                let period = f64::from(self.ctx.queue().get_timestamp_period());
                let total: u64 = ticks.chunks_exact(2).map(|p| p[1].saturating_sub(p[0])).sum();
                times.push(total as f64 * period * 1e-9);
            } else {
                let index = self.ctx.queue().submit([encoder.finish()]);
                d.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
                    .map_err(|e| Failure::machine(format!("waiting for the GPU: {e}")))?;
                times.push(started.elapsed().as_secs_f64());
            }
        }
        Ok(median(&mut times))
    }
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Seconds of the f64 reference over all rows, timed on at most about 4M elements and scaled.
fn reference_seconds(data: &Data, op: &str, dtype: DType) -> f64 {
    let sample_rows = ((1usize << 22) / data.cols).clamp(1, data.rows);
    let sample = Data {
        rows: sample_rows,
        cols: data.cols,
        a: data.a[..sample_rows * data.cols].to_vec(),
        b: data.b[..sample_rows * data.cols].to_vec(),
        a16: data.a16[..sample_rows * data.cols].to_vec(),
        b16: data.b16[..sample_rows * data.cols].to_vec(),
        targets: data.targets[..sample_rows * data.cols].to_vec(),
        targets16: data.targets16[..sample_rows * data.cols].to_vec(),
        labels: data.labels[..sample_rows].to_vec(),
    };
    let Some(loss) = sample.loss(op, dtype) else { return f64::NAN };
    let t = Instant::now();
    let _ = xent::reference::compute(&loss, LogBase::Nats);
    t.elapsed().as_secs_f64() * data.rows as f64 / sample_rows as f64
}

fn parse_shape(s: &str) -> Result<(u64, u64), Failure> {
    let bad = || Failure::input(format!("--shapes: {s:?} is not ROWSxCOLS (e.g. 8192x4096)"));
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (r, c) = (r.trim().parse::<u64>().map_err(|_| bad())?, c.trim().parse::<u64>().map_err(|_| bad())?);
    if r == 0 || c == 0 {
        return Err(bad());
    }
    Ok((r, c))
}

pub fn bench(args: &BenchArgs) -> Result<(), Failure> {
    let mut shapes = if args.shapes.is_empty() {
        DEFAULT_SHAPES.to_vec()
    } else {
        args.shapes.iter().map(|s| parse_shape(s)).collect::<Result<_, _>>()?
    };
    if args.quick {
        shapes.iter_mut().for_each(|(r, _)| *r = r.div_ceil(64));
    }
    let ops: Vec<&str> = if args.ops.is_empty() { OPS.to_vec() } else { args.ops.iter().map(String::as_str).collect() };
    if let Some(op) = ops.iter().find(|op| !OPS.contains(op)) {
        return Err(Failure::input(format!("--ops: unknown operation {op:?}; known: {}", OPS.join(", "))));
    }
    let dtypes: Vec<DType> = match &args.dtypes[..] {
        [] => vec![DType::F32, DType::F16],
        list => list
            .iter()
            .map(|d| match d.as_str() {
                "f32" => Ok(DType::F32),
                "f16" => Ok(DType::F16),
                other => Err(Failure::input(format!("--dtypes: {other:?} is not f32 or f16"))),
            })
            .collect::<Result<_, _>>()?,
    };
    let iters = if args.quick { 1 } else { args.iters.max(1) };
    let ctx = Context::new_blocking()?;
    let bench = Bench::new(&ctx);
    let adapter = ctx.adapter_label();
    if !args.json {
        println!("adapter: {adapter}; device time from {}; median of {iters}", bench.timing());
        println!(
            "{:<12} {:>8} {:>8} {:>5} {:>10} {:>8} {:>9} {:>9} {:>9}",
            "op", "rows", "cols", "dtype", "ms", "GB/s", "vs copy", "vs naive", "vs cpu"
        );
    }
    let mut lines = Vec::new();
    for &(rows, cols) in &shapes {
        let data = Data::new(rows as usize, cols as usize, rows ^ cols);
        for &dtype in &dtypes {
            let dname = if dtype == DType::F16 { "f16" } else { "f32" };
            // the roofline: a copy of the logits' bytes, warmed up first
            let Some(lse) = data.loss("lse", dtype) else { continue };
            let base = bench.job(&lse, dtype);
            bench.time(&base, Kernel::Copy, 1)?;
            bench.check_copy(&base)?;
            let naive = |kernel_job: &Job| -> Result<f64, Failure> {
                bench.time(kernel_job, Kernel::NaiveXent, 1)?;
                bench.time(kernel_job, Kernel::NaiveXent, iters)
            };
            for op in &ops {
                let Some(loss) = data.loss(op, dtype) else { continue };
                let job = bench.job(&loss, dtype);
                bench.time(&job, job.kernel, 1)?; // compile and warm up
                // the copy and the kernel alternate, run by run, so that the drift of a
                // shared machine falls on both sides of the ratio
                let (mut copies, mut runs) = (Vec::new(), Vec::new());
                for _ in 0..iters.max(1) {
                    copies.push(bench.time(&base, Kernel::Copy, 1)?);
                    runs.push(bench.time(&job, job.kernel, 1)?);
                }
                let (copy, seconds) = (median(&mut copies), median(&mut runs));
                // two-pass baseline for the ops it computes: lse, and ce with labels bound
                let naive_seconds = match *op {
                    "lse" => Some(naive(&job)?),
                    "ce" => {
                        let mut with_labels = bench.job(&loss, dtype);
                        with_labels.params.flags = xent::kernels::flags::HAS_B;
                        Some(naive(&with_labels)?)
                    }
                    _ => None,
                };
                // the copy moves the logits' bytes; ops with two float inputs read twice that
                let copy_seconds = copy * (job.bytes - 4 * job.rows * job.out_per_row) as f64
                    / (rows * cols * dtype.size() as u64) as f64;
                let cpu = reference_seconds(&data, op, dtype);
                let line = json!({
                    "op": op,
                    "rows": rows,
                    "cols": cols,
                    "dtype": dname,
                    "seconds": seconds,
                    "gbps": job.bytes as f64 / seconds / 1e9,
                    "bytes": job.bytes,
                    "copy_seconds": copy_seconds,
                    "copy_ratio": copy_seconds / seconds,
                    // the copy kernel's speed over the logits' bytes: the roofline of a read-once kernel
                    "copy_gbps": (rows * cols * dtype.size() as u64) as f64 / copy / 1e9,
                    "naive_ratio": naive_seconds.map(|n| n / seconds),
                    "cpu_ratio": cpu / seconds,
                    "timing": bench.timing(),
                    "adapter": adapter,
                });
                if args.json {
                    println!("{line}");
                } else {
                    println!("{}", table_row(&line));
                }
                lines.push(line);
            }
        }
    }
    if let Some(path) = &args.plot {
        plot(path, &lines, &adapter, bench.timing())
            .map_err(|e| Failure::input(format!("--plot {}: {e}", path.display())))?;
    }
    Ok(())
}

/// GB/s against columns (log scale), one line per operation and one panel per dtype,
/// with the copy kernel's speed over the same bytes as a dashed roofline.
fn plot(
    path: &std::path::Path,
    lines: &[Value],
    adapter: &str,
    timing: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let field = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let dtypes: Vec<&str> = ["f32", "f16"].into_iter().filter(|d| lines.iter().any(|l| l["dtype"] == *d)).collect();
    let root = SVGBackend::new(path, (640 * dtypes.len().max(1) as u32, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, dtypes.len().max(1)));
    for (panel, dtype) in panels.iter().zip(&dtypes) {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["dtype"] == *dtype).collect();
        let cols = |v: &Value| field(v, "cols");
        let (lo, hi) = mine.iter().fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(cols(v)), hi.max(cols(v))));
        let top = mine.iter().map(|v| field(v, "gbps").max(field(v, "copy_gbps"))).fold(0.0f64, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{dtype} on {adapter} ({timing} timing)"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((lo.min(hi) * 0.8..hi * 1.25).log_scale(), 0.0..top * 1.1)?;
        chart.configure_mesh().x_desc("columns").y_desc("GB/s").x_label_formatter(&|x| format!("{x:.0}")).draw()?;
        let mut ops: Vec<&str> = Vec::new();
        for op in mine.iter().filter_map(|v| v["op"].as_str()) {
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        let series = |op: Option<&str>, key: &str| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> =
                mine.iter().filter(|v| op.is_none_or(|o| v["op"] == o)).map(|v| (cols(v), field(v, key))).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts.dedup_by(|a, b| a.0 == b.0);
            pts
        };
        let roof = series(None, "copy_gbps");
        chart
            .draw_series(DashedLineSeries::new(roof, 6, 4, BLACK.stroke_width(2)))?
            .label("copy (roofline)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        for (i, op) in ops.iter().enumerate() {
            const COLORS: [RGBColor; 8] = [
                RGBColor(31, 119, 180),
                RGBColor(255, 127, 14),
                RGBColor(44, 160, 44),
                RGBColor(214, 39, 40),
                RGBColor(148, 103, 189),
                RGBColor(140, 86, 75),
                RGBColor(227, 119, 194),
                RGBColor(23, 190, 207),
            ];
            let color = COLORS[i % COLORS.len()];
            let pts = series(Some(op), "gbps");
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(*op)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn table_row(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    format!(
        "{:<12} {:>8} {:>8} {:>5} {:>10.3} {:>8.2} {:>9} {:>9} {:>9}",
        v["op"].as_str().unwrap_or(""),
        v["rows"],
        v["cols"],
        v["dtype"].as_str().unwrap_or(""),
        v["seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
        v["gbps"].as_f64().unwrap_or(f64::NAN),
        f("copy_ratio"),
        f("naive_ratio"),
        f("cpu_ratio"),
    )
}
