// A matrix product over strided operands, the building block of the fused linear
// cross-entropy (logits = H·Wᵀ + b, dH = G·W, dW += Gᵀ·H, db += column sums of G):
//
//     C[m, n] = scale · (init(m, n) + Σ_{k = 0..K-1} A(m, k) · B(k, n))
//
// with A(m, k) = a[a_base + m·a_sm + k·a_sk], B(k, n) = b[b_base + k·b_sk + n·b_sn] (element
// strides, any of them 0), C row-major f32 at c[c_base + m·ldc + n], and init 0, the current
// C (accumulate) or bias[bias_base + n]. Composed after common/load_f16.wgsl, whose exact
// `widen` reads f16 without the shader-f16 feature.
//
// Determinism: each C element is one f32 accumulator that starts at init and adds its terms
// `acc + a·b` one k at a time, in increasing k: no split-K, no atomics, no tree. So a product
// split along K into dispatches that accumulate (scale 1 but in the last) gives the bits of
// one dispatch. Padding keeps that true at any split point: the k past K of a tile load A as
// -0.0 and B as +0.0, whose product -0.0 adds to any accumulator exactly (+0.0 would turn a
// -0.0 accumulator into +0.0), and a zero never meets an input's infinity there.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    // INIT_ZERO, INIT_ACCUMULATE or INIT_BIAS
    init: u32,
    a_base: u32,
    a_sm: u32,
    a_sk: u32,
    b_base: u32,
    b_sk: u32,
    b_sn: u32,
    c_base: u32,
    ldc: u32,
    bias_base: u32,
    scale: f32,
    pad1: u32,
    pad2: u32,
}

const INIT_ZERO: u32 = 0u;
const INIT_ACCUMULATE: u32 = 1u;
const INIT_BIAS: u32 = 2u;

// Element types of A and B: 0 f32, 1 f16, 2 bf16 (16-bit ones two to a word, low first).
override A_DTYPE: u32 = 0u;
override B_DTYPE: u32 = 0u;
// The workgroup's TM×TN block of C and the depth TK of its staged tiles; each invocation
// computes an 8×8 block, rows 8·ly.. and columns 8·lx.., reading the A and B values of a k
// as two vec4 each from workgroup memory. llvmpipe pays per load instruction (a loop over
// its SIMD lanes), so the loads a multiply-add take rule there: on lavapipe the logits
// product ran at 1.6 GFLOP/s with 4×4 blocks read as scalars, 2.1 as vec4 and 3.2 with
// 8×8 (64 accumulators a lane; GPUs' SGEMMs use the same). The host picks the tile
// (crate::plan::matmul_tile): TM and TN multiples of 8, TM·TK and TK·TN at most
// MAX_STAGED, and TM·TK / 4 and TK·TN / 4 multiples of the invocations.
override TM: u32 = 128u;
override TN: u32 = 128u;
override TK: u32 = 8u;
override WX: u32 = TN / 8u;
override WY: u32 = TM / 8u;

// Elements of each staged tile (8 KiB for the two, half the smallest workgroup memory).
const MAX_STAGED: u32 = 1024u;

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> mm_a: array<u32>;
@group(0) @binding(2) var<storage, read> mm_b: array<u32>;
@group(0) @binding(3) var<storage, read> mm_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> mm_c: array<f32>;

// A's tile k-major ([TK][TM / 4] vectors of 4 rows), B's too ([TK][TN / 4] of 4 columns).
var<workgroup> sh_a: array<vec4<f32>, MAX_STAGED / 4u>;
var<workgroup> sh_b: array<vec4<f32>, MAX_STAGED / 4u>;

// Element `e` of a binding of `dtype` elements viewed as words.
fn element(word: u32, e: u32, dtype: u32) -> f32 {
    if dtype == 1u {
        return widen(word, e);
    }
    if dtype == 2u {
        return bitcast<f32>(((word >> ((e & 1u) * 16u)) & 0xffffu) << 16u);
    }
    return bitcast<f32>(word);
}

fn load_a(e: u32) -> f32 {
    return element(mm_a[select(e, e >> 1u, A_DTYPE != 0u)], e, A_DTYPE);
}

fn load_b(e: u32) -> f32 {
    return element(mm_b[select(e, e >> 1u, B_DTYPE != 0u)], e, B_DTYPE);
}

// init(m, n) of the 4 columns from n (clamped into C: no branch depends on the lane).
fn init4(m: u32, n: u32) -> vec4<f32> {
    var v = vec4<f32>();
    for (var j = 0u; j < 4u; j++) {
        let col = min(n + j, params.n - 1u);
        if params.init == INIT_ACCUMULATE {
            v[j] = mm_c[params.c_base + min(m, params.m - 1u) * params.ldc + col];
        } else if params.init == INIT_BIAS {
            v[j] = mm_bias[params.bias_base + col];
        }
    }
    return v;
}

// scale · v into the 4 columns of row m from n that are inside C.
fn store4(m: u32, n: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if m < params.m && n + j < params.n {
            mm_c[params.c_base + m * params.ldc + n + j] = v[j] * params.scale;
        }
    }
}

@compute @workgroup_size(WX, WY)
fn matmul(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let threads = WX * WY;
    let last_m = params.m - 1u;
    let last_n = params.n - 1u;
    let m = group.y * TM + 8u * local.y;
    let n = group.x * TN + 8u * local.x;

    // row i of the block is acc[2i] (columns n..n+3) and acc[2i+1] (n+4..n+7); every index
    // a constant, so the block stays in registers
    var acc: array<vec4<f32>, 16>;
    acc[0] = init4(m, n);
    acc[1] = init4(m, n + 4u);
    acc[2] = init4(m + 1u, n);
    acc[3] = init4(m + 1u, n + 4u);
    acc[4] = init4(m + 2u, n);
    acc[5] = init4(m + 2u, n + 4u);
    acc[6] = init4(m + 3u, n);
    acc[7] = init4(m + 3u, n + 4u);
    acc[8] = init4(m + 4u, n);
    acc[9] = init4(m + 4u, n + 4u);
    acc[10] = init4(m + 5u, n);
    acc[11] = init4(m + 5u, n + 4u);
    acc[12] = init4(m + 6u, n);
    acc[13] = init4(m + 6u, n + 4u);
    acc[14] = init4(m + 7u, n);
    acc[15] = init4(m + 7u, n + 4u);

    // each staged vector holds 4 rows of A (4 columns of B) at one k; neighbouring
    // invocations take neighbouring k where the operand's k stride is the shorter
    let a_k_fast = params.a_sk <= params.a_sm;
    let b_k_fast = params.b_sk < params.b_sn;
    let neg_zero = bitcast<f32>(0x80000000u);
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let last_k = params.k - 1u;
        for (var r = 0u; r < TM * TK / 4u / threads; r++) {
            let s = li + r * threads;
            let kk = select(s / (TM / 4u), s % TK, a_k_fast);
            let mq = select(s % (TM / 4u), s / TK, a_k_fast);
            let k = k0 + kk;
            let rows = group.y * TM + 4u * mq;
            var v: vec4<f32>;
            for (var c = 0u; c < 4u; c++) {
                let row = rows + c;
                let e = params.a_base + min(row, last_m) * params.a_sm + min(k, last_k) * params.a_sk;
                v[c] = select(neg_zero, load_a(e), row <= last_m && k <= last_k);
            }
            sh_a[kk * (TM / 4u) + mq] = v;
        }
        for (var r = 0u; r < TK * TN / 4u / threads; r++) {
            let s = li + r * threads;
            let kk = select(s / (TN / 4u), s % TK, b_k_fast);
            let nq = select(s % (TN / 4u), s / TK, b_k_fast);
            let k = k0 + kk;
            let cols = group.x * TN + 4u * nq;
            var v: vec4<f32>;
            for (var c = 0u; c < 4u; c++) {
                let col = cols + c;
                let e = params.b_base + min(k, last_k) * params.b_sk + min(col, last_n) * params.b_sn;
                v[c] = select(0.0, load_b(e), col <= last_n && k <= last_k);
            }
            sh_b[kk * (TN / 4u) + nq] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a0 = sh_a[kk * (TM / 4u) + 2u * local.y];
            let a1 = sh_a[kk * (TM / 4u) + 2u * local.y + 1u];
            let b0 = sh_b[kk * (TN / 4u) + 2u * local.x];
            let b1 = sh_b[kk * (TN / 4u) + 2u * local.x + 1u];
            acc[0] = acc[0] + a0.x * b0;
            acc[1] = acc[1] + a0.x * b1;
            acc[2] = acc[2] + a0.y * b0;
            acc[3] = acc[3] + a0.y * b1;
            acc[4] = acc[4] + a0.z * b0;
            acc[5] = acc[5] + a0.z * b1;
            acc[6] = acc[6] + a0.w * b0;
            acc[7] = acc[7] + a0.w * b1;
            acc[8] = acc[8] + a1.x * b0;
            acc[9] = acc[9] + a1.x * b1;
            acc[10] = acc[10] + a1.y * b0;
            acc[11] = acc[11] + a1.y * b1;
            acc[12] = acc[12] + a1.z * b0;
            acc[13] = acc[13] + a1.z * b1;
            acc[14] = acc[14] + a1.w * b0;
            acc[15] = acc[15] + a1.w * b1;
        }
        workgroupBarrier();
    }

    store4(m, n, acc[0]);
    store4(m, n + 4u, acc[1]);
    store4(m + 1u, n, acc[2]);
    store4(m + 1u, n + 4u, acc[3]);
    store4(m + 2u, n, acc[4]);
    store4(m + 2u, n + 4u, acc[5]);
    store4(m + 3u, n, acc[6]);
    store4(m + 3u, n + 4u, acc[7]);
    store4(m + 4u, n, acc[8]);
    store4(m + 4u, n + 4u, acc[9]);
    store4(m + 5u, n, acc[10]);
    store4(m + 5u, n + 4u, acc[11]);
    store4(m + 6u, n, acc[12]);
    store4(m + 6u, n + 4u, acc[13]);
    store4(m + 7u, n, acc[14]);
    store4(m + 7u, n + 4u, acc[15]);
}
