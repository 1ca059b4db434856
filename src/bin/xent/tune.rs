//! `xent tune`: the on-device tuner run ahead of time over shapes, operations and dtypes,
//! each choice printed (one JSON line each) and kept in the tuner's cache, so that later
//! runs on this device start with it.

use clap::Args;
use serde_json::json;
use xent::{Batch, Context, DType, Floats, Labels, Loss, Op};

use crate::Failure;
use crate::process::emit;

#[derive(Args)]
pub(crate) struct TuneArgs {
    /// Shapes as ROWSxCOLS, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "RxC", required = true)]
    shapes: Vec<String>,
    /// Operations by name (as `xent bench --ops`), comma-separated (default: lse, ce, kl).
    #[arg(long, value_delimiter = ',', value_name = "OP")]
    ops: Vec<String>,
    /// Element types: f32, f16, bf16 (default: f32).
    #[arg(long, value_delimiter = ',', value_name = "DTYPE")]
    dtypes: Vec<String>,
    /// Tune `ce` with its evaluation report, as `xent ce --labels` runs it.
    #[arg(long)]
    report: bool,
}

fn dtype(s: &str) -> Result<DType, Failure> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::Bf16),
        other => Err(Failure::input(format!("--dtypes: {other:?} is not f32, f16 or bf16"))),
    }
}

pub(crate) fn tune(args: &TuneArgs) -> Result<(), Failure> {
    if std::env::var("XENT_TUNE").is_ok_and(|v| v == "off" || v == "cached") {
        return Err(Failure::input("XENT_TUNE: `xent tune` times layouts; unset it or set it to on"));
    }
    let ctx = Context::new_blocking()?;
    if ctx.tune_mode() != xent::TuneMode::On {
        return Err(Failure::input(format!(
            "{}: the tuner is off on a CPU adapter unless XENT_TUNE=on",
            ctx.adapter_label()
        )));
    }
    // ahead of time: every kind asked for is tuned, under every candidate, on scratch jobs
    // of the shapes' own rows where they fit in 256 MiB
    ctx.set_tune_ahead_of_time();
    let shapes = args.shapes.iter().map(|s| crate::bench::parse_shape(s)).collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> =
        if args.ops.is_empty() { ["lse", "ce", "kl"].map(String::from).to_vec() } else { args.ops.clone() };
    let ops = names
        .iter()
        .map(|s| s.parse::<Op>().map_err(|e| Failure::input(format!("--ops: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let dtypes = if args.dtypes.is_empty() {
        vec![DType::F32]
    } else {
        args.dtypes.iter().map(|d| dtype(d)).collect::<Result<_, _>>()?
    };
    for &(rows, cols) in &shapes {
        for &dtype in &dtypes {
            for &op in &ops {
                // a template: the tuner reads its operation, options, columns and dtype only
                let (data, halves) = (vec![0.0f32; cols as usize], vec![half::f16::ZERO; cols as usize]);
                let bf = vec![half::bf16::ZERO; cols as usize];
                let floats = match dtype {
                    DType::F32 => Floats::F32(&data),
                    DType::F16 => Floats::F16(&halves),
                    DType::Bf16 => Floats::Bf16(&bf),
                };
                let batch = Batch::new(floats, 1, cols as usize)?;
                let mut template = Loss::new(op, batch);
                if op.signature().second.is_some() {
                    template = template.with_second(batch);
                }
                if op.signature().labels {
                    template = template.with_labels(Labels::I32(&[0]));
                }
                let report = args.report && matches!(op, Op::CrossEntropy { .. });
                let chosen = ctx.tune(&template, rows, report);
                let rule = ctx.recorder().layout_for(rows, cols).as_run_by(&op);
                let chosen = chosen.map(|l| l.as_run_by(&op));
                emit(json!({
                    "command": "tune",
                    "op": op.name(),
                    "rows": rows,
                    "cols": cols,
                    "dtype": format!("{dtype:?}").to_lowercase(),
                    "report": report,
                    "layout": chosen.unwrap_or(rule).to_string(),
                    "rule_layout": rule.to_string(),
                    "tuned": chosen.is_some(),
                    "adapter": ctx.adapter_label(),
                }))?;
                for note in ctx.tune_notes() {
                    let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("xent: note: {note}\n"));
                }
            }
        }
    }
    Ok(())
}
