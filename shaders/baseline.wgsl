// Baselines for the benchmark, not used by the losses:
//
//   copy_words: out = a over [rows, cols] words: the roofline, a kernel that reads and
//               writes the input bytes once, with the row layout and the loads of the
//               losses, and their row stores (vec4 where the bindings allow).
//   naive_xent: the simplest correct kernel, one workgroup per row and two passes (max,
//               then Σ exp(x − max)); lse, minus x_y when labels are bound
//               (FLAG_HAS_B). Finite inputs only.

@compute @workgroup_size(WG)
fn copy_words(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let slot = row_slot(t, wid, nwg);
    if slot.live {
        // the column loop of the kernels it is the roofline of: octets, with their loads
        let base = slot.row * params.cols;
        let oc = octets(slot, base, 0u, params.cols);
        let out = params.out_base + base;
        // whole octets in and out (every row of the benchmark's copy): vec4 stores too
        if ((oc.lo | oc.hi) & 7u) == 0u && ((params.out_base - params.a_base) & 3u) == 0u {
            for (var e = oc.first; !EACH && e < oc.hi; e += 8u * LANES) {
                store_out8(e - params.a_base + params.out_base, load_a8(e, oc.lo, oc.hi));
            }
            return;
        }
        for (var e = oc.first; !EACH && e < oc.hi; e += 8u * LANES) {
            let x = load_a8(e, oc.lo, oc.hi);
            copy_at(x[0], oc, e, 0u, out);
            copy_at(x[1], oc, e, 1u, out);
            copy_at(x[2], oc, e, 2u, out);
            copy_at(x[3], oc, e, 3u, out);
            copy_at(x[4], oc, e, 4u, out);
            copy_at(x[5], oc, e, 5u, out);
            copy_at(x[6], oc, e, 6u, out);
            copy_at(x[7], oc, e, 7u, out);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            copy_at(load_a(e - params.a_base), oc, e, 0u, out);
        }
    }
}

fn copy_at(x: f32, oc: Octets, e: u32, k: u32, out: u32) {
    if in_octet(oc, e, k) {
        store_out(out + octet_col(oc, e, k), x);
    }
}

@compute @workgroup_size(WG)
fn naive_xent(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if !group_live(wid, nwg) {
        return;
    }
    let slot = row_slot(t, wid, nwg);
    let base = slot.row * params.cols;
    var m = -3.4e38;
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            m = max(m, load_a(base + j));
        }
    }
    sh_x[t] = m;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off = off / 2u) {
        if slot.lane < off {
            sh_x[t] = max(sh_x[t], sh_x[t + off]);
        }
        workgroupBarrier();
    }
    m = sh_x[t - slot.lane];
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
        v -= load_a(base + u32(labels[params.label_base + slot.row]));
    }
    write_row(slot, v);
}
