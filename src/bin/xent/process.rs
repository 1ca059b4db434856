//! The process around a run: its result reaches stdout or the run fails, and a signal that
//! ends it leaves no temporary file behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::Failure;

/// Set before `main` when the process started with descriptor 1 closed (`xent ... >&-`).
/// The Rust runtime then points it at `/dev/null`, where every write succeeds and the
/// result would be lost without a word.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

#[cfg(any(target_os = "linux", target_os = "android"))]
#[used]
#[allow(unsafe_code)]
#[unsafe(link_section = ".init_array")]
static CHECK_STDOUT: extern "C" fn() = {
    extern "C" fn check_stdout() {
        // SAFETY: F_GETFD only asks whether descriptor 1 is open.
        if unsafe { libc::fcntl(1, libc::F_GETFD) } == -1 {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
    check_stdout
};

/// Writes `text` and a newline to stdout and flushes; a closed, full or broken stdout is a
/// failure (status 1), since the result would be lost.
pub fn emit(text: impl std::fmt::Display) -> Result<(), Failure> {
    let failed = |why: String| Failure::machine(format!("cannot write the result to stdout: {why}"));
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Err(failed("it is closed".into()));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| failed(e.to_string()))
}

/// The temporary directories of this run (`demo` without `--dir`, `bench --e2e`).
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn temp_dirs() -> MutexGuard<'static, Vec<PathBuf>> {
    TEMP_DIRS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary directory removed when dropped, and by a signal that ends the run.
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, Failure> {
        let dir =
            tempfile::tempdir().map_err(|e| Failure::machine(format!("cannot create a temporary directory: {e}")))?;
        temp_dirs().push(dir.path().to_path_buf());
        Ok(TempDir(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        temp_dirs().retain(|p| p != self.0.path());
    }
}

/// On SIGINT, SIGTERM or SIGHUP: removes the named temporary files of the writers still
/// open (unnamed ones vanish by themselves) and the temporary directories, then ends the
/// process as the signal would have.
#[cfg(unix)]
pub fn clean_up_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            xent::npy::remove_temporary_files();
            for dir in temp_dirs().iter() {
                remove_while_written(dir);
            }
            let _ = signal_hook::low_level::emulate_default_handler(signal);
            std::process::exit(128 + signal);
        }
    });
}

/// Removes `dir`, which the run may still be writing into: renamed first, so that no file
/// the run creates by its path lands in it any more, then removed (again, should a file
/// created just before the rename have appeared).
#[cfg(unix)]
fn remove_while_written(dir: &Path) {
    let gone = dir.with_extension("removing");
    let dir = if std::fs::rename(dir, &gone).is_ok() { gone.as_path() } else { dir };
    for _ in 0..100 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The inputs leased by this process, each with the words that name it in messages.
static LEASED: Mutex<Vec<(String, xent::npy::Lease)>> = Mutex::new(Vec::new());

/// Keeps `lease` until the process ends, so that [`stop_when_inputs_change`] can name the
/// file (`what`, e.g. `preds.npy: --logits`) if another process opens it to write.
pub fn hold_lease(what: String, lease: xent::npy::Lease) {
    LEASED.lock().unwrap_or_else(|e| e.into_inner()).push((what, lease));
}

/// The inputs whose leases are being broken (all leased ones, if none tells).
fn inputs_being_written() -> String {
    let leased = LEASED.lock().unwrap_or_else(|e| e.into_inner());
    let breaking: Vec<&str> = leased.iter().filter(|(_, l)| l.breaking()).map(|(w, _)| w.as_str()).collect();
    match (breaking.is_empty(), leased.is_empty()) {
        (false, _) => breaking.join(", "),
        (true, false) => leased.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join(" or "),
        (true, true) => "an input file".to_string(),
    }
}

/// On SIGIO, which a lease on an input raises when another process opens the file to
/// write or truncate it (an input whose pages the device reads in place is leased): one
/// line naming the file and status 2, temporary files removed, and the lease given up by
/// exiting, so that the other process goes on. `false` where the signal cannot be watched
/// (then no lease may be taken: SIGIO would end the process).
#[cfg(unix)]
pub fn stop_when_inputs_change() -> bool {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGIO]) else { return false };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let what = inputs_being_written();
            let _ = writeln!(std::io::stderr(), "xent: {what} is being written by another process; stopped");
            xent::npy::remove_temporary_files();
            for dir in temp_dirs().iter() {
                remove_while_written(dir);
            }
            std::process::exit(2);
        }
    });
    true
}

#[cfg(not(unix))]
pub fn stop_when_inputs_change() -> bool {
    false
}

/// Without POSIX signals a named temporary file may be left by Ctrl-C.
#[cfg(not(unix))]
pub fn clean_up_on_signals() {}
