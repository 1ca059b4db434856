//! The job's inputs: opening and checking the `.npy` files, reading a chunk of rows from each,
//! and naming the file that holds a bad row.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

use half::f16;
use xent::Floats;
use xent::npy::{MappedRows, NpyFile};

use super::Job;
use crate::Failure;
use xent::Op;

/// An opened `.npy` input and the flag it came from.
pub struct Input {
    pub(super) flag: &'static str,
    pub(super) file: NpyFile,
}

impl Input {
    /// Opens a float input (`<f2`, `<f4`, `<f8`; a 1-D array is one column).
    pub fn floats(flag: &'static str, path: PathBuf) -> Result<Input, Failure> {
        let file = NpyFile::open(&path)?;
        if !file.dtype().is_float() {
            return Err(Failure::input(format!(
                "{}: {flag} needs floats (<f2, <f4, <f8), got {}",
                name(&path),
                file.dtype()
            )));
        }
        Ok(Input { flag, file })
    }

    /// Opens integer labels: a 1-D array of any accepted integer type.
    pub fn labels(flag: &'static str, path: PathBuf) -> Result<Input, Failure> {
        let file = NpyFile::open(&path)?;
        if file.dtype().is_float() {
            return Err(Failure::input(format!(
                "{}: {flag} needs integer labels (<i4, <i8, |u1, <u2, <u4), got {}",
                name(&path),
                file.dtype()
            )));
        }
        if file.ndim() != 1 {
            return Err(Failure::input(format!(
                "{}: {flag} must be 1-D [rows], got shape {:?}",
                name(&path),
                file.shape()
            )));
        }
        Ok(Input { flag, file })
    }

    pub fn cols(&self) -> u64 {
        self.file.cols()
    }

    pub(super) fn name(&self) -> String {
        name(self.file.path())
    }

    /// Leases the file for as long as the process runs (see [`NpyFile::lease`]); `false`
    /// where the system refuses.
    pub(super) fn lease(&self) -> bool {
        let Some(lease) = self.file.lease() else { return false };
        crate::process::hold_lease(format!("{}: {}", self.name(), self.flag), lease);
        true
    }
}

/// A file's name for messages.
fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Reads `--class-weights`: a float vector of `cols` finite, non-negative entries.
pub fn read_class_weights(path: &Path, cols: u64) -> Result<Vec<f32>, Failure> {
    let input = Input::floats("--class-weights", path.to_path_buf())?;
    let f = &input.file;
    if f.ndim() != 1 || f.rows() != cols {
        return Err(Failure::input(format!(
            "{}: --class-weights must have one entry per class ({cols}), got shape {:?}",
            input.name(),
            f.shape()
        )));
    }
    let mut w = Vec::new();
    f.read_f32(0, cols as usize, &mut w)?;
    if let Some((class, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v >= 0.0)) {
        let why = if v.is_nan() {
            "NaN"
        } else if v.is_infinite() {
            "infinite"
        } else {
            "negative"
        };
        return Err(Failure::input(format!("{}: --class-weights: weight {v} of class {class} is {why}", input.name())));
    }
    Ok(w)
}

/// One chunk's floats as read: half precision stays half (half the upload), the rest is f32;
/// or, for a device that reads host memory in place, the file's rows mapped as they are
/// (`<f4`, or `<f2` when `half`).
pub(super) enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Mapped { rows: MappedRows, half: bool },
}

impl Data {
    pub(super) fn floats(&self) -> Floats<'_> {
        match self {
            Data::F32(v) => Floats::F32(v),
            Data::F16(v) => Floats::F16(v),
            // a mapping starts on a page and the header is padded to 16 bytes, so the rows are
            // aligned; were they not, the empty slice fails the chunk's shape check
            Data::Mapped { rows, half: true } => Floats::F16(bytemuck::try_cast_slice(rows.bytes()).unwrap_or(&[])),
            Data::Mapped { rows, half: false } => Floats::F32(bytemuck::try_cast_slice(rows.bytes()).unwrap_or(&[])),
        }
    }
}

/// Rows `start..start + rows` of every input.
pub(super) struct Chunk {
    pub(super) start: u64,
    pub(super) rows: usize,
    pub(super) a: Data,
    pub(super) b: Option<Data>,
    pub(super) labels: Option<Vec<i64>>,
    pub(super) bytes: u64,
}

impl Chunk {
    /// The mappings the chunk's floats lie in, for the device to read in place.
    pub(super) fn shared(&self) -> Vec<xent::SharedBytes> {
        [Some(&self.a), self.b.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|d| match d {
                Data::Mapped { rows, .. } => Some(rows.shared()),
                _ => None,
            })
            .collect()
    }
}

impl Job {
    /// Reads rows `start..start + rows` of every input, checking labels as they come.
    /// The float inputs are read into `spares`' vectors where it has any (the chunks done
    /// with), so that a run allocates and faults in a few chunks' memory, not one per chunk.
    /// With `map`, float inputs stored as they are read are mapped instead, for a device that
    /// reads host memory in place.
    pub(super) fn read(
        &self,
        start: u64,
        rows: usize,
        spares: Option<&Receiver<Data>>,
        map: bool,
    ) -> Result<Chunk, Failure> {
        let spare = || spares.and_then(|s| s.try_recv().ok());
        let a = if map && self.stored_as_read(&self.a) {
            Data::Mapped { rows: self.a.file.map_rows(start, rows)?, half: self.half }
        } else {
            self.read_floats(&self.a, start, rows, spare())?
        };
        let b = match &self.b {
            Some(b) if map && self.stored_as_read(b) && !self.transforms_targets() => {
                Some(Data::Mapped { rows: b.file.map_rows(start, rows)?, half: self.half })
            }
            Some(b) => Some(self.transform_targets(self.read_floats(b, start, rows, spare())?, b, start)?),
            None => None,
        };
        let labels = match &self.labels {
            Some(y) => {
                let mut v = Vec::new();
                y.file.read_labels(start, rows, &mut v)?;
                let ignore = self.ignore_index();
                let cols = self.cols as i64;
                if let Some(i) = v.iter().position(|&l| Some(l) != ignore && !(0..cols).contains(&l)) {
                    return Err(Failure::input(format!(
                        "{}: row {}: label {} is outside [0, {cols})",
                        y.name(),
                        start + i as u64,
                        v[i]
                    )));
                }
                Some(v)
            }
            None => None,
        };
        let bytes = [Some(&self.a), self.b.as_ref(), self.labels.as_ref()]
            .into_iter()
            .flatten()
            .map(|i| rows as u64 * i.file.cols() * i.file.dtype().size() as u64)
            .sum();
        Ok(Chunk { start, rows, a, b, labels, bytes })
    }

    /// Whether `input`'s elements are stored as a chunk holds them (so they can be mapped).
    fn stored_as_read(&self, input: &Input) -> bool {
        let want = if self.half { xent::npy::NpyDType::F16 } else { xent::npy::NpyDType::F32 };
        cfg!(target_endian = "little") && input.file.dtype() == want
    }

    /// Whether probability targets are changed as read (smoothing, class weights).
    fn transforms_targets(&self) -> bool {
        matches!(self.op, Op::CrossEntropyProbs { .. })
            && (self.class_weights.is_some() || self.target_smoothing != 0.0)
    }

    fn read_floats(&self, input: &Input, start: u64, rows: usize, spare: Option<Data>) -> Result<Data, Failure> {
        if self.half {
            let mut v = match spare {
                Some(Data::F16(v)) => v,
                _ => Vec::new(),
            };
            input.file.read_f16_raw(start, rows, &mut v)?;
            Ok(Data::F16(v))
        } else {
            let mut v = match spare {
                Some(Data::F32(v)) => v,
                _ => Vec::new(),
            };
            input.file.read_f32(start, rows, &mut v)?;
            Ok(Data::F32(v))
        }
    }

    /// Probability targets with label smoothing and class weights folded in.
    fn transform_targets(&self, data: Data, input: &Input, start: u64) -> Result<Data, Failure> {
        let (class_weights, smoothing) = (&self.class_weights, self.target_smoothing);
        if !self.transforms_targets() {
            return Ok(data);
        }
        let Data::F32(mut v) = data else { return Err(Failure::machine("targets read as half precision")) };
        let k = self.cols as usize;
        let uniform = smoothing / k as f32;
        for (i, p) in v.iter_mut().enumerate() {
            if p.is_nan() || *p < 0.0 || *p == f32::INFINITY {
                return Err(Failure::input(format!(
                    "{}: row {}: probability {p} at column {} is {}",
                    input.name(),
                    start + (i / k) as u64,
                    i % k,
                    if p.is_nan() {
                        "NaN"
                    } else if *p < 0.0 {
                        "negative"
                    } else {
                        "infinite"
                    }
                )));
            }
            let w = class_weights.as_ref().map_or(1.0, |w| w[i % k]);
            *p = w * ((1.0 - smoothing) * *p + uniform);
        }
        Ok(Data::F32(v))
    }

    /// A row error from the device, with the offending value found by running the
    /// reference on that row alone.
    pub(super) fn describe(&self, e: xent::Error) -> Failure {
        if let xent::Error::Value { row, .. } = &e
            && let Ok(chunk) = self.read(*row, 1, None, false)
            && let Ok(loss) = self.loss(&chunk)
            && let Err(e @ xent::Error::Value { .. }) = xent::reference::compute(&loss, self.base())
        {
            return self.row_failure(e, *row);
        }
        e.into()
    }

    /// A row error of the chunk starting at row `start`, renumbered to the whole file; a bad
    /// value's message names the file that holds it.
    pub(super) fn row_failure(&self, e: xent::Error, start: u64) -> Failure {
        match e {
            xent::Error::Value { row, detail } => {
                let row = row + start;
                Failure::input(format!("{}: row {row}: {detail}", self.holder(row, &detail).name()))
            }
            e => offset(e, start),
        }
    }

    /// The input whose value at `row` the reference reports as `detail`: the second input,
    /// unless the report stays the same with that input's row replaced by a uniform one
    /// (valid as probabilities, targets and logits alike).
    fn holder(&self, row: u64, detail: &str) -> &Input {
        let Some(b) = &self.b else { return &self.a };
        let Ok(mut chunk) = self.read(row, 1, None, false) else { return b };
        let (k, uniform) = (self.cols as usize, 1.0 / self.cols as f32);
        chunk.b = match chunk.b {
            Some(Data::F16(_)) => Some(Data::F16(vec![f16::from_f32(uniform); k])),
            _ => Some(Data::F32(vec![uniform; k])),
        };
        match self.loss(&chunk).map(|loss| xent::reference::compute(&loss, self.base())) {
            Ok(Err(xent::Error::Value { detail: d, .. })) if d == detail => &self.a,
            _ => b,
        }
    }
}

/// A row error of a chunk, renumbered to the whole file.
fn offset(e: xent::Error, start: u64) -> Failure {
    match e {
        xent::Error::Label { row, label, cols } => xent::Error::Label { row: row + start, label, cols }.into(),
        xent::Error::Value { row, detail } => xent::Error::Value { row: row + start, detail }.into(),
        e => e.into(),
    }
}
