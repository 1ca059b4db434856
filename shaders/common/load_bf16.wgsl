// Inputs a and b as bfloat16: the top half of an f32, so widening is a shift (exact,
// infinities and NaN included). WGSL has no bf16 type; pairs are read as u32.
@group(0) @binding(1) var<storage, read> in_a: array<u32>;
@group(0) @binding(2) var<storage, read> in_b: array<u32>;

fn bf16_to_f32(word: u32, index: u32) -> f32 {
    return bitcast<f32>(((word >> ((index & 1u) * 16u)) & 0xffffu) << 16u);
}

fn load_a(i: u32) -> f32 {
    let e = params.a_base + i;
    return bf16_to_f32(in_a[e >> 1u], e);
}

fn load_b(i: u32) -> f32 {
    let e = params.b_base + i;
    return bf16_to_f32(in_b[e >> 1u], e);
}
