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
            args: redact_args(
                as_array(&e[3])
                    .ok_or("entry arguments are not an array")?
                    .iter()
                    .filter_map(as_string)
                    .collect(),
            ),
            client: e.get(4).and_then(as_string).unwrap_or_default(),
            client_name: e.get(5).and_then(as_string).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A slow command's arguments with its secrets masked before they reach a report:
/// the password of `AUTH`, `HELLO … AUTH user pass`, `MIGRATE … AUTH pass` /
/// `AUTH2 user pass`, `CONFIG SET requirepass|masterauth|masteruser value`, and any
/// pattern of the secrets policy (`redact::text`) in an argument. Redis 7 masks most
/// of these itself; older servers do not.
pub fn redact_args(mut args: Vec<String>) -> Vec<String> {
    use powertune_core::redact::{self, MASK};
    let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
    let mut mask = vec![false; args.len()];
    let cmd = upper.first().map(String::as_str).unwrap_or("");
    if cmd == "AUTH" {
        mask.iter_mut().skip(1).for_each(|m| *m = true);
    }
    for (i, a) in upper.iter().enumerate().skip(1) {
        match a.as_str() {
            "AUTH" if cmd == "HELLO" => {
                mask.iter_mut().skip(i + 2).take(1).for_each(|m| *m = true);
            }
            "AUTH" if cmd == "MIGRATE" => {
                mask.iter_mut().skip(i + 1).take(1).for_each(|m| *m = true);
            }
            "AUTH2" if cmd == "MIGRATE" => {
                mask.iter_mut().skip(i + 2).take(1).for_each(|m| *m = true);
            }
            "REQUIREPASS" | "MASTERAUTH" | "MASTERUSER" if cmd == "CONFIG" => {
                mask.iter_mut().skip(i + 1).take(1).for_each(|m| *m = true);
            }
            _ => {}
        }
    }
    for (a, m) in args.iter_mut().zip(mask) {
        *a = if m { MASK.to_string() } else { redact::text(a) };
    }
    args
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        redact_args(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn slow_commands_lose_their_secrets() {
        assert_eq!(v(&["AUTH", "hunter2"]), ["AUTH", "***"]);
        assert_eq!(v(&["auth", "app", "hunter2"]), ["auth", "***", "***"]);
        assert_eq!(
            v(&["HELLO", "3", "AUTH", "app", "hunter2"]),
            ["HELLO", "3", "AUTH", "app", "***"]
        );
        assert_eq!(
            v(&["MIGRATE", "h", "6379", "k", "0", "5000", "AUTH", "hunter2"]),
            ["MIGRATE", "h", "6379", "k", "0", "5000", "AUTH", "***"]
        );
        assert_eq!(
            v(&["MIGRATE", "h", "6379", "k", "0", "5000", "AUTH2", "u", "hunter2"]),
            ["MIGRATE", "h", "6379", "k", "0", "5000", "AUTH2", "u", "***"]
        );
        assert_eq!(
            v(&["CONFIG", "SET", "requirepass", "hunter2"]),
            ["CONFIG", "SET", "requirepass", "***"]
        );
        let s = v(&["SET", "cfg", "redis://:hunter2@cache:6379/0"]);
        assert_eq!(s[2], "redis://:***@cache:6379/0");
        assert_eq!(v(&["GET", "auth"]), ["GET", "auth"]);
        assert_eq!(v(&["KEYS", "*"]), ["KEYS", "*"]);
    }
}
