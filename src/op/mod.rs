//! What is computed, apart from where its inputs live.
//!
//! An [`Op`] is the kind of loss and its options, and nothing else: no data. A [`Task`]
//! binds it to its inputs, either host slices ([`Loss`](crate::Loss): chunks of a file, a
//! caller's `&[f32]`) or ranges of device buffers ([`DeviceLoss`](crate::DeviceLoss)). The
//! command line, `xent bench`, the embedding API and the tests all take their list of
//! operations from [`Op::ALL`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

mod options;

pub use options::{OptionInfo, OptionValue};

/// How a distribution is given: as probabilities, or as logits whose softmax it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    /// Rows of probabilities, each summing to 1.
    Probs,
    /// Rows of logits.
    Logits,
}

/// One operation over `[rows, cols]` inputs: the kind of loss and its options.
///
/// Every operation gives one value per row (softmax gives a row of values); the
/// reductions over rows come with the results. The semantics are those of the command
/// line's contract, `docs/CLI.md`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// Row max and argmax (first index of the max; NaN beats everything, then `+inf`).
    RowMax,
    /// `log Σ_j exp(x_ij)`.
    LogSumExp,
    /// `softmax(x_i / T)` or its log, written as `[rows, cols]`.
    Softmax {
        /// `T > 0`.
        temperature: f32,
        /// Write log-softmax instead.
        log: bool,
    },
    /// `lse(x_i) − x_i,y_i` against integer labels (PyTorch's `F.cross_entropy`); class
    /// weights, when bound, scale a row by `W[y]` and the mean divides by `Σ W[y]`.
    CrossEntropy {
        /// Rows whose label equals this are 0 and leave the mean's denominator.
        ignore_index: Option<i64>,
        /// `s` in `(1−s)·nll + (s/K)·Σ_j −log_softmax_j`, in `[0, 1]`.
        label_smoothing: f32,
        /// `λ ≥ 0`: adds `λ·lse(x_i)²` to each row not ignored (PaLM's z-loss; not scaled
        /// by the class weight, as Liger-Kernel's `lse_square_scale`).
        z_loss: f32,
        /// Also compute each row's entropy `H(softmax(x_i)) = lse(x_i) − Σ_j p_ij·x_ij` in
        /// the same pass (policy-entropy logging): reported, never added to the loss. It is
        /// written for every row (ignored ones too) to word 3 of the row's aux record; the
        /// host path's [`Output::entropy_sum`](crate::Output::entropy_sum) sums the rows
        /// not ignored. `-inf` logits contribute 0; a row with NaN or `+inf`, or all `-inf`,
        /// is NaN.
        entropy: bool,
    },
    /// `−Σ_j P_ij · log_softmax(x_i)_j` against target probabilities `P` (the second input).
    CrossEntropyProbs {
        /// `λ ≥ 0`: adds `λ·lse(x_i)²` to each row (PaLM's z-loss).
        z_loss: f32,
        /// Also compute each row's entropy of `softmax(x_i)` in the same pass, as
        /// [`Op::CrossEntropy`]'s `entropy`.
        entropy: bool,
    },
    /// `KL(P‖Q) = Σ_j P_ij log(P_ij / Q_ij)`; reverse KL is the caller swapping the inputs.
    KlDiv {
        /// How P (the first input) is given.
        p: Form,
        /// How Q (the second input, the one with a gradient) is given.
        q: Form,
    },
    /// The generalized Jensen-Shannon divergence `JSD_β(P‖Q) = β·KL(P‖M) + (1−β)·KL(Q‖M)`,
    /// `M = β·P + (1−β)·Q`, with Liger-Kernel's conventions at the ends: `β = 0` is the
    /// forward `KL(P‖Q)`, `β = 1` the reverse `KL(Q‖P)`. P is the teacher, Q the student
    /// (the input with a gradient).
    Jsd {
        /// How P (the first input) is given.
        p: Form,
        /// How Q (the second input) is given.
        q: Form,
        /// `β` in [0, 1]: the weight of P in the mixture.
        beta: f32,
        /// `τ > 0`: inputs given as logits are read as `softmax(x/τ)`.
        temperature: f32,
    },
    /// `H(P) = −Σ_j p_ij log p_ij`.
    Entropy {
        /// How P is given.
        p: Form,
    },
    /// Elementwise binary cross-entropy against targets in [0, 1], summed over the row.
    BinaryCrossEntropy {
        /// Probabilities (logs clamped at −100, as PyTorch) or logits (the stable form).
        input: Form,
    },
    /// The VAE's `−½ Σ_j (1 + logvar − μ² − exp(logvar))` (inputs: means, log-variances).
    GaussianKl,
    /// `α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)) + (1−α)·CE(s, y)` (inputs: the student's
    /// logits, the teacher's, labels).
    Distill {
        /// `τ > 0`.
        temperature: f32,
        /// `α` in [0, 1].
        alpha: f32,
    },
    /// Cross-entropy of the logits `x_i = W·h_i + b` of a linear head (a language model's
    /// last layer) against integer labels, without the `[rows, classes]` logits in memory:
    /// the inputs are the hidden states `H [rows, d]`, the head's weight `W [classes, d]`
    /// (row-major, as `torch.nn.Linear.weight`), an optional f32 bias `b [classes]` (bound
    /// where the class weights of [`Op::CrossEntropy`] go) and the labels. The loss of a
    /// row is [`Op::CrossEntropy`]'s over its logits ([`Op::head`]); the gradients are of
    /// `H`, `W` and `b`. Not in [`Op::ALL`]: its inputs are not rows of classes.
    LinearCrossEntropy {
        /// Rows whose label equals this are 0 and leave the mean's denominator.
        ignore_index: Option<i64>,
        /// `s` in `(1−s)·nll + (s/K)·Σ_j −log_softmax_j`, in `[0, 1]`.
        label_smoothing: f32,
        /// `λ ≥ 0`: adds `λ·lse(x_i)²` to each row not ignored.
        z_loss: f32,
    },
}

/// What an operation takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The first float input: it sets the shape and dtype.
    pub first: Slot,
    /// The second float input, where there is one (same shape and dtype).
    pub second: Option<Slot>,
    /// Integer labels, one per row.
    pub labels: bool,
    /// Optional per-class weights, `cols` long (the bias, `classes` long, of
    /// [`Op::LinearCrossEntropy`]).
    pub weights: bool,
}

/// One float input of an operation: its name and the values it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The name errors and the command line use (`logits`, `target`, `q`, ...).
    pub name: &'static str,
    /// What its values are.
    pub domain: Domain,
}

/// The values a float input holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Any finite reals, `-inf` for masked classes: logits, means, log-variances.
    Logits,
    /// Rows of probabilities (non-negative, summing to 1).
    Probs,
    /// Elementwise values in [0, 1] (binary targets and probabilities).
    Unit,
}

impl Op {
    /// Every row operation, with its default options (the command line's defaults); the
    /// fused linear cross-entropy, whose inputs are no rows of classes, is [`Op::LINEAR_CE`].
    pub const ALL: [Op; 11] = [
        Op::RowMax,
        Op::LogSumExp,
        Op::Softmax { temperature: 1.0, log: false },
        Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false },
        Op::CrossEntropyProbs { z_loss: 0.0, entropy: false },
        Op::KlDiv { p: Form::Logits, q: Form::Logits },
        Op::Jsd { p: Form::Logits, q: Form::Logits, beta: 0.5, temperature: 1.0 },
        Op::Entropy { p: Form::Logits },
        Op::BinaryCrossEntropy { input: Form::Logits },
        Op::GaussianKl,
        Op::Distill { temperature: 1.0, alpha: 0.5 },
    ];

    /// The fused linear cross-entropy with its default options.
    pub const LINEAR_CE: Op = Op::LinearCrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0 };

    /// The canonical name: the command line's command (`ce-probs` is `ce --target-probs`),
    /// the `op` of `xent bench` and of JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Op::RowMax => "row-max",
            Op::LogSumExp => "lse",
            Op::Softmax { .. } => "softmax",
            Op::CrossEntropy { .. } => "ce",
            Op::CrossEntropyProbs { .. } => "ce-probs",
            Op::KlDiv { .. } => "kl",
            Op::Jsd { .. } => "jsd",
            Op::Entropy { .. } => "entropy",
            Op::BinaryCrossEntropy { .. } => "bce",
            Op::GaussianKl => "gaussian-kl",
            Op::Distill { .. } => "distill",
            Op::LinearCrossEntropy { .. } => "linear-ce",
        }
    }

    /// The loss over the logits: [`Op::CrossEntropy`] with the options of
    /// [`Op::LinearCrossEntropy`]; `None` for the operations that read their logits.
    pub fn head(&self) -> Option<Op> {
        match *self {
            Op::LinearCrossEntropy { ignore_index, label_smoothing, z_loss } => {
                Some(Op::CrossEntropy { ignore_index, label_smoothing, z_loss, entropy: false })
            }
            _ => None,
        }
    }

    /// The inputs the operation takes.
    pub fn signature(&self) -> Signature {
        use Domain::{Logits, Probs, Unit};
        let slot = |name, domain| Slot { name, domain };
        let form = |name, f: Form| slot(name, if f == Form::Logits { Logits } else { Probs });
        let one = |first| Signature { first, second: None, labels: false, weights: false };
        let two = |first, second| Signature { second: Some(second), ..one(first) };
        match *self {
            Op::RowMax | Op::LogSumExp | Op::Softmax { .. } => one(slot("logits", Logits)),
            Op::CrossEntropy { .. } => Signature { labels: true, weights: true, ..one(slot("logits", Logits)) },
            Op::CrossEntropyProbs { .. } => two(slot("logits", Logits), slot("target", Probs)),
            Op::KlDiv { p, q } | Op::Jsd { p, q, .. } => two(form("p", p), form("q", q)),
            Op::Entropy { p } => one(form("p", p)),
            Op::BinaryCrossEntropy { input } => {
                let first = if input == Form::Logits { slot("input", Logits) } else { slot("input", Unit) };
                two(first, slot("target", Unit))
            }
            Op::GaussianKl => two(slot("mean", Logits), slot("logvar", Logits)),
            Op::Distill { .. } => Signature { labels: true, ..two(slot("student", Logits), slot("teacher", Logits)) },
            Op::LinearCrossEntropy { .. } => {
                Signature { labels: true, weights: true, ..two(slot("hidden", Logits), slot("weight", Logits)) }
            }
        }
    }

    /// Whether `--base 2` applies (it does not to row max, lse and softmax).
    pub fn takes_base(&self) -> bool {
        !matches!(self, Op::RowMax | Op::LogSumExp | Op::Softmax { .. })
    }

    /// Whether soft-capping ([`Task::softcap`]) applies: the operation reads logits, and
    /// they are logits of a distribution (not BCE's elementwise ones, nor Gaussian KL's).
    pub fn takes_softcap(&self) -> bool {
        match *self {
            Op::BinaryCrossEntropy { .. } | Op::GaussianKl => false,
            Op::KlDiv { p, q } | Op::Jsd { p, q, .. } => p == Form::Logits || q == Form::Logits,
            Op::Entropy { p } => p == Form::Logits,
            _ => true,
        }
    }

    /// Whether the operation computes each row's entropy besides its loss (cross-entropy's
    /// `entropy` option).
    pub fn has_entropy(&self) -> bool {
        matches!(self, Op::CrossEntropy { entropy: true, .. } | Op::CrossEntropyProbs { entropy: true, .. })
    }

    /// The label that marks a row to leave out (cross-entropy's, with labels or of a linear
    /// head), where one is set.
    pub fn ignore_index(&self) -> Option<i64> {
        match *self {
            Op::CrossEntropy { ignore_index, .. } | Op::LinearCrossEntropy { ignore_index, .. } => ignore_index,
            _ => None,
        }
    }

    /// Whether the operation writes a row of values per row (softmax) instead of one value.
    pub fn writes_rows(&self) -> bool {
        matches!(self, Op::Softmax { .. })
    }

    /// Whether the kernels of the operation run the online max-and-sum that a layout's tile
    /// form changes ([`crate::RowLayout::tile`]): elsewhere the two forms are the same code,
    /// and the tuner and the sweep time one. Cross-entropy's passes are element by element in
    /// both forms, so that its loss keeps its bits with the entropy or the report beside it.
    pub fn has_tile_form(&self) -> bool {
        match *self {
            Op::RowMax | Op::LogSumExp | Op::Softmax { .. } | Op::Jsd { .. } | Op::Distill { .. } => true,
            Op::KlDiv { p, q } => p == Form::Logits && q == Form::Probs,
            _ => false,
        }
    }

    /// Whether the operation gives a per-row argmax (row max, and cross-entropy's prediction).
    pub fn has_argmax(&self) -> bool {
        matches!(self, Op::RowMax | Op::CrossEntropy { .. })
    }

    /// Whether a gradient with respect to the logits is written in the same pass: which
    /// logits is [`Op::grad_of`].
    pub fn has_gradient(&self) -> bool {
        self.grad_of().is_some()
    }

    /// The name of the input whose gradient the operation writes, where it has one.
    pub fn grad_of(&self) -> Option<&'static str> {
        match self {
            Op::CrossEntropy { .. } | Op::CrossEntropyProbs { .. } => Some("logits"),
            Op::KlDiv { q: Form::Logits, .. } | Op::Jsd { q: Form::Logits, .. } => Some("q"),
            Op::Entropy { p: Form::Logits } => Some("p"),
            Op::BinaryCrossEntropy { input: Form::Logits } => Some("input"),
            Op::Distill { .. } => Some("student"),
            Op::LinearCrossEntropy { .. } => Some("hidden"),
            _ => None,
        }
    }

    /// Checks the options, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let option = |name, detail| Err(Error::Option { name, detail });
        match *self {
            Op::Softmax { temperature, .. } | Op::Distill { temperature, .. } | Op::Jsd { temperature, .. }
                if !(temperature.is_finite() && temperature > 0.0) =>
            {
                option("temperature", format!("{temperature} is not a positive finite number"))
            }
            Op::Distill { alpha, .. } if !(0.0..=1.0).contains(&alpha) => {
                option("alpha", format!("{alpha} is not in [0, 1]"))
            }
            Op::Jsd { beta, .. } if !(0.0..=1.0).contains(&beta) => option("beta", format!("{beta} is not in [0, 1]")),
            Op::CrossEntropy { label_smoothing: s, .. } | Op::LinearCrossEntropy { label_smoothing: s, .. }
                if !(0.0..=1.0).contains(&s) =>
            {
                option("label_smoothing", format!("{s} is not in [0, 1]"))
            }
            Op::CrossEntropy { z_loss, .. }
            | Op::CrossEntropyProbs { z_loss, .. }
            | Op::LinearCrossEntropy { z_loss, .. }
                if !(z_loss.is_finite() && z_loss >= 0.0) =>
            {
                option("z_loss", format!("{z_loss} is not a non-negative finite number"))
            }
            Op::CrossEntropy { ignore_index: Some(i), .. } | Op::LinearCrossEntropy { ignore_index: Some(i), .. }
                if i32::try_from(i).is_err() || i == i64::from(i32::MIN) =>
            {
                option("ignore_index", format!("{i} is outside the supported range ({}..={})", i32::MIN + 1, i32::MAX))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = Error;

    /// The operation of a canonical name, with its default options.
    fn from_str(s: &str) -> Result<Op> {
        Op::ALL.into_iter().chain([Op::LINEAR_CE]).find(|op| op.name() == s).ok_or_else(|| Error::Option {
            name: "op",
            detail: format!("{s:?} is not an operation; the operations are {}", Op::ALL.map(|op| op.name()).join(", ")),
        })
    }
}

/// The inputs of one operation, wherever they live: `B` a float input, `L` the labels,
/// `W` the class weights.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<B, L, W> {
    /// The first float input ([`Signature::first`]): it sets the shape and dtype.
    pub first: B,
    /// The second float input, for the operations that take one.
    pub second: Option<B>,
    /// Integer labels, one per row.
    pub labels: Option<L>,
    /// Per-class weights (cross-entropy with labels); the bias of [`Op::LinearCrossEntropy`].
    pub weights: Option<W>,
}

/// An operation bound to its inputs: host slices in [`Loss`](crate::Loss), device ranges in
/// [`DeviceLoss`](crate::DeviceLoss).
#[derive(Clone, Copy, Debug)]
pub struct Task<B, L, W> {
    /// What is computed.
    pub op: Op,
    /// Over what.
    pub inputs: Inputs<B, L, W>,
    /// `c` of Gemma 2's soft-capping: the logits inputs are read as `c·tanh(x/c)` (before
    /// any temperature), and a gradient is of the logits as stored (chained through
    /// `1 − tanh²`). `None`: read as they are. See [`Op::takes_softcap`].
    pub softcap: Option<f32>,
}

impl<B: Copy, L: Copy, W: Copy> Task<B, L, W> {
    /// `op` over `first` alone; add the other inputs its [`Op::signature`] names with the
    /// `with_` methods.
    pub fn new(op: Op, first: B) -> Self {
        Task { op, inputs: Inputs { first, second: None, labels: None, weights: None }, softcap: None }
    }

    /// Binds the second float input (target, Q, log-variances, the teacher's logits).
    pub fn with_second(mut self, second: B) -> Self {
        self.inputs.second = Some(second);
        self
    }

    /// Binds the labels.
    pub fn with_labels(mut self, labels: impl Into<L>) -> Self {
        self.inputs.labels = Some(labels.into());
        self
    }

    /// Binds class weights.
    pub fn with_weights(mut self, weights: W) -> Self {
        self.inputs.weights = Some(weights);
        self
    }

    /// Binds the bias of [`Op::LinearCrossEntropy`]'s head (`classes` f32 values, in the
    /// slot of the class weights).
    pub fn with_bias(self, bias: W) -> Self {
        self.with_weights(bias)
    }

    /// Soft-caps the logits inputs at `c` (see [`Task::softcap`]).
    pub fn with_softcap(mut self, c: f32) -> Self {
        self.softcap = Some(c);
        self
    }

    /// The float inputs the soft-capping applies to, in the order [`Task::kernel_inputs`]
    /// gives them: the logits of an operation that takes it.
    pub(crate) fn capped(&self) -> Vec<bool> {
        let sig = self.op.signature();
        let capped = |s: Slot| self.softcap.is_some() && s.domain == Domain::Logits;
        let mut v = vec![capped(sig.first)];
        v.extend(sig.second.map(capped).filter(|_| self.inputs.second.is_some()));
        if matches!(self.op, Op::CrossEntropyProbs { .. }) {
            v.reverse();
        }
        v
    }

    /// The first float input: it sets `rows`, `cols` and the dtype.
    pub fn first(&self) -> &B {
        &self.inputs.first
    }

    /// Checks the options, and that the inputs bound are those the operation takes.
    pub fn check_inputs(&self) -> Result<()> {
        self.op.validate()?;
        if let Some(c) = self.softcap {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::Option { name: "softcap", detail: format!("{c} is not a positive finite number") });
            }
            if !self.op.takes_softcap() {
                return Err(Error::Option {
                    name: "softcap",
                    detail: format!(
                        "{} reads no logits to cap; soft-capping applies to lse, softmax, ce, kl, jsd, entropy and \
                         distill from logits",
                        self.op
                    ),
                });
            }
        }
        let sig = self.op.signature();
        let (op, i) = (self.op.name(), &self.inputs);
        let shape = |detail: String| Err(Error::Shape { what: "inputs", detail });
        match (sig.second, i.second.is_some()) {
            (Some(s), false) => {
                return shape(format!("{op} needs a second input, {}: bind it with with_second", s.name));
            }
            (None, true) => return shape(format!("{op} takes one float input; a second was bound")),
            _ => {}
        }
        match (sig.labels, i.labels.is_some()) {
            (true, false) => return shape(format!("{op} needs labels: bind them with with_labels")),
            (false, true) => return shape(format!("{op} takes no labels")),
            _ => {}
        }
        if !sig.weights && i.weights.is_some() {
            return shape(format!("{op} takes no class weights"));
        }
        Ok(())
    }

    /// The float inputs in the order the row kernel reads them (its inputs a and b), named
    /// for messages: cross-entropy with probability targets reads the target first.
    pub(crate) fn kernel_inputs(&self) -> Vec<(&'static str, B)> {
        let sig = self.op.signature();
        let mut v = vec![(sig.first.name, self.inputs.first)];
        v.extend(sig.second.map(|s| s.name).zip(self.inputs.second));
        if matches!(self.op, Op::CrossEntropyProbs { .. }) {
            v.reverse();
        }
        v
    }
}

#[cfg(test)]
mod tests;
