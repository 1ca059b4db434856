//! The status words of a recorder, decoded into the typed error that names the row.

use super::{CE, Data, OnDevice, USAGE, read, zeroed};
use crate::common::{context, rng};
use xent::{DType, DeviceOutput, Error, Form, Op, Recorder, Status};

/// Records `d` with a fresh status and returns it decoded and checked.
fn status_of(recorder: &Recorder, d: &Data) -> xent::Result<()> {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let per_row = zeroed(device, 4 * d.rows as u64, USAGE);
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.clear_status(&mut encoder);
    recorder.record(&mut encoder, &bufs.loss(d), &DeviceOutput::rows(&per_row)).expect("record");
    queue.submit([encoder.finish()]);
    Status::from_bytes(&read(device, queue, recorder.status(), 0, Status::BYTES))?.check(d.cols as u64)
}

#[test]
fn status_is_the_typed_error_naming_the_row() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(61);
    let (rows, cols) = (37, 11);
    let kl = Op::KlDiv { p: Form::Probs, q: Form::Logits };
    for op in [CE, kl] {
        let d = Data::new(op, rows, cols, &mut rng);
        assert!(status_of(&recorder, &d).is_ok(), "{op:?}: a clean run reports a bad row");
    }
    let mut d = Data::new(CE, rows, cols, &mut rng);
    let labels = d.labels.as_mut().expect("labels");
    (labels[23], labels[30]) = (cols as i32, -3);
    match status_of(&recorder, &d) {
        Err(Error::Label { row: 23, .. }) => {}
        other => panic!("a label out of range at row 23 gave {other:?}"),
    }
    let mut d = Data::new(kl, rows, cols, &mut rng);
    d.other.as_mut().expect("p")[17 * cols + 4] = -0.25;
    match status_of(&recorder, &d) {
        Err(Error::Value { row: 17, .. }) => {}
        other => panic!("a negative probability at row 17 gave {other:?}"),
    }
}
