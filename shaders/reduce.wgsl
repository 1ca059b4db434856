// Deterministic sum over rows: a fixed binary tree, no float atomics.
//
// Each workgroup of 256 invocations (on a CPU adapter, each invocation of
// reduce_sum_serial) folds a block of 512 consecutive values into one (sum, flags)
// partial; the host repeats the dispatch on the partials until one is left. The tree
// depends only on n, so the same input gives the same bits on every run, and the error
// grows like a pairwise sum's (log2 n), not like n.
// The first level reads f32 values (bit patterns, classified here: NaN/±inf become flags) at
// src[in_base + i·stride + component], leaving out (with skip_marked) a value whose group
// holds MARK_SKIP at word `mark` (the entropy of an ignored row: its z word is AUX_IGNORED
// of common/params.wgsl); later levels read partial pairs.
// Bindings: src (u32 words), dst[out_base + 2g .. +2] = (sum bits, flags).

struct ReduceParams {
    n: u32,
    stride: u32,
    component: u32,
    in_base: u32,
    out_base: u32,
    partials: u32,      // 1: src holds (sum, flags) pairs from an earlier level
    skip_marked: u32,   // 1: a value whose group holds MARK_SKIP at word `mark` counts 0
    mark: u32,
}

const MARK_SKIP: u32 = 0x80000000u;

const REDUCE_WG: u32 = 256u;
const REDUCE_BLOCK: u32 = 512u;

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

var<workgroup> sh_sum: array<f32, REDUCE_WG>;
var<workgroup> sh_flags: array<u32, REDUCE_WG>;

fn fetch(i: u32) -> SumFlags {
    if i >= rp.n {
        return SumFlags(0.0, 0u);
    }
    if rp.partials != 0u {
        return SumFlags(bitcast<f32>(src[rp.in_base + 2u * i]), src[rp.in_base + 2u * i + 1u]);
    }
    let at = rp.in_base + i * rp.stride;
    if rp.skip_marked != 0u && src[at + rp.mark] == MARK_SKIP {
        return SumFlags(0.0, 0u);
    }
    let x = bitcast<f32>(src[at + rp.component]);
    switch classify(x) {
        case CLASS_NAN: {
            return SumFlags(0.0, SUM_NAN);
        }
        case CLASS_POS_INF: {
            return SumFlags(0.0, SUM_POS_INF);
        }
        case CLASS_NEG_INF: {
            return SumFlags(0.0, SUM_NEG_INF);
        }
        default: {
            return SumFlags(x, 0u);
        }
    }
}

@compute @workgroup_size(REDUCE_WG)
fn reduce_sum(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = wid.x + wid.y * nwg.x;
    if group * REDUCE_BLOCK >= rp.n {
        return;
    }
    let a = fetch(group * REDUCE_BLOCK + 2u * t);
    let b = fetch(group * REDUCE_BLOCK + 2u * t + 1u);
    sh_sum[t] = a.sum + b.sum;
    sh_flags[t] = a.flags | b.flags;
    workgroupBarrier();
    for (var off = REDUCE_WG / 2u; off > 0u; off = off / 2u) {
        if t < off {
            sh_sum[t] = sh_sum[t] + sh_sum[t + off];
            sh_flags[t] = sh_flags[t] | sh_flags[t + off];
        }
        workgroupBarrier();
    }
    if t == 0u {
        dst[rp.out_base + 2u * group] = bitcast<u32>(sh_sum[0]);
        dst[rp.out_base + 2u * group + 1u] = sh_flags[0];
    }
}

// reduce_sum's tree, one invocation a block, in the same order (so the same bits): the
// pairs first, then each level adding the upper half onto the lower. Where a workgroup's
// invocations are SIMD lanes of a CPU thread, its barriers cost more than the adds.
const SERIAL_WG: u32 = 8u;

@compute @workgroup_size(SERIAL_WG)
fn reduce_sum_serial(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = (wid.x + wid.y * nwg.x) * SERIAL_WG + t;
    if group * REDUCE_BLOCK >= rp.n {
        return;
    }
    var sums: array<f32, REDUCE_WG>;
    var flags = 0u;
    for (var i = 0u; i < REDUCE_WG; i++) {
        let a = fetch(group * REDUCE_BLOCK + 2u * i);
        let b = fetch(group * REDUCE_BLOCK + 2u * i + 1u);
        sums[i] = a.sum + b.sum;
        flags |= a.flags | b.flags;
    }
    for (var off = REDUCE_WG / 2u; off > 0u; off = off / 2u) {
        for (var i = 0u; i < off; i++) {
            sums[i] = sums[i] + sums[i + off];
        }
    }
    dst[rp.out_base + 2u * group] = bitcast<u32>(sums[0]);
    dst[rp.out_base + 2u * group + 1u] = flags;
}

// The mean of a finished reduction: src holds (sum bits, flags, denominator bits, flags)
// from word rp.in_base; dst[rp.out_base] = sum / denominator as f32 bits. The special
// cases follow IEEE division (NaN in, ∞/∞ and 0/0 NaN, x/0 a signed ∞, x/∞ a signed 0)
// decided here, not left to the backend's float semantics.
@compute @workgroup_size(REDUCE_WG)
fn reduce_mean(@builtin(local_invocation_index) t: u32) {
    if t != 0u {
        return;
    }
    let i = rp.in_base;
    let s = sum_value(SumFlags(bitcast<f32>(src[i]), src[i + 1u]));
    let d = sum_value(SumFlags(bitcast<f32>(src[i + 2u]), src[i + 3u]));
    let s_abs = bitcast<u32>(s) & 0x7fffffffu;
    let d_abs = bitcast<u32>(d) & 0x7fffffffu;
    let sign = (bitcast<u32>(s) ^ bitcast<u32>(d)) & 0x80000000u;
    let s_inf = s_abs == 0x7f800000u;
    let d_inf = d_abs == 0x7f800000u;
    // by bits: a NaN test by comparison may be folded away
    let any_nan = s_abs > 0x7f800000u || d_abs > 0x7f800000u;
    var q: u32;
    if any_nan || (s_inf && d_inf) || (s_abs == 0u && d_abs == 0u) {
        q = bitcast<u32>(nan());
    } else if s_inf || d_abs == 0u {
        q = sign | 0x7f800000u;
    } else if d_inf {
        q = sign;
    } else {
        q = bitcast<u32>(s / d);
    }
    dst[rp.out_base] = q;
}
