//! The fused linear cross-entropy on the CPU engine (`Engine::head`): losses, evaluation
//! records and the three gradients against the f64 reference and its central differences,
//! in f32, f16 and bf16, soft-capped, with a bias and ignored rows; the same bits whatever
//! the thread count and the chunking; errors that name the row.

use super::{Head, IGNORE, OPTIONS, assert_grad, get, set};
use crate::common::{assert_close, assert_scalar};
use half::{bf16, f16};
use xent::cpu::{Engine, HeadGrads};
use xent::reference::{HeadGradients, head_gradients};
use xent::{Batch, DType, Error, Labels, Op, Reduction};

/// What the engine gives for a head: per-row losses, records, and dH, dW, db of the mean.
struct Got {
    values: Vec<f32>,
    evals: Vec<Option<xent::metrics::RowEval>>,
    grads: [Vec<f32>; 3],
    mean: f64,
}

/// `head`'s inputs as the dtype they were drawn in.
fn with_batches<R>(head: &Head, f: impl FnOnce(Batch, Batch) -> R) -> R {
    let (n, d, v) = (head.n, head.d, head.v);
    match head.dtype {
        DType::F32 => f(Batch::new(&head.hidden[..], n, d).unwrap(), Batch::new(&head.weight[..], v, d).unwrap()),
        DType::F16 => {
            let (h, w): (Vec<f16>, Vec<f16>) = (
                head.hidden.iter().map(|&x| f16::from_f32(x)).collect(),
                head.weight.iter().map(|&x| f16::from_f32(x)).collect(),
            );
            f(Batch::new(&h[..], n, d).unwrap(), Batch::new(&w[..], v, d).unwrap())
        }
        DType::Bf16 => {
            let (h, w): (Vec<bf16>, Vec<bf16>) = (
                head.hidden.iter().map(|&x| bf16::from_f32(x)).collect(),
                head.weight.iter().map(|&x| bf16::from_f32(x)).collect(),
            );
            f(Batch::new(&h[..], n, d).unwrap(), Batch::new(&w[..], v, d).unwrap())
        }
    }
}

fn run(engine: &Engine, head: &Head, op: Op, softcap: Option<f32>) -> Got {
    with_batches(head, |h, w| {
        let cpu = engine.head(op, softcap, &w, head.bias.as_deref()).expect("head");
        let labels = Labels::I32(&head.labels);
        let rows = cpu.run(&h, &labels, true, 0).expect("run");
        let mut grads = [vec![f32::NAN; head.n * head.d], vec![f32::NAN; head.v * head.d], vec![f32::NAN; head.v]];
        let [dh, dw, db] = &mut grads;
        let g = HeadGrads { hidden: Some(dh), weight: Some(dw), bias: Some(db) };
        let sums = cpu.gradient(&h, &labels, Reduction::Mean, 1.0, g).expect("gradient");
        Got { values: rows.values, evals: rows.evals, grads, mean: sums.sum / sums.denominator }
    })
}

fn check(engine: &Engine, head: &Head, op: Op, softcap: Option<f32>) {
    let what = format!("[{}, {}] x [{}, {}] {:?} {op:?} cap {softcap:?}", head.n, head.d, head.v, head.d, head.dtype);
    let got = run(engine, head, op, softcap);
    let loss = head.loss(op, softcap);
    let reference = xent::reference::compute(&loss, Default::default()).expect("reference");
    let tol = 2e-6 * (head.d as f64).sqrt().max(1.0) * 4.0;
    assert_close(&format!("{what}: per-row"), &got.values, &reference.values, tol * 10.0, tol * 10.0);
    assert_scalar(&format!("{what}: mean"), got.mean, reference.mean(), 1e-5, 1e-5);
    let evals = xent::reference::row_evals(&loss).expect("records").expect("records of cross-entropy");
    assert_eq!(got.evals.len(), evals.len(), "{what}: records");
    for (i, (g, r)) in got.evals.iter().zip(&evals).enumerate() {
        match (g, r) {
            (None, None) => {}
            (Some(g), Some(r)) => {
                assert_eq!((g.label, g.prediction, g.rank), (r.label, r.prediction, r.rank), "{what}: row {i}");
                assert!((g.confidence - r.confidence).abs() < 1e-4, "{what}: row {i} confidence");
                assert!((g.brier - r.brier).abs() < 1e-4, "{what}: row {i} brier");
            }
            _ => panic!("{what}: row {i}: {g:?} against {r:?}"),
        }
    }
    let HeadGradients { hidden, weight, bias } = head_gradients(&loss, Reduction::Mean).expect("gradients");
    assert_grad(&format!("{what}: dH"), &got.grads[0], &hidden, 1e-4);
    assert_grad(&format!("{what}: dW"), &got.grads[1], &weight, 1e-4);
    if head.bias.is_some() {
        assert_grad(&format!("{what}: db"), &got.grads[2], &bias, 1e-4);
    }
}

#[test]
fn engine_head_matches_the_reference() {
    let engine = Engine::new();
    let shapes = [(1, 1, 1), (7, 3, 3), (7, 64, 257), (1, 257, 3), (7, 257, 50257), (70000, 3, 257), (300, 1, 3)];
    for (i, &shape) in shapes.iter().enumerate() {
        let plain = Head::new(shape, DType::F32, i % 2 == 0, false, 110 + i as u64);
        check(&engine, &plain, Op::LINEAR_CE, None);
        let ignoring = Head::new(shape, DType::F32, i % 2 == 1, shape.0 > 1, 120 + i as u64);
        check(&engine, &ignoring, OPTIONS, None);
    }
}

#[test]
fn engine_head_half_precision_and_soft_capping() {
    let engine = Engine::new();
    for (i, dtype) in [DType::F16, DType::Bf16].into_iter().enumerate() {
        for shape in [(7, 3, 257), (33, 65, 131)] {
            let head = Head::new(shape, dtype, true, true, 140 + i as u64);
            check(&engine, &head, OPTIONS, None);
            check(&engine, &head, OPTIONS, Some(5.0));
        }
    }
}

#[test]
fn engine_head_gradients_match_central_differences() {
    let engine = Engine::new();
    let mut head = Head::new((5, 3, 6), DType::F32, true, true, 105);
    let (n, d, v) = (head.n, head.d, head.v);
    let got = run(&engine, &head, OPTIONS, Some(3.0));
    let mean = |head: &Head| {
        xent::reference::compute(&head.loss(OPTIONS, Some(3.0)), Default::default()).expect("reference").mean()
    };
    let eps = 1e-3f32;
    let mut check = |which: usize, len: usize, got: &[f32]| {
        let numeric: Vec<f64> = (0..len)
            .map(|i| {
                let x = get(&head, which, i);
                let (up, down) = (x + eps, x - eps);
                set(&mut head, which, i, up);
                let plus = mean(&head);
                set(&mut head, which, i, down);
                let minus = mean(&head);
                set(&mut head, which, i, x);
                (plus - minus) / (f64::from(up) - f64::from(down))
            })
            .collect();
        assert_grad(&format!("input {which}"), got, &numeric, 1e-4);
    };
    check(0, n * d, &got.grads[0]);
    check(1, v * d, &got.grads[1]);
    check(2, v, &got.grads[2]);
}

/// 1, 2 and 7 threads give the same bits; rows run in chunks of 1, 7 and 128 give the
/// losses and records of one run.
#[test]
fn engine_head_bits_do_not_depend_on_threads_or_chunks() {
    // enough rows for several gradient blocks (the block is 256 rows here)
    let head = Head::new((700, 40, 517), DType::F32, true, true, 107);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let engines: Vec<Engine> = [1, 2, 7].map(|t| Engine::with_threads(t).expect("threads")).to_vec();
    let one = run(&engines[0], &head, OPTIONS, Some(20.0));
    for e in &engines[1..] {
        let other = run(e, &head, OPTIONS, Some(20.0));
        assert_eq!(bits(&one.values), bits(&other.values), "{}", e.label());
        for k in 0..3 {
            assert_eq!(bits(&one.grads[k]), bits(&other.grads[k]), "gradient {k} on {}", e.label());
        }
    }
    let w = Batch::new(&head.weight[..], head.v, head.d).unwrap();
    let cpu = engines[1].head(OPTIONS, Some(20.0), &w, head.bias.as_deref()).expect("head");
    for chunk in [1, 7, 128] {
        let mut values = Vec::new();
        let mut start = 0;
        while start < head.n {
            let n = chunk.min(head.n - start);
            let h = Batch::new(&head.hidden[start * head.d..(start + n) * head.d], n, head.d).unwrap();
            let labels = Labels::I32(&head.labels[start..start + n]);
            values.extend(cpu.run(&h, &labels, true, start as u64).expect("chunk").values);
            start += n;
        }
        assert_eq!(bits(&values), bits(&one.values), "chunks of {chunk}");
    }
}

#[test]
fn engine_head_errors_name_the_row() {
    let engine = Engine::new();
    let head = Head::new((4, 3, 5), DType::F32, false, false, 103);
    let w = Batch::new(&head.weight[..], 5, 3).unwrap();
    let cpu = engine.head(Op::LINEAR_CE, None, &w, None).expect("head");
    let h = Batch::new(&head.hidden[..], 4, 3).unwrap();
    let labels = [0i32, 9, 1, IGNORE];
    let e = cpu.run(&h, &Labels::I32(&labels), false, 1000).unwrap_err();
    assert!(matches!(e, Error::Label { row: 1001, label: Some(9), cols: 5 }), "{e}");
    // the labels of another length, and hidden states of another width
    assert!(matches!(cpu.run(&h, &Labels::I32(&labels[..3]), false, 0), Err(Error::Shape { .. })));
    let narrow = Batch::new(&head.hidden[..8], 4, 2).unwrap();
    assert!(matches!(cpu.run(&narrow, &Labels::I32(&[0, 1, 2, 3]), false, 0), Err(Error::Shape { .. })));
    // gradients of the wrong length
    let mut dw = vec![0.0; 14];
    let g = HeadGrads { hidden: None, weight: Some(&mut dw), bias: None };
    let e = cpu.gradient(&h, &Labels::I32(&[0, 1, 2, 3]), Reduction::Mean, 1.0, g).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    // not a linear head
    assert!(engine.head(Op::LogSumExp, None, &w, None).is_err());
}
