// Row max/argmax and log-sum-exp, one pass over the logits.
//
//   lse_i = m_i + log Σ_j exp(x_ij − m_i),  m_i = max_j x_ij
//
// Online (m, s) pairs per lane, merged in a fixed tree (common/row_reduce.wgsl).
// Bindings: a = logits [rows, cols]; out_rows[row] = max or lse; row_max also writes
// the argmax to out_aux[AUX_WORDS row]. Rows split across workgroups take row_part, then
// logsumexp_merge or row_max_merge. Dispatch: a 2-D grid of ceil(rows / (WG / LANES)) groups.

fn scan_row(slot: RowSlot) -> RowStats {
    return row_stats(slot, stats_scan_a(slot, slot.row * params.cols, 0u, params.cols, 1.0, true));
}

@compute @workgroup_size(WG)
fn logsumexp(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    write_row(slot, stats_lse(scan_row(slot)));
}

@compute @workgroup_size(WG)
fn row_max(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    write_max(slot, scan_row(slot));
}

fn write_max(slot: RowSlot, st: RowStats) {
    var v = st.m;
    if st.cls == CLASS_NAN {
        v = nan();
    } else if st.cls == CLASS_POS_INF {
        v = pos_inf();
    } else if st.s == 0.0 {
        v = neg_inf();
    }
    write_row(slot, v);
    if slot.live && slot.lane == 0u {
        out_aux[params.aux_base + AUX_WORDS * slot.row] = st.arg;
    }
}

// Split rows (common/row_reduce.wgsl): the stats of one part of a row.
@compute @workgroup_size(WG)
fn row_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    let st = stats_scan_a(slot, part.row * params.cols, part.start, part.end, 1.0, true);
    write_part_stats(slot, row_stats(slot, st));
}

// Split rows: a row's parts merged (one invocation per row), then as logsumexp.
@compute @workgroup_size(WG)
fn logsumexp_merge(inv: Invocation) {
    let slot = row_slot(inv);
    if slot.live {
        write_row(slot, stats_lse(merged_parts(slot.row, 1.0)));
    }
}

// Split rows: a row's parts merged, then as row_max.
@compute @workgroup_size(WG)
fn row_max_merge(inv: Invocation) {
    let slot = row_slot(inv);
    if slot.live {
        write_max(slot, merged_parts(slot.row, 1.0));
    }
}
