//! Rows of an `.npy` file mapped rather than read ([`NpyFile::map_rows`]), for a device that
//! reads host memory in place: the kernel then reads the page cache itself.

use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use super::error::NpyError;
use super::reader::NpyFile;
use crate::SharedBytes;

/// Rows of a file mapped read-only, for as long as a holder of [`MappedRows::shared`] lives.
#[derive(Clone, Debug)]
pub struct MappedRows {
    map: Arc<Mmap>,
}

impl MappedRows {
    /// The rows' bytes, as stored in the file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapping, to hand to [`crate::Stream::push_shared`].
    pub fn shared(&self) -> SharedBytes {
        self.map.clone()
    }
}

/// A read lease held on an input ([`NpyFile::lease`]).
#[derive(Debug)]
pub struct Lease {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    file: std::fs::File,
}

impl Lease {
    /// Whether another process is waiting to write or truncate the file: the kernel is
    /// breaking this lease (`F_GETLEASE` then gives the type it is being broken to, none).
    pub fn breaking(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: F_GETLEASE on a descriptor this lease owns; it only reads the lease.
            #[allow(unsafe_code)]
            let held = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) };
            held != libc::F_RDLCK
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
}

impl NpyFile {
    /// Takes a read lease on the file (Linux), so that it cannot change while it is mapped:
    /// as long as the file stays open, another process that opens it to write or truncate
    /// it waits (or fails, if it does not block) and this process gets `SIGIO`, which the
    /// caller handles before taking the lease. `None` where the system refuses one (a file
    /// of another user, a network file system, a file open for writing) or has no leases.
    /// The [`Lease`] tells, once `SIGIO` has come, whether it was this file's.
    pub fn lease(&self) -> Option<Lease> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: F_SETLEASE on a descriptor this file owns; it only sets a lease.
            #[allow(unsafe_code)]
            let taken = unsafe { libc::fcntl(self.file().as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
            // the lease belongs to the open file, which a duplicate descriptor shares
            let file = self.file().try_clone().ok()?;
            (taken == 0).then_some(Lease { file })
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Maps rows `first_row..first_row + rows` read-only. The rows are the file's bytes as
    /// stored: the caller checks that the dtype is the one it reads. A file that has shrunk
    /// since it was opened is an error, as for reads. The caller holds the file's
    /// [`NpyFile::lease`]: a file truncated while it is mapped would raise `SIGBUS` on access.
    pub fn map_rows(&self, first_row: u64, rows: usize) -> Result<MappedRows, NpyError> {
        let (offset, n) = self.span(first_row, rows)?;
        let bytes = n * self.dtype().size();
        let len = self.file().metadata().map_err(|e| NpyError::io(self.path(), "read", e))?.len();
        if len < offset + bytes as u64 {
            return Err(self.cut_short(len));
        }
        // SAFETY: a read-only mapping of a regular file (open() refused anything else) that
        // open() and the length above show to hold these bytes, under the caller's lease, so
        // no other process writes or truncates it while it is mapped.
        #[allow(unsafe_code)]
        let map = unsafe { MmapOptions::new().offset(offset).len(bytes).map(self.file()) }
            .map_err(|e| NpyError::io(self.path(), "map", e))?;
        Ok(MappedRows { map: Arc::new(map) })
    }
}
