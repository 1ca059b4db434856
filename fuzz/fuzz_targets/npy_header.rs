//! Fuzzes `NpyHeader::parse`: any bytes give Ok or Err, never a panic, and an Ok header is
//! consistent (its data offset lies within the input, its byte count does not overflow).
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run npy_header -- -max_total_time=300` from the crate root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xent::npy::{MAX_DIMS, NpyHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = NpyHeader::parse(data) {
        assert!(header.data_offset as usize <= data.len());
        assert!(header.shape.len() <= MAX_DIMS);
        let elements = header.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let bytes = elements.and_then(|n| n.checked_mul(header.dtype.size() as u64));
        assert!(bytes.and_then(|b| b.checked_add(header.data_offset)).is_some());
    }
});
