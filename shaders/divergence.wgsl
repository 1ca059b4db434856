// KL divergence, cross-entropy with probability targets, and entropy: one kernel,
// chosen by flag bits.
//
//   KL(P‖Q)  =  Σ_j p_j log p_j − Σ_j p_j log q_j      (FLAG_TERM_PLOGP | FLAG_TERM_PLOGQ)
//   H(P, Q)  = −Σ_j p_j log q_j  [+ λ·lse_q²]           (FLAG_TERM_PLOGQ; z-loss λ)
//   H(P)     = −Σ_j p_j log p_j                         (FLAG_TERM_PLOGP | FLAG_NEGATE)
//
// P (input a) and Q (input b) are each probabilities or logits (FLAG_P_LOGITS,
// FLAG_Q_LOGITS). For logits, log p_j = (x_j − m) − log s is exact where log(softmax) is not.
// P as logits (and Q, if bound, too) is one pass over the inputs (PairStats), and so is P
// as probabilities with Q as logits (ProbsOverLogits); P as logits with Q as probabilities
// gets an online lse pass over P first, then both are read once more. Rows split across
// workgroups (P as logits, Q as logits or absent) take divergence_part, then
// divergence_merge (no gradient).
// p_j = 0 contributes 0; p_j > 0 with q_j = 0 is +inf. Negative, NaN or +inf
// probabilities are reported in status[1]. Bindings: a, b; out_rows[row] = value; with a
// z-loss (or ENTROPY), the row's z term in word 2 of its aux record; with ENTROPY (cross-
// entropy), the entropy of softmax(y) in word 3.
//
// Gradients, one more pass over the row, with respect to logits:
//   GRAD_OF = 2 (Q's logits, KL and cross-entropy): d/d x_qj = q_j·Σ_k p_k − p_j
//     (cross-entropy's z-loss λ·lse_q² adds 2λ·lse_q·q_j)
//   GRAD_OF = 1 (P's logits, entropy):              d/d x_pj = −p_j·(log p_j + H)

@compute @workgroup_size(WG)
fn divergence(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let base = slot.row * params.cols;
    let p_logits = has_flag(FLAG_P_LOGITS);
    let q_logits = has_flag(FLAG_Q_LOGITS);
    let has_b = has_flag(FLAG_HAS_B);
    let c = divergence_terms();
    let c_pp = c.x;
    let c_pq = c.y;
    if p_logits && (q_logits || !has_b) {
        divergence_of_logits(slot, base, has_b, c_pp, c_pq);
        return;
    }
    if !p_logits && has_b && q_logits {
        divergence_of_probs(slot, base, c_pp, c_pq);
        return;
    }
    // the rest: Q as probabilities (or absent), no gradient; P as logits takes its lse
    // pass first
    var sp = stats_empty();
    if p_logits {
        sp = row_stats(slot, stats_scan_a(slot, base, 0u, params.cols, 1.0, true));
    }
    let p_ok = stats_ok(sp);

    var acc = SumFlags(0.0, 0u);
    var invalid = false;
    if slot.live {
        for (var j = slot.lane; j < params.cols; j += LANES) {
            let p = log_prob(load_a(base + j), p_logits, sp, p_ok);
            var q = LogProb(1.0, 0.0, false, false);
            if has_b {
                q = log_prob(load_b(base + j), false, stats_empty(), true);
            }
            if p.bad || q.bad {
                acc.flags |= SUM_NAN;
                invalid = invalid || (!p_logits && p.bad) || q.bad;
            } else if p.p > 0.0 {
                if c_pq != 0.0 && q.zero {
                    acc.flags |= SUM_POS_INF;
                } else {
                    acc.sum += p.p * (c_pp * p.logp - c_pq * q.logp);
                }
            }
        }
    }
    if invalid {
        report_bad_value(slot.row);
    }
    write_row(slot, sum_value(row_sum(slot, acc)));
}

// P as logits, and Q as logits if bound: one pass (PairStats), the gradient pass after.
fn divergence_of_logits(slot: RowSlot, base: u32, has_b: bool, c_pp: f32, c_pq: f32) {
    let acc = pair_scan(slot, base, 0u, params.cols, has_b, c_pp, c_pq);
    let r = pair_row(slot, acc, c_pp, c_pq, has_b);
    let value = sum_value(pair_sum(r.p, r.q, r.t, c_pp, c_pq, has_b));
    write_row(slot, value);
    if GRAD_OF == 2u {
        grad_q(slot, base, r.p, stats_ok(r.p), r.q, stats_ok(r.q), 1.0);
    } else if GRAD_OF == 1u {
        grad_p(slot, base, r.p, stats_ok(r.p), value);
    }
}

// One lane's PairStats over columns [start, end) of the row at `base`.
fn pair_scan(slot: RowSlot, base: u32, start: u32, end: u32, has_b: bool, c_pp: f32, c_pq: f32) -> PairStats {
    var acc = pair_empty();
    if slot.live {
        let oc = octets(slot, base, start, end);
        // two loops, so that the one without Q carries none of its state
        if has_b {
            var e = oc.first;
            //#steps2
            for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
                let e2 = e + 8u * LANES;
                let x = load_a8(e, oc.lo, oc.hi);
                let y = load_b8(e, oc.lo, oc.hi);
                let x2 = load_a8(e2, oc.lo, oc.hi);
                let y2 = load_b8(e2, oc.lo, oc.hi);
                acc = pair_push8(acc, x, y, oc, e, c_pp, c_pq, true);
                acc = pair_push8(acc, x2, y2, oc, e2, c_pp, c_pq, true);
            }
            //#end
            for (; !EACH && e < oc.hi; e += 8u * LANES) {
                acc = pair_push8(acc, load_a8(e, oc.lo, oc.hi), load_b8(e, oc.lo, oc.hi), oc, e, c_pp, c_pq, true);
            }
            for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
                let i = e - params.a_base;
                acc = pair_push(acc, load_a(i), load_b(i), c_pp, c_pq, true);
            }
        } else {
            var none: array<f32, 8>;
            var e = oc.first;
            //#steps2
            for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
                let x = load_a8(e, oc.lo, oc.hi);
                let x2 = load_a8(e + 8u * LANES, oc.lo, oc.hi);
                acc = pair_push8(acc, x, none, oc, e, c_pp, 0.0, false);
                acc = pair_push8(acc, x2, none, oc, e + 8u * LANES, c_pp, 0.0, false);
            }
            //#end
            for (; !EACH && e < oc.hi; e += 8u * LANES) {
                acc = pair_push8(acc, load_a8(e, oc.lo, oc.hi), none, oc, e, c_pp, 0.0, false);
            }
            for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
                acc = pair_push(acc, load_a(e - params.a_base), 0.0, c_pp, 0.0, false);
            }
        }
    }
    return acc;
}

// The divergence's coefficients of Σ p log p and Σ p log q (see the header).
fn divergence_terms() -> vec2<f32> {
    let c_pp = select(0.0, select(1.0, -1.0, has_flag(FLAG_NEGATE)), has_flag(FLAG_TERM_PLOGP));
    return vec2<f32>(c_pp, select(0.0, 1.0, has_flag(FLAG_TERM_PLOGQ)));
}

// Split rows (common/row_reduce.wgsl), P as logits (and Q as logits if bound): one part's
// pair stats.
@compute @workgroup_size(WG)
fn divergence_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    let has_b = has_flag(FLAG_HAS_B);
    let c = divergence_terms();
    let acc = pair_scan(slot, part.row * params.cols, part.start, part.end, has_b, c.x, c.y);
    write_part_pair(slot, acc, c.x, c.y, has_b);
}

// Split rows: a row's parts merged in order (one invocation per row), then as divergence.
@compute @workgroup_size(WG)
fn divergence_merge(inv: Invocation) {
    let slot = row_slot(inv);
    if slot.live {
        let c = divergence_terms();
        let r = merged_pair(slot.row, 1.0, c.x, c.y);
        write_row(slot, sum_value(pair_sum(r.p, r.q, r.t, c.x, c.y, has_flag(FLAG_HAS_B))));
    }
}

// Σ_j p_j·(c_p·log p_j − c_q·log q_j) for P as probabilities and Q as logits y, in one
// pass: the online (m, s) of y and v = Σ_j p_j·(c_p·log p_j − c_q·(y_j − m)) over the
// p_j > 0 with y_j finite, shifted by c_q·ε·mass when m rises by ε (mass = Σ of those p_j).
// The sum is v + c_q·mass·log s.
struct ProbsOverLogits {
    q: RowStats,
    t: f32,        // ENTROPY: the entropy sum of y against q.m (EntropyStats)
    v: f32,
    mass: f32,     // Σ p_j over the terms of v
    total: f32,    // Σ p_j over the valid p_j (the gradient's Σ_k p_k)
    flags: u32,
    invalid: bool, // a negative, NaN or +inf probability
}

fn probs_push(acc: ProbsOverLogits, p: f32, y: f32, c_p: f32, c_q: f32) -> ProbsOverLogits {
    var r = acc;
    let m = r.q.m;
    if ENTROPY {
        let es = entropy_push(EntropyStats(r.q, r.t), y, 0u);
        r.q = es.st;
        r.t = es.t;
    } else {
        r.q = stats_push(r.q, y, 0u);
    }
    // mass == 0: no terms yet, and m may still be the sentinel
    r.v = select(r.v, r.v + c_q * (r.q.m - m) * r.mass, r.mass != 0.0);
    let cp = classify(p);
    if cp == CLASS_NAN || cp == CLASS_POS_INF || p < 0.0 {
        r.invalid = true;
        r.flags |= SUM_NAN;
    } else if p > 0.0 {
        r.total += p;
        let cy = classify(y);
        if cy == CLASS_FINITE {
            r.v += p * (c_p * log(p) - c_q * (y - r.q.m));
            r.mass += p;
        } else if cy == CLASS_NEG_INF {
            r.flags |= SUM_POS_INF;
        }
    }
    return r;
}

fn probs_push_at(acc: ProbsOverLogits, p: f32, y: f32, oc: Octets, e: u32, k: u32, c_p: f32, c_q: f32) -> ProbsOverLogits {
    if !in_octet(oc, e, k) {
        return acc;
    }
    return probs_push(acc, p, y, c_p, c_q);
}

fn probs_push8(acc: ProbsOverLogits, p: array<f32, 8>, y: array<f32, 8>, oc: Octets, e: u32, c_p: f32, c_q: f32) -> ProbsOverLogits {
    var r = probs_push_at(acc, p[0], y[0], oc, e, 0u, c_p, c_q);
    r = probs_push_at(r, p[1], y[1], oc, e, 1u, c_p, c_q);
    r = probs_push_at(r, p[2], y[2], oc, e, 2u, c_p, c_q);
    r = probs_push_at(r, p[3], y[3], oc, e, 3u, c_p, c_q);
    r = probs_push_at(r, p[4], y[4], oc, e, 4u, c_p, c_q);
    r = probs_push_at(r, p[5], y[5], oc, e, 5u, c_p, c_q);
    r = probs_push_at(r, p[6], y[6], oc, e, 6u, c_p, c_q);
    return probs_push_at(r, p[7], y[7], oc, e, 7u, c_p, c_q);
}

fn divergence_of_probs(slot: RowSlot, base: u32, c_pp: f32, c_pq: f32) {
    var acc = ProbsOverLogits(stats_empty(), 0.0, 0.0, 0.0, 0.0, 0u, false);
    if slot.live {
        let oc = octets(slot, base, 0u, params.cols);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let e2 = e + 8u * LANES;
            let p = load_a8(e, oc.lo, oc.hi);
            let y = load_b8(e, oc.lo, oc.hi);
            let p2 = load_a8(e2, oc.lo, oc.hi);
            let y2 = load_b8(e2, oc.lo, oc.hi);
            acc = probs_push8(acc, p, y, oc, e, c_pp, c_pq);
            acc = probs_push8(acc, p2, y2, oc, e2, c_pp, c_pq);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            acc = probs_push8(acc, load_a8(e, oc.lo, oc.hi), load_b8(e, oc.lo, oc.hi), oc, e, c_pp, c_pq);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            let i = e - params.a_base;
            acc = probs_push(acc, load_a(i), load_b(i), c_pp, c_pq);
        }
    }
    if acc.invalid {
        report_bad_value(slot.row);
    }
    let q = row_stats(slot, acc.q);
    let v = select(acc.v, acc.v + c_pq * (q.m - acc.q.m) * acc.mass, acc.mass != 0.0);
    let sum = row_sum(slot, SumFlags(v, acc.flags));
    let mass = row_sum(slot, SumFlags(acc.mass, 0u)).sum;
    var h = 0.0;
    if ENTROPY {
        h = entropy_of(q, row_entropy_t(slot, acc.t, acc.q, q));
    }
    var value = nan();
    var z = select(0.0, nan(), params.z_loss > 0.0);
    if stats_ok(q) {
        var terms = SumFlags(sum.sum + c_pq * mass * q.log_s, sum.flags);
        // cross-entropy's z-loss (params.z_loss is 0 for KL)
        if params.z_loss > 0.0 {
            let lse = q.m * q.k + q.log_s;
            z = params.z_loss * lse * lse;
            terms.sum += z;
        }
        value = sum_value(terms);
    }
    write_row(slot, value);
    let aux = params.aux_base + AUX_WORDS * slot.row;
    if (params.z_loss > 0.0 || ENTROPY) && slot.live && slot.lane == 0u {
        // the row's z term, its share of the loss, for the report
        out_aux[aux + 2u] = bitcast<u32>(scaled(z));
    }
    if ENTROPY && slot.live && slot.lane == 0u {
        out_aux[aux + 3u] = bitcast<u32>(scaled(h));
    }
    if GRAD_OF == 2u {
        let total = row_sum(slot, SumFlags(acc.total, 0u)).sum;
        grad_q(slot, base, stats_empty(), true, q, stats_ok(q), total);
    }
}

fn grad_q(slot: RowSlot, base: u32, sp: RowStats, p_ok: bool, sq: RowStats, q_ok: bool, total: f32) {
    if !slot.live {
        return;
    }
    let c = grad_scale();
    let p_logits = has_flag(FLAG_P_LOGITS);
    // the z-loss's 2λ·lse·q_j (cross-entropy with probability targets; λ is 0 for KL)
    let z = select(0.0, 2.0 * params.z_loss * (sq.m * sq.k + sq.log_s), params.z_loss > 0.0 && q_ok);
    for (var j = slot.lane; j < params.cols; j += LANES) {
        let p = log_prob(load_a(base + j), p_logits, sp, p_ok);
        let yq = load_b(base + j);
        let q = log_prob(yq, true, sq, q_ok);
        var g = c * (q.p * (total + z) - p.p) * cap_chain(yq, CAP_B);
        if p.bad || q.bad {
            g = nan();
        }
        store_grad(base + j, g);
    }
}

fn grad_p(slot: RowSlot, base: u32, sp: RowStats, p_ok: bool, h: f32) {
    if !slot.live {
        return;
    }
    let c = grad_scale();
    for (var j = slot.lane; j < params.cols; j += LANES) {
        let x = load_a(base + j);
        let p = log_prob(x, true, sp, p_ok);
        var g = -c * p.p * (p.logp + h) * cap_chain(x, CAP_A);
        if p.zero {
            g = 0.0;
        }
        if p.bad {
            g = nan();
        }
        store_grad(base + j, g);
    }
}
