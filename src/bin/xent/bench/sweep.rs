//! The row layouts a bench line is timed under: the candidates around the rule's choice
//! (`xent bench --sweep` times every one of them, one JSON line each, and says which was
//! best), and the copy's best layout, so that the copy roofline is the device's and not one
//! layout's.

use serde_json::{Value, json};
use xent::{Baseline, Context, RowLayout};

use super::device::{Bench, Job, median};
use crate::Failure;

/// Runs `f` with the context's row kernels pinned to `layout` (`None`: the rule's), and
/// puts back what was pinned before.
pub(super) fn with_layout<R>(ctx: &Context, layout: Option<RowLayout>, f: impl FnOnce() -> R) -> R {
    let recorder = ctx.recorder();
    let before = recorder.layout();
    recorder.set_layout(layout);
    let r = f();
    recorder.set_layout(before);
    r
}

/// The candidate layouts of a job (the rule's first: [`xent::Recorder::layout_candidates`]),
/// in the tile form too where `tile` (where the kernels have one: [`xent::Op::has_tile_form`]).
pub(super) fn candidates(ctx: &Context, rows: u64, cols: u64, tile: bool) -> Vec<RowLayout> {
    let all = with_layout(ctx, None, || ctx.recorder().layout_candidates(rows, cols));
    all.into_iter().filter(|l| tile || !l.tile).collect()
}

/// The copy's fastest layout for `base`'s bytes (each candidate timed once after a warm-up),
/// and that layout.
pub(super) fn best_copy(bench: &Bench, ctx: &Context, base: &Job) -> Result<RowLayout, Failure> {
    let (rows, cols) = bench.copy_shape(base);
    let mut best: Option<(f64, RowLayout)> = None;
    for layout in candidates(ctx, rows, cols, false) {
        let seconds = with_layout(ctx, Some(layout), || -> Result<f64, Failure> {
            bench.time(base, Some(Baseline::Copy), 1)?;
            bench.time(base, Some(Baseline::Copy), 1)
        })?;
        if best.is_none_or(|(s, _)| seconds < s) {
            best = Some((seconds, layout));
        }
    }
    best.map(|(_, l)| l).ok_or_else(|| Failure::machine("no copy layout ran".to_string()))
}

/// `job` under each of its candidate layouts, round robin (each candidate once a round, and
/// the copy under `copy` once, for `iters` rounds), so that a device whose speed drifts (a
/// shared machine) favours none of them: one JSON line each with its median (`line` fills in
/// the rest), then one naming the fastest and how the rule's choice, and the tuner's
/// (`tuned`, where it chose one), compare with it.
pub(super) fn sweep(
    bench: &Bench,
    ctx: &Context,
    (job, base, copy): (&Job, &Job, RowLayout),
    tuned: Option<RowLayout>,
    iters: usize,
    line: impl Fn(f64, f64) -> Value,
    emit: &mut dyn FnMut(Value) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let layouts = candidates(ctx, job.rows, job.cols, job.op.has_tile_form());
    for &layout in &layouts {
        with_layout(ctx, Some(layout), || bench.time(job, None, 1))?; // compile and warm up
    }
    let mut copies = Vec::new();
    let mut runs = vec![Vec::new(); layouts.len()];
    for _ in 0..iters.max(1) {
        copies.push(with_layout(ctx, Some(copy), || bench.time(base, Some(Baseline::Copy), 1))?);
        for (times, &layout) in runs.iter_mut().zip(&layouts) {
            times.push(with_layout(ctx, Some(layout), || bench.time(job, None, 1))?);
        }
    }
    let copy_seconds = median(&mut copies);
    let mut timed = Vec::with_capacity(layouts.len());
    for (i, (&layout, times)) in layouts.iter().zip(&mut runs).enumerate() {
        let seconds = median(times);
        let mut value = line(copy_seconds, seconds);
        if let Some(fields) = value.as_object_mut() {
            fields.insert("layout".into(), json!(layout.to_string()));
            fields.insert("rule".into(), json!(i == 0));
            fields.insert("copy_layout".into(), json!(copy.to_string()));
        }
        emit(value.clone())?;
        timed.push((seconds, layout, value));
    }
    let Some((best_seconds, best, best_line)) = timed.iter().min_by(|a, b| a.0.total_cmp(&b.0)).cloned() else {
        return Ok(());
    };
    let rule_seconds = timed[0].0;
    let mut summary = json!({
        "sweep": "best",
        "layout": best.to_string(),
        "rule_layout": layouts[0].to_string(),
        // above 1: the rule's choice is that much slower than the best candidate
        "rule_over_best": rule_seconds / best_seconds,
        "candidates": timed.len(),
    });
    // the tuner's choice, timed in the same rounds as every other candidate
    if let (Some(fields), Some((seconds, layout, _))) =
        (summary.as_object_mut(), tuned.and_then(|t| timed.iter().find(|(_, l, _)| *l == t)))
    {
        fields.insert("tuned_layout".into(), json!(layout.to_string()));
        // above 1: the tuner's choice is that much slower than the best candidate
        fields.insert("tuned_over_best".into(), json!(seconds / best_seconds));
    }
    if let (Some(fields), Some(from)) = (summary.as_object_mut(), best_line.as_object()) {
        for key in ["op", "rows", "cols", "dtype", "seconds", "gbps", "copy_ratio", "adapter", "timing"] {
            if let Some(v) = from.get(key) {
                fields.insert(key.into(), v.clone());
            }
        }
    }
    emit(summary)
}
