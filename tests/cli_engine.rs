//! The command line on the CPU engine: `--device cpu` against the f64 reference
//! (`--device reference`) and the GPU, and a machine with every adapter hidden, where every
//! command runs on the engine with one note on stderr.

mod cli_support;
mod common;

use cli_support::{Files, Run, command, xent};
use serde_json::Value;

/// Runs `xent args` with every Vulkan and GL driver hidden.
fn without_adapters(args: &[&str]) -> Run {
    let out = command(args)
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
        .env_remove("WGPU_ADAPTER_NAME")
        .output()
        .unwrap();
    Run::from(out)
}

const NOTE: &str = "xent: note: no GPU adapter found; running on the CPU engine\n";

/// Success with the one note on stderr: the JSON line.
fn noted(run: &Run) -> Value {
    assert_eq!(run.code, 0, "exit {}: {}", run.code, run.stderr);
    assert_eq!(run.stderr, NOTE, "stderr");
    serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Seeded logits and labels, as files.
fn files(f: &Files, rows: usize, cols: usize) -> (String, String) {
    let mut r = common::rng(77);
    let x = common::logits(&mut r, rows * cols, 5.0);
    let y: Vec<i64> = common::labels(&mut r, rows, cols).iter().map(|&v| i64::from(v)).collect();
    (f.f32("l.npy", &[rows, cols], &x), f.i64("y.npy", &y))
}

/// `ce` with the report and entropy, `kl` and `softmax --out` on the engine, against the
/// reference: values to f32's tolerance, counts exactly, and the JSON says which ran.
#[test]
fn the_engine_matches_the_reference() {
    let f = Files::new();
    let (l, y) = files(&f, 517, 33);
    let runs: [Vec<&str>; 3] = [
        vec!["ce", "--logits", &l, "--labels", &y, "--entropy", "--top-k", "1,3", "--label-smoothing", "0.1"],
        vec!["kl", "--p-logits", &l, "--q-logits", &l],
        vec!["lse", "--logits", &l, "--reduction", "sum"],
    ];
    for args in runs {
        let on = |device| xent(&[&args[..], &["--device", device, "--json"]].concat()).json();
        let (cpu, reference) = (on("cpu"), on("reference"));
        assert_eq!(cpu["device"], "cpu", "{cpu}");
        assert!(cpu["adapter"].as_str().unwrap().starts_with("xent cpu engine"), "{cpu}");
        assert_eq!(reference["device"], "reference", "{reference}");
        for key in ["value", "sum", "denominator", "entropy", "ece", "brier", "accuracy", "top3"] {
            if reference[key].is_null() {
                continue;
            }
            let (c, r) = (num(&cpu[key]), num(&reference[key]));
            assert!((c - r).abs() <= 2e-5 * (1.0 + r.abs()), "{} {key}: engine {c} reference {r}", args[0]);
        }
        for key in ["correct", "counted", "top_correct"] {
            assert_eq!(cpu[key], reference[key], "{} {key}", args[0]);
        }
    }
}

/// With no adapter at all, `demo`, a file command, `bench` and `info` run on the engine and
/// exit 0, each with at most the one note; `--device gpu` fails with status 1.
#[test]
fn every_command_runs_on_the_engine_without_an_adapter() {
    let demo = noted(&without_adapters(&["demo", "--rows", "300", "--cols", "50", "--json"]));
    assert_eq!(demo["device"], "cpu", "{demo}");
    assert!(num(&demo["relative_error"]) < 1e-5, "{demo}");
    let f = Files::new();
    let (l, y) = files(&f, 40, 9);
    let ce = noted(&without_adapters(&["ce", "--logits", &l, "--labels", &y, "--json"]));
    assert_eq!(ce["device"], "cpu", "{ce}");
    let bench =
        without_adapters(&["bench", "--quick", "--json", "--shapes", "64x100", "--ops", "lse", "--dtypes", "f32"]);
    assert_eq!(noted(&bench)["device"], "cpu");
    let info = without_adapters(&["info", "--json"]);
    assert_eq!(info.code, 0, "{}", info.stderr);
    let gpu = without_adapters(&["lse", "--logits", &l, "--device", "gpu"]);
    assert_eq!(gpu.code, 1, "{}", gpu.stderr);
    assert_eq!(gpu.stderr.lines().count(), 1, "{}", gpu.stderr);
}

/// `XENT_CPU_SIMD` pins the engine's instruction set. Every set the CPU has gives the same
/// bits: values, sums and the report of `ce`, `lse` and `kl`, f32 and f16, with a NaN row,
/// masked classes, ±1e4 and ties, over rows of 1001 columns (a partial last chunk). A set
/// that is none, or that the CPU lacks, is exit 2 naming the variable.
#[test]
fn every_instruction_set_gives_the_same_bits() {
    let f = Files::new();
    let (rows, cols) = (300, 1001);
    let mut r = common::rng(31);
    let mut x = common::logits(&mut r, rows * cols, 5.0);
    x[7 * cols + 3] = f32::NAN;
    x[9 * cols..10 * cols].iter_mut().step_by(2).for_each(|v| *v = f32::NEG_INFINITY);
    x[11 * cols + 5] = 1e4;
    x[12 * cols + 8] = -1e4;
    let tie = x[20 * cols];
    x[20 * cols + 500] = tie;
    let y: Vec<i64> = common::labels(&mut r, rows, cols).iter().map(|&v| i64::from(v)).collect();
    let (l, yf) = (f.f32("l.npy", &[rows, cols], &x), f.i64("y.npy", &y));
    let q: Vec<f32> = x.iter().rev().map(|v| v * 0.5).collect();
    let qf = f.f32("q.npy", &[rows, cols], &q);
    let h: Vec<u8> = x.iter().flat_map(|&v| half::f16::from_f32(v * 0.01).to_le_bytes()).collect();
    let hf = f.raw("h.npy", &cli_support::npy_bytes("<f2", &[rows, cols], &h));
    let runs: [Vec<&str>; 4] = [
        vec!["ce", "--logits", &l, "--labels", &yf, "--top-k", "1,5"],
        vec!["ce", "--logits", &hf, "--labels", &yf],
        vec!["lse", "--logits", &hf, "--reduction", "sum"],
        vec!["kl", "--p-logits", &l, "--q-logits", &qf],
    ];
    let same = |v: &Value| {
        let mut v = v.clone();
        for key in ["seconds", "setup_seconds", "gbps", "adapter"] {
            v.as_object_mut().unwrap().remove(key);
        }
        v
    };
    for args in runs {
        let on = |set: &str| {
            Run::from(
                command(&[&args[..], &["--device", "cpu", "--json"]].concat())
                    .env("XENT_CPU_SIMD", set)
                    .output()
                    .unwrap(),
            )
        };
        let widest = xent(&[&args[..], &["--device", "cpu", "--json"]].concat()).json();
        let mut ran = 0;
        for set in ["avx512", "avx2", "neon", "scalar"] {
            let run = on(set);
            if run.code == 2 {
                run.bad_input(&["XENT_CPU_SIMD"]);
                continue;
            }
            let got = run.json();
            assert!(got["adapter"].as_str().unwrap().contains(set), "{set}: {got}");
            assert_eq!(same(&got), same(&widest), "{} on {set}", args[0]);
            ran += 1;
        }
        assert!(ran >= 2, "at least the widest set and scalar run");
    }
    on_bad_set();
}

/// A pinned set that is no set here is exit 2 naming `XENT_CPU_SIMD`.
fn on_bad_set() {
    let out = command(&["info"]).env("XENT_CPU_SIMD", "sse9").output().unwrap();
    Run::from(out).bad_input(&["XENT_CPU_SIMD", "sse9"]);
}
