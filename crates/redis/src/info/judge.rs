//! INFO judges: memory against maxmemory, clients against maxclients, ops/s against a
//! baseline, evictions and the eviction policy, keyspace hit rate, fragmentation and
//! peak memory (Redis's own MEMORY DOCTOR heuristics), rejected connections, blocked
//! clients. Pure functions over an [`InfoSnapshot`]; each check says PASS when it
//! found nothing.

use super::snapshot::InfoSnapshot;
use crate::baseline::Baseline;
use crate::units::{human_bytes, human_secs, zero};
use powertune_core::targets::RedisTargets;
use powertune_core::{Finding, Quantity, Value, Verdict};

/// What the INFO judge needs besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct InfoJudgeInput {
    pub baseline: Option<Baseline>,
}

const AREA: &str = "redis";
const TEN_MB: i64 = 10 * 1024 * 1024;
/// Like MEMORY DOCTOR, say nothing about an almost empty instance (< 5 MiB used).
const DOCTOR_MIN_USED: u64 = 5 * 1024 * 1024;

/// Every INFO check of `powertune redis`.
pub fn judge(s: &InfoSnapshot, t: &RedisTargets, input: &InfoJudgeInput) -> Vec<Finding> {
    vec![
        memory(s, t),
        clients(s, t),
        ops_per_sec(s, t, input.baseline.as_ref()),
        eviction_policy(s),
        evicted_keys(s),
        hit_rate(s, t),
        memory_doctor(s),
        rejected_connections(s),
        blocked_clients(s),
    ]
}

/// used_memory against maxmemory: FAIL past `memory_pct_max`; WARN without maxmemory.
pub fn memory(s: &InfoSnapshot, t: &RedisTargets) -> Finding {
    let target = Value::lt(Quantity::percent(t.memory_pct_max)).note("of maxmemory");
    if s.maxmemory == 0 {
        return Finding::new(AREA, "memory", "used_memory / maxmemory", Verdict::Warn)
            .observed(Value::of(Quantity::bytes(s.used_memory)).note("no maxmemory"))
            .target(target)
            .evidence("maxmemory is 0: Redis grows until the host runs out of memory and the 80% alert can never fire")
            .action("Set maxmemory (with a headroom) so memory pressure is visible; for Redis saturation bump maxmemory or split Sidekiq DBs");
    }
    let pct = s.used_memory as f64 * 100.0 / s.maxmemory as f64;
    let v = Verdict::lower_is_better(pct, t.memory_pct_max, None);
    Finding::new(AREA, "memory", "used_memory / maxmemory", v)
        .observed(Quantity::percent(pct))
        .target(target)
        .evidence(format!("{} used of {} maxmemory; maxmemory_policy {}", human_bytes(s.used_memory), human_bytes(s.maxmemory), s.maxmemory_policy))
        .action("Increase maxmemory (Redis saturation → bump maxmemory or split Sidekiq DBs) and reduce TTLs on the noisiest cache types")
}

/// connected_clients against maxclients: FAIL past `clients_pct_max`; PASS with a note
/// when maxclients is unknown.
pub fn clients(s: &InfoSnapshot, t: &RedisTargets) -> Finding {
    let target = Value::lt(Quantity::percent(t.clients_pct_max)).note("of maxclients");
    match s.maxclients {
        Some(max) if max > 0 => {
            let pct = s.connected_clients as f64 * 100.0 / max as f64;
            Finding::new(AREA, "clients", "connected_clients / maxclients", Verdict::lower_is_better(pct, t.clients_pct_max, None))
                .observed(Quantity::percent(pct))
                .target(target)
                .evidence(format!("{} connected of {max} maxclients", s.connected_clients))
                .action("Lower the Redis pool sizes (REDIS_POOL_SIZE, Sidekiq concurrency) or raise maxclients")
        }
        _ => Finding::new(
            AREA,
            "clients",
            "connected_clients / maxclients",
            Verdict::Pass,
        )
        .observed(
            Value::of(Quantity::count(s.connected_clients as f64))
                .note("connected, maxclients unknown"),
        )
        .target(target)
        .evidence(format!(
            "neither INFO nor CONFIG GET gave maxclients{}",
            s.config_unavailable
                .as_deref()
                .map(|r| format!(" (CONFIG GET: {r})"))
                .unwrap_or_default()
        )),
    }
}

/// instantaneous_ops_per_sec against a saved baseline: FAIL past `ops_ratio_max`×.
pub fn ops_per_sec(s: &InfoSnapshot, t: &RedisTargets, baseline: Option<&Baseline>) -> Finding {
    let ops = Quantity::per_second(s.instantaneous_ops_per_sec);
    let target = Value::lt(Quantity::ratio(t.ops_ratio_max));
    match baseline {
        Some(b) if b.instantaneous_ops_per_sec > 0.0 => {
            let ratio = s.instantaneous_ops_per_sec / b.instantaneous_ops_per_sec;
            Finding::new(AREA, "ops_per_sec", "instantaneous_ops_per_sec / baseline", Verdict::lower_is_better(ratio, t.ops_ratio_max, None))
                .observed(Quantity::ratio(ratio))
                .target(target.note("of the baseline"))
                .evidence(format!("{ops} now; baseline {} saved {}", Quantity::per_second(b.instantaneous_ops_per_sec), b.saved_at))
                .action("Find the new traffic source (SLOWLOG, per-prefix key counts, the newest deploy) before it saturates Redis")
        }
        Some(b) => Finding::new(
            AREA,
            "ops_per_sec",
            "instantaneous_ops_per_sec / baseline",
            Verdict::Pass,
        )
        .observed(Value::of(ops).note("no ratio"))
        .target(target.note("of the baseline"))
        .evidence(format!(
            "the baseline saved {} recorded 0 ops/s: no ratio",
            b.saved_at
        )),
        None => Finding::new(
            AREA,
            "ops_per_sec",
            "instantaneous_ops_per_sec",
            Verdict::Pass,
        )
        .observed(Value::of(ops).note("no baseline"))
        .target(target.note("of a baseline; no --baseline given, save one with --save-baseline"))
        .evidence(format!(
            "average since start {}",
            Quantity::per_second(s.avg_ops_per_sec())
        )),
    }
}

/// The eviction policy: anything but noeviction silently deletes Sidekiq jobs, so it
/// FAILs on a database holding Sidekiq keys.
pub fn eviction_policy(s: &InfoSnapshot) -> Finding {
    let evicting = s.maxmemory_policy != "noeviction";
    if s.sidekiq_keys {
        Finding::new(AREA, "eviction_policy", format!("maxmemory_policy (db{} holds Sidekiq data)", s.db), if evicting { Verdict::Fail } else { Verdict::Pass })
            .observed(s.maxmemory_policy.clone())
            .target("noeviction")
            .evidence(if evicting { "an evicting policy deletes enqueued jobs, retries and schedules without a trace when memory fills" } else { "" })
            .action(if evicting { "Set maxmemory-policy noeviction on the Sidekiq Redis (keep caches on a separate Redis or database with an LRU policy)" } else { "" })
    } else {
        Finding::new(AREA, "eviction_policy", "maxmemory_policy", Verdict::Pass)
            .observed(s.maxmemory_policy.clone())
            .target("noeviction on Sidekiq databases; any for caches")
            .evidence(format!("db{} holds no Sidekiq keys", s.db))
    }
}

/// Keys evicted since start: WARN above 0.
pub fn evicted_keys(s: &InfoSnapshot) -> Finding {
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
    .observed(Quantity::count(s.evicted_keys as f64))
    .target(zero())
    .evidence(if s.evicted_keys > 0 {
        format!(
            "policy {}, uptime {}",
            s.maxmemory_policy,
            human_secs(s.uptime_s as f64)
        )
    } else {
        String::new()
    })
    .action("Increase maxmemory or reduce TTLs on the noisiest cache types")
}

/// Keyspace hit rate, server-wide: WARN under `hit_rate_pct_min`.
pub fn hit_rate(s: &InfoSnapshot, t: &RedisTargets) -> Finding {
    let target = Value::ge(Quantity::percent(t.hit_rate_pct_min));
    let lookups = s.keyspace_hits + s.keyspace_misses;
    if lookups == 0 {
        return Finding::new(AREA, "hit_rate", "keyspace_hits / lookups", Verdict::Pass)
            .observed(Value::of(Quantity::count(0.0)).note("lookups since start"))
            .target(target);
    }
    let rate = s.keyspace_hits as f64 * 100.0 / lookups as f64;
    Finding::new(AREA, "hit_rate", "keyspace_hits / lookups", if rate < t.hit_rate_pct_min { Verdict::Warn } else { Verdict::Pass })
        .observed(Quantity::percent(rate))
        .target(target)
        .evidence(format!("{} hits, {} misses of {lookups} lookups, {} keys evicted since start; server-wide: includes Sidekiq's own reads and every database", s.keyspace_hits, s.keyspace_misses, s.evicted_keys))
        .action("Inspect Redis stats and cache_hits/total_lookups per cache type: a low rate means TTLs too short or eviction pressure")
}

/// What MEMORY DOCTOR would say: peak far above used, fragmentation, RSS overhead.
fn doctor_notes(s: &InfoSnapshot) -> Vec<String> {
    let mut doctor = Vec::new();
    let empty = s.used_memory < DOCTOR_MIN_USED;
    if !empty && s.used_memory_peak as f64 > s.used_memory as f64 * 1.5 {
        doctor.push(format!(
            "peak memory {} is more than 150% of used {}",
            human_bytes(s.used_memory_peak),
            human_bytes(s.used_memory)
        ));
    }
    if s.mem_fragmentation_ratio > 1.4 && s.mem_fragmentation_bytes > TEN_MB {
        doctor.push(format!(
            "RSS overhead incl. fragmentation {} ({} beyond used)",
            Quantity::ratio(s.mem_fragmentation_ratio),
            human_bytes(s.mem_fragmentation_bytes.max(0) as u64)
        ));
    }
    if s.allocator_frag_ratio > 1.1 && s.allocator_frag_bytes > TEN_MB {
        doctor.push(format!(
            "allocator fragmentation {} ({})",
            Quantity::ratio(s.allocator_frag_ratio),
            human_bytes(s.allocator_frag_bytes.max(0) as u64)
        ));
    }
    if s.rss_overhead_ratio > 1.1 && s.rss_overhead_bytes > TEN_MB {
        doctor.push(format!(
            "RSS overhead {} ({})",
            Quantity::ratio(s.rss_overhead_ratio),
            human_bytes(s.rss_overhead_bytes.max(0) as u64)
        ));
    }
    doctor
}

/// MEMORY DOCTOR's heuristics as one finding (`fragmentation`): WARN on any note.
pub fn memory_doctor(s: &InfoSnapshot) -> Finding {
    let doctor = doctor_notes(s);
    Finding::new(AREA, "fragmentation", "memory doctor (fragmentation, peak vs used)", if doctor.is_empty() { Verdict::Pass } else { Verdict::Warn })
        .observed(Value::of(Quantity::count(doctor.len() as f64)).note("memory doctor notes"))
        .target(zero().note("peak <= 150% of used; fragmentation <= 1.4 or < 10 MiB"))
        .evidence(if doctor.is_empty() { format!("fragmentation ratio {}, peak {}", Quantity::ratio(s.mem_fragmentation_ratio), human_bytes(s.used_memory_peak)) } else { doctor.join("; ") })
        .action("Enable activedefrag (jemalloc) or restart the replica/primary in a maintenance window; a high peak means a past spike: find it before it returns")
}

/// Connections refused at maxclients since start: WARN above 0.
pub fn rejected_connections(s: &InfoSnapshot) -> Finding {
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
    .observed(Quantity::count(s.rejected_connections as f64))
    .target(zero())
    .action("Clients were refused at maxclients: lower pool sizes or raise maxclients")
}

/// Clients blocked in BLPOP/BRPOP/WAIT: WARN when more than half block on a database
/// that is not Sidekiq's (Sidekiq's fetchers block in BRPOP by design).
pub fn blocked_clients(s: &InfoSnapshot) -> Finding {
    let verdict = if s.blocked_clients > 0
        && !s.sidekiq_keys
        && s.blocked_clients * 2 > s.connected_clients
    {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    let pct = if s.connected_clients == 0 {
        0.0
    } else {
        s.blocked_clients as f64 * 100.0 / s.connected_clients as f64
    };
    Finding::new(
        AREA,
        "blocked_clients",
        "clients blocked in BLPOP/BRPOP/WAIT",
        verdict,
    )
    .observed(Value::of(Quantity::percent(pct)).note("of connected clients"))
    .target(Value::le(Quantity::percent(50.0)).note("Sidekiq's idle fetchers block by design"))
    .evidence(format!(
        "{} of {} connected clients blocked",
        s.blocked_clients, s.connected_clients
    ))
    .action("Check which clients block (CLIENT LIST) and whether their producers stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::note;
    use powertune_core::Cmp;

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
        let m = memory(&s, &RedisTargets::default());
        assert_eq!(m.observed.quantity(), Some(Quantity::percent(85.0)));
        assert_eq!(
            m.target,
            Value::lt(Quantity::percent(80.0)).note("of maxmemory")
        );
        assert!(
            m.evidence.starts_with("850.0 MiB used of 1000.0 MiB"),
            "{}",
            m.evidence
        );
        assert_eq!(
            clients(&s, &RedisTargets::default()).observed.quantity(),
            Some(Quantity::percent(90.0))
        );
        s.maxmemory = 0;
        let f = judge(&s, &RedisTargets::default(), &InfoJudgeInput::default());
        assert_eq!(verdict(&f, "memory"), Verdict::Warn);
        let m = memory(&s, &RedisTargets::default());
        assert_eq!(m.observed.quantity(), Some(Quantity::bytes(850 << 20)));
        assert_eq!(note(&m.observed), "no maxmemory");
    }

    #[test]
    fn evicting_policy_on_sidekiq_db_fails() {
        let mut s = healthy();
        s.maxmemory_policy = "allkeys-lru".into();
        let f = judge(&s, &RedisTargets::default(), &InfoJudgeInput::default());
        assert_eq!(verdict(&f, "eviction_policy"), Verdict::Pass);
        assert_eq!(
            eviction_policy(&s).observed,
            Value::Text("allkeys-lru".into())
        );
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
        let t = RedisTargets::default();
        let h = hit_rate(&s, &t);
        assert_eq!(h.observed.quantity(), Some(Quantity::percent(60.0)));
        assert_eq!(h.target, Value::ge(Quantity::percent(t.hit_rate_pct_min)));
        assert!(
            h.evidence
                .starts_with("60 hits, 40 misses of 100 lookups, 0 keys evicted since start;"),
            "{}",
            h.evidence
        );
        let o = f.iter().find(|x| x.check == "ops_per_sec").unwrap();
        assert_eq!(o.observed.quantity(), Some(Quantity::ratio(5.0)));
        assert_eq!(o.target.quantity(), Some(Quantity::ratio(t.ops_ratio_max)));
        assert_eq!(o.evidence, "500.0/s now; baseline 100.0/s saved x");
    }

    #[test]
    fn clients_without_maxclients_pass_with_the_reason() {
        let mut s = healthy();
        s.maxclients = None;
        s.config_unavailable = Some("ERR unknown command 'CONFIG'".into());
        let f = clients(&s, &RedisTargets::default());
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(10.0)));
        assert_eq!(note(&f.observed), "connected, maxclients unknown");
        assert!(
            f.evidence.contains("CONFIG GET: ERR unknown"),
            "{}",
            f.evidence
        );
        s.maxclients = Some(100);
        s.connected_clients = 70;
        assert_eq!(clients(&s, &RedisTargets::default()).verdict, Verdict::Pass);
    }

    #[test]
    fn ops_per_sec_without_a_baseline_or_with_a_zero_one_passes() {
        let t = RedisTargets::default();
        let s = healthy();
        let f = ops_per_sec(&s, &t, None);
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed.quantity(), Some(Quantity::per_second(100.0)));
        assert_eq!(f.target.quantity(), Some(Quantity::ratio(t.ops_ratio_max)));
        assert!(
            note(&f.target).contains("no --baseline given"),
            "{}",
            f.target
        );
        let zero = Baseline {
            instantaneous_ops_per_sec: 0.0,
            avg_ops_per_sec: 0.0,
            saved_at: "then".into(),
            redis_url: String::new(),
        };
        let f = ops_per_sec(&s, &t, Some(&zero));
        assert_eq!(f.verdict, Verdict::Pass);
        assert!(f.evidence.contains("recorded 0 ops/s"), "{}", f.evidence);
        let steady = Baseline {
            instantaneous_ops_per_sec: 90.0,
            ..zero
        };
        assert_eq!(ops_per_sec(&s, &t, Some(&steady)).verdict, Verdict::Pass);
    }

    #[test]
    fn hit_rate_without_lookups_passes() {
        let mut s = healthy();
        s.keyspace_hits = 0;
        s.keyspace_misses = 0;
        let f = hit_rate(&s, &RedisTargets::default());
        assert_eq!(f.verdict, Verdict::Pass);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(0.0)));
        assert_eq!(note(&f.observed), "lookups since start");
    }

    #[test]
    fn memory_doctor_notes_fragmentation_but_not_on_an_empty_instance() {
        let mut s = healthy();
        assert_eq!(memory_doctor(&s).verdict, Verdict::Pass);
        s.mem_fragmentation_ratio = 1.6;
        s.mem_fragmentation_bytes = 20 << 20;
        s.rss_overhead_ratio = 1.2;
        s.rss_overhead_bytes = 20 << 20;
        let f = memory_doctor(&s);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(2.0)));
        assert_eq!(f.target.quantity(), Some(Quantity::count(0.0)));
        assert!(
            f.evidence.contains("fragmentation 1.60") && f.evidence.contains("RSS overhead 1.20"),
            "{}",
            f.evidence
        );
        let mut tiny = healthy();
        tiny.used_memory = 1 << 20;
        tiny.used_memory_peak = 4 << 20;
        assert_eq!(memory_doctor(&tiny).verdict, Verdict::Pass);
    }

    #[test]
    fn rejected_and_blocked_clients_warn_unless_sidekiq_blocks() {
        let mut s = healthy();
        assert_eq!(rejected_connections(&s).verdict, Verdict::Pass);
        s.rejected_connections = 3;
        let f = rejected_connections(&s);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(3.0)));
        assert_eq!(f.target, Value::bound(Cmp::Eq, Quantity::count(0.0)));
        assert_eq!(blocked_clients(&s).verdict, Verdict::Pass);
        s.blocked_clients = 6;
        let f = blocked_clients(&s);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::percent(60.0)));
        assert_eq!(f.target.quantity(), Some(Quantity::percent(50.0)));
        assert_eq!(f.evidence, "6 of 10 connected clients blocked");
        s.sidekiq_keys = true;
        assert_eq!(blocked_clients(&s).verdict, Verdict::Pass);
    }

    #[test]
    fn evicted_keys_warn_with_the_policy() {
        let mut s = healthy();
        assert_eq!(evicted_keys(&s).verdict, Verdict::Pass);
        s.evicted_keys = 2;
        let f = evicted_keys(&s);
        assert_eq!(f.verdict, Verdict::Warn);
        assert_eq!(f.observed.quantity(), Some(Quantity::count(2.0)));
        assert_eq!(f.evidence, "policy noeviction, uptime 16m40s");
    }
}
