//! `apm.toml`: the window's bounds, endpoint-type rules, the span names of missions
//! and agents, and the detectors' settings. Read with core's loader: raw serde
//! structs (unknown keys are errors) → [`ApmConfig::validate`] → [`EngineConfig`],
//! before any socket opens; every error is `FILE:LINE:COL: KEY: WHY`.

use crate::classify::{Classifier, Rule};
use powertune_core::config_file::Source;
use powertune_core::targets::CacheTypes;
use powertune_core::{EndpointType, Targets};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

pub use powertune_core::config_file::ConfigError;

/// Lookups a cache type needs in the window before its hit rate is judged (fewer is
/// noise: one miss in three lookups is not a degraded cache).
pub const DEFAULT_MIN_LOOKUPS: u64 = 20;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApmConfig {
    #[serde(default)]
    pub window: WindowRaw,
    /// Extra endpoint-type rules, tried before the built-in ones.
    #[serde(default)]
    pub endpoint_types: Vec<RuleRaw>,
    #[serde(default)]
    pub spans: SpansRaw,
    #[serde(default)]
    pub n_plus_one: NPlusOneRaw,
    #[serde(default)]
    pub consecutive_queries: ConsecutiveRaw,
    /// Cache hit rates per cache type.
    #[serde(default)]
    pub cache: CacheRaw,
    /// The receiver's limits per client (`apm serve` only).
    #[serde(default)]
    pub server: ServerRaw,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRaw {
    /// OTLP/HTTP connections served at once; more wait in the listen backlog.
    pub max_connections: Option<usize>,
    /// Time a client has to send a request head (also the keep-alive idle time).
    pub header_read_timeout: Option<String>,
    /// Largest request head, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Most header fields in one request.
    pub max_headers: Option<usize>,
    /// How long a stop waits for requests in flight.
    pub drain_timeout: Option<String>,
    /// Largest request body as sent (compressed or not), in bytes; gRPC message too.
    pub max_body_bytes: Option<usize>,
    /// Largest body once decompressed, in bytes.
    pub max_decompressed_bytes: Option<usize>,
    /// OTLP/gRPC connections served at once.
    pub grpc_max_connections: Option<usize>,
    /// Concurrent HTTP/2 streams per gRPC connection.
    pub grpc_max_concurrent_streams: Option<u32>,
}

/// The receiver's limits per client, validated: the accept loop's
/// ([`powertune_serve::Limits`]) and the OTLP body and gRPC limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub connection: powertune_serve::Limits,
    pub max_body: usize,
    pub max_decompressed: usize,
    pub grpc_max_connections: usize,
    pub grpc_max_concurrent_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            connection: powertune_serve::Limits::default(),
            max_body: 16 * 1024 * 1024,
            max_decompressed: 64 * 1024 * 1024,
            grpc_max_connections: 1024,
            grpc_max_concurrent_streams: 100,
        }
    }
}

/// The largest body (or decompressed body) a setting may allow.
pub const MAX_BODY_LIMIT: usize = 1024 * 1024 * 1024;

impl ServerRaw {
    /// Checks every value; errors name `server.KEY` with its line.
    pub fn validate(&self, src: &Source) -> Result<ServerLimits, ConfigError> {
        let d = ServerLimits::default();
        let mut c = d.connection;
        let dur = |key: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => powertune_core::duration::parse(s)
                .map_err(|e| src.error(key, format!("\"{s}\": {e} (example: \"10s\")"))),
        };
        c.max_connections = self.max_connections.unwrap_or(c.max_connections);
        c.header_read_timeout = dur(
            "server.header_read_timeout",
            &self.header_read_timeout,
            c.header_read_timeout,
        )?;
        c.max_header_bytes = self.max_header_bytes.unwrap_or(c.max_header_bytes);
        c.max_headers = self.max_headers.unwrap_or(c.max_headers);
        c.drain_timeout = dur("server.drain_timeout", &self.drain_timeout, c.drain_timeout)?;
        c.validate(|field| format!("server.{field}")).map_err(|e| {
            let key = e.split(':').next().unwrap_or("server").to_string();
            let why = e
                .split_once(": ")
                .map_or(e.as_str(), |(_, w)| w)
                .to_string();
            src.error(&key, why)
        })?;
        let bytes = |key: &str, v: Option<usize>, default: usize| match v {
            None => Ok(default),
            Some(n) if (1024..=MAX_BODY_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(src.error(
                key,
                format!("{n}: must be between 1024 and {MAX_BODY_LIMIT} bytes (example: 16777216)"),
            )),
        };
        let max_body = bytes("server.max_body_bytes", self.max_body_bytes, d.max_body)?;
        let max_decompressed = bytes(
            "server.max_decompressed_bytes",
            self.max_decompressed_bytes,
            d.max_decompressed.max(max_body),
        )?;
        if max_decompressed < max_body {
            return Err(src.error(
                "server.max_decompressed_bytes",
                format!("{max_decompressed}: must be at least server.max_body_bytes ({max_body})"),
            ));
        }
        let grpc_max_connections = match self.grpc_max_connections {
            None => d.grpc_max_connections,
            Some(n) if (1..=powertune_serve::Limits::MAX_CONNECTIONS).contains(&n) => n,
            Some(n) => {
                return Err(src.error(
                    "server.grpc_max_connections",
                    format!(
                        "{n}: must be between 1 and {}",
                        powertune_serve::Limits::MAX_CONNECTIONS
                    ),
                ))
            }
        };
        let grpc_max_concurrent_streams = match self.grpc_max_concurrent_streams {
            None => d.grpc_max_concurrent_streams,
            Some(n) if (1..=10_000).contains(&n) => n,
            Some(n) => {
                return Err(src.error(
                    "server.grpc_max_concurrent_streams",
                    format!("{n}: must be between 1 and 10000"),
                ))
            }
        };
        Ok(ServerLimits {
            connection: c,
            max_body,
            max_decompressed,
            grpc_max_connections,
            grpc_max_concurrent_streams,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRaw {
    /// How long the receiver keeps statistics (`15m`).
    pub retain: Option<String>,
    /// Into how many buckets the retained time is split.
    pub buckets: Option<u32>,
    /// Spans held in open (not yet analysed) traces, at most.
    pub max_spans: Option<usize>,
    /// Open traces, at most.
    pub max_open_traces: Option<usize>,
    /// Spans kept per trace, at most.
    pub max_spans_per_trace: Option<usize>,
    /// Distinct routes / job classes / providers / detections kept per bucket.
    pub max_keys: Option<usize>,
    /// How long a trace whose root has arrived waits for late spans (`2s`).
    pub linger: Option<String>,
    /// A trace without a root is analysed anyway after this long (`30s`).
    pub max_trace_age: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRaw {
    /// `"POST /api/v1/ai/**/execute"`: methods (optional, `GET|HEAD`) then a path glob.
    #[serde(rename = "match")]
    pub pattern: String,
    /// An endpoint type key: authentication, read_crud, mutation_crud, ai_sync,
    /// ai_llm, analytics, webhook.
    #[serde(rename = "type")]
    pub endpoint_type: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpansRaw {
    /// Span names (globs) of mission executions.
    pub mission: Option<Vec<String>>,
    /// Span names (globs) of agent executions.
    pub agent: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NPlusOneRaw {
    pub min_count: Option<u32>,
    pub min_total_ms: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsecutiveRaw {
    pub min_span_ms: Option<f64>,
    pub min_saved_ms: Option<f64>,
    pub min_saved_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRaw {
    /// Lookups a cache type needs in the window before its hit rate is judged.
    pub min_lookups: Option<u64>,
}

/// Everything the engine needs, validated.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub bucket_ns: u64,
    pub buckets: u32,
    pub max_spans: usize,
    pub max_open_traces: usize,
    pub max_spans_per_trace: usize,
    pub max_keys: usize,
    pub linger_ns: u64,
    pub max_trace_age_ns: u64,
    pub examples_per_route: usize,
    pub example_max_spans: usize,
    pub classifier: Classifier,
    pub mission_spans: Vec<String>,
    pub agent_spans: Vec<String>,
    pub n_plus_one_min_count: u32,
    pub n_plus_one_min_total_ms: f64,
    pub consecutive_min_span_ms: f64,
    pub consecutive_min_saved_ms: f64,
    pub consecutive_min_ratio: f64,
    /// Lookups a cache type (and the whole cache) needs before it is judged.
    pub cache_min_lookups: u64,
    // From the runbook's targets:
    /// The `[cache]` types: key patterns → cache type.
    pub cache_types: CacheTypes,
    pub slow_request_ms: f64,
    pub max_query_ms: f64,
    pub job_slow_ms: f64,
    pub mission_slow_ms: f64,
    pub agent_slow_ms: f64,
}

impl EngineConfig {
    /// Defaults (no file).
    pub fn defaults(targets: &Targets) -> EngineConfig {
        // The default file is valid by construction.
        match ApmConfig::default().validate(&Source::new("(defaults)", ""), targets) {
            Ok(c) => c,
            Err(_) => unreachable_defaults(targets),
        }
    }

    /// As [`EngineConfig::load`], with the receiver's `[server]` limits.
    pub fn load_with_server(
        path: Option<&Path>,
        targets: &Targets,
    ) -> Result<(EngineConfig, ServerLimits), ConfigError> {
        match path {
            None => Ok((EngineConfig::defaults(targets), ServerLimits::default())),
            Some(p) => {
                let (raw, src) = ApmConfig::load(p)?;
                Ok((raw.validate(&src, targets)?, raw.server.validate(&src)?))
            }
        }
    }

    /// The settings file at `path` read and validated, or the defaults without one.
    pub fn load(path: Option<&Path>, targets: &Targets) -> Result<EngineConfig, ConfigError> {
        match path {
            None => Ok(EngineConfig::defaults(targets)),
            Some(p) => {
                let (raw, src) = ApmConfig::load(p)?;
                raw.validate(&src, targets)
            }
        }
    }
}

fn unreachable_defaults(targets: &Targets) -> EngineConfig {
    EngineConfig {
        bucket_ns: 60_000_000_000,
        buckets: 15,
        max_spans: 200_000,
        max_open_traces: 20_000,
        max_spans_per_trace: 5_000,
        max_keys: 200,
        linger_ns: 2_000_000_000,
        max_trace_age_ns: 30_000_000_000,
        examples_per_route: 3,
        example_max_spans: 200,
        classifier: Classifier::default(),
        mission_spans: default_mission(),
        agent_spans: default_agent(),
        n_plus_one_min_count: 5,
        n_plus_one_min_total_ms: 50.0,
        consecutive_min_span_ms: 30.0,
        consecutive_min_saved_ms: 100.0,
        consecutive_min_ratio: 0.1,
        cache_min_lookups: DEFAULT_MIN_LOOKUPS,
        cache_types: CacheTypes::new(&targets.cache),
        slow_request_ms: targets.apm.slow_request_ms,
        max_query_ms: targets.database.max_query_ms,
        job_slow_ms: targets.apm.job_slow_ms,
        mission_slow_ms: targets.apm.mission_slow_ms,
        agent_slow_ms: targets.apm.agent_slow_ms,
    }
}

fn default_mission() -> Vec<String> {
    vec!["ai.mission*".to_string(), "Ai::Mission*".to_string()]
}

fn default_agent() -> Vec<String> {
    vec![
        "ai.agent.execution*".to_string(),
        "Ai::Agent*Execut*".to_string(),
    ]
}

impl ApmConfig {
    /// Reads and parses `path` (unknown keys are errors naming line and column); the
    /// source comes back for [`ApmConfig::validate`] to place its errors.
    pub fn load(path: &Path) -> Result<(ApmConfig, Source), ConfigError> {
        let src = Source::read(path)?;
        Ok((src.deserialize()?, src))
    }

    /// As [`ApmConfig::load`], over text already in memory shown as `path`.
    pub fn parse(text: &str, path: &str) -> Result<(ApmConfig, Source), ConfigError> {
        let src = Source::new(path, text);
        Ok((src.deserialize()?, src))
    }

    /// Checks every value and builds the engine's configuration.
    pub fn validate(&self, src: &Source, targets: &Targets) -> Result<EngineConfig, ConfigError> {
        let bad = |key: &str, value: String, why: &str| src.error(key, format!("{value}: {why}"));
        let dur = |key: &str, v: &Option<String>, default: Duration| -> Result<u64, ConfigError> {
            match v {
                None => Ok(default.as_nanos() as u64),
                Some(s) => powertune_core::duration::parse(s)
                    .map(|d| d.as_nanos() as u64)
                    .map_err(|e| bad(key, format!("\"{s}\""), &format!("{e} (example: \"15m\")"))),
            }
        };
        let w = &self.window;
        let retain = dur("window.retain", &w.retain, Duration::from_secs(900))?;
        let buckets = w.buckets.unwrap_or(15);
        if !(1..=240).contains(&buckets) {
            return Err(bad(
                "window.buckets",
                buckets.to_string(),
                "must be 1..=240 (example: 15)",
            ));
        }
        if retain < 1_000_000_000 * u64::from(buckets) {
            return Err(bad(
                "window.retain",
                powertune_core::units::duration(Duration::from_nanos(retain)),
                "must be at least one second per bucket (example: \"15m\")",
            ));
        }
        let positive = |key: &str, v: Option<usize>, d: usize| -> Result<usize, ConfigError> {
            match v {
                Some(0) => Err(bad(key, "0".into(), "must be at least 1")),
                Some(n) => Ok(n),
                None => Ok(d),
            }
        };
        let mut user = Vec::new();
        for (i, r) in self.endpoint_types.iter().enumerate() {
            let key = format!("endpoint_types[{i}]");
            let t: EndpointType = r.endpoint_type.parse().map_err(|e: String| {
                bad(
                    &format!("{key}.type"),
                    format!("\"{}\"", r.endpoint_type),
                    &e,
                )
            })?;
            let rule = Rule::parse(&r.pattern, t)
                .map_err(|e| bad(&format!("{key}.match"), format!("\"{}\"", r.pattern), &e))?;
            user.push(rule);
        }
        let npo = &self.n_plus_one;
        let min_count = npo.min_count.unwrap_or(5);
        if min_count < 2 {
            return Err(bad(
                "n_plus_one.min_count",
                min_count.to_string(),
                "must be at least 2 (example: 5)",
            ));
        }
        let nonneg = |key: &str, v: Option<f64>, d: f64| -> Result<f64, ConfigError> {
            match v {
                Some(x) if !x.is_finite() || x < 0.0 => Err(bad(
                    key,
                    x.to_string(),
                    "must be a number ≥ 0 (example: 50)",
                )),
                Some(x) => Ok(x),
                None => Ok(d),
            }
        };
        let c = &self.consecutive_queries;
        let mut cfg = unreachable_defaults(targets);
        cfg.bucket_ns = retain / u64::from(buckets);
        cfg.buckets = buckets;
        cfg.max_spans = positive("window.max_spans", w.max_spans, 200_000)?;
        cfg.max_open_traces = positive("window.max_open_traces", w.max_open_traces, 20_000)?;
        cfg.max_spans_per_trace =
            positive("window.max_spans_per_trace", w.max_spans_per_trace, 5_000)?;
        cfg.max_keys = positive("window.max_keys", w.max_keys, 200)?;
        cfg.linger_ns = dur("window.linger", &w.linger, Duration::from_secs(2))?;
        cfg.max_trace_age_ns = dur(
            "window.max_trace_age",
            &w.max_trace_age,
            Duration::from_secs(30),
        )?;
        cfg.classifier = Classifier::new(user);
        cfg.mission_spans = self.spans.mission.clone().unwrap_or_else(default_mission);
        cfg.agent_spans = self.spans.agent.clone().unwrap_or_else(default_agent);
        cfg.n_plus_one_min_count = min_count;
        cfg.n_plus_one_min_total_ms = nonneg("n_plus_one.min_total_ms", npo.min_total_ms, 50.0)?;
        cfg.consecutive_min_span_ms =
            nonneg("consecutive_queries.min_span_ms", c.min_span_ms, 30.0)?;
        cfg.consecutive_min_saved_ms =
            nonneg("consecutive_queries.min_saved_ms", c.min_saved_ms, 100.0)?;
        cfg.consecutive_min_ratio = nonneg(
            "consecutive_queries.min_saved_ratio",
            c.min_saved_ratio,
            0.1,
        )?;
        cfg.cache_min_lookups = match self.cache.min_lookups {
            Some(0) => {
                return Err(bad(
                    "cache.min_lookups",
                    "0".into(),
                    "must be at least 1 (example: 20)",
                ))
            }
            Some(n) => n,
            None => DEFAULT_MIN_LOOKUPS,
        };
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(text: &str) -> Result<EngineConfig, ConfigError> {
        let (raw, src) = ApmConfig::parse(text, "apm.toml")?;
        raw.validate(&src, &Targets::default())
    }

    #[test]
    fn parses_validates_and_rejects() {
        let t = Targets::default();
        let c = validated(
            "[window]\nretain = \"30m\"\nbuckets = 30\n[[endpoint_types]]\nmatch = \"GET /api/v1/users/**\"\ntype = \"analytics\"\n",
        )
        .unwrap();
        assert_eq!(c.bucket_ns, 60_000_000_000);
        assert_eq!(
            c.classifier.classify("GET /api/v1/users/:id"),
            EndpointType::Analytics
        );
        let e = ApmConfig::parse("[window]\nretian = \"1m\"\n", "apm.toml").unwrap_err();
        assert!(e.to_string().starts_with("apm.toml:2:"), "{e}");
        assert_eq!(e.line, 2);
        let e = validated("[[endpoint_types]]\nmatch = \"/x\"\ntype = \"graphql\"\n").unwrap_err();
        assert!(e.to_string().contains("read_crud"), "{e}");
        assert!(e.to_string().starts_with("apm.toml:3:"), "{e}");
        let e = validated("[window]\nretain = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("15m"), "{e}");
        assert!(
            e.to_string()
                .starts_with("apm.toml:2:1: window.retain: \"soon\": "),
            "{e}"
        );
        let e = validated("[window]\nbuckets = 0\n").unwrap_err();
        assert_eq!(e.key, "window.buckets");
        // The retained time is echoed the core way (units::duration).
        let e = validated("[window]\nretain = \"90s\"\nbuckets = 120\n").unwrap_err();
        assert_eq!(e.key, "window.retain");
        assert!(e.to_string().contains("1m30s"), "{e}");
        let (raw, src) = ApmConfig::parse(
            "[server]\nmax_connections = 10\nheader_read_timeout = \"2s\"\nmax_body_bytes = 4096\n",
            "apm.toml",
        )
        .unwrap();
        let l = raw.server.validate(&src).unwrap();
        assert_eq!(l.connection.max_connections, 10);
        assert_eq!(l.connection.header_read_timeout, Duration::from_secs(2));
        assert_eq!((l.max_body, l.max_decompressed), (4096, 64 << 20));
        for (text, key) in [
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            (
                "[server]\nheader_read_timeout = \"0s\"\n",
                "server.header_read_timeout",
            ),
            (
                "[server]\nmax_header_bytes = 10\n",
                "server.max_header_bytes",
            ),
            ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes"),
            (
                "[server]\nmax_body_bytes = 4096\nmax_decompressed_bytes = 2048\n",
                "server.max_decompressed_bytes",
            ),
            (
                "[server]\ngrpc_max_connections = 0\n",
                "server.grpc_max_connections",
            ),
        ] {
            let (raw, src) = ApmConfig::parse(text, "apm.toml").unwrap();
            let e = raw.server.validate(&src).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.to_string().starts_with("apm.toml:"), "{e}");
        }
        let d = EngineConfig::defaults(&t);
        assert_eq!(d.slow_request_ms, 1000.0);
        assert_eq!(d.max_query_ms, 100.0);
    }
}
