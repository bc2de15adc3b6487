//! The built-in metrics: each one's name, kind and the tags it carries. Plan
//! validation, threshold evaluation and the summary's text all read this one list.

use powertune_core::threshold::{Aggregation, Threshold};

/// How a metric aggregates (k6's four metric types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A latency distribution (ms): avg, min, med, max, p(N), count.
    Trend,
    /// A running total: count, and rate per second over the run.
    Counter,
    /// A share of true samples: rate.
    Rate,
    /// A level: value, min, max.
    Gauge,
}

impl MetricKind {
    /// Whether `agg` means something for a metric of this kind.
    pub fn accepts(self, agg: Aggregation) -> bool {
        matches!(
            (self, agg),
            (
                MetricKind::Trend,
                Aggregation::Avg
                    | Aggregation::Min
                    | Aggregation::Max
                    | Aggregation::Med
                    | Aggregation::Percentile(_)
                    | Aggregation::Count
            ) | (MetricKind::Counter, Aggregation::Count | Aggregation::Rate)
                | (MetricKind::Rate, Aggregation::Rate)
                | (
                    MetricKind::Gauge,
                    Aggregation::Value | Aggregation::Min | Aggregation::Max
                )
        )
    }
}

/// A tag a threshold selector may name (`http_req_duration{scenario:login}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Scenario,
    EndpointType,
    /// The step's name.
    Name,
    Method,
    Url,
}

impl Tag {
    pub const ALL: &'static [Tag] = &[
        Tag::Scenario,
        Tag::EndpointType,
        Tag::Name,
        Tag::Method,
        Tag::Url,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Tag::Scenario => "scenario",
            Tag::EndpointType => "endpoint_type",
            Tag::Name => "name",
            Tag::Method => "method",
            Tag::Url => "url",
        }
    }

    pub fn from_key(key: &str) -> Option<Tag> {
        Tag::ALL.iter().copied().find(|t| t.key() == key)
    }
}

/// Tags of metrics recorded per HTTP step.
const STEP_TAGS: &[Tag] = Tag::ALL;
/// Tags of metrics recorded per scenario.
const SCENARIO_TAGS: &[Tag] = &[Tag::Scenario, Tag::EndpointType];

/// Every metric the engine records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    HttpReqDuration,
    HttpReqDurationRaw,
    HttpReqs,
    HttpReqFailed,
    HttpReqBlocked,
    HttpReqConnecting,
    HttpReqTlsHandshaking,
    HttpReqSending,
    HttpReqWaiting,
    HttpReqReceiving,
    Iterations,
    IterationDuration,
    DroppedIterations,
    Checks,
    DataSent,
    DataReceived,
    VusMax,
    WsConnecting,
    WsSubscribeDuration,
    WsSessionDuration,
    WsSessions,
    WsMsgsReceived,
    LlmTtft,
    LlmItl,
    LlmTpot,
    LlmTokensPerS,
    LlmOutputTokens,
    LlmStreamErrors,
}

impl Metric {
    /// In the order error messages list them.
    pub const ALL: &'static [Metric] = &[
        Metric::HttpReqDuration,
        Metric::HttpReqDurationRaw,
        Metric::HttpReqs,
        Metric::HttpReqFailed,
        Metric::HttpReqBlocked,
        Metric::HttpReqConnecting,
        Metric::HttpReqTlsHandshaking,
        Metric::HttpReqSending,
        Metric::HttpReqWaiting,
        Metric::HttpReqReceiving,
        Metric::Iterations,
        Metric::IterationDuration,
        Metric::DroppedIterations,
        Metric::Checks,
        Metric::DataSent,
        Metric::DataReceived,
        Metric::VusMax,
        Metric::WsConnecting,
        Metric::WsSubscribeDuration,
        Metric::WsSessionDuration,
        Metric::WsSessions,
        Metric::WsMsgsReceived,
        Metric::LlmTtft,
        Metric::LlmItl,
        Metric::LlmTpot,
        Metric::LlmTokensPerS,
        Metric::LlmOutputTokens,
        Metric::LlmStreamErrors,
    ];

    /// k6's name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::HttpReqDuration => "http_req_duration",
            Metric::HttpReqDurationRaw => "http_req_duration_raw",
            Metric::HttpReqs => "http_reqs",
            Metric::HttpReqFailed => "http_req_failed",
            Metric::HttpReqBlocked => "http_req_blocked",
            Metric::HttpReqConnecting => "http_req_connecting",
            Metric::HttpReqTlsHandshaking => "http_req_tls_handshaking",
            Metric::HttpReqSending => "http_req_sending",
            Metric::HttpReqWaiting => "http_req_waiting",
            Metric::HttpReqReceiving => "http_req_receiving",
            Metric::Iterations => "iterations",
            Metric::IterationDuration => "iteration_duration",
            Metric::DroppedIterations => "dropped_iterations",
            Metric::Checks => "checks",
            Metric::DataSent => "data_sent",
            Metric::DataReceived => "data_received",
            Metric::VusMax => "vus_max",
            Metric::WsConnecting => "ws_connecting",
            Metric::WsSubscribeDuration => "ws_subscribe_duration",
            Metric::WsSessionDuration => "ws_session_duration",
            Metric::WsSessions => "ws_sessions",
            Metric::WsMsgsReceived => "ws_msgs_received",
            Metric::LlmTtft => "llm_ttft",
            Metric::LlmItl => "llm_itl",
            Metric::LlmTpot => "llm_tpot",
            Metric::LlmTokensPerS => "llm_tokens_per_s",
            Metric::LlmOutputTokens => "llm_output_tokens",
            Metric::LlmStreamErrors => "llm_stream_errors",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.name() == name)
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::HttpReqs
            | Metric::Iterations
            | Metric::DroppedIterations
            | Metric::DataSent
            | Metric::DataReceived
            | Metric::WsSessions
            | Metric::WsMsgsReceived
            | Metric::LlmOutputTokens
            | Metric::LlmStreamErrors => MetricKind::Counter,
            Metric::HttpReqFailed | Metric::Checks => MetricKind::Rate,
            Metric::VusMax => MetricKind::Gauge,
            Metric::HttpReqDuration
            | Metric::HttpReqDurationRaw
            | Metric::HttpReqBlocked
            | Metric::HttpReqConnecting
            | Metric::HttpReqTlsHandshaking
            | Metric::HttpReqSending
            | Metric::HttpReqWaiting
            | Metric::HttpReqReceiving
            | Metric::IterationDuration
            | Metric::WsConnecting
            | Metric::WsSubscribeDuration
            | Metric::WsSessionDuration
            | Metric::LlmTtft
            | Metric::LlmItl
            | Metric::LlmTpot
            | Metric::LlmTokensPerS => MetricKind::Trend,
        }
    }

    /// A trend whose samples are not durations (shown as they are, not in ms).
    pub fn is_rate_trend(self) -> bool {
        self == Metric::LlmTokensPerS
    }

    /// The tags its samples carry: the four request metrics and the LLM metrics are
    /// recorded per step, everything else per scenario.
    pub fn tags(self) -> &'static [Tag] {
        match self {
            Metric::HttpReqDuration
            | Metric::HttpReqDurationRaw
            | Metric::HttpReqs
            | Metric::HttpReqFailed
            | Metric::LlmTtft
            | Metric::LlmItl
            | Metric::LlmTpot
            | Metric::LlmTokensPerS
            | Metric::LlmOutputTokens
            | Metric::LlmStreamErrors => STEP_TAGS,
            _ => SCENARIO_TAGS,
        }
    }
}

/// Is `agg` meaningful for the metric named `metric`? False for unknown names.
pub fn aggregation_applies(metric: &str, agg: Aggregation) -> bool {
    Metric::from_name(metric).is_some_and(|m| m.kind().accepts(agg))
}

/// Checks a threshold's metric, aggregation and tags against the catalogue.
pub fn validate_threshold(t: &Threshold) -> Result<(), String> {
    let Some(metric) = Metric::from_name(&t.metric.name) else {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        return Err(format!(
            "unknown metric `{}` (expected one of: {})",
            t.metric.name,
            names.join(", ")
        ));
    };
    if !metric.kind().accepts(t.expr.agg) {
        return Err(format!(
            "`{}` does not apply to `{}` (trends take avg/min/med/max/p(N), counters count/rate, http_req_failed and checks rate, e.g. http_req_failed: rate<0.01)",
            t.expr.agg, t.metric.name
        ));
    }
    for (k, _) in &t.metric.tags {
        let Some(tag) = Tag::from_key(k) else {
            return Err(format!(
                "unknown tag `{k}` in `{}` (expected scenario, endpoint_type, name, method or url, e.g. http_req_duration{{scenario:login}})",
                t.metric
            ));
        };
        if !metric.tags().contains(&tag) {
            return Err(format!(
                "`{}` is recorded per scenario; tag it with scenario or endpoint_type, not `{k}`",
                t.metric
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(*m));
        }
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        assert_eq!(Metric::from_name("http_req_durations"), None);
        for t in Tag::ALL {
            assert_eq!(Tag::from_key(t.key()), Some(*t));
        }
    }

    #[test]
    fn kinds_take_their_aggregations() {
        use Aggregation::*;
        assert!(aggregation_applies("http_req_duration", Percentile(95.0)));
        assert!(aggregation_applies("http_req_duration", Count));
        assert!(!aggregation_applies("http_req_duration", Rate));
        assert!(aggregation_applies("http_reqs", Rate));
        assert!(aggregation_applies("http_reqs", Count));
        assert!(!aggregation_applies("http_reqs", Avg));
        assert!(aggregation_applies("http_req_failed", Rate));
        assert!(!aggregation_applies("checks", Count));
        assert!(aggregation_applies("vus_max", Value));
        assert!(!aggregation_applies("vus_max", Rate));
        assert!(!aggregation_applies("nope", Count));
    }

    fn check(metric: &str, expr: &str) -> Result<(), String> {
        validate_threshold(&Threshold::parse(metric, expr).unwrap())
    }

    #[test]
    fn thresholds_are_checked_against_the_catalogue() {
        assert!(check("http_req_duration{name:login}", "p(95)<200").is_ok());
        assert!(check("http_req_waiting{scenario:a}", "p(95)<200").is_ok());
        let e = check("http_req_waiting{url:/x}", "p(95)<200").unwrap_err();
        assert!(e.contains("per scenario"), "{e}");
        let e = check("http_reqs{colour:red}", "count>1").unwrap_err();
        assert!(e.starts_with("unknown tag `colour`"), "{e}");
        let e = check("latency", "p(95)<1").unwrap_err();
        assert!(
            e.contains("expected one of: http_req_duration, http_req_duration_raw"),
            "{e}"
        );
        let e = check("checks", "p(95)<1").unwrap_err();
        assert!(e.contains("does not apply to `checks`"), "{e}");
        assert!(check("llm_ttft{name:chat}", "p(95)<2000").is_ok());
        assert!(check("llm_tokens_per_s", "med>20").is_ok());
        assert!(check("llm_output_tokens{scenario:a}", "rate>100").is_ok());
        assert!(check("llm_stream_errors", "count<1").is_ok());
        let e = check("llm_stream_errors", "p(95)<1").unwrap_err();
        assert!(e.contains("does not apply"), "{e}");
    }
}
