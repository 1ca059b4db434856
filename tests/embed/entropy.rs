//! Cross-entropy's `entropy` option on the caller's buffers: each row's entropy lands in word 3
//! of its record in the aux buffer the caller passes, the loss and its gradient unchanged.

use super::{Case, Data, IGNORE, OnDevice, USAGE, read, zeroed};
use crate::common::{assert_close, context, rng};
use xent::{DType, DeviceGrad, DeviceOutput, LogBase, Op, OptionValue, RecordExtras, Recorder};

/// Words of a row's aux record (argmax, weight, z term, entropy, and the report's four).
const AUX_WORDS: usize = 8;

/// The per-row values, the gradient of the mean (with `grad`; rows split across workgroups
/// take none) and the aux records of `d`, recorded with the records at `aux_offset` bytes of
/// the caller's buffer.
fn record(recorder: &Recorder, d: &Data, aux_offset: u64, grad: bool) -> (Vec<u8>, Vec<u8>, Vec<u32>) {
    let ctx = context().expect("context");
    let (device, queue) = (ctx.device(), ctx.queue());
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let (rows, n) = (d.rows as u64, 4 * (d.rows * d.cols) as u64);
    let (per_row, g) = (zeroed(device, 4 * rows, USAGE), zeroed(device, n, USAGE));
    let aux_bytes = 4 * AUX_WORDS as u64 * rows;
    let aux = zeroed(device, aux_offset + aux_bytes, USAGE);
    let rows_only = DeviceOutput::rows(&per_row);
    let out = if grad { rows_only.with_grad(DeviceGrad::of_mean_into(&g, 0)) } else { rows_only };
    let extras = RecordExtras { aux: Some((&aux, aux_offset)), ..Default::default() };
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record_with(&mut encoder, &bufs.loss(d), &out, &extras).expect("record");
    queue.submit([encoder.finish()]);
    let words = bytemuck::pod_collect_to_vec(&read(device, queue, &aux, aux_offset, aux_bytes));
    (read(device, queue, &per_row, 0, 4 * rows), read(device, queue, &g, 0, n), words)
}

/// Word 3 of each record is the row's entropy (ignored rows too) against the reference, for
/// labels with ignored rows and class weights, probability targets and soft-capped logits;
/// the values and the gradient are the bits of the same record without the option. The long
/// rows without a gradient are split across workgroups under `XENT_ROW_LAYOUT=gpu`.
#[test]
fn the_entropy_lands_in_word_3_of_the_callers_aux_records() {
    let Some(ctx) = context() else { return };
    let recorder = Recorder::new(ctx.device());
    let mut rng = rng(91);
    let ce =
        Op::CrossEntropy { ignore_index: Some(i64::from(IGNORE)), label_smoothing: 0.1, z_loss: 0.0, entropy: true };
    let cases = [
        Case { op: ce, weighted: true, softcap: None },
        Case { op: ce, weighted: false, softcap: Some(3.0) },
        Case::from(Op::CrossEntropyProbs { z_loss: 0.01, entropy: true }),
    ];
    for case in cases {
        for &(rows, cols, with_grad) in &[(37, 3, true), (5, 4099, true), (3, 40_000, false)] {
            let d = Data::new(case, rows, cols, &mut rng);
            let (values, grad, aux) = record(&recorder, &d, 256, with_grad);
            let got: Vec<f32> = aux.chunks(AUX_WORDS).map(|r| f32::from_bits(r[3])).collect();
            let want = xent::reference::entropies(&d.loss(&d.x), LogBase::Nats).unwrap().expect("entropies");
            let what = format!("{case:?} [{rows}, {cols}]");
            assert_close(&what, &got, &want, 2e-5, 2e-5);
            let mut off = case;
            off.op.set("entropy", OptionValue::Switch(false)).unwrap();
            let plain = Data { case: off, ..d };
            let (plain_values, plain_grad, _) = record(&recorder, &plain, 0, with_grad);
            assert_eq!(values, plain_values, "{what}: the values changed with the entropy");
            assert_eq!(grad, plain_grad, "{what}: the gradient changed with the entropy");
        }
    }
}
