//! `xent bench --e2e`: `ce` from a file, end to end (read, upload, kernel, reduction), against
//! its kernel alone on the same shape and adapter, in the same run.

use serde_json::{Value, json};
use xent::DType;

use super::median;
use crate::Failure;
use crate::demo::{Precision, ce_quietly, write_set};

/// The line of `ce` end to end over a `[rows, cols]` file of `dtype` logits and i64 labels
/// (written to a temporary directory, removed after), against the median time alone of the
/// kernel the command runs (`ce` with its evaluation report) and of `ce` without the report,
/// as `kernels` times them once each. The three are timed in turn, `iters` rounds, so that
/// a machine whose speed wanders slows all three alike. The page cache is warm: one untimed
/// run reads the files first.
pub(super) fn e2e(
    rows: u64,
    cols: u64,
    dtype: DType,
    mut kernels: impl FnMut() -> Result<(f64, f64), Failure>,
    iters: usize,
    reads_host_memory: bool,
) -> Result<Value, Failure> {
    let dir = crate::process::TempDir::new()?;
    let (logits, labels) = (dir.path().join("logits.npy"), dir.path().join("labels.npy"));
    let precision = if dtype == DType::F16 { Precision::F16 } else { Precision::F32 };
    write_set(rows, cols, rows ^ cols, precision, &logits, &labels)?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let bytes = size(&logits) + size(&labels);
    let run = || -> Result<(f64, f64, Value), Failure> {
        let line = ce_quietly(&logits, &labels)?;
        let number = |k: &str| line[k].as_f64().unwrap_or(f64::NAN);
        Ok((number("seconds"), number("setup_seconds"), line))
    };
    let (_, _, first) = run()?;
    let rounds = iters.max(1);
    let (mut times, mut setups) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let (mut kernel, mut plain) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let (seconds, setup, _) = run()?;
        times.push(seconds);
        setups.push(setup);
        let (k, p) = kernels()?;
        kernel.push(k);
        plain.push(p);
    }
    let (seconds, setup_seconds) = (median(&mut times), median(&mut setups));
    let (kernel_seconds, plain_seconds) = (median(&mut kernel), median(&mut plain));
    Ok(json!({
        "op": "ce",
        "mode": "e2e",
        "rows": rows,
        "cols": cols,
        "dtype": if dtype == DType::F16 { "f16" } else { "f32" },
        // from the start of reading to the result, without opening the device and building
        // the pipelines (`setup_seconds`)
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "gbps": bytes as f64 / seconds / 1e9,
        "file_bytes": bytes,
        // the kernel the command runs: `ce` with the evaluation report in its pass
        "kernel_seconds": kernel_seconds,
        "kernel_gbps": bytes as f64 / kernel_seconds / 1e9,
        // `ce` alone, without the report
        "plain_kernel_seconds": plain_seconds,
        // the share of the kernel-alone speed the whole command reaches
        "e2e_ratio": kernel_seconds / seconds,
        "e2e_ratio_plain": plain_seconds / seconds,
        // whether the device reads host memory, so the file's pages, in place (no copy)
        "reads_host_memory": reads_host_memory,
        "device": first["device"],
        "adapter": first["adapter"],
    }))
}

/// A table row for an end-to-end line.
pub(super) fn table_row(v: &Value) -> String {
    format!(
        "{:<12} {:>8} {:>8} {:>5} {:>10.3} {:>8.2} {:>9} (file to result; kernel with the report alone {:.2} GB/s, e2e/kernel {:.2}; against ce without the report {:.2}; setup {:.0} ms)",
        "ce e2e",
        v["rows"],
        v["cols"],
        v["dtype"].as_str().unwrap_or(""),
        v["seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
        v["gbps"].as_f64().unwrap_or(f64::NAN),
        "",
        v["kernel_gbps"].as_f64().unwrap_or(f64::NAN),
        v["e2e_ratio"].as_f64().unwrap_or(f64::NAN),
        v["e2e_ratio_plain"].as_f64().unwrap_or(f64::NAN),
        v["setup_seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
    )
}
