//! Row 1: "P95 latency creeping up" ↔ "Cache hit rate degraded".
//!
//! Symptom: `apm report`'s P95 checks (`api_latency_p95` per endpoint type,
//! `route_latency_p95` per route) past their target. Cause: the APM's cache hit rates
//! (`cache_hit_rate`, `cache_type_hit_rate`) when it reports them, else the cache
//! Redis's `keyspace_hits / (hits + misses)` over the run (INFO read at its start and
//! end) against `redis.hit_rate_pct_min`.

use super::pct;
use crate::collect::{Collected, Outcome, RedisPair};
use crate::model::{Check, Row, Status};
use powertune_core::{Finding, Targets, Verdict};

const SYMPTOM: &str = "P95 latency creeping up";
const CAUSE: &str = "Cache hit rate degraded";
const ACTION: &str = "Inspect Redis stats + cache_hits/total_lookups";

pub fn row(c: &Collected, t: &Targets) -> Row {
    let mut signals = Vec::new();
    if let Some(p) = c.redis.metrics() {
        let evicted = p
            .end
            .info
            .evicted_keys
            .saturating_sub(p.start.info.evicted_keys);
        signals.push(format!(
            "Redis evicted {evicted} keys during the run; used_memory {} of maxmemory {}",
            powertune_core::units::bytes(p.end.info.used_memory),
            if p.end.info.maxmemory == 0 {
                "unlimited".to_string()
            } else {
                powertune_core::units::bytes(p.end.info.maxmemory)
            }
        ));
    }
    Row {
        id: "p95_cache".into(),
        symptom: symptom(&c.apm),
        causes: vec![cause(c, t)],
        first_action: ACTION.into(),
        signals,
    }
}

fn is_p95(f: &Finding) -> bool {
    f.check == "api_latency_p95" || f.check == "route_latency_p95"
}

fn symptom<M>(apm: &Outcome<M>) -> Check {
    if let Some(why) = apm.missing("apm") {
        return Check::not_measured(SYMPTOM, why);
    }
    let p95: Vec<&Finding> = apm.findings().iter().filter(|f| is_p95(f)).collect();
    if p95.is_empty() {
        return Check::not_measured(SYMPTOM, "apm: no requests in its window");
    }
    let worst = p95.iter().max_by_key(|f| f.verdict).copied();
    match worst {
        Some(f) if f.verdict != Verdict::Pass => Check::new(
            SYMPTOM,
            Status::Confirmed,
            format!("{} P95 {} against {}", f.subject, f.observed, f.target),
            format!("apm report {}", f.check),
        ),
        _ => Check::new(
            SYMPTOM,
            Status::RuledOut,
            format!("{} P95 figures within target", p95.len()),
            "apm report api_latency_p95, route_latency_p95",
        ),
    }
}

fn cause(c: &Collected, t: &Targets) -> Check {
    let apm_rates: Vec<&Finding> = c
        .apm
        .findings()
        .iter()
        .filter(|f| f.check == "cache_hit_rate" || f.check == "cache_type_hit_rate")
        .collect();
    if !apm_rates.is_empty() {
        let low: Vec<String> = apm_rates
            .iter()
            .filter(|f| f.verdict != Verdict::Pass)
            .map(|f| format!("{} {} (target {})", f.subject, f.observed, f.target))
            .collect();
        return if low.is_empty() {
            Check::new(
                CAUSE,
                Status::RuledOut,
                format!("{} cache hit rates within target", apm_rates.len()),
                "apm report cache_hit_rate, cache_type_hit_rate",
            )
        } else {
            Check::new(
                CAUSE,
                Status::Confirmed,
                low.join(", "),
                "apm report cache_hit_rate, cache_type_hit_rate",
            )
        };
    }
    match c.redis.metrics() {
        Some(p) => keyspace(p, t.redis.hit_rate_pct_min),
        None => Check::not_measured(
            CAUSE,
            [c.apm.missing("apm"), c.redis.missing("redis")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// The cache Redis's hit rate over the run (or since it started, when nothing was
/// looked up during the run).
pub fn keyspace(p: &RedisPair, min_pct: f64) -> Check {
    let hits = p
        .end
        .info
        .keyspace_hits
        .saturating_sub(p.start.info.keyspace_hits);
    let misses = p
        .end
        .info
        .keyspace_misses
        .saturating_sub(p.start.info.keyspace_misses);
    let (hits, misses, when) = if hits + misses > 0 {
        (
            hits,
            misses,
            format!(
                "over the {}s run",
                powertune_core::units::trim(p.window_s, 1)
            ),
        )
    } else {
        (
            p.end.info.keyspace_hits,
            p.end.info.keyspace_misses,
            "since Redis started (no lookups during the run)".to_string(),
        )
    };
    let lookups = hits + misses;
    if lookups == 0 {
        return Check::not_measured(CAUSE, "redis: no lookups since it started");
    }
    let rate = 100.0 * hits as f64 / lookups as f64;
    let status = if rate < min_pct {
        Status::Confirmed
    } else {
        Status::RuledOut
    };
    Check::new(
        CAUSE,
        status,
        format!(
            "hit rate {} ({hits} hits / {lookups} lookups {when}; alert below {})",
            pct(rate),
            pct(min_pct)
        ),
        "redis INFO stats keyspace_hits, keyspace_misses",
    )
}
