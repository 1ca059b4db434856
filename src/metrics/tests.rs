//! The report against scikit-learn on a fixed set, the tie rule, NaN rows and merging.

use super::*;
use crate::loss::{Batch, Labels, Loss};
use crate::op::Op;
use crate::reference::row_evals;

const CE: Op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 0.0, entropy: false };

fn report(logits: &[f32], labels: &[i64], cols: usize, spec: MetricsSpec) -> Metrics {
    let batch = Batch::new(logits, labels.len(), cols).unwrap();
    let loss = Loss::new(CE, batch).with_labels(Labels::I64(labels));
    let mut m = Metrics::new(spec).unwrap();
    for r in row_evals(&loss).unwrap().unwrap().iter().flatten() {
        m.push(r);
    }
    m
}

fn spec(top_k: &[u32], bins: u32, classes: u32) -> MetricsSpec {
    MetricsSpec { top_k: top_k.to_vec(), bins, per_class: true, classes }
}

const LOGITS: [f32; 28] = [
    2.0, 1.0, 0.1, -1.0, 0.5, 2.5, 0.3, 0.0, 1.2, 0.2, 3.1, -0.5, 0.0, 0.4, -0.3, 1.7, 3.0, -1.0, 0.7, 0.2, -0.2, 0.9,
    1.4, 0.1, 1.1, 1.3, 0.6, -2.0,
];
const LABELS: [i64; 7] = [0, 2, 2, 1, 0, 3, 0];

#[test]
fn a_fixed_set_matches_scikit_learn() {
    // scikit-learn 1.9.1 on these logits (as f32) and labels, with p = softmax(logits):
    // top_k_accuracy_score(y, p, k) for k = 1, 2, 3; balanced_accuracy_score(y, argmax p);
    // brier_score_loss(y, p, labels=[0, 1, 2, 3]) (multiclass: mean of Σ_j (p_j − onehot_j)²).
    // ECE and MCE: torchmetrics' L1 formula over 5 equal-width bins, in NumPy.
    let m = report(&LOGITS, &LABELS, 4, spec(&[1, 2, 3], 5, 4));
    let top: Vec<f64> = m.top_k_accuracy().iter().map(|t| t.1).collect();
    assert_eq!(top, [3.0 / 7.0, 5.0 / 7.0, 1.0]);
    assert!((m.balanced_accuracy().unwrap() - 0.29166666666666663).abs() < 1e-15);
    assert!((m.brier() - 0.6481081203183129).abs() < 1e-7, "{}", m.brier());
    let bins: Vec<(u64, u64)> = m.bins.iter().map(|b| (b.count, b.correct)).collect();
    assert_eq!(bins, [(0, 0), (0, 0), (2, 0), (3, 1), (2, 2)]);
    assert!((m.bins[3].confidence_sum - 2.019664835127233).abs() < 1e-6);
    assert!((m.ece() - 0.3236718220229213).abs() < 1e-7, "{}", m.ece());
    assert!((m.mce() - 0.4528408574128614).abs() < 1e-7, "{}", m.mce());
    let classes = m.classes.as_ref().unwrap();
    assert_eq!(classes.iter().map(|c| c.support).collect::<Vec<_>>(), [3, 1, 2, 1]);
    assert_eq!(classes.iter().map(|c| c.predicted).sum::<u64>(), 7);
}

#[test]
fn ties_rank_the_lower_index_first() {
    // the label's logit equals two others: the one before it ranks above, the one after not
    let x = [1.0f32, 3.0, 3.0, 3.0, 0.0];
    for (label, rank) in [(1, 0), (2, 1), (3, 2), (0, 3), (4, 4)] {
        let m = report(&x, &[label], 5, spec(&[1, 2, 3, 4, 5], 10, 5));
        let want: Vec<u64> = (1..=5).map(|k| u64::from(rank < k)).collect();
        assert_eq!(m.hits, want, "label {label}");
    }
    // −0 equals +0 (IEEE), so the −0 before the label ranks above it
    let m = report(&[-0.0, -3.0, 0.0], &[2], 3, spec(&[1, 2], 10, 3));
    assert_eq!(m.hits, [0, 1]);
}

#[test]
fn nan_rows_are_wrong_and_make_calibration_nan() {
    let x = [1.0f32, f32::NAN, 0.0, 2.0, 0.5, 0.1];
    let m = report(&x, &[1, 1], 3, spec(&[1, 3], 10, 3));
    assert_eq!(m.hits, [0, 1], "the NaN row counts as wrong for every k");
    assert_eq!((m.rows, m.nan_rows), (2, 1));
    assert!(m.ece().is_nan() && m.mce().is_nan() && m.brier().is_nan());
    // ignored rows are left out of everything
    let m = report(&x, &[-100, 1], 3, spec(&[1], 10, 3));
    assert_eq!((m.rows, m.nan_rows), (1, 0));
    assert!(m.ece().is_finite());
}

#[test]
fn shards_merge_to_the_whole() {
    let whole = report(&LOGITS, &LABELS, 4, spec(&[1, 2], 4, 4));
    let mut first = report(&LOGITS[..12], &LABELS[..3], 4, spec(&[1, 2], 4, 4));
    first.merge(&report(&LOGITS[12..], &LABELS[3..], 4, spec(&[1, 2], 4, 4))).unwrap();
    assert_eq!((first.rows, &first.hits, first.nan_rows), (whole.rows, &whole.hits, whole.nan_rows));
    for (a, b) in first.bins.iter().zip(&whole.bins) {
        assert_eq!((a.count, a.correct), (b.count, b.correct));
        assert!((a.confidence_sum - b.confidence_sum).abs() <= 1e-12 * b.confidence_sum.abs());
    }
    assert_eq!(
        first.classes.as_ref().unwrap().iter().map(|c| (c.support, c.correct, c.predicted)).collect::<Vec<_>>(),
        whole.classes.as_ref().unwrap().iter().map(|c| (c.support, c.correct, c.predicted)).collect::<Vec<_>>()
    );
    assert!((first.brier_sum - whole.brier_sum).abs() <= 1e-12 * whole.brier_sum);
    assert!(first.merge(&report(&LOGITS, &LABELS, 4, spec(&[1], 4, 4))).is_err(), "another spec");
}

#[test]
fn confidence_bins_are_half_open_with_one_in_the_last() {
    let m = Metrics::new(spec(&[1], 10, 2)).unwrap();
    assert_eq!([0.0, 0.05, 0.1, 0.3, 0.999, 1.0].map(|c| m.bin_of(c)), [0, 0, 1, 3, 9, 9]);
}

#[test]
fn binary_report_matches_scikit_learn() {
    // scikit-learn 1.9.1 with p = σ(x) in f64 of these logits (as f32), targets 0/1:
    // accuracy_score(t, p > 0.5), brier_score_loss(t, p); ECE and MCE: torchmetrics'
    // BinaryCalibrationError (L1) formula over 4 bins, in NumPy.
    let x = [2.0f32, -1.0, 0.5, -3.0, 0.1, 1.5, -0.2, 4.0, -2.5, 0.0, 0.7, -0.6];
    let t = [1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    let op = Op::BinaryCrossEntropy { input: crate::op::Form::Logits };
    let loss = Loss::new(op, Batch::new(&x[..], 2, 6).unwrap()).with_second(Batch::new(&t[..], 2, 6).unwrap());
    let mut m = BinaryMetrics::new(4).unwrap();
    m.add(&loss).unwrap();
    assert_eq!((m.elements, m.correct), (12, 8), "accuracy 0.6666666666666666");
    assert!((m.brier() - 0.13921974596951614).abs() < 1e-15, "{}", m.brier());
    assert_eq!(
        m.bins.iter().map(|b| (b.count, b.target_sum)).collect::<Vec<_>>(),
        [(2, 0.0), (3, 1.0), (4, 2.0), (3, 3.0)]
    );
    assert!((m.ece() - 0.06933134243386131).abs() < 1e-15 && (m.mce() - 0.1065382185968552).abs() < 1e-15);
    // probabilities are read as they are; halves merge into the whole
    let p: Vec<f32> = x.iter().map(|&v| (1.0 / (1.0 + (-f64::from(v)).exp())) as f32).collect();
    let probs = Op::BinaryCrossEntropy { input: crate::op::Form::Probs };
    let mut halves = BinaryMetrics::new(4).unwrap();
    for r in 0..2 {
        let (pr, tr) =
            (Batch::new(&p[6 * r..6 * r + 6], 1, 6).unwrap(), Batch::new(&t[6 * r..6 * r + 6], 1, 6).unwrap());
        let mut one = BinaryMetrics::new(4).unwrap();
        one.add(&Loss::new(probs, pr).with_second(tr)).unwrap();
        halves.merge(&one).unwrap();
    }
    assert_eq!((halves.elements, halves.correct), (12, 8));
    assert!((halves.brier() - m.brier()).abs() < 1e-7);
    // a NaN logit is a wrong prediction and makes calibration and Brier NaN
    let mut nan = BinaryMetrics::new(4).unwrap();
    nan.push(f64::NAN, 1.0);
    nan.push(0.9, 1.0);
    assert_eq!((nan.correct, nan.nan_elements), (1, 1));
    assert!(nan.ece().is_nan() && nan.brier().is_nan());
}
