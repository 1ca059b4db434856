//! `xent bench`: device time of every row kernel on a grid of shapes, against a copy of
//! the same input bytes on the same adapter (the roofline), against the simplest correct
//! kernel (one workgroup per row, two passes) and against the f64 CPU reference.
//!
//! Inputs are uploaded once; only the row kernels are timed (the reduction over rows is
//! a separate, tiny dispatch). Device time comes from timestamp queries around each pass
//! where the adapter has `TIMESTAMP_QUERY`, else from the wall clock around submit and
//! wait, and every line says which.

mod cpu;
mod data;
mod device;
mod e2e;
mod linear;
mod plot;
mod sweep;

use clap::Args;
use serde_json::{Value, json};
use xent::{Baseline, Context, DType, Op};

use crate::process::emit;
use crate::{Device, Failure};
use data::{Data, reference_seconds};
use device::{Bench, Job, median};

#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as ROWSxCOLS, comma-separated, or `lm` for today's language-model vocabularies
    /// (8192x32768, 4096x131072, 1024x262144) (default: the grid in docs/performance.md).
    #[arg(long, value_delimiter = ',', value_name = "RxC")]
    shapes: Vec<String>,
    /// Operations by name (`xent::Op`'s: the commands, and `row-max`, `ce-probs`),
    /// comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_name = "OP")]
    ops: Vec<String>,
    /// Element types: f32, f16 (default: both); bf16 too with --linear.
    #[arg(long, value_delimiter = ',', value_name = "DTYPE")]
    dtypes: Vec<String>,
    /// Timed repetitions per kernel (the median is reported).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    iters: usize,
    /// A quick pass for CI: shapes divided by 64 in rows, one repetition.
    #[arg(long)]
    quick: bool,
    /// Also time `ce` from a file end to end (read, upload, kernel, reduction; page cache
    /// warm) against its kernel alone, at every shape and dtype (rows `ce e2e`).
    #[arg(long)]
    e2e: bool,
    /// Also time every operation that reads logits with them soft-capped at C (rows
    /// `OP+softcap`), beside the operation without it.
    #[arg(long, value_name = "C")]
    softcap: Option<f32>,
    /// Also time `ce` with this z-loss λ (rows `ce+z-loss`), beside `ce` without it.
    #[arg(long, value_name = "λ")]
    z_loss: Option<f32>,
    /// Also time `ce` and `ce-probs` computing each row's entropy in the same pass (rows
    /// `ce+entropy`), beside them without it.
    #[arg(long)]
    entropy: bool,
    /// Also time `ce` computing the evaluation report (top-k rank, confidence, Brier term)
    /// in the same pass (rows `ce+report`), beside `ce` without it.
    #[arg(long)]
    report: bool,
    /// Time the fused linear cross-entropy (loss and the gradients of H and W) at these
    /// shapes, ROWSxDxCLASSES, against the unfused path (all logits, `ce`, the backward's
    /// products), in each of --dtypes; only these lines are measured.
    #[arg(long, value_delimiter = ',', value_name = "NxDxV")]
    linear: Vec<String>,
    /// One JSON object per line and per measurement instead of a table.
    #[arg(long)]
    json: bool,
    /// Time every operation under each candidate row layout around the rule's choice (one
    /// JSON line each, with its `layout`), then a line naming the fastest and
    /// `rule_over_best`; implies --json.
    #[arg(long)]
    sweep: bool,
    /// Leave out the f64 reference's time (`cpu_ratio` null), which large shapes make long.
    #[arg(long)]
    no_reference: bool,
    /// Also draw GB/s against columns per operation, with the copy roofline, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// What to time: auto takes a real GPU, else the CPU engine; gpu the best adapter, a
    /// software one included; cpu the CPU engine (wall time, against a CPU copy).
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
}

/// `--shapes lm`: tokens by vocabulary of today's language models.
const LM_SHAPES: [(u64, u64); 3] = [(8192, 32768), (4096, 131_072), (1024, 262_144)];
const DEFAULT_SHAPES: [(u64, u64); 5] = [(8192, 4096), (65536, 1000), (512, 65536), (1_048_576, 10), (64, 1_048_576)];

/// One line's operation, and the soft-capping of its logits where it is timed with one.
#[derive(Clone, Copy)]
struct Variant {
    op: Op,
    softcap: Option<f32>,
    /// Cross-entropy with labels computing the evaluation report on the way.
    report: bool,
}

/// The name of a line: the operation's, with the options timed beside its defaults.
fn label(v: Variant) -> String {
    let z = matches!(v.op, Op::CrossEntropy { z_loss, .. } if z_loss > 0.0);
    let (z, h) = (if z { "+z-loss" } else { "" }, if v.op.has_entropy() { "+entropy" } else { "" });
    let (c, r) = (if v.softcap.is_some() { "+softcap" } else { "" }, if v.report { "+report" } else { "" });
    format!("{}{z}{h}{c}{r}", v.op)
}

pub(crate) fn parse_shape(s: &str) -> Result<(u64, u64), Failure> {
    let bad = || Failure::input(format!("--shapes: {s:?} is not ROWSxCOLS (e.g. 8192x4096)"));
    let (r, c) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (r, c) = (r.trim().parse::<u64>().map_err(|_| bad())?, c.trim().parse::<u64>().map_err(|_| bad())?);
    if r == 0 || c == 0 {
        return Err(bad());
    }
    Ok((r, c))
}

/// What to measure: the arguments parsed and checked.
struct Grid {
    shapes: Vec<(u64, u64)>,
    ops: Vec<Variant>,
    dtypes: Vec<DType>,
    iters: usize,
}

impl Grid {
    fn new(args: &BenchArgs) -> Result<Grid, Failure> {
        let mut shapes = if args.shapes.is_empty() {
            DEFAULT_SHAPES.to_vec()
        } else {
            let mut shapes = Vec::new();
            for s in &args.shapes {
                match s.trim() {
                    "lm" => shapes.extend(LM_SHAPES),
                    s => shapes.push(parse_shape(s)?),
                }
            }
            shapes
        };
        if args.quick {
            shapes.iter_mut().for_each(|(r, _)| *r = r.div_ceil(64));
        }
        let ops: Vec<Op> = if args.ops.is_empty() {
            Op::ALL.to_vec()
        } else {
            let parse = |s: &String| s.parse::<Op>().map_err(|e| Failure::input(format!("--ops: {e}")));
            args.ops.iter().map(parse).collect::<Result<_, _>>()?
        };
        let mut ops = ops;
        if let Some(z_loss) = args.z_loss {
            let with_z = |op: &Op| match *op {
                Op::CrossEntropy { ignore_index, label_smoothing, .. } => {
                    Some(Op::CrossEntropy { ignore_index, label_smoothing, z_loss, entropy: false })
                }
                _ => None,
            };
            let extra: Vec<Op> = ops.iter().filter_map(with_z).collect();
            ops.extend(extra);
        }
        if args.entropy {
            let with_entropy = |op: &Op| {
                let mut op = *op;
                op.set("entropy", xent::OptionValue::Switch(true)).ok().map(|_| op)
            };
            let extra: Vec<Op> = ops.iter().filter_map(with_entropy).collect();
            ops.extend(extra);
        }
        let mut ops: Vec<Variant> = ops.into_iter().map(|op| Variant { op, softcap: None, report: false }).collect();
        if args.report {
            let ce = |v: &&Variant| matches!(v.op, Op::CrossEntropy { .. });
            let reporting: Vec<Variant> = ops.iter().filter(ce).map(|v| Variant { report: true, ..*v }).collect();
            ops.extend(reporting);
        }
        if let Some(c) = args.softcap {
            let capped: Vec<Variant> =
                ops.iter().filter(|v| v.op.takes_softcap()).map(|v| Variant { softcap: Some(c), ..*v }).collect();
            ops.extend(capped);
        }
        let dtypes: Vec<DType> = match &args.dtypes[..] {
            [] => vec![DType::F32, DType::F16],
            list => list
                .iter()
                .map(|d| match d.as_str() {
                    "f32" => Ok(DType::F32),
                    "f16" => Ok(DType::F16),
                    // the linear head's products read bf16; the row grid's files do not
                    "bf16" if !args.linear.is_empty() => Ok(DType::Bf16),
                    other => {
                        Err(Failure::input(format!("--dtypes: {other:?} is not f32 or f16 (or bf16, with --linear)")))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let iters = if args.quick { 1 } else { args.iters.max(1) };
        Ok(Grid { shapes, ops, dtypes, iters })
    }
}

pub fn bench(args: &BenchArgs) -> Result<(), Failure> {
    let grid = Grid::new(args)?;
    let iters = grid.iters;
    let ctx = match args.device {
        // the fused linear cross-entropy runs on an adapter only
        _ if !args.linear.is_empty() => Some(Context::new_blocking()?),
        Device::Gpu => Some(Context::new_blocking()?),
        Device::Cpu => None,
        Device::Auto => match crate::auto_backend() {
            xent::Backend::Gpu(c) => Some(c),
            xent::Backend::Cpu(_) => None,
        },
        Device::Reference => {
            return Err(Failure::input("--device reference: bench times the GPU or the CPU engine (gpu or cpu)"));
        }
    };
    let Some(ctx) = ctx else {
        if args.e2e {
            return Err(Failure::input("--e2e times the GPU path: time `xent ce --device cpu` on the files instead"));
        }
        let lines = cpu::bench(&grid, args.json)?;
        if let Some(path) = &args.plot {
            let adapter = xent::cpu::Engine::new().label();
            plot::plot(path, &lines, &adapter, "wall clock")
                .map_err(|e| Failure::input(format!("--plot {}: {e}", path.display())))?;
        }
        return Ok(());
    };
    if !args.linear.is_empty() {
        emit(format!("adapter: {}; wall clock; median of {iters}", ctx.adapter_label()))?;
        for shape in &args.linear {
            let shape = linear::parse(shape)?;
            for &dtype in &grid.dtypes {
                let line = linear::linear(&ctx, shape, dtype, iters)?;
                emit(if args.json { line.to_string() } else { linear::table_row(&line) })?;
            }
        }
        return Ok(());
    }
    let bench = Bench::new(&ctx);
    if args.sweep {
        // the tuner's choice beside the sweep's, made as `xent tune` makes it
        ctx.set_tune_ahead_of_time();
    }
    let adapter = ctx.adapter_label();
    let json_lines = args.json || args.sweep;
    if !json_lines {
        emit(format!("adapter: {adapter}; device time from {}; median of {iters}", bench.timing()))?;
        emit(format!(
            "{:<12} {:>8} {:>8} {:>5} {:>10} {:>8} {:>9} {:>9} {:>9}",
            "op", "rows", "cols", "dtype", "ms", "GB/s", "vs copy", "vs naive", "vs cpu"
        ))?;
    }
    let mut lines = Vec::new();
    for &(rows, cols) in &grid.shapes {
        let data = Data::new(rows as usize, cols as usize, rows ^ cols, grid.dtypes.contains(&DType::F16));
        for &dtype in &grid.dtypes {
            // the roofline: a copy of the logits' bytes, warmed up first
            let base = bench.job(&data.loss(Op::LogSumExp, dtype), dtype)?;
            bench.time(&base, Some(Baseline::Copy), 1)?;
            bench.check_copy(&base)?;
            // the copy's best layout: the device's roofline, not one layout's
            let copy = sweep::best_copy(&bench, &ctx, &base)?;
            let setup = Setup { bench: &bench, ctx: &ctx, data: &data, base: &base, copy };
            for &variant in &grid.ops {
                if args.sweep {
                    let job = setup.job(variant, dtype)?;
                    let tuned = setup.tuned(variant, dtype);
                    let line = |copy, seconds| setup.line(&job, variant, dtype, copy, seconds, (None, None), &adapter);
                    let mut out = |v: Value| emit(&v);
                    sweep::sweep(&bench, &ctx, (&job, &base, copy), tuned, iters, line, &mut out)?;
                    continue;
                }
                let line = measure(&setup, variant, dtype, iters, &adapter, !args.no_reference)?;
                if args.json {
                    emit(&line)?;
                } else {
                    emit(plot::table_row(&line))?;
                }
                lines.push(line);
            }
            if args.e2e {
                let ce = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
                let mut job = bench.job(&data.loss(ce, dtype), dtype)?;
                // `xent ce --labels` computes its evaluation report in the kernel's pass: the
                // kernel with it, then without
                let mut kernels = || {
                    job.report = true;
                    let reporting = bench.time(&job, None, 1)?;
                    job.report = false;
                    Ok((reporting, bench.time(&job, None, 1)?))
                };
                kernels()?; // compile and warm up
                let line = e2e::e2e(rows, cols, dtype, kernels, iters, ctx.reads_host_memory())?;
                emit(if args.json { line.to_string() } else { e2e::table_row(&line) })?;
            }
        }
    }
    if let Some(path) = &args.plot {
        plot::plot(path, &lines, &adapter, bench.timing())
            .map_err(|e| Failure::input(format!("--plot {}: {e}", path.display())))?;
    }
    Ok(())
}

/// What every line of one shape and dtype shares: the bench, the inputs, the copy's job and
/// its best layout.
struct Setup<'a> {
    bench: &'a Bench<'a>,
    ctx: &'a Context,
    data: &'a Data,
    base: &'a Job,
    copy: xent::RowLayout,
}

impl Setup<'_> {
    /// The job of `variant` in `dtype`, compiled and warmed up.
    fn job(&self, variant: Variant, dtype: DType) -> Result<Job, Failure> {
        let mut loss = self.data.loss(variant.op, dtype);
        loss.softcap = variant.softcap;
        let mut job = self.bench.job(&loss, dtype)?;
        job.report = variant.report;
        self.bench.time(&job, None, 1)?;
        Ok(job)
    }

    /// The tuner's choice for a job of `variant` in `dtype` (made now, as `xent tune` makes
    /// it, or read from its cache), where the tuner is not off and no layout is pinned.
    fn tuned(&self, variant: Variant, dtype: DType) -> Option<xent::RowLayout> {
        let mut loss = self.data.loss(variant.op, dtype);
        loss.softcap = variant.softcap;
        self.ctx.tune(&loss, loss.primary().rows as u64, variant.report)
    }

    /// The copy under its best layout, once.
    fn copy_once(&self) -> Result<f64, Failure> {
        sweep::with_layout(self.ctx, Some(self.copy), || self.bench.time(self.base, Some(Baseline::Copy), 1))
    }

    /// The line of `job`: its time against the copy's (`copy`, over the logits' bytes), the
    /// two-pass baseline's and the reference's where given.
    #[allow(clippy::too_many_arguments)]
    fn line(
        &self,
        job: &Job,
        variant: Variant,
        dtype: DType,
        copy: f64,
        seconds: f64,
        (naive_seconds, cpu): (Option<f64>, Option<f64>),
        adapter: &str,
    ) -> Value {
        let (rows, cols) = (self.data.rows as u64, self.data.cols as u64);
        // the copy moves the logits' bytes; ops with two float inputs read twice that
        let copy_seconds =
            copy * (job.bytes - 4 * job.rows * job.out_per_row) as f64 / (rows * cols * dtype.size() as u64) as f64;
        json!({
            "op": label(variant),
            "rows": rows,
            "cols": cols,
            "dtype": if dtype == DType::F16 { "f16" } else { "f32" },
            "seconds": seconds,
            "gbps": job.bytes as f64 / seconds / 1e9,
            "bytes": job.bytes,
            "copy_seconds": copy_seconds,
            "copy_ratio": copy_seconds / seconds,
            // the copy kernel's speed over the logits' bytes, under its best layout: the
            // roofline of a read-once kernel
            "copy_gbps": (rows * cols * dtype.size() as u64) as f64 / copy / 1e9,
            "copy_layout": self.copy.to_string(),
            "layout": self.ctx.recorder().layout_for(rows, cols).as_run_by(&variant.op).to_string(),
            "naive_ratio": naive_seconds.map(|n| n / seconds),
            "cpu_ratio": cpu.map(|c| c / seconds),
            "timing": self.bench.timing(),
            "adapter": adapter,
        })
    }
}

/// The line of `variant` over the setup's data in `dtype`: its kernel's median time against
/// the copy of the logits' bytes, the two-pass baseline and (with `reference`) the f64
/// reference.
fn measure(
    setup: &Setup,
    variant: Variant,
    dtype: DType,
    iters: usize,
    adapter: &str,
    reference: bool,
) -> Result<Value, Failure> {
    let (bench, op) = (setup.bench, variant.op);
    let naive = |job: &Job| -> Result<f64, Failure> {
        bench.time(job, Some(Baseline::Naive), 1)?;
        bench.time(job, Some(Baseline::Naive), iters)
    };
    let job = setup.job(variant, dtype)?;
    // the copy and the kernel alternate, run by run, so that the drift of a
    // shared machine falls on both sides of the ratio
    let (mut copies, mut runs) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        copies.push(setup.copy_once()?);
        runs.push(bench.time(&job, None, 1)?);
    }
    let (copy, seconds) = (median(&mut copies), median(&mut runs));
    // the two-pass baseline for the ops it computes: lse, and ce with labels bound
    let naive_seconds = match op {
        Op::LogSumExp | Op::CrossEntropy { .. } => Some(naive(&job)?),
        _ => None,
    };
    let cpu = reference.then(|| reference_seconds(setup.data, op, variant.softcap, dtype));
    Ok(setup.line(&job, variant, dtype, copy, seconds, (naive_seconds, cpu), adapter))
}
