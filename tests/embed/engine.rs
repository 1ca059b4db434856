//! The CPU engine's fused gradients (`Engine::gradient`) over the same cases as the GPU's:
//! against the f64 reference and its finite differences, at the edges of the numbers, in
//! f16, on the shapes that break naive code, against the GPU where one runs, and with the
//! same bits whatever the thread count.

use super::{CE, Case, Data, IGNORE, assert_rows_close, cases, finite_differences, run};
use crate::common::{context, rng};
use half::f16;
use xent::cpu::Engine;
use xent::reference::gradient;
use xent::{Batch, DType, Loss, Op, Reduction};

/// The engine's gradient of `loss` reduced by `reduction`.
fn engine_grad(engine: &Engine, loss: &Loss, reduction: Reduction) -> Vec<f32> {
    let p = loss.primary();
    let mut g = vec![f32::from_bits(0x7fc0_dead); p.rows * p.cols];
    engine.gradient(loss, reduction, 1.0, &mut g).expect("engine gradient");
    g
}

#[test]
fn engine_gradients_match_the_reference_and_its_differences() {
    let engine = Engine::new();
    let mut rng = rng(141);
    for op in cases() {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let d = Data::new(op, 6, 9, &mut rng);
            let got = engine_grad(&engine, &d.loss(&d.x), reduction);
            let fd = finite_differences(&d, reduction);
            assert_rows_close(&format!("{op:?} {reduction:?} vs differences"), &got, &fd, d.cols, 1e-4);
            let want = gradient(&d.loss(&d.x), reduction).expect("analytic");
            assert_rows_close(&format!("{op:?} {reduction:?} vs analytic"), &got, &want, d.cols, 1e-4);
            if let Some((gpu, _, _)) = run(&d, DType::F32, false, reduction) {
                let gpu: Vec<f64> = gpu.iter().map(|&v| f64::from(v)).collect();
                assert_rows_close(&format!("{op:?} {reduction:?} vs the GPU"), &got, &gpu, d.cols, 1e-5);
            }
        }
    }
}

#[test]
fn engine_gradients_on_the_shapes_that_break_naive_code() {
    let engine = Engine::new();
    let mut rng = rng(142);
    let ce =
        Op::CrossEntropy { ignore_index: Some(i64::from(IGNORE)), label_smoothing: 0.1, z_loss: 0.01, entropy: false };
    // one column, odd columns past a lane block, rows past 65,535, a row of 65,537
    for (rows, cols) in [(5, 1), (3, 5000), (70_000, 3), (4, 257), (2, 65_537)] {
        for case in [Case::from(CE), Case { op: ce, weighted: true, softcap: None }] {
            let d = Data::new(case, rows, cols, &mut rng);
            let got = engine_grad(&engine, &d.loss(&d.x), Reduction::Mean);
            let want = gradient(&d.loss(&d.x), Reduction::Mean).expect("analytic");
            assert_rows_close(&format!("{case:?} [{rows}, {cols}]"), &got, &want, cols, 1e-4);
        }
    }
}

#[test]
fn engine_gradients_at_the_edges_of_the_numbers() {
    let engine = Engine::new();
    let mut rng = rng(143);
    for op in cases() {
        let mut d = Data::new(op, 6, 40, &mut rng);
        // logits of ±1e4 in row 0, masked classes in row 1 (not the label), NaN in row 2
        for (j, v) in d.x[..40].iter_mut().enumerate() {
            *v = if j % 2 == 0 { 1e4 } else { -1e4 + j as f32 };
        }
        let label1 = d.labels.as_ref().map_or(0, |y| y[1].max(0) as usize);
        for j in (0..40).step_by(3).filter(|&j| j != label1) {
            d.x[40 + j] = f32::NEG_INFINITY;
        }
        d.x[80 + 5] = f32::NAN;
        let got = engine_grad(&engine, &d.loss(&d.x), Reduction::Mean);
        let want = gradient(&d.loss(&d.x), Reduction::Mean).expect("analytic");
        let nan_row = got[80..120].iter().filter(|g| g.is_nan()).count();
        let elementwise = matches!(op.op, Op::BinaryCrossEntropy { .. });
        assert_eq!(nan_row, if elementwise { 1 } else { 40 }, "{op:?}: NaN gradients in the NaN row");
        assert_rows_close(&format!("{op:?} edges"), &got, &want, 40, 1e-4);
        if let Some((gpu, _, _)) = run(&d, DType::F32, false, Reduction::Mean) {
            let gpu: Vec<f64> = gpu.iter().map(|&v| f64::from(v)).collect();
            assert_rows_close(&format!("{op:?} edges vs the GPU"), &got, &gpu, 40, 1e-5);
        }
    }
}

#[test]
fn engine_gradients_of_half_precision_inputs() {
    let engine = Engine::new();
    let mut rng = rng(144);
    for op in cases() {
        let mut d = Data::new(op, 5, 300, &mut rng);
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32());
        round(&mut d.x);
        if let Some(o) = d.other.as_mut() {
            round(o);
        }
        let halves = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        let (x16, other16) = (halves(&d.x), d.other.as_deref().map(halves));
        let (rows, cols) = (d.rows, d.cols);
        let x16 = Batch::new(&x16[..], rows, cols).expect("shape");
        let other16 = other16.as_deref().map(|v| Batch::new(v, rows, cols).expect("shape"));
        let labels = d.labels.as_deref().map(xent::Labels::I32);
        let loss = d.task(x16, other16, labels, d.weights.as_deref());
        let got = engine_grad(&engine, &loss, Reduction::Mean);
        let want = gradient(&d.loss(&d.x), Reduction::Mean).expect("analytic");
        assert_rows_close(&format!("{op:?} f16"), &got, &want, d.cols, 1e-4);
    }
}

#[test]
fn engine_gradient_bits_do_not_depend_on_threads() {
    let mut rng = rng(145);
    let engines: Vec<Engine> = [1, 2, 7].map(|t| Engine::with_threads(t).expect("threads")).to_vec();
    for op in cases() {
        let d = Data::new(op, 37, 1500, &mut rng);
        let bits =
            |e: &Engine| engine_grad(e, &d.loss(&d.x), Reduction::Mean).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let first = bits(&engines[0]);
        for e in &engines[1..] {
            assert_eq!(bits(e), first, "{op:?} on {}", e.label());
        }
    }
    let _ = context();
}

#[test]
fn engine_gradient_errors() {
    let engine = Engine::new();
    let x = [0.5f32; 12];
    let batch = Batch::new(&x[..], 3, 4).expect("shape");
    let mut g = vec![0.0; 12];
    // no gradient
    let lse = Loss::new(Op::LogSumExp, batch);
    assert!(engine.gradient(&lse, Reduction::Mean, 1.0, &mut g).is_err());
    // a buffer of the wrong length
    let y = [0i32, 1, 9];
    let ce = Loss::new(CE, batch).with_labels(xent::Labels::I32(&y));
    assert!(engine.gradient(&ce, Reduction::Mean, 1.0, &mut g[..11]).is_err());
    // a label out of range, named
    let e = engine.gradient(&ce, Reduction::Mean, 1.0, &mut g).expect_err("label 9 of 4 columns");
    assert!(e.to_string().contains("row 2"), "{e}");
}
