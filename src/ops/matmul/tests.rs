//! The matrix product against an f64 product on seeded random data (never zeros), in the
//! four layouts of the fused linear cross-entropy, in f32, f16 and bf16, at unaligned
//! offsets, split along k and across small binding limits; and bit for bit against itself.
//!
//! Tolerance: each element within `(K + 2) · 2^-23 · |scale| · (|init| + Σ_k |A·B|)` of the
//! f64 value (the K + 1 roundings of an f32 sum from init, and the scale's), computed from
//! the elements as the GPU reads them (f16 and bf16 widen exactly).

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgpu::util::DeviceExt;

use super::{Init, Operand, Output, Product, record, record_tiled};
use crate::error::Error;
use crate::kernels::Kernels;
use crate::loss::DType;
use crate::plan::Tile;

const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);
const SIZES: [u64; 5] = [1, 3, 64, 65, 257];

/// A device and its queue with the kernels compiled on it.
struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    kernels: Kernels,
}

/// The shared context's device, or `None` without an adapter (a failure under
/// `XENT_REQUIRE_GPU=1`).
fn gpu() -> Option<Gpu> {
    let ctx = crate::ops::tests::context()?;
    Some(Gpu { device: ctx.device().clone(), queue: ctx.queue().clone(), kernels: ctx.recorder().kernels().clone() })
}

/// A or B on the host: `lead` other elements, then the operand's, as stored and as f64.
#[derive(Clone)]
struct Matrix {
    dtype: DType,
    lead: u64,
    row: u64,
    col: u64,
    bytes: Vec<u8>,
    values: Vec<f64>,
}

impl Matrix {
    /// `lead + count` random elements of magnitude in [0.25, 2), either sign.
    fn random(rng: &mut StdRng, dtype: DType, lead: u64, count: u64, row: u64, col: u64) -> Self {
        let mut m = Matrix { dtype, lead, row, col, bytes: Vec::new(), values: Vec::new() };
        for _ in 0..lead + count {
            let x = rng.random_range(0.25f32..2.0) * if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            m.push(x);
        }
        m
    }

    /// A single 1.0 at strides 0: its products are B's column sums.
    fn ones(dtype: DType, lead: u64) -> Self {
        let mut m = Matrix { dtype, lead, row: 0, col: 0, bytes: Vec::new(), values: Vec::new() };
        (0..lead).for_each(|_| m.push(-3.0));
        m.push(1.0);
        m
    }

    fn push(&mut self, x: f32) {
        let (bytes, value): (Vec<u8>, f64) = match self.dtype {
            DType::F32 => (x.to_le_bytes().to_vec(), f64::from(x)),
            DType::F16 => (f16::from_f32(x).to_le_bytes().to_vec(), f16::from_f32(x).to_f64()),
            DType::Bf16 => (bf16::from_f32(x).to_le_bytes().to_vec(), bf16::from_f32(x).to_f64()),
        };
        self.bytes.extend(bytes);
        self.values.push(value);
    }

    fn at(&self, r: u64, c: u64) -> f64 {
        self.values[(self.lead + r * self.row + c * self.col) as usize]
    }

    /// The operand in `buffer` from term `k0` on (`k_along_row`: k steps by rows, as in B).
    fn operand<'a>(&self, buffer: &'a wgpu::Buffer, k0: u64, k_along_row: bool) -> Operand<'a> {
        let k_stride = if k_along_row { self.row } else { self.col };
        let offset = (self.lead + k0 * k_stride) * self.dtype.size() as u64;
        Operand { buffer, offset, dtype: self.dtype, row_stride: self.row, col_stride: self.col }
    }
}

fn upload(g: &Gpu, bytes: &[u8]) -> wgpu::Buffer {
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().max(16).next_multiple_of(16), 0);
    g.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("matmul test"),
        contents: &padded,
        usage: USAGE,
    })
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

fn read_f32(g: &Gpu, buffer: &wgpu::Buffer, len: usize) -> Vec<f32> {
    let bytes = (4 * len as u64).next_multiple_of(8);
    let read =
        crate::plan::buffer(&g.device, "read", bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    let mut encoder = g.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &read, 0, bytes);
    g.queue.submit([encoder.finish()]);
    let got = crate::readback::read_blocking(&g.device, &read, 0..bytes).expect("read back");
    bytemuck::pod_collect_to_vec::<u8, f32>(&got)[..len].to_vec()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    Zero,
    Accumulate,
    Bias,
}

/// One product: C (after `c_lead` other values, rows `ldc` apart) from `c0`'s values.
#[derive(Clone)]
struct Case {
    name: &'static str,
    m: u64,
    n: u64,
    k: u64,
    a: Matrix,
    b: Matrix,
    start: Start,
    scale: f32,
    c_lead: u64,
    ldc: u64,
    c0: Vec<f32>,
    bias_lead: u64,
    bias: Vec<f32>,
}

impl Case {
    fn new(
        rng: &mut StdRng,
        name: &'static str,
        (m, n, k): (u64, u64, u64),
        a: Matrix,
        b: Matrix,
        start: Start,
    ) -> Self {
        let (c_lead, bias_lead) = (rng.random_range(0..9), rng.random_range(0..9));
        let ldc = n + rng.random_range(0..3);
        let c0 = (0..c_lead + m * ldc).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        let bias = (0..bias_lead + n).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        Case { name, m, n, k, a, b, start, scale: 1.0, c_lead, ldc, c0, bias_lead, bias }
    }

    /// The four layouts of the fused linear cross-entropy at (m, n, k), A and B of the dtypes
    /// given, each after a random lead of up to 8 elements (an odd one for 16-bit elements).
    fn layouts(seed: u64, (m, n, k): (u64, u64, u64), da: DType, db: DType) -> Vec<Case> {
        let rng = &mut StdRng::seed_from_u64(seed);
        let mut lead = || rng.random_range(0..9u64);
        let leads = [lead(), lead(), lead(), lead(), lead(), lead(), lead(), lead()];
        let rng = &mut StdRng::seed_from_u64(seed ^ 0x5eed);
        // logits = H·Wᵀ + b: H [m, k], W [n, k]
        let h = Matrix::random(rng, da, leads[0], m * k, k, 1);
        let w = Matrix::random(rng, db, leads[1], n * k, 1, k);
        let logits = Case::new(rng, "logits", (m, n, k), h, w, Start::Bias);
        // dH = G·W: G [m, k], W [k, n]
        let g = Matrix::random(rng, da, leads[2], m * k, k, 1);
        let w = Matrix::random(rng, db, leads[3], k * n, n, 1);
        let dh = Case::new(rng, "dH", (m, n, k), g, w, Start::Zero);
        // dW += Gᵀ·H: G [k, m], H [k, n]
        let g = Matrix::random(rng, da, leads[4], k * m, 1, m);
        let h = Matrix::random(rng, db, leads[5], k * n, n, 1);
        let dw = Case::new(rng, "dW", (m, n, k), g, h, Start::Accumulate);
        // db += column sums of G [k, n]
        let ones = Matrix::ones(da, leads[6]);
        let g = Matrix::random(rng, db, leads[7], k * n, n, 1);
        let bias_grad = Case::new(rng, "db", (1, n, k), ones, g, Start::Accumulate);
        vec![logits, dh, dw, bias_grad]
    }

    /// The f64 value of C[i, j] before the scale, and its error bound.
    fn want(&self, i: u64, j: u64) -> (f64, f64) {
        let init = match self.start {
            Start::Zero => 0.0,
            Start::Accumulate => f64::from(self.c0[(self.c_lead + i * self.ldc + j) as usize]),
            Start::Bias => f64::from(self.bias[(self.bias_lead + j) as usize]),
        };
        let (mut sum, mut size) = (init, init.abs());
        for kk in 0..self.k {
            let t = self.a.at(i, kk) * self.b.at(kk, j);
            sum += t;
            size += t.abs();
        }
        let scale = f64::from(self.scale);
        (sum * scale, (self.k + 2) as f64 * 2f64.powi(-23) * scale.abs() * size)
    }

    /// C's storage after the product, recorded as one product per range of `splits` along k
    /// (the first with the case's init, the rest accumulating, the scale on the last), with
    /// `tile` (default: the device's).
    fn run(&self, g: &Gpu, splits: &[u64], tile: Option<Tile>) -> crate::Result<Vec<f32>> {
        let (a, b) = (upload(g, &self.a.bytes), upload(g, &self.b.bytes));
        let c = upload(g, &f32_bytes(&self.c0));
        let bias = upload(g, &f32_bytes(&self.bias));
        let mut bounds = vec![0];
        bounds.extend(splits.iter().copied().filter(|&s| s < self.k));
        bounds.push(self.k);
        let mut encoder = g.device.create_command_encoder(&Default::default());
        for (i, w) in bounds.windows(2).enumerate() {
            let init = match self.start {
                _ if i > 0 => Init::Accumulate,
                Start::Zero => Init::Zero,
                Start::Accumulate => Init::Accumulate,
                Start::Bias => Init::Bias { buffer: &bias, offset: 4 * self.bias_lead },
            };
            let p = Product {
                m: self.m,
                n: self.n,
                k: w[1] - w[0],
                a: self.a.operand(&a, w[0], false),
                b: self.b.operand(&b, w[0], true),
                c: Output { buffer: &c, offset: 4 * self.c_lead, row_stride: self.ldc },
                init,
                scale: if i + 2 == bounds.len() { self.scale } else { 1.0 },
            };
            match tile {
                Some(t) => record_tiled(&g.kernels, &mut encoder, &p, t)?,
                None => record(&g.kernels, &mut encoder, &p)?,
            }
        }
        g.queue.submit([encoder.finish()]);
        Ok(read_f32(g, &c, self.c0.len()))
    }

    /// `got` (C's storage) against the f64 product, and every value outside C unchanged.
    fn check(&self, got: &[f32]) {
        for (s, (&g, &c0)) in got.iter().zip(&self.c0).enumerate() {
            let s = s as u64;
            let inside = s >= self.c_lead && (s - self.c_lead) % self.ldc < self.n;
            if !inside {
                assert_eq!(g.to_bits(), c0.to_bits(), "{}: element {s} outside C was written", self.name);
                continue;
            }
            let (i, j) = ((s - self.c_lead) / self.ldc, (s - self.c_lead) % self.ldc);
            let (want, bound) = self.want(i, j);
            let err = (f64::from(g) - want).abs();
            assert!(
                err <= bound,
                "{} {}x{}x{} {:?}x{:?}: C[{i}, {j}] = {g}, f64 {want}, error {err:e} over {bound:e}",
                self.name,
                self.m,
                self.n,
                self.k,
                self.a.dtype,
                self.b.dtype
            );
        }
    }
}

#[test]
fn matmul_layouts_against_f64() {
    let Some(g) = gpu() else { return };
    let mut seed = 0;
    for m in SIZES {
        for n in SIZES {
            for k in SIZES {
                seed += 1;
                for mut case in Case::layouts(seed, (m, n, k), DType::F32, DType::F32) {
                    if case.name == "db" && m != 1 {
                        continue;
                    }
                    if seed % 7 == 0 {
                        case.scale = -0.375;
                    }
                    let got = case.run(&g, &[], None).expect("record");
                    case.check(&got);
                }
            }
        }
    }
}

#[test]
fn matmul_half_operands() {
    let Some(g) = gpu() else { return };
    let types = [DType::F32, DType::F16, DType::Bf16];
    let mut seed = 1000;
    for da in types {
        for db in types {
            for shape in [(65, 64, 257), (3, 257, 65), (1, 3, 64)] {
                seed += 1;
                for case in Case::layouts(seed, shape, da, db) {
                    let got = case.run(&g, &[], None).expect("record");
                    case.check(&got);
                }
            }
        }
    }
}

/// Byte offsets of every binding that are multiples of the element but not of 256 (nor 32),
/// odd element offsets of 16-bit operands among them.
#[test]
fn matmul_unaligned_offsets() {
    let Some(g) = gpu() else { return };
    let rng = &mut StdRng::seed_from_u64(7);
    for (da, lead_a, lead_b) in [(DType::F32, 9, 5), (DType::F16, 7, 3), (DType::Bf16, 1, 13)] {
        let a = Matrix::random(rng, da, lead_a, 65 * 64, 64, 1);
        let b = Matrix::random(rng, da, lead_b, 64 * 257, 257, 1);
        let mut case = Case::new(rng, "offsets", (65, 257, 64), a, b, Start::Bias);
        // C 12 bytes in, the bias 20
        case.c0.splice(..case.c_lead as usize, [1.0, 2.0, 3.0]);
        case.bias.splice(..case.bias_lead as usize, [4.0, 5.0, 6.0, 7.0, 8.0]);
        (case.c_lead, case.bias_lead) = (3, 5);
        let got = case.run(&g, &[], None).expect("record");
        case.check(&got);
    }
}

/// A product split along k into accumulating products gives the bits of one, at split
/// points on and off the tile depth, in every layout and element type.
#[test]
fn matmul_split_along_k_is_bit_identical() {
    let Some(g) = gpu() else { return };
    let mut seed = 2000;
    for (da, db) in [(DType::F32, DType::F32), (DType::F16, DType::Bf16), (DType::Bf16, DType::F32)] {
        for shape in [(65, 64, 257), (3, 65, 64)] {
            seed += 1;
            for mut case in Case::layouts(seed, shape, da, db) {
                case.scale = 0.75;
                let whole = case.run(&g, &[], None).expect("record");
                case.check(&whole);
                for splits in [&[100][..], &[16], &[1, 2, 63], &[32, 48, 200]] {
                    let split = case.run(&g, splits, None).expect("record");
                    let same = whole.iter().zip(&split).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{} {shape:?} {da:?}x{db:?}: split at {splits:?} differs", case.name);
                }
            }
        }
    }
}

/// The signed zero of a sum of zeros survives a split off the tile depth: -0.0 from a bias
/// of -0.0 and products -0.0 stays -0.0 where the first product's padding ends (the padding
/// adds -0.0, not +0.0).
#[test]
fn matmul_split_keeps_a_negative_zero() {
    let Some(g) = gpu() else { return };
    let rng = &mut StdRng::seed_from_u64(13);
    let mut a = Matrix { dtype: DType::F32, lead: 0, row: 5, col: 1, bytes: Vec::new(), values: Vec::new() };
    (0..3 * 5).for_each(|_| a.push(0.0));
    let b = Matrix::random(rng, DType::F32, 0, 5 * 4, 4, 1);
    let mut case = Case::new(rng, "negative zero", (3, 4, 5), a, b, Start::Bias);
    let lead = case.bias_lead as usize;
    case.bias[lead..].iter_mut().for_each(|v| *v = -0.0);
    // every product -0.0: B's terms all negative
    case.b.bytes = case.b.values.iter().flat_map(|v| (-(v.abs() as f32)).to_le_bytes()).collect();
    for splits in [&[][..], &[3], &[1, 2]] {
        let got = case.run(&g, splits, None).expect("record");
        for i in 0..3 {
            for j in 0..4 {
                let v = got[(case.c_lead + i * case.ldc + j) as usize];
                assert_eq!(v.to_bits(), (-0.0f32).to_bits(), "split at {splits:?}: C[{i}, {j}] = {v}");
            }
        }
    }
}

#[test]
fn matmul_repeat_runs_are_bit_identical() {
    let Some(g) = gpu() else { return };
    for case in Case::layouts(3000, (257, 65, 257), DType::F32, DType::F16) {
        let first = case.run(&g, &[], None).expect("record");
        for _ in 0..2 {
            let again = case.run(&g, &[], None).expect("record");
            assert!(first.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits()), "{}", case.name);
        }
    }
}

/// Every tiling the shader takes gives the f64 product (each its own pipeline).
#[test]
fn matmul_tilings() {
    let Some(g) = gpu() else { return };
    let max = g.device.limits().max_compute_invocations_per_workgroup;
    let tiles = [
        Tile::new(128, 128, 8),
        Tile::new(64, 64, 16),
        Tile::new(32, 32, 16),
        Tile::new(8, 128, 8),
        Tile::new(128, 8, 8),
        Tile::new(8, 8, 16),
        Tile::new(16, 64, 16),
    ];
    for tile in tiles.into_iter().filter(|t| t.fits(max)) {
        for case in Case::layouts(4000, (65, 257, 65), DType::F32, DType::Bf16) {
            let got = case.run(&g, &[100], Some(tile)).expect("record");
            case.check(&got);
        }
    }
}

/// A device with a 4 KiB binding limit, 256-byte offset alignment and grids of at most 3
/// workgroups a side: products split along m and n into many dispatches, each binding from
/// an aligned-down offset; a row of A over the limit is an error that says so.
#[test]
fn matmul_pieces_under_small_limits() {
    let Some(ctx) = crate::ops::tests::context() else { return };
    let adapter = ctx.adapter();
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 4096,
        min_storage_buffer_offset_alignment: 256.max(adapter.limits().min_storage_buffer_offset_alignment),
        max_compute_workgroups_per_dimension: 3,
        ..adapter.limits()
    };
    let descriptor = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
    let (device, queue) = pollster::block_on(adapter.request_device(&descriptor)).expect("a device of small limits");
    let kernels = Kernels::new(&device, true, false);
    let g = Gpu { device, queue, kernels };
    // (a column of W [k, n] and a row of G [k, m] span k - 1 rows: few terms fit 4 KiB)
    for ((da, db), shape) in
        [(DType::F32, DType::F32), (DType::F16, DType::Bf16)].into_iter().zip([(200, 129, 5), (37, 300, 3)])
    {
        for case in Case::layouts(5000, shape, da, db) {
            let got = case.run(&g, &[], Some(Tile::new(16, 16, 16))).expect("record");
            case.check(&got);
        }
    }
    let rng = &mut StdRng::seed_from_u64(5);
    let a = Matrix::random(rng, DType::F32, 0, 2 * 2000, 2000, 1);
    // (B's rows all one, at k stride 0: only A's row is over)
    let b = Matrix::random(rng, DType::F32, 0, 2, 0, 1);
    let case = Case::new(rng, "too long", (2, 2, 2000), a, b, Start::Zero);
    match case.run(&g, &[], None) {
        Err(Error::TooLarge(m)) => assert!(m.contains("row of A") && m.contains("8000 bytes"), "{m}"),
        other => panic!("a row of 8000 bytes under a 4096-byte limit: {other:?}"),
    }
}

/// Arguments the product refuses before recording anything.
#[test]
fn matmul_refuses_bad_arguments() {
    let Some(g) = gpu() else { return };
    let buf = |bytes: u64, usage| crate::plan::buffer(&g.device, "arg", bytes, usage);
    let (a, b, c) = (buf(4096, USAGE), buf(4096, USAGE), buf(4096, USAGE));
    let uniform = buf(4096, wgpu::BufferUsages::UNIFORM);
    let op = |buffer, offset, dtype| Operand { buffer, offset, dtype, row_stride: 8, col_stride: 1 };
    let good = Product {
        m: 8,
        n: 8,
        k: 8,
        a: op(&a, 0, DType::F32),
        b: op(&b, 0, DType::F32),
        c: Output { buffer: &c, offset: 0, row_stride: 8 },
        init: Init::Zero,
        scale: 1.0,
    };
    let mut encoder = g.device.create_command_encoder(&Default::default());
    record(&g.kernels, &mut encoder, &good).expect("a good product");
    let cases: [(&str, Product); 7] = [
        ("offset", Product { a: op(&a, 2, DType::F32), ..good }),
        ("STORAGE", Product { b: op(&uniform, 0, DType::F32), ..good }),
        ("past the buffer", Product { k: 600, ..good }),
        ("overlap", Product { c: Output { row_stride: 7, ..good.c }, ..good }),
        ("own", Product { c: Output { buffer: &a, ..good.c }, ..good }),
        ("own", Product { init: Init::Bias { buffer: &c, offset: 0 }, ..good }),
        ("bias", Product { init: Init::Bias { buffer: &b, offset: 4090 }, ..good }),
    ];
    for (want, p) in cases {
        let e = record(&g.kernels, &mut encoder, &p).expect_err(want);
        let message = e.to_string();
        assert!(message.contains(want) || want == "own" && message.contains("buffer"), "{want}: {message}");
    }
}

/// Sums of 2^20 + 3 terms, longer than llvmpipe lets a shader's loops run (65,535
/// iterations in all): of small integers, so that every partial sum is exact in f32 and a
/// term left out would show.
#[test]
fn matmul_long_sums() {
    let Some(g) = gpu() else { return };
    let k = (1 << 20) + 3;
    let rng = &mut StdRng::seed_from_u64(11);
    let mut integers = |count: u64, dtype: DType, row: u64, col: u64| {
        let mut m = Matrix { dtype, lead: 1, row, col, bytes: Vec::new(), values: Vec::new() };
        (0..1 + count)
            .for_each(|_| m.push(rng.random_range(1..3) as f32 * if rng.random_bool(0.5) { -1.0 } else { 1.0 }));
        m
    };
    let (a, b) = (integers(3 * k, DType::F32, k, 1), integers(2 * k, DType::Bf16, 1, k));
    let case = Case::new(&mut StdRng::seed_from_u64(12), "long", (3, 2, k), a, b, Start::Zero);
    // (the loops a tile of terms runs differ with the tile's depth and staging)
    let max = g.device.limits().max_compute_invocations_per_workgroup;
    let tiles = [None, Some(Tile::new(128, 128, 8)), Some(Tile::new(64, 64, 16))];
    for tile in tiles.into_iter().filter(|t| t.is_none_or(|t| t.fits(max))) {
        let got = case.run(&g, &[], tile).expect("record");
        for i in 0..3 {
            for j in 0..2 {
                let want = case.want(i, j).0;
                assert_eq!(f64::from(got[(case.c_lead + i * case.ldc + j) as usize]), want, "{tile:?}: C[{i}, {j}]");
            }
        }
    }
}
