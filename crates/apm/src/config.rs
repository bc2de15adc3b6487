//! `apm.toml`: the window's bounds, endpoint-type rules, the span names of missions
//! and agents, and the detectors' settings. Read with core's loader: raw serde
//! structs (unknown keys are errors) → [`ApmConfig::validate`] → [`EngineConfig`],
//! before any socket opens; every error is `FILE:LINE:COL: KEY: WHY`.

use crate::classify::{Classifier, Rule};
use powertune_core::config_file::Source;
use powertune_core::{EndpointType, Targets};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

pub use powertune_core::config_file::ConfigError;

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
    // From the runbook's targets:
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
        let d = EngineConfig::defaults(&t);
        assert_eq!(d.slow_request_ms, 1000.0);
        assert_eq!(d.max_query_ms, 100.0);
    }
}
