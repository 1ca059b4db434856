//! The f64 reference against closed forms and hand-computed PyTorch values (no GPU).

use approx::assert_relative_eq;
use std::f64::consts::LN_2;
use xent::reference::compute;
use xent::{Batch, CrossEntropyOptions, Dist, Error, Labels, LogBase, Loss};

fn batch(v: &[f32], cols: usize) -> Batch<'_> {
    Batch::new(v, v.len() / cols, cols).unwrap()
}

#[test]
fn uniform_logits_give_ln_k() {
    let k = 10;
    let x = vec![0.3f32; 2 * k];
    let y = [3i32, 7];
    let ce = compute(
        &Loss::CrossEntropy { logits: batch(&x, k), labels: Labels::I32(&y), options: Default::default() },
        LogBase::Nats,
    )
    .unwrap();
    assert_relative_eq!(ce.mean(), (k as f64).ln(), max_relative = 1e-12);
    let h = compute(&Loss::Entropy { p: Dist::Logits(batch(&x, k)) }, LogBase::Nats).unwrap();
    assert_relative_eq!(h.values[0], (k as f64).ln(), max_relative = 1e-12);
    let lse = compute(&Loss::LogSumExp { logits: batch(&x, k) }, LogBase::Nats).unwrap();
    assert_relative_eq!(lse.values[1], 0.3f32 as f64 + (k as f64).ln(), max_relative = 1e-12);
}

#[test]
fn kl_of_a_distribution_with_itself_is_zero() {
    let p = [0.1f32, 0.2, 0.7, 0.25, 0.25, 0.5];
    let kl =
        compute(&Loss::KlDiv { p: Dist::Probs(batch(&p, 3)), q: Dist::Probs(batch(&p, 3)) }, LogBase::Nats).unwrap();
    assert!(kl.values.iter().all(|v| v.abs() < 1e-15));
    let x = [1.0f32, -2.0, 3.5, 0.0, 0.0, 9.0];
    let kl =
        compute(&Loss::KlDiv { p: Dist::Logits(batch(&x, 3)), q: Dist::Logits(batch(&x, 3)) }, LogBase::Nats).unwrap();
    assert!(kl.values.iter().all(|v| v.abs() < 1e-15));
}

#[test]
fn bce_at_logit_zero_is_ln_2_per_element() {
    let x = [0.0f32; 4];
    let t = [0.0f32, 1.0, 0.5, 0.25];
    let r =
        compute(&Loss::BinaryCrossEntropy { input: Dist::Logits(batch(&x, 4)), target: batch(&t, 4) }, LogBase::Nats)
            .unwrap();
    assert_relative_eq!(r.values[0], 4.0 * LN_2, max_relative = 1e-12);
    // probabilities: log clamped at −100 (PyTorch)
    let p = [0.0f32, 1.0];
    let t = [1.0f32, 1.0];
    let r =
        compute(&Loss::BinaryCrossEntropy { input: Dist::Probs(batch(&p, 2)), target: batch(&t, 2) }, LogBase::Nats)
            .unwrap();
    assert_relative_eq!(r.values[0], 100.0, max_relative = 1e-12);
}

#[test]
fn gaussian_kl_closed_forms() {
    let zeros = [0.0f32; 3];
    let r = compute(&Loss::GaussianKl { mean: batch(&zeros, 3), logvar: batch(&zeros, 3) }, LogBase::Nats).unwrap();
    assert_eq!(r.values[0], 0.0);
    // μ = 1, lv = ln 2: −½ (1 + ln 2 − 1 − 2) = 1 − ½ ln 2
    let mu = [1.0f32];
    let lv = [std::f32::consts::LN_2];
    let r = compute(&Loss::GaussianKl { mean: batch(&mu, 1), logvar: batch(&lv, 1) }, LogBase::Nats).unwrap();
    let l = f64::from(lv[0]);
    assert_relative_eq!(r.values[0], -0.5 * (1.0 + l - 1.0 - l.exp()), max_relative = 1e-12);
    assert_relative_eq!(r.values[0], 1.0 - 0.5 * LN_2, max_relative = 1e-7);
}

#[test]
fn bits_are_nats_over_ln_2() {
    let x = [1.0f32, 2.0, 3.0];
    let y = [0i32];
    let loss = Loss::CrossEntropy { logits: batch(&x, 3), labels: Labels::I32(&y), options: Default::default() };
    let nats = compute(&loss, LogBase::Nats).unwrap().values[0];
    let bits = compute(&loss, LogBase::Bits).unwrap().values[0];
    assert_relative_eq!(bits, nats / LN_2, max_relative = 1e-12);
    // lse takes no base
    let lse = Loss::LogSumExp { logits: batch(&x, 3) };
    assert_eq!(compute(&lse, LogBase::Bits).unwrap().values, compute(&lse, LogBase::Nats).unwrap().values);
}

#[test]
fn label_smoothing_and_weights_match_pytorch() {
    // torch.nn.functional.cross_entropy(tensor([[1., 2., 3.]]), tensor([0]), label_smoothing=0.1)
    let x = [1.0f32, 2.0, 3.0];
    let y = [0i32];
    let nll = [2.4076059644443806, 1.4076059644443806, 0.4076059644443806];
    let options = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
    let r =
        compute(&Loss::CrossEntropy { logits: batch(&x, 3), labels: Labels::I32(&y), options }, LogBase::Nats).unwrap();
    let s = f64::from(0.1f32);
    let want = (1.0 - s) * nll[0] + s / 3.0 * nll.iter().sum::<f64>();
    assert_relative_eq!(r.values[0], want, max_relative = 1e-12);
    // weighted: (1−s)·W[y]·nll + (s/K)·Σ W[j]·nll_j; mean divides by Σ W[y]
    let w = [0.5f32, 2.0, 1.0];
    let options = CrossEntropyOptions { label_smoothing: 0.1, class_weights: Some(&w), ..Default::default() };
    let r =
        compute(&Loss::CrossEntropy { logits: batch(&x, 3), labels: Labels::I32(&y), options }, LogBase::Nats).unwrap();
    let want = (1.0 - s) * 0.5 * nll[0] + s / 3.0 * (0.5 * nll[0] + 2.0 * nll[1] + nll[2]);
    assert_relative_eq!(r.values[0], want, max_relative = 1e-12);
    assert_relative_eq!(r.mean(), want / 0.5, max_relative = 1e-12);
}

#[test]
fn ignored_rows_leave_the_mean() {
    let x = [1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5];
    let y = [2i32, -100];
    let options = CrossEntropyOptions { ignore_index: Some(-100), ..Default::default() };
    let r =
        compute(&Loss::CrossEntropy { logits: batch(&x, 3), labels: Labels::I32(&y), options }, LogBase::Nats).unwrap();
    assert_eq!(r.values[1], 0.0);
    assert_eq!(r.denominator(), 1.0);
    assert_relative_eq!(r.mean(), 0.4076059644443806, max_relative = 1e-12);
    // every row ignored: NaN, as in PyTorch
    let y = [-100i32, -100];
    let r =
        compute(&Loss::CrossEntropy { logits: batch(&x, 3), labels: Labels::I32(&y), options }, LogBase::Nats).unwrap();
    assert!(r.mean().is_nan());
}

#[test]
fn special_values() {
    let ninf = f32::NEG_INFINITY;
    // masked class: probability 0; label on it: +inf; all masked: lse -inf, CE NaN
    let x = [0.0f32, ninf, ninf, ninf, 1.0, f32::NAN];
    let lse = compute(&Loss::LogSumExp { logits: batch(&x, 2) }, LogBase::Nats).unwrap();
    assert_eq!(lse.values[0], 0.0);
    assert_eq!(lse.values[1], f64::NEG_INFINITY);
    assert!(lse.values[2].is_nan());
    let y = [1i32, 0, 0];
    let ce = compute(
        &Loss::CrossEntropy { logits: batch(&x, 2), labels: Labels::I32(&y), options: Default::default() },
        LogBase::Nats,
    )
    .unwrap();
    assert_eq!(ce.values[0], f64::INFINITY);
    assert!(ce.values[1].is_nan() && ce.values[2].is_nan());
    let sm = compute(&Loss::Softmax { logits: batch(&x, 2), temperature: 1.0, log: false }, LogBase::Nats).unwrap();
    assert_eq!(&sm.values[..2], &[1.0, 0.0]);
    assert!(sm.values[2..].iter().all(|v| v.is_nan()));
    // KL: p = 0 contributes 0, p > 0 with q = 0 is +inf
    let p = [0.0f32, 1.0, 0.5, 0.5];
    let q = [0.5f32, 0.5, 1.0, 0.0];
    let kl =
        compute(&Loss::KlDiv { p: Dist::Probs(batch(&p, 2)), q: Dist::Probs(batch(&q, 2)) }, LogBase::Nats).unwrap();
    assert_relative_eq!(kl.values[0], 2f64.ln(), max_relative = 1e-12);
    assert_eq!(kl.values[1], f64::INFINITY);
    // row max: NaN wins, then +inf, first index on ties
    let m = [1.0f32, 3.0, 3.0, 2.0, f32::INFINITY, f32::NAN, ninf, ninf];
    let r = compute(&Loss::RowMax { logits: batch(&m, 4) }, LogBase::Nats).unwrap();
    assert_eq!(r.values[0], 3.0);
    assert!(r.values[1].is_nan());
    assert_eq!(r.argmax, Some(vec![1, 1]));
}

#[test]
fn distill_reduces_to_its_parts() {
    let s = [1.0f32, -0.5, 2.0, 0.3, 0.1, -1.0];
    let t = [0.2f32, 1.5, -0.7, 2.0, 0.0, 0.4];
    let y = [2i32, 0];
    let d = |alpha, temperature| {
        let loss =
            Loss::Distill { student: batch(&s, 3), teacher: batch(&t, 3), labels: Labels::I32(&y), temperature, alpha };
        compute(&loss, LogBase::Nats).unwrap().values
    };
    let ce = compute(
        &Loss::CrossEntropy { logits: batch(&s, 3), labels: Labels::I32(&y), options: Default::default() },
        LogBase::Nats,
    )
    .unwrap()
    .values;
    let kl = compute(&Loss::KlDiv { p: Dist::Logits(batch(&t, 3)), q: Dist::Logits(batch(&s, 3)) }, LogBase::Nats)
        .unwrap()
        .values;
    for i in 0..2 {
        assert_relative_eq!(d(0.0, 3.0)[i], ce[i], max_relative = 1e-12);
        assert_relative_eq!(d(1.0, 1.0)[i], kl[i], max_relative = 1e-12);
        assert_relative_eq!(d(0.5, 1.0)[i], 0.5 * kl[i] + 0.5 * ce[i], max_relative = 1e-12);
    }
}

#[test]
fn bad_input_names_the_first_row() {
    let x = [0.0f32; 6];
    let y = [0i32, 3, -1];
    let r = compute(
        &Loss::CrossEntropy { logits: batch(&x, 2), labels: Labels::I32(&y), options: Default::default() },
        LogBase::Nats,
    );
    assert!(matches!(r, Err(Error::Label { row: 1, .. })), "{r:?}");
    let p = [0.5f32, 0.5, 0.5, -0.5, f32::NAN, 1.0];
    let r = compute(&Loss::Entropy { p: Dist::Probs(batch(&p, 2)) }, LogBase::Nats);
    assert!(matches!(r, Err(Error::Value { row: 1, .. })), "{r:?}");
    let t = [0.5f32, 1.5];
    let r =
        compute(&Loss::BinaryCrossEntropy { input: Dist::Logits(batch(&t, 2)), target: batch(&t, 2) }, LogBase::Nats);
    assert!(matches!(r, Err(Error::Value { row: 0, .. })), "{r:?}");
}
