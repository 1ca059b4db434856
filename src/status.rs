//! [`Status`]: the rows the device found at fault, decoded from the two words the row
//! kernels write, as one typed error.

use crate::error::{Error, Result};

/// The first row with a bad label and the first row with an out-of-domain value, as the
/// row kernels record them (the words of [`Recorder::status`](crate::Recorder::status)).
///
/// Such rows give NaN, not an error, on the device: copy the status out after the records
/// and turn it into the error that names the row with
/// `Status::from_bytes(&bytes)?.check(cols)?`. A row counts from its record's first row (the
/// smallest over every record since the status was cleared), so clear it between records
/// to tell which record a row is of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The first row whose label is outside `[0, cols)` and is not the ignore index.
    pub bad_label: Option<u64>,
    /// The first row with a value outside its domain: a negative, NaN or infinite
    /// probability, or a target outside [0, 1].
    pub bad_value: Option<u64>,
}

const VALUE_DETAIL: &str =
    "holds a value outside its domain (a negative, NaN or infinite probability, or a target outside [0, 1])";

impl Status {
    /// Bytes of the status: two little-endian u32 words, `u32::MAX` for "no such row".
    pub const BYTES: u64 = 8;

    /// Decodes the 8 bytes copied out of a status buffer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Status> {
        let words =
            bytes.get(..8).ok_or_else(|| Error::Readback(format!("{} bytes given, a status is 8", bytes.len())))?;
        let word = |i: usize| u32::from_le_bytes([words[i], words[i + 1], words[i + 2], words[i + 3]]);
        Ok(Status::from_words([word(0), word(4)]))
    }

    pub(crate) fn from_words([label, value]: [u32; 2]) -> Status {
        let row = |w: u32| (w != u32::MAX).then_some(u64::from(w));
        Status { bad_label: row(label), bad_value: row(value) }
    }

    /// `Ok` when no row was at fault; else [`Error::Label`] for the first bad label, or
    /// [`Error::Value`] for the first out-of-domain value, naming the row. `cols` is the
    /// record's classes (the range the label is outside of); the label itself is in the
    /// row's report record where one was recorded, and [`RecordResults::check`] names it.
    ///
    /// [`RecordResults::check`]: crate::RecordResults::check
    pub fn check(&self, cols: u64) -> Result<()> {
        if let Some(row) = self.bad_label {
            return Err(Error::Label { row, label: None, cols });
        }
        if let Some(row) = self.bad_value {
            return Err(Error::Value { row, detail: VALUE_DETAIL.into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_decode_to_the_rows_they_name() {
        let bytes: Vec<u8> = [7u32, u32::MAX].iter().flat_map(|w| w.to_le_bytes()).collect();
        let status = Status::from_bytes(&bytes).expect("8 bytes");
        assert_eq!(status, Status { bad_label: Some(7), bad_value: None });
        assert!(matches!(status.check(9), Err(Error::Label { row: 7, label: None, cols: 9 })));
        let bytes: Vec<u8> = [u32::MAX, 3].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert!(matches!(Status::from_bytes(&bytes).and_then(|s| s.check(9)), Err(Error::Value { row: 3, .. })));
        assert!(Status::from_words([u32::MAX; 2]).check(9).is_ok());
        assert!(matches!(Status::from_bytes(&bytes[..7]), Err(Error::Readback(_))));
    }
}
