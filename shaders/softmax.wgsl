// Softmax and log-softmax with temperature, written as [rows, cols] f32.
//
//   y_ij = exp(z_ij − lse_i),  z = x / T,  lse_i = log Σ_j exp(z_ij)   (log: z_ij − lse_i)
//
// Pass 1 is the online (m, s) scan; pass 2 re-reads the row and writes it. A row holding
// NaN or +inf, or only -inf, is NaN in every column; a -inf element is 0 (log: -inf).
// Bindings: a = logits; out_rows[row * cols + j] (relative to out_base) = y_ij.

@compute @workgroup_size(WG)
fn softmax(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if !group_live(wid, nwg) {
        return;
    }
    let slot = row_slot(t, wid, nwg);
    let inv_t = params.inv_temperature;
    let base = slot.row * params.cols;
    var st = stats_empty();
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            st = stats_push(st, load_a(base + j) * inv_t, j);
        }
    }
    st = row_stats(slot, st);
    if !slot.live {
        return;
    }
    let ok = stats_ok(st);
    let log_out = has_flag(FLAG_LOG);
    let out = params.out_base + base;
    for (var j = slot.lane; j < params.cols; j += LANES) {
        let z = load_a(base + j) * inv_t;
        // branch-free: the specials overwrite the common value
        let lp = log_softmax_of(st, z);
        var y = select(exp(lp), lp, log_out);
        if classify(z) == CLASS_NEG_INF {
            y = select(0.0, neg_inf(), log_out);
        }
        if !ok {
            y = nan();
        }
        out_rows[out + j] = y;
    }
}
