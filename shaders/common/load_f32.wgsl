// Inputs a and b as f32, one word at a time: the loader for bindings whose size is not
// a multiple of 16 bytes (a caller's buffer that ends within a vector of its data), which
// common/load_f32x4.wgsl cannot view as vec4. The input the gradient overwrites in place
// is read from `grad`: see common/grad.wgsl.
@group(0) @binding(1) var<storage, read> in_a: array<f32>;
@group(0) @binding(2) var<storage, read> in_b: array<f32>;

// The octets of f32 (`Octets` in common/row_reduce.wgsl), as the vector loader reads them.
const ADJACENT_QUADS: bool = true;

fn raw_a(i: u32) -> f32 {
    if GRAD_IN_PLACE && GRAD_OF == 1u {
        return load_in_place(i);
    }
    return in_a[params.a_base + i];
}

fn raw_b(i: u32) -> f32 {
    if GRAD_IN_PLACE && GRAD_OF == 2u {
        return load_in_place(i);
    }
    return in_b[params.b_base + i];
}

// Octets of the column loops (common/row_reduce.wgsl), an element at a time.
fn raw_a8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return load8_each(false, e, lo, hi);
}

fn raw_b8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return load8_each(true, e, lo, hi);
}
