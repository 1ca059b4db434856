//! Property tests for the `.npy` reader: valid headers parse back; headers and files built
//! valid and then damaged (bytes changed, cut short, garbage spliced in) give Ok or an error,
//! never a panic; and no allocation is larger than the file and the rows asked for justify, even
//! when a header declares an enormous shape.

#![cfg(feature = "cli")]
use proptest::prelude::*;
use proptest::sample::Index;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use xent::npy::{NpyDType, NpyError, NpyFile, NpyHeader};

/// Records the largest allocation made on the current thread.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: forwards every call to the system allocator unchanged; `note` does not allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc`, passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from this allocator, which is the system's: the caller's contract holds.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is the system's: the caller's contract holds.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// Allowance for error messages, the shape vector and other small bookkeeping.
const SMALL: usize = 64 << 10;

/// The pieces of a header, valid or not, before it is damaged.
#[derive(Clone, Debug)]
struct Spec {
    version: u8,
    descr: &'static str,
    fortran: bool,
    shape: Vec<u64>,
    key_order: Vec<usize>,
    spaced: bool,
    trailing_comma: bool,
    align: usize,
    data: Vec<u8>,
}

const DESCRS: [&str; 16] =
    ["<f4", "<f2", "<f8", "|u1", "|i1", "<u1", "<u2", "<u4", "<i4", "<i8", ">f4", "|b1", "<i2", "|O", "<U3", "f4"];

fn dim() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..12u64, 1 => Just(1 << 40), 1 => Just(u64::MAX), 1 => any::<u64>()]
}

/// The data bytes: mostly exactly what the shape needs (when that is small), else anything.
fn fill(descr: &str, shape: &[u64], exact: bool, seed: Vec<u8>) -> Vec<u8> {
    let size = NpyDType::from_descr(descr).map_or(4, |d| d.size() as u64);
    let needed = shape.iter().try_fold(size, |n, &d| n.checked_mul(d)).filter(|&n| n <= 4096);
    match needed {
        Some(needed) if exact && !seed.is_empty() => seed.iter().copied().cycle().take(needed as usize).collect(),
        _ => seed,
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (1..=3u8, prop::sample::select(&DESCRS[..]), prop::bool::weighted(0.1)),
        prop::collection::vec(dim(), 0..=3),
        Just(vec![0usize, 1, 2]).prop_shuffle(),
        (any::<bool>(), any::<bool>(), prop::sample::select(vec![16usize, 64])),
        (prop::bool::weighted(0.7), prop::collection::vec(any::<u8>(), 0..160)),
    )
        .prop_map(
            |((version, descr, fortran), shape, key_order, (spaced, trailing_comma, align), (exact, seed))| {
                let data = fill(descr, &shape, exact, seed);
                Spec { version, descr, fortran, shape, key_order, spaced, trailing_comma, align, data }
            },
        )
}

fn shape_literal(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The file image a spec describes.
fn build(spec: &Spec) -> Vec<u8> {
    let fortran = if spec.fortran { "True" } else { "False" };
    let items = [
        format!("'descr': '{}'", spec.descr),
        format!("'fortran_order': {fortran}"),
        format!("'shape': {}", shape_literal(&spec.shape)),
    ];
    let sep = if spec.spaced { ",\n  " } else { "," };
    let body = spec.key_order.iter().map(|&i| items[i].as_str()).collect::<Vec<_>>().join(sep);
    let dict = format!("{{{body}{}}}", if spec.trailing_comma { ", " } else { "" });
    let preamble = if spec.version == 1 { 10 } else { 12 };
    let total = (preamble + dict.len() + 1).next_multiple_of(spec.align);
    let len = total - preamble;
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend_from_slice(&[spec.version, 0]);
    if spec.version == 1 {
        bytes.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(len as u32).to_le_bytes());
    }
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    bytes.extend_from_slice(&spec.data);
    bytes
}

/// Ways to damage a file image.
#[derive(Clone, Debug)]
enum Damage {
    Nothing,
    SetBytes(Vec<(Index, u8)>),
    Truncate(Index),
    Splice(Index, Vec<u8>),
    HeaderLength(u32),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => Just(Damage::Nothing),
        4 => prop::collection::vec((any::<Index>(), any::<u8>()), 1..6).prop_map(Damage::SetBytes),
        2 => any::<Index>().prop_map(Damage::Truncate),
        2 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(i, g)| Damage::Splice(i, g)),
        1 => any::<u32>().prop_map(Damage::HeaderLength),
    ]
}

fn apply(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    match damage {
        Damage::Nothing => {}
        Damage::SetBytes(edits) => {
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
        }
        Damage::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Damage::Splice(at, garbage) => {
            let i = at.index(bytes.len());
            bytes.splice(i..i, garbage.iter().copied());
        }
        Damage::HeaderLength(len) => {
            if bytes[6] == 1 {
                bytes[8..10].copy_from_slice(&(*len as u16).to_le_bytes());
            } else {
                bytes[8..12].copy_from_slice(&len.to_le_bytes());
            }
        }
    }
    bytes
}

/// Opens `bytes` as a file and reads a few chunks the way a caller would, returning the largest
/// allocation made.
fn open_and_read(bytes: &[u8], first_chunk: usize) -> usize {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("fuzz.npy");
    std::fs::write(&path, bytes).unwrap();
    let (_, largest) = largest_allocation(|| {
        let Ok(file) = NpyFile::open(&path) else { return };
        assert!(file.ndim() == 1 || file.ndim() == 2);
        assert_eq!(file.len(), file.rows() * file.cols());
        let (mut floats, mut labels, mut halves) = (Vec::new(), Vec::new(), Vec::new());
        let last = file.rows().saturating_sub(1);
        for (first, rows) in [(0, first_chunk), (first_chunk as u64, 5), (last, 1), (last, 2), (u64::MAX, 1)] {
            let in_range = first.checked_add(rows as u64).is_some_and(|end| end <= file.rows());
            let f = file.read_f32(first, rows, &mut floats);
            let l = file.read_labels(first, rows, &mut labels);
            let h = file.read_f16_raw(first, rows, &mut halves);
            assert_eq!(f.is_ok(), in_range && file.dtype().is_float());
            assert_eq!(l.is_ok(), in_range && !file.dtype().is_float());
            assert_eq!(h.is_ok(), in_range && file.dtype() == NpyDType::F16);
            let elements = if in_range { rows * file.cols() as usize } else { 0 };
            let got = [(f, floats.len()), (l, labels.len()), (h, halves.len())];
            for (_, len) in got.iter().filter(|(r, _)| r.is_ok()) {
                assert_eq!(*len, elements);
            }
        }
    });
    largest
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn valid_headers_parse_back(spec in spec()) {
        let bytes = build(&spec);
        let parsed = NpyHeader::parse(&bytes);
        let dtype = NpyDType::from_descr(spec.descr);
        let fits = spec.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.map_or(1, |d| d.size() as u64)))
            .and_then(|n| n.checked_add(bytes.len() as u64))
            .is_some();
        match dtype {
            Some(dtype) if !spec.fortran && fits => {
                let header = parsed.map_err(TestCaseError::fail)?;
                prop_assert_eq!(header.dtype, dtype);
                prop_assert_eq!(&header.shape, &spec.shape);
                prop_assert_eq!(header.data_offset as usize, bytes.len() - spec.data.len());
                prop_assert_eq!(header.data_offset % 16, 0);
            }
            _ => prop_assert!(parsed.is_err()),
        }
    }

    #[test]
    fn damaged_headers_never_panic(spec in spec(), damage in damage()) {
        let bytes = apply(build(&spec), &damage);
        let (_, largest) = largest_allocation(|| NpyHeader::parse(&bytes));
        prop_assert!(largest <= SMALL, "parse allocated {} bytes", largest);
    }

    #[test]
    fn garbage_never_panics(magic in any::<bool>(), version in 0..5u8, tail in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = if magic { b"\x93NUMPY".to_vec() } else { Vec::new() };
        if magic {
            bytes.push(version);
        }
        bytes.extend_from_slice(&tail);
        let (_, largest) = largest_allocation(|| NpyHeader::parse(&bytes));
        prop_assert!(largest <= SMALL, "parse allocated {} bytes", largest);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn damaged_files_never_panic(spec in spec(), damage in damage(), first_chunk in 0..40usize) {
        let bytes = apply(build(&spec), &damage);
        let largest = open_and_read(&bytes, first_chunk);
        // Nothing larger than the header, the data present (widened to 8 bytes an element) and
        // small bookkeeping: a declared shape alone never sizes an allocation.
        prop_assert!(largest <= 8 * bytes.len() + SMALL, "{} bytes allocated for a {}-byte file", largest, bytes.len());
    }
}

/// A header declaring terabytes over a few bytes of data is refused at open, without allocating.
#[test]
fn huge_declared_shape_is_refused_without_allocating() {
    let spec = Spec {
        version: 1,
        descr: "<f4",
        fortran: false,
        shape: vec![1 << 40, 1 << 20],
        key_order: vec![0, 1, 2],
        spaced: true,
        trailing_comma: true,
        align: 64,
        data: vec![0; 100],
    };
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("huge.npy");
    std::fs::write(&path, build(&spec)).unwrap();
    let (result, largest) = largest_allocation(|| NpyFile::open(&path));
    let err = result.unwrap_err();
    assert!(matches!(err, NpyError::Truncated { actual: 100, expected, .. } if expected == 1 << 62), "{err}");
    assert!(largest <= SMALL, "{largest}");
}

/// A 64 GiB file (sparse: it takes no disk) is read a few rows at a time in bounded memory.
#[test]
fn reads_of_a_64_gib_file_are_bounded_by_the_request() {
    let (rows, cols) = (1u64 << 24, 1024u64);
    let spec = Spec {
        version: 1,
        descr: "<f4",
        fortran: false,
        shape: vec![rows, cols],
        key_order: vec![0, 1, 2],
        spaced: false,
        trailing_comma: true,
        align: 64,
        data: Vec::new(),
    };
    let header = build(&spec);
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("big.npy");
    std::fs::write(&path, &header).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let Ok(()) = file.set_len(header.len() as u64 + rows * cols * 4) else {
        eprintln!("skipped: this filesystem cannot hold a sparse 64 GiB file");
        return;
    };
    let (result, largest) = largest_allocation(|| {
        let npy = NpyFile::open(&path)?;
        let mut out = Vec::new();
        for first in [0, rows / 2, rows - 3] {
            npy.read_f32(first, 3, &mut out)?;
            assert_eq!(out, vec![0.0; 3 * cols as usize]);
        }
        Ok::<_, NpyError>(npy.len())
    });
    assert_eq!(result.unwrap(), 1 << 34);
    assert!(largest <= 3 * cols as usize * 4 + SMALL, "{largest}");
}
