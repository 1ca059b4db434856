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
        for (var j = 2u * slot.lane; j < params.cols; j += 2u * LANES) {
            let next = j + 1u < params.cols;
            let z = load_a2(base + j, next) * inv_t;
            st = stats_push(st, z.x, j);
            if next {
                st = stats_push(st, z.y, j + 1u);
            }
        }
    }
    st = row_stats(slot, st);
    if !slot.live {
        return;
    }
    let out = params.out_base + base;
    for (var j = 2u * slot.lane; j < params.cols; j += 2u * LANES) {
        let next = j + 1u < params.cols;
        let z = load_a2(base + j, next) * inv_t;
        out_rows[out + j] = softmax_of(st, z.x);
        if next {
            out_rows[out + j + 1u] = softmax_of(st, z.y);
        }
    }
}

// Branch-free: the specials overwrite the common value.
fn softmax_of(st: RowStats, z: f32) -> f32 {
    let log_out = has_flag(FLAG_LOG);
    let lp = log_softmax_of(st, z);
    var y = select(exp(lp), lp, log_out);
    if classify(z) == CLASS_NEG_INF {
        y = select(0.0, neg_inf(), log_out);
    }
    if !stats_ok(st) {
        y = nan();
    }
    return y;
}
