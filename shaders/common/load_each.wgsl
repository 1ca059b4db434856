// The octets of the column loops (common/row_reduce.wgsl) an element at a time, through
// raw_a / raw_b: the whole of the word loaders (load_f32.wgsl, load_16bit.wgsl) and
// the fallback of the vector ones for a b that lies unlike a. Indices are clamped into
// the row [lo, hi) (as elements of a's binding), so no lane reads past its row, where an
// in-place gradient may be writing. Written out, not looped: llvmpipe counts every loop
// iteration of an invocation against one limit (plan::CPU_LOOP_STEPS).

fn in_row(e: u32, k: u32, lo: u32, hi: u32) -> u32 {
    return clamp(octet_el(e, k), lo, hi - 1u) - params.a_base;
}

// Input b when `of_b`, else a (a constant at every call), as stored.
fn load_input(of_b: bool, i: u32) -> f32 {
    if of_b {
        return raw_b(i);
    }
    return raw_a(i);
}

// Whether input a (b) is soft-capped logits (params.softcap): pipeline constants, so that
// a kernel without soft-capping compiles to the loads alone.
override CAP_A: bool = false;
override CAP_B: bool = false;

// The inputs as the kernels read them: soft-capped where the operation caps that input,
// else as the loader's raw_* read them.
fn load_a(i: u32) -> f32 {
    return cap_if(raw_a(i), CAP_A);
}

fn load_b(i: u32) -> f32 {
    return cap_if(raw_b(i), CAP_B);
}

fn load_a8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    if CAP_A {
        return cap8(raw_a8(e, lo, hi));
    }
    return raw_a8(e, lo, hi);
}

fn load_b8(e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    if CAP_B {
        return cap8(raw_b8(e, lo, hi));
    }
    return raw_b8(e, lo, hi);
}

fn cap_if(x: f32, capped: bool) -> f32 {
    if capped {
        return softcap(x);
    }
    return x;
}

fn cap8(x: array<f32, 8>) -> array<f32, 8> {
    return array<f32, 8>(
        softcap(x[0]), softcap(x[1]), softcap(x[2]), softcap(x[3]),
        softcap(x[4]), softcap(x[5]), softcap(x[6]), softcap(x[7]),
    );
}

// c·tanh(x/c), Gemma 2's soft-capping. tanh of the magnitude t = |x|/c from e = exp(−2t),
// through the series of e^ρ − 1 below t = 1/2 so that small logits keep their precision;
// exactly ±c for large |x| (e underflows: tanh is exactly 1) and for ±inf, as c·tanh is
// (a -inf mask becomes −c, as in PyTorch); NaN stays NaN.
fn softcap(x: f32) -> f32 {
    if classify(x) == CLASS_NAN {
        return x;
    }
    let c = params.softcap;
    let t = min(abs(x) / c, 64.0);
    var th = 0.0;
    if t < 0.5 {
        let m = -2.0 * t * expm1_over(-2.0 * t);
        th = -m / (2.0 + m);
    } else {
        let e = exp(-2.0 * t);
        th = (1.0 - e) / (1.0 + e);
    }
    return select(c * th, -c * th, x < 0.0);
}

// d softcap(x) / dx = 1 − tanh²(x/c) = 1 − (z/c)² of the capped value z, where the input
// is capped (the gradients are taken of the logits as stored).
fn cap_chain(z: f32, capped: bool) -> f32 {
    if !capped {
        return 1.0;
    }
    let r = z / params.softcap;
    return 1.0 - r * r;
}

fn load8_each(of_b: bool, e: u32, lo: u32, hi: u32) -> array<f32, 8> {
    return array<f32, 8>(
        load_input(of_b, in_row(e, 0u, lo, hi)), load_input(of_b, in_row(e, 1u, lo, hi)),
        load_input(of_b, in_row(e, 2u, lo, hi)), load_input(of_b, in_row(e, 3u, lo, hi)),
        load_input(of_b, in_row(e, 4u, lo, hi)), load_input(of_b, in_row(e, 5u, lo, hi)),
        load_input(of_b, in_row(e, 6u, lo, hi)), load_input(of_b, in_row(e, 7u, lo, hi)),
    );
}
