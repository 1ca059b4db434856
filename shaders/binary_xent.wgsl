// Binary cross-entropy, elementwise, summed over the row's columns.
//
//   probs  (FLAG_P_LOGITS off): −(t·max(log x, −100) + (1−t)·max(log(1−x), −100))
//   logits (FLAG_P_LOGITS on):  max(x, 0) − x·t + log1p(exp(−|x|))
//
// The clamp at −100 is PyTorch's binary_cross_entropy; the logits form never
// overflows. Targets outside [0, 1] and probabilities outside [0, 1] are reported in
// status[1]. A NaN or +inf logit makes the row NaN; a -inf logit is probability 0.
// Bindings: a = x, b = t; out_rows[row] = Σ_j loss_ij. Rows split across workgroups
// take binary_xent_part, then sum_merge (no gradient).
//
// Gradient with respect to logits (GRAD_OF = 1), in the same pass: σ(x) − t.

// σ(x) without overflow; NaN for NaN or +inf logits (their loss is NaN too), 0 at -inf.
fn sigmoid(x: f32) -> f32 {
    let cx = classify(x);
    if cx == CLASS_NAN || cx == CLASS_POS_INF {
        return nan();
    }
    if cx == CLASS_NEG_INF {
        return 0.0;
    }
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

fn clamped_log(v: f32) -> f32 {
    if v <= 0.0 {
        return -100.0;
    }
    return max(log(v), -100.0);
}

@compute @workgroup_size(WG)
fn binary_xent(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let acc = bce_scan(slot, slot.row, 0u, params.cols);
    write_row(slot, sum_value(row_sum(slot, acc)));
}

// Split rows (common/row_reduce.wgsl): one part's sum; sum_merge adds the parts.
@compute @workgroup_size(WG)
fn binary_xent_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    write_part_sum(slot, row_sum(slot, bce_scan(slot, part.row, part.start, part.end)));
}

fn bce_terms8(acc: Bce, x: array<f32, 8>, y: array<f32, 8>, oc: Octets, e: u32, base: u32, logits: bool) -> Bce {
    var r = bce_term_at(acc, x[0], y[0], oc, e, 0u, base, logits);
    r = bce_term_at(r, x[1], y[1], oc, e, 1u, base, logits);
    r = bce_term_at(r, x[2], y[2], oc, e, 2u, base, logits);
    r = bce_term_at(r, x[3], y[3], oc, e, 3u, base, logits);
    r = bce_term_at(r, x[4], y[4], oc, e, 4u, base, logits);
    r = bce_term_at(r, x[5], y[5], oc, e, 5u, base, logits);
    r = bce_term_at(r, x[6], y[6], oc, e, 6u, base, logits);
    return bce_term_at(r, x[7], y[7], oc, e, 7u, base, logits);
}

// One lane's terms (and gradient) over columns [start, end) of `row`; invalid values are
// reported for the row.
fn bce_scan(slot: RowSlot, row: u32, start: u32, end: u32) -> SumFlags {
    let base = row * params.cols;
    let logits = has_flag(FLAG_P_LOGITS);
    var acc = Bce(SumFlags(0.0, 0u), false);
    if slot.live {
        let oc = octets(slot, base, start, end);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let e2 = e + 8u * LANES;
            let x = load_a8(e, oc.lo, oc.hi);
            let y = load_b8(e, oc.lo, oc.hi);
            let x2 = load_a8(e2, oc.lo, oc.hi);
            let y2 = load_b8(e2, oc.lo, oc.hi);
            acc = bce_terms8(acc, x, y, oc, e, base, logits);
            acc = bce_terms8(acc, x2, y2, oc, e2, base, logits);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            acc = bce_terms8(acc, load_a8(e, oc.lo, oc.hi), load_b8(e, oc.lo, oc.hi), oc, e, base, logits);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            let i = e - params.a_base;
            acc = bce_term_at(acc, load_a(i), load_b(i), oc, e, 0u, base, logits);
        }
    }
    if acc.invalid {
        report_bad_value(row);
    }
    return acc.sum;
}

struct Bce {
    sum: SumFlags,
    invalid: bool,   // a target outside [0, 1], or a probability outside it
}

fn bce_term_at(acc: Bce, x: f32, y: f32, oc: Octets, e: u32, k: u32, base: u32, logits: bool) -> Bce {
    if !in_octet(oc, e, k) {
        return acc;
    }
    return bce_term(acc, x, y, base + octet_col(oc, e, k), logits);
}

// One element's term (and its gradient, written at `i`).
fn bce_term(acc: Bce, x: f32, y: f32, i: u32, logits: bool) -> Bce {
    var r = acc;
    let cx = classify(x);
    if GRAD_OF == 1u {
        store_grad(i, grad_scale() * (sigmoid(x) - y));
    }
    if classify(y) != CLASS_FINITE || y < 0.0 || y > 1.0 {
        r.invalid = true;
        r.sum.flags |= SUM_NAN;
    } else if !logits {
        if cx != CLASS_FINITE || x < 0.0 || x > 1.0 {
            r.invalid = true;
            r.sum.flags |= SUM_NAN;
        } else {
            r.sum.sum -= y * clamped_log(x) + (1.0 - y) * clamped_log(1.0 - x);
        }
    } else if cx == CLASS_NAN || cx == CLASS_POS_INF {
        r.sum.flags |= SUM_NAN;
    } else if cx == CLASS_NEG_INF {
        if y > 0.0 {
            r.sum.flags |= SUM_POS_INF;
        }
    } else {
        r.sum.sum += max(x, 0.0) - x * y + log1p(exp(-abs(x)));
    }
    return r;
}
