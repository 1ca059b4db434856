//! Subgroup reductions: where the adapter has `wgpu::Features::SUBGROUP` the row kernels
//! combine a row's lanes by shuffles (shaders/common/row_tree.wgsl); they must be used there
//! (lavapipe has them), give the same bits run after run, and agree with the
//! workgroup-memory tree of a device opened without the feature on the same adapter.

use super::{Data, OnDevice, USAGE, cases, read, zeroed};
use crate::common::{assert_close, context, rng};
use xent::{DType, DeviceGrad, DeviceOutput, Recorder};

/// Runs shaders/common/row_lanes_subgroups.wgsl's `lane_index` in workgroups of `wg` with
/// `lanes` per row: each invocation's (index in the row layout, subgroup width).
fn lane_indices(device: &wgpu::Device, queue: &wgpu::Queue, wg: u32, lanes: u32, groups: u32) -> Vec<[u32; 2]> {
    const PROBE: &str = concat!(
        include_str!("../../shaders/common/row_lanes_subgroups.wgsl"),
        "
override WG: u32 = 64u;
override LANES: u32 = 64u;
@group(0) @binding(0) var<storage, read_write> out: array<vec2<u32>>;
@compute @workgroup_size(WG)
fn probe(inv: Invocation) {
    out[inv.wid.x * WG + inv.t] = lane_index(inv);
}
"
    );
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("lane probe"),
        source: wgpu::ShaderSource::Wgsl(PROBE.into()),
    });
    let constants = [("WG", f64::from(wg)), ("LANES", f64::from(lanes))];
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("lane probe"),
        layout: None,
        module: &module,
        entry_point: Some("probe"),
        compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
        cache: None,
    });
    let bytes = 8 * u64::from(wg * groups);
    let out = zeroed(device, bytes, USAGE);
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: out.as_entire_binding() }],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
    queue.submit([encoder.finish()]);
    bytemuck::pod_collect_to_vec::<u8, u32>(&read(device, queue, &out, 0, bytes))
        .chunks(2)
        .map(|p| [p[0], p[1]])
        .collect()
}

/// Where the adapter has subgroups the context's device has them, its recorder's kernels
/// are the subgroup modules, and on the adapter itself every workgroup of the row layouts
/// is whole subgroups, so the kernels' shuffle steps are taken (not the fallback to the
/// workgroup tree alone): each invocation gets the adapter's subgroup width and the
/// indices of a workgroup are a permutation. lavapipe must have them (subgroups of 8).
#[test]
fn subgroup_reductions_are_used_where_the_adapter_has_them() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    let info = ctx.adapter().get_info();
    let has = ctx.adapter().features().contains(wgpu::Features::SUBGROUP);
    if info.backend == wgpu::Backend::Vulkan && info.name.contains("llvmpipe") {
        assert!(has, "lavapipe offers SUBGROUP");
        assert_eq!((info.subgroup_min_size, info.subgroup_max_size), (8, 8), "lavapipe's subgroups");
    }
    assert_eq!(device.features().contains(wgpu::Features::SUBGROUP), has, "the context requests SUBGROUP");
    assert_eq!(Recorder::new(device).subgroup_reductions(), has);
    assert_eq!(ctx.recorder().subgroup_reductions(), has);
    if !has {
        eprintln!("{}: no subgroups, the workgroup tree alone", ctx.adapter_label());
        return;
    }
    let fixed = (info.subgroup_min_size == info.subgroup_max_size).then_some(info.subgroup_min_size);
    for (wg, lanes) in [(64, 2), (64, 8), (64, 64), (256, 256)] {
        let got = lane_indices(device, queue, wg, lanes, 3);
        for (g, group) in got.chunks(wg as usize).enumerate() {
            let width = group[0][1];
            assert!(width > 1 && width.is_power_of_two(), "wg {wg} lanes {lanes}: subgroup width {width}");
            assert!(fixed.is_none_or(|w| w == width), "wg {wg}: width {width}, the adapter's {fixed:?}");
            assert!(group.iter().all(|p| p[1] == width), "wg {wg} group {g}: widths differ");
            let mut index: Vec<u32> = group.iter().map(|p| p[0]).collect();
            index.sort_unstable();
            assert!(index.iter().copied().eq(0..wg), "wg {wg} group {g}: indices are no permutation");
        }
    }
}

/// The values and mean gradient of `d` recorded by `recorder` on `device`.
fn values_and_grad(device: &wgpu::Device, queue: &wgpu::Queue, recorder: &Recorder, d: &Data) -> (Vec<u8>, Vec<u8>) {
    let bufs = OnDevice::new(device, d, DType::F32, 0);
    let (rows, n) = (d.rows as u64, (d.rows * d.cols) as u64);
    let per_row = zeroed(device, 4 * rows, USAGE);
    let grad = zeroed(device, 4 * n, USAGE);
    let out = DeviceOutput::rows(&per_row).with_grad(DeviceGrad::of_mean_into(&grad, 0));
    let mut encoder = device.create_command_encoder(&Default::default());
    recorder.record(&mut encoder, &bufs.loss(d), &out).expect("record");
    queue.submit([encoder.finish()]);
    (read(device, queue, &per_row, 0, 4 * rows), read(device, queue, &grad, 0, 4 * n))
}

/// Every operation with a gradient, on rows of 4, 8 and 64 lanes under the GPU layouts
/// (`XENT_ROW_LAYOUT=gpu`: within one subgroup of lavapipe's 8, one whole subgroup, and
/// eight subgroups through workgroup memory first) and of several lanes under the CPU
/// layout (40,000 columns): the subgroup path gives the same bits on a second run, and the
/// values of a device opened on the same adapter without SUBGROUP (the workgroup tree
/// alone, the same combination order) within f32 rounding. (On lavapipe every record is
/// the same bits both ways.)
#[test]
fn subgroup_path_repeats_bit_for_bit_and_agrees_with_the_workgroup_tree() {
    let Some(ctx) = context() else { return };
    let (device, queue) = (ctx.device(), ctx.queue());
    if !device.features().contains(wgpu::Features::SUBGROUP) {
        eprintln!("{}: no subgroups, nothing to compare", ctx.adapter_label());
        return;
    }
    let adapter = ctx.adapter();
    let (plain, plain_queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("without subgroups"),
        required_features: wgpu::Features::empty(),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("a second device");
    let tree = Recorder::new(&plain);
    assert!(!tree.subgroup_reductions(), "a device without SUBGROUP takes the workgroup tree");
    let recorder = Recorder::new(device);
    let mut rng = rng(131);
    let (mut same_bits, mut total) = (0, 0);
    for case in cases() {
        for &(rows, cols) in &[(9, 20), (9, 60), (3, 4099), (2, 40_000)] {
            let d = Data::new(case, rows, cols, &mut rng);
            let what = format!("{case:?} [{rows}, {cols}]");
            let a = values_and_grad(device, queue, &recorder, &d);
            assert_eq!(a, values_and_grad(device, queue, &recorder, &d), "{what}: a second run");
            let b = values_and_grad(&plain, &plain_queue, &tree, &d);
            let f = |v: &[u8]| bytemuck::pod_collect_to_vec::<u8, f32>(v);
            let wide = |v: &[u8]| f(v).iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
            assert_close(&format!("{what}: values"), &f(&a.0), &wide(&b.0), 1e-6, 1e-6);
            assert_close(&format!("{what}: gradient"), &f(&a.1), &wide(&b.1), 1e-9, 1e-6);
            same_bits += usize::from(a == b);
            total += 1;
        }
    }
    eprintln!("{same_bits} of {total} records: the same bits with and without subgroups");
}
