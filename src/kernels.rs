//! The kernels: their table ([`TABLE`], one row per entry point), their WGSL composed
//! per family, dtype and load width ([`Module`]), and the pipeline cache.
//!
//! Each row module is `params + loader(dtype, load width) + numerics + row layout + lane
//! tree + lanes (with or without subgroups) + gradient + family`; the workgroup size and
//! lanes per row are `override` constants, so shapes never enter shader text. A device with
//! `wgpu::Features::SUBGROUP` gets the modules whose lanes shuffle, any other the ones
//! without a subgroup builtin (which is all GL gets).

#[cfg(test)]
mod naga_tests;
mod table;
mod wgsl;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::layout::RowLayout;
use crate::loss::DType;

pub(crate) use table::{Access, Binding, Cols, Kernel, Stage, binding};
pub(crate) use wgsl::{Module, sources_hash};

impl Kernel {
    /// The kernel's module for inputs of `dtype`, viewed as vec4 when `vec4`, its rows'
    /// lanes combined by subgroup operations where they may be when `subgroups`.
    pub(crate) fn module(self, dtype: DType, vec4: bool, subgroups: bool) -> Module {
        self.info().family.module(dtype, vec4, subgroups)
    }
}

/// Uniform parameters of every row kernel (`RowParams` in shaders/common/params.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct RowParams {
    /// Rows in this dispatch.
    pub(crate) rows: u32,
    /// Columns of every row.
    pub(crate) cols: u32,
    /// Global index of this dispatch's first row (for error reports).
    pub(crate) row_offset: u32,
    /// [`flags`] bits.
    pub(crate) flags: u32,
    /// Element index of input a's first row within its binding.
    pub(crate) a_base: u32,
    /// Element index of input b's first row within its binding.
    pub(crate) b_base: u32,
    /// Index of the first label within its binding, in labels of their type (the
    /// [`flags::LABELS_I64`] and [`flags::LABELS_U8`] bits).
    pub(crate) label_base: u32,
    /// Index of the first per-row output within its binding.
    pub(crate) out_base: u32,
    /// Word index of the first auxiliary pair (argmax, weight) within its binding.
    pub(crate) aux_base: u32,
    /// The label whose rows are ignored (with [`flags::IGNORE`]).
    pub(crate) ignore_index: i32,
    /// `1 / T` for softmax and distillation.
    pub(crate) inv_temperature: f32,
    /// `T` for distillation.
    pub(crate) temperature: f32,
    /// Label smoothing `s`.
    pub(crate) smoothing: f32,
    /// Distillation's `α`; the Jensen-Shannon divergence's `β`.
    pub(crate) alpha: f32,
    /// Factor on the values: 1 for nats, `1 / ln 2` for bits.
    pub(crate) out_scale: f32,
    /// Element index of the gradient's first row within its binding.
    pub(crate) grad_base: u32,
    /// Factor on the gradient (the caller's upstream gradient).
    pub(crate) grad_scale: f32,
    /// The gradient's divisor: rows, 1, or the device-side Σ w_y copied in.
    pub(crate) grad_denominator: f32,
    /// Split rows ([`crate::plan::row_parts`]): parts per row, 0 or 1 when not split.
    pub(crate) parts: u32,
    /// Split rows: columns per part (even).
    pub(crate) part_cols: u32,
    /// Cross-entropy's z-loss factor `λ` (0: none).
    pub(crate) z_loss: f32,
    /// `c` of the soft-capping `c·tanh(x/c)` of the inputs [`flags::CAP_A`] and
    /// [`flags::CAP_B`] name.
    pub(crate) softcap: f32,
    /// Padding to a whole 16 bytes (WGSL's uniform arrays would need a 16-byte stride).
    pub(crate) pad1: u32,
    pub(crate) pad2: u32,
}

/// Words of each row's auxiliary record (`AUX_WORDS` in params.wgsl): the argmax, the
/// bits of the row's weight in the mean, the bits of its z-loss term, the bits of its
/// entropy (cross-entropy with the `entropy` option); with the evaluation report
/// ([`flags::REPORT`]), the label's rank, the bits of the top-1 confidence and of the
/// row's Brier term, and the label.
pub(crate) const AUX_WORDS: u32 = 8;

/// The z word of an ignored row when the entropy is computed (`AUX_IGNORED` in
/// params.wgsl, `MARK_SKIP` in reduce.wgsl): −0.0, whose sign bit leaves the row out of the
/// entropy's sum.
#[cfg_attr(not(test), allow(dead_code))] // the shaders' constant, checked against them in the tests
pub(crate) const AUX_IGNORED: u32 = 0x8000_0000;

/// Flag bits of [`RowParams::flags`] (`FLAG_*` in params.wgsl).
pub(crate) mod flags {
    /// `ignore_index` is set.
    pub(crate) const IGNORE: u32 = 1;
    /// Class weights are bound.
    pub(crate) const WEIGHTS: u32 = 2;
    /// Input a holds logits (else probabilities).
    pub(crate) const P_LOGITS: u32 = 4;
    /// Input b holds logits (else probabilities).
    pub(crate) const Q_LOGITS: u32 = 8;
    /// Softmax writes log-softmax.
    pub(crate) const LOG: u32 = 16;
    /// Divergence adds `Σ p log p`.
    pub(crate) const TERM_PLOGP: u32 = 32;
    /// Divergence adds `−Σ p log q`.
    pub(crate) const TERM_PLOGQ: u32 = 64;
    /// Divergence negates its result (entropy).
    pub(crate) const NEGATE: u32 = 128;
    /// Input b is bound.
    pub(crate) const HAS_B: u32 = 256;
    /// Labels are i64: two words each, the low first ([`crate::LabelType::I64`]).
    pub(crate) const LABELS_I64: u32 = 512;
    /// Labels are u8: four to a word ([`crate::LabelType::U8`]).
    pub(crate) const LABELS_U8: u32 = 1024;
    /// Input a is soft-capped logits ([`RowParams::softcap`](super::RowParams::softcap)): the
    /// host picks the pipeline with the `CAP_A` override by it.
    pub(crate) const CAP_A: u32 = 2048;
    /// Input b is soft-capped logits (the `CAP_B` override).
    pub(crate) const CAP_B: u32 = 4096;
    /// Cross-entropy writes each row's entropy too: the host picks the pipeline with the
    /// `ENTROPY` override by it.
    pub(crate) const ENTROPY: u32 = 8192;
    /// Cross-entropy with labels writes each row's evaluation report (the `REPORT` override).
    pub(crate) const REPORT: u32 = 16384;
}

/// Uniform parameters of the reduction (`ReduceParams` in reduce.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceParams {
    /// Values to sum at this level.
    pub(crate) n: u32,
    /// Words between consecutive values.
    pub(crate) stride: u32,
    /// Word offset of the value within its stride.
    pub(crate) component: u32,
    /// Word index of the first value within the input binding.
    pub(crate) in_base: u32,
    /// Word index of the first (sum, flags) pair written.
    pub(crate) out_base: u32,
    /// 1 when the input is (sum, flags) pairs of a previous level.
    pub(crate) partials: u32,
    /// 1: a value whose group holds [`AUX_IGNORED`] at word `mark` counts 0 (first level).
    pub(crate) skip_marked: u32,
    /// The word of each group that may mark it.
    pub(crate) mark: u32,
}

/// Uniform parameters of the matrix product (`MatmulParams` in shaders/matmul.wgsl):
/// `C[m, n] = scale · (init + Σ_k A(m, k) · B(k, n))`, every index in elements within its
/// binding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    /// Rows of C in this dispatch.
    pub(crate) m: u32,
    /// Columns of C in this dispatch.
    pub(crate) n: u32,
    /// Terms of each element in this dispatch.
    pub(crate) k: u32,
    /// [`matmul_init`] value: what C starts from.
    pub(crate) init: u32,
    /// Element index of A(0, 0).
    pub(crate) a_base: u32,
    /// A's stride along m.
    pub(crate) a_sm: u32,
    /// A's stride along k.
    pub(crate) a_sk: u32,
    /// Element index of B(0, 0).
    pub(crate) b_base: u32,
    /// B's stride along k.
    pub(crate) b_sk: u32,
    /// B's stride along n.
    pub(crate) b_sn: u32,
    /// Index of C[0, 0].
    pub(crate) c_base: u32,
    /// C's row stride.
    pub(crate) ldc: u32,
    /// Index of the bias of column 0.
    pub(crate) bias_base: u32,
    /// Factor on `init + Σ`.
    pub(crate) scale: f32,
    /// Padding to a whole 16 bytes.
    pub(crate) pad1: u32,
    pub(crate) pad2: u32,
}

/// What a matrix product's C starts from (`INIT_*` in shaders/matmul.wgsl).
pub(crate) mod matmul_init {
    /// Zero.
    pub(crate) const ZERO: u32 = 0;
    /// C's current value (`C += A·B`).
    pub(crate) const ACCUMULATE: u32 = 1;
    /// The bias of the column.
    pub(crate) const BIAS: u32 = 2;
}

/// A compiled matrix product: the operand types and the tiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MatmulKey {
    /// A's element type.
    pub(crate) a: DType,
    /// B's element type.
    pub(crate) b: DType,
    /// The tiling.
    pub(crate) tile: crate::plan::Tile,
}

/// Which input a row kernel differentiates, and whether the gradient overwrites it
/// (the `GRAD_OF` and `GRAD_IN_PLACE` overrides of shaders/common/grad.wgsl).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct GradMode {
    /// 0: no gradient, 1: input a, 2: input b.
    pub(crate) of: u32,
    /// The gradient overwrites that input.
    pub(crate) in_place: bool,
}

/// How a row kernel reads its columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Reads {
    /// Inputs viewed as vec4 ([`Kernel::source`]): every input binding is whole 16-byte
    /// vectors.
    pub(crate) vec4: bool,
    /// An element at a time rather than in octets, for rows of fewer than
    /// [`crate::plan::SHORT_COLS`] columns (the `EACH` override of
    /// shaders/common/row_reduce.wgsl).
    pub(crate) each: bool,
    /// Inputs a and b soft-capped ([`flags::CAP_A`], [`flags::CAP_B`]; the `CAP_A` and `CAP_B`
    /// overrides of shaders/common/load_each.wgsl): a kernel without compiles to the loads alone.
    pub(crate) caps: (bool, bool),
    /// Each row's entropy computed on the way ([`flags::ENTROPY`], the `ENTROPY` override of
    /// shaders/common/params.wgsl).
    pub(crate) entropy: bool,
    /// Each row's evaluation report ([`flags::REPORT`], the `REPORT` override of
    /// shaders/common/params.wgsl).
    pub(crate) report: bool,
    /// The layout's tile form ([`RowLayout::tile`], the `TILE` override of
    /// shaders/common/row_reduce.wgsl).
    pub(crate) tile: bool,
    /// Octets a lane loads a step ([`RowLayout::steps`]: a module of its own,
    /// [`wgsl::Module::steps`]).
    pub(crate) steps: u32,
}

type PipelineKey = (Kernel, DType, Reads, u32, u32, GradMode);

/// The layouts of the kernels that use one set of bindings.
#[derive(Clone)]
struct Layouts {
    group: wgpu::BindGroupLayout,
    pipeline: wgpu::PipelineLayout,
}

/// Bind group layouts, shader modules and compiled pipelines of one device, each created
/// on first use and cached.
#[derive(Clone)]
pub(crate) struct Kernels {
    device: wgpu::Device,
    layouts: Arc<Mutex<HashMap<&'static [Binding], Layouts>>>,
    modules: Arc<Mutex<HashMap<Module, wgpu::ShaderModule>>>,
    pipelines: Arc<Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>>,
    matmuls: Arc<Mutex<HashMap<MatmulKey, wgpu::ComputePipeline>>>,
    row_workgroup: u32,
    max_workgroup: u32,
    /// llvmpipe's loop limit ([`crate::plan::CPU_LOOP_STEPS`]) on CPU adapters.
    step_cap: Option<u64>,
    /// The CPU layout (one invocation per row); `XENT_ROW_LAYOUT=gpu` turns it off, so the
    /// GPU layouts can be tested and measured on a CPU adapter.
    cpu_layout: bool,
    /// The device has `wgpu::Features::SUBGROUP`: row modules are composed with the subgroup
    /// steps of a row's tree ([`Module::subgroups`]). An app's device opened without the
    /// feature gets the workgroup-memory tree alone, with the same combination order.
    subgroups: bool,
    /// Wait for the driver's verdict on each new pipeline (the host path, which blocks
    /// anyway); a recorder of an app's never waits (see [`crate::Recorder::prepare`]).
    wait_for_compiles: bool,
    /// naga's runtime checks in the shaders ([`shader_checks_from_env`]); off by default.
    checks: bool,
    /// The row kernels' layout where one is pinned (`XENT_LAYOUT`, `Recorder::set_layout`),
    /// else the rule's.
    pin: Arc<Mutex<Option<RowLayout>>>,
    /// Layouts the tuner chose, by dispatch key ([`dispatch_key`]).
    tuned: Arc<Mutex<HashMap<String, RowLayout>>>,
    /// While the tuner watches: the keys of the row dispatches recorded.
    seen: Arc<Mutex<Option<Vec<String>>>>,
}

/// What a row dispatch's best layout depends on: its kernel and flags (the operation and the
/// options that change the work an element takes), the element type, the columns (to the
/// next power of two) and whether the rows are few (under 1024: too few to fill a GPU
/// without more lanes) or many.
pub(crate) fn dispatch_key(kernel: Kernel, flags: u32, dtype: DType, rows: u64, cols: u64) -> String {
    let rows = if rows < 1024 { "few" } else { "many" };
    format!("{}|{dtype:?}|{flags:x}|c{}|{rows}", kernel.entry(), cols.max(1).next_power_of_two())
}

/// Whether shader modules are built with naga's runtime checks: `XENT_SHADER_CHECKS=1`
/// turns them on; by default they are off ([`Kernels::module`] says why that is safe).
pub(crate) fn shader_checks_from_env() -> bool {
    std::env::var("XENT_SHADER_CHECKS").is_ok_and(|v| v == "1")
}

impl Binding {
    /// The layout entry of the binding, visible to compute shaders.
    fn layout_entry(self) -> wgpu::BindGroupLayoutEntry {
        let ty = match self.access {
            Access::Uniform => wgpu::BufferBindingType::Uniform,
            Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
            Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
        };
        wgpu::BindGroupLayoutEntry {
            binding: self.index,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        }
    }
}

impl Kernels {
    /// Caches for `device`; layouts, modules and pipelines are created on first use, and with
    /// `wait_for_compiles` each new pipeline's validation is waited for (blocking). Modules
    /// are built with naga's runtime checks where `checks` is set.
    pub(crate) fn new(device: &wgpu::Device, wait_for_compiles: bool, checks: bool) -> Self {
        let info = device.adapter_info();
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let cpu_layout = cpu && std::env::var("XENT_ROW_LAYOUT").map_or(true, |v| v != "gpu");
        let row_workgroup = crate::plan::workgroup_size(
            if cpu_layout { info.device_type } else { wgpu::DeviceType::DiscreteGpu },
            info.subgroup_min_size,
            device.limits().max_compute_invocations_per_workgroup,
        );
        Kernels {
            row_workgroup,
            max_workgroup: device.limits().max_compute_invocations_per_workgroup,
            step_cap: cpu.then_some(crate::plan::CPU_LOOP_STEPS),
            cpu_layout,
            subgroups: device.features().contains(wgpu::Features::SUBGROUP),
            wait_for_compiles,
            checks,
            device: device.clone(),
            layouts: Arc::default(),
            modules: Arc::default(),
            pipelines: Arc::default(),
            matmuls: Arc::default(),
            // an unreadable XENT_LAYOUT is an error where a context is opened
            // (`Context::new`); an app's recorder takes the rule's layouts
            pin: Arc::new(Mutex::new(RowLayout::from_env().ok().flatten())),
            tuned: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// The device the kernels compile for.
    pub(crate) fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Whether the shader modules carry naga's runtime checks.
    pub(crate) fn shader_checks(&self) -> bool {
        self.checks
    }

    /// Whether each new pipeline's validation is waited for.
    pub(crate) fn waits_for_compiles(&self) -> bool {
        self.wait_for_compiles
    }

    /// Whether the row kernels' modules are the subgroup variant ([`Module::subgroups`]).
    pub(crate) fn subgroups(&self) -> bool {
        self.subgroups
    }

    /// Whether rows take the CPU adapters' layouts (and sums the barrier-free tree).
    pub(crate) fn cpu_layout(&self) -> bool {
        self.cpu_layout
    }

    /// Parts each of `rows` rows of `cols` columns is split into (1: not split): the pinned
    /// layout's, else the tuner's for the job's dispatch key ([`dispatch_key`]) where given,
    /// else the rule's ([`crate::plan::row_parts`]); parts of at least 64 columns.
    pub(crate) fn row_parts(&self, key: Option<&str>, rows: u64, cols: u64) -> u64 {
        match self.pinned().or_else(|| key.and_then(|k| self.tuned(k))) {
            Some(p) => u64::from(p.parts).min((cols / 64).max(1)),
            None => crate::plan::row_parts(rows, cols, self.cpu_layout),
        }
    }

    /// Workgroup size and lanes per row of the row kernels for `cols` columns on this device
    /// by the rule ([`crate::plan::workgroup_size`], [`crate::plan::row_layout`]).
    pub(crate) fn row_layout_for(&self, cols: u64) -> (u32, u32) {
        crate::plan::row_layout(cols, self.row_workgroup, self.max_workgroup, self.step_cap, self.cpu_layout)
    }

    /// The layout pinned for the row kernels, if any.
    pub(crate) fn pinned(&self) -> Option<RowLayout> {
        *lock(&self.pin)
    }

    /// Pins the row kernels' layout (`None`: the rule's again).
    pub(crate) fn pin(&self, layout: Option<RowLayout>) {
        *lock(&self.pin) = layout;
    }

    /// The layout (but its parts) of the kernels that read rows of `cols` columns: the
    /// pinned layout where there is one, within the device's workgroup limit and with at
    /// least the lanes llvmpipe's loop limit needs (results are right whatever is pinned),
    /// else the rule's.
    pub(crate) fn rows_layout(&self, cols: u64) -> RowLayout {
        match self.pinned() {
            Some(p) => self.within_limits(p, cols),
            None => self.rule_layout(cols),
        }
    }

    /// [`Kernels::row_layout_for`], in the tile form on CPU adapters (faster on llvmpipe on
    /// one host, slower on another: docs/performance.md) and element by element on GPUs,
    /// an octet a step,
    /// until a device's figures say otherwise (the tuner times both forms and two octets a
    /// step there).
    fn rule_layout(&self, cols: u64) -> RowLayout {
        let (workgroup, lanes) = self.row_layout_for(cols);
        RowLayout { workgroup, lanes, steps: 1, parts: 1, tile: self.cpu_layout }
    }

    /// The layout of a row dispatch (key [`dispatch_key`]) of `cols` columns: the pinned
    /// one, else the tuner's, else the rule's; noted while the tuner watches.
    pub(crate) fn dispatch_layout(&self, key: String, cols: u64) -> RowLayout {
        let tuned = lock(&self.tuned).get(&key).copied();
        if let Some(seen) = lock(&self.seen).as_mut() {
            seen.push(key);
        }
        match (self.pinned(), tuned) {
            (Some(p), _) | (None, Some(p)) => self.within_limits(p, cols),
            (None, None) => self.rule_layout(cols),
        }
    }

    /// Starts (`true`) or ends noting the keys of the row dispatches recorded; ending
    /// returns them, in order, without repeats.
    pub(crate) fn watch(&self, on: bool) -> Vec<String> {
        let mut seen = lock(&self.seen);
        let keys = if on { seen.replace(Vec::new()) } else { seen.take() }.unwrap_or_default();
        let mut unique: Vec<String> = Vec::new();
        keys.into_iter().for_each(|k| {
            if !unique.contains(&k) {
                unique.push(k)
            }
        });
        if on { Vec::new() } else { unique }
    }

    /// The layout the tuner chose for a dispatch key.
    pub(crate) fn tuned(&self, key: &str) -> Option<RowLayout> {
        lock(&self.tuned).get(key).copied()
    }

    /// Every choice of the tuner held.
    pub(crate) fn all_tuned(&self) -> HashMap<String, RowLayout> {
        lock(&self.tuned).clone()
    }

    /// Keeps the tuner's choice for dispatch keys.
    pub(crate) fn set_tuned(&self, choices: impl IntoIterator<Item = (String, RowLayout)>) {
        lock(&self.tuned).extend(choices);
    }

    /// `p` as the device runs it for rows of `cols` columns: within its workgroup limit and
    /// with at least the lanes llvmpipe's loop limit needs.
    fn within_limits(&self, p: RowLayout, cols: u64) -> RowLayout {
        let largest = 1u32 << (31 - self.max_workgroup.max(1).leading_zeros());
        let mut lanes = p.lanes.min(largest);
        if let Some(cap) = self.step_cap {
            lanes = lanes.max(cols.div_ceil(cap.max(1)).next_power_of_two().min(u64::from(largest)) as u32);
        }
        RowLayout { workgroup: p.workgroup.clamp(lanes, largest), lanes, parts: 1, ..p }
    }

    /// The layout a job of `rows` rows of `cols` columns runs its row kernels with.
    pub(crate) fn layout_for(&self, rows: u64, cols: u64) -> RowLayout {
        let parts = self.row_parts(None, rows, cols);
        let read_cols = if parts > 1 { crate::plan::part_cols(cols, parts) } else { cols };
        RowLayout { parts: parts as u32, ..self.rows_layout(read_cols) }
    }

    /// The bind group layout of `kernel`: its bindings of the table, [`KernelInfo::bindings`].
    pub(crate) fn bind_group_layout(&self, kernel: Kernel) -> wgpu::BindGroupLayout {
        self.layouts(kernel).group
    }

    fn layouts(&self, kernel: Kernel) -> Layouts {
        let bindings = kernel.info().bindings;
        lock(&self.layouts)
            .entry(bindings)
            .or_insert_with(|| {
                let entries: Vec<_> = bindings.iter().map(|b| b.layout_entry()).collect();
                let label = Some(kernel.entry());
                let group =
                    self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label, entries: &entries });
                let pipeline = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label,
                    bind_group_layouts: &[Some(&group)],
                    immediate_size: 0,
                });
                Layouts { group, pipeline }
            })
            .clone()
    }

    /// The shader module `module`, composed and created on first use: without naga's
    /// runtime checks unless [`Kernels::shader_checks`].
    ///
    /// Those checks clamp every index into a workgroup or private array, add a counter to
    /// every loop and guard every integer division; the shaders need none of them:
    /// - *indices*: the workgroup arrays of the row kernels (`sh_x` … of WG elements) are
    ///   read at a lane's own slot `t < WG` or at `t + off` with `lane < off` and
    ///   `off < LANES`, inside its row's LANES slots ([`Kernels::pipeline`] refuses a LANES
    ///   that is not a power of two dividing WG); the reduction's (REDUCE_WG) at `t < off`;
    ///   the product's staged tiles at `kk·(TM/4) + q < TK·TM/4 ≤ MAX_STAGED/4` (the tile
    ///   [`crate::plan::Tile::fits`]); private arrays only by constant-bounded loops;
    /// - *loops*: every loop steps a counter by a positive constant (`LANES`, `8·LANES`,
    ///   `TK`, 1) towards a bound of at most the binding's elements, far from `u32::MAX`,
    ///   or halves an offset down to 0 or to `max(subgroup width, 1)`;
    /// - *divisions*: integer divisors are override constants the host keeps non-zero
    ///   (LANES, TM, TN, TK) and `params.parts`, read only by split rows' kernels, run with
    ///   two parts or more.
    ///
    /// Buffer accesses stay under the device's robust buffer access, which wgpu enables.
    #[allow(unsafe_code)]
    fn module(&self, module: Module) -> wgpu::ShaderModule {
        lock(&self.modules)
            .entry(module)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(&format!("xent {module:?}")),
                    source: wgpu::ShaderSource::Wgsl(module.source().into()),
                };
                if self.checks {
                    return self.device.create_shader_module(desc);
                }
                // SAFETY: the shaders index arrays in range, end every loop and divide by
                // non-zero integers, as the comment above argues.
                unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
            })
            .clone()
    }

    /// The pipeline of `kernel` for `dtype` with `wg` invocations and `lanes` per row,
    /// reading its columns as `reads` says and writing the gradient `grad` asks for (of a
    /// kernel that writes one, [`KernelInfo::grad`]).
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
        dtype: DType,
        reads: Reads,
        wg: u32,
        lanes: u32,
        grad: GradMode,
    ) -> Result<wgpu::ComputePipeline> {
        let info = kernel.info();
        if grad.of != 0 && !info.grad {
            return Err(Error::Gpu(format!("{} writes no gradient", info.entry)));
        }
        if !lanes.is_power_of_two() || !wg.is_multiple_of(lanes) {
            return Err(Error::Gpu(format!("{}: {lanes} lanes a row do not divide a workgroup of {wg}", info.entry)));
        }
        let key = (kernel, dtype, reads, wg, lanes, grad);
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let row_constants = [
            ("WG", f64::from(wg)),
            ("LANES", f64::from(lanes)),
            ("GRAD_OF", f64::from(grad.of)),
            ("GRAD_IN_PLACE", f64::from(u8::from(grad.in_place))),
            ("EACH", f64::from(u8::from(reads.each))),
            ("CAP_A", f64::from(u8::from(reads.caps.0))),
            ("CAP_B", f64::from(u8::from(reads.caps.1))),
            ("ENTROPY", f64::from(u8::from(reads.entropy))),
            ("REPORT", f64::from(u8::from(reads.report))),
            ("TILE", f64::from(u8::from(reads.tile))),
        ];
        // the reduction's workgroup size is a constant of its shader
        let constants: &[(&str, f64)] = match info.stage {
            Stage::Reduce => &[],
            Stage::Matmul => return Err(Error::Gpu("the matrix product's pipeline is matmul_pipeline's".into())),
            _ => &row_constants,
        };
        let module = kernel.module(dtype, reads.vec4, self.subgroups).stepping(reads.steps);
        let pipeline = self.compile(kernel, module, constants)?;
        lock(&self.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The tiling of an `m`×`n` matrix product on this device ([`crate::plan::matmul_tile`]).
    pub(crate) fn matmul_tile(&self, m: u64, n: u64) -> crate::plan::Tile {
        crate::plan::matmul_tile(self.max_workgroup, m, n)
    }

    /// The most terms one dispatch of a product with `tile` sums on this device
    /// ([`crate::plan::matmul_k_chunk`]: llvmpipe's loop limit), for a product of `k`.
    pub(crate) fn matmul_k_chunk(&self, k: u64, tile: crate::plan::Tile) -> u64 {
        crate::plan::matmul_k_chunk(k, tile, self.step_cap)
    }

    /// The matrix product's pipeline for `key` (shaders/matmul.wgsl, whose overrides the key
    /// fixes).
    pub(crate) fn matmul_pipeline(&self, key: MatmulKey) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = lock(&self.matmuls).get(&key) {
            return Ok(p.clone());
        }
        let t = key.tile;
        if !t.fits(self.max_workgroup) {
            return Err(Error::Gpu(format!("matmul: tile {t:?} does not fit the shader or this device")));
        }
        let (wx, wy) = t.workgroup();
        let code = |d: DType| match d {
            DType::F32 => 0.0,
            DType::F16 => 1.0,
            DType::Bf16 => 2.0,
        };
        let constants = [
            ("A_DTYPE", code(key.a)),
            ("B_DTYPE", code(key.b)),
            ("TM", f64::from(t.tm)),
            ("TN", f64::from(t.tn)),
            ("TK", f64::from(t.tk)),
            ("WX", f64::from(wx)),
            ("WY", f64::from(wy)),
        ];
        let kernel = Kernel::Matmul;
        let pipeline = self.compile(kernel, kernel.module(DType::F32, false, false), &constants)?;
        lock(&self.matmuls).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The one place pipelines are created: `kernel`'s entry point in `module_key` with the
    /// override `constants`; with `wait_for_compiles`, the driver's verdict is waited for and
    /// a failed module is dropped from the cache.
    fn compile(&self, kernel: Kernel, module_key: Module, constants: &[(&str, f64)]) -> Result<wgpu::ComputePipeline> {
        let info = kernel.info();
        let scope = self.wait_for_compiles.then(|| self.device.push_error_scope(wgpu::ErrorFilter::Validation));
        let module = self.module(module_key);
        let layout = self.layouts(kernel).pipeline;
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(info.entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(info.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = scope.and_then(|scope| pollster::block_on(scope.pop())) {
            lock(&self.modules).remove(&module_key);
            return Err(Error::Gpu(format!("compiling {}: {e}", info.entry)));
        }
        Ok(pipeline)
    }
}

/// Locks a cache; a poisoned lock only means another thread panicked mid-insert of a
/// complete value, so the map is still consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
