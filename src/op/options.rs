//! An operation's options as data: their names, values and help, for the command line
//! (which makes its flags from them) and for anyone who sets them by name.

use super::{Form, Op};
use crate::error::{Error, Result};

/// The value of one option of an operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptionValue {
    /// A number (a temperature, a weight, a factor).
    Number(f32),
    /// On or off.
    Switch(bool),
    /// A class index, or none.
    Index(Option<i64>),
    /// How the input of the same name is given.
    Form(Form),
}

/// One option of an operation, as [`Op::options`] lists it: the command line makes its flag
/// from the name (`label_smoothing` is `--label-smoothing`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptionInfo {
    /// The library's name of the option.
    pub name: &'static str,
    /// Its value in this operation.
    pub value: OptionValue,
    /// What it does, in a line.
    pub help: &'static str,
}

/// The options cross-entropy with labels and the fused linear cross-entropy share.
fn ce_options(ignore_index: Option<i64>, label_smoothing: f32, z_loss: f32) -> Vec<OptionInfo> {
    use OptionValue::{Index, Number};
    let o = |name, value, help| OptionInfo { name, value, help };
    vec![
        o("ignore_index", Index(ignore_index), "Rows whose label is I count 0 and leave the mean's denominator."),
        o("label_smoothing", Number(label_smoothing), "Label smoothing s in [0, 1]."),
        o("z_loss", Number(z_loss), "Adds λ·lse² to each row not ignored (PaLM's z-loss), λ ≥ 0."),
    ]
}

/// The help of cross-entropy's `entropy` switch.
const ENTROPY_HELP: &str = "Also report the mean entropy of softmax(logits) over the rows not ignored (computed in the same pass; not part of the loss).";

impl Op {
    /// What the operation computes, in a line (the command line's help).
    pub fn summary(&self) -> &'static str {
        match self {
            Op::RowMax => "Row max and argmax.",
            Op::LogSumExp => "Row-wise log-sum-exp: log Σ_j exp(L_ij).",
            Op::Softmax { .. } => "Softmax (or log-softmax) of each row, written to --out as [rows, cols] f32.",
            Op::CrossEntropy { .. } => "Softmax cross-entropy against integer labels or target probabilities.",
            Op::CrossEntropyProbs { .. } => "Softmax cross-entropy against target probabilities.",
            Op::KlDiv { .. } => "KL(P‖Q) = Σ_j P_ij log(P_ij / Q_ij) per row.",
            Op::Jsd { .. } => {
                "Generalized Jensen-Shannon divergence β·KL(P‖M) + (1−β)·KL(Q‖M), M = β·P + (1−β)·Q, per row."
            }
            Op::Entropy { .. } => "Entropy −Σ_j p_ij log p_ij per row.",
            Op::BinaryCrossEntropy { .. } => "Binary cross-entropy, summed over each row's columns.",
            Op::GaussianKl => "Gaussian (VAE) KL against N(0, 1): −½ Σ_j (1 + LV − MU² − exp(LV)).",
            Op::Distill { .. } => "Distillation: α·τ²·KL(softmax(T/τ) ‖ softmax(S/τ)) + (1−α)·CE(S, y).",
            Op::LinearCrossEntropy { .. } => {
                "Cross-entropy of a linear head's logits H·Wᵀ + b against labels, without the logits in memory."
            }
        }
    }

    /// The operation's options with their values here, in a fixed order.
    pub fn options(&self) -> Vec<OptionInfo> {
        use OptionValue::{Form as F, Number, Switch};
        let o = |name, value, help| OptionInfo { name, value, help };
        match *self {
            Op::RowMax | Op::LogSumExp | Op::GaussianKl => vec![],
            Op::Softmax { temperature, log } => vec![
                o("temperature", Number(temperature), "Divide the logits by T first."),
                o("log", Switch(log), "Write log-softmax instead."),
            ],
            Op::CrossEntropy { ignore_index, label_smoothing, z_loss, entropy } => {
                let mut v = ce_options(ignore_index, label_smoothing, z_loss);
                v.push(o("entropy", Switch(entropy), ENTROPY_HELP));
                v
            }
            Op::LinearCrossEntropy { ignore_index, label_smoothing, z_loss } => {
                ce_options(ignore_index, label_smoothing, z_loss)
            }
            Op::CrossEntropyProbs { z_loss, entropy } => vec![
                o("z_loss", Number(z_loss), "Adds λ·lse² to each row (PaLM's z-loss), λ ≥ 0."),
                o("entropy", Switch(entropy), ENTROPY_HELP),
            ],
            Op::KlDiv { p, q } => vec![o("p", F(p), "How P is given."), o("q", F(q), "How Q is given.")],
            Op::Jsd { p, q, beta, temperature } => vec![
                o("p", F(p), "How P is given."),
                o("q", F(q), "How Q is given."),
                o("beta", Number(beta), "Weight β of P in M, in [0, 1] (0: KL(P‖Q), 1: KL(Q‖P))."),
                o("temperature", Number(temperature), "Read logits as softmax(x/τ)."),
            ],
            Op::Entropy { p } => vec![o("p", F(p), "How P is given.")],
            Op::BinaryCrossEntropy { input } => vec![o("input", F(input), "How the input is given.")],
            Op::Distill { temperature, alpha } => vec![
                o("temperature", Number(temperature), "Temperature τ."),
                o("alpha", Number(alpha), "Weight α of the KL term."),
            ],
        }
    }

    /// Sets option `name` (one of [`Op::options`]) to `value`; the new value is checked as
    /// [`Op::validate`] checks it.
    pub fn set(&mut self, name: &str, value: OptionValue) -> Result<()> {
        use OptionValue::{Form as F, Index, Number, Switch};
        let op = self.name();
        match (&mut *self, name, value) {
            (
                Op::Softmax { temperature: t, .. }
                | Op::Distill { temperature: t, .. }
                | Op::Jsd { temperature: t, .. },
                "temperature",
                Number(v),
            ) => *t = v,
            (Op::Softmax { log, .. }, "log", Switch(v)) => *log = v,
            (
                Op::CrossEntropy { ignore_index, .. } | Op::LinearCrossEntropy { ignore_index, .. },
                "ignore_index",
                Index(v),
            ) => *ignore_index = v,
            (
                Op::CrossEntropy { label_smoothing, .. } | Op::LinearCrossEntropy { label_smoothing, .. },
                "label_smoothing",
                Number(v),
            ) => *label_smoothing = v,
            (
                Op::CrossEntropy { z_loss, .. }
                | Op::CrossEntropyProbs { z_loss, .. }
                | Op::LinearCrossEntropy { z_loss, .. },
                "z_loss",
                Number(v),
            ) => *z_loss = v,
            (Op::CrossEntropy { entropy, .. } | Op::CrossEntropyProbs { entropy, .. }, "entropy", Switch(v)) => {
                *entropy = v
            }
            (Op::KlDiv { p, .. } | Op::Jsd { p, .. } | Op::Entropy { p }, "p", F(v)) => *p = v,
            (Op::KlDiv { q, .. } | Op::Jsd { q, .. }, "q", F(v)) => *q = v,
            (Op::Jsd { beta, .. }, "beta", Number(v)) => *beta = v,
            (Op::BinaryCrossEntropy { input }, "input", F(v)) => *input = v,
            (Op::Distill { alpha, .. }, "alpha", Number(v)) => *alpha = v,
            (_, name, value) => {
                return Err(Error::Option {
                    name: "option",
                    detail: format!("{op} has no option {name} taking {value:?}"),
                });
            }
        }
        self.validate()
    }
}
