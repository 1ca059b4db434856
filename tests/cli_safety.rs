//! `--out` and the other files `xent` writes never cost the user a byte: an output that names
//! an input, a special file or a directory is handled before any work, a signal or a failed
//! allocation leaves no temporary file, and a result that cannot reach stdout is a failure.

#![cfg(unix)]

mod cli_support;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use cli_support::{Files, finish_within, labels, probs, spawn, uniform, xent, xent_in, xent_sh};
use xent::npy::NpyHeader;

/// Every file of the directory with its bytes.
fn contents(f: &Files) -> Vec<(String, Vec<u8>)> {
    f.listing().into_iter().map(|n| (n.clone(), std::fs::read(f.path(&n)).unwrap_or_default())).collect()
}

/// The row-wise log-sum-exp in f64.
fn lse_rows(v: &[f32], cols: usize) -> Vec<f64> {
    v.chunks(cols)
        .map(|r| {
            let m = r.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            m + r.iter().map(|&x| (f64::from(x) - m).exp()).sum::<f64>().ln()
        })
        .collect()
}

#[test]
fn out_naming_an_input_is_refused_before_reading() {
    let f = Files::new();
    let (rows, cols) = (6, 5);
    let l = f.f32("L.npy", &[rows, cols], &uniform(1, rows * cols, -4.0, 4.0));
    let o = f.f32("O.npy", &[rows, cols], &uniform(2, rows * cols, -4.0, 4.0));
    let p = f.f32("P.npy", &[rows, cols], &probs(3, rows, cols));
    let q = f.f32("Q.npy", &[rows, cols], &probs(4, rows, cols));
    let t = f.f32("T.npy", &[rows, cols], &uniform(5, rows * cols, 0.0, 1.0));
    let w = f.f32("W.npy", &[cols], &uniform(6, cols, 0.5, 2.0));
    let y = f.i64("Y.npy", &labels(7, rows, cols));
    let garbage = f.raw("garbage.npy", b"not an array at all");
    std::os::unix::fs::symlink(&q, f.path("Qlink.npy")).unwrap();
    std::fs::hard_link(&l, f.path("Lhard.npy")).unwrap();
    let (qlink, lhard) = (f.arg("Qlink.npy"), f.arg("Lhard.npy"));
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["ce", "--logits", &l, "--labels", &y], &l, "--logits"),
        (vec!["ce", "--logits", &l, "--labels", &y], &y, "--labels"),
        // refused before the broken labels are read
        (vec!["ce", "--logits", &l, "--labels", &garbage], &l, "--logits"),
        (vec!["softmax", "--logits", "L.npy"], "./L.npy", "--logits"),
        (vec!["softmax", "--logits", &l, "--log"], &lhard, "--logits"),
        (vec!["lse", "--logits", "./L.npy"], &l, "--logits"),
        (vec!["kl", "--p", &p, "--q", &q], &qlink, "--q"),
        (vec!["kl", "--p-logits", &l, "--q-logits", &o], &l, "--p-logits"),
        (vec!["kl", "--p-logits", &l, "--q-logits", &o], &o, "--q-logits"),
        (vec!["ce", "--logits", &l, "--target-probs", &p, "--class-weights", &w], &w, "--class-weights"),
        (vec!["ce", "--logits", &l, "--target-probs", &p], &p, "--target-probs"),
        (vec!["entropy", "--probs", &p], &p, "--probs"),
        (vec!["entropy", "--logits", &l], &lhard, "--logits"),
        (vec!["bce", "--probs", &p, "--labels", &t], &t, "--labels"),
        (vec!["bce", "--logits", &l, "--labels", &t], &l, "--logits"),
        (vec!["gaussian-kl", "--mean", &o, "--logvar", &l], &l, "--logvar"),
        (vec!["gaussian-kl", "--mean", &o, "--logvar", &l], &o, "--mean"),
        (vec!["distill", "--student", &l, "--teacher", &o, "--labels", &y], &o, "--teacher"),
        (vec!["distill", "--student", &l, "--teacher", &o, "--labels", &y], &lhard, "--student"),
        (vec!["distill", "--student", &l, "--teacher", &o, "--labels", &y], &y, "--labels"),
    ];
    let before = contents(&f);
    for (args, out, flag) in &cases {
        let mut a = args.clone();
        a.extend(["--out", out, "--device", "cpu"]);
        let run = xent_in(f.dir.path(), &a);
        run.bad_input(&["--out", flag]);
        assert!(contents(&f) == before, "{a:?} changed a file");
    }
    // --entropy-out is held to the same rules, and to being another file than --out
    let ce: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["ce", "--logits", &l, "--labels", &y], &lhard, "--logits"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--entropy"], &y, "--labels"),
        (vec!["ce", "--logits", &l, "--target-probs", &p], &p, "--target-probs"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--out", "h.npy"], "./h.npy", "--out"),
    ];
    for (args, out, flag) in &ce {
        let mut a = args.clone();
        a.extend(["--entropy-out", out]);
        let run = xent_in(f.dir.path(), &a);
        run.bad_input(&["--entropy-out", flag]);
        assert!(contents(&f) == before, "{a:?} changed a file");
    }
    let dir = xent_in(f.dir.path(), &["ce", "--logits", &l, "--labels", &y, "--entropy-out", "."]);
    dir.bad_input(&["--entropy-out", "directory"]);
}

#[test]
#[allow(unsafe_code)]
fn out_naming_a_fifo_is_written_in_place() {
    let f = Files::new();
    let (rows, cols) = (9, 7);
    let v = uniform(8, rows * cols, -5.0, 5.0);
    let l = f.f32("L.npy", &[rows, cols], &v);
    let fifo = f.path("fifo.npy");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = fifo.clone();
    std::thread::spawn(move || tx.send(std::fs::read(reader)));
    let run = xent(&["lse", "--logits", &l, "--reduction", "none", "--device", "cpu", "--out", &f.arg("fifo.npy")]);
    run.json();
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "--out replaced the FIFO by {kind:?}");
    let bytes = rx.recv_timeout(Duration::from_secs(20)).expect("nothing came through the FIFO").unwrap();
    let h = NpyHeader::parse(&bytes).unwrap();
    assert_eq!(h.shape, [rows as u64]);
    let got: Vec<f32> =
        bytes[h.data_offset as usize..].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let want = lse_rows(&v, cols);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
    }
    assert_eq!(f.listing(), ["L.npy", "fifo.npy"]);
}

/// Through a link to `/dev/null`, so that a regression replaces the link, not the machine's
/// `/dev/null`.
#[test]
fn out_naming_a_device_writes_to_the_device() {
    let f = Files::new();
    let l = f.f32("L.npy", &[4, 3], &uniform(9, 12, -2.0, 2.0));
    std::os::unix::fs::symlink("/dev/null", f.path("sink.npy")).unwrap();
    for args in [vec!["softmax", "--logits", &l], vec!["lse", "--logits", &l]] {
        let mut a = args.clone();
        a.extend(["--out", "sink.npy", "--device", "cpu"]);
        xent_in(f.dir.path(), &a).json();
        let link = std::fs::symlink_metadata(f.path("sink.npy")).unwrap();
        assert!(link.file_type().is_symlink(), "{a:?} replaced the link to /dev/null");
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        assert_eq!(f.listing(), ["L.npy", "sink.npy"]);
    }
}

#[test]
fn out_naming_a_directory_fails_before_any_work() {
    let f = Files::new();
    let (rows, cols) = (8, 4);
    let l = f.f32("L.npy", &[rows, cols], &uniform(10, rows * cols, -3.0, 3.0));
    let mut y = labels(11, rows, cols);
    y[6] = 99; // a bad label: the run would fail there, after reading
    let y = f.i64("Y.npy", &y);
    std::fs::create_dir(f.path("results")).unwrap();
    for device in cli_support::devices() {
        for args in [vec!["ce", "--logits", &l, "--labels", &y], vec!["softmax", "--logits", &l]] {
            let mut a = args.clone();
            a.extend(["--out", "results", "--device", device]);
            let run = xent_in(f.dir.path(), &a);
            run.bad_input(&["--out", "results", "directory"]);
            assert_eq!(std::fs::read_dir(f.path("results")).unwrap().count(), 0);
            assert_eq!(f.listing(), ["L.npy", "Y.npy", "results"]);
        }
    }
}

/// Each descriptor of process `pid` that names a file in `dir` other than `input`: the
/// output, named or unnamed (`#123 (deleted)`).
#[cfg(target_os = "linux")]
fn output_open(pid: u32, dir: &Path, input: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|target| target.starts_with(dir) && target.file_name().is_some_and(|n| n != input))
}

#[cfg(target_os = "linux")]
#[test]
#[allow(unsafe_code)]
fn a_signal_during_softmax_out_leaves_no_temporary_file() {
    let f = Files::new();
    // one row a chunk: seconds of work, so the signal lands mid-run
    let (rows, cols) = (1 << 20, 4);
    let l = f.f32("L.npy", &[rows, cols], &uniform(12, rows * cols, -6.0, 6.0));
    let out = f.raw("S.npy", b"the previous result");
    let dir = f.dir.path().canonicalize().unwrap();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let args = ["softmax", "--logits", &l, "--out", &out, "--device", "cpu", "--chunk-rows", "1", "--quiet"];
        let child = spawn(&args);
        let pid = child.id();
        let started = std::time::Instant::now();
        while !output_open(pid, &dir, "L.npy") {
            assert!(started.elapsed() < Duration::from_secs(30), "the output was never opened");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: a signal to our own child, which has not been waited for.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
        let run = finish_within(child, Duration::from_secs(30), "softmax after a signal");
        assert_ne!(run.code, 0, "signal {signal}: the run was not stopped: {}", run.stdout);
        assert_eq!(f.listing(), ["L.npy", "S.npy"], "signal {signal} left a file behind");
        assert_eq!(std::fs::read(&out).unwrap(), b"the previous result", "signal {signal}");
    }
}

/// `demo` without `--dir` and `bench --e2e` write their files in a temporary directory: a
/// signal that ends them (SIGINT, SIGTERM) removes it, as their normal end does.
#[test]
#[allow(unsafe_code)]
fn a_signal_during_demo_or_bench_e2e_leaves_no_temporary_directory() {
    let runs: [&[&str]; 2] = [
        &["demo", "--rows", "100000", "--cols", "1000"],
        &[
            "bench",
            "--device",
            "gpu",
            "--shapes",
            "60000x1000",
            "--dtypes",
            "f32",
            "--ops",
            "lse",
            "--iters",
            "1",
            "--e2e",
        ],
    ];
    for args in runs {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let tmp = tempfile::tempdir().unwrap();
            let child = cli_support::command(args)
                .env("TMPDIR", tmp.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let pid = child.id();
            let started = std::time::Instant::now();
            // the temporary directory and its logits file exist: the run is writing them
            let writing = || {
                std::fs::read_dir(tmp.path())
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .any(|d| d.path().join("logits.npy").exists())
            };
            while !writing() {
                assert!(started.elapsed() < Duration::from_secs(120), "{args:?}: no temporary directory was made");
                std::thread::sleep(Duration::from_millis(5));
            }
            // SAFETY: a signal to our own child, which has not been waited for.
            assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
            let run = finish_within(child, Duration::from_secs(60), "a run after a signal");
            assert_ne!(run.code, 0, "{args:?}, signal {signal}: the run was not stopped: {}", run.stdout);
            let left: Vec<_> =
                std::fs::read_dir(tmp.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
            assert!(left.is_empty(), "{args:?}, signal {signal} left {left:?}");
        }
    }
}

#[test]
fn generate_refuses_one_path_for_logits_and_labels() {
    let f = Files::new();
    std::fs::create_dir(f.path("sub")).unwrap();
    f.raw("old.npy", b"keep me");
    std::fs::hard_link(f.path("old.npy"), f.path("twin.npy")).unwrap();
    let cases = [
        ("a.npy", "a.npy"),
        ("a.npy", "./a.npy"),
        ("sub/../a.npy", "a.npy"),
        ("sub/b.npy", "sub//b.npy"),
        ("old.npy", "twin.npy"),
    ];
    let before = contents(&f);
    for (logits, labels) in cases {
        let args = ["generate", "--rows", "3", "--cols", "4", "--logits", logits, "--labels", labels];
        let run = xent_in(f.dir.path(), &args);
        run.bad_input(&["--logits", "--labels"]);
        assert!(contents(&f) == before, "{args:?} changed the directory");
        assert_eq!(std::fs::read_dir(f.path("sub")).unwrap().count(), 0);
    }
    // distinct paths still work
    let run =
        xent_in(f.dir.path(), &["generate", "--rows", "3", "--cols", "4", "--logits", "a.npy", "--labels", "b.npy"]);
    assert_eq!(run.json()["rows"], 3);
}

/// A sparse file of one `<f4` row of `cols` columns: no disk, any size.
fn sparse_row(f: &Files, name: &str, cols: u64) -> String {
    let header = cli_support::npy_bytes("<f4", &[1, cols as usize], &[]);
    let path = f.raw(name, &header);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(header.len() as u64 + 4 * cols).unwrap();
    path
}

#[cfg(target_os = "linux")]
#[test]
fn allocation_failures_exit_1_and_leave_nothing() {
    let f = Files::new();
    let limit = "ulimit -v 1500000;";
    let (a, b) = (f.arg("a.npy"), f.arg("b.npy"));
    let run = xent_sh(limit, &["generate", "--rows", "1", "--cols", "1000000000", "--logits", &a, "--labels", &b], "");
    run.failed(1, &["allocate"]);
    assert!(f.listing().is_empty(), "left {:?}", f.listing());
    let wide = sparse_row(&f, "wide.npy", 1_000_000_000);
    let out = f.arg("out.npy");
    for args in [
        vec!["lse", "--logits", &wide, "--device", "cpu"],
        vec!["softmax", "--logits", &wide, "--device", "cpu", "--out", &out],
    ] {
        let run = xent_sh(limit, &args, "");
        run.failed(1, &["wide.npy", "allocate"]);
        assert_eq!(f.listing(), ["wide.npy"], "{args:?}");
    }
}

#[test]
fn a_result_that_cannot_reach_stdout_is_a_failure() {
    let f = Files::new();
    let l = f.f32("L.npy", &[3, 5], &uniform(13, 15, -1.0, 1.0));
    for args in [
        vec!["lse", "--logits", &l, "--device", "cpu"],
        vec!["generate", "--rows", "2", "--cols", "3", "--logits", "g.npy", "--labels", "h.npy"],
    ] {
        let closed = xent_sh(&format!("cd '{}';", f.dir.path().display()), &args, ">&-");
        closed.failed(1, &["stdout"]);
        if Path::new("/dev/full").exists() {
            xent_sh(&format!("cd '{}';", f.dir.path().display()), &args, ">/dev/full").failed(1, &["stdout"]);
        }
        let null = xent_sh(&format!("cd '{}';", f.dir.path().display()), &args, ">/dev/null");
        assert_eq!((null.code, null.stderr.as_str()), (0, ""), "{args:?}");
    }
}
