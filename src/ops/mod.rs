//! The operations on the GPU: one module per loss family maps a [`Loss`] to a
//! [`RowJob`] (kernel, flags, inputs); this module records row kernels and the
//! tree reduction into an encoder. Nothing here submits, polls or reads back.

mod binary_xent;
mod distill;
mod divergence;
mod gaussian_kl;
mod jsd;
pub(crate) mod matmul;
mod row_stats;
mod softmax;
mod softmax_xent;
#[cfg(test)]
mod tests;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::kernels::{Binding, Cols, GradMode, Kernel, Kernels, Reads, ReduceParams, RowParams, binding, flags};
use crate::loss::{Batch, Labels, LogBase, Loss};
use crate::op::Op;
use crate::plan::{self, Window};

/// One row kernel over one batch: what runs, on which inputs, with which options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowJob<'a> {
    /// The entry point.
    pub(crate) kernel: Kernel,
    /// Flags and scalar options; shape and bases are filled in per dispatch.
    pub(crate) params: RowParams,
    /// Input a (the logits, or P).
    pub(crate) a: Batch<'a>,
    /// Input b, where the operation has a second float input.
    pub(crate) b: Option<Batch<'a>>,
    /// Integer labels, where the operation takes them.
    pub(crate) labels: Option<Labels<'a>>,
    /// Class weights of cross-entropy.
    pub(crate) class_weights: Option<&'a [f32]>,
    /// Values written per row: 1, or `cols` for softmax.
    pub(crate) out_per_row: u64,
    /// The mean divides by the sum of per-row weights, word 1 of each aux record (else by rows).
    pub(crate) weighted: bool,
    /// Word 0 of each aux record holds the row's argmax.
    pub(crate) argmax: bool,
    /// Word 2 of each aux record holds the row's z-loss term (cross-entropy with a z-loss).
    pub(crate) z_terms: bool,
    /// Word 3 of each aux record holds the row's entropy (cross-entropy with `entropy`),
    /// and word 2 of an ignored row is [`crate::kernels::AUX_IGNORED`].
    pub(crate) entropy: bool,
    /// Words 4-7 of each aux record hold the row's evaluation report (cross-entropy with
    /// labels, [`flags::REPORT`]).
    pub(crate) report: bool,
    /// The input the kernel can differentiate (1: a, 2: b; 0: none): the logits of
    /// cross-entropy, of Q in KL, of entropy, of BCE and of the distillation student.
    pub(crate) grad_of: u32,
}

impl<'a> RowJob<'a> {
    fn new(kernel: Kernel, a: Batch<'a>) -> Self {
        RowJob {
            kernel,
            params: RowParams {
                inv_temperature: 1.0,
                temperature: 1.0,
                out_scale: 1.0,
                grad_scale: 1.0,
                grad_denominator: 1.0,
                ..Default::default()
            },
            a,
            b: None,
            labels: None,
            class_weights: None,
            out_per_row: 1,
            weighted: false,
            argmax: false,
            z_terms: false,
            entropy: false,
            report: false,
            grad_of: 0,
        }
    }

    /// Whether the kernel writes whole rows of values (softmax, `out_per_row` = cols, which
    /// is 1 for a single column) rather than one value a row.
    pub(crate) fn writes_rows(&self) -> bool {
        self.kernel.info().writes_rows
    }

    /// Whether the kernel writes per-row auxiliary records (argmax, weight, z term, entropy).
    pub(crate) fn uses_aux(&self) -> bool {
        self.weighted || self.argmax || self.z_terms || self.entropy || self.report
    }
}

/// The row job of `loss` (validated: [`Loss::validate`]), its values scaled for `base`
/// where the operation takes one.
pub(crate) fn job<'a>(loss: &Loss<'a>, base: LogBase) -> Result<RowJob<'a>> {
    loss.check_inputs()?;
    let a = *loss.primary();
    // present: check_inputs holds the inputs to the operation's signature
    let b = || loss.secondary().copied().ok_or_else(|| missing("second input"));
    let labels = || loss.labels().copied().ok_or_else(|| missing("labels"));
    let (p, q) = loss.dists();
    let mut job = match loss.op {
        Op::RowMax => row_stats::row_max(a),
        Op::LogSumExp => row_stats::logsumexp(a),
        Op::Softmax { temperature, log } => softmax::job(a, temperature, log),
        Op::CrossEntropy { .. } => softmax_xent::job(a, labels()?, loss.ce_options()),
        Op::CrossEntropyProbs { z_loss, .. } => {
            let mut job = divergence::cross_entropy(b()?, a);
            job.params.z_loss = z_loss;
            job
        }
        Op::KlDiv { .. } => divergence::kl_div(p, q.ok_or_else(|| missing("q"))?),
        Op::Jsd { beta, temperature, .. } => jsd::job(p, q.ok_or_else(|| missing("q"))?, beta, temperature),
        Op::Entropy { .. } => divergence::entropy(p),
        Op::BinaryCrossEntropy { .. } => binary_xent::job(p, b()?),
        Op::GaussianKl => gaussian_kl::job(a, b()?),
        Op::Distill { temperature, alpha } => distill::job(a, b()?, labels()?, temperature, alpha),
        Op::LinearCrossEntropy { .. } => {
            let detail = "linear-ce is not a row kernel: its logits are formed a chunk of rows at a time".into();
            return Err(Error::Option { name: "op", detail });
        }
    };
    if loss.op.takes_base() {
        job.params.out_scale = base.scale() as f32;
    }
    job.z_terms = job.params.z_loss > 0.0;
    if loss.op.has_entropy() {
        job.entropy = true;
        job.params.flags |= flags::ENTROPY;
    }
    if let Some(c) = loss.softcap {
        job.params.softcap = c;
        let capped = loss.capped();
        for (i, flag) in [flags::CAP_A, flags::CAP_B].into_iter().enumerate() {
            if capped.get(i).copied().unwrap_or(false) {
                job.params.flags |= flag;
            }
        }
    }
    Ok(job)
}

fn missing(what: &'static str) -> Error {
    Error::Shape { what, detail: "is not bound".into() }
}

/// A buffer bound through an aligned window (see [`plan::window`]).
#[derive(Clone, Copy)]
pub(crate) struct Bound<'b> {
    /// The buffer.
    pub(crate) buffer: &'b wgpu::Buffer,
    /// The aligned range bound, and where the data starts in it.
    pub(crate) window: Window,
}

impl<'b> Bound<'b> {
    fn resource(&self) -> wgpu::BindingResource<'b> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.window.offset,
            size: wgpu::BufferSize::new(self.window.size),
        })
    }
}

/// The buffers of one row-kernel dispatch.
pub(crate) struct RowBindings<'b> {
    /// Input a.
    pub(crate) a: Bound<'b>,
    /// Input b (any read-only buffer when unused).
    pub(crate) b: Bound<'b>,
    /// Labels (any read-only buffer when unused).
    pub(crate) labels: Bound<'b>,
    /// Class weights, from the binding's start (any read-only buffer when unused).
    pub(crate) class_weights: Bound<'b>,
    /// Per-row values.
    pub(crate) out: Bound<'b>,
    /// Per-row aux records (argmax, weight, z term, entropy).
    pub(crate) aux: Bound<'b>,
    /// The two status words.
    pub(crate) status: &'b wgpu::Buffer,
    /// The gradient output (with [`GradMode::in_place`], the differentiated input).
    pub(crate) grad: Bound<'b>,
}

/// One dispatch of a row kernel: rows `row_offset..row_offset + rows` of a job.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dispatch<'p> {
    /// The entry point.
    pub(crate) kernel: Kernel,
    /// Flags and options; shape and bases are filled in by [`encode_rows`].
    pub(crate) template: &'p RowParams,
    /// Element type of the float inputs.
    pub(crate) dtype: crate::DType,
    /// Rows in this dispatch.
    pub(crate) rows: u64,
    /// Rows the layout is chosen for (its dispatch key, its split parts): the whole job's,
    /// of which this dispatch may be one range or piece, so that no chunking changes a
    /// layout, so a bit.
    pub(crate) layout_rows: u64,
    /// Columns of every row.
    pub(crate) cols: u64,
    /// Global index of the first row (for error reports).
    pub(crate) row_offset: u64,
    /// The gradient, if any, and where it goes.
    pub(crate) grad: GradMode,
    /// A buffer whose first word (f32 bits) is copied into `grad_denominator` before the
    /// pass: the device-side sum of row weights for the mean's gradient.
    pub(crate) grad_denominator: Option<&'p wgpu::Buffer>,
}

/// Records `d` into `encoder`, reading and writing through `b`'s windows.
pub(crate) fn encode_rows(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    d: &Dispatch,
    b: &RowBindings,
) -> Result<()> {
    encode_rows_timed(kernels, encoder, d, b, None)
}

/// [`encode_rows`] with the pass's start and end written to a timestamp query set
/// (the adapter must have `TIMESTAMP_QUERY`).
pub(crate) fn encode_rows_timed(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    d: &Dispatch,
    b: &RowBindings,
    timestamps: Option<wgpu::ComputePassTimestampWrites>,
) -> Result<()> {
    let prepared = prepare(kernels, d, b)?;
    if let Some(src) = d.grad_denominator {
        let field = std::mem::offset_of!(RowParams, grad_denominator) as u64;
        encoder.copy_buffer_to_buffer(src, 0, &prepared[0].uniform, field, 4);
    }
    let last = prepared.len() - 1;
    for (i, p) in prepared.iter().enumerate() {
        // split rows: the first pass starts the timing, the merge ends it
        // (a pass in between writes none, and wgpu refuses writes that name no index)
        let timestamp_writes =
            timestamps.as_ref().filter(|_| i == 0 || i == last).map(|t| wgpu::ComputePassTimestampWrites {
                query_set: t.query_set,
                beginning_of_pass_write_index: t.beginning_of_pass_write_index.filter(|_| i == 0),
                end_of_pass_write_index: t.end_of_pass_write_index.filter(|_| i == last),
            });
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(d.kernel.entry()), timestamp_writes });
        p.dispatch(&mut pass);
    }
    Ok(())
}

/// Records `d` into an open compute pass. A pass cannot hold copies, so `d` must not
/// take its gradient's denominator from the device (`grad_denominator` is `None`).
pub(crate) fn dispatch_rows(
    kernels: &Kernels,
    pass: &mut wgpu::ComputePass,
    d: &Dispatch,
    b: &RowBindings,
) -> Result<()> {
    if d.grad_denominator.is_some() {
        return Err(crate::Error::Gpu(
            "a device-side denominator needs a copy, which a compute pass cannot hold".into(),
        ));
    }
    for p in prepare(kernels, d, b)? {
        p.dispatch(pass);
    }
    Ok(())
}

/// A row dispatch ready to record: pipeline, bind group, its uniform and grid.
struct PreparedRows {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    grid: [u32; 3],
}

impl PreparedRows {
    fn dispatch(&self, pass: &mut wgpu::ComputePass) {
        let [x, y, z] = self.grid;
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        pass.dispatch_workgroups(x, y, z);
    }
}

/// The dispatch of `d`, or for split rows the part pass, the merge (and for softmax the
/// write pass, for distillation the second pass's parts and merge): the parts' records go
/// to a buffer of their own, bound where a gradient would be (split rows take no
/// gradient), and each pass reads what the one before wrote.
///
/// The whole job has one dispatch key ([`crate::kernels::dispatch_key`]): its parts and the
/// layout of the kernels that read its rows or their parts are the pinned layout's, else the
/// tuner's for that key, else the rule's.
fn prepare(kernels: &Kernels, d: &Dispatch, b: &RowBindings) -> Result<Vec<PreparedRows>> {
    let key = crate::kernels::dispatch_key(d.kernel, d.template.flags, d.dtype, d.layout_rows, d.cols);
    let parts = kernels.row_parts(Some(&key), d.layout_rows, d.cols);
    let split = d.kernel.info().split.plan(d.template.flags).filter(|_| parts > 1 && d.grad == GradMode::default());
    let Some(stages) = split else {
        return Ok(vec![prepare_rows(kernels, d, b, &key)?]);
    };
    let size = 4 * u64::from(PART_WORDS) * d.rows * parts;
    let partials = kernels.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("xent row parts"),
        size,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let bindings = RowBindings { grad: Bound { buffer: &partials, window: Window { offset: 0, size, base: 0 } }, ..*b };
    let template = RowParams { parts: parts as u32, part_cols: plan::part_cols(d.cols, parts) as u32, ..*d.template };
    stages
        .iter()
        .map(|&kernel| {
            let rows = if kernel.info().stage.per_part() { d.rows * parts } else { d.rows };
            prepare_rows(kernels, &Dispatch { kernel, template: &template, rows, ..*d }, &bindings, &key)
        })
        .collect()
}

/// Words of one part's record (`PART_WORDS` in shaders/common/row_reduce.wgsl).
const PART_WORDS: u32 = 12;

fn prepare_rows(kernels: &Kernels, d: &Dispatch, b: &RowBindings, key: &str) -> Result<PreparedRows> {
    let device = kernels.device();
    let Dispatch { kernel, template, dtype, rows, cols, row_offset, grad, .. } = *d;
    let max_wg = 1u32 << (31 - device.limits().max_compute_invocations_per_workgroup.max(1).leading_zeros());
    let info = kernel.info();
    // the columns each row kernel reads: the whole row, or one part of a split row; a
    // kernel that reads a record a row runs one invocation per row
    let read_cols = if info.reads == Cols::Part { u64::from(template.part_cols) } else { cols };
    let (wg, lanes, tile, steps) = match info.reads {
        Cols::RowPerWorkgroup(n) => (n.min(max_wg), n.min(max_wg), false, 1),
        Cols::Record => {
            let (wg, lanes) = kernels.row_layout_for(1);
            (wg, lanes, false, 1)
        }
        Cols::Row | Cols::Part => {
            let l = kernels.dispatch_layout(key.to_string(), read_cols);
            (l.workgroup, l.lanes, l.tile, l.steps)
        }
    };
    // vec4 loads where both input bindings are whole vectors (every buffer xent allocates;
    // a caller's buffer that ends inside the last vector of its data is read by words)
    // (kernels that write [rows, cols] view their output as vec4 too)
    let viewed = [Some(b.a.window.size), Some(b.b.window.size), info.writes_rows.then_some(b.out.window.size)];
    let reads = Reads {
        vec4: viewed.iter().flatten().all(|&s| s >= 16 && s % 16 == 0),
        each: read_cols < plan::SHORT_COLS,
        caps: (template.flags & flags::CAP_A != 0, template.flags & flags::CAP_B != 0),
        entropy: template.flags & flags::ENTROPY != 0,
        report: template.flags & flags::REPORT != 0,
        tile,
        steps,
    };
    let pipeline = kernels.pipeline(kernel, dtype, reads, wg, lanes, grad)?;
    let params = RowParams {
        rows: rows as u32,
        cols: cols as u32,
        row_offset: row_offset as u32,
        a_base: b.a.window.base,
        b_base: b.b.window.base,
        label_base: b.labels.window.base,
        out_base: b.out.window.base,
        aux_base: b.aux.window.base,
        grad_base: b.grad.window.base,
        ..*template
    };
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("xent row params"),
        contents: bytemuck::bytes_of(&params),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    });
    let resource = |slot: Binding| match slot {
        binding::PARAMS => Ok(uniform.as_entire_binding()),
        binding::IN_A => Ok(b.a.resource()),
        binding::IN_B => Ok(b.b.resource()),
        binding::LABELS => Ok(b.labels.resource()),
        binding::CLASS_WEIGHTS => Ok(b.class_weights.resource()),
        binding::OUT_ROWS => Ok(b.out.resource()),
        binding::OUT_AUX => Ok(b.aux.resource()),
        binding::STATUS => Ok(b.status.as_entire_binding()),
        binding::GRAD => Ok(b.grad.resource()),
        _ => Err(crate::Error::Gpu(format!("{}: binding {} is not a row kernel's", info.entry, slot.index))),
    };
    let group = bind_group(kernels, kernel, resource)?;
    let groups = rows.div_ceil(u64::from(wg / lanes));
    let grid = plan::grid(groups, device.limits().max_compute_workgroups_per_dimension);
    Ok(PreparedRows { pipeline, group, uniform, grid })
}

/// [`encode_reduce`] over values that start `src_offset` bytes (a multiple of 4) into `src`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_reduce_at(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    src_offset: u64,
    n: u64,
    stride: u32,
    component: u32,
    scratch: [&wgpu::Buffer; 2],
) -> Result<()> {
    let values = Strided { buffer: src, offset: src_offset, stride, component, mark: None };
    encode_reduce_blocks(kernels, encoder, values, n, scratch[0], 0)?;
    encode_reduce_partials(kernels, encoder, n.div_ceil(plan::REDUCE_BLOCK), scratch)
}

/// f32 values at word `i * stride + component` of a buffer, from byte `offset` on.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'b> {
    /// The buffer.
    pub(crate) buffer: &'b wgpu::Buffer,
    /// Where value 0's group starts (a multiple of 4).
    pub(crate) offset: u64,
    /// Words from one value to the next.
    pub(crate) stride: u32,
    /// The word of each group that holds the value.
    pub(crate) component: u32,
    /// The word of each group whose [`crate::kernels::AUX_IGNORED`] leaves its value out.
    pub(crate) mark: Option<u32>,
}

/// The first level of the tree sum: the (sum, flags) pair of each block of
/// [`plan::REDUCE_BLOCK`] of the `n` values, written to `dst` from pair `first_block` on.
/// A sum of many rows may run block by block this way (each call starting on a block)
/// and give the bits of one call over all of them.
pub(crate) fn encode_reduce_blocks(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    values: Strided,
    n: u64,
    dst: &wgpu::Buffer,
    first_block: u64,
) -> Result<()> {
    let limits = kernels.device().limits();
    let align = u64::from(limits.min_storage_buffer_offset_alignment);
    // in pieces that fit the binding limit, each starting on a block
    let stride_bytes = 4 * u64::from(values.stride);
    for (start, len) in plan::reduce_pieces(n, stride_bytes, limits.max_storage_buffer_binding_size, align) {
        let at = values.offset + start * stride_bytes;
        let window = plan::window(at, len * stride_bytes, 4, align, values.buffer.size());
        // the window's base is in words; the value of element i is at base + i*stride + component
        let input = Bound { buffer: values.buffer, window };
        let pair = 2 * (first_block + start / plan::REDUCE_BLOCK);
        let layout = ReduceLayout { stride: values.stride, component: values.component, mark: values.mark };
        reduce_dispatch(kernels, encoder, tree_sum(kernels), input, dst, len, pair, layout, false)?;
    }
    Ok(())
}

/// The later levels of the tree sum over the `m` first-level pairs in `scratch[0]`, which
/// they overwrite, ping-ponging with `scratch[1]`; the result is in
/// `scratch[reduce_result_index(n)]` for the `n` values the pairs came from.
pub(crate) fn encode_reduce_partials(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    m: u64,
    scratch: [&wgpu::Buffer; 2],
) -> Result<()> {
    let align = u64::from(kernels.device().limits().min_storage_buffer_offset_alignment);
    let levels = plan::reduce_levels(m);
    for (i, &count) in levels.iter().enumerate().take(levels.len() - 1) {
        let (from, to) = (scratch[i % 2], scratch[(i + 1) % 2]);
        let input = Bound { buffer: from, window: plan::window(0, 8 * count, 4, align, from.size()) };
        reduce_dispatch(kernels, encoder, tree_sum(kernels), input, to, count, 0, ReduceLayout::PAIRS, true)?;
    }
    Ok(())
}

/// The mean of a finished reduction, (sum, flags, denominator, flags) at byte `offset` of
/// `src`, as one f32 word at byte 0 of `dst` (NaN and infinities by IEEE division's rules).
pub(crate) fn encode_mean(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    offset: u64,
    dst: &wgpu::Buffer,
) -> Result<()> {
    let align = u64::from(kernels.device().limits().min_storage_buffer_offset_alignment);
    let input = Bound { buffer: src, window: plan::window(offset, 16, 4, align, src.size()) };
    reduce_dispatch(kernels, encoder, Kernel::ReduceMean, input, dst, 1, 0, ReduceLayout::PAIRS, true)
}

/// Where a reduction's first level finds value `i`: word `i * stride + component`, left out
/// where word `i * stride + mark` is [`crate::kernels::AUX_IGNORED`].
#[derive(Clone, Copy)]
struct ReduceLayout {
    stride: u32,
    component: u32,
    mark: Option<u32>,
}

impl ReduceLayout {
    /// The later levels' (sum, flags) pairs.
    const PAIRS: ReduceLayout = ReduceLayout { stride: 1, component: 0, mark: None };
}

/// The tree sum's kernel: on a CPU adapter the same tree a block per invocation, since
/// barriers between a workgroup's SIMD lanes cost more there than the adds.
fn tree_sum(kernels: &Kernels) -> Kernel {
    if kernels.cpu_layout() { Kernel::ReduceSerial } else { Kernel::Reduce }
}

/// One dispatch of the reduction kernel: `n` inputs (values, or pairs with `partials`)
/// into pairs of `dst` from word `out_base` on.
#[allow(clippy::too_many_arguments)]
fn reduce_dispatch(
    kernels: &Kernels,
    encoder: &mut wgpu::CommandEncoder,
    kernel: Kernel,
    input: Bound,
    dst: &wgpu::Buffer,
    n: u64,
    out_base: u64,
    layout: ReduceLayout,
    partials: bool,
) -> Result<()> {
    let device = kernels.device();
    let serial = kernel == Kernel::ReduceSerial;
    let pipeline = kernels.pipeline(kernel, crate::DType::F32, Reads::default(), 256, 1, GradMode::default())?;
    let params = ReduceParams {
        n: n as u32,
        stride: layout.stride,
        component: layout.component,
        in_base: input.window.base,
        out_base: out_base as u32,
        partials: u32::from(partials),
        skip_marked: u32::from(layout.mark.is_some()),
        mark: layout.mark.unwrap_or(0),
    };
    let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("xent reduce params"),
        contents: bytemuck::bytes_of(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let resource = |slot: Binding| match slot {
        binding::REDUCE_PARAMS => Ok(uniform.as_entire_binding()),
        binding::REDUCE_SRC => Ok(input.resource()),
        binding::REDUCE_DST => Ok(dst.as_entire_binding()),
        _ => Err(crate::Error::Gpu(format!("{}: binding {} is not the reduction's", kernel.entry(), slot.index))),
    };
    let group = bind_group(kernels, kernel, resource)?;
    let blocks = n.div_ceil(plan::REDUCE_BLOCK);
    let groups = if serial { blocks.div_ceil(plan::REDUCE_SERIAL_WG) } else { blocks };
    let [x, y, z] = plan::grid(groups, device.limits().max_compute_workgroups_per_dimension);
    let mut pass =
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("xent reduce"), timestamp_writes: None });
    pass.set_pipeline(&pipeline);
    pass.set_bind_group(0, &group, &[]);
    pass.dispatch_workgroups(x, y, z);
    Ok(())
}

/// The bind group of `kernel`: each of its bindings of the table, bound to `resource`'s.
fn bind_group<'r>(
    kernels: &Kernels,
    kernel: Kernel,
    resource: impl Fn(Binding) -> Result<wgpu::BindingResource<'r>>,
) -> Result<wgpu::BindGroup> {
    let entries = kernel
        .info()
        .bindings
        .iter()
        .map(|&slot| Ok(wgpu::BindGroupEntry { binding: slot.index, resource: resource(slot)? }))
        .collect::<Result<Vec<_>>>()?;
    let layout = kernels.bind_group_layout(kernel);
    Ok(kernels.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(kernel.entry()),
        layout: &layout,
        entries: &entries,
    }))
}

/// Which scratch buffer holds the final (sum, flags) pair after [`encode_reduce`].
pub(crate) fn reduce_result_index(n: u64) -> usize {
    (plan::reduce_levels(n).len().saturating_sub(2)) % 2
}
