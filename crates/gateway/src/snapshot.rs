//! The `/status` snapshot: plain data a running gateway serves and
//! `powertune gateway status` judges.

use powertune_core::LatencyHistogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialStatus {
    pub provider: String,
    pub credential: String,
    /// closed, open, rate_limited, half_open, disabled
    pub state: String,
    /// Seconds until an open breaker may be probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_for_s: Option<f64>,
    pub consecutive_failures: u32,
    pub trips: u64,
    pub transitions: u64,
    pub weight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderLatency {
    pub provider: String,
    pub latency_ms: Percentiles,
    /// The full histogram (base64 HDR), so baselines and merges stay exact.
    pub histogram: LatencyHistogram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesStatus {
    pub provider: String,
    pub credential: String,
    pub model: String,
    pub requests: BTreeMap<String, u64>,
    pub latency_ms: Percentiles,
    pub ttft_ms: Percentiles,
    pub per_token_ms: Percentiles,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// `GET /status`: everything `powertune gateway status` judges.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusSnapshot {
    pub version: u32,
    pub uptime_s: f64,
    /// Config generation: 1 at start, +1 per accepted reload.
    #[serde(default)]
    pub config_generation: u64,
    /// Client calls answered.
    pub calls: u64,
    /// Client calls by retries they needed: [0 retries, 1, 2].
    pub retries_by_depth: Vec<u64>,
    /// Calls answered 503 because every candidate was open.
    pub rejected_all_open: u64,
    /// The gateway's own time per call.
    pub overhead_ms: Percentiles,
    pub credentials: Vec<CredentialStatus>,
    pub providers: Vec<ProviderLatency>,
    pub series: Vec<SeriesStatus>,
}
