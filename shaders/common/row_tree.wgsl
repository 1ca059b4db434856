// A row's lanes combined: one fixed binary tree, however it is run.
//
// The step of offset `off` (LANES / 2, LANES / 4, …, 1) merges lane l < off with lane
// l + off, the lower lane's value first. Without subgroups (slot.sg = 0: GL, a device
// without wgpu's SUBGROUP feature, a workgroup not made of whole subgroups) every step
// goes through workgroup memory, a barrier each, and the row's lanes read lane 0's
// result. With subgroups of width W (row_lanes_subgroups.wgsl) the steps of offsets of
// at least W still go through workgroup memory (they cross subgroups); each lane then
// takes the partial of its lane mod W, and the steps under W are subgroupShuffleXor
// exchanges in which both partners merge (lower, upper): the same merges in the same
// order as the workgroup tree, so the same value in every lane, with no barrier (none
// at all when a row is at most one subgroup). The combination order depends on LANES
// alone, not on W or on which path ran.
//
// Each function holds barriers (or not, uniformly): call it from uniform control flow,
// in every invocation, including those whose row is past the end.

// The smallest offset of the row's tree taken through workgroup memory.
fn memory_floor(slot: RowSlot) -> u32 {
    return max(slot.sg, 1u);
}

// Where a lane reads its partial after the steps through workgroup memory: lane mod W of
// its row (lane 0 without subgroups).
fn memory_head(slot: RowSlot) -> u32 {
    return slot.t - slot.lane + slot.lane % memory_floor(slot);
}

// The first offset of the row's tree taken by shuffles (0: none).
fn shuffle_start(slot: RowSlot) -> u32 {
    return min(LANES, slot.sg) / 2u;
}

fn row_stats(slot: RowSlot, st: RowStats) -> RowStats {
    if LANES == 1u {
        // one invocation per row: nothing to merge, and no barrier (an override constant,
        // so the branch is resolved when the pipeline is built)
        return RowStats(st.m, st.s, st.arg, st.cls, log(st.s), st.k);
    }
    var r = st;
    let low = memory_floor(slot);
    if LANES > low {
        sh_x[slot.t] = st.m;
        sh_y[slot.t] = st.s;
        sh_u[slot.t] = st.arg;
        sh_v[slot.t] = st.cls;
        workgroupBarrier();
        for (var off = LANES / 2u; off >= low; off = off / 2u) {
            if slot.lane < off {
                let t = slot.t;
                let a = RowStats(sh_x[t], sh_y[t], sh_u[t], sh_v[t], 0.0, st.k);
                let b = RowStats(sh_x[t + off], sh_y[t + off], sh_u[t + off], sh_v[t + off], 0.0, st.k);
                let c = stats_merge(a, b);
                sh_x[t] = c.m;
                sh_y[t] = c.s;
                sh_u[t] = c.arg;
                sh_v[t] = c.cls;
            }
            workgroupBarrier();
        }
        let h = memory_head(slot);
        r = RowStats(sh_x[h], sh_y[h], sh_u[h], sh_v[h], 0.0, st.k);
        workgroupBarrier();
    }
    for (var off = shuffle_start(slot); off > 0u; off = off / 2u) {
        let o = RowStats(shuffle_f32(r.m, off), shuffle_f32(r.s, off), shuffle_u32(r.arg, off), shuffle_u32(r.cls, off), 0.0, st.k);
        if (slot.lane & off) == 0u {
            r = stats_merge(r, o);
        } else {
            r = stats_merge(o, r);
        }
    }
    // log s once per row, not once per element of the passes that follow
    r.log_s = log(r.s);
    return r;
}

// A sum and an OR of flag bits over the row's lanes.
fn row_sum(slot: RowSlot, v: SumFlags) -> SumFlags {
    if LANES == 1u {
        return v;
    }
    var r = v;
    let low = memory_floor(slot);
    if LANES > low {
        sh_x[slot.t] = v.sum;
        sh_u[slot.t] = v.flags;
        workgroupBarrier();
        for (var off = LANES / 2u; off >= low; off = off / 2u) {
            if slot.lane < off {
                sh_x[slot.t] = sh_x[slot.t] + sh_x[slot.t + off];
                sh_u[slot.t] = sh_u[slot.t] | sh_u[slot.t + off];
            }
            workgroupBarrier();
        }
        let h = memory_head(slot);
        r = SumFlags(sh_x[h], sh_u[h]);
        workgroupBarrier();
    }
    for (var off = shuffle_start(slot); off > 0u; off = off / 2u) {
        // (a float sum is the same bits either way round)
        r.sum = r.sum + shuffle_f32(r.sum, off);
        r.flags = r.flags | shuffle_u32(r.flags, off);
    }
    return r;
}

// A count over the row's lanes.
fn row_count(slot: RowSlot, n: u32) -> u32 {
    if LANES == 1u {
        return n;
    }
    var r = n;
    let low = memory_floor(slot);
    if LANES > low {
        sh_u[slot.t] = n;
        workgroupBarrier();
        for (var off = LANES / 2u; off >= low; off = off / 2u) {
            if slot.lane < off {
                sh_u[slot.t] = sh_u[slot.t] + sh_u[slot.t + off];
            }
            workgroupBarrier();
        }
        r = sh_u[memory_head(slot)];
        workgroupBarrier();
    }
    for (var off = shuffle_start(slot); off > 0u; off = off / 2u) {
        r = r + shuffle_u32(r, off);
    }
    return r;
}
