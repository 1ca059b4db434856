// Inputs a and b of 16-bit elements (f16, bf16) viewed as vec4<u32>: eight elements to a
// 16-byte load, widened by the loader's `widen(word, element index)`
// (common/load_f16.wgsl, common/load_bf16.wgsl). Half the loads of f32 for the same
// columns, which is where half precision saves time on adapters that pay per load
// rather than per byte. The host binds a multiple of 16 bytes.
@group(0) @binding(1) var<storage, read> in_a: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> in_b: array<vec4<u32>>;

// Eight contiguous elements an octet (`Octets` in common/row_reduce.wgsl).
const ADJACENT_QUADS: bool = false;

fn raw_a(i: u32) -> f32 {
    let e = params.a_base + i;
    return widen(in_a[e >> 3u][(e >> 1u) & 3u], e);
}

fn raw_b(i: u32) -> f32 {
    let e = params.b_base + i;
    return widen(in_b[e >> 3u][(e >> 1u) & 3u], e);
}

fn widen8(v: vec4<u32>) -> array<f32, 8> {
    return array<f32, 8>(
        widen(v.x, 0u), widen(v.x, 1u), widen(v.y, 0u), widen(v.y, 1u),
        widen(v.z, 0u), widen(v.z, 1u), widen(v.w, 0u), widen(v.w, 1u),
    );
}

// Elements e .. e + 8 of a's binding (e a multiple of 8; see octet_a in
// common/row_reduce.wgsl); those outside [lo, hi) are unspecified.
fn raw_a8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return widen8(in_a[e >> 3u]);
}

// The same columns of b: one load when b lies as a does modulo a vector (uniform),
// else one per element.
fn raw_b8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    let eb = e - params.a_base + params.b_base;
    if (eb & 7u) == 0u {
        return widen8(in_b[eb >> 3u]);
    }
    return load8_each(true, e, lo, hi);
}
