//! Parsing and writing the header: the preamble and the dict literal that describes the array.

use super::NpyDType;
use super::error::{ACCEPTED, NpyError, file_label};
use std::path::Path;

pub(super) const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The largest header (the dict text after the preamble) accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// The most dimensions a shape may have (NumPy's own limit).
pub const MAX_DIMS: usize = 64;

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
pub(super) enum HeaderError {
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
    pub(super) fn into_npy(self, path: &Path) -> NpyError {
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
pub(super) fn preamble(bytes: &[u8]) -> Result<(usize, usize), HeaderError> {
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

pub(super) fn parse_header(bytes: &[u8]) -> Result<NpyHeader, HeaderError> {
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
pub(super) fn shape_literal(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The preamble and header of a C-order array of `dtype` and `shape`: format 1.0 if the header
/// fits its u16 length, else 2.0; padded with spaces so the data starts at a multiple of 64.
pub(super) fn header_bytes(dtype: NpyDType, shape: &[u64]) -> Result<Vec<u8>, String> {
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
    use crate::npy::NpyError;
    use crate::npy::testing::{dict, npy, open_err};
    use tempfile::TempDir;

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
