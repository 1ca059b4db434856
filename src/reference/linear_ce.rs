//! The fused linear cross-entropy in f64: each row's logits `x_i = W·h_i + b` formed in f64
//! (soft-capped there where the job asks), then cross-entropy with labels over them; the
//! gradients by the chain rule through the logits' gradient `G`: `dH = G·W`, `dW = Gᵀ·H`,
//! `db = Σ_i G_i`. Nothing `[rows, classes]` is held: a row's logits are formed when needed.

use super::Reference;
use super::gradient::cross_entropy_row;
use super::softmax_xent::softmax_xent_rows;
use crate::error::{Error, Result};
use crate::loss::{Batch, Labels, Loss, Reduction};
use crate::metrics::RowEval;

/// The inputs of a linear head, taken apart.
struct Head<'a> {
    hidden: Batch<'a>,
    weight: Batch<'a>,
    bias: Option<&'a [f32]>,
    softcap: Option<f64>,
}

impl<'a> Head<'a> {
    fn of(loss: &Loss<'a>) -> Result<Self> {
        loss.validate()?;
        let weight = *loss.secondary().ok_or(Error::Shape { what: "weight", detail: "is missing".into() })?;
        Ok(Head { hidden: *loss.primary(), weight, bias: loss.inputs.weights, softcap: loss.softcap.map(f64::from) })
    }

    fn classes(&self) -> usize {
        self.weight.rows
    }

    /// Row `i`'s logits before any soft-capping.
    fn raw_logits(&self, i: usize) -> Vec<f64> {
        let d = self.hidden.cols;
        let h: Vec<f64> = (0..d).map(|k| self.hidden.get(i, k)).collect();
        (0..self.classes())
            .map(|j| {
                let dot: f64 = (0..d).map(|k| h[k] * self.weight.get(j, k)).sum();
                dot + self.bias.map_or(0.0, |b| f64::from(b[j]))
            })
            .collect()
    }

    /// Row `i`'s logits as the loss reads them: `c·tanh(x/c)` where soft-capped.
    fn logits(&self, i: usize) -> Vec<f64> {
        let x = self.raw_logits(i);
        match self.softcap {
            Some(c) => x.iter().map(|v| c * (v / c).tanh()).collect(),
            None => x,
        }
    }
}

/// Per-row values, weights (0 on ignored rows) and argmax of the head's logits.
pub(super) fn linear_ce(loss: &Loss) -> Result<Reference> {
    let head = Head::of(loss)?;
    let labels = loss.labels().copied().unwrap_or(Labels::I32(&[]));
    softmax_xent_rows((head.hidden.rows, head.classes()), |i| head.logits(i), &labels, &loss.ce_options())
}

/// Each row's evaluation record over the head's logits (`None`: ignored).
pub(super) fn row_evals(loss: &Loss) -> Result<Vec<Option<RowEval>>> {
    let head = Head::of(loss)?;
    let labels = loss.labels().copied().unwrap_or(Labels::I32(&[]));
    let ignore = loss.ce_options().ignore_index;
    super::check_labels(&labels, head.classes(), ignore)?;
    let evals = (0..head.hidden.rows).map(|i| {
        let y = labels.get(i);
        (Some(y) != ignore).then(|| super::metrics::row_eval(&head.logits(i), y as usize))
    });
    Ok(evals.collect())
}

/// The gradients of a fused linear cross-entropy's reduced loss, row-major f64.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadGradients {
    /// d(loss)/dH, `[rows, d]`.
    pub hidden: Vec<f64>,
    /// d(loss)/dW, `[classes, d]`.
    pub weight: Vec<f64>,
    /// d(loss)/db, `classes` long.
    pub bias: Vec<f64>,
}

/// The gradients of [`Op::LinearCrossEntropy`](crate::Op::LinearCrossEntropy)'s loss
/// reduced by `reduction` (`Mean` divides by the rows not ignored).
pub fn head_gradients(loss: &Loss, reduction: Reduction) -> Result<HeadGradients> {
    let head = Head::of(loss)?;
    let reference = linear_ce(loss)?;
    let scale = match reduction {
        Reduction::Mean => 1.0 / reference.denominator(),
        Reduction::Sum | Reduction::None => 1.0,
    };
    let (rows, d, k) = (head.hidden.rows, head.hidden.cols, head.classes());
    let labels = loss.labels().copied().unwrap_or(Labels::I32(&[]));
    let options = loss.ce_options();
    let mut g = HeadGradients { hidden: vec![0.0; rows * d], weight: vec![0.0; k * d], bias: vec![0.0; k] };
    for i in 0..rows {
        let raw = head.raw_logits(i);
        let mut gi = cross_entropy_row(&head.logits(i), labels.get(i), &options);
        if let Some(c) = head.softcap {
            gi.iter_mut().zip(&raw).for_each(|(g, x)| *g *= 1.0 - (x / c).tanh().powi(2));
        }
        for (j, &gij) in gi.iter().enumerate() {
            let gij = gij * scale;
            g.bias[j] += gij;
            for kk in 0..d {
                g.hidden[i * d + kk] += gij * head.weight.get(j, kk);
                g.weight[j * d + kk] += gij * head.hidden.get(i, kk);
            }
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;

    /// A small random head: values from a fixed-seed generator, never zeros.
    fn data(n: usize, seed: u64, spread: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                spread * ((s >> 11) as f32 / (1u64 << 53) as f32 - 0.5) + 1e-3
            })
            .collect()
    }

    /// The reduced loss as a function of (H, W, b), for finite differences.
    fn loss_of(
        op: Op,
        h: &[f32],
        w: &[f32],
        b: &[f32],
        shape: (usize, usize, usize),
        y: &[i32],
        cap: Option<f32>,
    ) -> f64 {
        let (n, d, k) = shape;
        let mut loss = Loss::new(op, Batch::new(h, n, d).unwrap())
            .with_second(Batch::new(w, k, d).unwrap())
            .with_labels(y)
            .with_bias(b);
        loss.softcap = cap;
        linear_ce(&loss).unwrap().mean()
    }

    /// Central differences of the mean against the analytic gradients, with an ignored row,
    /// smoothing, z-loss and soft-capping on (the step is in f32 inputs, so the check is to
    /// about 1e-3 relative).
    #[test]
    fn gradients_match_central_differences() {
        let (n, d, k) = (4, 3, 5);
        let op = Op::LinearCrossEntropy { ignore_index: Some(-100), label_smoothing: 0.1, z_loss: 1e-2 };
        let (h, w, b) = (data(n * d, 1, 2.0), data(k * d, 2, 2.0), data(k, 3, 1.0));
        let y = [1, -100, 4, 0];
        for cap in [None, Some(2.0)] {
            let mut loss = Loss::new(op, Batch::new(&h[..], n, d).unwrap())
                .with_second(Batch::new(&w[..], k, d).unwrap())
                .with_labels(&y[..])
                .with_bias(&b[..]);
            loss.softcap = cap;
            let g = head_gradients(&loss, Reduction::Mean).unwrap();
            let eps = 1e-2f32;
            let fd = |which: usize, idx: usize| {
                let (mut hp, mut wp, mut bp) = (h.clone(), w.clone(), b.clone());
                let (mut hm, mut wm, mut bm) = (h.clone(), w.clone(), b.clone());
                match which {
                    0 => (hp[idx] += eps, hm[idx] -= eps),
                    1 => (wp[idx] += eps, wm[idx] -= eps),
                    _ => (bp[idx] += eps, bm[idx] -= eps),
                };
                let plus = loss_of(op, &hp, &wp, &bp, (n, d, k), &y, cap);
                let minus = loss_of(op, &hm, &wm, &bm, (n, d, k), &y, cap);
                (plus - minus) / (2.0 * f64::from(eps))
            };
            for (which, analytic) in [&g.hidden, &g.weight, &g.bias].into_iter().enumerate() {
                for (idx, a) in analytic.iter().enumerate() {
                    let numeric = fd(which, idx);
                    assert!(
                        (a - numeric).abs() <= 2e-3 * (1.0 + numeric.abs()),
                        "input {which}[{idx}]: {a} vs {numeric}"
                    );
                }
            }
            // the ignored row has no gradient of its hidden state
            assert!(g.hidden[d..2 * d].iter().all(|v| *v == 0.0));
        }
    }
}
