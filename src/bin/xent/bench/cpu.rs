//! `xent bench --device cpu`: the CPU engine's wall time over the grid, against a copy of
//! the same input bytes on the same threads (the roofline of a kernel that reads its input
//! once) and against the f64 reference.

use std::time::Instant;

use rayon::prelude::*;
use serde_json::{Value, json};
use xent::cpu::Engine;
use xent::{DType, Loss, RunOptions};

use super::data::{Data, reference_seconds};
use super::device::median;
use super::{Grid, Variant, label, plot};
use crate::Failure;
use crate::process::emit;

/// Bytes a copy task moves: whole pages, a few per thread at the smallest shapes.
const COPY_TASK: usize = 1 << 18;

/// Seconds of a parallel copy of `src` into `dst` on the engine's threads.
fn copy_seconds(engine: &Engine, src: &[u8], dst: &mut [u8]) -> f64 {
    let t = Instant::now();
    engine.install(|| {
        dst.par_chunks_mut(COPY_TASK).zip(src.par_chunks(COPY_TASK)).for_each(|(d, s)| d.copy_from_slice(s));
    });
    t.elapsed().as_secs_f64()
}

/// The input bytes of `loss`: its float inputs and labels.
fn input_bytes(loss: &Loss) -> u64 {
    let floats = |b: &xent::Batch| (b.rows * b.cols * b.data.dtype().size()) as u64;
    let labels = loss.inputs.labels.map_or(0, |y| 4 * y.len() as u64);
    floats(loss.primary()) + loss.inputs.second.as_ref().map_or(0, floats) + labels
}

/// Every line of the grid on the engine; the lines, for the plot.
pub(super) fn bench(grid: &Grid, json_lines: bool) -> Result<Vec<Value>, Failure> {
    let engine = Engine::new();
    let adapter = engine.label();
    let iters = grid.iters;
    if !json_lines {
        emit(format!("engine: {adapter}; wall clock; median of {iters}"))?;
        emit(format!(
            "{:<12} {:>8} {:>8} {:>5} {:>10} {:>8} {:>9} {:>9} {:>9}",
            "op", "rows", "cols", "dtype", "ms", "GB/s", "vs copy", "vs naive", "vs ref"
        ))?;
    }
    let mut lines = Vec::new();
    for &(rows, cols) in &grid.shapes {
        let data = Data::new(rows as usize, cols as usize, rows ^ cols, grid.dtypes.contains(&DType::F16));
        for &dtype in &grid.dtypes {
            let logits = data.loss(xent::Op::LogSumExp, dtype);
            let src = logits.primary().data.bytes(0, logits.primary().data.len());
            let mut dst = vec![0u8; src.len()];
            copy_seconds(&engine, src, &mut dst); // the pages of the destination, first touched
            for &variant in &grid.ops {
                let line = measure(&engine, &data, (src, &mut dst), variant, dtype, iters)?;
                emit(if json_lines { line.to_string() } else { plot::table_row(&line) })?;
                lines.push(line);
            }
        }
    }
    Ok(lines)
}

/// One line: the engine's median time over `iters` runs, each after a copy of the logits'
/// bytes (`copy`), so that the drift of a shared machine falls on both sides of the ratio.
fn measure(
    engine: &Engine,
    data: &Data,
    (src, dst): (&[u8], &mut [u8]),
    variant: Variant,
    dtype: DType,
    iters: usize,
) -> Result<Value, Failure> {
    let mut loss = data.loss(variant.op, dtype);
    loss.softcap = variant.softcap;
    let options = RunOptions { report: variant.report, ..Default::default() };
    engine.compute(&loss, &options)?; // warm up: the inputs' pages, the threads
    let (mut copies, mut runs) = (Vec::new(), Vec::new());
    for _ in 0..iters.max(1) {
        copies.push(copy_seconds(engine, src, dst));
        let t = Instant::now();
        engine.compute(&loss, &options)?;
        runs.push(t.elapsed().as_secs_f64());
    }
    let (copy, seconds) = (median(&mut copies), median(&mut runs));
    let bytes = input_bytes(&loss);
    // the copy moves the logits' bytes; a job reading more moves more
    let copy_seconds = copy * bytes as f64 / src.len() as f64;
    let cpu = reference_seconds(data, variant.op, variant.softcap, dtype);
    Ok(json!({
        "op": label(variant),
        "rows": data.rows,
        "cols": data.cols,
        "dtype": if dtype == DType::F16 { "f16" } else { "f32" },
        "seconds": seconds,
        "gbps": bytes as f64 / seconds / 1e9,
        "bytes": bytes,
        "copy_seconds": copy_seconds,
        "copy_ratio": copy_seconds / seconds,
        "copy_gbps": src.len() as f64 / copy / 1e9,
        "naive_ratio": null,
        "cpu_ratio": cpu / seconds,
        "timing": "wall clock",
        "adapter": engine.label(),
        "device": "cpu",
        "simd": engine.simd(),
        "threads": engine.threads(),
    }))
}
