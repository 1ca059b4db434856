//! The command line at the edges of scale: row counts past what one binding of per-row
//! words holds, a row wider than any binding, and peak memory that stays flat as the
//! row count grows. Files are sparse (a header, `set_len`, then scattered random rows),
//! and the expected values come from the f64 reference on the nonzero rows plus the
//! known value of an all-zero row.

#![cfg(target_os = "linux")]

mod cli_support;
mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use half::f16;
use rand::Rng;
use serde_json::Value;
use tempfile::TempDir;
use xent::npy::NpyFile;
use xent::{Batch, LogBase, Loss, Op};

/// Cross-entropy against labels with its default options.
const CE: Op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };

/// A sparse `.npy` file of `shape` whose elements are zero except `writes`
/// (element index, little-endian bytes of consecutive elements).
fn sparse(path: &Path, descr: &str, elem: u64, shape: &[u64], writes: &[(u64, Vec<u8>)]) {
    let head = cli_support::npy_header(descr, shape);
    let mut f = File::create(path).unwrap();
    f.write_all(&head).unwrap();
    f.set_len(head.len() as u64 + elem * shape.iter().product::<u64>()).unwrap();
    for (at, bytes) in writes {
        f.seek(SeekFrom::Start(head.len() as u64 + at * elem)).unwrap();
        f.write_all(bytes).unwrap();
    }
}

/// A finished run of the binary: exit status, output and its own peak RSS.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    peak_rss_kib: i64,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit {}: {}", self.code, self.stderr);
        // (where there is no adapter at all, a run on the engine ends with one note)
        let note = "xent: note: no GPU adapter found; running on the CPU engine\n";
        assert!(self.stderr.is_empty() || self.stderr == note, "stderr not empty: {}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap()
    }
}

/// Runs `xent args`, sampling the child's own peak RSS (`VmHWM`) until it exits. (Its
/// `ru_maxrss` would not do: a child spawned from this process inherits the test
/// process's own high-water mark at `exec`, and other tests here hold large arrays.)
fn xent(args: &[&str]) -> Run {
    xent_with(args, &[])
}

/// [`xent`] with variables `env` set.
fn xent_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xent"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    // (spawn returns after exec, so this is the new program's memory; a zombie has no VmHWM)
    let watcher = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<i64>().ok()
        }) {
            peak = kib;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak
    });
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).unwrap();
    let stderr = reader.join().unwrap();
    let peak_rss_kib = watcher.join().unwrap();
    let status = child.wait().unwrap();
    Run { code: status.code().unwrap_or(-1), stdout, stderr, peak_rss_kib }
}

/// The GPU device flag: `gpu` where a GPU is required, else `auto`.
fn gpu() -> &'static str {
    if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") { "gpu" } else { "auto" }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn path(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rows that hold random values: the first and last, both sides of block and 2^24
/// edges, and scattered ones.
fn special_rows(rng: &mut impl Rng, rows: u64) -> Vec<u64> {
    let mut v = vec![0, 1, 511, 512, 513, 1 << 20, (1 << 24) - 1, 1 << 24, rows - 2, rows - 1];
    v.extend((0..300).map(|_| rng.random_range(0..rows)));
    v.retain(|&r| r < rows);
    v.sort_unstable();
    v.dedup();
    v
}

/// `ce --labels` and `lse --out` on the GPU over 2^24 + 1 rows of two `<f2` columns:
/// the per-row words of that many rows are more than one binding holds.
#[test]
fn rows_past_2_pow_24_on_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng(24);
    let (rows, cols) = ((1u64 << 24) + 1, 2u64);
    let special = special_rows(&mut rng, rows);
    let logits: Vec<f16> = (0..special.len() * 2).map(|_| f16::from_f32(rng.random_range(-8.0f32..8.0))).collect();
    let labels: Vec<u8> = special.iter().map(|_| rng.random_range(0..cols as u8)).collect();
    let (l, y, out) = (path(&dir, "l.npy"), path(&dir, "y.npy"), path(&dir, "lse.npy"));
    let writes: Vec<(u64, Vec<u8>)> = special
        .iter()
        .enumerate()
        .map(|(i, &r)| (r * cols, logits[2 * i..2 * i + 2].iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    sparse(&l, "<f2", 2, &[rows, cols], &writes);
    let label_writes: Vec<(u64, Vec<u8>)> = special.iter().zip(&labels).map(|(&r, &y)| (r, vec![y])).collect();
    sparse(&y, "|u1", 1, &[rows], &label_writes);

    // the reference on the random rows; an all-zero row with label 0 is ln 2, argmax 0
    let batch = Batch::new(&logits[..], special.len(), cols as usize).unwrap();
    let y64: Vec<i64> = labels.iter().map(|&v| i64::from(v)).collect();
    let ce = Loss::new(CE, batch).with_labels(&y64[..]);
    let want_ce = xent::reference::compute(&ce, LogBase::Nats).unwrap();
    let want_lse = xent::reference::compute(&Loss::new(Op::LogSumExp, batch), LogBase::Nats).unwrap();
    let zero_row = Loss::new(CE, Batch::new(&[0.0f32; 2][..], 1, 2).unwrap()).with_labels(&[0i64][..]);
    let zero = xent::reference::compute(&zero_row, LogBase::Nats).unwrap();
    let others = (rows - special.len() as u64) as f64;
    let ln2 = std::f64::consts::LN_2;

    let line = xent(&["ce", "--logits", s(&l), "--labels", s(&y), "--device", gpu(), "--reduction", "sum"]).json();
    let want = others * ln2 + want_ce.sum();
    assert!((num(&line["value"]) - want).abs() <= 1e-5 * want, "ce sum {} want {want}", line["value"]);
    let hits = want_ce.argmax.as_ref().unwrap().iter().zip(&y64).filter(|&(&a, &y)| i64::from(a) == y).count();
    let zero_hit = zero.argmax.as_ref().unwrap()[0] == 0;
    let accuracy = (hits as f64 + if zero_hit { others } else { 0.0 }) / rows as f64;
    assert!((num(&line["accuracy"]) - accuracy).abs() < 1e-12, "accuracy {} want {accuracy}", line["accuracy"]);

    let line = xent(&["lse", "--logits", s(&l), "--device", gpu(), "--reduction", "sum", "--out", s(&out)]).json();
    let want = others * ln2 + want_lse.sum();
    assert!((num(&line["value"]) - want).abs() <= 1e-5 * want, "lse sum {} want {want}", line["value"]);
    let f = NpyFile::open(&out).unwrap();
    assert_eq!(f.shape(), &[rows]);
    let mut values = Vec::new();
    f.read_f32(0, rows as usize, &mut values).unwrap();
    let mut next = special.iter().zip(&want_lse.values).peekable();
    for (r, &v) in values.iter().enumerate() {
        let want = match next.peek() {
            Some(&(&row, &w)) if row == r as u64 => {
                next.next();
                w
            }
            _ => ln2,
        };
        assert!((f64::from(v) - want).abs() <= 2e-5 * (1.0 + want.abs()), "row {r}: {v} want {want}");
    }
}

/// The most bytes the best adapter binds at once, and its name, from `xent info --json`.
fn binding_limit() -> (u64, String) {
    let run = xent(&["info", "--json"]);
    let line = run.json();
    let name = line["auto"]["adapter"].as_str().unwrap().split(" (").next().unwrap().to_string();
    (line["auto"]["max_storage_buffer_binding_size"].as_u64().unwrap(), name)
}

/// One `<f4` row just wider than the adapter binds: valid input, so `auto` (on that adapter,
/// named by `WGPU_ADAPTER_NAME` where it is a software one) runs it on the CPU engine with a
/// one-line note, and `--device gpu`, which demands the GPU, exits 1 saying why.
#[test]
fn a_row_wider_than_a_binding() {
    let (limit, adapter) = binding_limit();
    if limit > 1 << 30 {
        eprintln!("skipped: the adapter binds {limit} bytes; a wider row is too big a file for a test");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = common::rng(7);
    let cols = limit / 4 + 8;
    let row = common::logits(&mut rng, cols as usize, 6.0);
    let label = rng.random_range(0..cols as i64);
    let (l, y) = (path(&dir, "wide.npy"), path(&dir, "y.npy"));
    let mut bytes = cli_support::npy_header("<f4", &[1, cols]);
    bytes.extend(row.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(&l, &bytes).unwrap();
    drop(bytes);
    let mut labels = cli_support::npy_header("<i8", &[1]);
    labels.extend(label.to_le_bytes());
    std::fs::write(&y, &labels).unwrap();

    let batch = Batch::new(&row[..], 1, cols as usize).unwrap();
    let want_lse = xent::reference::compute(&Loss::new(Op::LogSumExp, batch), LogBase::Nats).unwrap().sum();
    let ce = Loss::new(CE, batch).with_labels(std::slice::from_ref(&label));
    let want_ce = xent::reference::compute(&ce, LogBase::Nats).unwrap().sum();

    for (args, want) in
        [(vec!["lse", "--logits", s(&l)], want_lse), (vec!["ce", "--logits", s(&l), "--labels", s(&y)], want_ce)]
    {
        let run = xent_with(&[&args[..], &["--device", "auto"]].concat(), &[("WGPU_ADAPTER_NAME", &adapter)]);
        assert_eq!(run.code, 0, "{}: exit {}: {}", args[0], run.code, run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}: one note on stderr: {:?}", args[0], run.stderr);
        assert!(run.stderr.starts_with("xent: note: ") && run.stderr.contains(&cols.to_string()), "{}", run.stderr);
        let line: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(line["device"], "cpu", "{}", args[0]);
        // the engine's f32 against the f64 reference
        assert!((num(&line["value"]) - want).abs() <= 2e-5 * want.abs(), "{}: {} want {want}", args[0], line["value"]);

        let run = xent(&[&args[..], &["--device", "gpu"]].concat());
        assert_eq!(run.code, 1, "{}: --device gpu: exit {}: {}", args[0], run.code, run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
        assert!(run.stderr.contains(&cols.to_string()) && run.stderr.contains("--device"), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

/// A sparse `[rows]` `<f4` file with random values in scattered rows.
fn narrow(dir: &TempDir, rows: u64, seed: u64) -> PathBuf {
    let mut rng = common::rng(seed);
    let p = path(dir, &format!("narrow-{rows}.npy"));
    let writes: Vec<(u64, Vec<u8>)> = special_rows(&mut rng, rows)
        .into_iter()
        .map(|r| (r, rng.random_range(-5.0f32..5.0).to_le_bytes().to_vec()))
        .collect();
    sparse(&p, "<f4", 4, &[rows], &writes);
    p
}

/// Peak RSS in MiB of `lse --out` on `device` over 2^22 and 2^24 rows of one column
/// (each run many chunks of 32 MiB).
fn peaks(device: &str) -> [i64; 2] {
    let dir = tempfile::tempdir().unwrap();
    [(1u64 << 22, 1), (1 << 24, 2)].map(|(rows, seed)| {
        let (f, out) = (narrow(&dir, rows, seed), path(&dir, "out.npy"));
        let run = xent(&["lse", "--logits", s(&f), "--out", s(&out), "--device", device]);
        run.json();
        eprintln!("{device}: peak RSS {} MiB over {rows} rows", run.peak_rss_kib / 1024);
        run.peak_rss_kib / 1024
    })
}

/// Peak memory on the GPU path follows the chunk size, not the file: four times the
/// rows peak within a chunk of the same RSS.
#[test]
fn gpu_peak_memory_does_not_grow_with_rows() {
    let [small, big] = peaks(gpu());
    assert!(big - small <= 32, "peak RSS grew from {small} MiB to {big} MiB with four times the rows");
}

/// The CPU path likewise, and it holds a few chunks in all, not a dozen.
#[test]
fn cpu_peak_memory_does_not_grow_with_rows() {
    let [small, big] = peaks("cpu");
    assert!(big - small <= 32, "peak RSS grew from {small} MiB to {big} MiB with four times the rows");
    assert!(big <= 128, "peak RSS {big} MiB over 2^24 rows of one column");
}

/// Peak RSS of `ce` with its evaluation report (per-class table included) over 2^22 and
/// 2^24 rows of four columns on the GPU: the report adds up each piece's rows as they come
/// back (no labels read again) and its per-class counts are as many as the classes, so
/// memory stays flat in rows.
#[test]
fn the_report_keeps_memory_flat_in_rows() {
    let dir = tempfile::tempdir().unwrap();
    let [small, big] = [(1u64 << 22, 3), (1 << 24, 4)].map(|(rows, seed)| {
        let mut rng = common::rng(seed);
        let (l, y) = (path(&dir, &format!("l-{rows}.npy")), path(&dir, &format!("y-{rows}.npy")));
        let logits: Vec<(u64, Vec<u8>)> = special_rows(&mut rng, rows)
            .into_iter()
            .map(|r| (4 * r + 1, rng.random_range(-5.0f32..5.0).to_le_bytes().to_vec()))
            .collect();
        sparse(&l, "<f4", 4, &[rows, 4], &logits);
        sparse(&y, "<i8", 8, &[rows], &[(rows - 1, 3i64.to_le_bytes().to_vec())]);
        let table = path(&dir, "classes.csv");
        let run = xent(&["ce", "--logits", s(&l), "--labels", s(&y), "--per-class", s(&table), "--device", gpu()]);
        let line = run.json();
        assert_eq!(line["counted"].as_u64(), Some(rows), "{line}");
        eprintln!("ce with the report: peak RSS {} MiB over {rows} rows", run.peak_rss_kib / 1024);
        run.peak_rss_kib / 1024
    });
    assert!(big - small <= 32, "peak RSS grew from {small} MiB to {big} MiB with four times the rows");
}

/// Virtual memory mapped by this process, in bytes.
fn mapped_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The child of [`host_memory_running_out_is_an_error`]: `compute` keeping the values of
/// 2^26 rows (256 MiB) under an address-space limit of what is mapped plus `XENT_AS_ROOM`.
#[allow(unsafe_code)]
fn host_memory_child(room: u64) {
    let ctx = xent::Context::new_blocking().unwrap();
    let rows = 1usize << 26;
    let mut rng = common::rng(26);
    let logits: Vec<f16> = (0..rows).map(|_| f16::from_f32(rng.random_range(-4.0f32..4.0))).collect();
    let loss = Loss::new(Op::LogSumExp, Batch::new(&logits[..], rows, 1).unwrap());
    // the driver's threads and the pipelines first, so the limit falls on the job's buffers
    let warm = Loss::new(Op::LogSumExp, Batch::new(&logits[..4096], 4096, 1).unwrap());
    ctx.compute(&warm, &xent::RunOptions { keep_values: true, ..Default::default() }).unwrap();
    let limit = mapped_bytes() + room;
    let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    // SAFETY: a plain system call on a valid struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rlimit) }, 0);
    match ctx.compute(&loss, &xent::RunOptions { keep_values: true, ..Default::default() }) {
        Ok(out) => {
            let values = out.values.unwrap();
            assert!(values.iter().zip(&logits).all(|(&v, &x)| v == f32::from(x)), "wrong values");
            println!("child: ok");
        }
        Err(e) => println!("child: error: {e}"),
    }
}

/// Host memory running out is an error, never an abort: the library's large host buffers
/// (uploads, readbacks, the kept values) are allocated fallibly. A child process runs
/// under address-space limits from too small for the device buffers to enough for all;
/// each either succeeds with the right values or returns an error.
#[test]
fn host_memory_running_out_is_an_error() {
    if let Some(room) = std::env::var("XENT_AS_ROOM").ok().and_then(|v| v.parse().ok()) {
        return host_memory_child(room);
    }
    for room_mib in [64u64, 320, 704, 960] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "host_memory_running_out_is_an_error", "--nocapture", "--test-threads=1"])
            .env("XENT_AS_ROOM", (room_mib << 20).to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // (the line may follow the harness's "test ... " on the same line)
        let said = stdout.find("child: ").map_or("", |i| stdout[i..].lines().next().unwrap_or(""));
        eprintln!("room {room_mib} MiB: {:?} {said}", out.status);
        assert!(
            out.status.success() && !said.is_empty(),
            "room {room_mib} MiB: {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
