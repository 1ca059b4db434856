//! Where a writer's bytes go, so that a target is replaced whole or not at all.
//!
//! - A regular file (or a new path) is written to a temporary file in its directory and
//!   renamed onto it at the end. On Linux that file is unnamed (`O_TMPFILE`): nothing of it
//!   is left whatever stops the process, SIGKILL included. Elsewhere it is a named
//!   `.xent-*.npy.tmp`, listed so that a signal handler can remove it
//!   ([`remove_temporary_files`]).
//! - A special file (a device such as `/dev/null`, a FIFO, a socket) is written in place:
//!   renaming onto it would replace it by a regular file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tempfile::TempPath;

/// Paths of the named temporary files alive now.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every named temporary file a writer has open, for a signal handler that is about
/// to end the process. The list stays locked until then, so no new one slips in.
pub fn remove_temporary_files() {
    let list = pending();
    remove_all(&list);
    std::mem::forget(list);
}

fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// A named temporary file, listed in [`PENDING`] while it exists.
#[derive(Debug)]
pub(super) struct Pending(Option<TempPath>);

impl Pending {
    fn new(path: TempPath) -> Pending {
        pending().push(path.to_path_buf());
        Pending(Some(path))
    }

    /// Renames the file onto `target`.
    fn persist(mut self, target: &Path) -> io::Result<()> {
        match self.0.take() {
            Some(path) => {
                let listed = path.to_path_buf();
                let result = path.persist(target).map_err(|e| e.error);
                unlist(&listed);
                result
            }
            None => Ok(()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let listed = path.to_path_buf();
            drop(path); // removes the file
            unlist(&listed);
        }
    }
}

fn unlist(path: &Path) {
    let mut list = pending();
    if let Some(i) = list.iter().position(|p| p == path) {
        list.swap_remove(i);
    }
}

/// How a writer's file becomes the target.
#[derive(Debug)]
pub(super) enum Finish {
    /// An unnamed file in `dir`: linked to a fresh name, then renamed onto the target.
    #[cfg(target_os = "linux")]
    Unnamed { dir: PathBuf },
    /// A named temporary file, renamed onto the target.
    Named(Pending),
    /// The target itself, a special file.
    InPlace,
}

impl Finish {
    /// Opens the file a writer for `target` writes to: the special file itself, or a
    /// temporary file in the target's directory. `Err` carries what was being done.
    pub(super) fn open(target: &Path) -> Result<(File, Finish), (&'static str, io::Error)> {
        let special = std::fs::metadata(target).is_ok_and(|m| !m.is_file() && !m.is_dir());
        if special {
            let file = OpenOptions::new().write(true).open(target).map_err(|e| ("open", e))?;
            return Ok((file, Finish::InPlace));
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        #[cfg(target_os = "linux")]
        if let Some(file) = unnamed(dir) {
            return Ok((file, Finish::Unnamed { dir: dir.to_path_buf() }));
        }
        Finish::named(dir)
    }

    /// A named temporary file in `dir`.
    fn named(dir: &Path) -> Result<(File, Finish), (&'static str, io::Error)> {
        let (file, path) =
            temp_builder().tempfile_in(dir).map_err(|e| ("create a temporary file for", e))?.into_parts();
        Ok((file, Finish::Named(Pending::new(path))))
    }

    /// Makes the written `file` the target. `Err` carries what was being done.
    pub(super) fn complete(self, file: &File, target: &Path) -> Result<(), (&'static str, io::Error)> {
        if matches!(self, Finish::InPlace) {
            return Ok(());
        }
        file.sync_all().map_err(|e| ("write", e))?;
        let rename = "rename the temporary file onto";
        match self {
            #[cfg(target_os = "linux")]
            Finish::Unnamed { dir } => {
                let linked = temp_builder().make_in(&dir, |name| link(file, name)).map_err(|e| (rename, e))?;
                Pending::new(linked.into_temp_path()).persist(target).map_err(|e| (rename, e))
            }
            Finish::Named(pending) => pending.persist(target).map_err(|e| (rename, e)),
            Finish::InPlace => Ok(()),
        }
    }
}

/// A temporary-file builder whose file gets the permissions a plain `File::create` would.
pub(super) fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".xent-").suffix(".npy.tmp");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder
}

/// An unnamed file in `dir`, or `None` where the file system has no `O_TMPFILE` or
/// `/proc` is missing (the link at the end goes through `/proc/self/fd`).
#[cfg(target_os = "linux")]
fn unnamed(dir: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let file = OpenOptions::new().write(true).mode(0o666).custom_flags(libc::O_TMPFILE).open(dir).ok()?;
    std::fs::metadata(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    Some(file)
}

/// Gives the unnamed `file` the name `name` (`EEXIST` if it is taken).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn link(file: &File, name: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(name.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let r =
        unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn listed(path: &Path) -> bool {
        pending().iter().any(|p| p == path)
    }

    #[test]
    fn a_named_temporary_is_listed_until_renamed_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.npy");
        let (mut file, finish) = Finish::named(dir.path()).unwrap();
        let Finish::Named(Pending(Some(path))) = &finish else { panic!("{finish:?}") };
        let temp = path.to_path_buf();
        assert!(listed(&temp) && temp.exists());
        file.write_all(b"first").unwrap();
        finish.complete(&file, &target).unwrap();
        assert!(!listed(&temp));
        assert_eq!(
            (names(dir.path()), std::fs::read(&target).unwrap()),
            (vec!["out.npy".to_string()], b"first".to_vec())
        );

        let (_, finish) = Finish::named(dir.path()).unwrap();
        let Finish::Named(Pending(Some(path))) = &finish else { panic!("{finish:?}") };
        let temp = path.to_path_buf();
        drop(finish);
        assert!(!listed(&temp) && !temp.exists());
        assert_eq!(names(dir.path()), ["out.npy"]);
    }

    #[test]
    fn listed_temporaries_are_removed_for_a_signal() {
        let dir = tempfile::tempdir().unwrap();
        let (_file, finish) = Finish::named(dir.path()).unwrap();
        let Finish::Named(Pending(Some(path))) = &finish else { panic!("{finish:?}") };
        let temp = path.to_path_buf();
        // only this test's: the tests of this binary run side by side
        let list: Vec<PathBuf> = pending().iter().filter(|p| p.starts_with(dir.path())).cloned().collect();
        assert_eq!(list, std::slice::from_ref(&temp));
        remove_all(&list);
        assert!(!temp.exists());
        drop(finish);
        assert!(names(dir.path()).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_unnamed_temporary_shows_nowhere_until_complete() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.npy");
        std::fs::write(&target, b"old").unwrap();
        let (mut file, finish) = Finish::open(&target).unwrap();
        if !matches!(finish, Finish::Unnamed { .. }) {
            eprintln!("skipped: this file system has no O_TMPFILE");
            return;
        }
        file.write_all(b"new contents").unwrap();
        assert_eq!(names(dir.path()), ["out.npy"]);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        finish.complete(&file, &target).unwrap();
        assert_eq!(names(dir.path()), ["out.npy"]);
        assert_eq!(std::fs::read(&target).unwrap(), b"new contents");
        let (mut file, finish) = Finish::open(&target).unwrap();
        file.write_all(b"abandoned").unwrap();
        drop((file, finish));
        assert_eq!(
            (names(dir.path()), std::fs::read(&target).unwrap()),
            (vec!["out.npy".to_string()], b"new contents".to_vec())
        );
    }
}
