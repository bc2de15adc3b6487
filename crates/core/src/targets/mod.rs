//! The runbook's targets and thresholds as typed defaults, with `powertune.toml`
//! overrides.
//!
//! Every number of the runbook's "Key Performance Targets" and "Thresholds" tables (and
//! the numbers its sections name: slow-query log 500 ms, Redis alerts at 80%, cache
//! hit rates, breaker settings, APM slow thresholds) is a default here. A
//! `powertune.toml` may override any key; unknown keys and values of the wrong type are
//! errors naming the file, line and column. [`Targets::entries`] lists every value in
//! force with where it came from.

use crate::endpoint::EndpointType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The file looked for in the working directory when no `--targets` is given.
pub const DEFAULT_FILE: &str = "powertune.toml";

/// A target with an optional maximum acceptable value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// The runbook's "Target" (exclusive: `< target`).
    pub target_ms: f64,
    /// The runbook's "Maximum Acceptable" (inclusive).
    pub max_ms: f64,
}

impl Band {
    const fn new(target_ms: f64, max_ms: f64) -> Self {
        Band { target_ms, max_ms }
    }
}

/// "API Latency (P95)": target and maximum acceptable per endpoint type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTargets {
    pub authentication: Band,
    pub read_crud: Band,
    pub mutation_crud: Band,
    pub ai_sync: Band,
    pub ai_llm: Band,
    pub analytics: Band,
    pub webhook: Band,
}

impl Default for ApiTargets {
    fn default() -> Self {
        ApiTargets {
            authentication: Band::new(100.0, 200.0),
            read_crud: Band::new(150.0, 300.0),
            mutation_crud: Band::new(200.0, 400.0),
            ai_sync: Band::new(500.0, 1000.0),
            ai_llm: Band::new(30_000.0, 60_000.0),
            analytics: Band::new(500.0, 1000.0),
            webhook: Band::new(250.0, 500.0),
        }
    }
}

impl ApiTargets {
    pub fn band(&self, t: EndpointType) -> Band {
        match t {
            EndpointType::Authentication => self.authentication,
            EndpointType::ReadCrud => self.read_crud,
            EndpointType::MutationCrud => self.mutation_crud,
            EndpointType::AiSync => self.ai_sync,
            EndpointType::AiLlm => self.ai_llm,
            EndpointType::Analytics => self.analytics,
            EndpointType::Webhook => self.webhook,
        }
    }
}

/// "Database" targets and the numbers of "Database Performance".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseTargets {
    /// Connection pool size: 25-50.
    pub pool_min: u32,
    pub pool_max: u32,
    /// Max query time < 100 ms (WARN above).
    pub max_query_ms: f64,
    /// The slow-query log threshold, 500 ms (FAIL above).
    pub slow_query_ms: f64,
    /// Index coverage on hot tables > 95%.
    pub index_coverage_pct: f64,
    /// A table is "hot" for index coverage above this many rows.
    pub hot_table_rows: u64,
    /// N+1 queries: 0.
    pub n_plus_one_max: u32,
    /// The pool monitor alerts when fewer connections than this remain available.
    pub pool_free_min: u32,
    /// Queries active longer than this are stuck (the Verification step).
    pub stuck_query_s: f64,
    /// Dead tuples above this share of live ones call for VACUUM ANALYZE.
    pub dead_tuple_pct: f64,
    /// Table and index cache (shared buffer) hit ratio below this is a finding (PgHero's 99%).
    pub cache_hit_pct: f64,
    /// Estimated bloat of one table or index at or above this many bytes is a finding
    /// (PgHero's index_bloat_bytes, 100 MB).
    pub bloat_bytes: u64,
}

impl Default for DatabaseTargets {
    fn default() -> Self {
        DatabaseTargets {
            pool_min: 25,
            pool_max: 50,
            max_query_ms: 100.0,
            slow_query_ms: 500.0,
            index_coverage_pct: 95.0,
            hot_table_rows: 10_000,
            n_plus_one_max: 0,
            pool_free_min: 3,
            stuck_query_s: 300.0,
            dead_tuple_pct: 20.0,
            cache_hit_pct: 99.0,
            bloat_bytes: 100 * 1024 * 1024,
        }
    }
}

/// "Worker / Background Jobs" targets and "Background Worker Tuning".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerTargets {
    /// Queue latency (steady state) < 60 s.
    pub queue_latency_s: f64,
    /// Job processing time (avg) < 5 s.
    pub job_avg_s: f64,
    /// Failed job rate < 1%.
    pub failed_rate_pct: f64,
    /// Worker concurrency per instance 5-25.
    pub concurrency_min: u32,
    pub concurrency_max: u32,
    /// "any queue > 1000 enqueued" is the backlog alert.
    pub backlog_enqueued: u64,
    /// A backlog must return to steady state within 15 minutes.
    pub drain_minutes: f64,
    /// Background jobs slower than 30 s are logged as slow.
    pub job_slow_s: f64,
    /// Retry depth limit (retry_count at or above this is a finding).
    pub retry_depth_max: u32,
    /// Process heartbeats older than this are stale.
    pub heartbeat_stale_s: f64,
    /// Queue weights of `sidekiq.yml` (critical=3, standard=2, low=1).
    pub weights: BTreeMap<String, u32>,
}

impl Default for WorkerTargets {
    fn default() -> Self {
        WorkerTargets {
            queue_latency_s: 60.0,
            job_avg_s: 5.0,
            failed_rate_pct: 1.0,
            concurrency_min: 5,
            concurrency_max: 25,
            backlog_enqueued: 1000,
            drain_minutes: 15.0,
            job_slow_s: 30.0,
            retry_depth_max: 3,
            heartbeat_stale_s: 60.0,
            weights: [("critical", 3), ("standard", 2), ("low", 1)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// "AI Provider Calls" targets and "AI Provider Throughput" breaker settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AiTargets {
    /// Circuit breaker open events < 3 active (3 or more open is FAIL).
    pub breakers_open_max: u32,
    /// Provider P95 round-trip < 2 × baseline.
    pub provider_p95_ratio_max: f64,
    /// Retry depth < 3 per call.
    pub retry_depth_max: u32,
    /// Circuit breaker failure threshold: 5.
    pub failure_threshold: u32,
    /// Circuit breaker recovery timeout: 120 s.
    pub recovery_timeout_s: f64,
    /// Request timeout: 600 s.
    pub request_timeout_s: f64,
}

impl Default for AiTargets {
    fn default() -> Self {
        AiTargets {
            breakers_open_max: 3,
            provider_p95_ratio_max: 2.0,
            retry_depth_max: 3,
            failure_threshold: 5,
            recovery_timeout_s: 120.0,
            request_timeout_s: 600.0,
        }
    }
}

/// "Load Testing" → "Thresholds".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadTargets {
    /// P95 response time < 2000 ms.
    pub p95_ms: f64,
    /// P99 response time < 5000 ms.
    pub p99_ms: f64,
    /// Error rate < 1%.
    pub error_rate_pct: f64,
    /// Throughput ≥ baseline × 0.8.
    pub throughput_ratio_min: f64,
}

impl Default for LoadTargets {
    fn default() -> Self {
        LoadTargets {
            p95_ms: 2000.0,
            p99_ms: 5000.0,
            error_rate_pct: 1.0,
            throughput_ratio_min: 0.8,
        }
    }
}

/// "Redis Tuning" and "Cache Hit-Rate Monitoring".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisTargets {
    /// used_memory / maxmemory: alert at > 80%.
    pub memory_pct_max: f64,
    /// connected_clients: alert if > 80% of maxclients.
    pub clients_pct_max: f64,
    /// instantaneous_ops_per_sec: alert on > 2× baseline.
    pub ops_ratio_max: f64,
    /// Large keys (> 1 MB).
    pub large_key_bytes: u64,
    /// Overall cache hit rate < 70% alerts.
    pub hit_rate_pct_min: f64,
    /// Individual cache type hit rate < 50% alerts.
    pub type_hit_rate_pct_min: f64,
    /// SLOWLOG entries slower than this are findings.
    pub slowlog_ms: f64,
}

impl Default for RedisTargets {
    fn default() -> Self {
        RedisTargets {
            memory_pct_max: 80.0,
            clients_pct_max: 80.0,
            ops_ratio_max: 2.0,
            large_key_bytes: 1024 * 1024,
            hit_rate_pct_min: 70.0,
            type_hit_rate_pct_min: 50.0,
            slowlog_ms: 10.0,
        }
    }
}

/// One entry of the runbook's `CACHE_CONFIGS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheType {
    /// Time to live in seconds.
    pub ttl_s: u64,
    /// Whether values are stored compressed (Rails' zlib marker).
    pub compress: bool,
    /// Key pattern (Redis glob) that identifies this type's keys.
    pub pattern: String,
}

fn default_cache_types() -> BTreeMap<String, CacheType> {
    let rows: [(&str, u64, bool); 8] = [
        ("user_session", 15 * 60, false),
        ("user_profile", 3600, true),
        ("account_settings", 30 * 60, true),
        ("ai_provider_models", 6 * 3600, true),
        ("ai_pricing", 24 * 3600, true),
        ("analytics_dashboard", 3600, true),
        ("system_configuration", 24 * 3600, true),
        ("default", 3600, false),
    ];
    rows.into_iter()
        .map(|(name, ttl_s, compress)| {
            (
                name.to_string(),
                CacheType {
                    ttl_s,
                    compress,
                    pattern: format!("*{name}*"),
                },
            )
        })
        .collect()
}

/// "Application Performance Monitoring" slow thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApmTargets {
    /// Per-request tracking: slow requests above 1000 ms.
    pub slow_request_ms: f64,
    /// `ai.mission.completed`: slow above 60 s.
    pub mission_slow_ms: f64,
    /// `ai.agent.execution.completed`: slow above 30 s.
    pub agent_slow_ms: f64,
    /// `job.performed`: slow above 30 s.
    pub job_slow_ms: f64,
}

impl Default for ApmTargets {
    fn default() -> Self {
        ApmTargets {
            slow_request_ms: 1000.0,
            mission_slow_ms: 60_000.0,
            agent_slow_ms: 30_000.0,
            job_slow_ms: 30_000.0,
        }
    }
}

/// "Frontend Performance" targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontendTargets {
    /// Initial bundle (gzipped) < 300 KB.
    pub bundle_gzip_kb: f64,
    /// Largest Contentful Paint < 2.5 s on a cold load.
    pub lcp_ms: f64,
    /// "No layout shift after first paint": CLS at most this (web-vitals' "good" is 0.1).
    pub cls_max: f64,
}

impl Default for FrontendTargets {
    fn default() -> Self {
        FrontendTargets {
            bundle_gzip_kb: 300.0,
            lcp_ms: 2500.0,
            cls_max: 0.01,
        }
    }
}

/// Every target in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub api: ApiTargets,
    pub database: DatabaseTargets,
    pub worker: WorkerTargets,
    pub ai: AiTargets,
    pub load: LoadTargets,
    pub redis: RedisTargets,
    pub cache: BTreeMap<String, CacheType>,
    pub apm: ApmTargets,
    pub frontend: FrontendTargets,
    /// Where each overridden key came from (`file:line`); absent keys are defaults.
    #[serde(skip)]
    pub sources: BTreeMap<String, String>,
    /// `[systems]`: the addresses compositions inspect (not a target; kept apart).
    #[serde(skip)]
    pub systems: Systems,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            api: ApiTargets::default(),
            database: DatabaseTargets::default(),
            worker: WorkerTargets::default(),
            ai: AiTargets::default(),
            load: LoadTargets::default(),
            redis: RedisTargets::default(),
            cache: default_cache_types(),
            apm: ApmTargets::default(),
            frontend: FrontendTargets::default(),
            sources: BTreeMap::new(),
            systems: Systems::default(),
        }
    }
}

mod bounds;
pub mod cache_types;
mod file;
pub mod systems;

pub use bounds::{MAX_NUMBER, MAX_SECONDS};
pub use cache_types::CacheTypes;
pub use file::{line_col, Entry, TargetsError};
pub use systems::{SystemEntry, Systems};

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "< {}ms (max {}ms)", self.target_ms, self.max_ms)
    }
}

#[cfg(test)]
mod tests;
