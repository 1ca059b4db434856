//! The `.npy` inputs of `xent.evaluate_files`: logits `[rows, classes]` (`<f2`, `<f4`,
//! `<f8`) and labels `[rows]`, a chunk ahead on a thread of their own (memory stays at a
//! few chunks whatever the file size), labels checked as they come, each error naming the
//! file.
//!
//! On the CPU engine, logits stored as they are computed on (`<f4`, `<f2`) are mapped, not
//! copied, where the system grants a read lease on the file (Linux; a file of one's own),
//! as the command line maps them: while the lease is held no other process can open the file to write or
//! truncate it (so a mapped page never vanishes under the device), and one that tries
//! makes the evaluation stop at the next chunk with an error naming the file, which gives
//! the lease up. The lease's signal (SIGIO, which would end the process) is caught once a
//! process by a handler that only sets a flag. Elsewhere the rows are read with
//! positioned reads.

use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};

use pyo3::PyResult;
use xent::DType;
use xent::npy::{Lease, NpyDType, NpyFile};

use std::sync::Arc;

use crate::arrays::{Held, Owned};
use crate::errors::{from_npy, input};
use crate::evaluate::{Chunk, ChunkLabels, Shape, Source};

/// The two files of an evaluation, opened and checked against each other.
pub(crate) struct FileSource {
    logits: NpyFile,
    labels: NpyFile,
    ignore_index: Option<i64>,
    /// The lease under which the logits' rows are mapped, where they are.
    lease: Option<Lease>,
}

/// Whether SIGIO, which a broken lease sends, is caught in this process (registered once):
/// without it no lease may be taken.
fn sigio_caught() -> bool {
    static CAUGHT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAUGHT.get_or_init(|| {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGIO, flag).is_ok()
    })
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

impl FileSource {
    /// Opens the two files; with `map`, the logits are mapped where a lease is granted.
    pub(crate) fn open(logits: &Path, labels: &Path, ignore_index: Option<i64>, map: bool) -> PyResult<FileSource> {
        let l = NpyFile::open(logits).map_err(from_npy)?;
        if !l.dtype().is_float() || l.ndim() != 2 {
            return Err(input(format!(
                "logits: {} must hold floats (<f2, <f4, <f8) of shape [rows, classes], got {} {:?}",
                name(logits),
                l.dtype(),
                l.shape()
            )));
        }
        if l.cols() == 0 {
            return Err(input(format!("logits: {} has no columns (shape {:?})", name(logits), l.shape())));
        }
        let y = NpyFile::open(labels).map_err(from_npy)?;
        if y.dtype().is_float() || y.ndim() != 1 {
            return Err(input(format!(
                "labels: {} must hold integer labels (<i4, <i8, |u1, <u2, <u4) of shape [rows], got {} {:?}",
                name(labels),
                y.dtype(),
                y.shape()
            )));
        }
        if y.rows() != l.rows() {
            return Err(input(format!(
                "labels: {} has {} entries but {} has {} rows",
                name(labels),
                y.rows(),
                name(logits),
                l.rows()
            )));
        }
        let stored_as_read = matches!(l.dtype(), NpyDType::F32 | NpyDType::F16);
        let lease = if map && stored_as_read && sigio_caught() { l.lease() } else { None };
        Ok(FileSource { logits: l, labels: y, ignore_index, lease })
    }

    pub(crate) fn shape(&self) -> Shape {
        let half = self.logits.dtype() == NpyDType::F16;
        Shape {
            rows: self.logits.rows(),
            cols: self.logits.cols(),
            dtype: if half { DType::F16 } else { DType::F32 },
            descr: self.logits.dtype().descr(),
            bytes: self.logits.header().data_bytes() + self.labels.header().data_bytes(),
        }
    }

    /// Reads chunks of `step` rows on a thread, one chunk ahead of the device.
    pub(crate) fn reader(self, step: u64) -> Reader {
        let (tx, rx) = sync_channel(1);
        let rows = self.logits.rows();
        std::thread::spawn(move || {
            let mut start = 0;
            while start < rows {
                let n = step.min(rows - start) as usize;
                let chunk = self.read(start, n);
                let failed = chunk.is_err();
                // the receiver gone (an error, Ctrl-C): stop reading
                if tx.send(chunk).is_err() || failed {
                    break;
                }
                start += n as u64;
            }
        });
        Reader { rx }
    }

    fn read(&self, start: u64, rows: usize) -> PyResult<Chunk<'static>> {
        let half = self.logits.dtype() == NpyDType::F16;
        let logits = if let Some(lease) = &self.lease {
            if lease.breaking() {
                return Err(input(format!(
                    "logits: {}: another process opened it to write or truncate it during the evaluation",
                    name(self.logits.path())
                )));
            }
            Held::Mapped { rows: self.logits.map_rows(start, rows).map_err(from_npy)?, half }
        } else if half {
            let mut v = Vec::new();
            self.logits.read_f16_raw(start, rows, &mut v).map_err(from_npy)?;
            Held::SharedF16(Arc::new(Owned(v)))
        } else {
            let mut v = Vec::new();
            self.logits.read_f32(start, rows, &mut v).map_err(from_npy)?;
            Held::Shared(Arc::new(Owned(v)))
        };
        let mut labels = Vec::new();
        self.labels.read_labels(start, rows, &mut labels).map_err(from_npy)?;
        let cols = self.logits.cols() as i64;
        if let Some(i) = labels.iter().position(|&l| Some(l) != self.ignore_index && !(0..cols).contains(&l)) {
            return Err(input(format!(
                "labels: {}: row {}: label {} is outside [0, {cols})",
                name(self.labels.path()),
                start + i as u64,
                labels[i]
            )));
        }
        let bytes =
            rows as u64 * (self.logits.cols() * self.logits.dtype().size() as u64 + self.labels.dtype().size() as u64);
        // a device that reads host memory reads the chunk where it was read to: one copy, not two
        let memory = logits.shared().into_iter().collect();
        Ok(Chunk { rows, memory, logits, labels: ChunkLabels::Owned(labels), bytes })
    }
}

/// The chunks the reader thread sends.
pub(crate) struct Reader {
    rx: Receiver<PyResult<Chunk<'static>>>,
}

impl Source<'static> for Reader {
    fn chunk(&mut self, _start: u64, _rows: usize) -> Option<PyResult<Chunk<'static>>> {
        self.rx.recv().ok()
    }
}
