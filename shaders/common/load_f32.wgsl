// Inputs a and b as f32 (the input the gradient overwrites in place is read from
// `grad`: see common/grad.wgsl).
@group(0) @binding(1) var<storage, read> in_a: array<f32>;
@group(0) @binding(2) var<storage, read> in_b: array<f32>;

fn load_a(i: u32) -> f32 {
    if GRAD_IN_PLACE && GRAD_OF == 1u {
        return load_in_place(i);
    }
    return in_a[params.a_base + i];
}

fn load_b(i: u32) -> f32 {
    if GRAD_IN_PLACE && GRAD_OF == 2u {
        return load_in_place(i);
    }
    return in_b[params.b_base + i];
}

// Elements i and i + 1 (the second 0 when `next` is false: past the row, which an in-place
// gradient may be overwriting): the paired form of the half-precision loaders, so that
// every dtype shares the column loops.
fn load_a2(i: u32, next: bool) -> vec2<f32> {
    var v = vec2<f32>(load_a(i), 0.0);
    if next {
        v.y = load_a(i + 1u);
    }
    return v;
}

fn load_b2(i: u32, next: bool) -> vec2<f32> {
    var v = vec2<f32>(load_b(i), 0.0);
    if next {
        v.y = load_b(i + 1u);
    }
    return v;
}
