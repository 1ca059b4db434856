#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
pub mod context;
pub mod embed;
pub mod error;
pub mod host;
pub mod kernels;
pub mod loss;
#[cfg(feature = "cli")]
pub mod npy;
pub mod ops;
pub mod plan;
pub mod readback;
pub mod reference;
mod stream;

pub use context::{Context, ContextOptions};
pub use embed::{
    DeviceBatch, DeviceDist, DeviceGrad, DeviceLabels, DeviceLoss, DeviceOutput, DeviceWeights, GradTarget, Recorder,
    Reduced,
};
pub use error::{Error, Result};
pub use host::{Output, Rows, RunOptions, Stream};
pub use loss::{Batch, CrossEntropyOptions, DType, Dist, Floats, Labels, LogBase, Loss, Reduction};
