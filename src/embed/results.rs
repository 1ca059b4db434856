//! [`RecordResults`]: what a record leaves for the host (the reduction, the status and the
//! evaluation report), copied out by one call and decoded into [`Reduced`], [`Status`] and
//! [`Metrics`].
//!
//! [`Recorder::encode_results`] records the copies into the app's encoder, into a buffer of
//! its own; nothing is submitted. [`PendingResults::read`] is a future that resolves once
//! the app has submitted and polled; [`PendingResults::read_blocking`] polls.

use super::inputs::{DeviceLoss, DeviceOutput, REPORT_BYTES, Reduced};
use super::recorder::Recorder;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, MetricsSpec, RowRecord};
use crate::status::Status;

/// Copies of a record's results on their way to the host ([`Recorder::encode_results`]).
#[derive(Debug)]
pub struct PendingResults {
    staging: wgpu::Buffer,
    /// Where the reduction is in `staging`, where it was asked for.
    reduced: Option<u64>,
    /// Where the status is.
    status: u64,
    /// Where the report's records are, and their rows.
    report: Option<(u64, u64)>,
    ignore_index: Option<i64>,
    cols: u64,
}

/// A record's results on the host: the reduction over rows (where the record wrote one),
/// the status (the first bad rows), and each row's report record (where the record wrote
/// the report).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordResults {
    /// The reduction over rows, where [`DeviceOutput::reduced`] was set.
    pub reduced: Option<Reduced>,
    /// The recorder's status: the first bad rows over every record since
    /// [`Recorder::clear_status`].
    pub status: Status,
    /// Each row's report record, where [`DeviceOutput::report`] was set.
    pub records: Option<Vec<RowRecord>>,
    /// The record's classes (the range of its labels).
    pub cols: u64,
}

impl Recorder {
    /// Records into `encoder` copies of what a record of `loss` into `out` left for the
    /// host: the reduction over rows (where `out.reduced` is set), the recorder's status, and
    /// the report's records (where `out.report` is set), into one buffer of the returned
    /// [`PendingResults`]. Record it after [`Recorder::record`] with the same `loss` and `out`,
    /// then submit and read. The buffers of `out.reduced` and `out.report` need
    /// `BufferUsages::COPY_SRC`. Nothing is submitted or polled.
    ///
    /// The status covers every record since [`Recorder::clear_status`]: clear it before the
    /// record for the status to be this record's alone.
    pub fn encode_results(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        loss: &DeviceLoss,
        out: &DeviceOutput,
    ) -> Result<PendingResults> {
        let copy_src = |name: &str, buffer: &wgpu::Buffer| {
            if buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
                Ok(())
            } else {
                let detail = "lacks BufferUsages::COPY_SRC, which copying it out needs; add it".to_string();
                Err(Error::Binding { name: name.into(), detail })
            }
        };
        let rows = u64::from(loss.inputs.first.rows);
        let mut size = 0;
        let mut place = |bytes: u64| {
            let at = size;
            size += bytes.next_multiple_of(wgpu::MAP_ALIGNMENT);
            at
        };
        if let Some((buffer, _)) = out.reduced {
            copy_src("reduction target", buffer)?;
        }
        if let Some((buffer, _)) = out.report {
            copy_src("report", buffer)?;
        }
        let reduced = out.reduced.map(|_| place(Reduced::BYTES));
        let status = place(Status::BYTES);
        let report = out.report.map(|_| (place(REPORT_BYTES * rows), rows));
        let staging = self.kernels().device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("xent results"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let (Some((buffer, offset)), Some(at)) = (out.reduced, reduced) {
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, at, Reduced::BYTES);
        }
        encoder.copy_buffer_to_buffer(self.status(), 0, &staging, status, Status::BYTES);
        if let (Some((buffer, offset)), Some((at, rows))) = (out.report, report) {
            encoder.copy_buffer_to_buffer(buffer, offset, &staging, at, REPORT_BYTES * rows);
        }
        // a linear head's labels are of its classes, the weight's rows
        let cols = match loss.op.head() {
            Some(_) => loss.inputs.second.map_or(0, |w| u64::from(w.rows)),
            None => u64::from(loss.inputs.first.cols),
        };
        Ok(PendingResults { staging, reduced, status, report, ignore_index: loss.op.ignore_index(), cols })
    }
}

impl PendingResults {
    /// The results, once the app has submitted the encoder and its polling (or an event
    /// loop's) has run the copy; it never polls the device itself.
    pub fn read(self) -> impl Future<Output = Result<RecordResults>> + use<> {
        let bytes = crate::readback::read(&self.staging, 0..self.staging.size());
        async move { self.decode(&bytes.await?) }
    }

    /// [`PendingResults::read`], polling `device` until the copy is done.
    pub fn read_blocking(self, device: &wgpu::Device) -> Result<RecordResults> {
        let bytes = crate::readback::read_blocking(device, &self.staging, 0..self.staging.size())?;
        self.decode(&bytes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<RecordResults> {
        let at = |start: u64, len: u64| &bytes[start as usize..(start + len) as usize];
        let reduced = self.reduced.map(|r| Reduced::from_bytes(at(r, Reduced::BYTES))).transpose()?;
        let status = Status::from_bytes(at(self.status, Status::BYTES))?;
        let records = match self.report {
            Some((r, rows)) => Some(RowRecord::decode_all(at(r, REPORT_BYTES * rows), self.ignore_index)?),
            None => None,
        };
        Ok(RecordResults { reduced, status, records, cols: self.cols })
    }
}

impl RecordResults {
    /// `Ok` when the status names no bad row; else the error naming the first: a label
    /// outside `[0, cols)` ([`Error::Label`], with the label where the report's records
    /// were read), or an out-of-domain value ([`Error::Value`]).
    pub fn check(&self) -> Result<()> {
        match self.status.check(self.cols) {
            Err(Error::Label { row, cols, .. }) => {
                let record = self.records.as_ref().and_then(|r| r.get(usize::try_from(row).ok()?));
                let label = match record {
                    Some(RowRecord::BadLabel { label }) => Some(i64::from(*label)),
                    _ => None,
                };
                Err(Error::Label { row, label, cols })
            }
            other => other,
        }
    }

    /// The mean over rows, where the reduction was read (NaN when every row is ignored).
    pub fn mean(&self) -> Option<f64> {
        self.reduced.map(|r| r.mean())
    }

    /// The evaluation report of the rows' records, after [`RecordResults::check`]: `spec`
    /// says what to report (`MetricsSpec::new(cols)` for the command line's defaults). A
    /// record without the report is [`Error::Option`].
    pub fn metrics(&self, spec: MetricsSpec) -> Result<Metrics> {
        self.check()?;
        let Some(records) = &self.records else {
            let detail = "the record wrote no report; set DeviceOutput::report (with_report)".to_string();
            return Err(Error::Option { name: "report", detail });
        };
        let mut metrics = Metrics::new(spec)?;
        for eval in records.iter().filter_map(|r| r.eval()) {
            metrics.push(&eval);
        }
        Ok(metrics)
    }
}
