//! The recorder's argument checks: every buffer range, usage, shape, option and alias is
//! checked before anything is recorded, and a refusal names the buffer and the fix.

use super::inputs::{
    DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, GradTarget, LabelType,
    REPORT_BYTES, Reduced,
};
use crate::error::{Error, Result};
use crate::loss::{Batch, DType, Floats, Labels, LogBase, Loss};
use crate::ops;

/// A record's arguments once checked: what recording them needs.
pub(super) struct Checked<'a> {
    /// The float inputs, named for messages; the first sets the shape and dtype.
    pub(super) inputs: Vec<(&'static str, DeviceBatch<'a>)>,
    pub(super) labels: Option<DeviceLabels<'a>>,
    pub(super) weights: Option<DeviceWeights<'a>>,
    pub(super) grad: Option<CheckedGrad<'a>>,
    /// The row kernel and its parameters, as the host path sets them.
    pub(super) job: ops::RowJob<'static>,
    pub(super) rows: u64,
    pub(super) cols: u64,
}

/// Checks `loss` and `out` (values in `base`): the inputs' shapes and ranges, the options, the labels and class
/// weights (bound from an offset that is a multiple of `align`), the outputs, the gradient,
/// and that no written range overlaps another or an input.
pub(super) fn check<'a>(
    loss: &DeviceLoss<'a>,
    out: &DeviceOutput<'a>,
    align: u64,
    base: LogBase,
) -> Result<Checked<'a>> {
    loss.check_inputs()?;
    let inputs = loss.kernel_inputs();
    let a = loss.inputs.first;
    let (rows, cols) = (u64::from(a.rows), u64::from(a.cols));
    for (name, b) in &inputs {
        check_input(name, b, &a)?;
    }
    let job = ops::job(&template(loss), base)?;
    let labels = loss.inputs.labels;
    if let Some(y) = labels {
        check_labels(&y, rows)?;
    }
    let weights = loss.inputs.weights;
    if let Some(w) = weights {
        // the kernel indexes the weights from the binding's start: the offset must be bindable
        check_range("class weights", w.buffer, w.offset, 4 * cols, wgpu::BufferUsages::STORAGE, align)?;
    }
    let mut written = check_outputs(out, &job, rows)?;
    let grad = match &out.grad {
        None => None,
        Some(g) => Some(check_grad(g, &job, &inputs, &mut written)?),
    };
    check_aliasing(&inputs, labels, weights, &written, grad.as_ref())?;
    Ok(Checked { inputs, labels, weights, grad, job, rows, cols })
}

/// Checks the labels' range: `rows` labels of their type from an offset that is a multiple of
/// its size, and for u8 labels (read in 4-byte words) the whole word the last is in.
pub(super) fn check_labels(y: &DeviceLabels, rows: u64) -> Result<()> {
    let binding = |detail: String| Error::Binding { name: "labels".into(), detail };
    let (elem, name) = (y.dtype.size() as u64, y.dtype.name());
    if !y.offset.is_multiple_of(elem) {
        let below = y.offset - y.offset % elem;
        return Err(binding(format!(
            "offset {} is not a multiple of {elem}, the size of an {name} label; use {below} or {}",
            y.offset,
            below + elem
        )));
    }
    check_range("labels", y.buffer, y.offset, elem * rows, wgpu::BufferUsages::STORAGE, elem)?;
    let end = y.offset + elem * rows;
    let word_end = end.div_ceil(4) * 4;
    if y.dtype == LabelType::U8 && word_end > y.buffer.size() {
        return Err(binding(format!(
            "the {rows} uint8 labels end at byte {end}, inside the buffer's last 4-byte word ({} bytes in all); \
             the kernel reads whole words: make the buffer at least {word_end} bytes",
            y.buffer.size()
        )));
    }
    Ok(())
}

/// Checks the per-row output and the reduction target; returns the ranges they write.
fn check_outputs<'a>(out: &DeviceOutput<'a>, job: &ops::RowJob, rows: u64) -> Result<Vec<Range<'a>>> {
    let out_values = rows * job.out_per_row;
    let mut written = Vec::new();
    if let Some(buffer) = out.per_row {
        let per_row = Range { name: "per-row output", buffer, start: out.per_row_offset, len: 4 * out_values };
        check_range(per_row.name, per_row.buffer, per_row.start, per_row.len, wgpu::BufferUsages::STORAGE, 4)?;
        written.push(per_row);
    } else if job.writes_rows() {
        return Err(Error::Binding {
            name: "per-row output".into(),
            detail: "softmax's rows of values are its result: pass a buffer for them (DeviceOutput::rows)".into(),
        });
    }
    if let Some((buffer, offset)) = out.reduced {
        if job.writes_rows() {
            return Err(Error::Binding {
                name: "reduction target".into(),
                detail: "softmax writes rows of values; it has no reduction over rows: pass None".into(),
            });
        }
        check_range("reduction target", buffer, offset, Reduced::BYTES, wgpu::BufferUsages::COPY_DST, 4)?;
        written.push(Range { name: "reduction target", buffer, start: offset, len: Reduced::BYTES });
    }
    if let Some((buffer, offset)) = out.mean {
        if job.writes_rows() {
            return Err(Error::Binding {
                name: "mean target".into(),
                detail: "softmax writes rows of values; it has no mean over rows: pass None".into(),
            });
        }
        check_range("mean target", buffer, offset, 4, wgpu::BufferUsages::COPY_DST, 4)?;
        written.push(Range { name: "mean target", buffer, start: offset, len: 4 });
    }
    if let Some((buffer, offset)) = out.report {
        if job.kernel != crate::kernels::Kernel::SoftmaxXent {
            return Err(Error::Binding {
                name: "report".into(),
                detail: "the evaluation report is of cross-entropy with labels: pass None".into(),
            });
        }
        let len = REPORT_BYTES * rows;
        check_range("report", buffer, offset, len, wgpu::BufferUsages::STORAGE, 4)?;
        written.push(Range { name: "report", buffer, start: offset, len });
    }
    Ok(written)
}

/// What a compute pass cannot hold, which only an encoder can record: the reduction over rows
/// (it ends in a copy), and a gradient's mean whose denominator is first summed on the device.
pub(super) fn check_in_pass(out: &DeviceOutput, denominator_on_device: bool) -> Result<()> {
    if out.reduced.is_some() || out.mean.is_some() {
        let name = if out.reduced.is_some() { "reduction target" } else { "mean target" };
        return Err(Error::Binding {
            name: name.into(),
            detail: "the reduction over rows ends in a copy, which a compute pass cannot hold; \
                     record into the encoder, or pass None and reduce the per-row values"
                .into(),
        });
    }
    if denominator_on_device {
        return Err(Error::Binding {
            name: "gradient".into(),
            detail: "the mean of cross-entropy with an ignore index or class weights divides by a sum \
                     taken on the device first, which needs the encoder; record into the encoder, or use \
                     Reduction::Sum with scale = 1 / denominator"
                .into(),
        });
    }
    Ok(())
}

/// Checks a gradient request against the operation and its inputs.
fn check_grad<'a>(
    g: &DeviceGrad<'a>,
    job: &ops::RowJob,
    inputs: &[(&'static str, DeviceBatch<'a>)],
    written: &mut Vec<Range<'a>>,
) -> Result<CheckedGrad<'a>> {
    let option = |detail: String| Error::Binding { name: "gradient".into(), detail };
    if job.grad_of == 0 {
        return Err(option(
            "this operation has no gradient here: cross-entropy, KL with Q as logits, entropy, \
             BCE and distillation from logits have one"
                .into(),
        ));
    }
    if !g.scale.is_finite() {
        return Err(option(format!("scale {} is not finite", g.scale)));
    }
    let (name, x) = inputs[job.grad_of as usize - 1];
    let bytes = 4 * u64::from(x.rows) * u64::from(x.cols);
    match g.target {
        GradTarget::InPlace => {
            if x.dtype != DType::F32 {
                return Err(option(format!(
                    "an in-place gradient needs f32 {name}, these are {:?}; write it to a separate f32 buffer",
                    x.dtype
                )));
            }
            written.push(Range { name: "gradient (in place)", buffer: x.buffer, start: x.offset, len: bytes });
            Ok(CheckedGrad { buffer: None, offset: x.offset, in_place: true, of: name })
        }
        GradTarget::Head { .. } => {
            Err(option("the gradients of a linear head are those of linear-ce; this operation has one gradient".into()))
        }
        GradTarget::Buffer { buffer, offset } => {
            check_range("gradient", buffer, offset, bytes, wgpu::BufferUsages::STORAGE, 4)?;
            written.push(Range { name: "gradient", buffer, start: offset, len: bytes });
            Ok(CheckedGrad { buffer: Some(buffer), offset, in_place: false, of: name })
        }
    }
}

/// A byte range of a buffer that a record writes.
#[derive(Clone, Copy)]
struct Range<'a> {
    name: &'static str,
    buffer: &'a wgpu::Buffer,
    start: u64,
    len: u64,
}

impl Range<'_> {
    fn overlaps(&self, other: &Range) -> bool {
        self.buffer == other.buffer && self.start < other.start + other.len && other.start < self.start + self.len
    }
}

pub(super) struct CheckedGrad<'a> {
    /// `None` in place.
    pub(super) buffer: Option<&'a wgpu::Buffer>,
    pub(super) offset: u64,
    pub(super) in_place: bool,
    /// The differentiated input's name.
    of: &'static str,
}

/// What a record's outputs may share, said whenever one is refused.
const ALIASING_RULE: &str = "a record's outputs may share a buffer in ranges that do not overlap, but the \
per-row output, the gradient and the report cannot be in a buffer that holds an input, the labels or the \
class weights (a dispatch cannot read and write one buffer; the reduction and mean targets, written by \
copies, only must not overlap them); to write a gradient over its logits, use GradTarget::InPlace";

/// Outputs must not overlap each other or an input, and no buffer may be both read and
/// written by the row kernel (a wgpu usage conflict), except the logits a gradient
/// overwrites in place. Every refusal says the same rule ([`ALIASING_RULE`]).
fn check_aliasing(
    inputs: &[(&'static str, DeviceBatch)],
    labels: Option<DeviceLabels>,
    weights: Option<DeviceWeights>,
    written: &[Range],
    grad: Option<&CheckedGrad>,
) -> Result<()> {
    let conflict = |what: String| Error::Binding { name: "outputs".into(), detail: format!("{what}: {ALIASING_RULE}") };
    let in_place_of = grad.filter(|g| g.in_place).map(|g| g.of);
    let mut read: Vec<(&str, &wgpu::Buffer)> =
        inputs.iter().filter(|(name, _)| Some(*name) != in_place_of).map(|(name, b)| (*name, b.buffer)).collect();
    read.extend(labels.map(|y| ("labels", y.buffer)));
    read.extend(weights.map(|w| ("class weights", w.buffer)));
    for (i, w) in written.iter().enumerate() {
        // the reduction and mean targets are written by copies after the kernels, not bound by them
        let bound = !matches!(w.name, "reduction target" | "mean target");
        if bound && let Some((name, _)) = read.iter().find(|(_, b)| *b == w.buffer) {
            return Err(conflict(format!("the {} is in the same buffer as {name}", w.name)));
        }
        for other in &written[i + 1..] {
            if w.overlaps(other) {
                return Err(conflict(format!("the {} overlaps the {}", w.name, other.name)));
            }
        }
        for (name, b) in inputs {
            let span = Range {
                name,
                buffer: b.buffer,
                start: b.offset,
                len: u64::from(b.rows) * u64::from(b.cols) * b.dtype.size() as u64,
            };
            if Some(*name) != in_place_of && w.overlaps(&span) {
                return Err(conflict(format!("the {} overlaps input {name}", w.name)));
            }
        }
    }
    Ok(())
}

/// The same operation as a host [`Loss`] over no data: its kernel, flags and options
/// (and their checks) come from the host path, so the two cannot drift apart. Only
/// whether labels and class weights are bound matters here: the kernel reads the
/// caller's buffers.
fn template(loss: &DeviceLoss) -> Loss<'static> {
    let i = &loss.inputs;
    let batch = Batch { data: Floats::F32(&[]), rows: i.first.rows as usize, cols: i.first.cols as usize };
    let mut host = Loss::new(loss.op, batch);
    host.inputs.second = i.second.map(|_| batch);
    host.inputs.labels = i.labels.map(|_| Labels::I32(&[]));
    host.inputs.weights = i.weights.map(|_| &[][..]);
    host.softcap = loss.softcap;
    host
}

/// Checks input `name` against the first input `a` and its buffer range.
fn check_input(name: &str, b: &DeviceBatch, a: &DeviceBatch) -> Result<()> {
    if b.rows == 0 || b.cols == 0 {
        return Err(Error::Shape { what: "input", detail: format!("{name} is empty ([{}, {}])", b.rows, b.cols) });
    }
    if (b.rows, b.cols, b.dtype) != (a.rows, a.cols, a.dtype) {
        return Err(Error::Shape {
            what: "input",
            detail: format!(
                "{name} is [{}, {}] {:?} but the first input is [{}, {}] {:?}; they must match",
                b.rows, b.cols, b.dtype, a.rows, a.cols, a.dtype
            ),
        });
    }
    let bytes = u64::from(b.rows) * u64::from(b.cols) * b.dtype.size() as u64;
    check_range(name, b.buffer, b.offset, bytes, wgpu::BufferUsages::STORAGE, b.dtype.size() as u64)
}

/// Checks that `buffer` has `usage` and holds `bytes` from `offset`, a multiple of `align`.
pub(super) fn check_range(
    name: &str,
    buffer: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
    usage: wgpu::BufferUsages,
    align: u64,
) -> Result<()> {
    let binding = |detail: String| Error::Binding { name: name.to_string(), detail };
    if !buffer.usage().contains(usage) {
        let names = |u: wgpu::BufferUsages| {
            u.iter_names().map(|(n, _)| format!("BufferUsages::{n}")).collect::<Vec<_>>().join(" | ")
        };
        return Err(binding(format!(
            "the buffer's usage is {} and lacks {}; create it with {} added",
            names(buffer.usage()),
            names(usage),
            names(usage)
        )));
    }
    if !offset.is_multiple_of(align) {
        let below = offset - offset % align;
        return Err(binding(format!("offset {offset} is not a multiple of {align}; use {below} or {}", below + align)));
    }
    if offset.checked_add(bytes).is_none_or(|end| end > buffer.size()) {
        return Err(binding(format!(
            "needs {bytes} bytes from offset {offset} ({} in all) but the buffer has {}",
            offset.saturating_add(bytes),
            buffer.size()
        )));
    }
    Ok(())
}
