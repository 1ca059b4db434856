//! The kernel table: one row per WGSL entry point, with everything the host needs to know
//! about it. The pipeline cache, the bind group layouts, the split-row plan and the shader
//! tests read it; adding a kernel is adding a row (tests/shaders.rs checks each row's
//! bindings, gradient and row writes against its WGSL).

use super::wgsl::Family;

/// How an entry point accesses a binding, as its WGSL declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Access {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A binding of group 0: its index and access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Binding {
    /// `@binding(index)`.
    pub(crate) index: u32,
    /// How the WGSL declares it.
    pub(crate) access: Access,
}

/// The bindings of the row kernels (shaders/common/params.wgsl and the loaders) and of the
/// reduction (shaders/reduce.wgsl).
pub(crate) mod binding {
    use super::{Access, Binding};

    const fn uniform(index: u32) -> Binding {
        Binding { index, access: Access::Uniform }
    }

    const fn read(index: u32) -> Binding {
        Binding { index, access: Access::Read }
    }

    const fn read_write(index: u32) -> Binding {
        Binding { index, access: Access::ReadWrite }
    }

    /// The uniform [`RowParams`](crate::kernels::RowParams).
    pub(crate) const PARAMS: Binding = uniform(0);
    /// Input a.
    pub(crate) const IN_A: Binding = read(1);
    /// Input b.
    pub(crate) const IN_B: Binding = read(2);
    /// i32 labels.
    pub(crate) const LABELS: Binding = read(3);
    /// f32 class weights.
    pub(crate) const CLASS_WEIGHTS: Binding = read(4);
    /// Per-row f32 values, or rows of values (viewed as vec4 by some loader variants).
    pub(crate) const OUT_ROWS: Binding = read_write(5);
    /// Per-row auxiliary records of [`AUX_WORDS`](crate::kernels::AUX_WORDS) words: argmax, weight, z term,
    /// entropy, and the evaluation report's rank, confidence, Brier term and label.
    pub(crate) const OUT_AUX: Binding = read_write(6);
    /// First bad label row and first bad value row (atomic minimum).
    pub(crate) const STATUS: Binding = read_write(7);
    /// The gradient, the input it overwrites in place, or the records of split rows' parts.
    pub(crate) const GRAD: Binding = read_write(8);
    /// The uniform [`ReduceParams`](crate::kernels::ReduceParams).
    pub(crate) const REDUCE_PARAMS: Binding = uniform(0);
    /// The reduction's input words.
    pub(crate) const REDUCE_SRC: Binding = read(1);
    /// The reduction's (sum, flags) pairs.
    pub(crate) const REDUCE_DST: Binding = read_write(2);
    /// The uniform [`MatmulParams`](crate::kernels::MatmulParams).
    pub(crate) const MATMUL_PARAMS: Binding = uniform(0);
    /// The matrix product's A, as words.
    pub(crate) const MATMUL_A: Binding = read(1);
    /// The matrix product's B, as words.
    pub(crate) const MATMUL_B: Binding = read(2);
    /// The matrix product's f32 bias (any read-only buffer when unused).
    pub(crate) const MATMUL_BIAS: Binding = read(3);
    /// The matrix product's f32 C.
    pub(crate) const MATMUL_C: Binding = read_write(4);
}

/// Where a kernel runs in a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Stage {
    /// Whole rows: the kernel a loss runs (or its pre-pass) when rows are not split.
    Row,
    /// Split rows: one dispatch unit per (row, part), writing the part's record.
    Part,
    /// Split rows: one unit per row, merging the parts' records.
    Merge,
    /// Split rows: one unit per (row, part), writing the part's columns.
    Write,
    /// The tree sum over rows.
    Reduce,
    /// A benchmark baseline, not used by the losses.
    Baseline,
    /// A matrix product (its own overrides: tile shape and operand types).
    Matmul,
}

impl Stage {
    /// Whether a dispatch runs one unit per (row, part) rather than per row.
    pub(crate) fn per_part(self) -> bool {
        matches!(self, Stage::Part | Stage::Write)
    }
}

/// The columns a kernel reads per unit, which choose its layout (workgroup size and
/// lanes per row) and its column loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Cols {
    /// Every column of its row.
    Row,
    /// The columns of one part of a split row.
    Part,
    /// One record per row (a label, or the parts' records): one invocation a row.
    Record,
    /// Every column of its row, by one workgroup of this many invocations.
    RowPerWorkgroup(u32),
}

/// When a row kernel is replaced by a plan of split-row dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Split {
    /// Never: the kernel reads whole rows whatever their length.
    Never,
    /// Always, by these dispatches in order.
    Into(&'static [Kernel]),
    /// When every float input holds logits (P, and Q where bound).
    LogitsInto(&'static [Kernel]),
}

impl Split {
    /// The dispatches that replace the kernel on split rows, for a job with `flags`.
    pub(crate) fn plan(self, flags: u32) -> Option<&'static [Kernel]> {
        use super::flags::{HAS_B, P_LOGITS, Q_LOGITS};
        match self {
            Split::Never => None,
            Split::Into(stages) => Some(stages),
            Split::LogitsInto(stages) => {
                let logits = flags & P_LOGITS != 0 && (flags & HAS_B == 0 || flags & Q_LOGITS != 0);
                logits.then_some(stages)
            }
        }
    }
}

/// One row of the kernel table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KernelInfo {
    /// The entry point's name in WGSL.
    pub(crate) entry: &'static str,
    /// The family file it is in (its module is the family's for a dtype and load width).
    pub(crate) family: Family,
    /// Where it runs in a job.
    pub(crate) stage: Stage,
    /// The columns it reads per unit.
    pub(crate) reads: Cols,
    /// The bindings of group 0 it uses, in index order: its bind group layout.
    pub(crate) bindings: &'static [Binding],
    /// Whether it writes a gradient (`GRAD_OF` of shaders/common/grad.wgsl may be set).
    pub(crate) grad: bool,
    /// Whether it writes rows of values (`[rows, cols]`, viewed as vec4 with its inputs)
    /// rather than values per row.
    pub(crate) writes_rows: bool,
    /// Its plan on split rows.
    pub(crate) split: Split,
}

const fn row(entry: &'static str, family: Family, bindings: &'static [Binding]) -> KernelInfo {
    KernelInfo {
        entry,
        family,
        stage: Stage::Row,
        reads: Cols::Row,
        bindings,
        grad: false,
        writes_rows: false,
        split: Split::Never,
    }
}

const fn part(entry: &'static str, family: Family, bindings: &'static [Binding]) -> KernelInfo {
    KernelInfo { stage: Stage::Part, reads: Cols::Part, ..row(entry, family, bindings) }
}

const fn merge(entry: &'static str, family: Family, bindings: &'static [Binding]) -> KernelInfo {
    KernelInfo { stage: Stage::Merge, reads: Cols::Record, ..row(entry, family, bindings) }
}

const fn write(entry: &'static str, family: Family, bindings: &'static [Binding]) -> KernelInfo {
    KernelInfo { stage: Stage::Write, reads: Cols::Part, writes_rows: true, ..row(entry, family, bindings) }
}

const fn baseline(entry: &'static str, bindings: &'static [Binding]) -> KernelInfo {
    KernelInfo { stage: Stage::Baseline, ..row(entry, Family::Baseline, bindings) }
}

impl KernelInfo {
    const fn with_grad(self) -> Self {
        KernelInfo { grad: true, ..self }
    }

    const fn writing_rows(self) -> Self {
        KernelInfo { writes_rows: true, ..self }
    }

    const fn reading(self, reads: Cols) -> Self {
        KernelInfo { reads, ..self }
    }

    const fn split_into(self, stages: &'static [Kernel]) -> Self {
        KernelInfo { split: Split::Into(stages), ..self }
    }

    const fn split_logits_into(self, stages: &'static [Kernel]) -> Self {
        KernelInfo { split: Split::LogitsInto(stages), ..self }
    }
}

/// The [`Kernel`] enum, [`Kernel::ALL`] and [`TABLE`], from one list of rows.
macro_rules! kernel_table {
    ($($(#[$doc:meta])* $name:ident => $row:expr,)+) => {
        /// A compute entry point of one of the shader families in `shaders/`: a row of [`TABLE`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum Kernel {
            $($(#[$doc])* $name,)+
        }

        impl Kernel {
            /// Every kernel, in the table's order.
            #[cfg(test)]
            pub(crate) const ALL: [Kernel; COUNT] = [$(Kernel::$name),+];
        }

        const COUNT: usize = [$(stringify!($name)),+].len();

        /// The kernel table, in [`Kernel`]'s order.
        pub(crate) static TABLE: [KernelInfo; COUNT] = {
            use Kernel::*;
            use binding::*;
            use Family as F;
            [$($row),+]
        };
    };
}

kernel_table! {
    /// Row max and argmax (shaders/row_stats.wgsl).
    RowMax => row("row_max", F::RowStats, &[PARAMS, IN_A, IN_B, OUT_ROWS, OUT_AUX, GRAD])
        .split_into(&[RowPart, RowMaxMerge]),
    /// Row log-sum-exp (shaders/row_stats.wgsl).
    LogSumExp => row("logsumexp", F::RowStats, &[PARAMS, IN_A, IN_B, OUT_ROWS, GRAD])
        .split_into(&[RowPart, LogSumExpMerge]),
    /// Softmax and log-softmax with temperature (shaders/softmax.wgsl).
    Softmax => row("softmax", F::Softmax, &[PARAMS, IN_A, IN_B, OUT_ROWS, GRAD])
        .writing_rows()
        .split_into(&[SoftmaxPart, SoftmaxMerge, SoftmaxWrite]),
    /// Cross-entropy with integer labels (shaders/softmax_xent.wgsl).
    SoftmaxXent => row(
        "softmax_xent",
        F::SoftmaxXent,
        &[PARAMS, IN_A, IN_B, LABELS, CLASS_WEIGHTS, OUT_ROWS, OUT_AUX, STATUS, GRAD],
    )
    .with_grad()
    .split_into(&[SoftmaxXentPart, SoftmaxXentMerge]),
    /// Pre-pass of cross-entropy's mean gradient: each row's weight.
    CeRowWeights => row("ce_row_weights", F::SoftmaxXent, &[PARAMS, LABELS, CLASS_WEIGHTS, OUT_AUX])
        .reading(Cols::Record),
    /// KL, cross-entropy with probability targets and entropy (shaders/divergence.wgsl).
    Divergence => row("divergence", F::Divergence, &[PARAMS, IN_A, IN_B, OUT_ROWS, OUT_AUX, STATUS, GRAD])
        .with_grad()
        .split_logits_into(&[DivergencePart, DivergenceMerge]),
    /// The generalized Jensen-Shannon divergence (shaders/jsd.wgsl): whole rows, never split.
    Jsd => row("jsd", F::Jsd, &[PARAMS, IN_A, IN_B, OUT_ROWS, STATUS, GRAD]).with_grad(),
    /// Binary cross-entropy (shaders/binary_xent.wgsl).
    BinaryXent => row("binary_xent", F::BinaryXent, &[PARAMS, IN_A, IN_B, OUT_ROWS, STATUS, GRAD])
        .with_grad()
        .split_into(&[BinaryXentPart, SumMerge]),
    /// The VAE's Gaussian KL (shaders/gaussian_kl.wgsl).
    GaussianKl => row("gaussian_kl", F::GaussianKl, &[PARAMS, IN_A, IN_B, OUT_ROWS, GRAD])
        .split_into(&[GaussianKlPart, SumMerge]),
    /// Distillation loss (shaders/distill.wgsl).
    Distill => row("distill", F::Distill, &[PARAMS, IN_A, IN_B, LABELS, OUT_ROWS, STATUS, GRAD])
        .with_grad()
        .split_into(&[DistillPart, DistillMerge, DistillRefinePart, DistillRefineMerge]),
    /// The deterministic tree sum over rows (shaders/reduce.wgsl).
    Reduce => KernelInfo {
        stage: Stage::Reduce,
        reads: Cols::Record,
        ..row("reduce_sum", F::Reduce, &[REDUCE_PARAMS, REDUCE_SRC, REDUCE_DST])
    },
    /// The same tree sum, one invocation a block, without barriers: for CPU adapters.
    ReduceSerial => KernelInfo {
        stage: Stage::Reduce,
        reads: Cols::Record,
        ..row("reduce_sum_serial", F::Reduce, &[REDUCE_PARAMS, REDUCE_SRC, REDUCE_DST])
    },
    /// The mean of a finished reduction, one f32 word (shaders/reduce.wgsl).
    ReduceMean => KernelInfo {
        stage: Stage::Reduce,
        reads: Cols::Record,
        ..row("reduce_mean", F::Reduce, &[REDUCE_PARAMS, REDUCE_SRC, REDUCE_DST])
    },
    /// Split rows, first dispatch: the stats of each part of a row (shaders/row_stats.wgsl).
    RowPart => part("row_part", F::RowStats, &[PARAMS, IN_A, IN_B, GRAD]),
    /// Split rows, second dispatch: the parts merged into the log-sum-exp.
    LogSumExpMerge => merge("logsumexp_merge", F::RowStats, &[PARAMS, OUT_ROWS, GRAD]),
    /// Split rows, second dispatch: the parts merged into the max and argmax.
    RowMaxMerge => merge("row_max_merge", F::RowStats, &[PARAMS, OUT_ROWS, OUT_AUX, GRAD]),
    /// Split rows, first dispatch of softmax: the stats of each part (shaders/softmax.wgsl).
    SoftmaxPart => part("softmax_part", F::Softmax, &[PARAMS, IN_A, IN_B, GRAD]),
    /// Split rows, second dispatch of softmax: a row's parts merged.
    SoftmaxMerge => merge("softmax_merge", F::Softmax, &[PARAMS, GRAD]),
    /// Split rows, third dispatch of softmax: each part's columns written.
    SoftmaxWrite => write("softmax_write", F::Softmax, &[PARAMS, IN_A, IN_B, OUT_ROWS, GRAD]),
    /// Split rows, first dispatch of KL / entropy of logits: each part's pair stats.
    DivergencePart => part("divergence_part", F::Divergence, &[PARAMS, IN_A, IN_B, GRAD]),
    /// Split rows, second dispatch of KL / entropy of logits: the parts merged.
    DivergenceMerge => merge("divergence_merge", F::Divergence, &[PARAMS, OUT_ROWS, GRAD]),
    /// Split rows, first dispatch of distillation: each part's pair and CE stats.
    DistillPart => part("distill_part", F::Distill, &[PARAMS, IN_A, IN_B, GRAD]),
    /// Split rows, second dispatch of distillation: the parts merged into the loss.
    DistillMerge => merge("distill_merge", F::Distill, &[PARAMS, IN_A, LABELS, OUT_ROWS, STATUS, GRAD]),
    /// Split rows, third dispatch of distillation: each part's terms of the second pass
    /// over rows whose KL cancels.
    DistillRefinePart => part("distill_refine_part", F::Distill, &[PARAMS, IN_A, IN_B, GRAD]),
    /// Split rows, fourth dispatch of distillation: those terms merged into the loss.
    DistillRefineMerge => merge("distill_refine_merge", F::Distill, &[PARAMS, OUT_ROWS, GRAD]),
    /// Split rows, first dispatch of binary cross-entropy: each part's sum.
    BinaryXentPart => part("binary_xent_part", F::BinaryXent, &[PARAMS, IN_A, IN_B, STATUS, GRAD]),
    /// Split rows, first dispatch of the Gaussian KL: each part's sum.
    GaussianKlPart => part("gaussian_kl_part", F::GaussianKl, &[PARAMS, IN_A, IN_B, GRAD]),
    /// Split rows, second dispatch of a row sum: the parts added in order (the merge is in
    /// shaders/common/row_reduce.wgsl, in every family).
    SumMerge => merge("sum_merge", F::GaussianKl, &[PARAMS, OUT_ROWS, GRAD]),
    /// Split rows, first dispatch of cross-entropy: stats and smoothing sum of each part.
    SoftmaxXentPart => part("softmax_xent_part", F::SoftmaxXent, &[PARAMS, IN_A, IN_B, LABELS, CLASS_WEIGHTS, GRAD]),
    /// Split rows, second dispatch of cross-entropy: the parts merged into the loss.
    SoftmaxXentMerge => merge(
        "softmax_xent_merge",
        F::SoftmaxXent,
        &[PARAMS, IN_A, LABELS, CLASS_WEIGHTS, OUT_ROWS, OUT_AUX, STATUS, GRAD],
    ),
    /// The tiled matrix product of the fused linear cross-entropy (shaders/matmul.wgsl).
    Matmul => KernelInfo {
        stage: Stage::Matmul,
        reads: Cols::Record,
        ..row("matmul", F::Matmul, &[MATMUL_PARAMS, MATMUL_A, MATMUL_B, MATMUL_BIAS, MATMUL_C])
    },
    /// Benchmark baseline: a copy of the input words (the roofline).
    Copy => baseline("copy_words", &[PARAMS, IN_A, IN_B, OUT_ROWS, GRAD]).writing_rows(),
    /// Benchmark baseline: one workgroup per row, two passes (lse, or CE with labels).
    NaiveXent => baseline("naive_xent", &[PARAMS, IN_A, LABELS, OUT_ROWS, GRAD]).reading(Cols::RowPerWorkgroup(64)),
}

impl Kernel {
    /// The kernel's row of [`TABLE`].
    pub(crate) fn info(self) -> &'static KernelInfo {
        &TABLE[self as usize]
    }

    /// The entry point's name in WGSL.
    pub(crate) fn entry(self) -> &'static str {
        self.info().entry
    }
}
