// Inputs a and b of 16-bit elements (f16, bf16), two to a u32 word, widened by the
// loader's `widen(word, element index)` (common/load_f16.wgsl, common/load_bf16.wgsl).
@group(0) @binding(1) var<storage, read> in_a: array<u32>;
@group(0) @binding(2) var<storage, read> in_b: array<u32>;

fn load_a(i: u32) -> f32 {
    let e = params.a_base + i;
    return widen(in_a[e >> 1u], e);
}

fn load_b(i: u32) -> f32 {
    let e = params.b_base + i;
    return widen(in_b[e >> 1u], e);
}

// Elements i and i + 1 (the second unspecified when `next` is false; i even in the
// column loops) from one word when the row starts on a word: half the loads of two
// load_a calls, which is where half precision saves time on adapters that pay per load
// rather than per byte (CPU adapters).
fn load_a2(i: u32, next: bool) -> vec2<f32> {
    let e = params.a_base + i;
    let w = in_a[e >> 1u];
    var second = w; // the word holding element e + 1
    // uniform: an even base and even columns put every pair in one word
    if ((params.a_base | params.cols) & 1u) != 0u {
        second = in_a[(e + 1u) >> 1u];
    }
    return vec2<f32>(widen(w, e), widen(second, e + 1u));
}

fn load_b2(i: u32, next: bool) -> vec2<f32> {
    let e = params.b_base + i;
    let w = in_b[e >> 1u];
    var second = w;
    if ((params.b_base | params.cols) & 1u) != 0u {
        second = in_b[(e + 1u) >> 1u];
    }
    return vec2<f32>(widen(w, e), widen(second, e + 1u));
}
