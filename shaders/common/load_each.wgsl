// The octets of the column loops (common/row_reduce.wgsl) an element at a time, through
// load_a / load_b: the whole of the word loaders (load_f32.wgsl, load_16bit.wgsl) and
// the fallback of the vector ones for a b that lies unlike a. Indices are clamped into
// the row [lo, hi) (as elements of a's binding), so no lane reads past its row, where an
// in-place gradient may be writing. Written out, not looped: llvmpipe counts every loop
// iteration of an invocation against one limit (plan::CPU_LOOP_STEPS).

fn in_row(e: u32, k: u32, lo: u32, hi: u32) -> u32 {
    return clamp(e + k, lo, hi - 1u) - params.a_base;
}

// Input b when `of_b`, else a (a constant at every call).
fn load_input(of_b: bool, i: u32) -> f32 {
    if of_b {
        return load_b(i);
    }
    return load_a(i);
}

fn load8_each(of_b: bool, e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return array<f32, 8>(
        load_input(of_b, in_row(e, 0u, lo, hi)), load_input(of_b, in_row(e, 1u, lo, hi)),
        load_input(of_b, in_row(e, 2u, lo, hi)), load_input(of_b, in_row(e, 3u, lo, hi)),
        load_input(of_b, in_row(e, 4u, lo, hi)), load_input(of_b, in_row(e, 5u, lo, hi)),
        load_input(of_b, in_row(e, 6u, lo, hi)), load_input(of_b, in_row(e, 7u, lo, hi)),
    );
}
