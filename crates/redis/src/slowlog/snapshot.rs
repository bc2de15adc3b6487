//! The slow log and the server's threshold.

use serde::Serialize;

/// One slow log entry.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SlowEntry {
    pub id: i64,
    /// Unix time (seconds) the command ran.
    pub at: i64,
    pub duration_us: i64,
    /// The command and its arguments as Redis stored them (already truncated by Redis:
    /// 32 arguments, 128 bytes each).
    pub args: Vec<String>,
    pub client: String,
    pub client_name: String,
}

impl SlowEntry {
    pub fn command_line(&self) -> String {
        self.args.join(" ")
    }
}

/// The slow log and the server's threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SlowlogSnapshot {
    pub entries: Vec<SlowEntry>,
    /// `slowlog-log-slower-than` in µs, when CONFIG GET is allowed.
    pub log_slower_than_us: Option<i64>,
    pub config_unavailable: Option<String>,
}
