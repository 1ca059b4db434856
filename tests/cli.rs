//! The command line against `CLI.md`: every command checked against the f64 reference on
//! small files written here byte by byte, every bad-input class of the contract, the
//! accepted dtypes and header versions, and chunked runs bit-identical to one chunk.
//!
//! Runs on the GPU (`--device gpu` when `XENT_REQUIRE_GPU=1`, else `auto`) and on `--device cpu`.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use half::f16;
use serde_json::Value;
use tempfile::TempDir;
use xent::npy::NpyFile;
use xent::{Batch, Form, Labels, LogBase, Loss, Op, Reduction};

// ---------------------------------------------------------------------------------------
// .npy files written by hand, so the tests do not depend on the crate's own writer

/// A `.npy` image of format `major`.0 whose header is padded to a multiple of `align`.
fn npy_bytes(descr: &str, shape: &[usize], data: &[u8], major: u8, align: usize) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let pre = if major == 1 { 10 } else { 12 };
    let total = (pre + dict.len() + 1).next_multiple_of(align);
    let mut b = b"\x93NUMPY".to_vec();
    b.extend_from_slice(&[major, 0]);
    if major == 1 {
        b.extend_from_slice(&u16::try_from(total - pre).unwrap().to_le_bytes());
    } else {
        b.extend_from_slice(&u32::try_from(total - pre).unwrap().to_le_bytes());
    }
    b.extend_from_slice(dict.as_bytes());
    b.resize(total - 1, b' ');
    b.push(b'\n');
    b.extend_from_slice(data);
    b
}

struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Files {
        Files { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn raw(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn f32(&self, name: &str, shape: &[usize], v: &[f32]) -> String {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(name, &npy_bytes("<f4", shape, &data, 1, 64))
    }

    fn f16(&self, name: &str, shape: &[usize], v: &[f16]) -> String {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(name, &npy_bytes("<f2", shape, &data, 1, 64))
    }

    fn f64(&self, name: &str, shape: &[usize], v: &[f64]) -> String {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(name, &npy_bytes("<f8", shape, &data, 1, 64))
    }

    fn i64(&self, name: &str, v: &[i64]) -> String {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(name, &npy_bytes("<i8", &[v.len()], &data, 1, 64))
    }

    /// Files in the directory, for checking that nothing was left behind.
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

// ---------------------------------------------------------------------------------------
// running the binary

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit {}: {}", self.code, self.stderr);
        // (where there is no adapter at all, a run on the engine ends with one note)
        let note = "xent: note: no GPU adapter found; running on the CPU engine\n";
        assert!(self.stderr.is_empty() || self.stderr == note, "stderr not empty: {}", self.stderr);
        assert_eq!(self.stdout.lines().count(), 1, "stdout is not one line: {}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap()
    }

    /// Checks a bad-input exit: status 2, one line on stderr naming `names`, no backtrace.
    fn bad_input(&self, names: &str) {
        assert_eq!(self.code, 2, "expected exit 2, got {}: {}", self.code, self.stderr);
        assert!(self.stdout.is_empty(), "stdout: {}", self.stdout);
        assert_eq!(self.stderr.lines().count(), 1, "stderr is not one line: {:?}", self.stderr);
        assert!(self.stderr.starts_with("xent: "), "{}", self.stderr);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("backtrace"), "{}", self.stderr);
        assert!(self.stderr.contains(names), "{:?} does not name {names:?}", self.stderr);
    }
}

fn xent(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_xent")).args(args).env("RUST_BACKTRACE", "1").output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The devices every command is run on.
fn devices() -> [&'static str; 2] {
    let gpu = if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") { "gpu" } else { "auto" };
    [gpu, "cpu"]
}

/// A JSON value as f64, with the strings "inf", "-inf" and "nan".
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        _ => panic!("not a number: {v}"),
    }
}

fn close(got: f64, want: f64, abs: f64, rel: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= abs + rel * want.abs()
}

fn read_out(path: &Path) -> Vec<f32> {
    let f = NpyFile::open(path).unwrap();
    let mut v = Vec::new();
    f.read_f32(0, f.rows() as usize, &mut v).unwrap();
    v
}

/// Runs `args` on every device with `--out` and every reduction, and checks the value and
/// the per-row output against `want` (the reference on the same data).
fn check(files: &Files, what: &str, args: &[&str], loss: &Loss, base: LogBase) {
    let want = xent::reference::compute(loss, base).unwrap();
    for device in devices() {
        for (reduction, r) in [("mean", Reduction::Mean), ("sum", Reduction::Sum), ("none", Reduction::None)] {
            let out = files.path(&format!("{what}-{device}-{reduction}.npy"));
            let mut a = args.to_vec();
            a.extend(["--device", device, "--reduction", reduction, "--out", out.to_str().unwrap()]);
            let line = xent(&a).json();
            let label = format!("{what} on {device}, reduction {reduction}");
            assert_eq!(line["reduction"], reduction, "{label}");
            assert_eq!(line["rows"], loss.primary().rows as u64, "{label}");
            assert_eq!(line["cols"], loss.primary().cols as u64, "{label}");
            assert!(line["adapter"].is_string() && line["seconds"].is_number(), "{label}: {line}");
            let (got, expected) = (num(&line["value"]), want.reduce(r));
            assert!(close(got, expected, 1e-5, 2e-5), "{label}: value {got}, reference {expected}");
            // with a z-loss, its share of the mean (and nothing without one)
            match xent::reference::z_terms(loss, base).unwrap() {
                Some(z) => {
                    let expected = z.iter().sum::<f64>() / want.denominator();
                    let got = num(&line["z_loss"]);
                    assert!(close(got, expected, 1e-5, 2e-5), "{label}: z_loss {got}, reference {expected}");
                }
                None => assert!(line.get("z_loss").is_none(), "{label}: z_loss without a z-loss: {line}"),
            }
            let values = read_out(&out);
            assert_eq!(values.len(), want.values.len(), "{label}");
            for (i, (&g, &w)) in values.iter().zip(&want.values).enumerate() {
                assert!(close(f64::from(g), w, 2e-5, 2e-5), "{label}: row value {i}: {g} vs {w}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// every command against the reference

#[test]
fn every_command_matches_the_reference() {
    let f = Files::new();
    let mut rng = common::rng(11);
    let (rows, cols) = (37, 13);
    let logits = common::logits(&mut rng, rows * cols, 6.0);
    let other = common::logits(&mut rng, rows * cols, 3.0);
    let p = common::probs(&mut rng, rows, cols, true);
    let q = common::probs(&mut rng, rows, cols, false);
    let labels: Vec<i64> = common::labels(&mut rng, rows, cols).into_iter().map(i64::from).collect();
    let targets = common::uniform(&mut rng, rows * cols, 0.0, 1.0);
    let weights = common::uniform(&mut rng, cols, 0.2, 2.0);
    let sh = [rows, cols];
    let (l, o, pp, qq) =
        (f.f32("l.npy", &sh, &logits), f.f32("o.npy", &sh, &other), f.f32("p.npy", &sh, &p), f.f32("q.npy", &sh, &q));
    let (y, t, w) = (f.i64("y.npy", &labels), f.f32("t.npy", &sh, &targets), f.f32("w.npy", &[cols], &weights));
    let b = |v: &'static [f32]| Batch::new(v, rows, cols).unwrap();
    let leak = |v: Vec<f32>| -> &'static [f32] { Vec::leak(v) };
    let (bl, bo, bp, bq, bt) = (b(leak(logits)), b(leak(other)), b(leak(p)), b(leak(q)), b(leak(targets)));
    let y64: &'static [i64] = Vec::leak(labels.clone());
    let ys = Labels::I64(y64);
    let nats = LogBase::Nats;

    check(&f, "lse", &["lse", "--logits", &l], &Loss::new(Op::LogSumExp, bl), nats);
    check(&f, "lse-base2", &["lse", "--logits", &l, "--base", "2"], &Loss::new(Op::LogSumExp, bl), nats);
    let ce = Loss::new(Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false }, bl)
        .with_labels(ys);
    check(&f, "ce", &["ce", "--logits", &l, "--labels", &y], &ce, nats);
    check(&f, "ce-bits", &["ce", "--logits", &l, "--labels", &y, "--base", "2"], &ce, LogBase::Bits);
    let w_static: &'static [f32] = Vec::leak(weights.clone());
    let ignored = labels[3];
    let ignore = ignored.to_string();
    let ce_options = Loss::new(
        Op::CrossEntropy { ignore_index: Some(ignored), label_smoothing: 0.1, z_loss: 0.0, entropy: false },
        bl,
    )
    .with_labels(ys)
    .with_weights(w_static);
    check(
        &f,
        "ce-options",
        &[
            "ce",
            "--logits",
            &l,
            "--labels",
            &y,
            "--ignore-index",
            &ignore,
            "--class-weights",
            &w,
            "--label-smoothing",
            "0.1",
        ],
        &ce_options,
        nats,
    );
    let ce_z = Loss::new(
        Op::CrossEntropy { ignore_index: Some(ignored), label_smoothing: 0.0, z_loss: 0.01, entropy: false },
        bl,
    )
    .with_labels(ys)
    .with_weights(w_static);
    let z_args = ["ce", "--logits", &l, "--labels", &y, "--ignore-index", &ignore, "--class-weights", &w];
    check(&f, "ce-z-loss", &[&z_args[..], &["--z-loss", "0.01"]].concat(), &ce_z, nats);
    check(
        &f,
        "ce-probs",
        &["ce", "--logits", &l, "--target-probs", &pp],
        &Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: false }, bl).with_second(bp),
        nats,
    );
    let capped = ce_z.with_softcap(2.5);
    check(&f, "ce-softcap", &[&z_args[..], &["--z-loss", "0.01", "--softcap", "2.5"]].concat(), &capped, nats);
    check(
        &f,
        "ce-probs-z-loss",
        &["ce", "--logits", &l, "--target-probs", &pp, "--z-loss", "0.02"],
        &Loss::new(Op::CrossEntropyProbs { z_loss: 0.02, entropy: false }, bl).with_second(bp),
        nats,
    );
    for (pf, qf, p, q, name) in [
        ("--p", "--q", Form::Probs, Form::Probs, "kl-pp"),
        ("--p-logits", "--q", Form::Logits, Form::Probs, "kl-lp"),
        ("--p", "--q-logits", Form::Probs, Form::Logits, "kl-pl"),
        ("--p-logits", "--q-logits", Form::Logits, Form::Logits, "kl-ll"),
    ] {
        let (pa, pb) = if p == Form::Logits { (&l, bl) } else { (&pp, bp) };
        let (qa, qb) = if q == Form::Logits { (&o, bo) } else { (&qq, bq) };
        check(&f, name, &["kl", pf, pa, qf, qa], &Loss::new(Op::KlDiv { p, q }, pb).with_second(qb), nats);
    }
    for (pf, qf, p, q, beta, name) in [
        ("--p", "--q", Form::Probs, Form::Probs, "0.5", "jsd-pp"),
        ("--p-logits", "--q", Form::Logits, Form::Probs, "1", "jsd-lp"),
        ("--p", "--q-logits", Form::Probs, Form::Logits, "0", "jsd-pl"),
        ("--p-logits", "--q-logits", Form::Logits, Form::Logits, "0.3", "jsd-ll"),
    ] {
        let (pa, pb) = if p == Form::Logits { (&l, bl) } else { (&pp, bp) };
        let (qa, qb) = if q == Form::Logits { (&o, bo) } else { (&qq, bq) };
        let op = Op::Jsd { p, q, beta: beta.parse().unwrap(), temperature: 1.5 };
        let args = ["jsd", pf, pa, qf, qa, "--beta", beta, "--temperature", "1.5"];
        check(&f, name, &args, &Loss::new(op, pb).with_second(qb), nats);
    }
    let jsd = Loss::new(Op::Jsd { p: Form::Logits, q: Form::Logits, beta: 0.5, temperature: 1.0 }, bl).with_second(bo);
    check(&f, "jsd-defaults", &["jsd", "--p-logits", &l, "--q-logits", &o], &jsd, nats);
    let capped = &["jsd", "--p-logits", &l, "--q-logits", &o, "--softcap", "2", "--base", "2"];
    check(&f, "jsd-softcap-bits", capped, &jsd.with_softcap(2.0), LogBase::Bits);
    check(&f, "entropy-p", &["entropy", "--probs", &pp], &Loss::new(Op::Entropy { p: Form::Probs }, bp), nats);
    check(
        &f,
        "entropy-l",
        &["entropy", "--logits", &l, "--base", "2"],
        &Loss::new(Op::Entropy { p: Form::Logits }, bl),
        LogBase::Bits,
    );
    check(
        &f,
        "bce-p",
        &["bce", "--probs", &pp, "--labels", &t],
        &Loss::new(Op::BinaryCrossEntropy { input: Form::Probs }, bp).with_second(bt),
        nats,
    );
    check(
        &f,
        "bce-l",
        &["bce", "--logits", &l, "--labels", &t],
        &Loss::new(Op::BinaryCrossEntropy { input: Form::Logits }, bl).with_second(bt),
        nats,
    );
    check(
        &f,
        "gkl",
        &["gaussian-kl", "--mean", &o, "--logvar", &l],
        &Loss::new(Op::GaussianKl, bo).with_second(bl),
        nats,
    );
    let distill = Loss::new(Op::Distill { temperature: 2.0, alpha: 0.3 }, bl).with_second(bo).with_labels(ys);
    check(
        &f,
        "distill",
        &["distill", "--student", &l, "--teacher", &o, "--labels", &y, "--temperature", "2", "--alpha", "0.3"],
        &distill,
        nats,
    );
    let distill = Loss::new(Op::Distill { temperature: 1.0, alpha: 0.5 }, bl).with_second(bo).with_labels(ys);
    check(&f, "distill-defaults", &["distill", "--student", &l, "--teacher", &o, "--labels", &y], &distill, nats);
}

/// `distill` where the teacher rules classes out, on every device and the reference, against PyTorch's formula
/// in float64 ([`common::masked_teacher`]): per-row values and the mean.
#[test]
fn distill_with_masked_teacher_classes_matches_pytorch() {
    use common::masked_teacher::{COLS, EXPECTED, LABELS, STUDENT, TEACHER};
    let f = Files::new();
    let rows = LABELS.len();
    let s = f.f32("student.npy", &[rows, COLS], &STUDENT);
    let t = f.f32("teacher.npy", &[rows, COLS], &TEACHER);
    let y = f.i64("y.npy", &LABELS.map(i64::from));
    for device in devices().into_iter().chain(["reference"]) {
        for (temperature, alpha, want) in EXPECTED {
            let (tau, a) = (temperature.to_string(), alpha.to_string());
            let out = f.path(&format!("distill-{device}-{tau}-{a}.npy"));
            let args = ["distill", "--student", &s, "--teacher", &t, "--labels", &y, "--temperature", &tau];
            let mut args = args.to_vec();
            args.extend(["--alpha", &a, "--device", device, "--out", out.to_str().unwrap()]);
            let line = xent(&args).json();
            let label = format!("distill τ = {tau}, α = {a} on {device}");
            // the f64 reference (its per-row values written as f32); the GPU and the engine in f32
            let rel = if device == "reference" { 1e-12 } else { 2e-5 };
            let mean = want.iter().sum::<f64>() / rows as f64;
            assert!(close(num(&line["value"]), mean, 0.0, rel), "{label}: mean {} against {mean}", line["value"]);
            for (row, (&g, w)) in read_out(&out).iter().zip(want).enumerate() {
                let w32 = f64::from(w as f32);
                assert!(close(f64::from(g), w32, 0.0, rel.max(1e-7)), "{label}: row {row}: {g} against {w}");
            }
        }
    }
}

#[test]
fn softmax_writes_rows_of_probabilities() {
    let f = Files::new();
    let mut rng = common::rng(12);
    let (rows, cols) = (9, 70);
    let mut logits = common::logits(&mut rng, rows * cols, 10.0);
    logits[cols + 5] = f32::NEG_INFINITY; // a masked class
    logits[2 * cols + 1] = f32::NAN; // a NaN row
    let l = f.f32("l.npy", &[rows, cols], &logits);
    let batch = Batch::new(&logits[..], rows, cols).unwrap();
    for (log, temperature) in [(false, 1.0f32), (true, 1.0), (false, 2.5), (true, 0.5)] {
        let want =
            xent::reference::compute(&Loss::new(Op::Softmax { temperature, log }, batch), LogBase::Nats).unwrap();
        for device in devices() {
            let out = f.path(&format!("s-{log}-{temperature}-{device}.npy"));
            let t = temperature.to_string();
            let mut args = vec![
                "softmax",
                "--logits",
                &l,
                "--temperature",
                &t,
                "--device",
                device,
                "--out",
                out.to_str().unwrap(),
            ];
            if log {
                args.push("--log");
            }
            let line = xent(&args).json();
            assert_eq!(line["command"], "softmax");
            let header = NpyFile::open(&out).unwrap();
            assert_eq!(header.shape(), [rows as u64, cols as u64]);
            let got = read_out(&out);
            for (i, (&g, &w)) in got.iter().zip(&want.values).enumerate() {
                assert!(
                    close(f64::from(g), w, 2e-6, 2e-5),
                    "softmax log={log} T={temperature} {device}: [{i}] {g} vs {w}"
                );
            }
            assert!(got[cols + 5] == if log { f32::NEG_INFINITY } else { 0.0 });
            assert!(got[2 * cols..3 * cols].iter().all(|v| v.is_nan()), "a NaN row is NaN in every column");
        }
    }
}

/// One column, as a `[rows, 1]` matrix or as a 1-D vector: softmax and log-softmax over a
/// single class, through the streamed `--out` path on every device.
#[test]
fn softmax_of_one_column_and_of_a_vector() {
    let f = Files::new();
    let mut rng = common::rng(18);
    let rows = 7;
    let mut logits = common::logits(&mut rng, rows, 30.0);
    logits[2] = f32::NEG_INFINITY; // a row of one masked class: NaN
    logits[5] = f32::NAN;
    let batch = Batch::new(&logits[..], rows, 1).unwrap();
    let inputs = [("col", f.f32("col.npy", &[rows, 1], &logits)), ("vec", f.f32("vec.npy", &[rows], &logits))];
    for (name, l) in &inputs {
        for (log, temperature) in [(false, 1.0f32), (true, 1.0), (false, 0.3), (true, 4.0)] {
            let loss = Loss::new(Op::Softmax { temperature, log }, batch);
            let want = xent::reference::compute(&loss, LogBase::Nats).unwrap();
            for device in devices() {
                let out = f.path(&format!("{name}-{log}-{temperature}-{device}.npy"));
                let t = temperature.to_string();
                let mut args = vec![
                    "softmax",
                    "--logits",
                    l,
                    "--temperature",
                    &t,
                    "--device",
                    device,
                    "--out",
                    out.to_str().unwrap(),
                ];
                if log {
                    args.push("--log");
                }
                let label = format!("softmax of {name} log={log} T={temperature} on {device}");
                let line = xent(&args).json();
                assert_eq!(line["cols"], 1, "{label}: {line}");
                assert_eq!(NpyFile::open(&out).unwrap().shape(), [rows as u64, 1], "{label}");
                let got = read_out(&out);
                assert_eq!(got.len(), rows, "{label}");
                for (i, (&g, &w)) in got.iter().zip(&want.values).enumerate() {
                    assert!(close(f64::from(g), w, 0.0, 0.0), "{label}: row {i}: {g} vs {w}");
                }
            }
        }
    }
}

/// Two logit matrices of `[rows, cols]` at `scale` and labels, drawn from `seed`, and their
/// files `l.npy`, `o.npy` and `y.npy`.
struct Pair {
    logits: Vec<f32>,
    other: Vec<f32>,
    labels: Vec<i64>,
    l: String,
    o: String,
    y: String,
}

fn pair(f: &Files, seed: u64, rows: usize, cols: usize, scale: f32) -> Pair {
    let mut rng = common::rng(seed);
    let logits = common::logits(&mut rng, rows * cols, scale);
    let other = common::logits(&mut rng, rows * cols, scale);
    let labels: Vec<i64> = common::labels(&mut rng, rows, cols).into_iter().map(i64::from).collect();
    let (l, o, y) =
        (f.f32("l.npy", &[rows, cols], &logits), f.f32("o.npy", &[rows, cols], &other), f.i64("y.npy", &labels));
    Pair { logits, other, labels, l, o, y }
}

/// Temperatures at the ends of f32: `distill` tends to half the variance of `t − s` (its
/// limit), `softmax` to the argmax; both devices agree with the reference.
#[test]
fn extreme_temperatures_match_the_reference() {
    let f = Files::new();
    let (rows, cols) = (9, 17);
    let Pair { logits, other, labels, l, o, y } = pair(&f, 20, rows, cols, 6.0);
    let (bl, bo) = (Batch::new(&logits[..], rows, cols).unwrap(), Batch::new(&other[..], rows, cols).unwrap());
    for t in ["1e30", "3e38", "1e-30", "1e-40"] {
        let temperature: f32 = t.parse().unwrap();
        let distill =
            Loss::new(Op::Distill { temperature, alpha: 0.7 }, bl).with_second(bo).with_labels(Labels::I64(&labels));
        let args = ["distill", "--student", &l, "--teacher", &o, "--labels", &y, "--temperature", t, "--alpha", "0.7"];
        check(&f, &format!("distill-{t}"), &args, &distill, LogBase::Nats);
        let softmax = Loss::new(Op::Softmax { temperature, log: false }, bl);
        let want = xent::reference::compute(&softmax, LogBase::Nats).unwrap();
        for device in devices() {
            let out = f.path(&format!("softmax-{t}-{device}.npy"));
            let o = out.to_str().unwrap();
            xent(&["softmax", "--logits", &l, "--temperature", t, "--device", device, "--out", o]).json();
            for (i, (&g, &w)) in read_out(&out).iter().zip(&want.values).enumerate() {
                assert!(close(f64::from(g), w, 2e-6, 2e-5), "softmax T={t} on {device}: [{i}] {g} vs {w}");
            }
        }
    }
}

#[test]
fn cross_entropy_reports_accuracy_and_perplexity() {
    let f = Files::new();
    let mut rng = common::rng(13);
    let (rows, cols) = (200, 7);
    let logits = common::logits(&mut rng, rows * cols, 3.0);
    let mut labels: Vec<i64> = common::labels(&mut rng, rows, cols).into_iter().map(i64::from).collect();
    labels[10] = -100;
    labels[11] = -100;
    let (l, y) = (f.f32("l.npy", &[rows, cols], &logits), f.i64("y.npy", &labels));
    let (mut hits, mut counted, mut sum) = (0, 0, 0.0f64);
    for (r, &label) in labels.iter().enumerate() {
        if label == -100 {
            continue;
        }
        let row = &logits[r * cols..(r + 1) * cols];
        let argmax = (0..cols).fold(0, |a, j| if row[j] > row[a] { j } else { a });
        hits += usize::from(argmax as i64 == label);
        counted += 1;
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
        let lse = m + row.iter().map(|&x| (f64::from(x) - m).exp()).sum::<f64>().ln();
        sum += lse - f64::from(row[label as usize]);
    }
    let mean = sum / counted as f64;
    for device in devices() {
        for base in ["e", "2"] {
            let line = xent(&[
                "ce",
                "--logits",
                &l,
                "--labels",
                &y,
                "--ignore-index",
                "-100",
                "--device",
                device,
                "--base",
                base,
            ])
            .json();
            assert!(close(num(&line["accuracy"]), hits as f64 / counted as f64, 1e-12, 0.0), "{device}: {line}");
            assert!(close(num(&line["perplexity"]), mean.exp(), 0.0, 1e-5), "{device} base {base}: {line}");
            let scale = if base == "2" { std::f64::consts::LOG2_E } else { 1.0 };
            assert!(close(num(&line["value"]), mean * scale, 0.0, 1e-5), "{device}: {line}");
        }
    }
}

#[test]
fn special_values_follow_the_contract() {
    let f = Files::new();
    let cols = 4;
    let inf = f32::INFINITY;
    #[rustfmt::skip]
    let logits = [
        1.0, -inf, 2.0, 0.5,     // label 1 is masked: +inf
        -inf, -inf, -inf, -inf,  // whole row masked: NaN
        1.0, 2.0, 3.0, 4.0,
    ];
    let l = f.f32("l.npy", &[3, cols], &logits);
    let y = f.i64("y.npy", &[1, 2, 3]);
    let ok = f.f32("ok.npy", &[1, cols], &logits[8..]);
    let y_ok = f.i64("y_ok.npy", &[1]);
    let masked = f.f32("masked.npy", &[1, cols], &logits[..4]);
    for device in devices() {
        let line = xent(&["ce", "--logits", &masked, "--labels", &y_ok, "--device", device]).json();
        assert_eq!(line["value"], "inf", "{device}: {line}");
        let line = xent(&["ce", "--logits", &l, "--labels", &y, "--device", device, "--reduction", "sum"]).json();
        assert_eq!(line["value"], "nan", "{device}: {line}");
        let line = xent(&[
            "lse",
            "--logits",
            &l,
            "--device",
            device,
            "--reduction",
            "none",
            "--out",
            f.path("lse.npy").to_str().unwrap(),
        ])
        .json();
        let v = read_out(&f.path("lse.npy"));
        assert_eq!(v[1], f32::NEG_INFINITY, "{device}: an all -inf row has lse -inf");
        assert!(v[0].is_finite() && v[2].is_finite());
        assert_eq!(line["value"], "-inf");
        // every row ignored: mean is NaN, as in PyTorch
        let line = xent(&["ce", "--logits", &ok, "--labels", &y_ok, "--ignore-index", "1", "--device", device]).json();
        assert_eq!(line["value"], "nan", "{device}: {line}");
    }
}

// ---------------------------------------------------------------------------------------
// dtypes and header versions

#[test]
fn dtypes_and_header_versions_are_accepted() {
    let f = Files::new();
    let mut rng = common::rng(14);
    let (rows, cols) = (23, 6);
    let logits = common::logits(&mut rng, rows * cols, 4.0);
    let labels: Vec<i64> = common::labels(&mut rng, rows, cols).into_iter().map(i64::from).collect();
    let halves: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
    let doubles: Vec<f64> = logits.iter().map(|&x| f64::from(x) + 1e-9).collect();
    let y = f.i64("y.npy", &labels);
    let batch32 = Batch::new(&logits[..], rows, cols).unwrap();
    let batch16 = Batch::new(&halves[..], rows, cols).unwrap();
    let want = |b| {
        let loss =
            Loss::new(Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false }, b)
                .with_labels(Labels::I64(&labels));
        xent::reference::compute(&loss, LogBase::Nats).unwrap().mean()
    };
    let (want32, want16) = (want(batch32), want(batch16));
    let files = [
        (f.f32("l32.npy", &[rows, cols], &logits), want32, "<f4"),
        (f.f16("l16.npy", &[rows, cols], &halves), want16, "<f2"),
        (f.f64("l64.npy", &[rows, cols], &doubles), want32, "<f8"),
    ];
    for device in devices() {
        for (l, want, descr) in &files {
            let line = xent(&["ce", "--logits", l, "--labels", &y, "--device", device]).json();
            assert_eq!(line["dtype"], *descr);
            assert!(close(num(&line["value"]), *want, 1e-6, 1e-5), "{descr} on {device}: {line}");
        }
        // every integer label type, in every header version, padded to 16 or 64 bytes
        let bytes = |size: usize, w: &dyn Fn(i64) -> Vec<u8>| -> Vec<u8> {
            labels
                .iter()
                .flat_map(|&v| {
                    let b = w(v);
                    assert_eq!(b.len(), size);
                    b
                })
                .collect()
        };
        let kinds: [(&str, Vec<u8>); 6] = [
            ("<i4", bytes(4, &|v| (v as i32).to_le_bytes().to_vec())),
            ("<i8", bytes(8, &|v| v.to_le_bytes().to_vec())),
            ("|u1", bytes(1, &|v| vec![v as u8])),
            ("|i1", bytes(1, &|v| vec![v as u8])),
            ("<u2", bytes(2, &|v| (v as u16).to_le_bytes().to_vec())),
            ("<u4", bytes(4, &|v| (v as u32).to_le_bytes().to_vec())),
        ];
        for (descr, data) in &kinds {
            for (major, align) in [(1, 16), (2, 64), (3, 16)] {
                let name = format!("y-{}-{major}.npy", &descr[1..]);
                let yp = f.raw(&name, &npy_bytes(descr, &[rows], data, major, align));
                let lp = f.raw(
                    &format!("l-{major}.npy"),
                    &npy_bytes(
                        "<f4",
                        &[rows, cols],
                        &logits.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                        major,
                        align,
                    ),
                );
                let line = xent(&["ce", "--logits", &lp, "--labels", &yp, "--device", device]).json();
                assert!(close(num(&line["value"]), want32, 1e-6, 1e-5), "{descr} v{major} on {device}: {line}");
            }
        }
    }
}

#[test]
fn one_dimensional_logits_are_one_column() {
    let f = Files::new();
    let l = f.f32("l.npy", &[5], &[1.0, -2.0, 3.5, 0.0, 7.0]);
    for device in devices() {
        let line = xent(&["lse", "--logits", &l, "--device", device, "--reduction", "sum"]).json();
        assert_eq!(line["cols"], 1);
        assert!(close(num(&line["value"]), 9.5, 1e-6, 1e-6), "{line}");
    }
}

/// `ce --entropy` reports the mean entropy of softmax(logits) over the rows not ignored
/// (unweighted, whatever the class weights) and its sum; `--entropy-out` (which implies
/// `--entropy`) writes every row's, ignored ones too; in bits with `--base 2`; the same bits
/// whatever the chunk size; `--target-probs` likewise; without the flag, no key.
#[test]
fn ce_entropy_reports_the_mean_over_rows_not_ignored() {
    let f = Files::new();
    let (rows, cols) = (1001, 37);
    let Pair { logits, mut labels, l, .. } = pair(&f, 41, rows, cols, 6.0);
    labels.iter_mut().step_by(5).for_each(|y| *y = -100);
    let y = f.i64("ignored.npy", &labels);
    let mut rng = common::rng(42);
    let (w, p) = (common::uniform(&mut rng, cols, 0.1, 3.0), common::probs(&mut rng, rows, cols, true));
    let (weights, target) = (f.f32("w.npy", &[cols], &w), f.f32("p.npy", &[rows, cols], &p));
    let batch = Batch::new(&logits[..], rows, cols).unwrap();
    let op = Op::CrossEntropy { ignore_index: Some(-100), label_smoothing: 0.0, z_loss: 0.0, entropy: true };
    let loss = Loss::new(op, batch).with_labels(&labels[..]);
    let counted: Vec<usize> = (0..rows).filter(|&i| labels[i] != -100).collect();
    for device in devices() {
        for (base, flag) in [(LogBase::Nats, "e"), (LogBase::Bits, "2")] {
            let h = xent::reference::entropies(&loss, base).unwrap().unwrap();
            let sum: f64 = counted.iter().map(|&i| h[i]).sum();
            let mut results = Vec::new();
            for chunk in ["1", "7", "500", "100000"] {
                let out = f.path(&format!("h-{device}-{flag}-{chunk}.npy"));
                let args =
                    ["ce", "--logits", &l, "--labels", &y, "--ignore-index", "-100", "--class-weights", &weights];
                let mut a = args.to_vec();
                a.extend(["--device", device, "--base", flag, "--chunk-rows", chunk]);
                a.extend(["--entropy-out", out.to_str().unwrap()]);
                let line = xent(&a).json();
                let label = format!("{device} base {flag} chunk {chunk}");
                assert_eq!(line["counted"], counted.len() as u64, "{label}");
                let (got, got_sum) = (num(&line["entropy"]), num(&line["entropy_sum"]));
                assert!(close(got, sum / counted.len() as f64, 1e-6, 2e-6), "{label}: entropy {got}");
                assert!(close(got_sum, sum, 1e-4, 2e-6), "{label}: entropy_sum {got_sum} vs {sum}");
                let written = read_out(&out);
                assert_eq!(written.len(), rows, "{label}: every row written");
                for (i, (&g, &r)) in written.iter().zip(&h).enumerate() {
                    assert!(close(f64::from(g), r, 2e-6, 2e-6), "{label}: row {i}: {g} vs {r}");
                }
                results.push((
                    line["entropy"].to_string(),
                    line["entropy_sum"].to_string(),
                    std::fs::read(&out).unwrap(),
                ));
            }
            for r in &results[1..] {
                assert!(r == &results[0], "{device} base {flag}: the chunk size changed the entropy");
            }
        }
        let plain = xent(&["ce", "--logits", &l, "--labels", &y, "--ignore-index", "-100", "--device", device]).json();
        assert!(plain.get("entropy").is_none() && plain.get("entropy_sum").is_none(), "{plain}");
        // probability targets: every row counts
        let probs = Loss::new(Op::CrossEntropyProbs { z_loss: 0.0, entropy: true }, batch)
            .with_second(Batch::new(&p[..], rows, cols).unwrap());
        let h = xent::reference::entropies(&probs, LogBase::Nats).unwrap().unwrap();
        let line = xent(&["ce", "--logits", &l, "--target-probs", &target, "--entropy", "--device", device]).json();
        let want = h.iter().sum::<f64>() / rows as f64;
        assert!(close(num(&line["entropy"]), want, 1e-6, 2e-6), "{device}: target probs: {line}");
    }
}

// ---------------------------------------------------------------------------------------
// streaming

#[test]
fn chunked_runs_are_bit_identical_to_one_chunk() {
    let f = Files::new();
    let Pair { l, o, y, .. } = pair(&f, 15, 1001, 37, 8.0);
    let jobs: [Vec<&str>; 4] = [
        vec!["ce", "--logits", &l, "--labels", &y],
        vec!["kl", "--p-logits", &l, "--q-logits", &o],
        vec!["jsd", "--p-logits", &l, "--q-logits", &o, "--beta", "0.3"],
        vec!["softmax", "--logits", &l, "--log"],
    ];
    for device in devices() {
        for job in &jobs {
            let mut results = Vec::new();
            for chunk in [None, Some("1"), Some("7"), Some("500")] {
                let out = f.path(&format!("{}-{device}-{chunk:?}.npy", job[0]));
                let mut args = job.clone();
                args.extend(["--device", device, "--out", out.to_str().unwrap(), "--reduction", "sum"]);
                if let Some(c) = chunk {
                    args.extend(["--chunk-rows", c]);
                }
                let line = xent(&args).json();
                results.push((line["value"].to_string(), std::fs::read(&out).unwrap(), chunk));
            }
            for r in &results[1..] {
                assert_eq!(r.0, results[0].0, "{} on {device}: value with --chunk-rows {:?}", job[0], r.2);
                assert!(r.1 == results[0].1, "{} on {device}: --out differs with --chunk-rows {:?}", job[0], r.2);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// bad input: exit 2, one line naming the file, flag or row, nothing written

#[test]
fn bad_input_exits_2_with_one_line_and_no_output_file() {
    let f = Files::new();
    let mut rng = common::rng(16);
    let (rows, cols) = (8, 5);
    let logits = common::logits(&mut rng, rows * cols, 3.0);
    let mut probs = common::probs(&mut rng, rows, cols, false);
    let l = f.f32("logits.npy", &[rows, cols], &logits);
    let y = f.i64("labels.npy", &[0, 1, 2, 3, 4, 0, 1, 2]);
    let short_y = f.i64("short.npy", &[0, 1, 2]);
    let far_y = f.i64("far.npy", &[0, 1, 2, 3, 4, 0, 1, 5]);
    let neg_y = f.i64("neg.npy", &[0, 1, 2, -1, 4, 0, 1, 2]);
    let huge_y = f.i64("huge.npy", &[0, 1, 2, 3, (1i64 << 32) + 3, 0, 1, 2]);
    let float_y = f.f32("floaty.npy", &[rows], &[0.0; 8]);
    let weights = f.f32("weights.npy", &[cols + 1], &[1.0; 6]);
    let wide = f.f32("wide.npy", &[rows, cols + 1], &vec![0.5; rows * (cols + 1)]);
    probs[2 * cols + 3] = -0.25;
    let neg_p = f.f32("negp.npy", &[rows, cols], &probs);
    let good_p = f.f32("goodp.npy", &[rows, cols], &common::probs(&mut rng, rows, cols, false));
    let text = f.raw("notes.npy", b"just some text, not an array\n");
    let full =
        npy_bytes("<f4", &[rows, cols], &logits.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(), 1, 64);
    let cut = f.raw("cut.npy", &full[..full.len() - 7]);
    let ints = f.raw("ints.npy", &npy_bytes("<i4", &[rows, cols], &vec![0u8; 4 * rows * cols], 1, 64));
    let bools = f.raw("bools.npy", &npy_bytes("|b1", &[rows, cols], &vec![0u8; rows * cols], 1, 64));
    let missing = f.path("missing.npy").to_str().unwrap().to_string();
    let out = f.path("result.npy");
    let o = out.to_str().unwrap();
    let before = f.listing();

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ce", "--logits", &missing, "--labels", &y], "missing.npy"),
        (vec!["ce", "--logits", &text, "--labels", &y], "notes.npy"),
        (vec!["ce", "--logits", &cut, "--labels", &y], "cut.npy"),
        (vec!["ce", "--logits", &ints, "--labels", &y], "ints.npy"),
        (vec!["ce", "--logits", &bools, "--labels", &y], "bools.npy"),
        (vec!["ce", "--logits", &l, "--labels", &float_y], "floaty.npy"),
        (vec!["ce", "--logits", &l, "--labels", &short_y], "short.npy"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--class-weights", &weights], "weights.npy"),
        (vec!["kl", "--p", &good_p, "--q", &wide], "wide.npy"),
        (vec!["ce", "--logits", &l, "--labels", &far_y], "row 7"),
        (vec!["ce", "--logits", &l, "--labels", &neg_y], "row 3"),
        (vec!["ce", "--logits", &l, "--labels", &huge_y], "row 4"),
        (vec!["distill", "--student", &l, "--teacher", &l, "--labels", &far_y], "row 7"),
        (vec!["ce", "--logits", &l, "--target-probs", &neg_p], "row 2"),
        (vec!["kl", "--p", &neg_p, "--q", &good_p], "row 2"),
        (vec!["kl", "--p", &good_p, "--q", &neg_p], "row 2"),
        (vec!["entropy", "--probs", &neg_p], "row 2"),
        (vec!["jsd", "--p", &good_p, "--q", &neg_p], "row 2"),
        (vec!["jsd", "--p", &good_p, "--q", &good_p, "--beta", "1.5"], "--beta"),
        (vec!["jsd", "--p-logits", &l, "--q-logits", &l, "--temperature", "-1"], "--temperature"),
        (vec!["jsd", "--p", &good_p, "--q", &good_p, "--softcap", "3"], "--softcap"),
        (vec!["bce", "--probs", &neg_p, "--labels", &good_p], "row 2"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--frobnicate"], "--frobnicate"),
        (vec!["ce", "--logits", &l], "--labels"),
        (vec!["softmax", "--logits", &l], "--out"),
        (vec!["kl", "--p", &good_p], "--q"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--reduction", "avg"], "--reduction"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--device", "tpu"], "--device"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--label-smoothing", "1.5"], "--label-smoothing"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--z-loss", "-0.5"], "--z-loss"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--softcap", "0"], "--softcap"),
        (vec!["lse", "--logits", &l, "--softcap", "-3"], "--softcap"),
        (vec!["bce", "--logits", &l, "--labels", &good_p, "--softcap", "3"], "--softcap"),
        (vec!["kl", "--p", &good_p, "--q", &good_p, "--softcap", "3"], "--softcap"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--z-loss", "inf"], "--z-loss"),
        (vec!["distill", "--student", &l, "--teacher", &l, "--labels", &y, "--temperature", "0"], "--temperature"),
        (vec!["distill", "--student", &l, "--teacher", &l, "--labels", &y, "--alpha", "2"], "--alpha"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--target-probs", &good_p], "--target-probs"),
        (vec!["frobnicate"], "frobnicate"),
    ];
    for device in devices() {
        for (args, names) in &cases {
            let mut a = args.clone();
            if a[0] != "frobnicate" {
                a.extend(["--device", device]);
                if a[0] != "softmax" {
                    a.extend(["--out", o]);
                }
            }
            let run = xent(&a);
            run.bad_input(names);
            assert!(!out.exists(), "{a:?} left {o}");
            assert_eq!(f.listing(), before, "{a:?} left files behind");
        }
    }
}

/// A `+inf` probability or target is bad input on every device, like a negative or NaN one,
/// and the message says so.
#[test]
fn infinite_probabilities_are_bad_input() {
    let f = Files::new();
    let mut rng = common::rng(19);
    let (rows, cols) = (6, 5);
    let l = f.f32("logits.npy", &[rows, cols], &common::logits(&mut rng, rows * cols, 3.0));
    let good = f.f32("good.npy", &[rows, cols], &common::probs(&mut rng, rows, cols, false));
    let mut probs = common::probs(&mut rng, rows, cols, false);
    probs[2 * cols + 3] = f32::INFINITY;
    let inf = f.f32("inf.npy", &[rows, cols], &probs);
    let out = f.path("result.npy");
    let o = out.to_str().unwrap();
    let before = f.listing();
    let cases: [Vec<&str>; 8] = [
        vec!["kl", "--p", &inf, "--q", &good],
        vec!["kl", "--p", &good, "--q", &inf],
        vec!["kl", "--p", &inf, "--q-logits", &l],
        vec!["entropy", "--probs", &inf],
        vec!["ce", "--logits", &l, "--target-probs", &inf],
        vec!["ce", "--logits", &l, "--target-probs", &inf, "--label-smoothing", "0.1"],
        vec!["bce", "--probs", &inf, "--labels", &good],
        vec!["bce", "--logits", &l, "--labels", &inf],
    ];
    for device in devices() {
        for args in &cases {
            let mut a = args.clone();
            a.extend(["--device", device, "--out", o]);
            let run = xent(&a);
            run.bad_input("row 2");
            assert!(run.stderr.contains("infinite"), "{a:?}: {}", run.stderr);
            assert!(!out.exists(), "{a:?} left {o}");
            assert_eq!(f.listing(), before, "{a:?} left files behind");
        }
    }
}

#[test]
fn stderr_is_clean_without_a_runtime_dir() {
    let f = Files::new();
    let l = f.f32("l.npy", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["lse", "--logits", &l])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // (where there is no adapter at all, a run on the engine ends with one note)
    assert!(stderr.is_empty() || stderr == "xent: note: no GPU adapter found; running on the CPU engine\n", "{stderr}");
}

#[test]
fn info_lists_the_adapter_auto_picks() {
    if !std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        return;
    }
    let run = xent(&["info", "--json"]);
    let line = run.json();
    assert!(line["adapters"].as_array().is_some_and(|a| !a.is_empty()), "{line}");
    assert!(line["auto"]["max_storage_buffer_binding_size"].is_number(), "{line}");
    for key in ["shader_f16", "subgroups", "timestamp_query"] {
        assert!(line["auto"][key].is_boolean(), "{key}: {line}");
    }
}
