// Numerics that hold on every backend. The WGSL spec lets implementations assume no
// infinities or NaN, so special inputs are recognised by bit pattern, "no value yet"
// is a finite sentinel (an empty sum, s == 0), and special results are built from bits.

const F32_MAX_NEG: f32 = -3.4028235e38;
const NEG_INF_BITS: u32 = 0xff800000u;
const POS_INF_BITS: u32 = 0x7f800000u;
const NAN_BITS: u32 = 0x7fc00000u;

// Element classes, ordered so that a larger class wins a max: -inf < finite < +inf < NaN.
const CLASS_NEG_INF: u32 = 0u;
const CLASS_FINITE: u32 = 1u;
const CLASS_POS_INF: u32 = 2u;
const CLASS_NAN: u32 = 3u;

fn classify(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if (b & 0x7fffffffu) > POS_INF_BITS {
        return CLASS_NAN;
    }
    if b == POS_INF_BITS {
        return CLASS_POS_INF;
    }
    if b == NEG_INF_BITS {
        return CLASS_NEG_INF;
    }
    return CLASS_FINITE;
}

fn pos_inf() -> f32 {
    return bitcast<f32>(POS_INF_BITS);
}

fn neg_inf() -> f32 {
    return bitcast<f32>(NEG_INF_BITS);
}

fn nan() -> f32 {
    return bitcast<f32>(NAN_BITS);
}

// log(1 + e) without losing e when it is tiny (WGSL has no log1p).
fn log1p(e: f32) -> f32 {
    let u = 1.0 + e;
    if u == 1.0 {
        return e;
    }
    return log(u) * e / (u - 1.0);
}

// Online row statistics in one pass over x at scale k (1/T at a temperature T): (m, s)
// with m the max of x itself and s = Σ exp(k·(x − m)) over the finite elements (s == 0:
// none yet), and the argmax by (class, value, first index). The max is subtracted before
// the scale multiplies: x − m is exact for logits of similar size, where k·x − k·m would
// round both products (an ulp of 1.4e4 is 1e-3). k multiplies rather than T divides:
// 1/T is rounded once on the host, and WGSL's division may be off by 2.5 ulp.
struct RowStats {
    m: f32,
    s: f32,
    arg: u32,
    cls: u32,
    log_s: f32,    // log(s), set once the row's lanes are merged (row_stats)
    k: f32,
}

fn stats_at(k: f32) -> RowStats {
    return RowStats(F32_MAX_NEG, 0.0, 0xffffffffu, CLASS_NEG_INF, 0.0, k);
}

fn stats_empty() -> RowStats {
    return stats_at(1.0);
}

// One exp per element: e = exp(−k·|x − m|) is exp(k·(x − m)) when x ≤ m and the rescale
// exp(k·(m − x)) when x > m, so no lane evaluates both (SIMD lanes of CPU adapters run
// both sides of a divergent branch). The sentinel m = F32_MAX_NEG makes the first element
// take the rescale with s = 0, giving s = 1. k·|x − m| is clamped where exp is 0 in f32.
fn stats_push(st: RowStats, x: f32, j: u32) -> RowStats {
    var r = st;
    let c = classify(x);
    if c == CLASS_FINITE {
        let d = x - r.m;
        let up = d > 0.0;
        let e = exp(-min(abs(d) * r.k, 126.0));
        r.s = select(r.s + e, r.s * e + 1.0, up);
        r.m = max(r.m, x);
        if r.cls < CLASS_FINITE || (r.cls == CLASS_FINITE && up) {
            r.arg = j;
            r.cls = CLASS_FINITE;
        }
    } else if c > r.cls || (c == r.cls && j < r.arg) {
        r.cls = c;
        r.arg = j;
    }
    return r;
}

fn stats_merge(a: RowStats, b: RowStats) -> RowStats {
    var r = a;
    if a.s == 0.0 {
        r.m = b.m;
        r.s = b.s;
    } else if b.s != 0.0 {
        let m = max(a.m, b.m);
        r.s = a.s * exp(max((a.m - m) * a.k, -126.0)) + b.s * exp(max((b.m - m) * a.k, -126.0));
        r.m = m;
    }
    var take_b = b.cls > a.cls;
    if b.cls == a.cls {
        if a.cls == CLASS_FINITE && b.m != a.m {
            take_b = b.m > a.m;
        } else {
            take_b = b.arg < a.arg;
        }
    }
    if take_b {
        r.arg = b.arg;
        r.cls = b.cls;
    }
    return r;
}

// stats_push at scale k = 1 plus the entropy sum t = Σ_j e^(x_j − m)·(x_j − m) over the
// finite x_j, sharing its exp. When m rises by δ every term is scaled by e^(−δ) and shifted
// by −δ times its weight (the weights add up to s): t becomes e^(−δ)·t − e^(−δ)·δ·s. Every
// term is ≤ 0 and s ≥ 1, so H = log s − t/s (entropy_of) adds two non-negative parts.
struct EntropyStats {
    st: RowStats,
    t: f32,
}

fn entropy_push(acc: EntropyStats, x: f32, j: u32) -> EntropyStats {
    var r = acc.st;
    var t = acc.t;
    let c = classify(x);
    if c == CLASS_FINITE {
        let d = x - r.m;
        let up = d > 0.0;
        let ad = min(abs(d), 126.0);
        let e = exp(-ad);
        // e·(x − m), or e·δ when the max rises, with d clamped where e is 0 anyway: never
        // inf·0 (a first element against the sentinel); no branch, as in stats_push
        let u = e * clamp(d, -126.0, 126.0);
        t = select(t + u, e * t - u * r.s, up);
        r.s = select(r.s + e, r.s * e + 1.0, up);
        r.m = max(r.m, x);
        if r.cls < CLASS_FINITE || (r.cls == CLASS_FINITE && up) {
            r.arg = j;
            r.cls = CLASS_FINITE;
        }
    } else if c > r.cls || (c == r.cls && j < r.arg) {
        r.cls = c;
        r.arg = j;
    }
    return EntropyStats(r, t);
}

// t of stats with max m_from and sum s moved to a larger max m (a lane's to its row's).
fn entropy_moved(t: f32, s: f32, m_from: f32, m: f32, k: f32) -> f32 {
    let d = m - m_from;
    let e = exp(-min(d * k, 126.0));
    return select(e * (t - d * s), 0.0, s == 0.0 || e == 0.0);
}

// The entropy of softmax(k·x) from the row's merged stats and t: NaN where its
// log-softmax is not defined (NaN or +inf in the row, or every element -inf).
fn entropy_of(st: RowStats, t: f32) -> f32 {
    if !stats_ok(st) {
        return nan();
    }
    return st.log_s - st.k * (t / st.s);
}

// The row's log-sum-exp (of k·x): NaN if it holds NaN or +inf, -inf if every element is -inf.
fn stats_lse(st: RowStats) -> f32 {
    if st.cls >= CLASS_POS_INF {
        return nan();
    }
    if st.s == 0.0 {
        return neg_inf();
    }
    return st.m * st.k + log(st.s);
}

// log_softmax(k·x) = k·(x − m) − log s. Subtracting the max first is exact for logits of
// similar size, where k·x − (k·m + log s) would lose the ulps of a large lse (1e-3 at 1e4).
fn log_softmax_of(st: RowStats, x: f32) -> f32 {
    return (x - st.m) * st.k - st.log_s;
}

// Whether log_softmax is defined (finite lse): no NaN/+inf and at least one finite element.
fn stats_ok(st: RowStats) -> bool {
    return st.cls <= CLASS_FINITE && st.s != 0.0;
}

// A probability and its log, from probabilities or logits (the divergences).
struct LogProb {
    p: f32,        // the probability (may underflow to 0 for logits)
    logp: f32,     // its log, valid unless `zero`
    zero: bool,    // exactly zero: a 0 probability or a -inf logit
    bad: bool,     // NaN/+inf logits row, or an invalid probability
}

fn log_prob(x: f32, logits: bool, st: RowStats, row_ok: bool) -> LogProb {
    let c = classify(x);
    if logits {
        if !row_ok {
            return LogProb(0.0, 0.0, false, true);
        }
        if c == CLASS_NEG_INF {
            return LogProb(0.0, 0.0, true, false);
        }
        let lp = log_softmax_of(st, x);
        return LogProb(exp(lp), lp, false, false);
    }
    if c == CLASS_NAN || c == CLASS_POS_INF || x < 0.0 {
        return LogProb(0.0, 0.0, false, true);
    }
    if x == 0.0 {
        return LogProb(0.0, 0.0, true, false);
    }
    return LogProb(x, log(x), false, false);
}

// A sum of finite terms plus flag bits for the special ones, so that the rules for
// infinities and NaN do not depend on the backend's float semantics.
struct SumFlags {
    sum: f32,
    flags: u32,
}

// SumFlags flag bits.
const SUM_POS_INF: u32 = 1u;   // a term is +inf
const SUM_NAN: u32 = 2u;       // a term is NaN
const SUM_NEG_INF: u32 = 4u;   // a term is -inf

// The final value of a flagged sum: NaN wins, +inf and -inf together are NaN.
fn sum_value(v: SumFlags) -> f32 {
    if (v.flags & SUM_NAN) != 0u || (v.flags & (SUM_POS_INF | SUM_NEG_INF)) == (SUM_POS_INF | SUM_NEG_INF) {
        return nan();
    }
    if (v.flags & SUM_POS_INF) != 0u {
        return pos_inf();
    }
    if (v.flags & SUM_NEG_INF) != 0u {
        return neg_inf();
    }
    return v.sum;
}


// Σ_j p_j·(c_p·log p_j − c_q·log q_j) for P (and Q) given as logits k·x (and k·y), in
// one pass over both: the online (m, s) of each side (RowStats at scale k) and
//
//   t = Σ_j e^(k·(x_j − m_p))·(c_p·(x_j − m_p) − c_q·(y_j − m_q))
//
// over the j where x_j and y_j are finite, in logit units (k·t may overflow where the sum
// times 1/k does not: distillation). When m_p rises by δ every term of t is scaled by
// e^(−k·δ) and shifted by −c_p·δ; when m_q rises by ε it is shifted by +c_q·ε; w is the
// weight those shifts apply to. The sum is then k·t/s_p − c_p·log s_p + c_q·log s_q: one
// exp per side and element and one read of each input, where taking each lse first reads
// every input twice. KL is c_p = c_q = 1; entropy c_p = −1 without Q.
struct PairStats {
    p: RowStats,
    q: RowStats,
    t: f32,
    w: f32,        // Σ e^(x_j − m_p) over the terms of t
    flags: u32,    // SUM_POS_INF: a finite x_j (p_j > 0) with y_j = −inf (q_j = 0)
}

fn pair_at(k: f32) -> PairStats {
    return PairStats(stats_at(k), stats_at(k), 0.0, 0.0, 0u);
}

fn pair_empty() -> PairStats {
    return pair_at(1.0);
}

fn pair_push(acc: PairStats, x: f32, y: f32, c_p: f32, c_q: f32, with_q: bool) -> PairStats {
    var r = acc;
    let k = r.p.k;
    var cy = CLASS_FINITE;
    var yq = 0.0;
    if with_q {
        let m_q = r.q.m;
        r.q = stats_push(r.q, y, 0u);
        // w == 0: no terms yet, and m_q may still be the sentinel
        r.t = select(r.t, r.t + c_q * (r.q.m - m_q) * r.w, r.w != 0.0);
        cy = classify(y);
        yq = y - r.q.m;
    }
    let cx = classify(x);
    if cx == CLASS_FINITE {
        // the online (m, s) step of stats_push, sharing its exp with the rescale of t
        let d = x - r.p.m;
        let up = d > 0.0;
        let e = exp(-min(abs(d) * k, 126.0));
        r.t = select(r.t, e * r.t - c_p * (d * e) * r.w, up && r.w != 0.0);
        r.w = select(r.w, r.w * e, up);
        r.p.s = select(r.p.s + e, r.p.s * e + 1.0, up);
        r.p.m = max(r.p.m, x);
        r.p.cls = max(r.p.cls, CLASS_FINITE);
        let weight = select(e, 1.0, up);
        if cy == CLASS_FINITE {
            r.w += weight;
            r.t += weight * (c_p * select(d, 0.0, up) - c_q * yq);
        } else if cy == CLASS_NEG_INF {
            r.flags |= SUM_POS_INF;
        }
    } else {
        r.p.cls = max(r.p.cls, cx);
    }
    return r;
}

// t moved from a lane's maxima to the row's (dp, dq ≥ 0), for the sum over lanes.
fn pair_moved(acc: PairStats, dp: f32, dq: f32, c_p: f32, c_q: f32) -> f32 {
    let moved = exp(-min(dp * acc.p.k, 126.0)) * (acc.t + (c_q * dq - c_p * dp) * acc.w);
    return select(0.0, moved, acc.w != 0.0);
}

// The row's sum from its merged sides and t: NaN unless both sides have a finite lse.
fn pair_sum(p: RowStats, q: RowStats, t: SumFlags, c_p: f32, c_q: f32, with_q: bool) -> SumFlags {
    if !stats_ok(p) || (with_q && !stats_ok(q)) {
        return SumFlags(0.0, SUM_NAN);
    }
    let log_q = select(0.0, c_q * q.log_s, with_q);
    return SumFlags(p.k * (t.sum / p.s) - c_p * p.log_s + log_q, t.flags);
}

// Series for the small arguments where the closed forms cancel (distillation's τ²·KL),
// for |ρ| ≤ 1 (the rest is under 1e-9 of the sum). ψ(ρ)/ρ² with ψ(ρ) = e^ρ − 1 − ρ:
// Σ_n ρ^n/(n+2)! to n = 10.
fn psi_over_sq(rho: f32) -> f32 {
    return factorial_horner(1.0 / 479001600.0 * rho + 1.0 / 39916800.0, rho);
}

// (e^ρ − 1)/ρ: Σ_n ρ^n/(n+1)! to n = 10.
fn expm1_over(rho: f32) -> f32 {
    return factorial_horner(1.0 / 39916800.0, rho) * rho + 1.0;
}

// The Horner steps both series end with: ((g_top·ρ + 1/10!)·ρ + 1/9!)·ρ ... + 1/2!.
fn factorial_horner(g_top: f32, rho: f32) -> f32 {
    var g = g_top * rho + 1.0 / 3628800.0;
    g = g * rho + 1.0 / 362880.0;
    g = g * rho + 1.0 / 40320.0;
    g = g * rho + 1.0 / 5040.0;
    g = g * rho + 1.0 / 720.0;
    g = g * rho + 1.0 / 120.0;
    g = g * rho + 1.0 / 24.0;
    g = g * rho + 1.0 / 6.0;
    return g * rho + 0.5;
}

// (z − log(1 + z))/z² for z > −1: Σ_n (−z)^n/(n+2) to n = 12 where |z| ≤ 1/4 (the rest
// is under 1e-9 of the sum), else directly.
fn log1p_gap_over_sq(z: f32) -> f32 {
    if abs(z) > 0.25 {
        return (z - log(1.0 + z)) / (z * z);
    }
    var g = 1.0 / 14.0;
    g = 1.0 / 13.0 - z * g;
    g = 1.0 / 12.0 - z * g;
    g = 1.0 / 11.0 - z * g;
    g = 1.0 / 10.0 - z * g;
    g = 1.0 / 9.0 - z * g;
    g = 1.0 / 8.0 - z * g;
    g = 1.0 / 7.0 - z * g;
    g = 1.0 / 6.0 - z * g;
    g = 1.0 / 5.0 - z * g;
    g = 1.0 / 4.0 - z * g;
    g = 1.0 / 3.0 - z * g;
    return 0.5 - z * g;
}
