//! [`NpyFile`]: an open `.npy` file, read by rows with positioned reads.

use super::NpyDType;
use super::error::{NpyError, file_label};
use super::header::{NpyHeader, parse_header, preamble, shape_literal};
use half::f16;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The bytes read at a time when a read converts elements (f16/f64 to f32, integers to i64).
const SCRATCH_BYTES: usize = 1 << 20;

/// Fills `buf` from `file` at `offset`, without moving a shared cursor.
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Fills `buf` from `file` at `offset` (Windows: `seek_read` in a loop).
#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut std::mem::take(&mut buf)[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Positioned reads are not available on this platform.
#[cfg(not(any(unix, windows)))]
fn read_exact_at(_file: &File, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// An open `.npy` file of a 1-D or 2-D array, read by rows on demand.
///
/// Only the header is read at open. A 2-D array is `[rows, cols]`; a 1-D array of length N is
/// N rows of one column. Reads take `&self` and use positioned reads, so one `NpyFile` can serve
/// several threads.
#[derive(Debug)]
pub struct NpyFile {
    file: File,
    path: PathBuf,
    header: NpyHeader,
    rows: u64,
    cols: u64,
}

impl NpyFile {
    /// Opens `path`, parses its header and checks that the file holds all the data the header
    /// declares. Errors (each naming the file): missing or unreadable file, not a `.npy` file,
    /// bad header, unsupported dtype, Fortran order, data cut short, and a shape that is not
    /// 1-D or 2-D.
    pub fn open(path: impl AsRef<Path>) -> Result<NpyFile, NpyError> {
        let path = path.as_ref();
        let file = open_without_waiting(path).map_err(|e| NpyError::io(path, "open", e))?;
        let meta = file.metadata().map_err(|e| NpyError::io(path, "open", e))?;
        if !meta.is_file() {
            let detail = "not a regular file (directories, pipes and devices cannot be read)".to_string();
            return Err(NpyError::NotNpy { file: file_label(path), detail });
        }
        let header = read_header(&file, path, meta.len())?;
        let (rows, cols) = match header.shape[..] {
            [n] => (n, 1),
            [r, c] => (r, c),
            _ => {
                let detail = format!("need a 1-D or 2-D array, got shape {}", shape_literal(&header.shape));
                return Err(NpyError::wrong_shape(path, detail));
            }
        };
        let actual = meta.len().saturating_sub(header.data_offset);
        let expected = header.data_bytes();
        if actual < expected {
            return Err(NpyError::Truncated { file: file_label(path), actual, expected });
        }
        Ok(NpyFile { file, path: path.to_path_buf(), header, rows, cols })
    }

    /// The element type.
    pub fn dtype(&self) -> NpyDType {
        self.header.dtype
    }

    /// The shape as written in the header (one or two dimensions).
    pub fn shape(&self) -> &[u64] {
        &self.header.shape
    }

    /// The parsed header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// Rows: the first dimension.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Columns: the second dimension, or 1 for a 1-D array.
    pub fn cols(&self) -> u64 {
        self.cols
    }

    /// Number of dimensions, 1 or 2.
    pub fn ndim(&self) -> usize {
        self.header.shape.len()
    }

    /// Number of elements, `rows * cols`.
    pub fn len(&self) -> u64 {
        self.rows * self.cols
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    /// Reads rows `first_row..first_row + rows` as f32 into `out` (cleared first; its capacity
    /// is reused). `<f2` and `<f8` are converted (`<f8` rounds to nearest); integer files are an
    /// error.
    pub fn read_f32(&self, first_row: u64, rows: usize, out: &mut Vec<f32>) -> Result<(), NpyError> {
        let (offset, n) = self.span(first_row, rows)?;
        out.clear();
        match self.dtype() {
            NpyDType::F32 => self.read_plain(offset, n, out, f32::from_le_bytes),
            NpyDType::F16 => self.read_convert(offset, n, out, |b| f16::from_le_bytes(b).to_f32()),
            NpyDType::F64 => self.read_convert(offset, n, out, |b| f64::from_le_bytes(b) as f32),
            other => Err(self.wrong_dtype(format!("values must be floats (<f2, <f4, <f8), got {other}"))),
        }
    }

    /// Reads rows of a `<f2` file as they are stored, without conversion, into `out` (cleared
    /// first). Other dtypes are an error.
    pub fn read_f16_raw(&self, first_row: u64, rows: usize, out: &mut Vec<f16>) -> Result<(), NpyError> {
        let (offset, n) = self.span(first_row, rows)?;
        out.clear();
        match self.dtype() {
            NpyDType::F16 => self.read_plain(offset, n, out, f16::from_le_bytes),
            other => Err(self.wrong_dtype(format!("expected <f2 data for a raw half-precision read, got {other}"))),
        }
    }

    /// Reads rows of integer labels, widened to i64 without loss, into `out` (cleared first).
    /// A float file is an error ("labels must be integers, got <f4").
    pub fn read_labels(&self, first_row: u64, rows: usize, out: &mut Vec<i64>) -> Result<(), NpyError> {
        let (offset, n) = self.span(first_row, rows)?;
        out.clear();
        match self.dtype() {
            NpyDType::I64 => self.read_plain(offset, n, out, i64::from_le_bytes),
            NpyDType::I32 => self.read_convert(offset, n, out, |b| i64::from(i32::from_le_bytes(b))),
            NpyDType::U32 => self.read_convert(offset, n, out, |b| i64::from(u32::from_le_bytes(b))),
            NpyDType::U16 => self.read_convert(offset, n, out, |b| i64::from(u16::from_le_bytes(b))),
            NpyDType::U8 => self.read_convert(offset, n, out, |b: [u8; 1]| i64::from(b[0])),
            NpyDType::I8 => self.read_convert(offset, n, out, |b| i64::from(i8::from_le_bytes(b))),
            other => Err(self.wrong_dtype(format!("labels must be integers, got {other}"))),
        }
    }

    fn wrong_dtype(&self, detail: String) -> NpyError {
        NpyError::WrongDType { file: file_label(&self.path), detail }
    }

    /// The byte offset and element count of a row range, checked against the shape.
    pub(super) fn span(&self, first_row: u64, rows: usize) -> Result<(u64, usize), NpyError> {
        if first_row.checked_add(rows as u64).is_none_or(|end| end > self.rows) {
            let (file, end) = (file_label(&self.path), first_row.saturating_add(rows as u64));
            return Err(NpyError::OutOfRange { file, first: first_row, end, rows: self.rows });
        }
        // Within the shape, whose byte count open() checked against the file: no overflow.
        let size = self.dtype().size() as u64;
        let offset = self.header.data_offset + first_row * self.cols * size;
        let n = usize::try_from(rows as u64 * self.cols).map_err(|_| {
            NpyError::wrong_shape(&self.path, format!("{rows} rows of {} columns do not fit in memory", self.cols))
        })?;
        Ok((offset, n))
    }

    fn read_bytes(&self, buf: &mut [u8], offset: u64) -> Result<(), NpyError> {
        read_exact_at(&self.file, buf, offset).map_err(|e| {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                return NpyError::io(&self.path, "read", e);
            }
            // open() saw all the data: the file shrank since
            self.cut_short(self.file.metadata().map_or(0, |m| m.len()))
        })
    }

    /// The error of a file found `len` bytes long, less than its data needs.
    pub(super) fn cut_short(&self, len: u64) -> NpyError {
        let (actual, expected) = (len.saturating_sub(self.header.data_offset), self.header.data_bytes());
        NpyError::Truncated { file: file_label(&self.path), actual, expected }
    }

    /// Room for `n` elements in `out`, or an error naming the file when memory runs out.
    fn reserve<T>(&self, out: &mut Vec<T>, n: usize) -> Result<(), NpyError> {
        out.try_reserve(n).map_err(|_| NpyError::OutOfMemory {
            file: file_label(&self.path),
            bytes: (n as u64).saturating_mul(size_of::<T>() as u64),
        })
    }

    /// Reads `n` elements stored exactly as `T` is in memory: straight into `out` on a
    /// little-endian machine, through `convert` elsewhere.
    fn read_plain<T: bytemuck::Pod, const N: usize>(
        &self,
        offset: u64,
        n: usize,
        out: &mut Vec<T>,
        convert: fn([u8; N]) -> T,
    ) -> Result<(), NpyError> {
        if cfg!(target_endian = "little") && size_of::<T>() == N {
            self.reserve(out, n)?;
            out.resize(n, T::zeroed());
            self.read_bytes(bytemuck::cast_slice_mut(out.as_mut_slice()), offset)
        } else {
            self.read_convert(offset, n, out, convert)
        }
    }

    /// Reads `n` elements of `N` bytes each, converting them with `convert`, through a scratch
    /// buffer of at most [`SCRATCH_BYTES`].
    fn read_convert<T, const N: usize>(
        &self,
        offset: u64,
        n: usize,
        out: &mut Vec<T>,
        convert: impl Fn([u8; N]) -> T,
    ) -> Result<(), NpyError> {
        self.reserve(out, n)?;
        let per_chunk = (SCRATCH_BYTES / N).max(1);
        let mut scratch = vec![0u8; per_chunk.min(n) * N];
        let (mut done, mut pos) = (0, offset);
        while done < n {
            let k = per_chunk.min(n - done);
            let buf = &mut scratch[..k * N];
            self.read_bytes(buf, pos)?;
            let (elements, _) = buf.as_chunks::<N>();
            out.extend(elements.iter().map(|&b| convert(b)));
            done += k;
            pos += (k * N) as u64;
        }
        Ok(())
    }
}

/// Opens `path` for reading without blocking: a FIFO with no writer would otherwise wait in
/// `open` forever. The caller refuses anything but a regular file, on which `O_NONBLOCK` has
/// no effect.
#[cfg(unix)]
fn open_without_waiting(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_without_waiting(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Reads and parses the header of an open file of `file_len` bytes, reading no more than the
/// preamble and the header length it declares (itself capped and checked against the file).
fn read_header(file: &File, path: &Path, file_len: u64) -> Result<NpyHeader, NpyError> {
    let mut pre = [0u8; 12];
    let pre_len = pre.len().min(usize::try_from(file_len).unwrap_or(usize::MAX));
    let pre = &mut pre[..pre_len];
    read_exact_at(file, pre, 0).map_err(|e| NpyError::io(path, "read", e))?;
    let (start, len) = preamble(pre).map_err(|e| e.into_npy(path))?;
    let header_end = start + len;
    if (header_end as u64) > file_len {
        let detail = format!("header cut short: the file has {file_len} bytes, the header needs {header_end}");
        return Err(NpyError::BadHeader { file: file_label(path), detail });
    }
    let mut bytes = vec![0u8; header_end];
    read_exact_at(file, &mut bytes, 0).map_err(|e| NpyError::io(path, "read", e))?;
    parse_header(&bytes).map_err(|e| e.into_npy(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::testing::{dict, f32_bytes, npy, open_err, save};
    use tempfile::TempDir;

    #[test]
    fn bad_files_name_the_file() {
        let dir = TempDir::new().unwrap();
        let (err, msg) = open_err(&dir, "cut.npy", &npy(1, &dict("<f4", "(10, 100)"), 64, &[0; 1200]));
        assert!(matches!(err, NpyError::Truncated { actual: 1200, expected: 4000, .. }), "{msg}");
        assert_eq!(msg, "cut.npy: data is cut short: 1200 bytes of 4000");
        let (err, _) = open_err(&dir, "text.npy", b"a,b,c\n1,2,3\n");
        assert!(matches!(err, NpyError::NotNpy { .. }));
        let (err, _) = open_err(&dir, "empty.npy", b"");
        assert!(matches!(err, NpyError::NotNpy { .. }));
        let header_cut = npy(1, &dict("<f4", "(1,)"), 64, &[]);
        let (err, msg) = open_err(&dir, "hcut.npy", &header_cut[..30]);
        assert!(matches!(err, NpyError::BadHeader { .. }) && msg.contains("cut short"), "{msg}");
        let (err, msg) = open_err(&dir, "cube.npy", &npy(1, &dict("<f4", "(1, 1, 1)"), 64, &[0; 4]));
        assert!(matches!(err, NpyError::Shape { .. }) && msg.contains("wrong shape"), "{msg}");
        let (err, _) = open_err(&dir, "scalar.npy", &npy(1, &dict("<f4", "()"), 64, &[0; 4]));
        assert!(matches!(err, NpyError::Shape { .. }));
        let err = NpyFile::open(dir.path().join("missing.npy")).unwrap_err();
        assert!(matches!(err, NpyError::Io { .. }) && err.is_bad_input());
        assert!(err.to_string().starts_with("missing.npy: cannot open: "), "{err}");
        let sub = dir.path().join("sub.npy");
        std::fs::create_dir(&sub).unwrap();
        assert!(NpyFile::open(&sub).unwrap_err().to_string().starts_with("sub.npy: "));
        let shape = NpyError::wrong_shape(Path::new("/x/y.npy"), "need 4 labels, got 3");
        assert_eq!(shape.to_string(), "y.npy: wrong shape: need 4 labels, got 3");
    }

    #[test]
    fn reads_every_integer_label_dtype() {
        let dir = TempDir::new().unwrap();
        let cases: [(&str, Vec<u8>, Vec<i64>); 7] = [
            ("|u1", vec![0, 7, 255], vec![0, 7, 255]),
            ("<u1", vec![0, 7, 255], vec![0, 7, 255]),
            ("|i1", vec![0, 0x7f, 0x80], vec![0, 127, -128]),
            ("<u2", [0u16, 300, u16::MAX].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![0, 300, 65535]),
            ("<u4", [1u32, 70000, u32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![1, 70000, 4294967295]),
            ("<i4", [-1i32, 5, i32::MIN].iter().flat_map(|v| v.to_le_bytes()).collect(), vec![-1, 5, -2147483648]),
            (
                "<i8",
                [-100i64, i64::MAX, i64::MIN].iter().flat_map(|v| v.to_le_bytes()).collect(),
                vec![-100, i64::MAX, i64::MIN],
            ),
        ];
        for (descr, data, want) in cases {
            let f = NpyFile::open(save(&dir, "y.npy", &npy(1, &dict(descr, "(3,)"), 64, &data))).unwrap();
            assert!(!f.dtype().is_float());
            assert_eq!((f.rows(), f.cols(), f.len(), f.ndim()), (3, 1, 3, 1));
            let mut out = vec![99];
            f.read_labels(0, 3, &mut out).unwrap();
            assert_eq!(out, want, "{descr}");
            f.read_labels(1, 2, &mut out).unwrap();
            assert_eq!(out, want[1..], "{descr}");
            let err = f.read_f32(0, 1, &mut Vec::new()).unwrap_err().to_string();
            assert!(err.starts_with("y.npy: values must be floats"), "{err}");
        }
    }

    #[test]
    fn reads_every_float_dtype() {
        let dir = TempDir::new().unwrap();
        let want = [1.5f32, -2.25, 0.0, 65504.0];
        let f2: Vec<u8> = want.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
        let f8: Vec<u8> = [1.5f64, -2.25, 1e-300, 65504.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        for (descr, data) in [("<f2", f2), ("<f4", f32_bytes(&want)), ("<f8", f8)] {
            let f = NpyFile::open(save(&dir, "x.npy", &npy(2, &dict(descr, "(2, 2)"), 64, &data))).unwrap();
            assert!(f.dtype().is_float());
            assert_eq!((f.rows(), f.cols(), f.shape()), (2, 2, &[2u64, 2][..]));
            let mut out = Vec::new();
            f.read_f32(0, 2, &mut out).unwrap();
            assert_eq!(out, want, "{descr}");
            f.read_f32(1, 1, &mut out).unwrap();
            assert_eq!(out, want[2..], "{descr}");
            let err = f.read_labels(0, 1, &mut Vec::new()).unwrap_err().to_string();
            assert_eq!(err, format!("x.npy: labels must be integers, got {descr}"));
        }
        let f8 = npy(1, &dict("<f8", "(1,)"), 64, &0.1f64.to_le_bytes());
        let mut out = Vec::new();
        NpyFile::open(save(&dir, "r.npy", &f8)).unwrap().read_f32(0, 1, &mut out).unwrap();
        assert_eq!(out, [0.1f32]);
    }

    #[test]
    fn reads_half_precision_raw() {
        let dir = TempDir::new().unwrap();
        let halves: Vec<f16> = [0.5f32, -3.0, 1e-7, f32::INFINITY].iter().map(|&v| f16::from_f32(v)).collect();
        let data: Vec<u8> = halves.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f = NpyFile::open(save(&dir, "h.npy", &npy(3, &dict("<f2", "(4,)"), 64, &data))).unwrap();
        let mut out = Vec::new();
        f.read_f16_raw(0, 4, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            halves.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let f4 = NpyFile::open(save(&dir, "g.npy", &npy(1, &dict("<f4", "(1,)"), 64, &[0; 4]))).unwrap();
        let err = f4.read_f16_raw(0, 1, &mut out).unwrap_err().to_string();
        assert!(err.starts_with("g.npy: expected <f2"), "{err}");
    }

    #[test]
    fn reads_past_the_end_are_errors() {
        let dir = TempDir::new().unwrap();
        let f = NpyFile::open(save(&dir, "x.npy", &npy(1, &dict("<f4", "(3, 2)"), 64, &[0; 24]))).unwrap();
        let mut out = Vec::new();
        f.read_f32(3, 0, &mut out).unwrap();
        assert!(out.is_empty());
        let err = f.read_f32(2, 2, &mut out).unwrap_err();
        assert!(matches!(err, NpyError::OutOfRange { first: 2, end: 4, rows: 3, .. }), "{err}");
        assert!(f.read_f32(u64::MAX, 2, &mut out).is_err());
    }

    #[test]
    fn chunked_reads_equal_a_one_shot_read() {
        let dir = TempDir::new().unwrap();
        let (rows, cols) = (1001usize, 300usize);
        let values: Vec<f64> = (0..rows * cols).map(|i| (i as f64).sin() * 1e3).collect();
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let path = save(&dir, "big.npy", &npy(1, &dict("<f8", &format!("({rows}, {cols})")), 64, &data));
        let f = NpyFile::open(&path).unwrap();
        let mut whole = Vec::new();
        f.read_f32(0, rows, &mut whole).unwrap();
        assert_eq!(whole, values.iter().map(|&v| v as f32).collect::<Vec<_>>());
        let (mut chunked, mut chunk) = (Vec::new(), Vec::new());
        let mut first = 0;
        while first < rows {
            let n = 37.min(rows - first);
            f.read_f32(first as u64, n, &mut chunk).unwrap();
            assert_eq!(chunk.len(), n * cols);
            chunked.extend_from_slice(&chunk);
            first += n;
        }
        assert_eq!(chunked, whole);
        assert!(chunk.capacity() < 2 * 37 * cols, "the chunk buffer is reused, not grown");
    }

    #[test]
    fn a_file_that_shrinks_while_read_is_cut_short() {
        let dir = TempDir::new().unwrap();
        let values: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let path = save(&dir, "x.npy", &npy(1, &dict("<f4", "(10, 4)"), 64, &f32_bytes(&values)));
        let f = NpyFile::open(&path).unwrap();
        let mut out = Vec::new();
        f.read_f32(0, 10, &mut out).unwrap();
        assert_eq!(out, values);
        let cut = f.header().data_offset + 20;
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let err = f.read_f32(2, 8, &mut out).unwrap_err();
        assert!(matches!(err, NpyError::Truncated { actual: 20, expected: 160, .. }), "{err}");
        assert!(err.is_bad_input());
        assert_eq!(err.to_string(), "x.npy: data is cut short: 20 bytes of 160");
    }

    #[cfg(unix)]
    #[test]
    #[allow(unsafe_code)]
    fn special_and_unreachable_inputs_are_bad_input() {
        let dir = TempDir::new().unwrap();
        let fifo = dir.path().join("pipe.npy");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = NpyFile::open(&fifo).unwrap_err();
        assert!(matches!(err, NpyError::NotNpy { .. }) && err.is_bad_input(), "{err}");
        std::os::unix::fs::symlink(dir.path().join("b.npy"), dir.path().join("a.npy")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.npy"), dir.path().join("b.npy")).unwrap();
        let err = NpyFile::open(dir.path().join("a.npy")).unwrap_err();
        assert!(matches!(err, NpyError::Io { .. }) && err.is_bad_input(), "{err}");
        let plain = save(&dir, "plain", b"x");
        let err = NpyFile::open(plain.join("x.npy")).unwrap_err();
        assert!(matches!(err, NpyError::Io { .. }) && err.is_bad_input(), "{err}");
        let oom = NpyError::OutOfMemory { file: "x.npy".into(), bytes: 1 << 40 };
        assert!(!oom.is_bad_input());
    }
}
