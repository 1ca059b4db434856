//! Rows the device reads in place from host memory ([`Stream::push_shared`]) against the
//! same rows copied ([`Stream::push`]): the same bits in every result, whatever the chunking,
//! the element type and where the rows start; the memory is held while the device reads it.
//! On a Vulkan adapter whose memory is the host's (lavapipe) the rows must really be read
//! in place; elsewhere (GL) `push_shared` copies, and the bits are the same all the same.

mod common;

use std::sync::Arc;

use common::{context, logits, probs, rng};
use half::f16;
use rand::Rng;
use xent::{Batch, Context, Floats, Labels, Loss, Op, Output, Rows, RunOptions, SharedBytes, Stream};

/// Host memory of f32 words (so that f32 and f16 rows in it are aligned).
struct Words(Vec<f32>);

impl AsRef<[u8]> for Words {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// `data` in word memory, `skip` words after a 32-byte boundary, and the index it starts at.
fn aligned(data: &[f32], skip: usize) -> (SharedBytes, usize) {
    let mut words = vec![1.5f32; data.len() + skip + 8];
    let at = (words.as_ptr() as usize).wrapping_neg() % 32 / 4 + skip;
    words[at..at + data.len()].copy_from_slice(data);
    (Arc::new(Words(words)), at)
}

/// Whether this adapter must read host memory in place: a Vulkan CPU adapter.
fn must_read_in_place(ctx: &Context) -> bool {
    let info = ctx.adapter().get_info();
    info.backend == xent::wgpu::Backend::Vulkan
        && info.device_type == xent::wgpu::DeviceType::Cpu
        && std::env::var("XENT_HOST_IMPORT").map_or(true, |v| v != "0")
}

/// Everything a run gives back, as bits.
fn bits(out: &Output, rows: &Rows) -> Vec<u64> {
    let mut v = vec![out.sum.to_bits(), out.denominator.to_bits()];
    v.extend(rows.values.iter().map(|x| u64::from(x.to_bits())));
    v.extend(rows.argmax.iter().map(|&a| u64::from(a)));
    v.extend(
        rows.evals
            .iter()
            .flat_map(|e| [e.label, e.rank, e.prediction, e.confidence.to_bits(), e.brier.to_bits()].map(u64::from)),
    );
    v
}

/// Runs `loss` in pushes of `push` rows, each split into pieces of at most `chunk`; with
/// `memory`, through `push_shared`. Returns the bits and the rows read in place.
fn run(ctx: &Context, loss: &Loss, push: usize, chunk: u64, memory: Option<&SharedBytes>) -> (Vec<u64>, u64) {
    let rows = loss.primary().rows;
    let report = matches!(loss.op, Op::CrossEntropy { .. });
    let options =
        RunOptions { report, keep_values: true, keep_argmax: true, chunk_rows: Some(chunk), ..Default::default() };
    let mut stream: Stream = ctx.stream(loss, rows as u64, &options).expect("stream");
    let mut back = Rows::default();
    for start in (0..rows).step_by(push) {
        let part = slice(loss, start, push.min(rows - start));
        let got = match memory {
            Some(m) => stream.push_shared(&part, std::slice::from_ref(m)),
            None => stream.push(&part),
        };
        back.append(got.expect("push")).expect("append");
    }
    back.append(stream.drain().expect("drain")).expect("append");
    let in_place = stream.rows_read_in_place();
    let out = stream.finish().expect("finish");
    (bits(&out, &back), in_place)
}

/// Rows `start..start + n` of `loss`.
fn slice<'a>(loss: &Loss<'a>, start: usize, n: usize) -> Loss<'a> {
    let cut = |b: &Batch<'a>| {
        let (s, e) = (start * b.cols, (start + n) * b.cols);
        let data = match b.data {
            Floats::F32(v) => Floats::F32(&v[s..e]),
            Floats::F16(v) => Floats::F16(&v[s..e]),
            other => other,
        };
        Batch::new(data, n, b.cols).expect("batch")
    };
    let mut part = Loss::new(loss.op, cut(loss.primary()));
    if let Some(b) = &loss.inputs.second {
        part = part.with_second(cut(b));
    }
    if let Some(Labels::I64(y)) = loss.inputs.labels {
        part = part.with_labels(Labels::I64(&y[start..start + n]));
    }
    part
}

/// `ce` with its report, and `kl` (two inputs), in f32 and f16, rows starting at `skip`
/// elements into the memory: in place and copied give the same bits.
fn check(rows: usize, cols: usize, skip: usize, seed: u64) {
    let Some(ctx) = context() else { return };
    let mut r = rng(seed);
    let x = logits(&mut r, rows * cols, 20.0);
    let q = probs(&mut r, rows, cols, true);
    let y: Vec<i64> = (0..rows).map(|_| r.random_range(0..cols as i64)).collect();
    // f32 rows `skip` words after a 32-byte boundary, as a mapped file's rows lie after a
    // page and a padded header; f16 rows `skip` halves after one
    let mut both = x.clone();
    both.extend(&q);
    let (memory, at) = aligned(&both, skip);
    let halves: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let mut half_words = vec![0f32; (halves.len() + skip).div_ceil(2) + 8];
    let pad = 2 * ((half_words.as_ptr() as usize).wrapping_neg() % 32 / 4) + skip;
    bytemuck::cast_slice_mut::<f32, f16>(&mut half_words)[pad..pad + halves.len()].copy_from_slice(&halves);
    let half_memory: SharedBytes = Arc::new(Words(half_words));
    let f32_rows: &[f32] = &bytemuck::cast_slice((*memory).as_ref())[at..at + both.len()];
    let f16_rows: &[f16] = &bytemuck::cast_slice((*half_memory).as_ref())[pad..pad + halves.len()];
    let (a, targets) = (&f32_rows[..rows * cols], &f32_rows[rows * cols..]);
    let ce = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let kl = Op::KlDiv { p: xent::Form::Logits, q: xent::Form::Logits };
    let cases = [
        ("ce f32", Loss::new(ce, Batch::new(a, rows, cols).unwrap()).with_labels(Labels::I64(&y)), &memory),
        ("ce f16", Loss::new(ce, Batch::new(f16_rows, rows, cols).unwrap()).with_labels(Labels::I64(&y)), &half_memory),
        (
            "kl f32",
            Loss::new(kl, Batch::new(a, rows, cols).unwrap()).with_second(Batch::new(targets, rows, cols).unwrap()),
            &memory,
        ),
    ];
    for (what, loss, memory) in &cases {
        for (push, chunk) in [(rows, 1 << 20), (rows, 257), (1000, 300)] {
            let (copied, none) = run(ctx, loss, push, chunk, None);
            let (shared, in_place) = run(ctx, loss, push, chunk, Some(memory));
            assert_eq!(none, 0, "{what}: push read rows in place");
            assert!(
                copied == shared,
                "{what} [{rows}, {cols}] after {skip}, pushes of {push}, chunks of {chunk}: bits differ"
            );
            // (kl's targets follow the logits in the memory: in their octets only so placed)
            let second_placed = !what.starts_with("kl") || (rows * cols).is_multiple_of(8);
            if must_read_in_place(ctx) && skip == 0 && second_placed {
                assert_eq!(in_place, rows as u64, "{what} [{rows}, {cols}], chunks of {chunk}: rows copied");
            }
        }
    }
}

#[test]
fn rows_in_place_give_the_bits_of_rows_copied() {
    check(3000, 1000, 0, 1);
    check(2500, 7, 0, 2);
    check(4099, 1, 0, 3);
}

/// Rows that start off their octet in the memory (an upload would place them elsewhere in
/// it) are copied rather than read with other lanes: the bits stay those of a copy.
#[test]
fn rows_off_their_octet_are_copied_with_the_same_bits() {
    check(1500, 13, 3, 4);
    check(1500, 64, 5, 5);
}

/// The device's buffer over the memory holds a reference to it until the device is done:
/// one piece of 16 MB, just submitted, is still held when `push_shared` returns unless the
/// device has finished it, and let go once the device is done.
#[test]
fn the_memory_is_held_while_the_device_reads_it() {
    let Some(shared) = context() else { return };
    // a device of its own: the other tests' work on the shared one keeps its queue busy
    let ctx = &Context::from_adapter(shared.adapter().clone()).expect("a second device");
    let (rows, cols) = (8192, 500);
    let mut r = rng(6);
    let (memory, at) = aligned(&logits(&mut r, rows * cols, 10.0), 0);
    let y: Vec<i64> = (0..rows).map(|_| r.random_range(0..cols as i64)).collect();
    let a: &[f32] = &bytemuck::cast_slice((*memory).as_ref())[at..at + rows * cols];
    let op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };
    let loss = Loss::new(op, Batch::new(a, rows, cols).unwrap()).with_labels(Labels::I64(&y));
    let mut stream = ctx.stream(&loss, rows as u64, &RunOptions::default()).expect("stream");
    stream.push_shared(&loss, std::slice::from_ref(&memory)).expect("push");
    if must_read_in_place(ctx) {
        // A fast device may be done with the piece already, and its buffer released: the
        // memory may then be free only once this device's queue is empty (read after the count).
        let held = Arc::strong_count(&memory) > 1;
        let done = ctx.device().poll(xent::wgpu::PollType::Poll).expect("poll").is_queue_empty();
        assert!(held || done, "the memory was let go while the device could still read it");
    }
    stream.finish().expect("finish");
    ctx.device().poll(xent::wgpu::PollType::wait_indefinitely()).expect("poll");
    assert_eq!(Arc::strong_count(&memory), 1, "the memory is still held after the run");
}
