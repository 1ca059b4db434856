//! A job fed to the GPU in row chunks ([`Stream`]), in pieces that run in two
//! alternating slots of device buffers (inputs, per-row outputs, readback), so the upload
//! of piece i+1 overlaps the kernel of piece i and device memory stays at two pieces
//! whatever the row count. A piece reduces the 512-row blocks it completes into block
//! partials at once and leaves the rows of an incomplete block at the front of the next
//! piece's slot; [`Stream::finish`] reduces the partials. That is the tree of one
//! reduction over all rows, so the result does not depend on how the rows were chunked.

mod layout;
mod output;

pub(crate) use layout::Layout;
use layout::{labels_bytes, lead_elements, upload_rows, words};
pub use output::{Output, RunOptions};

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::embed::{
    BlockSum, DeviceBatch, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, RecordExtras, Strided,
};
use crate::error::try_grow;
use crate::error::{Error, Result};
use crate::host_memory::{self, SharedBytes};
use crate::kernels::{AUX_WORDS, Kernel};
use crate::loss::{Batch, Loss};
use crate::metrics::RowEval;
use crate::op::Op;
use crate::ops::{self, RowJob};
use crate::plan::{self, buffer};
use crate::readback;
use crate::readback::flagged;
use crate::status::Status;

const USAGE_IN: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);
/// Input rows on a device with unified memory: written through a mapping of the storage.
const USAGE_MAPPED: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::MAP_WRITE);
const USAGE_OUT: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);
const USAGE_READ: wgpu::BufferUsages = wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);
/// Per-row buffers: rows of an incomplete block are copied from one slot to the other.
const USAGE_ROWS: wgpu::BufferUsages = USAGE_OUT.union(wgpu::BufferUsages::COPY_DST);

/// Per-row results of a [`Stream`], read back a piece at a time, in row order.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// The first row these results are of.
    pub start: u64,
    /// Rows covered.
    pub rows: u64,
    /// Per-row values (softmax: `cols` a row), where the run keeps them; else empty.
    pub values: Vec<f32>,
    /// Per-row argmax, where the run keeps it; else empty.
    pub argmax: Vec<u32>,
    /// Per-row entropy, where the run keeps it; else empty.
    pub entropy: Vec<f32>,
    /// What each row not ignored contributes to the evaluation report
    /// ([`RunOptions::report`]), in row order; else empty.
    pub evals: Vec<RowEval>,
}

impl Rows {
    /// Appends `next`, the rows that follow these (from [`Stream::push`] or
    /// [`Stream::drain`]); an error where memory for them runs out.
    pub fn append(&mut self, next: Rows) -> Result<()> {
        if next.rows == 0 {
            return Ok(());
        }
        if self.rows == 0 {
            self.start = next.start;
        }
        try_grow(&mut self.values, next.values.len(), "per-row values")?;
        try_grow(&mut self.argmax, next.argmax.len(), "per-row argmax")?;
        try_grow(&mut self.entropy, next.entropy.len(), "per-row entropy")?;
        try_grow(&mut self.evals, next.evals.len(), "per-row report")?;
        self.values.extend(next.values);
        self.argmax.extend(next.argmax);
        self.entropy.extend(next.entropy);
        self.evals.extend(next.evals);
        self.rows += next.rows;
        Ok(())
    }
}

/// The device buffers of one piece in flight.
struct Slot {
    /// Inputs a and b, labels.
    uploads: [wgpu::Buffer; 3],
    /// Per-row values, from the first row of an unreduced block on.
    out: wgpu::Buffer,
    /// Per-row aux records (argmax, weight, z term, entropy), likewise.
    aux: wgpu::Buffer,
    readback: Option<wgpu::Buffer>,
    /// The piece last run here: its submission, first row and rows.
    pending: Option<(wgpu::SubmissionIndex, u64, u64)>,
}

/// A job fed in row chunks, in order; see [`Context::stream`].
///
/// Device memory stays at two pieces (the chunk size) and a (sum, flags) pair per 512
/// rows, whatever the row count; per-row values and argmax come back a piece at a time
/// from [`Stream::push`] and [`Stream::drain`].
pub struct Stream<'c> {
    ctx: &'c Context,
    op: Op,
    softcap: Option<f32>,
    kernel: Kernel,
    options: RunOptions,
    layout: Layout,
    rows: u64,
    chunk: u64,
    weighted: bool,
    has_b: bool,
    has_labels: bool,
    next_row: u64,
    /// The first row whose block of [`plan::REDUCE_BLOCK`] is not reduced yet: the
    /// next piece's slot holds the rows from it on at the front of its per-row buffers.
    block_start: u64,
    slots: [Slot; 2],
    /// First-level pairs of the values (and the next level), and of the weights.
    partials: [wgpu::Buffer; 2],
    weight_partials: wgpu::Buffer,
    /// First-level pairs of the rows' z-loss terms, where the job has them.
    z_partials: Option<wgpu::Buffer>,
    /// First-level pairs of the entropies of the rows not ignored, where the job has them.
    entropy_partials: Option<wgpu::Buffer>,
    status: wgpu::Buffer,
    class_weights: Option<wgpu::Buffer>,
    pieces: usize,
    /// Rows whose inputs the device read in place from host memory.
    in_place: u64,
}

impl<'c> Stream<'c> {
    pub(crate) fn new(
        ctx: &'c Context,
        (op, softcap): (Op, Option<f32>),
        job: &RowJob,
        layout: Layout,
        rows: u64,
        chunk: u64,
        options: RunOptions,
    ) -> Self {
        let d = &ctx.device;
        // (and up to 7 lead elements: lead_elements)
        let in_bytes = (chunk * layout.cols + 7) * layout.dtype.size() as u64;
        let held = chunk + layout.carry_rows();
        // where the device's memory is the host's, rows are read into the storage itself
        let mapped = d.features().contains(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS);
        let usage_rows = if mapped { USAGE_MAPPED } else { USAGE_IN };
        let slot = |_| Slot {
            uploads: [
                buffer(d, "xent input a", in_bytes, usage_rows),
                buffer(d, "xent input b", if job.b.is_some() { in_bytes } else { 4 }, usage_rows),
                buffer(d, "xent labels", layout.labels * chunk, USAGE_IN),
            ],
            out: buffer(d, "xent rows", layout.out * held, USAGE_ROWS),
            aux: buffer(d, "xent aux", layout.aux * held, USAGE_ROWS),
            readback: (layout.values_back + layout.aux_back > 0).then(|| {
                let bytes = layout.aux_at(chunk) + layout.aux_back * chunk;
                buffer(d, "xent readback", bytes, USAGE_READ)
            }),
            pending: None,
        };
        let class_weights = job.class_weights.map(|w| {
            d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent class weights"),
                contents: bytemuck::cast_slice(w),
                usage: USAGE_IN,
            })
        });
        let blocks = if layout.softmax { 1 } else { rows.div_ceil(plan::REDUCE_BLOCK) };
        let partials = |n: u64| buffer(d, "xent partials", 8 * n, USAGE_OUT);
        Stream {
            ctx,
            op,
            softcap,
            kernel: job.kernel,
            options,
            layout,
            rows,
            chunk,
            weighted: job.weighted,
            has_b: job.b.is_some(),
            has_labels: job.labels.is_some(),
            next_row: 0,
            block_start: 0,
            slots: [slot(0), slot(1)],
            partials: [partials(blocks), partials(blocks.div_ceil(plan::REDUCE_BLOCK))],
            weight_partials: partials(if job.weighted { blocks } else { 1 }),
            z_partials: job.z_terms.then(|| partials(blocks)),
            entropy_partials: job.entropy.then(|| partials(blocks)),
            status: d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("xent status"),
                contents: bytemuck::cast_slice(&[u32::MAX; 2]),
                usage: USAGE_OUT,
            }),
            class_weights,
            pieces: 0,
            in_place: 0,
        }
    }

    /// Builds the pipelines the pieces record (the row kernel and the reduction) by
    /// recording a piece into an encoder that is never submitted, so that the first piece
    /// does not wait for the compiler.
    pub(crate) fn prepare(&self) -> Result<()> {
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        self.encode_piece(&mut encoder, 0, (0, 0, self.chunk.min(self.rows)), [None, None])?;
        if !self.softmax() {
            self.ctx.recorder.record_block_sums(&mut encoder, &self.block_sums(0)[..1], 1, 0)?;
        }
        Ok(())
    }

    /// The most rows of one piece: a push of no more rows runs as one piece, a submission.
    pub fn piece_rows(&self) -> u64 {
        self.chunk
    }

    /// Rows pushed so far.
    pub fn rows_done(&self) -> u64 {
        self.next_row
    }

    /// Rows pushed so far whose inputs the device read in place, from the host memory
    /// given to [`Stream::push_shared`], rather than from a copy.
    pub fn rows_read_in_place(&self) -> u64 {
        self.in_place
    }

    /// An empty [`Rows`] with room for the results the job keeps of `n` rows.
    pub(crate) fn rows_with_room(&self, n: usize) -> Result<Rows> {
        let mut rows = Rows::default();
        try_grow(&mut rows.values, n * (self.layout.values_back / 4) as usize, "per-row values")?;
        if self.layout.argmax_kept {
            try_grow(&mut rows.argmax, n, "per-row argmax")?;
        }
        if self.layout.entropy_kept {
            try_grow(&mut rows.entropy, n, "per-row entropy")?;
        }
        Ok(rows)
    }

    pub(crate) fn softmax(&self) -> bool {
        self.layout.softmax
    }

    /// Runs the next rows of the job. `chunk` is the same operation as the template
    /// over the next `n` rows. Returns the per-row results that have come back since the
    /// last call (softmax: its output rows; else what [`RunOptions`] keeps), which lag
    /// the rows pushed by up to two pieces: [`Stream::drain`] waits for the rest.
    pub fn push(&mut self, chunk: &Loss) -> Result<Rows> {
        let mut rows = Rows { start: self.next_row, ..Default::default() };
        self.push_into(chunk, &mut rows)?;
        Ok(rows)
    }

    /// [`Stream::push`] of a chunk whose float inputs may lie in `memory` (a file's
    /// mapping, say): where the device reads host memory in place
    /// ([`Context::reads_host_memory`]), rows found there in the job's element type go to
    /// the kernel with no copy, the buffer over their pages holding the memory until the
    /// device is done with it. Anything else is copied as [`Stream::push`] does. The results
    /// are the same bits either way.
    pub fn push_shared(&mut self, chunk: &Loss, memory: &[SharedBytes]) -> Result<Rows> {
        let mut rows = Rows { start: self.next_row, ..Default::default() };
        self.push_from(chunk, memory, &mut rows)?;
        Ok(rows)
    }

    /// [`Stream::push`], appending the results to `rows`.
    pub(crate) fn push_into(&mut self, chunk: &Loss, rows: &mut Rows) -> Result<()> {
        self.push_from(chunk, &[], rows)
    }

    fn push_from(&mut self, chunk: &Loss, memory: &[SharedBytes], rows: &mut Rows) -> Result<()> {
        chunk.validate()?;
        let job = ops::job(chunk, self.options.base)?;
        let n = job.a.rows as u64;
        if job.kernel != self.kernel || job.a.cols as u64 != self.layout.cols || self.next_row + n > self.rows {
            return Err(Error::Shape {
                what: "chunk",
                detail: format!(
                    "of [{n}, {}] does not continue a [{}, {}] job at row {}",
                    job.a.cols, self.rows, self.layout.cols, self.next_row
                ),
            });
        }
        let ctx = self.ctx;
        ctx.scoped(|| {
            for (start, len) in plan::chunks(n, self.chunk) {
                rows.append(self.piece(chunk, memory, start, len)?)?;
            }
            Ok(())
        })
    }

    /// Waits for every piece in flight and returns their per-row results.
    pub fn drain(&mut self) -> Result<Rows> {
        let ctx = self.ctx;
        ctx.scoped(|| {
            // the slot the next piece would take holds the older one
            let first = self.pieces % 2;
            let mut rows = self.collect(first)?;
            rows.append(self.collect(1 - first)?)?;
            Ok(rows)
        })
    }

    /// Waits for the piece last run in `slot` and reads back its rows.
    fn collect(&mut self, slot: usize) -> Result<Rows> {
        let Some((index, start, n)) = self.slots[slot].pending.take() else { return Ok(Rows::default()) };
        let (ctx, d) = (self.ctx, &self.ctx.device);
        let Some(rb) = &self.slots[slot].readback else {
            readback::wait(d, Some(index))?;
            ctx.health()?;
            return Ok(Rows { start, rows: n, ..Default::default() });
        };
        let layout = &self.layout;
        let (values_bytes, aux_at) = (layout.values_back * n, layout.aux_at(n) as usize);
        // this piece's submission only: the next piece runs on while the host reads this one
        let bytes = readback::read_after(d, rb, 0..aux_at as u64 + layout.aux_back * n, index)?;
        ctx.health()?;
        let mut rows = Rows { start, rows: n, ..Default::default() };
        rows.values = words(&bytes[..values_bytes as usize], 1, "per-row values", f32::from_bits)?;
        let step = AUX_WORDS as usize;
        if layout.argmax_kept {
            rows.argmax = words(&bytes[aux_at..], step, "per-row argmax", |w| w)?;
        }
        if layout.entropy_kept {
            // word 3 of each record
            rows.entropy = words(&bytes[aux_at + 12..], step, "per-row entropy", f32::from_bits)?;
        }
        if layout.report_kept {
            rows.evals = self.evals(&bytes[aux_at..aux_at + (layout.aux_back * n) as usize])?;
        }
        Ok(rows)
    }

    /// The report's words of the aux records in `bytes`, of the rows not ignored.
    fn evals(&self, bytes: &[u8]) -> Result<Vec<RowEval>> {
        let ignore = self.op.ignore_index();
        let records = bytes.chunks_exact(4 * AUX_WORDS as usize);
        let mut evals = Vec::new();
        try_grow(&mut evals, records.len(), "per-row report")?;
        for r in records {
            let words =
                std::array::from_fn(|i| u32::from_le_bytes([r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]]));
            evals.extend(RowEval::from_record(words, ignore));
        }
        Ok(evals)
    }

    /// Uploads and runs rows `start..start + n` of `job` (rows of this push), reduces the
    /// blocks they complete, and returns the rows of the piece run two pieces ago.
    fn piece(&mut self, chunk: &Loss, memory: &[SharedBytes], start: u64, n: u64) -> Result<Rows> {
        let (ctx, d) = (self.ctx, &self.ctx.device);
        let slot = self.pieces % 2;
        self.pieces += 1;
        let done = self.collect(slot)?;
        let (s, len) = (start as usize, n as usize);
        let [a, b, y] = &self.slots[slot].uploads;
        // where the row lies in the whole job, whatever the pushes
        let lead = lead_elements(self.next_row as usize, self.layout.cols as usize);
        let dtype = self.layout.dtype;
        let inputs = &chunk.inputs;
        let first = self.import_rows(&inputs.first, memory, (s, len, lead));
        if first.is_none() {
            upload_rows(d, &ctx.queue, a, &inputs.first, (dtype, s, len, lead))?;
        }
        let second = inputs.second.as_ref().and_then(|batch| self.import_rows(batch, memory, (s, len, lead)));
        if let (Some(batch), None) = (&inputs.second, &second) {
            upload_rows(d, &ctx.queue, b, batch, (dtype, s, len, lead))?;
        }
        if let Some(labels) = &inputs.labels {
            ctx.queue.write_buffer(y, 0, &labels_bytes(labels, s, len)?);
        }
        let in_place = first.is_some() && (inputs.second.is_none() || second.is_some());
        self.in_place += if in_place { n } else { 0 };
        let row = self.next_row;
        let mut encoder = d.create_command_encoder(&Default::default());
        // the rows of an incomplete block, which the piece before left at the front of this slot
        let carry = row - self.block_start;
        self.encode_piece(&mut encoder, slot, (row, carry, n), [first, second])?;
        self.next_row += n;
        self.encode_blocks(&mut encoder, slot, row - carry)?;
        let layout = self.layout;
        let here = &self.slots[slot];
        if let Some(rb) = &here.readback {
            if layout.values_back > 0 {
                encoder.copy_buffer_to_buffer(&here.out, layout.out * carry, rb, 0, layout.values_back * n);
            }
            if layout.aux_back > 0 {
                let (from, at) = (layout.aux * carry, layout.aux_at(n));
                encoder.copy_buffer_to_buffer(&here.aux, from, rb, at, layout.aux_back * n);
            }
        }
        let index = ctx.queue.submit([encoder.finish()]);
        self.slots[slot].pending = Some((index, row, n));
        Ok(done)
    }

    /// A buffer over the host pages of rows `start..start + n` of `batch` and their offset
    /// in it, where they lie in `memory`, in the job's element type, and the device reads
    /// host memory; and where each element then sits in its octet as an upload after `lead`
    /// elements would place it, so that the kernel's lanes, and so its bits, are the same.
    fn import_rows(
        &self,
        batch: &Batch,
        memory: &[SharedBytes],
        (start, n, lead): (usize, usize, usize),
    ) -> Option<(wgpu::Buffer, u64)> {
        let how = self.ctx.host_import?;
        let dtype = self.layout.dtype;
        if memory.is_empty() || batch.data.dtype() != dtype {
            return None;
        }
        let bytes = batch.data.bytes(start * batch.cols, (start + n) * batch.cols);
        // checked before importing: a piece whose lanes would differ is copied instead
        let (offset, size) = (how.offset(bytes), dtype.size() as u64);
        if offset % size != 0 || (offset / size) % 8 != lead as u64 {
            return None;
        }
        host_memory::import(&self.ctx.device, how, host_memory::holder(memory, bytes)?, bytes)
    }

    /// Records the row kernel over `n` rows from job row `row`, written after `carry`
    /// rows in the slot's per-row buffers: the slot's uploads (or the buffers over the
    /// rows' host pages, where `imported`) bound as the operation's device inputs, recorded
    /// through the context's recorder like any caller's.
    fn encode_piece(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        slot: usize,
        (row, carry, n): (u64, u64, u64),
        imported: [Option<(wgpu::Buffer, u64)>; 2],
    ) -> Result<()> {
        let here = &self.slots[slot];
        let [a, b, y] = &here.uploads;
        let (cols, dtype) = (self.layout.cols, self.layout.dtype);
        let lead = lead_elements(row as usize, cols as usize) as u64;
        fn bound<'b>(
            upload: &'b wgpu::Buffer,
            imported: &'b Option<(wgpu::Buffer, u64)>,
            lead: u64,
        ) -> (&'b wgpu::Buffer, u64) {
            imported.as_ref().map_or((upload, lead), |(buffer, offset)| (buffer, *offset))
        }
        let lead = lead * dtype.size() as u64;
        let batch = |(buffer, offset)| DeviceBatch { buffer, offset, rows: n as u32, cols: cols as u32, dtype };
        let mut loss = DeviceLoss::new(self.op, batch(bound(a, &imported[0], lead)));
        loss.softcap = self.softcap;
        if self.has_b {
            loss = loss.with_second(batch(bound(b, &imported[1], lead)));
        }
        if self.has_labels {
            loss = loss.with_labels(DeviceLabels::i32(y, 0));
        }
        if let Some(weights) = &self.class_weights {
            loss = loss.with_weights(DeviceWeights { buffer: weights, offset: 0 });
        }
        let per_row_offset = if self.softmax() { 0 } else { 4 * carry };
        let out = DeviceOutput { per_row: Some(&here.out), per_row_offset, ..Default::default() };
        let extras = RecordExtras {
            first_row: row,
            job_rows: Some(self.rows),
            // a job without per-row words binds the slot's small aux buffer from its start
            aux: Some((&here.aux, self.layout.aux * carry)),
            status: Some(&self.status),
            base: self.options.base,
            report: self.layout.report_kept,
            ..Default::default()
        };
        self.ctx.recorder.record_with(encoder, &loss, &out, &extras).map(|_| ())
    }

    /// Reduces the blocks whose rows are all in (the last block at the end of the job):
    /// `slot` holds rows from `first` (a block's start) on.
    fn encode_blocks(&mut self, encoder: &mut wgpu::CommandEncoder, slot: usize, first: u64) -> Result<()> {
        if self.softmax() {
            self.block_start = self.next_row;
            return Ok(());
        }
        let end = self.next_row;
        let complete = if end == self.rows { end } else { end - end % plan::REDUCE_BLOCK };
        if complete > self.block_start {
            let (n, block) = (complete - first, first / plan::REDUCE_BLOCK);
            self.ctx.recorder.record_block_sums(encoder, &self.block_sums(slot), n, block)?;
        }
        // what is left of an incomplete block moves to the front of the next piece's slot
        let left = end - complete;
        if left > 0 {
            let other = &self.slots[1 - slot];
            let from = complete - first;
            let here = &self.slots[slot];
            encoder.copy_buffer_to_buffer(&here.out, self.layout.out * from, &other.out, 0, self.layout.out * left);
            if self.layout.aux > 0 {
                encoder.copy_buffer_to_buffer(&here.aux, self.layout.aux * from, &other.aux, 0, self.layout.aux * left);
            }
        }
        self.block_start = complete;
        Ok(())
    }

    /// The per-row quantities the job sums, in `slot`'s per-row buffers, each with its
    /// block partials: the values, then the weights, z-loss terms and entropies it has.
    fn block_sums(&self, slot: usize) -> Vec<BlockSum<'_>> {
        let here = &self.slots[slot];
        let aux = |component| Strided { buffer: &here.aux, offset: 0, stride: AUX_WORDS, component, mark: None };
        let values = Strided { buffer: &here.out, offset: 0, stride: 1, component: 0, mark: None };
        let mut sums = vec![BlockSum { values, partials: &self.partials[0] }];
        if self.weighted {
            sums.push(BlockSum { values: aux(1), partials: &self.weight_partials });
        }
        if let Some(partials) = &self.z_partials {
            sums.push(BlockSum { values: aux(2), partials });
        }
        if let Some(partials) = &self.entropy_partials {
            // an ignored row's z word marks it out of the sum
            sums.push(BlockSum { values: Strided { mark: Some(2), ..aux(3) }, partials });
        }
        sums
    }

    /// Reduces the block partials, reads back and checks the status words. Per-row
    /// results not yet returned by [`Stream::push`] or [`Stream::drain`] come in the
    /// output's `values` and `argmax`.
    pub fn finish(mut self) -> Result<Output> {
        if self.next_row != self.rows {
            return Err(Error::Shape {
                what: "job",
                detail: format!("ended after {} of its {} rows", self.next_row, self.rows),
            });
        }
        let rest = self.drain()?;
        let mut out = self.ctx.scoped(|| self.finish_scoped())?;
        if out.values.is_some() {
            out.values = Some(rest.values);
        }
        if out.argmax.is_some() {
            out.argmax = Some(rest.argmax);
        }
        if out.entropy.is_some() {
            out.entropy = Some(rest.entropy);
        }
        Ok(out)
    }

    fn finish_scoped(&self) -> Result<Output> {
        let (ctx, d) = (self.ctx, &self.ctx.device);
        let rows = self.rows;
        let softmax = self.softmax();
        // readback: status (2 words), value pair, weight pair, z-term pair, entropy pair
        let rb = buffer(d, "xent readback", 40, USAGE_READ);
        let mut encoder = d.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.status, 0, &rb, 0, 8);
        let scratch = &self.partials[1];
        let totals = [
            (!softmax).then_some(&self.partials[0]),
            self.weighted.then_some(&self.weight_partials),
            self.z_partials.as_ref(),
            self.entropy_partials.as_ref(),
        ];
        for (at, partials) in (8..).step_by(8).zip(totals) {
            if let Some(partials) = partials {
                let total = ctx.recorder.record_block_total(&mut encoder, rows, partials, scratch)?;
                encoder.copy_buffer_to_buffer(total, 0, &rb, at, 8);
            }
        }
        ctx.queue.submit([encoder.finish()]);
        let bytes = readback::read_blocking(d, &rb, 0..rb.size())?;
        ctx.health()?;
        let words: &[u32] = bytemuck::cast_slice(&bytes);
        Status::from_words([words[0], words[1]]).check(self.layout.cols)?;
        Ok(Output {
            rows: rows as usize,
            cols: self.layout.cols as usize,
            sum: if softmax { f64::NAN } else { flagged(words[2], words[3]) },
            denominator: if self.weighted { flagged(words[4], words[5]) } else { rows as f64 },
            z_sum: self.z_partials.as_ref().map(|_| flagged(words[6], words[7])),
            entropy_sum: self.entropy_partials.as_ref().map(|_| flagged(words[8], words[9])),
            values: (self.layout.values_back > 0).then(Vec::new),
            argmax: self.layout.argmax_kept.then(Vec::new),
            entropy: self.layout.entropy_kept.then(Vec::new),
        })
    }
}
