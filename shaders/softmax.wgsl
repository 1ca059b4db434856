// Softmax and log-softmax with temperature, written as [rows, cols] f32.
//
//   y_ij = exp(z_ij − lse_i),  z = x / T,  lse_i = log Σ_j exp(z_ij)   (log: z_ij − lse_i)
//
// taken as z_ij − lse_i = (x_ij − m_i)·(1/T) − log s_i, the max subtracted first (RowStats).
//
// Pass 1 is the online (m, s) scan; pass 2 re-reads the row and writes it. A row holding
// NaN or +inf, or only -inf, is NaN in every column; a -inf element is 0 (log: -inf).
// Bindings: a = logits; output element row * cols + j (relative to out_base) = y_ij,
// written through store_out (common/store_vec4.wgsl or common/store_words.wgsl).
// Rows split across workgroups (common/row_reduce.wgsl) take three dispatches:
// softmax_part (each part's stats), softmax_merge (a row's parts merged into its first
// record) and softmax_write (each part's columns written from the merged stats).

@compute @workgroup_size(WG)
fn softmax(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let base = slot.row * params.cols;
    let st = row_stats(slot, stats_scan_a(slot, base, 0u, params.cols, params.inv_temperature, true));
    if !slot.live {
        return;
    }
    write_softmax_cols(slot, st, base, 0u, params.cols);
}

// One lane's columns [start, end) of the row at `base`, written from its stats: a vec4
// store a quad where the range is whole quads and the output lies as the input does (every
// row, when the columns are a multiple of 4), else element by element.
fn write_softmax_cols(slot: RowSlot, st: RowStats, base: u32, start: u32, end: u32) {
    let oc = octets(slot, base, start, end);
    let out = params.out_base + base;
    let whole = ((oc.lo | oc.hi) & 3u) == 0u && ((params.out_base - params.a_base) & 3u) == 0u;
    var e = oc.first;
    //#steps2
    for (; !EACH && whole && e + 8u * LANES < oc.hi; e += 16u * LANES) {
        let x = load_a8(e, oc.lo, oc.hi);
        let x2 = load_a8(e + 8u * LANES, oc.lo, oc.hi);
        softmax_octet(st, x, oc, e);
        softmax_octet(st, x2, oc, e + 8u * LANES);
    }
    //#end
    for (; !EACH && whole && e < oc.hi; e += 8u * LANES) {
        softmax_octet(st, load_a8(e, oc.lo, oc.hi), oc, e);
    }
    for (var e = oc.first; !EACH && !whole && e < oc.hi; e += 8u * LANES) {
        let x = load_a8(e, oc.lo, oc.hi);
        softmax_write_at(st, x[0], oc, e, 0u, out);
        softmax_write_at(st, x[1], oc, e, 1u, out);
        softmax_write_at(st, x[2], oc, e, 2u, out);
        softmax_write_at(st, x[3], oc, e, 3u, out);
        softmax_write_at(st, x[4], oc, e, 4u, out);
        softmax_write_at(st, x[5], oc, e, 5u, out);
        softmax_write_at(st, x[6], oc, e, 6u, out);
        softmax_write_at(st, x[7], oc, e, 7u, out);
    }
    for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
        softmax_write_at(st, load_a(e - params.a_base), oc, e, 0u, out);
    }
}

// The octet at e of a range of whole quads, written: each quad is the row's or wholly outside
// it (before it: only a first quad; or past it).
fn softmax_octet(st: RowStats, x: array<f32, 8>, oc: Octets, e: u32) {
    let y = array<f32, 8>(
        softmax_of(st, x[0]), softmax_of(st, x[1]), softmax_of(st, x[2]), softmax_of(st, x[3]),
        softmax_of(st, x[4]), softmax_of(st, x[5]), softmax_of(st, x[6]), softmax_of(st, x[7]),
    );
    store_out8(e - params.a_base + params.out_base, y, e >= oc.lo, e + octet_gap() < oc.hi);
}

fn softmax_write_at(st: RowStats, x: f32, oc: Octets, e: u32, k: u32, out: u32) {
    if in_octet(oc, e, k) {
        store_out(out + octet_col(oc, e, k), softmax_of(st, x));
    }
}

// The output for logit x, from the row's stats at 1/T. Branch-free: the specials
// overwrite the common value.
fn softmax_of(st: RowStats, x: f32) -> f32 {
    let log_out = has_flag(FLAG_LOG);
    let lp = log_softmax_of(st, x);
    var y = select(exp(lp), lp, log_out);
    if classify(x) == CLASS_NEG_INF {
        y = select(0.0, neg_inf(), log_out);
    }
    if !stats_ok(st) {
        y = nan();
    }
    return y;
}

// Split rows: the stats of one part of a row, at temperature.
@compute @workgroup_size(WG)
fn softmax_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    let st = stats_scan_a(slot, part.row * params.cols, part.start, part.end, params.inv_temperature, true);
    write_part_stats(slot, row_stats(slot, st));
}

// Split rows: a row's parts merged in order into the record of its first part (one
// invocation per row).
@compute @workgroup_size(WG)
fn softmax_merge(inv: Invocation) {
    let slot = row_slot(inv);
    if slot.live {
        let st = merged_parts(slot.row, params.inv_temperature);
        // write_part_stats addresses unit `slot.row`: the row's first part is unit row · parts
        write_part_stats(RowSlot(slot.row * params.parts, 0u, slot.t, true, 0u), st);
    }
}

// Split rows: one part's columns, from the row's merged stats.
@compute @workgroup_size(WG)
fn softmax_write(inv: Invocation) {
    let slot = row_slot(inv);
    if !slot.live {
        return;
    }
    let part = part_of(slot);
    var st = part_stats(part.row, 0u, params.inv_temperature);
    st.log_s = log(st.s);
    write_softmax_cols(slot, st, part.row * params.cols, part.start, part.end);
}
