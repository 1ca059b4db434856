//! `xent.Context`: where the work runs. `device="gpu"` opens a wgpu adapter (an error if
//! there is none), `"cpu"` runs on the host, `"auto"` takes an adapter where there is one
//! and the host otherwise.
//!
//! The host path is [`Cpu`] (src/cpu.rs): the library's CPU engine. `"auto"` takes a real
//! GPU where there is one and the engine otherwise, as the command line does: the engine
//! is faster than a software adapter (llvmpipe), which `"gpu"` still opens.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use xent::{LogBase, Loss, Output, Rows, RunOptions, SharedBytes};

use crate::cpu::{Cpu, CpuStream};
use crate::errors::{OrRaise, device, input};

/// The device of a context.
pub(crate) enum Backend {
    Gpu(Box<xent::Context>),
    Cpu(Cpu),
}

/// Rows of a chunk pushed at once where the caller does not say (and the host path's
/// chunk): 32 MiB of f32 logits.
pub(crate) const CHUNK_BYTES: usize = 32 << 20;

/// A device context: `xent.Context(device="auto")`.
#[pyclass(module = "xent._xent", frozen)]
pub(crate) struct Context {
    /// Held while a job runs (one job at a time per context); locked only with the GIL
    /// released, so that a job's callbacks may take it.
    pub(crate) backend: Mutex<Backend>,
    kind: &'static str,
    label: String,
    /// The process that opened the device: a child after `fork` neither uses nor closes it.
    pid: u32,
}

impl Context {
    /// The backend, locked (call it with the GIL released); an error in a process other
    /// than the one that opened the device.
    pub(crate) fn lock(&self) -> PyResult<Held<'_>> {
        if std::process::id() != self.pid {
            return Err(device(
                "this context was opened in another process (before fork); open a new one in this process",
            ));
        }
        let me = self as *const Context as usize;
        if HOLDING.with(|h| h.borrow().contains(&me)) {
            // a job's progress callback calling back into its own context would wait forever
            return Err(input("context: busy with the job whose callback this is; use another context here"));
        }
        HOLDING.with(|h| h.borrow_mut().push(me));
        Ok(Held { guard: lock(&self.backend), me })
    }
}

std::thread_local! {
    /// The contexts this thread holds (by address): a job's own thread is where its
    /// callbacks run.
    static HOLDING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A context's backend, locked by this thread.
pub(crate) struct Held<'a> {
    guard: std::sync::MutexGuard<'a, Backend>,
    me: usize,
}

impl std::ops::Deref for Held<'_> {
    type Target = Backend;
    fn deref(&self) -> &Backend {
        &self.guard
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        HOLDING.with(|h| h.borrow_mut().retain(|&c| c != self.me));
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // a copy made by fork: closing the device would wait on the parent's threads
            let inherited = std::mem::replace(
                self.backend.get_mut().unwrap_or_else(|e| e.into_inner()),
                Backend::Cpu(Cpu::inert()),
            );
            std::mem::forget(inherited);
        }
    }
}

#[pymethods]
impl Context {
    #[new]
    #[pyo3(signature = (device = "auto"))]
    fn new(py: Python<'_>, device: &str) -> PyResult<Self> {
        let want = match device {
            "auto" | "gpu" | "cpu" => device,
            other => return Err(input(format!("device: {other:?} is not one of \"auto\", \"gpu\", \"cpu\""))),
        };
        let opened = match want {
            "gpu" => Some(py.detach(xent::Context::new_blocking).map_err(device_error)?),
            "auto" => py.detach(real_gpu),
            _ => None,
        };
        let backend = match opened {
            Some(ctx) => Backend::Gpu(Box::new(ctx)),
            None => Backend::Cpu(py.detach(Cpu::new).map_err(device_error)?),
        };
        let (kind, label) = match &backend {
            Backend::Gpu(ctx) => ("gpu", ctx.adapter_label()),
            Backend::Cpu(cpu) => ("cpu", cpu.label()),
        };
        Ok(Context { backend: Mutex::new(backend), kind, label, pid: std::process::id() })
    }

    /// `"gpu"` or `"cpu"`: where this context runs.
    #[getter]
    fn device(&self) -> &'static str {
        self.kind
    }

    /// The adapter's name and backend, or the CPU path's name.
    #[getter]
    fn adapter(&self) -> &str {
        &self.label
    }

    /// What this context runs on, as a dict.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("device", self.kind)?;
        d.set_item("adapter", &self.label)?;
        let details = py.detach(|| -> PyResult<_> {
            let backend = self.lock()?;
            Ok(match &*backend {
                Backend::Gpu(ctx) => {
                    let info = ctx.adapter().get_info();
                    let limits = ctx.device().limits();
                    Some((
                        format!("{:?}", info.backend),
                        format!("{:?}", info.device_type),
                        info.driver.clone(),
                        limits.max_storage_buffer_binding_size,
                        ctx.reads_host_memory(),
                    ))
                }
                Backend::Cpu(_) => None,
            })
        })?;
        if let Some((backend, kind, driver, binding, in_place)) = details {
            d.set_item("backend", backend)?;
            d.set_item("device_type", kind)?;
            d.set_item("driver", driver)?;
            d.set_item("max_binding_bytes", binding)?;
            d.set_item("reads_host_memory", in_place)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("xent.Context(device={:?}, adapter={:?})", self.kind, self.label)
    }
}

/// `device="auto"`'s GPU, as the command line picks it (`xent::Backend::auto`): the adapter
/// `WGPU_ADAPTER_NAME` names, whatever it is, else the best real GPU; `None` where there is
/// none, a software adapter (llvmpipe) included, which the engine outruns.
fn real_gpu() -> Option<xent::Context> {
    if std::env::var_os("WGPU_ADAPTER_NAME").is_some() {
        return xent::Context::new_blocking().ok();
    }
    let found = xent::context::adapters(None).into_iter().find(|a| xent::is_real_gpu(&a.get_info()));
    found.and_then(|a| xent::Context::from_adapter(a).ok())
}

/// A device error of a failed open, or an input error where it was the caller's.
fn device_error(e: xent::Error) -> PyErr {
    if e.is_bad_input() { crate::errors::from_xent(e) } else { device(e.to_string()) }
}

/// Locks a context's backend; a job that panicked elsewhere leaves it usable.
pub(crate) fn lock(m: &Mutex<Backend>) -> std::sync::MutexGuard<'_, Backend> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every adapter wgpu finds, best first: `[(name, backend, device_type)]`.
#[pyfunction]
pub(crate) fn adapters(py: Python<'_>) -> Vec<(String, String, String)> {
    py.detach(|| {
        xent::context::adapters(None)
            .iter()
            .map(|a| {
                let info = a.get_info();
                (info.name.clone(), format!("{:?}", info.backend), format!("{:?}", info.device_type))
            })
            .collect()
    })
}

impl Backend {
    /// Runs `loss` whole; its float inputs may lie in `memory`, which a device that reads
    /// host memory reads in place.
    pub(crate) fn compute(&self, loss: &Loss, options: &RunOptions, memory: &[SharedBytes]) -> PyResult<Output> {
        match self {
            Backend::Gpu(ctx) if ctx.reads_host_memory() && !memory.is_empty() => {
                // a row error is described (the label, the value) by the copying path
                ctx.compute_shared(loss, options, memory).or_else(|_| ctx.compute(loss, options)).or_raise()
            }
            Backend::Gpu(ctx) => ctx.compute(loss, options).or_raise(),
            Backend::Cpu(cpu) => cpu.compute(loss, options).or_raise(),
        }
    }

    /// Starts a job of `rows` rows fed in chunks.
    pub(crate) fn stream<'a>(&'a self, template: &Loss, rows: u64, options: &RunOptions) -> PyResult<Stream<'a>> {
        Ok(match self {
            Backend::Gpu(ctx) => Stream::Gpu(Box::new(ctx.stream(template, rows, options).or_raise()?)),
            Backend::Cpu(cpu) => Stream::Cpu(cpu.stream(template, rows, options).or_raise()?),
        })
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Backend::Gpu(ctx) => ctx.adapter_label(),
            Backend::Cpu(cpu) => cpu.label(),
        }
    }
}

/// A job fed in chunks, on either path.
pub(crate) enum Stream<'a> {
    Gpu(Box<xent::Stream<'a>>),
    Cpu(CpuStream<'a>),
}

impl Stream<'_> {
    /// Rows of a chunk the job takes at once.
    pub(crate) fn piece_rows(&self) -> u64 {
        match self {
            Stream::Gpu(s) => s.piece_rows(),
            Stream::Cpu(s) => s.piece_rows(),
        }
    }

    /// Pushes `chunk`, whose float inputs may lie in `memory` (read in place where the
    /// device reads host memory; copied otherwise).
    pub(crate) fn push_shared(&mut self, chunk: &Loss, memory: &[SharedBytes]) -> xent::Result<Rows> {
        match self {
            Stream::Gpu(s) => s.push_shared(chunk, memory),
            Stream::Cpu(s) => s.push(chunk),
        }
    }

    pub(crate) fn drain(&mut self) -> xent::Result<Rows> {
        match self {
            Stream::Gpu(s) => s.drain(),
            Stream::Cpu(s) => s.drain(),
        }
    }

    pub(crate) fn finish(self) -> xent::Result<Output> {
        match self {
            Stream::Gpu(s) => (*s).finish(),
            Stream::Cpu(s) => s.finish(),
        }
    }
}

/// The unit of a `base` argument.
pub(crate) fn log_base(base: &str) -> PyResult<LogBase> {
    match base {
        "e" | "nats" => Ok(LogBase::Nats),
        "2" | "bits" => Ok(LogBase::Bits),
        other => Err(input(format!("base: {other:?} is not \"e\" (nats) or \"2\" (bits)"))),
    }
}
