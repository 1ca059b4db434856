//! A job on the engine fed in row chunks ([`Stream`]), as [`crate::Stream`] feeds the GPU:
//! a chunk's rows are read where they lie (a file's mapping included: no copy), run in
//! pieces, and added into the sums in row order, so that the result does not depend on how
//! the rows were chunked.

use rayon::prelude::*;

use super::Engine;
use super::plan::Plan;
use super::row::{Fault, RowOut};
use crate::error::{Error, Result, try_grow, try_vec};
use crate::host::describe;
use crate::host_memory::SharedBytes;
use crate::loss::Loss;
use crate::stream::{Output, Rows, RunOptions};
use crate::sum::CompensatedSum;

/// Elements of a piece's inputs, and its most rows: they bound the per-row results held at
/// once.
const PIECE_ELEMENTS: usize = 1 << 23;
const PIECE_ROWS: usize = 1 << 16;
/// Elements of one task: a few rows of many columns, or many of few.
const TASK_ELEMENTS: usize = 1 << 15;

/// Rows of a piece that one thread runs: dispatched by pulp, so that the row functions,
/// all inlined into [`Task::with_simd`], are compiled for the instruction set it picked.
struct Task<'t, 'a> {
    plan: &'t Plan,
    chunk: &'t Loss<'a>,
    /// The chunk's row of `outs[0]`.
    first: usize,
    outs: &'t mut [RowOut],
    /// Softmax's rows, else empty.
    values: &'t mut [f32],
}

impl pulp::WithSimd for Task<'_, '_> {
    /// The first row with bad input, where there is one.
    type Output = Option<(usize, Fault)>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        let cols = self.plan.cols;
        let mut scratch = [Vec::new(), Vec::new()];
        for (i, out) in self.outs.iter_mut().enumerate() {
            let row = self.first + i;
            let softmax_row = if self.values.is_empty() { &mut [][..] } else { &mut self.values[i * cols..][..cols] };
            match self.plan.row(self.chunk, row, &mut scratch, softmax_row) {
                Ok(r) => *out = r,
                Err(f) => return Some((row, f)),
            }
        }
        None
    }
}

/// A job fed in row chunks, in order; see [`Engine::stream`].
pub struct Stream<'e> {
    engine: &'e Engine,
    plan: Plan,
    rows: u64,
    next_row: u64,
    sum: CompensatedSum,
    denominator: CompensatedSum,
    z: CompensatedSum,
    entropy: CompensatedSum,
}

impl<'e> Stream<'e> {
    pub(super) fn new(engine: &'e Engine, template: &Loss, rows: u64, options: &RunOptions) -> Result<Stream<'e>> {
        let plan = Plan::new(template, options)?;
        if rows == 0 || plan.cols == 0 {
            return Err(Error::Shape { what: "batch", detail: format!("is empty ([{rows}, {}])", plan.cols) });
        }
        let zero = CompensatedSum::default();
        Ok(Stream { engine, plan, rows, next_row: 0, sum: zero, denominator: zero, z: zero, entropy: zero })
    }

    /// The rows of one piece: a push of no more rows is run at once.
    pub fn piece_rows(&self) -> u64 {
        let rows = self.plan.options.chunk_rows.unwrap_or(u64::MAX).max(1);
        rows.min((PIECE_ELEMENTS / self.plan.cols).clamp(1, PIECE_ROWS) as u64)
    }

    /// Rows pushed so far.
    pub fn rows_done(&self) -> u64 {
        self.next_row
    }

    /// Rows pushed so far: the engine reads every row where it lies.
    pub fn rows_read_in_place(&self) -> u64 {
        self.next_row
    }

    /// Runs the next rows of the job (`chunk`: the template's operation over the next
    /// rows) and returns their per-row results at once: softmax's rows, and what
    /// [`RunOptions`] keeps.
    pub fn push(&mut self, chunk: &Loss) -> Result<Rows> {
        chunk.validate()?;
        let n = chunk.primary().rows;
        let same = chunk.op == self.plan.op && chunk.primary().cols == self.plan.cols;
        if !same || self.next_row + n as u64 > self.rows {
            return Err(Error::Shape {
                what: "chunk",
                detail: format!(
                    "of [{n}, {}] does not continue a [{}, {}] job at row {}",
                    chunk.primary().cols,
                    self.rows,
                    self.plan.cols,
                    self.next_row
                ),
            });
        }
        let mut rows = Rows { start: self.next_row, ..Default::default() };
        let step = self.piece_rows() as usize;
        let mut start = 0;
        while start < n {
            let len = step.min(n - start);
            self.piece(chunk, start, len, &mut rows).map_err(|e| self.locate(e, chunk))?;
            start += len;
        }
        self.next_row += n as u64;
        Ok(rows)
    }

    /// [`Stream::push`]: the engine reads rows where they lie, in `memory` or not.
    pub fn push_shared(&mut self, chunk: &Loss, _memory: &[SharedBytes]) -> Result<Rows> {
        self.push(chunk)
    }

    /// Nothing is in flight on the engine: an empty [`Rows`].
    pub fn drain(&mut self) -> Result<Rows> {
        Ok(Rows { start: self.next_row, ..Default::default() })
    }

    /// A row error of `chunk`: worded from the chunk's data, at the row of the job.
    fn locate(&self, e: Error, chunk: &Loss) -> Error {
        match describe(e, chunk) {
            Error::Label { row, label, cols } => Error::Label { row: row + self.next_row, label, cols },
            Error::Value { row, detail } => Error::Value { row: row + self.next_row, detail },
            e => e,
        }
    }

    /// Runs rows `start..start + n` of `chunk` and adds them up; an error names the row of
    /// the chunk.
    fn piece(&mut self, chunk: &Loss, start: usize, n: usize, rows: &mut Rows) -> Result<()> {
        let plan = &self.plan;
        let cols = plan.cols;
        let mut outs: Vec<RowOut> = try_vec(n, "per-row results")?;
        outs.resize(n, RowOut::default());
        let mut values: Vec<f32> = Vec::new();
        if plan.softmax() {
            values = try_vec(n * cols, "softmax rows")?;
            values.resize(n * cols, 0.0);
        }
        let task = (TASK_ELEMENTS / cols).max(1);
        let arch = self.engine.arch;
        let fault = self.engine.install(|| {
            let run = |(k, (outs, values)): (usize, (&mut [RowOut], &mut [f32]))| {
                arch.dispatch(Task { plan, chunk, first: start + k * task, outs, values })
            };
            let mut parts: Vec<&mut [f32]> = match values.is_empty() {
                true => (0..outs.len().div_ceil(task)).map(|_| &mut [][..]).collect(),
                false => values.chunks_mut(task * cols).collect(),
            };
            let tasks = outs.par_chunks_mut(task).zip(parts.par_iter_mut());
            tasks.enumerate().map(|(k, (o, v))| (k, (o, &mut **v))).filter_map(run).min_by_key(|f| f.0)
        });
        if let Some((row, f)) = fault {
            let row = row as u64;
            return Err(match f {
                // the label itself is worded from the chunk's data (`describe`)
                Fault::Label => Error::Label { row, label: None, cols: cols as u64 },
                Fault::Value => Error::Value { row, detail: String::new() },
            });
        }
        self.gather(&outs, values, rows)
    }

    /// Adds a piece's rows into the sums, in row order, and keeps what the options ask for.
    fn gather(&mut self, outs: &[RowOut], values: Vec<f32>, rows: &mut Rows) -> Result<()> {
        let (plan, o) = (&self.plan, &self.plan.options);
        if plan.softmax() {
            values.iter().for_each(|&v| self.sum.add(f64::from(v)));
            outs.iter().for_each(|_| self.denominator.add(1.0));
            try_grow(&mut rows.values, values.len(), "per-row values")?;
            rows.values.extend(values);
        } else {
            for r in outs {
                self.sum.add(f64::from(r.value));
                self.denominator.add(f64::from(r.weight));
                self.z.add(f64::from(r.z));
                if !r.ignored {
                    self.entropy.add(f64::from(r.entropy));
                }
            }
            if o.keep_values {
                try_grow(&mut rows.values, outs.len(), "per-row values")?;
                rows.values.extend(outs.iter().map(|r| r.value));
            }
        }
        if o.keep_argmax && plan.op.has_argmax() {
            try_grow(&mut rows.argmax, outs.len(), "per-row argmax")?;
            rows.argmax.extend(outs.iter().map(|r| r.argmax));
        }
        if o.keep_entropy && plan.op.has_entropy() {
            try_grow(&mut rows.entropy, outs.len(), "per-row entropy")?;
            rows.entropy.extend(outs.iter().map(|r| r.entropy));
        }
        if plan.report {
            try_grow(&mut rows.evals, outs.len(), "per-row report")?;
            rows.evals.extend(outs.iter().filter_map(|r| r.eval));
        }
        rows.rows += outs.len() as u64;
        Ok(())
    }

    /// The job's reductions. Per-row results were all returned by the pushes: the kept ones
    /// come here empty.
    pub fn finish(self) -> Result<Output> {
        if self.next_row != self.rows {
            return Err(Error::Shape {
                what: "job",
                detail: format!("ended after {} of its {} rows", self.next_row, self.rows),
            });
        }
        let (plan, o) = (&self.plan, &self.plan.options);
        let z_loss = match plan.op {
            crate::Op::CrossEntropy { z_loss, .. } | crate::Op::CrossEntropyProbs { z_loss, .. } => z_loss,
            _ => 0.0,
        };
        Ok(Output {
            rows: self.rows as usize,
            cols: plan.cols,
            sum: self.sum.value(),
            denominator: self.denominator.value(),
            z_sum: (z_loss > 0.0).then(|| self.z.value()),
            entropy_sum: plan.op.has_entropy().then(|| self.entropy.value()),
            values: (plan.softmax() || o.keep_values).then(Vec::new),
            argmax: (o.keep_argmax && plan.op.has_argmax()).then(Vec::new),
            entropy: (o.keep_entropy && plan.op.has_entropy()).then(Vec::new),
        })
    }
}
