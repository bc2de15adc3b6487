//! The bounds every target must keep, so that each command can use it: times fit a
//! `Duration`, ratios and sizes stay finite, bands are ordered.

use super::Targets;
use crate::endpoint::EndpointType;

/// The longest time any target may be (10 years, in seconds): every time target fits
/// a `Duration` and formats.
pub const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;
/// The largest ratio or size a target may be.
pub const MAX_NUMBER: f64 = 1e12;

impl Targets {
    /// Checks that the values make sense together; returns the offending key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for t in EndpointType::ALL {
            let b = self.api.band(t);
            let key = format!("api.{}", t.key());
            if b.target_ms.is_nan() || b.target_ms <= 0.0 {
                return Err((format!("{key}.target_ms"), "must be above 0".into()));
            }
            if b.max_ms < b.target_ms {
                return Err((
                    format!("{key}.max_ms"),
                    format!(
                        "maximum acceptable {} ms is below the target {} ms",
                        b.max_ms, b.target_ms
                    ),
                ));
            }
        }
        let d = &self.database;
        if d.pool_min > d.pool_max {
            return Err((
                "database.pool_min".into(),
                format!("{} is above database.pool_max {}", d.pool_min, d.pool_max),
            ));
        }
        if d.slow_query_ms < d.max_query_ms {
            return Err((
                "database.slow_query_ms".into(),
                format!(
                    "{} ms is below database.max_query_ms {} ms",
                    d.slow_query_ms, d.max_query_ms
                ),
            ));
        }
        let w = &self.worker;
        if w.concurrency_min > w.concurrency_max {
            return Err((
                "worker.concurrency_min".into(),
                format!(
                    "{} is above worker.concurrency_max {}",
                    w.concurrency_min, w.concurrency_max
                ),
            ));
        }
        let pcts = [
            ("database.index_coverage_pct", d.index_coverage_pct),
            ("database.dead_tuple_pct", d.dead_tuple_pct),
            ("database.cache_hit_pct", d.cache_hit_pct),
            ("worker.failed_rate_pct", w.failed_rate_pct),
            ("load.error_rate_pct", self.load.error_rate_pct),
            ("redis.memory_pct_max", self.redis.memory_pct_max),
            ("redis.clients_pct_max", self.redis.clients_pct_max),
            ("redis.hit_rate_pct_min", self.redis.hit_rate_pct_min),
            (
                "redis.type_hit_rate_pct_min",
                self.redis.type_hit_rate_pct_min,
            ),
        ];
        for (key, v) in pcts {
            if !(0.0..=100.0).contains(&v) {
                return Err((key.into(), format!("{v} is not a percentage (0 to 100)")));
            }
        }
        // Times: above zero (a zero threshold flags everything or nothing) and short
        // enough to be a `Duration` and to format (at most MAX_SECONDS).
        let seconds = [
            ("database.stuck_query_s", d.stuck_query_s),
            ("worker.queue_latency_s", w.queue_latency_s),
            ("worker.job_avg_s", w.job_avg_s),
            ("worker.drain_minutes", w.drain_minutes * 60.0),
            ("worker.job_slow_s", w.job_slow_s),
            ("worker.heartbeat_stale_s", w.heartbeat_stale_s),
            ("ai.recovery_timeout_s", self.ai.recovery_timeout_s),
            ("ai.request_timeout_s", self.ai.request_timeout_s),
        ];
        let ms = [
            ("database.max_query_ms", d.max_query_ms),
            ("database.slow_query_ms", d.slow_query_ms),
            ("load.p95_ms", self.load.p95_ms),
            ("load.p99_ms", self.load.p99_ms),
            ("redis.slowlog_ms", self.redis.slowlog_ms),
            ("apm.slow_request_ms", self.apm.slow_request_ms),
            ("apm.mission_slow_ms", self.apm.mission_slow_ms),
            ("apm.agent_slow_ms", self.apm.agent_slow_ms),
            ("apm.job_slow_ms", self.apm.job_slow_ms),
            ("frontend.lcp_ms", self.frontend.lcp_ms),
        ]
        .map(|(k, v)| (k, v / 1000.0));
        for (key, secs) in seconds.into_iter().chain(ms) {
            if !secs.is_finite() || secs <= 0.0 {
                return Err((key.into(), "must be a time above 0".into()));
            }
            if secs > MAX_SECONDS {
                return Err((
                    key.into(),
                    format!(
                        "is longer than {} days, the longest time a target may be",
                        MAX_SECONDS / 86_400.0
                    ),
                ));
            }
        }
        let ratios = [
            ("ai.provider_p95_ratio_max", self.ai.provider_p95_ratio_max),
            ("load.throughput_ratio_min", self.load.throughput_ratio_min),
            ("redis.ops_ratio_max", self.redis.ops_ratio_max),
            ("frontend.bundle_gzip_kb", self.frontend.bundle_gzip_kb),
            ("frontend.cls_max", self.frontend.cls_max),
        ];
        for (key, v) in ratios {
            if !v.is_finite() || v <= 0.0 || v > MAX_NUMBER {
                return Err((
                    key.into(),
                    format!("{v} must be a number above 0 and at most {MAX_NUMBER:e}"),
                ));
            }
        }
        if w.drain_minutes * 60.0 < w.queue_latency_s {
            return Err((
                "worker.drain_minutes".into(),
                format!(
                    "{} min is below worker.queue_latency_s {} s (latency FAILs past the drain time, WARNs past the latency target)",
                    w.drain_minutes, w.queue_latency_s
                ),
            ));
        }
        // Counts that a zero makes meaningless.
        let at_least_one = [
            ("database.pool_max", u64::from(d.pool_max)),
            ("worker.concurrency_max", u64::from(w.concurrency_max)),
            ("worker.backlog_enqueued", w.backlog_enqueued),
            ("worker.retry_depth_max", u64::from(w.retry_depth_max)),
            ("ai.breakers_open_max", u64::from(self.ai.breakers_open_max)),
            ("ai.retry_depth_max", u64::from(self.ai.retry_depth_max)),
            ("redis.large_key_bytes", self.redis.large_key_bytes),
        ];
        for (key, v) in at_least_one {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        for (name, weight) in &w.weights {
            if *weight == 0 {
                return Err((
                    format!("worker.weights.{name}"),
                    "must be at least 1 (a queue Sidekiq never polls is left out, not weighted 0)"
                        .into(),
                ));
            }
        }
        for (name, c) in &self.cache {
            if c.ttl_s == 0 || c.ttl_s as f64 > MAX_SECONDS {
                return Err((
                    format!("cache.{name}.ttl_s"),
                    format!(
                        "{} is not a usable TTL (1 to {} seconds)",
                        c.ttl_s, MAX_SECONDS
                    ),
                ));
            }
        }
        if self.ai.failure_threshold == 0 {
            return Err(("ai.failure_threshold".into(), "must be at least 1".into()));
        }
        for (name, c) in &self.cache {
            if c.pattern.trim().is_empty() {
                return Err((format!("cache.{name}.pattern"), "must not be empty".into()));
            }
        }
        Ok(())
    }
}
