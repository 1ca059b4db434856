//! `xent linear-ce` against docs/CLI.md: the cross-entropy of `H·Wᵀ + b` computed here in
//! plain f64 loops (as `F.cross_entropy(F.linear(H, W, b), y)` would), on the GPU and the
//! CPU path; the chunking; bad input and the device's limits.

mod cli_support;

use cli_support::{Files, xent};
use serde_json::Value;

/// Seeded values in [-s, s), never zero.
fn values(n: usize, seed: u64, s: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s * ((x >> 40) as f32 / (1u64 << 23) as f32 - 1.0) + 1e-4
        })
        .collect()
}

/// The mean loss, top-1 accuracy and rows counted of the head, in f64.
fn expected(
    h: &[f32],
    w: &[f32],
    b: &[f32],
    y: &[i64],
    (n, d, k): (usize, usize, usize),
    ignore: i64,
) -> (f64, f64, u64) {
    let (mut sum, mut hits, mut counted) = (0.0f64, 0u64, 0u64);
    for i in 0..n {
        if y[i] == ignore {
            continue;
        }
        let x: Vec<f64> = (0..k)
            .map(|j| (0..d).map(|c| f64::from(h[i * d + c]) * f64::from(w[j * d + c])).sum::<f64>() + f64::from(b[j]))
            .collect();
        let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let label = y[i] as usize;
        sum += lse - x[label];
        let top = (0..k).filter(|&j| x[j] > x[label] || (x[j] == x[label] && j < label)).count();
        hits += u64::from(top == 0);
        counted += 1;
    }
    (sum / counted as f64, hits as f64 / counted as f64, counted)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn device() -> &'static str {
    if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") { "gpu" } else { "auto" }
}

#[test]
fn linear_ce_matches_the_loss_of_the_logits() {
    let f = Files::new();
    let (n, d, k) = (300, 24, 131);
    let (h, w, b) = (values(n * d, 1, 1.0), values(k * d, 2, 0.5), values(k, 3, 0.5));
    let mut y: Vec<i64> = values(n, 4, 1.0).iter().map(|v| ((v.abs() * 1e4) as i64) % k as i64).collect();
    y[5] = -100;
    y[77] = -100;
    let (hp, wp, bp, yp) =
        (f.f32("h.npy", &[n, d], &h), f.f32("w.npy", &[k, d], &w), f.f32("b.npy", &[k], &b), f.i64("y.npy", &y));
    let (mean, accuracy, counted) = expected(&h, &w, &b, &y, (n, d, k), -100);
    let mut sums = Vec::new();
    for (dev, chunk) in
        [(device(), None), (device(), Some("7")), ("cpu", None), ("cpu", Some("7")), ("reference", None)]
    {
        let mut args = vec!["linear-ce", "--hidden", &hp, "--weight", &wp, "--bias", &bp, "--labels", &yp];
        args.extend(["--ignore-index", "-100", "--device", dev, "--json", "--logits-budget", "1"]);
        if let Some(c) = chunk {
            args.extend(["--chunk-rows", c]);
        }
        let line = xent(&args).json();
        assert_eq!(line["command"], "linear-ce");
        if dev != "auto" {
            assert_eq!(line["device"], dev, "{line}");
        }
        assert_eq!(
            (line["rows"].as_u64(), line["d"].as_u64(), line["classes"].as_u64()),
            (Some(300), Some(24), Some(131))
        );
        assert_eq!(line["counted"].as_u64(), Some(counted), "{dev}");
        assert!((num(&line["mean"]) - mean).abs() < 1e-5 * mean.abs(), "{dev}: {} against {mean}", line["mean"]);
        assert!((num(&line["accuracy"]) - accuracy).abs() < 1e-12, "{dev}: {} against {accuracy}", line["accuracy"]);
        assert!((num(&line["perplexity"]) - mean.exp()).abs() < 1e-4 * mean.exp());
        assert!(line["top5"].is_number() && line["ece"].is_number(), "{line}");
        sums.push(num(&line["sum"]));
    }
    // the same bits whatever the chunking
    assert_eq!(sums[0].to_bits(), sums[1].to_bits(), "chunks of 7 rows against one chunk");
    assert_eq!(sums[2].to_bits(), sums[3].to_bits(), "the engine: chunks of 7 rows against one chunk");
    // each row's loss to --out: 0 on the ignored rows, summing to the line's sum
    let out = f.path("losses.npy");
    let args = ["linear-ce", "--hidden", &hp, "--weight", &wp, "--bias", &bp, "--labels", &yp];
    let line =
        xent(&[&args[..], &["--ignore-index", "-100", "--json", "--out", out.to_str().unwrap()]].concat()).json();
    let bytes = std::fs::read(&out).unwrap();
    let losses: Vec<f32> =
        bytes[bytes.len() - 4 * n..].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!((losses[5], losses[77]), (0.0, 0.0));
    let total: f64 = losses.iter().map(|&v| f64::from(v)).sum();
    assert!((total - num(&line["sum"])).abs() < 1e-9 * total, "{total} against {}", line["sum"]);
    assert_eq!(line["out"].as_str(), out.to_str());
    // bits and a sum reduction
    let args = ["linear-ce", "--hidden", &hp, "--weight", &wp, "--bias", &bp, "--labels", &yp];
    let bits =
        xent(&[&args[..], &["--ignore-index", "-100", "--base", "2", "--reduction", "sum", "--json"]].concat()).json();
    let want = mean * counted as f64 / std::f64::consts::LN_2;
    assert!((num(&bits["value"]) - want).abs() < 1e-5 * want, "{} against {want}", bits["value"]);
}

/// Half-precision hidden states (`<f2`, an odd count of elements) go to the device as they
/// are, widened exactly there.
#[test]
fn half_precision_hidden_states() {
    let f = Files::new();
    let (n, d, k) = (7, 5, 33);
    let h: Vec<f32> = values(n * d, 11, 2.0).iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let (w, b) = (values(k * d, 12, 0.5), values(k, 13, 0.5));
    let y: Vec<i64> = (0..n as i64).map(|i| (i * 5) % k as i64).collect();
    let bytes: Vec<u8> = h.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let hp = f.raw("h16.npy", &cli_support::npy_bytes("<f2", &[n, d], &bytes));
    let (wp, bp, yp) = (f.f32("w.npy", &[k, d], &w), f.f32("b.npy", &[k], &b), f.i64("y.npy", &y));
    let (mean, _, _) = expected(&h, &w, &b, &y, (n, d, k), -100);
    for dev in [device(), "cpu"] {
        let line = xent(&[
            "linear-ce",
            "--hidden",
            &hp,
            "--weight",
            &wp,
            "--bias",
            &bp,
            "--labels",
            &yp,
            "--device",
            dev,
            "--json",
        ])
        .json();
        assert_eq!(line["dtype"], "<f2");
        assert!((num(&line["mean"]) - mean).abs() < 1e-5 * mean.abs(), "{dev}: {} against {mean}", line["mean"]);
    }
}

#[test]
fn bad_input_and_limits_are_one_line() {
    let f = Files::new();
    let (h, w, y) = (
        f.f32("h.npy", &[4, 3], &values(12, 1, 1.0)),
        f.f32("w.npy", &[5, 2], &values(10, 2, 1.0)),
        f.i64("y.npy", &[0, 1, 2, 3]),
    );
    let wide = xent(&["linear-ce", "--hidden", &h, "--weight", &w, "--labels", &y, "--json"]);
    wide.bad_input(&["--weight"]);
    let w3 = f.f32("w3.npy", &[5, 3], &values(15, 2, 1.0));
    let bad_label = f.i64("bad.npy", &[0, 1, 9, 3]);
    let out = f.arg("never.npy");
    for dev in [device(), "cpu"] {
        let run = xent(&[
            "linear-ce",
            "--hidden",
            &h,
            "--weight",
            &w3,
            "--labels",
            &bad_label,
            "--device",
            dev,
            "--out",
            &out,
        ]);
        run.bad_input(&["row 2"]);
    }
    // never over an input
    xent(&["linear-ce", "--hidden", &h, "--weight", &w3, "--labels", &y, "--out", &w3]).bad_input(&["--out"]);
    let short = f.i64("short.npy", &[0, 1]);
    xent(&["linear-ce", "--hidden", &h, "--weight", &w3, "--labels", &short]).bad_input(&["--labels"]);
    // a row of 300,000 logits is over a 1 MiB budget: the device's limit, status 1 (where
    // a GPU is required; `auto` takes the engine on a software adapter), which the engine
    // does not have
    let big = f.f32("big.npy", &[300_000, 3], &values(900_000, 5, 1.0));
    let budget = |dev| {
        let args = ["linear-ce", "--hidden", &h, "--weight", &big, "--labels", &y, "--logits-budget", "1"];
        xent(&[&args[..], &["--device", dev, "--json"]].concat())
    };
    if device() == "gpu" {
        budget("gpu").failed(1, &["budget", "--device cpu"]);
    }
    let line = budget("cpu").json();
    assert_eq!((line["device"].as_str(), line["classes"].as_u64()), (Some("cpu"), Some(300_000)));
    assert_eq!(f.listing(), ["bad.npy", "big.npy", "h.npy", "short.npy", "w.npy", "w3.npy", "y.npy"]);
}
