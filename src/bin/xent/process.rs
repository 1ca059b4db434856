//! The process around a run: its result reaches stdout or the run fails, and a signal that
//! ends it leaves no temporary file behind.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// On SIGINT, SIGTERM or SIGHUP: removes the named temporary files of the writers still
/// open (unnamed ones vanish by themselves), then ends the process as the signal would have.
#[cfg(unix)]
pub fn clean_up_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            xent::npy::remove_temporary_files();
            let _ = signal_hook::low_level::emulate_default_handler(signal);
            std::process::exit(128 + signal);
        }
    });
}

/// Without POSIX signals a named temporary file may be left by Ctrl-C.
#[cfg(not(unix))]
pub fn clean_up_on_signals() {}
