//! Labels on the device as i32, i64 and u8: the same bits as i32 labels, the reference's
//! values (read from host labels of the same type), out-of-range labels reported for
//! their row, and the labels' ranges checked before anything is recorded.

use super::{CE, Case, Data, IGNORE, OnDevice, USAGE, assert_rows_close, f32s, read, upload, zeroed};
use crate::common::{assert_close, assert_scalar, context, rng};
use xent::reference::gradient;
use xent::{
    Batch, DType, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, Error, LabelType, Labels, Loss, Op,
    Recorder, Reduced, Reduction, Status,
};

const TYPES: [LabelType; 3] = [LabelType::I32, LabelType::I64, LabelType::U8];

/// Labels of one type on the host: the reference reads them as they are.
#[derive(Clone, Debug)]
enum Host {
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

impl Host {
    /// `labels` (each of which fits `dtype`) as `dtype`.
    fn new(labels: &[i32], dtype: LabelType) -> Host {
        match dtype {
            LabelType::I32 => Host::I32(labels.to_vec()),
            LabelType::I64 => Host::I64(labels.iter().map(|&y| i64::from(y)).collect()),
            LabelType::U8 => Host::U8(labels.iter().map(|&y| u8::try_from(y).expect("a u8 label")).collect()),
        }
    }

    fn dtype(&self) -> LabelType {
        match self {
            Host::I32(_) => LabelType::I32,
            Host::I64(_) => LabelType::I64,
            Host::U8(_) => LabelType::U8,
        }
    }

    fn labels(&self) -> Labels<'_> {
        match self {
            Host::I32(v) => Labels::I32(v),
            Host::I64(v) => Labels::I64(v),
            Host::U8(v) => Labels::U8(v),
        }
    }

    /// The labels' bytes `offset` bytes into a buffer, after bytes of garbage that are
    /// never zero, followed by bytes of 0xEE (a u8 label past every `cols` used here) to a
    /// whole 16 bytes and one more vector.
    fn bytes(&self, offset: u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..offset).map(|i| (i * 37 % 251) as u8 | 1).collect();
        match self {
            Host::I32(v) => bytes.extend_from_slice(bytemuck::cast_slice(v)),
            Host::I64(v) => bytes.extend_from_slice(bytemuck::cast_slice(v)),
            Host::U8(v) => bytes.extend_from_slice(v),
        }
        bytes.resize(bytes.len().div_ceil(16) * 16 + 16, 0xEE);
        bytes
    }
}

/// The labels as `dtype`, built with its constructor.
fn typed(buffer: &wgpu::Buffer, offset: u64, dtype: LabelType) -> DeviceLabels<'_> {
    match dtype {
        LabelType::I32 => DeviceLabels::i32(buffer, offset),
        LabelType::I64 => DeviceLabels::i64(buffer, offset),
        LabelType::U8 => DeviceLabels::u8(buffer, offset),
    }
}

/// An offset off the binding alignment and off 32 bytes: a few labels past `align`.
fn offset_for(dtype: LabelType, align: u64) -> u64 {
    align + 3 * dtype.size() as u64
}

/// The host operation of `d` over its `x` against `labels`.
fn host_loss<'a>(d: &'a Data, labels: &'a Host) -> Loss<'a> {
    let batch = |v: &'a [f32]| Batch::new(v, d.rows, d.cols).expect("shape");
    let other = d.other.as_deref().map(batch);
    d.task(batch(&d.x), other, Some(labels.labels()), d.weights.as_deref())
}

/// What one record gave.
struct Recorded {
    values: Vec<f32>,
    reduced: Reduced,
    grad: Option<Vec<f32>>,
    status: xent::Result<()>,
}

/// Records `d` against `labels` placed `offset` bytes into their buffer: the per-row
/// values, the reduction, the gradient of the mean when `grad`, and the status.
fn record(recorder: &Recorder, d: &Data, labels: &Host, offset: u64, grad: bool) -> Recorded {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let mut bufs = OnDevice::new(device, d, DType::F32, 0);
    bufs.labels = Some(upload(device, &labels.bytes(offset)));
    let mut loss = bufs.loss(d);
    loss.inputs.labels = bufs.labels.as_ref().map(|b| typed(b, offset, labels.dtype()));
    let n = 4 * (d.rows * d.cols) as u64;
    let per_row = zeroed(device, 4 * d.rows as u64, USAGE);
    let reduced = zeroed(device, Reduced::BYTES, USAGE);
    let grad_buf = zeroed(device, n, USAGE);
    let mut out = DeviceOutput::rows(&per_row).with_reduced(&reduced, 0);
    if grad {
        out = out.with_grad(DeviceGrad::of_mean_into(&grad_buf, 0));
    }
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.clear_status(&mut encoder);
    recorder.record(&mut encoder, &loss, &out).expect("record");
    queue.submit([encoder.finish()]);
    let status = Status::from_bytes(&read(device, queue, recorder.status(), 0, Status::BYTES)).expect("status");
    Recorded {
        values: f32s(&read(device, queue, &per_row, 0, 4 * d.rows as u64)),
        reduced: Reduced::from_bytes(&read(device, queue, &reduced, 0, Reduced::BYTES)).expect("reduced"),
        grad: grad.then(|| f32s(&read(device, queue, &grad_buf, 0, n))),
        status: status.check(d.cols as u64),
    }
}

/// Cross-entropy (plain, with an ignore index, with it and class weights) and distillation.
/// u8 labels cannot hold -100: their ignore index is 255, past every class here.
fn label_cases(dtype: LabelType) -> Vec<Case> {
    let ignore = Some(if dtype == LabelType::U8 { 255 } else { i64::from(IGNORE) });
    let ce_ignore = Op::CrossEntropy { ignore_index: ignore, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    vec![
        CE.into(),
        ce_ignore.into(),
        Case { op: ce_ignore, weighted: true, softcap: None },
        Op::Distill { temperature: 2.0, alpha: 0.7 }.into(),
    ]
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every label type gives the bits that i32 labels at offset 0 give, and the reference's
/// values from host labels of its type: odd rows, labels at an offset off the binding
/// alignment, and rows past the 65,535-workgroup grid for weighted cross-entropy.
#[test]
fn typed_labels_match_i32_labels_and_the_reference() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let mut rng = rng(89);
    for dtype in TYPES {
        let cases = label_cases(dtype);
        let weighted = cases[2];
        let shapes = cases.iter().map(|&c| (c, 37, 23)).chain([(weighted, 70_001, 5)]);
        for (case, rows, cols) in shapes {
            let what = format!("{dtype:?} {case:?} [{rows}, {cols}]");
            let d = Data::new(case, rows, cols, &mut rng);
            let i32s = d.labels.as_deref().expect("labels");
            // the gradient of the mean where its denominator is summed on the device
            let grad = case.weighted;
            let want = record(&recorder, &d, &Host::I32(i32s.to_vec()), 0, grad);
            let labels = Host::new(i32s, dtype);
            let got = record(&recorder, &d, &labels, offset_for(dtype, align), grad);
            assert!(got.status.is_ok(), "{what}: {:?}", got.status);
            assert_eq!(bits(&got.values), bits(&want.values), "{what}: values differ from i32 labels'");
            assert_eq!(got.reduced, want.reduced, "{what}: the reduction differs from i32 labels'");
            assert_eq!(got.grad.as_deref().map(bits), want.grad.as_deref().map(bits), "{what}: gradient");
            let host = host_loss(&d, &labels);
            let reference = xent::reference::compute(&host, Default::default()).expect("reference");
            assert_close(&format!("{what} values"), &got.values, &reference.values, 1e-5, 1e-5);
            assert_scalar(&format!("{what} sum"), got.reduced.sum, reference.sum(), 1e-3, 1e-5);
            assert_scalar(&format!("{what} denominator"), got.reduced.denominator, reference.denominator(), 0.0, 1e-6);
            if let Some(g) = &got.grad {
                let analytic = gradient(&host, Reduction::Mean).expect("analytic gradient");
                assert_rows_close(&format!("{what} gradient"), g, &analytic, cols, 1e-4);
            }
        }
    }
}

/// A label outside `[0, cols)` is reported for its row whatever its type: an i64 past the
/// i32 range (even one whose low word is a class, or the ignore index), a u8 of `cols`
/// or more. The reference names the same row.
#[test]
fn out_of_range_typed_labels_name_their_row() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let align = u64::from(ctx.device().limits().min_storage_buffer_offset_alignment);
    let mut rng = rng(97);
    let (rows, cols) = (41, 11);
    let ce_ignore =
        Op::CrossEntropy { ignore_index: Some(i64::from(IGNORE)), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let distill = Op::Distill { temperature: 2.0, alpha: 0.5 };
    let u8_ignore = Op::CrossEntropy { ignore_index: Some(255), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    // (operation, label type, (row, label) set, the row reported)
    type BadLabels<'a> = &'a [(usize, i64)];
    let cases: &[(Op, LabelType, BadLabels<'_>, u64)] = &[
        (CE, LabelType::I64, &[(23, (1 << 31) + 1)], 23),
        (CE, LabelType::I64, &[(30, 1 << 40)], 30),
        (CE, LabelType::I64, &[(30, 1 << 40), (5, 2 - (1 << 32))], 5),
        (ce_ignore, LabelType::I64, &[(9, (1 << 32) + i64::from(IGNORE))], 9),
        (ce_ignore, LabelType::I64, &[(12, i64::from(i32::MAX)), (14, i64::from(i32::MIN))], 12),
        (distill, LabelType::I64, &[(40, 1 << 31)], 40),
        (CE, LabelType::U8, &[(17, cols as i64), (29, 200)], 17),
        (u8_ignore, LabelType::U8, &[(33, 254)], 33),
        (distill, LabelType::U8, &[(0, 255)], 0),
    ];
    for &(op, dtype, bad, row) in cases {
        let what = format!("{op:?} {dtype:?} {bad:?}");
        let d = Data::new(op, rows, cols, &mut rng);
        let mut labels = Host::new(d.labels.as_deref().expect("labels"), dtype);
        for &(r, y) in bad {
            match &mut labels {
                Host::I64(v) => v[r] = y,
                Host::U8(v) => v[r] = u8::try_from(y).expect("a byte"),
                Host::I32(_) => unreachable!(),
            }
        }
        let got = record(&recorder, &d, &labels, offset_for(dtype, align), false);
        match got.status {
            Err(Error::Label { row: r, .. }) if r == row => {}
            other => panic!("{what}: expected a bad label at row {row}, got {other:?}"),
        }
        match xent::reference::compute(&host_loss(&d, &labels), Default::default()) {
            Err(Error::Label { row: r, .. }) if r == row => {}
            other => panic!("{what}: the reference gave {:?}", other.map(|_| ())),
        }
        // the rows before it are computed as usual
        let clean = Host::I32(d.labels.clone().expect("labels"));
        let want = record(&recorder, &d, &clean, 0, false);
        assert_eq!(bits(&got.values[..row as usize]), bits(&want.values[..row as usize]), "{what}");
    }
}

/// The labels' range is checked for their type before anything is recorded; a buffer
/// whose size is not a whole number of words is bound up to its last whole word.
#[test]
fn typed_label_ranges_are_checked() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let recorder = Recorder::new(device);
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let (rows, cols) = (37usize, 6usize);
    let d = Data::new(CE, rows, cols, &mut rng(101));
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let logits = DeviceBatch { buffer: &bufs.x, offset: 0, rows: rows as u32, cols: cols as u32, dtype: DType::F32 };
    let labels = zeroed(device, 4096, USAGE);
    let short = zeroed(device, 44, USAGE);
    let ragged = zeroed(device, 37, USAGE);
    let per_row = zeroed(device, 4 * rows as u64, USAGE);
    let cases = [
        (DeviceLabels::i64(&labels, 12), "offset 12 is not a multiple of 8, the size of an int64 label; use 8 or 16"),
        (DeviceLabels::i32(&labels, 6), "offset 6 is not a multiple of 4, the size of an int32 label; use 4 or 8"),
        (DeviceLabels::i64(&labels, 4000), "needs 296 bytes from offset 4000 (4296 in all) but the buffer has 4096"),
        (DeviceLabels::u8(&short, 9), "needs 37 bytes from offset 9 (46 in all) but the buffer has 44"),
        (DeviceLabels::u8(&ragged, 0), "the 37 uint8 labels end at byte 37, inside the buffer's last 4-byte word"),
    ];
    let mut encoder = device.create_command_encoder(&Default::default());
    for (y, expect) in cases {
        let loss = DeviceLoss::new(CE, logits).with_labels(y);
        let e = recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row)).expect_err(expect);
        assert!(matches!(&e, Error::Binding { name, .. } if name == "labels"), "{e:?}");
        assert!(e.to_string().contains(expect), "{expect}: {e}");
        eprintln!("{e}");
    }
    queue.submit([encoder.finish()]);
    // a u8 buffer of 39 bytes and an i32 one of 4·rows + 2: the labels end on a whole
    // word; the buffers end inside the next
    let i32s = d.labels.as_deref().expect("labels");
    let clean = record(&recorder, &d, &Host::I32(i32s.to_vec()), 0, false);
    let rows = 36;
    for (dtype, size) in [(LabelType::U8, 39), (LabelType::I32, 4 * 36 + 2)] {
        let bytes = Host::new(&i32s[..rows], dtype).bytes(0);
        let bytes = &bytes[..rows * dtype.size()];
        let buffer = zeroed(device, size, USAGE);
        queue.write_buffer(&buffer, 0, bytes);
        let batch = DeviceBatch { rows: rows as u32, ..logits };
        let loss = DeviceLoss::new(CE, batch).with_labels(typed(&buffer, 0, dtype));
        let mut encoder = device.create_command_encoder(&Default::default());
        recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row)).expect("record");
        queue.submit([encoder.finish()]);
        let values = f32s(&read(device, queue, &per_row, 0, 4 * rows as u64));
        assert_eq!(bits(&values), bits(&clean.values[..rows]), "{dtype:?} labels in a {size}-byte buffer");
    }
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    assert!(pollster::block_on(scope.pop()).is_none(), "a label range reached wgpu");
}

#[test]
fn constructors_set_the_label_type() {
    let Some(ctx) = context() else { return };
    let buffer = zeroed(ctx.device(), 64, USAGE);
    for dtype in TYPES {
        let y = typed(&buffer, 8, dtype);
        assert_eq!((y.dtype, y.offset), (dtype, 8));
    }
    assert_eq!(TYPES.map(LabelType::size), [4, 8, 1]);
    assert_eq!(LabelType::default(), LabelType::I32);
}
