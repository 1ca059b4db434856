//! NumPy arrays as the library's host slices, borrowed without a copy where the dtype and
//! layout allow: C-contiguous float32 and float16 logits, and int32, int64, uint8, uint16
//! and uint32 labels. float64 is narrowed to float32 (a copy: the kernels read f32), a
//! chunk of rows at a time where the caller streams. Anything else is an input error
//! naming the argument.

use half::f16;
use numpy::{PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use std::sync::Arc;

use xent::{Floats, Labels, SharedBytes};

use crate::errors::input;

/// A float array, borrowed.
pub(crate) enum FloatArray<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, f16>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

/// Checks that `obj` is a C-contiguous NumPy array, naming `name` where it is not.
fn untyped<'a, 'py>(name: &str, obj: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    let array = obj.cast::<PyUntypedArray>().map_err(|_| input(format!("{name}: expected a NumPy array")))?;
    if !array.is_c_contiguous() {
        return Err(input(format!(
            "{name}: the array is not C-contiguous (strides {:?}); pass numpy.ascontiguousarray({name})",
            array.strides()
        )));
    }
    if !array.is_aligned() {
        return Err(input(format!("{name}: the array's data is not aligned; pass a copy (numpy.array({name}))")));
    }
    Ok(array)
}

impl<'py> FloatArray<'py> {
    /// The float array `obj` (float32, float16 or float64), or an input error naming `name`.
    pub(crate) fn new(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let array = untyped(name, obj)?;
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f32>>() {
            return Ok(FloatArray::F32(a));
        }
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f16>>() {
            return Ok(FloatArray::F16(a));
        }
        if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, f64>>() {
            return Ok(FloatArray::F64(a));
        }
        Err(input(format!(
            "{name}: dtype {} is not supported; pass float32, float16 or float64 (little-endian)",
            array.dtype()
        )))
    }

    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            FloatArray::F32(a) => a.shape().to_vec(),
            FloatArray::F16(a) => a.shape().to_vec(),
            FloatArray::F64(a) => a.shape().to_vec(),
        }
    }

    /// The element type's name, as NumPy spells it.
    pub(crate) fn dtype(&self) -> &'static str {
        match self {
            FloatArray::F32(_) => "<f4",
            FloatArray::F16(_) => "<f2",
            FloatArray::F64(_) => "<f8",
        }
    }

    /// Elements `start..end` as the kernels take them: borrowed, or narrowed from float64.
    pub(crate) fn range(&self, start: usize, end: usize) -> PyResult<Held<'_>> {
        let slice_err = |_| input("an array's elements are not contiguous");
        Ok(match self {
            FloatArray::F32(a) => Held::Borrowed(Floats::F32(&a.as_slice().map_err(slice_err)?[start..end])),
            FloatArray::F16(a) => Held::Borrowed(Floats::F16(&a.as_slice().map_err(slice_err)?[start..end])),
            FloatArray::F64(a) => {
                Held::Owned(a.as_slice().map_err(slice_err)?[start..end].iter().map(|&v| v as f32).collect())
            }
        })
    }

    /// Every element, borrowed whatever the dtype (float64 narrowed later, a range at a
    /// time, by [`Slices::range`]).
    pub(crate) fn slices(&self) -> PyResult<Slices<'_>> {
        let slice_err = |_| input("an array's elements are not contiguous");
        Ok(match self {
            FloatArray::F32(a) => Slices::F32(a.as_slice().map_err(slice_err)?),
            FloatArray::F16(a) => Slices::F16(a.as_slice().map_err(slice_err)?),
            FloatArray::F64(a) => Slices::F64(a.as_slice().map_err(slice_err)?),
        })
    }

    /// Every element.
    pub(crate) fn all(&self) -> PyResult<Held<'_>> {
        let n = self.shape().iter().product();
        self.range(0, n)
    }
}

/// A NumPy array's bytes shared with the device for as long as it reads them in place
/// (`xent::Stream::push_shared`): the array object is held, so its buffer lives.
struct SharedArray {
    _owner: Py<PyAny>,
    ptr: usize,
    len: usize,
}

impl AsRef<[u8]> for SharedArray {
    #[allow(unsafe_code)]
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr .. ptr + len` is the data of the C-contiguous array `_owner` holds,
        // taken from its borrowed slice; NumPy keeps an array's buffer while the array is
        // referenced (and refuses to resize one that other references see), and these bytes
        // are only read.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

/// An array's elements, borrowed (they can cross to a thread without the GIL).
#[derive(Clone, Copy)]
pub(crate) enum Slices<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    F64(&'a [f64]),
}

impl<'a> Slices<'a> {
    /// Elements `start..end` as the kernels take them: borrowed, or narrowed from float64.
    pub(crate) fn range(&self, start: usize, end: usize) -> Held<'a> {
        match *self {
            Slices::F32(v) => Held::Borrowed(Floats::F32(&v[start..end])),
            Slices::F16(v) => Held::Borrowed(Floats::F16(&v[start..end])),
            Slices::F64(v) => Held::Owned(v[start..end].iter().map(|&x| x as f32).collect()),
        }
    }
}

/// Labels `start..end` of `labels`.
pub(crate) fn labels_range<'a>(labels: Labels<'a>, start: usize, end: usize) -> Labels<'a> {
    match labels {
        Labels::I32(v) => Labels::I32(&v[start..end]),
        Labels::I64(v) => Labels::I64(&v[start..end]),
        Labels::U8(v) => Labels::U8(&v[start..end]),
        Labels::U16(v) => Labels::U16(&v[start..end]),
        Labels::U32(v) => Labels::U32(&v[start..end]),
    }
}

/// Floats as the kernels read them: the caller's, or a narrowed copy.
pub(crate) enum Held<'a> {
    Borrowed(Floats<'a>),
    Owned(Vec<f32>),
    /// Read from a file, shared with a device that reads host memory in place.
    Shared(Arc<Owned<f32>>),
    SharedF16(Arc<Owned<f16>>),
    /// A file's rows mapped under a read lease (`<f4`, or `<f2` where `half`), read where
    /// they lie.
    Mapped {
        rows: xent::npy::MappedRows,
        half: bool,
    },
}

/// Elements one owns, as bytes a device may read in place ([`SharedBytes`]).
pub(crate) struct Owned<T>(pub(crate) Vec<T>);

impl<T: bytemuck::Pod> AsRef<[u8]> for Owned<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl Held<'_> {
    /// The memory a device may read these elements in place from, where they are owned.
    pub(crate) fn shared(&self) -> Option<SharedBytes> {
        match self {
            Held::Shared(v) => Some(v.clone()),
            Held::SharedF16(v) => Some(v.clone()),
            Held::Mapped { rows, .. } => Some(rows.shared()),
            _ => None,
        }
    }

    pub(crate) fn floats(&self) -> Floats<'_> {
        match self {
            Held::Borrowed(f) => *f,
            Held::Owned(v) => Floats::F32(v),
            Held::Shared(v) => Floats::F32(&v.0),
            Held::SharedF16(v) => Floats::F16(&v.0),
            // a mapping starts on a page and the header is padded to 16 bytes: the rows are
            // aligned (were they not, the empty slice fails the chunk's shape check)
            Held::Mapped { rows, half: false } => Floats::F32(bytemuck::try_cast_slice(rows.bytes()).unwrap_or(&[])),
            Held::Mapped { rows, half: true } => Floats::F16(bytemuck::try_cast_slice(rows.bytes()).unwrap_or(&[])),
        }
    }
}

/// An integer label array, borrowed.
pub(crate) enum LabelArray<'py> {
    I32(PyReadonlyArrayDyn<'py, i32>),
    I64(PyReadonlyArrayDyn<'py, i64>),
    U8(PyReadonlyArrayDyn<'py, u8>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    U32(PyReadonlyArrayDyn<'py, u32>),
}

impl<'py> LabelArray<'py> {
    /// The label array `obj` (1-D, an accepted integer type), or an input error naming `name`.
    pub(crate) fn new(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let array = untyped(name, obj)?;
        if array.ndim() != 1 {
            return Err(input(format!("{name}: class labels must be 1-D [rows], got shape {:?}", array.shape())));
        }
        macro_rules! try_type {
            ($t:ty, $v:ident) => {
                if let Ok(a) = obj.extract::<PyReadonlyArrayDyn<'py, $t>>() {
                    return Ok(LabelArray::$v(a));
                }
            };
        }
        try_type!(i64, I64);
        try_type!(i32, I32);
        try_type!(u8, U8);
        try_type!(u16, U16);
        try_type!(u32, U32);
        Err(input(format!(
            "{name}: dtype {} is not a class label type; pass int64, int32, uint8, uint16 or uint32",
            array.dtype()
        )))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            LabelArray::I32(a) => a.len(),
            LabelArray::I64(a) => a.len(),
            LabelArray::U8(a) => a.len(),
            LabelArray::U16(a) => a.len(),
            LabelArray::U32(a) => a.len(),
        }
    }

    /// Labels `start..end`, borrowed.
    pub(crate) fn range(&self, start: usize, end: usize) -> PyResult<Labels<'_>> {
        let e = |_| input("an array's elements are not contiguous");
        Ok(match self {
            LabelArray::I32(a) => Labels::I32(&a.as_slice().map_err(e)?[start..end]),
            LabelArray::I64(a) => Labels::I64(&a.as_slice().map_err(e)?[start..end]),
            LabelArray::U8(a) => Labels::U8(&a.as_slice().map_err(e)?[start..end]),
            LabelArray::U16(a) => Labels::U16(&a.as_slice().map_err(e)?[start..end]),
            LabelArray::U32(a) => Labels::U32(&a.as_slice().map_err(e)?[start..end]),
        })
    }
}

/// A `[rows, cols]` float input: `name`, its array and shape (1-D is one row per element
/// only where `column` says so, as BCE's targets; else an input error).
pub(crate) struct Matrix<'py> {
    /// The array object (held by a [`SharedArray`] while the device reads it in place).
    owner: Bound<'py, PyAny>,
    pub(crate) name: String,
    pub(crate) array: FloatArray<'py>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<'py> Matrix<'py> {
    pub(crate) fn new(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        let array = FloatArray::new(name, obj)?;
        let shape = array.shape();
        let (rows, cols) = match shape[..] {
            [rows, cols] => (rows, cols),
            _ => return Err(input(format!("{name}: expected a 2-D array [rows, classes], got shape {shape:?}"))),
        };
        if rows == 0 || cols == 0 {
            return Err(input(format!("{name}: the array is empty (shape {shape:?})")));
        }
        Ok(Matrix { owner: obj.clone(), name: name.to_string(), array, rows, cols })
    }

    /// The array's bytes for the device to read in place, where they are in an element
    /// type the kernels read (float32, float16); `None` for float64.
    pub(crate) fn shared(&self) -> PyResult<Option<SharedBytes>> {
        let (ptr, len) = match self.array.slices()? {
            Slices::F32(v) => (v.as_ptr() as usize, std::mem::size_of_val(v)),
            Slices::F16(v) => (v.as_ptr() as usize, std::mem::size_of_val(v)),
            Slices::F64(_) => return Ok(None),
        };
        Ok(Some(Arc::new(SharedArray { _owner: self.owner.clone().unbind(), ptr, len })))
    }

    /// Checks that `other` has this matrix's shape.
    pub(crate) fn same_shape(&self, other: &Matrix) -> PyResult<()> {
        if (other.rows, other.cols) != (self.rows, self.cols) {
            return Err(input(format!(
                "{}: shape [{}, {}] does not match {} [{}, {}]",
                other.name, other.rows, other.cols, self.name, self.rows, self.cols
            )));
        }
        Ok(())
    }
}
