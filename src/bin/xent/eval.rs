//! The file commands: `.npy` inputs streamed in row chunks through the GPU or the f64 reference.
//!
//! A reader thread reads chunk i+1 (positioned reads, no mapping, so memory stays at a few
//! chunks whatever the file size) while the main thread uploads and runs chunk i; the GPU
//! path reduces rows in fixed 512-row blocks on the device as they come, so the value does
//! not depend on the chunk size, and sends per-row values and argmax back a piece at a
//! time. Outputs go through [`NpyWriter`]: a temporary file renamed onto `--out` only when
//! the run succeeded.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use half::f16;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use xent::npy::{NpyFile, NpyWriter};
use xent::{Batch, Context, CrossEntropyOptions, Dist, Floats, Labels, LogBase, Loss, Rows, RunOptions, Stream};

use crate::{Base, Common, Device, Failure, Reduction};

/// Bytes a chunk takes in memory while it is worked on (and a GPU piece on the device),
/// unless `--chunk-rows` says otherwise.
const CHUNK_BYTES: u64 = 32 << 20;

/// An opened `.npy` input and the flag it came from.
pub struct Input {
    flag: &'static str,
    file: NpyFile,
}

impl Input {
    /// Opens a float input (`<f2`, `<f4`, `<f8`; a 1-D array is one column).
    pub fn floats(flag: &'static str, path: PathBuf) -> Result<Input, Failure> {
        let file = NpyFile::open(&path)?;
        if !file.dtype().is_float() {
            return Err(Failure::input(format!(
                "{}: {flag} needs floats (<f2, <f4, <f8), got {}",
                name(&path),
                file.dtype()
            )));
        }
        Ok(Input { flag, file })
    }

    /// Opens integer labels: a 1-D array of any accepted integer type.
    pub fn labels(flag: &'static str, path: PathBuf) -> Result<Input, Failure> {
        let file = NpyFile::open(&path)?;
        if file.dtype().is_float() {
            return Err(Failure::input(format!(
                "{}: {flag} needs integer labels (<i4, <i8, |u1, <u2, <u4), got {}",
                name(&path),
                file.dtype()
            )));
        }
        if file.ndim() != 1 {
            return Err(Failure::input(format!(
                "{}: {flag} must be 1-D [rows], got shape {:?}",
                name(&path),
                file.shape()
            )));
        }
        Ok(Input { flag, file })
    }

    pub fn cols(&self) -> u64 {
        self.file.cols()
    }

    fn name(&self) -> String {
        name(self.file.path())
    }
}

/// A file's name for messages.
fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Reads `--class-weights`: a float vector of `cols` finite, non-negative entries.
pub fn read_class_weights(path: &Path, cols: u64) -> Result<Vec<f32>, Failure> {
    let input = Input::floats("--class-weights", path.to_path_buf())?;
    let f = &input.file;
    if f.ndim() != 1 || f.rows() != cols {
        return Err(Failure::input(format!(
            "{}: --class-weights must have one entry per class ({cols}), got shape {:?}",
            input.name(),
            f.shape()
        )));
    }
    let mut w = Vec::new();
    f.read_f32(0, cols as usize, &mut w)?;
    if let Some((class, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        let why = if v.is_nan() {
            "NaN"
        } else if v.is_infinite() {
            "infinite"
        } else {
            "negative"
        };
        return Err(Failure::input(format!("{}: --class-weights: weight {v} of class {class} is {why}", input.name())));
    }
    Ok(w)
}

/// The operation of a file command, with its options.
pub enum Op {
    Lse,
    Softmax {
        temperature: f32,
        log: bool,
    },
    Ce {
        ignore_index: Option<i64>,
        class_weights: Option<Vec<f32>>,
        smoothing: f32,
    },
    /// Probability targets; weights and smoothing are applied to the targets as read,
    /// PyTorch's `−Σ_j W_j·((1−s)·P_ij + s/K)·log_softmax_j`.
    CeProbs {
        class_weights: Option<Vec<f32>>,
        smoothing: f32,
    },
    Kl {
        p_logits: bool,
        q_logits: bool,
    },
    Entropy {
        logits: bool,
    },
    Bce {
        logits: bool,
    },
    GaussianKl,
    Distill {
        temperature: f32,
        alpha: f32,
    },
}

/// One chunk's floats as read: half precision stays half (half the upload), the rest is f32.
enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Data {
    fn floats(&self) -> Floats<'_> {
        match self {
            Data::F32(v) => Floats::F32(v),
            Data::F16(v) => Floats::F16(v),
        }
    }
}

/// Rows `start..start + rows` of every input.
struct Chunk {
    start: u64,
    rows: usize,
    a: Data,
    b: Option<Data>,
    labels: Option<Vec<i64>>,
    bytes: u64,
}

/// A file command ready to run.
pub struct Job {
    command: &'static str,
    op: Op,
    a: Input,
    b: Option<Input>,
    labels: Option<Input>,
    out: Option<PathBuf>,
    common: Common,
    rows: u64,
    cols: u64,
    /// Every float input is `<f2` and read as is.
    half: bool,
    chunk_rows: u64,
}

/// What a run gives besides the per-row values it wrote.
struct Totals {
    sum: f64,
    denominator: f64,
    /// Rows whose argmax is the label, of the rows counted (not ignored).
    hits: Option<(u64, u64)>,
    adapter: String,
}

impl Job {
    /// Checks the inputs against each other and the options, before anything is read.
    pub fn new(
        command: &'static str,
        op: Op,
        a: Input,
        b: Option<Input>,
        labels: Option<Input>,
        out: Option<PathBuf>,
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
        match &op {
            Op::Ce { smoothing, .. } | Op::CeProbs { smoothing, .. } if !(0.0..=1.0).contains(smoothing) => {
                return Err(Failure::input(format!("--label-smoothing: {smoothing} is not in [0, 1]")));
            }
            _ => {}
        }
        let transforms_b =
            matches!(&op, Op::CeProbs { class_weights, smoothing } if class_weights.is_some() || *smoothing > 0.0);
        let half = [Some(&a), b.as_ref()].into_iter().flatten().all(|i| i.file.dtype() == xent::npy::NpyDType::F16)
            && !transforms_b;
        let values_per_row = if matches!(op, Op::Softmax { .. }) { cols } else { 1 };
        let row_bytes = memory_row_bytes(&[Some(&a), b.as_ref()], labels.is_some(), half, values_per_row);
        let chunk_rows = common.chunk_rows.unwrap_or((CHUNK_BYTES / row_bytes).max(1));
        let job = Job { command, op, a, b, labels, out, common, rows, cols, half, chunk_rows };
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
        matches!(self.op, Op::Softmax { .. })
    }

    /// Cross-entropy with labels reports accuracy and perplexity.
    fn scores(&self) -> bool {
        matches!(self.op, Op::Ce { .. })
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
        let dist = |logits: bool, b: Batch<'c>| if logits { Dist::Logits(b) } else { Dist::Probs(b) };
        Ok(match &self.op {
            Op::Lse => Loss::LogSumExp { logits: a },
            &Op::Softmax { temperature, log } => Loss::Softmax { logits: a, temperature, log },
            Op::Ce { ignore_index, class_weights, smoothing } => Loss::CrossEntropy {
                logits: a,
                labels: labels()?,
                options: CrossEntropyOptions {
                    ignore_index: *ignore_index,
                    class_weights: class_weights.as_deref(),
                    label_smoothing: *smoothing,
                },
            },
            Op::CeProbs { .. } => Loss::CrossEntropyProbs { logits: a, target: second()? },
            &Op::Kl { p_logits, q_logits } => Loss::KlDiv { p: dist(p_logits, a), q: dist(q_logits, second()?) },
            &Op::Entropy { logits } => Loss::Entropy { p: dist(logits, a) },
            &Op::Bce { logits } => Loss::BinaryCrossEntropy { input: dist(logits, a), target: second()? },
            Op::GaussianKl => Loss::GaussianKl { mean: a, logvar: second()? },
            &Op::Distill { temperature, alpha } => {
                Loss::Distill { student: a, teacher: second()?, labels: labels()?, temperature, alpha }
            }
        })
    }

    /// Reads rows `start..start + rows` of every input, checking labels as they come.
    fn read(&self, start: u64, rows: usize) -> Result<Chunk, Failure> {
        let a = self.read_floats(&self.a, start, rows)?;
        let b = match &self.b {
            Some(b) => Some(self.transform_targets(self.read_floats(b, start, rows)?, b, start)?),
            None => None,
        };
        let labels = match &self.labels {
            Some(y) => {
                let mut v = Vec::new();
                y.file.read_labels(start, rows, &mut v)?;
                let ignore = match self.op {
                    Op::Ce { ignore_index, .. } => ignore_index,
                    _ => None,
                };
                let cols = self.cols as i64;
                if let Some(i) = v.iter().position(|&l| Some(l) != ignore && !(0..cols).contains(&l)) {
                    return Err(Failure::input(format!(
                        "{}: row {}: label {} is outside [0, {cols})",
                        y.name(),
                        start + i as u64,
                        v[i]
                    )));
                }
                Some(v)
            }
            None => None,
        };
        let bytes = [Some(&self.a), self.b.as_ref(), self.labels.as_ref()]
            .into_iter()
            .flatten()
            .map(|i| rows as u64 * i.file.cols() * i.file.dtype().size() as u64)
            .sum();
        Ok(Chunk { start, rows, a, b, labels, bytes })
    }

    fn read_floats(&self, input: &Input, start: u64, rows: usize) -> Result<Data, Failure> {
        if self.half {
            let mut v = Vec::new();
            input.file.read_f16_raw(start, rows, &mut v)?;
            Ok(Data::F16(v))
        } else {
            let mut v = Vec::new();
            input.file.read_f32(start, rows, &mut v)?;
            Ok(Data::F32(v))
        }
    }

    /// Probability targets with label smoothing and class weights folded in.
    fn transform_targets(&self, data: Data, input: &Input, start: u64) -> Result<Data, Failure> {
        let Op::CeProbs { class_weights, smoothing } = &self.op else { return Ok(data) };
        if class_weights.is_none() && *smoothing == 0.0 {
            return Ok(data);
        }
        let Data::F32(mut v) = data else { return Err(Failure::machine("targets read as half precision")) };
        let k = self.cols as usize;
        let uniform = *smoothing / k as f32;
        for (i, p) in v.iter_mut().enumerate() {
            if p.is_nan() || *p < 0.0 || *p == f32::INFINITY {
                return Err(Failure::input(format!(
                    "{}: row {}: probability {p} at column {} is {}",
                    input.name(),
                    start + (i / k) as u64,
                    i % k,
                    if p.is_nan() {
                        "NaN"
                    } else if *p < 0.0 {
                        "negative"
                    } else {
                        "infinite"
                    }
                )));
            }
            let w = class_weights.as_ref().map_or(1.0, |w| w[i % k]);
            *p = w * ((1.0 - smoothing) * *p + uniform);
        }
        Ok(Data::F32(v))
    }

    /// Runs the job and returns its JSON line.
    pub fn run(self) -> Result<Value, Failure> {
        let started = Instant::now();
        let mut ctx = match self.common.device {
            Device::Cpu => None,
            Device::Gpu => Some(Context::new_blocking()?),
            // no adapter at all: the reference still answers
            Device::Auto => Context::new_blocking().ok(),
        };
        if let Some(ctx) = &mut ctx {
            // a piece's device buffers within a chunk's bytes (two pieces are in flight)
            ctx.set_chunk_bytes(CHUNK_BYTES);
        }
        let engine = match &ctx {
            None => Engine::Cpu,
            Some(c) if self.rows == 0 => Engine::Gpu(c, None),
            Some(c) => self.gpu_stream(c)?.map_or(Engine::Cpu, |s| Engine::Gpu(c, Some(Box::new(s)))),
        };
        let gpu = matches!(engine, Engine::Gpu(..));
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
            let (tx, rx) = sync_channel(1);
            let job = &self;
            scope.spawn(move || {
                for &(start, n) in &chunks {
                    let chunk = job.read(start, n);
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        break;
                    }
                }
            });
            match engine {
                Engine::Gpu(ctx, stream) => self.run_gpu(ctx, stream, rx, &progress),
                Engine::Cpu => self.run_cpu(rx, &progress),
            }
        });
        progress.finish();
        let totals = totals?;
        let seconds = t.elapsed().as_secs_f64();
        Ok(self.report(&totals, total_bytes, seconds, setup_seconds, gpu))
    }

    fn run_options(&self) -> RunOptions {
        RunOptions {
            base: self.base(),
            keep_values: self.out.is_some() && !self.softmax(),
            keep_argmax: self.scores(),
            chunk_rows: self.common.chunk_rows,
        }
    }

    /// The `--out` writer, opened before the work so a bad path fails first.
    fn writer(&self) -> Result<Option<NpyWriter>, Failure> {
        let shape = if self.softmax() { vec![self.rows, self.cols] } else { vec![self.rows] };
        Ok(self.out.as_ref().map(|p| NpyWriter::create(p, &shape)).transpose()?)
    }

    /// The GPU stream of this job, or `None` where the adapter cannot run it (a row wider
    /// than a binding): `auto` then runs on the CPU with a note on stderr; `gpu`, which
    /// demands the GPU, fails with status 1.
    fn gpu_stream<'c>(&self, ctx: &'c Context) -> Result<Option<Stream<'c>>, Failure> {
        let empty = Chunk {
            start: 0,
            rows: 0,
            a: self.empty_data(),
            b: self.b.as_ref().map(|_| self.empty_data()),
            labels: self.labels.as_ref().map(|_| Vec::new()),
            bytes: 0,
        };
        match ctx.stream(&self.loss(&empty)?, self.rows, &self.run_options()) {
            Ok(stream) => Ok(Some(stream)),
            Err(xent::Error::TooLarge(why)) if self.common.device == Device::Auto => {
                let _ = writeln!(std::io::stderr(), "xent: note: {why}; running on the CPU");
                Ok(None)
            }
            Err(xent::Error::TooLarge(why)) => {
                Err(Failure::machine(format!("{why}; --device auto or --device cpu runs it on the CPU")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// No rows of an input in the form chunks are read in.
    fn empty_data(&self) -> Data {
        if self.half { Data::F16(Vec::new()) } else { Data::F32(Vec::new()) }
    }

    fn run_gpu(
        &self,
        ctx: &Context,
        stream: Option<Box<Stream>>,
        rx: Receiver<Result<Chunk, Failure>>,
        progress: &Progress,
    ) -> Result<Totals, Failure> {
        let mut writer = self.writer()?;
        let adapter = ctx.adapter_label();
        let Some(mut stream) = stream else {
            // no rows: PyTorch's empty mean is NaN, the sum 0
            return self.finish_empty(writer, adapter);
        };
        let mut seen = Seen { softmax_sum: 0.0, hits: self.scores().then_some((0, 0)) };
        for chunk in rx {
            let chunk = chunk?;
            let loss = self.loss(&chunk)?;
            let rows = stream.push(&loss).map_err(|e| self.describe(e))?;
            self.take(rows, &mut writer, &mut seen)?;
            progress.advance(chunk.bytes);
        }
        let rows = stream.drain().map_err(|e| self.describe(e))?;
        self.take(rows, &mut writer, &mut seen)?;
        let out = stream.finish().map_err(|e| self.describe(e))?;
        if let Some(w) = writer {
            w.finish()?;
        }
        let sum = if self.softmax() { seen.softmax_sum } else { out.sum };
        Ok(Totals { sum, denominator: out.denominator, hits: seen.hits, adapter })
    }

    /// Writes the per-row results the device sent back and counts their top-1 hits.
    fn take(&self, rows: Rows, writer: &mut Option<NpyWriter>, seen: &mut Seen) -> Result<(), Failure> {
        if self.softmax() {
            // one value after another, so the sum does not depend on the chunking
            seen.softmax_sum = rows.values.iter().fold(seen.softmax_sum, |s, &v| s + f64::from(v));
        }
        if let Some(w) = writer.as_mut().filter(|_| !rows.values.is_empty()) {
            w.write(&rows.values)?;
        }
        if let Some((hit, counted)) = &mut seen.hits {
            let (h, c) = self.count_hits(rows.start, &rows.argmax)?;
            *hit += h;
            *counted += c;
        }
        Ok(())
    }

    fn run_cpu(&self, rx: Receiver<Result<Chunk, Failure>>, progress: &Progress) -> Result<Totals, Failure> {
        let mut writer = self.writer()?;
        let (mut sum, mut denominator) = (Sum::default(), Sum::default());
        let mut hits = self.scores().then_some((0u64, 0u64));
        for chunk in rx {
            let chunk = chunk?;
            let loss = self.loss(&chunk)?;
            let r = xent::reference::compute(&loss, self.base()).map_err(|e| self.row_failure(e, chunk.start))?;
            r.values.iter().for_each(|&v| sum.add(v));
            r.weights.iter().for_each(|&w| denominator.add(w));
            if let Some(w) = &mut writer {
                w.write(&r.values.iter().map(|&v| v as f32).collect::<Vec<f32>>())?;
            }
            if let (Some((hit, counted)), Some(argmax), Some(labels)) = (&mut hits, &r.argmax, &chunk.labels) {
                let ignore = self.ignore_index();
                for (&a, &y) in argmax.iter().zip(labels) {
                    if Some(y) != ignore {
                        *counted += 1;
                        *hit += u64::from(i64::from(a) == y);
                    }
                }
            }
            progress.advance(chunk.bytes);
        }
        if let Some(w) = writer {
            w.finish()?;
        }
        let denominator = if self.softmax() { self.rows as f64 } else { denominator.value() };
        Ok(Totals { sum: sum.value(), denominator, hits, adapter: "cpu (f64 reference)".into() })
    }

    fn finish_empty(&self, writer: Option<NpyWriter>, adapter: String) -> Result<Totals, Failure> {
        if let Some(w) = writer {
            w.finish()?;
        }
        Ok(Totals { sum: 0.0, denominator: 0.0, hits: self.scores().then_some((0, 0)), adapter })
    }

    fn ignore_index(&self) -> Option<i64> {
        match self.op {
            Op::Ce { ignore_index, .. } => ignore_index,
            _ => None,
        }
    }

    /// Top-1 hits of the device's argmax of rows `first..` against the labels, read again
    /// in chunks.
    fn count_hits(&self, first: u64, argmax: &[u32]) -> Result<(u64, u64), Failure> {
        let Some(y) = &self.labels else { return Ok((0, 0)) };
        let ignore = self.ignore_index();
        let (mut hit, mut counted) = (0u64, 0u64);
        let mut labels = Vec::new();
        let step = 1usize << 20;
        for start in (0..argmax.len()).step_by(step) {
            let n = step.min(argmax.len() - start);
            y.file.read_labels(first + start as u64, n, &mut labels)?;
            for (&a, &l) in argmax[start..start + n].iter().zip(&labels) {
                if Some(l) != ignore {
                    counted += 1;
                    hit += u64::from(i64::from(a) == l);
                }
            }
        }
        Ok((hit, counted))
    }

    /// A row error from the device, with the offending value found by running the
    /// reference on that row alone.
    fn describe(&self, e: xent::Error) -> Failure {
        if let xent::Error::Value { row, .. } = &e
            && let Ok(chunk) = self.read(*row, 1)
            && let Ok(loss) = self.loss(&chunk)
            && let Err(e @ xent::Error::Value { .. }) = xent::reference::compute(&loss, self.base())
        {
            return self.row_failure(e, *row);
        }
        e.into()
    }

    /// A row error of the chunk starting at row `start`, renumbered to the whole file; a bad
    /// value's message names the file that holds it.
    fn row_failure(&self, e: xent::Error, start: u64) -> Failure {
        match e {
            xent::Error::Value { row, detail } => {
                let row = row + start;
                Failure::input(format!("{}: row {row}: {detail}", self.holder(row, &detail).name()))
            }
            e => offset(e, start),
        }
    }

    /// The input whose value at `row` the reference reports as `detail`: the second input,
    /// unless the report stays the same with that input's row replaced by a uniform one
    /// (valid as probabilities, targets and logits alike).
    fn holder(&self, row: u64, detail: &str) -> &Input {
        let Some(b) = &self.b else { return &self.a };
        let Ok(mut chunk) = self.read(row, 1) else { return b };
        let (k, uniform) = (self.cols as usize, 1.0 / self.cols as f32);
        chunk.b = match chunk.b {
            Some(Data::F16(_)) => Some(Data::F16(vec![f16::from_f32(uniform); k])),
            _ => Some(Data::F32(vec![uniform; k])),
        };
        match self.loss(&chunk).map(|loss| xent::reference::compute(&loss, self.base())) {
            Ok(Err(xent::Error::Value { detail: d, .. })) if d == detail => &self.a,
            _ => b,
        }
    }

    fn report(&self, t: &Totals, bytes: u64, seconds: f64, setup_seconds: f64, gpu: bool) -> Value {
        let mean = t.sum / t.denominator;
        let value = match self.common.reduction {
            Reduction::Mean => mean,
            Reduction::Sum | Reduction::None => t.sum,
        };
        let mut line = json!({
            "command": self.command,
            "rows": self.rows,
            "cols": self.cols,
            "reduction": match self.common.reduction {
                Reduction::None => "none",
                Reduction::Sum => "sum",
                Reduction::Mean => "mean",
            },
            "value": number(value),
            "adapter": t.adapter,
            "seconds": seconds,
            "device": if gpu { "gpu" } else { "cpu" },
            "dtype": self.a.file.dtype().descr(),
            "sum": number(t.sum),
            "mean": number(mean),
            "bytes": bytes,
            "gbps": bytes as f64 / seconds.max(1e-9) / 1e9,
            "setup_seconds": setup_seconds,
        });
        let Some(fields) = line.as_object_mut() else { return line };
        if !matches!(self.op, Op::Lse | Op::Softmax { .. }) {
            fields.insert("base".into(), json!(if self.base() == LogBase::Bits { "bits" } else { "nats" }));
        }
        if let Some((hit, counted)) = t.hits {
            fields.insert("accuracy".into(), number(hit as f64 / counted as f64));
            // exp of the mean loss in nats, whatever --base says
            fields.insert("perplexity".into(), number((mean / self.base().scale()).exp()));
        }
        if let Some(out) = &self.out {
            fields.insert("out".into(), json!(out.display().to_string()));
        }
        line
    }
}

/// Where a job runs: on the GPU (no stream for a job of no rows), or the CPU reference.
enum Engine<'c> {
    Gpu(&'c Context, Option<Box<Stream<'c>>>),
    Cpu,
}

/// What the GPU path adds up from the per-row results as they come back.
struct Seen {
    softmax_sum: f64,
    hits: Option<(u64, u64)>,
}

/// The bytes a row of a chunk takes in memory while it is worked on, on either path:
/// each float input as read (half precision kept, else f32) and as uploaded, labels as
/// i64, and the per-row results (the reference's f64 values and weights, the f32 values
/// written, the argmax).
fn memory_row_bytes(floats: &[Option<&Input>], labels: bool, half: bool, values_per_row: u64) -> u64 {
    let elem = if half { 2 } else { 4 };
    let inputs: u64 = floats.iter().flatten().map(|i| 2 * i.file.cols() * elem).sum();
    inputs + if labels { 8 } else { 0 } + values_per_row * (8 + 4) + 8 + 4
}

/// A row error of a chunk, renumbered to the whole file.
fn offset(e: xent::Error, start: u64) -> Failure {
    match e {
        xent::Error::Label { row, detail } => xent::Error::Label { row: row + start, detail }.into(),
        xent::Error::Value { row, detail } => xent::Error::Value { row: row + start, detail }.into(),
        e => e.into(),
    }
}

/// A streaming Neumaier sum; infinities and NaN propagate as in a plain sum.
#[derive(Default)]
struct Sum {
    s: f64,
    c: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        if !x.is_finite() || !self.s.is_finite() {
            self.s += x;
            return;
        }
        let t = self.s + x;
        self.c += if self.s.abs() >= x.abs() { (self.s - t) + x } else { (x - t) + self.s };
        self.s = t;
    }

    fn value(&self) -> f64 {
        if self.s.is_finite() { self.s + self.c } else { self.s }
    }
}

/// A JSON number, or the strings "inf", "-inf", "nan" for non-finite values.
pub fn number(v: f64) -> Value {
    if v.is_nan() {
        json!("nan")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(v)
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal and the run has taken
/// over a second, so scripts and short runs see nothing.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    enabled: bool,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    fn new(total_bytes: u64, quiet: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        let enabled = !quiet && std::io::stderr().is_terminal();
        Progress { bar, started: Instant::now(), enabled, shown: false.into() }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if self.enabled && !self.shown.get() && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown.set(true);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
