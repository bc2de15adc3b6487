//! The INFO collector: INFO, CONFIG GET maxclients when INFO lacks it, and whether the
//! selected database holds Sidekiq keys.

use super::snapshot::{parse_info, snapshot_from_info, InfoSnapshot};
use crate::conn::{config_get, Conn};
use crate::error::RedisError;

/// Reads INFO (plus CONFIG GET maxclients when INFO lacks it) and whether the selected
/// database holds Sidekiq keys.
pub async fn collect(conn: &mut Conn) -> Result<InfoSnapshot, RedisError> {
    let text: String = conn.query(redis::cmd("INFO"), "INFO").await?;
    let fields = parse_info(&text);
    let mut snap =
        snapshot_from_info(&fields, conn.url.db).map_err(|reason| RedisError::Parse {
            url: conn.url.redacted.clone(),
            what: "INFO".into(),
            reason,
        })?;
    if snap.maxclients.is_none() {
        match config_get(conn, "maxclients").await {
            Ok(v) => snap.maxclients = v.and_then(|v| v.parse().ok()),
            Err(reason) => snap.config_unavailable = Some(reason),
        }
    }
    let mut p = redis::pipe();
    p.cmd("EXISTS")
        .arg("queues")
        .arg("processes")
        .arg("stat:processed");
    let v = conn.pipe(&mut p, "EXISTS").await?;
    snap.sidekiq_keys = v.first().and_then(crate::conn::as_int).unwrap_or(0) > 0;
    Ok(snap)
}
