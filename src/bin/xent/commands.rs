//! The file commands, made from `Op::ALL`: one subcommand per operation the command line
//! runs, its flags from the operation's signature and options by one rule, so that a new
//! operation is a new command with no line here:
//!
//! - an input is `--NAME` (its signature's name); where its form is an option (P as
//!   probabilities or logits) it is `--NAME` or `--NAME-logits`, one of them required;
//! - labels are `--labels`, class weights `--class-weights`;
//! - an option is `--OPTION-NAME` (`label_smoothing` is `--label-smoothing`), with the
//!   operation's default in `Op::ALL`;
//! - `--softcap C` where the operation reads logits of a distribution;
//! - `--out` (required where the operation writes rows: softmax), `--entropy-out` where the
//!   operation has an `entropy` option (it implies it), and the common options.
//!
//! The contract's older spellings are the exceptions in [`spelled`]; `ce --target-probs` is
//! the operation `ce-probs`.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgGroup, ArgMatches, Args, FromArgMatches};
use xent::{Domain, Form, Op, OptionValue, Slot};

use crate::eval::{Input, Job, Outputs, ReportSpec, Spec, read_class_weights};
use crate::{Common, Failure};

/// The subcommand of `op`, or `None` for an operation without one.
fn command_name(op: Op) -> Option<&'static str> {
    match op {
        // row max is the library's; ce-probs is `ce --target-probs`
        Op::RowMax | Op::CrossEntropyProbs { .. } => None,
        op => Some(op.name()),
    }
}

/// Every file command, in the order of `Op::ALL`.
pub fn subcommands() -> Vec<clap::Command> {
    Op::ALL.into_iter().filter_map(|op| Some(subcommand(command_name(op)?, op))).collect()
}

/// The operation (with its defaults) of file command `name`, if it is one.
pub fn file_command(name: &str) -> Option<Op> {
    Op::ALL.into_iter().find(|&op| command_name(op) == Some(name))
}

/// A string that lives as long as the process: clap's names are `&'static str`, and the
/// few flags of one run are made once.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The flags of an input: the one for its probabilities (or its only one) and, where its
/// form is an option, the one for its logits.
fn spelled(op: Op, slot: Slot) -> (&'static str, Option<&'static str>) {
    let form = op.options().iter().any(|o| o.name == slot.name && matches!(o.value, OptionValue::Form(_)));
    match (op, slot.name) {
        // the contract's spellings, older than the rule
        (Op::Entropy { .. }, "p") | (Op::BinaryCrossEntropy { .. }, "input") => ("--probs", Some("--logits")),
        (Op::BinaryCrossEntropy { .. }, "target") => ("--labels", None),
        _ => (leak(format!("--{}", slot.name)), form.then(|| leak(format!("--{}-logits", slot.name)))),
    }
}

/// A file flag: `--logits L.npy`.
fn file_arg(flag: &'static str, help: String) -> Arg {
    let id = &flag[2..];
    let value = match id {
        "labels" => "Y.npy",
        "target-probs" => "P.npy",
        "class-weights" => "W.npy",
        _ => leak(format!("{}.npy", id.chars().next().unwrap_or('X').to_ascii_uppercase())),
    };
    Arg::new(id).long(id).value_name(value).value_parser(clap::value_parser!(PathBuf)).help(help)
}

fn subcommand(name: &'static str, op: Op) -> clap::Command {
    let sig = op.signature();
    let mut cmd = clap::Command::new(name);
    for slot in [Some(sig.first), sig.second].into_iter().flatten() {
        let (flag, logits) = spelled(op, slot);
        let what = match slot.domain {
            Domain::Logits => "logits",
            Domain::Probs => "probabilities",
            Domain::Unit => "values in [0, 1]",
        };
        match logits {
            Some(logits) => {
                cmd = cmd
                    .arg(file_arg(flag, format!("{} as probabilities, [rows, cols].", slot.name)))
                    .arg(file_arg(logits, format!("{} as logits, [rows, cols].", slot.name)))
                    .group(
                        ArgGroup::new(leak(format!("{} input", slot.name)))
                            .args([&flag[2..], &logits[2..]])
                            .required(true),
                    );
            }
            None => {
                let help = if slot.name == what {
                    format!("The {what}, [rows, cols].")
                } else {
                    format!("The {} ({what}), [rows, cols].", slot.name)
                };
                cmd = cmd.arg(file_arg(flag, help).required(true));
            }
        }
    }
    if sig.labels {
        cmd = cmd.arg(file_arg("--labels", "Integer class labels, [rows].".into()));
        cmd = if matches!(op, Op::CrossEntropy { .. }) {
            let probs = file_arg("--target-probs", "Target probabilities, [rows, cols].".into());
            cmd.arg(probs).group(ArgGroup::new("target input").args(["labels", "target-probs"]).required(true))
        } else {
            cmd.mut_arg("labels", |a| a.required(true))
        };
    }
    if sig.weights {
        cmd = cmd.arg(file_arg("--class-weights", "Per-class weights, [cols].".into()));
    }
    if matches!(op, Op::CrossEntropy { .. }) {
        cmd = report_args(cmd);
    }
    if matches!(op, Op::BinaryCrossEntropy { .. }) {
        cmd = cmd.arg(bins_arg("Equal-width bins of p for the calibration errors (ECE, MCE)."));
    }
    for info in op.options() {
        let arg = Arg::new(info.name).long(leak(info.name.replace('_', "-"))).help(info.help);
        cmd = match info.value {
            OptionValue::Number(v) => cmd.arg(
                arg.value_parser(clap::value_parser!(f32))
                    .default_value(leak(v.to_string()))
                    .allow_negative_numbers(true)
                    .value_name(leak(info.name.to_uppercase())),
            ),
            OptionValue::Switch(_) => cmd.arg(arg.action(ArgAction::SetTrue)),
            OptionValue::Index(_) => {
                cmd.arg(arg.value_parser(clap::value_parser!(i64)).allow_negative_numbers(true).value_name("I"))
            }
            OptionValue::Form(_) => cmd,
        };
    }
    if op.takes_softcap() {
        cmd = cmd.arg(
            Arg::new("softcap")
                .long("softcap")
                .value_name("C")
                .value_parser(clap::value_parser!(f32))
                .allow_negative_numbers(true)
                .help("Read the logits as C·tanh(x/C) (Gemma 2's soft-capping), C > 0, before any temperature."),
        );
    }
    if op.options().iter().any(|o| o.name == "entropy") {
        cmd = cmd.arg(
            Arg::new("entropy-out")
                .long("entropy-out")
                .value_name("PATH.npy")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Also write each row's entropy (every row, ignored ones too), [rows] f32; implies --entropy."),
        );
    }
    let out = Arg::new("out").long("out").value_name("PATH.npy").value_parser(clap::value_parser!(PathBuf));
    cmd = cmd.arg(if op.writes_rows() {
        out.required(true).help("Where to write the [rows, cols] output.")
    } else {
        out.help("Also write the per-row values, [rows] f32.")
    });
    // (the common options' own doc line would otherwise become the command's)
    Common::augment_args(cmd).about(op.summary().trim_end_matches('.'))
}

/// The evaluation report's flags (`ce --labels`).
fn report_args(cmd: clap::Command) -> clap::Command {
    let file = |id: &'static str, value, help| {
        Arg::new(id).long(id).value_name(value).value_parser(clap::value_parser!(PathBuf)).help(help)
    };
    cmd.arg(
        Arg::new("top-k")
            .long("top-k")
            .value_name("K,K")
            .value_delimiter(',')
            .value_parser(clap::value_parser!(u32).range(1..))
            .default_value("1,5")
            .help("Report top-k accuracy (JSON topK) for each k (with --labels)."),
    )
    .arg(bins_arg("Equal-width confidence bins of the calibration errors (ECE, MCE) (with --labels)."))
    .arg(file("per-class", "PATH.csv", "Write per-class support, correct, recall, predictions (with --labels)."))
    .arg(file("plot", "PATH.svg", "Draw the reliability diagram (with --labels)."))
}

/// `--bins B`: the calibration bins of the report.
fn bins_arg(help: &'static str) -> Arg {
    Arg::new("bins")
        .long("bins")
        .value_name("B")
        .value_parser(clap::value_parser!(u32).range(1..=1_000_000))
        .default_value("15")
        .help(help)
}

/// The report of `ce --labels` as its flags ask; `--target-probs` takes none of them.
fn report_spec(m: &ArgMatches) -> Result<Option<ReportSpec>, Failure> {
    use clap::parser::ValueSource::CommandLine;
    let bins = m.try_get_one::<u32>("bins").ok().flatten().copied().unwrap_or(15);
    let Ok(Some(top_k)) = m.try_get_many::<u32>("top-k") else {
        // binary cross-entropy: the calibration bins alone
        let binary = m.try_get_one::<u32>("bins").is_ok_and(|b| b.is_some());
        return Ok(binary.then(|| ReportSpec { top_k: Vec::new(), bins, per_class: None, plot: None }));
    };
    let given = ["top-k", "bins", "per-class", "plot"].into_iter().find(|id| m.value_source(id) == Some(CommandLine));
    if let (Some(id), Some(_)) = (given, path(m, "target-probs")) {
        return Err(Failure::input(format!("--{id} applies to --labels, not --target-probs")));
    }
    let mut top_k: Vec<u32> = top_k.copied().collect();
    top_k.sort_unstable();
    top_k.dedup();
    Ok(Some(ReportSpec { top_k, bins, per_class: path(m, "per-class").cloned(), plot: path(m, "plot").cloned() }))
}

/// The files a file command names, each with its flag: its inputs and its output.
pub type Files = (Vec<(&'static str, PathBuf)>, Vec<(&'static str, PathBuf)>);

/// The path given to flag `id`, where the command has that flag and it was given.
fn path<'m>(m: &'m ArgMatches, id: &str) -> Option<&'m PathBuf> {
    m.try_get_one::<PathBuf>(id).ok().flatten()
}

/// The paths given to file command `name`.
pub fn files(name: &str, m: &ArgMatches) -> Files {
    let flags = file_command(name).map(file_flags).unwrap_or_default();
    let given = |flag: &'static str| path(m, &flag[2..]).map(|p| (flag, p.clone()));
    let inputs = flags.into_iter().filter_map(given).collect();
    (inputs, ["--out", "--entropy-out", "--per-class", "--plot"].into_iter().filter_map(given).collect())
}

/// Every file flag an operation's command takes.
fn file_flags(op: Op) -> Vec<&'static str> {
    let sig = op.signature();
    let mut flags = Vec::new();
    for slot in [Some(sig.first), sig.second].into_iter().flatten() {
        let (flag, logits) = spelled(op, slot);
        flags.push(flag);
        flags.extend(logits);
    }
    if sig.labels {
        flags.push("--labels");
        if matches!(op, Op::CrossEntropy { .. }) {
            flags.push("--target-probs");
        }
    }
    if sig.weights {
        flags.push("--class-weights");
    }
    flags
}

/// The job of file command `name` over the files and options in `m`.
pub fn job(name: &str, m: &ArgMatches) -> Result<Job, Failure> {
    let mut op = file_command(name).ok_or_else(|| Failure::input(format!("{name} is not a file command")))?;
    let common = Common::from_arg_matches(m).map_err(|e| Failure::input(e.to_string()))?;
    let sig = op.signature();
    let mut inputs = Vec::new();
    for slot in [Some(sig.first), sig.second].into_iter().flatten() {
        let (flag, logits) = spelled(op, slot);
        match logits.and_then(|l| Some((l, path(m, &l[2..])?))) {
            Some((logits, path)) => {
                op.set(slot.name, OptionValue::Form(Form::Logits))?;
                inputs.push(Input::floats(logits, path.clone())?);
            }
            None => {
                if logits.is_some() {
                    op.set(slot.name, OptionValue::Form(Form::Probs))?;
                }
                inputs.extend(path(m, &flag[2..]).map(|p| Input::floats(flag, p.clone())).transpose()?);
            }
        }
    }
    for info in op.options() {
        let value = match info.value {
            OptionValue::Number(_) => m.get_one::<f32>(info.name).map(|&v| OptionValue::Number(v)),
            OptionValue::Switch(_) => Some(OptionValue::Switch(m.get_flag(info.name))),
            OptionValue::Index(_) => Some(OptionValue::Index(m.get_one::<i64>(info.name).copied())),
            OptionValue::Form(_) => None,
        };
        if let Some(value) = value {
            // an out-of-range value is bad input named by its flag (checked again by the job)
            let _ = op.set(info.name, value);
        }
    }
    let entropy = path(m, "entropy-out").cloned();
    if entropy.is_some() {
        // --entropy-out implies --entropy
        op.set("entropy", OptionValue::Switch(true))?;
    }
    let outputs = Outputs { values: path(m, "out").cloned(), entropy };
    let softcap = m.try_get_one::<f32>("softcap").ok().flatten().copied();
    let first = inputs.remove(0);
    let class_weights = path(m, "class-weights").map(|p| read_class_weights(p, first.cols())).transpose()?;
    if let (Op::CrossEntropy { ignore_index, label_smoothing, z_loss, entropy }, Some(p)) =
        (op, path(m, "target-probs"))
    {
        if ignore_index.is_some() {
            return Err(Failure::input("--ignore-index applies to --labels, not --target-probs"));
        }
        // weights and smoothing act on the targets as read, as PyTorch's
        report_spec(m)?;
        let op = Op::CrossEntropyProbs { z_loss, entropy };
        let spec = Spec { op, class_weights, target_smoothing: label_smoothing, softcap, report: None };
        return Job::new(spec, first, Some(Input::floats("--target-probs", p.clone())?), None, outputs, common);
    }
    let labels = path(m, "labels").filter(|_| sig.labels);
    let labels = labels.map(|p| Input::labels("--labels", p.clone())).transpose()?;
    let spec = Spec { class_weights, softcap, report: report_spec(m)?, ..op.into() };
    Job::new(spec, first, inputs.pop(), labels, outputs, common)
}

#[cfg(test)]
mod tests {
    use xent::Op;

    use super::{command_name, file_command, subcommands};

    /// clap's own checks of every command (groups, ids, defaults), which it runs only in
    /// debug builds and only for the command parsed.
    #[test]
    fn every_command_line_is_well_formed() {
        crate::cli_command().debug_assert();
    }

    /// Every operation with a command has one, found by its name, with its options as flags.
    #[test]
    fn every_operation_has_its_command() {
        let commands = subcommands();
        for op in Op::ALL {
            let Some(name) = command_name(op) else { continue };
            let cmd = commands.iter().find(|c| c.get_name() == name).expect(name);
            assert_eq!(file_command(name), Some(op));
            for info in op.options() {
                if !matches!(info.value, xent::OptionValue::Form(_)) {
                    let long = info.name.replace('_', "-");
                    assert!(cmd.get_arguments().any(|a| a.get_long() == Some(long.as_str())), "{name} --{long}");
                }
            }
        }
    }
}
