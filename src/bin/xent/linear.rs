//! `xent linear-ce`: the cross-entropy of a linear head's logits `H·Wᵀ + b` against labels,
//! from a file of hidden states, without the logits in memory (the fused linear
//! cross-entropy, `Op::LinearCrossEntropy`). The weight and bias go to the device (or the
//! CPU engine's head) once; the hidden states and labels are read a chunk of rows at a
//! time; each row's loss and evaluation record come back and are added up here, in row
//! order.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};
use xent::metrics::{Metrics, MetricsSpec, RowEval};
use xent::npy::{NpyDType, NpyFile, NpyWriter};
use xent::{Batch, Context, Floats, Labels, LogBase, Loss, Op};

use crate::eval::report::{Progress, number};
use crate::{Base, Common, Device, Failure, Reduction};

/// Bytes of hidden states read per chunk.
const CHUNK_BYTES: u64 = 32 << 20;

#[derive(Args)]
pub(crate) struct LinearArgs {
    /// Hidden states `[rows, d]` (`<f4` or `<f2`; `<f8` is read as f32).
    #[arg(long, value_name = "H.npy")]
    pub(crate) hidden: PathBuf,
    /// The head's weight `[classes, d]`, row-major as `torch.nn.Linear.weight` (same dtype rules).
    #[arg(long, value_name = "W.npy")]
    pub(crate) weight: PathBuf,
    /// The head's bias `[classes]` (read as f32).
    #[arg(long, value_name = "B.npy")]
    pub(crate) bias: Option<PathBuf>,
    /// Integer labels, one per row.
    #[arg(long, value_name = "Y.npy")]
    pub(crate) labels: PathBuf,
    /// Rows whose label is I count 0 and leave the mean's denominator.
    #[arg(long, value_name = "I", allow_negative_numbers = true)]
    ignore_index: Option<i64>,
    /// Label smoothing s in [0, 1].
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    label_smoothing: f32,
    /// Adds λ·lse² to each row not ignored (PaLM's z-loss), λ ≥ 0.
    #[arg(long, value_name = "λ", default_value_t = 0.0)]
    z_loss: f32,
    /// Soft-cap the logits: read them as c·tanh(x/c) (Gemma 2).
    #[arg(long, value_name = "C")]
    softcap: Option<f32>,
    /// The k of each top-k accuracy reported.
    #[arg(long, value_name = "K,...", value_delimiter = ',', default_value = "1,5")]
    top_k: Vec<u32>,
    /// Equal-width confidence bins of the calibration error.
    #[arg(long, value_name = "B", default_value_t = 15)]
    bins: u32,
    /// MiB the device may hold beyond the inputs: a chunk of rows' f32 logits and their scratch (one row must fit).
    #[arg(long, value_name = "MiB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    logits_budget: u64,
    /// Also write each row's loss (`[rows]`, `<f4`, in the unit of --base; 0 on ignored rows).
    #[arg(long, value_name = "PATH.npy")]
    out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) common: Common,
}

impl LinearArgs {
    /// The files read and written, with their flags.
    pub(crate) fn inputs(&self) -> Vec<(&'static str, PathBuf)> {
        let mut v = vec![("--hidden", self.hidden.clone()), ("--weight", self.weight.clone())];
        v.extend(self.bias.clone().map(|b| ("--bias", b)));
        v.push(("--labels", self.labels.clone()));
        v
    }

    /// The files written, with their flags.
    pub(crate) fn outputs(&self) -> Vec<crate::paths::Flagged<'_>> {
        self.out.as_deref().map(|p| ("--out", p)).into_iter().collect()
    }

    fn op(&self) -> Result<Op, Failure> {
        let op = Op::LinearCrossEntropy {
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            z_loss: self.z_loss,
        };
        op.validate()?;
        Ok(op)
    }
}

/// What the command adds up over the rows.
struct Totals {
    sum: f64,
    metrics: Metrics,
}

/// Runs `linear-ce` and returns its JSON line.
pub(crate) fn linear_ce(args: &LinearArgs) -> Result<Value, Failure> {
    let started = Instant::now();
    let op = args.op()?;
    let (h, w, y) = (NpyFile::open(&args.hidden)?, NpyFile::open(&args.weight)?, NpyFile::open(&args.labels)?);
    let (rows, d, classes) = (h.rows(), h.cols(), w.rows());
    if h.ndim() != 2 || w.ndim() != 2 || w.cols() != d || classes == 0 {
        return Err(Failure::input(format!(
            "--weight is {:?} for --hidden {:?}: it must be [classes, d] with d = {d}, the hidden states' columns",
            w.shape(),
            h.shape()
        )));
    }
    if y.ndim() != 1 || y.rows() != rows {
        return Err(Failure::input(format!(
            "--labels has shape {:?}; it must be [{rows}], a label per row",
            y.shape()
        )));
    }
    let weight = read_all_f32(&w)?;
    let bias = match &args.bias {
        Some(path) => {
            let b = NpyFile::open(path)?;
            if b.ndim() != 1 || b.rows() != classes {
                return Err(Failure::input(format!("--bias has shape {:?}; it must be [{classes}]", b.shape())));
            }
            Some(read_all_f32(&b)?)
        }
        None => None,
    };
    let spec = MetricsSpec { top_k: args.top_k.clone(), bins: args.bins, per_class: false, classes: classes as u32 };
    let mut totals = Totals { sum: 0.0, metrics: Metrics::new(spec)? };
    let weight_batch = Batch::new(&weight[..], classes as usize, d as usize)?;
    let (ctx, engine) = match args.common.device {
        Device::Reference => (None, None),
        Device::Cpu => (None, Some(xent::cpu::Engine::new())),
        Device::Gpu => (Some(Context::new_blocking()?), None),
        Device::Auto => match crate::auto_backend() {
            xent::Backend::Gpu(c) => (Some(c), None),
            xent::Backend::Cpu(e) => (None, Some(e)),
        },
    };
    if let Some(ctx) = &ctx {
        ctx.recorder().set_logits_budget(args.logits_budget << 20);
    }
    let gpu_head =
        ctx.as_ref().map(|c| c.head(op, args.softcap, &weight_batch, bias.as_deref())).transpose().map_err(limit)?;
    let cpu_head = engine.as_ref().map(|e| e.head(op, args.softcap, &weight_batch, bias.as_deref())).transpose()?;
    // opened before the work, so that a bad path fails first; removed unless finished
    let mut out = args.out.as_ref().map(|p| NpyWriter::create(p, &[rows])).transpose()?;
    let scale = if args.common.base == Base::Two { LogBase::Bits.scale() } else { 1.0 };
    let setup_seconds = started.elapsed().as_secs_f64();
    let chunk = args.common.chunk_rows.unwrap_or((CHUNK_BYTES / (4 * d.max(1))).max(1)).min(rows.max(1));
    let (mut hidden, mut half, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let row_bytes = d * h.dtype().size() as u64 + y.dtype().size() as u64;
    let progress = Progress::new(rows * row_bytes, args.common.quiet);
    let mut start = 0u64;
    while start < rows {
        let n = chunk.min(rows - start) as usize;
        let floats = if h.dtype() == NpyDType::F16 && (gpu_head.is_some() || cpu_head.is_some()) {
            h.read_f16_raw(start, n, &mut half)?;
            Floats::F16(&half)
        } else {
            h.read_f32(start, n, &mut hidden)?;
            Floats::F32(&hidden)
        };
        y.read_labels(start, n, &mut labels)?;
        let batch = Batch::new(floats, n, d as usize)?;
        let rows_of = |r: xent::HeadRows| (r.values.iter().map(|&v| f64::from(v)).collect(), r.evals);
        let (values, evals) = match (&gpu_head, &cpu_head) {
            (Some(head), _) => rows_of(head.run(&batch, &Labels::I64(&labels), true, start).map_err(limit)?),
            (None, Some(head)) => rows_of(head.run(&batch, &Labels::I64(&labels), true, start)?),
            (None, None) => reference_rows(op, args.softcap, batch, weight_batch, bias.as_deref(), &labels, start)?,
        };
        totals.sum += values.iter().sum::<f64>();
        if let Some(out) = &mut out {
            out.write(&values.iter().map(|&v| (v * scale) as f32).collect::<Vec<f32>>())?;
        }
        evals.iter().flatten().for_each(|e| totals.metrics.push(e));
        start += n as u64;
        progress.advance(n as u64 * row_bytes);
    }
    progress.finish();
    if let Some(out) = out {
        out.finish()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (device, adapter) = match (&ctx, &engine) {
        (Some(c), _) => ("gpu", c.adapter_label()),
        (None, Some(e)) => ("cpu", e.label()),
        (None, None) => ("reference", "f64 reference (CPU)".to_string()),
    };
    Ok(report(args, (rows, d, classes), &totals, (seconds, setup_seconds), (device, adapter), h.dtype()))
}

/// A device's limit (the weight's size, the logits budget) is the machine's, not the
/// input's: exit status 1, naming the way out.
fn limit(e: xent::Error) -> Failure {
    match e {
        xent::Error::TooLarge(m) => Failure::machine(format!("{m} (or run it with --device cpu)")),
        e => e.into(),
    }
}

/// A chunk on the f64 reference: per-row values and evaluation records.
fn reference_rows(
    op: Op,
    softcap: Option<f32>,
    hidden: Batch,
    weight: Batch,
    bias: Option<&[f32]>,
    labels: &[i64],
    start: u64,
) -> Result<(Vec<f64>, Vec<Option<RowEval>>), Failure> {
    let mut loss = Loss::new(op, hidden).with_second(weight).with_labels(Labels::I64(labels));
    if let Some(b) = bias {
        loss = loss.with_bias(b);
    }
    loss.softcap = softcap;
    let shift = |e: xent::Error| match e {
        xent::Error::Label { row, label, cols } => xent::Error::Label { row: row + start, label, cols },
        e => e,
    };
    let values = xent::reference::compute(&loss, LogBase::Nats).map_err(shift)?.values;
    let evals = xent::reference::row_evals(&loss).map_err(shift)?.unwrap_or_default();
    Ok((values, evals))
}

/// A whole 1-D or 2-D float file as f32 (the weight, the bias), its size checked first.
fn read_all_f32(file: &NpyFile) -> Result<Vec<f32>, Failure> {
    let mut v = Vec::new();
    let rows = usize::try_from(file.rows()).map_err(|_| Failure::input("the weight has too many rows"))?;
    v.try_reserve_exact((file.len() as usize).max(1)).map_err(|_| {
        Failure::machine(format!("{} elements of {} do not fit in memory", file.len(), file.path().display()))
    })?;
    file.read_f32(0, rows, &mut v)?;
    Ok(v)
}

fn report(
    args: &LinearArgs,
    (rows, d, classes): (u64, u64, u64),
    t: &Totals,
    (seconds, setup_seconds): (f64, f64),
    (device, adapter): (&str, String),
    dtype: NpyDType,
) -> Value {
    let m = &t.metrics;
    let denominator = m.rows as f64;
    let scale = if args.common.base == Base::Two { LogBase::Bits.scale() } else { 1.0 };
    let (sum, mean) = (t.sum * scale, t.sum * scale / denominator);
    let value = if args.common.reduction == Reduction::Mean { mean } else { sum };
    let mut line = json!({
        "command": "linear-ce",
        "rows": rows,
        "d": d,
        "classes": classes,
        // as ce's: the logits' columns
        "cols": classes,
        "reduction": match args.common.reduction {
            Reduction::None => "none",
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
        },
        "value": number(value),
        "sum": number(sum),
        "denominator": number(denominator),
        "mean": number(mean),
        "base": if scale == 1.0 { "nats" } else { "bits" },
        // exp of the mean loss in nats, whatever --base says
        "perplexity": number((t.sum / denominator).exp()),
        "accuracy": number(m.accuracy()),
        "correct": m.correct,
        "counted": m.rows,
        "logits_budget_mib": args.logits_budget,
        "adapter": adapter,
        "device": device,
        "dtype": dtype.descr(),
        "seconds": seconds,
        "setup_seconds": setup_seconds,
    });
    if let Some(fields) = line.as_object_mut() {
        fields.extend(crate::eval::calibration::fields(m, false));
        if let Some(out) = &args.out {
            fields.insert("out".into(), json!(out.display().to_string()));
        }
    }
    line
}
