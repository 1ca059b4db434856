//! The host path of a context: THE seam between the package and a CPU engine. Today it is
//! the library's f64 reference (`xent::reference`), exact and single-threaded, fed a chunk
//! of rows at a time. The library's native CPU engine (`xent::cpu::Engine`, whose `compute`
//! and `stream` take and give the GPU context's types) replaces [`Cpu`] and [`CpuStream`]
//! here, and nothing else in the package changes for the row operations and evaluation.
//! The host path's gradient (grad.rs) and fused linear head (ops.rs) call the reference
//! themselves: the engine's API has neither.

use xent::metrics::RowEval;
use xent::{CompensatedSum, Loss, Op, Output, Rows, RunOptions};

use crate::backend::CHUNK_BYTES;

/// The host path: the f64 reference, until the CPU engine takes its place (see the module).
pub(crate) struct Cpu;

impl Cpu {
    pub(crate) fn label(&self) -> String {
        "cpu (f64 reference)".into()
    }

    /// `loss` whole: per-row values and the reductions, as the GPU's `compute` gives them.
    pub(crate) fn compute(&self, loss: &Loss, options: &RunOptions) -> xent::Result<Output> {
        let rows = loss.primary().rows as u64;
        let keep = RunOptions { keep_values: true, ..*options };
        let mut stream = self.stream(loss, rows, &keep)?;
        let r = stream.push(loss)?;
        let mut out = stream.finish()?;
        out.values = (options.keep_values || loss.op.writes_rows()).then_some(r.values);
        out.argmax = (options.keep_argmax && loss.op.has_argmax()).then_some(r.argmax);
        out.entropy = (options.keep_entropy && loss.op.has_entropy()).then_some(r.entropy);
        Ok(out)
    }

    pub(crate) fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> xent::Result<CpuStream> {
        template.validate()?;
        let cols = template.primary().cols.max(1);
        let piece_rows = (CHUNK_BYTES / (8 * cols)).max(1) as u64;
        Ok(CpuStream {
            op: template.op,
            options: *options,
            rows,
            cols: template.primary().cols,
            done: 0,
            piece_rows: options.chunk_rows.map_or(piece_rows, |c| c.clamp(1, piece_rows)),
            sum: CompensatedSum::default(),
            denominator: CompensatedSum::default(),
            z_sum: None,
            entropy_sum: None,
        })
    }
}

/// A job on the host path, fed in chunks: every chunk's rows come back from its push.
pub(crate) struct CpuStream {
    op: Op,
    options: RunOptions,
    rows: u64,
    cols: usize,
    done: u64,
    pub(crate) piece_rows: u64,
    sum: CompensatedSum,
    denominator: CompensatedSum,
    z_sum: Option<CompensatedSum>,
    entropy_sum: Option<CompensatedSum>,
}

impl CpuStream {
    pub(crate) fn push(&mut self, chunk: &Loss) -> xent::Result<Rows> {
        let start = self.done;
        let shift = |e: xent::Error| match e {
            xent::Error::Label { row, label, cols } => xent::Error::Label { row: row + start, label, cols },
            xent::Error::Value { row, detail } => xent::Error::Value { row: row + start, detail },
            e => e,
        };
        let base = self.options.base;
        let r = xent::reference::compute(chunk, base).map_err(shift)?;
        if !self.op.writes_rows() {
            r.values.iter().for_each(|&v| self.sum.add(v));
        }
        r.weights.iter().for_each(|&w| self.denominator.add(w));
        if let Some(terms) = xent::reference::z_terms(chunk, base).map_err(shift)? {
            let z = self.z_sum.get_or_insert_with(CompensatedSum::default);
            terms.iter().for_each(|&v| z.add(v));
        }
        let entropies = xent::reference::entropies(chunk, base).map_err(shift)?;
        if let Some(h) = &entropies {
            let total = self.entropy_sum.get_or_insert_with(CompensatedSum::default);
            let ignore = match self.op {
                Op::CrossEntropy { ignore_index, .. } => ignore_index,
                _ => None,
            };
            let labels = chunk.inputs.labels;
            for (i, &v) in h.iter().enumerate() {
                if ignore.is_none() || labels.map(|y| y.get(i)) != ignore {
                    total.add(v);
                }
            }
        }
        let evals: Vec<RowEval> = match self.options.report {
            true => xent::reference::row_evals(chunk).map_err(shift)?.into_iter().flatten().flatten().collect(),
            false => Vec::new(),
        };
        let n = chunk.primary().rows as u64;
        self.done += n;
        let keep_values = self.options.keep_values || self.op.writes_rows();
        Ok(Rows {
            start,
            rows: n,
            values: if keep_values { r.values.iter().map(|&v| v as f32).collect() } else { Vec::new() },
            argmax: match (self.options.keep_argmax, r.argmax) {
                (true, Some(a)) => a,
                _ => Vec::new(),
            },
            entropy: match (self.options.keep_entropy, entropies) {
                (true, Some(h)) => h.iter().map(|&v| v as f32).collect(),
                _ => Vec::new(),
            },
            evals,
        })
    }

    pub(crate) fn finish(self) -> xent::Result<Output> {
        if self.done != self.rows {
            return Err(xent::Error::Shape {
                what: "job",
                detail: format!("ended after {} of its {} rows", self.done, self.rows),
            });
        }
        let softmax = self.op.writes_rows();
        Ok(Output {
            rows: self.rows as usize,
            cols: self.cols,
            sum: if softmax { f64::NAN } else { self.sum.value() },
            denominator: if softmax { self.rows as f64 } else { self.denominator.value() },
            z_sum: self.z_sum.map(|z| z.value()).or(has_z_loss(self.op).then_some(0.0)),
            entropy_sum: self.entropy_sum.map(|h| h.value()).or(self.op.has_entropy().then_some(0.0)),
            values: None,
            argmax: None,
            entropy: None,
        })
    }
}

fn has_z_loss(op: Op) -> bool {
    matches!(op, Op::CrossEntropy { z_loss, .. } | Op::CrossEntropyProbs { z_loss, .. } if z_loss > 0.0)
}
