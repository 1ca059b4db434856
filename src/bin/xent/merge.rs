//! `xent merge`: the result of a whole prediction set from the JSON lines of its shards,
//! each evaluated on its own (a Slurm array, Ray, Spark): sums and counts add, and the
//! means, accuracy and perplexity follow from them as they do for one run.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value, json};

use crate::Failure;
use crate::eval::{calibration, number};

#[derive(Args)]
pub struct MergeArgs {
    /// The shards' results: files, each holding the JSON line of one file command.
    #[arg(value_name = "RESULT.json", required = true, num_args = 1..)]
    results: Vec<PathBuf>,
    /// The JSON line even when stdout is a terminal.
    #[arg(long)]
    json: bool,
}

/// Fields every shard must agree on: one operation over one kind of input.
const SAME: [&str; 5] = ["command", "cols", "reduction", "base", "dtype"];

/// The merged result of `args.results`, emitted as one result.
pub fn merge(args: &MergeArgs) -> Result<(), Failure> {
    let shards: Vec<Map<String, Value>> = args.results.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
    let line = merged(&shards, &args.results)?;
    if crate::summary::for_people(args.json) {
        crate::process::emit(crate::summary::summary(&line))
    } else {
        crate::process::emit(line)
    }
}

fn read(path: &Path) -> Result<Map<String, Value>, Failure> {
    let bad = |why: String| Failure::input(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty()).ok_or_else(|| bad("is empty".into()))?;
    match serde_json::from_str(line) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad("its last line is not the JSON object of a result".into())),
    }
}

/// A number of a shard's line: JSON numbers, and the strings of non-finite values.
fn value(shard: &Map<String, Value>, key: &str) -> Option<f64> {
    match shard.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// The evaluation report of the whole set, where every shard carries one (per-class counts
/// only where every shard has them).
fn merged_report(shards: &[Map<String, Value>]) -> Result<Option<Map<String, Value>>, Failure> {
    let Some(reports) = shards.iter().map(calibration::from_fields).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let per_class = reports.iter().all(|r| r.spec.per_class);
    let mut whole = reports[0].clone();
    if !per_class {
        whole.spec.per_class = false;
        whole.classes = None;
    }
    for r in &reports[1..] {
        let mut r = r.clone();
        if !per_class {
            r.spec.per_class = false;
            r.classes = None;
        }
        whole.merge(&r)?;
    }
    Ok(Some(calibration::fields(&whole, per_class)))
}

/// The binary report (`bce`) of the whole set, where every shard carries one.
fn merged_binary(shards: &[Map<String, Value>]) -> Result<Option<Map<String, Value>>, Failure> {
    let Some(reports) = shards.iter().map(calibration::binary_from_fields).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let mut whole = reports[0].clone();
    for r in &reports[1..] {
        whole.merge(r)?;
    }
    Ok(Some(calibration::binary_fields(&whole)))
}

fn merged(shards: &[Map<String, Value>], paths: &[PathBuf]) -> Result<Value, Failure> {
    let first = &shards[0];
    for (shard, path) in shards.iter().zip(paths) {
        for key in SAME {
            if shard.get(key) != first.get(key) {
                return Err(Failure::input(format!(
                    "{}: {key} is {} but {} says {}; shards of one set must agree",
                    path.display(),
                    shard.get(key).unwrap_or(&Value::Null),
                    paths[0].display(),
                    first.get(key).unwrap_or(&Value::Null)
                )));
            }
        }
        for key in ["rows", "sum", "denominator"] {
            if value(shard, key).is_none() {
                return Err(Failure::input(format!(
                    "{}: no {key:?}: not the result of a file command",
                    path.display()
                )));
            }
        }
    }
    let total = |key: &str| -> Option<f64> { shards.iter().map(|s| value(s, key)).sum() };
    let count = |key: &str| -> Option<u64> { shards.iter().map(|s| s.get(key).and_then(Value::as_u64)).sum() };
    let (sum, denominator) = (total("sum").unwrap_or(f64::NAN), total("denominator").unwrap_or(f64::NAN));
    let mean = sum / denominator;
    let mut line = Map::new();
    for key in SAME {
        if let Some(v) = first.get(key) {
            line.insert(key.into(), v.clone());
        }
    }
    let reduction = first.get("reduction").and_then(Value::as_str).unwrap_or("mean");
    line.insert("rows".into(), json!(count("rows")));
    line.insert("value".into(), number(if reduction == "mean" { mean } else { sum }));
    line.insert("sum".into(), number(sum));
    line.insert("denominator".into(), number(denominator));
    line.insert("mean".into(), number(mean));
    if let (Some(correct), Some(counted)) = (count("correct"), count("counted")) {
        line.insert("accuracy".into(), number(correct as f64 / counted as f64));
        line.insert("correct".into(), json!(correct));
        line.insert("counted".into(), json!(counted));
        // exp of the mean in nats: bits are scaled back (cross-entropy's, not bce's)
        let nats = if first.get("base").and_then(Value::as_str) == Some("bits") { std::f64::consts::LN_2 } else { 1.0 };
        if first.get("command").and_then(Value::as_str) == Some("ce") {
            line.insert("perplexity".into(), number((mean * nats).exp()));
        }
    }
    if first.get("command").and_then(Value::as_str) == Some("bce") {
        line.extend(merged_binary(shards)?.unwrap_or_default());
    } else if let Some(report) = merged_report(shards)? {
        line.extend(report);
    }
    if let Some(z_sum) = total("z_sum") {
        line.insert("z_loss".into(), number(z_sum / denominator));
        line.insert("z_sum".into(), number(z_sum));
    }
    if let Some(entropy_sum) = total("entropy_sum") {
        // over the rows not ignored: counted with labels, else every row
        let rows = count("counted").or_else(|| count("rows")).unwrap_or(0);
        line.insert("entropy".into(), number(entropy_sum / rows as f64));
        line.insert("entropy_sum".into(), number(entropy_sum));
    }
    for key in ["seconds", "bytes"] {
        if let Some(t) = total(key) {
            line.insert(key.into(), json!(t));
        }
    }
    line.insert("shards".into(), json!(shards.len()));
    Ok(Value::Object(line))
}
