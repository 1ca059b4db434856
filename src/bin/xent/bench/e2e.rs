//! `xent bench --e2e`: `ce` from a file, end to end (read, upload, kernel, reduction), against
//! its kernel alone on the same shape and adapter, in the same run.

use serde_json::{Value, json};
use xent::DType;

use super::median;
use crate::Failure;
use crate::demo::{Precision, ce_quietly, write_set};

/// The line of `ce` end to end over a `[rows, cols]` file of `dtype` logits and i64 labels
/// (written to a temporary directory, removed after), against `kernel_seconds`, the kernel's
/// median time alone. The page cache is warm: one untimed run reads the files first.
pub(super) fn e2e(rows: u64, cols: u64, dtype: DType, kernel_seconds: f64, iters: usize) -> Result<Value, Failure> {
    let dir = crate::process::TempDir::new()?;
    let (logits, labels) = (dir.path().join("logits.npy"), dir.path().join("labels.npy"));
    let precision = if dtype == DType::F16 { Precision::F16 } else { Precision::F32 };
    write_set(rows, cols, rows ^ cols, precision, &logits, &labels)?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bytes = size(&logits) + size(&labels);
    let run = || -> Result<(f64, Value), Failure> {
        let line = ce_quietly(&logits, &labels)?;
        Ok((line["seconds"].as_f64().unwrap_or(f64::NAN), line))
    };
    let (_, first) = run()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        times.push(run()?.0);
    }
    let seconds = median(&mut times);
    Ok(json!({
        "op": "ce",
        "mode": "e2e",
        "rows": rows,
        "cols": cols,
        "dtype": if dtype == DType::F16 { "f16" } else { "f32" },
        // from the start of reading to the result, without opening the device
        "seconds": seconds,
        "gbps": bytes as f64 / seconds / 1e9,
        "file_bytes": bytes,
        "kernel_seconds": kernel_seconds,
        "kernel_gbps": bytes as f64 / kernel_seconds / 1e9,
        // the share of the kernel-alone speed the whole command reaches
        "e2e_ratio": kernel_seconds / seconds,
        "device": first["device"],
        "adapter": first["adapter"],
    }))
}

/// A table row for an end-to-end line.
pub(super) fn table_row(v: &Value) -> String {
    format!(
        "{:<12} {:>8} {:>8} {:>5} {:>10.3} {:>8.2} {:>9} (file to result; kernel alone {:.2} GB/s, e2e/kernel {:.2})",
        "ce e2e",
        v["rows"],
        v["cols"],
        v["dtype"].as_str().unwrap_or(""),
        v["seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
        v["gbps"].as_f64().unwrap_or(f64::NAN),
        "",
        v["kernel_gbps"].as_f64().unwrap_or(f64::NAN),
        v["e2e_ratio"].as_f64().unwrap_or(f64::NAN),
    )
}
