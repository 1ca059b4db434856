// Inputs a and b as f32.
@group(0) @binding(1) var<storage, read> in_a: array<f32>;
@group(0) @binding(2) var<storage, read> in_b: array<f32>;

fn load_a(i: u32) -> f32 {
    return in_a[params.a_base + i];
}

fn load_b(i: u32) -> f32 {
    return in_b[params.b_base + i];
}
