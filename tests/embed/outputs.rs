//! Outputs without a per-row buffer, and gradients named for their reduction.

use super::{Data, OnDevice, USAGE, cases, read, zeroed};
use crate::common::{context, rng};
use xent::{DType, DeviceGrad, DeviceLoss, DeviceOutput, GradTarget, Op, Recorder, Reduced, Reduction};

/// How a record's outputs are asked for.
#[derive(Clone, Copy)]
enum Shape {
    /// A per-row buffer and the gradient built field by field, as before the named constructors.
    Explicit(Reduction),
    /// `DeviceOutput::reduced(..).with_grad(DeviceGrad::of_mean_into(..))`.
    ReducedOfMean,
    /// `DeviceOutput::grad_only(DeviceGrad::of_sum_into(..))`.
    GradOnlyOfSum,
}

/// The gradient and the reduction's bytes of `d` recorded with outputs of `shape`.
fn record(recorder: &Recorder, d: &Data, shape: Shape) -> (Vec<u8>, Vec<u8>) {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let n = 4 * (d.rows * d.cols) as u64;
    let (g, r) = (zeroed(device, n, USAGE), zeroed(device, Reduced::BYTES, USAGE));
    let per_row = zeroed(device, 4 * d.rows as u64, USAGE);
    let out = match shape {
        Shape::Explicit(reduction) => DeviceOutput::rows(&per_row).with_reduced(&r, 0).with_grad(DeviceGrad {
            target: GradTarget::Buffer { buffer: &g, offset: 0 },
            reduction,
            scale: 1.0,
        }),
        Shape::ReducedOfMean => DeviceOutput::reduced(&r, 0).with_grad(DeviceGrad::of_mean_into(&g, 0)),
        Shape::GradOnlyOfSum => DeviceOutput::grad_only(DeviceGrad::of_sum_into(&g, 0)),
    };
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &bufs.loss(d), &out).expect("record");
    queue.submit([encoder.finish()]);
    (read(device, queue, &g, 0, n), read(device, queue, &r, 0, Reduced::BYTES))
}

#[test]
fn no_per_row_buffer_gives_the_same_bits() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(73);
    for op in cases() {
        let d = Data::new(op, 53, 19, &mut rng);
        let (want_grad, want_reduced) = record(&recorder, &d, Shape::Explicit(Reduction::Mean));
        let (grad, reduced) = record(&recorder, &d, Shape::ReducedOfMean);
        assert_eq!(grad, want_grad, "{op:?}: the gradient of the mean differs without a per-row buffer");
        assert_eq!(reduced, want_reduced, "{op:?}: the reduction differs without a per-row buffer");
        let (want_sum, _) = record(&recorder, &d, Shape::Explicit(Reduction::Sum));
        let (sum, _) = record(&recorder, &d, Shape::GradOnlyOfSum);
        assert_eq!(sum, want_sum, "{op:?}: of_sum_into is not the gradient of the sum");
        assert_ne!(sum, grad, "{op:?}: the gradients of the sum and of the mean are the same bytes");
    }
}

#[test]
fn in_place_constructors_name_their_reduction() {
    assert_eq!(DeviceGrad::of_mean_in_place().reduction, Reduction::Mean);
    assert_eq!(DeviceGrad::of_sum_in_place().reduction, Reduction::Sum);
    assert!(matches!(DeviceGrad::of_sum_in_place().target, GradTarget::InPlace));
}

/// Softmax's rows of values are its result: without a buffer for them it is refused.
#[test]
fn softmax_needs_its_per_row_buffer() {
    let Some(ctx) = context() else { return };
    let device = ctx.device();
    let recorder = Recorder::new(device);
    let x = crate::common::logits(&mut rng(79), 6 * 5, 3.0);
    let buf = super::upload(device, bytemuck::cast_slice(&x));
    let logits = xent::DeviceBatch { buffer: &buf, offset: 0, rows: 6, cols: 5, dtype: DType::F32 };
    let loss = DeviceLoss::new(Op::Softmax { temperature: 1.0, log: false }, logits);
    let mut encoder = device.create_command_encoder(&Default::default());
    let e = recorder.record(&mut encoder, &loss, &DeviceOutput::default());
    assert!(matches!(&e, Err(xent::Error::Binding { name, .. }) if name == "per-row output"), "{e:?}");
}

/// `prepare` builds a record's pipelines ahead and resolves once the device is polled; it
/// records nothing, gives a bad argument's error as `record` does, and a record after it
/// gives the bits of a record without it.
#[test]
fn prepare_builds_ahead_and_records_nothing() {
    let Some(ctx) = context() else { return };
    let device = ctx.device();
    let mut rng = rng(83);
    for op in cases() {
        let d = Data::new(op, 37, 23, &mut rng);
        let want = record(&Recorder::new(device), &d, Shape::ReducedOfMean);
        let recorder = Recorder::new(device);
        let bufs = OnDevice::new(device, &d, DType::F32, 0);
        let (g, r) = (zeroed(device, 4 * (d.rows * d.cols) as u64, USAGE), zeroed(device, Reduced::BYTES, USAGE));
        let out = DeviceOutput::reduced(&r, 0).with_grad(DeviceGrad::of_mean_into(&g, 0));
        let prepared = recorder.prepare(&bufs.loss(&d), &out);
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
        pollster::block_on(prepared).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        let zeros = vec![0u8; Reduced::BYTES as usize];
        assert_eq!(read(device, ctx.queue(), &r, 0, Reduced::BYTES), zeros, "{op:?}: prepare wrote the outputs");
        assert_eq!(record(&recorder, &d, Shape::ReducedOfMean), want, "{op:?}: a record after prepare differs");
        // a reduction target too small: the argument error of record, before anything else
        let small = zeroed(device, 8, USAGE);
        let bad = recorder.prepare(&bufs.loss(&d), &DeviceOutput::reduced(&small, 0));
        let e = pollster::block_on(bad).unwrap_err();
        assert!(matches!(&e, xent::Error::Binding { name, .. } if name == "reduction target"), "{op:?}: {e}");
    }
}
