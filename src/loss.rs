//! The inputs of an operation on the host: float slices of three element types, integer
//! labels, and [`Loss`], an [`Op`] bound to them.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::op::{Form, Op, Task};

/// Element type of a float input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16, widened exactly to f32 on load.
    F16,
    /// bfloat16 (the top half of an f32), widened exactly on load.
    Bf16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }
}

/// A borrowed slice of floats in one of the supported element types.
#[derive(Clone, Copy, Debug)]
pub enum Floats<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f16 elements.
    F16(&'a [f16]),
    /// bf16 elements.
    Bf16(&'a [bf16]),
}

impl Floats<'_> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Floats::F32(_) => DType::F32,
            Floats::F16(_) => DType::F16,
            Floats::Bf16(_) => DType::Bf16,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Floats::F32(v) => v.len(),
            Floats::F16(v) => v.len(),
            Floats::Bf16(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` widened to f64 (exact for every input type).
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Floats::F32(v) => f64::from(v[i]),
            Floats::F16(v) => f64::from(v[i]),
            Floats::Bf16(v) => f64::from(v[i]),
        }
    }

    /// The raw little-endian bytes of elements `start..end`.
    pub fn bytes(&self, start: usize, end: usize) -> &[u8] {
        match self {
            Floats::F32(v) => bytemuck::cast_slice(&v[start..end]),
            Floats::F16(v) => bytemuck::cast_slice(&v[start..end]),
            Floats::Bf16(v) => bytemuck::cast_slice(&v[start..end]),
        }
    }
}

impl<'a> From<&'a [f32]> for Floats<'a> {
    fn from(v: &'a [f32]) -> Self {
        Floats::F32(v)
    }
}
impl<'a> From<&'a [f16]> for Floats<'a> {
    fn from(v: &'a [f16]) -> Self {
        Floats::F16(v)
    }
}
impl<'a> From<&'a [bf16]> for Floats<'a> {
    fn from(v: &'a [bf16]) -> Self {
        Floats::Bf16(v)
    }
}

/// A row-major `[rows, cols]` batch on the host: one row per prediction.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// `rows * cols` elements, row-major.
    pub data: Floats<'a>,
    /// Rows (predictions).
    pub rows: usize,
    /// Columns (classes) of every row.
    pub cols: usize,
}

impl<'a> Batch<'a> {
    /// Wraps `data` as `[rows, cols]`; the length must be `rows * cols`.
    pub fn new(data: impl Into<Floats<'a>>, rows: usize, cols: usize) -> Result<Self> {
        let data = data.into();
        let want = rows
            .checked_mul(cols)
            .ok_or(Error::Shape { what: "batch", detail: format!("{rows} x {cols} elements overflow usize") })?;
        if data.len() != want {
            return Err(Error::Shape {
                what: "batch",
                detail: format!(
                    "{} elements given for [{rows}, {cols}] (= {want}); pass rows*cols values in row-major order",
                    data.len()
                ),
            });
        }
        Ok(Batch { data, rows, cols })
    }

    /// Element `(r, c)` widened to f64.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data.get(r * self.cols + c)
    }
}

/// Integer class labels, one per row, in any of the accepted integer types.
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// i32 labels.
    I32(&'a [i32]),
    /// i64 labels (checked to fit before narrowing).
    I64(&'a [i64]),
    /// u8 labels.
    U8(&'a [u8]),
    /// u16 labels.
    U16(&'a [u16]),
    /// u32 labels.
    U32(&'a [u32]),
}

impl Labels<'_> {
    /// Number of labels.
    pub fn len(&self) -> usize {
        match self {
            Labels::I32(v) => v.len(),
            Labels::I64(v) => v.len(),
            Labels::U8(v) => v.len(),
            Labels::U16(v) => v.len(),
            Labels::U32(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Label `i`, widened without loss (the range check happens on this value).
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Labels::I32(v) => i64::from(v[i]),
            Labels::I64(v) => v[i],
            Labels::U8(v) => i64::from(v[i]),
            Labels::U16(v) => i64::from(v[i]),
            Labels::U32(v) => i64::from(v[i]),
        }
    }
}

impl<'a> From<&'a [i32]> for Labels<'a> {
    fn from(v: &'a [i32]) -> Self {
        Labels::I32(v)
    }
}
impl<'a> From<&'a [i64]> for Labels<'a> {
    fn from(v: &'a [i64]) -> Self {
        Labels::I64(v)
    }
}
impl<'a> From<&'a [u8]> for Labels<'a> {
    fn from(v: &'a [u8]) -> Self {
        Labels::U8(v)
    }
}
impl<'a> From<&'a [u16]> for Labels<'a> {
    fn from(v: &'a [u16]) -> Self {
        Labels::U16(v)
    }
}
impl<'a> From<&'a [u32]> for Labels<'a> {
    fn from(v: &'a [u32]) -> Self {
        Labels::U32(v)
    }
}

/// A distribution over the columns of each row, as the reference and the row kernels
/// take it: an input with its [`Form`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dist<'a> {
    /// Probabilities, rows summing to 1.
    Probs(Batch<'a>),
    /// Logits: the distribution is their softmax.
    Logits(Batch<'a>),
}

impl<'a> Dist<'a> {
    pub(crate) fn new(form: Form, batch: Batch<'a>) -> Self {
        match form {
            Form::Probs => Dist::Probs(batch),
            Form::Logits => Dist::Logits(batch),
        }
    }

    /// The data, whichever form it is in.
    pub(crate) fn batch(&self) -> &Batch<'a> {
        match self {
            Dist::Probs(b) | Dist::Logits(b) => b,
        }
    }

    /// Whether the rows are logits.
    pub(crate) fn is_logits(&self) -> bool {
        matches!(self, Dist::Logits(_))
    }
}

/// Cross-entropy's options and class weights, as the reference and the row kernel take them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CrossEntropyOptions<'a> {
    pub(crate) ignore_index: Option<i64>,
    pub(crate) class_weights: Option<&'a [f32]>,
    pub(crate) label_smoothing: f32,
    pub(crate) z_loss: f32,
}

/// An operation over host slices: `Loss::new(op, logits).with_labels(&labels[..])`.
///
/// One value describes a whole job; the GPU path ([`crate::Context::compute`]) and the
/// f64 reference ([`crate::reference::compute`]) take the same value, so the tests compare
/// the two on exactly the same inputs.
pub type Loss<'a> = Task<Batch<'a>, Labels<'a>, &'a [f32]>;

impl<'a> Loss<'a> {
    /// The first float input: it sets `rows`, `cols` and the dtype.
    pub fn primary(&self) -> &Batch<'a> {
        &self.inputs.first
    }

    /// The second float input, where the operation has one.
    pub(crate) fn secondary(&self) -> Option<&Batch<'a>> {
        self.inputs.second.as_ref()
    }

    /// The integer labels, where the operation has them.
    pub(crate) fn labels(&self) -> Option<&Labels<'a>> {
        self.inputs.labels.as_ref()
    }

    /// The second input with its form, for the operations that take a distribution there.
    pub(crate) fn dists(&self) -> (Dist<'a>, Option<Dist<'a>>) {
        let (a, b) = (self.inputs.first, self.inputs.second);
        match self.op {
            Op::KlDiv { p, q } | Op::Jsd { p, q, .. } => (Dist::new(p, a), b.map(|b| Dist::new(q, b))),
            Op::Entropy { p } => (Dist::new(p, a), None),
            Op::BinaryCrossEntropy { input } => (Dist::new(input, a), None),
            _ => (Dist::Logits(a), None),
        }
    }

    /// Cross-entropy's options with the class weights bound.
    pub(crate) fn ce_options(&self) -> CrossEntropyOptions<'a> {
        match self.op {
            Op::CrossEntropy { ignore_index, label_smoothing, z_loss, .. } => {
                CrossEntropyOptions { ignore_index, class_weights: self.inputs.weights, label_smoothing, z_loss }
            }
            // the weights slot holds the head's bias
            Op::LinearCrossEntropy { ignore_index, label_smoothing, z_loss } => {
                CrossEntropyOptions { ignore_index, class_weights: None, label_smoothing, z_loss }
            }
            _ => CrossEntropyOptions::default(),
        }
    }

    /// Checks the options, the inputs bound and their shapes; the value checks (labels in
    /// range, probabilities non-negative) happen while the data is read.
    pub fn validate(&self) -> Result<()> {
        self.check_inputs()?;
        let a = self.primary();
        if self.op.head().is_some() {
            return self.validate_head();
        }
        if let Some(b) = self.secondary()
            && (b.rows, b.cols) != (a.rows, a.cols)
        {
            return Err(Error::Shape {
                what: "second input",
                detail: format!(
                    "is [{}, {}] but the first is [{}, {}]; both must have the same shape",
                    b.rows, b.cols, a.rows, a.cols
                ),
            });
        }
        if let Some(y) = self.labels()
            && y.len() != a.rows
        {
            return Err(Error::Shape {
                what: "labels",
                detail: format!("has {} entries but there are {} rows", y.len(), a.rows),
            });
        }
        if let Some(w) = self.inputs.weights
            && w.len() != a.cols
        {
            return Err(Error::Shape {
                what: "class weights",
                detail: format!("has {} entries but there are {} columns", w.len(), a.cols),
            });
        }
        Ok(())
    }
}

impl Loss<'_> {
    /// [`Loss::validate`]'s shape checks of [`Op::LinearCrossEntropy`]: hidden `[rows, d]`,
    /// weight `[classes, d]`, bias `classes` long, labels `rows` long.
    fn validate_head(&self) -> Result<()> {
        let (h, w) = (self.primary(), self.secondary());
        let shape = |what, detail| Err(Error::Shape { what, detail });
        let Some(w) = w else { return shape("weight", "is missing".into()) };
        if w.cols != h.cols || w.rows == 0 {
            return shape(
                "weight",
                format!(
                    "is [{}, {}] but the hidden states are [{}, {}]; it must be [classes ≥ 1, {}]",
                    w.rows, w.cols, h.rows, h.cols, h.cols
                ),
            );
        }
        if let Some(y) = self.labels()
            && y.len() != h.rows
        {
            return shape("labels", format!("has {} entries but there are {} rows", y.len(), h.rows));
        }
        if let Some(b) = self.inputs.weights
            && b.len() != w.rows
        {
            return shape("bias", format!("has {} entries but there are {} classes", b.len(), w.rows));
        }
        Ok(())
    }
}

/// How the per-row values are reduced over rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// No reduction: per-row values (the command line reports their sum).
    None,
    /// The sum over rows.
    Sum,
    /// The sum over the mean's denominator (rows, or Σ W\[y\] for weighted cross-entropy).
    #[default]
    Mean,
}

/// The unit of the logs: nats (natural) or bits (base 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogBase {
    #[default]
    /// Natural logarithms.
    Nats,
    /// Base-2 logarithms.
    Bits,
}

impl LogBase {
    /// The factor applied to results that take a base.
    pub fn scale(self) -> f64 {
        match self {
            LogBase::Nats => 1.0,
            LogBase::Bits => std::f64::consts::LOG2_E,
        }
    }
}
