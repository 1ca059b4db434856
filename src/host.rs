//! Jobs on host slices, whole ([`Context::compute`]) or fed in row chunks
//! ([`Context::stream`], for files bigger than memory; see [`Stream`]).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::host_memory::SharedBytes;
use crate::loss::{Batch, DType, Dist, Loss};
use crate::op::Op;
use crate::ops;
use crate::reference::{bad_probability, outside_unit};
use crate::stream::Layout;
pub use crate::stream::{Output, Rows, RunOptions, Stream};

impl Context {
    /// Runs `f` inside validation and out-of-memory error scopes.
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let result = f();
        let oom = pollster::block_on(oom.pop());
        let validation = pollster::block_on(validation.pop());
        match validation.or(oom) {
            Some(e) => Err(Error::Gpu(e.to_string())),
            None => result,
        }
    }

    /// Runs `loss` on the GPU and returns its reductions (and per-row values if asked).
    pub fn compute(&self, loss: &Loss, options: &RunOptions) -> Result<Output> {
        let mut stream = self.stream(loss, loss.primary().rows as u64, options)?;
        // all rows' results in one allocation, made before the work
        let mut rows = stream.rows_with_room(loss.primary().rows)?;
        stream.push_into(loss, &mut rows)?;
        rows.append(stream.drain()?)?;
        let out = stream.finish().map_err(|e| describe(e, loss))?;
        Ok(whole(out, rows, loss))
    }

    /// [`Context::compute`] of a `loss` whose float inputs lie in `memory` (a file's mapping,
    /// an array held by its owner), which a device that reads host memory reads in place
    /// ([`Stream::push_shared`]).
    pub fn compute_shared(&self, loss: &Loss, options: &RunOptions, memory: &[SharedBytes]) -> Result<Output> {
        let mut stream = self.stream(loss, loss.primary().rows as u64, options)?;
        let mut rows = stream.push_shared(loss, memory)?;
        rows.append(stream.drain()?)?;
        let out = stream.finish().map_err(|e| describe(e, loss))?;
        Ok(whole(out, rows, loss))
    }

    /// Starts a job of `rows` rows in all, fed in chunks by [`Stream::push`]. `template`
    /// sets the operation, options, columns and dtypes; its data is not read.
    ///
    /// A job the adapter cannot run (a row wider than a binding, over 2^32 rows) is
    /// [`Error::TooLarge`], here rather than at the first chunk.
    pub fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> Result<Stream<'_>> {
        template.validate()?;
        // the row layouts of a new kind of job timed first, where the tuner is on
        self.tune(template, rows, options.report);
        let job = ops::job(template, options.base)?;
        let cols = job.a.cols as u64;
        let dtype = match job.b {
            Some(b) if b.data.dtype() != job.a.data.dtype() => DType::F32,
            _ => job.a.data.dtype(),
        };
        if rows == 0 || cols == 0 {
            return Err(Error::Shape { what: "batch", detail: format!("is empty ([{rows}, {cols}])") });
        }
        if rows > u64::from(u32::MAX - 1) || cols > u64::from(u32::MAX) {
            return Err(Error::TooLarge(format!("[{rows}, {cols}] is more than the GPU path takes (2^32 - 2 rows)")));
        }
        let layout = Layout::new(&job, dtype, options);
        let chunk = layout.piece_rows(self, rows)?;
        let chunk = options.chunk_rows.map_or(chunk, |c| chunk.min(c.max(1)));
        self.scoped(|| {
            let stream = Stream::new(self, (template.op, template.softcap), &job, layout, rows, chunk, *options);
            stream.prepare()?;
            Ok(stream)
        })
    }
}

/// `out` with a whole job's `rows` where it kept them: softmax's values always (and their
/// sum), the per-row values, argmax and entropies where the options asked.
fn whole(mut out: Output, rows: Rows, loss: &Loss) -> Output {
    let softmax = loss.op.writes_rows();
    if softmax {
        out.sum = rows.values.iter().map(|&v| f64::from(v)).sum();
    }
    if softmax || out.values.is_some() {
        out.values = Some(rows.values);
    }
    if out.argmax.is_some() {
        out.argmax = Some(rows.argmax);
    }
    if out.entropy.is_some() {
        out.entropy = Some(rows.entropy);
    }
    out
}

/// Adds the offending value to a row error, from the host data of `loss`.
pub(crate) fn describe(e: Error, loss: &Loss) -> Error {
    match e {
        Error::Label { row, label, cols } => {
            let label = loss.labels().map(|y| y.get(row as usize)).or(label);
            Error::Label { row, label, cols }
        }
        Error::Value { row, detail } => {
            Error::Value { row, detail: first_bad_value(loss, row as usize).unwrap_or(detail) }
        }
        e => e,
    }
}

/// The first out-of-domain probability or target of `row` (the rules of the reference).
fn first_bad_value<'a>(loss: &Loss<'a>, row: usize) -> Option<String> {
    let (p, q) = loss.dists();
    let given_probs = |d: Option<Dist<'a>>| d.filter(|d| !d.is_logits()).map(|d| *d.batch());
    let (probs, targets): (Vec<Batch>, Option<&Batch>) = match loss.op {
        Op::CrossEntropyProbs { .. } => (loss.secondary().copied().into_iter().collect(), None),
        Op::KlDiv { .. } | Op::Jsd { .. } => {
            ([given_probs(Some(p)), given_probs(q)].into_iter().flatten().collect(), None)
        }
        Op::Entropy { .. } => (given_probs(Some(p)).into_iter().collect(), None),
        Op::BinaryCrossEntropy { .. } => (given_probs(Some(p)).into_iter().collect(), loss.secondary()),
        _ => return None,
    };
    let unit = targets.is_some();
    for j in 0..loss.primary().cols {
        if let Some((t, why)) = targets.map(|t| t.get(row, j)).and_then(|t| Some((t, outside_unit(t)?))) {
            return Some(format!("target {t} at column {j} {why}"));
        }
        for v in probs.iter().map(|b| b.get(row, j)) {
            if let Some(why) = if unit { outside_unit(v) } else { bad_probability(v) } {
                return Some(format!("probability {v} at column {j} {why}"));
            }
        }
    }
    None
}
