// Softmax cross-entropy from logits and integer labels (PyTorch's F.cross_entropy).
//
//   nll_i  = lse_i − x_i,y          (never log(softmax)[y])
//   loss_i = (1−s)·w_y·nll_i + (s/K)·Σ_j w_j·(lse_i − x_ij) + λ·lse_i²    w ≡ 1 without weights
//
// (λ·lse² is PaLM's z-loss, not weighted, 0 on ignored rows.)
//
// One online pass gives lse, the argmax and (s > 0 only) the smoothing sum, kept
// against the lane's running max. A term whose coefficient is 0 contributes 0. Rows
// labelled ignore_index are 0 with weight 0; any other label outside [0, cols) is
// reported in status[0]. Rows split across workgroups take softmax_xent_part, then
// softmax_xent_merge (no gradient).
// Bindings: a = logits, labels, class_weights (FLAG_WEIGHTS); out_rows[row] = loss;
// out_aux[AUX_WORDS row] = argmax, + 1 = bits of w_y (the mean's denominator), + 2 = bits
// of the row's z-loss term (its share of the loss, for the report; AUX_IGNORED on an ignored
// row with ENTROPY), + 3 = bits of the row's entropy H(softmax(x)) = log s − Σ_j p_j·(x_j − m)
// (ENTROPY only; every row, ignored ones too; reported, not part of the loss). With REPORT,
// + 4 = the label's rank (classes with a greater logit, or an equal one at a lower index:
// counted in the same pass against x_y, read first), + 5 = bits of the top-1 confidence
// p_max = exp(m − lse) = 1/s, + 6 = bits of Σ_j (p_j − [j = y])² = Σ_j p_j² − 2·p_y + 1
// with Σ_j p_j² = s2/s², s2 = Σ_j e^(2(x_j − m)) from the exps of the pass, + 7 = the
// label; a NaN row's rank is NO_RANK and its confidence and Brier term NaN, a row whose
// label is out of range BAD_LABEL_RANK with the same NaNs.
//
// Gradient (GRAD_OF = 1), one more pass over the row, p = softmax(x), W = Σ_k w_k:
//
//   d loss_i / d x_ij = (1−s)·w_y·(p_j − [j = y]) + (s/K)·(W·p_j − w_j) + 2λ·lse_i·p_j
//
// p_y − 1 is formed in f32 from p_y, so the target class keeps its precision.

fn class_weight(c: u32) -> f32 {
    if has_flag(FLAG_WEIGHTS) {
        return class_weights[c];
    }
    return 1.0;
}

// The row's log-sum-exp from its merged stats.
fn row_lse(st: RowStats) -> f32 {
    return st.m * st.k + st.log_s;
}

// The row's weight in the mean: w_y, 0 for an ignored row or a label out of range.
fn label_weight(label: i32) -> f32 {
    if has_flag(FLAG_IGNORE) && label == params.ignore_index {
        return 0.0;
    }
    if label < 0 || u32(label) >= params.cols {
        return 0.0;
    }
    return class_weight(u32(label));
}

// Σ_k w_k over the row's lanes (K without weights).
fn weight_total(slot: RowSlot) -> f32 {
    if !has_flag(FLAG_WEIGHTS) {
        return f32(params.cols);
    }
    var acc = SumFlags(0.0, 0u);
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            acc.sum += class_weights[j];
        }
    }
    return row_sum(slot, acc).sum;
}

// Writes the row's gradient (see the header); `label_state` 0: ignored, 1: in range,
// 2: out of range.
fn write_grad(slot: RowSlot, base: u32, st: RowStats, ok: bool, label_state: u32, y: u32, w_total: f32) {
    if !slot.live {
        return;
    }
    let s = params.smoothing;
    let c = grad_scale();
    let c_target = c * (1.0 - s) * class_weight(y);
    let c_smooth = c * s / f32(params.cols);
    let c_z = c * 2.0 * params.z_loss * row_lse(st);
    for (var j = slot.lane; j < params.cols; j += LANES) {
        let x = load_a(base + j);
        var p = exp(log_softmax_of(st, x));
        if classify(x) == CLASS_NEG_INF {
            p = 0.0;
        }
        var g = c_smooth * (w_total * p - class_weight(j));
        if params.z_loss > 0.0 {
            g += c_z * p;
        }
        if j == y {
            g += c_target * (p - 1.0);
        } else {
            g += c_target * p;
        }
        if label_state == 0u {
            g = 0.0;
        } else if label_state == 2u || !ok {
            g = nan();
        }
        store_grad(base + j, g * cap_chain(x, CAP_A));
    }
}

// Pre-pass for the gradient of the mean: each row's weight into its aux record, so
// the denominator (their tree sum) is on the device before the gradient pass needs it.
@compute @workgroup_size(WG)
fn ce_row_weights(inv: Invocation) {
    let slot = row_slot(inv);
    if slot.live && slot.lane == 0u {
        let w = label_weight(label_of(slot.row));
        out_aux[params.aux_base + AUX_WORDS * slot.row + 1u] = bitcast<u32>(w);
    }
}

// The smoothing sum Σ_j w_j·(lse − x_j) = W·log s − Σ_j w_j·(x_j − m) over the finite x_j,
// in the online pass: v = Σ w_j·(x_j − m) against the lane's running max m (a rise of δ
// shifts it by −δ·W), W = Σ w_j over the same j. A -inf logit with w_j ≠ 0 is ±inf.
struct Smoothing {
    v: f32,
    w: f32,
    flags: u32,
}

fn smoothing_push(acc: Smoothing, x: f32, m_old: f32, m_new: f32, j: u32) -> Smoothing {
    var r = acc;
    // m_old is the sentinel until a finite logit is seen, and then v and W are 0
    r.v = select(r.v - (m_new - m_old) * r.w, r.v, m_old == F32_MAX_NEG);
    let w = class_weight(j);
    let c = classify(x);
    if c == CLASS_FINITE {
        r.v += w * (x - m_new);
        r.w += w;
    } else if c == CLASS_NEG_INF && w != 0.0 {
        r.flags |= select(SUM_NEG_INF, SUM_POS_INF, w > 0.0);
    }
    return r;
}

// The lanes' smoothing parts moved to the row's (or a split part's) max `m` and summed.
fn smoothing_lanes(slot: RowSlot, acc: Smoothing, m_lane: f32, m: f32) -> Smoothing {
    let v = select(acc.v - (m - m_lane) * acc.w, 0.0, m_lane == F32_MAX_NEG);
    let total = row_sum(slot, SumFlags(v, acc.flags));
    let w = row_sum(slot, SumFlags(acc.w, 0u)).sum;
    return Smoothing(total.sum, w, total.flags);
}

// The smoothing sum W·log s − v of a row's merged stats.
fn smoothing_terms_of(sm: Smoothing, st: RowStats) -> SumFlags {
    return SumFlags(sm.w * st.log_s - sm.v, sm.flags);
}

// One lane's online pass over columns [start, end) of the row at `base`: the stats, the
// smoothing sum (s > 0) and the entropy sum t (ENTROPY, see EntropyStats).
struct XentScan {
    st: RowStats,
    sm: Smoothing,
    t: f32,
    s2: f32,       // REPORT: Σ e^(2(x − m)) against the lane's running max
    above: u32,    // REPORT: classes ranked above the label
}

fn scan_xent(slot: RowSlot, base: u32, start: u32, end: u32, goal: Target) -> XentScan {
    var acc = XentScan(stats_empty(), Smoothing(0.0, 0.0, 0u), 0.0, 0.0, 0u);
    if slot.live {
        // separate loops, so that each carries only the state it needs
        if REPORT && params.smoothing == 0.0 {
            acc = report_scan(slot, base, start, end, goal);
        } else if ENTROPY && !REPORT && params.smoothing == 0.0 {
            let es = entropy_scan_a(slot, base, start, end);
            acc.st = es.st;
            acc.t = es.t;
        } else if ENTROPY || REPORT || params.smoothing > 0.0 {
            let oc = octets(slot, base, start, end);
            for (var e = oc.first; !EACH && e < oc.hi; e += 8u * LANES) {
                let x = load_a8(e, oc.lo, oc.hi);
                acc = xent_push_at(acc, x[0], oc, e, 0u, goal);
                acc = xent_push_at(acc, x[1], oc, e, 1u, goal);
                acc = xent_push_at(acc, x[2], oc, e, 2u, goal);
                acc = xent_push_at(acc, x[3], oc, e, 3u, goal);
                acc = xent_push_at(acc, x[4], oc, e, 4u, goal);
                acc = xent_push_at(acc, x[5], oc, e, 5u, goal);
                acc = xent_push_at(acc, x[6], oc, e, 6u, goal);
                acc = xent_push_at(acc, x[7], oc, e, 7u, goal);
            }
            for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
                acc = xent_push_at(acc, load_a(e - params.a_base), oc, e, 0u, goal);
            }
        } else {
            acc.st = stats_scan_a(slot, base, start, end, 1.0, false);
        }
    }
    return acc;
}

// Element k of an octet into the stats, the smoothing sum, the entropy sum and the report.
fn xent_push_at(acc: XentScan, x: f32, oc: Octets, e: u32, k: u32, goal: Target) -> XentScan {
    if !in_octet(oc, e, k) {
        return acc;
    }
    let j = octet_col(oc, e, k);
    var r = acc;
    if REPORT {
        r = report_push(acc, x, j, goal);
        r.above += ranks_above(x, j, goal);
    } else if ENTROPY {
        let es = entropy_push(EntropyStats(acc.st, acc.t), x, j);
        r.st = es.st;
        r.t = es.t;
    } else {
        r.st = stats_push(acc.st, x, j);
    }
    if params.smoothing > 0.0 {
        r.sm = smoothing_push(acc.sm, x, acc.st.m, r.st.m, j);
    }
    return r;
}

// stats_push with the report's sum (and ENTROPY's t) from the same exp: s2 = Σ e^(2(x − m))
// against the running max (a rise scales it by e²). The rank count is the caller's.
fn report_push(acc: XentScan, x: f32, j: u32, goal: Target) -> XentScan {
    var r = acc;
    let c = classify(x);
    if c == CLASS_FINITE {
        let d = x - r.st.m;
        let up = d > 0.0;
        let e = exp(-min(abs(d), 126.0));
        if ENTROPY {
            // entropy_push's step (common/numerics.wgsl)
            let u = e * clamp(d, -126.0, 126.0);
            r.t = select(r.t + u, e * r.t - u * r.st.s, up);
        }
        // a rise scales the sums by e (s2 by e²) and adds 1; any other element adds e (e²)
        let f = select(1.0, e, up);
        let g = select(e, 1.0, up);
        r.st.s = r.st.s * f + g;
        r.s2 = r.s2 * (f * f) + g * g;
        r.st.m = max(r.st.m, x);
        if r.st.cls < CLASS_FINITE || (r.st.cls == CLASS_FINITE && up) {
            r.st.arg = j;
            r.st.cls = CLASS_FINITE;
        }
    } else if c > r.st.cls || (c == r.st.cls && j < r.st.arg) {
        r.st.cls = c;
        r.st.arg = j;
    }
    return r;
}

// Whether element x of column j ranks above the label: a greater value, or an equal one
// of a lower column (an element outside the row, -inf at NO_COL, never does).
fn ranks_above(x: f32, j: u32, goal: Target) -> u32 {
    return u32(x > goal.xy || (x == goal.xy && j < goal.y));
}

// report_push of element k of an octet, and its rank count (see Ranks). Unless `whole`
// (every element of the octet is the row's), an element outside the row is pushed as -inf
// at NO_COL, which changes nothing: straight-line code (an early return per element costs
// llvmpipe's SIMD lanes both sides).
fn report_push_at(acc: XentScan, x: f32, oc: Octets, e: u32, k: u32, goal: Target, ro: Ranks, whole: bool) -> XentScan {
    let mine = whole || in_octet(oc, e, k);
    let v = select(neg_inf(), x, mine);
    var r = report_push(acc, v, select(NO_COL, octet_col(oc, e, k), mine), goal);
    r.above += u32(v > select(goal.xy, ro.below, octet_el(e, k) < ro.at));
    return r;
}

// The octet at e into the lane's pass; `whole` is a constant at each call, so the octets
// inside the row take no masks.
fn report_octet(acc: XentScan, oc: Octets, e: u32, goal: Target, ro: Ranks, whole: bool) -> XentScan {
    return report_push8(acc, load_a8(e, oc.lo, oc.hi), oc, e, goal, ro, whole);
}

fn report_push8(acc: XentScan, x: array<f32, 8>, oc: Octets, e: u32, goal: Target, ro: Ranks, whole: bool) -> XentScan {
    var r = report_push_at(acc, x[0], oc, e, 0u, goal, ro, whole);
    r = report_push_at(r, x[1], oc, e, 1u, goal, ro, whole);
    r = report_push_at(r, x[2], oc, e, 2u, goal, ro, whole);
    r = report_push_at(r, x[3], oc, e, 3u, goal, ro, whole);
    r = report_push_at(r, x[4], oc, e, 4u, goal, ro, whole);
    r = report_push_at(r, x[5], oc, e, 5u, goal, ro, whole);
    r = report_push_at(r, x[6], oc, e, 6u, goal, ro, whole);
    return report_push_at(r, x[7], oc, e, 7u, goal, ro, whole);
}

// The rank count, one comparison an element: before the label, x ≥ xy ranks above it,
// which is x > below (the float under xy); after it, x > xy. For a label of -inf no float
// is below it, so the elements before it count nothing there and rank_before counts them
// all instead: a row whose count is used holds no NaN, so each of them ranks above.
struct Ranks {
    at: u32,       // the label's element in the binding
    below: f32,
}

fn ranks_of(oc: Octets, goal: Target) -> Ranks {
    let b = bitcast<u32>(goal.xy);
    // one step toward -inf; for ±0 minus the smallest normal, so that a device that
    // flushes subnormals to zero compares as it would against zero
    var below = select(bitcast<f32>(b + 1u), bitcast<f32>(b - 1u), goal.xy > 0.0);
    below = select(below, -1.17549435e-38, goal.xy == 0.0);
    below = select(below, pos_inf(), goal.xy == neg_inf());
    return Ranks(oc.col0 + goal.y, below);
}

// For a label of -inf, the range's elements before it (lane 0 adds them).
fn rank_before(slot: RowSlot, oc: Octets, ro: Ranks, goal: Target) -> u32 {
    if slot.lane == 0u && goal.xy == neg_inf() {
        return clamp(ro.at, oc.lo, oc.hi) - oc.lo;
    }
    return 0u;
}

// One lane's pass with the report (and ENTROPY's t), without smoothing.
fn report_scan(slot: RowSlot, base: u32, start: u32, end: u32, goal: Target) -> XentScan {
    var acc = XentScan(stats_empty(), Smoothing(0.0, 0.0, 0u), 0.0, 0.0, 0u);
    let oc = octets(slot, base, start, end);
    let ro = ranks_of(oc, goal);
    if !EACH {
        // the lane's octets in order: one that starts before the row, those inside it, and
        // one that ends past it (the same pushes, in the same order, as one masked loop)
        var e = oc.first;
        if e < oc.lo && e < oc.hi {
            acc = report_octet(acc, oc, e, goal, ro, false);
            e += 8u * LANES;
        }
        //#steps2
        for (; octet_end(e + 8u * LANES) <= oc.hi; e += 16u * LANES) {
            let x = load_a8(e, oc.lo, oc.hi);
            let x2 = load_a8(e + 8u * LANES, oc.lo, oc.hi);
            acc = report_push8(acc, x, oc, e, goal, ro, true);
            acc = report_push8(acc, x2, oc, e + 8u * LANES, goal, ro, true);
        }
        //#end
        for (; octet_end(e) <= oc.hi; e += 8u * LANES) {
            acc = report_octet(acc, oc, e, goal, ro, true);
        }
        if e < oc.hi {
            acc = report_octet(acc, oc, e, goal, ro, false);
        }
        acc.above += rank_before(slot, oc, ro, goal);
    }
    for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
        let x = load_a(e - params.a_base);
        let j = e - oc.col0;
        acc = report_push(acc, x, j, goal);
        acc.above += ranks_above(x, j, goal);
    }
    return acc;
}

// The row's s2 from its lanes': each moved to the row's max, summed in the tree's order.
fn row_squares(slot: RowSlot, s2: f32, lane: RowStats, row: RowStats) -> f32 {
    if LANES == 1u {
        return s2;
    }
    let moved = select(s2 * exp(-min(2.0 * (row.m - lane.m), 126.0)), 0.0, lane.s == 0.0);
    return row_sum(slot, SumFlags(moved, 0u)).sum;
}

const NO_RANK: u32 = 0xffffffffu;
// The rank word of a row whose label is outside [0, cols) and not the ignore index: the
// record then holds no evaluation (its confidence and Brier term are NaN).
const BAD_LABEL_RANK: u32 = 0xfffffffeu;

// The report's words of a row (see the header).
fn write_report(row: u32, st: RowStats, goal: Target, s2: f32, above: u32) {
    var rank = NO_RANK;
    var confidence = nan();
    var brier = nan();
    if !goal.ignored && !goal.in_range {
        rank = BAD_LABEL_RANK;
    } else if stats_ok(st) {
        rank = above;
        confidence = 1.0 / st.s;
        let p_y = select(exp(log_softmax_of(st, goal.xy)), 0.0, classify(goal.xy) == CLASS_NEG_INF);
        brier = s2 / (st.s * st.s) - 2.0 * p_y + 1.0;
    }
    let aux = params.aux_base + AUX_WORDS * row;
    out_aux[aux + 4u] = rank;
    out_aux[aux + 5u] = bitcast<u32>(confidence);
    out_aux[aux + 6u] = bitcast<u32>(brier);
    out_aux[aux + 7u] = bitcast<u32>(goal.label);
}

// The row's loss, argmax, weight, z term and (ENTROPY) entropy `h` (lane 0 of a live row).
fn write_xent(slot: RowSlot, st: RowStats, smoothing_terms: SumFlags, goal: Target, h: f32) {
    let s = params.smoothing;
    var loss = 0.0;
    var weight = 0.0;
    var z = 0.0;
    if !goal.ignored && !goal.in_range {
        report_bad_label(slot.row);
        loss = nan();
    } else if !goal.ignored {
        weight = class_weight(goal.y);
        var terms = SumFlags(0.0, 0u);
        if !stats_ok(st) {
            terms.flags = SUM_NAN;
            z = select(0.0, nan(), params.z_loss > 0.0);
        } else {
            let c = (1.0 - s) * weight;
            if c != 0.0 {
                if classify(goal.xy) == CLASS_NEG_INF {
                    terms.flags |= select(SUM_NEG_INF, SUM_POS_INF, c > 0.0);
                } else {
                    terms.sum = -c * log_softmax_of(st, goal.xy);
                }
            }
            if s > 0.0 {
                terms.sum += s / f32(params.cols) * smoothing_terms.sum;
                terms.flags |= smoothing_terms.flags;
            }
            if params.z_loss > 0.0 {
                let lse = row_lse(st);
                z = params.z_loss * lse * lse;
                terms.sum += z;
            }
        }
        loss = sum_value(terms);
    }
    write_row(slot, loss);
    let aux = params.aux_base + AUX_WORDS * slot.row;
    out_aux[aux] = st.arg;
    out_aux[aux + 1u] = bitcast<u32>(weight);
    out_aux[aux + 2u] = bitcast<u32>(scaled(z));
    if ENTROPY {
        out_aux[aux + 3u] = bitcast<u32>(scaled(h));
        if goal.ignored {
            out_aux[aux + 2u] = AUX_IGNORED;
        }
    }
}

@compute @workgroup_size(WG)
fn softmax_xent(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let base = slot.row * params.cols;
    let s = params.smoothing;
    let goal = read_target(slot, base);
    let scan = scan_xent(slot, base, 0u, params.cols, goal);
    let st = row_stats(slot, scan.st);
    let ok = stats_ok(st);
    var smoothing_terms = SumFlags(0.0, 0u);
    if s > 0.0 {
        smoothing_terms = smoothing_terms_of(smoothing_lanes(slot, scan.sm, scan.st.m, st.m), st);
    }
    var h = 0.0;
    if ENTROPY {
        h = entropy_of(st, row_entropy_t(slot, scan.t, scan.st, st));
    }
    var s2 = 0.0;
    var above = 0u;
    if REPORT {
        s2 = row_squares(slot, scan.s2, scan.st, st);
        above = row_count(slot, scan.above);
    }
    if GRAD_OF != 0u {
        var w_total = 0.0;
        if s > 0.0 {
            w_total = weight_total(slot);
        }
        if GRAD_IN_PLACE && LANES > 1u {
            storageBarrier();
        }
        let label_state = select(select(2u, 1u, goal.in_range), 0u, goal.ignored);
        write_grad(slot, base, st, ok, label_state, goal.y, w_total);
    }
    if slot.live && slot.lane == 0u {
        write_xent(slot, st, smoothing_terms, goal, h);
        if REPORT {
            write_report(slot.row, st, goal, s2, above);
        }
    }
}

// Split rows (common/row_reduce.wgsl): one part's stats, its smoothing sum against the
// part's max in words 5-7 of the record, its entropy sum t against that max in word 8,
// and (REPORT) its s2 against that max and its rank count in words 9 and 10.
@compute @workgroup_size(WG)
fn softmax_xent_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    var goal = Target(0, true, false, 0u, 0.0);
    if REPORT {
        goal = target_at(part.row, slot.live, part.row * params.cols);
    }
    let scan = scan_xent(slot, part.row * params.cols, part.start, part.end, goal);
    let st = row_stats(slot, scan.st);
    write_part_stats(slot, st);
    if params.smoothing > 0.0 {
        let sm = smoothing_lanes(slot, scan.sm, scan.st.m, st.m);
        write_part_words(slot, 5u, vec3<f32>(sm.v, sm.w, f32(sm.flags)));
    }
    if ENTROPY {
        write_part_words(slot, 8u, vec3<f32>(row_entropy_t(slot, scan.t, scan.st, st), 0.0, 0.0));
    }
    if REPORT {
        // (a count of at most part_cols columns is an exact f32)
        let above = f32(row_count(slot, scan.above));
        write_part_words(slot, 9u, vec3<f32>(row_squares(slot, scan.s2, scan.st, st), above, 0.0));
    }
}

// Split rows: a row's parts merged in order (one invocation per row), then as softmax_xent.
@compute @workgroup_size(WG)
fn softmax_xent_merge(inv: Invocation) {
    let slot = row_slot(inv);
    if !slot.live {
        return;
    }
    let st = merged_parts(slot.row, 1.0);
    var smoothing_terms = SumFlags(0.0, 0u);
    if params.smoothing > 0.0 {
        var sm = Smoothing(0.0, 0.0, 0u);
        for (var part = 0u; part < params.parts; part++) {
            let m = part_word(slot.row, part, 0u);
            let w = part_word(slot.row, part, 6u);
            sm.v += select(part_word(slot.row, part, 5u) - (st.m - m) * w, 0.0, m == F32_MAX_NEG);
            sm.w += w;
            sm.flags |= u32(part_word(slot.row, part, 7u));
        }
        smoothing_terms = smoothing_terms_of(sm, st);
    }
    var h = 0.0;
    if ENTROPY {
        // the parts' sums moved to the row's max, added in part order
        var t = 0.0;
        for (var part = 0u; part < params.parts; part++) {
            let s = part_word(slot.row, part, 1u);
            t += entropy_moved(part_word(slot.row, part, 8u), s, part_word(slot.row, part, 0u), st.m, 1.0);
        }
        h = entropy_of(st, t);
    }
    let goal = read_target(slot, slot.row * params.cols);
    write_xent(slot, st, smoothing_terms, goal, h);
    if REPORT {
        // the parts' s2 moved to the row's max and their counts, added in part order
        var s2 = 0.0;
        var above = 0u;
        for (var part = 0u; part < params.parts; part++) {
            let m = part_word(slot.row, part, 0u);
            let moved = part_word(slot.row, part, 9u) * exp(-min(2.0 * (st.m - m), 126.0));
            s2 += select(moved, 0.0, part_word(slot.row, part, 1u) == 0.0);
            above += u32(part_word(slot.row, part, 10u));
        }
        write_report(slot.row, st, goal, s2, above);
    }
}
