// KL divergence of a diagonal Gaussian from the standard normal (the VAE loss).
//
//   loss_i = −½ Σ_j (1 + lv_ij − μ_ij² − exp(lv_ij))
//
// Any NaN input makes the row NaN; an infinite μ or log-variance makes it +inf (each
// term is then +inf). Bindings: a = μ, b = log-variance; out_rows[row] = loss_i.
// Rows split across workgroups take gaussian_kl_part, then sum_merge.

@compute @workgroup_size(WG)
fn gaussian_kl(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    write_row(slot, sum_value(row_sum(slot, gaussian_scan(slot, slot.row * params.cols, 0u, params.cols))));
}

// Split rows (common/row_reduce.wgsl): one part's sum; sum_merge adds the parts.
@compute @workgroup_size(WG)
fn gaussian_kl_part(inv: Invocation) {
    if !group_live(inv) { return; }
    let slot = row_slot(inv);
    let part = part_of(slot);
    write_part_sum(slot, row_sum(slot, gaussian_scan(slot, part.row * params.cols, part.start, part.end)));
}

fn gaussian_terms8(acc: SumFlags, mu: array<f32, 8>, lv: array<f32, 8>, oc: Octets, e: u32) -> SumFlags {
    var r = gaussian_term_at(acc, mu[0], lv[0], oc, e, 0u);
    r = gaussian_term_at(r, mu[1], lv[1], oc, e, 1u);
    r = gaussian_term_at(r, mu[2], lv[2], oc, e, 2u);
    r = gaussian_term_at(r, mu[3], lv[3], oc, e, 3u);
    r = gaussian_term_at(r, mu[4], lv[4], oc, e, 4u);
    r = gaussian_term_at(r, mu[5], lv[5], oc, e, 5u);
    r = gaussian_term_at(r, mu[6], lv[6], oc, e, 6u);
    return gaussian_term_at(r, mu[7], lv[7], oc, e, 7u);
}

// One lane's terms over columns [start, end) of the row at `base`.
fn gaussian_scan(slot: RowSlot, base: u32, start: u32, end: u32) -> SumFlags {
    var acc = SumFlags(0.0, 0u);
    if slot.live {
        let oc = octets(slot, base, start, end);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let e2 = e + 8u * LANES;
            let mu = load_a8(e, oc.lo, oc.hi);
            let lv = load_b8(e, oc.lo, oc.hi);
            let mu2 = load_a8(e2, oc.lo, oc.hi);
            let lv2 = load_b8(e2, oc.lo, oc.hi);
            acc = gaussian_terms8(acc, mu, lv, oc, e);
            acc = gaussian_terms8(acc, mu2, lv2, oc, e2);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            acc = gaussian_terms8(acc, load_a8(e, oc.lo, oc.hi), load_b8(e, oc.lo, oc.hi), oc, e);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            let i = e - params.a_base;
            acc = gaussian_term(acc, load_a(i), load_b(i));
        }
    }
    return acc;
}

fn gaussian_term_at(acc: SumFlags, mu: f32, lv: f32, oc: Octets, e: u32, k: u32) -> SumFlags {
    if !in_octet(oc, e, k) {
        return acc;
    }
    return gaussian_term(acc, mu, lv);
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
