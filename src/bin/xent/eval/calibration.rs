//! The evaluation report's files: the per-class table (`--per-class`, CSV) and the
//! reliability diagram (`--plot`, SVG), each written whole or not at all.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value, json};
use xent::metrics::{Bin, BinaryBin, BinaryMetrics, ClassCounts, Metrics, MetricsSpec};

use super::number;
use crate::Failure;

/// `class,support,correct,recall,predicted,mean_confidence` a line per class: recall of
/// the rows labelled with it, and the mean confidence of the rows predicted as it (`nan`
/// where there are none).
pub fn per_class_csv(m: &Metrics) -> String {
    let mut s = String::from("class,support,correct,recall,predicted,mean_confidence\n");
    for (class, c) in m.classes.iter().flatten().enumerate() {
        let recall = c.correct as f64 / c.support as f64;
        let confidence = c.predicted_confidence_sum / c.predicted as f64;
        let _ = writeln!(s, "{class},{},{},{recall},{},{confidence}", c.support, c.correct, c.predicted);
    }
    s
}

/// The reliability diagram (Guo et al. 2017): per confidence bin, the accuracy as a bar
/// and the mean confidence as a point, against the diagonal of perfect calibration;
/// below, the rows in each bin.
pub fn reliability_svg(m: &Metrics, title: &str) -> Result<String, Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 640)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(460);
        let width = 1.0 / m.bins.len() as f64;
        let mut chart = ChartBuilder::on(&top)
            .caption(format!("{title}: ECE {:.4}, MCE {:.4}", m.ece(), m.mce()), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
        chart.configure_mesh().x_desc("confidence").y_desc("accuracy").draw()?;
        let bins = m.bins.iter().enumerate().filter(|(_, b)| b.count > 0);
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(bins.clone().map(|(i, b)| {
                let x = i as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, b.accuracy())], blue.mix(0.7).filled())
            }))?
            .label("accuracy")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], blue.mix(0.7).filled()));
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(
                bins.clone().map(|(i, b)| Circle::new(((i as f64 + 0.5) * width, b.confidence()), 4, red.filled())),
            )?
            .label("mean confidence")
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, red.filled()));
        chart
            .draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 4, BLACK.stroke_width(1)))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).border_style(BLACK).draw()?;

        let most = m.bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
        let mut counts = ChartBuilder::on(&bottom)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..1.0, 0.0..most * 1.1)?;
        counts
            .configure_mesh()
            .x_desc("confidence")
            .y_desc("rows")
            .y_labels(4)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        counts.draw_series(bins.map(|(i, b)| {
            let x = i as f64 * width;
            Rectangle::new([(x, 0.0), (x + width, b.count as f64)], RGBColor(127, 127, 127).filled())
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// Writes `text` to `path`, whole or not at all.
pub fn write(path: &Path, text: &str) -> Result<(), Failure> {
    Ok(xent::npy::write_whole(path, text.as_bytes())?)
}

/// The report's fields of the JSON line: the metrics, and the counts and sums an exact
/// merge of shards needs (`xent merge` reads them back with [`from_fields`]); the
/// per-class counts only with `per_class` (a million classes make a long line).
pub fn fields(m: &Metrics, per_class: bool) -> Map<String, Value> {
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

/// The report of a JSON line's fields (see [`fields`]): `None` where the line has none,
/// or not all of it.
pub fn from_fields(line: &Map<String, Value>) -> Option<Metrics> {
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

/// A JSON number, or the strings [`number`] writes for non-finite values.
fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
