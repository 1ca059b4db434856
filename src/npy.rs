//! Streaming reader and writer for NumPy `.npy` files.
//!
//! The format (numpy.lib.format), as handled here:
//!
//! ```text
//! offset 0        magic b"\x93NUMPY"
//! offset 6        version: major, minor = 1.0, 2.0 or 3.0
//! offset 8        header length: u16 little-endian (1.0) or u32 little-endian (2.0, 3.0)
//! offset 10 / 12  header: a Python dict literal, padded with spaces and ended by '\n'
//!                 {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
//! data_offset     = 10 / 12 + header length (NumPy pads it to a multiple of 64, older
//!                   versions to 16; any padding is accepted), then the elements in C order
//! ```
//!
//! Accepted element types: `<f2`, `<f4`, `<f8` (floats) and `|i1`, `|u1`, `<u2`, `<u4`,
//! `<i4`, `<i8` (integer labels; `<i1`/`<u1` too). Fortran order, big-endian data, booleans,
//! objects, strings and structured dtypes are errors. The dict may list its keys in any order,
//! with any whitespace and a trailing comma; shapes are `()`, `(5,)`, `(3, 4)` and so on
//! (Python 2's `3L` suffix is accepted). Headers over [`MAX_HEADER_LEN`] bytes are refused.
//!
//! Reading streams: [`NpyFile::open`] reads only the header, and the `read_*` methods read the
//! rows asked for with positioned reads into a caller-provided vector, so memory stays bounded by
//! the chunk however large the file. Nothing in a file's content can make this module panic or
//! allocate more than the requested rows plus a fixed scratch buffer.
//!
//! An input must be a regular file: it is opened without waiting (a FIFO is refused at once, not
//! waited on), and a file that shrinks while it is read is reported as cut short.
//!
//! Writing ([`NpyWriter`]) produces `<f4` arrays through a temporary file in the target's
//! directory that is renamed onto the target only when every element has been written (an
//! unnamed one on Linux, so nothing is left whatever stops the process); a special file such as
//! `/dev/null` or a FIFO is written in place, a directory is refused.

mod sink;

pub use sink::remove_temporary_files;

use half::f16;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The largest header (the dict text after the preamble) accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// The most dimensions a shape may have (NumPy's own limit).
pub const MAX_DIMS: usize = 64;

/// The bytes read at a time when a read converts elements (f16/f64 to f32, integers to i64).
const SCRATCH_BYTES: usize = 1 << 20;

/// The descriptors accepted, for error messages.
const ACCEPTED: &str = "<f2, <f4, <f8 (floats); |i1, |u1, <u2, <u4, <i4, <i8 (integer labels)";

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

    fn io(path: &Path, action: &'static str, error: io::Error) -> NpyError {
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
fn file_label(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// An element type this crate reads, by its NumPy descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpyDType {
    /// `<f2`, IEEE half precision.
    F16,
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
    /// `|i1` (also `<i1`).
    I8,
    /// `|u1` (also `<u1`).
    U8,
    /// `<u2`.
    U16,
    /// `<u4`.
    U32,
    /// `<i4`.
    I32,
    /// `<i8`.
    I64,
}

impl NpyDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDType::I8 | NpyDType::U8 => 1,
            NpyDType::F16 | NpyDType::U16 => 2,
            NpyDType::F32 | NpyDType::U32 | NpyDType::I32 => 4,
            NpyDType::F64 | NpyDType::I64 => 8,
        }
    }

    /// Whether the type is a float (`<f2`, `<f4`, `<f8`).
    pub fn is_float(self) -> bool {
        matches!(self, NpyDType::F16 | NpyDType::F32 | NpyDType::F64)
    }

    /// The descriptor NumPy writes for the type, e.g. `<f4` or `|u1`.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDType::F16 => "<f2",
            NpyDType::F32 => "<f4",
            NpyDType::F64 => "<f8",
            NpyDType::I8 => "|i1",
            NpyDType::U8 => "|u1",
            NpyDType::U16 => "<u2",
            NpyDType::U32 => "<u4",
            NpyDType::I32 => "<i4",
            NpyDType::I64 => "<i8",
        }
    }

    /// The type for a descriptor, or `None` if it is not accepted.
    pub fn from_descr(descr: &str) -> Option<NpyDType> {
        Some(match descr {
            "<f2" => NpyDType::F16,
            "<f4" => NpyDType::F32,
            "<f8" => NpyDType::F64,
            "|i1" | "<i1" => NpyDType::I8,
            "|u1" | "<u1" => NpyDType::U8,
            "<u2" => NpyDType::U16,
            "<u4" => NpyDType::U32,
            "<i4" => NpyDType::I32,
            "<i8" => NpyDType::I64,
            _ => return None,
        })
    }
}

impl std::fmt::Display for NpyDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.descr())
    }
}

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// The element type.
    pub dtype: NpyDType,
    /// The shape, outermost dimension first (C order); empty for a scalar.
    pub shape: Vec<u64>,
    /// Where the data starts: the preamble plus the header length.
    pub data_offset: u64,
}

/// Why a header was refused, before it is tied to a file name.
#[derive(Debug)]
enum HeaderError {
    NotNpy(String),
    Bad(String),
    DType { descr: String, detail: String },
    Fortran,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::NotNpy(d) => write!(f, "not a .npy file: {d}"),
            HeaderError::Bad(d) => write!(f, "bad .npy header: {d}"),
            HeaderError::DType { descr, detail } => {
                write!(f, "unsupported dtype {descr} ({detail}); accepted: {ACCEPTED}")
            }
            HeaderError::Fortran => f.write_str("Fortran-order arrays are not supported"),
        }
    }
}

impl HeaderError {
    fn into_npy(self, path: &Path) -> NpyError {
        let file = file_label(path);
        match self {
            HeaderError::NotNpy(detail) => NpyError::NotNpy { file, detail },
            HeaderError::Bad(detail) => NpyError::BadHeader { file, detail },
            HeaderError::DType { descr, detail } => NpyError::UnsupportedDType { file, descr, detail },
            HeaderError::Fortran => NpyError::FortranOrder { file },
        }
    }
}

fn bad<T>(detail: impl Into<String>) -> Result<T, HeaderError> {
    Err(HeaderError::Bad(detail.into()))
}

impl NpyHeader {
    /// Parses the header at the start of `bytes` (the first bytes of a file: at least
    /// `data_offset` of them; any bytes after the header are ignored).
    ///
    /// Checks the magic, the version (1.0, 2.0, 3.0), the header length (at most
    /// [`MAX_HEADER_LEN`]), the dict and its three keys, the dtype (see [`NpyDType`]), that the
    /// order is C, and that neither the element count nor the byte count of the shape overflows
    /// `u64`. Any shape rank up to [`MAX_DIMS`] parses, scalars `()` included. Never panics, and
    /// allocates at most the shape vector.
    pub fn parse(bytes: &[u8]) -> Result<NpyHeader, String> {
        parse_header(bytes).map_err(|e| e.to_string())
    }

    /// The number of elements (the product of the shape; 1 for a scalar). Saturates at
    /// `u64::MAX` for a hand-built header whose shape overflows (parsed ones never do).
    pub fn elements(&self) -> u64 {
        self.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).unwrap_or(u64::MAX)
    }

    /// The number of data bytes the shape and dtype call for (saturating like [`Self::elements`]).
    pub fn data_bytes(&self) -> u64 {
        self.elements().saturating_mul(self.dtype.size() as u64)
    }
}

/// The preamble: returns (where the dict text starts, its length).
fn preamble(bytes: &[u8]) -> Result<(usize, usize), HeaderError> {
    if !bytes.starts_with(MAGIC) {
        let detail = if MAGIC.starts_with(bytes) {
            format!("{} bytes long, too short for the .npy magic", bytes.len())
        } else {
            "it does not start with the .npy magic \\x93NUMPY".to_string()
        };
        return Err(HeaderError::NotNpy(detail));
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(HeaderError::NotNpy("the file ends inside the preamble".into())),
    };
    if !matches!(major, 1..=3) || minor != 0 {
        return bad(format!("format version {major}.{minor}; 1.0, 2.0 and 3.0 are supported"));
    }
    let (start, len) = if major == 1 {
        (10, bytes.get(8..10).and_then(|b| b.try_into().ok()).map(|b| usize::from(u16::from_le_bytes(b))))
    } else {
        (12, bytes.get(8..12).and_then(|b| b.try_into().ok()).map(|b| u32::from_le_bytes(b) as usize))
    };
    let Some(len) = len else {
        return Err(HeaderError::NotNpy("the file ends inside the preamble".into()));
    };
    if len > MAX_HEADER_LEN {
        return bad(format!("header length {len} is over the {MAX_HEADER_LEN}-byte limit"));
    }
    Ok((start, len))
}

fn parse_header(bytes: &[u8]) -> Result<NpyHeader, HeaderError> {
    let (start, len) = preamble(bytes)?;
    let end = start + len;
    let Some(text) = bytes.get(start..end) else {
        return bad(format!("header cut short: {} bytes of {end}", bytes.len()));
    };
    let dict = parse_dict(text)?;
    if dict.fortran_order {
        return Err(HeaderError::Fortran);
    }
    let dtype = dtype_from_descr(dict.descr)?;
    let elements = dict.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let data_offset = end as u64;
    let data_end =
        elements.and_then(|n| n.checked_mul(dtype.size() as u64)).and_then(|bytes| bytes.checked_add(data_offset));
    if data_end.is_none() {
        return bad(format!("shape {} overflows 64 bits", shape_literal(&dict.shape)));
    }
    Ok(NpyHeader { dtype, shape: dict.shape, data_offset })
}

fn dtype_from_descr(descr: &[u8]) -> Result<NpyDType, HeaderError> {
    let text = String::from_utf8_lossy(descr);
    if let Some(dtype) = NpyDType::from_descr(&text) {
        return Ok(dtype);
    }
    let little = text.strip_prefix('>').map(|rest| format!("<{rest}"));
    let detail = match little.as_deref() {
        Some(le) if NpyDType::from_descr(le).is_some() => {
            format!("big-endian data is not supported; save a little-endian copy with a.astype('{le}')")
        }
        _ if text.ends_with("b1") => "booleans are not supported".to_string(),
        _ if text.ends_with('O') => "object arrays are not supported".to_string(),
        _ => "not a supported element type".to_string(),
    };
    Err(HeaderError::DType { descr: format!("'{text}'"), detail })
}

/// The three values of the header dict.
struct Dict<'a> {
    descr: &'a [u8],
    fortran_order: bool,
    shape: Vec<u64>,
}

/// A cursor over the dict text. The grammar is flat (no nesting beyond the shape tuple), so it
/// is parsed without recursion.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `b` if it comes next.
    fn eat(&mut self, b: u8) -> bool {
        self.skip_ws();
        let found = self.text.get(self.pos) == Some(&b);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, b: u8, context: &str) -> Result<(), HeaderError> {
        if self.eat(b) { Ok(()) } else { bad(format!("expected '{}' {context}, found {}", b as char, self.found())) }
    }

    /// A short description of what is at the cursor, for errors.
    fn found(&self) -> String {
        match self.text.get(self.pos..) {
            Some([]) | None => "the end of the header".to_string(),
            Some(rest) => {
                let shown = &rest[..rest.len().min(12)];
                format!("{:?} at byte {}", String::from_utf8_lossy(shown), self.pos)
            }
        }
    }

    /// A quoted string without escapes, `'...'` or `"..."`.
    fn string(&mut self, context: &str) -> Result<&'a [u8], HeaderError> {
        self.skip_ws();
        let quote = match self.text.get(self.pos) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return bad(format!("expected a quoted string {context}, found {}", self.found())),
        };
        let rest = self.text.get(self.pos + 1..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == quote || b == b'\\' || b == b'\n') else {
            return bad(format!("unterminated string {context}"));
        };
        if rest.get(len) != Some(&quote) {
            return bad(format!("unsupported character in a string {context}"));
        }
        self.pos += len + 2;
        Ok(&rest[..len])
    }

    /// A run of identifier characters (for True / False).
    fn word(&mut self) -> &'a [u8] {
        self.skip_ws();
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let len = rest.iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        self.pos += len;
        &rest[..len]
    }

    /// A non-negative decimal integer, with an optional Python 2 `L` suffix.
    fn int(&mut self) -> Result<u64, HeaderError> {
        self.skip_ws();
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return bad(format!("expected a non-negative integer in the shape, found {}", self.found()));
        }
        let mut value = 0u64;
        for &d in &rest[..digits] {
            value = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or_else(|| {
                HeaderError::Bad(format!("shape entry {} overflows 64 bits", String::from_utf8_lossy(&rest[..digits])))
            })?;
        }
        self.pos += digits;
        if let Some(b'L' | b'l') = self.text.get(self.pos) {
            self.pos += 1;
        }
        Ok(value)
    }

    /// A tuple of integers: `()`, `(5,)`, `(3, 4)`, `(3, 4,)`.
    fn shape(&mut self) -> Result<Vec<u64>, HeaderError> {
        self.expect(b'(', "to open the shape tuple")?;
        let mut dims = Vec::new();
        if self.eat(b')') {
            return Ok(dims);
        }
        loop {
            if dims.len() == MAX_DIMS {
                return bad(format!("the shape has more than {MAX_DIMS} dimensions"));
            }
            dims.push(self.int()?);
            if self.eat(b')') {
                if dims.len() == 1 {
                    return bad("the shape (n) is not a tuple; NumPy writes (n,)");
                }
                return Ok(dims);
            }
            self.expect(b',', "or ')' in the shape")?;
            if self.eat(b')') {
                return Ok(dims);
            }
        }
    }

    /// The descr value: a string; a list (a structured dtype) is refused.
    fn descr(&mut self) -> Result<&'a [u8], HeaderError> {
        self.skip_ws();
        if self.text.get(self.pos) == Some(&b'[') {
            let detail = "structured dtypes are not supported".to_string();
            return Err(HeaderError::DType { descr: "[...]".to_string(), detail });
        }
        self.string("as the descr value")
    }

    fn boolean(&mut self) -> Result<bool, HeaderError> {
        match self.word() {
            b"True" => Ok(true),
            b"False" => Ok(false),
            _ => bad("fortran_order must be True or False"),
        }
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, key: &str) -> Result<(), HeaderError> {
    if slot.replace(value).is_some() { bad(format!("the key '{key}' appears twice")) } else { Ok(()) }
}

fn parse_dict(text: &[u8]) -> Result<Dict<'_>, HeaderError> {
    let mut c = Cursor { text, pos: 0 };
    c.expect(b'{', "at the start of the header")?;
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    while !c.eat(b'}') {
        let key = c.string("as a key")?;
        c.expect(b':', "after a key")?;
        match key {
            b"descr" => set_once(&mut descr, c.descr()?, "descr")?,
            b"fortran_order" => set_once(&mut fortran_order, c.boolean()?, "fortran_order")?,
            b"shape" => set_once(&mut shape, c.shape()?, "shape")?,
            other => return bad(format!("unexpected key '{}'", String::from_utf8_lossy(other))),
        }
        if !c.eat(b',') {
            c.expect(b'}', "or ',' after a value")?;
            break;
        }
    }
    c.skip_ws();
    if c.pos < text.len() {
        return bad(format!("unexpected {} after the dict", c.found()));
    }
    match (descr, fortran_order, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Dict { descr, fortran_order, shape }),
        (None, ..) => bad("the key 'descr' is missing"),
        (_, None, _) => bad("the key 'fortran_order' is missing"),
        (.., None) => bad("the key 'shape' is missing"),
    }
}

/// The Python literal for a shape: `()`, `(5,)`, `(3, 4)`.
fn shape_literal(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

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
    fn span(&self, first_row: u64, rows: usize) -> Result<(u64, usize), NpyError> {
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
            let len = self.file.metadata().map_or(0, |m| m.len());
            let (actual, expected) = (len.saturating_sub(self.header.data_offset), self.header.data_bytes());
            NpyError::Truncated { file: file_label(&self.path), actual, expected }
        })
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

/// A Rust type stored as one NumPy element type.
pub trait NpyElement: bytemuck::Pod {
    /// The element type written for it.
    const DTYPE: NpyDType;
}

macro_rules! npy_element {
    ($($t:ty => $d:ident),*) => { $(impl NpyElement for $t { const DTYPE: NpyDType = NpyDType::$d; })* };
}
npy_element!(f16 => F16, f32 => F32, f64 => F64, i8 => I8, u8 => U8, u16 => U16, u32 => U32, i32 => I32, i64 => I64);

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

/// The preamble and header of a C-order array of `dtype` and `shape`: format 1.0 if the header
/// fits its u16 length, else 2.0; padded with spaces so the data starts at a multiple of 64.
fn header_bytes(dtype: NpyDType, shape: &[u64]) -> Result<Vec<u8>, String> {
    let descr = dtype.descr();
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}", shape_literal(shape));
    for (major, preamble_len) in [(1u8, 10usize), (2, 12)] {
        let total = (preamble_len + dict.len() + 1).next_multiple_of(64);
        let header_len = total - preamble_len;
        let len_bytes = if major == 1 {
            let Ok(len) = u16::try_from(header_len) else { continue };
            len.to_le_bytes().to_vec()
        } else {
            let len = u32::try_from(header_len).map_err(|_| "the header is too long".to_string())?;
            len.to_le_bytes().to_vec()
        };
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&[major, 0]);
        bytes.extend_from_slice(&len_bytes);
        bytes.extend_from_slice(dict.as_bytes());
        bytes.resize(total - 1, b' ');
        bytes.push(b'\n');
        return Ok(bytes);
    }
    Err("the header is too long".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    /// A `.npy` image: preamble for `major`, `dict` padded with spaces and a newline so the data
    /// starts at a multiple of `align`, then `data`.
    fn npy(major: u8, dict: &str, align: usize, data: &[u8]) -> Vec<u8> {
        let pre = if major == 1 { 10 } else { 12 };
        let total = (pre + dict.len() + 1).next_multiple_of(align);
        let len = total - pre;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[major, 0]);
        if major == 1 {
            bytes.extend_from_slice(&u16::try_from(len).unwrap().to_le_bytes());
        } else {
            bytes.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
        }
        bytes.extend_from_slice(dict.as_bytes());
        bytes.resize(total - 1, b' ');
        bytes.push(b'\n');
        bytes.extend_from_slice(data);
        bytes
    }

    fn dict(descr: &str, shape: &str) -> String {
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
    }

    fn save(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn open_err(dir: &TempDir, name: &str, bytes: &[u8]) -> (NpyError, String) {
        let err = NpyFile::open(save(dir, name, bytes)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{name}: ")), "{msg}");
        (err, msg)
    }

    #[test]
    fn parses_versions_1_2_3() {
        for major in [1, 2, 3] {
            let bytes = npy(major, &dict("<f4", "(3, 4)"), 64, &[]);
            let h = NpyHeader::parse(&bytes).unwrap();
            assert_eq!(h, NpyHeader { dtype: NpyDType::F32, shape: vec![3, 4], data_offset: 128 });
            assert_eq!((h.elements(), h.data_bytes()), (12, 48));
        }
    }

    #[test]
    fn parses_16_byte_padding_and_loose_syntax() {
        let bytes = npy(1, &dict("<i8", "(5,)"), 16, &[]);
        let h = NpyHeader::parse(&bytes).unwrap();
        assert_eq!((h.dtype, h.shape.clone(), h.data_offset % 16), (NpyDType::I64, vec![5], 0));
        let loose = "{ \"shape\" :(7L ,2,),\t'fortran_order':False ,\n'descr':'|u1'}";
        let h = NpyHeader::parse(&npy(1, loose, 64, &[])).unwrap();
        assert_eq!((h.dtype, h.shape), (NpyDType::U8, vec![7, 2]));
        let h = NpyHeader::parse(&npy(1, &dict("<f8", "()"), 64, &[])).unwrap();
        assert_eq!((h.shape.len(), h.elements()), (0, 1));
        let h = NpyHeader::parse(&npy(1, "{'descr':'<f2','fortran_order':False,'shape':(0, 9)}", 64, &[])).unwrap();
        assert_eq!((h.dtype, h.elements()), (NpyDType::F16, 0));
    }

    #[test]
    fn rejects_malformed_headers() {
        let cases = [
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (5), }", "not a tuple"),
            ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", "twice"),
            ("{'descr': '<f4', 'shape': (5,), }", "'fortran_order' is missing"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), 'x': 1}", "unexpected key"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), } x", "after the dict"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (5,), }", "True or False"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-5,), }", "non-negative"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': [5], }", "expected '('"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "overflows"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", "overflows"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4611686018427387904), }", "overflows"),
            ("{'descr': '<f4, 'fortran_order': False, 'shape': (5,), }", "expected"),
            ("", "expected '{'"),
        ];
        for (text, want) in cases {
            let err = NpyHeader::parse(&npy(1, text, 64, &[])).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let many = format!("({})", vec!["1"; MAX_DIMS + 1].join(", "));
        assert!(NpyHeader::parse(&npy(1, &dict("<f4", &many), 64, &[])).unwrap_err().contains("dimensions"));
        let mut v4 = npy(1, &dict("<f4", "(1,)"), 64, &[]);
        v4[6] = 4;
        assert!(NpyHeader::parse(&v4).unwrap_err().contains("version 4.0"));
        v4[6] = 1;
        v4[7] = 1;
        assert!(NpyHeader::parse(&v4).unwrap_err().contains("version 1.1"));
        let mut long = npy(2, &dict("<f4", "(1,)"), 64, &[]);
        long[8..12].copy_from_slice(&(MAX_HEADER_LEN as u32 + 1).to_le_bytes());
        assert!(NpyHeader::parse(&long).unwrap_err().contains("limit"));
        let short = npy(1, &dict("<f4", "(1,)"), 64, &[]);
        assert!(NpyHeader::parse(&short[..40]).unwrap_err().contains("cut short"));
        assert!(NpyHeader::parse(b"\x93NUM").unwrap_err().contains("too short"));
        assert!(NpyHeader::parse(b"PK\x03\x04 zip").unwrap_err().contains("magic"));
    }

    #[test]
    fn rejects_fortran_big_endian_and_odd_dtypes() {
        let dir = TempDir::new().unwrap();
        let fortran = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }";
        let (err, _) = open_err(&dir, "f.npy", &npy(1, fortran, 64, &[0; 16]));
        assert!(matches!(err, NpyError::FortranOrder { .. }));
        for (descr, want) in [
            (">f4", "big-endian"),
            (">i8", "a.astype('<i8')"),
            ("|b1", "booleans"),
            ("|O", "object"),
            ("<i2", "not a supported"),
            ("<u8", "not a supported"),
            ("<U5", "not a supported"),
        ] {
            let (err, msg) = open_err(&dir, "d.npy", &npy(1, &dict(descr, "(2,)"), 64, &[0; 64]));
            assert!(matches!(err, NpyError::UnsupportedDType { .. }), "{descr}: {msg}");
            assert!(msg.contains(want) && msg.contains(descr) && msg.contains("accepted: <f2"), "{msg}");
        }
        let structured = "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }";
        let (err, msg) = open_err(&dir, "s.npy", &npy(1, structured, 64, &[0; 16]));
        assert!(matches!(err, NpyError::UnsupportedDType { .. }) && msg.contains("structured"), "{msg}");
    }

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
    fn writer_refuses_a_directory() {
        let dir = TempDir::new().unwrap();
        let sub = dir.path().join("sub.npy");
        std::fs::create_dir(&sub).unwrap();
        let err = NpyWriter::create(&sub, &[1]).unwrap_err();
        assert!(matches!(err, NpyError::Target { .. }) && err.is_bad_input(), "{err}");
        assert_eq!(err.to_string(), "sub.npy: cannot write an array here: it is a directory");
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
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

    #[test]
    fn long_headers_switch_to_version_2() {
        let shape = vec![1u64; 30000];
        let bytes = header_bytes(NpyDType::F32, &shape).unwrap();
        assert_eq!(bytes[6..8], [2, 0]);
        assert_eq!(bytes.len() % 64, 0);
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(len + 12, bytes.len());
        let short = header_bytes(NpyDType::F32, &[3, 4]).unwrap();
        assert_eq!((short.len(), &short[6..8]), (128, &[1u8, 0][..]));
    }
}
