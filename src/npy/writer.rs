//! [`NpyWriter`]: a `.npy` file written as a stream, replacing its target whole or not at all.

use super::error::{NpyError, file_label};
use super::header::{MAX_DIMS, header_bytes, shape_literal};
use super::{NpyDType, NpyElement, sink};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes a `.npy` file as a stream, atomically (`<f4` unless created with [`NpyWriter::create_as`]).
///
/// The data goes to a temporary file in the target's directory; [`NpyWriter::finish`] checks
/// the element count and renames it onto the target. A writer dropped without `finish` (an
/// error path) removes the temporary file and leaves the target untouched. A special file
/// (`/dev/null`, a FIFO) is written in place; a directory is refused at creation.
#[derive(Debug)]
pub struct NpyWriter {
    out: BufWriter<File>,
    finish: sink::Finish,
    path: PathBuf,
    shape: Vec<u64>,
    dtype: NpyDType,
    expected: u64,
    written: u64,
}

impl NpyWriter {
    /// Starts writing a `<f4` array of `shape` (C order) to `path`: creates the temporary file
    /// and writes the header (format 1.0 padded to 64 bytes, 2.0 if it does not fit).
    pub fn create(path: impl AsRef<Path>, shape: &[u64]) -> Result<NpyWriter, NpyError> {
        Self::create_as::<f32>(path, shape)
    }

    /// Starts writing an array of `T` (e.g. `i64` labels) of `shape` to `path`.
    pub fn create_as<T: NpyElement>(path: impl AsRef<Path>, shape: &[u64]) -> Result<NpyWriter, NpyError> {
        let (path, dtype) = (path.as_ref(), T::DTYPE);
        let expected = shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|n| n.checked_mul(dtype.size() as u64).is_some());
        let Some(expected) = expected.filter(|_| shape.len() <= MAX_DIMS) else {
            return Err(NpyError::wrong_shape(path, format!("cannot write shape {}", shape_literal(shape))));
        };
        let header = header_bytes(dtype, shape).map_err(|detail| NpyError::wrong_shape(path, detail))?;
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(NpyError::Target { file: file_label(path), detail: "it is a directory".into() });
        }
        let (file, finish) = sink::Finish::open(path).map_err(|(action, e)| NpyError::io(path, action, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header).map_err(|e| NpyError::io(path, "write", e))?;
        Ok(NpyWriter { out, finish, path: path.to_path_buf(), shape: shape.to_vec(), dtype, expected, written: 0 })
    }

    /// Appends f32 `values` (the next elements in C order) to a `<f4` file. Writing more than
    /// the shape holds is an error.
    pub fn write(&mut self, values: &[f32]) -> Result<(), NpyError> {
        self.write_as(values)
    }

    /// Appends `values` of the file's element type (see [`NpyWriter::create_as`]). Writing more
    /// than the shape holds, or elements of another type than the file's, is an error.
    pub fn write_as<T: NpyElement>(&mut self, values: &[T]) -> Result<(), NpyError> {
        if T::DTYPE != self.dtype {
            let detail = format!("{} values written to a {} array", T::DTYPE, self.dtype);
            return Err(NpyError::WrongDType { file: file_label(&self.path), detail });
        }
        let total = self.written.checked_add(values.len() as u64).filter(|&t| t <= self.expected);
        let Some(total) = total else {
            let detail = format!("more than the {} values of shape {}", self.expected, shape_literal(&self.shape));
            return Err(NpyError::wrong_shape(&self.path, detail));
        };
        let result = if cfg!(target_endian = "little") {
            self.out.write_all(bytemuck::cast_slice(values))
        } else {
            // .npy data is little-endian: swap each element's bytes
            values.iter().try_for_each(|v| {
                let mut b = bytemuck::bytes_of(v).to_vec();
                b.reverse();
                self.out.write_all(&b)
            })
        };
        result.map_err(|e| NpyError::io(&self.path, "write", e))?;
        self.written = total;
        Ok(())
    }

    /// Elements written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks that every element was written, flushes, syncs and renames the temporary file
    /// onto the target (replacing any file there); a special file was written in place. On
    /// error the temporary file is removed.
    pub fn finish(self) -> Result<(), NpyError> {
        let NpyWriter { out, finish, path, shape, expected, written, .. } = self;
        if written != expected {
            let detail = format!("{written} values written, shape {} holds {expected}", shape_literal(&shape));
            return Err(NpyError::wrong_shape(&path, detail));
        }
        let file = out.into_inner().map_err(|e| NpyError::io(&path, "write", e.into_error()))?;
        finish.complete(&file, &path).map_err(|(action, e)| NpyError::io(&path, action, e))
    }
}

/// Writes `bytes` to `path` whole or not at all, as [`NpyWriter`] writes its file (a
/// temporary file renamed onto the target, a special file in place, a directory refused):
/// for a command's outputs that are not arrays (a CSV table, an SVG plot).
pub fn write_whole(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), NpyError> {
    let path = path.as_ref();
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(NpyError::Target { file: file_label(path), detail: "it is a directory".into() });
    }
    let (mut file, finish) = sink::Finish::open(path).map_err(|(action, e)| NpyError::io(path, action, e))?;
    file.write_all(bytes).map_err(|e| NpyError::io(path, "write", e))?;
    finish.complete(&file, path).map_err(|(action, e)| NpyError::io(path, action, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::testing::save;
    use crate::npy::{NpyDType, NpyFile, NpyHeader};
    use tempfile::TempDir;

    #[test]
    fn writer_round_trips() {
        let dir = TempDir::new().unwrap();
        for shape in [vec![3u64, 4], vec![5], vec![0, 7], vec![2, 0]] {
            let path = dir.path().join("out.npy");
            let n = shape.iter().product::<u64>() as usize;
            let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let mut w = NpyWriter::create(&path, &shape).unwrap();
            for part in values.chunks(5) {
                w.write(part).unwrap();
            }
            w.write(&[]).unwrap();
            assert_eq!(w.written(), n as u64);
            w.finish().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let h = NpyHeader::parse(&bytes).unwrap();
            assert_eq!((h.dtype, &h.shape, h.data_offset % 64), (NpyDType::F32, &shape, 0));
            assert_eq!(bytes[..8], *b"\x93NUMPY\x01\x00");
            assert_eq!(bytes[h.data_offset as usize - 1], b'\n');
            assert_eq!(bytes.len() as u64, h.data_offset + 4 * n as u64);
            let f = NpyFile::open(&path).unwrap();
            let mut out = Vec::new();
            f.read_f32(0, f.rows() as usize, &mut out).unwrap();
            assert_eq!(out, values);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }

    #[test]
    fn writer_errors_leave_nothing_behind() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("out.npy");
        let mut w = NpyWriter::create(&path, &[2, 2]).unwrap();
        w.write(&[1.0, 2.0, 3.0]).unwrap();
        let err = w.write(&[4.0, 5.0]).unwrap_err().to_string();
        assert!(err.starts_with("out.npy: wrong shape: more than the 4 values"), "{err}");
        let err = w.finish().unwrap_err().to_string();
        assert_eq!(err, "out.npy: wrong shape: 3 values written, shape (2, 2) holds 4");
        let mut w = NpyWriter::create(&path, &[2]).unwrap();
        w.write(&[1.0]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(NpyWriter::create(&path, &[u64::MAX, 2]).is_err());
        let err = NpyWriter::create(dir.path().join("no/such/dir/o.npy"), &[1]).unwrap_err().to_string();
        assert!(err.starts_with("o.npy: cannot create a temporary file"), "{err}");
    }

    #[test]
    fn writer_replaces_an_existing_file() {
        let dir = TempDir::new().unwrap();
        let path = save(&dir, "out.npy", b"old contents");
        let mut w = NpyWriter::create(&path, &[1]).unwrap();
        w.write(&[42.0]).unwrap();
        w.finish().unwrap();
        let mut out = Vec::new();
        NpyFile::open(&path).unwrap().read_f32(0, 1, &mut out).unwrap();
        assert_eq!(out, [42.0]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o600, 0o600);
        }
    }

    #[test]
    fn whole_files_replace_their_target_or_nothing() {
        let dir = TempDir::new().unwrap();
        let target = dir.path().join("table.csv");
        std::fs::write(&target, b"old").unwrap();
        write_whole(&target, b"class,support\n").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"class,support\n");
        assert!(write_whole(dir.path(), b"x").is_err(), "a directory");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["table.csv"]);
    }

    #[test]
    fn writer_refuses_a_directory() {
        let dir = TempDir::new().unwrap();
        let sub = dir.path().join("sub.npy");
        std::fs::create_dir(&sub).unwrap();
        let err = NpyWriter::create(&sub, &[1]).unwrap_err();
        assert!(matches!(err, NpyError::Target { .. }) && err.is_bad_input(), "{err}");
        assert_eq!(err.to_string(), "sub.npy: cannot write an array here: it is a directory");
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
    }
}
