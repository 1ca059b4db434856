//! Soft-capping (Gemma 2's `c·tanh(x/c)`) in the reference: the capped logits are formed in
//! f64 and stored as f32, and the operation runs on them with nothing left to cap; the
//! gradient with respect to the logits as stored is chained through `1 − tanh²(x/c)`.

use crate::loss::{Batch, Floats, Loss};
use crate::op::Domain;

/// The capped values of one input (`None`: an input that is not capped).
pub(super) struct Capped {
    first: Option<Vec<f32>>,
    second: Option<Vec<f32>>,
}

fn cap(b: &Batch, c: f64) -> Vec<f32> {
    (0..b.data.len()).map(|i| (c * (b.data.get(i) / c).tanh()) as f32).collect()
}

/// The capped copies of `loss`'s logits inputs, where it soft-caps them (never a linear
/// head's: it caps the logits it forms, not its inputs).
pub(super) fn capped(loss: &Loss) -> Option<Capped> {
    if loss.op.head().is_some() {
        return None;
    }
    let c = f64::from(loss.softcap?);
    let sig = loss.op.signature();
    let first = (sig.first.domain == Domain::Logits).then(|| cap(&loss.inputs.first, c));
    let second = match (sig.second, &loss.inputs.second) {
        (Some(s), Some(b)) if s.domain == Domain::Logits => Some(cap(b, c)),
        _ => None,
    };
    Some(Capped { first, second })
}

impl Capped {
    /// `loss` over the capped values, with no soft-capping.
    pub(super) fn loss<'a>(&'a self, loss: &Loss<'a>) -> Loss<'a> {
        let mut capped = *loss;
        capped.softcap = None;
        let over = |b: &Batch<'a>, v: &'a [f32]| Batch { data: Floats::F32(v), rows: b.rows, cols: b.cols };
        if let Some(v) = &self.first {
            capped.inputs.first = over(&loss.inputs.first, v);
        }
        if let (Some(v), Some(b)) = (&self.second, &loss.inputs.second) {
            capped.inputs.second = Some(over(b, v));
        }
        capped
    }
}

/// `d c·tanh(x/c) / dx` for each element of the input the gradient is of (all 1 where that
/// input is not capped).
pub(super) fn chain(loss: &Loss) -> Vec<f64> {
    let of_second = loss.op.grad_of().is_some_and(|name| name != loss.op.signature().first.name);
    let batch = if of_second { loss.inputs.second.as_ref() } else { Some(&loss.inputs.first) };
    let sig = loss.op.signature();
    let slot = if of_second { sig.second } else { Some(sig.first) };
    match (loss.softcap, batch, slot) {
        (Some(c), Some(b), Some(s)) if s.domain == Domain::Logits => {
            let c = f64::from(c);
            (0..b.data.len()).map(|i| 1.0 - (b.data.get(i) / c).tanh().powi(2)).collect()
        }
        (_, Some(b), _) => vec![1.0; b.data.len()],
        _ => Vec::new(),
    }
}
