//! The `xent` command line: a thin layer over the library.
//!
//! Every file command (`lse`, `softmax`, `ce`, `kl`, `entropy`, `bce`, `gaussian-kl`,
//! `distill`) streams its `.npy` inputs through [`eval`]; `demo` generates a prediction set
//! and checks the GPU against the f64 reference; `info` lists the adapters. One JSON line
//! goes to stdout. Errors print one line on stderr: status 2 for bad input, 1 otherwise.

mod bench;
mod demo;
mod eval;
mod info;
mod merge;
mod paths;
mod process;
mod summary;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "xent",
    version,
    about = "GPU loss kernels on .npy prediction files: cross-entropy, KL, entropy and more"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Row-wise log-sum-exp: log Σ_j exp(L_ij).
    Lse {
        /// Logits, [rows, cols].
        #[arg(long, value_name = "L.npy")]
        logits: PathBuf,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// Softmax (or log-softmax) of each row, written to --out as [rows, cols] f32.
    Softmax {
        /// Logits, [rows, cols].
        #[arg(long, value_name = "L.npy")]
        logits: PathBuf,
        /// Divide the logits by T first.
        #[arg(long, value_name = "T", default_value_t = 1.0, allow_negative_numbers = true)]
        temperature: f32,
        /// Write log-softmax instead.
        #[arg(long)]
        log: bool,
        /// Where to write the [rows, cols] output.
        #[arg(long, value_name = "PATH.npy")]
        out: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Softmax cross-entropy against integer labels or target probabilities.
    #[command(group(ArgGroup::new("target").required(true).args(["labels", "target_probs"])))]
    Ce {
        /// Logits, [rows, cols].
        #[arg(long, value_name = "L.npy")]
        logits: PathBuf,
        /// Integer class labels, [rows].
        #[arg(long, value_name = "Y.npy")]
        labels: Option<PathBuf>,
        /// Target probabilities, [rows, cols].
        #[arg(long, value_name = "P.npy")]
        target_probs: Option<PathBuf>,
        /// Rows whose label is I count 0 and leave the mean's denominator.
        #[arg(long, value_name = "I", allow_negative_numbers = true)]
        ignore_index: Option<i64>,
        /// Per-class weights, [cols].
        #[arg(long, value_name = "W.npy")]
        class_weights: Option<PathBuf>,
        /// Label smoothing s in [0, 1].
        #[arg(long, value_name = "S", default_value_t = 0.0, allow_negative_numbers = true)]
        label_smoothing: f32,
        /// Adds λ·lse² to each row not ignored (PaLM's z-loss), λ ≥ 0.
        #[arg(long, value_name = "λ", default_value_t = 0.0, allow_negative_numbers = true)]
        z_loss: f32,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// KL(P‖Q) = Σ_j P_ij log(P_ij / Q_ij) per row.
    #[command(group(ArgGroup::new("p_input").required(true).args(["p", "p_logits"])))]
    #[command(group(ArgGroup::new("q_input").required(true).args(["q", "q_logits"])))]
    Kl {
        /// P as probabilities.
        #[arg(long, value_name = "PROBS.npy")]
        p: Option<PathBuf>,
        /// P as logits.
        #[arg(long, value_name = "LOGITS.npy")]
        p_logits: Option<PathBuf>,
        /// Q as probabilities.
        #[arg(long, value_name = "PROBS.npy")]
        q: Option<PathBuf>,
        /// Q as logits.
        #[arg(long, value_name = "LOGITS.npy")]
        q_logits: Option<PathBuf>,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// Entropy −Σ_j p_ij log p_ij per row.
    #[command(group(ArgGroup::new("input").required(true).args(["probs", "logits"])))]
    Entropy {
        /// Probabilities.
        #[arg(long, value_name = "P.npy")]
        probs: Option<PathBuf>,
        /// Logits.
        #[arg(long, value_name = "L.npy")]
        logits: Option<PathBuf>,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// Binary cross-entropy, summed over each row's columns.
    #[command(group(ArgGroup::new("input").required(true).args(["logits", "probs"])))]
    Bce {
        /// Logits.
        #[arg(long, value_name = "X.npy")]
        logits: Option<PathBuf>,
        /// Probabilities.
        #[arg(long, value_name = "X.npy")]
        probs: Option<PathBuf>,
        /// Float targets in [0, 1], the same shape as the input.
        #[arg(long, value_name = "T.npy")]
        labels: PathBuf,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// Gaussian (VAE) KL against N(0, 1): −½ Σ_j (1 + LV − MU² − exp(LV)).
    GaussianKl {
        /// Means.
        #[arg(long, value_name = "MU.npy")]
        mean: PathBuf,
        /// Log-variances.
        #[arg(long, value_name = "LV.npy")]
        logvar: PathBuf,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// Distillation: α·τ²·KL(softmax(T/τ) ‖ softmax(S/τ)) + (1−α)·CE(S, y).
    Distill {
        /// Student logits.
        #[arg(long, value_name = "S.npy")]
        student: PathBuf,
        /// Teacher logits.
        #[arg(long, value_name = "T.npy")]
        teacher: PathBuf,
        /// Integer class labels, [rows].
        #[arg(long, value_name = "Y.npy")]
        labels: PathBuf,
        /// Temperature τ.
        #[arg(long, value_name = "TAU", default_value_t = 1.0, allow_negative_numbers = true)]
        temperature: f32,
        /// Weight α of the KL term.
        #[arg(long, value_name = "ALPHA", default_value_t = 0.5, allow_negative_numbers = true)]
        alpha: f32,
        #[command(flatten)]
        out: OutArg,
        #[command(flatten)]
        common: Common,
    },
    /// Write a synthetic prediction set, evaluate it on the GPU and on the f64 reference.
    Demo(demo::DemoArgs),
    /// Device time of every kernel on a grid of shapes, against a copy of the same bytes.
    Bench(bench::BenchArgs),
    /// Write a synthetic prediction set (logits and labels) of any size.
    Generate(demo::GenerateArgs),
    /// The result of a whole set from the JSON results of its shards (sums and counts add).
    Merge(merge::MergeArgs),
    /// List the adapters wgpu finds, the one `auto` picks, its limits and features.
    Info {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The files the command reads and those it writes, each with its flag.
    fn files(&self) -> (Vec<paths::Flagged<'_>>, Vec<paths::Flagged<'_>>) {
        let mut inputs: Vec<(&'static str, Option<&PathBuf>)> = Vec::new();
        fn out(o: &OutArg) -> Vec<paths::Flagged<'_>> {
            o.out.iter().map(|p| ("--out", p.as_path())).collect()
        }
        let outputs = match self {
            Command::Lse { logits, out: o, .. } => {
                inputs.push(("--logits", Some(logits)));
                out(o)
            }
            Command::Softmax { logits, out, .. } => {
                inputs.push(("--logits", Some(logits)));
                vec![("--out", out.as_path())]
            }
            Command::Ce { logits, labels, target_probs, class_weights, out: o, .. } => {
                inputs.extend([("--logits", Some(logits)), ("--labels", labels.as_ref())]);
                inputs.extend([("--target-probs", target_probs.as_ref()), ("--class-weights", class_weights.as_ref())]);
                out(o)
            }
            Command::Kl { p, p_logits, q, q_logits, out: o, .. } => {
                inputs.extend([("--p", p.as_ref()), ("--p-logits", p_logits.as_ref())]);
                inputs.extend([("--q", q.as_ref()), ("--q-logits", q_logits.as_ref())]);
                out(o)
            }
            Command::Entropy { probs, logits, out: o, .. } => {
                inputs.extend([("--probs", probs.as_ref()), ("--logits", logits.as_ref())]);
                out(o)
            }
            Command::Bce { logits, probs, labels, out: o, .. } => {
                inputs.extend([("--logits", logits.as_ref()), ("--probs", probs.as_ref()), ("--labels", Some(labels))]);
                out(o)
            }
            Command::GaussianKl { mean, logvar, out: o, .. } => {
                inputs.extend([("--mean", Some(mean)), ("--logvar", Some(logvar))]);
                out(o)
            }
            Command::Distill { student, teacher, labels, out: o, .. } => {
                inputs.extend([("--student", Some(student)), ("--teacher", Some(teacher)), ("--labels", Some(labels))]);
                out(o)
            }
            Command::Generate(args) => args.outputs().to_vec(),
            Command::Demo(_) | Command::Bench(_) | Command::Info { .. } | Command::Merge(_) => Vec::new(),
        };
        let inputs = inputs.into_iter().filter_map(|(flag, p)| Some((flag, p?.as_path()))).collect();
        (inputs, outputs)
    }
}

/// `--out` for the commands whose per-row output is optional.
#[derive(Args)]
struct OutArg {
    /// Also write the per-row values, [rows] f32.
    #[arg(long, value_name = "PATH.npy")]
    out: Option<PathBuf>,
}

/// Options every file command takes.
#[derive(Args, Clone, Copy)]
pub(crate) struct Common {
    /// How per-row values are reduced (`none` reports the sum).
    #[arg(long, value_enum, default_value_t = Reduction::Mean)]
    pub(crate) reduction: Reduction,
    /// Where to run: the best GPU adapter (a software one included), a GPU only, or the CPU reference.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub(crate) device: Device,
    /// Logarithm base: e (nats) or 2 (bits); not applied to lse and softmax.
    #[arg(long, value_enum, default_value_t = Base::E)]
    pub(crate) base: Base,
    /// Rows read per chunk (default: about 32 MiB of input per chunk).
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u64).range(1..), allow_negative_numbers = true)]
    pub(crate) chunk_rows: Option<u64>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// The JSON line even when stdout is a terminal (else a summary for people there).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Reduction {
    None,
    Sum,
    Mean,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Device {
    Auto,
    Gpu,
    Cpu,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Base {
    /// Natural logarithms (nats).
    #[value(name = "e")]
    E,
    /// Base-2 logarithms (bits).
    #[value(name = "2")]
    Two,
}

/// A failure: its one-line message and exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    /// Bad input: exit status 2.
    pub(crate) fn input(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 2 }
    }

    /// Not the input's fault: exit status 1.
    pub(crate) fn machine(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 1 }
    }
}

impl From<xent::Error> for Failure {
    fn from(e: xent::Error) -> Self {
        let code = if e.is_bad_input() { 2 } else { 1 };
        let message = match &e {
            // the library names its option; the command line words it as the flag
            xent::Error::Option { name, detail } => format!("{}: {detail}", flag(name)),
            e => e.to_string(),
        };
        Failure { code, message }
    }
}

/// The command-line flag of a library option: `label_smoothing` is `--label-smoothing`.
fn flag(option: &str) -> String {
    format!("--{}", option.replace('_', "-"))
}

impl From<xent::npy::NpyError> for Failure {
    fn from(e: xent::npy::NpyError) -> Self {
        Failure { code: if e.is_bad_input() { 2 } else { 1 }, message: e.to_string() }
    }
}

fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: first statement of main, before any thread exists. Mesa warns on
        // stderr without a runtime dir, and stderr carries only our messages.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir())
        };
    }
    process::clean_up_on_signals();
    // A bug must still be one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "xent: internal error: {}", one_line(&info.to_string()));
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            return fail(&Failure::input(command_required()));
        }
        Err(e) => return fail(&Failure::input(clap_message(&e))),
    };
    let result = std::panic::catch_unwind(|| run(cli)).unwrap_or_else(|_| Err(Failure::machine("the run stopped")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "xent: {}", one_line(&f.message));
    ExitCode::from(f.code)
}

/// A message on one line: line breaks and runs of spaces become single spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What `xent` alone says: a command is required, and which there are.
fn command_required() -> String {
    let cli = Cli::command();
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).filter(|&n| n != "help").collect();
    format!("a command is required: {} (xent --help describes them)", names.join(", "))
}

/// clap's error without its usage block and tips, e.g. "the following required arguments
/// were not provided: --out <PATH.npy>".
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut kept = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Usage:") || t.starts_with("For more information") {
            break;
        }
        if !t.starts_with("tip:") {
            kept.push(t.strip_prefix("error:").unwrap_or(t).trim());
        }
    }
    one_line(&kept.join(" "))
}

fn run(cli: Cli) -> Result<(), Failure> {
    use eval::{Input, Job, Spec};
    use xent::Op;
    let (inputs, outputs) = cli.command.files();
    paths::check(&inputs, &outputs)?;
    let job = match cli.command {
        Command::Demo(args) => return demo::demo(&args),
        Command::Bench(args) => return bench::bench(&args),
        Command::Generate(args) => return demo::generate(&args),
        Command::Info { json } => return info::info(json),
        Command::Merge(args) => return merge::merge(&args),
        Command::Lse { logits, out, common } => {
            Job::new(Op::LogSumExp.into(), Input::floats("--logits", logits)?, None, None, out.out, common)
        }
        Command::Softmax { logits, temperature, log, out, common } => {
            let op = Op::Softmax { temperature, log };
            Job::new(op.into(), Input::floats("--logits", logits)?, None, None, Some(out), common)
        }
        Command::Ce {
            logits,
            labels,
            target_probs,
            ignore_index,
            class_weights,
            label_smoothing,
            z_loss,
            out,
            common,
        } => {
            let logits = Input::floats("--logits", logits)?;
            let class_weights = class_weights.map(|p| eval::read_class_weights(&p, logits.cols())).transpose()?;
            match (labels, target_probs) {
                (Some(y), _) => {
                    let op = Op::CrossEntropy { ignore_index, label_smoothing, z_loss };
                    let spec = Spec { class_weights, ..op.into() };
                    Job::new(spec, logits, None, Some(Input::labels("--labels", y)?), out.out, common)
                }
                (None, Some(p)) => {
                    if ignore_index.is_some() {
                        return Err(Failure::input("--ignore-index applies to --labels, not --target-probs"));
                    }
                    let spec =
                        Spec { op: Op::CrossEntropyProbs { z_loss }, class_weights, target_smoothing: label_smoothing };
                    Job::new(spec, logits, Some(Input::floats("--target-probs", p)?), None, out.out, common)
                }
                (None, None) => return Err(Failure::input("one of --labels and --target-probs is required")),
            }
        }
        Command::Kl { p, p_logits, q, q_logits, out, common } => {
            let (p_form, p) = pick("--p", p, "--p-logits", p_logits)?;
            let (q_form, q) = pick("--q", q, "--q-logits", q_logits)?;
            Job::new(Op::KlDiv { p: p_form, q: q_form }.into(), p, Some(q), None, out.out, common)
        }
        Command::Entropy { probs, logits, out, common } => {
            let (form, p) = pick("--probs", probs, "--logits", logits)?;
            Job::new(Op::Entropy { p: form }.into(), p, None, None, out.out, common)
        }
        Command::Bce { logits, probs, labels, out, common } => {
            let (form, x) = pick("--probs", probs, "--logits", logits)?;
            let t = Input::floats("--labels", labels)?;
            Job::new(Op::BinaryCrossEntropy { input: form }.into(), x, Some(t), None, out.out, common)
        }
        Command::GaussianKl { mean, logvar, out, common } => {
            let (mu, lv) = (Input::floats("--mean", mean)?, Input::floats("--logvar", logvar)?);
            Job::new(Op::GaussianKl.into(), mu, Some(lv), None, out.out, common)
        }
        Command::Distill { student, teacher, labels, temperature, alpha, out, common } => {
            let (s, t) = (Input::floats("--student", student)?, Input::floats("--teacher", teacher)?);
            let y = Input::labels("--labels", labels)?;
            Job::new(Op::Distill { temperature, alpha }.into(), s, Some(t), Some(y), out.out, common)
        }
    }?;
    let json = job.wants_json();
    let line = job.run()?;
    if summary::for_people(json) { process::emit(summary::summary(&line)) } else { process::emit(line) }
}

/// The one input given of two exclusive flags (clap checks that exactly one is), opened,
/// with its form: the first flag gives probabilities, the second logits.
fn pick(
    first: &'static str,
    a: Option<PathBuf>,
    second: &'static str,
    b: Option<PathBuf>,
) -> Result<(xent::Form, eval::Input), Failure> {
    match (a, b) {
        (Some(path), _) => Ok((xent::Form::Probs, eval::Input::floats(first, path)?)),
        (None, Some(path)) => Ok((xent::Form::Logits, eval::Input::floats(second, path)?)),
        (None, None) => Err(Failure::input(format!("one of {first} and {second} is required"))),
    }
}

#[cfg(test)]
mod tests {
    use super::Failure;

    /// The library names its option; the command line's message names the flag.
    #[test]
    fn option_errors_word_the_flag() {
        let cases = [
            ("label_smoothing", "1.5 is not in [0, 1]", "--label-smoothing: 1.5 is not in [0, 1]"),
            ("ignore_index", "-2147483648 is outside", "--ignore-index: -2147483648 is outside"),
            ("temperature", "0 is not a positive finite number", "--temperature: 0 is not a positive finite number"),
        ];
        for (name, detail, message) in cases {
            let failure = Failure::from(xent::Error::Option { name, detail: detail.into() });
            assert_eq!((failure.message.as_str(), failure.code), (message, 2));
        }
    }
}
