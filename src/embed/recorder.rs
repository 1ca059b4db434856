//! [`Recorder`]: records checked losses into the caller's encoder or compute pass.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use wgpu::util::DeviceExt;

use super::extras::{Baseline, RecordExtras};
use super::inputs::{DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, LabelType, Reduced};
use super::linear::{DEFAULT_LOGITS_BUDGET, HeadScratch};
use super::validate::{self, Checked};
use crate::error::{Error, Result};
use crate::kernels::{AUX_WORDS, GradMode, Kernel, flags};
use crate::kernels::{Kernels, shader_checks_from_env};
use crate::layout::RowLayout;
use crate::loss::{DType, Reduction};
use crate::ops::{self, Bound, Dispatch, RowBindings};
use crate::plan::{self, buffer};

/// Records losses into the caller's encoders on one device; holds the compiled kernels
/// and a few scratch buffers reused from record to record.
pub struct Recorder {
    kernels: Kernels,
    status: wgpu::Buffer,
    no_status: wgpu::Buffer,
    /// The last reduction's (sum, flags, denominator, flags).
    result: wgpu::Buffer,
    unused_in: wgpu::Buffer,
    scratch: Mutex<Scratch>,
    /// Linear heads' logits, per-row values and constant one (see [`Recorder::set_logits_budget`]).
    pub(super) head_scratch: Mutex<HeadScratch>,
    /// The most bytes a linear head's chunk of logits may take.
    logits_budget: AtomicU64,
}

#[derive(Default)]
struct Scratch {
    aux: Option<wgpu::Buffer>,
    /// The per-row values of a record whose caller wants none of them.
    per_row: Option<wgpu::Buffer>,
    partials: Option<[wgpu::Buffer; 2]>,
}

impl Scratch {
    /// The two buffers of partial sums a reduction over `rows` ping-pongs between, grown
    /// (by half again, as [`grow`] does) when they hold too few.
    fn partials(&mut self, device: &wgpu::Device, rows: u64) -> &[wgpu::Buffer; 2] {
        let partials = rows.div_ceil(plan::REDUCE_BLOCK);
        let need = [8 * partials, 8 * partials.div_ceil(plan::REDUCE_BLOCK)];
        let old = self.partials.as_ref().map_or(0, |p| p[0].size());
        if self.partials.as_ref().is_some_and(|p| p[0].size() < need[0] || p[1].size() < need[1]) {
            self.partials = None;
        }
        self.partials.get_or_insert_with(|| {
            let n0 = need[0].max(old * 3 / 2).max(64);
            [n0, n0.div_ceil(plan::REDUCE_BLOCK).max(64)].map(|n| buffer(device, "xent partials", n, STORAGE_RW))
        })
    }
}

/// Bytes of a row's auxiliary record.
const AUX_BYTES: u64 = 4 * AUX_WORDS as u64;

const STORAGE_RW: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);

impl Recorder {
    /// A recorder for `device`. Pipelines are built on first use and cached; recording
    /// never blocks (it does not wait for the driver's verdict on a new pipeline:
    /// [`Recorder::prepare`] builds them ahead and reports it).
    ///
    /// Its shaders are built without naga's runtime checks (bounds clamps, loop counters,
    /// division guards), which they do not need; `XENT_SHADER_CHECKS=1` or
    /// [`Recorder::with_shader_checks`] puts them back, with the same results.
    ///
    /// Its row kernels take the layouts the tuner keeps for this device in its cache
    /// (`xent tune --shapes ...` tunes ahead; `XENT_TUNE=off` or [`Recorder::set_layout`]
    /// leaves them out); it never times anything itself.
    pub fn new(device: &wgpu::Device) -> Recorder {
        let kernels = Kernels::new(device, false, shader_checks_from_env());
        // the layouts the tuner chose on this device before (`xent tune`, a context's jobs),
        // unless `XENT_TUNE=off` (or the adapter is a CPU one)
        crate::tune::load_cached(device, &kernels);
        Self::with_kernels(device, kernels)
    }

    /// A recorder whose new pipelines are checked as they are built, blocking: the host path's.
    pub(crate) fn checking(device: &wgpu::Device, shader_checks: bool) -> Recorder {
        Self::with_kernels(device, Kernels::new(device, true, shader_checks))
    }

    /// This recorder with naga's runtime checks in its shaders (`true`) or without them
    /// (`false`, the default). The results are the same bits either way; the checks cost
    /// time, and guard against a defect in the shaders' own indexing.
    pub fn with_shader_checks(self, on: bool) -> Recorder {
        if on == self.kernels.shader_checks() {
            return self;
        }
        let device = self.kernels.device().clone();
        let kernels = Kernels::new(&device, self.kernels.waits_for_compiles(), on);
        kernels.set_tuned(self.kernels.all_tuned());
        Self::with_kernels(&device, kernels)
    }

    /// Whether this recorder's shaders carry naga's runtime checks.
    pub fn shader_checks(&self) -> bool {
        self.kernels.shader_checks()
    }

    fn with_kernels(device: &wgpu::Device, kernels: Kernels) -> Recorder {
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
        let result = buffer(device, "xent result", Reduced::BYTES, STORAGE_RW | wgpu::BufferUsages::COPY_DST);
        Recorder {
            kernels,
            status,
            no_status,
            result,
            unused_in,
            scratch: Mutex::default(),
            head_scratch: Mutex::default(),
            logits_budget: AtomicU64::new(DEFAULT_LOGITS_BUDGET),
        }
    }

    /// Two u32 words: the first row with a label outside `[0, cols)` and the first row
    /// with an out-of-domain value (a negative probability, a target outside [0, 1]) over
    /// every record so far, `u32::MAX` for none. Copy its [`Status::BYTES`](crate::Status)
    /// out to check a batch of records: `Status::from_bytes(&bytes)?.check(cols)` is then the
    /// typed error that names the row.
    pub fn status(&self) -> &wgpu::Buffer {
        &self.status
    }

    /// Pins the row kernels' layout for what this recorder records from now on (`None`:
    /// the rule's, a function of the device and the shape). Any layout gives right
    /// results; it changes the speed, and the last bits of sums (the order of a row's
    /// additions). `XENT_LAYOUT=WGxLANES[/PARTS]` pins one for every recorder of a process.
    pub fn set_layout(&self, layout: Option<RowLayout>) {
        self.kernels.pin(layout);
    }

    /// The pinned layout, if any.
    pub fn layout(&self) -> Option<RowLayout> {
        self.kernels.pinned()
    }

    /// The layout the row kernels of a job of `rows` rows of `cols` columns run with: the
    /// pinned one (within the device's limits), else the rule's.
    pub fn layout_for(&self, rows: u64, cols: u64) -> RowLayout {
        self.kernels.layout_for(rows, cols)
    }

    /// The layouts a job of `rows` rows of `cols` columns can take around the rule's choice
    /// (first), then the rule's with two octets a step ([`RowLayout::steps`]), lanes a
    /// quarter to four times the rule's, workgroups half to four times, split rows with half
    /// and twice the parts and unsplit; each as the device runs it
    /// (within its limits), without repeats, each in the rule's form and then in the other
    /// ([`RowLayout::tile`]). What `xent bench --sweep` and the tuner time.
    pub fn layout_candidates(&self, rows: u64, cols: u64) -> Vec<RowLayout> {
        let kernels = &self.kernels;
        let before = kernels.pinned();
        let at = |layout: Option<RowLayout>| {
            kernels.pin(layout);
            kernels.layout_for(rows, cols)
        };
        let rule = at(None);
        let max_wg =
            1u32 << (31 - kernels.device().limits().max_compute_invocations_per_workgroup.max(1).leading_zeros());
        let scaled = |v: u32, num: u32, den: u32| (v * num / den).max(1);
        let mut parts = vec![rule.parts];
        if rule.parts > 1 {
            parts.extend([1, scaled(rule.parts, 1, 2), rule.parts * 2]);
        }
        let mut out = Vec::new();
        // each layout in its form, then in the other
        let mut add = |l: RowLayout| {
            for l in [l, l.tiled(!l.tile)] {
                if !out.contains(&l) {
                    out.push(l);
                }
            }
        };
        add(rule);
        if let Ok(two) = rule.stepping(2) {
            add(two);
        }
        for (num, den) in [(1, 4), (1, 2), (1, 1), (2, 1), (4, 1)] {
            let lanes = scaled(rule.lanes, num, den).next_power_of_two();
            for (wn, wd) in [(1, 2), (1, 1), (2, 1), (4, 1)] {
                let wg = scaled(rule.workgroup, wn, wd).next_power_of_two().clamp(lanes.min(max_wg), max_wg);
                for &p in &parts {
                    let Ok(pinned) = RowLayout::new(wg, lanes.min(wg), p.clamp(1, 1024)) else { continue };
                    add(at(Some(pinned.tiled(rule.tile))));
                }
            }
        }
        kernels.pin(before);
        out
    }

    /// The compiled kernels (the host path records its reductions with them).
    pub(crate) fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Whether the row kernels combine a row's lanes with subgroup operations where the
    /// layout allows (the device was opened with `wgpu::Features::SUBGROUP`, which
    /// [`Context`](crate::Context) requests wherever the adapter has it); without, through
    /// workgroup memory alone. The combination order is the same either way.
    pub fn subgroup_reductions(&self) -> bool {
        self.kernels.subgroups()
    }

    /// Bytes of scratch the recorder holds (it grows to the largest record, then stays).
    pub fn scratch_bytes(&self) -> u64 {
        let s = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let size = |b: &Option<wgpu::Buffer>| b.as_ref().map_or(0, |b| b.size());
        let heads = self.head_scratch.lock().unwrap_or_else(|e| e.into_inner()).bytes();
        size(&s.aux) + size(&s.per_row) + s.partials.as_ref().map_or(0, |p| p[0].size() + p[1].size()) + heads
    }

    /// Sets the most bytes a linear head's record may allocate on the device
    /// ([`Op::LinearCrossEntropy`](crate::Op::LinearCrossEntropy) runs its rows in chunks
    /// whose f32 logits and scratch fit it; default 64 MiB), beyond its inputs and outputs
    /// (and the 4 bytes a row of per-row values kept for a reduction when the caller keeps
    /// none). One row of `classes` logits must fit.
    pub fn set_logits_budget(&self, bytes: u64) {
        self.logits_budget.store(bytes, Ordering::Relaxed);
    }

    /// The most bytes a linear head's logits may take at once.
    pub fn logits_budget(&self) -> u64 {
        self.logits_budget.load(Ordering::Relaxed)
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
        self.record_into(Sink::Encoder(encoder), loss, out, &RecordExtras::default()).map(|_| ())
    }

    /// Builds the pipelines that [`Recorder::record`] would use for `loss` and `out`, ahead
    /// of recording, and resolves (once the app polls its device) to the driver's verdict
    /// on them: a shader or pipeline error is [`Error::Gpu`]. An argument error is the one
    /// `record` gives. Nothing is recorded into any encoder of the app's, and the future
    /// borrows nothing, so it can be awaited anywhere (a browser's event loop included).
    pub fn prepare<'a>(
        &'a self,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
    ) -> impl std::future::Future<Output = Result<()>> + use<> {
        let device = self.kernels.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        // the pipelines are built and cached by a record into an encoder never submitted
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("xent prepare") });
        let recorded = self.record(&mut encoder, loss, out);
        drop(encoder);
        let verdict = scope.pop();
        async move {
            recorded?;
            match verdict.await {
                Some(e) => Err(Error::Gpu(format!("preparing the pipelines: {e}"))),
                None => Ok(()),
            }
        }
    }

    /// [`Recorder::record`] with the host path's and the benchmark's additions; returns the
    /// number of row ranges recorded (each timed, with `extras.timestamps`).
    #[doc(hidden)]
    pub fn record_with<'a>(
        &'a self,
        encoder: &mut wgpu::CommandEncoder,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
        extras: &RecordExtras<'a>,
    ) -> Result<u32> {
        self.record_into(Sink::Encoder(encoder), loss, out, extras)
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
        self.record_into(Sink::Pass(pass), loss, out, &RecordExtras::default()).map(|_| ())
    }

    fn record_into<'a>(
        &'a self,
        mut sink: Sink,
        loss: &DeviceLoss<'a>,
        out: &DeviceOutput<'a>,
        extras: &RecordExtras<'a>,
    ) -> Result<u32> {
        if loss.op.head().is_some() {
            let Sink::Encoder(encoder) = sink else { return Err(needs_encoder()) };
            return self.record_linear(encoder, loss, out).map(|_| 1);
        }
        let device = self.kernels.device();
        let limits = device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let mut c = validate::check(loss, out, align, extras.base)?;
        if extras.report || out.report.is_some() {
            if c.job.kernel != Kernel::SoftmaxXent {
                let detail = "the evaluation report is of cross-entropy with labels".into();
                return Err(Error::Option { name: "report", detail });
            }
            c.job.report = true;
            c.job.params.flags |= flags::REPORT;
        }
        set_kernel(&mut c, extras.baseline);
        let chunk = chunk_rows(&c, &limits)?;
        if let Some((_, count)) = extras.timestamps {
            let ranges = plan::chunks(c.rows, chunk).count() as u64;
            if 2 * ranges > u64::from(count) {
                return Err(Error::TooLarge(format!(
                    "{ranges} row ranges need {} timestamp queries; the set holds {count}",
                    2 * ranges
                )));
            }
        }
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        // the app's report buffer holds the whole aux records
        let aux = match out.report.or(extras.aux) {
            Some((buffer, offset)) => (buffer.clone(), offset),
            None => (grow(&mut scratch.aux, device, "xent aux", AUX_BYTES * c.rows), 0),
        };
        let per_row = match out.per_row {
            Some(buffer) => (buffer.clone(), out.per_row_offset),
            None => (grow(&mut scratch.per_row, device, "xent per-row", 4 * c.rows * c.job.out_per_row), 0),
        };
        let partials = scratch.partials(device, c.rows);
        let mode = GradMode {
            of: if c.grad.is_some() { c.job.grad_of } else { 0 },
            in_place: c.grad.as_ref().is_some_and(|g| g.in_place),
        };
        let own_denominator = out.grad.as_ref().is_some_and(|g| set_grad_params(&mut c, g));
        let shared_denominator =
            extras.grad_denominator.filter(|_| out.grad.as_ref().is_some_and(|g| g.reduction == Reduction::Mean));
        let denominator_on_device = own_denominator && shared_denominator.is_none();
        if let Sink::Pass(_) = sink {
            validate::check_in_pass(out, denominator_on_device)?;
        }
        let status = extras.status.unwrap_or(&self.status);
        let binder = Binder {
            c: &c,
            per_row: (&per_row.0, per_row.1),
            mode,
            aux: (&aux.0, aux.1),
            status,
            align,
            recorder: self,
        };
        if denominator_on_device {
            let Sink::Encoder(encoder) = &mut sink else { return Err(needs_encoder()) };
            self.record_denominator(encoder, &binder, chunk, partials)?;
        }
        let denominator =
            shared_denominator.or(denominator_on_device.then(|| &partials[ops::reduce_result_index(c.rows)]));
        let ranges = self.record_ranges(&mut sink, &binder, chunk, extras, denominator)?;
        if out.reduced.is_none() && out.mean.is_none() {
            return Ok(ranges);
        }
        let Sink::Encoder(encoder) = sink else { return Err(needs_encoder()) };
        self.record_reduction(encoder, &c, out, (&per_row.0, per_row.1), (&aux.0, aux.1), partials)?;
        Ok(ranges)
    }

    /// Records the row kernel over each range of `chunk` rows; returns how many ranges.
    fn record_ranges(
        &self,
        sink: &mut Sink,
        binder: &Binder,
        chunk: u64,
        extras: &RecordExtras,
        grad_denominator: Option<&wgpu::Buffer>,
    ) -> Result<u32> {
        let c = binder.c;
        let mut ranges = 0u32;
        for (start, n) in plan::chunks(c.rows, chunk) {
            let d = Dispatch {
                kernel: c.job.kernel,
                template: &c.job.params,
                dtype: binder.dtype(),
                rows: n,
                // the record's rows (or its job's), never the range's
                layout_rows: extras.job_rows.unwrap_or(c.rows).max(c.rows),
                cols: c.cols,
                row_offset: extras.first_row + start,
                grad: binder.mode,
                grad_denominator,
            };
            let ts = extras.timestamps.map(|(query_set, _)| wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(2 * ranges),
                end_of_pass_write_index: Some(2 * ranges + 1),
            });
            match sink {
                Sink::Encoder(encoder) => {
                    ops::encode_rows_timed(&self.kernels, encoder, &d, &binder.rows(start, n), ts)?;
                }
                Sink::Pass(pass) => ops::dispatch_rows(&self.kernels, pass, &d, &binder.rows(start, n))?,
            }
            ranges += 1;
        }
        Ok(ranges)
    }

    /// Records the per-row weights of cross-entropy and their sum: the denominator of a
    /// gradient's mean with an ignore index or class weights.
    fn record_denominator(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        binder: &Binder,
        chunk: u64,
        [p0, p1]: &[wgpu::Buffer; 2],
    ) -> Result<()> {
        let c = binder.c;
        for (start, n) in plan::chunks(c.rows, chunk) {
            let d = Dispatch {
                kernel: Kernel::CeRowWeights,
                template: &c.job.params,
                dtype: binder.dtype(),
                rows: n,
                layout_rows: c.rows,
                cols: c.cols,
                row_offset: start,
                grad: GradMode::default(),
                grad_denominator: None,
            };
            ops::encode_rows(&self.kernels, encoder, &d, &binder.rows(start, n))?;
        }
        ops::encode_reduce_at(&self.kernels, encoder, binder.aux.0, binder.aux.1, c.rows, AUX_WORDS, 1, [p0, p1])
    }

    /// Records the reduction over rows into the recorder's result words (the sum of the
    /// per-row values, then the denominator: the sum of row weights, or the row count),
    /// copied to the reduction target, and their quotient to the mean target.
    fn record_reduction(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        c: &Checked,
        out: &DeviceOutput,
        (per_row, per_row_offset): (&wgpu::Buffer, u64),
        (aux, aux_offset): (&wgpu::Buffer, u64),
        partials: &[wgpu::Buffer; 2],
    ) -> Result<()> {
        let [p0, p1] = partials;
        let result = &partials[ops::reduce_result_index(c.rows)];
        ops::encode_reduce_at(&self.kernels, encoder, per_row, per_row_offset, c.rows, 1, 0, [p0, p1])?;
        encoder.copy_buffer_to_buffer(result, 0, &self.result, 0, 8);
        if c.job.weighted {
            ops::encode_reduce_at(&self.kernels, encoder, aux, aux_offset, c.rows, AUX_WORDS, 1, [p0, p1])?;
            encoder.copy_buffer_to_buffer(result, 0, &self.result, 8, 8);
        } else {
            let denominator = self.kernels.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent rows"),
                contents: bytemuck::cast_slice(&[(c.rows as f32).to_bits(), 0u32]),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
            encoder.copy_buffer_to_buffer(&denominator, 0, &self.result, 8, 8);
        }
        self.copy_result(encoder, out, p0)
    }

    /// Copies the result words to the reduction target, and their quotient (formed in
    /// `spent`, partial sums no longer needed) to the mean target.
    fn copy_result(&self, encoder: &mut wgpu::CommandEncoder, out: &DeviceOutput, spent: &wgpu::Buffer) -> Result<()> {
        if let Some((target, offset)) = out.reduced {
            encoder.copy_buffer_to_buffer(&self.result, 0, target, offset, Reduced::BYTES);
        }
        if let Some((target, offset)) = out.mean {
            ops::encode_mean(&self.kernels, encoder, &self.result, 0, spent)?;
            encoder.copy_buffer_to_buffer(spent, 0, target, offset, 4);
        }
        Ok(())
    }
}

impl Recorder {
    /// Records the mean's denominator of cross-entropy `ce` over `rows` labels (the rows
    /// not ignored; every row without an ignore index) into a new buffer's first word: the
    /// rows go in chunks of `chunk` through `ce_row_weights` and the reduction, each chunk's
    /// count (exact in f32) summed after. `logits` stands in for the chunk's logits (the
    /// kernel reads labels only).
    pub(super) fn record_head_denominator(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        (labels, rows, classes): (DeviceLabels, u64, u64),
        ce: crate::Op,
        chunk: u64,
        logits: &wgpu::Buffer,
    ) -> Result<wgpu::Buffer> {
        let device = self.kernels.device();
        let usage = STORAGE_RW | wgpu::BufferUsages::COPY_DST;
        let denominator = buffer(device, "xent head denominator", 16, usage);
        if !matches!(ce, crate::Op::CrossEntropy { ignore_index: Some(_), .. }) {
            let words = [(rows as f32).to_bits(), 0, 0, 0];
            let all = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent rows"),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
            encoder.copy_buffer_to_buffer(&all, 0, &denominator, 0, 16);
            return Ok(denominator);
        }
        let limits = device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let chunks = rows.div_ceil(chunk);
        let counts = buffer(device, "xent head counts", 8 * chunks, usage);
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (start, n)) in plan::chunks(rows, chunk).enumerate() {
            let batch =
                DeviceBatch { buffer: logits, offset: 0, rows: n as u32, cols: classes as u32, dtype: DType::F32 };
            let y = DeviceLabels { offset: labels.offset + start * labels.dtype.size() as u64, ..labels };
            let mut c = validate::check(
                &DeviceLoss::new(ce, batch).with_labels(y),
                &DeviceOutput::default(),
                align,
                Default::default(),
            )?;
            set_kernel(&mut c, None);
            let aux = grow(&mut scratch.aux, device, "xent aux", AUX_BYTES * n);
            let partials = scratch.partials(device, n);
            let binder = Binder {
                c: &c,
                per_row: (&aux, 0),
                mode: GradMode::default(),
                aux: (&aux, 0),
                status: &self.status,
                align,
                recorder: self,
            };
            self.record_denominator(encoder, &binder, chunk_rows(&c, &limits)?, partials)?;
            encoder.copy_buffer_to_buffer(&partials[ops::reduce_result_index(n)], 0, &counts, 8 * i as u64, 8);
        }
        let partials = scratch.partials(device, chunks);
        let [p0, p1] = partials;
        ops::encode_reduce_at(&self.kernels, encoder, &counts, 0, chunks, 2, 0, [p0, p1])?;
        encoder.copy_buffer_to_buffer(&partials[ops::reduce_result_index(chunks)], 0, &denominator, 0, 8);
        Ok(denominator)
    }

    /// Records the reduction of a linear head's `rows` per-row values over `denominator`
    /// (its first word) into the reduction and mean targets of `out`.
    pub(super) fn record_head_reduction(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        rows: u64,
        (per_row, offset): (&wgpu::Buffer, u64),
        denominator: &wgpu::Buffer,
        out: &DeviceOutput,
    ) -> Result<()> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let partials = scratch.partials(self.kernels.device(), rows);
        let [p0, p1] = partials;
        ops::encode_reduce_at(&self.kernels, encoder, per_row, offset, rows, 1, 0, [p0, p1])?;
        encoder.copy_buffer_to_buffer(&partials[ops::reduce_result_index(rows)], 0, &self.result, 0, 8);
        encoder.copy_buffer_to_buffer(denominator, 0, &self.result, 8, 8);
        self.copy_result(encoder, out, p0)
    }
}

/// The rows a dispatch takes at once, within the adapter's largest binding.
fn chunk_rows(c: &Checked, limits: &wgpu::Limits) -> Result<u64> {
    let elem = c.inputs[0].1.dtype.size() as u64;
    let align = u64::from(limits.min_storage_buffer_offset_alignment);
    let grad_row_bytes = if c.grad.is_some() { 4 * c.cols } else { 0 };
    let label_bytes = c.labels.map_or(0, |y| y.dtype.size() as u64);
    let row_bytes = (c.cols * elem).max(4 * c.job.out_per_row).max(grad_row_bytes).max(label_bytes);
    plan::chunk_rows(c.rows, row_bytes, limits.max_storage_buffer_binding_size, align, u64::MAX).map_err(|need| {
        Error::TooLarge(format!(
            "one row needs {need} bytes but the adapter binds at most {}",
            limits.max_storage_buffer_binding_size
        ))
    })
}

/// The kernel a record runs (the operation's, or a baseline on its bindings) and the flag
/// bits of the labels' type.
fn set_kernel(c: &mut Checked, baseline: Option<Baseline>) {
    match baseline {
        None => {}
        Some(Baseline::Copy) => c.job.kernel = Kernel::Copy,
        Some(Baseline::Naive) => {
            c.job.kernel = Kernel::NaiveXent;
            c.job.params.flags = if c.labels.is_some() { flags::HAS_B } else { 0 };
        }
    }
    // after the baseline, which sets the flags whole: the labels' type is the caller's
    c.job.params.flags |= c.labels.map_or(0, |y| label_flags(y.dtype));
}

/// The flag bits that tell the kernels how to read labels of `dtype`.
fn label_flags(dtype: LabelType) -> u32 {
    match dtype {
        LabelType::I32 => 0,
        LabelType::I64 => flags::LABELS_I64,
        LabelType::U8 => flags::LABELS_U8,
    }
}

/// Sets the gradient's scale and denominator in the job's parameters. Returns whether the
/// mean's denominator is a sum of row weights taken on the device first.
fn set_grad_params(c: &mut Checked, g: &DeviceGrad) -> bool {
    let params = &mut c.job.params;
    params.grad_scale = g.scale;
    params.grad_denominator = match g.reduction {
        Reduction::Sum | Reduction::None => 1.0,
        Reduction::Mean => c.rows as f32,
    };
    // with neither, every row weighs 1 and the denominator is the row count
    let reweighted = params.flags & (flags::IGNORE | flags::WEIGHTS) != 0;
    g.reduction == Reduction::Mean && c.job.weighted && reweighted
}

/// The bindings of a record's row ranges: windows on the caller's buffers and the scratch.
struct Binder<'r, 'a> {
    c: &'r Checked<'a>,
    /// The per-row values' buffer (the caller's or the scratch) and offset.
    per_row: (&'r wgpu::Buffer, u64),
    mode: GradMode,
    /// The per-row (argmax, weight) words' buffer and offset.
    aux: (&'r wgpu::Buffer, u64),
    status: &'r wgpu::Buffer,
    align: u64,
    recorder: &'r Recorder,
}

impl<'r, 'a: 'r> Binder<'r, 'a> {
    fn dtype(&self) -> DType {
        self.c.inputs[0].1.dtype
    }

    /// A window on rows `start..start + n` of a batch.
    fn batch(&self, b: &DeviceBatch<'a>, start: u64, n: u64) -> Bound<'r> {
        let (cols, elem) = (self.c.cols, self.dtype().size() as u64);
        Bound {
            buffer: b.buffer,
            window: plan::window(b.offset + start * cols * elem, n * cols * elem, elem, self.align, b.buffer.size()),
        }
    }

    /// A window on rows `start..start + n` of `stride` bytes each, from `offset` in `buffer`,
    /// whose `base` counts elements of `elem` bytes.
    ///
    /// The window ends on a whole word (a storage binding's size is a multiple of 4): a
    /// buffer whose size is not stops at its last whole word.
    fn rows_of(&self, buffer: &'r wgpu::Buffer, offset: u64, stride: u64, elem: u64, start: u64, n: u64) -> Bound<'r> {
        let words = buffer.size() / 4 * 4;
        Bound { buffer, window: plan::window(offset + start * stride, n * stride, elem, self.align, words) }
    }

    /// An unused binding: one whole vector, so it never forces word loads.
    fn unused(&self) -> Bound<'r> {
        Bound { buffer: &self.recorder.unused_in, window: plan::Window { offset: 0, size: 16, base: 0 } }
    }

    /// The bindings of rows `start..start + n`.
    fn rows(&self, start: u64, n: u64) -> RowBindings<'r> {
        let (c, cols) = (self.c, self.c.cols);
        // a kernel that writes no per-row words (nor a gradient) is bound their first pair only
        let aux_rows = if c.job.uses_aux() {
            self.rows_of(self.aux.0, self.aux.1, AUX_BYTES, 4, start, n)
        } else {
            self.rows_of(self.aux.0, self.aux.1, AUX_BYTES, 4, 0, 1)
        };
        let in_place_input = self.mode.in_place.then(|| self.mode.of as usize - 1);
        let input = |i: usize| match c.inputs.get(i) {
            Some((_, b)) if in_place_input != Some(i) => self.batch(b, start, n),
            _ => self.unused(),
        };
        let grad = match &c.grad {
            None => aux_rows,
            Some(g) if g.in_place => self.batch(&c.inputs[self.mode.of as usize - 1].1, start, n),
            Some(g) => self.rows_of(g.buffer.unwrap_or(&self.recorder.unused_in), g.offset, 4 * cols, 4, start, n),
        };
        RowBindings {
            a: input(0),
            b: input(1),
            // one label a row: `base` counts labels of their type (shaders/common/params.wgsl's label_of)
            labels: c.labels.map_or(self.unused(), |y| {
                let elem = y.dtype.size() as u64;
                self.rows_of(y.buffer, y.offset, elem, elem, start, n)
            }),
            class_weights: c.weights.map_or(self.unused(), |w| Bound {
                buffer: w.buffer,
                window: plan::window(w.offset, 4 * cols, 4, self.align, w.buffer.size()),
            }),
            out: self.rows_of(self.per_row.0, self.per_row.1, 4 * c.job.out_per_row, 4, start, n),
            aux: aux_rows,
            status: self.status,
            grad,
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
