//! The host path of a context: the library's CPU engine (`xent::cpu::Engine`: every row
//! operation and the evaluation report, on all cores, in SIMD), with the GPU context's
//! types, its fused gradients and its linear head. Each context runs it on a thread pool
//! of its own, so a process forked from one that used it starts its own pool in the
//! context it opens (rayon's global pool would be left with threads that exist only in
//! the parent).

use xent::cpu::Engine;
use xent::{Loss, Output, RunOptions};

/// The host path: the CPU engine on the context's own threads.
pub(crate) struct Cpu {
    engine: Engine,
}

/// A job on the host path, fed in chunks: every chunk's rows come back from its push.
pub(crate) type CpuStream<'a> = xent::cpu::Stream<'a>;

impl Cpu {
    /// The engine on one thread a core.
    pub(crate) fn new() -> xent::Result<Cpu> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Cpu { engine: Engine::with_threads(threads)? })
    }

    /// An engine that has started no thread and never runs: what a copy of a context made
    /// by `fork` holds in place of its parent's device, which it must neither use nor close.
    pub(crate) fn inert() -> Cpu {
        Cpu { engine: Engine::new() }
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn label(&self) -> String {
        self.engine.label()
    }

    /// `loss` whole: per-row values and the reductions, as the GPU's `compute` gives them.
    pub(crate) fn compute(&self, loss: &Loss, options: &RunOptions) -> xent::Result<Output> {
        self.engine.compute(loss, options)
    }

    pub(crate) fn stream(&self, template: &Loss, rows: u64, options: &RunOptions) -> xent::Result<CpuStream<'_>> {
        self.engine.stream(template, rows, options)
    }
}
