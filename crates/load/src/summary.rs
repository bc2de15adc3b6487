//! The run summary (versioned JSON, histograms included so runs can be merged and
//! compared), threshold evaluation and the k6-like text rendering.

use crate::metrics::{ErrorCounts, SeriesMetrics, Shard, Trend};
use crate::plan::{Plan, THRESHOLD_METRICS};
use powertune_core::histogram::TrendStats;
use powertune_core::report::{table, Style};
use powertune_core::threshold::{Aggregation, Threshold};
use powertune_core::{EndpointType, LatencyHistogram};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The schema identifier of the summary held in a report's `metrics`.
pub const SUMMARY_SCHEMA: &str = "powertune.load-summary/v1";

/// A latency metric: its statistics (ms) and the HDR histogram behind them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrendSummary {
    #[serde(flatten)]
    pub stats: TrendStats,
    /// HdrHistogram V2 + DEFLATE, base64, microseconds.
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpSummary {
    pub reqs: u64,
    /// Requests per second over the run.
    pub rate: f64,
    /// Errors or statuses outside 200..=399.
    pub failed: u64,
    pub errors: ErrorCounts,
    /// Status code → count.
    pub status: BTreeMap<String, u64>,
    /// Latency from the scheduled start (coordinated-omission corrected).
    pub duration: TrendSummary,
    /// Latency from send to the response's last byte.
    pub duration_raw: TrendSummary,
    /// Requests by protocol, k6's `proto` tag (`HTTP/1.1`, `HTTP/2.0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub protocols: BTreeMap<String, u64>,
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
        let mut d = self.duration.histogram.clone();
        let _ = d.merge(&o.duration.histogram);
        self.duration = TrendSummary::from_hist(d);
        let mut r = self.duration_raw.histogram.clone();
        let _ = r.merge(&o.duration_raw.histogram);
        self.duration_raw = TrendSummary::from_hist(r);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    pub name: String,
    pub endpoint_type: EndpointType,
    pub method: String,
    pub url: String,
    pub http: HttpSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phases {
    pub blocked: TrendSummary,
    pub connecting: TrendSummary,
    pub tls_handshaking: TrendSummary,
    pub sending: TrendSummary,
    pub waiting: TrendSummary,
    pub receiving: TrendSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckSummary {
    pub name: String,
    pub passes: u64,
    pub fails: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    /// `powertune_core::EndpointType` key (`authentication`, `read_crud`, ...).
    pub endpoint_type: EndpointType,
    pub executor: String,
    pub vus_max: u64,
    pub iterations: u64,
    pub iteration_rate: f64,
    pub dropped_iterations: u64,
    pub iteration_duration: TrendSummary,
    pub data_sent: u64,
    pub data_received: u64,
    pub http: HttpSummary,
    pub phases: Phases,
    pub steps: Vec<StepSummary>,
    pub checks: Vec<CheckSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<WsSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointSummary {
    pub endpoint_type: EndpointType,
    pub title: String,
    pub scenarios: Vec<String>,
    pub http: HttpSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// `http_req_duration{scenario:login}`.
    pub metric: String,
    /// `p(95)<2000`.
    pub expr: String,
    pub observed: Option<f64>,
    pub ok: bool,
    pub abort_on_fail: bool,
}

/// The `vus` gauge over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VusSummary {
    pub min: u64,
    pub max: u64,
    /// The last sample.
    pub current: u64,
    /// Seconds each point of `series` covers (each point is the largest sample in it).
    pub interval_s: f64,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub source: String,
    pub base_url: String,
    pub started_at: String,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    pub vus_max: u64,
    /// k6's `vus` gauge: min/max/last sample and a bounded series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vus: Option<VusSummary>,
    pub http: HttpSummary,
    pub iterations: u64,
    pub dropped_iterations: u64,
    pub data_sent: u64,
    pub data_received: u64,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub scenarios: Vec<ScenarioSummary>,
    pub endpoint_types: Vec<EndpointSummary>,
    pub thresholds: Vec<ThresholdResult>,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        plan: &Plan,
        snap: &Shard,
        elapsed: Duration,
        started_at: &chrono::DateTime<chrono::Utc>,
        base_url: &str,
        vus_max: u64,
        scen_vus_max: &[u64],
        aborted: Option<String>,
    ) -> Summary {
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
                        url: h.url_text.clone(),
                        http: HttpSummary::from_series(std::iter::once(s), secs),
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
            aborted,
            vus_max,
            vus: None,
            http: HttpSummary::from_series(snap.series.iter(), secs),
            iterations: 0,
            dropped_iterations: 0,
            data_sent: 0,
            data_received: 0,
            checks_passed: snap.checks.iter().map(|c| c.0).sum(),
            checks_failed: snap.checks.iter().map(|c| c.1).sum(),
            scenarios,
            endpoint_types: Vec::new(),
            thresholds: Vec::new(),
        };
        s.finish_totals();
        s.thresholds = evaluate(&s, &plan.thresholds);
        s
    }

    fn finish_totals(&mut self) {
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
    }

    /// Parses a summary from a `--json` report file's text (or a bare summary).
    pub fn from_report_json(text: &str) -> Result<Summary, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
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

/// Observed value of a threshold over the summary, `None` when the aggregation does
/// not apply to the metric.
pub fn observe(s: &Summary, t: &Threshold) -> Option<f64> {
    let tag = |k: &str| {
        t.metric
            .tags
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    };
    let scen_ok = |sc: &ScenarioSummary| {
        tag("scenario").is_none_or(|v| v == sc.name)
            && tag("endpoint_type").is_none_or(|v| {
                v.parse::<EndpointType>()
                    .map(|e| e == sc.endpoint_type)
                    .unwrap_or(false)
            })
    };
    let step_ok = |st: &StepSummary| {
        tag("name").is_none_or(|v| v == st.name)
            && tag("method").is_none_or(|v| v.eq_ignore_ascii_case(&st.method))
            && tag("url").is_none_or(|v| v == st.url)
    };
    let scens: Vec<&ScenarioSummary> = s.scenarios.iter().filter(|sc| scen_ok(sc)).collect();
    let secs = s.duration_s.max(1e-9);
    let trend = |pick: &dyn Fn(&ScenarioSummary) -> Vec<LatencyHistogram>| {
        let mut h = LatencyHistogram::new();
        for sc in &scens {
            for x in pick(sc) {
                let _ = h.merge(&x);
            }
        }
        h
    };
    let http = || {
        let mut m = HttpSummary::default();
        for sc in &scens {
            for st in sc.steps.iter().filter(|st| step_ok(st)) {
                m.merge(&st.http);
            }
        }
        m
    };
    enum V {
        Trend(LatencyHistogram),
        Counter(f64),
        Rate(f64),
        Gauge(f64),
    }
    let sum =
        |f: &dyn Fn(&ScenarioSummary) -> u64| scens.iter().map(|sc| f(sc)).sum::<u64>() as f64;
    let v = match t.metric.name.as_str() {
        "http_req_duration" => V::Trend(http().duration.histogram),
        "http_req_duration_raw" => V::Trend(http().duration_raw.histogram),
        "http_reqs" => V::Counter(http().reqs as f64),
        "http_req_failed" => V::Rate(http().failed_rate()),
        "http_req_blocked" => V::Trend(trend(&|sc| vec![sc.phases.blocked.histogram.clone()])),
        "http_req_connecting" => {
            V::Trend(trend(&|sc| vec![sc.phases.connecting.histogram.clone()]))
        }
        "http_req_tls_handshaking" => V::Trend(trend(&|sc| {
            vec![sc.phases.tls_handshaking.histogram.clone()]
        })),
        "http_req_sending" => V::Trend(trend(&|sc| vec![sc.phases.sending.histogram.clone()])),
        "http_req_waiting" => V::Trend(trend(&|sc| vec![sc.phases.waiting.histogram.clone()])),
        "http_req_receiving" => V::Trend(trend(&|sc| vec![sc.phases.receiving.histogram.clone()])),
        "iterations" => V::Counter(sum(&|sc| sc.iterations)),
        "iteration_duration" => {
            V::Trend(trend(&|sc| vec![sc.iteration_duration.histogram.clone()]))
        }
        "dropped_iterations" => V::Counter(sum(&|sc| sc.dropped_iterations)),
        "checks" => {
            let (p, f) = scens
                .iter()
                .flat_map(|sc| sc.checks.iter())
                .fold((0, 0), |a, c| (a.0 + c.passes, a.1 + c.fails));
            V::Rate(if p + f == 0 {
                0.0
            } else {
                p as f64 / (p + f) as f64
            })
        }
        "data_sent" => V::Counter(sum(&|sc| sc.data_sent)),
        "data_received" => V::Counter(sum(&|sc| sc.data_received)),
        "vus_max" => V::Gauge(scens.iter().map(|sc| sc.vus_max).sum::<u64>() as f64),
        "ws_connecting" => V::Trend(trend(&|sc| {
            sc.ws
                .iter()
                .map(|w| w.connecting.histogram.clone())
                .collect()
        })),
        "ws_subscribe_duration" => V::Trend(trend(&|sc| {
            sc.ws
                .iter()
                .map(|w| w.subscribe_duration.histogram.clone())
                .collect()
        })),
        "ws_session_duration" => V::Trend(trend(&|sc| {
            sc.ws
                .iter()
                .map(|w| w.session_duration.histogram.clone())
                .collect()
        })),
        "ws_sessions" => V::Counter(sum(&|sc| sc.ws.as_ref().map_or(0, |w| w.sessions))),
        "ws_msgs_received" => V::Counter(sum(&|sc| sc.ws.as_ref().map_or(0, |w| w.msgs_received))),
        _ => return None,
    };
    match (v, t.expr.agg) {
        (V::Trend(h), Aggregation::Avg) => Some(h.mean_ms()),
        (V::Trend(h), Aggregation::Min) => Some(h.min_ms()),
        (V::Trend(h), Aggregation::Max) => Some(h.max_ms()),
        (V::Trend(h), Aggregation::Med) => Some(h.percentile_ms(50.0)),
        (V::Trend(h), Aggregation::Percentile(p)) => Some(h.percentile_ms(p)),
        (V::Trend(h), Aggregation::Count) => Some(h.count() as f64),
        (V::Counter(c), Aggregation::Count) => Some(c),
        (V::Counter(c), Aggregation::Rate) => Some(c / secs),
        (V::Rate(r), Aggregation::Rate) => Some(r),
        (V::Gauge(g), Aggregation::Value | Aggregation::Min | Aggregation::Max) => Some(g),
        _ => None,
    }
}

/// Evaluates every threshold; one whose aggregation does not apply fails.
pub fn evaluate(s: &Summary, ts: &[Threshold]) -> Vec<ThresholdResult> {
    ts.iter()
        .map(|t| {
            let observed = observe(s, t);
            ThresholdResult {
                metric: t.metric.to_string(),
                expr: t.expr.to_string(),
                observed,
                ok: observed.is_some_and(|v| t.expr.holds(v)),
                abort_on_fail: t.abort_on_fail,
            }
        })
        .collect()
}

/// Is `agg` meaningful for `metric`? Used when validating `--threshold`.
pub fn aggregation_applies(metric: &str, agg: Aggregation) -> bool {
    let kind = match metric {
        "http_reqs" | "iterations" | "dropped_iterations" | "data_sent" | "data_received"
        | "ws_sessions" | "ws_msgs_received" => "counter",
        "http_req_failed" | "checks" => "rate",
        "vus_max" => "gauge",
        m if THRESHOLD_METRICS.iter().any(|(n, _)| *n == m) => "trend",
        _ => return false,
    };
    matches!(
        (kind, agg),
        ("trend", Aggregation::Avg)
            | ("trend", Aggregation::Min)
            | ("trend", Aggregation::Max)
            | ("trend", Aggregation::Med)
            | ("trend", Aggregation::Percentile(_))
            | ("trend", Aggregation::Count)
            | ("counter", Aggregation::Count)
            | ("counter", Aggregation::Rate)
            | ("rate", Aggregation::Rate)
            | ("gauge", Aggregation::Value)
            | ("gauge", Aggregation::Min)
            | ("gauge", Aggregation::Max)
    )
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.2}ms")
    } else {
        format!("{:.0}µs", v * 1000.0)
    }
}

fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

fn trend_row(name: &str, t: &TrendSummary, secs: f64) -> Vec<String> {
    let s = &t.stats;
    vec![
        name.to_string(),
        s.count.to_string(),
        format!("{:.1}/s", s.count as f64 / secs),
        ms(s.avg),
        ms(s.min),
        ms(s.med),
        ms(s.p90),
        ms(s.p95),
        ms(s.p99),
        ms(s.max),
    ]
}

fn header() -> Vec<String> {
    [
        "metric", "count", "rate", "avg", "min", "med", "p90", "p95", "p99", "max",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn http_rows(rows: &mut Vec<Vec<String>>, prefix: &str, h: &HttpSummary, secs: f64) {
    if h.reqs == 0 {
        return;
    }
    rows.push(trend_row(
        &format!("{prefix}http_req_duration"),
        &h.duration,
        secs,
    ));
    rows.push(trend_row(
        &format!("{prefix}http_req_duration_raw"),
        &h.duration_raw,
        secs,
    ));
    let mut r = vec![
        format!("{prefix}http_reqs"),
        h.reqs.to_string(),
        format!("{:.1}/s", h.reqs as f64 / secs),
    ];
    r.extend(std::iter::repeat_n(String::new(), 7));
    rows.push(r);
    let mut f = vec![
        format!("{prefix}http_req_failed"),
        format!("{:.2}%", h.failed_rate() * 100.0),
        format!("{} of {}", h.failed, h.reqs),
    ];
    f.extend(std::iter::repeat_n(String::new(), 7));
    rows.push(f);
}

impl Summary {
    /// The k6-like text summary.
    pub fn render_text(&self, style: Style) -> String {
        let secs = self.duration_s.max(1e-9);
        let mut out = String::new();
        out.push_str(&style.bold(&format!(
            "powertune load — {} against {} — {:.1}s, up to {} VUs\n",
            self.source, self.base_url, self.duration_s, self.vus_max
        )));
        if let Some(a) = &self.aborted {
            out.push_str(&format!("ABORTED: {a}\n"));
        }
        if let Some(v) = &self.vus {
            out.push_str(&format!(
                "vus: min {}  max {}  current {}  ({} samples, one per {}s)\n",
                v.min,
                v.max,
                v.current,
                v.series.len(),
                v.interval_s
            ));
        }
        out.push('\n');
        let mut rows = vec![header()];
        http_rows(&mut rows, "", &self.http, secs);
        let mut it = vec![
            "iterations".to_string(),
            self.iterations.to_string(),
            format!("{:.1}/s", self.iterations as f64 / secs),
        ];
        it.extend(std::iter::repeat_n(String::new(), 7));
        rows.push(it);
        if self.dropped_iterations > 0 {
            let mut d = vec![
                "dropped_iterations".to_string(),
                self.dropped_iterations.to_string(),
                format!("{:.1}/s", self.dropped_iterations as f64 / secs),
            ];
            d.extend(std::iter::repeat_n(String::new(), 7));
            rows.push(d);
        }
        out.push_str(&table(&rows));
        out.push_str(&format!(
            "data_sent {}  data_received {}  checks {}/{} passed\n",
            bytes(self.data_sent),
            bytes(self.data_received),
            self.checks_passed,
            self.checks_passed + self.checks_failed
        ));
        if !self.http.status.is_empty() {
            let codes: Vec<String> = self
                .http
                .status
                .iter()
                .map(|(c, n)| format!("{c}×{n}"))
                .collect();
            out.push_str(&format!("status: {}\n", codes.join("  ")));
        }
        if !self.http.protocols.is_empty() {
            let p: Vec<String> = self
                .http
                .protocols
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect();
            out.push_str(&format!("protocols: {}\n", p.join("  ")));
        }
        let e = &self.http.errors;
        if e.total() > 0 {
            out.push_str(&format!(
                "errors: connect {}  tls {}  timeout {}  status {}  protocol {}\n",
                e.connect, e.tls, e.timeout, e.status, e.protocol
            ));
        }
        for sc in &self.scenarios {
            out.push('\n');
            out.push_str(&style.bold(&format!(
                "scenario {} ({}, {}, up to {} VUs): {} iterations{}\n",
                sc.name,
                sc.endpoint_type.title(),
                sc.executor,
                sc.vus_max,
                sc.iterations,
                if sc.dropped_iterations > 0 {
                    format!(", {} dropped", sc.dropped_iterations)
                } else {
                    String::new()
                }
            )));
            let mut rows = vec![header()];
            for st in &sc.steps {
                http_rows(&mut rows, &format!("{} · ", st.name), &st.http, secs);
            }
            if sc.http.reqs > 0 {
                rows.push(trend_row("http_req_waiting", &sc.phases.waiting, secs));
                rows.push(trend_row(
                    "http_req_connecting",
                    &sc.phases.connecting,
                    secs,
                ));
            }
            rows.push(trend_row(
                "iteration_duration",
                &sc.iteration_duration,
                secs,
            ));
            if let Some(w) = &sc.ws {
                rows.push(trend_row("ws_connecting", &w.connecting, secs));
                rows.push(trend_row(
                    "ws_subscribe_duration",
                    &w.subscribe_duration,
                    secs,
                ));
                rows.push(trend_row("ws_session_duration", &w.session_duration, secs));
            }
            out.push_str(&table(&rows));
            if let Some(w) = &sc.ws {
                out.push_str(&format!(
                    "ws_sessions {}  ws_msgs_received {}  broadcasts {}  ws errors {}\n",
                    w.sessions, w.msgs_received, w.broadcasts, w.errors
                ));
            }
            for c in &sc.checks {
                let total = c.passes + c.fails;
                let mark = if c.fails == 0 { "✓" } else { "✗" };
                out.push_str(&format!(
                    "  {mark} {} — {:.2}% ({} / {})\n",
                    c.name,
                    if total == 0 {
                        0.0
                    } else {
                        c.passes as f64 * 100.0 / total as f64
                    },
                    c.passes,
                    total
                ));
            }
        }
        if !self.endpoint_types.is_empty() {
            out.push('\n');
            out.push_str(&style.bold("per endpoint type\n"));
            let mut rows = vec![header()];
            for e in &self.endpoint_types {
                if e.http.reqs > 0 {
                    rows.push(trend_row(&e.title, &e.http.duration, secs));
                }
            }
            out.push_str(&table(&rows));
        }
        if !self.thresholds.is_empty() {
            out.push('\n');
            out.push_str(&style.bold("thresholds\n"));
            for t in &self.thresholds {
                let mark = if t.ok { "✓" } else { "✗" };
                let obs = t.observed.map_or("n/a".to_string(), |v| format!("{v:.3}"));
                out.push_str(&format!(
                    "  {mark} {}: {} (observed {obs})\n",
                    t.metric, t.expr
                ));
            }
        }
        out
    }
}
