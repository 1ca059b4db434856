//! The evaluation report's per-row words from the kernel (the label's rank, the top-1
//! confidence, the Brier term, the prediction) against the reference's, on the shapes,
//! values and layouts of the GPU matrix: ties, masks, NaN rows, ignored rows, half
//! precision, soft-capping, rows past 65,535, split rows, and any chunking.

mod common;

use common::{context, rng};
use half::f16;
use rand::Rng;
use xent::metrics::RowEval;
use xent::{Batch, Floats, Labels, Loss, Op, RunOptions};

const IGNORE: i64 = -100;

fn ce(label_smoothing: f32, z_loss: f32, entropy: bool) -> Op {
    Op::CrossEntropy { ignore_index: Some(IGNORE), label_smoothing, z_loss, entropy }
}

/// Logits on a grid of quarter steps (so that rows hold ties), scaled, with masked
/// classes, and labels with ignored rows.
fn data(seed: u64, rows: usize, cols: usize, scale: f32) -> (Vec<f32>, Vec<i64>) {
    let mut r = rng(seed);
    let x =
        (0..rows * cols)
            .map(|i| {
                if i % 11 == 5 { f32::NEG_INFINITY } else { (r.random_range(-4.0f32..4.0) * 4.0).round() / 4.0 * scale }
            })
            .collect();
    let y = (0..rows).map(|i| if i % 9 == 4 { IGNORE } else { r.random_range(0..cols as i64) }).collect();
    (x, y)
}

/// The kernel's report of `loss`'s rows, run in pieces of at most `chunk` rows.
fn kernel(loss: &Loss, chunk: Option<u64>) -> Vec<RowEval> {
    let ctx = context().expect("adapter");
    let options = RunOptions { report: true, chunk_rows: chunk, ..Default::default() };
    let mut stream = ctx.stream(loss, loss.primary().rows as u64, &options).expect("stream");
    let mut evals = stream.push(loss).expect("push").evals;
    evals.extend(stream.drain().expect("drain").evals);
    stream.finish().expect("finish");
    evals
}

fn reference(loss: &Loss) -> Vec<RowEval> {
    xent::reference::row_evals(loss).unwrap().unwrap().into_iter().flatten().collect()
}

/// Ranks, predictions and labels exactly; confidence and Brier term to f32 accumulation.
fn assert_evals(what: &str, got: &[RowEval], want: &[RowEval]) {
    assert_eq!(got.len(), want.len(), "{what}: rows reported");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!((g.label, g.rank, g.prediction), (w.label, w.rank, w.prediction), "{what}: row {i}: {g:?} {w:?}");
        for (name, a, b) in [("confidence", g.confidence, w.confidence), ("brier", g.brier, w.brier)] {
            let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= 2e-5 * b.abs().max(1.0);
            assert!(ok, "{what}: row {i}: {name} {a} against {b}");
        }
    }
}

fn check(what: &str, x: &[f32], y: &[i64], cols: usize, op: Op, softcap: Option<f32>) {
    if context().is_none() {
        return;
    }
    let rows = y.len();
    let mut loss = Loss::new(op, Batch::new(x, rows, cols).unwrap()).with_labels(Labels::I64(y));
    loss.softcap = softcap;
    let want = reference(&loss);
    let whole = kernel(&loss, None);
    assert_evals(what, &whole, &want);
    // the same bits whatever the pieces
    let pieces = kernel(&loss, Some(7));
    assert!(pieces.iter().zip(&whole).all(|(a, b)| format!("{a:?}") == format!("{b:?}")), "{what}: chunked");
    // half precision: the same values widened
    let halves: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let mut half = Loss::new(op, Batch { data: Floats::F16(&halves), rows, cols }).with_labels(Labels::I64(y));
    half.softcap = softcap;
    assert_evals(&format!("{what} f16"), &kernel(&half, None), &reference(&half));
}

#[test]
fn the_shape_matrix() {
    for (k, cols) in [1usize, 3, 8, 33, 257, 4099, 65537].into_iter().enumerate() {
        let rows = if cols > 4000 { 5 } else { 300 };
        let (x, y) = data(k as u64, rows, cols, 1.0);
        check(&format!("[{rows}, {cols}]"), &x, &y, cols, ce(0.0, 0.0, false), None);
    }
}

#[test]
fn rows_past_65535_and_every_loss_option() {
    let (x, y) = data(20, 70_000, 3, 1.0);
    check("[70000, 3]", &x, &y, 3, ce(0.0, 0.0, false), None);
    // smoothing, a z-loss and the entropy change the loss, not the report
    let (x, y) = data(21, 200, 130, 1.0);
    check("options", &x, &y, 130, ce(0.1, 1e-3, true), None);
}

#[test]
fn logits_of_1e4_soft_capped_or_not() {
    let (x, y) = data(30, 64, 257, 2500.0);
    check("±1e4", &x, &y, 257, ce(0.0, 0.0, false), None);
    // capped at 30, logits past ±100 become exact ties at ±30
    check("±1e4 capped at 30", &x, &y, 257, ce(0.0, 0.0, false), Some(30.0));
}

#[test]
fn nan_and_infinite_rows_are_wrong() {
    let cols = 40;
    let (mut x, mut y) = data(40, 12, cols, 1.0);
    x[2 * cols + 7] = f32::NAN;
    x[5 * cols + 1] = f32::INFINITY;
    x[7 * cols..8 * cols].fill(f32::NEG_INFINITY);
    y[2] = 7;
    y[5] = 1;
    y[7] = 0;
    if context().is_none() {
        return;
    }
    let loss = Loss::new(ce(0.0, 0.0, false), Batch::new(&x[..], 12, cols).unwrap()).with_labels(Labels::I64(&y));
    let got = kernel(&loss, None);
    assert_evals("NaN rows", &got, &reference(&loss));
    for r in [2, 5, 7] {
        let e = got.iter().find(|e| e.label == y[r] as u32 && e.rank == u32::MAX);
        assert!(e.is_some_and(|e| e.confidence.is_nan() && e.brier.is_nan()), "row {r}: {got:?}");
    }
}
