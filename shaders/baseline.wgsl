// Baselines for the benchmark, not used by the losses:
//
//   copy_words: out = a over [rows, cols] words, cols a multiple of 8 and both bindings
//               vector-aligned: the roofline, a kernel that reads and writes the input
//               bytes once, with the row layout and the loads of the losses, and vec4
//               stores.
//   naive_xent: the simplest correct kernel, one workgroup per row and two passes (max,
//               then Σ exp(x − max)); lse, minus x_y when labels are bound
//               (FLAG_HAS_B). Finite inputs only.

@compute @workgroup_size(WG)
fn copy_words(inv: Invocation) {
    let slot = row_slot(inv);
    if slot.live {
        // the column loop of the kernels it is the roofline of (octets, with their loads),
        // and vec4 stores: the bench binds whole rows of COPY_COLS words at vector-aligned
        // offsets, so every quad is in its row or past its end (and `xent bench` checks the
        // copy's output)
        let oc = octets(slot, slot.row * params.cols, 0u, params.cols);
        var e = oc.first;
        //#steps2
        for (; e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let x = load_a8(e, oc.lo, oc.hi);
            let x2 = load_a8(e + 8u * LANES, oc.lo, oc.hi);
            copy_octet(x, oc, e);
            copy_octet(x2, oc, e + 8u * LANES);
        }
        //#end
        for (; e < oc.hi; e += 8u * LANES) {
            copy_octet(load_a8(e, oc.lo, oc.hi), oc, e);
        }
    }
}

fn copy_octet(x: array<f32, 8>, oc: Octets, e: u32) {
    store_out8(e - params.a_base + params.out_base, x, true, e + octet_gap() < oc.hi);
}

@compute @workgroup_size(WG)
fn naive_xent(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let base = slot.row * params.cols;
    var m = -3.4e38;
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            m = max(m, load_a(base + j));
        }
    }
    sh_x[slot.t] = m;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off = off / 2u) {
        if slot.lane < off {
            sh_x[slot.t] = max(sh_x[slot.t], sh_x[slot.t + off]);
        }
        workgroupBarrier();
    }
    m = sh_x[slot.t - slot.lane];
    workgroupBarrier();
    var s = 0.0;
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            s += exp(load_a(base + j) - m);
        }
    }
    let total = row_sum(slot, SumFlags(s, 0u));
    var v = m + log(total.sum);
    if has_flag(FLAG_HAS_B) && slot.live {
        v -= load_a(base + u32(label_of(slot.row)));
    }
    write_row(slot, v);
}
