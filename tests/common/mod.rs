//! Shared helpers of the GPU tests: one context per test binary, seeded data, and a
//! comparison that reports the worst element.

#![allow(dead_code)]

use std::sync::OnceLock;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xent::Context;

/// The shared context, or `None` (the test prints that it skipped) when no adapter
/// exists and `XENT_REQUIRE_GPU` is unset. With `XENT_REQUIRE_GPU=1` a missing
/// adapter fails the test.
pub fn context() -> Option<&'static Context> {
    static CTX: OnceLock<Option<Context>> = OnceLock::new();
    CTX.get_or_init(|| match Context::new_blocking() {
        Ok(c) => {
            eprintln!("adapter: {}", c.adapter_label());
            Some(c)
        }
        Err(e) => {
            if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("XENT_REQUIRE_GPU=1 but no adapter: {e}");
            }
            eprintln!("skipped: no GPU adapter ({e})");
            None
        }
    })
    .as_ref()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Logits uniform in [-scale, scale], never all zero.
pub fn logits(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Rows of probabilities summing to 1, with some exact zeros when `zeros` is set.
pub fn probs(rng: &mut StdRng, rows: usize, cols: usize, zeros: bool) -> Vec<f32> {
    let mut v = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let row: Vec<f32> = (0..cols)
            .map(|_| if zeros && rng.random_bool(0.3) { 0.0 } else { rng.random_range(0.01f32..1.0) })
            .collect();
        let s: f32 = row.iter().sum();
        v.extend(row.iter().map(|x| if s > 0.0 { x / s } else { 1.0 / cols as f32 }));
    }
    v
}

pub fn labels(rng: &mut StdRng, rows: usize, cols: usize) -> Vec<i32> {
    (0..rows).map(|_| rng.random_range(0..cols as i32)).collect()
}

/// Uniform in [lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Fails unless every `|g − r| <= abs + rel·|r|`, with NaN matching NaN and
/// infinities matching infinities of the same sign; returns the worst relative error.
pub fn assert_close(what: &str, gpu: &[f32], reference: &[f64], abs: f64, rel: f64) -> f64 {
    assert_eq!(gpu.len(), reference.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f64);
    let mut bad = 0usize;
    let mut first_bad = None;
    for (i, (&g, &r)) in gpu.iter().zip(reference).enumerate() {
        let g = f64::from(g);
        let ok = if r.is_nan() || g.is_nan() {
            r.is_nan() && g.is_nan()
        } else if r.is_infinite() || g.is_infinite() {
            r == g
        } else {
            let err = (g - r).abs();
            let scaled = err / (abs + rel * r.abs());
            if scaled > worst.1 {
                worst = (i, scaled);
            }
            err <= abs + rel * r.abs()
        };
        if !ok {
            bad += 1;
            first_bad.get_or_insert((i, g, r));
        }
    }
    if let Some((i, g, r)) = first_bad {
        panic!("{what}: {bad} of {} values differ; first at {i}: gpu {g} reference {r}", gpu.len());
    }
    let (i, _) = worst;
    let (g, r) = (f64::from(gpu.get(i).copied().unwrap_or(0.0)), reference.get(i).copied().unwrap_or(0.0));
    if r.is_finite() && r != 0.0 { ((g - r) / r).abs() } else { (g - r).abs() }
}

/// Fails unless `g` matches `r` as [`assert_close`] does for one value.
pub fn assert_scalar(what: &str, g: f64, r: f64, abs: f64, rel: f64) {
    let ok = if r.is_nan() || g.is_nan() {
        r.is_nan() && g.is_nan()
    } else if r.is_infinite() || g.is_infinite() {
        r == g
    } else {
        (g - r).abs() <= abs + rel * r.abs()
    };
    assert!(ok, "{what}: gpu {g} reference {r}");
}
