//! One error type for the library; every fallible call returns [`Result`].

/// Everything that can go wrong, from bad input to a lost device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Inputs whose shapes or lengths disagree.
    #[error("{what} {detail}")]
    Shape {
        /// The input at fault.
        what: &'static str,
        /// What disagrees, with both numbers.
        detail: String,
    },
    /// An option outside its domain (temperature, alpha, label smoothing, ...).
    #[error("{name}: {detail}")]
    Option {
        /// The option's name as the library spells it: `temperature`, `alpha`,
        /// `label_smoothing`, `ignore_index` (the command line words it as its flag).
        name: &'static str,
        /// Its value and the allowed range.
        detail: String,
    },
    /// A label outside `[0, cols)` that is not the ignore index.
    #[error("row {row}: {}", label_detail(*label, *cols))]
    Label {
        /// The first row at fault.
        row: u64,
        /// The label, where known: the host's data always; a device's records where the
        /// evaluation report was recorded ([`RecordResults`](crate::RecordResults)).
        label: Option<i64>,
        /// The classes: labels are in `[0, cols)`.
        cols: u64,
    },
    /// A value outside its domain: a negative, NaN or infinite probability, a target outside [0, 1].
    #[error("row {row}: {detail}")]
    Value {
        /// The first row at fault.
        row: u64,
        /// The value, its column and why it is out of domain.
        detail: String,
    },
    /// A caller's buffer range that cannot be bound: missing usage, misaligned offset, too small.
    #[error("{name}: {detail}")]
    Binding {
        /// The argument at fault (logits, labels, per-row output, gradient, ...).
        name: String,
        /// The numbers and the fix.
        detail: String,
    },
    /// A job the adapter's limits cannot hold even in chunks (a single row over the binding limit).
    #[error("{0}")]
    TooLarge(String),
    /// No adapter matched the request.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    /// A wgpu validation or out-of-memory error caught by an error scope.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The device was lost (driver reset, removal, destroy).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// Mapping a buffer for readback failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),
    /// The host had no memory for a buffer of the job.
    #[error("out of memory: {0}")]
    HostMemory(String),
}

fn label_detail(label: Option<i64>, cols: u64) -> String {
    match label {
        Some(y) => format!("label {y} is outside [0, {cols})"),
        None => format!("its label is outside [0, {cols}) and is not the ignore index"),
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error is the input's fault (exit status 2) rather than the machine's (1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Shape { .. }
                | Error::Option { .. }
                | Error::Label { .. }
                | Error::Value { .. }
                | Error::Binding { .. }
                | Error::TooLarge(_)
        )
    }
}

/// An empty vector with room for exactly `n` elements, or [`Error::HostMemory`] naming `what`.
pub(crate) fn try_vec<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| no_memory::<T>(n, what))?;
    Ok(v)
}

/// Room for `more` elements in `v` (grown geometrically), or [`Error::HostMemory`].
pub(crate) fn try_grow<T>(v: &mut Vec<T>, more: usize, what: &str) -> Result<()> {
    v.try_reserve(more).map_err(|_| no_memory::<T>(v.len().saturating_add(more), what))
}

fn no_memory<T>(n: usize, what: &str) -> Error {
    let bytes = n as u128 * size_of::<T>() as u128;
    Error::HostMemory(format!("no memory for {what} ({bytes} bytes)"))
}
