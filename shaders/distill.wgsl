// Knowledge-distillation loss (Hinton et al.): soft targets from a teacher, hard labels.
//
//   loss_i = α·τ²·KL(softmax(t_i/τ) ‖ softmax(s_i/τ)) + (1−α)·(lse(s_i) − s_i,y)
//
// One pass over both inputs: the KL of t/τ and s/τ as PairStats (common/numerics.wgsl),
// with log p_j = (t_j − m)·(1/τ) − log s, and (τ ≠ 1 only) the online lse of s for the CE
// term. A term with a zero coefficient (α = 0 or 1) is left out of the value. Rows split
// across workgroups take distill_part, then distill_merge (no gradient). Labels outside [0, cols) are reported in status[0].
// Bindings: a = student logits, b = teacher logits, labels; out_rows[row] = loss_i.
//
// Gradient with respect to the student's logits (GRAD_OF = 1), one more pass:
//   d loss_i / d s_ij = α·τ·(q_j − p_j) + (1−α)·(softmax(s)_j − [j = y])
// with q = softmax(s/τ), p = softmax(t/τ).

// softmax(k·x)_j for the logit x, from the row's stats at k.
fn soft(st: RowStats, x: f32) -> f32 {
    if classify(x) == CLASS_NEG_INF {
        return 0.0;
    }
    return exp(log_softmax_of(st, x));
}

fn write_grad(slot: RowSlot, base: u32, st_t: RowStats, st_s: RowStats, st_ce: RowStats, y: u32, ok: bool) {
    if !slot.live {
        return;
    }
    let inv_t = params.inv_temperature;
    let alpha = params.alpha;
    let c = grad_scale();
    let c_kl = c * alpha / inv_t;
    let c_ce = c * (1.0 - alpha);
    for (var j = slot.lane; j < params.cols; j += LANES) {
        let sj = load_a(base + j);
        var g = 0.0;
        if alpha > 0.0 {
            g = c_kl * (soft(st_s, sj) - soft(st_t, load_b(base + j)));
        }
        if alpha < 1.0 {
            let sigma = soft(st_ce, sj);
            g += c_ce * select(sigma, sigma - 1.0, j == y);
        }
        if !ok {
            g = nan();
        }
        store_grad(base + j, g);
    }
}

@compute @workgroup_size(WG)
fn distill(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if !group_live(wid, nwg) {
        return;
    }
    let slot = row_slot(t, wid, nwg);
    let base = slot.row * params.cols;
    let alpha = params.alpha;
    let scan = distill_scan(slot, base, 0u, params.cols);
    let pair = pair_row(slot, scan.pair, 1.0, 1.0, true);
    let st_t = pair.p;
    let st_s = pair.q;
    var st_ce = st_s;
    if own_ce() {
        st_ce = row_stats(slot, scan.ce);
    }
    let kl = pair_sum(st_t, st_s, pair.t, 1.0, 1.0, true);
    // every lane reads the label and s_y before an in-place gradient overwrites the row
    let y = read_target(slot, base);
    if GRAD_OF != 0u {
        if GRAD_IN_PLACE && LANES > 1u {
            storageBarrier();
        }
        let kl_ok = alpha == 0.0 || (stats_ok(st_t) && stats_ok(st_s));
        let ce_ok = alpha == 1.0 || stats_ok(st_ce);
        write_grad(slot, base, st_t, st_s, st_ce, y.y, y.in_range && kl_ok && ce_ok);
    }
    if slot.live && slot.lane == 0u {
        write_distill(slot, kl, st_ce, y);
    }
}

// The CE term takes its own lse pass values only at a temperature other than 1.
fn own_ce() -> bool {
    return params.inv_temperature != 1.0 && params.alpha < 1.0;
}

// One lane's pass over columns [start, end) of the row at `base`: teacher and student at
// τ as PairStats, and the student at 1 (own_ce only).
struct DistillScan {
    pair: PairStats,
    ce: RowStats,
}

fn distill_scan(slot: RowSlot, base: u32, start: u32, end: u32) -> DistillScan {
    let with_ce = own_ce();
    var acc = pair_at(params.inv_temperature);
    var ce = stats_empty();
    if slot.live {
        let oc = octets(slot, base, start, end);
        for (var e = oc.first; !EACH && e < oc.hi; e += 8u * LANES) {
            let s = load_a8(e, oc.lo, oc.hi);
            // the teacher is P, the student Q, both at temperature
            acc = pair_push8(acc, load_b8(e, oc.lo, oc.hi), s, oc, e, 1.0, 1.0, true);
            if with_ce {
                ce = stats_push8(ce, s, oc, e);
            }
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            let i = e - params.a_base;
            let s = load_a(i);
            acc = pair_push(acc, load_b(i), s, 1.0, 1.0, true);
            if with_ce {
                ce = stats_push(ce, s, e - oc.col0);
            }
        }
    }
    return DistillScan(acc, ce);
}

// The row's loss from the KL sum and the CE stats (lane 0 of a live row).
fn write_distill(slot: RowSlot, kl: SumFlags, st_ce: RowStats, y: Target) {
    let alpha = params.alpha;
    let in_range = y.in_range;
    let xy = y.xy;
    var terms = SumFlags(0.0, 0u);
    if alpha > 0.0 {
        terms.sum = alpha * params.temperature_sq * kl.sum;
        terms.flags = kl.flags;
    }
    if !in_range {
        report_bad_label(slot.row);
        terms.flags |= SUM_NAN;
    } else if alpha < 1.0 {
        if !stats_ok(st_ce) {
            terms.flags |= SUM_NAN;
        } else {
            if classify(xy) == CLASS_NEG_INF {
                terms.flags |= SUM_POS_INF;
            } else {
                terms.sum -= (1.0 - alpha) * log_softmax_of(st_ce, xy);
            }
        }
    }
    write_row(slot, sum_value(terms));
}

// Split rows (common/row_reduce.wgsl): one part's pair stats, and (own_ce) the student's
// stats at temperature 1 in words 8-10.
@compute @workgroup_size(WG)
fn distill_part(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if !group_live(wid, nwg) {
        return;
    }
    let slot = row_slot(t, wid, nwg);
    let part = part_of(slot);
    let scan = distill_scan(slot, part.row * params.cols, part.start, part.end);
    write_part_pair(slot, scan.pair, 1.0, 1.0, true);
    if own_ce() {
        let ce = row_stats(slot, scan.ce);
        write_part_words(slot, 8u, vec3<f32>(ce.m, ce.s, f32(ce.cls)));
    }
}

// Split rows: a row's parts merged in order (one invocation per row), then as distill.
@compute @workgroup_size(WG)
fn distill_merge(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let slot = row_slot(t, wid, nwg);
    if !slot.live {
        return;
    }
    let pair = merged_pair(slot.row, params.inv_temperature, 1.0, 1.0);
    var st_ce = pair.q;
    if own_ce() {
        st_ce = stats_empty();
        for (var part = 0u; part < params.parts; part++) {
            let m = part_word(slot.row, part, 8u);
            let s = part_word(slot.row, part, 9u);
            st_ce = stats_merge(st_ce, RowStats(m, s, 0u, u32(part_word(slot.row, part, 10u)), 0.0, 1.0));
        }
        st_ce.log_s = log(st_ce.s);
    }
    let kl = pair_sum(pair.p, pair.q, pair.t, 1.0, 1.0, true);
    write_distill(slot, kl, st_ce, read_target(slot, slot.row * params.cols));
}
