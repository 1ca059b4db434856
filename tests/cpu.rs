//! The CPU engine against the f64 reference over the matrix of tests/matrix, and its
//! determinism: the same bits whatever the thread count and the chunking.

mod common;
mod matrix;

use std::sync::OnceLock;

use xent::cpu::Engine;
use xent::{Backend, Batch, Form, Loss, Op, Output, Rows, RunOptions};

/// The engine under test, on all cores.
fn context() -> Option<&'static Backend> {
    static CPU: OnceLock<Backend> = OnceLock::new();
    Some(CPU.get_or_init(|| {
        let cpu = Backend::cpu();
        eprintln!("engine: {}", cpu.label());
        cpu
    }))
}

/// What a run gives, as bits.
fn bits(out: &Output, rows: &Rows) -> Vec<u64> {
    let mut v = vec![out.sum.to_bits(), out.denominator.to_bits()];
    v.extend(out.z_sum.map(f64::to_bits));
    v.extend(out.entropy_sum.map(f64::to_bits));
    v.extend(rows.values.iter().map(|x| u64::from(x.to_bits())));
    v.extend(rows.argmax.iter().map(|&a| u64::from(a)));
    v.extend(rows.entropy.iter().map(|x| u64::from(x.to_bits())));
    for e in &rows.evals {
        v.extend([e.label, e.rank, e.prediction, e.confidence.to_bits(), e.brier.to_bits()].map(u64::from));
    }
    v
}

/// `loss` on `engine`, pushed in chunks of `push` rows, pieces of at most `chunk_rows`.
fn run(engine: &Engine, loss: &Loss, push: usize, chunk_rows: Option<u64>) -> Vec<u64> {
    let options = RunOptions {
        keep_values: true,
        keep_argmax: true,
        keep_entropy: true,
        report: true,
        chunk_rows,
        ..Default::default()
    };
    let rows = loss.primary().rows;
    let mut stream = engine.stream(loss, rows as u64, &options).unwrap();
    let mut all = Rows::default();
    let mut start = 0;
    while start < rows {
        let n = push.min(rows - start);
        let chunk = slice(loss, start, n);
        all.append(stream.push(&chunk).unwrap()).unwrap();
        start += n;
    }
    all.append(stream.drain().unwrap()).unwrap();
    bits(&stream.finish().unwrap(), &all)
}

/// Rows `start..start + n` of `loss`.
fn slice<'a>(loss: &Loss<'a>, start: usize, n: usize) -> Loss<'a> {
    let cut = |b: &Batch<'a>| {
        let (s, e) = (start * b.cols, (start + n) * b.cols);
        match b.data {
            xent::Floats::F32(v) => Batch::new(&v[s..e], n, b.cols),
            xent::Floats::F16(v) => Batch::new(&v[s..e], n, b.cols),
            xent::Floats::Bf16(v) => Batch::new(&v[s..e], n, b.cols),
        }
        .unwrap()
    };
    let mut chunk = *loss;
    chunk.inputs.first = cut(&loss.inputs.first);
    chunk.inputs.second = loss.inputs.second.as_ref().map(cut);
    if let Some(xent::Labels::I32(y)) = loss.inputs.labels {
        chunk.inputs.labels = Some(xent::Labels::I32(&y[start..start + n]));
    }
    chunk
}

/// 1, 2 and 7 threads, pushes of 1, 7 and all rows, pieces of 1, 7 and the default: the
/// same bits, for every operation (cross-entropy with every option and the report).
#[test]
fn bits_do_not_depend_on_threads_or_chunking() {
    let engines = [1, 2, 7].map(|n| Engine::with_threads(n).unwrap());
    let (rows, cols) = (301, 67);
    let mut r = common::rng(40_000);
    let x = common::logits(&mut r, rows * cols, 5.0);
    let second = common::logits(&mut r, rows * cols, 5.0);
    let probs = common::probs(&mut r, rows, cols, true);
    let unit = common::uniform(&mut r, rows * cols, 0.0, 1.0);
    let mut labels = common::labels(&mut r, rows, cols);
    labels.iter_mut().step_by(5).for_each(|y| *y = -100);
    let weights = common::uniform(&mut r, cols, 0.1, 2.0);
    let b = |v: &'static [f32]| Batch::new(v, rows, cols).unwrap();
    let leak = |v: Vec<f32>| -> &'static [f32] { Vec::leak(v) };
    let (x, second, probs, unit) = (leak(x), leak(second), leak(probs), leak(unit));
    let ce = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.1, z_loss: 1e-3, entropy: true };
    let valid: Vec<i32> = labels.iter().map(|&y| y.max(0)).collect();
    let mut losses = vec![Loss::new(ce, b(x)).with_labels(&labels[..]).with_weights(&weights[..])];
    for op in Op::ALL {
        let sig = op.signature();
        let first = if sig.first.domain == xent::Domain::Logits { b(x) } else { b(probs) };
        let mut loss = Loss::new(op, first);
        if let Some(s) = sig.second {
            loss = loss.with_second(match s.domain {
                xent::Domain::Logits => b(second),
                xent::Domain::Probs => b(probs),
                xent::Domain::Unit => b(unit),
            });
        }
        if sig.labels {
            loss = loss.with_labels(&valid[..]);
        }
        losses.push(loss);
    }
    losses.push(Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Logits }, b(probs)).with_second(b(second)));
    for loss in &losses {
        let want = run(&engines[0], loss, rows, None);
        for engine in &engines {
            for push in [1, 7, rows] {
                for chunk_rows in [Some(1), Some(7), None] {
                    let got = run(engine, loss, push, chunk_rows);
                    let what =
                        format!("{} on {} threads, pushes of {push}, pieces {chunk_rows:?}", loss.op, engine.threads());
                    assert!(got == want, "{what}: the bits differ");
                }
            }
        }
    }
}

/// The engine's label names the instruction set it took and its threads.
#[test]
fn the_label_names_the_simd_path_and_threads() {
    let e = Engine::with_threads(3).unwrap();
    assert_eq!(e.threads(), 3);
    assert!(["avx512", "avx2", "neon", "scalar"].contains(&e.simd()), "{}", e.simd());
    assert!(e.label().contains(e.simd()) && e.label().contains("3 threads"), "{}", e.label());
}

/// The fused linear cross-entropy is not a row operation: a clear error, not a panic.
#[test]
fn linear_ce_is_refused_with_an_error() {
    let h = [0.5f32; 6];
    let w = [0.25f32; 9];
    let y = [0i32, 2];
    let loss = Loss::new(Op::LINEAR_CE, Batch::new(&h[..], 2, 3).unwrap())
        .with_second(Batch::new(&w[..], 3, 3).unwrap())
        .with_labels(&y[..]);
    let e = Engine::new().compute(&loss, &RunOptions::default()).unwrap_err();
    assert!(e.to_string().contains("linear-ce"), "{e}");
}

/// The evaluation report's per-row records against the reference's: the label's rank and
/// the prediction exactly, the confidence and the Brier term to f32's tolerance, on rows
/// with ties, masked classes, a NaN row and ignored rows, at widths of one octet and many.
#[test]
fn report_records_match_the_reference() {
    for (k, &(rows, cols)) in [(64usize, 1usize), (97, 7), (50, 1000), (5, 70_001)].iter().enumerate() {
        let mut r = common::rng(41_000 + k as u64);
        // few distinct values: ties everywhere
        let mut x: Vec<f32> = common::logits(&mut r, rows * cols, 4.0).iter().map(|v| v.round()).collect();
        x[..cols.min(3)].fill(f32::NEG_INFINITY);
        if rows > 3 {
            x[3 * cols] = f32::NAN;
        }
        let mut y = common::labels(&mut r, rows, cols);
        y.iter_mut().step_by(4).for_each(|v| *v = -100);
        let op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
        let loss = Loss::new(op, Batch::new(&x[..], rows, cols).unwrap()).with_labels(&y[..]);
        let want: Vec<_> = xent::reference::row_evals(&loss).unwrap().unwrap().into_iter().flatten().collect();
        let options = RunOptions { report: true, ..Default::default() };
        let engine = Engine::new();
        let mut stream = engine.stream(&loss, rows as u64, &options).unwrap();
        let got = stream.push(&loss).unwrap().evals;
        assert_eq!(got.len(), want.len(), "[{rows}, {cols}]");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let what = format!("[{rows}, {cols}] record {i}: {g:?} against {w:?}");
            assert_eq!((g.label, g.rank, g.prediction), (w.label, w.rank, w.prediction), "{what}");
            let close = |a: f32, b: f32| (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 * (1.0 + b.abs());
            assert!(close(g.confidence, w.confidence) && close(g.brier, w.brier), "{what}");
        }
    }
}
