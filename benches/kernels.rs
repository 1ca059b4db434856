//! A first look at throughput: whole jobs on host slices (upload, kernel, reduction,
//! readback) per operation, in input bytes per second. Device-side timings against a
//! copy kernel are the `xent bench` of a later change.

use criterion::{Criterion, Throughput, criterion_main};
use half::f16;
use xent::{Batch, Context, Labels, Loss, Op, RunOptions};

/// Cross-entropy against labels with its default options.
const CE: Op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };

fn data(rows: usize, cols: usize) -> (Vec<f32>, Vec<i32>) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let logits = (0..rows * cols).map(|_| (next() >> 40) as f32 / (1u64 << 21) as f32 - 4.0).collect();
    let labels = (0..rows).map(|_| (next() % cols as u64) as i32).collect();
    (logits, labels)
}

fn bench(c: &mut Criterion) {
    let Ok(ctx) = Context::new_blocking() else {
        eprintln!("skipped: no GPU adapter");
        return;
    };
    let mut group = c.benchmark_group(format!("jobs on {}", ctx.adapter_label()));
    group.sample_size(10);
    for &(rows, cols) in &[(8192usize, 4096usize), (65536, 1000), (512, 65536)] {
        let (logits, labels) = data(rows, cols);
        let halves: Vec<f16> = logits.iter().map(|&x| f16::from_f32(x)).collect();
        let y = Labels::I32(&labels);
        let cases = [
            (Loss::new(Op::LogSumExp, Batch::new(&logits[..], rows, cols).unwrap()), "f32", 4),
            (Loss::new(CE, Batch::new(&logits[..], rows, cols).unwrap()).with_labels(y), "f32", 4),
            (Loss::new(CE, Batch::new(&halves[..], rows, cols).unwrap()).with_labels(y), "f16", 2),
        ];
        for (loss, dtype, size) in cases {
            group.throughput(Throughput::Bytes((rows * cols * size) as u64));
            group.bench_function(format!("{}/{rows}x{cols}/{dtype}", loss.op), |b| {
                b.iter(|| ctx.compute(&loss, &RunOptions::default()).unwrap().sum)
            });
        }
        group.throughput(Throughput::Bytes((rows * cols * 4) as u64));
        group.bench_function(format!("reference_ce/{rows}x{cols}/f32"), |b| {
            let loss = Loss::new(CE, Batch::new(&logits[..], rows, cols).unwrap()).with_labels(y);
            b.iter(|| xent::reference::compute(&loss, Default::default()).unwrap().sum())
        });
    }
    group.finish();
}

/// The group `criterion_main!` runs: what `criterion_group!(benches, bench)` writes, but
/// private and documented.
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
}

criterion_main!(benches);
