// Where a row kernel's invocation stands, on a device without subgroups (and on every
// device without wgpu's SUBGROUP feature): its local_invocation_index alone, and a row's
// lanes combined through workgroup memory (row_reduce.wgsl). The module of a device with
// them composes row_lanes_subgroups.wgsl in this file's place.

// What every row kernel's entry point is called with (see row_reduce.wgsl).
struct Invocation {
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
}

// The invocation's index in the row layout, and the width of the subgroups a row's tree
// steps may shuffle in: none here.
fn lane_index(inv: Invocation) -> vec2<u32> {
    return vec2<u32>(inv.t, 0u);
}

// Never called (the width is 0): the names row_reduce.wgsl's subgroup steps compile against.
fn shuffle_f32(v: f32, mask: u32) -> f32 {
    return v;
}

fn shuffle_u32(v: u32, mask: u32) -> u32 {
    return v;
}
