// Row outputs ([rows, cols] f32: softmax, the benchmark's copy) through a vec4 view of the
// output binding, for pipelines whose bindings are whole 16-byte vectors (the loaders of
// common/load_f32x4.wgsl, common/load_16bitx4.wgsl). Kernels that write per-row values
// use out_rows instead; no entry point uses both views.
@group(0) @binding(5) var<storage, read_write> out_vec4: array<vec4<f32>>;

// Element i of the output binding.
fn store_out(i: u32, x: f32) {
    out_vec4[i >> 2u][i & 3u] = x;
}

// The quads of an octet (`Octets` in common/row_reduce.wgsl) whose first element goes to
// output element i (a multiple of 4): the first where `first`, the second where `second`,
// a 16-byte store each.
fn store_out8(i: u32, x: array<f32, 8>, first: bool, second: bool) {
    if first {
        out_vec4[i >> 2u] = vec4<f32>(x[0], x[1], x[2], x[3]);
    }
    if second {
        out_vec4[(i + octet_gap()) >> 2u] = vec4<f32>(x[4], x[5], x[6], x[7]);
    }
}
