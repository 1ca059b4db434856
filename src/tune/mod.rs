//! The on-device tuner: before the host path's first job of a kind, time the row layouts
//! around the rule's choice on scratch buffers shaped like the job, keep the fastest for
//! each row dispatch of that kind (by [`dispatch_key`](crate::kernels::dispatch_key)), and
//! remember it on disk ([`cache`]) for every later process on the same device.
//!
//! - **Modes** (`XENT_TUNE`): `on` tunes what is not in the cache (the default on GPUs),
//!   `cached` only takes what is in it, `off` (the default on CPU adapters) neither.
//! - **Candidates**: [`crate::Recorder::layout_candidates`], in both forms where the
//!   operation has a tile form ([`crate::Op::has_tile_form`]); each is first run on a small
//!   probe of special values (±1e4, `-inf` masks, a NaN row) and kept only if its per-row
//!   values agree with the f64 reference.
//! - **Timing**: device timestamps where the adapter has them (else the wall clock), the
//!   candidates in turn for several rounds, each one's minimum; it stops early once one
//!   reaches 90% of the device's copy over the same bytes, after about 100 ms for a new kind
//!   of job (a full round at least), and takes no more than about 2 s a process, after which
//!   the rule's layouts are used.
//! - **Determinism**: a choice, once made, is kept (in the process and on disk) and never
//!   timed again, so a device gives the same bits run after run; pinning a layout
//!   (`XENT_LAYOUT`) or `XENT_TUNE=off` gives the rule's or the pinned bits whatever the cache
//!   holds. A job's JSON says the layout it ran with.

mod cache;
mod scratch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::RowLayout;
use crate::loss::Loss;

/// Whether the host path tunes (`XENT_TUNE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// The rule's layouts (or a pinned one) only.
    Off,
    /// Layouts the cache holds for this device; the rule's for the rest.
    Cached,
    /// The cache's, and what is not there timed and added.
    On,
}

impl TuneMode {
    /// `XENT_TUNE` (`off`, `cached`, `on`), else `on` for a GPU and `off` for a CPU
    /// adapter; `Err` naming the variable for another value.
    pub fn from_env(cpu_adapter: bool) -> Result<TuneMode> {
        match std::env::var("XENT_TUNE").as_deref() {
            Ok("off") => Ok(TuneMode::Off),
            Ok("cached") => Ok(TuneMode::Cached),
            Ok("on") => Ok(TuneMode::On),
            Ok("") | Err(_) => Ok(if cpu_adapter { TuneMode::Off } else { TuneMode::On }),
            Ok(other) => {
                Err(Error::Option { name: "XENT_TUNE", detail: format!("{other:?} is not off, cached or on") })
            }
        }
    }
}

/// The tuner's mode on `adapter`: `XENT_TUNE`, else on for a GPU and off for a CPU adapter
/// (an unreadable `XENT_TUNE` is refused where a context is opened: here it is off).
fn mode_of(adapter: &wgpu::AdapterInfo) -> TuneMode {
    TuneMode::from_env(adapter.device_type == wgpu::DeviceType::Cpu).unwrap_or(TuneMode::Off)
}

/// What a tuned choice holds for: the adapter, its driver and backend, the shaders and the
/// version.
fn fingerprint(adapter: &wgpu::AdapterInfo) -> String {
    format!(
        "{:04x}:{:04x} {} | {} {} | {:?} | shaders {:016x} | xent {}",
        adapter.vendor,
        adapter.device,
        adapter.name,
        adapter.driver,
        adapter.driver_info,
        adapter.backend,
        crate::kernels::sources_hash(),
        env!("CARGO_PKG_VERSION"),
    )
}

/// The cached choices for an app's recorder on `device` (unless the tuner is off there):
/// what `xent tune` or a context's tuner chose on the same device and shaders.
pub(crate) fn load_cached(device: &wgpu::Device, kernels: &crate::kernels::Kernels) {
    let adapter = device.adapter_info();
    if mode_of(&adapter) == TuneMode::Off {
        return;
    }
    if let Some(path) = cache::path() {
        kernels.set_tuned(cache::load(&path, &fingerprint(&adapter)).0);
    }
}

/// Time a new kind of job may take to tune (after one full round), and a process in all
/// (unless [`Context::set_tune_budget`] says otherwise).
const PER_KEY: Duration = Duration::from_millis(100);
const PER_PROCESS: Duration = Duration::from_secs(2);
/// Rounds of the candidates at most.
const ROUNDS: usize = 5;

/// A context's tuner: its mode, its cache and what it has spent.
pub(crate) struct Tuner {
    mode: TuneMode,
    path: Option<PathBuf>,
    fingerprint: String,
    spent: Mutex<Duration>,
    /// The budgets of a kind of job and of the process ([`Context::set_tune_budget`]).
    budget: Mutex<(Duration, Duration)>,
    /// Input bytes a scratch job may take, where set ([`Context::set_tune_scratch`]).
    scratch_bytes: Mutex<Option<u64>>,
    notes: Mutex<Vec<String>>,
    busy: AtomicBool,
    /// Kinds of job met in this process: the layout each runs with, where tuned (the
    /// first time a kind is met its dispatches are recorded once to learn their keys).
    jobs: Mutex<HashMap<String, Option<RowLayout>>>,
}

/// What a kind of job is: its operation and options, soft-capping, report, element type and
/// columns (to the next power of two).
fn job_key(template: &Loss, report: bool) -> String {
    let first = template.primary();
    let cols = (first.cols as u64).max(1).next_power_of_two();
    let weights = template.inputs.weights.is_some();
    format!("{:?}|{:?}|{report}|{weights}|{:?}|c{cols}", template.op, template.softcap, first.data.dtype())
}

impl Tuner {
    /// The tuner of a device on `adapter`: its choices in the cache put into `kernels`.
    pub(crate) fn new(adapter: &wgpu::AdapterInfo, kernels: &crate::kernels::Kernels) -> Tuner {
        let mode = mode_of(adapter);
        let tuner = Tuner {
            mode,
            path: cache::path(),
            fingerprint: fingerprint(adapter),
            spent: Mutex::default(),
            budget: Mutex::new((PER_KEY, PER_PROCESS)),
            scratch_bytes: Mutex::default(),
            notes: Mutex::default(),
            busy: AtomicBool::new(false),
            jobs: Mutex::default(),
        };
        if mode != TuneMode::Off
            && let Some(path) = &tuner.path
        {
            let (choices, note) = cache::load(path, &tuner.fingerprint);
            kernels.set_tuned(choices);
            tuner.note(note);
        }
        tuner
    }

    fn note(&self, note: Option<String>) {
        if let Some(n) = note {
            let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
}

/// Where the tuner keeps its choices: `XENT_TUNE_CACHE`, else `$XDG_CACHE_HOME/xent/tune.json`,
/// else `~/.cache/xent/tune.json`; `None` where none of them is set.
pub fn tune_cache_path() -> Option<PathBuf> {
    cache::path()
}

impl Context {
    /// The tuner's mode on this context.
    pub fn tune_mode(&self) -> TuneMode {
        self.tuner.mode
    }

    /// Sets the time the tuner may spend on a new kind of job (about 100 ms unless set; a
    /// full round of the candidates it has probed by then at least) and in this process in
    /// all (about 2 s). Ahead of time ([`Context::set_tune_ahead_of_time`]) a kind gets 10 s
    /// and the process no limit, so that every candidate is timed.
    pub fn set_tune_budget(&self, per_kind: Duration, per_process: Duration) {
        *self.tuner.budget.lock().unwrap_or_else(|p| p.into_inner()) = (per_kind, per_process);
    }

    /// Sets the tuner to tune as `xent tune` does, ahead of time: every candidate (10 s a kind of job, no limit
    /// in all, [`Context::set_tune_budget`]) on scratch jobs of the job's own rows up to
    /// 256 MiB ([`Context::set_tune_scratch`]).
    pub fn set_tune_ahead_of_time(&self) {
        self.set_tune_budget(Duration::from_secs(10), Duration::MAX);
        self.set_tune_scratch(256 << 20);
    }

    /// Sets the input bytes of the scratch job the tuner times its candidates on: the job's
    /// own rows where they fit in `max_bytes` (a row at least). Unless set, a scratch job has
    /// at most 4096 rows and 32 MiB, which keeps a job's own tuning short but can rank the
    /// candidates otherwise than the job's size would (caches). Ahead of time: 256 MiB.
    pub fn set_tune_scratch(&self, max_bytes: u64) {
        *self.tuner.scratch_bytes.lock().unwrap_or_else(|p| p.into_inner()) = Some(max_bytes);
    }

    /// What the tuner has to say (a cache it could not read or write, a job it could not
    /// time), each once; taken, so the next call gives only newer notes.
    pub fn tune_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.tuner.notes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Tunes the row layouts of a job like `template` over `rows` rows (with the
    /// evaluation report where `report`), where the mode, the budget and the pin allow;
    /// returns the layout its first row dispatch runs with where the tuner chose one (now
    /// or before). Never an error: a job that cannot be timed keeps the rule's layouts,
    /// with a note ([`Context::tune_notes`]).
    pub fn tune(&self, template: &Loss, rows: u64, report: bool) -> Option<RowLayout> {
        let t = &self.tuner;
        if t.mode == TuneMode::Off || self.recorder().layout().is_some() || rows == 0 {
            return None;
        }
        let key = job_key(template, report);
        if let Some(&known) = t.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return known;
        }
        if t.busy.swap(true, Ordering::AcqRel) {
            return None;
        }
        let tuned = self.tune_job(template, rows, report);
        t.busy.store(false, Ordering::Release);
        let layout = match tuned {
            Ok(layout) => layout,
            Err(e) => {
                t.note(Some(format!("{} could not be tuned ({e}); it runs with the rule's layouts", template.op)));
                None
            }
        };
        t.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(key, layout);
        layout
    }

    fn tune_job(&self, template: &Loss, rows: u64, report: bool) -> Result<Option<RowLayout>> {
        let kernels = self.recorder().kernels();
        let max_bytes = *self.tuner.scratch_bytes.lock().unwrap_or_else(|p| p.into_inner());
        let job = scratch::Scratch::new(self, template, rows, report, max_bytes)?;
        // the row dispatches the job records, with the rule's layouts (or the tuned ones)
        kernels.watch(true);
        let recorded = job.time(self, None);
        let keys = kernels.watch(false);
        recorded?;
        let first = keys.first().and_then(|k| kernels.tuned(k));
        let spent = *self.tuner.spent.lock().unwrap_or_else(|p| p.into_inner());
        let (per_kind, per_process) = *self.tuner.budget.lock().unwrap_or_else(|p| p.into_inner());
        let untuned = keys.iter().any(|k| kernels.tuned(k).is_none());
        if self.tuner.mode != TuneMode::On || !untuned || spent >= per_process {
            return Ok(first);
        }
        let started = Instant::now();
        // the rule's choice first, then its neighbours while the budget lasts (two at least),
        // each kept only if it passes the probe
        let over = |started: Instant| {
            let elapsed = started.elapsed();
            elapsed >= per_kind || spent.saturating_add(elapsed) >= per_process
        };
        let mut candidates = Vec::new();
        let tile = template.op.has_tile_form();
        let all = self.recorder().layout_candidates(rows, template.primary().cols as u64);
        for c in all.into_iter().filter(|c| tile || !c.tile) {
            if candidates.len() >= 2 && over(started) {
                break;
            }
            if scratch::probe(self, template, c) {
                candidates.push(c);
            }
        }
        let copy = job.copy_time(self)?;
        let mut best = vec![f64::INFINITY; candidates.len()];
        'rounds: for round in 0..ROUNDS {
            for (i, &c) in candidates.iter().enumerate() {
                best[i] = best[i].min(job.time(self, Some(c))?);
                // at 90% of the device's copy nothing is left to find
                if best[i] * 0.9 <= copy {
                    break 'rounds;
                }
            }
            if round > 0 && over(started) {
                break;
            }
        }
        *self.tuner.spent.lock().unwrap_or_else(|p| p.into_inner()) += started.elapsed();
        let Some((_, &choice)) = best.iter().zip(&candidates).min_by(|a, b| a.0.total_cmp(b.0)) else {
            return Ok(first);
        };
        let chosen: HashMap<String, RowLayout> =
            keys.into_iter().filter(|k| kernels.tuned(k).is_none()).map(|k| (k, choice)).collect();
        kernels.set_tuned(chosen.clone());
        if let Some(path) = &self.tuner.path {
            self.tuner.note(
                cache::save(path, &self.tuner.fingerprint, &chosen)
                    .err()
                    .map(|why| format!("the tuner's choices are not kept on disk: {why}")),
            );
        }
        Ok(Some(first.unwrap_or(choice)))
    }
}
