//! What the tuner runs: a job like the caller's on scratch buffers of its own (seeded
//! values of each input's domain, at most a piece's worth of rows), timed with device
//! timestamps, the copy of the same bytes beside it, and the probe of special values each
//! candidate must pass first.

use std::time::Instant;

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::embed::{Baseline, DeviceBatch, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, RecordExtras};
use crate::error::{Error, Result};
use crate::layout::RowLayout;
use crate::loss::{Batch, DType, Floats, Labels, LogBase, Loss};
use crate::op::{Domain, Op};
use crate::stream::RunOptions;

/// Bytes of a scratch job's float inputs at most, and its rows at most, unless the context
/// sets its own bytes ([`Context::set_tune_scratch`]).
const SCRATCH_BYTES: u64 = 32 << 20;
const SCRATCH_ROWS: u64 = 4096;
/// Row ranges a record may time (two queries each).
const MAX_PIECES: u32 = 64;
/// Words a row of the copy moves.
const COPY_COLS: u64 = 1024;

/// A seeded generator of values in [0, 1).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `[rows, cols]` seeded values of `domain`: logits in [−4, 4), probabilities (rows that sum
/// to 1), or values in [0, 1).
fn values(domain: Domain, rows: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..rows * cols).map(|_| rng.unit()).collect();
    match domain {
        Domain::Logits => v.iter_mut().for_each(|x| *x = 8.0 * *x - 4.0),
        Domain::Probs => v.chunks_mut(cols).for_each(|row| {
            let s: f32 = row.iter().map(|x| x + 0.01).sum();
            row.iter_mut().for_each(|x| *x = (*x + 0.01) / s);
        }),
        Domain::Unit => {}
    }
    v
}

/// `v` as stored in `dtype`.
fn bytes(v: &[f32], dtype: DType) -> Vec<u8> {
    let mut b: Vec<u8> = match dtype {
        DType::F32 => bytemuck::cast_slice(v).to_vec(),
        DType::F16 => v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        DType::Bf16 => v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
    };
    // whole 16-byte vectors, as the library allocates: inputs are read as vec4
    b.resize(b.len().max(16).div_ceil(16) * 16, 0);
    b
}

/// Rows of a scratch job for a job of `rows` rows of `row_bytes` (writing `out_cols` f32 a
/// row): as many as fit in `max_bytes` where set, else at most [`SCRATCH_ROWS`] and
/// [`SCRATCH_BYTES`]; every buffer within `max_buffer`, and one row at least.
fn scratch_rows(rows: u64, row_bytes: u64, out_cols: u64, max_bytes: Option<u64>, max_buffer: u64) -> u64 {
    let row_bytes = row_bytes.max(1);
    let rows = match max_bytes {
        Some(bytes) => rows.min(bytes / row_bytes),
        None => rows.min(SCRATCH_ROWS).min(SCRATCH_BYTES / row_bytes),
    };
    rows.min(max_buffer / row_bytes.max(4 * out_cols)).max(1)
}

/// A job like the caller's on the tuner's own buffers.
pub(super) struct Scratch {
    op: Op,
    softcap: Option<f32>,
    report: bool,
    dtype: DType,
    rows: u64,
    /// The rows of the job it stands for, whose layouts it runs ([`RecordExtras::job_rows`]).
    job_rows: u64,
    cols: u64,
    a: wgpu::Buffer,
    b: Option<wgpu::Buffer>,
    labels: Option<wgpu::Buffer>,
    weights: Option<wgpu::Buffer>,
    out: wgpu::Buffer,
    copy_out: wgpu::Buffer,
    status: wgpu::Buffer,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
}

impl Scratch {
    /// Scratch buffers for a job like `template` over `rows` rows: as many as fit in
    /// `max_bytes` of the first input, else at most [`SCRATCH_ROWS`] and [`SCRATCH_BYTES`].
    pub(super) fn new(
        ctx: &Context,
        template: &Loss,
        rows: u64,
        report: bool,
        max_bytes: Option<u64>,
    ) -> Result<Scratch> {
        let d = ctx.device();
        let (op, first) = (template.op, template.primary());
        let (cols, dtype) = (first.cols as u64, first.data.dtype());
        let out_cols = if op.writes_rows() { cols } else { 1 };
        let row_bytes = cols * dtype.size() as u64;
        let job_rows = rows;
        let rows = scratch_rows(rows, row_bytes, out_cols, max_bytes, d.limits().max_buffer_size);
        let (r, c) = (rows as usize, cols as usize);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ cols);
        let sig = op.signature();
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let upload = |label, contents: &[u8]| {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage: storage })
        };
        let empty = |label, size: u64| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(16).div_ceil(16) * 16,
                usage: storage,
                mapped_at_creation: false,
            })
        };
        let a = upload("xent tune a", &bytes(&values(sig.first.domain, r, c, &mut rng), dtype));
        let b = sig.second.map(|s| upload("xent tune b", &bytes(&values(s.domain, r, c, &mut rng), dtype)));
        let labels: Vec<i32> = (0..r).map(|i| (i * 7919 % c) as i32).collect();
        let labels = sig.labels.then(|| upload("xent tune labels", bytemuck::cast_slice(&labels)));
        let weights = template.inputs.weights.map(|w| upload("xent tune weights", bytemuck::cast_slice(w)));
        let queries = d.features().contains(wgpu::Features::TIMESTAMP_QUERY).then(|| {
            let set = d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("xent tune timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * MAX_PIECES,
            });
            let size = 16 * u64::from(MAX_PIECES);
            let resolve = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent tune resolve"),
                size,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("xent tune readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        Ok(Scratch {
            op,
            softcap: template.softcap,
            report: report && matches!(op, Op::CrossEntropy { .. }),
            dtype,
            rows,
            job_rows,
            cols,
            a,
            b,
            labels,
            weights,
            out: empty("xent tune out", 4 * rows * out_cols),
            copy_out: empty("xent tune copy", rows * cols * dtype.size() as u64),
            status: upload("xent tune status", bytemuck::cast_slice(&[u32::MAX; 2])),
            queries,
        })
    }

    /// Device seconds of the job with its row kernels pinned to `layout` (`None`: as they
    /// are), one run.
    pub(super) fn time(&self, ctx: &Context, layout: Option<RowLayout>) -> Result<f64> {
        self.run(ctx, layout, None)
    }

    /// Device seconds of the copy of the first input's bytes, under the fastest of its
    /// first three candidate layouts, one run each after a warm-up (0 for less than one row
    /// of it).
    pub(super) fn copy_time(&self, ctx: &Context) -> Result<f64> {
        let units = self.rows * self.cols * self.dtype.size() as u64 / 4 / COPY_COLS;
        if units == 0 {
            // under one row of the copy: no roofline, no early stop
            return Ok(0.0);
        }
        let mut best = f64::INFINITY;
        // the rule's layout and its first two neighbours: each is a pipeline to build
        let plain = ctx.recorder().layout_candidates(units, COPY_COLS).into_iter().filter(|l| !l.tile);
        for layout in plain.take(3) {
            self.run(ctx, Some(layout), Some(Baseline::Copy))?;
            best = best.min(self.run(ctx, Some(layout), Some(Baseline::Copy))?);
        }
        Ok(best)
    }

    fn run(&self, ctx: &Context, layout: Option<RowLayout>, baseline: Option<Baseline>) -> Result<f64> {
        let (d, recorder) = (ctx.device(), ctx.recorder());
        let batch = |buffer, rows: u64, cols: u64, dtype| DeviceBatch {
            buffer,
            offset: 0,
            rows: rows as u32,
            cols: cols as u32,
            dtype,
        };
        let (loss, out) = if baseline == Some(Baseline::Copy) {
            let units = self.rows * self.cols * self.dtype.size() as u64 / 4 / COPY_COLS;
            let op = Op::Softmax { temperature: 1.0, log: false };
            (DeviceLoss::new(op, batch(&self.a, units, COPY_COLS, DType::F32)), DeviceOutput::rows(&self.copy_out))
        } else {
            let mut loss = DeviceLoss::new(self.op, batch(&self.a, self.rows, self.cols, self.dtype));
            loss.softcap = self.softcap;
            if let Some(b) = &self.b {
                loss = loss.with_second(batch(b, self.rows, self.cols, self.dtype));
            }
            if let Some(y) = &self.labels {
                loss = loss.with_labels(DeviceLabels::i32(y, 0));
            }
            if let Some(w) = &self.weights {
                loss = loss.with_weights(DeviceWeights { buffer: w, offset: 0 });
            }
            (loss, DeviceOutput::rows(&self.out))
        };
        let extras = RecordExtras {
            status: Some(&self.status),
            report: self.report && baseline.is_none(),
            baseline,
            job_rows: baseline.is_none().then_some(self.job_rows),
            timestamps: self.queries.as_ref().map(|(set, _, _)| (set, 2 * MAX_PIECES)),
            ..Default::default()
        };
        let before = recorder.layout();
        recorder.set_layout(layout.or(before));
        let mut encoder = d.create_command_encoder(&Default::default());
        let recorded = recorder.record_with(&mut encoder, &loss, &out, &extras);
        recorder.set_layout(before);
        let passes = recorded?;
        let started = Instant::now();
        if let Some((set, resolve, read)) = &self.queries {
            let n = 2 * passes.min(MAX_PIECES);
            encoder.resolve_query_set(set, 0..n, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 8 * u64::from(n));
            ctx.queue().submit([encoder.finish()]);
            let bytes = crate::readback::read_blocking(d, read, 0..8 * u64::from(n))?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            let period = f64::from(ctx.queue().get_timestamp_period());
            let total: u64 = ticks.chunks_exact(2).map(|p| p[1].saturating_sub(p[0])).sum();
            Ok(total as f64 * period * 1e-9)
        } else {
            let index = ctx.queue().submit([encoder.finish()]);
            d.poll(wgpu::PollType::Wait { submission_index: Some(index), timeout: None })
                .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
            Ok(started.elapsed().as_secs_f64())
        }
    }
}

/// Whether `layout` gives the f64 reference's per-row values (within 1e-3) on a probe like
/// `template`: three rows of its columns (at most 65,536), one of seeded values, one of
/// ±1e4, one with every third class masked (`-inf`) where the operation reads logits of a
/// distribution, and a NaN in a fourth.
pub(super) fn probe(ctx: &Context, template: &Loss, layout: RowLayout) -> bool {
    let (op, dtype) = (template.op, template.primary().data.dtype());
    let cols = template.primary().cols.min(65_536);
    let rows = 4;
    let mut rng = Rng(0x5151 ^ cols as u64);
    let sig = op.signature();
    let special = |domain: Domain, rng: &mut Rng| {
        let mut v = values(domain, rows, cols, rng);
        if domain == Domain::Logits && op.takes_softcap() {
            for j in 0..cols {
                v[cols + j] = if j % 2 == 0 { 1e4 } else { -1e4 + j as f32 };
                if j % 3 == 1 {
                    v[2 * cols + j] = f32::NEG_INFINITY;
                }
            }
            v[3 * cols] = f32::NAN;
        }
        v
    };
    let a = special(sig.first.domain, &mut rng);
    let b = sig.second.map(|s| special(s.domain, &mut rng));
    // labels off the masked classes (j % 3 == 1)
    let labels: Vec<i32> = (0..rows).map(|i| ((3 * i) % cols) as i32).collect();
    let stored = |v: &[f32]| -> Vec<f32> {
        match dtype {
            DType::F32 => v.to_vec(),
            DType::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
            DType::Bf16 => v.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect(),
        }
    };
    let (a, b) = (stored(&a), b.map(|b| stored(&b)));
    let (a16, b16): (Vec<half::f16>, Option<Vec<half::f16>>) = (
        a.iter().map(|&x| half::f16::from_f32(x)).collect(),
        b.as_ref().map(|b| b.iter().map(|&x| half::f16::from_f32(x)).collect()),
    );
    let (ab, bb): (Vec<half::bf16>, Option<Vec<half::bf16>>) = (
        a.iter().map(|&x| half::bf16::from_f32(x)).collect(),
        b.as_ref().map(|b| b.iter().map(|&x| half::bf16::from_f32(x)).collect()),
    );
    let weights = template.inputs.weights.filter(|w| w.len() == cols);
    let second_device =
        b.as_ref().map(|b| on_device(dtype, b, b16.as_deref().unwrap_or(&[]), bb.as_deref().unwrap_or(&[])));
    let first_device = on_device(dtype, &a, &a16, &ab);
    let spec = Spec { op, rows, cols, labels: sig.labels.then_some(&labels[..]), weights, softcap: template.softcap };
    let (Some(device_loss), Some(host_loss)) =
        (spec.loss(first_device, second_device), spec.loss(Floats::F32(&a), b.as_deref().map(Floats::F32)))
    else {
        return false;
    };
    let Ok(want) = crate::reference::compute(&host_loss, LogBase::Nats) else { return false };
    let before = ctx.recorder().layout();
    ctx.recorder().set_layout(Some(layout));
    let got = ctx.compute(&device_loss, &RunOptions { keep_values: true, ..Default::default() });
    ctx.recorder().set_layout(before);
    let Ok(got) = got else { return false };
    let Some(values) = got.values else { return false };
    values.len() == want.values.len()
        && values.iter().zip(&want.values).all(|(&g, &w)| {
            let g = f64::from(g);
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 1e-3 * (1.0 + w.abs())
        })
}

/// `x` as the device reads it in `dtype` (the three copies hold the same values).
fn on_device<'a>(dtype: DType, x: &'a [f32], x16: &'a [half::f16], xb: &'a [half::bf16]) -> Floats<'a> {
    match dtype {
        DType::F32 => Floats::F32(x),
        DType::F16 => Floats::F16(x16),
        DType::Bf16 => Floats::Bf16(xb),
    }
}

/// The probe's operation and what it binds beside its float inputs.
struct Spec<'a> {
    op: Op,
    rows: usize,
    cols: usize,
    labels: Option<&'a [i32]>,
    weights: Option<&'a [f32]>,
    softcap: Option<f32>,
}

impl<'a> Spec<'a> {
    fn loss(&self, first: Floats<'a>, second: Option<Floats<'a>>) -> Option<Loss<'a>> {
        let batch = |f| Batch::new(f, self.rows, self.cols).ok();
        let mut loss = Loss::new(self.op, batch(first)?);
        if let Some(s) = second {
            loss = loss.with_second(batch(s)?);
        }
        if let Some(y) = self.labels {
            loss = loss.with_labels(Labels::I32(y));
        }
        loss.inputs.weights = self.weights;
        loss.softcap = self.softcap;
        Some(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::scratch_rows;

    #[test]
    fn scratch_jobs_are_the_jobs_rows_within_the_limits() {
        let (mib, big) = (1u64 << 20, u64::MAX);
        // the default: 4096 rows at most, 32 MiB at most
        assert_eq!(scratch_rows(65536, 4000, 1, None, big), 4096);
        assert_eq!(scratch_rows(8192, 16384, 1, None, big), 2048);
        assert_eq!(scratch_rows(100, 4000, 1, None, big), 100);
        // set: the job's own rows where they fit
        assert_eq!(scratch_rows(65536, 4000, 1, Some(256 * mib), big), 65536);
        assert_eq!(scratch_rows(65536, 8192, 1, Some(256 * mib), big), 32768);
        // rows written as f32 within the device's buffer limit (softmax of f16)
        assert_eq!(scratch_rows(65536, 2000, 1000, Some(256 * mib), 128 * mib), 33554);
        // a row at least, whatever the limits
        assert_eq!(scratch_rows(10, 1 << 30, 1, Some(mib), mib), 1);
        assert_eq!(scratch_rows(0, 4000, 1, None, big), 1);
    }
}
