//! The fused linear cross-entropy on the engine ([`Engine::head`]): a task's rows of logits
//! `H·Wᵀ + b` formed by a blocked matrix product (`matrixmultiply`'s `sgemm`, which picks
//! its kernel for the CPU at run time), soft-capped where asked, and read by cross-entropy's
//! row function while they are in cache; nothing `[rows, classes]` is held. The gradients
//! (`dH = G·W`, `dW = Gᵀ·H`, `db = Σ_i G_i`, `G` the logits' gradient) go through the same
//! product a fixed block of rows at a time.
//!
//! **Bits.** Each logit is one dot product over `d` in the product's fixed order, whichever
//! task or thread forms it, so the losses do not depend on the thread count or the chunking;
//! `dW` and `db` add the blocks in row order, and a block's rows in a fixed order, so they do
//! not depend on the thread count either. The product's kernel (FMA or not) depends on the
//! instruction set, which the engine's label names.

use std::borrow::Cow;

use rayon::prelude::*;

use super::Engine;
use super::plan::Plan;
use super::row::{self, Fault, RowOut};
use crate::error::{Error, Result, try_vec};
use crate::head::HeadRows;
use crate::loss::{Batch, Floats, Labels, Reduction};
use crate::op::Op;

/// Logits a task forms at once (4 MiB): its rows are `LOGITS / classes`, at most
/// `TASK_ROWS`.
const LOGITS: usize = 1 << 20;
const TASK_ROWS: usize = 64;
/// Logits of one block of the gradient pass (16 MiB), whose `dW` is added at once.
const BLOCK_LOGITS: usize = 1 << 22;
const BLOCK_ROWS: usize = 256;
/// Classes of one task of `dW`.
const CLASS_SLICE: usize = 256;

/// A linear head's weight and bias on the engine, ready for chunks of hidden states.
pub struct CpuHead<'a> {
    engine: &'a Engine,
    /// Cross-entropy over the logits, with the head's options.
    op: Op,
    softcap: Option<f32>,
    /// `[classes, d]`, f32: the caller's where it is f32, else widened once.
    weight: Cow<'a, [f32]>,
    bias: Option<&'a [f32]>,
    classes: usize,
    d: usize,
}

/// What the gradient pass gives beside the gradients: the forward pass's sum and the
/// mean's denominator (the rows not ignored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadSums {
    /// The sum of the rows' losses.
    pub sum: f64,
    /// The rows not ignored.
    pub denominator: f64,
}

/// The gradients the head's backward pass writes: `hidden` `[rows, d]`, `weight`
/// `[classes, d]` and `bias` `[classes]`, each where given (`weight` and `bias` are
/// overwritten, not added to).
pub struct HeadGrads<'g> {
    /// `dH`, `[rows, d]`.
    pub hidden: Option<&'g mut [f32]>,
    /// `dW`, `[classes, d]`.
    pub weight: Option<&'g mut [f32]>,
    /// `db`, `[classes]`.
    pub bias: Option<&'g mut [f32]>,
}

impl Engine {
    /// A linear head on the engine: `weight` `[classes, d]` and an optional `bias`, for `op`
    /// ([`Op::LinearCrossEntropy`]) with the logits soft-capped at `softcap` where given;
    /// the counterpart of [`Context::head`](crate::Context::head).
    pub fn head<'a>(
        &'a self,
        op: Op,
        softcap: Option<f32>,
        weight: &Batch<'a>,
        bias: Option<&'a [f32]>,
    ) -> Result<CpuHead<'a>> {
        let probe = crate::Loss::new(op, Batch { rows: 1, ..*weight }).with_second(*weight);
        let probe = if let Some(b) = bias { probe.with_bias(b) } else { probe };
        let mut probe = probe.with_labels(&[0i32][..]);
        probe.softcap = softcap;
        probe.validate()?;
        let ce =
            op.head().ok_or(Error::Option { name: "op", detail: format!("{} is not a linear head", op.name()) })?;
        let (classes, d) = (weight.rows, weight.cols);
        let weight = match weight.data {
            Floats::F32(v) => Cow::Borrowed(v),
            data => {
                let mut w = try_vec(classes * d, "the head's weight as f32")?;
                w.extend((0..classes * d).map(|i| data.get(i) as f32));
                Cow::Owned(w)
            }
        };
        Ok(CpuHead { engine: self, op: ce, softcap, weight, bias, classes, d })
    }
}

impl CpuHead<'_> {
    /// The loss of each row of `hidden` (`[rows, d]`) against `labels`, and with `report`
    /// its evaluation record; `first_row` is the rows' place in the whole set (for errors).
    pub fn run(&self, hidden: &Batch, labels: &Labels, report: bool, first_row: u64) -> Result<HeadRows> {
        let rows = self.check(hidden, labels)?;
        let plan = Plan::of_logits(self.op, self.classes, self.softcap, report);
        let mut outs: Vec<RowOut> = try_vec(rows, "per-row results")?;
        outs.resize(rows, RowOut::default());
        let task = (LOGITS / self.classes).clamp(1, TASK_ROWS);
        let fault = self.engine.install(|| {
            outs.par_chunks_mut(task)
                .enumerate()
                .filter_map(|(k, outs)| {
                    let first = k * task;
                    let mut logits = self.logits(hidden, first, outs.len()).ok()?;
                    self.cap(&mut logits);
                    self.engine.arch.dispatch(|| {
                        for (i, (out, x)) in outs.iter_mut().zip(logits.chunks(self.classes)).enumerate() {
                            let y = labels.get(first + i);
                            match row::run(&plan, [x, &[]], [None, None], y, &mut []) {
                                Ok(r) => *out = r,
                                Err(f) => return Some((first + i, f)),
                            }
                        }
                        None
                    })
                })
                .min_by_key(|f| f.0)
        });
        if let Some((row, fault)) = fault {
            return Err(self.fault(row, fault, labels, first_row));
        }
        let evals = if report { outs.iter().map(|r| r.eval).collect() } else { Vec::new() };
        Ok(HeadRows { values: outs.iter().map(|r| r.value).collect(), evals })
    }

    /// The gradients of `scale` times the loss over every row of `hidden`, reduced by
    /// `reduction` (the mean divides by the rows not ignored), into `grads`; returns the
    /// forward pass's sum and denominator.
    pub fn gradient(
        &self,
        hidden: &Batch,
        labels: &Labels,
        reduction: Reduction,
        scale: f32,
        grads: HeadGrads,
    ) -> Result<HeadSums> {
        let rows = self.check(hidden, labels)?;
        let forward = self.run(hidden, labels, false, 0)?;
        let ignore = self.op.ignore_index();
        let counted = (0..rows).filter(|&i| Some(labels.get(i)) != ignore).count() as f64;
        let mut sum = crate::sum::CompensatedSum::default();
        forward.values.iter().for_each(|&v| sum.add(f64::from(v)));
        let sums = HeadSums { sum: sum.value(), denominator: counted };
        let factor = match reduction {
            Reduction::Mean => f64::from(scale) / counted,
            Reduction::Sum | Reduction::None => f64::from(scale),
        } as f32;
        let HeadGrads { hidden: mut dh, weight: mut dw, bias: mut db } = grads;
        let (v, d) = (self.classes, self.d);
        let sizes = [(dh.as_deref().map(<[f32]>::len), rows * d), (dw.as_deref().map(<[f32]>::len), v * d)];
        for (got, want) in sizes.into_iter().chain([(db.as_deref().map(<[f32]>::len), v)]) {
            if got.is_some_and(|n| n != want) {
                return Err(Error::Shape { what: "gradient", detail: format!("of {got:?} elements; {want} expected") });
            }
        }
        for g in [dw.as_deref_mut(), db.as_deref_mut()].into_iter().flatten() {
            g.fill(0.0);
        }
        let block = (BLOCK_LOGITS / v).clamp(1, BLOCK_ROWS);
        let plan = Plan::of_logits(self.op, v, self.softcap, false);
        let task = (LOGITS / v).clamp(1, TASK_ROWS);
        let mut start = 0;
        while start < rows {
            let n = block.min(rows - start);
            let mut g: Vec<f32> = try_vec(n * v, "the logits' gradient")?;
            g.resize(n * v, 0.0);
            let h = self.widened(hidden, start, n)?;
            let dh_block = dh.as_deref_mut().map(|dh| &mut dh[start * d..(start + n) * d]);
            self.block_grad(&plan, hidden, labels, start, factor, &mut g, task, dh_block)?;
            self.engine.install(|| self.add_weight_grads(&g, &h, n, dw.as_deref_mut(), db.as_deref_mut()));
            start += n;
        }
        Ok(sums)
    }

    /// The logits' gradient of rows `start..start + n` into `g`, and their `dH` rows.
    #[allow(clippy::too_many_arguments)]
    fn block_grad(
        &self,
        plan: &Plan,
        hidden: &Batch,
        labels: &Labels,
        start: usize,
        factor: f32,
        g: &mut [f32],
        task: usize,
        dh: Option<&mut [f32]>,
    ) -> Result<()> {
        let (v, d) = (self.classes, self.d);
        let mut dh_parts: Vec<Option<&mut [f32]>> = match dh {
            Some(dh) => dh.chunks_mut(task * d).map(Some).collect(),
            None => (0..g.len().div_ceil(task * v)).map(|_| None).collect(),
        };
        self.engine.install(|| {
            g.par_chunks_mut(task * v).zip(dh_parts.par_iter_mut()).enumerate().try_for_each(|(k, (g, dh))| {
                let (first, n) = (start + k * task, g.len() / v);
                let mut logits = self.logits(hidden, first, n)?;
                self.cap(&mut logits);
                self.engine.arch.dispatch(|| {
                    for (i, (g, x)) in g.chunks_mut(v).zip(logits.chunks(v)).enumerate() {
                        super::grad::row(plan, x, &[], labels.get(first + i), factor, g);
                    }
                });
                if let Some(dh) = dh.as_deref_mut() {
                    // dH = G·W: [n, v]·[v, d]
                    product(n, v, d, g, (v, 1), &self.weight, (d, 1), 0.0, dh);
                }
                Ok(())
            })
        })
    }

    /// `dW += Gᵀ·H` and `db += Σ_i G_i` for a block of `n` rows, by slices of classes.
    fn add_weight_grads(&self, g: &[f32], h: &[f32], n: usize, dw: Option<&mut [f32]>, db: Option<&mut [f32]>) {
        let (v, d) = (self.classes, self.d);
        if let Some(dw) = dw {
            dw.par_chunks_mut(CLASS_SLICE * d).enumerate().for_each(|(k, dw)| {
                let j0 = k * CLASS_SLICE;
                // [m, n]ᵀ·[n, d]: element (j, i) of Gᵀ is g[i·v + j0 + j]
                product(dw.len() / d, n, d, &g[j0..], (1, v), h, (d, 1), 1.0, dw);
            });
        }
        if let Some(db) = db {
            for row in g.chunks(v) {
                db.iter_mut().zip(row).for_each(|(b, &x)| *b += x);
            }
        }
    }

    /// Rows `first..first + n` of `hidden` as f32.
    fn widened<'h>(&self, hidden: &Batch<'h>, first: usize, n: usize) -> Result<Cow<'h, [f32]>> {
        let d = self.d;
        Ok(match hidden.data {
            Floats::F32(v) => Cow::Borrowed(&v[first * d..(first + n) * d]),
            data => {
                let mut h = try_vec(n * d, "hidden states as f32")?;
                h.extend((first * d..(first + n) * d).map(|i| data.get(i) as f32));
                Cow::Owned(h)
            }
        })
    }

    /// The logits `H·Wᵀ + b` of rows `first..first + n`, `[n, classes]`.
    fn logits(&self, hidden: &Batch, first: usize, n: usize) -> Result<Vec<f32>> {
        let (v, d) = (self.classes, self.d);
        let h = self.widened(hidden, first, n)?;
        let mut x: Vec<f32> = try_vec(n * v, "a task's logits")?;
        x.resize(n * v, 0.0);
        // [n, d]·[d, v]: element (k, j) of Wᵀ is weight[j·d + k]
        product(n, d, v, &h, (d, 1), &self.weight, (1, d), 0.0, &mut x);
        if let Some(b) = self.bias {
            x.chunks_mut(v).for_each(|row| row.iter_mut().zip(b).for_each(|(x, &b)| *x += b));
        }
        Ok(x)
    }

    /// Gemma 2's `c·tanh(x/c)`, formed in f64 as the reference and the row path do.
    fn cap(&self, x: &mut [f32]) {
        if let Some(c) = self.softcap {
            let c = f64::from(c);
            x.iter_mut().for_each(|v| *v = (c * (f64::from(*v) / c).tanh()) as f32);
        }
    }

    /// The rows of `hidden`, checked against the head and the labels.
    fn check(&self, hidden: &Batch, labels: &Labels) -> Result<usize> {
        if hidden.cols != self.d || labels.len() != hidden.rows {
            return Err(Error::Shape {
                what: "hidden states",
                detail: format!(
                    "[{}, {}] with {} labels for a head of d = {}",
                    hidden.rows,
                    hidden.cols,
                    labels.len(),
                    self.d
                ),
            });
        }
        Ok(hidden.rows)
    }

    /// A row's fault as the error that names it in the whole set.
    fn fault(&self, row: usize, fault: Fault, labels: &Labels, first_row: u64) -> Error {
        let at = row as u64 + first_row;
        match fault {
            Fault::Label => Error::Label { row: at, label: Some(labels.get(row)), cols: self.classes as u64 },
            Fault::Value => Error::Value { row: at, detail: String::new() },
        }
    }
}

/// `C = A·B + beta·C` for `A` `[m, k]` and `B` `[k, n]` with the given (row, column)
/// strides, `C` `[m, n]` row-major; the slices are checked to hold every element the
/// strides reach.
#[allow(clippy::too_many_arguments, unsafe_code)]
fn product(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs;
    let fits = k == 0 || (last(m, k, rsa, csa) < a.len() && last(k, n, rsb, csb) < b.len());
    assert!(fits && m * n <= c.len(), "product: operands shorter than their shapes");
    // SAFETY: every element (i, l) of A, (l, j) of B and (i, j) of C that sgemm reads or
    // writes is inside its slice (checked above), and C does not alias A or B (it is
    // borrowed mutably).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
