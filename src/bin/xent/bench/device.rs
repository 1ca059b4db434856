//! The device side: a job's inputs uploaded once, and the median device time of a kernel
//! over them from timestamp queries (or the wall clock where the adapter has none).

use std::time::Instant;

use wgpu::util::DeviceExt;
use xent::{Baseline, Context, DType, DeviceBatch, DeviceLabels, DeviceLoss, DeviceOutput, Loss, Op, RecordExtras};

use crate::Failure;

/// Words per row of the copy kernel.
const COPY_COLS: u64 = 1024;

/// Device buffers of one job and the timing machinery of the adapter.
pub(super) struct Bench<'c> {
    ctx: &'c Context,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    max_pieces: u32,
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);

fn upload(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let mut padded = bytes.to_vec();
    // whole 16-byte vectors, as the library allocates: inputs are read as vec4
    padded.resize(bytes.len().max(16).div_ceil(16) * 16, 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &padded,
        usage: STORAGE | wgpu::BufferUsages::COPY_SRC,
    })
}

fn empty(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).div_ceil(16) * 16,
        usage: STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// One dispatch's inputs as device buffers: what a kernel reads and writes.
pub(super) struct Job {
    pub(super) op: Op,
    softcap: Option<f32>,
    /// Cross-entropy's evaluation report computed on the way (`RecordExtras::report`).
    pub(super) report: bool,
    dtype: DType,
    pub(super) rows: u64,
    pub(super) cols: u64,
    elem: u64,
    pub(super) out_per_row: u64,
    a: wgpu::Buffer,
    b: Option<wgpu::Buffer>,
    labels: Option<wgpu::Buffer>,
    out: wgpu::Buffer,
    status: wgpu::Buffer,
    /// Where the copy kernel writes: the size of `a`.
    copy_out: wgpu::Buffer,
    /// Bytes a kernel must move at least: inputs read once plus outputs written.
    pub(super) bytes: u64,
}

impl<'c> Bench<'c> {
    pub(super) fn new(ctx: &'c Context) -> Bench<'c> {
        let d = ctx.device();
        let max_pieces = 64u32;
        let queries = d.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            let set = d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("xent bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * max_pieces,
            });
            let size = 16 * u64::from(max_pieces);
            let resolve = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent bench resolve"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent bench readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        Bench { ctx, queries, max_pieces }
    }

    pub(super) fn timing(&self) -> &'static str {
        if self.queries.is_some() { "timestamp" } else { "wall" }
    }

    /// Uploads the inputs of `loss` once.
    pub(super) fn job(&self, loss: &Loss, dtype: DType) -> Result<Job, Failure> {
        let d = self.ctx.device();
        loss.validate()?;
        let (rows, cols) = (loss.primary().rows as u64, loss.primary().cols as u64);
        let elem = dtype.size() as u64;
        let inputs = &loss.inputs;
        let a = upload(d, "a", inputs.first.data.bytes(0, inputs.first.data.len()));
        let b = inputs.second.as_ref().map(|b| upload(d, "b", b.data.bytes(0, b.data.len())));
        let labels = inputs.labels.as_ref().map(|y| {
            let v: Vec<i32> = (0..y.len()).map(|i| y.get(i) as i32).collect();
            upload(d, "labels", bytemuck::cast_slice(&v))
        });
        let out_per_row = if loss.op.writes_rows() { cols } else { 1 };
        let out_len = rows * out_per_row;
        let in_bytes = rows * cols * elem * (1 + u64::from(b.is_some())) + if labels.is_some() { 4 * rows } else { 0 };
        Ok(Job {
            op: loss.op,
            softcap: loss.softcap,
            report: false,
            dtype,
            rows,
            cols,
            elem,
            out_per_row,
            a,
            b,
            labels,
            out: empty(d, "out", 4 * out_len),
            status: upload(d, "status", bytemuck::cast_slice(&[u32::MAX; 2])),
            copy_out: empty(d, "copy", rows * cols * elem),
            bytes: in_bytes + 4 * out_len,
        })
    }

    /// Whether the copy kernel's output holds `job`'s input words (after a run of it): a
    /// roofline that skipped work would flatter every ratio.
    pub(super) fn check_copy(&self, job: &Job) -> Result<(), Failure> {
        let d = self.ctx.device();
        let len = (job.rows * job.cols * job.elem / 4 / COPY_COLS).max(1) * 4 * COPY_COLS;
        let read = |buffer: &wgpu::Buffer| -> Result<Vec<u8>, Failure> {
            let staging = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent bench copy check"),
                size: len,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            });
            let mut encoder = d.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, len);
            self.ctx.queue().submit([encoder.finish()]);
            Ok(xent::readback::read_blocking(d, &staging, 0..len)?)
        };
        if read(&job.a)? != read(&job.copy_out)? {
            return Err(Failure::machine("the copy kernel's output differs from its input".to_string()));
        }
        Ok(())
    }

    /// Rows and columns of the copy of `job`'s first input (rows of [`COPY_COLS`] words).
    pub(super) fn copy_shape(&self, job: &Job) -> (u64, u64) {
        ((job.rows * job.cols * job.elem / 4 / COPY_COLS).max(1), COPY_COLS)
    }

    /// Median device seconds of `job`'s operation, or of a baseline on its bindings, over
    /// all its rows.
    pub(super) fn time(&self, job: &Job, baseline: Option<Baseline>, iters: usize) -> Result<f64, Failure> {
        let d = self.ctx.device();
        let scope = d.push_error_scope(wgpu::ErrorFilter::Validation);
        let times = self.time_scoped(job, baseline, iters);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Failure::machine(format!("benchmarking {} ({baseline:?}): {e}", job.op)));
        }
        times
    }

    fn time_scoped(&self, job: &Job, baseline: Option<Baseline>, iters: usize) -> Result<f64, Failure> {
        let d = self.ctx.device();
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters.max(1) {
            let mut encoder = d.create_command_encoder(&Default::default());
            let passes = self.record(&mut encoder, job, baseline)?;
            times.push(self.submit_timed(encoder, passes as usize)?);
        }
        Ok(median(&mut times))
    }

    /// Records `job` (or `baseline` on its bindings) through the context's recorder, as
    /// any caller's record, each row range between timestamps; returns the number of ranges.
    fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        job: &Job,
        baseline: Option<Baseline>,
    ) -> Result<u32, Failure> {
        let batch = |buffer, rows: u64, cols: u64, dtype| DeviceBatch {
            buffer,
            offset: 0,
            rows: rows as u32,
            cols: cols as u32,
            dtype,
        };
        let (loss, out) = if baseline == Some(Baseline::Copy) {
            // the copy moves the first input's words (a tail under one row is left out: at
            // most 4 KiB), bound as the rows of values a softmax writes
            let units = (job.rows * job.cols * job.elem / 4 / COPY_COLS).max(1);
            let op = Op::Softmax { temperature: 1.0, log: false };
            (DeviceLoss::new(op, batch(&job.a, units, COPY_COLS, DType::F32)), DeviceOutput::rows(&job.copy_out))
        } else {
            let mut loss = DeviceLoss::new(job.op, batch(&job.a, job.rows, job.cols, job.dtype));
            loss.softcap = job.softcap;
            if let Some(b) = &job.b {
                loss = loss.with_second(batch(b, job.rows, job.cols, job.dtype));
            }
            if let Some(buffer) = &job.labels {
                loss = loss.with_labels(DeviceLabels::i32(buffer, 0));
            }
            (loss, DeviceOutput::rows(&job.out))
        };
        let extras = RecordExtras {
            status: Some(&job.status),
            report: job.report && baseline.is_none(),
            baseline,
            timestamps: self.queries.as_ref().map(|(set, _, _)| (set, 2 * self.max_pieces)),
            ..Default::default()
        };
        Ok(self.ctx.recorder().record_with(encoder, &loss, &out, &extras)?)
    }

    /// Submits `encoder` and returns the device seconds of its `passes` timed passes (the
    /// wall clock around submit and wait without timestamp queries).
    fn submit_timed(&self, mut encoder: wgpu::CommandEncoder, passes: usize) -> Result<f64, Failure> {
        let d = self.ctx.device();
        let started = Instant::now();
        if let Some((set, resolve, read)) = &self.queries {
            let n = 2 * passes as u32;
            encoder.resolve_query_set(set, 0..n, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 8 * u64::from(n));
            self.ctx.queue().submit([encoder.finish()]);
            let bytes = xent::readback::read_blocking(d, read, 0..8 * u64::from(n))?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            let period = f64::from(self.ctx.queue().get_timestamp_period());
            let total: u64 = ticks.chunks_exact(2).map(|p| p[1].saturating_sub(p[0])).sum();
            Ok(total as f64 * period * 1e-9)
        } else {
            let index = self.ctx.queue().submit([encoder.finish()]);
            d.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
                .map_err(|e| Failure::machine(format!("waiting for the GPU: {e}")))?;
            Ok(started.elapsed().as_secs_f64())
        }
    }
}

pub(super) fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
