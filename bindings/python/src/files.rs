//! The `.npy` inputs of `xent.evaluate_files`: logits `[rows, classes]` (`<f2`, `<f4`,
//! `<f8`) and labels `[rows]`, read a chunk ahead on a thread of their own with positioned
//! reads (memory stays at a few chunks whatever the file size), labels checked as they
//! come, each error naming the file.

use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};

use pyo3::PyResult;
use xent::DType;
use xent::npy::{NpyDType, NpyFile};

use std::sync::Arc;

use crate::arrays::{Held, Owned};
use crate::errors::{from_npy, input};
use crate::evaluate::{Chunk, ChunkLabels, Shape, Source};

/// The two files of an evaluation, opened and checked against each other.
pub(crate) struct FileSource {
    logits: NpyFile,
    labels: NpyFile,
    ignore_index: Option<i64>,
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

impl FileSource {
    pub(crate) fn open(logits: &Path, labels: &Path, ignore_index: Option<i64>) -> PyResult<FileSource> {
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
        Ok(FileSource { logits: l, labels: y, ignore_index })
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
        let logits = if self.logits.dtype() == NpyDType::F16 {
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
