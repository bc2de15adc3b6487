//! The slow log as a table: when, duration, command, client.

use super::snapshot::SlowlogSnapshot;
use powertune_core::report::{table, truncate};
use powertune_core::units;

/// The slow log as a table: when, duration, command, client.
pub fn render(s: &SlowlogSnapshot) -> String {
    if s.entries.is_empty() {
        return format!(
            "SLOWLOG: empty{}\n",
            s.log_slower_than_us
                .map(|t| format!(
                    " (logs commands slower than {})",
                    units::ms(t as f64 / 1000.0)
                ))
                .unwrap_or_default()
        );
    }
    let mut rows = vec![vec![
        "when (UTC)".to_string(),
        "duration".into(),
        "command".into(),
        "client".into(),
    ]];
    for e in &s.entries {
        let when = chrono::DateTime::from_timestamp(e.at, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| e.at.to_string());
        let client = if e.client_name.is_empty() {
            e.client.clone()
        } else {
            format!("{} ({})", e.client, e.client_name)
        };
        rows.push(vec![
            when,
            units::ms(e.duration_us as f64 / 1000.0),
            truncate(&e.command_line(), 80),
            client,
        ]);
    }
    format!("SLOWLOG GET {}\n{}", s.entries.len(), table(&rows))
}
