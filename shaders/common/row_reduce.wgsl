// The row layout of a workgroup.
//
// A workgroup of WG invocations holds WG / LANES rows; the LANES invocations of a row
// stride over its columns in octets (see `Octets`: lane l takes the l-th run of eight, then
// every LANES-th) and then combine their partial results in a fixed binary tree
// (row_tree.wgsl), so every run gives the same bits. LANES = 1 is one invocation per row
// (few columns), LANES = WG one workgroup per row. Both are `override` constants chosen by
// the host from the shape and the adapter.
//
// Every function here that reduces over a row's lanes holds barriers: call it from
// uniform control flow, in every invocation, including those whose row is past the end.

override WG: u32 = 64u;
override LANES: u32 = 64u;

var<workgroup> sh_x: array<f32, WG>;
var<workgroup> sh_y: array<f32, WG>;
var<workgroup> sh_u: array<u32, WG>;
var<workgroup> sh_v: array<u32, WG>;

// Every row kernel's entry point is `fn kernel(inv: Invocation)` (the struct is
// row_lanes.wgsl's, or row_lanes_subgroups.wgsl's on a device with subgroups): where the
// invocation stands in the dispatch, a 2-D grid of workgroups (rows may exceed 65,535
// groups). A kernel that holds barriers starts
//
//   if !group_live(inv) { return; }
//   let slot = row_slot(inv);
//
// (a uniform return: the whole workgroup takes it, or none of it); one without barriers
// (the merges, one invocation per row, and the copy baseline) takes row_slot alone.
struct RowSlot {
    row: u32,     // row index within this dispatch
    lane: u32,
    t: u32,       // index in the workgroup's layout (of its workgroup memory)
    live: bool,   // row < params.rows
    sg: u32,      // width of the subgroups the row's tree may shuffle in (0: none)
}

// The first row of the invocation's workgroup: the group's index in the grid times its rows.
fn first_row(inv: Invocation) -> u32 {
    return (inv.wid.x + inv.wid.y * inv.nwg.x) * (WG / LANES);
}

// The invocation's row and lane.
fn row_slot(inv: Invocation) -> RowSlot {
    let at = lane_index(inv);
    let row = first_row(inv) + at.x / LANES;
    return RowSlot(row, at.x % LANES, at.x, row < params.rows, at.y);
}

// Whether any row of this workgroup is live (uniform: depends on workgroup_id only).
fn group_live(inv: Invocation) -> bool {
    return first_row(inv) < params.rows;
}

// The entropy sum t (EntropyStats) of the row's lanes, each at its lane's stats, moved to
// the row's max and added in the fixed tree order.
fn row_entropy_t(slot: RowSlot, t: f32, lane: RowStats, row: RowStats) -> f32 {
    if LANES == 1u {
        return t;
    }
    return row_sum(slot, SumFlags(entropy_moved(t, lane.s, lane.m, row.m, row.k), 0u)).sum;
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
    return target_at(slot.row, slot.live, base);
}

// The target of `row` (of this dispatch's labels), whose logits start at `base`.
fn target_at(row: u32, live: bool, base: u32) -> Target {
    var label = 0;
    if live {
        label = label_of(row);
    }
    let ignored = has_flag(FLAG_IGNORE) && label == params.ignore_index;
    let in_range = label >= 0 && u32(label) < params.cols;
    let y = select(0u, u32(label), in_range);
    var xy = 0.0;
    if live && in_range && !ignored {
        xy = load_a(base + y);
    }
    return Target(label, ignored, in_range, y, xy);
}

// The octets a lane reads of columns [start, end) of the row at `base`: eight elements, in
// two quads of four aligned to four elements of a's binding, so that the vector loaders
// (common/load_f32x4.wgsl, common/load_16bitx4.wgsl) read each with whole 16-byte loads.
// The lanes of a row step over it in blocks of 8·LANES elements aligned to eight:
// - f32 (ADJACENT_QUADS, set by its loaders): lane l's octet is the block's quads l and
//   LANES + l, so that each 16-byte load of a subgroup reads one contiguous run, lanes
//   adjacent (octet_gap: its second quad starts 4·LANES elements after its first);
// - 16-bit types: lane l's octet is the block's eight elements from 8·l, one 16-byte load,
//   lanes adjacent already (octet_gap 4: the quads touch).
// With one lane a row both are eight contiguous elements. A lane meets its columns in
// increasing order either way.
// The first and last octets of a row may hold elements of its neighbours; `lo` and `hi`
// bound the row's own (as elements of a's binding) and `col0` is its column 0. Short
// rows (EACH, set by the host under plan::SHORT_COLS columns), where those neighbours
// would be up to half the work, are read an element at a time instead. Every scan has
// both loops; the override leaves one:
//
//   for (var e = oc.first; !EACH && e < oc.hi; e += 8u * LANES) { let x = load_a8(e, oc.lo, oc.hi); ... }
//   for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) { let x = load_a(e - params.a_base); ... }
override EACH: bool = false;

// Octets a lane loads ahead a step (1 or 2; RowLayout::steps). With 2, the main column loops
// take the lane's octets in pairs, both loaded before the math of either, then the last one
// alone; a lane meets its octets in the same order either way, so the bits are the same.
// The paired loops sit between the lines `//#steps2` and `//#end`, which the module of one
// octet a step leaves out (src/kernels/wgsl.rs), so the layouts that do not take them pay
// nothing for them (llvmpipe builds a pipeline from the whole text, dead loops included):
//
//   var e = oc.first;
//   //#steps2
//   for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) { two octets }
//   //#end
//   for (; !EACH && e < oc.hi; e += 8u * LANES) { one octet }

const NO_COL: u32 = 0xffffffffu;

struct Octets {
    col0: u32,
    lo: u32,
    hi: u32,
    first: u32,      // the lane's first octet
}

fn octets(slot: RowSlot, base: u32, start: u32, end: u32) -> Octets {
    let col0 = params.a_base + base;
    let lo = col0 + start;
    return Octets(col0, lo, col0 + end, (lo & ~7u) + select(8u, 4u, ADJACENT_QUADS) * slot.lane);
}

// Elements from the first quad of an octet to its second.
fn octet_gap() -> u32 {
    return select(4u, 4u * LANES, ADJACENT_QUADS);
}

// Where element k of the octet at e lies in a's binding.
fn octet_el(e: u32, k: u32) -> u32 {
    return e + k + select(0u, octet_gap() - 4u, k >= 4u);
}

// One past the octet's last element.
fn octet_end(e: u32) -> u32 {
    return e + octet_gap() + 4u;
}

// Whether element k of the octet at e is the row's.
fn in_octet(oc: Octets, e: u32, k: u32) -> bool {
    let i = octet_el(e, k);
    return i >= oc.lo && i < oc.hi;
}

// Its column index in the row.
fn octet_col(oc: Octets, e: u32, k: u32) -> u32 {
    return octet_el(e, k) - oc.col0;
}

// stats_push of element k of an octet; an element outside the row is pushed as -inf at
// index NO_COL, which changes nothing (no sum, and never the argmax).
fn stats_push_at(st: RowStats, x: f32, oc: Octets, e: u32, k: u32) -> RowStats {
    let mine = in_octet(oc, e, k);
    return stats_push(st, select(neg_inf(), x, mine), select(NO_COL, octet_col(oc, e, k), mine));
}

// An octet into the stats: in the layout's form (TILE below).
fn stats_push8(st: RowStats, x: array<f32, 8>, oc: Octets, e: u32) -> RowStats {
    if TILE {
        return stats_tile8(st, x, oc, e);
    }
    return stats_each8(st, x, oc, e);
}

// An octet into the stats element by element, whatever the layout's form: cross-entropy's
// plain pass, whose loss must keep its bits when the same kernel also forms the entropy or
// the report (their passes are element by element).
fn stats_each8(st: RowStats, x: array<f32, 8>, oc: Octets, e: u32) -> RowStats {
    var r = stats_push_at(st, x[0], oc, e, 0u);
    r = stats_push_at(r, x[1], oc, e, 1u);
    r = stats_push_at(r, x[2], oc, e, 2u);
    r = stats_push_at(r, x[3], oc, e, 3u);
    r = stats_push_at(r, x[4], oc, e, 4u);
    r = stats_push_at(r, x[5], oc, e, 5u);
    r = stats_push_at(r, x[6], oc, e, 6u);
    return stats_push_at(r, x[7], oc, e, 7u);
}

// The tile form of a layout (`+tile`, RowLayout::tile): an octet's max first, then its eight
// exponentials, which wait on that max alone (stats_push's each wait on the element before),
// summed in a fixed tree and added to the running sum, rescaled at most once an octet. The
// same (m, s) and argmax within rounding: other last bits than the element-wise form.
override TILE: bool = false;

// The octet's finite max and the first column of it (NO_COL: none finite), with its other
// elements pushed into the stats as they are (stats_push_at: a special value changes only the
// class and the argmax; an element outside the row, nothing).
struct TileMax {
    st: RowStats,
    m: f32,
    arg: u32,
}

fn tile_max_at(t: TileMax, x: f32, oc: Octets, e: u32, k: u32) -> TileMax {
    var r = t;
    if in_octet(oc, e, k) && classify(x) == CLASS_FINITE {
        if r.arg == NO_COL || x > r.m {
            r.m = x;
            r.arg = octet_col(oc, e, k);
        }
    } else {
        r.st = stats_push_at(r.st, x, oc, e, k);
    }
    return r;
}

// exp(k·(x − m)) of a finite element of the row (x ≤ m), else 0.
fn tile_exp_at(x: f32, m: f32, k: f32, oc: Octets, e: u32, i: u32) -> f32 {
    let term = exp(-min((m - x) * k, 126.0));
    return select(0.0, term, in_octet(oc, e, i) && classify(x) == CLASS_FINITE);
}

fn stats_tile8(st: RowStats, x: array<f32, 8>, oc: Octets, e: u32) -> RowStats {
    var t = TileMax(st, F32_MAX_NEG, NO_COL);
    t = tile_max_at(t, x[0], oc, e, 0u);
    t = tile_max_at(t, x[1], oc, e, 1u);
    t = tile_max_at(t, x[2], oc, e, 2u);
    t = tile_max_at(t, x[3], oc, e, 3u);
    t = tile_max_at(t, x[4], oc, e, 4u);
    t = tile_max_at(t, x[5], oc, e, 5u);
    t = tile_max_at(t, x[6], oc, e, 6u);
    t = tile_max_at(t, x[7], oc, e, 7u);
    var r = t.st;
    if t.arg == NO_COL {
        return r;
    }
    // a rise rescales the sum once (by 1, exactly, where there is none)
    let d = t.m - r.m;
    let up = d > 0.0;
    r.s *= exp(-min(max(d, 0.0) * r.k, 126.0));
    r.m = max(r.m, t.m);
    if r.cls < CLASS_FINITE || (r.cls == CLASS_FINITE && up) {
        r.arg = t.arg;
        r.cls = CLASS_FINITE;
    }
    let k = r.k;
    let lo = (tile_exp_at(x[0], r.m, k, oc, e, 0u) + tile_exp_at(x[1], r.m, k, oc, e, 1u))
        + (tile_exp_at(x[2], r.m, k, oc, e, 2u) + tile_exp_at(x[3], r.m, k, oc, e, 3u));
    let hi = (tile_exp_at(x[4], r.m, k, oc, e, 4u) + tile_exp_at(x[5], r.m, k, oc, e, 5u))
        + (tile_exp_at(x[6], r.m, k, oc, e, 6u) + tile_exp_at(x[7], r.m, k, oc, e, 7u));
    r.s += lo + hi;
    return r;
}

// pair_push of element k of an octet of each input.
fn pair_push_at(acc: PairStats, x: f32, y: f32, oc: Octets, e: u32, k: u32, c_p: f32, c_q: f32, with_q: bool) -> PairStats {
    if !in_octet(oc, e, k) {
        return acc;
    }
    return pair_push(acc, x, y, c_p, c_q, with_q);
}

fn pair_push8(acc: PairStats, x: array<f32, 8>, y: array<f32, 8>, oc: Octets, e: u32, c_p: f32, c_q: f32, with_q: bool) -> PairStats {
    var r = pair_push_at(acc, x[0], y[0], oc, e, 0u, c_p, c_q, with_q);
    r = pair_push_at(r, x[1], y[1], oc, e, 1u, c_p, c_q, with_q);
    r = pair_push_at(r, x[2], y[2], oc, e, 2u, c_p, c_q, with_q);
    r = pair_push_at(r, x[3], y[3], oc, e, 3u, c_p, c_q, with_q);
    r = pair_push_at(r, x[4], y[4], oc, e, 4u, c_p, c_q, with_q);
    r = pair_push_at(r, x[5], y[5], oc, e, 5u, c_p, c_q, with_q);
    r = pair_push_at(r, x[6], y[6], oc, e, 6u, c_p, c_q, with_q);
    return pair_push_at(r, x[7], y[7], oc, e, 7u, c_p, c_q, with_q);
}

// entropy_push of element k of an octet, an element outside the row pushed as -inf (as
// stats_push_at: no branch, so the octet's eight steps stay straight-line code).
fn entropy_push_at(acc: EntropyStats, x: f32, oc: Octets, e: u32, k: u32) -> EntropyStats {
    let mine = in_octet(oc, e, k);
    return entropy_push(acc, select(neg_inf(), x, mine), select(NO_COL, octet_col(oc, e, k), mine));
}

fn entropy_push8(acc: EntropyStats, x: array<f32, 8>, oc: Octets, e: u32) -> EntropyStats {
    var r = entropy_push_at(acc, x[0], oc, e, 0u);
    r = entropy_push_at(r, x[1], oc, e, 1u);
    r = entropy_push_at(r, x[2], oc, e, 2u);
    r = entropy_push_at(r, x[3], oc, e, 3u);
    r = entropy_push_at(r, x[4], oc, e, 4u);
    r = entropy_push_at(r, x[5], oc, e, 5u);
    r = entropy_push_at(r, x[6], oc, e, 6u);
    return entropy_push_at(r, x[7], oc, e, 7u);
}

// stats_scan_a at scale 1 with the entropy sum (EntropyStats).
fn entropy_scan_a(slot: RowSlot, base: u32, start: u32, end: u32) -> EntropyStats {
    var acc = EntropyStats(stats_empty(), 0.0);
    if slot.live {
        let oc = octets(slot, base, start, end);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let x = load_a8(e, oc.lo, oc.hi);
            let x2 = load_a8(e + 8u * LANES, oc.lo, oc.hi);
            acc = entropy_push8(acc, x, oc, e);
            acc = entropy_push8(acc, x2, oc, e + 8u * LANES);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            acc = entropy_push8(acc, load_a8(e, oc.lo, oc.hi), oc, e);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            acc = entropy_push(acc, load_a(e - params.a_base), e - oc.col0);
        }
    }
    return acc;
}

// An octet into the stats in the layout's form where `tiled`, else element by element.
fn stats_octet(st: RowStats, x: array<f32, 8>, oc: Octets, e: u32, tiled: bool) -> RowStats {
    if tiled {
        return stats_push8(st, x, oc, e);
    }
    return stats_each8(st, x, oc, e);
}

// One lane's online (m, s) and argmax over columns [start, end) of input a from `base`,
// at scale k (1/T for a temperature; see RowStats), in the layout's form where `tiled`, else
// element by element.
fn stats_scan_a(slot: RowSlot, base: u32, start: u32, end: u32, k: f32, tiled: bool) -> RowStats {
    var st = stats_at(k);
    if slot.live {
        let oc = octets(slot, base, start, end);
        var e = oc.first;
        //#steps2
        for (; !EACH && e + 8u * LANES < oc.hi; e += 16u * LANES) {
            let x = load_a8(e, oc.lo, oc.hi);
            let x2 = load_a8(e + 8u * LANES, oc.lo, oc.hi);
            st = stats_octet(st, x, oc, e, tiled);
            st = stats_octet(st, x2, oc, e + 8u * LANES, tiled);
        }
        //#end
        for (; !EACH && e < oc.hi; e += 8u * LANES) {
            st = stats_octet(st, load_a8(e, oc.lo, oc.hi), oc, e, tiled);
        }
        for (var e = oc.lo + slot.lane; EACH && e < oc.hi; e += LANES) {
            st = stats_push(st, load_a(e - params.a_base), e - oc.col0);
        }
    }
    return st;
}

// Writes a row's value, scaled to the chosen log base (specials pass through).
fn write_row(slot: RowSlot, v: f32) {
    if slot.live && slot.lane == 0u {
        out_rows[params.out_base + slot.row] = scaled(v);
    }
}

// A value in the unit of the output (`out_scale`: nats or bits); non-finite ones as they are.
fn scaled(v: f32) -> f32 {
    return select(v, v * params.out_scale, classify(v) == CLASS_FINITE);
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

// A part's stats at scale k (as scanned).
fn part_stats(row: u32, part: u32, k: f32) -> RowStats {
    let arg = u32(part_word(row, part, 2u)) | (u32(part_word(row, part, 3u)) << 16u);
    return RowStats(part_word(row, part, 0u), part_word(row, part, 1u), arg, u32(part_word(row, part, 4u)), 0.0, k);
}

// A row's parts (scanned at scale k) merged in order, log s set.
fn merged_parts(row: u32, k: f32) -> RowStats {
    var st = part_stats(row, 0u, k);
    for (var part = 1u; part < params.parts; part++) {
        st = stats_merge(st, part_stats(row, part, k));
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
fn sum_merge(inv: Invocation) {
    let slot = row_slot(inv);
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
    let w_moved = select(0.0, exp(-min((p.m - acc.p.m) * acc.p.k, 126.0)) * acc.w, acc.w != 0.0);
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

// A row's pair parts (scanned at scale k) merged in order: both sides' stats, then every
// part's t moved to the row's maxima and added.
fn merged_pair(row: u32, k: f32, c_p: f32, c_q: f32) -> PairRow {
    var p = stats_at(k);
    var q = stats_at(k);
    for (var part = 0u; part < params.parts; part++) {
        let cls = u32(part_word(row, part, 4u));
        p = stats_merge(p, RowStats(part_word(row, part, 0u), part_word(row, part, 1u), 0u, cls % 4u, 0.0, k));
        q = stats_merge(q, RowStats(part_word(row, part, 2u), part_word(row, part, 3u), 0u, cls / 4u, 0.0, k));
    }
    p.log_s = log(p.s);
    q.log_s = log(q.s);
    var t = SumFlags(0.0, 0u);
    for (var part = 0u; part < params.parts; part++) {
        var acc = pair_at(k);
        acc.p.m = part_word(row, part, 0u);
        acc.q.m = part_word(row, part, 2u);
        acc.t = part_word(row, part, 5u);
        acc.w = part_word(row, part, 6u);
        t.sum += pair_moved(acc, p.m - acc.p.m, q.m - acc.q.m, c_p, c_q);
        t.flags |= u32(part_word(row, part, 7u));
    }
    return PairRow(p, q, t);
}
