//! The operations' names, options and input checks.

use super::*;

#[test]
fn every_name_parses_back_to_its_operation() {
    for op in Op::ALL {
        assert_eq!(op.to_string().parse::<Op>().unwrap(), op);
    }
    let e = "cross-entropy".parse::<Op>().unwrap_err().to_string();
    assert!(e.contains("ce, ce-probs"), "{e}");
}

#[test]
fn every_option_sets_back_what_it_lists() {
    for op in Op::ALL {
        for info in op.options() {
            let mut again = op;
            again.set(info.name, info.value).unwrap();
            assert_eq!(again, op, "{op}: {}", info.name);
        }
        let mut other = op;
        assert!(other.set("frobnicate", OptionValue::Switch(true)).is_err());
    }
    let mut ce = Op::ALL[3];
    ce.set("z_loss", OptionValue::Number(0.5)).unwrap();
    assert!(matches!(ce, Op::CrossEntropy { z_loss: 0.5, .. }));
    assert!(ce.set("z_loss", OptionValue::Switch(true)).is_err(), "a value of the wrong kind");
}

#[test]
fn options_are_checked_by_name() {
    let bad = [
        (Op::Softmax { temperature: 0.0, log: false }, "temperature"),
        (Op::Distill { temperature: 1.0, alpha: 1.5 }, "alpha"),
        (
            Op::CrossEntropy { ignore_index: None, label_smoothing: -0.1, z_loss: 0.0, entropy: false },
            "label_smoothing",
        ),
        (
            Op::CrossEntropy {
                ignore_index: Some(i64::from(i32::MIN)),
                label_smoothing: 0.0,
                z_loss: 0.0,
                entropy: false,
            },
            "ignore_index",
        ),
        (Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: -1e-4, entropy: false }, "z_loss"),
        (
            Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: f32::INFINITY, entropy: false },
            "z_loss",
        ),
    ];
    for (op, want) in bad {
        match op.validate() {
            Err(Error::Option { name, .. }) => assert_eq!(name, want),
            other => panic!("{op:?}: {other:?}"),
        }
    }
    assert!(Op::ALL.iter().all(|op| op.validate().is_ok()));
}

#[test]
fn missing_and_extra_inputs_are_named() {
    let t: Task<u8, u8, u8> = Task::new(Op::GaussianKl, 0);
    assert!(t.check_inputs().unwrap_err().to_string().contains("logvar"));
    assert!(t.with_second(1).check_inputs().is_ok());
    let ce: Task<u8, u8, u8> = Task::new(Op::ALL[3], 0);
    assert!(ce.check_inputs().unwrap_err().to_string().contains("labels"));
    assert!(ce.with_labels(1).with_weights(2).check_inputs().is_ok());
    assert!(Task::<u8, u8, u8>::new(Op::LogSumExp, 0).with_labels(1).check_inputs().is_err());
    let probs: Task<u8, u8, u8> = Task::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, 0).with_second(1);
    assert_eq!(probs.kernel_inputs(), vec![("target", 1), ("logits", 0)]);
}
