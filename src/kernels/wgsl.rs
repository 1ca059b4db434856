//! Shader modules composed from the files of `shaders/`: each file is in the binary once,
//! and a module's text is put together (in the order the files are listed here) when the
//! first pipeline of its family, dtype, load width, lanes (with or without subgroups) and
//! octets a step is built.

use crate::loss::DType;

/// The pieces of shaders/common/, each a `&'static str` in the binary once.
macro_rules! common {
    ($($name:ident = $file:literal),+ $(,)?) => {
        $(const $name: &str = include_str!(concat!("../../shaders/common/", $file));)+
    };
}

common! {
    PARAMS = "params.wgsl", NUMERICS = "numerics.wgsl", ROW_REDUCE = "row_reduce.wgsl", ROW_TREE = "row_tree.wgsl",
    ROW_LANES = "row_lanes.wgsl", ROW_LANES_SUBGROUPS = "row_lanes_subgroups.wgsl", GRAD = "grad.wgsl",
    LOAD_F32 = "load_f32.wgsl", LOAD_F32X4 = "load_f32x4.wgsl", LOAD_F16 = "load_f16.wgsl",
    LOAD_BF16 = "load_bf16.wgsl", LOAD_16BIT = "load_16bit.wgsl", LOAD_16BITX4 = "load_16bitx4.wgsl",
    LOAD_EACH = "load_each.wgsl", STORE_WORDS = "store_words.wgsl", STORE_VEC4 = "store_vec4.wgsl",
}

/// A file of `shaders/` with the entry points of one family of kernels: with the common
/// pieces and a loader variant, one shader module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// shaders/row_stats.wgsl
    RowStats,
    /// shaders/softmax.wgsl
    Softmax,
    /// shaders/softmax_xent.wgsl
    SoftmaxXent,
    /// shaders/divergence.wgsl
    Divergence,
    /// shaders/jsd.wgsl
    Jsd,
    /// shaders/binary_xent.wgsl
    BinaryXent,
    /// shaders/gaussian_kl.wgsl
    GaussianKl,
    /// shaders/distill.wgsl
    Distill,
    /// shaders/baseline.wgsl
    Baseline,
    /// shaders/reduce.wgsl: no row parameters and no loader, one module for every dtype.
    Reduce,
    /// shaders/matmul.wgsl: one module whatever the dtypes, which are override constants.
    Matmul,
}

/// A shader module: a family composed for a dtype, read as vec4 or a word at a time, its
/// rows' lanes combined with or without subgroup operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Module {
    /// The family file.
    pub(crate) family: Family,
    /// Element type of the float inputs.
    pub(crate) dtype: DType,
    /// Inputs (and rows written) viewed as vec4.
    pub(crate) vec4: bool,
    /// Composed with shaders/common/row_lanes_subgroups.wgsl (the device has
    /// `wgpu::Features::SUBGROUP`), else with row_lanes.wgsl: WGSL with subgroup builtins
    /// does not compile on a device without the feature, so it is a module of its own.
    pub(crate) subgroups: bool,
    /// Octets a lane loads a step ([`crate::RowLayout::steps`], 1 or 2): the module of one
    /// leaves out the paired column loops, the lines between `//#steps2` and `//#end`.
    pub(crate) steps: u32,
}

impl Family {
    /// The family's own file.
    fn file(self) -> &'static str {
        match self {
            Family::RowStats => include_str!("../../shaders/row_stats.wgsl"),
            Family::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Family::SoftmaxXent => include_str!("../../shaders/softmax_xent.wgsl"),
            Family::Divergence => include_str!("../../shaders/divergence.wgsl"),
            Family::Jsd => include_str!("../../shaders/jsd.wgsl"),
            Family::BinaryXent => include_str!("../../shaders/binary_xent.wgsl"),
            Family::GaussianKl => include_str!("../../shaders/gaussian_kl.wgsl"),
            Family::Distill => include_str!("../../shaders/distill.wgsl"),
            Family::Baseline => include_str!("../../shaders/baseline.wgsl"),
            Family::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Family::Matmul => include_str!("../../shaders/matmul.wgsl"),
        }
    }

    /// The module of this family for inputs of `dtype`, viewed as vec4 when `vec4`, with
    /// subgroup operations when `subgroups` (the reduction and the matrix product have one
    /// module whatever the three).
    pub(crate) fn module(self, dtype: DType, vec4: bool, subgroups: bool) -> Module {
        match self {
            Family::Reduce | Family::Matmul => {
                Module { family: self, dtype: DType::F32, vec4: false, subgroups: false, steps: 1 }
            }
            _ => Module { family: self, dtype, vec4, subgroups, steps: 1 },
        }
    }
}

impl Module {
    /// The files the module is made of, in order: the row parameters, the loader variant,
    /// the numerics, the row layout, the lanes' tree and where an invocation stands (with
    /// or without subgroups), the gradient, then the family's file (the reduction takes the
    /// numerics alone, the matrix product f16's exact widening alone).
    pub(crate) fn pieces(self) -> Vec<&'static str> {
        match self.family {
            Family::Reduce => return vec![NUMERICS, self.family.file()],
            Family::Matmul => return vec![LOAD_F16, self.family.file()],
            _ => {}
        }
        let lanes = if self.subgroups { ROW_LANES_SUBGROUPS } else { ROW_LANES };
        let mut pieces = vec![PARAMS];
        pieces.extend_from_slice(loader(self.dtype, self.vec4));
        pieces.extend_from_slice(&[NUMERICS, ROW_REDUCE, ROW_TREE, lanes, GRAD, self.family.file()]);
        pieces
    }

    /// This module with `steps` octets a lane a step (1 or 2; the reduction and the matrix
    /// product have no column loops, so one module whatever the steps).
    pub(crate) fn stepping(self, steps: u32) -> Module {
        match self.family {
            Family::Reduce | Family::Matmul => self,
            _ => Module { steps: steps.clamp(1, 2), ..self },
        }
    }

    /// The module's WGSL text: with one octet a step, without the paired loops.
    pub(crate) fn source(self) -> String {
        let text = self.pieces().concat();
        if self.steps > 1 {
            return text;
        }
        let mut kept = String::with_capacity(text.len());
        let mut paired = false;
        for line in text.split_inclusive('\n') {
            match line.trim() {
                "//#steps2" => paired = true,
                "//#end" => paired = false,
                _ if !paired => kept.push_str(line),
                _ => {}
            }
        }
        kept
    }
}

/// The loads of inputs of `dtype` and the stores of rows: a word at a time, or through
/// vec4 views (16-byte loads and stores) where every binding is whole vectors.
fn loader(dtype: DType, vec4: bool) -> &'static [&'static str] {
    match (dtype, vec4) {
        (DType::F32, false) => &[LOAD_F32, LOAD_EACH, STORE_WORDS],
        (DType::F16, false) => &[LOAD_F16, LOAD_16BIT, LOAD_EACH, STORE_WORDS],
        (DType::Bf16, false) => &[LOAD_BF16, LOAD_16BIT, LOAD_EACH, STORE_WORDS],
        (DType::F32, true) => &[LOAD_F32X4, LOAD_EACH, STORE_VEC4],
        (DType::F16, true) => &[LOAD_F16, LOAD_16BITX4, LOAD_EACH, STORE_VEC4],
        (DType::Bf16, true) => &[LOAD_BF16, LOAD_16BITX4, LOAD_EACH, STORE_VEC4],
    }
}

/// A hash of every shader source (FNV-1a over the files in a fixed order): a tuned choice
/// is kept only for the shaders it was timed with.
pub(crate) fn sources_hash() -> u64 {
    use Family::*;
    let common = [
        PARAMS,
        NUMERICS,
        ROW_REDUCE,
        ROW_TREE,
        ROW_LANES,
        ROW_LANES_SUBGROUPS,
        GRAD,
        LOAD_F32,
        LOAD_F32X4,
        LOAD_F16,
        LOAD_BF16,
        LOAD_16BIT,
        LOAD_16BITX4,
        LOAD_EACH,
        STORE_WORDS,
        STORE_VEC4,
    ];
    let families =
        [RowStats, Softmax, SoftmaxXent, Divergence, Jsd, BinaryXent, GaussianKl, Distill, Baseline, Reduce, Matmul];
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for text in common.into_iter().chain(families.iter().map(|f| f.file())) {
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
