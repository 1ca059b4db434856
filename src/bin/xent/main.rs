//! The `xent` command line: a thin layer over the library.
//!
//! The file commands (`lse`, `softmax`, `ce`, `kl`, `entropy`, `bce`, `gaussian-kl`,
//! `distill`: one per `xent::Op`, made in [`commands`]) stream their `.npy` inputs through
//! [`eval`]; `demo` generates a prediction set and checks the GPU against the f64 reference;
//! `merge` adds up the results of shards; `info` lists the adapters. One JSON line goes to
//! stdout (a summary for people on a terminal). Errors print one line on stderr: status 2
//! for bad input, 1 otherwise.

mod bench;
mod commands;
mod demo;
mod eval;
mod info;
mod linear;
mod merge;
mod paths;
mod process;
mod summary;
mod tune;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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
    /// Write a synthetic prediction set, evaluate it on the GPU and on the f64 reference.
    Demo(demo::DemoArgs),
    /// Device time of every kernel on a grid of shapes, against a copy of the same bytes.
    Bench(bench::BenchArgs),
    /// Write a synthetic prediction set (logits and labels) of any size.
    Generate(demo::GenerateArgs),
    /// The result of a whole set from the JSON results of its shards (sums and counts add).
    Merge(merge::MergeArgs),
    /// Cross-entropy of a linear head's logits H·Wᵀ + b against labels, without the logits in memory.
    LinearCe(linear::LinearArgs),
    /// Time the row layouts of jobs of these shapes on this device and keep the fastest
    /// (the tuner's cache), printing each choice.
    Tune(tune::TuneArgs),
    /// List the adapters wgpu finds, the one `auto` picks, its limits and features.
    Info {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The files the command writes, each with its flag (the file commands' are in
    /// [`commands::files`]).
    fn outputs(&self) -> Vec<paths::Flagged<'_>> {
        match self {
            Command::Generate(args) => args.outputs().to_vec(),
            Command::LinearCe(args) => args.outputs(),
            Command::Demo(_) | Command::Bench(_) | Command::Tune(_) | Command::Info { .. } | Command::Merge(_) => {
                Vec::new()
            }
        }
    }
}

/// Options every file command takes.
#[derive(Args, Clone, Copy)]
pub(crate) struct Common {
    /// How per-row values are reduced (`none` reports the sum).
    #[arg(long, value_enum, default_value_t = Reduction::Mean)]
    pub(crate) reduction: Reduction,
    /// Where to run: auto takes a real GPU, else the CPU engine (also for a row too wide for the
    /// adapter); gpu the best adapter, a software one included; cpu the CPU engine; reference
    /// the f64 reference.
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
    /// A real GPU where there is one, else the CPU engine.
    Auto,
    /// The best GPU adapter, a software one (llvmpipe) included.
    Gpu,
    /// The native CPU engine (SIMD, all cores).
    Cpu,
    /// The f64 reference (the oracle of the tests).
    Reference,
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

/// Set where `--device auto` found no adapter at all: a run that succeeds says so in one note
/// on stderr at its end (a failure says only what failed).
static NO_ADAPTER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--device auto`: a real GPU, else the CPU engine.
pub(crate) fn auto_backend() -> xent::Backend {
    let (backend, found) = xent::Backend::auto_found();
    if found == 0 {
        NO_ADAPTER.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    backend
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
    let matches = match cli_command().try_get_matches() {
        Ok(matches) => matches,
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
    // a pinned layout that is no layout, or an instruction set the CPU lacks: the
    // environment's input error, before any work
    let pins = xent::RowLayout::from_env().and(xent::TuneMode::from_env(false)).and(xent::cpu::simd_from_env());
    if let Err(e) = pins {
        return fail(&Failure::input(e.to_string()));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&matches)))
        .unwrap_or_else(|_| Err(Failure::machine("the run stopped")));
    match result {
        Ok(()) => {
            if NO_ADAPTER.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = writeln!(std::io::stderr(), "xent: note: no GPU adapter found; running on the CPU engine");
            }
            ExitCode::SUCCESS
        }
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
    let cli = cli_command();
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

/// Paths with their flags, as the path checks take them.
fn flagged<'a>(v: &'a [(&'static str, PathBuf)]) -> Vec<paths::Flagged<'a>> {
    v.iter().map(|(flag, path)| (*flag, path.as_path())).collect()
}

/// The command line: the commands of [`Command`] and the file commands made from `Op::ALL`.
fn cli_command() -> clap::Command {
    Cli::command().subcommands(commands::subcommands())
}

fn run(matches: &clap::ArgMatches) -> Result<(), Failure> {
    if let Some((name, m)) = matches.subcommand()
        && commands::file_command(name).is_some()
    {
        let (inputs, outputs) = commands::files(name, m);
        paths::check(&flagged(&inputs), &flagged(&outputs))?;
        let job = commands::job(name, m)?;
        let json = job.wants_json();
        let line = job.run()?;
        return if summary::for_people(json) { process::emit(summary::summary(&line)) } else { process::emit(line) };
    }
    let cli = Cli::from_arg_matches(matches).map_err(|e| Failure::input(clap_message(&e)))?;
    let inputs = match &cli.command {
        Command::LinearCe(args) => args.inputs(),
        _ => Vec::new(),
    };
    paths::check(&flagged(&inputs), &cli.command.outputs())?;
    match cli.command {
        Command::Demo(args) => demo::demo(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Generate(args) => demo::generate(&args),
        Command::Tune(args) => tune::tune(&args),
        Command::Info { json } => info::info(json),
        Command::Merge(args) => merge::merge(&args),
        Command::LinearCe(args) => {
            let line = linear::linear_ce(&args)?;
            if summary::for_people(args.common.json) {
                process::emit(summary::summary(&line))
            } else {
                process::emit(line)
            }
        }
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
