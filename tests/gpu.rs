//! Every operation on the GPU against the f64 reference: the matrix of tests/matrix, and
//! what only a GPU adapter has (binding limits, dispatch grids).

mod common;
mod matrix;

use std::sync::OnceLock;

use common::{assert_close, assert_scalar, rng};
use matrix::Input;
use xent::{Backend, DType, LogBase, Loss, Op, RunOptions};

/// The GPU under test (a software adapter included), or `None` (the test prints that it
/// skipped) when no adapter exists and `XENT_REQUIRE_GPU` is unset. With
/// `XENT_REQUIRE_GPU=1` a missing adapter fails the test.
fn context() -> Option<&'static Backend> {
    static GPU: OnceLock<Option<Backend>> = OnceLock::new();
    GPU.get_or_init(|| common::opened(Backend::gpu(), Backend::label)).as_ref()
}

/// Cross-entropy against labels with its default options.
const CE: Op = Op::CrossEntropy { ignore_index: None, label_smoothing: 0.0, z_loss: 0.0, entropy: false };

/// Shader modules built with naga's runtime checks (bounds clamps, loop counters, division
/// guards) and without them, as by default, give the same bits on every operation: the
/// shared context (its pipelines built for the other tests) against one built the other
/// way. It builds every pipeline once more, so `.ci/run` runs it where the shared context
/// has the checks on (`XENT_SHADER_CHECKS=1`, on Vulkan and on GL), not in every pass:
/// `cargo test --test gpu -- --ignored`.
#[test]
#[ignore = "builds every pipeline again: .ci/run runs it in the passes with the checks on"]
fn shaders_with_and_without_runtime_checks_give_the_same_bits() {
    let Some(Backend::Gpu(shared)) = context() else { return };
    let checks = !shared.recorder().shader_checks();
    let mut ctx = xent::Context::from_adapter(shared.adapter().clone()).unwrap();
    ctx.set_shader_checks(checks);
    assert_eq!(ctx.recorder().shader_checks(), checks);
    let other = Backend::Gpu(ctx);
    matrix::same_bits(context().unwrap(), &other);
}

/// Two octets a lane a step ([`xent::RowLayout::steps`]) give the bits of one: a lane meets
/// its elements in the same order (a layout of 8 lanes in the tile form, rows in 2 parts).
/// Two minutes on lavapipe, so `.ci/run` runs it once rather than in every pass over this
/// file: `cargo test --test gpu -- --ignored`.
#[test]
#[ignore = "slow: .ci/run runs it once"]
fn two_octets_a_step_give_the_bits_of_one() {
    let Some(Backend::Gpu(shared)) = context() else { return };
    let open = |steps: u32| {
        let ctx = xent::Context::from_adapter(shared.adapter().clone()).unwrap();
        let layout: xent::RowLayout = "32x8/2+tile".parse().unwrap();
        ctx.recorder().set_layout(Some(layout.stepping(steps).unwrap()));
        Backend::Gpu(ctx)
    };
    matrix::same_bits(&open(1), &open(2));
}

/// Data over the 128 MiB binding limit of the software device is processed in chunks,
/// and a dispatch of more than 65,535 workgroups takes a 2-D grid.
#[test]
fn over_the_binding_limit_and_the_grid_limit() {
    let Some(Backend::Gpu(shared)) = context() else { return };
    let mut ctx = xent::Context::from_adapter(shared.adapter().clone()).unwrap();
    ctx.set_chunk_bytes(1 << 30);
    // 70,000 rows of 520 columns: one workgroup a row, so a 2-D grid in f16 (73 MB,
    // one chunk), and 146 MB in f32, more than one binding holds
    let (rows, cols) = (70_000, 520);
    let mut r = rng(10_000);
    let logits = common::logits(&mut r, rows * cols, 5.0);
    let labels = common::labels(&mut r, rows, cols);
    for dtype in [DType::F16, DType::F32] {
        let x = Input::new(&logits, dtype);
        let loss = Loss::new(CE, x.batch(rows, cols)).with_labels(&labels[..]);
        let reference = xent::reference::compute(&loss, LogBase::Nats).unwrap();
        let g = ctx.compute(&loss, &RunOptions { keep_values: true, ..Default::default() }).unwrap();
        assert_close("big", g.values.as_deref().unwrap(), &reference.values, 2e-5, 2e-5);
        assert_scalar("big mean", g.sum / g.denominator, reference.mean(), 0.0, 1e-5);
    }
}
