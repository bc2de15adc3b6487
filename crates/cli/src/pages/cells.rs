//! Reading a report's metrics JSON by key (tolerating missing or mistyped keys, so
//! reports from older versions still render) and formatting table cells.

use powertune_core::units;
use serde_json::Value;

/// The number at `key`, if it is one.
pub fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The string at `key`; another value as JSON; nothing as empty.
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The array at `key`, or none.
pub fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A table's header row.
pub fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Milliseconds, or `-` when unknown.
pub fn ms_cell(v: Option<f64>) -> String {
    v.map(units::ms).unwrap_or_else(|| "-".into())
}

/// A count, or `-` when unknown.
pub fn count_cell(v: Option<f64>) -> String {
    v.map(units::count).unwrap_or_else(|| "-".into())
}
