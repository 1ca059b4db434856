// Knowledge-distillation loss (Hinton et al.): soft targets from a teacher, hard labels.
//
//   loss_i = α·τ²·KL(softmax(t_i/τ) ‖ softmax(s_i/τ)) + (1−α)·(lse(s_i) − s_i,y)
//
// One pass over both inputs: the KL of t/τ and s/τ as PairStats (common/numerics.wgsl),
// with log p_j = (t_j − m)·(1/τ) − log s, and (τ ≠ 1 only) the online lse of s for the CE
// term; a second pass where that KL cancels (see scaled_kl_terms). A term with a zero
// coefficient (α = 0 or 1) is left out of the value. Rows split across workgroups take
// distill_part, distill_merge, distill_refine_part and distill_refine_merge (no
// gradient). Labels outside [0, cols) are reported in status[0].
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
    let alpha = params.alpha;
    let c = grad_scale();
    let c_kl = c * alpha * params.temperature;
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
        store_grad(base + j, g * cap_chain(sj, CAP_A));
    }
}

@compute @workgroup_size(WG)
fn distill(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
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
    var scaled = direct_scaled_kl(st_t, st_s, pair.t);
    if alpha > 0.0 {
        // (row_sum holds barriers: every invocation takes it, refining or not)
        let refine = slot.live && refines(st_t, st_s, pair.t);
        var gf = vec2<f32>(0.0, 0.0);
        if refine {
            gf = scaled_kl_terms(base, 0u, params.cols, slot.lane, LANES, kl_row(st_t, st_s, pair.t));
        }
        let g = row_sum(slot, SumFlags(gf.x, 0u)).sum;
        let f = row_sum(slot, SumFlags(gf.y, 0u)).sum;
        if refine {
            scaled.sum = scaled_kl_of(g, f);
        }
    }
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
        write_row(slot, sum_value(distill_terms(slot, scaled, st_ce, y)));
    }
}

// τ²·KL where the one-pass KL cancels. KL shrinks as 1/τ² while the terms of the one-pass
// sum k·t/s_p − log s_p + log s_q shrink as 1/τ: past τ ≈ 1e4 little of it is left in
// f32, at τ = 1e30 nothing. So where that sum has lost more than eight bits (it is under
// 1/256 of its largest term: the one-pass error would pass f32's 2e-5, the tolerance of
// every other loss, and ordinary rows keep to one pass) a second pass over the row sums
// non-negative terms in logit
// units instead. With d_j = (s_j − m_s) − (t_j − m_t), a pivot μ ≈ E_p[d] (the first pass
// gives t/s_p = −E_p[d]), R_j = d_j − μ and ρ_j = R_j/τ:
//
//   KL = A − φ(E),  A = Σ_j p_j·(e^ρ_j − 1 − ρ_j),  E = Σ_j p_j·(e^ρ_j − 1),  φ(E) = E − log(1 + E)
//
// (KL = log Σ_j p_j·e^ρ_j − Σ_j p_j·ρ_j, whatever μ). With the pivot near E_p[d], E ≈ A
// and φ(E) ≈ A²/2, so nothing cancels while KL < 1, which the second pass also asks. In
// logit units: τ²·KL = G − F²·φ(F/τ)/(F/τ)² with G = τ²·A and F = τ·E.
fn refines(st_t: RowStats, st_s: RowStats, t: SumFlags) -> bool {
    let tau = params.temperature;
    let x = t.sum / st_t.s;
    // τ·KL and τ times its largest term
    let tau_kl = x - tau * (st_t.log_s - st_s.log_s);
    let largest = abs(x) + tau * (st_t.log_s + st_s.log_s);
    return t.flags == 0u && stats_ok(st_t) && stats_ok(st_s) && tau_kl <= min(largest / 256.0, tau);
}

// τ²·KL from the first pass as τ·(t/s_p − τ·(log s_p − log s_q)): neither τ² nor 1/τ is
// formed, so a tiny τ overflows nothing either.
fn direct_scaled_kl(st_t: RowStats, st_s: RowStats, t: SumFlags) -> SumFlags {
    if !stats_ok(st_t) || !stats_ok(st_s) {
        return SumFlags(0.0, SUM_NAN);
    }
    let tau = params.temperature;
    return SumFlags(tau * (t.sum / st_t.s - tau * (st_t.log_s - st_s.log_s)), t.flags);
}

// What the second pass takes of the first: the maxima, the teacher's log s, the scale
// k = 1/τ and the pivot μ = −t/s_p.
struct KlRow {
    m_t: f32,
    log_s_t: f32,
    m_s: f32,
    k: f32,
    mu: f32,
}

fn kl_row(st_t: RowStats, st_s: RowStats, t: SumFlags) -> KlRow {
    return KlRow(st_t.m, st_t.log_s, st_s.m, st_t.k, -t.sum / st_t.s);
}

// One lane's (G, F) over the columns start + lane, start + lane + stride, ... < end of the
// row at `base` (see refines). Each term is p_j·R_j²·ψ(ρ_j)/ρ_j² and p_j·R_j·(e^ρ_j − 1)/ρ_j,
// by series for |ρ_j| ≤ 1; past that through q'_j = p_j·e^ρ_j, taken from s_j (e^ρ_j alone
// overflows where p_j underflows).
fn scaled_kl_terms(base: u32, start: u32, end: u32, lane: u32, stride: u32, row: KlRow) -> vec2<f32> {
    var acc = vec2<f32>(0.0, 0.0);
    let k = row.k;
    for (var j = start + lane; j < end; j += stride) {
        let tj = load_b(base + j);
        let sj = load_a(base + j);
        // p_j = 0, or q_j = 0 (the first pass made the row +inf)
        if classify(tj) != CLASS_FINITE || classify(sj) != CLASS_FINITE {
            continue;
        }
        let p = exp((tj - row.m_t) * k - row.log_s_t);
        let r = ((sj - row.m_s) - (tj - row.m_t)) - row.mu;
        let rho = r * k;
        if abs(rho) <= 1.0 {
            acc += p * r * vec2<f32>(r * psi_over_sq(rho), expm1_over(rho));
        } else {
            // p_j·e^ρ_j; where p_j underflows its terms are q' alone (and ρ may be inf)
            let q = exp(((sj - row.m_s) - row.mu) * k - row.log_s_t);
            let p_rho = select(p * (1.0 + rho), 0.0, p == 0.0);
            acc += r * vec2<f32>(r * ((q - p_rho) / (rho * rho)), (q - p) / rho);
        }
    }
    return acc;
}

// τ²·KL = G − F²·φ(E)/E² with E = F/τ.
fn scaled_kl_of(g: f32, f: f32) -> f32 {
    return g - f * f * log1p_gap_over_sq(f * params.inv_temperature);
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

// An octet of the student's logits s and the teacher's t into the scan (the teacher is P,
// the student Q, both at temperature), and into the CE stats `with_ce`.
fn distill_octet(acc: DistillScan, s: array<f32, 8>, t: array<f32, 8>, oc: Octets, e: u32, with_ce: bool) -> DistillScan {
    var r = acc;
    r.pair = pair_push8(acc.pair, t, s, oc, e, 1.0, 1.0, true);
    if with_ce {
        r.ce = stats_push8(acc.ce, s, oc, e);
    }
    return r;
}

fn distill_scan(slot: RowSlot, base: u32, start: u32, end: u32) -> DistillScan {
    let with_ce = own_ce();
    var acc = DistillScan(pair_at(params.inv_temperature), stats_empty());
    if slot.live {
        let oc = octets(slot, base, start, end);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let e2 = e + 8u * LANES;
            let s = load_a8(e, oc.lo, oc.hi);
            let t = load_b8(e, oc.lo, oc.hi);
            let s2 = load_a8(e2, oc.lo, oc.hi);
            let t2 = load_b8(e2, oc.lo, oc.hi);
            acc = distill_octet(acc, s, t, oc, e, with_ce);
            acc = distill_octet(acc, s2, t2, oc, e2, with_ce);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            acc = distill_octet(acc, load_a8(e, oc.lo, oc.hi), load_b8(e, oc.lo, oc.hi), oc, e, with_ce);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            let i = e - params.a_base;
            let s = load_a(i);
            acc.pair = pair_push(acc.pair, load_b(i), s, 1.0, 1.0, true);
            if with_ce {
                acc.ce = stats_push(acc.ce, s, e - oc.col0);
            }
        }
    }
    return acc;
}

// The row's loss from τ²·KL and the CE stats (lane 0 of a live row reports a bad label).
fn distill_terms(slot: RowSlot, scaled_kl: SumFlags, st_ce: RowStats, y: Target) -> SumFlags {
    let alpha = params.alpha;
    let in_range = y.in_range;
    let xy = y.xy;
    var terms = SumFlags(0.0, 0u);
    if alpha > 0.0 {
        terms.sum = alpha * scaled_kl.sum;
        terms.flags = scaled_kl.flags;
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
    return terms;
}

// Split rows (common/row_reduce.wgsl): one part's pair stats, and (own_ce) the student's
// stats at temperature 1 in words 8-10.
@compute @workgroup_size(WG)
fn distill_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
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
fn distill_merge(inv: Invocation) {
    let slot = row_slot(inv);
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
    let y = read_target(slot, slot.row * params.cols);
    // the CE term alone: a special one makes the row special, refined or not
    let rest = distill_terms(slot, SumFlags(0.0, 0u), st_ce, y);
    let refine = params.alpha > 0.0 && rest.flags == 0u && refines(pair.p, pair.q, pair.t);
    // the first part's record, read no more, takes what the second pass needs (words 0-3),
    // the CE term (4) and whether the row is refined (5)
    let at = params.grad_base + slot.row * params.parts * PART_WORDS;
    grad[at + 5u] = select(0.0, 1.0, refine);
    if refine {
        let row = kl_row(pair.p, pair.q, pair.t);
        grad[at] = row.m_t;
        grad[at + 1u] = row.log_s_t;
        grad[at + 2u] = row.m_s;
        grad[at + 3u] = row.mu;
        grad[at + 4u] = rest.sum;
    } else {
        write_row(slot, sum_value(distill_terms(slot, direct_scaled_kl(pair.p, pair.q, pair.t), st_ce, y)));
    }
}

// Split rows, refined (distill_merge set word 5 of the row's first record): one part's
// (G, F) in words 10 and 11 of its record.
@compute @workgroup_size(WG)
fn distill_refine_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    var gf = vec2<f32>(0.0, 0.0);
    if slot.live && part_word(part.row, 0u, 5u) != 0.0 {
        let w = vec4<f32>(part_word(part.row, 0u, 0u), part_word(part.row, 0u, 1u), part_word(part.row, 0u, 2u), part_word(part.row, 0u, 3u));
        let row = KlRow(w.x, w.y, w.z, params.inv_temperature, w.w);
        gf = scaled_kl_terms(part.row * params.cols, part.start, part.end, slot.lane, LANES, row);
    }
    let g = row_sum(slot, SumFlags(gf.x, 0u)).sum;
    let f = row_sum(slot, SumFlags(gf.y, 0u)).sum;
    write_part_words(slot, 9u, vec3<f32>(0.0, g, f));
}

// Split rows, refined: the parts' (G, F) added in order, then the loss (one invocation
// per row).
@compute @workgroup_size(WG)
fn distill_refine_merge(inv: Invocation) {
    let slot = row_slot(inv);
    if !slot.live || part_word(slot.row, 0u, 5u) == 0.0 {
        return;
    }
    var g = 0.0;
    var f = 0.0;
    for (var part = 0u; part < params.parts; part++) {
        g += part_word(slot.row, part, 10u);
        f += part_word(slot.row, part, 11u);
    }
    write_row(slot, params.alpha * scaled_kl_of(g, f) + part_word(slot.row, 0u, 4u));
}
