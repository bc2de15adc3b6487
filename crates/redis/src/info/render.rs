//! The server summary shown above the findings of `powertune redis`.

use super::snapshot::InfoSnapshot;
use crate::units::human_bytes;

/// One line naming the server, its memory, policy, clients and ops/s (plus a line when
/// CONFIG GET is unavailable); `redis_url` is the URL with its password removed.
pub fn render(s: &InfoSnapshot, redis_url: &str) -> String {
    let mut out = format!(
        "Redis {} at {} (db{}): {} used of {}, policy {}, {} clients, {:.0} ops/s\n",
        s.redis_version,
        redis_url,
        s.db,
        human_bytes(s.used_memory),
        if s.maxmemory == 0 {
            "no maxmemory".to_string()
        } else {
            human_bytes(s.maxmemory)
        },
        s.maxmemory_policy,
        s.connected_clients,
        s.instantaneous_ops_per_sec
    );
    let lookups = s.keyspace_hits + s.keyspace_misses;
    out.push_str(&format!(
        "keyspace since start: {} hits, {} misses{}, {} evicted keys\n",
        s.keyspace_hits,
        s.keyspace_misses,
        if lookups > 0 {
            format!(
                " ({:.1}% hit rate)",
                s.keyspace_hits as f64 * 100.0 / lookups as f64
            )
        } else {
            String::new()
        },
        s.evicted_keys
    ));
    if let Some(r) = &s.config_unavailable {
        out.push_str(&format!(
            "CONFIG GET unavailable ({r}): maxclients and the slowlog threshold are unknown\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server_and_says_when_config_is_unavailable() {
        let mut s = InfoSnapshot {
            redis_version: "7.2.4".into(),
            db: 2,
            used_memory: 2 << 20,
            maxmemory_policy: "noeviction".into(),
            connected_clients: 3,
            instantaneous_ops_per_sec: 12.4,
            ..Default::default()
        };
        assert_eq!(
            render(&s, "redis://h:1/2"),
            "Redis 7.2.4 at redis://h:1/2 (db2): 2.0 MiB used of no maxmemory, policy noeviction, 3 clients, 12 ops/s\n\
             keyspace since start: 0 hits, 0 misses, 0 evicted keys\n"
        );
        s.keyspace_hits = 75;
        s.keyspace_misses = 25;
        s.evicted_keys = 4;
        assert!(render(&s, "u").contains(
            "keyspace since start: 75 hits, 25 misses (75.0% hit rate), 4 evicted keys\n"
        ));
        s.config_unavailable = Some("denied".into());
        assert!(render(&s, "u").ends_with(
            "CONFIG GET unavailable (denied): maxclients and the slowlog threshold are unknown\n"
        ));
    }
}
