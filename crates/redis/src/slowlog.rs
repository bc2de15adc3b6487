//! SLOWLOG GET: the newest entries as a table, with a finding for each entry slower
//! than the target.

use crate::conn::{as_array, as_int, as_string, Conn};
use crate::error::Error;
use powertune_core::report::{table, truncate};
use powertune_core::targets::RedisTargets;
use powertune_core::{Finding, Verdict};
use serde::Serialize;

/// One slow log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlowlogSnapshot {
    pub entries: Vec<SlowEntry>,
    /// `slowlog-log-slower-than` in µs, when CONFIG GET is allowed.
    pub log_slower_than_us: Option<i64>,
    pub config_unavailable: Option<String>,
}

/// Parses the reply of SLOWLOG GET.
pub fn parse(v: &redis::Value) -> Result<Vec<SlowEntry>, String> {
    let items = as_array(v).ok_or("the reply is not an array")?;
    let mut out = Vec::new();
    for item in items {
        let e = as_array(item).ok_or("an entry is not an array")?;
        if e.len() < 4 {
            return Err(format!("an entry has {} fields, expected 4 to 6", e.len()));
        }
        out.push(SlowEntry {
            id: as_int(&e[0]).ok_or("entry id is not an integer")?,
            at: as_int(&e[1]).ok_or("entry time is not an integer")?,
            duration_us: as_int(&e[2]).ok_or("entry duration is not an integer")?,
            args: as_array(&e[3])
                .ok_or("entry arguments are not an array")?
                .iter()
                .filter_map(as_string)
                .collect(),
            client: e.get(4).and_then(as_string).unwrap_or_default(),
            client_name: e.get(5).and_then(as_string).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// SLOWLOG GET `count` and the configured threshold.
pub async fn collect(conn: &mut Conn, count: u32) -> Result<SlowlogSnapshot, Error> {
    let mut c = redis::cmd("SLOWLOG");
    c.arg("GET").arg(count);
    let v: redis::Value = conn.query(c, "SLOWLOG GET").await?;
    if let Some(reason) = crate::conn::server_error(&v) {
        return Err(Error::Query {
            url: conn.url.redacted.clone(),
            command: "SLOWLOG GET".into(),
            reason,
        });
    }
    let entries = parse(&v).map_err(|reason| Error::Parse {
        url: conn.url.redacted.clone(),
        what: "the reply to SLOWLOG GET".into(),
        reason,
    })?;
    let (log_slower_than_us, config_unavailable) =
        match crate::info::config_get(conn, "slowlog-log-slower-than").await {
            Ok(v) => (v.and_then(|v| v.parse().ok()), None),
            Err(reason) => (None, Some(reason)),
        };
    Ok(SlowlogSnapshot {
        entries,
        log_slower_than_us,
        config_unavailable,
    })
}

/// The slow log as a table: when, duration, command, client.
pub fn render(s: &SlowlogSnapshot) -> String {
    if s.entries.is_empty() {
        return format!(
            "SLOWLOG: empty{}\n",
            s.log_slower_than_us
                .map(|t| format!(" (logs commands slower than {t} µs)"))
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
            format!("{:.1} ms", e.duration_us as f64 / 1000.0),
            truncate(&e.command_line(), 80),
            client,
        ]);
    }
    format!("SLOWLOG GET {}\n{}", s.entries.len(), table(&rows))
}

/// A finding per entry slower than `slowlog_ms`, or one PASS when none is.
pub fn judge(s: &SlowlogSnapshot, t: &RedisTargets) -> Vec<Finding> {
    let limit_us = t.slowlog_ms * 1000.0;
    let slow: Vec<&SlowEntry> = s
        .entries
        .iter()
        .filter(|e| e.duration_us as f64 > limit_us)
        .collect();
    if slow.is_empty() {
        return vec![
            Finding::new("redis", "slowlog", "SLOWLOG GET", Verdict::Pass)
                .observed(format!(
                    "{} entries, none over {} ms",
                    s.entries.len(),
                    t.slowlog_ms
                ))
                .target(format!("<= {} ms", t.slowlog_ms)),
        ];
    }
    slow.iter()
        .map(|e| {
            Finding::new("redis", "slowlog", truncate(&e.command_line(), 80), Verdict::Warn)
                .observed(format!("{:.1} ms", e.duration_us as f64 / 1000.0))
                .target(format!("<= {} ms", t.slowlog_ms))
                .evidence(format!("slowlog id {} at {} from {}", e.id, e.at, e.client))
                .action("Replace the O(N) command (KEYS, big HGETALL/SMEMBERS/LRANGE) with a SCAN-family call or restructure the key it touches")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_and_judges() {
        let v = Value::Array(vec![Value::Array(vec![
            Value::Int(7),
            Value::Int(1_700_000_000),
            Value::Int(25_000),
            Value::Array(vec![bulk("DEBUG"), bulk("SLEEP"), bulk("0.025")]),
            bulk("127.0.0.1:5000"),
            bulk(""),
        ])]);
        let entries = parse(&v).unwrap();
        assert_eq!(entries[0].command_line(), "DEBUG SLEEP 0.025");
        let s = SlowlogSnapshot {
            entries,
            ..Default::default()
        };
        let f = judge(&s, &RedisTargets::default());
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Warn);
        assert!(render(&s).contains("25.0 ms"));
        let f = judge(&SlowlogSnapshot::default(), &RedisTargets::default());
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert!(parse(&Value::Int(1)).is_err());
    }
}
