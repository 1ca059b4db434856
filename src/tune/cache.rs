//! The tuner's choices on disk: one JSON file (`XENT_TUNE_CACHE`, else
//! `$XDG_CACHE_HOME/xent/tune.json`, else `~/.cache/xent/tune.json`) holding, per device
//! fingerprint (adapter, driver, backend, shaders, version), the layout chosen for each
//! dispatch key:
//!
//! ```json
//! {"xent_tune": 1, "devices": {"<fingerprint>": {"<key>": "64x8"}}}
//! ```
//!
//! Written atomically (a file of its own beside it, then renamed over it), after reading
//! what is there again, so that processes tuning at once keep each other's choices; a
//! choice already on disk is kept, never replaced. A file that is not the tuner's, or not
//! JSON, is left as it is and ignored, with one note.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::layout::RowLayout;

/// The cache's path: `XENT_TUNE_CACHE`, else under `$XDG_CACHE_HOME` or `~/.cache`.
pub(crate) fn path() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("XENT_TUNE_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("xent").join("tune.json")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("xent").join("tune.json")))
}

/// What a file holds, read: the tuner's devices, or why it is not used.
fn read(path: &Path) -> Result<Map<String, Value>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON ({e})", path.display()))?;
    match (value.get("xent_tune"), value.get("devices")) {
        (Some(v), Some(Value::Object(devices))) if v == 1 => Ok(devices.clone()),
        _ => Err(format!("{}: not the tuner's cache", path.display())),
    }
}

/// The choices kept for `fingerprint` in the file at `path`, or a note on why none could be
/// read (a missing file is no note: nothing is tuned yet).
pub(crate) fn load(path: &Path, fingerprint: &str) -> (HashMap<String, RowLayout>, Option<String>) {
    match read(path) {
        Ok(devices) => {
            let choices = devices
                .get(fingerprint)
                .and_then(Value::as_object)
                .map(|keys| {
                    keys.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse::<RowLayout>().ok()?))).collect()
                })
                .unwrap_or_default();
            (choices, None)
        }
        Err(why) => (HashMap::new(), Some(format!("the tuner's cache is ignored: {why}"))),
    }
}

/// Adds `choices` for `fingerprint` to the file at `path` (choices already there are kept),
/// atomically; an error says why nothing was written.
pub(crate) fn save(path: &Path, fingerprint: &str, choices: &HashMap<String, RowLayout>) -> Result<(), String> {
    let mut devices = read(path)?;
    let entry = devices.entry(fingerprint.to_string()).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(keys) = entry else { return Err(format!("{}: not the tuner's cache", path.display())) };
    for (k, layout) in choices {
        keys.entry(k.clone()).or_insert_with(|| json!(layout.to_string()));
    }
    let text = json!({"xent_tune": 1, "devices": devices}).to_string();
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = path.file_name().map_or_else(|| "tune.json".into(), |n| n.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip_and_are_never_replaced() {
        let dir = std::env::temp_dir().join(format!("xent-tune-test-{}", std::process::id()));
        let path = dir.join("sub").join("tune.json");
        let layout = |s: &str| s.parse::<RowLayout>().unwrap();
        assert_eq!(load(&path, "dev").0.len(), 0);
        assert!(load(&path, "dev").1.is_none(), "a missing file is no note");
        save(&path, "dev", &HashMap::from([("k1".to_string(), layout("64x8"))])).unwrap();
        // another process's choices beside, and an attempt to replace one
        save(&path, "dev", &HashMap::from([("k1".to_string(), layout("32x1")), ("k2".into(), layout("256x32"))]))
            .unwrap();
        save(&path, "other", &HashMap::from([("k1".to_string(), layout("8x1"))])).unwrap();
        let (got, note) = load(&path, "dev");
        assert!(note.is_none());
        assert_eq!(got, HashMap::from([("k1".to_string(), layout("64x8")), ("k2".to_string(), layout("256x32"))]));
        assert_eq!(load(&path, "other").0["k1"], layout("8x1"));
        // a file that is not the tuner's is left alone, with a note
        std::fs::write(&path, "{\"mine\": true}").unwrap();
        let (got, note) = load(&path, "dev");
        assert!(got.is_empty() && note.unwrap().contains("not the tuner's"));
        assert!(save(&path, "dev", &HashMap::from([("k".to_string(), layout("8x1"))])).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"mine\": true}");
        std::fs::write(&path, "garbage").unwrap();
        assert!(load(&path, "dev").1.unwrap().contains("not JSON"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
