//! The native CPU engine: every row operation of [`Op::ALL`](crate::Op::ALL) over host
//! slices, on all cores, in SIMD, at the machine's memory speed, with the GPU path's types
//! ([`Loss`], [`RunOptions`], [`Output`], [`Rows`](crate::Rows)).
//!
//! - **Layout**: a job's rows are cut into pieces (bounded memory for per-row results), a
//!   piece into tasks of whole rows that rayon runs on the engine's threads; one row is
//!   computed by one thread, in one pass or two over its memory (the max, then the sums).
//! - **SIMD**: each task runs inside [`pulp::Arch::dispatch`], which picks the widest
//!   instruction set the CPU has at run time (AVX-512, AVX2+FMA, NEON; else plain x86-64)
//!   and compiles the row loops (`math.rs`) for it: 16 fixed lanes, a vectorised `exp`.
//! - **Deterministic**: a row's lanes, their tree and the order of its passes are fixed, and
//!   rows are added into the sums one after another in row order (Neumaier-compensated, in
//!   f64), so the bits depend on neither the thread count, nor the chunking, nor the
//!   instruction set.
//! - **Numerics**: inputs widened exactly to f32 (f16, bf16), f32 accumulation; JSD and
//!   distillation accumulate in f64 (`wide.rs`). The special-value rules are the kernels'.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod grad;
mod head;
mod math;
mod plan;
mod row;
mod stream;
mod wide;

use std::sync::Arc;

pub use head::{CpuHead, HeadGrads, HeadSums};
pub use stream::Stream;

use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::stream::{Output, RunOptions};

/// The CPU engine: a thread pool and the instruction set its loops take.
#[derive(Clone)]
pub struct Engine {
    pool: Option<Arc<rayon::ThreadPool>>,
    arch: pulp::Arch,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// The engine on all cores (rayon's global pool).
    pub fn new() -> Engine {
        Engine { pool: None, arch: arch() }
    }

    /// The engine on a pool of its own of `threads` threads (at least 1).
    pub fn with_threads(threads: usize) -> Result<Engine> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("xent-cpu-{i}"))
            .build()
            .map_err(|e| Error::HostMemory(format!("starting {threads} threads: {e}")))?;
        Ok(Engine { pool: Some(Arc::new(pool)), arch: arch() })
    }

    /// Threads the engine runs on.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    /// The instruction set the loops run in: `avx512`, `avx2`, `neon` or `scalar`.
    pub fn simd(&self) -> &'static str {
        simd_name(self.arch)
    }

    /// What the JSON's `adapter` says: `xent cpu engine (avx512, 2 threads)`.
    pub fn label(&self) -> String {
        format!("xent cpu engine ({}, {} threads)", self.simd(), self.threads())
    }

    /// Runs `loss` and returns its reductions (and per-row results where `options` keeps
    /// them), as [`Context::compute`](crate::Context::compute) does on the GPU.
    pub fn compute(&self, loss: &Loss, options: &RunOptions) -> Result<Output> {
        let mut stream = self.stream(loss, loss.primary().rows as u64, options)?;
        let rows = stream.push(loss)?;
        let mut out = stream.finish()?;
        if out.values.is_some() {
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

    /// Starts a job of `rows` rows fed in chunks by [`Stream::push`]; `template` sets the
    /// operation, options, columns and dtypes (its data is not read).
    pub fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> Result<Stream<'_>> {
        Stream::new(self, template, rows, options)
    }

    /// Runs `f` on the engine's threads (its rayon pool, or the global one).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

/// The instruction sets `XENT_CPU_SIMD` may name on this architecture.
#[cfg(target_arch = "x86_64")]
const SETS: &[&str] = &["avx512", "avx2", "scalar"];
#[cfg(target_arch = "aarch64")]
const SETS: &[&str] = &["neon", "scalar"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SETS: &[&str] = &["scalar"];

/// The instruction set `XENT_CPU_SIMD` pins the engine's loops to, if it is set: one of
/// `avx512`, `avx2`, `scalar` (x86-64) or `neon`, `scalar` (Arm), which the CPU has. For
/// benchmarks and tests: the bits are the same on every set. `Err` naming the variable where
/// its value is none of these or the CPU lacks it; the command line refuses such a value
/// (exit 2), [`Engine::new`] takes the widest set instead.
pub fn simd_from_env() -> Result<Option<&'static str>> {
    let Ok(value) = std::env::var("XENT_CPU_SIMD") else { return Ok(None) };
    let bad = |detail: String| Error::Option { name: "XENT_CPU_SIMD", detail };
    let Some(&set) = SETS.iter().find(|s| **s == value) else {
        return Err(bad(format!("`{value}` is not an instruction set here; one of {}", SETS.join(", "))));
    };
    if !SETS.iter().skip_while(|s| simd_name(pulp::Arch::new()) != **s).any(|s| *s == set) {
        return Err(bad(format!("this CPU has no {set}")));
    }
    Ok(Some(set))
}

/// The instruction set the engine takes: the one `XENT_CPU_SIMD` pins, else the widest.
fn arch() -> pulp::Arch {
    let widest = pulp::Arch::new();
    match simd_from_env() {
        Ok(Some("scalar")) => pulp::Arch::Scalar,
        #[cfg(target_arch = "x86_64")]
        Ok(Some("avx2")) => pulp::x86::V3::try_new().map_or(widest, pulp::Arch::V3),
        _ => widest,
    }
}

/// Whether the engine's loops may take their AVX-512 forms: the CPU has AVX-512F, BW and VL
/// (every AVX-512 CPU but the Xeon Phi; pulp's `avx512` level asks for them too) and
/// `XENT_CPU_SIMD` pins no narrower set (read once a process).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_allowed() -> bool {
    static ALLOWED: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && matches!(simd_from_env(), Ok(None | Some("avx512")) | Err(_))
    });
    *ALLOWED
}

/// The name of an instruction set pulp dispatches to.
fn simd_name(arch: pulp::Arch) -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match arch {
            pulp::Arch::V4(_) => "avx512",
            pulp::Arch::V3(_) => "avx2",
            _ => "scalar",
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        match arch {
            pulp::Arch::Scalar => "scalar",
            _ => "neon",
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = arch;
        "scalar"
    }
}
