//! Files whose pages the device reads in place (a Vulkan adapter whose memory is the host's)
//! give the result of files read and copied (`XENT_HOST_IMPORT=0`), and are leased while
//! mapped: another process that opens one to write stops the run with one line, status 2,
//! and the file untouched.

#![cfg(target_os = "linux")]

mod cli_support;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use cli_support::{Files, Run, command, finish_within, spawn};

/// Whether the runs read files in place here: on Vulkan (lavapipe), unless turned off.
fn in_place() -> bool {
    std::env::var("WGPU_BACKEND").map_or(true, |b| b.eq_ignore_ascii_case("vulkan"))
        && std::env::var("XENT_HOST_IMPORT").map_or(true, |v| v != "0")
}

fn generate(f: &Files, name: &str, rows: u64, cols: u64, dtype: &str, seed: u64) -> (String, String) {
    let (l, y) = (f.arg(&format!("{name}.npy")), f.arg(&format!("{name}-y.npy")));
    let (r, c, s) = (rows.to_string(), cols.to_string(), seed.to_string());
    let args = ["generate", "--rows", &r, "--cols", &c, "--seed", &s, "--dtype", dtype, "--logits", &l, "--labels", &y];
    let run = Run::from(command(&args).output().unwrap());
    assert_eq!(run.code, 0, "generate: {}", run.stderr);
    (l, y)
}

/// The JSON line of `args`, with the device reading in place or not, without its timings.
fn result(args: &[&str], import: bool) -> serde_json::Value {
    let out = command(args).env("XENT_HOST_IMPORT", if import { "1" } else { "0" }).output().unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    assert!(run.stderr.is_empty(), "{args:?} wrote to stderr: {}", run.stderr);
    let mut v = run.json();
    for timing in ["seconds", "setup_seconds", "gbps"] {
        v.as_object_mut().unwrap().remove(timing);
    }
    v
}

#[test]
fn files_read_in_place_give_the_result_of_files_read() {
    let f = Files::new();
    for (dtype, rows, cols, seed) in [("f32", 20_000, 300, 1), ("f16", 9_000, 1000, 2), ("f32", 70_000, 7, 3)] {
        let (l, y) = generate(&f, &format!("{dtype}-{cols}"), rows, cols, dtype, seed);
        let (q, _) = generate(&f, &format!("{dtype}-{cols}-q"), rows, cols, dtype, seed + 10);
        let runs: [&[&str]; 3] = [
            &["ce", "--logits", &l, "--labels", &y, "--device", "gpu", "--json", "--chunk-rows", "4099"],
            &["ce", "--logits", &l, "--labels", &y, "--device", "gpu", "--json", "--top-k", "1,3", "--entropy"],
            &["kl", "--p-logits", &l, "--q-logits", &q, "--device", "gpu", "--json"],
        ];
        for args in runs {
            assert_eq!(result(args, true), result(args, false), "{args:?}: in place and read differ");
        }
    }
}

/// Whether process `pid` maps `file`.
fn maps(pid: u32, file: &Path) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().any(|l| l.ends_with(&*file.to_string_lossy()))
}

/// Opens `victim` to write while `args` runs over it: the run stops with one line naming the
/// file and its flag, status 2, no result, and the file untouched.
fn stopped_when_written(args: &[&str], victim: &str, flag: &str) {
    let path = std::fs::canonicalize(victim).unwrap();
    let before = std::fs::read(&path).unwrap();
    let child = spawn(args);
    let started = Instant::now();
    while !maps(child.id(), &path) {
        assert!(started.elapsed() < Duration::from_secs(30), "the input was never mapped");
        std::thread::sleep(Duration::from_millis(2));
    }
    // a writer that does not wait: refused while the lease holds, which breaks it
    let open = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&path);
    assert_eq!(open.map_err(|e| e.raw_os_error()).err(), Some(Some(libc::EWOULDBLOCK)), "the input was not leased");
    let run = finish_within(child, Duration::from_secs(60), "a run after its input was opened to write");
    assert_eq!(run.code, 2, "status {}: {}", run.code, run.stderr);
    let name = path.file_name().unwrap().to_string_lossy();
    let line = format!("xent: {name}: {flag} is being written by another process; stopped");
    assert_eq!(run.stderr.trim(), line);
    assert!(run.stdout.is_empty(), "a result after the input changed: {}", run.stdout);
    assert_eq!(std::fs::read(&path).unwrap(), before, "the input changed");
}

#[test]
fn an_input_opened_to_write_stops_the_run() {
    if !in_place() {
        return;
    }
    let f = Files::new();
    let (l, y) = generate(&f, "big", 200_000, 100, "f32", 4);
    let (q, _) = generate(&f, "big-q", 200_000, 100, "f32", 5);
    // chunks of 64 rows: seconds of work, so the open lands mid-run
    let ce = ["ce", "--logits", &l, "--labels", &y, "--device", "gpu", "--chunk-rows", "64", "--quiet"];
    stopped_when_written(&ce, &l, "--logits");
    // of two leased inputs, the one written is named
    let kl = ["kl", "--p-logits", &l, "--q-logits", &q, "--device", "gpu", "--chunk-rows", "64", "--quiet"];
    stopped_when_written(&kl, &q, "--q-logits");
}
