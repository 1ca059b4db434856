//! The evaluation report on the caller's buffers: `DeviceOutput::with_report` gets each
//! row's record (rank, confidence, Brier term, label) from the loss's own pass, the loss
//! and its gradient unchanged.

use super::{Case, Data, IGNORE, OnDevice, USAGE, read, zeroed};
use crate::common::{context, rng};
use xent::metrics::RowEval;
use xent::{DType, DeviceGrad, DeviceOutput, Error, Op, REPORT_BYTES, Recorder};

/// The per-row values, the gradient of the mean (with `grad`) and the report records of
/// `d`, the records at `offset` bytes of the caller's buffer (or no report).
fn record(recorder: &Recorder, d: &Data, report: Option<u64>, grad: bool) -> (Vec<u8>, Vec<u8>, Vec<RowEval>) {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let (rows, n) = (d.rows as u64, 4 * (d.rows * d.cols) as u64);
    let (per_row, g) = (zeroed(device, 4 * rows, USAGE), zeroed(device, n, USAGE));
    let offset = report.unwrap_or(0);
    let records = zeroed(device, offset + REPORT_BYTES * rows, USAGE);
    let mut out = DeviceOutput::rows(&per_row);
    if grad {
        out = out.with_grad(DeviceGrad::of_mean_into(&g, 0));
    }
    if report.is_some() {
        out = out.with_report(&records, offset);
    }
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &bufs.loss(d), &out).expect("record");
    queue.submit([encoder.finish()]);
    let words: Vec<u32> = bytemuck::pod_collect_to_vec(&read(device, queue, &records, offset, REPORT_BYTES * rows));
    let ignore = Some(i64::from(IGNORE));
    let evals = words.chunks_exact(8).filter_map(|w| RowEval::from_record(w.try_into().unwrap(), ignore)).collect();
    (read(device, queue, &per_row, 0, 4 * rows), read(device, queue, &g, 0, n), evals)
}

/// Every row not ignored against the reference's report, with class weights, smoothing
/// and soft-capping; the long rows without a gradient are split across workgroups under
/// `XENT_ROW_LAYOUT=gpu`.
#[test]
fn the_report_lands_in_the_callers_records() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(93);
    let ce =
        Op::CrossEntropy { ignore_index: Some(i64::from(IGNORE)), label_smoothing: 0.1, z_loss: 0.0, entropy: false };
    for case in [Case { op: ce, weighted: true, softcap: None }, Case { op: ce, weighted: false, softcap: Some(3.0) }] {
        for &(rows, cols, with_grad) in &[(37, 3, true), (5, 4099, true), (3, 40_000, false)] {
            let d = Data::new(case, rows, cols, &mut rng);
            let (values, grad, got) = record(&recorder, &d, Some(256), with_grad);
            let want: Vec<RowEval> =
                xent::reference::row_evals(&d.loss(&d.x)).unwrap().unwrap().into_iter().flatten().collect();
            let what = format!("{case:?} [{rows}, {cols}]");
            assert_eq!(got.len(), want.len(), "{what}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.label, g.rank, g.prediction), (w.label, w.rank, w.prediction), "{what}");
                assert!((g.confidence - w.confidence).abs() <= 2e-5 && (g.brier - w.brier).abs() <= 2e-5, "{what}");
            }
            let (plain_values, plain_grad, _) = record(&recorder, &d, None, with_grad);
            assert_eq!(values, plain_values, "{what}: the values changed with the report");
            assert_eq!(grad, plain_grad, "{what}: the gradient changed with the report");
        }
    }
}

/// A report of another operation, or a buffer too short for the records, is refused.
#[test]
fn a_report_elsewhere_is_refused() {
    let Some(ctx) = context() else { return };
    let (device, recorder) = (ctx.device(), Recorder::new(ctx.device()));
    let mut rng = rng(94);
    // cross-entropy against probabilities has no label to rank
    let d = Data::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, 4, 10, &mut rng);
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let records = zeroed(device, 1024, USAGE);
    let mut encoder = device.create_command_encoder(&Default::default());
    let per_row = zeroed(device, 160, USAGE);
    let out = DeviceOutput::rows(&per_row).with_report(&records, 0);
    match recorder.record(&mut encoder, &bufs.loss(&d), &out) {
        Err(Error::Binding { name, .. }) => assert_eq!(name, "report"),
        other => panic!("{other:?}"),
    }
    let ce = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let d = Data::new(ce, 40, 10, &mut rng);
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let out = DeviceOutput::rows(&per_row).with_report(&records, 0);
    assert!(recorder.record(&mut encoder, &bufs.loss(&d), &out).is_err(), "40 records need 1280 bytes");
}
