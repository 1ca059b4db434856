//! The fused linear cross-entropy on the caller's buffers ([`Op::LinearCrossEntropy`]):
//! the loss of a linear head `x_i = W·h_i + b` and its gradients without the
//! `[rows, classes]` logits in memory.
//!
//! The rows go in chunks whose f32 logits fit the recorder's budget
//! ([`Recorder::set_logits_budget`]), Liger-Kernel's way: a chunk's logits by the tiled
//! product (shaders/matmul.wgsl), cross-entropy over them with its gradient written over
//! them (the same record as `ce`), then `dH_chunk = G·W`, `dW += Gᵀ·H_chunk` and
//! `db += Σ_i G_i`. Chosen over Cut Cross-Entropy's vocabulary tiles merged online because
//! it recomputes nothing (the logits are formed once, forward and backward share them) and
//! reuses the cross-entropy kernel, its options, report and checks as they are; the price is
//! the chunk's logits, which the budget bounds.
//!
//! Every sum has one order whatever the chunking: a logit and an element of dH sum over
//! `d` and `classes` inside one dispatch; dW and db accumulate row after row in row order,
//! each chunk's dispatch starting from the previous value; the loss is one tree over all
//! rows; the mean's denominator is a count. A run in one chunk and a run in many are
//! bit-identical.
//!
//! [`Op::LinearCrossEntropy`]: crate::Op::LinearCrossEntropy

use wgpu::util::DeviceExt;

use super::Recorder;
use super::extras::RecordExtras;
use super::inputs::{
    DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, GradTarget, REPORT_BYTES, Reduced,
};
use super::validate::{check_labels, check_range};
use crate::error::{Error, Result};
use crate::loss::{DType, Reduction};
use crate::ops::matmul::{self, Init, Operand, Output, Product};
use crate::plan;

/// The default budget of a linear head's record (its chunk's logits and scratch): 64 MiB.
pub const DEFAULT_LOGITS_BUDGET: u64 = 64 << 20;

/// A linear head's record, checked.
struct Head<'a> {
    hidden: DeviceBatch<'a>,
    weight: DeviceBatch<'a>,
    bias: Option<(&'a wgpu::Buffer, u64)>,
    labels: DeviceLabels<'a>,
    rows: u64,
    classes: u64,
    d: u64,
}

/// Where a linear head's gradients go.
#[derive(Clone, Copy, Default)]
struct HeadGrads<'a> {
    hidden: Option<(&'a wgpu::Buffer, u64)>,
    weight: Option<(&'a wgpu::Buffer, u64)>,
    bias: Option<(&'a wgpu::Buffer, u64)>,
    reduction: Reduction,
    scale: f32,
}

/// Checks the head's inputs and outputs; returns them taken apart.
fn check<'a>(loss: &DeviceLoss<'a>, out: &DeviceOutput<'a>) -> Result<(Head<'a>, Option<HeadGrads<'a>>)> {
    loss.check_inputs()?;
    let shape = |what, detail| Error::Shape { what, detail };
    let (hidden, labels) = (loss.inputs.first, loss.inputs.labels.ok_or_else(|| shape("labels", "missing".into()))?);
    let weight = loss.inputs.second.ok_or_else(|| shape("weight", "missing".into()))?;
    let (rows, d, classes) = (u64::from(hidden.rows), u64::from(hidden.cols), u64::from(weight.rows));
    if rows == 0 || d == 0 || classes == 0 || u64::from(weight.cols) != d {
        return Err(shape(
            "weight",
            format!(
                "is [{classes}, {}] for hidden states [{rows}, {d}]; it must be [classes ≥ 1, {d}], d ≥ 1",
                weight.cols
            ),
        ));
    }
    for (name, b, n) in [("hidden", &hidden, rows * d), ("weight", &weight, classes * d)] {
        let elem = b.dtype.size() as u64;
        check_range(name, b.buffer, b.offset, n * elem, wgpu::BufferUsages::STORAGE, elem)?;
    }
    let bias = loss.inputs.weights.map(|b| (b.buffer, b.offset));
    if let Some((buffer, offset)) = bias {
        check_range("bias", buffer, offset, 4 * classes, wgpu::BufferUsages::STORAGE, 4)?;
    }
    check_labels(&labels, rows)?;
    let head = Head { hidden, weight, bias, labels, rows, classes, d };
    let read = [Some(hidden.buffer), Some(weight.buffer), bias.map(|b| b.0), Some(labels.buffer)];
    let mut written: Vec<(&str, &wgpu::Buffer)> = Vec::new();
    if let Some(b) = out.per_row {
        check_range("per-row output", b, out.per_row_offset, 4 * rows, wgpu::BufferUsages::STORAGE, 4)?;
        written.push(("per-row output", b));
    }
    if let Some((b, offset)) = out.report {
        check_range("report", b, offset, REPORT_BYTES * rows, wgpu::BufferUsages::STORAGE, 4)?;
        written.push(("report", b));
    }
    for (name, target, bytes) in [("reduction target", out.reduced, Reduced::BYTES), ("mean target", out.mean, 4)] {
        if let Some((b, offset)) = target {
            check_range(name, b, offset, bytes, wgpu::BufferUsages::COPY_DST, 4)?;
        }
    }
    let grads = out.grad.as_ref().map(|g| grads(g, &head)).transpose()?;
    if let Some(g) = &grads {
        written.extend(g.hidden.map(|t| ("hidden gradient", t.0)));
        written.extend(g.weight.map(|t| ("weight gradient", t.0)));
        written.extend(g.bias.map(|t| ("bias gradient", t.0)));
    }
    for (i, (name, buffer)) in written.iter().enumerate() {
        // a dispatch cannot read and write one buffer, and two outputs in one buffer would
        // need their own overlap checks: one buffer each keeps the rule simple
        if read.contains(&Some(*buffer)) || written[i + 1..].iter().any(|(_, b)| b == buffer) {
            return Err(Error::Binding {
                name: (*name).into(),
                detail: "shares its buffer with an input or another output; give it a buffer of its own".into(),
            });
        }
    }
    Ok((head, grads))
}

/// Checks a linear head's gradient targets.
fn grads<'a>(g: &DeviceGrad<'a>, head: &Head) -> Result<HeadGrads<'a>> {
    let GradTarget::Head { hidden, weight, bias } = g.target else {
        return Err(Error::Binding {
            name: "gradient".into(),
            detail: "linear-ce's gradients are of the hidden states, the weight and the bias: use GradTarget::Head"
                .into(),
        });
    };
    if !g.scale.is_finite() {
        return Err(Error::Binding { name: "gradient".into(), detail: format!("scale {} is not finite", g.scale) });
    }
    let (rows, d, classes) = (head.rows, head.d, head.classes);
    for (name, target, n) in [("hidden gradient", hidden, rows * d), ("weight gradient", weight, classes * d)] {
        if let Some((b, offset)) = target {
            check_range(name, b, offset, 4 * n, wgpu::BufferUsages::STORAGE, 4)?;
        }
    }
    if let Some((b, offset)) = bias {
        if head.bias.is_none() {
            return Err(Error::Binding { name: "bias gradient".into(), detail: "the head has no bias".into() });
        }
        check_range("bias gradient", b, offset, 4 * classes, wgpu::BufferUsages::STORAGE, 4)?;
    }
    Ok(HeadGrads { hidden, weight, bias, reduction: g.reduction, scale: g.scale })
}

/// Scratch a chunk takes a row besides its logits: cross-entropy's aux record (32 bytes),
/// and room for its per-row value and the reduction's partial sums.
const ROW_SCRATCH: u64 = 64;
/// Scratch a record takes whatever its chunk: the mean's denominator, the chunks' counts,
/// the constant one.
const FIXED_SCRATCH: u64 = 64 << 10;

/// The budget ([`Recorder::set_logits_budget`]) under which a linear head of `classes`
/// classes goes in chunks of `rows` rows (where one binding holds their logits).
pub fn budget_for_rows(rows: u64, classes: u64) -> u64 {
    FIXED_SCRATCH + rows * (4 * classes + ROW_SCRATCH)
}

/// The rows of a chunk whose f32 logits and scratch fit `budget` bytes (all the record
/// allocates but the per-row values a caller keeps none of), the logits one binding.
pub(crate) fn chunk_rows(rows: u64, classes: u64, budget: u64, max_binding: u64) -> Result<u64> {
    let row_bytes = 4 * classes;
    let fit = (budget.saturating_sub(FIXED_SCRATCH) / (row_bytes + ROW_SCRATCH)).min(max_binding / row_bytes);
    if fit == 0 {
        return Err(Error::TooLarge(format!(
            "one row of {classes} f32 logits needs {} bytes with its scratch; the logits budget is {budget} and the \
             adapter binds {max_binding}: raise the budget (Recorder::set_logits_budget)",
            row_bytes + ROW_SCRATCH + FIXED_SCRATCH
        )));
    }
    Ok(fit.min(rows))
}

impl Recorder {
    /// Records a linear head's loss and gradients (see the module's documentation).
    pub(super) fn record_linear<'a>(
        &'a self,
        encoder: &mut wgpu::CommandEncoder,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
    ) -> Result<u64> {
        let (head, grads) = check(loss, out)?;
        let max_binding = self.kernels().device().limits().max_storage_buffer_binding_size;
        let chunk = chunk_rows(head.rows, head.classes, self.logits_budget(), max_binding)?;
        let bufs = self.linear_scratch(chunk * head.classes * 4, head.rows, out);
        let job = HeadJob { head, grads, loss, out, chunk, bufs: &bufs };
        self.record_head(encoder, &job, None)?;
        Ok(chunk)
    }

    /// What `xent bench` measures the fused record against: the unfused path, every row's
    /// logits in `logits` (the caller's, `rows × classes` f32) by the product, cross-entropy
    /// over all of them with its gradient written over them, then the backward's two
    /// products; each product in row blocks that fit a binding.
    #[doc(hidden)]
    pub fn record_linear_unfused<'a>(
        &'a self,
        encoder: &mut wgpu::CommandEncoder,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
        logits: &wgpu::Buffer,
    ) -> Result<()> {
        let (head, grads) = check(loss, out)?;
        let need = 4 * head.rows * head.classes;
        if logits.size() < need {
            let detail = format!("holds {} bytes; the unfused path needs {need}", logits.size());
            return Err(Error::Binding { name: "logits".into(), detail });
        }
        let max_binding = self.kernels().device().limits().max_storage_buffer_binding_size;
        let chunk = chunk_rows(head.rows, head.classes, u64::MAX, max_binding)?;
        let bufs = self.linear_scratch(16, head.rows, out);
        let job = HeadJob { head, grads, loss, out, chunk, bufs: &bufs };
        self.record_head(encoder, &job, Some(logits))
    }

    /// Records `job`: chunk by chunk through the scratch logits, or (`whole`) every row's
    /// logits in one buffer, each step over all rows before the next.
    fn record_head(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        job: &HeadJob,
        whole: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let (head, chunk) = (&job.head, job.chunk);
        let ce = job.loss.op.head().ok_or_else(|| Error::Option { name: "op", detail: "not a linear head".into() })?;
        let logits = whole.unwrap_or(&job.bufs.logits);
        let labels = (head.labels, head.rows, head.classes);
        // the mean's denominator, where a mean is asked for (the gradient's, or the reduction)
        let mean_grad = job.grads.is_some_and(|g| g.reduction == Reduction::Mean);
        let reduces = job.out.reduced.is_some() || job.out.mean.is_some();
        let denominator = (mean_grad || reduces)
            .then(|| self.record_head_denominator(encoder, labels, ce, chunk, logits))
            .transpose()?;
        let per_row = job.out.per_row.map_or((&job.bufs.per_row, 0), |b| (b, job.out.per_row_offset));
        // where a chunk's logits start: the scratch's start, or the chunk's rows of the whole
        let at = |start: u64| if whole.is_some() { 4 * start * head.classes } else { 0 };
        let ce_of = |start, n| CeChunk {
            ce,
            rows: (start, n),
            logits: (logits, at(start)),
            per_row,
            denominator: denominator.as_ref(),
        };
        let chunks = || plan::chunks(head.rows, chunk).enumerate();
        if whole.is_some() {
            for (_, (start, n)) in chunks() {
                self.record_logits(encoder, head, start, n, (logits, at(start)))?;
            }
            self.record_ce_chunk(encoder, job, &ce_of(0, head.rows))?;
        }
        for (i, (start, n)) in chunks() {
            if whole.is_none() {
                self.record_logits(encoder, head, start, n, (logits, 0))?;
                self.record_ce_chunk(encoder, job, &ce_of(start, n))?;
            }
            if let Some(g) = job.grads {
                self.record_head_grads(encoder, head, &g, (start, n, i == 0), (logits, at(start)), &job.bufs.ones)?;
            }
        }
        if let (true, Some(denominator)) = (reduces, &denominator) {
            self.record_head_reduction(encoder, head.rows, per_row, denominator, job.out)?;
        }
        Ok(())
    }

    /// Records cross-entropy over a chunk's logits: its per-row values, report and gradient
    /// (over the logits), the mean's denominator that of all rows.
    fn record_ce_chunk(&self, encoder: &mut wgpu::CommandEncoder, job: &HeadJob, c: &CeChunk) -> Result<()> {
        let ((start, n), head, out) = (c.rows, &job.head, job.out);
        // n and classes fit u32: rows and classes are u32
        let batch = DeviceBatch {
            buffer: c.logits.0,
            offset: c.logits.1,
            rows: n as u32,
            cols: head.classes as u32,
            dtype: DType::F32,
        };
        let labels =
            DeviceLabels { offset: head.labels.offset + start * head.labels.dtype.size() as u64, ..head.labels };
        let mut loss = DeviceLoss::new(c.ce, batch).with_labels(labels);
        loss.softcap = job.loss.softcap;
        let chunk_out = DeviceOutput {
            per_row: Some(c.per_row.0),
            per_row_offset: c.per_row.1 + 4 * start,
            report: out.report.map(|(b, offset)| (b, offset + REPORT_BYTES * start)),
            grad: job.grads.map(|g| DeviceGrad { target: GradTarget::InPlace, reduction: g.reduction, scale: g.scale }),
            ..DeviceOutput::default()
        };
        let extras = RecordExtras {
            // the status names rows of the whole record
            first_row: start,
            // the layout of the whole head's rows, whatever the chunk
            job_rows: Some(head.rows),
            // present where the gradient is of the mean
            grad_denominator: c.denominator,
            report: out.report.is_some(),
            ..RecordExtras::default()
        };
        self.record_with(encoder, &loss, &chunk_out, &extras).map(|_| ())
    }

    /// Records `product` with the tiling of a product of `rows` rows: the tiling of a
    /// chunk's product follows the whole head's shape, never the chunk's, so that no
    /// chunking changes a pipeline (nor, where a compiler contracts differently in
    /// another, a bit).
    fn record_product(&self, encoder: &mut wgpu::CommandEncoder, product: &Product, rows: u64) -> Result<()> {
        let tile = self.kernels().matmul_tile(rows, product.n);
        matmul::record_tiled(self.kernels(), encoder, product, tile)
    }

    /// Records chunk `[start, start + n)`'s logits `H·Wᵀ + b` into `logits` from its offset.
    fn record_logits(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        head: &Head,
        start: u64,
        n: u64,
        (logits, offset): (&wgpu::Buffer, u64),
    ) -> Result<()> {
        let (d, classes) = (head.d, head.classes);
        let product = Product {
            m: n,
            n: classes,
            k: d,
            a: operand(&head.hidden, start * d, d, 1),
            b: operand(&head.weight, 0, 1, d),
            c: Output { buffer: logits, offset, row_stride: classes },
            init: head.bias.map_or(Init::Zero, |(buffer, offset)| Init::Bias { buffer, offset }),
            scale: 1.0,
        };
        self.record_product(encoder, &product, head.rows)
    }

    /// Records a chunk's share of the gradients from its logits' gradient `G` (in
    /// `logits` from its offset): `dH = G·W` for its rows; `dW += Gᵀ·H` and `db += Σ_i G_i`, from zero on
    /// the first chunk.
    fn record_head_grads<'b>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        head: &Head<'b>,
        g: &HeadGrads<'b>,
        (start, n, first): (u64, u64, bool),
        (logits, at): (&wgpu::Buffer, u64),
        ones: &wgpu::Buffer,
    ) -> Result<()> {
        let (d, classes) = (head.d, head.classes);
        let grad =
            |row_stride, col_stride| Operand { buffer: logits, offset: at, dtype: DType::F32, row_stride, col_stride };
        if let Some((buffer, offset)) = g.hidden {
            // dH sums over every class, through W's rows in pieces that fit a binding, each
            // dispatch adding onto the last: the same bits as one
            let limits = self.kernels().device().limits();
            let elem = head.weight.dtype.size() as u64;
            let room = limits.max_storage_buffer_binding_size - u64::from(limits.min_storage_buffer_offset_alignment);
            for (i, (v0, nv)) in plan::chunks(classes, (room / (d * elem)).max(1)).enumerate() {
                let product = Product {
                    m: n,
                    n: d,
                    k: nv,
                    a: Operand { offset: at + 4 * v0, ..grad(classes, 1) },
                    b: operand(&head.weight, v0 * d, d, 1),
                    c: Output { buffer, offset: offset + 4 * start * d, row_stride: d },
                    init: if i == 0 { Init::Zero } else { Init::Accumulate },
                    scale: 1.0,
                };
                self.record_product(encoder, &product, head.rows)?;
            }
        }
        if let Some((buffer, offset)) = g.weight {
            let product = Product {
                m: classes,
                n: d,
                k: n,
                a: grad(1, classes),
                b: operand(&head.hidden, start * d, d, 1),
                c: Output { buffer, offset, row_stride: d },
                init: if first { Init::Zero } else { Init::Accumulate },
                scale: 1.0,
            };
            // a shape no chunking changes: the device's tiling for it
            matmul::record(self.kernels(), encoder, &product)?;
        }
        if let Some((buffer, offset)) = g.bias {
            let product = Product {
                m: 1,
                n: classes,
                k: n,
                a: Operand { buffer: ones, offset: 0, dtype: DType::F32, row_stride: 0, col_stride: 0 },
                b: grad(classes, 1),
                c: Output { buffer, offset, row_stride: classes },
                init: if first { Init::Zero } else { Init::Accumulate },
                scale: 1.0,
            };
            matmul::record(self.kernels(), encoder, &product)?;
        }
        Ok(())
    }
}

/// Operand over `batch` from element `first`, with the given strides in elements.
fn operand<'a>(batch: &DeviceBatch<'a>, first: u64, row_stride: u64, col_stride: u64) -> Operand<'a> {
    let offset = batch.offset + first * batch.dtype.size() as u64;
    Operand { buffer: batch.buffer, offset, dtype: batch.dtype, row_stride, col_stride }
}

/// A linear head's record: its checked arguments, the rows a chunk takes and the buffers.
struct HeadJob<'j, 'a> {
    head: Head<'a>,
    grads: Option<HeadGrads<'a>>,
    loss: &'j DeviceLoss<'a>,
    out: &'j DeviceOutput<'a>,
    chunk: u64,
    bufs: &'j HeadBuffers,
}

/// Cross-entropy over one chunk's logits.
struct CeChunk<'c> {
    ce: crate::Op,
    /// First row and rows.
    rows: (u64, u64),
    /// The logits' buffer and byte offset.
    logits: (&'c wgpu::Buffer, u64),
    /// The per-row values' buffer and the offset of row 0.
    per_row: (&'c wgpu::Buffer, u64),
    /// The mean's denominator over all rows, where a mean is asked for.
    denominator: Option<&'c wgpu::Buffer>,
}

/// The recorder's buffers for linear heads, kept from record to record.
#[derive(Default)]
pub(super) struct HeadScratch {
    /// A chunk's f32 logits (and then their gradient): at most the budget.
    logits: Option<wgpu::Buffer>,
    /// Per-row values when the caller keeps none (4 bytes a row, for the reduction).
    per_row: Option<wgpu::Buffer>,
    /// One f32 1.0: the bias gradient's column sums are a product with it.
    ones: Option<wgpu::Buffer>,
}

/// The buffers of one record.
struct HeadBuffers {
    logits: wgpu::Buffer,
    per_row: wgpu::Buffer,
    ones: wgpu::Buffer,
}

impl HeadScratch {
    /// Bytes held.
    pub(super) fn bytes(&self) -> u64 {
        [&self.logits, &self.per_row, &self.ones].iter().map(|b| b.as_ref().map_or(0, |b| b.size())).sum()
    }
}

/// `slot`'s buffer, replaced by one of exactly `bytes` where smaller (never more, so the
/// logits stay within the budget).
fn sized(slot: &mut Option<wgpu::Buffer>, device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    match slot {
        Some(b) if b.size() >= bytes => b.clone(),
        _ => {
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            slot.insert(plan::buffer(device, label, bytes.max(16), usage)).clone()
        }
    }
}

impl Recorder {
    /// The scratch for chunks of `logits_bytes` over `rows` rows, grown where too small.
    fn linear_scratch(&self, logits_bytes: u64, rows: u64, out: &DeviceOutput) -> HeadBuffers {
        let device = self.kernels().device();
        let mut s = self.head_scratch.lock().unwrap_or_else(|e| e.into_inner());
        let keeps_rows = out.per_row.is_none() && (out.reduced.is_some() || out.mean.is_some());
        let ones = s.ones.get_or_insert_with(|| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent one"),
                contents: bytemuck::cast_slice(&[1.0f32; 4]),
                usage: wgpu::BufferUsages::STORAGE,
            })
        });
        let ones = ones.clone();
        HeadBuffers {
            logits: sized(&mut s.logits, device, "xent head logits", logits_bytes),
            per_row: sized(&mut s.per_row, device, "xent head per-row", if keeps_rows { 4 * rows } else { 4 }),
            ones,
        }
    }
}
