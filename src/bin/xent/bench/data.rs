//! The host inputs of one shape and dtype, shared by every operation, and the time the
//! f64 reference takes over them.

use std::time::Instant;

use half::f16;
use xent::{Batch, DType, Domain, Floats, Labels, LogBase, Loss, Op};

use crate::demo::Rng;

/// Host inputs of one shape and dtype, shared by every operation.
pub(super) struct Data {
    pub(super) rows: usize,
    pub(super) cols: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    a16: Vec<f16>,
    b16: Vec<f16>,
    targets: Vec<f32>,
    targets16: Vec<f16>,
    labels: Vec<i32>,
}

impl Data {
    /// Seeded inputs of `[rows, cols]`, and their f16 copies where `half` asks for them (an
    /// f32-only grid holds half the memory at large shapes).
    pub(super) fn new(rows: usize, cols: usize, seed: u64, half: bool) -> Data {
        let mut rng = Rng::new(seed);
        let n = rows * cols;
        let a: Vec<f32> = (0..n).map(|_| 4.0 * rng.unit()).collect();
        let b: Vec<f32> = (0..n).map(|_| 4.0 * rng.unit()).collect();
        let targets: Vec<f32> = (0..n).map(|_| 0.5 + 0.5 * rng.unit()).collect();
        let labels = (0..rows).map(|_| (rng.next() % cols as u64) as i32).collect();
        let to_half = |v: &[f32]| if half { v.iter().map(|&x| f16::from_f32(x)).collect() } else { Vec::new() };
        Data { rows, cols, a16: to_half(&a), b16: to_half(&b), targets16: to_half(&targets), a, b, targets, labels }
    }

    fn batch<'a>(&self, v32: &'a [f32], v16: &'a [f16], dtype: DType) -> Batch<'a> {
        let data = if dtype == DType::F16 { Floats::F16(v16) } else { Floats::F32(v32) };
        Batch { data, rows: self.rows, cols: self.cols }
    }

    /// The operation `op` over these inputs: each float input drawn for its domain (logits
    /// in [0, 4), targets and probabilities in [0.5, 1]), labels where it takes them.
    pub(super) fn loss(&self, op: Op, dtype: DType) -> Loss<'_> {
        let sig = op.signature();
        let (a, b) = ((&self.a[..], &self.a16[..]), (&self.b[..], &self.b16[..]));
        let input = |domain: Domain, (v32, v16)| match domain {
            Domain::Logits => self.batch(v32, v16, dtype),
            Domain::Probs | Domain::Unit => self.batch(&self.targets, &self.targets16, dtype),
        };
        let mut loss = Loss::new(op, input(sig.first.domain, a));
        if let Some(second) = sig.second {
            loss = loss.with_second(input(second.domain, b));
        }
        if sig.labels {
            loss = loss.with_labels(Labels::I32(&self.labels));
        }
        loss
    }
}

/// Seconds of the f64 reference over all rows, timed on at most about 4M elements and scaled.
pub(super) fn reference_seconds(data: &Data, op: Op, softcap: Option<f32>, dtype: DType) -> f64 {
    let sample_rows = ((1usize << 22) / data.cols).clamp(1, data.rows);
    // the first rows (of the f16 copies too, where there are any)
    let head = |v: &[f32]| v[..sample_rows * data.cols].to_vec();
    let head16 = |v: &[f16]| v[..(sample_rows * data.cols).min(v.len())].to_vec();
    let sample = Data {
        rows: sample_rows,
        cols: data.cols,
        a: head(&data.a),
        b: head(&data.b),
        a16: head16(&data.a16),
        b16: head16(&data.b16),
        targets: head(&data.targets),
        targets16: head16(&data.targets16),
        labels: data.labels[..sample_rows].to_vec(),
    };
    let mut loss = sample.loss(op, dtype);
    loss.softcap = softcap;
    let t = Instant::now();
    let _ = xent::reference::compute(&loss, LogBase::Nats);
    t.elapsed().as_secs_f64() * data.rows as f64 / sample_rows as f64
}
