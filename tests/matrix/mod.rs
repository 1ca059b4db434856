//! Every operation against the f64 reference, over the shapes that break naive kernels and
//! the values that break naive numerics, in f32, f16 and bf16: the matrix the GPU
//! (tests/gpu.rs) and the CPU engine (tests/cpu.rs) both run, on the device their
//! `context()` gives.

use half::{bf16, f16};
use rand::Rng;
use rand::rngs::StdRng;
use xent::{Batch, DType, Domain, Error, Form, Labels, LogBase, Loss, Op, RunOptions, Slot};

use super::common::{self, assert_close, assert_scalar, rng};
use super::context;

const COLS: [usize; 8] = [1, 3, 31, 33, 255, 257, 4097, 65537];
const ROWS: [usize; 2] = [1, 7];

/// A float input in the dtype under test.
pub(crate) enum Input {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl Input {
    pub(crate) fn new(v: &[f32], dtype: DType) -> Self {
        match dtype {
            DType::F32 => Input::F32(v.to_vec()),
            DType::F16 => Input::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::Bf16 => Input::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    pub(crate) fn batch(&self, rows: usize, cols: usize) -> Batch<'_> {
        let r = match self {
            Input::F32(v) => Batch::new(&v[..], rows, cols),
            Input::F16(v) => Batch::new(&v[..], rows, cols),
            Input::Bf16(v) => Batch::new(&v[..], rows, cols),
        };
        r.expect("test batch shape")
    }
}

/// The label of the rows cross-entropy ignores, where a case ignores some.
const IGNORE: i64 = -100;

/// Cross-entropy against labels with its default options.
const CE: Op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };

/// One case of the matrix: an operation with its options, and whether class weights are
/// bound (an input its signature allows and does not require).
#[derive(Clone, Copy, Debug)]
struct Case {
    op: Op,
    weights: bool,
    /// Soft-capping of the logits (`Task::softcap`).
    softcap: Option<f32>,
}

impl Case {
    fn of(op: Op) -> Self {
        Case { op, weights: false, softcap: None }
    }

    /// This case with its logits soft-capped at `c`.
    fn capped(self, c: f32) -> Self {
        Case { softcap: Some(c), ..self }
    }

    /// This case computing each row's entropy too (cross-entropy's `entropy`).
    fn with_entropy(self) -> Self {
        let mut op = self.op;
        op.set("entropy", xent::OptionValue::Switch(true)).expect("a cross-entropy case");
        Case { op, ..self }
    }
}

/// Cross-entropy ignoring the rows labelled [`IGNORE`] or not, with class weights or not,
/// label smoothing and a z-loss.
fn ce(ignore: bool, weights: bool, label_smoothing: f32, z_loss: f32) -> Case {
    Case {
        op: Op::CrossEntropy { ignore_index: ignore.then_some(IGNORE), label_smoothing, z_loss, entropy: false },
        weights,
        softcap: None,
    }
}

/// The options of `op` that matter, one case each; an operation not named here runs with
/// its defaults (as [`Op::ALL`] gives it).
fn variants(op: Op) -> Vec<Case> {
    use Form::{Logits, Probs};
    // soft-capping: at 3 (well inside the logits' range) and at Gemma 2's 30
    match op {
        Op::LogSumExp => vec![Case::of(op), Case::of(op).capped(3.0)],
        Op::Softmax { .. } => {
            let cases = [false, true].map(|log| Case::of(Op::Softmax { temperature: 0.7, log }));
            vec![cases[0], cases[1], cases[1].capped(3.0)]
        }
        Op::CrossEntropy { .. } => {
            let mut cases = vec![ce(false, false, 0.0, 0.0), ce(true, false, 0.0, 0.0), ce(false, true, 0.0, 0.0)];
            cases.extend([ce(true, true, 0.1, 0.0), ce(false, false, 0.0, 0.01), ce(true, true, 0.1, 1e-4)]);
            cases.extend([ce(false, false, 0.0, 0.0).capped(3.0), ce(true, true, 0.1, 1e-4).capped(30.0)]);
            cases.extend([ce(false, false, 0.0, 0.0).with_entropy(), ce(true, true, 0.1, 1e-4).with_entropy()]);
            cases.extend([ce(true, false, 0.0, 0.0).with_entropy().capped(3.0)]);
            cases
        }
        Op::CrossEntropyProbs { .. } => {
            let cases = [0.0, 0.01].map(|z_loss| Case::of(Op::CrossEntropyProbs { z_loss, entropy: false }));
            vec![cases[0], cases[1], cases[1].capped(3.0), cases[0].with_entropy(), cases[1].with_entropy().capped(3.0)]
        }
        Op::KlDiv { .. } => {
            let forms = [(Probs, Probs), (Logits, Probs), (Probs, Logits), (Logits, Logits)];
            let mut cases = forms.map(|(p, q)| Case::of(Op::KlDiv { p, q })).to_vec();
            cases.extend([cases[3].capped(30.0), cases[1].capped(3.0)]);
            cases
        }
        Op::Jsd { .. } => {
            // Liger-Kernel's ends (β = 0: forward KL, β = 1: reverse KL) and a mixture
            let jsd = |p, q, beta, temperature| Case::of(Op::Jsd { p, q, beta, temperature });
            let forms = [(Probs, Probs), (Logits, Probs), (Probs, Logits), (Logits, Logits)];
            let mut cases = forms.map(|(p, q)| jsd(p, q, 0.5, 1.0)).to_vec();
            cases.extend([0.0, 0.3, 1.0].map(|beta| jsd(Logits, Logits, beta, 2.0)));
            cases.extend([jsd(Probs, Logits, 0.0, 1.0), jsd(Logits, Probs, 1.0, 0.5)]);
            cases.extend([jsd(Logits, Logits, 0.3, 2.0).capped(30.0), jsd(Probs, Logits, 0.5, 1.0).capped(3.0)]);
            cases
        }
        Op::Entropy { .. } => {
            let cases = [Probs, Logits].map(|p| Case::of(Op::Entropy { p }));
            vec![cases[0], cases[1], cases[1].capped(3.0)]
        }
        Op::BinaryCrossEntropy { .. } => {
            [Probs, Logits].map(|input| Case::of(Op::BinaryCrossEntropy { input })).to_vec()
        }
        Op::Distill { .. } => {
            let cases = [0.5, 1.0].map(|alpha| Case::of(Op::Distill { temperature: 2.0, alpha }));
            vec![cases[0], cases[1], cases[0].capped(3.0)]
        }
        _ => vec![Case::of(op)],
    }
}

/// The matrix: every operation of [`Op::ALL`], in each of its variants.
fn cases() -> Vec<Case> {
    Op::ALL.into_iter().flat_map(variants).collect()
}

/// Seeded inputs of one case; any may be edited before the run. A float input of the
/// operation takes its values from its [`Slot`]: its domain and whether it is the second.
struct Data {
    rows: usize,
    cols: usize,
    /// The first input holding logits.
    logits: Vec<f32>,
    /// The second input holding logits.
    second: Vec<f32>,
    /// The first input holding probabilities, or values in [0, 1]: rows summing to 1, with
    /// exact zeros.
    probs: Vec<f32>,
    /// The second input holding probabilities: rows without zeros (a divergence's Q, whose
    /// zeros where P has mass make it infinite).
    probs2: Vec<f32>,
    /// The second input holding values in [0, 1] (binary targets): uniform.
    unit: Vec<f32>,
    labels: Vec<i32>,
    weights: Vec<f32>,
}

impl Data {
    fn new(seed: u64, rows: usize, cols: usize, scale: f32) -> Self {
        let mut r = rng(seed);
        let n = rows * cols;
        let mut labels = common::labels(&mut r, rows, cols);
        // a few rows carry the ignore index
        for (i, y) in labels.iter_mut().enumerate() {
            if i % 3 == 1 {
                *y = IGNORE as i32;
            }
        }
        Data {
            rows,
            cols,
            logits: common::logits(&mut r, n, scale),
            second: common::logits(&mut r, n, scale),
            probs: common::probs(&mut r, rows, cols, true),
            probs2: common::probs(&mut r, rows, cols, false),
            unit: common::uniform(&mut r, n, 0.0, 1.0),
            labels,
            weights: common::uniform(&mut r, cols, 0.1, 2.0),
        }
    }

    fn valid_labels(&self) -> Vec<i32> {
        self.labels.iter().enumerate().map(|(i, &y)| if y < 0 { (i % self.cols) as i32 } else { y }).collect()
    }

    /// The values of a float input: `slot` of the operation, its second input or not.
    fn slot(&self, slot: Slot, second: bool) -> &[f32] {
        match (slot.domain, second) {
            (Domain::Logits, false) => &self.logits,
            (Domain::Logits, true) => &self.second,
            (Domain::Probs | Domain::Unit, false) => &self.probs,
            (Domain::Probs, true) => &self.probs2,
            (Domain::Unit, true) => &self.unit,
        }
    }
}

/// Whether any float input of `op` holds logits.
fn reads_logits(op: Op) -> bool {
    let sig = op.signature();
    std::iter::once(sig.first).chain(sig.second).any(|s| s.domain == Domain::Logits)
}

/// The float inputs of `case` in `dtype`, and its labels: the valid ones, or with ignored
/// rows where the case ignores some.
fn inputs(case: Case, data: &Data, dtype: DType) -> (Input, Option<Input>, Vec<i32>) {
    let sig = case.op.signature();
    let first = Input::new(data.slot(sig.first, false), dtype);
    let second = sig.second.map(|s| Input::new(data.slot(s, true), dtype));
    let ignores = matches!(case.op, Op::CrossEntropy { ignore_index: Some(IGNORE), .. });
    (first, second, if ignores { data.labels.clone() } else { data.valid_labels() })
}

/// The loss of `case` over `inputs` ([`inputs`]).
fn loss_of<'a>(case: Case, data: &'a Data, inputs: &'a (Input, Option<Input>, Vec<i32>)) -> Loss<'a> {
    let (rows, cols) = (data.rows, data.cols);
    let (first, second, labels) = inputs;
    let mut loss = Loss::new(case.op, first.batch(rows, cols));
    if let Some(second) = second {
        loss = loss.with_second(second.batch(rows, cols));
    }
    if case.op.signature().labels {
        loss = loss.with_labels(&labels[..]);
    }
    if case.weights {
        loss = loss.with_weights(&data.weights[..]);
    }
    loss.softcap = case.softcap;
    loss
}

/// Every case over a few shapes (one column to split rows) in f32 and f16 gives the same
/// bits on `a` and on `b`: every per-row value, argmax and entropy, and the sums.
#[allow(dead_code)] // tests/gpu.rs's: shader modules with naga's runtime checks and without
pub(crate) fn same_bits(a: &xent::Backend, b: &xent::Backend) {
    let bits = |v: &Option<Vec<f32>>| v.as_ref().map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    for (rows, cols) in [(7, 1), (5, 257), (2, 65537)] {
        let data = Data::new(9000 + cols as u64, rows, cols, 8.0);
        for case in cases() {
            for dtype in [DType::F32, DType::F16] {
                let inputs = inputs(case, &data, dtype);
                let loss = loss_of(case, &data, &inputs);
                let what = format!("{case:?} [{rows}, {cols}] {dtype:?}");
                let opts =
                    RunOptions { keep_values: true, keep_argmax: true, keep_entropy: true, ..Default::default() };
                let x = a.compute(&loss, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
                let y = b.compute(&loss, &opts).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(bits(&x.values), bits(&y.values), "{what}: values");
                assert_eq!(bits(&x.entropy), bits(&y.entropy), "{what}: entropy");
                assert_eq!(x.argmax, y.argmax, "{what}: argmax");
                let sums = |o: &xent::Output| {
                    [Some(o.sum), Some(o.denominator), o.z_sum, o.entropy_sum].map(|v| v.map(f64::to_bits))
                };
                assert_eq!(sums(&x), sums(&y), "{what}: sums");
            }
        }
    }
}

/// Runs `case` on the GPU and on the reference; returns the worst relative error.
fn check(what: &str, case: Case, data: &Data, dtype: DType, abs: f64, rel: f64) -> f64 {
    let Some(ctx) = context() else { return 0.0 };
    let (rows, cols) = (data.rows, data.cols);
    let inputs = inputs(case, data, dtype);
    let loss = loss_of(case, data, &inputs);
    let what = format!("{what} {case:?} [{rows}, {cols}] {dtype:?}");
    let r = xent::reference::compute(&loss, LogBase::Nats).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    let opts = RunOptions { keep_values: true, keep_argmax: true, keep_entropy: true, ..Default::default() };
    let g = ctx.compute(&loss, &opts).unwrap_or_else(|e| panic!("{what}: device: {e}"));
    check_entropy(&what, ctx, &loss, &g, abs, rel);
    let worst = assert_close(&what, g.values.as_deref().unwrap_or_default(), &r.values, abs, rel);
    let magnitude: f64 = r.values.iter().filter(|v| v.is_finite()).map(|v| v.abs()).sum();
    assert_scalar(&format!("{what} sum"), g.sum, r.sum(), abs + 1e-6 * magnitude, rel);
    assert_scalar(&format!("{what} denominator"), g.denominator, r.denominator(), 1e-6 * r.denominator().abs(), 1e-6);
    if let (Some(ga), Some(ra)) = (&g.argmax, &r.argmax) {
        assert_eq!(ga, ra, "{what}: argmax");
    }
    let z = xent::reference::z_terms(&loss, LogBase::Nats).unwrap_or_else(|e| panic!("{what}: z terms: {e}"));
    assert_eq!(g.z_sum.is_some(), z.is_some(), "{what}: z_sum given exactly with a z-loss");
    if let (Some(gz), Some(z)) = (g.z_sum, z) {
        let magnitude: f64 = z.iter().filter(|v| v.is_finite()).sum();
        assert_scalar(&format!("{what} z_sum"), gz, z.iter().sum(), abs + 1e-6 * magnitude, rel);
    }
    worst
}

/// The entropies of a case with the `entropy` option against the reference, per row and
/// summed over the rows not ignored; the loss's values are the bits of the same case
/// without it. A case without the option gives none.
fn check_entropy(what: &str, ctx: &xent::Backend, loss: &Loss, g: &xent::Output, abs: f64, rel: f64) {
    let r = xent::reference::entropies(loss, LogBase::Nats).unwrap_or_else(|e| panic!("{what}: entropies: {e}"));
    assert_eq!(g.entropy_sum.is_some(), r.is_some(), "{what}: entropy_sum given exactly with entropy");
    assert_eq!(g.entropy.is_some(), r.is_some(), "{what}: per-row entropy given exactly with entropy");
    let (Some(gh), Some(r)) = (&g.entropy, r) else { return };
    // H ≤ log K: the error of a row follows log K as a loss's follows its size
    let scale = (loss.primary().cols as f64).ln().max(1.0);
    assert_close(&format!("{what} entropy"), gh, &r, abs * scale, rel);
    let ignore = match loss.op {
        Op::CrossEntropy { ignore_index, .. } => ignore_index,
        _ => None,
    };
    let counted: Vec<f64> = r
        .iter()
        .enumerate()
        .filter(|&(i, _)| ignore.is_none() || loss.inputs.labels.map(|y| y.get(i)) != ignore)
        .map(|(_, &h)| h)
        .collect();
    let magnitude: f64 = counted.iter().filter(|v| v.is_finite()).sum();
    let sum = g.entropy_sum.unwrap_or(f64::NAN);
    assert_scalar(&format!("{what} entropy_sum"), sum, counted.iter().sum(), abs * scale + 1e-6 * magnitude, rel);
    let mut plain = *loss;
    plain.op.set("entropy", xent::OptionValue::Switch(false)).expect("cross-entropy");
    let opts = RunOptions { keep_values: true, ..Default::default() };
    let without = ctx.compute(&plain, &opts).unwrap_or_else(|e| panic!("{what}: device without entropy: {e}"));
    let (a, b) = (g.values.as_deref().unwrap_or_default(), without.values.unwrap_or_default());
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}: the loss changed with entropy");
    assert_eq!(g.sum.to_bits(), without.sum.to_bits(), "{what}: the sum changed with entropy");
}

fn report(case: &str, worst: f64) {
    eprintln!("worst relative error {case}: {worst:.3e}");
}

/// The variants keep the operation they expand, with valid options, and bind weights only
/// where the operation takes them.
#[test]
fn the_matrix_covers_every_operation() {
    for op in Op::ALL {
        let v = variants(op);
        assert!(!v.is_empty(), "{op}");
        for case in v {
            assert_eq!(case.op.name(), op.name(), "{case:?}");
            case.op.validate().unwrap_or_else(|e| panic!("{case:?}: {e}"));
            assert!(!case.weights || case.op.signature().weights, "{case:?}");
        }
    }
}

#[test]
fn every_op_f32_over_the_shape_matrix() {
    for (k, case) in cases().into_iter().enumerate() {
        let mut worst = 0.0f64;
        for &cols in &COLS {
            for &rows in &ROWS {
                let data = Data::new(1000 + k as u64 * 17 + cols as u64 + rows as u64, rows, cols, 5.0);
                worst = worst.max(check("matrix", case, &data, DType::F32, 2e-5, 2e-5));
            }
        }
        report(&format!("{case:?}"), worst);
    }
}

#[test]
fn every_op_f16_and_bf16() {
    for dtype in [DType::F16, DType::Bf16] {
        for (k, case) in cases().into_iter().enumerate() {
            for &(rows, cols) in &[(7, 33), (3, 4097)] {
                let data = Data::new(2000 + k as u64, rows, cols, 4.0);
                check("half", case, &data, dtype, 2e-5, 2e-5);
            }
        }
    }
}

#[test]
fn more_than_65535_rows() {
    for (k, case) in cases().into_iter().enumerate() {
        let data = Data::new(3000 + k as u64, 70_000, 3, 5.0);
        check("many rows", case, &data, DType::F32, 2e-5, 2e-5);
    }
}

#[test]
fn logits_of_1e4() {
    for (k, case) in cases().into_iter().enumerate() {
        if matches!(case.op, Op::GaussianKl | Op::BinaryCrossEntropy { input: Form::Probs }) {
            continue; // exp(1e4) overflows f32 by definition, and probabilities are not logits
        }
        let data = Data::new(4000 + k as u64, 7, 257, 1e4);
        // one ulp of 1e4 in f32 is 1e-3: the absolute tolerance follows the scale
        check("±1e4", case, &data, DType::F32, 4e-3, 2e-5);
    }
}

/// Masks: scattered -inf, a whole -inf row, a label on a masked class.
#[test]
fn neg_inf_masks() {
    for (k, case) in cases().into_iter().enumerate() {
        for &cols in &[1usize, 33, 300] {
            let mut data = Data::new(5000 + k as u64 + cols as u64, 7, cols, 5.0);
            let mut r: StdRng = rng(k as u64);
            for v in data.logits.iter_mut().chain(data.second.iter_mut()) {
                if r.random_bool(0.3) {
                    *v = f32::NEG_INFINITY;
                }
            }
            data.logits[2 * cols..3 * cols].fill(f32::NEG_INFINITY);
            data.second[4 * cols..5 * cols].fill(f32::NEG_INFINITY);
            check("-inf", case, &data, DType::F32, 2e-5, 2e-5);
        }
    }
}

/// A NaN (and a +inf) in one row makes that row NaN and leaves the others untouched.
/// Masks on one input of two at a time: where both sides are masked at random, nearly every
/// row of a divergence or a distillation is infinite (a class one side rules out and the other
/// does not) and agrees by being infinite, so the finite answers of a teacher (or a P) that
/// rules classes out where the other side does not would go untested.
#[test]
fn neg_inf_masks_on_one_input() {
    for (k, case) in cases().into_iter().enumerate() {
        if case.op.signature().second.is_none_or(|s| s.domain != Domain::Logits) {
            continue;
        }
        for masked_second in [false, true] {
            let mut data = Data::new(5500 + k as u64, 7, 33, 5.0);
            let mut r: StdRng = rng(k as u64 + 77);
            let side = if masked_second { &mut data.second } else { &mut data.logits };
            for v in side.iter_mut() {
                if r.random_bool(0.3) {
                    *v = f32::NEG_INFINITY;
                }
            }
            let what = if masked_second { "-inf in the second" } else { "-inf in the first" };
            check(what, case, &data, DType::F32, 2e-5, 2e-5);
        }
    }
}

#[test]
fn nan_row_leaves_other_rows_alone() {
    for (k, case) in cases().into_iter().enumerate() {
        if !reads_logits(case.op) {
            continue; // the NaN goes into logits; NaN probabilities are bad input (see below)
        }
        let mut data = Data::new(6000 + k as u64, 7, 65, 5.0);
        data.logits[3 * 65 + 10] = f32::NAN;
        data.logits[5 * 65 + 64] = f32::INFINITY;
        check("NaN row", case, &data, DType::F32, 2e-5, 2e-5);
    }
}

/// Probabilities with exact zeros on either side of KL, and BCE at exactly 0 and 1.
#[test]
fn zeros_in_probabilities_and_bce_edges() {
    let mut data = Data::new(7000, 7, 40, 3.0);
    for i in (0..data.probs2.len()).step_by(7) {
        data.probs2[i] = 0.0;
    }
    for (i, v) in data.probs.iter_mut().enumerate() {
        match i % 5 {
            0 => *v = 0.0,
            1 => *v = 1.0,
            _ => {}
        }
    }
    for (i, v) in data.unit.iter_mut().enumerate() {
        match i % 4 {
            0 => *v = 0.0,
            1 => *v = 1.0,
            _ => {}
        }
    }
    use Form::{Logits, Probs};
    for op in [
        Op::KlDiv { p: Probs, q: Probs },
        Op::KlDiv { p: Logits, q: Probs },
        Op::KlDiv { p: Probs, q: Logits },
        Op::BinaryCrossEntropy { input: Probs },
        Op::BinaryCrossEntropy { input: Logits },
        Op::Entropy { p: Probs },
        Op::CrossEntropyProbs { z_loss: 0.0, entropy: false },
    ] {
        check("zeros", Case::of(op), &data, DType::F32, 2e-5, 2e-5);
    }
}
/// Cross-entropy of `x` against `data`'s labels, some of them the ignore index.
fn ce_ignoring<'a>(data: &'a Data, x: &'a Input) -> Loss<'a> {
    let op = Op::CrossEntropy { ignore_index: Some(IGNORE), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    Loss::new(op, x.batch(data.rows, data.cols)).with_labels(&data.labels[..])
}

/// Cross-entropy of `data` (some labels the ignore index) run in pieces of each of
/// `chunks` rows gives the bits of one piece: the sum, the denominator, every row's value
/// and the argmax.
fn chunking_keeps_the_bits(ctx: &xent::Backend, data: &Data, chunks: &[u64]) {
    let x = Input::new(&data.logits, DType::F32);
    let loss = ce_ignoring(data, &x);
    let run = |chunk_rows| {
        ctx.compute(&loss, &RunOptions { keep_values: true, keep_argmax: true, chunk_rows, ..Default::default() })
            .unwrap()
    };
    let whole = run(None);
    let b = whole.values.as_ref().unwrap();
    for &chunk in chunks {
        let part = run(Some(chunk));
        assert_eq!(part.sum.to_bits(), whole.sum.to_bits(), "chunk {chunk}: sum");
        assert_eq!(part.denominator.to_bits(), whole.denominator.to_bits(), "chunk {chunk}: denominator");
        let a = part.values.unwrap();
        let same = a.iter().zip(b).filter(|(x, y)| x.to_bits() == y.to_bits()).count();
        assert_eq!((a.len(), same), (b.len(), b.len()), "chunk {chunk}: {same} of {} values the same bits", b.len());
        assert_eq!(part.argmax, whole.argmax, "chunk {chunk}: argmax");
    }
}

/// A chunked run (a few rows per chunk) gives the same bits as one chunk.
#[test]
fn chunked_run_is_bit_identical() {
    let Some(ctx) = context() else { return };
    let data = Data::new(8000, 1001, 37, 5.0);
    chunking_keeps_the_bits(ctx, &data, &[1, 3, 64, 1000]);
    let x = Input::new(&data.logits, DType::F32);
    let softmax = Loss::new(Op::Softmax { temperature: 1.5, log: false }, x.batch(data.rows, data.cols));
    let one = ctx.compute(&softmax, &RunOptions::default()).unwrap().values.unwrap();
    let many =
        ctx.compute(&softmax, &RunOptions { chunk_rows: Some(5), ..Default::default() }).unwrap().values.unwrap();
    assert!(one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits()), "softmax chunked");
}

/// Long rows in pieces of few rows give the bits of one piece: the layout (split parts
/// included, which a GPU layout takes for few long rows) is chosen for the job's rows,
/// not for each piece's.
#[test]
fn chunked_long_rows_are_bit_identical() {
    let Some(ctx) = context() else { return };
    chunking_keeps_the_bits(ctx, &Data::new(8050, 1100, 8192, 5.0), &[100]);
}

/// Pieces that end inside a block of the tree sum carry its rows over to the next piece:
/// any chunking gives the bits of one chunk, over rows enough for three levels of the
/// tree, with per-row weights (class weights, ignored rows), z-loss terms, entropies (of
/// the rows not ignored) and argmax.
#[test]
fn chunks_across_reduction_blocks_are_bit_identical() {
    let Some(ctx) = context() else { return };
    // 263,921 rows: 516 blocks of 512, then 2 partials, then 1
    let data = Data::new(8100, (1 << 18) + 777, 3, 5.0);
    let x = Input::new(&data.logits, DType::F32);
    let op = Op::CrossEntropy { ignore_index: Some(IGNORE), label_smoothing: 0.0, z_loss: 1e-3, entropy: true };
    let loss =
        Loss::new(op, x.batch(data.rows, data.cols)).with_labels(&data.labels[..]).with_weights(&data.weights[..]);
    let run = |chunk_rows| {
        let opts =
            RunOptions { keep_values: true, keep_argmax: true, keep_entropy: true, chunk_rows, ..Default::default() };
        ctx.compute(&loss, &opts).unwrap()
    };
    let whole = run(None);
    let reference = xent::reference::compute(&loss, LogBase::Nats).unwrap();
    assert_scalar("sum", whole.sum, reference.sum(), 0.0, 1e-5);
    assert_scalar("denominator", whole.denominator, reference.denominator(), 0.0, 1e-5);
    for chunk in [511, 513, 100_000] {
        let part = run(Some(chunk));
        assert_eq!(part.sum.to_bits(), whole.sum.to_bits(), "chunk {chunk}: sum");
        assert_eq!(part.denominator.to_bits(), whole.denominator.to_bits(), "chunk {chunk}: denominator");
        assert_eq!(part.z_sum.map(f64::to_bits), whole.z_sum.map(f64::to_bits), "chunk {chunk}: z_sum");
        let entropy_sum = part.entropy_sum.map(f64::to_bits);
        assert_eq!(entropy_sum, whole.entropy_sum.map(f64::to_bits), "chunk {chunk}: entropy_sum");
        assert_eq!(part.entropy, whole.entropy, "chunk {chunk}: entropies");
        let (a, b) = (part.values.unwrap(), whole.values.as_ref().unwrap());
        assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "chunk {chunk}");
        assert_eq!(part.argmax, whole.argmax, "chunk {chunk}: argmax");
    }
    assert_eq!(whole.argmax.unwrap(), reference.argmax.unwrap());
    let h = xent::reference::entropies(&loss, LogBase::Nats).unwrap().unwrap();
    let counted: f64 = h.iter().zip(&data.labels).filter(|&(_, &y)| i64::from(y) != IGNORE).map(|(h, _)| h).sum();
    assert_scalar("entropy_sum", whole.entropy_sum.unwrap(), counted, 0.0, 1e-5);
}

/// Entropies worked out by hand: uniform logits over K classes give log K; logits
/// [0, ln 2, ln 3] give p = [1/6, 1/3, 1/2] and H = ln 6/6 + ln 3/3 + ln 2/2; a row
/// [c, c + 1, c] gives ln(2 + e) − e/(2 + e) whatever c; a masked
/// class (`-inf`) adds nothing; NaN or `+inf` in a row, or a row of `-inf`, give NaN; in bits
/// each is over ln 2. The sum leaves out the ignored row, and the loss is unchanged.
#[test]
fn entropy_of_rows_worked_out_by_hand() {
    let Some(ctx) = context() else { return };
    let (l2, l3, ninf) = (2f32.ln(), 3f32.ln(), f32::NEG_INFINITY);
    #[rustfmt::skip]
    let x = [
        1.5, 1.5, 1.5,          // uniform: ln 3
        0.0, l2, l3,            // ln 6/6 + ln 3/3 + ln 2/2
        -7.0, ninf, -7.0,       // one class masked: ln 2
        1e4, 1e4 + 1.0, 1e4,    // p = [1, e, 1]/(2 + e): ln(2 + e) − e/(2 + e) (the max subtracted first)
        0.0, l2, l3,            // ignored: left out of the sum, still written
        0.0, f32::NAN, 1.0,     // NaN
        ninf, ninf, ninf,       // every class masked: NaN
    ];
    let labels = [0i32, 2, 0, 1, -100, 0, 0];
    let h1 = (6f64.ln() / 6.0) + (3f64.ln() / 3.0) + (2f64.ln() / 2.0);
    let e = std::f64::consts::E;
    let h3 = (2.0 + e).ln() - e / (2.0 + e);
    let want = [3f64.ln(), h1, 2f64.ln(), h3, h1, f64::NAN, f64::NAN];
    let op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 0.0, entropy: true };
    let loss = Loss::new(op, Batch::new(&x[..], 7, 3).unwrap()).with_labels(&labels[..]);
    for (base, scale) in [(LogBase::Nats, 1.0), (LogBase::Bits, 1.0 / std::f64::consts::LN_2)] {
        let opts = RunOptions { base, keep_entropy: true, ..Default::default() };
        let g = ctx.compute(&loss, &opts).unwrap();
        let want: Vec<f64> = want.iter().map(|h| h * scale).collect();
        assert_close(&format!("{base:?}"), g.entropy.as_deref().unwrap(), &want, 1e-6, 1e-6);
        let r = xent::reference::entropies(&loss, base).unwrap().unwrap();
        assert_close(
            &format!("{base:?} reference"),
            &r.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            &want,
            1e-6,
            1e-6,
        );
        // the NaN rows make the sum NaN; the rows before them add up without the ignored one
        assert!(g.entropy_sum.unwrap().is_nan(), "{base:?}: a NaN row makes the sum NaN");
    }
    let finite = Loss::new(op, Batch::new(&x[..15], 5, 3).unwrap()).with_labels(&labels[..5]);
    let g = ctx.compute(&finite, &RunOptions::default()).unwrap();
    assert_scalar("sum without the ignored row", g.entropy_sum.unwrap(), 3f64.ln() + h1 + 2f64.ln() + h3, 1e-6, 1e-6);
}

/// The same input twice gives bit-identical output.
#[test]
fn deterministic() {
    let Some(ctx) = context() else { return };
    let data = Data::new(9000, 20_000, 129, 5.0);
    let x = Input::new(&data.logits, DType::F32);
    let loss = Loss::new(Op::LogSumExp, x.batch(data.rows, data.cols));
    let opts = RunOptions { keep_values: true, ..Default::default() };
    let a = ctx.compute(&loss, &opts).unwrap();
    let b = ctx.compute(&loss, &opts).unwrap();
    assert_eq!(a.sum.to_bits(), b.sum.to_bits());
    assert!(a.values.unwrap().iter().zip(b.values.unwrap().iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
}

/// 10^7 rows: the tree sum is as accurate as a pairwise sum.
#[test]
fn ten_million_rows() {
    let Some(ctx) = context() else { return };
    let rows = 10_000_000;
    let mut r = rng(11_000);
    let logits = common::logits(&mut r, rows, 5.0);
    let loss = Loss::new(Op::LogSumExp, Batch::new(&logits[..], rows, 1).unwrap());
    let g = ctx.compute(&loss, &RunOptions::default()).unwrap();
    let exact: f64 = logits.iter().map(|&v| f64::from(v)).sum();
    let magnitude: f64 = logits.iter().map(|&v| f64::from(v).abs()).sum();
    // pairwise bound: log2(n) · eps · Σ|x|
    let bound = 24.0 * f64::from(f32::EPSILON) * magnitude;
    assert!((g.sum - exact).abs() <= bound, "sum {} exact {exact} bound {bound}", g.sum);
    eprintln!("10^7 rows: |error| {:.3e}, pairwise bound {bound:.3e}", (g.sum - exact).abs());
}

#[test]
fn label_errors_name_the_row() {
    let Some(ctx) = context() else { return };
    let data = Data::new(12_000, 9, 5, 2.0);
    let x = Input::new(&data.logits, DType::F32);
    let mut labels = data.valid_labels();
    labels[6] = 5;
    labels[8] = -1;
    let loss = Loss::new(CE, x.batch(9, 5)).with_labels(&labels[..]);
    match ctx.compute(&loss, &RunOptions::default()) {
        Err(e @ Error::Label { row: 6, label: Some(5), cols: 5 }) => {
            assert_eq!(e.to_string(), "row 6: label 5 is outside [0, 5)");
        }
        other => panic!("expected a label error at row 6, got {other:?}"),
    }
    // checked before narrowing: 2^32 + 3 is out of range, not 3
    let wide: Vec<i64> = data
        .valid_labels()
        .iter()
        .enumerate()
        .map(|(i, &y)| if i == 4 { (1 << 32) + 3 } else { i64::from(y) })
        .collect();
    let loss = Loss::new(CE, x.batch(9, 5)).with_labels(&wide[..]);
    match ctx.compute(&loss, &RunOptions::default()) {
        Err(Error::Label { row: 4, label: Some(4294967299), cols: 5 }) => {}
        other => panic!("expected a label error at row 4, got {other:?}"),
    }
}

#[test]
fn negative_probability_names_the_row() {
    let Some(ctx) = context() else { return };
    let mut data = Data::new(13_000, 9, 5, 2.0);
    data.probs[3 * 5 + 2] = -0.25;
    data.probs[7 * 5] = f32::NAN;
    let x = Input::new(&data.logits, DType::F32);
    let p = Input::new(&data.probs, DType::F32);
    for loss in [
        Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, x.batch(9, 5)).with_second(p.batch(9, 5)),
        Loss::new(Op::KlDiv { p: Form::Probs, q: Form::Logits }, p.batch(9, 5)).with_second(x.batch(9, 5)),
        Loss::new(Op::Entropy { p: Form::Probs }, p.batch(9, 5)),
    ] {
        match ctx.compute(&loss, &RunOptions::default()) {
            Err(Error::Value { row: 3, detail }) => assert!(detail.contains("-0.25"), "{detail}"),
            other => panic!("expected a value error at row 3, got {other:?}"),
        }
    }
}

/// A `+inf` probability (or BCE target) is out of the domain like a negative one, and the
/// message says it is infinite.
#[test]
fn infinite_probability_names_the_row() {
    let Some(ctx) = context() else { return };
    let mut data = Data::new(13_500, 9, 5, 2.0);
    data.probs[4 * 5 + 1] = f32::INFINITY;
    data.unit[4 * 5 + 1] = f32::INFINITY;
    let x = Input::new(&data.logits, DType::F32);
    let p = Input::new(&data.probs, DType::F32);
    let p2 = Input::new(&data.probs2, DType::F32);
    let u = Input::new(&data.unit, DType::F32);
    use Form::{Logits, Probs};
    for loss in [
        Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, x.batch(9, 5)).with_second(p.batch(9, 5)),
        Loss::new(Op::KlDiv { p: Probs, q: Logits }, p.batch(9, 5)).with_second(x.batch(9, 5)),
        Loss::new(Op::KlDiv { p: Probs, q: Probs }, p2.batch(9, 5)).with_second(p.batch(9, 5)),
        Loss::new(Op::Entropy { p: Probs }, p.batch(9, 5)),
        Loss::new(Op::BinaryCrossEntropy { input: Probs }, p.batch(9, 5)).with_second(p2.batch(9, 5)),
        Loss::new(Op::BinaryCrossEntropy { input: Logits }, x.batch(9, 5)).with_second(u.batch(9, 5)),
    ] {
        match ctx.compute(&loss, &RunOptions::default()) {
            Err(Error::Value { row: 4, detail }) => {
                assert!(detail.contains("inf at column 1 is infinite"), "{loss:?}: {detail}")
            }
            other => panic!("{loss:?}: expected a value error at row 4, got {other:?}"),
        }
    }
}

#[test]
fn every_label_type() {
    let data = Data::new(14_000, 7, 31, 3.0);
    let Some(ctx) = context() else { return };
    let x = Input::new(&data.logits, DType::F32);
    let y = data.valid_labels();
    let y64: Vec<i64> = y.iter().map(|&v| i64::from(v)).collect();
    let y8: Vec<u8> = y.iter().map(|&v| v as u8).collect();
    let y16: Vec<u16> = y.iter().map(|&v| v as u16).collect();
    let y32: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    let base = Loss::new(CE, x.batch(7, 31)).with_labels(&y[..]);
    let want = ctx.compute(&base, &RunOptions::default()).unwrap().sum;
    for labels in [Labels::I64(&y64), Labels::U8(&y8), Labels::U16(&y16), Labels::U32(&y32)] {
        let loss = Loss::new(CE, x.batch(7, 31)).with_labels(labels);
        assert_eq!(ctx.compute(&loss, &RunOptions::default()).unwrap().sum.to_bits(), want.to_bits());
    }
}

#[test]
fn bits_are_nats_over_ln2() {
    let Some(ctx) = context() else { return };
    let data = Data::new(15_000, 7, 31, 3.0);
    let x = Input::new(&data.logits, DType::F32);
    let loss = Loss::new(Op::Entropy { p: Form::Logits }, x.batch(7, 31));
    let nats = ctx.compute(&loss, &RunOptions::default()).unwrap().sum;
    let bits = ctx.compute(&loss, &RunOptions { base: LogBase::Bits, ..Default::default() }).unwrap().sum;
    assert_scalar("bits", bits, nats / std::f64::consts::LN_2, 1e-6, 1e-6);
}

/// A vocabulary of 2^20 classes: a row is 4 MiB, so a chunk of the software device
/// holds 31 rows.
#[test]
fn a_million_columns() {
    let cols = 1 << 20;
    let kl = Op::KlDiv { p: Form::Logits, q: Form::Logits };
    for (k, case) in [Case::of(Op::LogSumExp), ce(false, true, 0.1, 0.0), Case::of(kl)].into_iter().enumerate() {
        let data = Data::new(16_000 + k as u64, 3, cols, 5.0);
        check("2^20 columns", case, &data, DType::F32, 2e-5, 2e-5);
    }
}

/// Few rows of many columns, which GPU layouts split across workgroups (partials merged
/// in a second dispatch; `XENT_ROW_LAYOUT=gpu` runs them here), for every kernel that
/// splits: odd columns (half pairs across words), a part that is all -inf, a NaN in one
/// part, the row's max tied in two parts (the argmax is the first), softmax written part
/// by part, smoothing, weights and temperature, f16 and f32.
#[test]
fn split_rows() {
    use Form::{Logits, Probs};
    let cases = [
        Case::of(Op::RowMax),
        Case::of(Op::LogSumExp),
        Case::of(Op::Softmax { temperature: 0.7, log: false }),
        Case::of(Op::Softmax { temperature: 0.7, log: true }),
        ce(true, true, 0.1, 0.0),
        ce(false, false, 0.0, 0.0),
        ce(true, true, 0.1, 0.0).with_entropy(),
        ce(false, false, 0.0, 0.0).with_entropy().capped(3.0),
        Case::of(Op::KlDiv { p: Logits, q: Logits }),
        Case::of(Op::Entropy { p: Logits }),
        Case::of(Op::BinaryCrossEntropy { input: Logits }),
        Case::of(Op::BinaryCrossEntropy { input: Probs }),
        Case::of(Op::GaussianKl),
        Case::of(Op::Distill { temperature: 2.0, alpha: 0.5 }),
        Case::of(Op::Distill { temperature: 2.0, alpha: 1.0 }),
    ];
    for (k, case) in cases.into_iter().enumerate() {
        for &(rows, cols) in &[(2usize, 65_537usize), (5, 40_000), (1, 8_192)] {
            let mut data = Data::new(18_000 + k as u64 + cols as u64, rows, cols, 5.0);
            // row 0: a part's worth of -inf; row 1: one NaN late in the row; the last
            // row: its max twice, in the first and the last part
            data.logits[100..100 + 5_000].fill(f32::NEG_INFINITY);
            if rows > 1 {
                data.logits[cols + cols - 7] = f32::NAN;
            }
            let last = &mut data.logits[(rows - 1) * cols..];
            last[3] = 50.0;
            last[cols - 2] = 50.0;
            for dtype in [DType::F32, DType::F16] {
                check("split", case, &data, dtype, 2e-5, 2e-5);
            }
        }
    }
}

/// Rows long enough that one loop per lane would pass 65,535 iterations, where llvmpipe
/// silently stops a shader's loops: the layout gives such rows more lanes.
#[test]
fn rows_past_the_software_loop_limit() {
    let cols = (1 << 22) + 3;
    let cases = [
        Case::of(Op::Softmax { temperature: 0.7, log: true }),
        Case::of(Op::Distill { temperature: 2.0, alpha: 0.5 }),
        Case::of(Op::Entropy { p: Form::Logits }),
    ];
    for (k, case) in cases.into_iter().enumerate() {
        let data = Data::new(17_000 + k as u64, 2, cols, 5.0);
        check("2^22 + 3 columns", case, &data, DType::F32, 2e-5, 2e-5);
    }
}

/// Every one of the 65,536 half and bfloat16 bit patterns (zeros, subnormals, normals,
/// infinities, NaN) read through the kernels' decoders, element by element and in
/// octets: the row max of a one-column row is the element itself, and so is that of a
/// 32-column row holding it once (at column row % 32, every slot of an octet) among
/// -inf; each must equal the host's exact widening (an f32 subnormal may be flushed to
/// zero, as WGSL allows).
#[test]
fn every_half_and_bfloat16_bit_pattern_decodes_exactly() {
    let Some(ctx) = context() else { return };
    const COLS: usize = 32;
    let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let brains: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    let spread = |v: &[u16], neg_inf: u16| -> Vec<u16> {
        let mut rows = vec![neg_inf; v.len() * COLS];
        for (r, &bits) in v.iter().enumerate() {
            rows[r * COLS + r % COLS] = bits;
        }
        rows
    };
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    let halves_spread: Vec<f16> = spread(&bits, f16::NEG_INFINITY.to_bits()).into_iter().map(f16::from_bits).collect();
    let brains_spread: Vec<bf16> =
        spread(&bits, bf16::NEG_INFINITY.to_bits()).into_iter().map(bf16::from_bits).collect();
    let opts = RunOptions { keep_values: true, ..Default::default() };
    let wide_halves: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
    let wide_brains: Vec<f32> = brains.iter().map(|h| h.to_f32()).collect();
    for (name, batch, wide) in [
        ("f16", Batch::new(&halves[..], halves.len(), 1).unwrap(), &wide_halves),
        ("bf16", Batch::new(&brains[..], brains.len(), 1).unwrap(), &wide_brains),
        ("f16 in octets", Batch::new(&halves_spread[..], halves.len(), COLS).unwrap(), &wide_halves),
        ("bf16 in octets", Batch::new(&brains_spread[..], brains.len(), COLS).unwrap(), &wide_brains),
    ] {
        let out = ctx.compute(&Loss::new(Op::RowMax, batch), &opts).unwrap();
        let values = out.values.unwrap();
        assert_eq!(values.len(), wide.len(), "{name}");
        for (bits, (&g, &w)) in values.iter().zip(wide.iter()).enumerate() {
            // WGSL lets f32 arithmetic flush subnormals to zero (NVIDIA does): a bf16
            // subnormal widens exactly to an f32 subnormal, which the row max may flush.
            let flushed = w.is_subnormal() && g == 0.0;
            let same = if w.is_nan() {
                g.is_nan()
            } else {
                flushed || (g == w && g.is_sign_negative() == w.is_sign_negative())
            };
            assert!(same, "{name} bits {bits:#06x}: decoded {g:e}, exact {w:e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// temperatures and huge logits

/// The GPU against the reference on one loss, values and sum.
fn matches_reference(what: &str, loss: &Loss, abs: f64, rel: f64) -> f64 {
    let Some(ctx) = context() else { return 0.0 };
    let r = xent::reference::compute(loss, LogBase::Nats).unwrap_or_else(|e| panic!("{what}: reference: {e}"));
    let opts = RunOptions { keep_values: true, ..Default::default() };
    let g = ctx.compute(loss, &opts).unwrap_or_else(|e| panic!("{what}: device: {e}"));
    let worst = assert_close(what, g.values.as_deref().unwrap_or_default(), &r.values, abs, rel);
    assert_scalar(&format!("{what} sum"), g.sum, r.sum(), abs * r.values.len() as f64, rel);
    worst
}

/// Logits near 1e4 at T = 0.7: the row max is subtracted before the temperature divides,
/// so `x − m` is exact and only its quotient rounds. Dividing first rounds `x/T` to an ulp
/// of 1.4e4 (1e-3), up to 1e-3 relative in every probability.
#[test]
fn a_temperature_divides_after_the_max_is_subtracted() {
    for (k, &cols) in [3usize, 31, 257, 4097].iter().enumerate() {
        let rows = 7;
        let mut r = rng(21_000 + k as u64);
        let x: Vec<f32> = common::logits(&mut r, rows * cols, 5.0).iter().map(|v| 1e4 + v).collect();
        let t: Vec<f32> = common::logits(&mut r, rows * cols, 5.0).iter().map(|v| 1e4 + v).collect();
        let y = common::labels(&mut r, rows, cols);
        let b = |v| Batch::new(v, rows, cols).unwrap();
        for log in [false, true] {
            let loss = Loss::new(Op::Softmax { temperature: 0.7, log }, b(&x[..]));
            // log: values near 0 carry the absolute error of log s (and s that of its sum)
            let abs = if log { 1e-6 } else { 1e-37 };
            let worst = matches_reference(&format!("softmax log={log} [{rows}, {cols}]"), &loss, abs, 2e-5);
            report(&format!("softmax log={log} at T = 0.7 near 1e4, {cols} columns"), worst);
        }
        for alpha in [1.0, 0.5] {
            let op = Op::Distill { temperature: 0.7, alpha };
            let loss = Loss::new(op, b(&x[..])).with_second(b(&t[..])).with_labels(&y[..]);
            let worst = matches_reference(&format!("distill α={alpha} [{rows}, {cols}]"), &loss, 1e-6, 1e-5);
            report(&format!("distill α={alpha} at τ = 0.7 near 1e4, {cols} columns"), worst);
        }
    }
}

/// Equal logits far above the rest split the mass (the max is subtracted before the log
/// of the sum is added), on the GPU as in the reference; so do a tiny temperature's.
#[test]
fn huge_equal_logits_split_the_mass() {
    let x = [1e20f32, 1e20, 0.0, 5.0, 5.0, -3.0e38];
    let small = [1.0f32, 1.0, 0.0, -2.0, 3.0, 3.0];
    let y = [0i32, 1];
    let target = [1.0f32, 0.0, 0.0, 0.0, 0.5, 0.5];
    let b = |v| Batch::new(v, 2, 3).unwrap();
    let losses = [
        ("softmax", Loss::new(Op::Softmax { temperature: 1.0, log: false }, b(&x[..]))),
        ("log-softmax", Loss::new(Op::Softmax { temperature: 1.0, log: true }, b(&x[..]))),
        ("softmax at T = 1e-30", Loss::new(Op::Softmax { temperature: 1e-30, log: false }, b(&small[..]))),
        ("log-softmax at T = 3", Loss::new(Op::Softmax { temperature: 3.0, log: true }, b(&x[..]))),
        ("ce", Loss::new(CE, b(&x[..])).with_labels(&y[..])),
        (
            "ce probs",
            Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, b(&x[..])).with_second(b(&target[..])),
        ),
        ("entropy", Loss::new(Op::Entropy { p: Form::Logits }, b(&x[..]))),
        ("lse", Loss::new(Op::LogSumExp, b(&x[..]))),
    ];
    for (what, loss) in &losses {
        matches_reference(what, loss, 1e-30, 1e-6);
    }
}

/// `τ²·KL` as τ grows tends to half the variance of `t − s` over the classes: the GPU
/// follows the reference to the largest temperatures (no τ² overflow, no NaN), and to the
/// smallest (no 1/τ overflow), whatever the row layout (the last shape is split across
/// workgroups on GPU layouts). Softmax likewise.
#[test]
fn distillation_and_softmax_at_extreme_temperatures() {
    for (k, &(rows, cols)) in [(5, 1), (5, 3), (5, 33), (5, 257), (5, 4097), (2, 65_537)].iter().enumerate() {
        let data = Data::new(22_000 + k as u64, rows, cols, 4.0);
        let valid = data.valid_labels();
        let b = |v| Batch::new(v, rows, cols).unwrap();
        for temperature in [1e-40f32, 1e-30, 30.0, 1e4, 1e8, 1e30, f32::MAX] {
            let softmax = Loss::new(Op::Softmax { temperature, log: false }, b(&data.logits[..]));
            matches_reference(&format!("softmax T={temperature:e} [{rows}, {cols}]"), &softmax, 1e-30, 2e-5);
            for alpha in [1.0f32, 0.5] {
                let op = Op::Distill { temperature, alpha };
                let loss = Loss::new(op, b(&data.logits[..])).with_second(b(&data.second[..])).with_labels(&valid[..]);
                let what = format!("distill τ={temperature:e} α={alpha} [{rows}, {cols}]");
                let worst = matches_reference(&what, &loss, 1e-6, 2e-5);
                report(&what, worst);
            }
        }
    }
}
