//! Checks on the paths a command names, made before anything is read or written: an output
//! that is one of the inputs (by identity: `./L.npy`, a symbolic or a hard link count), a
//! directory, or the same file as another output.

use std::path::{Path, PathBuf};

use crate::Failure;

/// A path and the flag that named it.
pub type Flagged<'a> = (&'static str, &'a Path);

/// A file's name for messages.
fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Where a path leads: an existing file's device and inode (elsewhere its canonical path),
/// or, for a new file, its directory's canonical path joined with its name (so `a.npy`,
/// `./a.npy` and `sub/../a.npy` agree).
#[derive(PartialEq, Eq)]
enum Place {
    #[cfg(unix)]
    File(u64, u64),
    Path(PathBuf),
}

/// The place of an existing file.
fn existing(path: &Path) -> Option<Place> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| Place::File(m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    path.canonicalize().ok().map(Place::Path)
}

/// The place of an existing file or of a new one.
fn place(path: &Path) -> Option<Place> {
    existing(path).or_else(|| {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(Place::Path(dir.canonicalize().ok()?.join(path.file_name()?)))
    })
}

/// Whether two paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    matches!((existing(a), existing(b)), (Some(x), Some(y)) if x == y)
}

/// Refuses outputs that would destroy an input, name a directory, or name each other.
pub fn check(inputs: &[Flagged], outputs: &[Flagged]) -> Result<(), Failure> {
    for &(flag, out) in outputs {
        if std::fs::metadata(out).is_ok_and(|m| m.is_dir()) {
            return Err(Failure::input(format!("{}: {flag} names a directory", name(out))));
        }
        if let Some(&(input, _)) = inputs.iter().find(|(_, path)| same_file(out, path)) {
            return Err(Failure::input(format!("{flag} names the same file as {input} ({})", name(out))));
        }
    }
    for (i, &(first, a)) in outputs.iter().enumerate() {
        for &(second, b) in &outputs[i + 1..] {
            if matches!((place(a), place(b)), (Some(x), Some(y)) if x == y) {
                return Err(Failure::input(format!("{first} and {second} name the same file ({})", name(b))));
            }
        }
    }
    Ok(())
}
