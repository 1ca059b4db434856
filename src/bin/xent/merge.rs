//! `xent merge`: the result of a whole prediction set from the JSON lines of its shards,
//! each evaluated on its own (a Slurm array, Ray, Spark): sums and counts add, and the
//! means, accuracy and perplexity follow from them as they do for one run.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value};
use xent::json::MergeError;

use crate::Failure;

#[derive(Args)]
pub struct MergeArgs {
    /// The shards' results: files, each holding the JSON line of one file command.
    #[arg(value_name = "RESULT.json", required = true, num_args = 1..)]
    results: Vec<PathBuf>,
    /// The JSON line even when stdout is a terminal.
    #[arg(long)]
    json: bool,
}

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

/// The merged result of `shards`, read from `paths`, with errors naming the file at fault.
fn merged(shards: &[Map<String, Value>], paths: &[PathBuf]) -> Result<Value, Failure> {
    xent::json::merge(shards).map_err(|e| match e {
        MergeError::Disagree { shard, key, value, first } => Failure::input(format!(
            "{}: {key} is {value} but {} says {first}; shards of one set must agree",
            paths[shard].display(),
            paths[0].display()
        )),
        MergeError::Missing { shard, key } => {
            Failure::input(format!("{}: no {key:?}: not the result of a file command", paths[shard].display()))
        }
        MergeError::Report(e) => e.into(),
        e => Failure::input(e.to_string()),
    })
}
