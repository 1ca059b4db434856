// The generalized Jensen-Shannon divergence, with Liger-Kernel's conventions at the ends:
//
//   JSD_β(P‖Q) = β·KL(P‖M) + (1−β)·KL(Q‖M),   M = β·P + (1−β)·Q,   0 < β < 1
//   β = 0: KL(P‖Q) (forward),   β = 1: KL(Q‖P) (reverse)
//
// P (input a, the teacher) and Q (input b, the student) are each probabilities or logits
// (FLAG_P_LOGITS, FLAG_Q_LOGITS); logits are read at scale k = 1/τ (params.inv_temperature)
// and β is params.alpha. The row's value is c_a·A + c_b·B with
//
//   A = Σ_j p_j·(log p_j − log m_j),   B = Σ_j q_j·(log q_j − log m_j),
//
// log m_j = log q_j at β = 0 (A is KL(P‖Q), c_a = 1, B = 0), log p_j at β = 1 (B is
// KL(Q‖P), c_b = 1, A = 0), else log(β·p_j + (1−β)·q_j) from the logs (c_a = β,
// c_b = 1 − β), so that a p_j or q_j too small for f32 does not give log m_j = −inf.
// M is not a softmax of anything, so the row takes one pass for each side's online
// (m, s) where it has logits, one for the sums and one for the gradient. Rows are never
// split: a row's lanes read all of it.
// p_j = 0 (q_j = 0) adds nothing to A (B); at the ends a p_j > 0 with q_j = 0 (β = 0),
// or q_j > 0 with p_j = 0 (β = 1), is +inf. Negative, NaN or +inf probabilities are
// reported in status[1]; NaN or +inf logits make the row NaN.
//
// Gradient with respect to Q's logits z, q = softmax(k·z) (GRAD_OF = 2):
//   β = 0:  k·(q_j·Σ_k p_k − p_j)                    (KL's)
//   β > 0:  k·w·q_j·(log q_j − log m_j − B),  w = 1 − β (1 at β = 1)
// NaN where the row is NaN or, at β > 0, +inf.

struct JsdTerms {
    a: f32,
    b: f32,
    log_m: f32,
    flags: u32,    // SUM_POS_INF: a term with m_j = 0
}

// log(β) and log(1 − β), once per row (used only for 0 < β < 1).
struct Mixture {
    beta: f32,
    log_beta: f32,
    log_rest: f32,
}

fn mixture() -> Mixture {
    let beta = params.alpha;
    let inner = beta > 0.0 && beta < 1.0;
    return Mixture(beta, log(select(1.0, beta, inner)), log(select(1.0, 1.0 - beta, inner)));
}

// log(e^u + e^v) for finite u, v.
fn log_add(u: f32, v: f32) -> f32 {
    return max(u, v) + log1p(exp(-abs(u - v)));
}

// A term of KL(A‖B) (log m_j = log b_j): 0 where a_j = 0, +inf where only b_j is.
fn kl_term(a: LogProb, b: LogProb) -> JsdTerms {
    var r = JsdTerms(0.0, 0.0, b.logp, 0u);
    if !a.zero {
        r.flags = select(0u, SUM_POS_INF, b.zero);
        r.a = select(a.p * (a.logp - b.logp), 0.0, b.zero);
    }
    return r;
}

// One column's terms of A and B, and log m_j, from valid p and q.
fn jsd_terms(p: LogProb, q: LogProb, mix: Mixture) -> JsdTerms {
    if mix.beta == 0.0 {
        return kl_term(p, q);
    }
    if mix.beta == 1.0 {
        // KL(Q‖P): its terms are B's
        let t = kl_term(q, p);
        return JsdTerms(0.0, t.a, t.log_m, t.flags);
    }
    var r = JsdTerms(0.0, 0.0, 0.0, 0u);
    if p.zero && q.zero {
        return r;
    }
    if p.zero {
        r.log_m = mix.log_rest + q.logp;
    } else if q.zero {
        r.log_m = mix.log_beta + p.logp;
    } else {
        r.log_m = log_add(mix.log_beta + p.logp, mix.log_rest + q.logp);
    }
    r.a = select(p.p * (p.logp - r.log_m), 0.0, p.zero);
    r.b = select(q.p * (q.logp - r.log_m), 0.0, q.zero);
    return r;
}

// Each side's online (m, s) at scale k over one lane's columns of the row at `base`.
struct SideStats {
    p: RowStats,
    q: RowStats,
}

fn jsd_scan(slot: RowSlot, base: u32) -> SideStats {
    let k = params.inv_temperature;
    var r = SideStats(stats_at(k), stats_at(k));
    if slot.live {
        let oc = octets(slot, base, 0u, params.cols);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let e2 = e + 8u * LANES;
            let x = load_a8(e, oc.lo, oc.hi);
            let y = load_b8(e, oc.lo, oc.hi);
            let x2 = load_a8(e2, oc.lo, oc.hi);
            let y2 = load_b8(e2, oc.lo, oc.hi);
            r.p = stats_push8(stats_push8(r.p, x, oc, e), x2, oc, e2);
            r.q = stats_push8(stats_push8(r.q, y, oc, e), y2, oc, e2);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            r.p = stats_push8(r.p, load_a8(e, oc.lo, oc.hi), oc, e);
            r.q = stats_push8(r.q, load_b8(e, oc.lo, oc.hi), oc, e);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            let i = e - params.a_base;
            r.p = stats_push(r.p, load_a(i), e - oc.col0);
            r.q = stats_push(r.q, load_b(i), e - oc.col0);
        }
    }
    return r;
}

@compute @workgroup_size(WG)
fn jsd(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let base = slot.row * params.cols;
    let p_logits = has_flag(FLAG_P_LOGITS);
    let q_logits = has_flag(FLAG_Q_LOGITS);
    var sides = SideStats(stats_empty(), stats_empty());
    if p_logits || q_logits {
        let lanes = jsd_scan(slot, base);
        sides = SideStats(row_stats(slot, lanes.p), row_stats(slot, lanes.q));
    }
    let p_ok = !p_logits || stats_ok(sides.p);
    let q_ok = !q_logits || stats_ok(sides.q);
    let mix = mixture();

    var a = SumFlags(0.0, 0u);
    var b = SumFlags(0.0, 0u);
    var total = 0.0;
    var invalid = false;
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            let p = log_prob(load_a(base + j), p_logits, sides.p, p_ok);
            let q = log_prob(load_b(base + j), q_logits, sides.q, q_ok);
            if p.bad || q.bad {
                a.flags |= SUM_NAN;
                invalid = invalid || (!p_logits && p.bad) || (!q_logits && q.bad);
            } else {
                let t = jsd_terms(p, q, mix);
                a.sum += t.a;
                b.sum += t.b;
                a.flags |= t.flags;
                total += p.p;
            }
        }
    }
    if invalid {
        report_bad_value(slot.row);
    }
    let sa = row_sum(slot, a);
    let sb = row_sum(slot, b);
    let c_a = select(mix.beta, 1.0, mix.beta == 0.0);
    let c_b = select(1.0 - mix.beta, 1.0, mix.beta == 1.0);
    let value = sum_value(SumFlags(c_a * sa.sum + c_b * sb.sum, sa.flags));
    write_row(slot, value);
    if GRAD_OF == 2u {
        let sum_p = row_sum(slot, SumFlags(total, 0u)).sum;
        let broken = classify(value) == CLASS_NAN || (mix.beta > 0.0 && classify(value) != CLASS_FINITE);
        jsd_grad(slot, base, sides, p_ok, q_ok, sb.sum, sum_p, broken);
    }
}

fn jsd_grad(slot: RowSlot, base: u32, sides: SideStats, p_ok: bool, q_ok: bool, b: f32, sum_p: f32, broken: bool) {
    if !slot.live {
        return;
    }
    let c = grad_scale() * params.inv_temperature;
    let mix = mixture();
    let w = select(1.0 - mix.beta, 1.0, mix.beta == 1.0);
    let p_logits = has_flag(FLAG_P_LOGITS);
    for (var j = slot.lane; j < params.cols; j += LANES) {
        let p = log_prob(load_a(base + j), p_logits, sides.p, p_ok);
        let yq = load_b(base + j);
        let q = log_prob(yq, true, sides.q, q_ok);
        var g = 0.0;
        if mix.beta == 0.0 {
            g = q.p * sum_p - p.p;
        } else if !q.zero {
            g = w * q.p * (q.logp - jsd_terms(p, q, mix).log_m - b);
        }
        g = c * g * cap_chain(yq, CAP_B);
        if broken || p.bad || q.bad {
            g = nan();
        }
        store_grad(base + j, g);
    }
}
