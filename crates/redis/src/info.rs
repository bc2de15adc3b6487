//! INFO checks: memory against maxmemory, clients against maxclients, ops/s against a
//! baseline, evictions and the eviction policy, keyspace hit rate, fragmentation and
//! peak memory (Redis's own MEMORY DOCTOR heuristics), rejected connections, blocked
//! clients.

use crate::baseline::Baseline;
use crate::conn::{as_array, as_string, Conn};
use crate::error::Error;
use crate::{human_bytes, human_secs};
use powertune_core::targets::RedisTargets;
use powertune_core::{Finding, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// One database's line of the `# Keyspace` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DbKeyspace {
    pub db: u32,
    pub keys: u64,
    pub expires: u64,
    pub avg_ttl_ms: u64,
}

/// What INFO (and CONFIG GET, where allowed) says about the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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

/// CONFIG GET one parameter; Err(reason) when CONFIG is disabled or denied.
pub async fn config_get(conn: &mut Conn, name: &str) -> Result<Option<String>, String> {
    let mut c = redis::cmd("CONFIG");
    c.arg("GET").arg(name);
    let v: redis::Value = match conn.query(c, "CONFIG GET").await {
        Ok(v) => v,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(reason) = crate::conn::server_error(&v) {
        return Err(reason);
    }
    let pairs: Vec<String> = match &v {
        redis::Value::Map(m) => m
            .iter()
            .flat_map(|(k, v)| [as_string(k), as_string(v)])
            .flatten()
            .collect(),
        other => as_array(other)
            .map(|a| a.iter().filter_map(as_string).collect())
            .unwrap_or_default(),
    };
    Ok(pairs
        .chunks(2)
        .find(|p| p[0] == name)
        .and_then(|p| p.get(1).cloned()))
}

/// Reads INFO (plus CONFIG GET maxclients when INFO lacks it) and whether the selected
/// database holds Sidekiq keys.
pub async fn collect(conn: &mut Conn) -> Result<InfoSnapshot, Error> {
    let text: String = conn.query(redis::cmd("INFO"), "INFO").await?;
    let fields = parse_info(&text);
    let mut snap = snapshot_from_info(&fields, conn.url.db).map_err(|reason| Error::Parse {
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

/// What the INFO judge needs besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct InfoJudgeInput {
    pub baseline: Option<Baseline>,
}

const AREA: &str = "redis";
const TEN_MB: i64 = 10 * 1024 * 1024;

/// Judges the INFO snapshot against the runbook's Redis targets.
pub fn judge(s: &InfoSnapshot, t: &RedisTargets, input: &InfoJudgeInput) -> Vec<Finding> {
    let mut out = Vec::new();
    // Memory against maxmemory.
    if s.maxmemory == 0 {
        out.push(
            Finding::new(AREA, "memory", "used_memory / maxmemory", Verdict::Warn)
                .observed(format!("{} used, no maxmemory", human_bytes(s.used_memory)))
                .target(format!("< {}% of maxmemory", t.memory_pct_max))
                .evidence("maxmemory is 0: Redis grows until the host runs out of memory and the 80% alert can never fire")
                .action("Set maxmemory (with a headroom) so memory pressure is visible; for Redis saturation bump maxmemory or split Sidekiq DBs"),
        );
    } else {
        let pct = s.used_memory as f64 * 100.0 / s.maxmemory as f64;
        let v = Verdict::lower_is_better(pct, t.memory_pct_max, None);
        out.push(
            Finding::new(AREA, "memory", "used_memory / maxmemory", v)
                .observed(format!("{pct:.1}% ({} of {})", human_bytes(s.used_memory), human_bytes(s.maxmemory)))
                .target(format!("< {}%", t.memory_pct_max))
                .evidence(format!("maxmemory_policy {}", s.maxmemory_policy))
                .action("Increase maxmemory (Redis saturation → bump maxmemory or split Sidekiq DBs) and reduce TTLs on the noisiest cache types"),
        );
    }
    // Clients against maxclients.
    match s.maxclients {
        Some(max) if max > 0 => {
            let pct = s.connected_clients as f64 * 100.0 / max as f64;
            out.push(
                Finding::new(AREA, "clients", "connected_clients / maxclients", Verdict::lower_is_better(pct, t.clients_pct_max, None))
                    .observed(format!("{pct:.1}% ({} of {max})", s.connected_clients))
                    .target(format!("< {}%", t.clients_pct_max))
                    .action("Lower the Redis pool sizes (REDIS_POOL_SIZE, Sidekiq concurrency) or raise maxclients"),
            );
        }
        _ => out.push(
            Finding::new(
                AREA,
                "clients",
                "connected_clients / maxclients",
                Verdict::Pass,
            )
            .observed(format!(
                "{} connected, maxclients unknown",
                s.connected_clients
            ))
            .target(format!("< {}%", t.clients_pct_max))
            .evidence(format!(
                "neither INFO nor CONFIG GET gave maxclients{}",
                s.config_unavailable
                    .as_deref()
                    .map(|r| format!(" (CONFIG GET: {r})"))
                    .unwrap_or_default()
            )),
        ),
    }
    // Ops/s against the baseline.
    match &input.baseline {
        Some(b) if b.instantaneous_ops_per_sec > 0.0 => {
            let ratio = s.instantaneous_ops_per_sec / b.instantaneous_ops_per_sec;
            out.push(
                Finding::new(AREA, "ops_per_sec", "instantaneous_ops_per_sec / baseline", Verdict::lower_is_better(ratio, t.ops_ratio_max, None))
                    .observed(format!("{:.0} ops/s = {ratio:.2}× baseline", s.instantaneous_ops_per_sec))
                    .target(format!("< {}× baseline ({:.0} ops/s, saved {})", t.ops_ratio_max, b.instantaneous_ops_per_sec, b.saved_at))
                    .action("Find the new traffic source (SLOWLOG, per-prefix key counts, the newest deploy) before it saturates Redis"),
            );
        }
        Some(b) => out.push(
            Finding::new(
                AREA,
                "ops_per_sec",
                "instantaneous_ops_per_sec / baseline",
                Verdict::Pass,
            )
            .observed(format!("{:.0} ops/s", s.instantaneous_ops_per_sec))
            .target(format!("< {}× baseline", t.ops_ratio_max))
            .evidence(format!(
                "the baseline saved {} recorded 0 ops/s: no ratio",
                b.saved_at
            )),
        ),
        None => out.push(
            Finding::new(
                AREA,
                "ops_per_sec",
                "instantaneous_ops_per_sec",
                Verdict::Pass,
            )
            .observed(format!(
                "{:.0} ops/s (avg since start {:.0})",
                s.instantaneous_ops_per_sec,
                s.avg_ops_per_sec()
            ))
            .target(format!(
                "< {}× baseline (no --baseline given; save one with --save-baseline)",
                t.ops_ratio_max
            )),
        ),
    }
    // Eviction policy: anything but noeviction silently deletes Sidekiq jobs.
    let evicting = s.maxmemory_policy != "noeviction";
    if s.sidekiq_keys {
        out.push(
            Finding::new(AREA, "eviction_policy", format!("maxmemory_policy (db{} holds Sidekiq data)", s.db), if evicting { Verdict::Fail } else { Verdict::Pass })
                .observed(s.maxmemory_policy.clone())
                .target("noeviction")
                .evidence(if evicting { "an evicting policy deletes enqueued jobs, retries and schedules without a trace when memory fills" } else { "" })
                .action(if evicting { "Set maxmemory-policy noeviction on the Sidekiq Redis (keep caches on a separate Redis or database with an LRU policy)" } else { "" }),
        );
    } else {
        out.push(
            Finding::new(AREA, "eviction_policy", "maxmemory_policy", Verdict::Pass)
                .observed(s.maxmemory_policy.clone())
                .target("noeviction on Sidekiq databases; any for caches")
                .evidence(format!("db{} holds no Sidekiq keys", s.db)),
        );
    }
    // Evictions.
    out.push(
        Finding::new(
            AREA,
            "evicted_keys",
            "evicted_keys since start",
            if s.evicted_keys > 0 {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
        )
        .observed(s.evicted_keys.to_string())
        .target("0")
        .evidence(if s.evicted_keys > 0 {
            format!(
                "policy {}, uptime {}",
                s.maxmemory_policy,
                human_secs(s.uptime_s as f64)
            )
        } else {
            String::new()
        })
        .action("Increase maxmemory or reduce TTLs on the noisiest cache types"),
    );
    // Keyspace hit rate.
    let lookups = s.keyspace_hits + s.keyspace_misses;
    if lookups == 0 {
        out.push(
            Finding::new(AREA, "hit_rate", "keyspace_hits / lookups", Verdict::Pass)
                .observed("no lookups since start")
                .target(format!(">= {}%", t.hit_rate_pct_min)),
        );
    } else {
        let rate = s.keyspace_hits as f64 * 100.0 / lookups as f64;
        out.push(
            Finding::new(AREA, "hit_rate", "keyspace_hits / lookups", if rate < t.hit_rate_pct_min { Verdict::Warn } else { Verdict::Pass })
                .observed(format!("{rate:.1}% of {lookups} lookups"))
                .target(format!(">= {}%", t.hit_rate_pct_min))
                .evidence("server-wide: includes Sidekiq's own reads and every database")
                .action("Inspect Redis stats and cache_hits/total_lookups per cache type: a low rate means TTLs too short or eviction pressure"),
        );
    }
    // MEMORY DOCTOR heuristics.
    let mut doctor = Vec::new();
    // Like MEMORY DOCTOR, say nothing about an almost empty instance (< 5 MB used).
    let empty = s.used_memory < 5 * 1024 * 1024;
    if !empty && s.used_memory_peak as f64 > s.used_memory as f64 * 1.5 {
        doctor.push(format!(
            "peak memory {} is more than 150% of used {}",
            human_bytes(s.used_memory_peak),
            human_bytes(s.used_memory)
        ));
    }
    if s.mem_fragmentation_ratio > 1.4 && s.mem_fragmentation_bytes > TEN_MB {
        doctor.push(format!(
            "RSS overhead incl. fragmentation {:.2} ({} beyond used)",
            s.mem_fragmentation_ratio,
            human_bytes(s.mem_fragmentation_bytes.max(0) as u64)
        ));
    }
    if s.allocator_frag_ratio > 1.1 && s.allocator_frag_bytes > TEN_MB {
        doctor.push(format!(
            "allocator fragmentation {:.2} ({})",
            s.allocator_frag_ratio,
            human_bytes(s.allocator_frag_bytes.max(0) as u64)
        ));
    }
    if s.rss_overhead_ratio > 1.1 && s.rss_overhead_bytes > TEN_MB {
        doctor.push(format!(
            "RSS overhead {:.2} ({})",
            s.rss_overhead_ratio,
            human_bytes(s.rss_overhead_bytes.max(0) as u64)
        ));
    }
    out.push(
        Finding::new(AREA, "fragmentation", "memory doctor (fragmentation, peak vs used)", if doctor.is_empty() { Verdict::Pass } else { Verdict::Warn })
            .observed(if doctor.is_empty() { format!("ratio {:.2}, peak {}", s.mem_fragmentation_ratio, human_bytes(s.used_memory_peak)) } else { doctor.join("; ") })
            .target("peak <= 150% of used; fragmentation <= 1.4 (or < 10 MB)")
            .action("Enable activedefrag (jemalloc) or restart the replica/primary in a maintenance window; a high peak means a past spike: find it before it returns"),
    );
    // Rejected connections.
    out.push(
        Finding::new(
            AREA,
            "rejected_connections",
            "rejected_connections since start",
            if s.rejected_connections > 0 {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
        )
        .observed(s.rejected_connections.to_string())
        .target("0")
        .action("Clients were refused at maxclients: lower pool sizes or raise maxclients"),
    );
    // Blocked clients: Sidekiq fetchers block in BRPOP by design.
    let blocked_verdict = if s.blocked_clients > 0
        && !s.sidekiq_keys
        && s.blocked_clients * 2 > s.connected_clients
    {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    out.push(
        Finding::new(
            AREA,
            "blocked_clients",
            "clients blocked in BLPOP/BRPOP/WAIT",
            blocked_verdict,
        )
        .observed(format!(
            "{} of {} connected",
            s.blocked_clients, s.connected_clients
        ))
        .target("< half of connected clients (Sidekiq's idle fetchers block by design)")
        .action("Check which clients block (CLIENT LIST) and whether their producers stopped"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> InfoSnapshot {
        InfoSnapshot {
            redis_version: "7.0.15".into(),
            uptime_s: 1000,
            used_memory: 100 << 20,
            used_memory_peak: 110 << 20,
            maxmemory: 1 << 30,
            maxmemory_policy: "noeviction".into(),
            mem_fragmentation_ratio: 1.1,
            connected_clients: 10,
            maxclients: Some(10_000),
            keyspace_hits: 90,
            keyspace_misses: 10,
            instantaneous_ops_per_sec: 100.0,
            ..Default::default()
        }
    }

    fn verdict(f: &[Finding], check: &str) -> Verdict {
        f.iter()
            .find(|x| x.check == check)
            .map(|x| x.verdict)
            .unwrap()
    }

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

    #[test]
    fn healthy_server_passes() {
        let f = judge(
            &healthy(),
            &RedisTargets::default(),
            &InfoJudgeInput::default(),
        );
        assert!(f.iter().all(|x| x.verdict == Verdict::Pass), "{f:#?}");
    }

    #[test]
    fn memory_and_clients_over_80pct_fail() {
        let mut s = healthy();
        s.used_memory = 850 << 20;
        s.maxmemory = 1000 << 20;
        s.connected_clients = 9000;
        let f = judge(&s, &RedisTargets::default(), &InfoJudgeInput::default());
        assert_eq!(verdict(&f, "memory"), Verdict::Fail);
        assert_eq!(verdict(&f, "clients"), Verdict::Fail);
        s.maxmemory = 0;
        let f = judge(&s, &RedisTargets::default(), &InfoJudgeInput::default());
        assert_eq!(verdict(&f, "memory"), Verdict::Warn);
    }

    #[test]
    fn evicting_policy_on_sidekiq_db_fails() {
        let mut s = healthy();
        s.maxmemory_policy = "allkeys-lru".into();
        let f = judge(&s, &RedisTargets::default(), &InfoJudgeInput::default());
        assert_eq!(verdict(&f, "eviction_policy"), Verdict::Pass);
        s.sidekiq_keys = true;
        s.evicted_keys = 5;
        let f = judge(&s, &RedisTargets::default(), &InfoJudgeInput::default());
        assert_eq!(verdict(&f, "eviction_policy"), Verdict::Fail);
        assert_eq!(verdict(&f, "evicted_keys"), Verdict::Warn);
    }

    #[test]
    fn hit_rate_doctor_and_baseline() {
        let mut s = healthy();
        s.keyspace_hits = 60;
        s.keyspace_misses = 40;
        s.used_memory_peak = s.used_memory * 2;
        s.instantaneous_ops_per_sec = 500.0;
        let b = Baseline {
            instantaneous_ops_per_sec: 100.0,
            avg_ops_per_sec: 90.0,
            saved_at: "x".into(),
            redis_url: String::new(),
        };
        let f = judge(
            &s,
            &RedisTargets::default(),
            &InfoJudgeInput { baseline: Some(b) },
        );
        assert_eq!(verdict(&f, "hit_rate"), Verdict::Warn);
        assert_eq!(verdict(&f, "fragmentation"), Verdict::Warn);
        assert_eq!(verdict(&f, "ops_per_sec"), Verdict::Fail);
    }
}
