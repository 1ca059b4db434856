//! The mean over rows as one f32 word on the device, beside the reduction's four words.

use super::{CE, Case, Data, OnDevice, USAGE, cases, f32s, read, upload, zeroed};
use crate::common::{context, rng};
use xent::{DType, DeviceLoss, DeviceOutput, Form, Op, Recorder, Reduced};

/// Whether two f32 are the same NaN-or-not, or finite within `ulps` of each other.
fn within_ulps(a: f32, b: f32, ulps: u32) -> bool {
    if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
        return a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    }
    let key = |x: f32| if x.is_sign_negative() { -((x.to_bits() & 0x7fff_ffff) as i64) } else { x.to_bits() as i64 };
    (key(a) - key(b)).unsigned_abs() <= u64::from(ulps)
}

/// Records `d` with the reduction and the mean word after it in one buffer.
fn mean_and_reduced(recorder: &Recorder, d: &Data) -> (f32, Reduced) {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let per_row = zeroed(device, 4 * d.rows as u64, USAGE);
    let results = upload(device, &[0xA5; 32]);
    let out = DeviceOutput::rows(&per_row).with_reduced(&results, 0).with_mean(&results, 20);
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &bufs.loss(d), &out).expect("record");
    queue.submit([encoder.finish()]);
    let bytes = read(device, queue, &results, 0, 32);
    assert_eq!(&bytes[16..20], &[0xA5; 4], "bytes between the targets were written");
    assert_eq!(&bytes[24..], &[0xA5; 8], "bytes after the mean were written");
    (f32s(&bytes[20..24])[0], Reduced::from_bytes(&bytes[..16]).expect("reduced"))
}

#[test]
fn the_mean_word_is_the_reductions_quotient() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(67);
    for op in cases() {
        let d = Data::new(op, 41, 13, &mut rng);
        let (mean, reduced) = mean_and_reduced(&recorder, &d);
        assert!(mean.is_finite(), "{op:?}: mean {mean}");
        assert!(within_ulps(mean, reduced.mean() as f32, 3), "{op:?}: {mean} against {}", reduced.mean());
        let reference = xent::reference::compute(&d.loss(&d.x), Default::default()).expect("reference").mean();
        crate::common::assert_scalar(&format!("{op:?} mean"), f64::from(mean), reference, 1e-5, 1e-5);
    }
    // every row ignored: 0 / 0; a label out of range: a NaN sum
    let weighted = Case {
        op: Op::CrossEntropy {
            ignore_index: Some(i64::from(super::IGNORE)),
            label_smoothing: 0.0,
            z_loss: 0.0,
            entropy: false,
        },
        weighted: true,
        softcap: None,
    };
    let mut d = Data::new(weighted, 9, 5, &mut rng);
    d.labels.as_mut().expect("labels").fill(super::IGNORE);
    let (mean, reduced) = mean_and_reduced(&recorder, &d);
    assert!(mean.is_nan() && reduced.mean().is_nan(), "all ignored: {mean}, {reduced:?}");
    let mut d = Data::new(CE, 9, 5, &mut rng);
    d.labels.as_mut().expect("labels")[4] = 5;
    assert!(mean_and_reduced(&recorder, &d).0.is_nan(), "a bad label's NaN did not reach the mean");
}

/// A mean target that cannot take the copy, or one asked of softmax or of a compute pass,
/// is refused before anything is recorded.
#[test]
fn bad_mean_targets_are_refused() {
    let Some(ctx) = context() else { return };
    let device = ctx.device();
    let recorder = Recorder::new(device);
    let d = Data::new(Op::Entropy { p: Form::Logits }, 5, 7, &mut rng(71));
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let per_row = zeroed(device, 4 * 35, USAGE);
    let storage_only = zeroed(device, 16, wgpu::BufferUsages::STORAGE);
    let target = zeroed(device, 16, USAGE);
    let refused = |out: DeviceOutput, loss: &DeviceLoss, want: &str| {
        let mut encoder = device.create_command_encoder(&Default::default());
        match recorder.record(&mut encoder, loss, &out) {
            Err(e @ xent::Error::Binding { .. }) => assert!(e.to_string().contains(want), "{e}"),
            other => panic!("expected a binding error naming {want:?}, got {other:?}"),
        }
    };
    let loss = bufs.loss(&d);
    refused(DeviceOutput::rows(&per_row).with_mean(&storage_only, 0), &loss, "mean target: the buffer's usage");
    refused(DeviceOutput::rows(&per_row).with_mean(&target, 2), &loss, "offset 2 is not a multiple of 4");
    refused(DeviceOutput::rows(&per_row).with_mean(&target, 16), &loss, "needs 4 bytes from offset 16");
    let xb = xent::DeviceBatch { buffer: &bufs.x, offset: 0, rows: 5, cols: 7, dtype: DType::F32 };
    let softmax = DeviceLoss::new(Op::Softmax { temperature: 1.0, log: false }, xb);
    refused(DeviceOutput::rows(&per_row).with_mean(&target, 0), &softmax, "no mean over rows");
    let mut encoder = device.create_command_encoder(&Default::default());
    let mut pass = encoder.begin_compute_pass(&Default::default());
    let e = recorder.record_in_pass(&mut pass, &loss, &DeviceOutput::rows(&per_row).with_mean(&target, 0));
    assert!(matches!(&e, Err(xent::Error::Binding { name, .. }) if name == "mean target"), "{e:?}");
}
