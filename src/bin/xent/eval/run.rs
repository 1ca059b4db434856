//! The job's two runs: a stream on the GPU or the CPU engine, with the per-row results it
//! sends back, and the f64 reference.

use std::io::Write;
use std::sync::mpsc::{Receiver, Sender};

use xent::metrics::{BinaryMetrics, Metrics};
use xent::npy::NpyWriter;
use xent::{BackendStream, CompensatedSum, Context, Rows, Stream};

use super::Job;
use super::input::{Chunk, Data};
use super::report::Progress;
use crate::{Device, Failure};

/// What a run gives besides the per-row values it wrote.
pub(super) struct Totals {
    pub(super) sum: f64,
    pub(super) denominator: f64,
    /// The sum of the rows' z-loss terms, where the job has a z-loss.
    pub(super) z_sum: Option<f64>,
    /// The sum of the entropies of the rows not ignored, where the job has `--entropy`.
    pub(super) entropy_sum: Option<f64>,
    /// The evaluation report of `ce` with labels.
    pub(super) metrics: Option<Metrics>,
    /// The binary report of `bce`.
    pub(super) binary: Option<BinaryMetrics>,
    pub(super) adapter: String,
}

/// Where a job runs: a stream on the GPU or the CPU engine (none for a job of no rows), or
/// the f64 reference.
pub(super) enum Engine<'c> {
    Stream { adapter: String, device: &'static str, stream: Option<Box<BackendStream<'c>>> },
    Reference,
}

/// What the GPU path adds up from the per-row results as they come back.
struct Seen {
    softmax_sum: f64,
    metrics: Option<Metrics>,
}

/// The files a run writes: `--out` and `--entropy-out`, opened before the work.
struct Writers {
    values: Option<NpyWriter>,
    entropy: Option<NpyWriter>,
}

impl Writers {
    fn finish(self) -> Result<(), Failure> {
        for w in [self.values, self.entropy].into_iter().flatten() {
            w.finish()?;
        }
        Ok(())
    }
}

impl Job {
    /// A chunk of no rows: the template of a stream.
    pub(super) fn empty_chunk(&self) -> Chunk {
        Chunk {
            start: 0,
            rows: 0,
            a: self.empty_data(),
            b: self.b.as_ref().map(|_| self.empty_data()),
            labels: self.labels.as_ref().map(|_| Vec::new()),
            bytes: 0,
        }
    }

    /// The GPU stream of this job, or `None` where the adapter cannot run it (a row wider
    /// than a binding): `auto` then runs on the CPU engine with a note on stderr; `gpu`,
    /// which demands the GPU, fails with status 1.
    pub(super) fn gpu_stream<'c>(&self, ctx: &'c Context) -> Result<Option<Stream<'c>>, Failure> {
        match ctx.stream(&self.loss(&self.empty_chunk())?, self.rows, &self.run_options()) {
            Ok(stream) => Ok(Some(stream)),
            Err(xent::Error::TooLarge(why)) if self.common.device == Device::Auto => {
                let _ = writeln!(std::io::stderr(), "xent: note: {why}; running on the CPU engine");
                Ok(None)
            }
            Err(xent::Error::TooLarge(why)) => {
                Err(Failure::machine(format!("{why}; --device auto or --device cpu runs it on the CPU")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The job on the CPU engine (no stream for a job of no rows).
    pub(super) fn cpu_engine<'c>(&self, engine: &'c xent::cpu::Engine) -> Result<Engine<'c>, Failure> {
        let stream = match self.rows {
            0 => None,
            rows => {
                let s = engine.stream(&self.loss(&self.empty_chunk())?, rows, &self.run_options())?;
                Some(Box::new(BackendStream::Cpu(s)))
            }
        };
        Ok(Engine::Stream { adapter: engine.label(), device: "cpu", stream })
    }

    /// No rows of an input in the form chunks are read in.
    pub(super) fn empty_data(&self) -> Data {
        if self.half { Data::F16(Vec::new()) } else { Data::F32(Vec::new()) }
    }

    pub(super) fn run_stream(
        &self,
        adapter: String,
        stream: Option<Box<BackendStream>>,
        (rx, spares): Chunks,
        progress: &Progress,
    ) -> Result<Totals, Failure> {
        let mut writer = Writers { values: self.writer()?, entropy: self.entropy_writer()? };
        let Some(mut stream) = stream else {
            // no rows: PyTorch's empty mean is NaN, the sum 0
            return self.finish_empty(writer, adapter);
        };
        let mut seen = Seen { softmax_sum: 0.0, metrics: self.metrics()? };
        let mut binary = self.binary_metrics()?;
        for chunk in rx {
            let chunk = chunk?;
            {
                let loss = self.loss(&chunk)?;
                if let Some(b) = &mut binary {
                    // from the chunk in memory, while the device works on it
                    b.add(&loss)?;
                }
                let rows = stream.push_shared(&loss, &chunk.shared()).map_err(|e| self.describe(e))?;
                self.take(rows, &mut writer, &mut seen)?;
            }
            progress.advance(chunk.bytes);
            give_back(&spares, chunk);
        }
        let rows = stream.drain().map_err(|e| self.describe(e))?;
        self.take(rows, &mut writer, &mut seen)?;
        let out = stream.finish().map_err(|e| self.describe(e))?;
        writer.finish()?;
        let sum = if self.softmax() { seen.softmax_sum } else { out.sum };
        let (z_sum, entropy_sum) = (out.z_sum, out.entropy_sum);
        let metrics = seen.metrics;
        Ok(Totals { sum, denominator: out.denominator, z_sum, entropy_sum, metrics, binary, adapter })
    }

    /// Writes the per-row results the device sent back and adds up their report.
    fn take(&self, rows: Rows, writer: &mut Writers, seen: &mut Seen) -> Result<(), Failure> {
        if self.softmax() {
            // one value after another, so the sum does not depend on the chunking
            seen.softmax_sum = rows.values.iter().fold(seen.softmax_sum, |s, &v| s + f64::from(v));
        }
        if let Some(w) = writer.values.as_mut().filter(|_| !rows.values.is_empty()) {
            w.write(&rows.values)?;
        }
        if let Some(w) = writer.entropy.as_mut().filter(|_| !rows.entropy.is_empty()) {
            w.write(&rows.entropy)?;
        }
        if let Some(m) = &mut seen.metrics {
            rows.evals.iter().for_each(|r| m.push(r));
        }
        Ok(())
    }

    pub(super) fn run_cpu(&self, (rx, spares): Chunks, progress: &Progress) -> Result<Totals, Failure> {
        let mut writer = Writers { values: self.writer()?, entropy: self.entropy_writer()? };
        let (mut sum, mut denominator, mut z_sum) =
            (CompensatedSum::default(), CompensatedSum::default(), None::<CompensatedSum>);
        let mut entropy_sum = self.has_entropy().then(CompensatedSum::default);
        let (mut metrics, mut binary) = (self.metrics()?, self.binary_metrics()?);
        for chunk in rx {
            let chunk = chunk?;
            let loss = self.loss(&chunk)?;
            let r = xent::reference::compute(&loss, self.base()).map_err(|e| self.row_failure(e, chunk.start))?;
            if let Some(m) = &mut metrics {
                let evals = xent::reference::row_evals(&loss).map_err(|e| self.row_failure(e, chunk.start))?;
                evals.iter().flatten().flatten().for_each(|r| m.push(r));
            }
            if let Some(b) = &mut binary {
                b.add(&loss)?;
            }
            r.values.iter().for_each(|&v| sum.add(v));
            r.weights.iter().for_each(|&w| denominator.add(w));
            let z_terms = xent::reference::z_terms(&loss, self.base()).map_err(|e| self.row_failure(e, chunk.start))?;
            if let Some(terms) = z_terms {
                let z = z_sum.get_or_insert_with(CompensatedSum::default);
                terms.iter().for_each(|&v| z.add(v));
            }
            if let Some(w) = &mut writer.values {
                w.write(&r.values.iter().map(|&v| v as f32).collect::<Vec<f32>>())?;
            }
            let entropies =
                xent::reference::entropies(&loss, self.base()).map_err(|e| self.row_failure(e, chunk.start))?;
            if let (Some(h), Some(total)) = (entropies, &mut entropy_sum) {
                self.add_entropies(&h, chunk.labels.as_deref(), total, &mut writer)?;
            }
            progress.advance(chunk.bytes);
            drop((loss, r));
            give_back(&spares, chunk);
        }
        writer.finish()?;
        let denominator = if self.softmax() { self.rows as f64 } else { denominator.value() };
        let (z_sum, entropy_sum) = (z_sum.map(|z| z.value()), entropy_sum.map(|h| h.value()));
        let adapter = "cpu (f64 reference)".into();
        Ok(Totals { sum: sum.value(), denominator, z_sum, entropy_sum, metrics, binary, adapter })
    }

    /// A chunk's entropies from the reference: every row to `--entropy-out`, the rows not
    /// ignored into the sum.
    fn add_entropies(
        &self,
        h: &[f64],
        labels: Option<&[i64]>,
        total: &mut CompensatedSum,
        w: &mut Writers,
    ) -> Result<(), Failure> {
        let ignore = self.ignore_index();
        for (i, &v) in h.iter().enumerate() {
            if ignore.is_none() || labels.map(|y| y[i]) != ignore {
                total.add(v);
            }
        }
        if let Some(w) = &mut w.entropy {
            w.write(&h.iter().map(|&v| v as f32).collect::<Vec<f32>>())?;
        }
        Ok(())
    }

    fn finish_empty(&self, writer: Writers, adapter: String) -> Result<Totals, Failure> {
        writer.finish()?;
        let (z_sum, entropy_sum) = (self.has_z_loss().then_some(0.0), self.has_entropy().then_some(0.0));
        let (metrics, binary) = (self.metrics()?, self.binary_metrics()?);
        Ok(Totals { sum: 0.0, denominator: 0.0, z_sum, entropy_sum, metrics, binary, adapter })
    }
}

/// The reader's chunks, and where their float vectors go back to it once done with.
pub(super) type Chunks = (Receiver<Result<Chunk, Failure>>, Sender<Data>);

/// Hands a chunk's float vectors back to the reader (which may have finished: then they
/// are freed).
fn give_back(spares: &Sender<Data>, chunk: Chunk) {
    // (a mapping is dropped: the device holds it while it reads it)
    for data in [Some(chunk.a), chunk.b].into_iter().flatten() {
        if !matches!(data, Data::Mapped { .. }) {
            let _ = spares.send(data);
        }
    }
}
