//! The `/status` snapshot: plain data a running gateway serves and
//! `powertune gateway status` judges; also the report's `metrics` payload, with its
//! schema in `docs/schema/gateway-status.v1.json`.

use powertune_core::LatencyHistogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Percentiles in milliseconds over `count` samples (all 0 when there are none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    pub fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.count(),
            p50: h.percentile_ms(50.0),
            p95: h.percentile_ms(95.0),
            p99: h.percentile_ms(99.0),
        }
    }
}

/// One (provider, credential) pair and its breaker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CredentialStatus {
    pub provider: String,
    pub credential: String,
    /// Breaker state: closed, open, rate_limited, half_open, disabled.
    pub state: String,
    /// Seconds until an open breaker may be probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_for_s: Option<f64>,
    /// When an open breaker may be probed, as UTC wall-clock time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<String>,
    /// While rate-limited: the wait the provider's 429 asked for, in seconds
    /// (`Retry-After`, or `breaker.rate_limit_default` without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<f64>,
    /// While rate-limited: the asked wait was longer than `breaker.retry_after_max`,
    /// so the credential is out for that maximum instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_capped: Option<bool>,
    /// Counted failures in a row.
    pub consecutive_failures: u32,
    /// Times the breaker opened.
    pub trips: u64,
    /// Breaker state changes.
    pub transitions: u64,
    /// Share of the weighted split.
    pub weight: u32,
    /// Local requests-per-minute limit, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens-per-minute limit, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// With a tpm: tokens in its bucket now (reservations of calls in flight taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_remaining: Option<u64>,
    /// With a tpm: `tpm - tokens_remaining`, the tokens of the last minute's calls not
    /// yet refilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_used: Option<u64>,
    /// Requests left as the provider's rate-limit headers last said (counted down
    /// for calls sent since), until their reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_remaining_requests: Option<u64>,
    /// Tokens left as the provider's rate-limit headers last said, until their reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_remaining_tokens: Option<u64>,
}

/// Round trips of one provider's successful calls.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProviderLatency {
    pub provider: String,
    pub latency_ms: Percentiles,
    /// The full histogram (HdrHistogram V2 + DEFLATE, base64), so baselines and
    /// merges stay exact.
    #[schemars(with = "String")]
    pub histogram: LatencyHistogram,
}

/// One (provider, credential, model) series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SeriesStatus {
    pub provider: String,
    pub credential: String,
    pub model: String,
    /// Upstream calls by outcome: ok, client_error, rate_limited, auth_failed,
    /// server_error, connect_error, timeout, stream_error, client_closed (only those
    /// seen).
    pub requests: BTreeMap<String, u64>,
    pub latency_ms: Percentiles,
    pub ttft_ms: Percentiles,
    pub per_token_ms: Percentiles,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// `[shared]`: where this replica's breakers and rpm limits live now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SharedStatus {
    /// `shared` (in Redis, with the other replicas), `local` (Redis failed or was
    /// slow: this replica's own until it answers again) or `connecting`.
    pub mode: String,
    /// The Redis URL, password redacted.
    pub redis: String,
    /// When the mode last changed (RFC 3339, UTC).
    pub since: String,
    /// Why the replica is on local state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Times the replica fell back to local state.
    pub fallbacks: u64,
    /// Round trips to Redis (admissions and outcome pipelines).
    pub round_trips: u64,
    /// Outcomes not recorded because their queue was full.
    pub dropped: u64,
}

/// `GET /status`: everything `powertune gateway status` judges.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusSnapshot {
    /// The `/status` format version (1).
    pub version: u32,
    /// Seconds since the gateway started.
    pub uptime_s: f64,
    /// Config generation: 1 at start, +1 per accepted reload.
    #[serde(default)]
    pub config_generation: u64,
    /// Client calls answered.
    pub calls: u64,
    /// Client calls by retries they needed: [0 retries, 1, 2].
    pub retries_by_depth: Vec<u64>,
    /// Calls answered 503 at once, nothing sent upstream, because every candidate
    /// credential was open, rate-limited or disabled.
    pub rejected_all_open: u64,
    /// The gateway's own time per call.
    pub overhead_ms: Percentiles,
    pub credentials: Vec<CredentialStatus>,
    pub providers: Vec<ProviderLatency>,
    pub series: Vec<SeriesStatus>,
    /// `[shared]`, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedStatus>,
    /// Cost and budgets, when a price table is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::pricing::CostStatus>,
}
