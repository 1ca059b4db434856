//! Helpers of the command-line tests that run `xent` against files it must not harm:
//! `.npy` files written by hand, runs with a working directory, a shell or a deadline, and
//! the checks of a bad-input or machine failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A `.npy` 1.0 header for `descr` and `shape`, padded to 64 bytes.
pub fn npy_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = (10 + dict.len() + 1).next_multiple_of(64);
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&u16::try_from(total - 10).unwrap().to_le_bytes());
    b.extend_from_slice(dict.as_bytes());
    b.resize(total - 1, b' ');
    b.push(b'\n');
    b
}

/// A `.npy` image (format 1.0, header padded to 64 bytes).
pub fn npy_bytes(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut b = npy_header(descr, &shape);
    b.extend_from_slice(data);
    b
}

/// A temporary directory of input files.
pub struct Files {
    pub dir: TempDir,
}

impl Files {
    pub fn new() -> Files {
        Files { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of `name` as a string, for arguments.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    pub fn raw(&self, name: &str, bytes: &[u8]) -> String {
        std::fs::write(self.path(name), bytes).unwrap();
        self.arg(name)
    }

    pub fn f32(&self, name: &str, shape: &[usize], v: &[f32]) -> String {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(name, &npy_bytes("<f4", shape, &data))
    }

    pub fn i64(&self, name: &str, v: &[i64]) -> String {
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.raw(name, &npy_bytes("<i8", &[v.len()], &data))
    }

    /// Names in the directory, sorted, for checking that nothing was added or left behind.
    pub fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// How a run of `xent` ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Checks a success: status 0, nothing on stderr, one line of JSON.
    pub fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, 0, "exit {}: {}", self.code, self.stderr);
        // (where there is no adapter at all, a run on the engine ends with one note)
        let note = "xent: note: no GPU adapter found; running on the CPU engine\n";
        assert!(self.stderr.is_empty() || self.stderr == note, "stderr not empty: {}", self.stderr);
        assert_eq!(self.stdout.lines().count(), 1, "stdout is not one line: {}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap()
    }

    /// Checks a failure: status `code`, one line on stderr holding every one of `names`.
    pub fn failed(&self, code: i32, names: &[&str]) {
        assert_eq!(self.code, code, "expected exit {code}, got {}: {}", self.code, self.stderr);
        assert!(self.stdout.is_empty(), "stdout: {}", self.stdout);
        assert_eq!(self.stderr.lines().count(), 1, "stderr is not one line: {:?}", self.stderr);
        assert!(self.stderr.starts_with("xent: "), "{}", self.stderr);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("backtrace"), "{}", self.stderr);
        for name in names {
            assert!(self.stderr.contains(name), "{:?} does not name {name:?}", self.stderr);
        }
    }

    /// Bad input: status 2, one line naming every one of `names`.
    pub fn bad_input(&self, names: &[&str]) {
        self.failed(2, names);
    }
}

pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xent"));
    c.args(args).env("RUST_BACKTRACE", "1");
    c
}

pub fn xent(args: &[&str]) -> Run {
    Run::from(command(args).output().unwrap())
}

/// Runs `xent` in the directory `dir`, so relative paths are relative to it.
pub fn xent_in(dir: &Path, args: &[&str]) -> Run {
    Run::from(command(args).current_dir(dir).output().unwrap())
}

/// Runs `sh -c '<setup>; exec xent <args> <redirect>'`: a shell sets limits or redirects
/// the standard streams first. The arguments must not need quoting.
pub fn xent_sh(setup: &str, args: &[&str], redirect: &str) -> Run {
    let line = format!("{setup} exec '{}' {} {redirect}", env!("CARGO_BIN_EXE_xent"), args.join(" "));
    let out = Command::new("sh").args(["-c", &line]).env("RUST_BACKTRACE", "1").output().unwrap();
    Run::from(out)
}

/// Starts `xent` in the background, its output captured.
pub fn spawn(args: &[&str]) -> Child {
    command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits up to `limit` for `child`; a run still going then is killed and the test fails.
pub fn finish_within(mut child: Child, limit: Duration, what: &str) -> Run {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run::from(child.wait_with_output().unwrap())
}

/// The devices every check runs on.
pub fn devices() -> [&'static str; 2] {
    let gpu = if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") { "gpu" } else { "auto" };
    [gpu, "cpu"]
}

/// Seeded floats uniform in [lo, hi).
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Seeded rows of probabilities, each summing to 1.
pub fn probs(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let raw = uniform(seed, rows * cols, 0.01, 1.0);
    raw.chunks(cols)
        .flat_map(|r| {
            let s: f32 = r.iter().sum();
            r.iter().map(move |x| x / s)
        })
        .collect()
}

/// Seeded labels in [0, cols).
pub fn labels(seed: u64, rows: usize, cols: usize) -> Vec<i64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..rows).map(|_| rng.random_range(0..cols as i64)).collect()
}
