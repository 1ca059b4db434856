//! The bench's outputs besides JSON: a table row per measurement and an SVG plot.

use plotters::style::RGBColor;
use serde_json::Value;

/// The colours of the operations' lines, in turn.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// GB/s against columns (log scale), one line per operation and one panel per dtype,
/// with the copy kernel's speed over the same bytes as a dashed roofline.
pub(super) fn plot(
    path: &std::path::Path,
    lines: &[Value],
    adapter: &str,
    timing: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let field = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let dtypes: Vec<&str> = ["f32", "f16"].into_iter().filter(|d| lines.iter().any(|l| l["dtype"] == *d)).collect();
    let root = SVGBackend::new(path, (640 * dtypes.len().max(1) as u32, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, dtypes.len().max(1)));
    for (panel, dtype) in panels.iter().zip(&dtypes) {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["dtype"] == *dtype).collect();
        let cols = |v: &Value| field(v, "cols");
        let (lo, hi) = mine.iter().fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(cols(v)), hi.max(cols(v))));
        let top = mine.iter().map(|v| field(v, "gbps").max(field(v, "copy_gbps"))).fold(0.0f64, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{dtype} on {adapter} ({timing} timing)"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((lo.min(hi) * 0.8..hi * 1.25).log_scale(), 0.0..top * 1.1)?;
        chart.configure_mesh().x_desc("columns").y_desc("GB/s").x_label_formatter(&|x| format!("{x:.0}")).draw()?;
        let ops = ops_in(&mine);
        let series = |op: Option<&str>, key: &str| -> Vec<(f64, f64)> {
            let mut pts: Vec<(f64, f64)> =
                mine.iter().filter(|v| op.is_none_or(|o| v["op"] == o)).map(|v| (cols(v), field(v, key))).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            pts.dedup_by(|a, b| a.0 == b.0);
            pts
        };
        let roof = series(None, "copy_gbps");
        chart
            .draw_series(DashedLineSeries::new(roof, 6, 4, BLACK.stroke_width(2)))?
            .label("copy (roofline)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        for (i, op) in ops.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = series(Some(op), "gbps");
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(*op)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

pub(super) fn table_row(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    format!(
        "{:<12} {:>8} {:>8} {:>5} {:>10.3} {:>8.2} {:>9} {:>9} {:>9}",
        v["op"].as_str().unwrap_or(""),
        v["rows"],
        v["cols"],
        v["dtype"].as_str().unwrap_or(""),
        v["seconds"].as_f64().unwrap_or(f64::NAN) * 1e3,
        v["gbps"].as_f64().unwrap_or(f64::NAN),
        f("copy_ratio"),
        f("naive_ratio"),
        f("cpu_ratio"),
    )
}

/// The operations of `lines`, each once, in their order.
fn ops_in<'v>(lines: &[&'v Value]) -> Vec<&'v str> {
    let mut ops: Vec<&str> = Vec::new();
    for op in lines.iter().filter_map(|v| v["op"].as_str()) {
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
    ops
}
