//! The file commands: `.npy` inputs streamed in row chunks through the GPU or the f64 reference.
//!
//! A reader thread reads chunk i+1 (positioned reads, no mapping, so memory stays at a few
//! chunks whatever the file size) while the main thread uploads and runs chunk i; the GPU
//! path reduces rows in fixed 512-row blocks on the device as they come, so the value does
//! not depend on the chunk size, and sends per-row values and argmax back a piece at a
//! time. Outputs go through [`NpyWriter`]: a temporary file renamed onto `--out` (and
//! `--entropy-out`) only when the run succeeded.

pub mod calibration;
mod input;
pub(crate) mod report;
mod run;

use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use serde_json::Value;
use xent::metrics::{BinaryMetrics, Metrics, MetricsSpec};
use xent::npy::NpyWriter;
use xent::{BackendStream, Batch, Context, Labels, LogBase, Loss, Op, RunOptions};

use input::{Chunk, Data};
pub use input::{Input, read_class_weights};
use report::Progress;
pub use report::number;
use run::Engine;

use crate::{Base, Common, Device, Failure};

/// Bytes a chunk takes in memory while it is worked on (and a GPU piece on the device),
/// unless `--chunk-rows` says otherwise.
const CHUNK_BYTES: u64 = 32 << 20;

/// The most bytes of the float inputs of a chunk whose rows the device reads in place
/// from the files' pages (a GPU piece each; no copy on either side, so only the other
/// per-row bytes count against [`CHUNK_BYTES`]): what lavapipe binds at most. Fewer pieces
/// mean fewer submissions, each a hand-over between threads the device waits on.
const IN_PLACE_BYTES: u64 = 128 << 20;

/// A file command's operation: the library's [`Op`], and what the command line adds to it
/// from files (class weights; for probability targets, weights and smoothing folded into the
/// targets as read, PyTorch's `−Σ_j W_j·((1−s)·P_ij + s/K)·log_softmax_j`).
pub struct Spec {
    pub op: Op,
    pub class_weights: Option<Vec<f32>>,
    /// Label smoothing applied to probability targets as they are read.
    pub target_smoothing: f32,
    /// `--softcap c`: the logits read as `c·tanh(x/c)`.
    pub softcap: Option<f32>,
    /// The evaluation report of `ce` with labels.
    pub report: Option<ReportSpec>,
}

impl From<Op> for Spec {
    fn from(op: Op) -> Spec {
        Spec { op, class_weights: None, target_smoothing: 0.0, softcap: None, report: None }
    }
}

/// What `ce --labels` reports besides the loss: top-k accuracy for each k, calibration over
/// equal-width confidence bins, and the files of the per-class table and the reliability
/// diagram.
#[derive(Clone, Debug)]
pub struct ReportSpec {
    pub top_k: Vec<u32>,
    pub bins: u32,
    pub per_class: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

/// The files a file command writes besides its JSON line.
#[derive(Default)]
pub struct Outputs {
    /// `--out`: the per-row values (softmax: its rows).
    pub values: Option<PathBuf>,
    /// `--entropy-out`: cross-entropy's per-row entropies, [rows] f32.
    pub entropy: Option<PathBuf>,
}

/// A file command ready to run.
pub struct Job {
    op: Op,
    class_weights: Option<Vec<f32>>,
    target_smoothing: f32,
    softcap: Option<f32>,
    report: Option<ReportSpec>,
    a: Input,
    b: Option<Input>,
    labels: Option<Input>,
    out: Option<PathBuf>,
    entropy_out: Option<PathBuf>,
    common: Common,
    rows: u64,
    cols: u64,
    /// Every float input is `<f2` and read as is.
    half: bool,
    /// Rows of a chunk (as the run chooses them: [`Job::read_rows`] until then).
    chunk_rows: u64,
}

impl Job {
    /// Checks the inputs against each other and the options, before anything is read.
    pub fn new(
        spec: Spec,
        a: Input,
        b: Option<Input>,
        labels: Option<Input>,
        outputs: Outputs,
        common: Common,
    ) -> Result<Job, Failure> {
        let (rows, cols) = (a.file.rows(), a.file.cols());
        if cols == 0 {
            return Err(Failure::input(format!(
                "{}: {} has no columns (shape {:?})",
                a.name(),
                a.flag,
                a.file.shape()
            )));
        }
        if let Some(b) = &b
            && (b.file.rows(), b.file.cols()) != (rows, cols)
        {
            return Err(Failure::input(format!(
                "{}: {} is [{}, {}] but {} ({}) is [{rows}, {cols}]; they must have the same shape",
                b.name(),
                b.flag,
                b.file.rows(),
                b.file.cols(),
                a.flag,
                a.name()
            )));
        }
        if let Some(y) = &labels
            && y.file.rows() != rows
        {
            return Err(Failure::input(format!(
                "{}: {} has {} entries but {} ({}) has {rows} rows",
                y.name(),
                y.flag,
                y.file.rows(),
                a.flag,
                a.name()
            )));
        }
        let Spec { op, class_weights, target_smoothing, softcap, report } = spec;
        if !(0.0..=1.0).contains(&target_smoothing) {
            return Err(Failure::input(format!("--label-smoothing: {target_smoothing} is not in [0, 1]")));
        }
        let transforms_b =
            matches!(op, Op::CrossEntropyProbs { .. }) && (class_weights.is_some() || target_smoothing > 0.0);
        let half = [Some(&a), b.as_ref()].into_iter().flatten().all(|i| i.file.dtype() == xent::npy::NpyDType::F16)
            && !transforms_b;
        let mut job = Job {
            op,
            class_weights,
            target_smoothing,
            softcap,
            report,
            a,
            b,
            labels,
            out: outputs.values,
            entropy_out: outputs.entropy,
            common,
            rows,
            cols,
            half,
            chunk_rows: 0,
        };
        job.chunk_rows = job.read_rows();
        // The scalar options (temperature, alpha, ignore index, weights' length), checked on no rows.
        let empty = Chunk {
            start: 0,
            rows: 0,
            a: Data::F32(Vec::new()),
            b: job.b.as_ref().map(|_| Data::F32(Vec::new())),
            labels: job.labels.as_ref().map(|_| Vec::new()),
            bytes: 0,
        };
        job.loss(&empty)?.validate()?;
        Ok(job)
    }

    fn softmax(&self) -> bool {
        self.op.writes_rows()
    }

    /// Cross-entropy with labels reports accuracy and perplexity.
    fn scores(&self) -> bool {
        matches!(self.op, Op::CrossEntropy { .. })
    }

    /// The bytes a row of a chunk takes in memory while it is worked on, on either path: the
    /// float inputs (half precision kept, else f32), counted once (as read; as uploaded they
    /// count again), and the others: labels as i64, the per-row results (the reference's f64
    /// values and weights, the f32 values written, the argmax) and, where the job scores
    /// (`ce`'s evaluation report), the row's record on the device, in the readback, read
    /// back and decoded.
    fn row_bytes(&self) -> (u64, u64) {
        let elem = if self.half { 2 } else { 4 };
        let floats: u64 = [Some(&self.a), self.b.as_ref()].into_iter().flatten().map(|i| i.file.cols() * elem).sum();
        let labels = self.labels.is_some();
        let values_per_row = if self.softmax() { self.cols } else { 1 };
        // (an eight-word record, four times)
        let record = if self.scores() && labels { 4 * 32 } else { 0 };
        (floats, if labels { 8 } else { 0 } + values_per_row * (8 + 4) + 8 + 4 + record)
    }

    /// Rows of a chunk read into memory and copied (`--chunk-rows`, else a chunk's bytes).
    fn read_rows(&self) -> u64 {
        let (floats, others) = self.row_bytes();
        self.common.chunk_rows.unwrap_or((CHUNK_BYTES / (2 * floats + others)).max(1))
    }

    /// Rows of a chunk the device reads in place (without `--chunk-rows`): only the bytes
    /// that are not floats count against a chunk's, the floats against IN_PLACE_BYTES.
    fn in_place_rows(&self) -> u64 {
        let (floats, others) = self.row_bytes();
        (IN_PLACE_BYTES / floats.max(1)).min(2 * CHUNK_BYTES / others).max(1)
    }

    /// The command's name (`ce --target-probs` is the library's `ce-probs`).
    fn command(&self) -> &'static str {
        match self.op {
            Op::CrossEntropyProbs { .. } => "ce",
            op => op.name(),
        }
    }

    fn base(&self) -> LogBase {
        match self.common.base {
            Base::E => LogBase::Nats,
            Base::Two => LogBase::Bits,
        }
    }

    /// The operation over one chunk's rows.
    fn loss<'c>(&'c self, c: &'c Chunk) -> Result<Loss<'c>, Failure> {
        let a = Batch::new(c.a.floats(), c.rows, self.cols as usize)?;
        let second = || -> Result<Batch<'c>, Failure> {
            let b = c.b.as_ref().ok_or_else(|| Failure::machine("second input missing"))?;
            Ok(Batch::new(b.floats(), c.rows, self.cols as usize)?)
        };
        let labels = || -> Result<Labels<'c>, Failure> {
            c.labels.as_deref().map(Labels::I64).ok_or_else(|| Failure::machine("labels missing"))
        };
        let mut loss = Loss::new(self.op, a);
        loss.softcap = self.softcap;
        if self.op.signature().second.is_some() {
            loss = loss.with_second(second()?);
        }
        if self.op.signature().labels {
            loss = loss.with_labels(labels()?);
        }
        if let (true, Some(w)) = (self.op.signature().weights, &self.class_weights) {
            loss = loss.with_weights(w);
        }
        Ok(loss)
    }

    /// Whether `--json` asks for the JSON line on a terminal too.
    pub fn wants_json(&self) -> bool {
        self.common.json
    }

    /// Cross-entropy with a z-loss reports its share of the mean.
    fn has_z_loss(&self) -> bool {
        matches!(self.op, Op::CrossEntropy { z_loss, .. } | Op::CrossEntropyProbs { z_loss, .. } if z_loss > 0.0)
    }

    /// Cross-entropy with `--entropy` reports the mean entropy of the rows not ignored.
    fn has_entropy(&self) -> bool {
        self.op.has_entropy()
    }

    fn ignore_index(&self) -> Option<i64> {
        self.op.ignore_index()
    }

    /// Runs the job and returns its JSON line.
    pub fn run(mut self) -> Result<Value, Failure> {
        let started = Instant::now();
        let (mut ctx, mut cpu) = match self.common.device {
            Device::Reference => (None, None),
            Device::Cpu => (None, Some(xent::cpu::Engine::new())),
            Device::Gpu => (Some(Context::new_blocking()?), None),
            Device::Auto => match crate::auto_backend() {
                xent::Backend::Gpu(c) => (Some(c), None),
                xent::Backend::Cpu(e) => (None, Some(e)),
            },
        };
        // the device reads the files' pages where it reads host memory in place, and the
        // engine always does; the files are leased, so that no other process changes them
        // while mapped
        let maps = cpu.is_some() || ctx.as_ref().is_some_and(Context::reads_host_memory);
        let leased = maps
            && crate::process::stop_when_inputs_change()
            && [Some(&self.a), self.b.as_ref()].into_iter().flatten().all(Input::lease);
        if let Some(ctx) = &mut ctx {
            // a piece's device buffers within a chunk's bytes (two pieces are in flight); rows
            // read in place take no copy, so only their other bytes count (see IN_PLACE_BYTES)
            if leased && self.common.chunk_rows.is_none() {
                self.chunk_rows = self.in_place_rows();
                ctx.set_chunk_bytes(IN_PLACE_BYTES + 2 * CHUNK_BYTES);
            } else {
                ctx.set_chunk_bytes(CHUNK_BYTES);
            }
        }
        let gpu_stream = match &ctx {
            Some(c) if self.rows > 0 => self.gpu_stream(c)?,
            _ => None,
        };
        if ctx.is_some() && self.rows > 0 && gpu_stream.is_none() {
            // a row too wide for the adapter: the engine
            cpu = Some(xent::cpu::Engine::new());
        }
        let engine = match (&ctx, gpu_stream, &cpu) {
            (Some(c), Some(s), _) => Engine::Stream {
                adapter: c.adapter_label(),
                device: "gpu",
                stream: Some(Box::new(BackendStream::Gpu(s))),
            },
            (_, _, Some(e)) => self.cpu_engine(e)?,
            (Some(c), None, None) => Engine::Stream { adapter: c.adapter_label(), device: "gpu", stream: None },
            (None, _, None) => Engine::Reference,
        };
        let (device, gpu) = match &engine {
            Engine::Stream { device, .. } => (*device, *device == "gpu"),
            Engine::Reference => ("reference", false),
        };
        self.chunk_rows = match &engine {
            // a chunk per piece (the stream's are no larger than the chunks asked for)
            Engine::Stream { stream: Some(stream), .. } if gpu => stream.piece_rows(),
            // rows read into memory
            _ => self.read_rows(),
        };
        let map = leased && matches!(engine, Engine::Stream { stream: Some(_), .. });
        // the row kernels' layout on a GPU (it decides the last bits of the sums)
        let layout = match ctx.as_ref().filter(|_| gpu) {
            Some(c) => {
                // the tuner's choice for the job (made when its stream started), else the rule's
                let empty = self.empty_chunk();
                let template = self.loss(&empty)?;
                let tuned = c.tune(&template, self.rows, self.run_options().report);
                for note in c.tune_notes() {
                    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("xent: note: {note}\n"));
                }
                let layout = tuned.unwrap_or_else(|| c.recorder().layout_for(self.rows, self.cols));
                Some(layout.as_run_by(&self.op).to_string())
            }
            None => None,
        };
        let setup_seconds = started.elapsed().as_secs_f64();
        let total_bytes: u64 = [Some(&self.a), self.b.as_ref(), self.labels.as_ref()]
            .into_iter()
            .flatten()
            .map(|i| i.file.header().data_bytes())
            .sum();
        let progress = Progress::new(total_bytes, self.common.quiet);
        let t = Instant::now();
        let chunks: Vec<(u64, usize)> = (0..self.rows)
            .step_by(self.chunk_rows as usize)
            .map(|s| (s, (self.chunk_rows.min(self.rows - s)) as usize))
            .collect();
        let totals = std::thread::scope(|scope| {
            // mapped chunks cost no memory until the device reads them: the reader may run
            // further ahead, so that it is never what the device waits for (the engine reads
            // them as soon as they come, and the pages it read count until they are unmapped)
            let (tx, rx) = sync_channel(if map && gpu { 4 } else { 1 });
            // the float vectors of chunks done with, back to the reader
            let (spare_tx, spare_rx) = std::sync::mpsc::channel();
            let job = &self;
            scope.spawn(move || {
                for &(start, n) in &chunks {
                    let chunk = job.read(start, n, Some(&spare_rx), map);
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        break;
                    }
                }
            });
            match engine {
                Engine::Stream { adapter, stream, .. } => self.run_stream(adapter, stream, (rx, spare_tx), &progress),
                Engine::Reference => self.run_cpu((rx, spare_tx), &progress),
            }
        });
        progress.finish();
        let totals = totals?;
        let seconds = t.elapsed().as_secs_f64();
        self.write_report_files(&totals)?;
        let mut line = self.report(&totals, total_bytes, seconds, setup_seconds, device);
        if let (Some(layout), Some(fields)) = (layout, line.as_object_mut()) {
            fields.insert("layout".into(), serde_json::json!(layout));
        }
        Ok(line)
    }

    fn run_options(&self) -> RunOptions {
        RunOptions {
            base: self.base(),
            keep_values: self.out.is_some() && !self.softmax(),
            // top-1 hits come with the report: no argmax to read back, no labels read again
            keep_argmax: false,
            keep_entropy: self.entropy_out.is_some(),
            report: self.scores(),
            // a piece per chunk, and buffers for no more
            chunk_rows: Some(self.chunk_rows),
        }
    }

    /// An empty binary report, where the job makes one (`bce`).
    fn binary_metrics(&self) -> Result<Option<BinaryMetrics>, Failure> {
        let Some(r) = self.report.as_ref().filter(|_| matches!(self.op, Op::BinaryCrossEntropy { .. })) else {
            return Ok(None);
        };
        Ok(Some(BinaryMetrics::new(r.bins)?))
    }

    /// An empty evaluation report of `ce --labels` (its accuracy too), as the flags ask or
    /// with their defaults.
    fn metrics(&self) -> Result<Option<Metrics>, Failure> {
        if !self.scores() {
            return Ok(None);
        }
        let (top_k, bins) = self.report.as_ref().map_or((vec![1, 5], 15), |r| (r.top_k.clone(), r.bins));
        let spec = MetricsSpec { top_k, bins, per_class: true, classes: self.cols as u32 };
        Ok(Some(Metrics::new(spec)?))
    }

    /// `--per-class` and `--plot`, each written whole.
    fn write_report_files(&self, t: &run::Totals) -> Result<(), Failure> {
        let (Some(r), Some(m)) = (&self.report, &t.metrics) else { return Ok(()) };
        if let Some(path) = &r.per_class {
            calibration::write(path, &calibration::per_class_csv(m))?;
        }
        if let Some(path) = &r.plot {
            let title = self.a.name();
            let svg = calibration::reliability_svg(m, &title)
                .map_err(|e| Failure::machine(format!("--plot {}: {e}", path.display())))?;
            calibration::write(path, &svg)?;
        }
        Ok(())
    }

    /// The `--out` writer, opened before the work so a bad path fails first.
    fn writer(&self) -> Result<Option<NpyWriter>, Failure> {
        let shape = if self.softmax() { vec![self.rows, self.cols] } else { vec![self.rows] };
        Ok(self.out.as_ref().map(|p| NpyWriter::create(p, &shape)).transpose()?)
    }

    /// The `--entropy-out` writer, likewise.
    fn entropy_writer(&self) -> Result<Option<NpyWriter>, Failure> {
        Ok(self.entropy_out.as_ref().map(|p| NpyWriter::create(p, &[self.rows])).transpose()?)
    }
}
