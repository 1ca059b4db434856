//! The embedding API: losses and fused gradients recorded into a caller's encoder on a
//! caller's buffers, checked against the f64 reference and against central finite
//! differences of it; argument errors; two devices; many records per submit. The soak test is
//! tests/soak.rs, alone in its process so that its memory figures are its own.

mod common;
#[path = "embed/engine.rs"]
mod engine;
#[path = "embed/entropy.rs"]
mod entropy;
#[path = "embed/labels.rs"]
mod labels;
#[path = "embed/mean.rs"]
mod mean;
#[path = "embed/options.rs"]
mod options;
#[path = "embed/outputs.rs"]
mod outputs;
#[path = "embed/report.rs"]
mod report;
#[path = "embed/results.rs"]
mod results;
#[path = "embed/status.rs"]
mod status;
#[path = "embed/subgroups.rs"]
mod subgroups;

use common::{assert_close, context, rng};
use half::f16;
use rand::rngs::StdRng;
use wgpu::util::DeviceExt;
use xent::reference::gradient;
use xent::{
    Batch, DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, Domain, Form,
    GradTarget, Inputs, Labels, Loss, Op, Recorder, Reduced, Reduction, Task,
};

/// One operation of the matrix, and whether class weights are bound to it.
#[derive(Clone, Copy, Debug)]
struct Case {
    op: Op,
    weighted: bool,
    /// Soft-capping of the logits (`Task::softcap`).
    softcap: Option<f32>,
}

impl From<Op> for Case {
    fn from(op: Op) -> Case {
        Case { op, weighted: false, softcap: None }
    }
}

impl Case {
    /// This case with its logits soft-capped at `c`.
    fn capped(self, c: f32) -> Case {
        Case { softcap: Some(c), ..self }
    }
}

const IGNORE: i32 = -100;

/// Cross-entropy against labels, without options.
const CE: Op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };

/// The option variants of `op` the matrix runs (the forms of its inputs, ignore index, class
/// weights, smoothing, temperature and alpha); an operation not named here runs with its
/// default options.
fn variants(op: Op) -> Vec<Case> {
    let forms = [Form::Probs, Form::Logits];
    let ignore = Some(i64::from(IGNORE));
    let weighted = Case { weighted: true, ..Case::from(op) };
    match op {
        Op::CrossEntropy { .. } => vec![
            CE.into(),
            Op::CrossEntropy { ignore_index: ignore, label_smoothing: 0.0, z_loss: 0.0, entropy: false }.into(),
            Case {
                op: Op::CrossEntropy { ignore_index: ignore, label_smoothing: 0.0, z_loss: 0.0, entropy: false },
                ..weighted
            },
            Case {
                op: Op::CrossEntropy { ignore_index: ignore, label_smoothing: 0.2, z_loss: 0.0, entropy: false },
                ..weighted
            },
            Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.05, entropy: false }.into(),
            Case {
                op: Op::CrossEntropy { ignore_index: ignore, label_smoothing: 0.2, z_loss: 0.01, entropy: false },
                ..weighted
            },
            Case::from(CE).capped(1.5),
            Case {
                op: Op::CrossEntropy { ignore_index: ignore, label_smoothing: 0.2, z_loss: 0.01, entropy: false },
                ..weighted
            }
            .capped(30.0),
        ],
        Op::CrossEntropyProbs { .. } => {
            let cases = [0.0, 0.03].map(|z_loss| Case::from(Op::CrossEntropyProbs { z_loss, entropy: false }));
            [cases[0], cases[1], cases[1].capped(2.0)].to_vec()
        }
        Op::KlDiv { .. } => {
            let mut cases: Vec<Case> = forms.iter().flat_map(|&p| forms.map(|q| Op::KlDiv { p, q }.into())).collect();
            cases.push(Case::from(Op::KlDiv { p: Form::Logits, q: Form::Logits }).capped(2.0));
            cases.push(Case::from(Op::KlDiv { p: Form::Probs, q: Form::Logits }).capped(2.0));
            cases
        }
        Op::Jsd { .. } => {
            let jsd = |p, beta, temperature| Case::from(Op::Jsd { p, q: Form::Logits, beta, temperature });
            // P's probabilities hold exact zeros: the reverse KL (β = 1) of those rows is +inf
            let mut cases = vec![jsd(Form::Probs, 0.0, 1.0), jsd(Form::Probs, 0.5, 1.0)];
            cases.extend([0.0, 0.5, 1.0].map(|beta| jsd(Form::Logits, beta, 1.0)));
            cases.extend([jsd(Form::Logits, 0.3, 2.0), jsd(Form::Logits, 0.3, 2.0).capped(2.0)]);
            cases.extend([jsd(Form::Probs, 0.7, 0.5), jsd(Form::Probs, 0.7, 1.0).capped(2.0)]);
            cases
        }
        Op::Entropy { .. } => {
            let mut cases: Vec<Case> = forms.map(|p| Op::Entropy { p }.into()).to_vec();
            cases.push(Case::from(Op::Entropy { p: Form::Logits }).capped(2.0));
            cases
        }
        Op::BinaryCrossEntropy { .. } => forms.map(|input| Op::BinaryCrossEntropy { input }.into()).to_vec(),
        Op::Distill { .. } => vec![
            Op::Distill { temperature: 2.0, alpha: 0.7 }.into(),
            Op::Distill { temperature: 1.0, alpha: 0.0 }.into(),
            Case::from(Op::Distill { temperature: 2.0, alpha: 0.7 }).capped(2.0),
        ],
        _ => vec![op.into()],
    }
}

/// Every variant of every operation that has a gradient, in the order of [`Op::ALL`].
fn cases() -> Vec<Case> {
    Op::ALL.into_iter().flat_map(variants).filter(|c| c.op.has_gradient()).collect()
}

/// Seeded inputs of one case: `x` is the differentiated input, `other` the second one.
struct Data {
    case: Case,
    rows: usize,
    cols: usize,
    x: Vec<f32>,
    other: Option<Vec<f32>>,
    labels: Option<Vec<i32>>,
    weights: Option<Vec<f32>>,
}

/// Seeded values of `domain` for a `[rows, cols]` input.
fn draw(domain: Domain, rows: usize, cols: usize, rng: &mut StdRng) -> Vec<f32> {
    match domain {
        Domain::Logits => common::logits(rng, rows * cols, 3.0),
        Domain::Probs => common::probs(rng, rows, cols, true),
        Domain::Unit => common::uniform(rng, rows * cols, 0.0, 1.0),
    }
}

impl Data {
    fn new(case: impl Into<Case>, rows: usize, cols: usize, rng: &mut StdRng) -> Data {
        let case = case.into();
        let sig = case.op.signature();
        let of = case.op.grad_of().expect("an operation with a gradient");
        let (x_slot, other_slot) = match sig.second {
            Some(second) if second.name == of => (second, Some(sig.first)),
            second => (sig.first, second),
        };
        assert_eq!(x_slot.name, of, "{case:?}: the differentiated input");
        let x = draw(x_slot.domain, rows, cols, rng);
        let mut labels = common::labels(rng, rows, cols);
        if let Op::CrossEntropy { ignore_index: Some(i), .. } = case.op {
            let i = i32::try_from(i).expect("an i32 ignore index");
            labels.iter_mut().step_by(3).for_each(|y| *y = i);
        }
        let other = other_slot.map(|s| draw(s.domain, rows, cols, rng));
        let weights = (case.weighted && sig.weights).then(|| common::uniform(rng, cols, 0.2, 2.0));
        let labels = sig.labels.then_some(labels);
        Data { case, rows, cols, x, other, labels, weights }
    }

    /// Whether `x` is the operation's first input (KL differentiates its second, Q).
    fn x_is_first(&self) -> bool {
        self.case.op.grad_of() == Some(self.case.op.signature().first.name)
    }

    /// The operation over `x` and the other inputs, wherever they live.
    pub(crate) fn task<B: Copy, L: Copy, W: Copy>(
        &self,
        x: B,
        other: Option<B>,
        labels: Option<L>,
        weights: Option<W>,
    ) -> Task<B, L, W> {
        let (first, second) = if self.x_is_first() { (x, other) } else { (other.expect("first input"), Some(x)) };
        Task { op: self.case.op, inputs: Inputs { first, second, labels, weights }, softcap: self.case.softcap }
    }

    /// The host operation over `x` (perturbed copies for finite differences).
    fn loss<'a>(&'a self, x: &'a [f32]) -> Loss<'a> {
        let batch = |v: &'a [f32]| Batch::new(v, self.rows, self.cols).expect("shape");
        let other = self.other.as_deref().map(batch);
        self.task(batch(x), other, self.labels.as_deref().map(Labels::I32), self.weights.as_deref())
    }
}

/// The data of a [`Data`] in device buffers.
struct OnDevice {
    x: wgpu::Buffer,
    x_offset: u64,
    dtype: DType,
    other: Option<wgpu::Buffer>,
    labels: Option<wgpu::Buffer>,
    weights: Option<wgpu::Buffer>,
}

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

fn upload(device: &wgpu::Device, bytes: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("test input"),
        contents: bytes,
        usage: USAGE,
    })
}

fn zeroed(device: &wgpu::Device, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("test output"),
        size: bytes.max(4),
        usage,
        mapped_at_creation: false,
    })
}

impl OnDevice {
    /// `x` at `x_offset` bytes into its buffer (after seeded garbage), in `dtype`.
    fn new(device: &wgpu::Device, d: &Data, dtype: DType, x_offset: u64) -> OnDevice {
        let mut bytes: Vec<u8> = (0..x_offset).map(|i| (i * 37 % 251) as u8).collect();
        match dtype {
            DType::F32 => bytes.extend_from_slice(bytemuck::cast_slice(&d.x)),
            DType::F16 => {
                let h: Vec<f16> = d.x.iter().map(|&v| f16::from_f32(v)).collect();
                bytes.extend_from_slice(bytemuck::cast_slice(&h));
            }
            DType::Bf16 => unreachable!("not used here"),
        }
        bytes.extend_from_slice(&[7u8; 12]);
        let other_bytes = |v: &Vec<f32>| -> Vec<u8> {
            match dtype {
                DType::F16 => bytemuck::cast_slice(&v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>()).to_vec(),
                _ => bytemuck::cast_slice(v).to_vec(),
            }
        };
        OnDevice {
            x: upload(device, &bytes),
            x_offset,
            dtype,
            other: d.other.as_ref().map(|v| upload(device, &other_bytes(v))),
            labels: d.labels.as_ref().map(|v| upload(device, bytemuck::cast_slice(v))),
            weights: d.weights.as_ref().map(|v| upload(device, bytemuck::cast_slice(v))),
        }
    }

    fn loss<'a>(&'a self, d: &Data) -> DeviceLoss<'a> {
        let batch = |buffer: &'a wgpu::Buffer, offset: u64| DeviceBatch {
            buffer,
            offset,
            rows: d.rows as u32,
            cols: d.cols as u32,
            dtype: self.dtype,
        };
        let x = batch(&self.x, self.x_offset);
        let other = self.other.as_ref().map(|b| batch(b, 0));
        let labels = self.labels.as_ref().map(|buffer| DeviceLabels::i32(buffer, 0));
        let weights = self.weights.as_ref().map(|buffer| DeviceWeights { buffer, offset: 0 });
        d.task(x, other, labels, weights)
    }
}

/// Copies `len` bytes from `offset` of `buffer` to the host (submits and waits).
fn read(device: &wgpu::Device, queue: &wgpu::Queue, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Vec<u8> {
    let staging = zeroed(device, len, wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ);
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, len);
    queue.submit([encoder.finish()]);
    xent::readback::read_blocking(device, &staging, 0..len).expect("readback")
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// Runs `d` with a gradient on the shared context: (gradient, per-row values, reduction).
fn run(d: &Data, dtype: DType, in_place: bool, reduction: Reduction) -> Option<(Vec<f32>, Vec<f32>, Reduced)> {
    let ctx = context()?;
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let align = u64::from(device.limits().min_storage_buffer_offset_alignment);
    let bufs = OnDevice::new(device, d, dtype, 3 * align);
    let n = (d.rows * d.cols) as u64;
    let grad_buf = zeroed(device, 64 + 4 * n, USAGE);
    let per_row = zeroed(device, 4 * d.rows as u64, USAGE);
    let reduced = zeroed(device, Reduced::BYTES, USAGE);
    let target = if in_place { GradTarget::InPlace } else { GradTarget::Buffer { buffer: &grad_buf, offset: 64 } };
    let out =
        DeviceOutput::rows(&per_row).with_reduced(&reduced, 0).with_grad(DeviceGrad { target, reduction, scale: 1.0 });
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &bufs.loss(d), &out).expect("record");
    queue.submit([encoder.finish()]);
    let grad = if in_place {
        f32s(&read(device, queue, &bufs.x, bufs.x_offset, 4 * n))
    } else {
        f32s(&read(device, queue, &grad_buf, 64, 4 * n))
    };
    let values = f32s(&read(device, queue, &per_row, 0, 4 * d.rows as u64));
    let reduced = Reduced::from_bytes(&read(device, queue, &reduced, 0, Reduced::BYTES)).expect("reduced");
    Some((grad, values, reduced))
}

/// Central differences of the reduced reference loss with respect to every element of `x`.
fn finite_differences(d: &Data, reduction: Reduction) -> Vec<f64> {
    let mut x = d.x.clone();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            // soft-capped logits are stored as f32 by the reference: a longer step keeps
            // their rounding (an ulp over the step) well under the tolerance
            let step = if d.case.softcap.is_some() { 4e-3 } else { 1e-3 };
            let h = step * x0.abs().max(1.0);
            let (hi, lo) = (x0 + h, x0 - h);
            x[i] = hi;
            let up = xent::reference::compute(&d.loss(&x), Default::default()).expect("reference").reduce(reduction);
            x[i] = lo;
            let down = xent::reference::compute(&d.loss(&x), Default::default()).expect("reference").reduce(reduction);
            x[i] = x0;
            // the step actually taken, as f32 rounded it
            (up - down) / (f64::from(hi) - f64::from(lo))
        })
        .collect()
}

/// Fails unless every element is within `rel` of the largest gradient of its row in
/// `want` (or 1% of the tensor's largest, for rows whose gradient is all but 0); returns
/// the worst ratio of error to that scale.
fn assert_rows_close(what: &str, got: &[f32], want: &[f64], cols: usize, rel: f64) -> f64 {
    let largest = |w: &[f64]| w.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = 1e-2 * largest(want);
    let mut worst = 0.0f64;
    for (r, (g, w)) in got.chunks(cols).zip(want.chunks(cols)).enumerate() {
        let scale = largest(w).max(floor).max(1e-30);
        for (j, (&g, &w)) in g.iter().zip(w).enumerate() {
            if g.is_nan() && w.is_nan() {
                continue;
            }
            let err = (f64::from(g) - w).abs() / scale;
            assert!(err <= rel, "{what}: row {r} column {j}: got {g} want {w} (error {err:.2e} of the row's largest)");
            worst = worst.max(err);
        }
    }
    worst
}

#[test]
fn gradients_match_finite_differences_of_the_reference() {
    if context().is_none() {
        return;
    }
    let mut rng = rng(41);
    for op in cases() {
        for reduction in [Reduction::Mean, Reduction::Sum] {
            let d = Data::new(op, 6, 9, &mut rng);
            let (grad, _, _) = run(&d, DType::F32, false, reduction).expect("context");
            let fd = finite_differences(&d, reduction);
            let analytic = gradient(&d.loss(&d.x), reduction).expect("analytic gradient");
            let worst = assert_rows_close(&format!("{op:?} {reduction:?} vs differences"), &grad, &fd, d.cols, 1e-4);
            // the reference stores soft-capped logits as f32: its differences see that rounding
            // (an ulp of the capped value over the step, about 2e-5 of the row's largest)
            let rel = if op.softcap.is_some() { 5e-5 } else { 1e-5 };
            assert_rows_close(
                &format!("{op:?} {reduction:?} analytic vs differences"),
                &analytic_f32(&analytic),
                &fd,
                d.cols,
                rel,
            );
            assert_rows_close(&format!("{op:?} {reduction:?} vs analytic"), &grad, &analytic, d.cols, 1e-4);
            eprintln!("{op:?} {reduction:?}: worst error {worst:.1e} of the row's largest gradient");
        }
    }
}

fn analytic_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn cross_entropy_gradient_is_softmax_minus_the_target() {
    if context().is_none() {
        return;
    }
    let mut rng = rng(42);
    // one column, columns past the lanes, rows past the 65,535-group grid limit
    for (rows, cols) in [(5, 1), (3, 5000), (70_000, 3), (4, 257)] {
        let d = Data::new(CE, rows, cols, &mut rng);
        let (grad, values, reduced) = run(&d, DType::F32, false, Reduction::Sum).expect("context");
        let mut want = Vec::with_capacity(rows * cols);
        for (r, x) in d.x.chunks(cols).enumerate() {
            let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = x.iter().map(|v| (v - m).exp()).sum();
            let y = d.labels.as_ref().expect("labels")[r] as usize;
            want.extend(x.iter().enumerate().map(|(j, v)| (v - m).exp() / s - if j == y { 1.0 } else { 0.0 }));
        }
        assert_rows_close(&format!("[{rows}, {cols}]"), &grad, &want, cols, 1e-4);
        let reference = xent::reference::compute(&d.loss(&d.x), Default::default()).expect("reference");
        assert_close(&format!("[{rows}, {cols}] values"), &values, &reference.values, 1e-5, 1e-5);
        common::assert_scalar("sum", reduced.sum, reference.sum(), 1e-3, 1e-5);
    }
}

#[test]
fn gradients_at_the_edges_of_the_numbers() {
    if context().is_none() {
        return;
    }
    let mut rng = rng(43);
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
        let (grad, _, _) = run(&d, DType::F32, false, Reduction::Mean).expect("context");
        let want = gradient(&d.loss(&d.x), Reduction::Mean).expect("analytic");
        // NaN spreads over the row, except for BCE, whose terms are elementwise
        let nan_row = grad[80..120].iter().filter(|g| g.is_nan()).count();
        assert_eq!(
            nan_row,
            if matches!(op.op, Op::BinaryCrossEntropy { .. }) { 1 } else { 40 },
            "{op:?}: NaN gradients in the NaN row"
        );
        assert_rows_close(&format!("{op:?} edges"), &grad, &want, 40, 1e-4);
    }
}

#[test]
fn in_place_gradients_equal_separate_ones_bit_for_bit() {
    if context().is_none() {
        return;
    }
    let mut rng = rng(44);
    for op in cases() {
        for (rows, cols) in [(7, 33), (2, 3000)] {
            let d = Data::new(op, rows, cols, &mut rng);
            let (separate, v1, r1) = run(&d, DType::F32, false, Reduction::Mean).expect("context");
            let (in_place, v2, r2) = run(&d, DType::F32, true, Reduction::Mean).expect("context");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&separate), bits(&in_place), "{op:?} [{rows}, {cols}] gradient");
            assert_eq!(bits(&v1), bits(&v2), "{op:?} [{rows}, {cols}]: the loss is that of the original logits");
            assert_eq!(r1, r2);
        }
    }
}

#[test]
fn half_precision_inputs_give_f32_gradients() {
    if context().is_none() {
        return;
    }
    let mut rng = rng(45);
    for op in cases() {
        let mut d = Data::new(op, 5, 300, &mut rng);
        // the reference sees the values the device sees
        let round = |v: &mut Vec<f32>| v.iter_mut().for_each(|x| *x = f16::from_f32(*x).to_f32());
        round(&mut d.x);
        if let Some(o) = d.other.as_mut() {
            round(o);
        }
        let (grad, _, _) = run(&d, DType::F16, false, Reduction::Mean).expect("context");
        let want = gradient(&d.loss(&d.x), Reduction::Mean).expect("analytic");
        assert_rows_close(&format!("{op:?} f16"), &grad, &want, d.cols, 1e-4);
    }
}

#[test]
fn gradient_over_the_binding_limit() {
    let Some(ctx) = context() else { return };
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    // logits and gradient both larger than one binding: split into row ranges
    let cols = 1000;
    let rows = (limit / (4 * cols as u64) + 3000) as usize;
    let ce =
        Op::CrossEntropy { ignore_index: Some(i64::from(IGNORE)), label_smoothing: 0.1, z_loss: 0.0, entropy: false };
    let d = Data::new(Case { op: ce, weighted: true, softcap: None }, rows, cols, &mut rng(46));
    let (grad, _, reduced) = run(&d, DType::F32, false, Reduction::Mean).expect("context");
    let want = gradient(&d.loss(&d.x), Reduction::Mean).expect("analytic");
    assert_rows_close(&format!("[{rows}, {cols}]"), &grad, &want, cols, 1e-4);
    let reference = xent::reference::compute(&d.loss(&d.x), Default::default()).expect("reference");
    common::assert_scalar("mean", reduced.mean(), reference.mean(), 1e-6, 1e-5);
}

/// Every host operation recorded on device buffers at non-zero offsets, after other work in
/// the same encoder, compared with the host path.
#[test]
fn records_into_a_busy_encoder_at_offsets() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let align = u64::from(device.limits().min_storage_buffer_offset_alignment);
    let mut rng = rng(47);
    for op in cases() {
        let (rows, cols) = (9, 70);
        let d = Data::new(op, rows, cols, &mut rng);
        let bufs = OnDevice::new(device, &d, DType::F32, 5 * align);
        let outputs = zeroed(device, 4096, USAGE);
        let scratch = zeroed(device, 256, USAGE);
        let mut encoder = device.create_command_encoder(&Default::default());
        // the app's own work first
        encoder.clear_buffer(&outputs, 0, None);
        encoder.copy_buffer_to_buffer(&bufs.x, 0, &scratch, 0, 256);
        let out = DeviceOutput {
            per_row: Some(&outputs),
            per_row_offset: 1028,
            reduced: Some((&outputs, 16)),
            mean: None,
            grad: None,
            report: None,
        };
        recorder.record(&mut encoder, &bufs.loss(&d), &out).expect("record");
        queue.submit([encoder.finish()]);
        let values = f32s(&read(device, queue, &outputs, 1028, 4 * rows as u64));
        let reduced = Reduced::from_bytes(&read(device, queue, &outputs, 16, 16)).expect("reduced");
        let reference = xent::reference::compute(&d.loss(&d.x), Default::default()).expect("reference");
        assert_close(&format!("{op:?} values"), &values, &reference.values, 1e-5, 1e-5);
        common::assert_scalar(&format!("{op:?} sum"), reduced.sum, reference.sum(), 1e-5, 1e-5);
        common::assert_scalar(&format!("{op:?} denominator"), reduced.denominator, reference.denominator(), 0.0, 1e-6);
        let untouched = read(device, queue, &outputs, 0, 16);
        assert!(untouched.iter().all(|&b| b == 0), "{op:?}: bytes before the reduction target were written");
    }
    // softmax and log-sum-exp, which have no gradient
    let x = common::logits(&mut rng, 4 * 50, 5.0);
    let buf = upload(device, bytemuck::cast_slice(&x));
    let out = zeroed(device, 4 * 200 + 256, USAGE);
    let batch = DeviceBatch { buffer: &buf, offset: 0, rows: 4, cols: 50, dtype: DType::F32 };
    let mut encoder = device.create_command_encoder(&Default::default());
    let per_row = DeviceOutput::default().with_rows(&out, 256);
    let log_softmax = Op::Softmax { temperature: 2.0, log: true };
    recorder.record(&mut encoder, &DeviceLoss::new(log_softmax, batch), &per_row).expect("softmax");
    queue.submit([encoder.finish()]);
    let got = f32s(&read(device, queue, &out, 256, 800));
    let host = Loss::new(log_softmax, Batch::new(&x[..], 4, 50).expect("shape"));
    let want = xent::reference::compute(&host, Default::default()).expect("reference");
    assert_close("log-softmax", &got, &want.values, 1e-5, 1e-5);
}

/// Arguments that cannot be bound are errors before anything is recorded: no panic, no
/// wgpu validation error.
#[test]
fn bad_arguments_are_errors_not_validation_failures() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let big = zeroed(device, 4096, USAGE);
    let other = zeroed(device, 4096, USAGE);
    let labels = zeroed(device, 4096, USAGE);
    let no_storage = zeroed(device, 4096, wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC);
    let no_copy_dst = zeroed(device, 64, wgpu::BufferUsages::STORAGE);
    let out = zeroed(device, 4096, USAGE);
    let batch = |buffer, offset, dtype| DeviceBatch { buffer, offset, rows: 4, cols: 8, dtype };
    let ce = |logits| cross_entropy(logits, &labels);
    let (big, other, no_storage) = (&big, &other, &no_storage);
    let rows = DeviceOutput::rows(&out);
    let cases: Vec<(&str, DeviceLoss, DeviceOutput, &str)> = vec![
        ("misaligned f32 offset", ce(batch(big, 6, DType::F32)), rows, "offset 6 is not a multiple of 4; use 4 or 8"),
        (
            "missing STORAGE",
            ce(batch(no_storage, 0, DType::F32)),
            rows,
            "lacks BufferUsages::STORAGE; create it with BufferUsages::STORAGE added",
        ),
        (
            "past the end",
            ce(batch(big, 4000, DType::F32)),
            rows,
            "needs 128 bytes from offset 4000 (4128 in all) but the buffer has 4096",
        ),
        (
            "class weights off the binding alignment",
            ce(batch(big, 0, DType::F32)).with_weights(DeviceWeights { buffer: other, offset: 4 }),
            rows,
            "is not a multiple of",
        ),
        ("per-row output overlapping the logits", ce(batch(&out, 0, DType::F32)), rows, "same buffer as logits"),
        (
            "gradient over the logits as a buffer range",
            ce(batch(big, 0, DType::F32)),
            DeviceOutput::rows(&out).with_grad(DeviceGrad::of_mean_into(big, 0)),
            "the gradient is in the same buffer as logits: a record's outputs may share a buffer in ranges that do \
             not overlap, but the per-row output, the gradient and the report cannot be in a buffer that holds an \
             input, the labels or the class weights (a dispatch cannot read and write one buffer; the reduction \
             and mean targets, written by copies, only must not overlap them); to write a gradient over its \
             logits, use GradTarget::InPlace",
        ),
        (
            "gradient in another range of the logits' buffer",
            ce(batch(big, 0, DType::F32)),
            DeviceOutput::rows(&out).with_grad(DeviceGrad::of_mean_into(big, 2048)),
            "use GradTarget::InPlace",
        ),
        (
            "per-row output in the logits' buffer",
            ce(batch(&out, 2048, DType::F32)),
            rows,
            "is in the same buffer as logits",
        ),
        (
            "reduction target without COPY_DST",
            ce(batch(big, 0, DType::F32)),
            rows.with_reduced(&no_copy_dst, 0),
            "lacks BufferUsages::COPY_DST",
        ),
        (
            "gradient of log-sum-exp",
            DeviceLoss::new(Op::LogSumExp, batch(big, 0, DType::F32)),
            rows.with_grad(DeviceGrad::of_mean_in_place()),
            "has no gradient",
        ),
        (
            "in place over f16",
            ce(batch(big, 0, DType::F16)),
            rows.with_grad(DeviceGrad::of_mean_in_place()),
            "needs f32 logits",
        ),
        (
            "gradient overlapping the per-row output",
            ce(batch(big, 0, DType::F32)),
            rows.with_grad(DeviceGrad::of_mean_into(&out, 8)),
            "the per-row output overlaps the gradient",
        ),
        (
            "gradient in the labels' buffer",
            ce(batch(big, 0, DType::F32)),
            rows.with_grad(DeviceGrad::of_mean_into(&labels, 1024)),
            "is in the same buffer as labels",
        ),
        (
            "in place with the target in the logits' buffer",
            DeviceLoss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, batch(big, 0, DType::F32))
                .with_second(batch(big, 1024, DType::F32)),
            rows.with_grad(DeviceGrad::of_mean_in_place()),
            "same buffer as target",
        ),
        (
            "softmax with a reduction",
            DeviceLoss::new(Op::Softmax { temperature: 1.0, log: false }, batch(big, 0, DType::F32)),
            DeviceOutput::default().with_rows(&out, 0).with_reduced(&out, 2048),
            "has no reduction",
        ),
        (
            "shapes that differ",
            DeviceLoss::new(Op::KlDiv { p: Form::Probs, q: Form::Logits }, batch(big, 0, DType::F32))
                .with_second(DeviceBatch { cols: 9, ..batch(other, 0, DType::F32) }),
            rows,
            "is [4, 9] F32 but the first input is [4, 8] F32",
        ),
        (
            "a missing second input",
            DeviceLoss::new(Op::KlDiv { p: Form::Probs, q: Form::Logits }, batch(big, 0, DType::F32)),
            rows,
            "kl needs a second input, q",
        ),
        ("cross-entropy without labels", DeviceLoss::new(CE, batch(big, 0, DType::F32)), rows, "ce needs labels"),
        (
            "labels bound to an operation that takes none",
            DeviceLoss::new(Op::LogSumExp, batch(big, 0, DType::F32)).with_labels(DeviceLabels::i32(&labels, 0)),
            rows,
            "lse takes no labels",
        ),
        (
            "temperature 0",
            DeviceLoss::new(Op::Softmax { temperature: 0.0, log: false }, batch(big, 0, DType::F32)),
            rows,
            "not a positive finite number",
        ),
    ];
    let mut encoder = device.create_command_encoder(&Default::default());
    for (what, loss, out, expect) in cases {
        let e = recorder.record(&mut encoder, &loss, &out).expect_err(what);
        assert!(e.is_bad_input(), "{what}: {e:?}");
        let message = e.to_string();
        assert!(message.contains(expect), "{what}: {message}");
        eprintln!("{what}: {message}");
    }
    queue.submit([encoder.finish()]);
    // reading back a buffer that cannot be mapped, or a misaligned range
    let mappable = zeroed(device, 64, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    for (buffer, range, expect) in [
        (&out, 0..16, "lacks BufferUsages::MAP_READ"),
        (&mappable, 4..16, "must start on a multiple of 8"),
        (&mappable, 0..80, "outside"),
    ] {
        let e = pollster::block_on(xent::readback::read(buffer, range)).expect_err(expect);
        assert!(e.to_string().contains(expect), "{e}");
    }
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    assert!(pollster::block_on(scope.pop()).is_none(), "a bad argument reached wgpu");
}

fn cross_entropy<'a>(logits: DeviceBatch<'a>, labels: &'a wgpu::Buffer) -> DeviceLoss<'a> {
    DeviceLoss::new(CE, logits).with_labels(DeviceLabels::i32(labels, 0))
}

/// The row kernel recorded into an open compute pass between the app's own dispatches
/// gives the bits an encoder record gives; what needs a copy is refused.
#[test]
fn records_into_an_open_compute_pass() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let mut rng = rng(51);
    let ops = [
        CE,
        Op::CrossEntropyProbs { z_loss: 0.0, entropy: false },
        Op::KlDiv { p: Form::Logits, q: Form::Logits },
        Op::Entropy { p: Form::Logits },
        Op::BinaryCrossEntropy { input: Form::Logits },
        Op::Distill { temperature: 2.0, alpha: 0.7 },
    ];
    for op in ops {
        let d = Data::new(op, 11, 77, &mut rng);
        let bufs = OnDevice::new(device, &d, DType::F32, 0);
        let n = (d.rows * d.cols) as u64;
        let mut results = Vec::new();
        for in_pass in [false, true] {
            let per_row = zeroed(device, 4 * d.rows as u64, USAGE);
            let grad = zeroed(device, 4 * n, USAGE);
            let out = DeviceOutput::rows(&per_row).with_grad(DeviceGrad {
                target: GradTarget::Buffer { buffer: &grad, offset: 0 },
                reduction: Reduction::Mean,
                scale: 0.5,
            });
            let mut encoder = device.create_command_encoder(&Default::default());
            if in_pass {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                recorder.record_in_pass(&mut pass, &bufs.loss(&d), &out).expect("record in pass");
            } else {
                recorder.record(&mut encoder, &bufs.loss(&d), &out).expect("record");
            }
            queue.submit([encoder.finish()]);
            results.push((read(device, queue, &per_row, 0, 4 * d.rows as u64), read(device, queue, &grad, 0, 4 * n)));
        }
        assert_eq!(results[0], results[1], "{op:?}: a pass and an encoder give the same bits");
    }
    // a reduction, and cross-entropy's device-side mean denominator, need the encoder
    let weighted =
        Op::CrossEntropy { ignore_index: Some(i64::from(IGNORE)), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let d = Data::new(Case { op: weighted, weighted: true, softcap: None }, 4, 8, &mut rng);
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let (per_row, grad, reduced) = (zeroed(device, 16, USAGE), zeroed(device, 128, USAGE), zeroed(device, 16, USAGE));
    let mut encoder = device.create_command_encoder(&Default::default());
    let mut pass = encoder.begin_compute_pass(&Default::default());
    let with_reduction = DeviceOutput::rows(&per_row).with_reduced(&reduced, 0);
    let e = recorder.record_in_pass(&mut pass, &bufs.loss(&d), &with_reduction).expect_err("reduction in a pass");
    assert!(e.to_string().contains("compute pass cannot hold"), "{e}");
    let with_mean = DeviceOutput::rows(&per_row).with_grad(DeviceGrad::of_mean_into(&grad, 0));
    let e = recorder.record_in_pass(&mut pass, &bufs.loss(&d), &with_mean).expect_err("weighted mean in a pass");
    assert!(e.to_string().contains("Reduction::Sum"), "{e}");
    drop(pass);
    queue.submit([encoder.finish()]);
}

#[test]
fn two_devices_in_one_process() {
    if context().is_none() {
        return;
    }
    let contexts = [xent::Context::new_blocking().expect("first"), xent::Context::new_blocking().expect("second")];
    let d = Data::new(CE, 33, 100, &mut rng(48));
    let mut results = Vec::new();
    for ctx in &contexts {
        let (device, queue) = (ctx.device(), ctx.queue());
        let recorder = Recorder::new(device);
        let bufs = OnDevice::new(device, &d, DType::F32, 0);
        let per_row = zeroed(device, 4 * 33, USAGE);
        let grad = zeroed(device, 4 * 3300, USAGE);
        let mut encoder = device.create_command_encoder(&Default::default());
        let out = DeviceOutput::rows(&per_row).with_grad(DeviceGrad::of_mean_into(&grad, 0));
        recorder.record(&mut encoder, &bufs.loss(&d), &out).expect("record");
        queue.submit([encoder.finish()]);
        results.push((read(device, queue, &per_row, 0, 132), read(device, queue, &grad, 0, 13200)));
    }
    assert_eq!(results[0], results[1], "two devices, the same bits");
}

#[test]
fn many_records_before_one_submit() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let mut rng = rng(49);
    let cases = cases();
    let sets: Vec<Data> = (0..40).map(|i| Data::new(cases[i % cases.len()], 3 + i % 5, 20 + 7 * i, &mut rng)).collect();
    let bufs: Vec<OnDevice> = sets.iter().map(|d| OnDevice::new(device, d, DType::F32, 0)).collect();
    let out = zeroed(device, 64 * 40, USAGE);
    let reduced = zeroed(device, 16 * 40, USAGE);
    let mut encoder = device.create_command_encoder(&Default::default());
    for (i, (d, b)) in sets.iter().zip(&bufs).enumerate() {
        let o = DeviceOutput {
            per_row: Some(&out),
            per_row_offset: 64 * i as u64,
            reduced: Some((&reduced, 16 * i as u64)),
            mean: None,
            grad: None,
            report: None,
        };
        recorder.record(&mut encoder, &b.loss(d), &o).expect("record");
    }
    queue.submit([encoder.finish()]);
    let all = read(device, queue, &reduced, 0, 16 * 40);
    for (i, d) in sets.iter().enumerate() {
        let r = Reduced::from_bytes(&all[16 * i..]).expect("reduced");
        let want = xent::reference::compute(&d.loss(&d.x), Default::default()).expect("reference");
        common::assert_scalar(&format!("record {i} ({:?})", d.case), r.mean(), want.mean(), 1e-5, 1e-5);
    }
}

/// Inputs are read as vec4 where both bindings are whole vectors and a word at a time
/// where a caller's buffer ends inside one; a second input that lies unlike the first
/// modulo a vector is read element by element. The three give the same bits, and the
/// reference's values, for every operation with two inputs.
#[test]
fn vector_and_word_loads_give_the_same_bits() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let mut rng = rng(53);
    // odd columns: rows start at every position within a vector
    let (rows, cols) = (7usize, 37usize);
    let ops = [
        Op::KlDiv { p: Form::Logits, q: Form::Logits },
        Op::KlDiv { p: Form::Probs, q: Form::Logits },
        Op::BinaryCrossEntropy { input: Form::Logits },
        Op::Distill { temperature: 2.0, alpha: 0.5 },
    ];
    for op in ops {
        let d = Data::new(op, rows, cols, &mut rng);
        let reference = xent::reference::compute(&d.loss(&d.x), Default::default()).expect("reference");
        let n = rows * cols;
        // (x's buffer padded to whole vectors, elements before input b: the lanes of a row
        // follow input a's alignment, so only b moves)
        let layouts = [("vec4", true, 0usize), ("vec4, b off by 3", true, 3), ("words", false, 0)];
        let b_is_x = !d.x_is_first();
        let mut first: Option<Vec<f32>> = None;
        for (name, padded, shift) in layouts {
            let (x_shift, o_shift) = if b_is_x { (shift, 0) } else { (0, shift) };
            let mut x = vec![1.5f32; x_shift];
            x.extend_from_slice(&d.x);
            if padded {
                x.resize((x_shift + n).div_ceil(4) * 4, 1.5);
            }
            let mut other = vec![0.25f32; o_shift];
            other.extend_from_slice(d.other.as_deref().expect("other"));
            other.resize((o_shift + n).div_ceil(4) * 4, 0.5);
            let mut bufs = OnDevice::new(device, &d, DType::F32, 0);
            bufs.x = upload(device, bytemuck::cast_slice(&x));
            bufs.other = Some(upload(device, bytemuck::cast_slice(&other)));
            fn at(b: DeviceBatch<'_>, shift: usize) -> DeviceBatch<'_> {
                DeviceBatch { offset: 4 * shift as u64, ..b }
            }
            // input b is the second: x in KL, the other input elsewhere
            let mut loss = bufs.loss(&d);
            loss.inputs.second = loss.inputs.second.map(|b| at(b, shift));
            let per_row = zeroed(device, 4 * rows as u64, USAGE);
            let mut encoder = device.create_command_encoder(&Default::default());
            recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row)).expect("record");
            queue.submit([encoder.finish()]);
            let values = f32s(&read(device, queue, &per_row, 0, 4 * rows as u64));
            assert_close(&format!("{op:?} {name}"), &values, &reference.values, 1e-5, 1e-5);
            match &first {
                None => first = Some(values),
                Some(v) => {
                    let same = v.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{op:?} {name}: {values:?} differs from the vec4 loads' {v:?}");
                }
            }
        }
    }
}

/// Softmax rows are written through a vec4 view of the output (whole octets: two
/// 16-byte stores) where every binding allows it, and a word at a time where a caller's
/// output buffer ends inside a vector: the same bits, and the reference's values.
#[test]
fn softmax_writes_through_vector_and_word_stores() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let mut rng = rng(59);
    // 40 columns: whole octets; 37: rows start anywhere in a vector
    for (rows, cols) in [(5usize, 40usize), (5, 37)] {
        let x = common::logits(&mut rng, rows * cols, 6.0);
        let softmax = Op::Softmax { temperature: 1.5, log: false };
        let host = Loss::new(softmax, Batch::new(&x[..], rows, cols).expect("shape"));
        let want = xent::reference::compute(&host, Default::default()).expect("reference");
        let logits = upload(device, bytemuck::cast_slice(&x));
        let batch = DeviceBatch { buffer: &logits, offset: 0, rows: rows as u32, cols: cols as u32, dtype: DType::F32 };
        let n = 4 * (rows * cols) as u64;
        let mut first: Option<Vec<f32>> = None;
        // (output buffer size, offset): padded to vectors; ending right after the output,
        // one element in (a window that cannot be viewed as vec4)
        for (name, size, offset) in [("vec4", n.div_ceil(16) * 16, 0), ("words", 4 + n, 4)] {
            let out = zeroed(device, size, USAGE);
            let per_row = DeviceOutput {
                per_row: Some(&out),
                per_row_offset: offset,
                reduced: None,
                mean: None,
                grad: None,
                report: None,
            };
            let mut encoder = device.create_command_encoder(&Default::default());
            recorder.record(&mut encoder, &DeviceLoss::new(softmax, batch), &per_row).expect("softmax");
            queue.submit([encoder.finish()]);
            let got = f32s(&read(device, queue, &out, offset, n));
            assert_close(&format!("softmax [{rows}, {cols}] {name}"), &got, &want.values, 1e-6, 1e-5);
            match &first {
                None => first = Some(got),
                Some(v) => assert!(
                    v.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "softmax [{rows}, {cols}] {name}: differs from the vec4 stores"
                ),
            }
        }
    }
}
