//! Where a job runs, picked at one point: a GPU ([`Context`]) or the CPU engine
//! ([`cpu::Engine`]), with the same [`Loss`], [`RunOptions`], [`Output`] and [`Rows`].

use crate::context::{Context, adapters};
use crate::cpu;
use crate::error::Result;
use crate::host_memory::SharedBytes;
use crate::loss::Loss;
use crate::stream::{Output, Rows, RunOptions, Stream};

/// A GPU or the CPU engine.
// made once and kept: a box would only add a step to every call
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    /// A GPU adapter's device.
    Gpu(Context),
    /// The native CPU engine.
    Cpu(cpu::Engine),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A job fed in row chunks on a [`Backend`].
// one a job, kept for its length
#[allow(clippy::large_enum_variant)]
pub enum BackendStream<'a> {
    /// On the GPU.
    Gpu(Stream<'a>),
    /// On the CPU engine.
    Cpu(cpu::Stream<'a>),
}

/// Whether an adapter is a GPU: not a software rasteriser (llvmpipe, lavapipe, WARP).
pub fn is_real_gpu(info: &wgpu::AdapterInfo) -> bool {
    !matches!(info.device_type, wgpu::DeviceType::Cpu | wgpu::DeviceType::Other)
}

impl Backend {
    /// A real GPU (discrete, integrated or virtual) where there is one, else the engine: on
    /// a machine without one, the engine is faster than a software adapter. An adapter
    /// named by `WGPU_ADAPTER_NAME` is taken whatever it is. Never fails.
    pub fn auto() -> Backend {
        Backend::auto_found().0
    }

    /// [`Backend::auto`], and how many adapters there were to choose from (0: the machine
    /// has no GPU driver at all, not even a software one).
    pub fn auto_found() -> (Backend, usize) {
        if std::env::var_os("WGPU_ADAPTER_NAME").is_some() {
            return match Context::new_blocking() {
                Ok(c) => (Backend::Gpu(c), 1),
                Err(_) => (Backend::cpu(), 0),
            };
        }
        let all = adapters(None);
        let found = all.len();
        let gpu = all.into_iter().find(|a| is_real_gpu(&a.get_info())).and_then(|a| Context::from_adapter(a).ok());
        (gpu.map_or_else(Backend::cpu, Backend::Gpu), found)
    }

    /// The best GPU adapter, a software one included ([`Context::new_blocking`]).
    pub fn gpu() -> Result<Backend> {
        Context::new_blocking().map(Backend::Gpu)
    }

    /// The CPU engine on all cores.
    pub fn cpu() -> Backend {
        Backend::Cpu(cpu::Engine::new())
    }

    /// The adapter's label, or the engine's.
    pub fn label(&self) -> String {
        match self {
            Backend::Gpu(c) => c.adapter_label(),
            Backend::Cpu(e) => e.label(),
        }
    }

    /// Whether this is a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Backend::Gpu(_))
    }

    /// [`Context::compute`] or [`cpu::Engine::compute`].
    pub fn compute(&self, loss: &Loss, options: &RunOptions) -> Result<Output> {
        match self {
            Backend::Gpu(c) => c.compute(loss, options),
            Backend::Cpu(e) => e.compute(loss, options),
        }
    }

    /// [`Context::stream`] or [`cpu::Engine::stream`].
    pub fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> Result<BackendStream<'_>> {
        Ok(match self {
            Backend::Gpu(c) => BackendStream::Gpu(c.stream(template, rows, options)?),
            Backend::Cpu(e) => BackendStream::Cpu(e.stream(template, rows, options)?),
        })
    }
}

impl BackendStream<'_> {
    /// [`Stream::push`].
    pub fn push(&mut self, chunk: &Loss) -> Result<Rows> {
        match self {
            BackendStream::Gpu(s) => s.push(chunk),
            BackendStream::Cpu(s) => s.push(chunk),
        }
    }

    /// [`Stream::push_shared`].
    pub fn push_shared(&mut self, chunk: &Loss, memory: &[SharedBytes]) -> Result<Rows> {
        match self {
            BackendStream::Gpu(s) => s.push_shared(chunk, memory),
            BackendStream::Cpu(s) => s.push_shared(chunk, memory),
        }
    }

    /// [`Stream::drain`].
    pub fn drain(&mut self) -> Result<Rows> {
        match self {
            BackendStream::Gpu(s) => s.drain(),
            BackendStream::Cpu(s) => s.drain(),
        }
    }

    /// [`Stream::finish`].
    pub fn finish(self) -> Result<Output> {
        match self {
            BackendStream::Gpu(s) => s.finish(),
            BackendStream::Cpu(s) => s.finish(),
        }
    }

    /// [`Stream::piece_rows`].
    pub fn piece_rows(&self) -> u64 {
        match self {
            BackendStream::Gpu(s) => s.piece_rows(),
            BackendStream::Cpu(s) => s.piece_rows(),
        }
    }

    /// [`Stream::rows_done`].
    pub fn rows_done(&self) -> u64 {
        match self {
            BackendStream::Gpu(s) => s.rows_done(),
            BackendStream::Cpu(s) => s.rows_done(),
        }
    }
}
