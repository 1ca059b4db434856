// The gradient output: d(loss)/d(logits) as f32, [rows, cols] from params.grad_base.
//
// GRAD_OF says which input is differentiated (0: none, 1: input a, 2: input b); with
// GRAD_IN_PLACE the gradient overwrites that input, which is then bound here (and read
// from here) rather than as in_a / in_b, since one buffer cannot be both a read-only and
// a writable binding of a dispatch. Both are `override` constants, so kernels without a
// gradient compile without any of it.
//
// The scale is the reduction's: params.grad_scale / params.grad_denominator, where the
// denominator is rows, 1 (sum), or, for cross-entropy with labels, Σ w_y over the rows
// that are not ignored, copied into the uniform from the pre-pass's tree sum.

override GRAD_OF: u32 = 0u;
override GRAD_IN_PLACE: bool = false;

@group(0) @binding(8) var<storage, read_write> grad: array<f32>;

fn grad_scale() -> f32 {
    return params.grad_scale * params.out_scale / params.grad_denominator;
}

fn store_grad(i: u32, g: f32) {
    grad[params.grad_base + i] = g;
}

// An input read from the gradient binding (GRAD_IN_PLACE, f32 inputs only).
fn load_in_place(i: u32) -> f32 {
    return grad[params.grad_base + i];
}
