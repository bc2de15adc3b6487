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
use std::path::{Path, PathBuf};

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
}

impl Default for FrontendTargets {
    fn default() -> Self {
        FrontendTargets {
            bundle_gzip_kb: 300.0,
            lcp_ms: 2500.0,
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
        }
    }
}

/// The longest time any target may be (10 years, in seconds): every time target fits
/// a `Duration` and formats.
pub const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;
/// The largest ratio or size a target may be.
pub const MAX_NUMBER: f64 = 1e12;

/// Tables whose keys are names the user chooses (new entries allowed).
const OPEN_TABLES: [&str; 2] = ["cache", "worker.weights"];

/// A targets file that could not be used. Messages are shown through the one secrets
/// policy: a TOML error may quote the value written (a URL with a password).
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("cannot read targets file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}:{column}: {}", crate::redact::text(.message))]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {}", crate::redact::text(.message))]
    Invalid { path: String, message: String },
}

/// One value in force, for `powertune targets`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub source: String,
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

impl Targets {
    /// Loads `path`, or `powertune.toml` in the working directory when `path` is
    /// `None` and that file exists, or the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Targets, TargetsError> {
        let chosen: Option<PathBuf> = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                p.exists().then_some(p)
            }
        };
        match chosen {
            None => Ok(Targets::default()),
            Some(p) => {
                let shown = p.display().to_string();
                let text =
                    crate::config_file::read_capped(&p).map_err(|reason| TargetsError::Read {
                        path: shown.clone(),
                        reason,
                    })?;
                Targets::from_toml_str(&text, &shown)
            }
        }
    }

    /// Applies the overrides in `text` (the contents of `path`) to the defaults.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Targets, TargetsError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            TargetsError::At {
                path: path.to_string(),
                line,
                column,
                message,
            }
        };
        let spanned = toml::de::DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().to_string())
        })?;
        let user: toml::Table = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().to_string())
        })?;
        let defaults = Targets::default();
        let mut merged = toml::Table::try_from(&defaults).map_err(|e| TargetsError::Invalid {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut sources = BTreeMap::new();
        let mut spans = BTreeMap::new();
        merge(
            &mut merged,
            &user,
            spanned.get_ref(),
            "",
            &mut sources,
            &mut spans,
            text,
            path,
        )?;
        let mut targets: Targets =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| TargetsError::Invalid {
                    path: path.to_string(),
                    message: e.message().trim().to_string(),
                })?;
        targets.sources = sources;
        if let Err((key, message)) = targets.validate() {
            // The key itself, or the nearest table written in the file (entries of
            // open tables such as `[cache.x]` are recorded whole).
            let mut place = key.as_str();
            while !spans.contains_key(place) {
                match place.rfind('.') {
                    Some(dot) => place = &place[..dot],
                    None => break,
                }
            }
            return Err(match spans.get(place) {
                Some(&offset) => at(offset, format!("`{key}`: {message}")),
                None => TargetsError::Invalid {
                    path: path.to_string(),
                    message: format!("`{key}`: {message}"),
                },
            });
        }
        Ok(targets)
    }

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

    /// Every value in force, flattened to dotted keys, with its source.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        if let Ok(table) = toml::Table::try_from(self) {
            flatten(&table, "", &mut out, &self.sources);
        }
        out
    }

    /// Whether any value came from a file.
    pub fn overridden(&self) -> bool {
        !self.sources.is_empty()
    }
}

#[allow(clippy::too_many_arguments)]
fn merge(
    into: &mut toml::Table,
    user: &toml::Table,
    spans: &toml::de::DeTable<'_>,
    prefix: &str,
    sources: &mut BTreeMap<String, String>,
    offsets: &mut BTreeMap<String, usize>,
    text: &str,
    path: &str,
) -> Result<(), TargetsError> {
    for (key, value) in user {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let spanned = spans
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key.as_str());
        let offset = spanned.map_or(0, |(k, _)| k.span().start);
        let (line, column) = line_col(text, offset);
        let err = |message: String| TargetsError::At {
            path: path.to_string(),
            line,
            column,
            message,
        };
        offsets.insert(dotted.clone(), offset);
        let open = OPEN_TABLES.contains(&prefix);
        match into.get_mut(key) {
            None if open => {
                check_open_entry(prefix, &dotted, value).map_err(err)?;
                into.insert(key.clone(), value.clone());
                record_sources(value, &dotted, &format!("{path}:{line}"), sources);
            }
            None => {
                let known: Vec<&str> = into.keys().map(String::as_str).collect();
                let place = if prefix.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in [{prefix}]")
                };
                return Err(err(format!(
                    "unknown key `{key}` {place} (known keys: {})",
                    known.join(", ")
                )));
            }
            Some(toml::Value::Table(inner)) => {
                let toml::Value::Table(user_inner) = value else {
                    return Err(err(format!("`{dotted}` must be a table, e.g. [{dotted}]")));
                };
                let empty = toml::de::DeTable::new();
                let inner_spans = match spanned.map(|(_, v)| v.get_ref()) {
                    Some(toml::de::DeValue::Table(t)) => t,
                    _ => &empty,
                };
                merge(
                    inner,
                    user_inner,
                    inner_spans,
                    &dotted,
                    sources,
                    offsets,
                    text,
                    path,
                )?;
            }
            Some(existing) => {
                let coerced = match (&*existing, value) {
                    (toml::Value::Float(_), toml::Value::Integer(i)) => {
                        toml::Value::Float(*i as f64)
                    }
                    (a, b) if a.same_type(b) => b.clone(),
                    (a, b) => {
                        return Err(err(format!(
                            "`{dotted}` must be {}, found {} (default: {})",
                            type_name(a),
                            type_name(b),
                            a
                        )))
                    }
                };
                if let (toml::Value::Integer(i), toml::Value::Integer(_)) = (&coerced, &*existing) {
                    if *i < 0 {
                        return Err(err(format!("`{dotted}` must not be negative, found {i}")));
                    }
                }
                *existing = coerced;
                sources.insert(dotted, format!("{path}:{line}"));
            }
        }
    }
    Ok(())
}

/// A new entry of an open table must have the type its table holds, checked here so
/// the error names the line it is on.
fn check_open_entry(table: &str, dotted: &str, value: &toml::Value) -> Result<(), String> {
    let found = |e: toml::de::Error| format!("`{dotted}`: {}", e.message().trim());
    match table {
        "cache" => value
            .clone()
            .try_into::<CacheType>()
            .map(|_| ())
            .map_err(found),
        "worker.weights" => value.clone().try_into::<u32>().map(|_| ()).map_err(found),
        _ => Ok(()),
    }
}

fn record_sources(
    value: &toml::Value,
    dotted: &str,
    source: &str,
    sources: &mut BTreeMap<String, String>,
) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                record_sources(v, &format!("{dotted}.{k}"), source, sources);
            }
        }
        _ => {
            sources.insert(dotted.to_string(), source.to_string());
        }
    }
}

/// Defaults the runbook does not state, chosen by powertune (issue texts or common
/// practice); `powertune targets` labels them so nobody mistakes them for the runbook's.
const POWERTUNE_DEFAULTS: [&str; 8] = [
    "database.hot_table_rows",
    "database.cache_hit_pct",
    "database.stuck_query_s",
    "database.dead_tuple_pct",
    "redis.slowlog_ms",
    "worker.heartbeat_stale_s",
    "cache.default.",
    ".pattern",
];

fn is_powertune_default(key: &str) -> bool {
    POWERTUNE_DEFAULTS.iter().any(|k| {
        key == *k
            || (k.ends_with('.') && key.starts_with(k))
            || (k.starts_with('.') && key.ends_with(k))
    })
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<Entry>,
    sources: &BTreeMap<String, String>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(t, &key, out, sources),
            other => {
                let source = sources.get(&key).cloned().unwrap_or_else(|| {
                    if is_powertune_default(&key) {
                        "default (powertune)".to_string()
                    } else {
                        "default (runbook)".to_string()
                    }
                });
                out.push(Entry {
                    key,
                    value: other.to_string(),
                    source,
                });
            }
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "< {}ms (max {}ms)", self.target_ms, self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_runbook_tables() {
        let t = Targets::default();
        assert_eq!(
            t.api.band(EndpointType::Authentication),
            Band::new(100.0, 200.0)
        );
        assert_eq!(
            t.api.band(EndpointType::AiLlm),
            Band::new(30_000.0, 60_000.0)
        );
        assert_eq!(t.api.band(EndpointType::Webhook), Band::new(250.0, 500.0));
        assert_eq!((t.database.pool_min, t.database.pool_max), (25, 50));
        assert_eq!(t.database.max_query_ms, 100.0);
        assert_eq!(t.worker.queue_latency_s, 60.0);
        assert_eq!(t.worker.weights.get("critical"), Some(&3));
        assert_eq!(t.ai.failure_threshold, 5);
        assert_eq!(t.ai.recovery_timeout_s, 120.0);
        assert_eq!(t.load.p95_ms, 2000.0);
        assert_eq!(t.load.throughput_ratio_min, 0.8);
        assert_eq!(t.redis.large_key_bytes, 1_048_576);
        assert_eq!(t.cache["user_session"].ttl_s, 900);
        assert!(!t.cache["user_session"].compress);
        assert!(t.cache["ai_pricing"].compress);
        assert!(t.validate().is_ok());
        let entries = t.entries();
        assert!(entries.iter().all(|e| e.source.starts_with("default (")));
        let own = |k: &str| entries.iter().find(|e| e.key == k).unwrap().source.clone();
        assert_eq!(own("database.max_query_ms"), "default (runbook)");
        assert_eq!(own("database.hot_table_rows"), "default (powertune)");
        assert_eq!(own("cache.user_session.pattern"), "default (powertune)");
        assert_eq!(own("cache.user_session.ttl_s"), "default (runbook)");
    }

    #[test]
    fn overrides_keep_the_other_defaults_and_say_where_from() {
        let text = "[api.authentication]\ntarget_ms = 80\n\n[database]\npool_max = 40\n";
        let t = Targets::from_toml_str(text, "powertune.toml").unwrap();
        assert_eq!(t.api.authentication, Band::new(80.0, 200.0));
        assert_eq!(t.database.pool_max, 40);
        assert_eq!(t.database.pool_min, 25);
        let e = t.entries();
        let auth = e
            .iter()
            .find(|e| e.key == "api.authentication.target_ms")
            .unwrap();
        assert_eq!(auth.source, "powertune.toml:2");
        let pool = e.iter().find(|e| e.key == "database.pool_min").unwrap();
        assert_eq!(pool.source, "default (runbook)");
    }

    #[test]
    fn unknown_keys_name_line_and_column() {
        let text = "[database]\npool_min = 25\n  pool_size = 30\n";
        let err = Targets::from_toml_str(text, "powertune.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("powertune.toml:3:3: unknown key `pool_size` in [database]"),
            "{err}"
        );
        let err = Targets::from_toml_str("[dtabase]\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:1:2: unknown key `dtabase` at the top level"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_bad_values_are_rejected() {
        let err = Targets::from_toml_str("[load]\np95_ms = \"fast\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.toml:2:1: `load.p95_ms` must be a number"),
            "{err}"
        );
        let err = Targets::from_toml_str("[api.read_crud]\nmax_ms = 100\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.toml:2:1: `api.read_crud.max_ms`"),
            "{err}"
        );
        let err = Targets::from_toml_str("[load\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:1:"), "{err}");
    }

    #[test]
    fn new_cache_types_and_weights_are_allowed() {
        let text = "[cache.feature_flags]\nttl_s = 60\ncompress = false\npattern = \"flags:*\"\n[worker.weights]\nai = 4\n";
        let t = Targets::from_toml_str(text, "t.toml").unwrap();
        assert_eq!(t.cache["feature_flags"].ttl_s, 60);
        assert_eq!(t.worker.weights["ai"], 4);
        let err = Targets::from_toml_str("[cache.x]\nttl_s = 60\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("compress"), "{err}");
    }

    #[test]
    fn values_no_command_can_use_are_refused_at_their_line() {
        for (text, want) in [
            (
                "[database]\nstuck_query_s = 1e20\n",
                "t.toml:2:1: `database.stuck_query_s`: is longer than",
            ),
            (
                "[database]\nstuck_query_s = 0\n",
                "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
            ),
            (
                "[database]\nstuck_query_s = -5\n",
                "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
            ),
            (
                "[database]\nstuck_query_s = nan\n",
                "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
            ),
            (
                "[database]\nstuck_query_s = inf\n",
                "t.toml:2:1: `database.stuck_query_s`: must be a time above 0",
            ),
            (
                "[worker]\nheartbeat_stale_s = 1e300\n",
                "t.toml:2:1: `worker.heartbeat_stale_s`",
            ),
            (
                "[worker]\njob_slow_s = 0.0\n",
                "t.toml:2:1: `worker.job_slow_s`",
            ),
            (
                "[worker]\ndrain_minutes = 0.5\n",
                "t.toml:2:1: `worker.drain_minutes`: 0.5 min is below",
            ),
            (
                "[worker]\nbacklog_enqueued = 0\n",
                "t.toml:2:1: `worker.backlog_enqueued`: must be at least 1",
            ),
            (
                "[worker.weights]\nbulk = 0\n",
                "t.toml:2:1: `worker.weights.bulk`: must be at least 1",
            ),
            (
                "[redis]\nslowlog_ms = -1\n",
                "t.toml:2:1: `redis.slowlog_ms`",
            ),
            (
                "[redis]\nops_ratio_max = 1e300\n",
                "t.toml:2:1: `redis.ops_ratio_max`",
            ),
            (
                "[database]\nslow_query_ms = 1e300\nmax_query_ms = 1e299\n",
                "t.toml:3:1: `database.max_query_ms`",
            ),
            (
                "[cache.x]\nttl_s = 0\ncompress = false\npattern = \"x\"\n",
                "t.toml:1:8: `cache.x.ttl_s`",
            ),
            ("[apm]\njob_slow_ms = 0\n", "t.toml:2:1: `apm.job_slow_ms`"),
            (
                "[ai]\nrequest_timeout_s = 1e19\n",
                "t.toml:2:1: `ai.request_timeout_s`",
            ),
        ] {
            let err = Targets::from_toml_str(text, "t.toml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn errors_never_show_a_secret_the_file_holds() {
        for text in [
            "[cache.x]\nttl_s = \"redis://:hunter2@h\"\ncompress = true\npattern = \"x\"\n",
            "[worker.weights]\nx = \"postgres://u:hunter2@db/app\"\n",
            "[database]\nstuck_query_s = \"host=db password=hunter2\"\n",
            "[database]\npassword = \"hunter2\"\n",
            "password = hunter2\n",
            "[database]\nurl = \"postgres://u:hunter2@h/db\n",
        ] {
            let err = Targets::from_toml_str(text, "t.toml")
                .unwrap_err()
                .to_string();
            assert!(!err.contains("hunter2"), "{text:?}: {err}");
            assert!(err.starts_with("t.toml:"), "{err}");
        }
        let err = Targets::from_toml_str(
            "[cache.x]\nttl_s = \"redis://:hunter2@h\"\ncompress = true\npattern = \"x\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("t.toml:1:8: `cache.x`"), "{err}");
        assert!(err.contains("redis://:***@h"), "{err}");
    }

    #[test]
    fn endless_or_huge_files_are_refused_without_reading_them_whole() {
        let err = Targets::load(Some(Path::new("/dev/zero")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than the 4.0 MiB"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "# x\n".repeat(2 * 1024 * 1024)).unwrap();
        let err = Targets::load(Some(&big)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read targets file {}: larger",
                big.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("", 0), (1, 1));
    }
}
