//! The evaluation report's per-row quantities, plainly: the row's classes sorted by logit
//! (descending, then by index) for the label's rank, the softmax in f64 for the top-1
//! confidence and `Σ_j (p_j − [j = y])²`. Independent of the kernels' one-pass counting.

use super::{check_labels, log_softmax, row, row_max::max_arg, softcap};
use crate::error::Result;
use crate::loss::Loss;
use crate::metrics::RowEval;
use crate::op::Op;

/// Per row of cross-entropy with labels, what it contributes to the report (`None` for an
/// ignored row); `None` for every other operation.
pub fn row_evals(loss: &Loss) -> Result<Option<Vec<Option<RowEval>>>> {
    loss.validate()?;
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

fn row_eval(x: &[f64], y: usize) -> RowEval {
    let prediction = max_arg(x).1 as u32;
    let Some(lp) = log_softmax(x) else {
        // NaN or +inf logits, or every class masked: the row's loss is NaN, and it is wrong
        return RowEval { label: y as u32, rank: u32::MAX, prediction, confidence: f32::NAN, brier: f32::NAN };
    };
    let mut order: Vec<usize> = (0..x.len()).collect();
    // IEEE order (−0 equals +0; no NaN here), ties by index
    order.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
    let rank = order.iter().position(|&j| j == y).unwrap_or(usize::MAX) as u32;
    let p: Vec<f64> = lp.iter().map(|v| v.exp()).collect();
    let confidence = p.iter().copied().fold(0.0, f64::max);
    let brier = p.iter().enumerate().map(|(j, pj)| (pj - if j == y { 1.0 } else { 0.0 }).powi(2)).sum::<f64>();
    RowEval { label: y as u32, rank, prediction, confidence: confidence as f32, brier: brier as f32 }
}
