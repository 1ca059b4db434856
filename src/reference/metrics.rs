//! The evaluation report's per-row quantities, plainly, in f64: the label's rank by its
//! definition (the classes with a greater logit, or an equal one at a lower index), the
//! softmax formed as the textbook does (`e^(x_j − m)` over their sum) for the top-1
//! confidence and `Σ_j (p_j − [j = y])²`. Independent of the kernels' online sums, and linear in the
//! columns, so that the CPU path (`--device cpu`) reports at its own speed.

use super::{check_labels, finite_max, row, row_max::max_arg, softcap};
use crate::error::Result;
use crate::loss::Loss;
use crate::metrics::RowEval;
use crate::op::Op;

/// Per row of cross-entropy with labels, what it contributes to the report (`None` for an
/// ignored row); `None` for every other operation.
pub fn row_evals(loss: &Loss) -> Result<Option<Vec<Option<RowEval>>>> {
    loss.validate()?;
    if loss.op.head().is_some() {
        return super::linear_ce::row_evals(loss).map(Some);
    }
    let Op::CrossEntropy { ignore_index, .. } = loss.op else { return Ok(None) };
    if let Some(capped) = softcap::capped(loss) {
        return row_evals(&capped.loss(loss));
    }
    let (logits, labels) = (loss.primary(), loss.labels().copied());
    let Some(labels) = labels else { return Ok(None) };
    check_labels(&labels, logits.cols, ignore_index)?;
    let evals = (0..logits.rows)
        .map(|i| {
            let y = labels.get(i);
            (Some(y) != ignore_index).then(|| row_eval(&row(logits, i), y as usize))
        })
        .collect();
    Ok(Some(evals))
}

pub(super) fn row_eval(x: &[f64], y: usize) -> RowEval {
    let prediction = max_arg(x).1 as u32;
    let Some(m) = finite_max(x) else {
        // NaN or +inf logits, or every class masked: the row's loss is NaN, and it is wrong
        return RowEval { label: y as u32, rank: u32::MAX, prediction, confidence: f32::NAN, brier: f32::NAN };
    };
    // the softmax as the textbook forms it: p_j = e^(x_j − m) / Σ_k e^(x_k − m)
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    // the classes above the label, by the definition (IEEE order: −0 equals +0)
    let rank = (0..x.len()).filter(|&j| x[j] > x[y] || (x[j] == x[y] && j < y)).count() as u32;
    let brier: f64 = e.iter().enumerate().map(|(j, e)| (e / s - if j == y { 1.0 } else { 0.0 }).powi(2)).sum();
    let confidence = e.iter().copied().fold(0.0, f64::max) / s;
    RowEval { label: y as u32, rank, prediction, confidence: confidence as f32, brier: brier as f32 }
}
