//! The HTML page of a `redis` or `redis keys` report: memory, hit rate and evictions;
//! the slow log; the biggest keys, memory per key prefix and the cache types. Read
//! from the report's JSON by key, so older reports with fewer keys still render.

use super::cells::{count_cell, header, num, text};
use powertune_core::html::{Page, Table};
use powertune_core::units;
use powertune_core::Report;
use serde_json::Value;

/// Slow-log arguments longer than this are cut in the table.
const MAX_COMMAND_CHARS: usize = 200;
/// Key prefixes listed, by memory.
const TOP_PREFIXES: usize = 25;

pub fn page(report: &Report) -> Page {
    let mut page = super::generic(report);
    let m = &report.metrics;
    let db = m
        .get("info")
        .or_else(|| m.get("scan"))
        .and_then(|v| num(v, "db"));
    if let Some(db) = db {
        page.subject = format!("database {}", units::count(db));
    }
    if let Some(info) = m.get("info").filter(|v| v.is_object()) {
        memory(info, &mut page);
        keyspace(info, &mut page);
    }
    if let Some(slow) = m.get("slowlog").filter(|v| v.is_object()) {
        slowlog(slow, &mut page);
    }
    if let Some(scan) = m.get("scan").filter(|v| v.is_object()) {
        keys(scan, &mut page);
    }
    page
}

fn bytes_cell(v: Option<f64>) -> String {
    v.map(|b| units::bytes(b.max(0.0) as u64))
        .unwrap_or_else(|| "-".into())
}

/// A key's remaining TTL: `null` (or negative) is no TTL.
fn ttl_cell(ms: Option<f64>) -> String {
    match ms {
        Some(t) if t >= 0.0 => units::ms(t),
        _ => "no TTL".into(),
    }
}

fn memory(info: &Value, page: &mut Page) {
    let hits = num(info, "keyspace_hits");
    let misses = num(info, "keyspace_misses");
    let hit_rate = match (hits, misses) {
        (Some(h), Some(m)) if h + m > 0.0 => units::percent(h * 100.0 / (h + m)),
        _ => "-".into(),
    };
    let maxmemory = num(info, "maxmemory");
    let used = num(info, "used_memory");
    let mut rows = vec![header(&["", "value"])];
    let mut add = |label: &str, v: String| {
        if v != "-" && !v.is_empty() {
            rows.push(vec![label.to_string(), v]);
        }
    };
    add("used memory", bytes_cell(used));
    add(
        "maxmemory",
        match maxmemory {
            Some(0.0) => "0 (no limit)".into(),
            other => bytes_cell(other),
        },
    );
    add(
        "used of maxmemory",
        match (used, maxmemory) {
            (Some(u), Some(m)) if m > 0.0 => units::percent(u * 100.0 / m),
            _ => "-".into(),
        },
    );
    add("maxmemory-policy", text(info, "maxmemory_policy"));
    add("peak memory", bytes_cell(num(info, "used_memory_peak")));
    add("RSS", bytes_cell(num(info, "used_memory_rss")));
    add(
        "fragmentation ratio",
        num(info, "mem_fragmentation_ratio")
            .map(|r| units::trim(r, 2))
            .unwrap_or_else(|| "-".into()),
    );
    add("hit rate", hit_rate);
    add("keyspace hits", count_cell(hits));
    add("keyspace misses", count_cell(misses));
    add("evicted keys", count_cell(num(info, "evicted_keys")));
    add("expired keys", count_cell(num(info, "expired_keys")));
    add(
        "connected clients",
        match (num(info, "connected_clients"), num(info, "maxclients")) {
            (Some(c), Some(m)) => format!("{} of {}", units::count(c), units::count(m)),
            (c, _) => count_cell(c),
        },
    );
    add("blocked clients", count_cell(num(info, "blocked_clients")));
    add(
        "rejected connections",
        count_cell(num(info, "rejected_connections")),
    );
    add(
        "operations",
        num(info, "instantaneous_ops_per_sec")
            .map(units::rate)
            .unwrap_or_else(|| "-".into()),
    );
    add(
        "uptime",
        num(info, "uptime_s")
            .map(units::seconds)
            .unwrap_or_else(|| "-".into()),
    );
    page.tables.push(Table {
        title: "Memory, hit rate and evictions".into(),
        rows,
    });
    let version = text(info, "redis_version");
    if !version.is_empty() {
        page.metadata.push(("Redis".into(), version));
    }
    let unavailable = text(info, "config_unavailable");
    if !unavailable.is_empty() {
        page.metadata.push(("CONFIG GET".into(), unavailable));
    }
}

fn keyspace(info: &Value, page: &mut Page) {
    let dbs = info
        .get("keyspace")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if dbs.is_empty() {
        return;
    }
    let mut rows = vec![header(&["database", "keys", "with a TTL", "average TTL"])];
    for d in dbs {
        rows.push(vec![
            text(d, "db"),
            count_cell(num(d, "keys")),
            count_cell(num(d, "expires")),
            // INFO keyspace's avg_ttl is 0 when no key has a TTL.
            match num(d, "avg_ttl_ms") {
                Some(t) if t > 0.0 => units::ms(t),
                _ => "-".into(),
            },
        ]);
    }
    page.tables.push(Table {
        title: "Keyspace".into(),
        rows,
    });
}

fn slowlog(slow: &Value, page: &mut Page) {
    let entries = slow
        .get("entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if let Some(t) = num(slow, "log_slower_than_us") {
        page.metadata
            .push(("slowlog-log-slower-than".into(), units::ms(t / 1000.0)));
    }
    if entries.is_empty() {
        return;
    }
    let mut sorted: Vec<&Value> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        num(b, "duration_us")
            .unwrap_or(0.0)
            .total_cmp(&num(a, "duration_us").unwrap_or(0.0))
    });
    let mut rows = vec![header(&["duration", "command", "when", "client", "id"])];
    for e in sorted {
        let args: Vec<&str> = e
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut command = args.join(" ");
        if command.chars().count() > MAX_COMMAND_CHARS {
            command = format!(
                "{}…",
                command.chars().take(MAX_COMMAND_CHARS).collect::<String>()
            );
        }
        let client = [text(e, "client"), text(e, "client_name")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        rows.push(vec![
            num(e, "duration_us")
                .map(|u| units::ms(u / 1000.0))
                .unwrap_or_else(|| "-".into()),
            command,
            num(e, "at")
                .and_then(|s| chrono::DateTime::from_timestamp(s as i64, 0))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into()),
            client,
            text(e, "id"),
        ]);
    }
    page.tables.push(Table {
        title: "Slow log (slowest first)".into(),
        rows,
    });
}

fn keys(scan: &Value, page: &mut Page) {
    let scanned = num(scan, "scanned");
    let sampled = scan.get("sampled").and_then(Value::as_bool) == Some(true);
    if let Some(s) = scanned {
        page.metadata.push((
            "keys scanned".into(),
            format!(
                "{} of {}{}",
                units::count(s),
                count_cell(num(scan, "dbsize")),
                if sampled { " (a sample)" } else { "" }
            ),
        ));
    }
    let top = scan
        .get("top")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !top.is_empty() {
        let mut rows = vec![header(&["key", "type", "memory", "elements", "TTL"])];
        for k in top {
            rows.push(vec![
                text(k, "key"),
                text(k, "key_type"),
                bytes_cell(num(k, "size")),
                count_cell(num(k, "elements")),
                ttl_cell(num(k, "ttl_ms")),
            ]);
        }
        page.tables.push(Table {
            title: "Biggest keys".into(),
            rows,
        });
    }
    if let Some(prefixes) = scan.get("prefixes").and_then(Value::as_object) {
        if !prefixes.is_empty() {
            let mut sorted: Vec<(&String, &Value)> = prefixes.iter().collect();
            sorted.sort_by(|a, b| {
                num(b.1, "bytes")
                    .unwrap_or(0.0)
                    .total_cmp(&num(a.1, "bytes").unwrap_or(0.0))
            });
            let mut rows = vec![header(&[
                "prefix",
                "keys",
                "memory",
                "keys without TTL",
                "memory without TTL",
            ])];
            for (name, p) in sorted.iter().take(TOP_PREFIXES) {
                rows.push(vec![
                    name.to_string(),
                    count_cell(num(p, "keys")),
                    bytes_cell(num(p, "bytes")),
                    count_cell(num(p, "no_ttl_keys")),
                    bytes_cell(num(p, "no_ttl_bytes")),
                ]);
            }
            page.tables.push(Table {
                title: format!(
                    "Memory by key prefix (the {} largest of {})",
                    sorted.len().min(TOP_PREFIXES),
                    sorted.len()
                ),
                rows,
            });
        }
    }
    if let Some(types) = scan.get("cache_types").and_then(Value::as_object) {
        let config = scan.get("cache_config");
        let mut rows = vec![header(&[
            "cache type",
            "keys",
            "memory",
            "configured TTL",
            "without TTL",
            "TTL too long",
            "compressed (of checked)",
        ])];
        for (name, t) in types {
            if num(t, "keys").unwrap_or(0.0) == 0.0 {
                continue;
            }
            let ttl = config
                .and_then(|c| c.get(name))
                .and_then(|c| num(c, "ttl_s"))
                .map(units::seconds)
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                name.clone(),
                count_cell(num(t, "keys")),
                bytes_cell(num(t, "bytes")),
                ttl,
                count_cell(num(t, "no_ttl")),
                count_cell(num(t, "ttl_too_long")),
                format!(
                    "{} of {}",
                    count_cell(num(t, "compressed")),
                    count_cell(num(t, "compression_checked"))
                ),
            ]);
        }
        if rows.len() > 1 {
            page.tables.push(Table {
                title: "Cache types".into(),
                rows,
            });
        }
    }
}
