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
// The workgroup's TM×TN block of C, the depth TK of its staged tiles, and each invocation's
// RM×RN block (rows ly + i·WY, columns lx + j·WX: neighbours read neighbouring words).
// The host picks them (crate::plan::matmul_tile); TM·TK and TK·TN are at most MAX_STAGED and
// multiples of the invocations, RM·RN at most MAX_BLOCK.
override TM: u32 = 64u;
override TN: u32 = 64u;
override TK: u32 = 16u;
override RM: u32 = 4u;
override RN: u32 = 4u;
override WX: u32 = TN / RN;
override WY: u32 = TM / RM;

// Elements of each staged tile (8 KiB for the two, half the smallest workgroup memory).
const MAX_STAGED: u32 = 1024u;
const MAX_BLOCK: u32 = 64u;
const MAX_SIDE: u32 = 8u;

@group(0) @binding(0) var<uniform> params: MatmulParams;
@group(0) @binding(1) var<storage, read> mm_a: array<u32>;
@group(0) @binding(2) var<storage, read> mm_b: array<u32>;
@group(0) @binding(3) var<storage, read> mm_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> mm_c: array<f32>;

// A's tile k-major ([TK][TM]), B's too ([TK][TN]).
var<workgroup> sh_a: array<f32, MAX_STAGED>;
var<workgroup> sh_b: array<f32, MAX_STAGED>;

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

@compute @workgroup_size(WX, WY)
fn matmul(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let m0 = group.y * TM;
    let n0 = group.x * TN;
    let threads = WX * WY;
    let last_m = params.m - 1u;
    let last_n = params.n - 1u;

    // init(m, n); indices clamped into C so that no branch depends on the lane
    var acc: array<f32, MAX_BLOCK>;
    for (var i = 0u; i < RM; i++) {
        let m = min(m0 + local.y + i * WY, last_m);
        for (var j = 0u; j < RN; j++) {
            let n = min(n0 + local.x + j * WX, last_n);
            var v = 0.0;
            if params.init == INIT_ACCUMULATE {
                v = mm_c[params.c_base + m * params.ldc + n];
            } else if params.init == INIT_BIAS {
                v = mm_bias[params.bias_base + n];
            }
            acc[i * RN + j] = v;
        }
    }

    // tiles are loaded along the operand's shorter stride, so neighbours read neighbours
    let a_k_fast = params.a_sk <= params.a_sm;
    let b_n_fast = params.b_sn <= params.b_sk;
    let neg_zero = bitcast<f32>(0x80000000u);
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        let last_k = params.k - 1u;
        for (var r = 0u; r < TM * TK / threads; r++) {
            let t = li + r * threads;
            let kk = select(t / TM, t % TK, a_k_fast);
            let mm = select(t % TM, t / TK, a_k_fast);
            let m = m0 + mm;
            let k = k0 + kk;
            let e = params.a_base + min(m, last_m) * params.a_sm + min(k, last_k) * params.a_sk;
            sh_a[kk * TM + mm] = select(neg_zero, load_a(e), m <= last_m && k <= last_k);
        }
        for (var r = 0u; r < TK * TN / threads; r++) {
            let t = li + r * threads;
            let kk = select(t / TN, t % TK, !b_n_fast);
            let nn = select(t % TN, t / TK, !b_n_fast);
            let n = n0 + nn;
            let k = k0 + kk;
            let e = params.b_base + min(k, last_k) * params.b_sk + min(n, last_n) * params.b_sn;
            sh_b[kk * TN + nn] = select(0.0, load_b(e), n <= last_n && k <= last_k);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, MAX_SIDE>;
            for (var i = 0u; i < RM; i++) {
                a[i] = sh_a[kk * TM + local.y + i * WY];
            }
            for (var j = 0u; j < RN; j++) {
                let b = sh_b[kk * TN + local.x + j * WX];
                for (var i = 0u; i < RM; i++) {
                    acc[i * RN + j] = acc[i * RN + j] + a[i] * b;
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < RM; i++) {
        let m = m0 + local.y + i * WY;
        for (var j = 0u; j < RN; j++) {
            let n = n0 + local.x + j * WX;
            if m <= last_m && n <= last_n {
                mm_c[params.c_base + m * params.ldc + n] = acc[i * RN + j] * params.scale;
            }
        }
    }
}
