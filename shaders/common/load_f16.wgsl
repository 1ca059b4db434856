// IEEE binary16 inputs, read as packed u32 pairs (common/load_16bit.wgsl) so that no
// adapter needs SHADER_F16 (the GL backend lacks it). Widening is done on the bits,
// exactly, with infinities and NaN kept (unpack2x16float needs a capability some
// backends lack and leaves them indeterminate).

// Element `index` (its parity picks the half) of a word. Branch-free (SIMD lanes of CPU
// adapters would run every branch): the three encodings are built as bits and the right
// one selected.
fn widen(word: u32, index: u32) -> f32 {
    let h = (word >> ((index & 1u) * 16u)) & 0xffffu;
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    // normal: rebias the exponent 15 -> 127
    var bits = sign | ((exponent + 112u) << 23u) | (mantissa << 13u);
    // ±inf (mantissa 0) or NaN, payload kept
    bits = select(bits, sign | 0x7f800000u | (mantissa << 13u), exponent == 0x1fu);
    // zero or subnormal: mantissa · 2^-24, exact in f32
    bits = select(bits, sign | bitcast<u32>(f32(mantissa) * 5.9604645e-8), exponent == 0u);
    return bitcast<f32>(bits);
}
