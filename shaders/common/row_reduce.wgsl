// The row layout of a workgroup and its reductions.
//
// A workgroup of WG invocations holds WG / LANES rows; the LANES invocations of a row
// stride over its columns (lane, lane + LANES, ...; the scans take them in pairs, 2 lane
// and 2 lane + 1, then 2 LANES on: one word of half precision, half the loop steps) and
// then combine their partial
// results in a fixed binary tree in workgroup memory, so every run gives the same bits.
// LANES = 1 is one invocation per row (few columns), LANES = WG one workgroup per row.
// Both are `override` constants chosen by the host from the shape and the adapter.
//
// Every function here holds barriers: call it from uniform control flow, in every
// invocation, including those whose row is past the end.

override WG: u32 = 64u;
override LANES: u32 = 64u;

var<workgroup> sh_x: array<f32, WG>;
var<workgroup> sh_y: array<f32, WG>;
var<workgroup> sh_u: array<u32, WG>;
var<workgroup> sh_v: array<u32, WG>;

struct RowSlot {
    row: u32,     // row index within this dispatch
    lane: u32,
    t: u32,       // local invocation index
    live: bool,   // row < params.rows
}

// Rows handled by workgroup (x, y) of a 2-D grid (rows may exceed 65,535 groups).
fn row_slot(t: u32, wid: vec3<u32>, nwg: vec3<u32>) -> RowSlot {
    let group = wid.x + wid.y * nwg.x;
    let row = group * (WG / LANES) + t / LANES;
    return RowSlot(row, t % LANES, t, row < params.rows);
}

// Whether any row of this workgroup is live (uniform: depends on workgroup_id only).
fn group_live(wid: vec3<u32>, nwg: vec3<u32>) -> bool {
    return (wid.x + wid.y * nwg.x) * (WG / LANES) < params.rows;
}

fn row_stats(slot: RowSlot, st: RowStats) -> RowStats {
    if LANES == 1u {
        // one invocation per row: nothing to merge, and no barrier (an override constant,
        // so the branch is resolved when the pipeline is built)
        return RowStats(st.m, st.s, st.arg, st.cls, log(st.s));
    }
    sh_x[slot.t] = st.m;
    sh_y[slot.t] = st.s;
    sh_u[slot.t] = st.arg;
    sh_v[slot.t] = st.cls;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off = off / 2u) {
        if slot.lane < off {
            let t = slot.t;
            let a = RowStats(sh_x[t], sh_y[t], sh_u[t], sh_v[t], 0.0);
            let b = RowStats(sh_x[t + off], sh_y[t + off], sh_u[t + off], sh_v[t + off], 0.0);
            let r = stats_merge(a, b);
            sh_x[t] = r.m;
            sh_y[t] = r.s;
            sh_u[t] = r.arg;
            sh_v[t] = r.cls;
        }
        workgroupBarrier();
    }
    let h = slot.t - slot.lane;
    // log s once per row, not once per element of the passes that follow
    let r = RowStats(sh_x[h], sh_y[h], sh_u[h], sh_v[h], log(sh_y[h]));
    workgroupBarrier();
    return r;
}

// A sum and an OR of flag bits over the row's lanes.
fn row_sum(slot: RowSlot, v: SumFlags) -> SumFlags {
    if LANES == 1u {
        return v;
    }
    sh_x[slot.t] = v.sum;
    sh_u[slot.t] = v.flags;
    workgroupBarrier();
    for (var off = LANES / 2u; off > 0u; off = off / 2u) {
        if slot.lane < off {
            sh_x[slot.t] = sh_x[slot.t] + sh_x[slot.t + off];
            sh_u[slot.t] = sh_u[slot.t] | sh_u[slot.t + off];
        }
        workgroupBarrier();
    }
    let h = slot.t - slot.lane;
    let r = SumFlags(sh_x[h], sh_u[h]);
    workgroupBarrier();
    return r;
}

fn report_bad_label(row: u32) {
    atomicMin(&status[0], params.row_offset + row);
}

fn report_bad_value(row: u32) {
    atomicMin(&status[1], params.row_offset + row);
}

// A row's label and target logit (read before an in-place gradient overwrites the row).
struct Target {
    label: i32,
    ignored: bool,   // the label is the ignore index (FLAG_IGNORE)
    in_range: bool,
    y: u32,
    xy: f32,
}

fn read_target(slot: RowSlot, base: u32) -> Target {
    var label = 0;
    if slot.live {
        label = labels[params.label_base + slot.row];
    }
    let ignored = has_flag(FLAG_IGNORE) && label == params.ignore_index;
    let in_range = label >= 0 && u32(label) < params.cols;
    let y = select(0u, u32(label), in_range);
    var xy = 0.0;
    if slot.live && in_range && !ignored {
        xy = load_a(base + y);
    }
    return Target(label, ignored, in_range, y, xy);
}

// One lane's online (m, s) and argmax over columns [start, end) of input a from `base`,
// each element times `scale` (1/T for a temperature).
fn stats_scan_a(slot: RowSlot, base: u32, start: u32, end: u32, scale: f32) -> RowStats {
    var st = stats_empty();
    if slot.live {
        for (var j = start + 2u * slot.lane; j < end; j += 2u * LANES) {
            let next = j + 1u < end;
            let x = load_a2(base + j, next) * scale;
            st = stats_push(st, x.x, j);
            if next {
                st = stats_push(st, x.y, j + 1u);
            }
        }
    }
    return st;
}

// Writes a row's value, scaled to the chosen log base (specials pass through).
fn write_row(slot: RowSlot, v: f32) {
    if slot.live && slot.lane == 0u {
        var x = v;
        if classify(v) == CLASS_FINITE {
            x = v * params.out_scale;
        }
        out_rows[params.out_base + slot.row] = x;
    }
}

// A row's PairStats (common/numerics.wgsl) over its lanes: each side merged, then every
// lane's t moved to the row's maxima and summed, in the fixed tree order.
struct PairRow {
    p: RowStats,
    q: RowStats,
    t: SumFlags,
}

fn pair_row(slot: RowSlot, acc: PairStats, c_p: f32, c_q: f32, with_q: bool) -> PairRow {
    let p = row_stats(slot, acc.p);
    var q = acc.q;
    if with_q {
        q = row_stats(slot, acc.q);
    }
    if LANES == 1u {
        // the lane's maxima are the row's: nothing to move (and no exp per row)
        return PairRow(p, q, SumFlags(acc.t, acc.flags));
    }
    let moved = pair_moved(acc, p.m - acc.p.m, q.m - acc.q.m, c_p, c_q);
    return PairRow(p, q, row_sum(slot, SumFlags(moved, acc.flags)));
}

// Split rows (few rows of very many columns, on GPUs): a first dispatch gives each
// (row, part) unit its own lanes (the row layout over params.rows = rows · parts units);
// the unit scans columns [part · part_cols, min(cols, (part + 1) · part_cols)) and writes
// a partial record of PART_WORDS words to the `grad` binding (split rows take no
// gradient). A second dispatch, one invocation per row, merges a row's parts in order.
const PART_WORDS: u32 = 12u;

struct PartSlot {
    row: u32,
    start: u32,   // first column of the part
    end: u32,     // one past its last
}

fn part_of(slot: RowSlot) -> PartSlot {
    let part = slot.row % params.parts;
    let start = part * params.part_cols;
    return PartSlot(slot.row / params.parts, start, min(params.cols, start + params.part_cols));
}

// The part's stats as words 0-4 of its record (lane 0 of the unit writes). Integers go
// as exact f32 values of 16 bits at most: a bitcast word could be a NaN pattern, which a
// backend may canonicalise on the way through a float.
fn write_part_stats(slot: RowSlot, st: RowStats) {
    if slot.live && slot.lane == 0u {
        let at = params.grad_base + slot.row * PART_WORDS;
        grad[at] = st.m;
        grad[at + 1u] = st.s;
        grad[at + 2u] = f32(st.arg & 0xffffu);
        grad[at + 3u] = f32(st.arg >> 16u);
        grad[at + 4u] = f32(st.cls);
    }
}

fn part_word(row: u32, part: u32, word: u32) -> f32 {
    return grad[params.grad_base + (row * params.parts + part) * PART_WORDS + word];
}

fn part_stats(row: u32, part: u32) -> RowStats {
    let arg = u32(part_word(row, part, 2u)) | (u32(part_word(row, part, 3u)) << 16u);
    return RowStats(part_word(row, part, 0u), part_word(row, part, 1u), arg, u32(part_word(row, part, 4u)), 0.0);
}

// A row's parts merged in order, log s set.
fn merged_parts(row: u32) -> RowStats {
    var st = part_stats(row, 0u);
    for (var part = 1u; part < params.parts; part++) {
        st = stats_merge(st, part_stats(row, part));
    }
    st.log_s = log(st.s);
    return st;
}

// Split rows of a row sum (binary cross-entropy, Gaussian KL): a part's SumFlags over its
// lanes in words 5 (sum) and 7 (flags) of its record.
fn write_part_sum(slot: RowSlot, v: SumFlags) {
    write_part_words(slot, 5u, vec3<f32>(v.sum, 0.0, f32(v.flags)));
}

// Words first, first + 1 and first + 2 of the unit's record (lane 0 of a live unit).
fn write_part_words(slot: RowSlot, first: u32, v: vec3<f32>) {
    if slot.live && slot.lane == 0u {
        let at = params.grad_base + slot.row * PART_WORDS + first;
        grad[at] = v.x;
        grad[at + 1u] = v.y;
        grad[at + 2u] = v.z;
    }
}

// Split rows of a row sum: the parts added in order (one invocation per row).
@compute @workgroup_size(WG)
fn sum_merge(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let slot = row_slot(t, wid, nwg);
    if slot.live {
        var v = SumFlags(0.0, 0u);
        for (var part = 0u; part < params.parts; part++) {
            v.sum += part_word(slot.row, part, 5u);
            v.flags |= u32(part_word(slot.row, part, 7u));
        }
        write_row(slot, sum_value(v));
    }
}

// Split rows of pair stats (KL, entropy, distillation): a part's PairStats over its lanes,
// t and w moved to the part's maxima. Words: m_p, s_p, m_q, s_q, cls_p + 4 cls_q, t, w,
// flags.
fn write_part_pair(slot: RowSlot, acc: PairStats, c_p: f32, c_q: f32, with_q: bool) {
    let p = row_stats(slot, acc.p);
    var q = acc.q;
    if with_q {
        q = row_stats(slot, acc.q);
    }
    let t = row_sum(slot, SumFlags(pair_moved(acc, p.m - acc.p.m, q.m - acc.q.m, c_p, c_q), acc.flags));
    let w_moved = select(0.0, exp(-min(p.m - acc.p.m, 126.0)) * acc.w, acc.w != 0.0);
    let w = row_sum(slot, SumFlags(w_moved, 0u)).sum;
    if slot.live && slot.lane == 0u {
        let at = params.grad_base + slot.row * PART_WORDS;
        grad[at] = p.m;
        grad[at + 1u] = p.s;
        grad[at + 2u] = q.m;
        grad[at + 3u] = q.s;
        grad[at + 4u] = f32(p.cls + 4u * q.cls);
        grad[at + 5u] = t.sum;
        grad[at + 6u] = w;
        grad[at + 7u] = f32(t.flags);
    }
}

// A row's pair parts merged in order: both sides' stats, then every part's t moved to the
// row's maxima and added.
fn merged_pair(row: u32, c_p: f32, c_q: f32) -> PairRow {
    var p = stats_empty();
    var q = stats_empty();
    for (var part = 0u; part < params.parts; part++) {
        let cls = u32(part_word(row, part, 4u));
        p = stats_merge(p, RowStats(part_word(row, part, 0u), part_word(row, part, 1u), 0u, cls % 4u, 0.0));
        q = stats_merge(q, RowStats(part_word(row, part, 2u), part_word(row, part, 3u), 0u, cls / 4u, 0.0));
    }
    p.log_s = log(p.s);
    q.log_s = log(q.s);
    var t = SumFlags(0.0, 0u);
    for (var part = 0u; part < params.parts; part++) {
        var acc = pair_empty();
        acc.p.m = part_word(row, part, 0u);
        acc.q.m = part_word(row, part, 2u);
        acc.t = part_word(row, part, 5u);
        acc.w = part_word(row, part, 6u);
        t.sum += pair_moved(acc, p.m - acc.p.m, q.m - acc.q.m, c_p, c_q);
        t.flags |= u32(part_word(row, part, 7u));
    }
    return PairRow(p, q, t);
}
