//! The element types read and written, by their NumPy descriptors.

use half::f16;

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

/// A Rust type stored as one NumPy element type.
pub trait NpyElement: bytemuck::Pod {
    /// The element type written for it.
    const DTYPE: NpyDType;
}

macro_rules! npy_element {
    ($($t:ty => $d:ident),*) => { $(impl NpyElement for $t { const DTYPE: NpyDType = NpyDType::$d; })* };
}
npy_element!(f16 => F16, f32 => F32, f64 => F64, i8 => I8, u8 => U8, u16 => U16, u32 => U32, i32 => I32, i64 => I64);
