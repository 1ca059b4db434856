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

// Elements i and i + 1 (the second unspecified when `next` is false; i even in the
// column loops) from one word when the row starts on a word: half the loads of two load_a calls, which is where half precision
// saves time on adapters that pay per load rather than per byte (CPU adapters).
fn pair_words(words: vec2<u32>, e: u32) -> vec2<f32> {
    return vec2<f32>(bf16_to_f32(words.x, e), bf16_to_f32(words.y, e + 1u));
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
