// Inputs a and b as IEEE binary16, read as packed u32 pairs so that no adapter needs
// SHADER_F16 (the GL backend lacks it). Widening is done on the bits, exactly, with
// infinities and NaN kept (unpack2x16float needs a capability some backends lack and
// leaves them indeterminate).
@group(0) @binding(1) var<storage, read> in_a: array<u32>;
@group(0) @binding(2) var<storage, read> in_b: array<u32>;

// Branch-free (SIMD lanes of CPU adapters would run every branch): the three encodings
// are built as bits and the right one selected.
fn half_to_f32(word: u32, index: u32) -> f32 {
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

fn load_a(i: u32) -> f32 {
    let e = params.a_base + i;
    return half_to_f32(in_a[e >> 1u], e);
}

fn load_b(i: u32) -> f32 {
    let e = params.b_base + i;
    return half_to_f32(in_b[e >> 1u], e);
}

// Elements i and i + 1 (the second unspecified when `next` is false; i even in the
// column loops) from one word when the row starts on a word: half the loads of two load_a calls, which is where half precision
// saves time on adapters that pay per load rather than per byte (CPU adapters).
fn pair_words(words: vec2<u32>, e: u32) -> vec2<f32> {
    return vec2<f32>(half_to_f32(words.x, e), half_to_f32(words.y, e + 1u));
}

fn load_a2(i: u32, next: bool) -> vec2<f32> {
    let e = params.a_base + i;
    let w = in_a[e >> 1u];
    var second = w; // the word holding element e + 1
    // uniform: an even base and even columns put every pair in one word
    if ((params.a_base | params.cols) & 1u) != 0u {
        second = in_a[(e + 1u) >> 1u];
    }
    return pair_words(vec2<u32>(w, second), e);
}

fn load_b2(i: u32, next: bool) -> vec2<f32> {
    let e = params.b_base + i;
    let w = in_b[e >> 1u];
    var second = w; // the word holding element e + 1
    // uniform: an even base and even columns put every pair in one word
    if ((params.b_base | params.cols) & 1u) != 0u {
        second = in_b[(e + 1u) >> 1u];
    }
    return pair_words(vec2<u32>(w, second), e);
}
