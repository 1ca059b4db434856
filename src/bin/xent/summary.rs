//! The result for people: when stdout is a terminal (and `--json` is not given), a few
//! aligned lines instead of the JSON line, which scripts (stdout a pipe or a file) keep.

use std::io::IsTerminal;

use serde_json::Value;

/// Whether a result goes out as a summary for people rather than as the JSON line.
pub fn for_people(json: bool) -> bool {
    !json && std::io::stdout().is_terminal()
}

/// The summary of a file command's (or `demo`'s) JSON line: the value and what it is, the
/// scores, the shape, the speed and the adapter, one aligned `label  value` line each.
pub fn summary(v: &Value) -> String {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let num = |k: &str| {
        v.get(k).and_then(|x| x.as_f64().map(|f| format!("{f:.6}")).or_else(|| x.as_str().map(str::to_string)))
    };
    let command = text("command").unwrap_or_default();
    let reduction = text("reduction").unwrap_or_default();
    let unit = text("base").map(|b| format!(" {b}")).unwrap_or_default();
    let mut lines: Vec<(String, String)> = Vec::new();
    if let Some(value) = num("value") {
        let what = if reduction == "mean" { "mean" } else { "sum" };
        lines.push((command.clone(), format!("{value}{unit} ({what} over rows)")));
    }
    for (key, label) in [
        ("perplexity", "perplexity"),
        ("accuracy", "accuracy"),
        ("z_loss", "z-loss share"),
        ("entropy", "entropy"),
        ("reference", "f64 reference"),
        ("relative_error", "relative error"),
    ] {
        if let Some(x) = num(key) {
            // the entropy is in the loss's unit, a mean over the rows not ignored
            let x = if key == "entropy" { format!("{x}{unit} (mean over rows)") } else { x };
            lines.push((label.into(), x));
        }
    }
    // the evaluation report: top-k in k's order, then calibration and the Brier score
    let mut top: Vec<(u64, String)> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| Some((k.strip_prefix("top")?.parse().ok()?, k.clone())))
        .collect();
    top.sort();
    for (k, key) in top {
        lines.extend(num(&key).map(|x| (format!("top-{k}"), x)));
    }
    for (key, label) in [("ece", "ECE"), ("mce", "MCE"), ("brier", "Brier"), ("balanced_accuracy", "balanced acc.")] {
        lines.extend(num(key).map(|x| (label.to_string(), x)));
    }
    if let (Some(rows), Some(cols)) = (v["rows"].as_u64(), v["cols"].as_u64()) {
        let dtype = text("dtype").map(|d| format!(", {d}")).unwrap_or_default();
        lines.push(("rows".into(), format!("{rows} x {cols}{dtype}")));
    }
    if let Some(seconds) = v["seconds"].as_f64() {
        let speed = v["gbps"].as_f64().map(|g| format!(" ({g:.2} GB/s)")).unwrap_or_default();
        lines.push(("time".into(), format!("{seconds:.3} s{speed}")));
    }
    if let Some(adapter) = text("adapter") {
        let device = text("device").map(|d| format!(" [{d}]")).unwrap_or_default();
        lines.push(("adapter".into(), format!("{adapter}{device}")));
    }
    if let Some(out) = text("out") {
        lines.push(("out".into(), out));
    }
    let width = lines.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    lines.iter().map(|(l, r)| format!("{l:<width$}  {r}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::summary;

    #[test]
    fn a_summary_aligns_what_the_line_says() {
        let line = json!({"command": "ce", "rows": 1000, "cols": 10, "reduction": "mean", "value": 2.5,
            "base": "nats", "perplexity": 12.18, "accuracy": 0.25, "dtype": "<f4", "seconds": 0.5,
            "gbps": 0.1, "adapter": "llvmpipe (Vulkan)", "device": "gpu", "z_loss": "nan", "entropy": 1.25,
            "top5": 0.75, "top1": 0.25, "top_correct": {"1": 250, "5": 750}, "ece": 0.125, "brier": 0.5});
        let s = summary(&line);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "ce            2.500000 nats (mean over rows)");
        assert!(lines.contains(&"perplexity    12.180000"), "{s}");
        assert!(lines.contains(&"z-loss share  nan"), "{s}");
        assert!(lines.contains(&"entropy       1.250000 nats (mean over rows)"), "{s}");
        assert!(lines.contains(&"rows          1000 x 10, <f4"), "{s}");
        let top1 = lines.iter().position(|l| *l == "top-1         0.250000");
        assert!(top1.is_some() && lines[top1.unwrap() + 1] == "top-5         0.750000", "{s}");
        assert!(lines.contains(&"ECE           0.125000") && lines.contains(&"Brier         0.500000"), "{s}");
        assert!(lines.contains(&"time          0.500 s (0.10 GB/s)"), "{s}");
        assert!(lines.contains(&"adapter       llvmpipe (Vulkan) [gpu]"), "{s}");
    }
}
