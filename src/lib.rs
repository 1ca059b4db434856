#![doc = include_str!("../docs/library.md")]
// What is `pub` is what callers use; the rest is `pub(crate)` (the crate-wide rules are the
// [lints] of Cargo.toml).
#![warn(unreachable_pub)]
mod backend;
pub mod context;
pub mod cpu;
mod embed;
mod error;
mod head;
mod host;
mod host_memory;
#[cfg(feature = "npy")]
pub mod json;
mod kernels;
mod layout;
mod loss;
pub mod metrics;
#[cfg(feature = "npy")]
pub mod npy;
mod op;
mod ops;
mod plan;
pub mod readback;
pub mod reference;
mod status;
mod stream;
mod sum;
mod tune;

/// The wgpu this crate is built on. Name wgpu's types through `xent::wgpu` and the buffers
/// and devices an app passes are always the ones the recorder takes.
pub use wgpu;

pub use backend::{Backend, BackendStream, is_real_gpu};
pub use context::{Context, ContextOptions};
/// What the host path and `xent bench` add to a record (not part of the API).
#[doc(hidden)]
pub use embed::{Baseline, RecordExtras};
pub use embed::{
    DEFAULT_LOGITS_BUDGET, DeviceBatch, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, GradTarget,
    LabelType, PendingResults, REPORT_BYTES, RecordResults, Recorder, Reduced, budget_for_rows,
};
pub use error::{Error, Result};
pub use head::{Head, HeadGradientsF32, HeadRows};
pub use host::{Output, Rows, RunOptions, Stream};
pub use host_memory::SharedBytes;
pub use layout::RowLayout;
pub use loss::{Batch, DType, Floats, Labels, LogBase, Loss, Reduction};
pub use op::{Domain, Form, Inputs, Op, OptionInfo, OptionValue, Signature, Slot, Task};
pub use status::Status;
pub use sum::CompensatedSum;
pub use tune::{TuneMode, tune_cache_path};

/// The code blocks of README.md, compiled (and run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
