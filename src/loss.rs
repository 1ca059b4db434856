//! What is computed: the operations, their inputs on the host, and their options.
//!
//! One [`Loss`] value describes a whole job; the GPU path ([`crate::Context::compute`])
//! and the f64 reference ([`crate::reference::compute`]) take the same value, so the
//! tests compare the two on exactly the same inputs.

use half::{bf16, f16};

use crate::error::{Error, Result};

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

/// A distribution over the columns of each row: given as probabilities or as logits.
#[derive(Clone, Copy, Debug)]
pub enum Dist<'a> {
    /// Probabilities, rows summing to 1.
    Probs(Batch<'a>),
    /// Logits: the distribution is their softmax.
    Logits(Batch<'a>),
}

impl<'a> Dist<'a> {
    /// The data, whichever form it is in.
    pub fn batch(&self) -> &Batch<'a> {
        match self {
            Dist::Probs(b) | Dist::Logits(b) => b,
        }
    }

    /// Whether the rows are logits.
    pub fn is_logits(&self) -> bool {
        matches!(self, Dist::Logits(_))
    }
}

/// Options of cross-entropy with integer labels (PyTorch's `F.cross_entropy`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropyOptions<'a> {
    /// Rows whose label equals this are 0 and leave the mean's denominator.
    pub ignore_index: Option<i64>,
    /// Per-class weights, `cols` long: row loss times `W[y]`, mean divides by `Σ W[y]`.
    pub class_weights: Option<&'a [f32]>,
    /// `s` in `(1−s)·nll + (s/K)·Σ_j −log_softmax_j`.
    pub label_smoothing: f32,
}

/// One operation over a `[rows, cols]` batch, with its inputs and options.
///
/// Every variant gives one value per row (softmax gives a row of values); the
/// reductions over rows are in [`crate::Output`].
#[derive(Clone, Copy, Debug)]
pub enum Loss<'a> {
    /// Row max and argmax (first index of the max; NaN beats everything, then `+inf`).
    RowMax {
        /// The logits.
        logits: Batch<'a>,
    },
    /// `log Σ_j exp(x_ij)`.
    LogSumExp {
        /// The logits.
        logits: Batch<'a>,
    },
    /// `softmax(x_i / T)` or its log, written as `[rows, cols]`.
    Softmax {
        /// The logits.
        logits: Batch<'a>,
        /// `T > 0`.
        temperature: f32,
        /// Write log-softmax instead.
        log: bool,
    },
    /// `lse(x_i) − x_i,y_i` with ignore index, class weights and label smoothing.
    CrossEntropy {
        /// The logits.
        logits: Batch<'a>,
        /// One label per row.
        labels: Labels<'a>,
        /// PyTorch's options.
        options: CrossEntropyOptions<'a>,
    },
    /// `−Σ_j P_ij · log_softmax(x_i)_j`.
    CrossEntropyProbs {
        /// The logits.
        logits: Batch<'a>,
        /// The target probabilities `P`.
        target: Batch<'a>,
    },
    /// `KL(P‖Q) = Σ_j P_ij log(P_ij / Q_ij)`; reverse KL is the caller swapping them.
    KlDiv {
        /// The target distribution.
        p: Dist<'a>,
        /// The predicted distribution.
        q: Dist<'a>,
    },
    /// `−Σ_j p_ij log p_ij`.
    Entropy {
        /// The distribution.
        p: Dist<'a>,
    },
    /// Elementwise binary cross-entropy summed over the row's columns.
    BinaryCrossEntropy {
        /// Probabilities (logs clamped at −100) or logits (the stable form).
        input: Dist<'a>,
        /// Targets in [0, 1].
        target: Batch<'a>,
    },
    /// `−½ Σ_j (1 + logvar − μ² − exp(logvar))`.
    GaussianKl {
        /// The means `μ`.
        mean: Batch<'a>,
        /// The log-variances.
        logvar: Batch<'a>,
    },
    /// `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·CE(s, y)`.
    Distill {
        /// The student's logits `s`.
        student: Batch<'a>,
        /// The teacher's logits `t`.
        teacher: Batch<'a>,
        /// Hard labels `y`.
        labels: Labels<'a>,
        /// `τ > 0`.
        temperature: f32,
        /// `α` in [0, 1].
        alpha: f32,
    },
}

impl<'a> Loss<'a> {
    /// The first (or only) float input: it sets `rows`, `cols` and the dtype.
    pub fn primary(&self) -> &Batch<'a> {
        match self {
            Loss::RowMax { logits }
            | Loss::LogSumExp { logits }
            | Loss::Softmax { logits, .. }
            | Loss::CrossEntropy { logits, .. }
            | Loss::CrossEntropyProbs { logits, .. } => logits,
            Loss::KlDiv { p, .. } | Loss::Entropy { p } => p.batch(),
            Loss::BinaryCrossEntropy { input, .. } => input.batch(),
            Loss::GaussianKl { mean, .. } => mean,
            Loss::Distill { student, .. } => student,
        }
    }

    /// The second float input, where the operation has one.
    pub(crate) fn secondary(&self) -> Option<&Batch<'a>> {
        match self {
            Loss::CrossEntropyProbs { target, .. } => Some(target),
            Loss::KlDiv { q, .. } => Some(q.batch()),
            Loss::BinaryCrossEntropy { target, .. } => Some(target),
            Loss::GaussianKl { logvar, .. } => Some(logvar),
            Loss::Distill { teacher, .. } => Some(teacher),
            _ => None,
        }
    }

    /// The integer labels, where the operation has them.
    pub(crate) fn labels(&self) -> Option<&Labels<'a>> {
        match self {
            Loss::CrossEntropy { labels, .. } | Loss::Distill { labels, .. } => Some(labels),
            _ => None,
        }
    }

    /// Whether `--base 2` applies (it does not to lse, softmax and row max).
    pub(crate) fn takes_base(&self) -> bool {
        !matches!(self, Loss::RowMax { .. } | Loss::LogSumExp { .. } | Loss::Softmax { .. })
    }

    /// Checks shapes, lengths and scalar options; the value checks (labels in range,
    /// probabilities non-negative) happen while the data is read.
    pub fn validate(&self) -> Result<()> {
        let a = self.primary();
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
        if let Loss::CrossEntropy { options, .. } = self
            && let Some(w) = options.class_weights
            && w.len() != a.cols
        {
            return Err(Error::Shape {
                what: "class weights",
                detail: format!("has {} entries but there are {} columns", w.len(), a.cols),
            });
        }
        self.validate_options()
    }

    /// Checks the scalar options (temperature, alpha, smoothing, ignore index) alone.
    pub(crate) fn validate_options(&self) -> Result<()> {
        match self {
            Loss::Softmax { temperature, .. } | Loss::Distill { temperature, .. }
                if !(temperature.is_finite() && *temperature > 0.0) =>
            {
                Err(Error::Option {
                    name: "temperature",
                    detail: format!("{temperature} is not a positive finite number"),
                })
            }
            Loss::Distill { alpha, .. } if !(0.0..=1.0).contains(alpha) => {
                Err(Error::Option { name: "alpha", detail: format!("{alpha} is not in [0, 1]") })
            }
            Loss::CrossEntropy { options, .. } => {
                let s = options.label_smoothing;
                if !(0.0..=1.0).contains(&s) {
                    return Err(Error::Option { name: "label_smoothing", detail: format!("{s} is not in [0, 1]") });
                }
                if let Some(i) = options.ignore_index
                    && (i32::try_from(i).is_err() || i == i64::from(i32::MIN))
                {
                    return Err(Error::Option {
                        name: "ignore_index",
                        detail: format!("{i} is outside the supported range ({}..={})", i32::MIN + 1, i32::MAX),
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
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
