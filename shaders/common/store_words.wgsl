// Row outputs ([rows, cols] f32) a word at a time, for pipelines whose bindings are not
// all whole 16-byte vectors (common/store_vec4.wgsl otherwise).

// Element i of the output binding.
fn store_out(i: u32, x: f32) {
    out_rows[i] = x;
}

// The quads of an octet (`Octets` in common/row_reduce.wgsl) whose first element goes to
// output element i: the first where `first`, the second where `second` (written out:
// llvmpipe counts loop iterations against a limit).
fn store_out8(i: u32, x: array<f32, 8>, first: bool, second: bool) {
    if first {
        out_rows[i] = x[0];
        out_rows[i + 1u] = x[1];
        out_rows[i + 2u] = x[2];
        out_rows[i + 3u] = x[3];
    }
    let j = i + octet_gap();
    if second {
        out_rows[j] = x[4];
        out_rows[j + 1u] = x[5];
        out_rows[j + 2u] = x[6];
        out_rows[j + 3u] = x[7];
    }
}
