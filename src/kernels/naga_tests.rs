//! Without a GPU (unit tests of the kernel table): naga validates every composed shader, translates each to SPIR-V,
//! MSL, HLSL and GLSL (so Metal, DX12 and GL users are not the first to meet a
//! translation error), and the Rust parameter structs match the WGSL ones.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use super::{Access, Binding, Kernel, MatmulParams, Module, ReduceParams, RowParams, Stage};
use crate::loss::DType;
use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

/// Every (dtype, load width) a module is composed for.
fn variants() -> impl Iterator<Item = (DType, bool)> {
    DTYPES.into_iter().flat_map(|d| [(d, true), (d, false)])
}

/// Every module of the kernel table, with and without subgroups, of one and two octets a
/// step, parsed and validated once.
fn modules() -> &'static HashMap<Module, (naga::Module, ModuleInfo)> {
    static MODULES: OnceLock<HashMap<Module, (naga::Module, ModuleInfo)>> = OnceLock::new();
    MODULES.get_or_init(|| {
        let keys: HashSet<Module> = Kernel::ALL
            .iter()
            .flat_map(|k| variants().flat_map(move |(d, v)| [false, true].map(|sg| k.module(d, v, sg))))
            .flat_map(|m| [m, m.stepping(2)])
            .collect();
        keys.into_iter().map(|key| (key, parse(key))).collect()
    })
}

fn parse(key: Module) -> (naga::Module, ModuleInfo) {
    let src = key.source();
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{key:?}: {}", e.emit_to_string(&src)));
    // the capabilities every WebGPU device has (no f16 type, no subgroups), and subgroup
    // operations for the modules of devices with wgpu's SUBGROUP feature
    let caps = if key.subgroups { Capabilities::SUBGROUP } else { Capabilities::empty() };
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{key:?}: {}", e.emit_to_string(&src)));
    (module, info)
}

fn parse_loads(kernel: Kernel, dtype: DType, vec4: bool) -> &'static (naga::Module, ModuleInfo) {
    parse_module(kernel, dtype, vec4, false)
}

fn parse_module(kernel: Kernel, dtype: DType, vec4: bool, subgroups: bool) -> &'static (naga::Module, ModuleInfo) {
    &modules()[&kernel.module(dtype, vec4, subgroups)]
}

/// The module with its overrides fixed as the host fixes them, for one entry point. The
/// one-lane layout (short rows) is also read by words and an element at a time, so both
/// loaders and both column loops are translated.
fn specialised(
    kernel: Kernel,
    dtype: DType,
    wg: u32,
    lanes: u32,
    grad: (u32, bool),
    subgroups: bool,
) -> (naga::Module, ModuleInfo) {
    let short = lanes == 1;
    // two octets a step in the layouts of 8 lanes and more
    let steps = if lanes >= 8 { 2 } else { 1 };
    let (module, info) = &modules()[&kernel.module(dtype, !short, subgroups).stepping(steps)];
    let mut constants = PipelineConstants::default();
    if !matches!(kernel.info().stage, Stage::Reduce | Stage::Matmul) {
        constants.insert("WG".to_string(), f64::from(wg));
        constants.insert("LANES".to_string(), f64::from(lanes));
        constants.insert("GRAD_OF".to_string(), f64::from(grad.0));
        constants.insert("GRAD_IN_PLACE".to_string(), f64::from(u8::from(grad.1)));
        constants.insert("EACH".to_string(), f64::from(u8::from(short)));
        // the entropy's code in the one-lane and the 8-lane layouts (and the gradients')
        constants.insert("ENTROPY".to_string(), f64::from(u8::from(lanes == 1 || lanes == 8)));
        // and the report's in the one-lane and the 64-lane layouts
        constants.insert("REPORT".to_string(), f64::from(u8::from(lanes == 1 || lanes == 64)));
        // and the tile form's in the layouts of more than one lane
        constants.insert("TILE".to_string(), f64::from(u8::from(lanes > 1)));
    }
    let stage = Some((naga::ShaderStage::Compute, kernel.entry()));
    let (m, i) = naga::back::pipeline_constants::process_overrides(module, info, stage, &constants)
        .unwrap_or_else(|e| panic!("{}: overrides: {e}", kernel.entry()));
    (m.into_owned(), i.into_owned())
}

/// The subgroup modules shuffle (naga's validation of the others, without the SUBGROUP
/// capability, is what proves they hold no subgroup operation: wgpu would refuse them on
/// GL), and the reduction's and the matrix product's modules are the same either way.
#[test]
fn subgroup_operations_only_in_the_subgroup_modules() {
    for (key, (module, _)) in modules() {
        let gathers = module
            .functions
            .iter()
            .any(|(_, f)| f.body.iter().any(|s| matches!(s, naga::Statement::SubgroupGather { .. })));
        assert_eq!(gathers, key.subgroups, "{key:?}");
    }
    for kernel in Kernel::ALL {
        let with = kernel.module(DType::F32, true, true);
        let row_kernel = !matches!(kernel.info().stage, Stage::Reduce | Stage::Matmul);
        assert_eq!(with.subgroups, row_kernel, "{}", kernel.entry());
    }
}

#[test]
fn every_shader_validates() {
    for kernel in Kernel::ALL {
        for (dtype, vec4) in variants() {
            let (module, _) = parse_loads(kernel, dtype, vec4);
            assert!(
                module.entry_points.iter().any(|e| e.name == kernel.entry()),
                "{} has no entry point",
                kernel.entry()
            );
        }
    }
}

/// The bindings of group 0 that the entry point `index` of `module` uses, as the WGSL
/// declares them.
fn used_bindings(module: &naga::Module, info: &ModuleInfo, index: usize) -> BTreeSet<(u32, Access)> {
    let uses = info.get_entry_point(index);
    let mut used = BTreeSet::new();
    for (handle, global) in module.global_variables.iter() {
        let Some(binding) = &global.binding else { continue };
        if uses[handle].is_empty() {
            continue;
        }
        let name = global.name.as_deref().unwrap_or("?");
        assert_eq!(binding.group, 0, "{name}");
        let access = match global.space {
            naga::AddressSpace::Uniform => Access::Uniform,
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => Access::ReadWrite,
            naga::AddressSpace::Storage { .. } => Access::Read,
            ref space => panic!("{name}: {space:?}"),
        };
        used.insert((binding.binding, access));
    }
    used
}

/// The names of the functions `block` calls, directly or through the functions it calls.
fn called(module: &naga::Module, block: &naga::Block, seen: &mut HashSet<naga::Handle<naga::Function>>) {
    for statement in block.iter() {
        match statement {
            naga::Statement::Block(b) => called(module, b, seen),
            naga::Statement::If { accept, reject, .. } => {
                called(module, accept, seen);
                called(module, reject, seen);
            }
            naga::Statement::Switch { cases, .. } => cases.iter().for_each(|c| called(module, &c.body, seen)),
            naga::Statement::Loop { body, continuing, .. } => {
                called(module, body, seen);
                called(module, continuing, seen);
            }
            naga::Statement::Call { function, .. } if seen.insert(*function) => {
                called(module, &module.functions[*function].body, seen);
            }
            _ => {}
        }
    }
}

fn calls_any(module: &naga::Module, entry: &naga::EntryPoint, names: &[&str]) -> bool {
    let mut seen = HashSet::new();
    called(module, &entry.function.body, &mut seen);
    seen.iter().any(|&f| module.functions[f].name.as_deref().is_some_and(|n| names.contains(&n)))
}

/// Each row of the kernel table against its WGSL, in every module it is compiled from (with
/// and without subgroups): the entry point exists, the bindings it uses are those the row
/// declares (index and access; the layout wgpu checks a pipeline against), and it writes
/// rows of values, and a gradient, exactly when the row says so.
#[test]
fn every_kernel_table_row_matches_its_wgsl() {
    for kernel in Kernel::ALL {
        let row = kernel.info();
        let declared: Vec<(u32, Access)> = row.bindings.iter().map(|b: &Binding| (b.index, b.access)).collect();
        assert!(declared.windows(2).all(|w| w[0].0 < w[1].0), "{}: bindings out of index order", row.entry);
        let declared: BTreeSet<_> = declared.into_iter().collect();
        let (mut used, mut grad, mut writes_rows) = (BTreeSet::new(), false, false);
        for ((dtype, vec4), sg) in variants().flat_map(|v| [(v, false), (v, true)]) {
            let (module, info) = parse_module(kernel, dtype, vec4, sg);
            let (index, entry) = module
                .entry_points
                .iter()
                .enumerate()
                .find(|(_, e)| e.name == row.entry)
                .unwrap_or_else(|| panic!("{}: no entry point in {:?}", row.entry, kernel.module(dtype, vec4, sg)));
            let here = used_bindings(module, info, index);
            assert!(
                here.is_subset(&declared),
                "{} {dtype:?} vec4 {vec4}: uses {here:?}, row has {declared:?}",
                row.entry
            );
            used.extend(here);
            grad |= calls_any(module, entry, &["store_grad"]);
            writes_rows |= calls_any(module, entry, &["store_out", "store_out8"]);
        }
        assert_eq!(used, declared, "{}: the bindings its modules use, and the row's", row.entry);
        // split-row passes run without a gradient (the host refuses GRAD_OF for them), so
        // one that shares the gradient's code with its row kernel is not held to this
        if row.grad || row.stage != Stage::Part {
            assert_eq!(grad, row.grad, "{}: writes a gradient", row.entry);
        }
        assert_eq!(writes_rows, row.writes_rows, "{}: writes rows of values", row.entry);
    }
}

/// Each split plan of the table starts with a part pass and ends with a merge or a write,
/// and every split-row kernel is in a plan.
#[test]
fn split_plans_start_with_a_part_and_end_with_a_merge_or_write() {
    let mut planned: HashSet<Kernel> = HashSet::new();
    for kernel in Kernel::ALL {
        let row = kernel.info();
        // every flag bit: the conditional plans (divergence of logits) are taken too
        let Some(plan) = row.split.plan(u32::MAX) else { continue };
        planned.extend(plan.iter().copied());
        assert_eq!(row.stage, Stage::Row, "{}", row.entry);
        let stages: Vec<Stage> = plan.iter().map(|k| k.info().stage).collect();
        assert_eq!(stages.first(), Some(&Stage::Part), "{}: {stages:?}", row.entry);
        assert!(matches!(stages.last(), Some(Stage::Merge | Stage::Write)), "{}: {stages:?}", row.entry);
        assert!(plan.iter().all(|k| k.info().split.plan(u32::MAX).is_none()), "{}", row.entry);
    }
    for kernel in Kernel::ALL {
        let split_row = matches!(kernel.info().stage, Stage::Part | Stage::Merge | Stage::Write);
        assert_eq!(split_row, planned.contains(&kernel), "{}", kernel.entry());
    }
}

#[test]
fn every_shader_translates_to_every_backend_language() {
    // (the matrix product has overrides of its own: matmul_translates_for_every_tiling_and_type)
    for kernel in Kernel::ALL.into_iter().filter(|k| k.info().stage != Stage::Matmul) {
        for dtype in DTYPES {
            // every layout without a gradient, and the gradient modes in one layout
            let layouts = [(64, 1), (64, 8), (64, 64), (256, 256)].map(|l| (l, (0, false)));
            let grads = [(1, false), (1, true), (2, false), (2, true)].map(|g| ((64, 8), g));
            for ((wg, lanes), grad) in layouts.into_iter().chain(grads) {
                for subgroups in [false, true] {
                    let (module, info) = specialised(kernel, dtype, wg, lanes, grad, subgroups);
                    let name = format!(
                        "{} {dtype:?} wg {wg} lanes {lanes} grad {grad:?} subgroups {subgroups}",
                        kernel.entry()
                    );
                    translate(&module, &info, kernel.entry(), &name, subgroups);
                }
            }
        }
    }
}

/// SPIR-V, MSL, HLSL and GLSL of one specialised module. With subgroups, MSL 2.1 and
/// shader model 6.0 (the first with simd and wave operations), and no GLSL: wgpu's GL
/// backend never offers the SUBGROUP feature.
fn translate(module: &naga::Module, info: &ModuleInfo, entry: &str, name: &str, subgroups: bool) {
    let spv_pipeline =
        naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.to_string() };
    naga::back::spv::write_vec(module, info, &Default::default(), Some(&spv_pipeline))
        .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
    let stage_entry = Some((naga::ShaderStage::Compute, entry.to_string()));
    let msl_pipeline = naga::back::msl::PipelineOptions { entry_point: stage_entry.clone(), ..Default::default() };
    let mut msl_options = naga::back::msl::Options::default();
    let mut hlsl_options = naga::back::hlsl::Options::default();
    if subgroups {
        msl_options.lang_version = (2, 1);
        hlsl_options.shader_model = naga::back::hlsl::ShaderModel::V6_0;
    }
    naga::back::msl::write_string(module, info, &msl_options, &msl_pipeline)
        .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: stage_entry };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
        .write(module, info, None)
        .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
    if subgroups {
        return;
    }
    let glsl_options =
        naga::back::glsl::Options { version: naga::back::glsl::Version::new_gles(310), ..Default::default() };
    let glsl_pipeline = naga::back::glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let mut glsl = String::new();
    naga::back::glsl::Writer::new(
        &mut glsl,
        module,
        info,
        &glsl_options,
        &glsl_pipeline,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .unwrap_or_else(|e| panic!("{name}: GLSL: {e}"));
}

/// The matrix product with its overrides fixed as the host fixes them, for the tilings the
/// host picks (and a one-invocation one) and every pair of operand types, in every backend
/// language; its workgroup memory within the 16 KiB every device has.
#[test]
fn matmul_translates_for_every_tiling_and_type() {
    use crate::plan::Tile;
    let (module, info) = &modules()[&Kernel::Matmul.module(DType::F32, false, false)];
    let tiles = [
        crate::plan::matmul_tile(256, 4096, 4096),
        crate::plan::matmul_tile(64, 4096, 4096),
        crate::plan::matmul_tile(16, 4096, 4096),
        crate::plan::matmul_tile(256, 1, 4096),
        crate::plan::matmul_tile(256, 4096, 1),
        Tile::new(8, 8, 16),
    ];
    let code = |d: DType| match d {
        DType::F32 => 0.0,
        DType::F16 => 1.0,
        DType::Bf16 => 2.0,
    };
    for tile in tiles {
        assert!(tile.fits(256), "{tile:?}");
        for (a, b) in DTYPES.into_iter().flat_map(|a| DTYPES.map(|b| (a, b))) {
            let (wx, wy) = tile.workgroup();
            let mut constants = PipelineConstants::default();
            for (name, value) in [
                ("A_DTYPE", code(a)),
                ("B_DTYPE", code(b)),
                ("TM", f64::from(tile.tm)),
                ("TN", f64::from(tile.tn)),
                ("TK", f64::from(tile.tk)),
                ("WX", f64::from(wx)),
                ("WY", f64::from(wy)),
            ] {
                constants.insert(name.to_string(), value);
            }
            let stage = Some((naga::ShaderStage::Compute, "matmul"));
            let (m, i) = naga::back::pipeline_constants::process_overrides(module, info, stage, &constants)
                .unwrap_or_else(|e| panic!("matmul {tile:?}: overrides: {e}"));
            let entry = m.entry_points.iter().find(|e| e.name == "matmul").expect("matmul");
            assert_eq!(entry.workgroup_size, [wx, wy, 1], "{tile:?}");
            translate(&m, &i, "matmul", &format!("matmul {tile:?} {a:?}x{b:?}"), false);
        }
    }
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    let shared: u32 = module
        .global_variables
        .iter()
        .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
        .map(|(_, g)| layouter[g.ty].size)
        .sum();
    assert!(shared <= 16384, "{shared} bytes of workgroup memory");
}

/// The constants the host and the shader share: the staged tile's size and the init codes.
#[test]
fn matmul_constants_match_the_wgsl() {
    let (module, _) = &modules()[&Kernel::Matmul.module(DType::F32, false, false)];
    let value = |name: &str| -> u32 {
        let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).expect(name);
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref e => panic!("{name}: {e:?}"),
        }
    };
    use super::matmul_init::{ACCUMULATE, BIAS, ZERO};
    assert_eq!(value("MAX_STAGED"), crate::plan::MATMUL_STAGED);
    assert_eq!([value("INIT_ZERO"), value("INIT_ACCUMULATE"), value("INIT_BIAS")], [ZERO, ACCUMULATE, BIAS]);
}

/// Byte offsets and size of the WGSL struct `name`, as naga lays it out.
fn wgsl_layout(module: &naga::Module, name: &str) -> (Vec<(String, u32)>, u32) {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).expect("layout");
    for (handle, ty) in module.types.iter() {
        if ty.name.as_deref() == Some(name)
            && let naga::TypeInner::Struct { members, span } = &ty.inner
        {
            let fields = members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset)).collect();
            assert_eq!(layouter[handle].size, *span);
            return (fields, *span);
        }
    }
    panic!("no struct {name}");
}

#[test]
fn row_params_match_the_wgsl_struct() {
    let (module, _) = parse_loads(Kernel::LogSumExp, DType::F32, true);
    let (fields, size) = wgsl_layout(module, "RowParams");
    assert_eq!(size as usize, size_of::<RowParams>());
    let rust = [
        ("rows", std::mem::offset_of!(RowParams, rows)),
        ("cols", std::mem::offset_of!(RowParams, cols)),
        ("row_offset", std::mem::offset_of!(RowParams, row_offset)),
        ("flags", std::mem::offset_of!(RowParams, flags)),
        ("a_base", std::mem::offset_of!(RowParams, a_base)),
        ("b_base", std::mem::offset_of!(RowParams, b_base)),
        ("label_base", std::mem::offset_of!(RowParams, label_base)),
        ("out_base", std::mem::offset_of!(RowParams, out_base)),
        ("aux_base", std::mem::offset_of!(RowParams, aux_base)),
        ("ignore_index", std::mem::offset_of!(RowParams, ignore_index)),
        ("inv_temperature", std::mem::offset_of!(RowParams, inv_temperature)),
        ("temperature", std::mem::offset_of!(RowParams, temperature)),
        ("smoothing", std::mem::offset_of!(RowParams, smoothing)),
        ("alpha", std::mem::offset_of!(RowParams, alpha)),
        ("out_scale", std::mem::offset_of!(RowParams, out_scale)),
        ("grad_base", std::mem::offset_of!(RowParams, grad_base)),
        ("grad_scale", std::mem::offset_of!(RowParams, grad_scale)),
        ("grad_denominator", std::mem::offset_of!(RowParams, grad_denominator)),
        ("parts", std::mem::offset_of!(RowParams, parts)),
        ("part_cols", std::mem::offset_of!(RowParams, part_cols)),
        ("z_loss", std::mem::offset_of!(RowParams, z_loss)),
        ("softcap", std::mem::offset_of!(RowParams, softcap)),
        ("pad1", std::mem::offset_of!(RowParams, pad1)),
        ("pad2", std::mem::offset_of!(RowParams, pad2)),
    ];
    let rust: Vec<(String, u32)> = rust.iter().map(|&(n, o)| (n.to_string(), o as u32)).collect();
    assert_eq!(fields, rust);
}

#[test]
fn matmul_params_match_the_wgsl_struct() {
    let (module, _) = &modules()[&Kernel::Matmul.module(DType::F32, false, false)];
    let (fields, size) = wgsl_layout(module, "MatmulParams");
    assert_eq!(size as usize, size_of::<MatmulParams>());
    let rust = [
        ("m", std::mem::offset_of!(MatmulParams, m)),
        ("n", std::mem::offset_of!(MatmulParams, n)),
        ("k", std::mem::offset_of!(MatmulParams, k)),
        ("init", std::mem::offset_of!(MatmulParams, init)),
        ("a_base", std::mem::offset_of!(MatmulParams, a_base)),
        ("a_sm", std::mem::offset_of!(MatmulParams, a_sm)),
        ("a_sk", std::mem::offset_of!(MatmulParams, a_sk)),
        ("b_base", std::mem::offset_of!(MatmulParams, b_base)),
        ("b_sk", std::mem::offset_of!(MatmulParams, b_sk)),
        ("b_sn", std::mem::offset_of!(MatmulParams, b_sn)),
        ("c_base", std::mem::offset_of!(MatmulParams, c_base)),
        ("ldc", std::mem::offset_of!(MatmulParams, ldc)),
        ("bias_base", std::mem::offset_of!(MatmulParams, bias_base)),
        ("scale", std::mem::offset_of!(MatmulParams, scale)),
        ("pad1", std::mem::offset_of!(MatmulParams, pad1)),
        ("pad2", std::mem::offset_of!(MatmulParams, pad2)),
    ];
    let rust: Vec<(String, u32)> = rust.iter().map(|&(n, o)| (n.to_string(), o as u32)).collect();
    assert_eq!(fields, rust);
}

#[test]
fn reduce_params_match_the_wgsl_struct() {
    let (module, _) = parse_loads(Kernel::Reduce, DType::F32, true);
    let (fields, size) = wgsl_layout(module, "ReduceParams");
    assert_eq!(size as usize, size_of::<ReduceParams>());
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["n", "stride", "component", "in_base", "out_base", "partials", "skip_marked", "mark"]);
    let offsets: Vec<u32> = fields.iter().map(|f| f.1).collect();
    assert_eq!(offsets, [0, 4, 8, 12, 16, 20, 24, 28]);
    assert_eq!(std::mem::offset_of!(ReduceParams, partials), 20);
    assert_eq!(std::mem::offset_of!(ReduceParams, mark), 28);
    // the mark the reduction skips is the one the row kernels write
    let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some("MARK_SKIP")).expect("MARK_SKIP");
    let skip = matches!(module.global_expressions[c.init], naga::Expression::Literal(naga::Literal::U32(v)) if v == super::AUX_IGNORED);
    assert!(skip, "MARK_SKIP is AUX_IGNORED");
}

#[test]
fn flag_bits_match_the_wgsl_constants() {
    let (module, _) = parse_loads(Kernel::Divergence, DType::F32, true);
    let value = |name: &str| -> u32 {
        let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).expect(name);
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref e => panic!("{name}: {e:?}"),
        }
    };
    use super::flags::*;
    for (name, bit) in [
        ("FLAG_IGNORE", IGNORE),
        ("FLAG_WEIGHTS", WEIGHTS),
        ("FLAG_P_LOGITS", P_LOGITS),
        ("FLAG_Q_LOGITS", Q_LOGITS),
        ("FLAG_LOG", LOG),
        ("FLAG_TERM_PLOGP", TERM_PLOGP),
        ("FLAG_TERM_PLOGQ", TERM_PLOGQ),
        ("FLAG_NEGATE", NEGATE),
        ("FLAG_HAS_B", HAS_B),
        ("FLAG_LABELS_I64", LABELS_I64),
        ("FLAG_LABELS_U8", LABELS_U8),
        ("AUX_WORDS", super::AUX_WORDS),
        ("AUX_IGNORED", super::AUX_IGNORED),
    ] {
        assert_eq!(value(name), bit, "{name}");
    }
}

/// The module of one octet a step leaves out the paired column loops and nothing else:
/// every `//#steps2` is closed by an `//#end` before the next, the module of two keeps
/// every line, and only it steps over two octets.
#[test]
fn one_octet_a_step_leaves_out_the_paired_loops() {
    for kernel in Kernel::ALL {
        let one = kernel.module(DType::F16, true, false);
        let (text, two) = (one.pieces().concat(), one.stepping(2).source());
        assert_eq!(two, text, "{}", kernel.entry());
        let mut open = false;
        for line in text.lines().map(str::trim) {
            if line == "//#steps2" || line == "//#end" {
                assert_eq!(open, line == "//#end", "{}: {line} out of place", kernel.entry());
                open = !open;
            }
        }
        assert!(!open, "{}: //#steps2 not closed", kernel.entry());
        let pairs = |s: &str| s.lines().filter(|l| !l.trim().starts_with("//") && l.contains("16u * LANES")).count();
        assert_eq!(pairs(&one.source()), 0, "{}", kernel.entry());
        let row_kernel = !matches!(kernel.info().stage, Stage::Reduce | Stage::Matmul);
        assert_eq!(pairs(&two) > 0, row_kernel, "{}", kernel.entry());
    }
}
