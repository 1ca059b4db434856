//! `xent.evaluate` (arrays) and `xent.evaluate_files` (`.npy` files bigger than memory):
//! cross-entropy with labels and its evaluation report in one pass, fed a chunk at a time,
//! with Ctrl-C and the progress callback between chunks; and `xent.merge`, the library's
//! merge of results (the same code as `xent merge`).
//!
//! A result is the JSON object of the command line's `xent ce --labels` (the same keys), as
//! a string: the Python layer's `Report` holds it.

use std::time::Instant;

use pyo3::prelude::*;
use serde_json::{Map, Value, json};
use xent::json::{number, report_fields};
use xent::metrics::{Metrics, MetricsSpec};
use xent::{Batch, DType, Floats, Labels, LogBase, Loss, Op, RunOptions};

use crate::arrays::{Held, LabelArray, Matrix, Slices, labels_range};
use crate::backend::{Backend, Context, Stream, log_base};
use crate::errors::{OrRaise, input};
use crate::files::FileSource;

/// What an evaluation computes besides the loss.
pub(crate) struct Spec {
    pub(crate) op: Op,
    pub(crate) softcap: Option<f32>,
    pub(crate) top_k: Vec<u32>,
    pub(crate) bins: u32,
    pub(crate) per_class: bool,
    pub(crate) base: LogBase,
    pub(crate) chunk_rows: Option<u64>,
}

impl Spec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ignore_index: Option<i64>,
        label_smoothing: f32,
        softcap: Option<f32>,
        top_k: Vec<u32>,
        bins: u32,
        per_class: bool,
        base: &str,
        chunk_rows: Option<u64>,
    ) -> PyResult<Spec> {
        if top_k.is_empty() || top_k.contains(&0) {
            return Err(input(format!("top_k: {top_k:?}: each k must be at least 1")));
        }
        if bins == 0 {
            return Err(input("bins: must be at least 1"));
        }
        if chunk_rows == Some(0) {
            return Err(input("chunk_rows: must be at least 1"));
        }
        let op = Op::CrossEntropy { ignore_index, label_smoothing, z_loss: 0.0, entropy: false };
        op.validate().or_raise()?;
        Ok(Spec { op, softcap, top_k, bins, per_class, base: log_base(base)?, chunk_rows })
    }
}

/// One chunk of rows: the logits as the kernels read them and the labels.
pub(crate) struct Chunk<'a> {
    pub(crate) rows: usize,
    /// Where the logits lie, for a device that reads host memory in place (an array's).
    pub(crate) memory: Vec<xent::SharedBytes>,
    pub(crate) logits: Held<'a>,
    pub(crate) labels: ChunkLabels<'a>,
    /// Bytes of the inputs the chunk covers (for the progress callback).
    pub(crate) bytes: u64,
}

pub(crate) enum ChunkLabels<'a> {
    Borrowed(Labels<'a>),
    Owned(Vec<i64>),
}

impl ChunkLabels<'_> {
    fn labels(&self) -> Labels<'_> {
        match self {
            ChunkLabels::Borrowed(l) => *l,
            ChunkLabels::Owned(v) => Labels::I64(v),
        }
    }
}

/// Where the chunks come from, as the driver sees it.
pub(crate) trait Source<'a>: Send {
    /// Rows `start..start + rows` (rows > 0), or `None` once past the end.
    fn chunk(&mut self, start: u64, rows: usize) -> Option<PyResult<Chunk<'a>>>;
}

/// What a run adds up.
struct Totals {
    sum: f64,
    denominator: f64,
    metrics: Metrics,
    adapter: String,
    gpu: bool,
    seconds: f64,
    setup_seconds: f64,
}

/// The shape of the job, for the template and the JSON object.
pub(crate) struct Shape {
    pub(crate) rows: u64,
    pub(crate) cols: u64,
    /// The logits' element type as the kernels read them (f16 stays f16).
    pub(crate) dtype: DType,
    /// As stored: `<f4`, `<f2`, `<f8`.
    pub(crate) descr: &'static str,
    pub(crate) bytes: u64,
}

/// Runs `spec` over the chunks of `source`, on `ctx`, with the GIL released; Ctrl-C and
/// `progress(bytes_done, bytes_total)` between chunks.
fn drive<'a>(
    py: Python<'_>,
    ctx: &Context,
    spec: &Spec,
    shape: &Shape,
    mut source: impl Source<'a>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Totals> {
    let started = Instant::now();
    let metrics_spec =
        MetricsSpec { top_k: spec.top_k.clone(), bins: spec.bins, per_class: true, classes: shape.cols as u32 };
    let mut metrics = Metrics::new(metrics_spec).or_raise()?;
    py.detach(move || {
        let backend = ctx.lock()?;
        let empty = match shape.dtype {
            DType::F16 => Floats::F16(&[]),
            _ => Floats::F32(&[]),
        };
        let mut template =
            Loss::new(spec.op, Batch::new(empty, 0, shape.cols as usize).or_raise()?).with_labels(Labels::I64(&[]));
        template.softcap = spec.softcap;
        let chunk_rows = spec.chunk_rows.unwrap_or_else(|| default_chunk_rows(shape));
        let options = RunOptions { base: spec.base, report: true, chunk_rows: Some(chunk_rows), ..Default::default() };
        let mut stream = backend.stream(&template, shape.rows, &options)?;
        let setup_seconds = started.elapsed().as_secs_f64();
        let t = Instant::now();
        let step = stream.piece_rows();
        let (mut start, mut done_bytes) = (0u64, 0u64);
        while start < shape.rows {
            let n = step.min(shape.rows - start) as usize;
            let Some(chunk) = source.chunk(start, n) else { break };
            let chunk = chunk?;
            let batch = Batch::new(chunk.logits.floats(), chunk.rows, shape.cols as usize).or_raise()?;
            let mut loss = Loss::new(spec.op, batch).with_labels(chunk.labels.labels());
            loss.softcap = spec.softcap;
            let rows = stream.push_shared(&loss, &chunk.memory).map_err(crate::errors::from_xent)?;
            rows.evals.iter().for_each(|r| metrics.push(r));
            start += n as u64;
            done_bytes += chunk.bytes;
            between_chunks(progress.as_ref(), done_bytes, shape.bytes)?;
        }
        let rows = stream.drain().map_err(crate::errors::from_xent)?;
        rows.evals.iter().for_each(|r| metrics.push(r));
        let gpu = matches!(stream, Stream::Gpu(_));
        let out = stream.finish().map_err(crate::errors::from_xent)?;
        let seconds = t.elapsed().as_secs_f64();
        Ok(Totals {
            sum: out.sum,
            denominator: out.denominator,
            metrics,
            adapter: backend.label(),
            gpu,
            seconds,
            setup_seconds,
        })
    })
}

/// Rows of a chunk, as `xent ce` sizes them: 32 MiB of a chunk's rows in memory, counting
/// the logits twice (as read, and as the device holds them) and a row's label, value and
/// report record. Larger chunks run slower on a CPU adapter (2 GB file: 4.1 s at 16,384
/// rows against 1.7 s at 4,096).
fn default_chunk_rows(shape: &Shape) -> u64 {
    let elem = if shape.dtype == DType::F16 { 2 } else { 4 };
    let row = 2 * shape.cols * elem + 8 + 12 + 8 + 4 + 4 * 32;
    ((32u64 << 20) / row).max(1)
}

/// Raises `KeyboardInterrupt` (or what a signal handler raised) if a signal came, and
/// calls `progress`.
fn between_chunks(progress: Option<&Py<PyAny>>, done: u64, total: u64) -> PyResult<()> {
    Python::attach(|py| {
        py.check_signals()?;
        if let Some(p) = progress {
            p.call1(py, (done, total))?;
        }
        Ok(())
    })
}

/// The JSON object of `xent ce --labels` for `totals`.
fn line(spec: &Spec, shape: &Shape, t: &Totals) -> Value {
    let mean = t.sum / t.denominator;
    let mut line = json!({
        "command": "ce",
        "rows": shape.rows,
        "cols": shape.cols,
        "reduction": "mean",
        "value": number(mean),
        "adapter": t.adapter,
        "seconds": t.seconds,
        "device": if t.gpu { "gpu" } else { "cpu" },
        "dtype": shape.descr,
        "sum": number(t.sum),
        "denominator": number(t.denominator),
        "mean": number(mean),
        "bytes": shape.bytes,
        "gbps": shape.bytes as f64 / t.seconds.max(1e-9) / 1e9,
        "setup_seconds": t.setup_seconds,
        "base": if spec.base == LogBase::Bits { "bits" } else { "nats" },
    });
    if let Some(fields) = line.as_object_mut() {
        fields.extend(report_fields(&t.metrics, spec.per_class));
        let m = &t.metrics;
        fields.insert("accuracy".into(), number(m.correct as f64 / m.rows as f64));
        fields.insert("correct".into(), json!(m.correct));
        fields.insert("counted".into(), json!(m.rows));
        fields.insert("perplexity".into(), number((mean / spec.base.scale()).exp()));
    }
    line
}

/// A source over two arrays in memory: rows borrowed, float64 narrowed a chunk at a time
/// (so that a run holds at most a chunk of copies).
struct ArraySource<'a> {
    logits: Slices<'a>,
    shared: Option<xent::SharedBytes>,
    labels: Labels<'a>,
    ignore_index: Option<i64>,
    cols: usize,
    elem: u64,
}

impl<'a> Source<'a> for ArraySource<'a> {
    fn chunk(&mut self, start: u64, rows: usize) -> Option<PyResult<Chunk<'a>>> {
        let (s, cols) = (start as usize, self.cols);
        let logits = self.logits.range(s * cols, (s + rows) * cols);
        let labels = labels_range(self.labels, s, s + rows);
        // labels checked as they come (the device would name the row, not the label)
        if let Some(i) = (0..rows).find(|&i| {
            let l = labels.get(i);
            Some(l) != self.ignore_index && !(0..cols as i64).contains(&l)
        }) {
            let row = start + i as u64;
            return Some(Err(input(format!("labels: row {row}: label {} is outside [0, {cols})", labels.get(i)))));
        }
        let bytes = rows as u64 * (cols as u64 * self.elem + 8);
        let memory = self.shared.iter().cloned().collect();
        Some(Ok(Chunk { rows, memory, logits, labels: ChunkLabels::Borrowed(labels), bytes }))
    }
}

/// `xent.evaluate` on arrays: returns the result's JSON object as a string.
#[pyfunction]
#[pyo3(signature = (ctx, logits, labels, *, top_k, bins, per_class, ignore_index, label_smoothing, softcap, base,
                    chunk_rows=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate(
    py: Python<'_>,
    ctx: &Context,
    logits: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    top_k: Vec<u32>,
    bins: u32,
    per_class: bool,
    ignore_index: Option<i64>,
    label_smoothing: f32,
    softcap: Option<f32>,
    base: &str,
    chunk_rows: Option<u64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let spec = Spec::new(ignore_index, label_smoothing, softcap, top_k, bins, per_class, base, chunk_rows)?;
    let m = Matrix::new("logits", logits)?;
    let y = LabelArray::new("labels", labels)?;
    if y.len() != m.rows {
        return Err(input(format!("labels: {} labels for {} rows of logits", y.len(), m.rows)));
    }
    let elem = match m.array.dtype() {
        "<f2" => 2,
        "<f4" => 4,
        _ => 8,
    };
    let shape = Shape {
        rows: m.rows as u64,
        cols: m.cols as u64,
        dtype: if elem == 2 { DType::F16 } else { DType::F32 },
        descr: m.array.dtype(),
        bytes: m.rows as u64 * (m.cols as u64 * elem + 8),
    };
    // the arrays' slices are taken here, with the GIL held; the driver only reads them
    let source = ArraySource {
        logits: m.array.slices()?,
        shared: m.shared()?,
        labels: y.range(0, y.len())?,
        ignore_index,
        cols: m.cols,
        elem,
    };
    let totals = drive(py, ctx, &spec, &shape, source, progress)?;
    Ok(line(&spec, &shape, &totals).to_string())
}

/// Rows a chunk of the job takes (the stream's piece), found with a probe stream (called
/// with the GIL released, as every lock of a context).
fn chunk_step(ctx: &Context, spec: &Spec, shape: &Shape) -> PyResult<u64> {
    let backend = ctx.lock()?;
    let empty = match shape.dtype {
        DType::F16 => Floats::F16(&[]),
        _ => Floats::F32(&[]),
    };
    let template =
        Loss::new(spec.op, Batch::new(empty, 0, shape.cols as usize).or_raise()?).with_labels(Labels::I64(&[]));
    let chunk_rows = spec.chunk_rows.unwrap_or_else(|| default_chunk_rows(shape));
    let options = RunOptions { base: spec.base, report: true, chunk_rows: Some(chunk_rows), ..Default::default() };
    let stream = backend.stream(&template, shape.rows, &options)?;
    Ok(stream.piece_rows())
}

/// `xent.evaluate_files`: the `.npy` files streamed as `xent ce --labels` does.
#[pyfunction]
#[pyo3(signature = (ctx, logits_path, labels_path, *, top_k, bins, per_class, ignore_index, label_smoothing, softcap,
                    base, chunk_rows=None, progress=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_files(
    py: Python<'_>,
    ctx: &Context,
    logits_path: std::path::PathBuf,
    labels_path: std::path::PathBuf,
    top_k: Vec<u32>,
    bins: u32,
    per_class: bool,
    ignore_index: Option<i64>,
    label_smoothing: f32,
    softcap: Option<f32>,
    base: &str,
    chunk_rows: Option<u64>,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let spec = Spec::new(ignore_index, label_smoothing, softcap, top_k, bins, per_class, base, chunk_rows)?;
    // the CPU engine reads the logits where they lie, mapped (nothing of a chunk outlives
    // its push there); a device keeps its copies
    let on_cpu = matches!(&*ctx.lock()?, Backend::Cpu(_));
    let source = FileSource::open(&logits_path, &labels_path, ignore_index, on_cpu)?;
    let shape = source.shape();
    if shape.rows == 0 {
        return Err(input(format!("logits: {} has no rows", logits_path.display())));
    }
    let step = py.detach(|| chunk_step(ctx, &spec, &shape))?;
    // the reader reads a chunk of the stream's rows at a time
    let reader = source.reader(step);
    let totals = drive(py, ctx, &spec, &shape, reader, progress)?;
    Ok(line(&spec, &shape, &totals).to_string())
}

/// `xent.merge`: the results (JSON objects as strings) of shards merged in their order.
#[pyfunction]
pub(crate) fn merge(results: Vec<String>) -> PyResult<String> {
    let mut shards: Vec<Map<String, Value>> = Vec::with_capacity(results.len());
    for (i, r) in results.iter().enumerate() {
        match serde_json::from_str(r) {
            Ok(Value::Object(map)) => shards.push(map),
            _ => return Err(input(format!("reports: item {i} is not a result's JSON object"))),
        }
    }
    match xent::json::merge(&shards) {
        Ok(v) => Ok(v.to_string()),
        Err(xent::json::MergeError::Report(e)) => Err(crate::errors::from_xent(e)),
        Err(e) => Err(input(format!("reports: {e}"))),
    }
}
