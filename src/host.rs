//! Jobs on host slices: upload in row chunks that fit the binding limit, run the row
//! kernel per chunk into full-length per-row buffers, then one tree reduction and one
//! readback. Chunks alternate between two upload buffers so that the upload of chunk
//! i+1 overlaps the kernel of chunk i, and at most two chunks are in flight.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::loss::{Batch, DType, Labels, LogBase, Loss};
use crate::ops::{self, Bound, RowBindings, RowJob};
use crate::plan;
use crate::readback;

/// What to compute besides the reductions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    pub base: LogBase,
    /// Read back the per-row values (softmax: always).
    pub keep_values: bool,
    /// Read back the per-row argmax (row max and cross-entropy with labels).
    pub keep_argmax: bool,
    /// Force at most this many rows per chunk (tests of the chunked path).
    pub chunk_rows: Option<u64>,
}

/// The result of a job.
#[derive(Clone, Debug)]
pub struct Output {
    pub rows: usize,
    pub cols: usize,
    /// Sum of the per-row values (a deterministic tree sum on the GPU).
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

fn buffer(device: &wgpu::Device, label: &str, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes.max(4).div_ceil(4) * 4, usage, mapped_at_creation: false })
}

fn whole(buffer: &wgpu::Buffer) -> Bound<'_> {
    Bound { buffer, window: plan::Window { offset: 0, size: buffer.size(), base: 0 } }
}

/// Bytes of rows `start..start + n` of `batch` as `dtype` (converted to f32 if they differ).
fn rows_bytes(batch: &Batch, dtype: DType, start: usize, n: usize) -> Vec<u8> {
    let (s, e) = (start * batch.cols, (start + n) * batch.cols);
    if batch.data.dtype() == dtype {
        return batch.data.bytes(s, e).to_vec();
    }
    let v: Vec<f32> = (s..e).map(|i| batch.data.get(i) as f32).collect();
    bytemuck::cast_slice(&v).to_vec()
}

/// Labels narrowed to i32; values that do not fit become `i32::MIN`, which is never in
/// range nor the ignore index, so the kernel reports the row.
fn labels_bytes(labels: &Labels, start: usize, n: usize) -> Vec<u8> {
    let v: Vec<i32> = (start..start + n).map(|i| i32::try_from(labels.get(i)).unwrap_or(i32::MIN)).collect();
    bytemuck::cast_slice(&v).to_vec()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A (sum, flags) pair from the reduction as f64.
fn flagged(sum_bits: u32, flags: u32) -> f64 {
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
    /// Runs `loss` on the GPU and returns its reductions (and per-row values if asked).
    pub fn compute(&self, loss: &Loss, options: &RunOptions) -> Result<Output> {
        loss.validate()?;
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let result = self.compute_scoped(loss, options);
        let oom = pollster::block_on(oom.pop());
        let validation = pollster::block_on(validation.pop());
        if let Some(e) = validation.or(oom) {
            return Err(Error::Gpu(e.to_string()));
        }
        result
    }

    fn compute_scoped(&self, loss: &Loss, options: &RunOptions) -> Result<Output> {
        let job = ops::job(loss, options.base);
        let (rows, cols) = (job.a.rows as u64, job.a.cols as u64);
        let dtype = match job.b {
            Some(b) if b.data.dtype() != job.a.data.dtype() => DType::F32,
            _ => job.a.data.dtype(),
        };
        let limits = self.device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let max_binding = limits.max_storage_buffer_binding_size;
        let row_bytes = (cols * dtype.size() as u64).max(4 * job.out_per_row);
        let mut chunk = plan::chunk_rows(rows, row_bytes, max_binding, align, self.chunk_bytes).map_err(|need| {
            Error::TooLarge(format!(
                "one row needs {need} bytes but the adapter binds at most {max_binding}; split the columns or use a larger device"
            ))
        })?;
        if let Some(c) = options.chunk_rows {
            chunk = chunk.min(c.max(1));
        }
        let softmax = job.out_per_row > 1;
        let d = &self.device;

        // per-row outputs for every row (softmax: one chunk, read back per chunk)
        let out_rows = if softmax { chunk * job.out_per_row } else { rows };
        let out = buffer(d, "xent rows", 4 * out_rows, USAGE_OUT);
        let aux = buffer(d, "xent aux", if job.uses_aux() { 8 * rows } else { 4 }, USAGE_OUT);
        let status = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("xent status"),
            contents: bytemuck::cast_slice(&[u32::MAX; 2]),
            usage: USAGE_OUT | wgpu::BufferUsages::COPY_DST,
        });
        let weights = match job.class_weights {
            Some(w) => d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent class weights"),
                contents: bytemuck::cast_slice(w),
                usage: USAGE_IN,
            }),
            None => buffer(d, "xent unused", 4, USAGE_IN),
        };
        let unused = buffer(d, "xent unused", 4, USAGE_IN);
        let in_bytes = chunk * cols * dtype.size() as u64;
        let uploads: Vec<[wgpu::Buffer; 3]> = (0..2)
            .map(|_| {
                [
                    buffer(d, "xent input a", in_bytes, USAGE_IN),
                    buffer(d, "xent input b", if job.b.is_some() { in_bytes } else { 4 }, USAGE_IN),
                    buffer(d, "xent labels", if job.labels.is_some() { 4 * chunk } else { 4 }, USAGE_IN),
                ]
            })
            .collect();
        let readback = if softmax { Some(buffer(d, "xent readback", 4 * out_rows, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST)) } else { None };
        let mut values = Vec::new();

        let mut in_flight = [None, None];
        for (i, (start, n)) in plan::chunks(rows, chunk).enumerate() {
            let slot = i % 2;
            if let Some(index) = in_flight[slot].take() {
                d.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
                    .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                self.health()?;
            }
            let [a, b, y] = &uploads[slot];
            self.queue.write_buffer(a, 0, &rows_bytes(&job.a, dtype, start as usize, n as usize));
            if let Some(batch) = &job.b {
                self.queue.write_buffer(b, 0, &rows_bytes(batch, dtype, start as usize, n as usize));
            }
            if let Some(labels) = &job.labels {
                self.queue.write_buffer(y, 0, &labels_bytes(labels, start as usize, n as usize));
            }
            let out_window = if softmax {
                whole(&out).window
            } else {
                plan::window(4 * start, 4 * n, 4, align, out.size())
            };
            let aux_window = if job.uses_aux() { plan::window(8 * start, 8 * n, 4, align, aux.size()) } else { whole(&aux).window };
            let bindings = RowBindings {
                a: whole(a),
                b: if job.b.is_some() { whole(b) } else { whole(&unused) },
                labels: if job.labels.is_some() { whole(y) } else { whole(&unused) },
                class_weights: whole(&weights),
                out: Bound { buffer: &out, window: out_window },
                aux: Bound { buffer: &aux, window: aux_window },
                status: &status,
            };
            let mut encoder = d.create_command_encoder(&Default::default());
            ops::encode_rows(&self.kernels, &mut encoder, &job, dtype, n, start, &bindings)?;
            if let Some(rb) = &readback {
                let bytes = 4 * n * job.out_per_row;
                encoder.copy_buffer_to_buffer(&out, 0, rb, 0, bytes);
                self.queue.submit([encoder.finish()]);
                values.extend(f32s(&readback::read_blocking(d, rb, 0..bytes)?));
                self.health()?;
            } else {
                in_flight[slot] = Some(self.queue.submit([encoder.finish()]));
            }
        }
        self.finish(&job, options, &out, &aux, &status, values)
    }

    /// Reduces the per-row buffers, reads everything back and checks the status words.
    fn finish(&self, job: &RowJob, options: &RunOptions, out: &wgpu::Buffer, aux: &wgpu::Buffer, status: &wgpu::Buffer, values: Vec<f32>) -> Result<Output> {
        let d = &self.device;
        let rows = job.a.rows as u64;
        let softmax = job.out_per_row > 1;
        let keep_values = options.keep_values && !softmax;
        let keep_argmax = options.keep_argmax && job.argmax;
        // readback layout: status (2 words), value pair, weight pair, values, argmax pairs
        let values_at = 24u64;
        let argmax_at = values_at + if keep_values { 4 * rows } else { 0 };
        let total = argmax_at + if keep_argmax { 8 * rows } else { 0 };
        let rb = buffer(d, "xent readback", total, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut encoder = d.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(status, 0, &rb, 0, 8);
        let partials = rows.div_ceil(plan::REDUCE_BLOCK);
        let scratch = [
            buffer(d, "xent partials", 8 * partials, USAGE_OUT),
            buffer(d, "xent partials", 8 * partials.div_ceil(plan::REDUCE_BLOCK), USAGE_OUT),
        ];
        let scratch_refs = [&scratch[0], &scratch[1]];
        let result = &scratch[ops::reduce_result_index(rows)];
        if !softmax {
            ops::encode_reduce(&self.kernels, &mut encoder, out, rows, 1, 0, scratch_refs)?;
            encoder.copy_buffer_to_buffer(result, 0, &rb, 8, 8);
        }
        if job.weighted {
            ops::encode_reduce(&self.kernels, &mut encoder, aux, rows, 2, 1, scratch_refs)?;
            encoder.copy_buffer_to_buffer(result, 0, &rb, 16, 8);
        }
        if keep_values {
            encoder.copy_buffer_to_buffer(out, 0, &rb, values_at, 4 * rows);
        }
        if keep_argmax {
            encoder.copy_buffer_to_buffer(aux, 0, &rb, argmax_at, 8 * rows);
        }
        self.queue.submit([encoder.finish()]);
        let bytes = readback::read_blocking(d, &rb, 0..rb.size())?;
        self.health()?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        self.check_status(job, words[0], words[1])?;

        let sum = if softmax { values.iter().map(|&v| f64::from(v)).sum() } else { flagged(words[2], words[3]) };
        let denominator = if job.weighted { flagged(words[4], words[5]) } else { rows as f64 };
        let values = if softmax {
            Some(values)
        } else if keep_values {
            Some(f32s(&bytes[values_at as usize..argmax_at as usize]))
        } else {
            None
        };
        let argmax = keep_argmax.then(|| words[argmax_at as usize / 4..].iter().step_by(2).copied().collect());
        Ok(Output { rows: rows as usize, cols: job.a.cols, sum, denominator, values, argmax })
    }

    /// Turns the kernel's first-bad-row words into an error naming the row and value.
    fn check_status(&self, job: &RowJob, bad_label: u32, bad_value: u32) -> Result<()> {
        if bad_label != u32::MAX {
            let label = job.labels.map(|y| y.get(bad_label as usize)).unwrap_or_default();
            return Err(Error::Label { row: u64::from(bad_label), detail: format!("{label} is outside [0, {})", job.a.cols) });
        }
        if bad_value != u32::MAX {
            return Err(Error::Value { row: u64::from(bad_value), detail: describe_bad_value(job, bad_value as usize) });
        }
        Ok(())
    }
}

/// The first out-of-domain value of `row`, found on the host for the message.
fn describe_bad_value(job: &RowJob, row: usize) -> String {
    let cols = job.a.cols;
    let probs_a = job.params.flags & crate::kernels::flags::P_LOGITS == 0;
    let is_bce = job.kernel == crate::kernels::Kernel::BinaryXent;
    let q_probs = job.params.flags & crate::kernels::flags::Q_LOGITS == 0;
    for j in 0..cols {
        if is_bce {
            let t = job.b.map(|b| b.get(row, j)).unwrap_or(0.0);
            if !(0.0..=1.0).contains(&t) {
                return format!("target {t} at column {j} is outside [0, 1]");
            }
        }
        let checks = [(Some(job.a), probs_a), (job.b, q_probs && !is_bce)];
        for (batch, is_probs) in checks {
            let Some(batch) = batch.filter(|_| is_probs) else { continue };
            let v = batch.get(row, j);
            if is_bce && !(0.0..=1.0).contains(&v) {
                return format!("probability {v} at column {j} is outside [0, 1]");
            }
            if v.is_nan() || v < 0.0 {
                return format!("probability {v} at column {j} is {}", if v.is_nan() { "NaN" } else { "negative" });
            }
        }
    }
    "holds a value outside its domain".to_string()
}
