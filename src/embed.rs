//! Losses recorded on the caller's device, buffers and encoder.
//!
//! An app that already holds a `wgpu::Device` describes its inputs as buffer ranges with a
//! shape and dtype ([`DeviceLoss`]), says where the per-row values and the reduction over
//! rows go ([`DeviceOutput`]), and [`Recorder::record`] appends the passes to its
//! `CommandEncoder`. Nothing is submitted, polled or read back: the app submits when it
//! likes and reads the results with [`crate::readback::read`] (a future that resolves when
//! the app polls) or `read_blocking`.
//!
//! Every argument is checked before anything is recorded (usage flags, offsets, sizes,
//! shapes, options), so a bad argument is an [`Error`] naming the buffer and the fix, never
//! a panic or a wgpu validation error. Inputs larger than the adapter's binding limit are
//! split into row ranges inside the recorder.
//!
//! Aliasing: the per-row output and the reduction target must not overlap any input of
//! the same record. The recorder's own scratch buffers are reused from record to record;
//! wgpu orders the passes of one encoder and of successive submissions, so many records
//! may be queued before one submit.

use std::sync::Mutex;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::kernels::{GradMode, Kernel, flags};
use crate::loss::{Batch, CrossEntropyOptions, DType, Dist, Floats, Labels, LogBase, Loss, Reduction};
use crate::ops::{self, Bound, Dispatch, RowBindings};
use crate::plan;

/// A row-major `[rows, cols]` input of `dtype` starting `offset` bytes into `buffer`.
#[derive(Clone, Copy, Debug)]
pub struct DeviceBatch<'a> {
    /// The caller's buffer; it needs `BufferUsages::STORAGE`.
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start: a multiple of the element size.
    pub offset: u64,
    /// Rows of the batch.
    pub rows: u32,
    /// Columns (classes) of every row.
    pub cols: u32,
    /// Element type: f32, or f16 / bf16 widened exactly on load.
    pub dtype: DType,
}

/// A distribution given as probabilities or as logits.
#[derive(Clone, Copy, Debug)]
pub enum DeviceDist<'a> {
    /// Probabilities, each row summing to 1 (negative, NaN or infinite entries are reported).
    Probs(DeviceBatch<'a>),
    /// Logits: the distribution is their softmax.
    Logits(DeviceBatch<'a>),
}

/// `rows` i32 labels starting `offset` bytes into `buffer`.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLabels<'a> {
    /// The caller's buffer; it needs `BufferUsages::STORAGE`.
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start: a multiple of 4.
    pub offset: u64,
}

/// `cols` f32 class weights starting `offset` bytes into `buffer`.
#[derive(Clone, Copy, Debug)]
pub struct DeviceWeights<'a> {
    /// The caller's buffer; it needs `BufferUsages::STORAGE`.
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the buffer's start: a multiple of the device's
    /// `min_storage_buffer_offset_alignment` (the weights are bound from there).
    pub offset: u64,
}

/// One operation over device buffers; the semantics are those of [`Loss`] (and of
/// the command line's contract), every input of one operation having the same shape
/// and dtype.
#[derive(Clone, Copy, Debug)]
pub enum DeviceLoss<'a> {
    /// `log Σ_j exp(x_ij)` per row.
    LogSumExp {
        /// The logits.
        logits: DeviceBatch<'a>,
    },
    /// `softmax(x_i / T)` (or its log), `rows * cols` values.
    Softmax {
        /// The logits.
        logits: DeviceBatch<'a>,
        /// `T > 0`.
        temperature: f32,
        /// Write log-softmax instead.
        log: bool,
    },
    /// Softmax cross-entropy with integer labels (PyTorch's `F.cross_entropy`).
    CrossEntropy {
        /// The logits.
        logits: DeviceBatch<'a>,
        /// One label per row, in `[0, cols)` or `ignore_index`.
        labels: DeviceLabels<'a>,
        /// Rows with this label give 0 and leave the mean's denominator.
        ignore_index: Option<i32>,
        /// Per-class weights `W`: the row's loss is scaled by `W[y]`, the mean divides by `Σ W[y]`.
        class_weights: Option<DeviceWeights<'a>>,
        /// `s` in `(1−s)·nll + (s/K)·Σ_j −log_softmax_j`, in `[0, 1]`.
        label_smoothing: f32,
    },
    /// Cross-entropy with probability targets: `−Σ_j P_ij log softmax(x_i)_j`.
    CrossEntropyProbs {
        /// The logits.
        logits: DeviceBatch<'a>,
        /// The target probabilities (for class weights or smoothing, fold them into the
        /// targets: `W_j·((1−s)·P_ij + s/K)` is PyTorch's form).
        target: DeviceBatch<'a>,
    },
    /// `KL(P‖Q) = Σ_j p_j (log p_j − log q_j)`.
    KlDiv {
        /// The target distribution.
        p: DeviceDist<'a>,
        /// The predicted distribution (the one with a gradient, when given as logits).
        q: DeviceDist<'a>,
    },
    /// `H(P) = −Σ_j p_j log p_j`.
    Entropy {
        /// The distribution.
        p: DeviceDist<'a>,
    },
    /// Binary cross-entropy summed over each row's columns.
    BinaryCrossEntropy {
        /// Probabilities (logs clamped at −100, as PyTorch) or logits (the stable form).
        input: DeviceDist<'a>,
        /// Targets in `[0, 1]`.
        target: DeviceBatch<'a>,
    },
    /// The VAE's `−½ Σ_j (1 + logvar − mean² − exp(logvar))`.
    GaussianKl {
        /// The posterior means.
        mean: DeviceBatch<'a>,
        /// The posterior log-variances.
        logvar: DeviceBatch<'a>,
    },
    /// `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·CE(s, y)`.
    Distill {
        /// The student's logits (the ones with a gradient).
        student: DeviceBatch<'a>,
        /// The teacher's logits.
        teacher: DeviceBatch<'a>,
        /// Hard labels in `[0, cols)`.
        labels: DeviceLabels<'a>,
        /// `τ > 0`.
        temperature: f32,
        /// `α` in `[0, 1]`.
        alpha: f32,
    },
}

/// Where a record writes.
#[derive(Clone, Copy, Debug)]
pub struct DeviceOutput<'a> {
    /// Per-row values, f32: `rows` of them (softmax: `rows * cols`), `STORAGE` usage.
    pub per_row: &'a wgpu::Buffer,
    /// Bytes from `per_row`'s start: a multiple of 4.
    pub per_row_offset: u64,
    /// The reduction over rows, [`Reduced::BYTES`] bytes (`COPY_DST` usage; not for softmax).
    pub reduced: Option<(&'a wgpu::Buffer, u64)>,
    /// The gradient with respect to the logits, written in the same pass.
    pub grad: Option<DeviceGrad<'a>>,
}

impl<'a> DeviceOutput<'a> {
    /// Per-row values from the start of `per_row`; no reduction, no gradient.
    pub fn rows(per_row: &'a wgpu::Buffer) -> Self {
        DeviceOutput { per_row, per_row_offset: 0, reduced: None, grad: None }
    }

    /// Also writes the reduction over rows at `offset` in `buffer`.
    pub fn with_reduced(self, buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceOutput { reduced: Some((buffer, offset)), ..self }
    }

    /// Also writes the gradient.
    pub fn with_grad(self, grad: DeviceGrad<'a>) -> Self {
        DeviceOutput { grad: Some(grad), ..self }
    }
}

/// The gradient d(loss)/d(logits), f32, `[rows, cols]`, written by the pass that
/// computes the loss (no second kernel, no second read of the data for the elementwise
/// losses). Which logits: cross-entropy's (with labels or probability targets), Q's in
/// KL (Q given as logits), entropy's, BCE's (given as logits) and the distillation
/// student's.
#[derive(Clone, Copy, Debug)]
pub struct DeviceGrad<'a> {
    /// A separate buffer, or over the logits.
    pub target: GradTarget<'a>,
    /// [`Reduction::Mean`]: the gradient of the mean over rows (divided by rows, or for
    /// cross-entropy with labels by Σ w_y over the rows not ignored, summed on the
    /// device); `Sum` and `None`: the gradient of the sum of the per-row values.
    pub reduction: Reduction,
    /// A factor on every element: the upstream gradient of the loss, usually 1.
    pub scale: f32,
}

impl<'a> DeviceGrad<'a> {
    /// The gradient of the mean into `buffer` from `offset`.
    pub fn into_buffer(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        DeviceGrad { target: GradTarget::Buffer { buffer, offset }, reduction: Reduction::Mean, scale: 1.0 }
    }

    /// The gradient of the mean over the logits themselves.
    pub fn in_place() -> Self {
        DeviceGrad { target: GradTarget::InPlace, reduction: Reduction::Mean, scale: 1.0 }
    }
}

/// Where a gradient goes.
///
/// Aliasing rules: a separate range must be in a buffer that no input, label or class
/// weight of the record is in (wgpu cannot bind one buffer for reading and writing in a
/// dispatch) and must not overlap the per-row output or the reduction target. `InPlace`
/// overwrites the differentiated logits (f32 only); the record then reads them through
/// the gradient binding, so the loss is still that of the original logits, and the other
/// inputs must be in other buffers.
#[derive(Clone, Copy, Debug)]
pub enum GradTarget<'a> {
    /// `rows * cols` f32 from `offset`.
    Buffer {
        /// The caller's buffer; it needs `BufferUsages::STORAGE`.
        buffer: &'a wgpu::Buffer,
        /// Bytes from the buffer's start: a multiple of 4.
        offset: u64,
    },
    /// Over the logits.
    InPlace,
}

/// The reduction over rows as written by a record: decode the bytes read back with
/// [`Reduced::from_bytes`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reduced {
    /// Σ of the per-row values (deterministic tree order).
    pub sum: f64,
    /// The mean's denominator: rows, or `Σ W[y]` over non-ignored rows for weighted CE.
    pub denominator: f64,
}

impl Reduced {
    /// Bytes of the reduction target: (sum bits, flags, denominator bits, flags) as u32.
    pub const BYTES: u64 = 16;

    /// Decodes the 16 bytes a record wrote (NaN and infinities come from the flag words).
    pub fn from_bytes(bytes: &[u8]) -> Result<Reduced> {
        let words: Vec<u32> = bytes
            .get(..16)
            .ok_or_else(|| Error::Readback(format!("{} bytes given, a reduction is 16", bytes.len())))?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Reduced {
            sum: crate::host::flagged(words[0], words[1]),
            denominator: crate::host::flagged(words[2], words[3]),
        })
    }

    /// `sum / denominator`: the `mean` reduction (NaN when every row is ignored).
    pub fn mean(&self) -> f64 {
        self.sum / self.denominator
    }
}

/// Records losses into the caller's encoders on one device; holds the compiled kernels
/// and a few scratch buffers reused from record to record.
pub struct Recorder {
    kernels: Kernels,
    status: wgpu::Buffer,
    no_status: wgpu::Buffer,
    unused_in: wgpu::Buffer,
    scratch: Mutex<Scratch>,
}

#[derive(Default)]
struct Scratch {
    aux: Option<wgpu::Buffer>,
    partials: Option<[wgpu::Buffer; 2]>,
}

const STORAGE_RW: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);

impl Recorder {
    /// A recorder for `device` (pipelines compile on first use, cached).
    pub fn new(device: &wgpu::Device) -> Recorder {
        let status = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("xent status"),
            contents: bytemuck::cast_slice(&[u32::MAX; 2]),
            usage: STORAGE_RW | wgpu::BufferUsages::COPY_DST,
        });
        let unused_in = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("xent unused"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let no_status = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("xent no status"),
            contents: bytemuck::cast_slice(&[u32::MAX; 2]),
            usage: wgpu::BufferUsages::COPY_SRC,
        });
        Recorder { kernels: Kernels::new(device), status, no_status, unused_in, scratch: Mutex::default() }
    }

    /// The compiled kernels (shared with [`crate::ops`]).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Two u32 words: the first row with a label outside `[0, cols)` and the first row
    /// with an out-of-domain value (a negative probability, a target outside [0, 1]) over
    /// every record so far, `u32::MAX` for none. Copy it out to check a batch of records.
    pub fn status(&self) -> &wgpu::Buffer {
        &self.status
    }

    /// Bytes of scratch the recorder holds (it grows to the largest record, then stays).
    pub fn scratch_bytes(&self) -> u64 {
        let s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        s.aux.as_ref().map_or(0, |b| b.size()) + s.partials.as_ref().map_or(0, |p| p[0].size() + p[1].size())
    }

    /// Resets [`Recorder::status`] to "no bad row" (recorded into `encoder`).
    pub fn clear_status(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(&self.no_status, 0, &self.status, 0, 8);
    }

    /// Checks `loss` and `out` and appends the passes that compute them to `encoder`.
    ///
    /// Nothing is recorded when an argument is wrong: the error names the buffer or
    /// option, the numbers, and the fix.
    pub fn record<'a>(
        &'a self,
        encoder: &mut wgpu::CommandEncoder,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
    ) -> Result<()> {
        self.record_into(Sink::Encoder(encoder), loss, out)
    }

    /// Records the row kernel of `loss` (per-row values and the gradient) into an open
    /// compute pass: it sets its own pipeline and bind group 0, so set yours again after.
    ///
    /// A pass holds dispatches only, so what needs a copy is refused with an error: the
    /// reduction over rows, and the gradient of cross-entropy's mean with an ignore
    /// index or class weights (its denominator is summed on the device first). Record
    /// those into the encoder, or use `Reduction::Sum` with `scale` = 1 / denominator.
    pub fn record_in_pass<'a>(
        &'a self,
        pass: &mut wgpu::ComputePass,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
    ) -> Result<()> {
        self.record_into(Sink::Pass(pass), loss, out)
    }

    fn record_into<'a>(&'a self, mut sink: Sink, loss: &DeviceLoss<'a>, out: &DeviceOutput<'a>) -> Result<()> {
        let device = self.kernels.device();
        let limits = device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let inputs = loss.inputs();
        let a = inputs[0].1;
        let (rows, cols) = (u64::from(a.rows), u64::from(a.cols));
        for (name, b) in &inputs {
            check_input(name, b, &a)?;
        }
        let template = loss.template(&inputs);
        template.validate_options()?;
        let mut job = ops::job(&template, LogBase::Nats);
        let labels = loss.labels();
        if let Some(y) = labels {
            check_range("labels", y.buffer, y.offset, 4 * rows, wgpu::BufferUsages::STORAGE, 4)?;
        }
        let weights = loss.class_weights();
        if let Some(w) = weights {
            // the kernel indexes the weights from the binding's start: the offset must be bindable
            check_range("class weights", w.buffer, w.offset, 4 * cols, wgpu::BufferUsages::STORAGE, align)?;
        }
        let out_values = rows * job.out_per_row;
        let per_row =
            Range { name: "per-row output", buffer: out.per_row, start: out.per_row_offset, len: 4 * out_values };
        check_range(per_row.name, per_row.buffer, per_row.start, per_row.len, wgpu::BufferUsages::STORAGE, 4)?;
        let mut written = vec![per_row];
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
        let grad = match &out.grad {
            None => None,
            Some(g) => Some(self.check_grad(g, &job, &inputs, &mut written)?),
        };
        check_aliasing(&inputs, labels, weights, &written, grad.as_ref())?;

        let dtype = a.dtype;
        let elem = dtype.size() as u64;
        let grad_row_bytes = if grad.is_some() { 4 * cols } else { 0 };
        let row_bytes = (cols * elem).max(4 * job.out_per_row).max(grad_row_bytes);
        let chunk = plan::chunk_rows(rows, row_bytes, limits.max_storage_buffer_binding_size, align, u64::MAX)
            .map_err(|need| {
                Error::TooLarge(format!(
                    "one row needs {need} bytes but the adapter binds at most {}",
                    limits.max_storage_buffer_binding_size
                ))
            })?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let aux = grow(&mut scratch.aux, device, "xent aux", 8 * rows);
        let partials = rows.div_ceil(plan::REDUCE_BLOCK);
        let need = [8 * partials, 8 * partials.div_ceil(plan::REDUCE_BLOCK)];
        if scratch.partials.as_ref().is_none_or(|p| p[0].size() < need[0] || p[1].size() < need[1]) {
            // grow by half again as `grow` does
            let old = scratch.partials.as_ref().map_or(0, |p| p[0].size());
            let n0 = need[0].max(old * 3 / 2).max(64);
            scratch.partials = Some(
                [n0, n0.div_ceil(plan::REDUCE_BLOCK).max(64)].map(|n| buffer(device, "xent partials", n, STORAGE_RW)),
            );
        }
        let Some([p0, p1]) = scratch.partials.as_ref() else { return Ok(()) };
        let result = [p0, p1][ops::reduce_result_index(rows)];

        let mode = GradMode {
            of: if grad.is_some() { job.grad_of } else { 0 },
            in_place: grad.as_ref().is_some_and(|g| g.in_place),
        };
        let mut denominator_on_device = false;
        if let Some(g) = &out.grad {
            job.params.grad_scale = g.scale;
            job.params.grad_denominator = match g.reduction {
                Reduction::Sum | Reduction::None => 1.0,
                Reduction::Mean => rows as f32,
            };
            // with neither, every row weighs 1 and the denominator is the row count
            let reweighted = job.params.flags & (flags::IGNORE | flags::WEIGHTS) != 0;
            denominator_on_device = g.reduction == Reduction::Mean && job.weighted && reweighted;
        }
        if let Sink::Pass(_) = sink {
            if out.reduced.is_some() {
                return Err(Error::Binding {
                    name: "reduction target".into(),
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
        }

        // The bindings of rows start..start + n.
        let bindings_for = |start: u64, n: u64| -> RowBindings<'_> {
            let batch = |b: &DeviceBatch<'a>| -> Bound<'a> {
                Bound {
                    buffer: b.buffer,
                    window: plan::window(b.offset + start * cols * elem, n * cols * elem, elem, align, b.buffer.size()),
                }
            };
            let rows_of = |buffer: &'a wgpu::Buffer, offset: u64, stride: u64| -> Bound<'a> {
                Bound { buffer, window: plan::window(offset + start * stride, n * stride, 4, align, buffer.size()) }
            };
            // an unused binding: one whole vector, so it never forces word loads
            let whole = |buffer: &'a wgpu::Buffer| -> Bound<'a> {
                Bound { buffer, window: plan::Window { offset: 0, size: 16, base: 0 } }
            };
            let aux_rows = Bound { buffer: &aux, window: plan::window(start * 8, n * 8, 4, align, aux.size()) };
            let in_place_input = mode.in_place.then(|| mode.of as usize - 1);
            let input = |i: usize| match inputs.get(i) {
                Some((_, b)) if in_place_input != Some(i) => batch(b),
                _ => whole(&self.unused_in),
            };
            let grad_bound = match &grad {
                None => aux_rows,
                Some(g) if g.in_place => batch(&inputs[mode.of as usize - 1].1),
                Some(g) => rows_of(g.buffer.unwrap_or(&self.unused_in), g.offset, 4 * cols),
            };
            RowBindings {
                a: input(0),
                b: input(1),
                labels: labels.map_or(whole(&self.unused_in), |y| rows_of(y.buffer, y.offset, 4)),
                class_weights: weights.map_or(whole(&self.unused_in), |w| Bound {
                    buffer: w.buffer,
                    window: plan::window(w.offset, 4 * cols, 4, align, w.buffer.size()),
                }),
                out: rows_of(out.per_row, out.per_row_offset, 4 * job.out_per_row),
                aux: aux_rows,
                status: &self.status,
                grad: grad_bound,
            }
        };

        if denominator_on_device {
            for (start, n) in plan::chunks(rows, chunk) {
                let d = Dispatch {
                    kernel: Kernel::CeRowWeights,
                    template: &job.params,
                    dtype,
                    rows: n,
                    cols,
                    row_offset: start,
                    grad: GradMode::default(),
                    grad_denominator: None,
                };
                let Sink::Encoder(encoder) = &mut sink else { return Err(needs_encoder()) };
                ops::encode_rows(&self.kernels, encoder, &d, &bindings_for(start, n))?;
            }
            let Sink::Encoder(encoder) = &mut sink else { return Err(needs_encoder()) };
            ops::encode_reduce_at(&self.kernels, encoder, &aux, 0, rows, 2, 1, [p0, p1])?;
        }
        for (start, n) in plan::chunks(rows, chunk) {
            let d = Dispatch {
                kernel: job.kernel,
                template: &job.params,
                dtype,
                rows: n,
                cols,
                row_offset: start,
                grad: mode,
                grad_denominator: denominator_on_device.then_some(result),
            };
            match &mut sink {
                Sink::Encoder(encoder) => ops::encode_rows(&self.kernels, encoder, &d, &bindings_for(start, n))?,
                Sink::Pass(pass) => ops::dispatch_rows(&self.kernels, pass, &d, &bindings_for(start, n))?,
            }
        }
        let Some((target, target_offset)) = out.reduced else { return Ok(()) };
        let Sink::Encoder(encoder) = sink else { return Err(needs_encoder()) };
        ops::encode_reduce_at(&self.kernels, encoder, out.per_row, out.per_row_offset, rows, 1, 0, [p0, p1])?;
        encoder.copy_buffer_to_buffer(result, 0, target, target_offset, 8);
        if job.weighted {
            ops::encode_reduce_at(&self.kernels, encoder, &aux, 0, rows, 2, 1, [p0, p1])?;
            encoder.copy_buffer_to_buffer(result, 0, target, target_offset + 8, 8);
        } else {
            let denominator = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent rows"),
                contents: bytemuck::cast_slice(&[(rows as f32).to_bits(), 0u32]),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
            encoder.copy_buffer_to_buffer(&denominator, 0, target, target_offset + 8, 8);
        }
        Ok(())
    }

    /// Checks a gradient request against the operation and its inputs.
    fn check_grad<'a>(
        &self,
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
            GradTarget::Buffer { buffer, offset } => {
                check_range("gradient", buffer, offset, bytes, wgpu::BufferUsages::STORAGE, 4)?;
                written.push(Range { name: "gradient", buffer, start: offset, len: bytes });
                Ok(CheckedGrad { buffer: Some(buffer), offset, in_place: false, of: name })
            }
        }
    }
}

/// Refused before anything is recorded; kept as an error rather than a panic.
fn needs_encoder() -> Error {
    Error::Gpu("this record needs the encoder, not a compute pass".into())
}

/// Where a record goes.
enum Sink<'e, 'p> {
    Encoder(&'e mut wgpu::CommandEncoder),
    Pass(&'e mut wgpu::ComputePass<'p>),
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

struct CheckedGrad<'a> {
    /// `None` in place.
    buffer: Option<&'a wgpu::Buffer>,
    offset: u64,
    in_place: bool,
    /// The differentiated input's name.
    of: &'static str,
}

/// Outputs must not overlap each other or an input, and no buffer may be both read and
/// written by the row kernel (a wgpu usage conflict), except the logits a gradient
/// overwrites in place.
fn check_aliasing(
    inputs: &[(&'static str, DeviceBatch)],
    labels: Option<DeviceLabels>,
    weights: Option<DeviceWeights>,
    written: &[Range],
    grad: Option<&CheckedGrad>,
) -> Result<()> {
    let conflict = |detail: String| Error::Binding { name: "outputs".into(), detail };
    let in_place_of = grad.filter(|g| g.in_place).map(|g| g.of);
    let mut read: Vec<(&str, &wgpu::Buffer)> =
        inputs.iter().filter(|(name, _)| Some(*name) != in_place_of).map(|(name, b)| (*name, b.buffer)).collect();
    read.extend(labels.map(|y| ("labels", y.buffer)));
    read.extend(weights.map(|w| ("class weights", w.buffer)));
    for (i, w) in written.iter().enumerate() {
        for other in &written[i + 1..] {
            if w.overlaps(other) {
                return Err(conflict(format!("the {} overlaps the {}; give them separate ranges", w.name, other.name)));
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
                return Err(conflict(format!("the {} overlaps input {name}; give them separate ranges", w.name)));
            }
        }
        // the reduction target is written by a copy after the kernels, not bound by them
        if w.name != "reduction target"
            && let Some((name, _)) = read.iter().find(|(_, b)| *b == w.buffer)
        {
            return Err(conflict(format!(
                "the {} is in the same buffer as {name}; a dispatch cannot read and write one buffer: use another buffer",
                w.name
            )));
        }
    }
    Ok(())
}

impl<'a> DeviceLoss<'a> {
    /// The float inputs, named for messages; the first sets the shape and dtype.
    fn inputs(&self) -> Vec<(&'static str, DeviceBatch<'a>)> {
        let d = |x: &DeviceDist<'a>| match *x {
            DeviceDist::Probs(b) | DeviceDist::Logits(b) => b,
        };
        match self {
            DeviceLoss::LogSumExp { logits } | DeviceLoss::Softmax { logits, .. } => vec![("logits", *logits)],
            DeviceLoss::CrossEntropy { logits, .. } => vec![("logits", *logits)],
            // the kernel reads the target as input a and the logits as input b
            DeviceLoss::CrossEntropyProbs { logits, target } => vec![("target", *target), ("logits", *logits)],
            DeviceLoss::KlDiv { p, q } => vec![("p", d(p)), ("q", d(q))],
            DeviceLoss::Entropy { p } => vec![("p", d(p))],
            DeviceLoss::BinaryCrossEntropy { input, target } => vec![("input", d(input)), ("target", *target)],
            DeviceLoss::GaussianKl { mean, logvar } => vec![("mean", *mean), ("logvar", *logvar)],
            DeviceLoss::Distill { student, teacher, .. } => vec![("student", *student), ("teacher", *teacher)],
        }
    }

    fn labels(&self) -> Option<DeviceLabels<'a>> {
        match self {
            DeviceLoss::CrossEntropy { labels, .. } | DeviceLoss::Distill { labels, .. } => Some(*labels),
            _ => None,
        }
    }

    fn class_weights(&self) -> Option<DeviceWeights<'a>> {
        match self {
            DeviceLoss::CrossEntropy { class_weights, .. } => *class_weights,
            _ => None,
        }
    }

    /// The same operation as a host [`Loss`] over no data: its kernel, flags and options
    /// (and their checks) come from the host path, so the two cannot drift apart.
    fn template(&self, inputs: &[(&'static str, DeviceBatch)]) -> Loss<'static> {
        const NO_WEIGHTS: [f32; 0] = [];
        let a = &inputs[0].1;
        let batch = Batch { data: Floats::F32(&[]), rows: a.rows as usize, cols: a.cols as usize };
        let dist = |x: &DeviceDist| match x {
            DeviceDist::Probs(_) => Dist::Probs(batch),
            DeviceDist::Logits(_) => Dist::Logits(batch),
        };
        let labels = Labels::I32(&[]);
        match *self {
            DeviceLoss::LogSumExp { .. } => Loss::LogSumExp { logits: batch },
            DeviceLoss::Softmax { temperature, log, .. } => Loss::Softmax { logits: batch, temperature, log },
            DeviceLoss::CrossEntropy { ignore_index, class_weights, label_smoothing, .. } => Loss::CrossEntropy {
                logits: batch,
                labels,
                options: CrossEntropyOptions {
                    ignore_index: ignore_index.map(i64::from),
                    // the kernel reads the caller's buffer; only "weighted or not" matters here
                    class_weights: class_weights.map(|_| &NO_WEIGHTS[..]),
                    label_smoothing,
                },
            },
            DeviceLoss::CrossEntropyProbs { .. } => Loss::CrossEntropyProbs { logits: batch, target: batch },
            DeviceLoss::KlDiv { p, q } => Loss::KlDiv { p: dist(&p), q: dist(&q) },
            DeviceLoss::Entropy { p } => Loss::Entropy { p: dist(&p) },
            DeviceLoss::BinaryCrossEntropy { input, .. } => {
                Loss::BinaryCrossEntropy { input: dist(&input), target: batch }
            }
            DeviceLoss::GaussianKl { .. } => Loss::GaussianKl { mean: batch, logvar: batch },
            DeviceLoss::Distill { temperature, alpha, .. } => {
                Loss::Distill { student: batch, teacher: batch, labels, temperature, alpha }
            }
        }
    }
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
fn check_range(
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

fn buffer(device: &wgpu::Device, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).div_ceil(4) * 4,
        usage,
        mapped_at_creation: false,
    })
}

/// The cached buffer in `slot`, replaced by a larger one when it holds less than `bytes`.
fn grow(slot: &mut Option<wgpu::Buffer>, device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    match slot {
        Some(b) if b.size() >= bytes => b.clone(),
        _ => {
            // grow by at least half again, so a slowly rising size does not reallocate each time
            let size = bytes.max(slot.as_ref().map_or(0, |b| b.size() * 3 / 2)).max(64);
            slot.insert(buffer(device, label, size, STORAGE_RW)).clone()
        }
    }
}
