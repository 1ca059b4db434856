//! The command line at its edges, as a new user meets them: negative option values, no
//! command at all, inputs that are FIFOs, unreadable, looping links or cut while being read,
//! bad class weights, and bad probabilities named by file and row.

#![cfg(unix)]

mod cli_support;

use std::time::Duration;

use cli_support::{Files, devices, finish_within, labels, probs, spawn, uniform, xent};

#[test]
fn negative_option_values_reach_the_value_check() {
    let f = Files::new();
    let (rows, cols) = (4, 3);
    let l = f.f32("L.npy", &[rows, cols], &uniform(20, rows * cols, -2.0, 2.0));
    let y = f.i64("Y.npy", &labels(21, rows, cols));
    let out = f.arg("out.npy");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["softmax", "--logits", &l, "--out", &out, "--temperature", "-1"], "--temperature"),
        (vec!["ce", "--logits", &l, "--labels", &y, "--label-smoothing", "-0.1"], "--label-smoothing"),
        (vec!["distill", "--student", &l, "--teacher", &l, "--labels", &y, "--temperature", "-2"], "--temperature"),
        (vec!["distill", "--student", &l, "--teacher", &l, "--labels", &y, "--alpha", "-0.5"], "--alpha"),
        (vec!["generate", "--rows", "-1", "--cols", "3", "--logits", &out, "--labels", &out], "--rows"),
        (vec!["lse", "--logits", &l, "--chunk-rows", "-4"], "--chunk-rows"),
    ];
    for (args, flag) in cases {
        let run = xent(&args);
        run.bad_input(&[flag]);
        assert!(!run.stderr.contains("unexpected argument"), "{args:?}: {}", run.stderr);
        assert_eq!(f.listing(), ["L.npy", "Y.npy"]);
    }
}

#[test]
fn no_arguments_name_the_commands() {
    let run = xent(&[]);
    run.bad_input(&["command", "lse", "softmax", "ce", "kl", "entropy", "bce", "gaussian-kl", "distill", "generate"]);
}

#[test]
#[allow(unsafe_code)]
fn a_fifo_input_is_refused_without_waiting() {
    let f = Files::new();
    let fifo = f.path("pipe.npy");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let l = f.f32("L.npy", &[2, 3], &uniform(22, 6, -1.0, 1.0));
    for args in [
        vec!["lse", "--logits", fifo.to_str().unwrap()],
        vec!["ce", "--logits", &l, "--labels", fifo.to_str().unwrap()],
    ] {
        let run = finish_within(spawn(&args), Duration::from_secs(20), "a FIFO input");
        run.bad_input(&["pipe.npy"]);
    }
}

#[test]
#[allow(unsafe_code)]
fn unreadable_inputs_and_link_loops_are_bad_input() {
    let f = Files::new();
    std::os::unix::fs::symlink(f.path("b.npy"), f.path("a.npy")).unwrap();
    std::os::unix::fs::symlink(f.path("a.npy"), f.path("b.npy")).unwrap();
    xent(&["lse", "--logits", &f.arg("a.npy")]).bad_input(&["a.npy"]);
    f.raw("plain", b"x");
    xent(&["lse", "--logits", &format!("{}/x.npy", f.arg("plain"))]).bad_input(&["x.npy"]);

    let locked = f.f32("locked.npy", &[2, 2], &uniform(23, 4, -1.0, 1.0));
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let args = ["lse", "--logits", &locked, "--device", "cpu"];
    if std::fs::File::open(&locked).is_err() {
        xent(&args).bad_input(&["locked.npy", "ermission"]);
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped the permission case: mode 000 does not stop this user reading");
        return;
    }
    // root reads anything: run as nobody, through a directory nobody may enter
    use std::os::unix::process::CommandExt;
    std::fs::set_permissions(f.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = cli_support::command(&args).uid(65534).gid(65534).output().unwrap();
    let run = cli_support::Run::from(out);
    run.bad_input(&["locked.npy", "ermission"]);
}

/// Whether process `pid` has `path` open.
#[cfg(target_os = "linux")]
fn has_open(pid: u32, path: &std::path::Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
}

#[cfg(target_os = "linux")]
#[test]
fn a_file_cut_while_being_read_is_bad_input() {
    // the reference reads the file: the cut is found and named; the engine maps it under a
    // lease: the writer is stopped, and so is the run, in one line
    for device in ["reference", "cpu"] {
        let f = Files::new();
        let (rows, cols) = (1 << 20, 4);
        let l = f.f32("L.npy", &[rows, cols], &uniform(24, rows * cols, -3.0, 3.0));
        let path = f.path("L.npy").canonicalize().unwrap();
        // one row a chunk: seconds of reading
        let child = spawn(&["lse", "--logits", &l, "--device", device, "--chunk-rows", "1", "--quiet"]);
        let started = std::time::Instant::now();
        while !has_open(child.id(), &path) {
            assert!(started.elapsed() < Duration::from_secs(30), "the input was never opened");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(200));
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(64 + 4096).unwrap();
        let run = finish_within(child, Duration::from_secs(60), "lse over a cut file");
        if device == "reference" {
            run.bad_input(&["L.npy", "cut short"]);
        } else {
            run.bad_input(&["xent: "]);
        }
    }
}

#[test]
fn class_weights_are_checked_when_read() {
    let f = Files::new();
    let (rows, cols) = (6, 5);
    let l = f.f32("L.npy", &[rows, cols], &uniform(25, rows * cols, -3.0, 3.0));
    let p = f.f32("P.npy", &[rows, cols], &probs(26, rows, cols));
    let y = f.i64("Y.npy", &labels(27, rows, cols));
    let good = uniform(28, cols, 0.5, 2.0);
    let mut bad = Vec::new();
    for (name, v) in [("neg.npy", -0.6f32), ("nan.npy", f32::NAN), ("inf.npy", f32::INFINITY)] {
        let mut w = good.clone();
        w[3] = v;
        bad.push((f.f32(name, &[cols], &w), name));
    }
    for device in devices() {
        for (w, name) in &bad {
            for target in [["--labels", &y], ["--target-probs", &p]] {
                let args = ["ce", "--logits", &l, target[0], target[1], "--class-weights", w, "--device", device];
                let run = xent(&args);
                run.bad_input(&["--class-weights", name, "3"]);
                assert!(!run.stderr.contains("probability"), "{}", run.stderr);
            }
        }
    }
}

#[test]
fn a_bad_probability_names_its_file_and_row() {
    let f = Files::new();
    let (rows, cols) = (7, 4);
    let l = f.f32("L.npy", &[rows, cols], &uniform(29, rows * cols, -3.0, 3.0));
    let good = f.f32("good.npy", &[rows, cols], &probs(30, rows, cols));
    let mut v = probs(31, rows, cols);
    v[2 * cols + 1] = -0.25;
    let neg = f.f32("neg.npy", &[rows, cols], &v);
    let mut t = uniform(32, rows * cols, 0.0, 1.0);
    t[4 * cols + 2] = 1.5;
    let far = f.f32("far.npy", &[rows, cols], &t);
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["kl", "--p", &good, "--q", &neg], "neg.npy", "row 2"),
        (vec!["kl", "--p", &neg, "--q", &good], "neg.npy", "row 2"),
        (vec!["kl", "--p-logits", &l, "--q", &neg], "neg.npy", "row 2"),
        (vec!["entropy", "--probs", &neg], "neg.npy", "row 2"),
        (vec!["ce", "--logits", &l, "--target-probs", &neg], "neg.npy", "row 2"),
        (vec!["bce", "--probs", &neg, "--labels", &good], "neg.npy", "row 2"),
        (vec!["bce", "--probs", &good, "--labels", &far], "far.npy", "row 4"),
        (vec!["bce", "--logits", &l, "--labels", &far], "far.npy", "row 4"),
    ];
    for device in devices() {
        for (args, name, row) in &cases {
            let mut a = args.clone();
            a.extend(["--device", device]);
            xent(&a).bad_input(&[name, row]);
        }
    }
}

/// Stdout a terminal: a summary for people instead of the JSON line (the value, the shape,
/// the adapter, aligned); `--json` keeps the line. Piped, as everywhere else in these tests,
/// the line is unchanged.
#[test]
#[allow(unsafe_code)]
fn a_terminal_gets_a_summary_and_json_keeps_the_line() {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let f = Files::new();
    let (rows, cols) = (5, 7);
    let l = f.f32("L.npy", &[rows, cols], &uniform(91, rows * cols, -3.0, 3.0));
    let on_a_terminal = |extra: &[&str]| -> String {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors into the integers given.
        let made =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(made, 0, "openpty");
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (mut master, slave) = unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) };
        let mut args = vec!["lse", "--logits", &l, "--quiet"];
        args.extend(extra);
        let mut command = cli_support::command(&args);
        command.stdout(slave).stderr(std::process::Stdio::piped());
        let child = command.spawn().unwrap();
        drop(command);
        let run = finish_within(child, Duration::from_secs(60), "lse on a terminal");
        assert_eq!(run.code, 0, "{}", run.stderr);
        let mut out = Vec::new();
        // the slave is closed: the read ends with EIO once the output is drained
        let _ = master.read_to_end(&mut out);
        String::from_utf8_lossy(&out).replace('\r', "")
    };
    let people = on_a_terminal(&[]);
    assert!(people.lines().next().is_some_and(|first| first.starts_with("lse ")), "{people}");
    assert!(people.contains(&format!("rows     {rows} x {cols}, <f4")), "{people}");
    assert!(people.lines().any(|line| line.starts_with("adapter ")), "{people}");
    assert!(!people.contains('{'), "a JSON line on a terminal: {people}");
    let line = on_a_terminal(&["--json"]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["command"], "lse");
}

/// The number a JSON line gives `key`, parsed from its text by `str::parse`.
fn raw_number(line: &str, key: &str) -> f64 {
    let at = line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no {key}: {line}")) + key.len() + 3;
    let text = line[at..].trim_start();
    let end = text.find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c))).unwrap_or(text.len());
    text[..end].parse().unwrap_or_else(|e| panic!("{key}: {e}: {line}"))
}

/// A set evaluated as shards and merged is the set evaluated whole: row, hit and count
/// totals exactly; sums and denominators to 1e-12 on the f64 reference (the CPU path),
/// to f32 accumulation on the GPU; the mean, accuracy, perplexity, z-loss and entropy follow.
/// Shards of different operations, and files that are not results, are bad input.
#[test]
fn shards_merge_into_the_whole() {
    let f = Files::new();
    let (rows, cols) = (3001, 37);
    let x = uniform(97, rows * cols, -4.0, 4.0);
    let mut y = labels(98, rows, cols);
    y.iter_mut().step_by(7).for_each(|l| *l = -100);
    let w: Vec<f32> = uniform(99, cols, 0.5, 2.0);
    let weights = f.f32("W.npy", &[cols], &w);
    // uneven shards: rows [0, 1000), [1000, 1001), [1001, 3001)
    let bounds = [0, 1000, 1001, rows];
    let options =
        ["--ignore-index", "-100", "--class-weights", &weights, "--z-loss", "1e-3", "--base", "2", "--entropy"];
    for device in devices() {
        let run = |l: &str, yy: &str| {
            let mut args = vec!["ce", "--logits", l, "--labels", yy, "--device", device];
            args.extend(options);
            xent(&args)
        };
        let whole = run(&f.f32("L.npy", &[rows, cols], &x), &f.i64("Y.npy", &y)).json();
        let mut results = Vec::new();
        for (k, pair) in bounds.windows(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            let l = f.f32(&format!("L{k}.npy"), &[b - a, cols], &x[a * cols..b * cols]);
            let yy = f.i64(&format!("Y{k}.npy"), &y[a..b]);
            let out = f.dir.path().join(format!("r{k}-{device}.json"));
            std::fs::write(&out, run(&l, &yy).stdout).unwrap();
            results.push(out.to_str().unwrap().to_string());
        }
        let mut args = vec!["merge"];
        args.extend(results.iter().map(String::as_str));
        let merged = xent(&args).json();
        assert_eq!(merged["shards"], 3);
        for key in ["rows", "correct", "counted", "command", "cols", "reduction", "base", "dtype"] {
            assert_eq!(merged[key], whole[key], "{device}: {key}");
        }
        let tolerance = if device == "cpu" { 1e-12 } else { 1e-6 };
        let keys = ["sum", "denominator", "mean", "value", "z_sum", "z_loss", "accuracy", "perplexity"];
        for key in keys.into_iter().chain(["entropy_sum", "entropy"]) {
            let (m, w) = (merged[key].as_f64().unwrap(), whole[key].as_f64().unwrap());
            assert!((m - w).abs() <= tolerance * w.abs(), "{device}: {key}: merged {m}, whole {w}");
        }
        // one shard merged alone: its sums come back to the bit, as they were written (read
        // here by the standard library's parser, which rounds correctly)
        let alone = xent(&["merge", &results[2]]).stdout;
        let shard = std::fs::read_to_string(&results[2]).unwrap();
        for key in ["sum", "denominator", "z_sum", "entropy_sum"] {
            let (a, s) = (raw_number(&alone, key), raw_number(&shard, key));
            assert_eq!(a.to_bits(), s.to_bits(), "{device}: {key}: {a:e} against {s:e}");
        }
    }
    // shards of different operations, and a file that is no result
    // rows 1..4: no ignored label among them
    let (l, yy) = (f.f32("S.npy", &[3, cols], &x[cols..4 * cols]), f.i64("T.npy", &y[1..4]));
    let ce = f.dir.path().join("ce.json");
    std::fs::write(&ce, xent(&["ce", "--logits", &l, "--labels", &yy]).stdout).unwrap();
    let lse = f.dir.path().join("lse.json");
    std::fs::write(&lse, xent(&["lse", "--logits", &l]).stdout).unwrap();
    xent(&["merge", ce.to_str().unwrap(), lse.to_str().unwrap()]).bad_input(&["command", "lse.json"]);
    xent(&["merge", ce.to_str().unwrap(), &l]).bad_input(&["S.npy"]);
}
