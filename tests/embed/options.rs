//! Option errors name the library's option, not a command-line flag.

use super::{CE, Data, OnDevice, USAGE, zeroed};
use crate::common::{context, rng};
use xent::{Batch, DType, DeviceLoss, DeviceOutput, Error, Labels, Loss, Op, Recorder};

#[test]
fn option_errors_name_the_library_option() {
    let Some(ctx) = context() else { return };
    let device = ctx.device();
    let recorder = Recorder::new(device);
    let d = Data::new(CE, 6, 4, &mut rng(83));
    let bufs = OnDevice::new(device, &d, DType::F32, 0);
    let per_row = zeroed(device, 4 * 6, USAGE);
    let with = |label_smoothing: f32, ignore_index: Option<i64>| DeviceLoss {
        op: Op::CrossEntropy { ignore_index, label_smoothing, z_loss: 0.0, entropy: false },
        ..bufs.loss(&d)
    };
    let cases = [
        (with(1.5, None), "label_smoothing", "label_smoothing: 1.5 is not in [0, 1]"),
        (
            with(0.0, Some(i64::from(i32::MIN))),
            "ignore_index",
            "ignore_index: -2147483648 is outside the supported range",
        ),
        (with(0.0, Some(1 << 31)), "ignore_index", "ignore_index: 2147483648 is outside the supported range"),
    ];
    for (loss, option, message) in cases {
        let mut encoder = device.create_command_encoder(&Default::default());
        match recorder.record(&mut encoder, &loss, &DeviceOutput::rows(&per_row)) {
            Err(e @ Error::Option { name, .. }) if name == option => {
                assert!(e.to_string().starts_with(message), "{e}")
            }
            other => panic!("expected an error naming {option}, got {other:?}"),
        }
    }
    // the host path words it the same way
    let logits = [0.5f32, -1.0, 2.0, 0.25];
    let batch = Batch::new(&logits[..], 1, 4).expect("shape");
    let host = Loss::new(Op::Distill { temperature: 0.0, alpha: 0.5 }, batch)
        .with_second(batch)
        .with_labels(Labels::I32(&[1]));
    let e = ctx.compute(&host, &Default::default()).expect_err("temperature 0");
    assert_eq!(e.to_string(), "temperature: 0 is not a positive finite number");
}
