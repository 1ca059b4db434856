//! `xent bench` end to end: device timings over every pass of a kernel, split rows included.

use std::process::Output;

use assert_cmd::Command;

/// Runs `xent bench` as `command` sets it up; `None` where there is no adapter and none is
/// required (`XENT_REQUIRE_GPU` unset), so the test has nothing to check.
fn bench(command: &mut Command) -> Option<Output> {
    let out = command.output().unwrap();
    let no_adapter = String::from_utf8_lossy(&out.stderr).contains("no adapter");
    (!no_adapter || std::env::var("XENT_REQUIRE_GPU").is_ok()).then_some(out)
}

/// Under the GPU row layout, rows this long and this few are split into parts and merged
/// (plan::row_parts): softmax records three passes, and only the first and last carry
/// timestamp writes. Every operation must time, and each line is one JSON object.
#[test]
fn bench_times_split_rows() {
    let Some(out) = bench(
        Command::new(env!("CARGO_BIN_EXE_xent"))
            .args(["bench", "--device", "gpu", "--json", "--iters", "1", "--shapes", "8x16384", "--dtypes", "f32"])
            .env("XENT_ROW_LAYOUT", "gpu"),
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ops: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("op").and_then(|o| o.as_str()).map(str::to_string))
        .collect();
    for op in ["lse", "softmax", "ce", "distill"] {
        assert!(ops.iter().any(|o| o == op), "{op} missing from {stdout}");
    }
}

/// A reader that stops early (`xent bench | head -1`) is a failed write, not a panic: the
/// run ends with one line on stderr.
#[test]
fn bench_into_a_closed_pipe_is_one_line_not_a_panic() {
    let bin = env!("CARGO_BIN_EXE_xent");
    let script =
        format!("'{bin}' bench --device gpu --iters 1 --shapes 64x64,64x128 --dtypes f32 | head -n 1 > /dev/null");
    let Some(out) = bench(Command::new("sh").args(["-c", &script]).env("RUST_BACKTRACE", "1")) else { return };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{stderr}");
    assert!(stderr.lines().count() <= 1, "{stderr}");
}

/// `--e2e` times `ce` from a file against its kernel alone at every shape, removes the files
/// it wrote, and `--shapes lm` names today's vocabularies; `--z-loss` adds `ce+z-loss` rows.
#[test]
fn bench_end_to_end_and_the_lm_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(out) = bench(
        Command::new(env!("CARGO_BIN_EXE_xent"))
            .args([
                "bench", "--device", "gpu", "--json", "--iters", "1", "--shapes", "300x77", "--dtypes", "f32,f16",
                "--ops", "ce",
            ])
            .args(["--e2e", "--z-loss", "1e-4"])
            .env("TMPDIR", tmp.path()),
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let e2e: Vec<_> = lines.iter().filter(|v| v["mode"] == "e2e").collect();
    assert_eq!(e2e.len(), 2, "one end-to-end line per dtype: {lines:?}");
    for v in e2e {
        assert_eq!((v["rows"].as_u64(), v["cols"].as_u64()), (Some(300), Some(77)), "{v}");
        let data = 300 * 77 * if v["dtype"] == "f16" { 2 } else { 4 } + 300 * 8;
        let bytes = v["file_bytes"].as_u64().unwrap();
        assert!(bytes > data && bytes < data + 1024, "{v}: two .npy headers over {data} bytes of data");
        let (seconds, kernel) = (v["seconds"].as_f64().unwrap(), v["kernel_seconds"].as_f64().unwrap());
        assert!(seconds > 0.0 && kernel > 0.0, "{v}");
        assert!((v["e2e_ratio"].as_f64().unwrap() - kernel / seconds).abs() < 1e-9, "{v}");
        // against the kernel the command runs (with the report) and plain `ce`
        let plain = v["plain_kernel_seconds"].as_f64().unwrap();
        assert!((v["e2e_ratio_plain"].as_f64().unwrap() - plain / seconds).abs() < 1e-9, "{v}");
        assert!(v["setup_seconds"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["reads_host_memory"].is_boolean(), "{v}");
    }
    assert!(lines.iter().any(|v| v["op"] == "ce+z-loss"), "{lines:?}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "the end-to-end files were left behind");
    // the preset parses (and an unknown name is one clear line)
    let bad = Command::new(env!("CARGO_BIN_EXE_xent")).args(["bench", "--shapes", "llm"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--shapes"), "{bad:?}");
}

/// `bench --linear`: the fused linear cross-entropy against the unfused path, in every
/// dtype the products read, a JSON line each with both times, the memory each took beyond
/// its inputs and outputs, and the two paths' outputs the same bits.
#[test]
fn bench_linear_against_the_unfused_path() {
    let Some(out) = bench(Command::new(env!("CARGO_BIN_EXE_xent")).args([
        "bench",
        "--json",
        "--iters",
        "1",
        "--linear",
        "37x9x300",
        "--dtypes",
        "f32,f16,bf16",
    ])) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, dtype) in lines.iter().zip(["f32", "f16", "bf16"]) {
        assert_eq!(line["op"], "linear-ce");
        assert_eq!(line["dtype"], dtype);
        assert_eq!(line["bit_identical"], true, "{line}");
        assert!(line["seconds"].as_f64().is_some_and(|s| s > 0.0) && line["unfused_seconds"].as_f64().is_some());
        let (fused, unfused) = (line["extra_bytes"].as_u64().unwrap(), line["unfused_extra_bytes"].as_u64().unwrap());
        assert!(fused <= line["logits_budget"].as_u64().unwrap() && unfused >= 4 * 37 * 300, "{line}");
    }
    // bf16 is the products' only: the row grid refuses it
    let refused = Command::new(env!("CARGO_BIN_EXE_xent")).args(["bench", "--dtypes", "bf16"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

/// `bench --device cpu`: the engine over every operation, a JSON line each with its time,
/// its ratio to a copy of the same bytes and to the reference, the instruction set and the
/// threads; no adapter needed.
#[test]
fn bench_on_the_cpu_engine() {
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["bench", "--device", "cpu", "--json", "--iters", "1", "--shapes", "64x300", "--dtypes", "f32,f16"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.len(), 2 * xent::Op::ALL.len(), "{stdout}");
    for line in &lines {
        assert_eq!(line["device"], "cpu", "{line}");
        assert!(line["seconds"].as_f64().is_some_and(|s| s > 0.0), "{line}");
        for key in ["copy_ratio", "cpu_ratio", "gbps", "copy_gbps"] {
            assert!(line[key].as_f64().is_some_and(|v| v > 0.0 && v.is_finite()), "{key}: {line}");
        }
        assert!(line["threads"].as_u64().is_some_and(|t| t >= 1) && line["simd"].is_string(), "{line}");
    }
}

/// `--sweep` times an operation under every candidate layout around the rule's (the rule's
/// first, none twice), each line naming its layout and the copy's, then one line naming the
/// fastest; `--no-reference` leaves the reference's ratio out; a pinned `XENT_LAYOUT` is the
/// layout a plain line reports, and one that is no layout is exit 2 naming it.
#[test]
fn bench_sweeps_the_layouts() {
    let Some(out) = bench(Command::new(env!("CARGO_BIN_EXE_xent")).args([
        "bench",
        "--device",
        "gpu",
        "--sweep",
        "--no-reference",
        "--iters",
        "1",
        "--shapes",
        "64x1000",
        "--dtypes",
        "f32",
        "--ops",
        "lse",
    ])) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (timed, best): (Vec<_>, Vec<_>) = lines.iter().partition(|v| v.get("sweep").is_none());
    assert!(timed.len() >= 3, "several candidates: {lines:?}");
    assert_eq!(timed[0]["rule"], true);
    assert!(timed[1..].iter().all(|v| v["rule"] == false));
    let mut layouts: Vec<&str> = timed.iter().map(|v| v["layout"].as_str().unwrap()).collect();
    assert!(
        timed
            .iter()
            .all(|v| v["cpu_ratio"].is_null() && v["copy_layout"].is_string() && v["seconds"].as_f64() > Some(0.0))
    );
    layouts.sort_unstable();
    layouts.dedup();
    assert_eq!(layouts.len(), timed.len(), "no layout twice: {lines:?}");
    assert_eq!(best.len(), 1);
    let fastest = timed.iter().map(|v| v["seconds"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(best[0]["seconds"].as_f64(), Some(fastest));
    assert!(best[0]["rule_over_best"].as_f64().unwrap() >= 1.0);
    // a pinned layout is what a plain line reports
    let Some(out) = bench(
        Command::new(env!("CARGO_BIN_EXE_xent"))
            .args(["bench", "--device", "gpu", "--json", "--iters", "1", "--shapes", "64x1000", "--dtypes", "f32"])
            .args(["--ops", "lse", "--no-reference"])
            .env("XENT_LAYOUT", "16x2"),
    ) else {
        return;
    };
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["layout"], "16x2", "{line}");
    let out = Command::new(env!("CARGO_BIN_EXE_xent")).args(["info"]).env("XENT_LAYOUT", "16x3").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("XENT_LAYOUT"));
}

/// With the tuner on, `--sweep` asks it for its choice first (as `xent tune` makes it, kept
/// in its cache) and the best line says how that choice compares with every candidate,
/// timed in the same rounds; with it off, the line has no such fields.
#[test]
fn bench_sweep_names_the_tuners_choice() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.json");
    let sweep = |tune: &str| {
        bench(
            Command::new(env!("CARGO_BIN_EXE_xent"))
                .args(["bench", "--device", "gpu", "--sweep", "--no-reference", "--iters", "1"])
                .args(["--shapes", "64x1000", "--dtypes", "f32", "--ops", "ce"])
                .env("XENT_TUNE", tune)
                .env("XENT_TUNE_CACHE", &cache),
        )
    };
    let Some(out) = sweep("on") else { return };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (timed, best): (Vec<_>, Vec<_>) = lines.iter().partition(|v| v.get("sweep").is_none());
    let tuned = best[0]["tuned_layout"].as_str().unwrap_or_else(|| panic!("no tuned_layout: {}", best[0]));
    let line = timed.iter().find(|v| v["layout"] == tuned).unwrap_or_else(|| panic!("{tuned} not timed: {lines:?}"));
    let over = best[0]["tuned_over_best"].as_f64().unwrap();
    assert_eq!(over, line["seconds"].as_f64().unwrap() / best[0]["seconds"].as_f64().unwrap());
    assert!(over >= 1.0, "{}", best[0]);
    assert!(std::fs::read_to_string(&cache).unwrap().contains(tuned), "the choice is kept");
    let out = sweep("off").unwrap();
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(last.get("tuned_layout").is_none() && last["sweep"] == "best", "{last}");
}
