//! SLOWLOG GET: the newest entries, and the threshold from CONFIG GET where allowed.

use super::snapshot::{SlowEntry, SlowlogSnapshot};
use crate::conn::{as_array, as_int, as_string, config_get, Conn};
use crate::error::RedisError;

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
pub async fn collect(conn: &mut Conn, count: u32) -> Result<SlowlogSnapshot, RedisError> {
    let mut c = redis::cmd("SLOWLOG");
    c.arg("GET").arg(count);
    let v: redis::Value = conn.query(c, "SLOWLOG GET").await?;
    if let Some(reason) = crate::conn::server_error(&v) {
        return Err(RedisError::Query {
            url: conn.url.redacted.clone(),
            command: "SLOWLOG GET".into(),
            reason,
        });
    }
    let entries = parse(&v).map_err(|reason| RedisError::Parse {
        url: conn.url.redacted.clone(),
        what: "the reply to SLOWLOG GET".into(),
        reason,
    })?;
    let (log_slower_than_us, config_unavailable) =
        match config_get(conn, "slowlog-log-slower-than").await {
            Ok(v) => (v.and_then(|v| v.parse().ok()), None),
            Err(reason) => (None, Some(reason)),
        };
    Ok(SlowlogSnapshot {
        entries,
        log_slower_than_us,
        config_unavailable,
    })
}
