// bfloat16 inputs (read through common/load_16bit.wgsl): the top half of an f32, so
// widening is a shift (exact, infinities and NaN included). WGSL has no bf16 type.

// Element `index` (its parity picks the half) of a word.
fn widen(word: u32, index: u32) -> f32 {
    return bitcast<f32>(((word >> ((index & 1u) * 16u)) & 0xffffu) << 16u);
}
