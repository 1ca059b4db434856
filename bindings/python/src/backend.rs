//! `xent.Context`: where the work runs. `device="gpu"` opens a wgpu adapter (an error if
//! there is none), `"cpu"` runs on the host, `"auto"` takes an adapter where there is one
//! and the host otherwise.
//!
//! The host path is [`Cpu`], the one seam between the package and a CPU engine: today it
//! is the library's f64 reference (`xent::reference`), run a chunk at a time; the library's
//! native CPU engine (`xent::cpu::Engine`, with the same `compute`/`stream` signatures as
//! the GPU's `Context`) replaces it here, and nothing else in the package changes.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use xent::metrics::RowEval;
use xent::{LogBase, Loss, Op, Output, Rows, RunOptions, SharedBytes};

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
            let inherited =
                std::mem::replace(self.backend.get_mut().unwrap_or_else(|e| e.into_inner()), Backend::Cpu(Cpu));
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
        let opened = if want == "cpu" { None } else { Some(py.detach(xent::Context::new_blocking)) };
        let backend = match opened {
            Some(Ok(ctx)) => Backend::Gpu(Box::new(ctx)),
            Some(Err(e)) if want == "gpu" => return Err(device_error(e)),
            _ => Backend::Cpu(Cpu),
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
                compute_shared(ctx, loss, options, memory).or_else(|_| ctx.compute(loss, options)).or_raise()
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

/// `Context::compute` with the rows read where they lie in `memory`.
fn compute_shared(
    ctx: &xent::Context,
    loss: &Loss,
    options: &RunOptions,
    memory: &[SharedBytes],
) -> xent::Result<Output> {
    let mut stream = ctx.stream(loss, loss.primary().rows as u64, options)?;
    let mut rows = stream.push_shared(loss, memory)?;
    rows.append(stream.drain()?)?;
    let mut out = stream.finish()?;
    let softmax = loss.op.writes_rows();
    if softmax {
        out.sum = rows.values.iter().map(|&v| f64::from(v)).sum();
    }
    if softmax || out.values.is_some() {
        out.values = Some(rows.values);
    }
    if out.argmax.is_some() {
        out.argmax = Some(rows.argmax);
    }
    if out.entropy.is_some() {
        out.entropy = Some(rows.entropy);
    }
    Ok(out)
}

/// A job fed in chunks, on either path.
pub(crate) enum Stream<'a> {
    Gpu(Box<xent::Stream<'a>>),
    Cpu(CpuStream),
}

impl Stream<'_> {
    /// Rows of a chunk the job takes at once.
    pub(crate) fn piece_rows(&self) -> u64 {
        match self {
            Stream::Gpu(s) => s.piece_rows(),
            Stream::Cpu(s) => s.piece_rows,
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
            Stream::Cpu(_) => Ok(Rows::default()),
        }
    }

    pub(crate) fn finish(self) -> xent::Result<Output> {
        match self {
            Stream::Gpu(s) => (*s).finish(),
            Stream::Cpu(s) => s.finish(),
        }
    }
}

/// The host path: the f64 reference, until the CPU engine takes its place (see the module).
pub(crate) struct Cpu;

impl Cpu {
    fn label(&self) -> String {
        "cpu (f64 reference)".into()
    }

    /// `loss` whole: per-row values and the reductions, as the GPU's `compute` gives them.
    fn compute(&self, loss: &Loss, options: &RunOptions) -> xent::Result<Output> {
        let rows = loss.primary().rows as u64;
        let keep = RunOptions { keep_values: true, ..*options };
        let mut stream = self.stream(loss, rows, &keep)?;
        let r = stream.push(loss)?;
        let mut out = stream.finish()?;
        out.values = (options.keep_values || loss.op.writes_rows()).then_some(r.values);
        out.argmax = (options.keep_argmax && loss.op.has_argmax()).then_some(r.argmax);
        out.entropy = (options.keep_entropy && loss.op.has_entropy()).then_some(r.entropy);
        Ok(out)
    }

    fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> xent::Result<CpuStream> {
        template.validate()?;
        let cols = template.primary().cols.max(1);
        let piece_rows = (CHUNK_BYTES / (8 * cols)).max(1) as u64;
        Ok(CpuStream {
            op: template.op,
            options: *options,
            rows,
            cols: template.primary().cols,
            done: 0,
            piece_rows: options.chunk_rows.map_or(piece_rows, |c| c.clamp(1, piece_rows)),
            sum: Sum::default(),
            denominator: Sum::default(),
            z_sum: None,
            entropy_sum: None,
        })
    }
}

/// A job on the host path, fed in chunks: every chunk's rows come back from its push.
pub(crate) struct CpuStream {
    op: Op,
    options: RunOptions,
    rows: u64,
    cols: usize,
    done: u64,
    piece_rows: u64,
    sum: Sum,
    denominator: Sum,
    z_sum: Option<Sum>,
    entropy_sum: Option<Sum>,
}

impl CpuStream {
    fn push(&mut self, chunk: &Loss) -> xent::Result<Rows> {
        let start = self.done;
        let shift = |e: xent::Error| match e {
            xent::Error::Label { row, detail } => xent::Error::Label { row: row + start, detail },
            xent::Error::Value { row, detail } => xent::Error::Value { row: row + start, detail },
            e => e,
        };
        let base = self.options.base;
        let r = xent::reference::compute(chunk, base).map_err(shift)?;
        if !self.op.writes_rows() {
            r.values.iter().for_each(|&v| self.sum.add(v));
        }
        r.weights.iter().for_each(|&w| self.denominator.add(w));
        if let Some(terms) = xent::reference::z_terms(chunk, base).map_err(shift)? {
            let z = self.z_sum.get_or_insert_with(Sum::default);
            terms.iter().for_each(|&v| z.add(v));
        }
        let entropies = xent::reference::entropies(chunk, base).map_err(shift)?;
        if let Some(h) = &entropies {
            let total = self.entropy_sum.get_or_insert_with(Sum::default);
            let ignore = match self.op {
                Op::CrossEntropy { ignore_index, .. } => ignore_index,
                _ => None,
            };
            let labels = chunk.inputs.labels;
            for (i, &v) in h.iter().enumerate() {
                if ignore.is_none() || labels.map(|y| y.get(i)) != ignore {
                    total.add(v);
                }
            }
        }
        let evals: Vec<RowEval> = match self.options.report {
            true => xent::reference::row_evals(chunk).map_err(shift)?.into_iter().flatten().flatten().collect(),
            false => Vec::new(),
        };
        let n = chunk.primary().rows as u64;
        self.done += n;
        let keep_values = self.options.keep_values || self.op.writes_rows();
        Ok(Rows {
            start,
            rows: n,
            values: if keep_values { r.values.iter().map(|&v| v as f32).collect() } else { Vec::new() },
            argmax: match (self.options.keep_argmax, r.argmax) {
                (true, Some(a)) => a,
                _ => Vec::new(),
            },
            entropy: match (self.options.keep_entropy, entropies) {
                (true, Some(h)) => h.iter().map(|&v| v as f32).collect(),
                _ => Vec::new(),
            },
            evals,
        })
    }

    fn finish(self) -> xent::Result<Output> {
        if self.done != self.rows {
            return Err(xent::Error::Shape {
                what: "job",
                detail: format!("ended after {} of its {} rows", self.done, self.rows),
            });
        }
        let softmax = self.op.writes_rows();
        Ok(Output {
            rows: self.rows as usize,
            cols: self.cols,
            sum: if softmax { f64::NAN } else { self.sum.value() },
            denominator: if softmax { self.rows as f64 } else { self.denominator.value() },
            z_sum: self.z_sum.map(|z| z.value()).or(has_z_loss(self.op).then_some(0.0)),
            entropy_sum: self.entropy_sum.map(|h| h.value()).or(self.op.has_entropy().then_some(0.0)),
            values: None,
            argmax: None,
            entropy: None,
        })
    }
}

fn has_z_loss(op: Op) -> bool {
    matches!(op, Op::CrossEntropy { z_loss, .. } | Op::CrossEntropyProbs { z_loss, .. } if z_loss > 0.0)
}

/// A streaming Neumaier sum; infinities and NaN propagate as in a plain sum.
#[derive(Default, Clone, Copy)]
pub(crate) struct Sum {
    s: f64,
    c: f64,
}

impl Sum {
    pub(crate) fn add(&mut self, x: f64) {
        if !x.is_finite() || !self.s.is_finite() {
            self.s += x;
            return;
        }
        let t = self.s + x;
        self.c += if self.s.abs() >= x.abs() { (self.s - t) + x } else { (x - t) + self.s };
        self.s = t;
    }

    pub(crate) fn value(&self) -> f64 {
        if self.s.is_finite() { self.s + self.c } else { self.s }
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
