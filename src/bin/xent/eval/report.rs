//! The job's JSON line, and the progress bar on stderr while it runs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use xent::LogBase;

use super::Job;
use super::run::Totals;
use crate::Reduction;

impl Job {
    pub(super) fn report(&self, t: &Totals, bytes: u64, seconds: f64, setup_seconds: f64, device: &str) -> Value {
        let mean = t.sum / t.denominator;
        let value = match self.common.reduction {
            Reduction::Mean => mean,
            Reduction::Sum | Reduction::None => t.sum,
        };
        let mut line = json!({
            "command": self.command(),
            "rows": self.rows,
            "cols": self.cols,
            "reduction": match self.common.reduction {
                Reduction::None => "none",
                Reduction::Sum => "sum",
                Reduction::Mean => "mean",
            },
            "value": number(value),
            "adapter": t.adapter,
            "seconds": seconds,
            "device": device,
            "dtype": self.a.file.dtype().descr(),
            "sum": number(t.sum),
            // what an exact merge of shards needs (xent merge): sums and counts, not only means
            "denominator": number(t.denominator),
            "mean": number(mean),
            "bytes": bytes,
            "gbps": bytes as f64 / seconds.max(1e-9) / 1e9,
            "setup_seconds": setup_seconds,
        });
        let Some(fields) = line.as_object_mut() else { return line };
        if self.op.takes_base() {
            fields.insert("base".into(), json!(if self.base() == LogBase::Bits { "bits" } else { "nats" }));
        }
        if let Some(z_sum) = t.z_sum {
            // the z-loss's share of the mean: mean = (cross-entropy's share) + z_loss
            fields.insert("z_loss".into(), number(z_sum / t.denominator));
            fields.insert("z_sum".into(), number(z_sum));
        }
        if let Some(b) = &t.binary {
            fields.extend(super::calibration::binary_fields(b));
        }
        if let Some(m) = &t.metrics {
            let per_class = self.report.as_ref().is_some_and(|r| r.per_class.is_some());
            fields.extend(super::calibration::fields(m, per_class));
        }
        // top-1 from the report (a NaN row counts as wrong)
        let hits = t.metrics.as_ref().map(|m| (m.correct, m.rows));
        if let Some(entropy_sum) = t.entropy_sum {
            // unweighted, over the rows not ignored (counted, or every row without labels)
            let rows = hits.map_or(self.rows, |(_, counted)| counted);
            fields.insert("entropy".into(), number(entropy_sum / rows as f64));
            fields.insert("entropy_sum".into(), number(entropy_sum));
        }
        if let Some((hit, counted)) = hits {
            fields.insert("accuracy".into(), number(hit as f64 / counted as f64));
            fields.insert("correct".into(), json!(hit));
            fields.insert("counted".into(), json!(counted));
            // exp of the mean loss in nats, whatever --base says
            fields.insert("perplexity".into(), number((mean / self.base().scale()).exp()));
        }
        if let Some(out) = &self.out {
            fields.insert("out".into(), json!(out.display().to_string()));
        }
        if let Some(out) = &self.entropy_out {
            fields.insert("entropy_out".into(), json!(out.display().to_string()));
        }
        for (key, path) in self.report.iter().flat_map(|r| [("per_class_out", &r.per_class), ("plot", &r.plot)]) {
            if let Some(path) = path {
                fields.insert(key.into(), json!(path.display().to_string()));
            }
        }
        line
    }
}

pub use xent::json::number;

/// A progress bar on stderr, drawn only when stderr is a terminal and the run has taken
/// over a second, so scripts and short runs see nothing.
pub(crate) struct Progress {
    bar: ProgressBar,
    started: Instant,
    enabled: bool,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    pub(crate) fn new(total_bytes: u64, quiet: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        let enabled = !quiet && std::io::stderr().is_terminal();
        Progress { bar, started: Instant::now(), enabled, shown: false.into() }
    }

    pub(crate) fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
        if self.enabled && !self.shown.get() && self.started.elapsed() > Duration::from_secs(1) {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown.set(true);
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
