//! The on-device tuner through the command line (`XENT_TUNE=on` on the software adapter,
//! where it is off by default): `xent tune` chooses a layout and keeps it in the cache;
//! `xent ce` then runs with it, run after run with the same bits, and its JSON says so; the
//! result is the reference's; `off` and `cached` do not time; a cache that is not the
//! tuner's is left alone with one note; a bad `XENT_TUNE` is exit 2.

mod cli_support;

use cli_support::{Files, command, labels, uniform};
use serde_json::Value;

/// `xent` with the tuner in `mode` and its cache at `cache`.
fn run(mode: &str, cache: &std::path::Path, args: &[&str]) -> cli_support::Run {
    cli_support::Run::from(command(args).env("XENT_TUNE", mode).env("XENT_TUNE_CACHE", cache).output().unwrap())
}

fn has_gpu() -> bool {
    let out = command(&["info", "--json"]).output().unwrap();
    let info: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    !info["auto"].is_null() || std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

#[test]
fn the_tuner_chooses_keeps_and_reuses_a_layout() {
    if !has_gpu() {
        return;
    }
    let f = Files::new();
    let (rows, cols) = (3000, 1000);
    let x = f.f32("x.npy", &[rows, cols], &uniform(1, rows * cols, -4.0, 4.0));
    let y = f.i64("y.npy", &labels(2, rows, cols));
    let cache = f.path("cache").join("tune.json");
    // ahead of time: one choice, kept on disk under this device's fingerprint
    let tuned = run("on", &cache, &["tune", "--shapes", "3000x1000", "--ops", "ce", "--report"]);
    assert_eq!(tuned.code, 0, "{}", tuned.stderr);
    let line: Value = serde_json::from_str(tuned.stdout.trim()).unwrap();
    assert_eq!(line["tuned"], true, "{line}");
    let chosen = line["layout"].as_str().unwrap().to_string();
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_eq!(kept["xent_tune"], 1);
    let devices = kept["devices"].as_object().unwrap();
    assert_eq!(devices.len(), 1);
    let keys = devices.values().next().unwrap().as_object().unwrap();
    assert!(keys.keys().any(|k| k.starts_with("softmax_xent|F32|")), "{kept}");
    // the file runs with it, twice with the same bits, and as the reference computes
    let ce = ["ce", "--logits", &x, "--labels", &y, "--device", "gpu", "--json"];
    let (a, b) = (run("on", &cache, &ce).json(), run("cached", &cache, &ce).json());
    assert_eq!((a["layout"].as_str(), b["layout"].as_str()), (Some(&chosen[..]), Some(&chosen[..])));
    assert_eq!(a["sum"], b["sum"]);
    let reference =
        run("off", &cache, &["ce", "--logits", &x, "--labels", &y, "--device", "reference", "--json"]).json();
    let (got, want) = (a["mean"].as_f64().unwrap(), reference["mean"].as_f64().unwrap());
    assert!((got - want).abs() <= 1e-5 * want.abs(), "{got} against {want}");
    // off: the rule's layout, whatever the cache holds; the cache is as it was
    let before = std::fs::read_to_string(&cache).unwrap();
    let off = run("off", &cache, &ce).json();
    assert_eq!(off["layout"].as_str(), line["rule_layout"].as_str());
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), before);
    // cached, on an empty cache: nothing timed, nothing written
    let empty = f.path("none").join("tune.json");
    run("cached", &empty, &ce).json();
    assert!(!empty.exists());
    // a file that is not the tuner's: left alone, one note, the right result
    std::fs::write(&cache, "{\"mine\": 1}").unwrap();
    let foreign = run("on", &cache, &ce);
    assert_eq!(foreign.code, 0, "{}", foreign.stderr);
    assert!(foreign.stderr.contains("not the tuner's"), "{}", foreign.stderr);
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), "{\"mine\": 1}");
    let v: Value = serde_json::from_str(foreign.stdout.trim()).unwrap();
    assert!((v["mean"].as_f64().unwrap() - want).abs() <= 1e-5 * want.abs());
}

/// Rows few and long enough to split (under the GPU layouts): the tuner times the parts with
/// the rest of the layout, and a job runs with the parts it chose, as the layout pinned
/// runs it and as the reference computes.
#[test]
fn the_tuner_chooses_the_parts_of_split_rows() {
    if !has_gpu() {
        return;
    }
    let f = Files::new();
    let (rows, cols) = (256, 16384);
    let x = f.f32("x.npy", &[rows, cols], &uniform(3, rows * cols, -4.0, 4.0));
    let cache = f.path("tune.json");
    let gpu = |mode: &str, pin: Option<&str>, args: &[&str]| {
        let mut c = command(args);
        c.env("XENT_ROW_LAYOUT", "gpu").env("XENT_TUNE", mode).env("XENT_TUNE_CACHE", &cache);
        if let Some(layout) = pin {
            c.env("XENT_LAYOUT", layout);
        }
        cli_support::Run::from(c.output().unwrap())
    };
    let tuned = gpu("on", None, &["tune", "--shapes", "256x16384", "--ops", "lse"]);
    assert_eq!(tuned.code, 0, "{}", tuned.stderr);
    let line: Value = serde_json::from_str(tuned.stdout.trim()).unwrap();
    assert_eq!(line["tuned"], true, "{line}");
    assert!(line["rule_layout"].as_str().unwrap().contains('/'), "the rule splits these rows: {line}");
    // a choice of two parts in the cache, under the key the job records
    let mut kept: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let device = kept["devices"].as_object_mut().unwrap().values_mut().next().unwrap();
    let key = "logsumexp|F32|0|c16384|few";
    assert!(device.get(key).is_some(), "{device}");
    device[key] = Value::from("64x64/2");
    std::fs::write(&cache, kept.to_string()).unwrap();
    // each row's value, written out: the bits of each run
    let rows_of = |mode: &str, pin: Option<&str>, name: &str| {
        let out = f.path(name);
        let args = ["lse", "--logits", &x, "--device", "gpu", "--json", "--out", out.to_str().unwrap()];
        let run = gpu(mode, pin, &args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        (run.json(), std::fs::read(&out).unwrap())
    };
    let (chosen, chosen_rows) = rows_of("cached", None, "chosen.npy");
    assert_eq!(chosen["layout"], "64x64/2", "{chosen}");
    let (_, two) = rows_of("off", Some("64x64/2"), "two.npy");
    let (_, four) = rows_of("off", Some("64x64/4"), "four.npy");
    assert_ne!(two, four, "two and four parts add in other orders");
    assert_eq!(chosen_rows, two);
    let reference = gpu("off", None, &["lse", "--logits", &x, "--device", "reference", "--json"]).json();
    let (got, want) = (chosen["sum"].as_f64().unwrap(), reference["sum"].as_f64().unwrap());
    assert!((got - want).abs() <= 1e-6 * want.abs(), "{got} against {want}");
}

#[test]
fn a_bad_mode_is_named() {
    let f = Files::new();
    run("sometimes", &f.path("t.json"), &["info"]).bad_input(&["XENT_TUNE"]);
}
