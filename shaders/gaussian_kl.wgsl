// KL divergence of a diagonal Gaussian from the standard normal (the VAE loss).
//
//   loss_i = −½ Σ_j (1 + lv_ij − μ_ij² − exp(lv_ij))
//
// Any NaN input makes the row NaN; an infinite μ or log-variance makes it +inf (each
// term is then +inf). Bindings: a = μ, b = log-variance; out_rows[row] = loss_i.
// Rows split across workgroups take gaussian_kl_part, then sum_merge.

@compute @workgroup_size(WG)
fn gaussian_kl(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if !group_live(wid, nwg) {
        return;
    }
    let slot = row_slot(t, wid, nwg);
    write_row(slot, sum_value(row_sum(slot, gaussian_scan(slot, slot.row * params.cols, 0u, params.cols))));
}

// Split rows (common/row_reduce.wgsl): one part's sum; sum_merge adds the parts.
@compute @workgroup_size(WG)
fn gaussian_kl_part(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if !group_live(wid, nwg) {
        return;
    }
    let slot = row_slot(t, wid, nwg);
    let part = part_of(slot);
    write_part_sum(slot, row_sum(slot, gaussian_scan(slot, part.row * params.cols, part.start, part.end)));
}

// One lane's terms over columns [start, end) of the row at `base`.
fn gaussian_scan(slot: RowSlot, base: u32, start: u32, end: u32) -> SumFlags {
    var acc = SumFlags(0.0, 0u);
    if slot.live {
        for (var j = start + 2u * slot.lane; j < end; j += 2u * LANES) {
            let next = j + 1u < end;
            let mu = load_a2(base + j, next);
            let lv = load_b2(base + j, next);
            acc = gaussian_term(acc, mu.x, lv.x);
            if next {
                acc = gaussian_term(acc, mu.y, lv.y);
            }
        }
    }
    return acc;
}

fn gaussian_term(acc: SumFlags, mu: f32, lv: f32) -> SumFlags {
    var r = acc;
    let cm = classify(mu);
    let cl = classify(lv);
    if cm == CLASS_NAN || cl == CLASS_NAN {
        r.flags |= SUM_NAN;
    } else if cm != CLASS_FINITE || cl != CLASS_FINITE {
        r.flags |= SUM_POS_INF;
    } else {
        r.sum += -0.5 * (1.0 + lv - mu * mu - exp(lv));
    }
    return r;
}
