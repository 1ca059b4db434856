// Where a row kernel's invocation stands on a device with subgroups (wgpu's SUBGROUP
// feature; the module is composed with this file only there, since these builtins do not
// compile elsewhere, and with row_lanes.wgsl otherwise).
//
// Where the workgroup is whole subgroups of a power-of-two size (the same answer in every
// invocation: the builtins it reads are uniform), an invocation takes the index
// subgroup_id · subgroup_size + subgroup_invocation_id in place of local_invocation_index.
// A row's LANES invocations (a power of two) are then an aligned run of one subgroup, or
// whole subgroups, whatever order the driver formed the subgroups in, and a lane's xor
// partner in its subgroup is its partner in the row's tree. Otherwise the workgroup tree
// alone, as without subgroups.

struct Invocation {
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(num_subgroups) sg_count: u32,
}

// The invocation's index in the row layout, and the width of the subgroups a row's tree
// steps may shuffle in (0: none).
fn lane_index(inv: Invocation) -> vec2<u32> {
    let pow2 = inv.sg_size != 0u && (inv.sg_size & (inv.sg_size - 1u)) == 0u;
    let lanes_pow2 = (LANES & (LANES - 1u)) == 0u;
    if LANES > 1u && lanes_pow2 && pow2 && inv.sg_count * inv.sg_size == WG {
        return vec2<u32>(inv.sg_id * inv.sg_size + inv.sg_lane, inv.sg_size);
    }
    return vec2<u32>(inv.t, 0u);
}

// A value of the invocation whose subgroup index is this one's xor `mask`.
fn shuffle_f32(v: f32, mask: u32) -> f32 {
    return subgroupShuffleXor(v, mask);
}

fn shuffle_u32(v: u32, mask: u32) -> u32 {
    return subgroupShuffleXor(v, mask);
}
