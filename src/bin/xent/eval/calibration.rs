//! The evaluation report's files: the per-class table (`--per-class`, CSV) and the
//! reliability diagram (`--plot`, SVG), each written whole or not at all.

use std::fmt::Write as _;
use std::path::Path;

use crate::Failure;
/// The report's fields of the JSON line (the library's, shared with `xent merge`).
pub use xent::json::{binary_fields, report_fields as fields};
use xent::metrics::Metrics;

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
