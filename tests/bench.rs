//! `xent bench` end to end: device timings over every pass of a kernel, split rows included.

use assert_cmd::Command;

/// Under the GPU row layout, rows this long and this few are split into parts and merged
/// (plan::row_parts): softmax records three passes, and only the first and last carry
/// timestamp writes. Every operation must time, and each line is one JSON object.
#[test]
fn bench_times_split_rows() {
    let out = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(["bench", "--json", "--iters", "1", "--shapes", "8x16384", "--dtypes", "f32"])
        .env("XENT_ROW_LAYOUT", "gpu")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no adapter") && std::env::var("XENT_REQUIRE_GPU").is_err() {
        return;
    }
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
    let script = format!("'{bin}' bench --iters 1 --shapes 64x64,64x128 --dtypes f32 | head -n 1 > /dev/null");
    let out = Command::new("sh").args(["-c", &script]).env("RUST_BACKTRACE", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no adapter") && std::env::var("XENT_REQUIRE_GPU").is_err() {
        return;
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{stderr}");
    assert!(stderr.lines().count() <= 1, "{stderr}");
}
