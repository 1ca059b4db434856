// Inputs a and b as IEEE binary16, read as packed u32 pairs so that no adapter needs
// SHADER_F16. unpack2x16float leaves infinities and NaN indeterminate, so those are
// rebuilt from the bit pattern.
@group(0) @binding(1) var<storage, read> in_a: array<u32>;
@group(0) @binding(2) var<storage, read> in_b: array<u32>;

fn half_to_f32(word: u32, index: u32) -> f32 {
    let h = (word >> ((index & 1u) * 16u)) & 0xffffu;
    if (h & 0x7c00u) == 0x7c00u {
        // exponent all ones: ±inf (mantissa 0) or NaN
        let mant = select(0u, 0x400000u, (h & 0x3ffu) != 0u);
        return bitcast<f32>(((h & 0x8000u) << 16u) | 0x7f800000u | mant);
    }
    return unpack2x16float(h).x;
}

fn load_a(i: u32) -> f32 {
    let e = params.a_base + i;
    return half_to_f32(in_a[e >> 1u], e);
}

fn load_b(i: u32) -> f32 {
    let e = params.b_base + i;
    return half_to_f32(in_b[e >> 1u], e);
}
