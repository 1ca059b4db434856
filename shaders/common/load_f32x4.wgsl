// Inputs a and b as f32, viewed as vec4: an octet of the column loops is two 16-byte
// loads, where adapters that pay per load (CPU adapters run every load of a SIMD vector
// lane by lane) would take eight; across a row's lanes each load is one contiguous run
// (ADJACENT_QUADS: see `Octets` in common/row_reduce.wgsl). The host binds a multiple of
// 16 bytes. The input the gradient overwrites in place is read from `grad`: see
// common/grad.wgsl.
@group(0) @binding(1) var<storage, read> in_a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> in_b: array<vec4<f32>>;

// Lanes read adjacent quads (`Octets` in common/row_reduce.wgsl).
const ADJACENT_QUADS: bool = true;

fn raw_a(i: u32) -> f32 {
    if GRAD_IN_PLACE && GRAD_OF == 1u {
        return load_in_place(i);
    }
    let e = params.a_base + i;
    return in_a[e >> 2u][e & 3u];
}

fn raw_b(i: u32) -> f32 {
    if GRAD_IN_PLACE && GRAD_OF == 2u {
        return load_in_place(i);
    }
    let e = params.b_base + i;
    return in_b[e >> 2u][e & 3u];
}

fn octet_of(v: vec4<f32>, w: vec4<f32>) -> array<f32, 8> {
    return array<f32, 8>(v.x, v.y, v.z, v.w, w.x, w.y, w.z, w.w);
}

// The octet at e of a's binding (e a multiple of 4; see `Octets` in
// common/row_reduce.wgsl); its elements outside [lo, hi) are unspecified.
fn raw_a8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    if GRAD_IN_PLACE && GRAD_OF == 1u {
        return load8_each(false, e, lo, hi);   // from `grad`, within the row
    }
    let v = e >> 2u;
    return octet_of(in_a[v], in_a[v + octet_gap() / 4u]);
}

// The same columns of b (e, lo, hi as for a): two loads when b lies as a does modulo a
// vector, which is uniform (the bases are the dispatch's), else one per element.
fn raw_b8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    if GRAD_IN_PLACE && GRAD_OF == 2u {
        return load8_each(true, e, lo, hi);
    }
    let eb = e - params.a_base + params.b_base;
    if (eb & 3u) == 0u {
        let v = eb >> 2u;
        return octet_of(in_b[v], in_b[v + octet_gap() / 4u]);
    }
    return load8_each(true, e, lo, hi);
}
