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
    CTX.get_or_init(|| opened(Context::new_blocking(), Context::adapter_label)).as_ref()
}

/// A device just opened, its adapter printed; or `None` (printed as skipped) where there is
/// no adapter, unless `XENT_REQUIRE_GPU=1`, which fails the test.
pub fn opened<T>(device: xent::Result<T>, label: impl FnOnce(&T) -> String) -> Option<T> {
    match device {
        Ok(d) => {
            eprintln!("adapter: {}", label(&d));
            Some(d)
        }
        Err(e) => {
            if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("XENT_REQUIRE_GPU=1 but no adapter: {e}");
            }
            eprintln!("skipped: no GPU adapter ({e})");
            None
        }
    }
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

/// Distillation where the teacher rules classes out (`-inf` logits, P = 0) and the student
/// does not. `EXPECTED` holds (τ, α, each row's value) of PyTorch's formula, `α·τ²·Σ_j
/// kl_div(log_softmax(S/τ), softmax(T/τ)) + (1−α)·cross_entropy(S, y)`, evaluated in float64
/// with NumPy 2.4 and SciPy 1.17 (`scipy.special.log_softmax`, `softmax`, and `xlogy` for
/// kl_div's `0·log 0 = 0`), with τ and α that f32 holds exactly.
pub mod masked_teacher {
    const NINF: f32 = f32::NEG_INFINITY;
    pub const COLS: usize = 6;
    #[rustfmt::skip]
    pub const STUDENT: [f32; 24] = [
        1.5, -0.25, 0.75, 2.0, -1.0, 0.5,
        0.25, 1.75, -0.5, 1.0, 0.0, -2.0,
        3.0, 0.5, -1.5, 0.25, 1.25, -0.75,
        -0.5, 0.0, 2.5, -1.25, 0.75, 1.0,
    ];
    #[rustfmt::skip]
    pub const TEACHER: [f32; 24] = [
        0.5, 1.0, -0.25, 1.5, 0.0, -1.0,
        2.0, NINF, 0.5, NINF, 1.25, -0.5,
        NINF, 1.5, 0.25, -0.5, 2.0, NINF,
        1.0, -0.75, NINF, 0.5, NINF, NINF,
    ];
    pub const LABELS: [i32; 4] = [3, 1, 0, 2];
    #[allow(clippy::excessive_precision)]
    pub const EXPECTED: [(f32, f32, [f64; 4]); 3] = [
        (1.0, 0.5, [5.842434373033893e-01, 1.035335836402706e+00, 9.217446912329310e-01, 1.584117457125289e+00]),
        (2.0, 0.75, [5.439449018427459e-01, 2.617483649086762e+00, 2.469016045111572e+00, 4.553615383839721e+00]),
        (4.0, 1.0, [5.018980361039329e-01, 9.421703811985578e+00, 8.750721100431290e+00, 1.628267799627931e+01]),
    ];
    /// `KL(softmax(T) ‖ softmax(S))` per row: `scipy.special.rel_entr(P, Q).sum(axis=1)`.
    #[allow(clippy::excessive_precision)]
    pub const KL: [f64; 4] =
        [3.481116654735872e-01, 1.378431089701896e+00, 1.540120829442152e+00, 2.728501131265753e+00];
    /// The Jensen-Shannon divergence at β = 0.5 of P = softmax(T) and Q = softmax(S):
    /// `0.5·rel_entr(P, M) + 0.5·rel_entr(Q, M)` summed over the row, `M = (P + Q)/2`.
    #[allow(clippy::excessive_precision)]
    pub const JSD: [f64; 4] =
        [6.993413404028903e-02, 3.745693634497466e-01, 4.002746150519059e-01, 5.506459134900243e-01];
}
