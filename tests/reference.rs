//! The f64 reference against closed forms and hand-computed PyTorch values (no GPU).

mod common;

use approx::assert_relative_eq;
use std::f64::consts::LN_2;
use xent::reference::compute;
use xent::{Batch, Error, Form, Labels, LogBase, Loss, Op};

/// Cross-entropy against labels with its default options.
const CE: Op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };

fn batch(v: &[f32], cols: usize) -> Batch<'_> {
    Batch::new(v, v.len() / cols, cols).unwrap()
}

#[test]
fn uniform_logits_give_ln_k() {
    let k = 10;
    let x = vec![0.3f32; 2 * k];
    let y = [3i32, 7];
    let ce = compute(&Loss::new(CE, batch(&x, k)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    assert_relative_eq!(ce.mean(), (k as f64).ln(), max_relative = 1e-12);
    let h = compute(&Loss::new(Op::Entropy { p: Form::Logits }, batch(&x, k)), LogBase::Nats).unwrap();
    assert_relative_eq!(h.values[0], (k as f64).ln(), max_relative = 1e-12);
    let lse = compute(&Loss::new(Op::LogSumExp, batch(&x, k)), LogBase::Nats).unwrap();
    assert_relative_eq!(lse.values[1], 0.3f32 as f64 + (k as f64).ln(), max_relative = 1e-12);
}

#[test]
fn kl_of_a_distribution_with_itself_is_zero() {
    let p = [0.1f32, 0.2, 0.7, 0.25, 0.25, 0.5];
    let kl = compute(
        &Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Probs }, batch(&p, 3)).with_second(batch(&p, 3)),
        LogBase::Nats,
    )
    .unwrap();
    assert!(kl.values.iter().all(|v| v.abs() < 1e-15));
    let x = [1.0f32, -2.0, 3.5, 0.0, 0.0, 9.0];
    let kl = compute(
        &Loss::new(Op::KlDiv { p: Form::Logits, q: Form::Logits }, batch(&x, 3)).with_second(batch(&x, 3)),
        LogBase::Nats,
    )
    .unwrap();
    assert!(kl.values.iter().all(|v| v.abs() < 1e-15));
}

#[test]
fn bce_at_logit_zero_is_ln_2_per_element() {
    let x = [0.0f32; 4];
    let t = [0.0f32, 1.0, 0.5, 0.25];
    let r = compute(
        &Loss::new(Op::BinaryCrossEntropy { input: Form::Logits }, batch(&x, 4)).with_second(batch(&t, 4)),
        LogBase::Nats,
    )
    .unwrap();
    assert_relative_eq!(r.values[0], 4.0 * LN_2, max_relative = 1e-12);
    // probabilities: log clamped at −100 (PyTorch)
    let p = [0.0f32, 1.0];
    let t = [1.0f32, 1.0];
    let r = compute(
        &Loss::new(Op::BinaryCrossEntropy { input: Form::Probs }, batch(&p, 2)).with_second(batch(&t, 2)),
        LogBase::Nats,
    )
    .unwrap();
    assert_relative_eq!(r.values[0], 100.0, max_relative = 1e-12);
}

#[test]
fn gaussian_kl_closed_forms() {
    let zeros = [0.0f32; 3];
    let r = compute(&Loss::new(Op::GaussianKl, batch(&zeros, 3)).with_second(batch(&zeros, 3)), LogBase::Nats).unwrap();
    assert_eq!(r.values[0], 0.0);
    // μ = 1, lv = ln 2: −½ (1 + ln 2 − 1 − 2) = 1 − ½ ln 2
    let mu = [1.0f32];
    let lv = [std::f32::consts::LN_2];
    let r = compute(&Loss::new(Op::GaussianKl, batch(&mu, 1)).with_second(batch(&lv, 1)), LogBase::Nats).unwrap();
    let l = f64::from(lv[0]);
    assert_relative_eq!(r.values[0], -0.5 * (1.0 + l - 1.0 - l.exp()), max_relative = 1e-12);
    assert_relative_eq!(r.values[0], 1.0 - 0.5 * LN_2, max_relative = 1e-7);
}

#[test]
fn bits_are_nats_over_ln_2() {
    let x = [1.0f32, 2.0, 3.0];
    let y = [0i32];
    let loss = Loss::new(CE, batch(&x, 3)).with_labels(Labels::I32(&y));
    let nats = compute(&loss, LogBase::Nats).unwrap().values[0];
    let bits = compute(&loss, LogBase::Bits).unwrap().values[0];
    assert_relative_eq!(bits, nats / LN_2, max_relative = 1e-12);
    // lse takes no base
    let lse = Loss::new(Op::LogSumExp, batch(&x, 3));
    assert_eq!(compute(&lse, LogBase::Bits).unwrap().values, compute(&lse, LogBase::Nats).unwrap().values);
}

#[test]
fn label_smoothing_and_weights_match_pytorch() {
    // torch.nn.functional.cross_entropy(tensor([[1., 2., 3.]]), tensor([0]), label_smoothing=0.1)
    let x = [1.0f32, 2.0, 3.0];
    let y = [0i32];
    let nll = [2.4076059644443806, 1.4076059644443806, 0.4076059644443806];
    let op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.1, z_loss: 0.0, entropy: false };
    let r = compute(&Loss::new(op, batch(&x, 3)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    let s = f64::from(0.1f32);
    let want = (1.0 - s) * nll[0] + s / 3.0 * nll.iter().sum::<f64>();
    assert_relative_eq!(r.values[0], want, max_relative = 1e-12);
    // weighted: (1−s)·W[y]·nll + (s/K)·Σ W[j]·nll_j; mean divides by Σ W[y]
    let w = [0.5f32, 2.0, 1.0];
    let r = compute(&Loss::new(op, batch(&x, 3)).with_labels(Labels::I32(&y)).with_weights(&w), LogBase::Nats).unwrap();
    let want = (1.0 - s) * 0.5 * nll[0] + s / 3.0 * (0.5 * nll[0] + 2.0 * nll[1] + nll[2]);
    assert_relative_eq!(r.values[0], want, max_relative = 1e-12);
    assert_relative_eq!(r.mean(), want / 0.5, max_relative = 1e-12);
}

#[test]
fn z_loss_matches_palm() {
    // PaLM (Chowdhery et al. 2022, section 5): z_loss = 1e-4 · log²Z, log Z the softmax
    // normaliser, added to the cross-entropy; Liger-Kernel's `lse_square_scale`, unweighted.
    // Values from Python's math: lse([1, 2, 3, -1.5]) = 3.4149689504858607.
    let x = [1.0f32, 2.0, 3.0, -1.5, 0.5, -2.0, 4.0, f32::NEG_INFINITY];
    let y = [2i32, -100];
    let op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 1e-4, entropy: false };
    let lambda = f64::from(1e-4f32);
    let r = compute(&Loss::new(op, batch(&x, 4)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    let lse = 3.4149689504858607;
    assert_relative_eq!(r.values[0], 0.4149689504858607 + lambda * lse * lse, max_relative = 1e-12);
    assert_eq!(r.values[1], 0.0, "an ignored row has no z term");
    // class weights scale the cross-entropy, not the z term
    let w = [0.5f32, 2.0, 3.0, 1.0];
    let y = [2i32, 0];
    let r = compute(&Loss::new(op, batch(&x, 4)).with_labels(Labels::I32(&y)).with_weights(&w), LogBase::Nats).unwrap();
    assert_relative_eq!(r.values[0], 3.0 * 0.4149689504858607 + lambda * lse * lse, max_relative = 1e-12);
    // lse([0.5, -2, 4, -inf]) = 4.0321536226831585: the masked class adds nothing
    let lse1 = 4.0321536226831585;
    assert_relative_eq!(r.values[1], 0.5 * (lse1 - 0.5) + lambda * lse1 * lse1, max_relative = 1e-12);
    assert_relative_eq!(r.denominator(), 3.5, max_relative = 1e-15);
    // probability targets: −Σ_j P_j·log_softmax_j + λ·lse²; a one-hot target is the label's row
    let p = [0.0f32, 0.0, 1.0, 0.0];
    let probs = Op::CrossEntropyProbs { z_loss: 1e-4, entropy: false };
    let r = compute(&Loss::new(probs, batch(&x[..4], 4)).with_second(batch(&p, 4)), LogBase::Nats).unwrap();
    assert_relative_eq!(r.values[0], 0.4149689504858607 + lambda * lse * lse, max_relative = 1e-12);
}

#[test]
fn softcap_matches_gemma_2() {
    // Gemma 2 (Gemma Team 2024, section 2): final logits capped as 30·tanh(x/30) before the
    // softmax. Values from Python's math: the capped row of [60, 0, −60, 15] is
    // [28.920827402274508, 0, −28.920827402274508, 13.863514717800292], its lse
    // 28.920827691137923; cross-entropy at label 3 is 15.05731297333763, and its gradient
    // (p − onehot)·(1 − tanh²(x/30)) is [0.07065080444472883, 2.75e-13, 5.4e-27, −0.7864475057901995].
    let x = [60.0f32, 0.0, -60.0, 15.0];
    let y = [3i32];
    let loss = Loss::new(CE, batch(&x, 4)).with_labels(Labels::I32(&y)).with_softcap(30.0);
    let r = compute(&loss, LogBase::Nats).unwrap();
    assert_relative_eq!(r.values[0], 15.05731297333763, max_relative = 1e-7);
    let lse = compute(&Loss::new(Op::LogSumExp, batch(&x, 4)).with_softcap(30.0), LogBase::Nats).unwrap();
    assert_relative_eq!(lse.values[0], 28.920827691137923, max_relative = 1e-7);
    let g = xent::reference::gradient(&loss, xent::Reduction::Sum).unwrap();
    assert_relative_eq!(g[0], 0.07065080444472883, max_relative = 1e-6);
    assert_relative_eq!(g[3], -0.7864475057901995, max_relative = 1e-6);
    assert!(g[1].abs() < 1e-12 && g[2].abs() < 1e-20, "{g:?}");
    // ±inf become ±c (the mask is capped too, as c·tanh does); NaN stays NaN
    let masked = [f32::NEG_INFINITY, 0.0, f32::INFINITY];
    let r = compute(&Loss::new(Op::LogSumExp, batch(&masked, 3)).with_softcap(2.0), LogBase::Nats).unwrap();
    let want = (2.0f64.exp() + 1.0 + (-2.0f64).exp()).ln();
    assert_relative_eq!(r.values[0], want, max_relative = 1e-12);
    // an operation without logits to cap, and a cap that is not positive, are option errors
    let bce = Loss::new(Op::BinaryCrossEntropy { input: Form::Logits }, batch(&x, 4)).with_second(batch(&x, 4));
    assert!(matches!(compute(&bce.with_softcap(3.0), LogBase::Nats), Err(xent::Error::Option { name: "softcap", .. })));
    let zero = Loss::new(Op::LogSumExp, batch(&x, 4)).with_softcap(0.0);
    assert!(matches!(compute(&zero, LogBase::Nats), Err(xent::Error::Option { name: "softcap", .. })));
}

#[test]
fn jsd_matches_liger_kernel() {
    // Liger-Kernel's `LigerJSD(beta)` (src/liger_kernel/ops/jsd.py, `_jsd_kernel`) on the
    // log-probabilities X = log_softmax(student), Y = log_softmax(teacher): per element
    // β = 0: e^Y·(Y − X); β = 1: e^X·(X − Y); else β·P·Y + (1−β)·Q·X − M·log M with
    // M = β·P + (1−β)·Q; its dX chained through log_softmax for the student's logits.
    // Values from Python's math on those formulas, over the inputs rounded to f32.
    let teacher = [1.0f32, 2.0, 0.5, -1.0];
    let student = [0.3f32, -0.7, 2.2, 0.0];
    let want = [
        (0.0, 1.519918311298221, [-0.11050158108168905, -0.5676298506859291, 0.6242390091812562, 0.05389242258636183]),
        (
            0.5,
            0.28370985366261764,
            [-0.039766973675373345, -0.04926827204391136, 0.08557908050091871, 0.003456165218365991],
        ),
        (
            1.0,
            1.2051321521875464,
            [-0.21423247463942954, -0.1624720968770247, 0.39221128435548325, -0.015506712839029269],
        ),
    ];
    for (beta, value, grad) in want {
        let op = Op::Jsd { p: Form::Logits, q: Form::Logits, beta, temperature: 1.0 };
        let loss = Loss::new(op, batch(&teacher, 4)).with_second(batch(&student, 4));
        assert_relative_eq!(compute(&loss, LogBase::Nats).unwrap().values[0], value, max_relative = 1e-12);
        let g = xent::reference::gradient(&loss, xent::Reduction::Sum).unwrap();
        for (g, w) in g.iter().zip(grad) {
            assert_relative_eq!(*g, w, max_relative = 1e-10);
        }
    }
    // at a temperature τ the logits are read as x/τ, and the gradient carries 1/τ
    let halve = |v: &[f32]| v.iter().map(|x| x / 2.0).collect::<Vec<f32>>();
    let (t2, s2) = (halve(&teacher), halve(&student));
    let at = |temperature, t: &[f32], s: &[f32]| {
        let op = Op::Jsd { p: Form::Logits, q: Form::Logits, beta: 0.3, temperature };
        let loss = Loss::new(op, batch(t, 4)).with_second(batch(s, 4));
        (
            compute(&loss, LogBase::Nats).unwrap().values[0],
            xent::reference::gradient(&loss, xent::Reduction::Sum).unwrap(),
        )
    };
    let ((v2, g2), (v1, g1)) = (at(2.0, &teacher, &student), at(1.0, &t2, &s2));
    assert_relative_eq!(v2, v1, max_relative = 1e-12);
    for (a, b) in g2.iter().zip(&g1) {
        assert_relative_eq!(*a, b / 2.0, max_relative = 1e-10);
    }
    // the mixture is symmetric under swapping P, Q and β, 1 − β; β outside [0, 1] is an option error
    let p = [0.5f32, 0.25, 0.25, 0.0];
    let q = [0.1f32, 0.2, 0.3, 0.4];
    let probs = |beta, a: &[f32], b: &[f32]| {
        let op = Op::Jsd { p: Form::Probs, q: Form::Probs, beta, temperature: 1.0 };
        compute(&Loss::new(op, batch(a, 4)).with_second(batch(b, 4)), LogBase::Nats)
    };
    assert_relative_eq!(
        probs(0.3, &p, &q).unwrap().values[0],
        probs(0.7, &q, &p).unwrap().values[0],
        max_relative = 1e-12
    );
    // KL(P‖Q) at β = 0 with a zero in P; KL(Q‖P) at β = 1 is +inf where P is 0 and Q is not
    let kl: f64 = [(0.5, 0.1), (0.25, 0.2), (0.25, 0.3)].iter().map(|&(a, b): &(f64, f64)| a * (a / b).ln()).sum();
    assert_relative_eq!(probs(0.0, &p, &q).unwrap().values[0], kl, max_relative = 1e-6);
    assert_eq!(probs(1.0, &p, &q).unwrap().values[0], f64::INFINITY);
    assert!(matches!(probs(1.5, &p, &q), Err(Error::Option { name: "beta", .. })));
}

#[test]
fn ignored_rows_leave_the_mean() {
    let x = [1.0f32, 2.0, 3.0, 0.5, 0.5, 0.5];
    let y = [2i32, -100];
    let op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let r = compute(&Loss::new(op, batch(&x, 3)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    assert_eq!(r.values[1], 0.0);
    assert_eq!(r.denominator(), 1.0);
    assert_relative_eq!(r.mean(), 0.4076059644443806, max_relative = 1e-12);
    // every row ignored: NaN, as in PyTorch
    let y = [-100i32, -100];
    let r = compute(&Loss::new(op, batch(&x, 3)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    assert!(r.mean().is_nan());
}

#[test]
fn special_values() {
    let ninf = f32::NEG_INFINITY;
    // masked class: probability 0; label on it: +inf; all masked: lse -inf, CE NaN
    let x = [0.0f32, ninf, ninf, ninf, 1.0, f32::NAN];
    let lse = compute(&Loss::new(Op::LogSumExp, batch(&x, 2)), LogBase::Nats).unwrap();
    assert_eq!(lse.values[0], 0.0);
    assert_eq!(lse.values[1], f64::NEG_INFINITY);
    assert!(lse.values[2].is_nan());
    let y = [1i32, 0, 0];
    let ce = compute(&Loss::new(CE, batch(&x, 2)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    assert_eq!(ce.values[0], f64::INFINITY);
    assert!(ce.values[1].is_nan() && ce.values[2].is_nan());
    let sm = compute(&Loss::new(Op::Softmax { temperature: 1.0, log: false }, batch(&x, 2)), LogBase::Nats).unwrap();
    assert_eq!(&sm.values[..2], &[1.0, 0.0]);
    assert!(sm.values[2..].iter().all(|v| v.is_nan()));
    // KL: p = 0 contributes 0, p > 0 with q = 0 is +inf
    let p = [0.0f32, 1.0, 0.5, 0.5];
    let q = [0.5f32, 0.5, 1.0, 0.0];
    let kl = compute(
        &Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Probs }, batch(&p, 2)).with_second(batch(&q, 2)),
        LogBase::Nats,
    )
    .unwrap();
    assert_relative_eq!(kl.values[0], 2f64.ln(), max_relative = 1e-12);
    assert_eq!(kl.values[1], f64::INFINITY);
    // row max: NaN wins, then +inf, first index on ties
    let m = [1.0f32, 3.0, 3.0, 2.0, f32::INFINITY, f32::NAN, ninf, ninf];
    let r = compute(&Loss::new(Op::RowMax, batch(&m, 4)), LogBase::Nats).unwrap();
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
        let loss = Loss::new(Op::Distill { temperature, alpha }, batch(&s, 3))
            .with_second(batch(&t, 3))
            .with_labels(Labels::I32(&y));
        compute(&loss, LogBase::Nats).unwrap().values
    };
    let ce = compute(&Loss::new(CE, batch(&s, 3)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap().values;
    let kl = compute(
        &Loss::new(Op::KlDiv { p: Form::Logits, q: Form::Logits }, batch(&t, 3)).with_second(batch(&s, 3)),
        LogBase::Nats,
    )
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
    let r = compute(&Loss::new(CE, batch(&x, 2)).with_labels(Labels::I32(&y)), LogBase::Nats);
    assert!(matches!(r, Err(Error::Label { row: 1, .. })), "{r:?}");
    let p = [0.5f32, 0.5, 0.5, -0.5, f32::NAN, 1.0];
    let r = compute(&Loss::new(Op::Entropy { p: Form::Probs }, batch(&p, 2)), LogBase::Nats);
    assert!(matches!(r, Err(Error::Value { row: 1, .. })), "{r:?}");
    let t = [0.5f32, 1.5];
    let r = compute(
        &Loss::new(Op::BinaryCrossEntropy { input: Form::Logits }, batch(&t, 2)).with_second(batch(&t, 2)),
        LogBase::Nats,
    );
    assert!(matches!(r, Err(Error::Value { row: 0, .. })), "{r:?}");
}

/// Equal logits far above the rest: the max is subtracted before anything is added to it,
/// so `1e20 + ln 2` cannot swallow the `ln 2`.
#[test]
fn huge_equal_logits_split_the_mass() {
    let x = [1e20f32, 1e20, 0.0];
    let sm = compute(&Loss::new(Op::Softmax { temperature: 1.0, log: false }, batch(&x, 3)), LogBase::Nats).unwrap();
    assert_eq!(sm.values, [0.5, 0.5, 0.0]);
    let lsm = compute(&Loss::new(Op::Softmax { temperature: 1.0, log: true }, batch(&x, 3)), LogBase::Nats).unwrap();
    assert_relative_eq!(lsm.values[0], -LN_2, max_relative = 1e-15);
    assert_relative_eq!(lsm.values[1], -LN_2, max_relative = 1e-15);
    assert_relative_eq!(lsm.values[2], -f64::from(x[0]), max_relative = 1e-15);
    let y = [0i32];
    let ce = compute(&Loss::new(CE, batch(&x, 3)).with_labels(Labels::I32(&y)), LogBase::Nats).unwrap();
    assert_relative_eq!(ce.values[0], LN_2, max_relative = 1e-15);
    let t = [1.0f32, 0.0, 0.0];
    let ce = compute(
        &Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, batch(&x, 3)).with_second(batch(&t, 3)),
        LogBase::Nats,
    )
    .unwrap();
    assert_relative_eq!(ce.values[0], LN_2, max_relative = 1e-15);
    let h = compute(&Loss::new(Op::Entropy { p: Form::Logits }, batch(&x, 3)), LogBase::Nats).unwrap();
    assert_relative_eq!(h.values[0], LN_2, max_relative = 1e-15);
    // a distillation whose teacher is the student: its KL term is 0, its CE term ln 2
    let d = Loss::new(Op::Distill { temperature: 1.0, alpha: 0.5 }, batch(&x, 3))
        .with_second(batch(&x, 3))
        .with_labels(Labels::I32(&y));
    assert_relative_eq!(compute(&d, LogBase::Nats).unwrap().values[0], 0.5 * LN_2, max_relative = 1e-15);
    // a tiny temperature scales the same way
    let x = [1.0f32, 1.0, 0.0];
    let sm = compute(&Loss::new(Op::Softmax { temperature: 1e-30, log: false }, batch(&x, 3)), LogBase::Nats).unwrap();
    assert_eq!(sm.values, [0.5, 0.5, 0.0]);
}

/// `τ²·KL(softmax(t/τ) ‖ softmax(s/τ))` tends to half the variance of `t − s` over the
/// classes as τ grows; the reference follows it to the largest f32 temperatures.
#[test]
fn distill_at_huge_temperatures_tends_to_half_the_variance() {
    let t = [1.0f32, 0.0, 0.0, 2.0, -1.0, 0.5];
    let s = [0.0f32, 0.0, 0.0, 0.5, 0.5, -3.0];
    let y = [0i32, 2];
    let var = |d: [f64; 3]| {
        let mean = d.iter().sum::<f64>() / 3.0;
        d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 3.0
    };
    let limit = [0.5 * var([1.0, 0.0, 0.0]), 0.5 * var([1.5, -1.5, 3.5])];
    assert_relative_eq!(limit[0], 1.0 / 9.0, max_relative = 1e-15);
    for temperature in [1e4f32, 1e8, 1e16, 1e30, f32::MAX] {
        let d = Loss::new(Op::Distill { temperature, alpha: 1.0 }, batch(&s, 3))
            .with_second(batch(&t, 3))
            .with_labels(Labels::I32(&y));
        let v = compute(&d, LogBase::Nats).unwrap().values;
        for i in 0..2 {
            // the next term of the expansion is O(1/τ)
            let err = (v[i] - limit[i]).abs();
            assert!(
                err <= 4.0 / f64::from(temperature) + 1e-15,
                "τ = {temperature}, row {i}: {} vs {}",
                v[i],
                limit[i]
            );
        }
    }
    // with a CE term: α/9 + (1 − α)·ln 3 for the first row
    let d = Loss::new(Op::Distill { temperature: 1e30, alpha: 0.25 }, batch(&s, 3))
        .with_second(batch(&t, 3))
        .with_labels(Labels::I32(&y));
    let v = compute(&d, LogBase::Nats).unwrap().values;
    assert_relative_eq!(v[0], 0.25 / 9.0 + 0.75 * 3f64.ln(), max_relative = 1e-15);
}

/// At ordinary temperatures the scaled form is the plain `τ²·KL` of the divided logits.
#[test]
fn distill_at_a_temperature_is_tau_squared_kl() {
    let mut r = common::rng(7);
    let (rows, cols) = (5, 11);
    let s = common::logits(&mut r, rows * cols, 4.0);
    let t = common::logits(&mut r, rows * cols, 4.0);
    let y = vec![1i32; rows];
    for tau in [0.5f32, 1.0, 4.0] {
        let d = Loss::new(Op::Distill { temperature: tau, alpha: 1.0 }, batch(&s, cols))
            .with_second(batch(&t, cols))
            .with_labels(Labels::I32(&y));
        let v = compute(&d, LogBase::Nats).unwrap().values;
        let tau = f64::from(tau);
        for i in 0..rows {
            let lp = log_softmax_f64(&t[i * cols..(i + 1) * cols], tau);
            let lq = log_softmax_f64(&s[i * cols..(i + 1) * cols], tau);
            let kl: f64 = lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum();
            assert_relative_eq!(v[i], tau * tau * kl, max_relative = 1e-12);
        }
    }
}

fn log_softmax_f64(x: &[f32], tau: f64) -> Vec<f64> {
    let z: Vec<f64> = x.iter().map(|&v| f64::from(v) / tau).collect();
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let l = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - l).collect()
}

/// A `+inf` probability is bad input, like a negative or NaN one.
#[test]
fn infinite_probabilities_are_bad_input() {
    let good = [0.25f32, 0.75, 0.5, 0.5];
    let bad = [0.25f32, 0.75, f32::INFINITY, 0.5];
    let logits = [0.1f32, 0.2, 0.3, 0.4];
    let cases = [
        Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Probs }, batch(&bad, 2)).with_second(batch(&good, 2)),
        Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Probs }, batch(&good, 2)).with_second(batch(&bad, 2)),
        Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Logits }, batch(&bad, 2)).with_second(batch(&logits, 2)),
        Loss::new(Op::Entropy { p: Form::Probs }, batch(&bad, 2)),
        Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, batch(&logits, 2)).with_second(batch(&bad, 2)),
        Loss::new(Op::BinaryCrossEntropy { input: Form::Probs }, batch(&bad, 2)).with_second(batch(&good, 2)),
        Loss::new(Op::BinaryCrossEntropy { input: Form::Logits }, batch(&logits, 2)).with_second(batch(&bad, 2)),
    ];
    for loss in &cases {
        match compute(loss, LogBase::Nats) {
            Err(Error::Value { row: 1, detail }) => {
                assert!(detail.contains("inf at column 0 is infinite"), "{detail}")
            }
            r => panic!("{loss:?}: {r:?}"),
        }
    }
}

/// Distillation where the teacher rules classes out and the student does not: the student's
/// mass on those classes still counts in its softmax ([`common::masked_teacher`]).
#[test]
fn distill_with_masked_teacher_classes_matches_pytorch() {
    use common::masked_teacher::{COLS, EXPECTED, LABELS, STUDENT, TEACHER};
    for (temperature, alpha, want) in EXPECTED {
        let loss = Loss::new(Op::Distill { temperature, alpha }, batch(&STUDENT, COLS))
            .with_second(batch(&TEACHER, COLS))
            .with_labels(Labels::I32(&LABELS));
        let got = compute(&loss, LogBase::Nats).unwrap().values;
        for (row, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w.abs(), "τ = {temperature}, α = {alpha}, row {row}: {g} against {w}");
        }
    }
}

/// KL and the Jensen-Shannon divergence of logits where P rules classes out and Q does not,
/// against SciPy's float64 `rel_entr` ([`common::masked_teacher`]).
#[test]
fn divergences_with_masked_p_classes_match_scipy() {
    use common::masked_teacher::{COLS, JSD, KL, STUDENT, TEACHER};
    let (p, q) = (batch(&TEACHER, COLS), batch(&STUDENT, COLS));
    let kl = Op::KlDiv { p: Form::Logits, q: Form::Logits };
    let jsd = Op::Jsd { p: Form::Logits, q: Form::Logits, beta: 0.5, temperature: 1.0 };
    for (op, want) in [(kl, KL), (jsd, JSD)] {
        let got = compute(&Loss::new(op, p).with_second(q), LogBase::Nats).unwrap().values;
        for (row, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-12 * w.abs(), "{op:?} row {row}: {g} against {w}");
        }
    }
}
