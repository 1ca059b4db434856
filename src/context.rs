//! An owned GPU context for callers that have no device: the CLI, tests, benches.
//!
//! It picks an adapter (honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`), opens a
//! device with the adapter's own limits, installs the device-lost and uncaptured-error
//! handlers (only on this device, which it created), and runs jobs on host slices in
//! row chunks that fit the binding limit, recorded through its [`Recorder`].
//! It may submit and block; the recorder itself never does.

use std::sync::{Arc, Mutex};

use crate::embed::Recorder;
use crate::error::{Error, Result};
use crate::host_memory::{self, HostImport};

/// Which adapter to open.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Backends to search; `None`: `WGPU_BACKEND`, else all.
    pub backends: Option<wgpu::Backends>,
    /// A case-insensitive substring of the adapter's name; `None`: `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// naga's runtime checks in the shaders ([`Recorder::with_shader_checks`]); `None`:
    /// on where `XENT_SHADER_CHECKS=1`, else off.
    pub shader_checks: Option<bool>,
}

/// Instance, adapter, device and queue, with the kernels compiled on them.
pub struct Context {
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// Records every row kernel of the host path: its buffers are the context's.
    pub(crate) recorder: Recorder,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Most bytes of one piece of a job on the device (bounds host and device memory).
    pub(crate) chunk_bytes: u64,
    /// How the device reads host memory in place, where it can ([`crate::host_memory`]).
    pub(crate) host_import: Option<HostImport>,
    /// The row layouts timed and chosen on this device ([`crate::tune`]).
    pub(crate) tuner: crate::tune::Tuner,
}

/// Adapters ranked for loss kernels: real GPUs first, software last; Vulkan, Metal
/// and DX12 before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, backend)
}

/// A one-line description of an adapter: name and backend.
pub fn adapter_label(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?})", info.name, info.backend)
}

/// Every adapter wgpu finds on `backends` (default: `WGPU_BACKEND`, else all), best first.
pub fn adapters(backends: Option<wgpu::Backends>) -> Vec<wgpu::Adapter> {
    let backends = backends.or_else(wgpu::Backends::from_env).unwrap_or(wgpu::Backends::all());
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let mut list = pollster::block_on(instance.enumerate_adapters(backends));
    list.sort_by_key(|a| rank(&a.get_info()));
    list
}

impl Context {
    /// Opens the best adapter (see [`ContextOptions`]), blocking.
    pub fn new_blocking() -> Result<Self> {
        Self::with_options(&ContextOptions::default())
    }

    /// Opens the adapter chosen by `options`, blocking.
    pub fn with_options(options: &ContextOptions) -> Result<Self> {
        let name = options.adapter_name.clone().or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        let all = adapters(options.backends);
        let found: Vec<String> = all.iter().map(|a| adapter_label(&a.get_info())).collect();
        let adapter = all
            .into_iter()
            .find(|a| name.as_ref().is_none_or(|n| a.get_info().name.to_lowercase().contains(&n.to_lowercase())))
            .ok_or_else(|| {
                let wanted = name.map(|n| format!(" named like {n:?}")).unwrap_or_default();
                let seen =
                    if found.is_empty() { "none found".to_string() } else { format!("found {}", found.join(", ")) };
                Error::NoAdapter(format!(
                    "no adapter{wanted}; {seen} (a software one: apt-get install mesa-vulkan-drivers)"
                ))
            })?;
        Self::open(adapter, options.shader_checks.unwrap_or_else(crate::kernels::shader_checks_from_env))
    }

    /// Opens `adapter` with its own limits and the optional features xent can use.
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        Self::open(adapter, crate::kernels::shader_checks_from_env())
    }

    /// [`Context::from_adapter`], the shaders built with naga's runtime checks or not.
    fn open(adapter: wgpu::Adapter, shader_checks: bool) -> Result<Self> {
        // a layout pinned by the environment that is no layout is an error here, not ignored
        crate::layout::RowLayout::from_env()?;
        crate::tune::TuneMode::from_env(false)?;
        let mut wanted = wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        // storage the host can map, where it costs the kernels nothing: the device's memory
        // is the host's (a CPU or integrated adapter); the stream reads rows straight into it
        let unified = matches!(adapter.get_info().device_type, wgpu::DeviceType::Cpu | wgpu::DeviceType::IntegratedGpu);
        if unified {
            wanted |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
        }
        let desc = wgpu::DeviceDescriptor {
            label: Some("xent"),
            required_features: adapter.features() & wanted,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        // where the device's memory is the host's, it may read a file's pages in place
        let importing = (unified && std::env::var_os("XENT_HOST_IMPORT").is_none_or(|v| v != "0"))
            .then(|| host_memory::open(&adapter, &desc))
            .flatten();
        let (device, queue, host_import) = match importing {
            Some((device, queue, how)) => (device, queue, Some(how)),
            None => {
                let (device, queue) = pollster::block_on(adapter.request_device(&desc))?;
                (device, queue, None)
            }
        };
        let lost = Arc::new(Mutex::new(None));
        let uncaptured = Arc::new(Mutex::new(None));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{reason:?}: {message}"));
            });
            let uncaptured = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                uncaptured.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
            }));
        }
        let recorder = Recorder::checking(&device, shader_checks);
        let tuner = crate::tune::Tuner::new(&adapter.get_info(), recorder.kernels());
        Ok(Context { adapter, device, queue, recorder, lost, uncaptured, chunk_bytes: 64 << 20, host_import, tuner })
    }

    /// Whether the device reads host memory in place: [`Stream::push_shared`] then runs
    /// rows that lie in shared memory (a file's mapping) without copying them. It does on
    /// a Vulkan adapter whose memory is the host's, unless `XENT_HOST_IMPORT=0`.
    ///
    /// [`Stream::push_shared`]: crate::Stream::push_shared
    pub fn reads_host_memory(&self) -> bool {
        self.host_import.is_some()
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The device's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The adapter the device was opened on.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// A recorder on this device, for recording losses into encoders of one's own
    /// ([`Recorder::record`]); its pipelines are the ones the context's jobs use.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The adapter's name and backend, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)`.
    pub fn adapter_label(&self) -> String {
        adapter_label(&self.adapter.get_info())
    }

    /// Sets the most bytes one piece of a job holds on the device: its inputs, per-row
    /// outputs and their readback (default 64 MiB; two pieces are in flight at once).
    pub fn set_chunk_bytes(&mut self, bytes: u64) {
        self.chunk_bytes = bytes.max(1);
    }

    /// Builds the shaders with naga's runtime checks (`true`) or without them (`false`, the
    /// default unless `XENT_SHADER_CHECKS=1`): the same results, the checks at a cost. The
    /// kernels compiled so far are dropped.
    pub fn set_shader_checks(&mut self, on: bool) {
        if on != self.recorder.shader_checks() {
            self.recorder = Recorder::checking(&self.device, on);
            self.tuner = crate::tune::Tuner::new(&self.adapter.get_info(), self.recorder.kernels());
        }
    }

    /// An error if the device was lost or raised an error outside any scope.
    pub(crate) fn health(&self) -> Result<()> {
        if let Some(m) = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(Error::DeviceLost(m));
        }
        if let Some(m) = self.uncaptured.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(Error::Gpu(m));
        }
        Ok(())
    }
}
