//! The snapshot: what the window holds, as served by `GET /api/summary` and judged
//! by [`crate::judge`]. Plain data; every figure in milliseconds.

use powertune_core::EndpointType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format version of the summary JSON.
pub const SUMMARY_SCHEMA: &str = "powertune.apm.summary/v1";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngestStats {
    pub spans_received: u64,
    /// Spans refused with a reason (bad ids): counted in OTLP partial success.
    pub spans_rejected: u64,
    /// Spans dropped because a trace exceeded `max_spans_per_trace`.
    pub spans_dropped: u64,
    pub traces_analyzed: u64,
    /// Traces analysed before their root arrived, because the window was full.
    pub traces_forced: u64,
    /// Traces analysed without ever seeing a root span.
    pub traces_without_root: u64,
    /// Statistics keys folded into `(other)` because `max_keys` was reached.
    pub keys_overflowed: u64,
    pub open_traces: u64,
    pub open_spans: u64,
    pub bodies_malformed: u64,
    /// Batches the `--forward` target accepted.
    #[serde(default)]
    pub forwarded: u64,
    /// Batches the forward target refused, or that failed (error, timeout).
    #[serde(default)]
    pub forward_failed: u64,
    /// Batches not forwarded because the forward queue was full (still analysed).
    #[serde(default)]
    pub forward_dropped: u64,
    /// Job executions tied by a span link to the request that enqueued them.
    #[serde(default)]
    pub jobs_linked: u64,
    /// Batches waiting to be forwarded or in flight now.
    #[serde(default)]
    pub forward_queued: u64,
}

/// Share of a route's time per layer (the procedure's step 2); sums over all requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Breakdown {
    pub db_ms: f64,
    pub http_ms: f64,
    pub app_ms: f64,
}

impl Breakdown {
    pub fn total_ms(&self) -> f64 {
        self.db_ms + self.http_ms + self.app_ms
    }

    /// Percentages (db, http, app); zeros when empty.
    pub fn shares(&self) -> (f64, f64, f64) {
        let t = self.total_ms();
        if t <= 0.0 {
            return (0.0, 0.0, 0.0);
        }
        (
            100.0 * self.db_ms / t,
            100.0 * self.http_ms / t,
            100.0 * self.app_ms / t,
        )
    }

    /// The layer to look at first.
    pub fn dominant(&self) -> &'static str {
        let (d, h, a) = self.shares();
        if d >= h && d >= a {
            "database"
        } else if h >= a {
            "outgoing HTTP / provider calls"
        } else {
            "application code"
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceRef {
    pub trace_id: String,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub avg_ms: f64,
    /// Example trace ids of failures (requests with status ≥ 500 or span status
    /// ERROR), latest first, at most 3.
    #[serde(default)]
    pub error_traces: Vec<String>,
}

impl Latency {
    pub fn error_rate_pct(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.count as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RouteSummary {
    pub route: String,
    pub endpoint_type: EndpointType,
    #[serde(flatten)]
    pub latency: Latency,
    pub breakdown: Breakdown,
    pub slowest: Vec<TraceRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TypeSummary {
    pub endpoint_type: EndpointType,
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobSummary {
    pub class: String,
    #[serde(flatten)]
    pub latency: Latency,
    /// Jobs slower than the runbook's slow-job threshold (30 s).
    pub slow: u64,
    pub example_trace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderSummary {
    /// `provider/model`.
    pub key: String,
    #[serde(flatten)]
    pub latency: Latency,
    /// Calls made through powertune's gateway (`powertune.gateway.*` attributes).
    #[serde(default)]
    pub via_gateway: u64,
    /// Tokens the calls report (`gen_ai.usage.input_tokens` / `output_tokens`).
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// Retries: what a call span reports (`powertune.gateway.retries`), else its
    /// attempt spans beyond the first.
    #[serde(default)]
    pub retries: u64,
    /// Time to the first chunk of streamed answers, when the spans give it.
    #[serde(default)]
    pub ttft: Option<Ttft>,
}

/// Time to first chunk over the calls that report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ttft {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DetectionKind {
    NPlusOne,
    SlowQuery,
    SlowRequest,
    ConsecutiveQueries,
    SlowJob,
    SlowMission,
    SlowAgent,
}

impl DetectionKind {
    pub fn key(self) -> &'static str {
        match self {
            DetectionKind::NPlusOne => "n_plus_one",
            DetectionKind::SlowQuery => "slow_query",
            DetectionKind::SlowRequest => "slow_request",
            DetectionKind::ConsecutiveQueries => "consecutive_queries",
            DetectionKind::SlowJob => "slow_job",
            DetectionKind::SlowMission => "slow_mission",
            DetectionKind::SlowAgent => "slow_agent",
        }
    }
}

/// One detector's hits for one (route, statement or name), aggregated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Detection {
    pub kind: DetectionKind,
    /// The route or `job Class` the spans ran under (`(no entry span)` otherwise).
    pub route: String,
    /// The normalized statement, span name or job class.
    pub subject: String,
    /// How many times the pattern occurred (traces for N+1, spans for slow queries).
    pub occurrences: u64,
    /// Spans involved, summed (N+1: the repeated queries).
    pub spans: u64,
    /// The longest single occurrence (N+1: the largest total of one occurrence).
    pub max_ms: f64,
    pub total_ms: f64,
    /// For consecutive queries: time that running them together would save.
    pub saved_ms: f64,
    pub example_trace: String,
}

/// The window's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Format version: `powertune.apm.summary/v1`.
    pub schema: String,
    /// Seconds covered (`null` for an offline file: all of it).
    pub window_s: Option<f64>,
    pub ingest: IngestStats,
    pub types: Vec<TypeSummary>,
    pub routes: Vec<RouteSummary>,
    pub jobs: Vec<JobSummary>,
    pub providers: Vec<ProviderSummary>,
    pub detections: Vec<Detection>,
    /// Jobs per enqueuing route, from span links (a Sidekiq job's consumer span
    /// linked to the request's enqueue span).
    #[serde(default)]
    pub linked_jobs: Vec<LinkedJobs>,
    /// Cache hit rates from cache spans, overall and per cache type.
    #[serde(default)]
    pub cache: CacheSummary,
}

/// Cache lookups in the window (cache spans: Rails' `cache_read.active_support`,
/// Sentry's `cache.get` with `cache.hit`), overall and per cache type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CacheSummary {
    pub hits: u64,
    pub lookups: u64,
    /// Lookups a type (and the whole) needs before its hit rate is judged.
    pub min_lookups: u64,
    /// Types with at least one lookup, by name.
    pub types: Vec<CacheTypeSummary>,
}

/// One cache type's lookups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CacheTypeSummary {
    /// The `[cache]` entry's name (`default` for keys no pattern matches).
    pub cache_type: String,
    /// Its key pattern (Redis glob).
    pub pattern: String,
    pub hits: u64,
    pub lookups: u64,
}

/// Hits as a percentage of lookups (0 without lookups).
pub fn hit_rate_pct(hits: u64, lookups: u64) -> f64 {
    if lookups == 0 {
        0.0
    } else {
        100.0 * hits as f64 / lookups as f64
    }
}

/// The executions of one job class enqueued by one route (followed span links).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkedJobs {
    pub route: String,
    pub class: String,
    #[serde(flatten)]
    pub latency: Latency,
}

/// A job trace linked to a span of an example trace (it was enqueued there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LinkedTrace {
    /// The span of the example the job's link points to (the enqueue span).
    pub from_span_id: String,
    pub trace_id: String,
    pub class: String,
    pub duration_ms: f64,
    pub error: bool,
    /// The job's span tree (depth 0 = the job span).
    pub spans: Vec<SpanNode>,
    pub truncated: u64,
}

/// One span of an example trace, for the indented tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpanNode {
    /// Nesting level under the example's entry span (0).
    pub depth: u32,
    pub span_id: String,
    pub parent_id: String,
    pub name: String,
    /// `db`, `http`, `provider`, `cache`, `server`, `job`, `enqueue`, `other`.
    pub category: String,
    /// Detail: statement, route, host, model.
    pub detail: String,
    pub offset_ms: f64,
    pub duration_ms: f64,
    pub error: bool,
    /// A SQL span's statement as sent, when it carried its values as literals
    /// (runnable as is, e.g. by EXPLAIN ANALYZE); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_sample: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TraceExample {
    pub trace_id: String,
    pub duration_ms: f64,
    pub breakdown: Breakdown,
    /// In start order; `truncated` counts spans left out.
    pub spans: Vec<SpanNode>,
    pub truncated: u64,
    /// Job traces linked to this trace's spans (at most 3).
    #[serde(default)]
    pub linked: Vec<LinkedTrace>,
}

/// `GET /api/endpoint?route=...`: the slow-endpoint procedure for one route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointDetail {
    pub route: RouteSummary,
    pub detections: Vec<Detection>,
    /// Jobs this route enqueued (span links).
    #[serde(default)]
    pub linked_jobs: Vec<LinkedJobs>,
    pub slowest: Vec<TraceExample>,
}

/// Saved provider P95s (`--save-baseline` writes it, `--baseline` reads it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// `provider/model` → P95 in milliseconds.
    pub providers: BTreeMap<String, f64>,
}

impl Baseline {
    pub fn from_summary(s: &Summary) -> Baseline {
        Baseline {
            providers: s
                .providers
                .iter()
                .map(|p| (p.key.clone(), p.latency.p95_ms))
                .collect(),
        }
    }
}
