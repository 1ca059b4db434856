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

mod dtype;
mod error;
mod header;
mod mapped;
mod reader;
mod sink;
#[cfg(test)]
mod testing;
mod writer;

pub use dtype::{NpyDType, NpyElement};
pub use error::NpyError;
pub use header::{MAX_DIMS, MAX_HEADER_LEN, NpyHeader};
pub use mapped::{Lease, MappedRows};
pub use reader::NpyFile;
pub use sink::remove_temporary_files;
pub use writer::{NpyWriter, write_whole};
