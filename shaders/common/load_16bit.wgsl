// Inputs a and b of 16-bit elements (f16, bf16), two to a u32 word, one word at a time,
// widened by the loader's `widen(word, element index)` (common/load_f16.wgsl,
// common/load_bf16.wgsl): the loader for bindings whose size is not a multiple of 16
// bytes, which common/load_16bitx4.wgsl cannot view as vec4.
@group(0) @binding(1) var<storage, read> in_a: array<u32>;
@group(0) @binding(2) var<storage, read> in_b: array<u32>;

// Eight contiguous elements an octet (`Octets` in common/row_reduce.wgsl).
const ADJACENT_QUADS: bool = false;

fn raw_a(i: u32) -> f32 {
    let e = params.a_base + i;
    return widen(in_a[e >> 1u], e);
}

fn raw_b(i: u32) -> f32 {
    let e = params.b_base + i;
    return widen(in_b[e >> 1u], e);
}

// Octets of the column loops (common/row_reduce.wgsl), an element at a time.
fn raw_a8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return load8_each(false, e, lo, hi);
}

fn raw_b8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return load8_each(true, e, lo, hi);
}
