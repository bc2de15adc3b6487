//! What INFO (and CONFIG GET, where allowed) says about the server, and how INFO's
//! text becomes that snapshot.

use crate::baseline::Baseline;
use serde::Serialize;
use std::collections::BTreeMap;

/// One database's line of the `# Keyspace` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DbKeyspace {
    pub db: u32,
    pub keys: u64,
    pub expires: u64,
    pub avg_ttl_ms: u64,
}

/// What INFO (and CONFIG GET, where allowed) says about the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InfoSnapshot {
    pub redis_version: String,
    pub uptime_s: u64,
    pub used_memory: u64,
    pub used_memory_rss: u64,
    pub used_memory_peak: u64,
    /// 0 = no limit.
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub mem_fragmentation_ratio: f64,
    pub mem_fragmentation_bytes: i64,
    pub allocator_frag_ratio: f64,
    pub allocator_frag_bytes: i64,
    pub rss_overhead_ratio: f64,
    pub rss_overhead_bytes: i64,
    pub connected_clients: u64,
    /// None when neither INFO nor CONFIG GET gave it.
    pub maxclients: Option<u64>,
    pub blocked_clients: u64,
    pub rejected_connections: u64,
    pub evicted_keys: u64,
    pub expired_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub instantaneous_ops_per_sec: f64,
    pub total_commands_processed: u64,
    pub keyspace: Vec<DbKeyspace>,
    /// The database the URL selects.
    pub db: u32,
    /// Whether that database holds Sidekiq keys (`queues`, `processes`, `stat:processed`).
    pub sidekiq_keys: bool,
    /// Why CONFIG GET could not be used (managed Redis often disables it).
    pub config_unavailable: Option<String>,
}

impl InfoSnapshot {
    /// Average ops/s since start (`total_commands_processed / uptime`).
    pub fn avg_ops_per_sec(&self) -> f64 {
        if self.uptime_s == 0 {
            0.0
        } else {
            self.total_commands_processed as f64 / self.uptime_s as f64
        }
    }

    /// The ops/s baseline this snapshot makes (`--save-baseline`); `redis_url` names the
    /// server with its password removed.
    pub fn baseline(&self, redis_url: &str) -> Baseline {
        Baseline {
            instantaneous_ops_per_sec: self.instantaneous_ops_per_sec,
            avg_ops_per_sec: self.avg_ops_per_sec(),
            saved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            redis_url: redis_url.to_string(),
        }
    }
}

/// Parses INFO text into `field → value` (sections and comments dropped).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Builds the snapshot from parsed INFO fields. Fails when the text is not INFO.
pub fn snapshot_from_info(
    fields: &BTreeMap<String, String>,
    db: u32,
) -> Result<InfoSnapshot, String> {
    if !fields.contains_key("used_memory") || !fields.contains_key("redis_version") {
        return Err("the reply has no used_memory/redis_version fields".into());
    }
    let u = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let i = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let f = |k: &str| {
        fields
            .get(k)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut keyspace = Vec::new();
    for (k, v) in fields {
        if let Some(n) = k.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) {
            let mut d = DbKeyspace {
                db: n,
                ..Default::default()
            };
            for part in v.split(',') {
                if let Some((name, val)) = part.split_once('=') {
                    let val = val.parse::<u64>().unwrap_or(0);
                    match name {
                        "keys" => d.keys = val,
                        "expires" => d.expires = val,
                        "avg_ttl" => d.avg_ttl_ms = val,
                        _ => {}
                    }
                }
            }
            keyspace.push(d);
        }
    }
    keyspace.sort_by_key(|d| d.db);
    Ok(InfoSnapshot {
        redis_version: fields.get("redis_version").cloned().unwrap_or_default(),
        uptime_s: u("uptime_in_seconds"),
        used_memory: u("used_memory"),
        used_memory_rss: u("used_memory_rss"),
        used_memory_peak: u("used_memory_peak"),
        maxmemory: u("maxmemory"),
        maxmemory_policy: fields.get("maxmemory_policy").cloned().unwrap_or_default(),
        mem_fragmentation_ratio: f("mem_fragmentation_ratio"),
        mem_fragmentation_bytes: i("mem_fragmentation_bytes"),
        allocator_frag_ratio: f("allocator_frag_ratio"),
        allocator_frag_bytes: i("allocator_frag_bytes"),
        rss_overhead_ratio: f("rss_overhead_ratio"),
        rss_overhead_bytes: i("rss_overhead_bytes"),
        connected_clients: u("connected_clients"),
        maxclients: fields.get("maxclients").and_then(|v| v.parse().ok()),
        blocked_clients: u("blocked_clients"),
        rejected_connections: u("rejected_connections"),
        evicted_keys: u("evicted_keys"),
        expired_keys: u("expired_keys"),
        keyspace_hits: u("keyspace_hits"),
        keyspace_misses: u("keyspace_misses"),
        instantaneous_ops_per_sec: f("instantaneous_ops_per_sec"),
        total_commands_processed: u("total_commands_processed"),
        keyspace,
        db,
        sidekiq_keys: false,
        config_unavailable: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_text() {
        let text = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:10\r\n# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=300,subexpiry=0\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";
        let s = snapshot_from_info(&parse_info(text), 3).unwrap();
        assert_eq!(s.used_memory, 1000);
        assert_eq!(s.keyspace.len(), 2);
        assert_eq!(
            s.keyspace[0],
            DbKeyspace {
                db: 0,
                keys: 5,
                expires: 2,
                avg_ttl_ms: 300
            }
        );
        assert!(snapshot_from_info(&parse_info("hello:world"), 0).is_err());
    }
}
