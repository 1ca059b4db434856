//! The errors of reading and writing `.npy` files, each naming its file.

use std::io;
use std::path::Path;

/// The descriptors accepted, for error messages.
pub(super) const ACCEPTED: &str = "<f2, <f4, <f8 (floats); |i1, |u1, <u2, <u4, <i4, <i8 (integer labels)";

/// What went wrong with a `.npy` file; every message starts with the file's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The operating system refused (missing file, permission, disk full, ...).
    #[error("{file}: cannot {action}: {error}")]
    Io {
        /// The file's name.
        file: String,
        /// What was being done: "open", "read", "write", ...
        action: &'static str,
        /// The underlying error.
        error: io::Error,
    },
    /// The file does not start like a `.npy` file.
    #[error("{file}: not a .npy file: {detail}")]
    NotNpy {
        /// The file's name.
        file: String,
        /// Why.
        detail: String,
    },
    /// The header is malformed (bad version, bad dict, overflowing shape, ...).
    #[error("{file}: bad .npy header: {detail}")]
    BadHeader {
        /// The file's name.
        file: String,
        /// Why.
        detail: String,
    },
    /// The element type is not one this crate reads.
    #[error("{file}: unsupported dtype {descr} ({detail}); accepted: {ACCEPTED}")]
    UnsupportedDType {
        /// The file's name.
        file: String,
        /// The descriptor as written in the header.
        descr: String,
        /// Why it is refused.
        detail: String,
    },
    /// The array is stored in Fortran (column-major) order.
    #[error("{file}: Fortran-order arrays are not supported; save a C-order copy (np.ascontiguousarray)")]
    FortranOrder {
        /// The file's name.
        file: String,
    },
    /// The file is shorter than its header says.
    #[error("{file}: data is cut short: {actual} bytes of {expected}")]
    Truncated {
        /// The file's name.
        file: String,
        /// Data bytes present after the header.
        actual: u64,
        /// Data bytes the shape and dtype call for.
        expected: u64,
    },
    /// A supported dtype, but not the kind the caller needs (floats where labels are expected, ...).
    #[error("{file}: {detail}")]
    WrongDType {
        /// The file's name.
        file: String,
        /// What was expected and what was found.
        detail: String,
    },
    /// A shape the caller cannot use (see [`NpyError::wrong_shape`]).
    #[error("{file}: wrong shape: {detail}")]
    Shape {
        /// The file's name.
        file: String,
        /// What was expected and what was found.
        detail: String,
    },
    /// Memory for the rows asked for could not be allocated.
    #[error("{file}: cannot allocate {bytes} bytes of memory to read its rows")]
    OutOfMemory {
        /// The file's name.
        file: String,
        /// The bytes asked for.
        bytes: u64,
    },
    /// An output path that cannot be written (a directory).
    #[error("{file}: cannot write an array here: {detail}")]
    Target {
        /// The file's name.
        file: String,
        /// Why.
        detail: String,
    },
    /// A read past the last row.
    #[error("{file}: rows {first}..{end} requested, but the array has {rows} rows")]
    OutOfRange {
        /// The file's name.
        file: String,
        /// First row asked for.
        first: u64,
        /// One past the last row asked for.
        end: u64,
        /// Rows in the array.
        rows: u64,
    },
}

impl NpyError {
    /// A [`NpyError::Shape`] for `path`: for callers whose inputs disagree, e.g. labels whose
    /// length is not the logits' row count. Displays as `name.npy: wrong shape: {detail}`.
    pub fn wrong_shape(path: &Path, detail: impl Into<String>) -> NpyError {
        NpyError::Shape { file: file_label(path), detail: detail.into() }
    }

    /// Whether the error is the input's fault (a missing, unreadable or malformed file, a path
    /// that loops or runs through a non-directory) rather than the machine's (a failing or full
    /// disk, memory).
    pub fn is_bad_input(&self) -> bool {
        match self {
            NpyError::Io { error, .. } => names_a_bad_path(error),
            NpyError::OutOfMemory { .. } => false,
            _ => true,
        }
    }

    pub(super) fn io(path: &Path, action: &'static str, error: io::Error) -> NpyError {
        NpyError::Io { file: file_label(path), action, error }
    }
}

/// Whether an I/O error says the path itself is wrong: the user's to fix.
fn names_a_bad_path(e: &io::Error) -> bool {
    use io::ErrorKind::{InvalidFilename, IsADirectory, NotADirectory, NotFound, PermissionDenied};
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return true;
    }
    matches!(e.kind(), NotFound | PermissionDenied | NotADirectory | IsADirectory | InvalidFilename)
}

/// The name a message uses for a file: its final component, or the whole path if it has none.
pub(super) fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
