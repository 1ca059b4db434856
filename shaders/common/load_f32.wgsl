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
