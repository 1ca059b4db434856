//! A file command's result as a JSON object: the evaluation report's fields, read back and
//! written, and the exact merge of shards' results (`xent merge`, and the Python package's
//! `xent.merge`): sums and counts add, and the means, accuracy and perplexity follow from
//! them as they do for one run.
//!
//! Non-finite numbers are the strings `"nan"`, `"inf"` and `"-inf"` ([`number`]).

use std::fmt;

use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::metrics::{Bin, BinaryBin, BinaryMetrics, ClassCounts, Metrics, MetricsSpec};

/// A JSON number, or the strings "inf", "-inf", "nan" for non-finite values.
pub fn number(v: f64) -> Value {
    if v.is_nan() {
        json!("nan")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(v)
    }
}

/// A JSON number, or the strings [`number`] writes for non-finite values.
pub fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The report's fields of the JSON line: the metrics, and the counts and sums an exact
/// merge of shards needs ([`report_from_fields`] reads them back); the per-class counts
/// only with `per_class` (a million classes make a long line).
pub fn report_fields(m: &Metrics, per_class: bool) -> Map<String, Value> {
    let mut f = Map::new();
    for (k, accuracy) in m.top_k_accuracy() {
        f.insert(format!("top{k}"), number(accuracy));
    }
    let hits: Map<String, Value> = m.spec.top_k.iter().zip(&m.hits).map(|(k, h)| (k.to_string(), json!(h))).collect();
    f.insert("top_correct".into(), Value::Object(hits));
    f.insert("ece".into(), number(m.ece()));
    f.insert("mce".into(), number(m.mce()));
    f.insert("brier".into(), number(m.brier()));
    f.insert("brier_sum".into(), number(m.brier_sum));
    if let Some(b) = m.balanced_accuracy() {
        f.insert("balanced_accuracy".into(), number(b));
    }
    let bins: Vec<Value> = m
        .bins
        .iter()
        .map(|b| {
            json!({"count": b.count, "correct": b.correct, "confidence_sum": number(b.confidence_sum),
                   "accuracy": number(b.accuracy()), "confidence": number(b.confidence())})
        })
        .collect();
    f.insert("calibration".into(), json!({"bins": bins, "nan_rows": m.nan_rows}));
    if let (true, Some(classes)) = (per_class, &m.classes) {
        let column = |g: fn(&ClassCounts) -> Value| Value::Array(classes.iter().map(g).collect());
        f.insert(
            "per_class".into(),
            json!({
                "support": column(|c| json!(c.support)),
                "correct": column(|c| json!(c.correct)),
                "predicted": column(|c| json!(c.predicted)),
                "predicted_confidence_sum": column(|c| number(c.predicted_confidence_sum)),
            }),
        );
    }
    f
}

/// The report of a JSON line's fields (see [`report_fields`]): `None` where the line has
/// none, or not all of it.
pub fn report_from_fields(line: &Map<String, Value>) -> Option<Metrics> {
    let count = |v: &Value| v.as_u64();
    let hits = line.get("top_correct")?.as_object()?;
    let mut top: Vec<(u32, u64)> =
        hits.iter().map(|(k, v)| Some((k.parse().ok()?, count(v)?))).collect::<Option<_>>()?;
    top.sort();
    let calibration = line.get("calibration")?;
    let bins = calibration.get("bins")?.as_array()?;
    let per_class = line.get("per_class");
    let spec = MetricsSpec {
        top_k: top.iter().map(|t| t.0).collect(),
        bins: bins.len() as u32,
        per_class: per_class.is_some(),
        classes: line.get("cols").and_then(Value::as_u64)? as u32,
    };
    let mut m = Metrics::new(spec).ok()?;
    m.rows = line.get("counted").and_then(count)?;
    m.correct = line.get("correct").and_then(count)?;
    m.hits = top.iter().map(|t| t.1).collect();
    m.nan_rows = calibration.get("nan_rows").and_then(count)?;
    m.brier_sum = float(line.get("brier_sum")?)?;
    for (bin, v) in m.bins.iter_mut().zip(bins) {
        *bin = Bin {
            count: count(v.get("count")?)?,
            correct: count(v.get("correct")?)?,
            confidence_sum: float(v.get("confidence_sum")?)?,
        };
    }
    if let (Some(p), Some(classes)) = (per_class, &mut m.classes) {
        let column = |key: &str| p.get(key).and_then(Value::as_array).filter(|a| a.len() == classes.len());
        let (s, c, n, sum) =
            (column("support")?, column("correct")?, column("predicted")?, column("predicted_confidence_sum")?);
        for (i, class) in classes.iter_mut().enumerate() {
            *class = ClassCounts {
                support: count(&s[i])?,
                correct: count(&c[i])?,
                predicted: count(&n[i])?,
                predicted_confidence_sum: float(&sum[i])?,
            };
        }
    }
    Some(m)
}

/// The binary report's fields (`bce`): accuracy at 0.5 over the elements, calibration and
/// the Brier score, with the counts and sums a merge needs.
pub fn binary_fields(m: &BinaryMetrics) -> Map<String, Value> {
    let bins: Vec<Value> = m
        .bins
        .iter()
        .map(|b| {
            json!({"count": b.count, "target_sum": number(b.target_sum), "probability_sum": number(b.probability_sum),
                   "accuracy": number(b.target_mean()), "confidence": number(b.probability_mean())})
        })
        .collect();
    let mut f = Map::new();
    f.insert("accuracy".into(), number(m.accuracy()));
    f.insert("correct".into(), json!(m.correct));
    f.insert("counted".into(), json!(m.elements));
    f.insert("ece".into(), number(m.ece()));
    f.insert("mce".into(), number(m.mce()));
    f.insert("brier".into(), number(m.brier()));
    f.insert("brier_sum".into(), number(m.brier_sum));
    f.insert("calibration".into(), json!({"bins": bins, "nan_elements": m.nan_elements}));
    f
}

/// The binary report of a `bce` line's fields (see [`binary_fields`]).
pub fn binary_from_fields(line: &Map<String, Value>) -> Option<BinaryMetrics> {
    let calibration = line.get("calibration")?;
    let bins = calibration.get("bins")?.as_array()?;
    let mut m = BinaryMetrics::new(bins.len() as u32).ok()?;
    m.elements = line.get("counted")?.as_u64()?;
    m.correct = line.get("correct")?.as_u64()?;
    m.nan_elements = calibration.get("nan_elements")?.as_u64()?;
    m.brier_sum = float(line.get("brier_sum")?)?;
    for (bin, v) in m.bins.iter_mut().zip(bins) {
        *bin = BinaryBin {
            count: v.get("count")?.as_u64()?,
            target_sum: float(v.get("target_sum")?)?,
            probability_sum: float(v.get("probability_sum")?)?,
        };
    }
    Some(m)
}

/// Fields every shard must agree on: one operation over one kind of input.
pub const SAME: [&str; 5] = ["command", "cols", "reduction", "base", "dtype"];

/// Why shards' results do not merge.
#[derive(Debug)]
#[non_exhaustive]
pub enum MergeError {
    /// No shards.
    Empty,
    /// Shard `shard` (0-based) says `value` for one of [`SAME`], the first shard `first`.
    Disagree {
        /// The shard at fault.
        shard: usize,
        /// The field.
        key: &'static str,
        /// Its value in the shard.
        value: Value,
        /// Its value in the first shard.
        first: Value,
    },
    /// Shard `shard` lacks `key`: it is not the result of a file command.
    Missing {
        /// The shard at fault.
        shard: usize,
        /// The field.
        key: &'static str,
    },
    /// The shards' reports differ in top-k, bins or classes.
    Report(Error),
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeError::Empty => write!(f, "no results to merge"),
            MergeError::Disagree { shard, key, value, first } => {
                write!(f, "shard {shard}: {key} is {value} but shard 0 says {first}; shards of one set must agree")
            }
            MergeError::Missing { shard, key } => {
                write!(f, "shard {shard}: no {key:?}: not the result of a file command")
            }
            MergeError::Report(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MergeError {}

/// A number of a shard's line: JSON numbers, and the strings of non-finite values.
fn value(shard: &Map<String, Value>, key: &str) -> Option<f64> {
    float(shard.get(key)?)
}

/// The evaluation report of the whole set, where every shard carries one (per-class counts
/// only where every shard has them).
fn merged_report(shards: &[Map<String, Value>]) -> Result<Option<Map<String, Value>>, MergeError> {
    let Some(reports) = shards.iter().map(report_from_fields).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let per_class = reports.iter().all(|r| r.spec.per_class);
    let strip = |mut r: Metrics| {
        if !per_class {
            r.spec.per_class = false;
            r.classes = None;
        }
        r
    };
    let mut reports = reports.into_iter().map(strip);
    let Some(mut whole) = reports.next() else { return Ok(None) };
    for r in reports {
        whole.merge(&r).map_err(MergeError::Report)?;
    }
    Ok(Some(report_fields(&whole, per_class)))
}

/// The binary report (`bce`) of the whole set, where every shard carries one.
fn merged_binary(shards: &[Map<String, Value>]) -> Result<Option<Map<String, Value>>, MergeError> {
    let Some(reports) = shards.iter().map(binary_from_fields).collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let Some((first, rest)) = reports.split_first() else { return Ok(None) };
    let mut whole = first.clone();
    for r in rest {
        whole.merge(r).map_err(MergeError::Report)?;
    }
    Ok(Some(binary_fields(&whole)))
}

/// The result of a whole set from its shards' results, in their order (the sums add in
/// f64 in that order, so the same shards in the same order give the same bits).
pub fn merge(shards: &[Map<String, Value>]) -> Result<Value, MergeError> {
    let first = shards.first().ok_or(MergeError::Empty)?;
    for (i, shard) in shards.iter().enumerate() {
        for key in SAME {
            if shard.get(key) != first.get(key) {
                let (value, first) = (shard.get(key).cloned(), first.get(key).cloned());
                let (value, first) = (value.unwrap_or(Value::Null), first.unwrap_or(Value::Null));
                return Err(MergeError::Disagree { shard: i, key, value, first });
            }
        }
        for key in ["rows", "sum", "denominator"] {
            if value(shard, key).is_none() {
                return Err(MergeError::Missing { shard: i, key });
            }
        }
    }
    let total = |key: &str| -> Option<f64> { shards.iter().map(|s| value(s, key)).sum() };
    let count = |key: &str| -> Option<u64> { shards.iter().map(|s| s.get(key).and_then(Value::as_u64)).sum() };
    let (sum, denominator) = (total("sum").unwrap_or(f64::NAN), total("denominator").unwrap_or(f64::NAN));
    let mean = sum / denominator;
    let mut line = Map::new();
    for key in SAME {
        if let Some(v) = first.get(key) {
            line.insert(key.into(), v.clone());
        }
    }
    let reduction = first.get("reduction").and_then(Value::as_str).unwrap_or("mean");
    line.insert("rows".into(), json!(count("rows")));
    line.insert("value".into(), number(if reduction == "mean" { mean } else { sum }));
    line.insert("sum".into(), number(sum));
    line.insert("denominator".into(), number(denominator));
    line.insert("mean".into(), number(mean));
    if let (Some(correct), Some(counted)) = (count("correct"), count("counted")) {
        line.insert("accuracy".into(), number(correct as f64 / counted as f64));
        line.insert("correct".into(), json!(correct));
        line.insert("counted".into(), json!(counted));
        // exp of the mean in nats: bits are scaled back (cross-entropy's, not bce's)
        let nats = if first.get("base").and_then(Value::as_str) == Some("bits") { std::f64::consts::LN_2 } else { 1.0 };
        if first.get("command").and_then(Value::as_str) == Some("ce") {
            line.insert("perplexity".into(), number((mean * nats).exp()));
        }
    }
    if first.get("command").and_then(Value::as_str) == Some("bce") {
        line.extend(merged_binary(shards)?.unwrap_or_default());
    } else if let Some(report) = merged_report(shards)? {
        line.extend(report);
    }
    if let Some(z_sum) = total("z_sum") {
        line.insert("z_loss".into(), number(z_sum / denominator));
        line.insert("z_sum".into(), number(z_sum));
    }
    if let Some(entropy_sum) = total("entropy_sum") {
        // over the rows not ignored: counted with labels, else every row
        let rows = count("counted").or_else(|| count("rows")).unwrap_or(0);
        line.insert("entropy".into(), number(entropy_sum / rows as f64));
        line.insert("entropy_sum".into(), number(entropy_sum));
    }
    for key in ["seconds", "bytes"] {
        if let Some(t) = total(key) {
            line.insert(key.into(), json!(t));
        }
    }
    line.insert("shards".into(), json!(shards.len()));
    Ok(Value::Object(line))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// A merge is exact only if every sum a shard wrote reads back to the same bits: the
    /// shortest decimal that `number` writes must parse to the very double it came from
    /// (serde_json's default parser misses by a unit in the last place on about one in five
    /// of these; its `float_roundtrip` feature rounds correctly).
    #[test]
    fn numbers_read_back_to_the_same_bits() {
        let mut rng = StdRng::seed_from_u64(26);
        let mut values: Vec<f64> =
            (0..20_000).map(|_| f64::from_bits(rng.random())).filter(|v| v.is_finite()).collect();
        values.extend((0..20_000).map(|_| rng.random_range(-1e6..1e6)));
        // 1.1225179507696195: a quotient of two timings that the default parser read as ...197
        values.extend([1.1225179507696195, 5e-324, f64::MAX, f64::MIN_POSITIVE, -0.0, 0.1]);
        for v in values {
            let text = serde_json::to_string(&number(v)).unwrap();
            let back = float(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{text}");
        }
    }
}
