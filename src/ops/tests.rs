//! The row and reduction passes' own unit tests, on a device where there is one.

use wgpu::util::DeviceExt;

use crate::context::Context;
use crate::plan;

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);

/// A context, or `None` where there is no adapter (an error under `XENT_REQUIRE_GPU=1`).
pub(super) fn context() -> Option<Context> {
    match Context::new_blocking() {
        Ok(c) => Some(c),
        Err(e) if std::env::var("XENT_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("XENT_REQUIRE_GPU=1 but no adapter: {e}")
        }
        Err(_) => None,
    }
}

/// Whether two f32 are the same NaN-or-not, or finite within `ulps` of each other.
fn within_ulps(a: f32, b: f32, ulps: u32) -> bool {
    if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
        return a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    }
    let key = |x: f32| if x.is_sign_negative() { -((x.to_bits() & 0x7fff_ffff) as i64) } else { x.to_bits() as i64 };
    (key(a) - key(b)).unsigned_abs() <= u64::from(ulps)
}

/// The kernel's special cases against IEEE division, on hand-written reductions.
#[test]
fn the_mean_of_special_sums_follows_ieee_division() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let kernels = ctx.recorder().kernels();
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let cases: [(f32, u32, f32, u32); 12] = [
        (3.5, 0, 2.0, 0),
        (-7.25, 0, 3.0, 0),
        (0.0, 0, 0.0, 0),
        (2.0, 0, 0.0, 0),
        (-2.0, 0, 0.0, 0),
        (0.0, 1, 4.0, 0),  // +inf / 4
        (0.0, 4, 4.0, 0),  // -inf / 4
        (0.0, 5, 4.0, 0),  // +inf and -inf: NaN
        (1.0, 2, 4.0, 0),  // NaN
        (5.0, 0, 0.0, 1),  // 5 / +inf
        (-5.0, 0, 0.0, 1), // -5 / +inf
        (0.0, 1, 0.0, 1),  // inf / inf
    ];
    for (s, sf, den, df) in cases {
        let words = [s.to_bits(), sf, den.to_bits(), df];
        let src = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let dst = plan::buffer(device, "mean", 16, USAGE);
        let mut encoder = device.create_command_encoder(&Default::default());
        super::encode_mean(kernels, &mut encoder, &src, 0, &dst).expect("encode");
        queue.submit([encoder.finish()]);
        let read = crate::plan::buffer(device, "read", 16, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&dst, 0, &read, 0, 4);
        queue.submit([encoder.finish()]);
        let bytes = crate::readback::read_blocking(device, &read, 0..4).expect("read");
        let got = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let flagged = |v: f32, f: u32| match f {
            0 => v,
            1 => inf,
            4 => -inf,
            _ => nan,
        };
        let want = flagged(s, sf) / flagged(den, df);
        assert!(
            within_ulps(got, want, 3) && got.is_sign_negative() == want.is_sign_negative()
                || want.is_nan() && got.is_nan(),
            "{words:?}: {got} against {want}"
        );
    }
}

/// The first level of the tree, as the workgroup kernel and as the serial one (one
/// invocation a block, for CPU adapters): the same bits in every (sum, flags) pair, on
/// values of every magnitude (where the order of the adds shows), a block with NaN and
/// infinities, a marked value left out, and a last block cut short.
#[test]
fn the_serial_tree_gives_the_workgroup_trees_bits() {
    use rand::{Rng, SeedableRng};
    let Some(ctx) = context() else { return };
    let (device, queue, kernels) = (ctx.device(), ctx.queue(), ctx.recorder().kernels());
    let n = 37 * plan::REDUCE_BLOCK + 311;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_71ee);
    // records of two words: the value, and a mark (MARK_SKIP leaves the value out)
    let mut words = Vec::with_capacity(2 * n as usize);
    for i in 0..n {
        let x: f32 = rng.random_range(-1.0f32..1.0) * 10f32.powi(rng.random_range(-8..9));
        let x = match i {
            600 => f32::NAN,
            700 => f32::INFINITY,
            701 => f32::NEG_INFINITY,
            _ => x,
        };
        let mark = if i % 97 == 5 { 0x8000_0000 } else { rng.random::<u32>() >> 1 };
        words.extend([x.to_bits(), mark]);
    }
    let src = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&words),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let blocks = n.div_ceil(plan::REDUCE_BLOCK);
    let sums = |kernel, mark| {
        let dst = plan::buffer(device, "pairs", 8 * blocks, USAGE);
        let window = plan::window(0, 8 * n, 4, 256, src.size());
        let input = super::Bound { buffer: &src, window };
        let layout = super::ReduceLayout { stride: 2, component: 0, mark };
        let mut encoder = device.create_command_encoder(&Default::default());
        super::reduce_dispatch(kernels, &mut encoder, kernel, input, &dst, n, 0, layout, false).expect("encode");
        let read =
            plan::buffer(device, "read", 8 * blocks, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        encoder.copy_buffer_to_buffer(&dst, 0, &read, 0, 8 * blocks);
        queue.submit([encoder.finish()]);
        crate::readback::read_blocking(device, &read, 0..8 * blocks).expect("read")
    };
    for mark in [None, Some(1)] {
        let (tree, serial) =
            (sums(crate::kernels::Kernel::Reduce, mark), sums(crate::kernels::Kernel::ReduceSerial, mark));
        let pairs: &[u32] = bytemuck::cast_slice(&tree);
        // the specials are flagged, and the sums are not all alike
        assert_ne!(pairs[3], 0, "the block with NaN and infinities");
        assert!(pairs.chunks(2).any(|p| p[0] != pairs[0]));
        assert_eq!(tree, serial, "marks {mark:?}");
    }
}
