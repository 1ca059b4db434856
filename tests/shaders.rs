//! Without a GPU: naga validates every composed shader, translates each to SPIR-V,
//! MSL, HLSL and GLSL (so Metal, DX12 and GL users are not the first to meet a
//! translation error), and the Rust parameter structs match the WGSL ones.

use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use xent::DType;
use xent::kernels::{Kernel, ReduceParams, RowParams};

const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

fn parse(kernel: Kernel, dtype: DType) -> (naga::Module, ModuleInfo) {
    parse_loads(kernel, dtype, true)
}

fn parse_loads(kernel: Kernel, dtype: DType, vec4: bool) -> (naga::Module, ModuleInfo) {
    let src = kernel.source(dtype, vec4);
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{} {dtype:?}: {}", kernel.entry(), e.emit_to_string(src)));
    // the capabilities every WebGPU device has: no f16 type, no subgroups
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{} {dtype:?}: {}", kernel.entry(), e.emit_to_string(src)));
    (module, info)
}

/// The module with its overrides fixed as the host fixes them, for one entry point. The
/// one-lane layout (short rows) is also read by words and an element at a time, so both
/// loaders and both column loops are translated.
fn specialised(kernel: Kernel, dtype: DType, wg: u32, lanes: u32, grad: (u32, bool)) -> (naga::Module, ModuleInfo) {
    let short = lanes == 1;
    let (module, info) = parse_loads(kernel, dtype, !short);
    let mut constants = PipelineConstants::default();
    if kernel != Kernel::Reduce {
        constants.insert("WG".to_string(), f64::from(wg));
        constants.insert("LANES".to_string(), f64::from(lanes));
        constants.insert("GRAD_OF".to_string(), f64::from(grad.0));
        constants.insert("GRAD_IN_PLACE".to_string(), f64::from(u8::from(grad.1)));
        constants.insert("EACH".to_string(), f64::from(u8::from(short)));
    }
    let stage = Some((naga::ShaderStage::Compute, kernel.entry()));
    let (m, i) = naga::back::pipeline_constants::process_overrides(&module, &info, stage, &constants)
        .unwrap_or_else(|e| panic!("{}: overrides: {e}", kernel.entry()));
    (m.into_owned(), i.into_owned())
}

#[test]
fn every_shader_validates() {
    for kernel in Kernel::ALL {
        for (dtype, vec4) in DTYPES.into_iter().flat_map(|d| [(d, true), (d, false)]) {
            let (module, _) = parse_loads(kernel, dtype, vec4);
            assert!(
                module.entry_points.iter().any(|e| e.name == kernel.entry()),
                "{} has no entry point",
                kernel.entry()
            );
        }
    }
}

#[test]
fn every_shader_translates_to_every_backend_language() {
    for kernel in Kernel::ALL {
        for dtype in DTYPES {
            // every layout without a gradient, and the gradient modes in one layout
            let layouts = [(64, 1), (64, 8), (64, 64), (256, 256)].map(|l| (l, (0, false)));
            let grads = [(1, false), (1, true), (2, false), (2, true)].map(|g| ((64, 8), g));
            for ((wg, lanes), grad) in layouts.into_iter().chain(grads) {
                let (module, info) = specialised(kernel, dtype, wg, lanes, grad);
                let name = format!("{} {dtype:?} wg {wg} lanes {lanes} grad {grad:?}", kernel.entry());
                let spv_pipeline = naga::back::spv::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: kernel.entry().to_string(),
                };
                naga::back::spv::write_vec(&module, &info, &Default::default(), Some(&spv_pipeline))
                    .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
                let entry = Some((naga::ShaderStage::Compute, kernel.entry().to_string()));
                let msl_pipeline =
                    naga::back::msl::PipelineOptions { entry_point: entry.clone(), ..Default::default() };
                naga::back::msl::write_string(&module, &info, &Default::default(), &msl_pipeline)
                    .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));
                let hlsl_options = naga::back::hlsl::Options::default();
                let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: entry };
                let mut hlsl = String::new();
                naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
                    .write(&module, &info, None)
                    .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));
                let glsl_options = naga::back::glsl::Options {
                    version: naga::back::glsl::Version::new_gles(310),
                    ..Default::default()
                };
                let glsl_pipeline = naga::back::glsl::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: kernel.entry().to_string(),
                    multiview: None,
                };
                let mut glsl = String::new();
                naga::back::glsl::Writer::new(
                    &mut glsl,
                    &module,
                    &info,
                    &glsl_options,
                    &glsl_pipeline,
                    naga::proc::BoundsCheckPolicies::default(),
                )
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| panic!("{name}: GLSL: {e}"));
            }
        }
    }
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
    let (module, _) = parse(Kernel::LogSumExp, DType::F32);
    let (fields, size) = wgsl_layout(&module, "RowParams");
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
    ];
    let rust: Vec<(String, u32)> = rust.iter().map(|&(n, o)| (n.to_string(), o as u32)).collect();
    assert_eq!(fields, rust);
}

#[test]
fn reduce_params_match_the_wgsl_struct() {
    let (module, _) = parse(Kernel::Reduce, DType::F32);
    let (fields, size) = wgsl_layout(&module, "ReduceParams");
    assert_eq!(size as usize, size_of::<ReduceParams>());
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["n", "stride", "component", "in_base", "out_base", "partials", "_pad0", "_pad1"]);
    let offsets: Vec<u32> = fields.iter().map(|f| f.1).collect();
    assert_eq!(offsets, [0, 4, 8, 12, 16, 20, 24, 28]);
    assert_eq!(std::mem::offset_of!(ReduceParams, partials), 20);
}

#[test]
fn flag_bits_match_the_wgsl_constants() {
    let (module, _) = parse(Kernel::Divergence, DType::F32);
    let value = |name: &str| -> u32 {
        let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some(name)).expect(name);
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref e => panic!("{name}: {e:?}"),
        }
    };
    use xent::kernels::flags::*;
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
    ] {
        assert_eq!(value(name), bit, "{name}");
    }
}
