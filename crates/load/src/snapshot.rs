//! The snapshot: everything a run measured, as plain data — the versioned summary
//! (histograms included so runs can be merged and compared) built from the merged
//! metric shards.

use crate::metrics::{
    ErrorCounts, LlmMetrics, SeriesMetrics, Shard, StreamErrorCounts, Trend, VusSeries,
};
use crate::plan::Plan;
use powertune_core::histogram::TrendStats;
use powertune_core::redact;
use powertune_core::{EndpointType, LatencyHistogram};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A load report that could not be read as a baseline.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ReportError {
    pub path: String,
    pub reason: String,
}

/// The schema identifier of the summary held in a report's `metrics`.
pub const SUMMARY_SCHEMA: &str = "powertune.load-summary/v1";

/// A latency metric: its statistics in milliseconds and the HDR histogram behind them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct TrendSummary {
    #[serde(flatten)]
    pub stats: TrendStats,
    /// HdrHistogram V2 + DEFLATE, base64, microseconds.
    #[schemars(with = "String", extend("contentEncoding" = "base64"))]
    pub histogram: LatencyHistogram,
}

impl TrendSummary {
    pub fn from_hist(h: LatencyHistogram) -> TrendSummary {
        TrendSummary {
            stats: h.stats(),
            histogram: h,
        }
    }
    fn from_trend(t: &Trend) -> TrendSummary {
        TrendSummary::from_hist(t.histogram())
    }
}

/// HTTP figures of one step, scenario, endpoint type or the whole run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct HttpSummary {
    pub reqs: u64,
    /// Requests per second over the run.
    pub rate: f64,
    /// Errors or statuses outside 200..=399.
    pub failed: u64,
    pub errors: ErrorCounts,
    /// Status code → count.
    #[schemars(extend("propertyNames" = { "pattern": "^[0-9]{3}$" }))]
    pub status: BTreeMap<String, u64>,
    /// Latency from the scheduled start (coordinated-omission corrected).
    pub duration: TrendSummary,
    /// Latency from send to the response's last byte.
    pub duration_raw: TrendSummary,
    /// Requests by protocol, k6's `proto` tag (`HTTP/1.1`, `HTTP/2.0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "enum": ["HTTP/1.1", "HTTP/2.0"] }))]
    pub protocols: BTreeMap<String, u64>,
    /// With `--trace`: the slowest answered requests (at most 5, slowest first) and
    /// their trace ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<crate::trace::SlowRequest>,
}

impl HttpSummary {
    pub fn failed_rate(&self) -> f64 {
        if self.reqs == 0 {
            0.0
        } else {
            self.failed as f64 / self.reqs as f64
        }
    }

    fn from_series<'a>(it: impl Iterator<Item = &'a SeriesMetrics>, secs: f64) -> HttpSummary {
        let mut m = SeriesMetrics::default();
        for s in it {
            m.merge(s);
        }
        let mut status = BTreeMap::new();
        for (c, n) in &m.status {
            *status.entry(c.to_string()).or_insert(0) += n;
        }
        HttpSummary {
            reqs: m.reqs,
            rate: m.reqs as f64 / secs.max(1e-9),
            failed: m.failed,
            errors: m.errors,
            status,
            duration: TrendSummary::from_trend(&m.duration),
            duration_raw: TrendSummary::from_trend(&m.raw),
            protocols: [("HTTP/1.1", m.http1), ("HTTP/2.0", m.http2)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_string(), n))
                .collect(),
            slowest: m.slowest.report(),
        }
    }

    /// Merges another summary (rates are added: both cover the same run).
    pub fn merge(&mut self, o: &HttpSummary) {
        self.reqs += o.reqs;
        self.rate += o.rate;
        self.failed += o.failed;
        self.errors.add(&o.errors);
        for (k, v) in &o.status {
            *self.status.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &o.protocols {
            *self.protocols.entry(k.clone()).or_insert(0) += v;
        }
        crate::trace::merge_reported(&mut self.slowest, &o.slowest);
        let mut d = self.duration.histogram.clone();
        let _ = d.merge(&o.duration.histogram);
        self.duration = TrendSummary::from_hist(d);
        let mut r = self.duration_raw.histogram.clone();
        let _ = r.merge(&o.duration_raw.histogram);
        self.duration_raw = TrendSummary::from_hist(r);
    }
}

/// What the LLM answers of one step (or of every LLM step of the run) measured.
/// Durations in ms; `tokens_per_s` holds output tokens per second of end-to-end
/// duration, one sample per answer, in its statistics (not ms).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct LlmSummary {
    /// The steps' dialects (`openai`, `anthropic`, `ollama`).
    pub dialects: Vec<String>,
    /// Answers with a 2xx status, streamed or whole.
    pub responses: u64,
    pub streamed: u64,
    /// Answers that finished without a stream error.
    pub completed: u64,
    pub output_tokens: u64,
    pub input_tokens: u64,
    /// Answers whose output tokens came from the answer's usage (`usage`,
    /// `message_delta`, `eval_count`)…
    pub tokens_from_usage: u64,
    /// …and answers whose output tokens were counted as content chunks (a stream
    /// without usage, e.g. OpenAI without `stream_options.include_usage`).
    pub tokens_from_chunks: u64,
    /// Output tokens per second over the run (all LLM steps together).
    pub output_tokens_rate: f64,
    /// Streamed answers that broke after a 2xx status, by kind.
    pub stream_errors: StreamErrorCounts,
    /// Request start → first content chunk (a role-only chunk is no content).
    pub ttft: TrendSummary,
    /// Gaps between consecutive content chunks, pooled over every answer.
    pub itl: TrendSummary,
    /// (last content chunk − first) ÷ (output tokens − 1), per completed answer.
    pub tpot: TrendSummary,
    /// Request start → end of the answer, per completed answer.
    pub e2e: TrendSummary,
    /// Output tokens ÷ end-to-end seconds, per completed answer (not ms).
    pub tokens_per_s: TrendSummary,
}

impl LlmSummary {
    fn from_metrics(m: &LlmMetrics, dialects: Vec<String>, secs: f64) -> LlmSummary {
        LlmSummary {
            dialects,
            responses: m.responses,
            streamed: m.streamed,
            completed: m.completed,
            output_tokens: m.output_tokens,
            input_tokens: m.input_tokens,
            tokens_from_usage: m.from_usage,
            tokens_from_chunks: m.from_chunks,
            output_tokens_rate: m.output_tokens as f64 / secs.max(1e-9),
            stream_errors: m.faults,
            ttft: TrendSummary::from_trend(&m.ttft),
            itl: TrendSummary::from_trend(&m.itl),
            tpot: TrendSummary::from_trend(&m.tpot),
            e2e: TrendSummary::from_trend(&m.e2e),
            tokens_per_s: TrendSummary::from_trend(&m.tokens_per_s),
        }
    }

    /// Merges another summary over the same run (rates are added).
    pub fn merge(&mut self, o: &LlmSummary) {
        for d in &o.dialects {
            if !self.dialects.contains(d) {
                self.dialects.push(d.clone());
            }
        }
        self.responses += o.responses;
        self.streamed += o.streamed;
        self.completed += o.completed;
        self.output_tokens += o.output_tokens;
        self.input_tokens += o.input_tokens;
        self.tokens_from_usage += o.tokens_from_usage;
        self.tokens_from_chunks += o.tokens_from_chunks;
        self.output_tokens_rate += o.output_tokens_rate;
        self.stream_errors.add(&o.stream_errors);
        for (a, b) in [
            (&mut self.ttft, &o.ttft),
            (&mut self.itl, &o.itl),
            (&mut self.tpot, &o.tpot),
            (&mut self.e2e, &o.e2e),
            (&mut self.tokens_per_s, &o.tokens_per_s),
        ] {
            let mut h = a.histogram.clone();
            let _ = h.merge(&b.histogram);
            *a = TrendSummary::from_hist(h);
        }
    }

    /// Where the output token counts came from, in words.
    pub fn token_source(&self) -> &'static str {
        match (self.tokens_from_usage > 0, self.tokens_from_chunks > 0) {
            (true, false) => "from the answers' usage",
            (false, true) => "counted from content chunks (no usage in the stream)",
            (true, true) => "from usage where sent, else counted from content chunks",
            (false, false) => "no answer",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct StepSummary {
    pub name: String,
    pub endpoint_type: EndpointType,
    pub method: String,
    /// The step's URL as written in the scenario file, secrets masked (`***`).
    pub url: String,
    pub http: HttpSummary,
    /// A step with `llm = "…"`: its answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Phases {
    pub blocked: TrendSummary,
    pub connecting: TrendSummary,
    pub tls_handshaking: TrendSummary,
    pub sending: TrendSummary,
    pub waiting: TrendSummary,
    pub receiving: TrendSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct CheckSummary {
    pub name: String,
    pub passes: u64,
    pub fails: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct WsSummary {
    pub sessions: u64,
    pub errors: u64,
    pub msgs_received: u64,
    pub msgs_sent: u64,
    /// ActionCable broadcasts (messages carrying a `message` other than pings).
    pub broadcasts: u64,
    pub connecting: TrendSummary,
    pub subscribe_duration: TrendSummary,
    pub session_duration: TrendSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct ScenarioSummary {
    pub name: String,
    /// `powertune_core::EndpointType` key (`authentication`, `read_crud`, ...).
    pub endpoint_type: EndpointType,
    /// k6's executor name.
    #[schemars(extend("enum" = [
        "constant-vus",
        "ramping-vus",
        "constant-arrival-rate",
        "ramping-arrival-rate",
        "per-vu-iterations",
        "shared-iterations"
    ]))]
    pub executor: String,
    pub vus_max: u64,
    pub iterations: u64,
    /// Iterations per second over the run.
    pub iteration_rate: f64,
    pub dropped_iterations: u64,
    pub iteration_duration: TrendSummary,
    /// Bytes.
    pub data_sent: u64,
    /// Bytes.
    pub data_received: u64,
    pub http: HttpSummary,
    /// k6's request phases.
    pub phases: Phases,
    pub steps: Vec<StepSummary>,
    pub checks: Vec<CheckSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<WsSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct EndpointSummary {
    pub endpoint_type: EndpointType,
    pub title: String,
    pub scenarios: Vec<String>,
    pub http: HttpSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct ThresholdResult {
    /// The metric and its tags: `http_req_duration{scenario:login}`.
    pub metric: String,
    /// The expression: `p(95)<2000`.
    pub expr: String,
    /// The aggregated value in the metric's own unit (ms for latencies, 0–1 for rate
    /// metrics); null when the aggregation does not apply.
    pub observed: Option<f64>,
    pub ok: bool,
    pub abort_on_fail: bool,
}

/// The `vus` gauge over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct VusSummary {
    pub min: u64,
    pub max: u64,
    /// The last sample.
    pub current: u64,
    /// Seconds each point of `series` covers (each point is the largest sample in it).
    pub interval_s: f64,
    /// At most 600 points.
    #[schemars(length(max = 600))]
    pub series: Vec<u64>,
}

impl VusSummary {
    pub fn from_series(v: &crate::metrics::VusSeries) -> VusSummary {
        VusSummary {
            min: v.min.unwrap_or(0),
            max: v.max,
            current: v.current,
            interval_s: v.interval_s,
            series: v.points.clone(),
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Summary {
    /// Always `powertune.load-summary/v1`.
    #[schemars(extend("const" = "powertune.load-summary/v1"))]
    pub schema: String,
    /// The scenario file (or `--url`).
    pub source: String,
    /// The base URL, secrets masked.
    pub base_url: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Seconds the run took.
    pub duration_s: f64,
    /// The validated plan's hash (`sha256:…`, see `powertune_load::segment::plan_hash`):
    /// the parts of one split run share it, and `powertune merge` refuses parts whose
    /// hashes differ.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan_hash: String,
    /// The execution segment this run was (`--segment`); absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<crate::segment::SegmentInfo>,
    /// Why an `abort_on_fail` threshold stopped the run early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// A signal (SIGINT/SIGTERM) cut the run short: the figures cover only what was
    /// measured until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// The most VUs that ran at once.
    pub vus_max: u64,
    /// k6's `vus` gauge: min/max/last sample and a bounded series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vus: Option<VusSummary>,
    /// Every request of the run.
    pub http: HttpSummary,
    /// Every LLM step's answers together (absent without LLM steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmSummary>,
    pub iterations: u64,
    /// Iterations an open-model executor could not start (every VU busy).
    pub dropped_iterations: u64,
    /// Bytes.
    pub data_sent: u64,
    /// Bytes.
    pub data_received: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub scenarios: Vec<ScenarioSummary>,
    /// Requests grouped by the runbook's endpoint type, as judged.
    pub endpoint_types: Vec<EndpointSummary>,
    /// The plan's thresholds as evaluated.
    pub thresholds: Vec<ThresholdResult>,
    /// The run over time (whole run, per scenario, per endpoint type), at most 600
    /// points per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::timeline::TimelineSummary>,
}

/// What the collector hands over at the end of a run (or the monitor mid-run).
#[derive(Debug, Clone, Copy)]
pub struct Collected<'a> {
    pub plan: &'a Plan,
    /// The merge of every metric shard.
    pub shard: &'a Shard,
    pub elapsed: Duration,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The base URL as shown (no password).
    pub base_url: &'a str,
    pub vus_max: u64,
    /// Per scenario, in plan order.
    pub scenario_vus_max: &'a [u64],
    /// The `vus` gauge over the run.
    pub vus: Option<&'a VusSeries>,
    /// Why the run stopped early.
    pub aborted: Option<&'a str>,
}

impl Summary {
    /// The summary of what was collected; its `thresholds` are left empty (the
    /// collector evaluates them over the finished summary).
    pub fn build(c: Collected<'_>) -> Summary {
        let Collected {
            plan,
            shard: snap,
            elapsed,
            started_at,
            base_url,
            vus_max,
            scenario_vus_max: scen_vus_max,
            vus,
            aborted,
        } = c;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut scenarios = Vec::new();
        for (i, sc) in plan.scenarios.iter().enumerate() {
            let Some(m) = snap.scenarios.get(i) else {
                continue;
            };
            let series: Vec<&SeriesMetrics> = sc
                .http_steps()
                .filter_map(|h| snap.series.get(h.series))
                .collect();
            let steps = sc
                .http_steps()
                .filter_map(|h| {
                    snap.series.get(h.series).map(|s| StepSummary {
                        name: h.name.clone(),
                        endpoint_type: h.endpoint_type,
                        method: h.method.to_string(),
                        // Relative URLs too: `redact::text` masks `?token=` after a path.
                        url: redact::text(&h.url_text),
                        http: HttpSummary::from_series(std::iter::once(s), secs),
                        llm: h.llm.map(|l| {
                            LlmSummary::from_metrics(
                                &s.llm,
                                vec![l.dialect.as_str().to_string()],
                                secs,
                            )
                        }),
                    })
                })
                .collect();
            let checks = sc
                .checks()
                .iter()
                .map(|c| {
                    let (p, f) = snap.checks.get(c.id).copied().unwrap_or((0, 0));
                    CheckSummary {
                        name: c.label.clone(),
                        passes: p,
                        fails: f,
                    }
                })
                .collect();
            let ws = sc.has_cable().then(|| WsSummary {
                sessions: m.ws_sessions,
                errors: m.ws_errors,
                msgs_received: m.ws_msgs_received,
                msgs_sent: m.ws_msgs_sent,
                broadcasts: m.ws_broadcasts,
                connecting: TrendSummary::from_trend(&m.ws_connecting),
                subscribe_duration: TrendSummary::from_trend(&m.ws_subscribe),
                session_duration: TrendSummary::from_trend(&m.ws_session),
            });
            scenarios.push(ScenarioSummary {
                name: sc.name.clone(),
                endpoint_type: sc.endpoint_type,
                executor: sc.executor.name().to_string(),
                vus_max: scen_vus_max.get(i).copied().unwrap_or(0),
                iterations: m.iterations,
                iteration_rate: m.iterations as f64 / secs,
                dropped_iterations: m.dropped,
                iteration_duration: TrendSummary::from_trend(&m.iteration_duration),
                data_sent: m.data_sent,
                data_received: m.data_received,
                http: HttpSummary::from_series(series.into_iter(), secs),
                phases: Phases {
                    blocked: TrendSummary::from_trend(&m.blocked),
                    connecting: TrendSummary::from_trend(&m.connecting),
                    tls_handshaking: TrendSummary::from_trend(&m.tls),
                    sending: TrendSummary::from_trend(&m.sending),
                    waiting: TrendSummary::from_trend(&m.waiting),
                    receiving: TrendSummary::from_trend(&m.receiving),
                },
                steps,
                checks,
                ws,
            });
        }
        let mut s = Summary {
            schema: SUMMARY_SCHEMA.to_string(),
            source: plan.source.clone(),
            base_url: base_url.to_string(),
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_s: secs,
            plan_hash: crate::segment::plan_hash(plan),
            segment: (!plan.segment.is_whole())
                .then(|| plan.segment.info(&crate::segment::plan_hash(plan))),
            aborted: aborted.map(str::to_string),
            interrupted: false,
            vus_max,
            vus: vus.map(VusSummary::from_series),
            http: HttpSummary::from_series(snap.series.iter(), secs),
            llm: None,
            iterations: 0,
            dropped_iterations: 0,
            data_sent: 0,
            data_received: 0,
            checks_passed: snap.checks.iter().map(|c| c.0).sum(),
            checks_failed: snap.checks.iter().map(|c| c.1).sum(),
            scenarios,
            endpoint_types: Vec::new(),
            thresholds: Vec::new(),
            timeline: None,
        };
        s.finish_totals();
        s
    }

    /// The summary of a run in progress over `elapsed` (no start time, base URL or VU
    /// figures): what the live monitor and the live outputs evaluate.
    pub(crate) fn live(plan: &Plan, shard: &Shard, elapsed: Duration) -> Summary {
        Summary::build(Collected {
            plan,
            shard,
            elapsed,
            started_at: chrono::Utc::now(),
            base_url: "",
            vus_max: 0,
            scenario_vus_max: &[],
            vus: None,
            aborted: None,
        })
    }

    pub(crate) fn finish_totals(&mut self) {
        self.iterations = self.scenarios.iter().map(|s| s.iterations).sum();
        self.dropped_iterations = self.scenarios.iter().map(|s| s.dropped_iterations).sum();
        self.data_sent = self.scenarios.iter().map(|s| s.data_sent).sum();
        self.data_received = self.scenarios.iter().map(|s| s.data_received).sum();
        let mut by: BTreeMap<EndpointType, EndpointSummary> = BTreeMap::new();
        for sc in &self.scenarios {
            for st in &sc.steps {
                let e = by
                    .entry(st.endpoint_type)
                    .or_insert_with(|| EndpointSummary {
                        endpoint_type: st.endpoint_type,
                        title: st.endpoint_type.title().to_string(),
                        scenarios: Vec::new(),
                        http: HttpSummary::default(),
                    });
                if !e.scenarios.contains(&sc.name) {
                    e.scenarios.push(sc.name.clone());
                }
                e.http.merge(&st.http);
            }
        }
        self.endpoint_types = by.into_values().collect();
        let mut llm: Option<LlmSummary> = None;
        for st in self.scenarios.iter().flat_map(|sc| &sc.steps) {
            if let Some(l) = &st.llm {
                llm.get_or_insert_with(LlmSummary::default).merge(l);
            }
        }
        self.llm = llm;
    }

    /// Reads the summary of a `powertune load --json FILE` report (the baseline of
    /// `--baseline` and `compare`: a load report, not a `powertune.baseline/v1` file),
    /// refusing files over `powertune_core::baseline::MAX_BYTES` before reading them.
    pub fn read_report(path: &Path) -> Result<Summary, ReportError> {
        let err = |reason: String| ReportError {
            path: path.display().to_string(),
            reason,
        };
        let text = powertune_core::baseline::read_limited(path).map_err(|e| {
            err(format!(
                "cannot read: {e}; expected a report from `powertune load --json FILE`"
            ))
        })?;
        Summary::from_report_json(&text).map_err(err)
    }

    /// Parses a summary from a `--json` report file's text (or a bare summary).
    pub fn from_report_json(text: &str) -> Result<Summary, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if v.get("schema").and_then(|s| s.as_str()) == Some(powertune_core::baseline::SCHEMA) {
            return Err(format!(
                "a {} file; the load engine's baseline is a load report, as written by `powertune load --json FILE`",
                powertune_core::baseline::SCHEMA
            ));
        }
        let inner = if v.get("schema").and_then(|s| s.as_str()) == Some(SUMMARY_SCHEMA) {
            v
        } else {
            v.get("metrics").cloned().unwrap_or(serde_json::Value::Null)
        };
        if inner.get("schema").and_then(|s| s.as_str()) != Some(SUMMARY_SCHEMA) {
            return Err(format!(
                "not a powertune load report (expected metrics.schema = \"{SUMMARY_SCHEMA}\", as written by `powertune load --json FILE`)"
            ));
        }
        serde_json::from_value(inner).map_err(|e| format!("bad load summary: {e}"))
    }
}

/// The summary of a one-scenario, one-VU plan's shard over `elapsed` (for tests).
#[cfg(test)]
pub(crate) fn one_scenario(plan: &Plan, shard: &Shard, elapsed: Duration) -> Summary {
    Summary::build(Collected {
        plan,
        shard,
        elapsed,
        started_at: chrono::Utc::now(),
        base_url: "http://x/",
        vus_max: 1,
        scenario_vus_max: &[1],
        vus: None,
        aborted: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_urls_are_shown_with_their_secrets_masked() {
        let plan = Plan::from_toml_str(
            "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/x?token=abc123&page=2\"\n[[scenarios.a.steps]]\nurl = \"https://u:pw1234@api.example/y\"\n",
            "p.toml",
        )
        .unwrap();
        let shard = Shard::new(plan.n_series, 1, plan.n_checks);
        let s = one_scenario(&plan, &shard, Duration::from_secs(1));
        let urls: Vec<&str> = s.scenarios[0]
            .steps
            .iter()
            .map(|st| st.url.as_str())
            .collect();
        assert_eq!(urls, ["/x?token=***&page=2", "https://u:***@api.example/y"]);
    }

    #[test]
    fn reports_are_read_as_baselines_and_other_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(
            &p,
            r#"{"schema":"powertune.baseline/v1","kind":"load","saved_at":"x","data":{}}"#,
        )
        .unwrap();
        let e = Summary::read_report(&p).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: a powertune.baseline/v1 file", p.display())),
            "{e}"
        );
        assert!(e.contains("powertune load --json FILE"), "{e}");
        std::fs::write(&p, r#"{"metrics":{}}"#).unwrap();
        let e = Summary::read_report(&p).unwrap_err().to_string();
        assert!(e.contains("not a powertune load report"), "{e}");
        let e = Summary::read_report(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.json: cannot read"), "{e}");
    }
}
