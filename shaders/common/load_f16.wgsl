// IEEE binary16 inputs, read as packed u32 pairs (common/load_16bit.wgsl) so that no
// adapter needs SHADER_F16 (the GL backend lacks it). Widening is done on the bits,
// exactly, with infinities and NaN kept (unpack2x16float needs a capability some
// backends lack and leaves them indeterminate).

// Element `index` (its parity picks the half) of a word. Branch-free (SIMD lanes of CPU
// adapters would run every branch): the exponent and mantissa move into place together
// and the exponent is rebiased by 112 (15 -> 127), or by 224 for ±inf and NaN (31 ->
// 255, payload kept); zeros and subnormals are mantissa · 2^-24, exact in f32.
fn widen(word: u32, index: u32) -> f32 {
    let h = (word >> ((index & 1u) * 16u)) & 0xffffu;
    let exponent = h & 0x7c00u;
    var bits = ((h & 0x7fffu) << 13u) + select(0x38000000u, 0x70000000u, exponent == 0x7c00u);
    bits = select(bits, bitcast<u32>(f32(h & 0x3ffu) * 5.9604645e-8), exponent == 0u);
    return bitcast<f32>(((h & 0x8000u) << 16u) | bits);
}
