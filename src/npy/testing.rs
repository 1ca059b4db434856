//! Hand-built `.npy` images and files for the module's tests.

use super::header::MAGIC;
use super::{NpyError, NpyFile};
use std::path::PathBuf;
use tempfile::TempDir;

/// A `.npy` image: preamble for `major`, `dict` padded with spaces and a newline so the data
/// starts at a multiple of `align`, then `data`.
pub(super) fn npy(major: u8, dict: &str, align: usize, data: &[u8]) -> Vec<u8> {
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

pub(super) fn dict(descr: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
}

pub(super) fn save(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub(super) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(super) fn open_err(dir: &TempDir, name: &str, bytes: &[u8]) -> (NpyError, String) {
    let err = NpyFile::open(save(dir, name, bytes)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{name}: ")), "{msg}");
    (err, msg)
}
