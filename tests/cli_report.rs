//! The evaluation report of `xent ce --labels` (top-k, calibration, Brier, per class, the
//! reliability diagram) against the f64 reference's report, on both devices, chunked and
//! in shards merged.

mod cli_support;

use cli_support::{Files, devices, labels, uniform, xent};
use serde_json::Value;
use xent::metrics::{BinaryMetrics, Metrics, MetricsSpec};
use xent::{Batch, Form, Labels, Loss, Op};

const IGNORE: i64 = -100;

/// Logits with ties (steps of 0.5), a few masked classes and labels with ignored rows.
fn data(rows: usize, cols: usize) -> (Vec<f32>, Vec<i64>) {
    let mut x: Vec<f32> = uniform(31, rows * cols, -3.0, 3.0).iter().map(|v| (v * 2.0).round() / 2.0).collect();
    x.iter_mut().step_by(13).for_each(|v| *v = f32::NEG_INFINITY);
    let mut y = labels(32, rows, cols);
    y.iter_mut().step_by(7).for_each(|l| *l = IGNORE);
    (x, y)
}

/// The reference's report of the rows, as the library builds it.
fn reference(x: &[f32], y: &[i64], cols: usize, top_k: &[u32], bins: u32) -> Metrics {
    let op = Op::CrossEntropy { ignore_index: Some(IGNORE), label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let loss = Loss::new(op, Batch::new(x, y.len(), cols).unwrap()).with_labels(Labels::I64(y));
    let spec = MetricsSpec { top_k: top_k.to_vec(), bins, per_class: true, classes: cols as u32 };
    let mut m = Metrics::new(spec).unwrap();
    for r in xent::reference::row_evals(&loss).unwrap().unwrap().iter().flatten() {
        m.push(r);
    }
    m
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_f64().unwrap_or_else(|| panic!("{v}")),
    }
}

/// Counts exactly; means and sums to `rel` of the reference's.
fn assert_report(what: &str, line: &Value, want: &Metrics, rel: f64) {
    let close = |key: &str, got: f64, w: f64| {
        let ok = (got.is_nan() && w.is_nan()) || (got - w).abs() <= rel * w.abs().max(1e-3);
        assert!(ok, "{what}: {key}: got {got}, want {w}");
    };
    assert_eq!(line["counted"], want.rows, "{what}");
    assert_eq!(line["correct"], want.correct, "{what}");
    for (k, &hits) in want.spec.top_k.iter().zip(&want.hits) {
        assert_eq!(line["top_correct"][k.to_string()], hits, "{what}: top {k}");
        close(&format!("top{k}"), num(&line[format!("top{k}")]), hits as f64 / want.rows as f64);
    }
    let bins = line["calibration"]["bins"].as_array().unwrap();
    assert_eq!(bins.len(), want.bins.len(), "{what}");
    for (i, (got, w)) in bins.iter().zip(&want.bins).enumerate() {
        assert_eq!(
            (got["count"].as_u64(), got["correct"].as_u64()),
            (Some(w.count), Some(w.correct)),
            "{what}: bin {i}"
        );
        close(&format!("bin {i}"), num(&got["confidence_sum"]), w.confidence_sum);
    }
    close("ece", num(&line["ece"]), want.ece());
    close("mce", num(&line["mce"]), want.mce());
    close("brier", num(&line["brier"]), want.brier());
    close("balanced_accuracy", num(&line["balanced_accuracy"]), want.balanced_accuracy().unwrap());
    assert_eq!(line["accuracy"], line["top1"], "{what}: accuracy is top1");
}

#[test]
fn the_report_matches_the_reference_on_both_devices_and_any_chunking() {
    let f = Files::new();
    let (rows, cols) = (2000, 37);
    let (x, y) = data(rows, cols);
    let (l, yy) = (f.f32("L.npy", &[rows, cols], &x), f.i64("Y.npy", &y));
    let w = f.f32("W.npy", &[cols], &uniform(33, cols, 0.5, 2.0));
    let want = reference(&x, &y, cols, &[1, 2, 5, 40], 12);
    for device in devices() {
        for chunk in ["3000", "7"] {
            let args = ["ce", "--logits", &l, "--labels", &yy, "--ignore-index", "-100", "--top-k", "5,1,2,40"];
            // class weights and smoothing change the loss, not the report
            let options = ["--bins", "12", "--class-weights", &w, "--label-smoothing", "0.1", "--chunk-rows", chunk];
            let line = xent(&[&args[..], &options, &["--device", device]].concat()).json();
            assert_report(&format!("{device}, chunks of {chunk}"), &line, &want, 1e-6);
        }
    }
}

#[test]
fn a_nan_row_is_wrong_and_makes_calibration_nan() {
    let f = Files::new();
    let (rows, cols) = (9, 5);
    let (mut x, mut y) = data(rows, cols);
    y[3] = 2;
    x[3 * cols + 1] = f32::NAN;
    let (l, yy) = (f.f32("L.npy", &[rows, cols], &x), f.i64("Y.npy", &y));
    let want = reference(&x, &y, cols, &[1, 5], 15);
    assert_eq!(want.nan_rows, 1);
    for device in devices() {
        let args = ["ce", "--logits", &l, "--labels", &yy, "--ignore-index", "-100", "--device", device];
        let line = xent(&args).json();
        assert_report(device, &line, &want, 1e-6);
        assert_eq!(line["calibration"]["nan_rows"], 1);
        assert_eq!((&line["ece"], &line["brier"]), (&Value::from("nan"), &Value::from("nan")));
    }
}

#[test]
fn shards_merge_into_the_whole_report() {
    let f = Files::new();
    let (rows, cols) = (1500, 11);
    let (x, y) = data(rows, cols);
    let bounds = [0, 700, 701, rows];
    for device in devices() {
        let run = |l: &str, yy: &str, table: &str| {
            let args = ["ce", "--logits", l, "--labels", yy, "--ignore-index", "-100", "--per-class", table];
            xent(&[&args[..], &["--top-k", "1,3", "--device", device]].concat())
        };
        let table = f.arg(&format!("whole-{device}.csv"));
        let whole = run(&f.f32("L.npy", &[rows, cols], &x), &f.i64("Y.npy", &y), &table).json();
        let mut results = Vec::new();
        for (k, pair) in bounds.windows(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            let l = f.f32(&format!("L{k}.npy"), &[b - a, cols], &x[a * cols..b * cols]);
            let yy = f.i64(&format!("Y{k}.npy"), &y[a..b]);
            let out = f.path(&format!("r{k}-{device}.json"));
            std::fs::write(&out, run(&l, &yy, &f.arg(&format!("t{k}.csv"))).stdout).unwrap();
            results.push(out.to_str().unwrap().to_string());
        }
        let mut args = vec!["merge"];
        args.extend(results.iter().map(String::as_str));
        let merged = xent(&args).json();
        for key in ["top_correct", "counted", "correct", "per_class"] {
            if key == "per_class" {
                for column in ["support", "correct", "predicted"] {
                    assert_eq!(merged[key][column], whole[key][column], "{device}: per_class {column}");
                }
            } else {
                assert_eq!(merged[key], whole[key], "{device}: {key}");
            }
        }
        for (m, w) in merged["calibration"]["bins"]
            .as_array()
            .unwrap()
            .iter()
            .zip(whole["calibration"]["bins"].as_array().unwrap())
        {
            assert_eq!((&m["count"], &m["correct"]), (&w["count"], &w["correct"]), "{device}");
        }
        for key in ["top1", "top3", "ece", "mce", "brier", "brier_sum", "balanced_accuracy"] {
            let (m, w) = (num(&merged[key]), num(&whole[key]));
            assert!((m - w).abs() <= 1e-12 * w.abs().max(1.0), "{device}: {key}: merged {m}, whole {w}");
        }
    }
}

#[test]
fn the_per_class_table_and_the_plot_are_written_whole() {
    let f = Files::new();
    let (rows, cols) = (300, 4);
    let (x, y) = data(rows, cols);
    let (l, yy) = (f.f32("L.npy", &[rows, cols], &x), f.i64("Y.npy", &y));
    let want = reference(&x, &y, cols, &[1], 15);
    let (table, plot) = (f.arg("classes.csv"), f.arg("reliability.svg"));
    let args =
        ["ce", "--logits", &l, "--labels", &yy, "--ignore-index", "-100", "--per-class", &table, "--plot", &plot];
    let line = xent(&args).json();
    assert_eq!((line["per_class_out"].as_str(), line["plot"].as_str()), (Some(table.as_str()), Some(plot.as_str())));
    let csv = std::fs::read_to_string(&table).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("class,support,correct,recall,predicted,mean_confidence"));
    for (class, (line, c)) in lines.zip(want.classes.as_ref().unwrap()).enumerate() {
        let v: Vec<&str> = line.split(',').collect();
        assert_eq!(v[..3], [class.to_string(), c.support.to_string(), c.correct.to_string()], "{line}");
        assert_eq!(v[4], c.predicted.to_string(), "{line}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("ECE"), "{}", &svg[..svg.len().min(200)]);

    // over an input, onto a directory, with target probabilities, or a k of 0: bad input,
    // and nothing written
    let before = f.listing();
    let p = f.f32("P.npy", &[rows, cols], &vec![0.25; rows * cols]);
    let dir = f.dir.path().to_str().unwrap().to_string();
    let base = ["ce", "--logits", &l, "--labels", &yy, "--ignore-index", "-100"];
    xent(&[&base[..], &["--per-class", &yy]].concat()).bad_input(&["--per-class", "--labels"]);
    xent(&[&base[..], &["--plot", &l]].concat()).bad_input(&["--plot", "--logits"]);
    xent(&[&base[..], &["--plot", &dir]].concat()).bad_input(&["--plot"]);
    xent(&[&base[..], &["--top-k", "0"]].concat()).bad_input(&["--top-k"]);
    xent(&["ce", "--logits", &l, "--target-probs", &p, "--top-k", "3"]).bad_input(&["--top-k", "--target-probs"]);
    xent(&["ce", "--logits", &l, "--target-probs", &p, "--plot", &f.arg("new.svg")]).bad_input(&["--plot"]);
    let mut after = f.listing();
    after.retain(|n| n != "P.npy");
    assert_eq!(after, before, "files left behind");
}

/// `bce` reports accuracy at 0.5, calibration over `--bins` and the Brier score over its
/// elements, as the library's binary report (tested against scikit-learn) adds them up,
/// on both devices, chunked, from probabilities and logits, and merged from shards.
#[test]
fn binary_cross_entropy_reports_accuracy_calibration_and_brier() {
    let f = Files::new();
    let (rows, cols) = (400, 6);
    let x = uniform(51, rows * cols, -4.0, 4.0);
    let t: Vec<f32> = uniform(52, rows * cols, 0.0, 1.0).iter().map(|v| v.round()).collect();
    let p: Vec<f32> = x.iter().map(|&v| (1.0 / (1.0 + (-f64::from(v)).exp())) as f32).collect();
    let (l, pp, tt) =
        (f.f32("X.npy", &[rows, cols], &x), f.f32("P.npy", &[rows, cols], &p), f.f32("T.npy", &[rows, cols], &t));
    for (flag, file, input, values) in [("--logits", &l, Form::Logits, &x), ("--probs", &pp, Form::Probs, &p)] {
        let op = Op::BinaryCrossEntropy { input };
        let loss = Loss::new(op, Batch::new(&values[..], rows, cols).unwrap())
            .with_second(Batch::new(&t[..], rows, cols).unwrap());
        let mut want = BinaryMetrics::new(7).unwrap();
        want.add(&loss).unwrap();
        for device in devices() {
            for chunk in ["1000", "7"] {
                let args =
                    ["bce", flag, file, "--labels", &tt, "--bins", "7", "--chunk-rows", chunk, "--device", device];
                let line = xent(&args).json();
                let what = format!("{flag} {device} {chunk}");
                assert_eq!(
                    (line["correct"].as_u64(), line["counted"].as_u64()),
                    (Some(want.correct), Some(want.elements)),
                    "{what}"
                );
                for (key, w) in
                    [("accuracy", want.accuracy()), ("ece", want.ece()), ("mce", want.mce()), ("brier", want.brier())]
                {
                    assert!(
                        (num(&line[key]) - w).abs() <= 1e-12 * w.abs().max(1.0),
                        "{what}: {key} {} against {w}",
                        line[key]
                    );
                }
                let counts: Vec<u64> = line["calibration"]["bins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["count"].as_u64().unwrap())
                    .collect();
                assert_eq!(counts, want.bins.iter().map(|b| b.count).collect::<Vec<_>>(), "{what}");
            }
        }
    }
    // two shards merge into the whole
    let half = rows / 2 * cols;
    let shards: Vec<String> = (0..2)
        .map(|k| {
            let (a, b) = (k * half, (k + 1) * half);
            let xs = f.f32(&format!("X{k}.npy"), &[rows / 2, cols], &x[a..b]);
            let ts = f.f32(&format!("T{k}.npy"), &[rows / 2, cols], &t[a..b]);
            let out = f.path(&format!("b{k}.json"));
            std::fs::write(&out, xent(&["bce", "--logits", &xs, "--labels", &ts, "--bins", "7"]).stdout).unwrap();
            out.to_str().unwrap().to_string()
        })
        .collect();
    let whole = xent(&["bce", "--logits", &l, "--labels", &tt, "--bins", "7"]).json();
    let merged = xent(&["merge", &shards[0], &shards[1]]).json();
    for key in ["correct", "counted"] {
        assert_eq!(merged[key], whole[key], "{key}");
    }
    for key in ["accuracy", "ece", "mce", "brier"] {
        let (m, w) = (num(&merged[key]), num(&whole[key]));
        assert!((m - w).abs() <= 1e-12 * w.abs().max(1.0), "{key}: merged {m}, whole {w}");
    }
    assert!(merged.get("perplexity").is_none(), "bce has no perplexity");
    xent(&["bce", "--logits", &l, "--labels", &tt, "--bins", "0"]).bad_input(&["--bins"]);
}
