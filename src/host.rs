//! Jobs on host slices, whole ([`Context::compute`]) or fed in row chunks
//! ([`Context::stream`], for files bigger than memory).
//!
//! Each pushed chunk is split into pieces that fit the binding limit, uploaded into one
//! of two alternating buffers and run into full-length per-row buffers on the device,
//! so the upload of piece i+1 overlaps the kernel of piece i and at most two pieces are
//! in flight. `finish` runs one tree reduction over all rows and one readback, so the
//! result does not depend on how the rows were chunked.

use half::{bf16, f16};
use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{Kernel, RowParams};
use crate::loss::{Batch, DType, Labels, LogBase, Loss};
use crate::ops::{self, Bound, RowBindings, RowJob};
use crate::plan;
use crate::readback;
use crate::reference::{bad_probability, outside_unit};

/// What to compute besides the reductions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// The unit of the values of the operations that take a log base.
    pub base: LogBase,
    /// Read back the per-row values (softmax: always).
    pub keep_values: bool,
    /// Read back the per-row argmax (row max and cross-entropy with labels).
    pub keep_argmax: bool,
    /// Force at most this many rows per piece (tests of the chunked path).
    pub chunk_rows: Option<u64>,
}

/// The result of a job.
#[derive(Clone, Debug)]
pub struct Output {
    /// Rows of the job.
    pub rows: usize,
    /// Columns of the job.
    pub cols: usize,
    /// Sum of the per-row values (a deterministic tree sum on the GPU; softmax: of all values).
    pub sum: f64,
    /// The mean's denominator: rows, or `Σ W[y]` over non-ignored rows for cross-entropy.
    pub denominator: f64,
    /// Per-row values (softmax: `rows * cols`), if asked for.
    pub values: Option<Vec<f32>>,
    /// Per-row argmax, if asked for and the operation has one.
    pub argmax: Option<Vec<u32>>,
}

impl Output {
    /// The value reduced over rows (`None` gives the sum, as the CLI reports it).
    pub fn reduce(&self, reduction: crate::Reduction) -> f64 {
        match reduction {
            crate::Reduction::Mean => self.sum / self.denominator,
            _ => self.sum,
        }
    }
}

const USAGE_IN: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);
const USAGE_OUT: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);
const USAGE_READ: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

fn buffer(device: &wgpu::Device, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    // whole 16-byte vectors: inputs are bound as vec4 (plan::window)
    let size = bytes.max(16).div_ceil(16) * 16;
    device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size, usage, mapped_at_creation: false })
}

fn whole(buffer: &wgpu::Buffer) -> Bound<'_> {
    Bound { buffer, window: plan::Window { offset: 0, size: buffer.size(), base: 0 } }
}

/// Elements before a chunk's first row in its upload: the kernels read a row in octets
/// aligned to eight elements of the binding (shaders/common/row_reduce.wgsl), and where a
/// row has several lanes, which lane takes which element follows that alignment. Placing
/// row `start` where it lies in the whole batch (modulo 8) gives every chunking the same
/// lanes, so the same bits.
fn lead_elements(start: usize, cols: usize) -> usize {
    (start * cols) % 8
}

/// Bytes of rows `start..start + n` of `batch` as `dtype` after `lead` zero elements,
/// padded to whole words.
fn rows_bytes(batch: &Batch, dtype: DType, start: usize, n: usize, lead: usize) -> Vec<u8> {
    let (s, e) = (start * batch.cols, (start + n) * batch.cols);
    let mut bytes = vec![0u8; lead * dtype.size()];
    if batch.data.dtype() == dtype {
        bytes.extend_from_slice(batch.data.bytes(s, e));
    } else {
        match dtype {
            DType::F32 => bytes.extend((s..e).flat_map(|i| (batch.data.get(i) as f32).to_le_bytes())),
            DType::F16 => bytes.extend((s..e).flat_map(|i| f16::from_f64(batch.data.get(i)).to_le_bytes())),
            DType::Bf16 => bytes.extend((s..e).flat_map(|i| bf16::from_f64(batch.data.get(i)).to_le_bytes())),
        }
    }
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes
}

/// Labels narrowed to i32; values that do not fit become `i32::MIN`, which is never in
/// range nor the ignore index, so the kernel reports the row.
fn labels_bytes(labels: &Labels, start: usize, n: usize) -> Vec<u8> {
    (start..start + n).flat_map(|i| i32::try_from(labels.get(i)).unwrap_or(i32::MIN).to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A (sum, flags) pair from the reduction as f64.
pub(crate) fn flagged(sum_bits: u32, flags: u32) -> f64 {
    let (pos, nan, neg) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    if nan || (pos && neg) {
        f64::NAN
    } else if pos {
        f64::INFINITY
    } else if neg {
        f64::NEG_INFINITY
    } else {
        f64::from(f32::from_bits(sum_bits))
    }
}

impl Context {
    /// Runs `f` inside validation and out-of-memory error scopes.
    fn scoped<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
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
        let values = stream.push(loss)?;
        let mut out = stream.finish().map_err(|e| describe(e, loss))?;
        if out.values.is_none() && values.is_some() {
            out.sum = values.iter().flatten().map(|&v| f64::from(v)).sum();
            out.values = values;
        }
        Ok(out)
    }

    /// Starts a job of `rows` rows in all, fed in chunks by [`Stream::push`]. `template`
    /// sets the operation, options, columns and dtypes; its data is not read.
    pub fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> Result<Stream<'_>> {
        template.validate()?;
        let job = ops::job(template, options.base);
        let cols = job.a.cols as u64;
        let dtype = match job.b {
            Some(b) if b.data.dtype() != job.a.data.dtype() => DType::F32,
            _ => job.a.data.dtype(),
        };
        if rows == 0 || cols == 0 {
            return Err(Error::Shape { what: "batch", detail: format!("is empty ([{rows}, {cols}])") });
        }
        if rows > u64::from(u32::MAX - 1) || cols > u64::from(u32::MAX) {
            return Err(Error::TooLarge(format!("[{rows}, {cols}] is over 2^32 rows or columns")));
        }
        let limits = self.device.limits();
        let (align, max_binding) =
            (u64::from(limits.min_storage_buffer_offset_alignment), limits.max_storage_buffer_binding_size);
        let row_bytes = (cols * dtype.size() as u64).max(4 * job.out_per_row);
        let mut chunk = plan::chunk_rows(rows, row_bytes, max_binding, align, self.chunk_bytes).map_err(|need| {
            Error::TooLarge(format!(
                "one row needs {need} bytes but the adapter binds at most {max_binding}; use fewer columns"
            ))
        })?;
        if let Some(c) = options.chunk_rows {
            chunk = chunk.min(c.max(1));
        }
        self.scoped(|| Ok(Stream::new(self, &job, dtype, rows, chunk, *options)))
    }
}

/// A job fed in row chunks, in order; see [`Context::stream`].
pub struct Stream<'c> {
    ctx: &'c Context,
    kernel: Kernel,
    params: RowParams,
    options: RunOptions,
    dtype: DType,
    rows: u64,
    cols: u64,
    chunk: u64,
    out_per_row: u64,
    weighted: bool,
    argmax: bool,
    has_b: bool,
    has_labels: bool,
    next_row: u64,
    out: wgpu::Buffer,
    aux: wgpu::Buffer,
    status: wgpu::Buffer,
    class_weights: wgpu::Buffer,
    unused: wgpu::Buffer,
    uploads: [[wgpu::Buffer; 3]; 2],
    readback: Option<wgpu::Buffer>,
    in_flight: [Option<wgpu::SubmissionIndex>; 2],
    pieces: usize,
}

impl<'c> Stream<'c> {
    fn new(ctx: &'c Context, job: &RowJob, dtype: DType, rows: u64, chunk: u64, options: RunOptions) -> Self {
        let d = &ctx.device;
        let cols = job.a.cols as u64;
        let softmax = job.writes_rows();
        // per-row outputs for every row (softmax: one piece, read back per piece)
        let out_len = if softmax { chunk * job.out_per_row } else { rows };
        // (and up to 7 lead elements: lead_elements)
        let in_bytes = (chunk * cols + 7) * dtype.size() as u64;
        let upload = |_| {
            [
                buffer(d, "xent input a", in_bytes, USAGE_IN),
                buffer(d, "xent input b", if job.b.is_some() { in_bytes } else { 4 }, USAGE_IN),
                buffer(d, "xent labels", if job.labels.is_some() { 4 * chunk } else { 4 }, USAGE_IN),
            ]
        };
        let class_weights = match job.class_weights {
            Some(w) => d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent class weights"),
                contents: bytemuck::cast_slice(w),
                usage: USAGE_IN,
            }),
            None => buffer(d, "xent unused", 4, USAGE_IN),
        };
        Stream {
            ctx,
            kernel: job.kernel,
            params: job.params,
            options,
            dtype,
            rows,
            cols,
            chunk,
            out_per_row: job.out_per_row,
            weighted: job.weighted,
            argmax: job.argmax,
            has_b: job.b.is_some(),
            has_labels: job.labels.is_some(),
            next_row: 0,
            out: buffer(d, "xent rows", 4 * out_len, USAGE_OUT),
            aux: buffer(d, "xent aux", if job.uses_aux() { 8 * rows } else { 4 }, USAGE_OUT),
            status: d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent status"),
                contents: bytemuck::cast_slice(&[u32::MAX; 2]),
                usage: USAGE_OUT,
            }),
            class_weights,
            unused: buffer(d, "xent unused", 4, USAGE_IN),
            uploads: [upload(0), upload(1)],
            readback: softmax.then(|| buffer(d, "xent readback", 4 * out_len, USAGE_READ)),
            in_flight: [None, None],
            pieces: 0,
        }
    }

    /// Rows pushed so far.
    pub fn rows_done(&self) -> u64 {
        self.next_row
    }

    /// Runs the next rows of the job. `chunk` is the same operation as the template
    /// over the next `n` rows. Softmax returns this chunk's output rows.
    pub fn push(&mut self, chunk: &Loss) -> Result<Option<Vec<f32>>> {
        chunk.validate()?;
        let job = ops::job(chunk, self.options.base);
        let n = job.a.rows as u64;
        if job.kernel != self.kernel || job.a.cols as u64 != self.cols || self.next_row + n > self.rows {
            return Err(Error::Shape {
                what: "chunk",
                detail: format!(
                    "of [{n}, {}] does not continue a [{}, {}] job at row {}",
                    job.a.cols, self.rows, self.cols, self.next_row
                ),
            });
        }
        let ctx = self.ctx;
        ctx.scoped(|| {
            let mut values = self.readback.as_ref().map(|_| Vec::with_capacity((n * self.out_per_row) as usize));
            for (start, len) in plan::chunks(n, self.chunk) {
                let piece = self.piece(&job, start, len)?;
                if let (Some(v), Some(p)) = (values.as_mut(), piece) {
                    v.extend(p);
                }
            }
            Ok(values)
        })
    }

    /// Uploads and runs rows `start..start + n` of `job` (rows of this push).
    fn piece(&mut self, job: &RowJob, start: u64, n: u64) -> Result<Option<Vec<f32>>> {
        let (ctx, d) = (self.ctx, &self.ctx.device);
        let slot = self.pieces % 2;
        self.pieces += 1;
        if let Some(index) = self.in_flight[slot].take() {
            d.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
            ctx.health()?;
        }
        let (s, len) = (start as usize, n as usize);
        let [a, b, y] = &self.uploads[slot];
        let lead = lead_elements(s, job.a.cols);
        ctx.queue.write_buffer(a, 0, &rows_bytes(&job.a, self.dtype, s, len, lead));
        if let Some(batch) = &job.b {
            ctx.queue.write_buffer(b, 0, &rows_bytes(batch, self.dtype, s, len, lead));
        }
        if let Some(labels) = &job.labels {
            ctx.queue.write_buffer(y, 0, &labels_bytes(labels, s, len));
        }
        let row = self.next_row;
        let align = u64::from(d.limits().min_storage_buffer_offset_alignment);
        let softmax = self.readback.is_some();
        let out = if softmax { whole(&self.out) } else { self.per_row(&self.out, 4, row, n, align) };
        let aux =
            if self.weighted || self.argmax { self.per_row(&self.aux, 8, row, n, align) } else { whole(&self.aux) };
        let led = |buffer| Bound { buffer, window: plan::Window { base: lead as u32, ..whole(buffer).window } };
        let bindings = RowBindings {
            a: led(a),
            b: if self.has_b { led(b) } else { whole(&self.unused) },
            labels: whole(if self.has_labels { y } else { &self.unused }),
            class_weights: whole(&self.class_weights),
            out,
            aux,
            status: &self.status,
            // no gradient: any writable binding will do
            grad: whole(&self.aux),
        };
        let mut encoder = d.create_command_encoder(&Default::default());
        let dispatch = ops::Dispatch {
            kernel: self.kernel,
            template: &self.params,
            dtype: self.dtype,
            rows: n,
            cols: self.cols,
            row_offset: row,
            grad: Default::default(),
            grad_denominator: None,
        };
        ops::encode_rows(&ctx.kernels, &mut encoder, &dispatch, &bindings)?;
        self.next_row += n;
        let Some(rb) = &self.readback else {
            self.in_flight[slot] = Some(ctx.queue.submit([encoder.finish()]));
            return Ok(None);
        };
        let bytes = 4 * n * self.out_per_row;
        encoder.copy_buffer_to_buffer(&self.out, 0, rb, 0, bytes);
        ctx.queue.submit([encoder.finish()]);
        let values = f32s(&readback::read_blocking(d, rb, 0..bytes)?);
        ctx.health()?;
        Ok(Some(values))
    }

    /// The window of rows `row..row + n` of a per-row buffer of `stride` bytes a row.
    fn per_row<'b>(&self, buffer: &'b wgpu::Buffer, stride: u64, row: u64, n: u64, align: u64) -> Bound<'b> {
        Bound { buffer, window: plan::window(stride * row, stride * n, 4, align, buffer.size()) }
    }

    /// Reduces the per-row buffers, reads back and checks the status words.
    pub fn finish(self) -> Result<Output> {
        if self.next_row != self.rows {
            return Err(Error::Shape {
                what: "job",
                detail: format!("ended after {} of its {} rows", self.next_row, self.rows),
            });
        }
        self.ctx.scoped(|| self.finish_scoped())
    }

    fn finish_scoped(&self) -> Result<Output> {
        let (ctx, d) = (self.ctx, &self.ctx.device);
        let rows = self.rows;
        let softmax = self.readback.is_some();
        let keep_values = self.options.keep_values && !softmax;
        let keep_argmax = self.options.keep_argmax && self.argmax;
        // readback layout: status (2 words), value pair, weight pair, values, argmax pairs
        let values_at = 24u64;
        let argmax_at = values_at + if keep_values { 4 * rows } else { 0 };
        let total = argmax_at + if keep_argmax { 8 * rows } else { 0 };
        let rb = buffer(d, "xent readback", total, USAGE_READ);
        let mut encoder = d.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.status, 0, &rb, 0, 8);
        let partials = rows.div_ceil(plan::REDUCE_BLOCK);
        let scratch = [
            buffer(d, "xent partials", 8 * partials, USAGE_OUT),
            buffer(d, "xent partials", 8 * partials.div_ceil(plan::REDUCE_BLOCK), USAGE_OUT),
        ];
        let result = &scratch[ops::reduce_result_index(rows)];
        if !softmax {
            ops::encode_reduce(&ctx.kernels, &mut encoder, &self.out, rows, 1, 0, [&scratch[0], &scratch[1]])?;
            encoder.copy_buffer_to_buffer(result, 0, &rb, 8, 8);
        }
        if self.weighted {
            ops::encode_reduce(&ctx.kernels, &mut encoder, &self.aux, rows, 2, 1, [&scratch[0], &scratch[1]])?;
            encoder.copy_buffer_to_buffer(result, 0, &rb, 16, 8);
        }
        if keep_values {
            encoder.copy_buffer_to_buffer(&self.out, 0, &rb, values_at, 4 * rows);
        }
        if keep_argmax {
            encoder.copy_buffer_to_buffer(&self.aux, 0, &rb, argmax_at, 8 * rows);
        }
        ctx.queue.submit([encoder.finish()]);
        let bytes = readback::read_blocking(d, &rb, 0..rb.size())?;
        ctx.health()?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        if words[0] != u32::MAX {
            let detail = format!("is outside [0, {})", self.cols);
            return Err(Error::Label { row: u64::from(words[0]), detail });
        }
        if words[1] != u32::MAX {
            let detail = "holds a value outside its domain (a negative, NaN or infinite probability, or a target outside [0, 1])";
            return Err(Error::Value { row: u64::from(words[1]), detail: detail.into() });
        }
        Ok(Output {
            rows: rows as usize,
            cols: self.cols as usize,
            sum: if softmax { f64::NAN } else { flagged(words[2], words[3]) },
            denominator: if self.weighted { flagged(words[4], words[5]) } else { rows as f64 },
            values: keep_values.then(|| f32s(&bytes[values_at as usize..argmax_at as usize])),
            // (the readback buffer is padded past the last pair)
            argmax: keep_argmax.then(|| {
                let first = argmax_at as usize / 4;
                words[first..first + 2 * rows as usize].iter().step_by(2).copied().collect()
            }),
        })
    }
}

/// Adds the offending value to a row error, from the host data of `loss`.
fn describe(e: Error, loss: &Loss) -> Error {
    match e {
        Error::Label { row, .. } => {
            let label = loss.labels().map(|y| y.get(row as usize)).unwrap_or_default();
            Error::Label { row, detail: format!("{label} is outside [0, {})", loss.primary().cols) }
        }
        Error::Value { row, detail } => {
            Error::Value { row, detail: first_bad_value(loss, row as usize).unwrap_or(detail) }
        }
        e => e,
    }
}

/// The first out-of-domain probability or target of `row` (the rules of the reference).
fn first_bad_value(loss: &Loss, row: usize) -> Option<String> {
    let (probs, targets): (Vec<&Batch>, Option<&Batch>) = match loss {
        Loss::CrossEntropyProbs { target, .. } => (vec![target], None),
        Loss::KlDiv { p, q } => ([p, q].into_iter().filter(|d| !d.is_logits()).map(|d| d.batch()).collect(), None),
        Loss::Entropy { p } => ([p].into_iter().filter(|d| !d.is_logits()).map(|d| d.batch()).collect(), None),
        Loss::BinaryCrossEntropy { input, target } => {
            ([input].into_iter().filter(|d| !d.is_logits()).map(|d| d.batch()).collect(), Some(target))
        }
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
