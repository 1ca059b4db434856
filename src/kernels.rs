//! The table of kernels: composed WGSL, entry points, bindings, and the pipeline cache.
//!
//! Each row kernel is `params + loader(dtype) + numerics + row layout + family`,
//! composed at compile time with `concat!(include_str!(..))`; the workgroup size and
//! lanes per row are `override` constants, so shapes never enter shader text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::loss::DType;

macro_rules! row_source {
    ($($loader:literal),+; $family:literal) => {
        concat!(
            include_str!("../shaders/common/params.wgsl"),
            $(include_str!(concat!("../shaders/common/", $loader)),)+
            include_str!("../shaders/common/numerics.wgsl"),
            include_str!("../shaders/common/row_reduce.wgsl"),
            include_str!("../shaders/common/grad.wgsl"),
            include_str!(concat!("../shaders/", $family)),
        )
    };
}

// [f32, f16, bf16] read and written a word at a time, then the same through vec4 views
// (16-byte loads and stores).
macro_rules! row_sources {
    ($family:literal) => {
        [
            row_source!("load_f32.wgsl", "load_each.wgsl", "store_words.wgsl"; $family),
            row_source!("load_f16.wgsl", "load_16bit.wgsl", "load_each.wgsl", "store_words.wgsl"; $family),
            row_source!("load_bf16.wgsl", "load_16bit.wgsl", "load_each.wgsl", "store_words.wgsl"; $family),
            row_source!("load_f32x4.wgsl", "load_each.wgsl", "store_vec4.wgsl"; $family),
            row_source!("load_f16.wgsl", "load_16bitx4.wgsl", "load_each.wgsl", "store_vec4.wgsl"; $family),
            row_source!("load_bf16.wgsl", "load_16bitx4.wgsl", "load_each.wgsl", "store_vec4.wgsl"; $family),
        ]
    };
}

const REDUCE_SOURCE: &str =
    concat!(include_str!("../shaders/common/numerics.wgsl"), include_str!("../shaders/reduce.wgsl"),);

/// A compute entry point of one of the shader families in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Row max and argmax (shaders/row_stats.wgsl).
    RowMax,
    /// Row log-sum-exp (shaders/row_stats.wgsl).
    LogSumExp,
    /// Softmax and log-softmax with temperature (shaders/softmax.wgsl).
    Softmax,
    /// Cross-entropy with integer labels (shaders/softmax_xent.wgsl).
    SoftmaxXent,
    /// Pre-pass of cross-entropy's mean gradient: each row's weight.
    CeRowWeights,
    /// KL, cross-entropy with probability targets and entropy (shaders/divergence.wgsl).
    Divergence,
    /// Binary cross-entropy (shaders/binary_xent.wgsl).
    BinaryXent,
    /// The VAE's Gaussian KL (shaders/gaussian_kl.wgsl).
    GaussianKl,
    /// Distillation loss (shaders/distill.wgsl).
    Distill,
    /// The deterministic tree sum over rows (shaders/reduce.wgsl).
    Reduce,
    /// Split rows, first dispatch: the stats of each part of a row (shaders/row_stats.wgsl).
    RowPart,
    /// Split rows, second dispatch: the parts merged into the log-sum-exp.
    LogSumExpMerge,
    /// Split rows, second dispatch: the parts merged into the max and argmax.
    RowMaxMerge,
    /// Split rows, first dispatch of softmax: the stats of each part (shaders/softmax.wgsl).
    SoftmaxPart,
    /// Split rows, second dispatch of softmax: a row's parts merged.
    SoftmaxMerge,
    /// Split rows, third dispatch of softmax: each part's columns written.
    SoftmaxWrite,
    /// Split rows, first dispatch of KL / entropy of logits: each part's pair stats.
    DivergencePart,
    /// Split rows, second dispatch of KL / entropy of logits: the parts merged.
    DivergenceMerge,
    /// Split rows, first dispatch of distillation: each part's pair and CE stats.
    DistillPart,
    /// Split rows, second dispatch of distillation: the parts merged into the loss.
    DistillMerge,
    /// Split rows, third dispatch of distillation: each part's terms of the second pass
    /// over rows whose KL cancels.
    DistillRefinePart,
    /// Split rows, fourth dispatch of distillation: those terms merged into the loss.
    DistillRefineMerge,
    /// Split rows, first dispatch of binary cross-entropy: each part's sum.
    BinaryXentPart,
    /// Split rows, first dispatch of the Gaussian KL: each part's sum.
    GaussianKlPart,
    /// Split rows, second dispatch of a row sum: the parts added in order.
    SumMerge,
    /// Split rows, first dispatch of cross-entropy: stats and smoothing sum of each part.
    SoftmaxXentPart,
    /// Split rows, second dispatch of cross-entropy: the parts merged into the loss.
    SoftmaxXentMerge,
    /// Benchmark baseline: a copy of the input words (the roofline).
    Copy,
    /// Benchmark baseline: one workgroup per row, two passes (lse, or CE with labels).
    NaiveXent,
}

impl Kernel {
    /// Every kernel, for validation and translation tests.
    pub const ALL: [Kernel; 29] = [
        Kernel::RowMax,
        Kernel::LogSumExp,
        Kernel::Softmax,
        Kernel::SoftmaxXent,
        Kernel::CeRowWeights,
        Kernel::Divergence,
        Kernel::BinaryXent,
        Kernel::GaussianKl,
        Kernel::Distill,
        Kernel::Reduce,
        Kernel::RowPart,
        Kernel::LogSumExpMerge,
        Kernel::RowMaxMerge,
        Kernel::SoftmaxPart,
        Kernel::SoftmaxMerge,
        Kernel::SoftmaxWrite,
        Kernel::SoftmaxXentPart,
        Kernel::SoftmaxXentMerge,
        Kernel::DivergencePart,
        Kernel::DivergenceMerge,
        Kernel::DistillPart,
        Kernel::DistillMerge,
        Kernel::DistillRefinePart,
        Kernel::DistillRefineMerge,
        Kernel::BinaryXentPart,
        Kernel::GaussianKlPart,
        Kernel::SumMerge,
        Kernel::Copy,
        Kernel::NaiveXent,
    ];

    /// The entry point's name in WGSL.
    pub fn entry(self) -> &'static str {
        match self {
            Kernel::RowMax => "row_max",
            Kernel::LogSumExp => "logsumexp",
            Kernel::Softmax => "softmax",
            Kernel::SoftmaxXent => "softmax_xent",
            Kernel::CeRowWeights => "ce_row_weights",
            Kernel::Divergence => "divergence",
            Kernel::BinaryXent => "binary_xent",
            Kernel::GaussianKl => "gaussian_kl",
            Kernel::Distill => "distill",
            Kernel::Reduce => "reduce_sum",
            Kernel::RowPart => "row_part",
            Kernel::LogSumExpMerge => "logsumexp_merge",
            Kernel::RowMaxMerge => "row_max_merge",
            Kernel::SoftmaxPart => "softmax_part",
            Kernel::SoftmaxMerge => "softmax_merge",
            Kernel::SoftmaxWrite => "softmax_write",
            Kernel::DivergencePart => "divergence_part",
            Kernel::DivergenceMerge => "divergence_merge",
            Kernel::DistillPart => "distill_part",
            Kernel::DistillMerge => "distill_merge",
            Kernel::DistillRefinePart => "distill_refine_part",
            Kernel::DistillRefineMerge => "distill_refine_merge",
            Kernel::BinaryXentPart => "binary_xent_part",
            Kernel::GaussianKlPart => "gaussian_kl_part",
            Kernel::SumMerge => "sum_merge",
            Kernel::SoftmaxXentPart => "softmax_xent_part",
            Kernel::SoftmaxXentMerge => "softmax_xent_merge",
            Kernel::Copy => "copy_words",
            Kernel::NaiveXent => "naive_xent",
        }
    }

    /// The composed WGSL for inputs of `dtype`, viewed as vec4 when `vec4` (inputs bound
    /// in multiples of 16 bytes) or a word at a time (the reduction has one source).
    pub fn source(self, dtype: DType, vec4: bool) -> &'static str {
        let family = match self {
            Kernel::RowMax | Kernel::LogSumExp | Kernel::RowPart | Kernel::LogSumExpMerge | Kernel::RowMaxMerge => {
                row_sources!("row_stats.wgsl")
            }
            Kernel::Softmax | Kernel::SoftmaxPart | Kernel::SoftmaxMerge | Kernel::SoftmaxWrite => {
                row_sources!("softmax.wgsl")
            }
            Kernel::SoftmaxXent | Kernel::CeRowWeights | Kernel::SoftmaxXentPart | Kernel::SoftmaxXentMerge => {
                row_sources!("softmax_xent.wgsl")
            }
            Kernel::Divergence | Kernel::DivergencePart | Kernel::DivergenceMerge => row_sources!("divergence.wgsl"),
            Kernel::BinaryXent | Kernel::BinaryXentPart => row_sources!("binary_xent.wgsl"),
            // the merge of row sums is in common/row_reduce.wgsl, in every family
            Kernel::GaussianKl | Kernel::GaussianKlPart | Kernel::SumMerge => row_sources!("gaussian_kl.wgsl"),
            Kernel::Distill
            | Kernel::DistillPart
            | Kernel::DistillMerge
            | Kernel::DistillRefinePart
            | Kernel::DistillRefineMerge => row_sources!("distill.wgsl"),
            Kernel::Copy | Kernel::NaiveXent => row_sources!("baseline.wgsl"),
            Kernel::Reduce => return REDUCE_SOURCE,
        };
        let loads = if vec4 { 3 } else { 0 };
        match dtype {
            DType::F32 => family[loads],
            DType::F16 => family[loads + 1],
            DType::Bf16 => family[loads + 2],
        }
    }
}

/// Uniform parameters of every row kernel (`RowParams` in shaders/common/params.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowParams {
    /// Rows in this dispatch.
    pub rows: u32,
    /// Columns of every row.
    pub cols: u32,
    /// Global index of this dispatch's first row (for error reports).
    pub row_offset: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Element index of input a's first row within its binding.
    pub a_base: u32,
    /// Element index of input b's first row within its binding.
    pub b_base: u32,
    /// Index of the first label within its binding.
    pub label_base: u32,
    /// Index of the first per-row output within its binding.
    pub out_base: u32,
    /// Word index of the first auxiliary pair (argmax, weight) within its binding.
    pub aux_base: u32,
    /// The label whose rows are ignored (with [`flags::IGNORE`]).
    pub ignore_index: i32,
    /// `1 / T` for softmax and distillation.
    pub inv_temperature: f32,
    /// `T` for distillation.
    pub temperature: f32,
    /// Label smoothing `s`.
    pub smoothing: f32,
    /// Distillation's `α`.
    pub alpha: f32,
    /// Factor on the values: 1 for nats, `1 / ln 2` for bits.
    pub out_scale: f32,
    /// Element index of the gradient's first row within its binding.
    pub grad_base: u32,
    /// Factor on the gradient (the caller's upstream gradient).
    pub grad_scale: f32,
    /// The gradient's divisor: rows, 1, or the device-side Σ w_y copied in.
    pub grad_denominator: f32,
    /// Split rows ([`crate::plan::row_parts`]): parts per row, 0 or 1 when not split.
    pub parts: u32,
    /// Split rows: columns per part (even).
    pub part_cols: u32,
}

/// Flag bits of [`RowParams::flags`] (`FLAG_*` in params.wgsl).
pub mod flags {
    /// `ignore_index` is set.
    pub const IGNORE: u32 = 1;
    /// Class weights are bound.
    pub const WEIGHTS: u32 = 2;
    /// Input a holds logits (else probabilities).
    pub const P_LOGITS: u32 = 4;
    /// Input b holds logits (else probabilities).
    pub const Q_LOGITS: u32 = 8;
    /// Softmax writes log-softmax.
    pub const LOG: u32 = 16;
    /// Divergence adds `Σ p log p`.
    pub const TERM_PLOGP: u32 = 32;
    /// Divergence adds `−Σ p log q`.
    pub const TERM_PLOGQ: u32 = 64;
    /// Divergence negates its result (entropy).
    pub const NEGATE: u32 = 128;
    /// Input b is bound.
    pub const HAS_B: u32 = 256;
}

/// Uniform parameters of the reduction (`ReduceParams` in reduce.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    /// Values to sum at this level.
    pub n: u32,
    /// Words between consecutive values.
    pub stride: u32,
    /// Word offset of the value within its stride.
    pub component: u32,
    /// Word index of the first value within the input binding.
    pub in_base: u32,
    /// Word index of the first (sum, flags) pair written.
    pub out_base: u32,
    /// 1 when the input is (sum, flags) pairs of a previous level.
    pub partials: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad: [u32; 2],
}

/// Binding indices of the row kernels' bind group.
pub mod binding {
    /// The uniform [`RowParams`](super::RowParams).
    pub const PARAMS: u32 = 0;
    /// Input a (read-only).
    pub const IN_A: u32 = 1;
    /// Input b (read-only).
    pub const IN_B: u32 = 2;
    /// i32 labels (read-only).
    pub const LABELS: u32 = 3;
    /// f32 class weights (read-only).
    pub const CLASS_WEIGHTS: u32 = 4;
    /// Per-row f32 values.
    pub const OUT_ROWS: u32 = 5;
    /// Per-row (argmax, weight) word pairs.
    pub const OUT_AUX: u32 = 6;
    /// First bad label row and first bad value row (atomic minimum).
    pub const STATUS: u32 = 7;
    /// The gradient, or the input it overwrites in place.
    pub const GRAD: u32 = 8;
}

/// Which input a row kernel differentiates, and whether the gradient overwrites it
/// (the `GRAD_OF` and `GRAD_IN_PLACE` overrides of shaders/common/grad.wgsl).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GradMode {
    /// 0: no gradient, 1: input a, 2: input b.
    pub of: u32,
    /// The gradient overwrites that input.
    pub in_place: bool,
}

/// How a row kernel reads its columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reads {
    /// Inputs viewed as vec4 ([`Kernel::source`]): every input binding is whole 16-byte
    /// vectors.
    pub vec4: bool,
    /// An element at a time rather than in octets, for rows of fewer than
    /// [`crate::plan::SHORT_COLS`] columns (the `EACH` override of
    /// shaders/common/row_reduce.wgsl).
    pub each: bool,
}

/// A shader module: the kernel's family for a dtype, read as vec4 or not.
type ModuleKey = (Kernel, DType, bool);
type PipelineKey = (Kernel, DType, Reads, u32, u32, GradMode);

/// Bind group layouts and compiled pipelines of one device, compiled once and cached.
#[derive(Clone)]
pub struct Kernels {
    device: wgpu::Device,
    row_layout: wgpu::BindGroupLayout,
    reduce_layout: wgpu::BindGroupLayout,
    row_pipeline_layout: wgpu::PipelineLayout,
    reduce_pipeline_layout: wgpu::PipelineLayout,
    modules: Arc<Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>>,
    pipelines: Arc<Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>>,
    row_workgroup: u32,
    max_workgroup: u32,
    /// llvmpipe's loop limit ([`crate::plan::CPU_LOOP_STEPS`]) on CPU adapters.
    step_cap: Option<u64>,
    /// The CPU layout (one invocation per row); `XENT_ROW_LAYOUT=gpu` turns it off, so the
    /// GPU layouts can be tested and measured on a CPU adapter.
    cpu_layout: bool,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Kernels {
    /// Creates the layouts for `device`; pipelines are compiled on first use.
    pub fn new(device: &wgpu::Device) -> Self {
        use binding::*;
        let row_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("xent row kernels"),
            entries: &[
                uniform(PARAMS),
                storage(IN_A, true),
                storage(IN_B, true),
                storage(LABELS, true),
                storage(CLASS_WEIGHTS, true),
                storage(OUT_ROWS, false),
                storage(OUT_AUX, false),
                storage(STATUS, false),
                storage(GRAD, false),
            ],
        });
        let reduce_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("xent reduce"),
            entries: &[uniform(0), storage(1, true), storage(2, false)],
        });
        let pipeline_layout = |label, layout: &wgpu::BindGroupLayout| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            })
        };
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
            device: device.clone(),
            row_pipeline_layout: pipeline_layout("xent row kernels", &row_layout),
            reduce_pipeline_layout: pipeline_layout("xent reduce", &reduce_layout),
            row_layout,
            reduce_layout,
            modules: Arc::default(),
            pipelines: Arc::default(),
        }
    }

    /// The device the kernels compile for.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Parts each of `rows` rows of `cols` columns is split into ([`crate::plan::row_parts`];
    /// 1: not split).
    pub fn row_parts(&self, rows: u64, cols: u64) -> u64 {
        crate::plan::row_parts(rows, cols, self.cpu_layout)
    }

    /// Workgroup size and lanes per row of the row kernels for `cols` columns on this device
    /// ([`crate::plan::workgroup_size`], [`crate::plan::row_layout`]).
    pub fn row_layout_for(&self, cols: u64) -> (u32, u32) {
        crate::plan::row_layout(cols, self.row_workgroup, self.max_workgroup, self.step_cap, self.cpu_layout)
    }

    /// The bind group layout every row kernel shares ([`binding`]).
    pub fn row_layout(&self) -> &wgpu::BindGroupLayout {
        &self.row_layout
    }

    /// The bind group layout of the reduction: params, input, output.
    pub fn reduce_layout(&self) -> &wgpu::BindGroupLayout {
        &self.reduce_layout
    }

    /// The pipeline of `kernel` for `dtype` with `wg` invocations and `lanes` per row,
    /// reading its columns as `reads` says.
    pub fn pipeline(
        &self,
        kernel: Kernel,
        dtype: DType,
        reads: Reads,
        wg: u32,
        lanes: u32,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_with_grad(kernel, dtype, reads, wg, lanes, GradMode::default())
    }

    /// [`Kernels::pipeline`] writing the gradient `grad` asks for.
    pub fn pipeline_with_grad(
        &self,
        kernel: Kernel,
        dtype: DType,
        reads: Reads,
        wg: u32,
        lanes: u32,
        grad: GradMode,
    ) -> Result<wgpu::ComputePipeline> {
        let key = (kernel, dtype, reads, wg, lanes, grad);
        let vec4 = reads.vec4;
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = lock(&self.modules);
            modules
                .entry((kernel, dtype, vec4))
                .or_insert_with(|| {
                    self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.entry()),
                        source: wgpu::ShaderSource::Wgsl(kernel.source(dtype, vec4).into()),
                    })
                })
                .clone()
        };
        let row_constants = [
            ("WG", f64::from(wg)),
            ("LANES", f64::from(lanes)),
            ("GRAD_OF", f64::from(grad.of)),
            ("GRAD_IN_PLACE", f64::from(u8::from(grad.in_place))),
            ("EACH", f64::from(u8::from(reads.each))),
        ];
        let constants: &[(&str, f64)] = if kernel == Kernel::Reduce { &[] } else { &row_constants };
        let layout = if kernel == Kernel::Reduce { &self.reduce_pipeline_layout } else { &self.row_pipeline_layout };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            layout: Some(layout),
            module: &module,
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            lock(&self.modules).remove(&(kernel, dtype, vec4));
            return Err(Error::Gpu(format!("compiling {}: {e}", kernel.entry())));
        }
        lock(&self.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

/// Locks a cache; a poisoned lock only means another thread panicked mid-insert of a
/// complete value, so the map is still consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
