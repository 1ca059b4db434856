//! `Recorder::encode_results`: the reduction, the status and the report of a record read
//! back in one call and decoded, against the host path's results on the same data; a bad
//! label named with its value and the real column count; a bad-label row's record marked.

use super::{CE, Data, OnDevice, USAGE, zeroed};
use crate::common::{context, rng};
use xent::metrics::{Metrics, MetricsSpec, RowRecord};
use xent::{DType, DeviceOutput, Error, Op, REPORT_BYTES, RecordResults, Recorder, Reduced, RunOptions};

/// Records `d` with a fresh status, a reduction at offset 16 and (with `report`) records at
/// offset 64 of the caller's buffers, and reads the results in one call.
fn results_of(recorder: &Recorder, d: &Data, report: bool) -> xent::Result<RecordResults> {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let loss = bufs.loss(d);
    let reduced = zeroed(device, 16 + Reduced::BYTES, USAGE);
    let records = zeroed(device, 64 + REPORT_BYTES * d.rows as u64, USAGE);
    let mut out = DeviceOutput::reduced(&reduced, 16);
    if report {
        out = out.with_report(&records, 64);
    }
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.clear_status(&mut encoder);
    recorder.record(&mut encoder, &loss, &out)?;
    let pending = recorder.encode_results(&mut encoder, &loss, &out)?;
    queue.submit([encoder.finish()]);
    pending.read_blocking(device)
}

#[test]
fn results_read_in_one_call_match_the_host_path() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(71);
    let ce = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    for &(rows, cols) in &[(1usize, 1usize), (37, 33), (9, 4097)] {
        let d = Data::new(ce, rows, cols, &mut rng);
        let got = results_of(&recorder, &d, true).expect("results");
        got.check().expect("no bad row");
        assert_eq!(got.cols, cols as u64);
        let host = ctx.compute(&d.loss(&d.x), &RunOptions { report: true, ..Default::default() }).expect("host");
        let what = format!("[{rows}, {cols}]");
        let mean = got.mean().expect("a reduction");
        let want = host.reduce(xent::Reduction::Mean);
        // one row of one class, ignored: the mean of no rows is NaN on both
        let same = (mean - want).abs() <= 1e-5 * want.abs().max(1.0) || (mean.is_nan() && want.is_nan());
        assert!(same, "{what}: mean {mean} against the host path's {want}");
        // the ignore index came from the op: ignored rows decode as such, not as evaluations
        let records = got.records.as_ref().expect("records");
        let ignored = d.labels.as_ref().expect("labels").iter().filter(|&&y| y == -100).count();
        assert_eq!(records.iter().filter(|r| **r == RowRecord::Ignored).count(), ignored, "{what}");
        let spec = MetricsSpec { top_k: vec![1, 2], bins: 10, per_class: true, classes: cols as u32 };
        let metrics = got.metrics(spec.clone()).expect("metrics");
        let mut want = Metrics::new(spec).expect("spec");
        for eval in xent::reference::row_evals(&d.loss(&d.x)).expect("reference").expect("evals").iter().flatten() {
            want.push(eval);
        }
        assert_eq!((metrics.rows, metrics.correct, &metrics.hits), (want.rows, want.correct, &want.hits), "{what}");
        assert!((metrics.brier_sum - want.brier_sum).abs() <= 1e-4 * want.rows as f64, "{what}");
    }
    // a record without the report gives no metrics, with the fix
    let d = Data::new(ce, 5, 6, &mut rng);
    let got = results_of(&recorder, &d, false).expect("results");
    assert!(got.records.is_none());
    let e = got.metrics(MetricsSpec::new(6)).unwrap_err();
    assert!(matches!(e, Error::Option { name: "report", .. }) && e.to_string().contains("with_report"), "{e}");
}

#[test]
fn a_bad_label_is_named_with_its_value_and_the_classes() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(72);
    let (rows, cols) = (90, 1000);
    let mut d = Data::new(CE, rows, cols, &mut rng);
    d.labels.as_mut().expect("labels")[77] = 1000;
    d.labels.as_mut().expect("labels")[80] = -7;
    // with the report: the label from the row's record
    let got = results_of(&recorder, &d, true).expect("results");
    let e = got.check().unwrap_err();
    assert!(matches!(e, Error::Label { row: 77, label: Some(1000), cols: 1000 }), "{e:?}");
    assert_eq!(e.to_string(), "row 77: label 1000 is outside [0, 1000)");
    // the bad rows' records say so: no evaluation to count
    let records = got.records.as_ref().expect("records");
    assert_eq!(records[77], RowRecord::BadLabel { label: 1000 });
    assert_eq!(records[80], RowRecord::BadLabel { label: -7 });
    assert!(records.iter().enumerate().all(|(i, r)| matches!(r, RowRecord::Eval(_)) != (i == 77 || i == 80)));
    assert!(got.metrics(MetricsSpec::new(cols as u32)).is_err(), "metrics over a bad label");
    // without it: the row and the real column count
    let got = results_of(&recorder, &d, false).expect("results");
    let e = got.check().unwrap_err();
    assert!(matches!(e, Error::Label { row: 77, label: None, cols: 1000 }), "{e:?}");
    assert!(e.to_string().contains("[0, 1000)"), "{e}");
}

#[test]
fn results_need_buffers_that_can_be_copied_out() {
    let Some(ctx) = context() else { return };
    let device = ctx.device();
    let recorder = Recorder::new(device);
    let d = Data::new(CE, 4, 8, &mut rng(73));
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let loss = bufs.loss(&d);
    let no_copy_src = zeroed(device, 256, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
    let mut encoder = device.create_command_encoder(&Default::default());
    for (out, name) in [
        (DeviceOutput::reduced(&no_copy_src, 0), "reduction target"),
        (DeviceOutput::default().with_report(&no_copy_src, 0), "report"),
    ] {
        let e = recorder.encode_results(&mut encoder, &loss, &out).unwrap_err();
        assert!(matches!(&e, Error::Binding { name: n, .. } if n == name), "{e:?}");
        assert!(e.to_string().contains("COPY_SRC"), "{e}");
    }
}
