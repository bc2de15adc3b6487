//! Threshold evaluation: each threshold's metric (from the [`catalogue`]) observed
//! over the summary, filtered by its tags, aggregated and compared.
//!
//! [`catalogue`]: crate::catalogue

use crate::catalogue::{Metric, MetricKind, Tag};
use crate::snapshot::{
    HttpSummary, LlmSummary, ScenarioSummary, StepSummary, Summary, ThresholdResult,
};
use powertune_core::finding::{Cmp, Value};
use powertune_core::threshold::{Aggregation, Op, Threshold};
use powertune_core::{EndpointType, LatencyHistogram, Quantity, Unit};

/// A metric's value over the selected scenarios and steps, before aggregation.
enum Observation {
    Trend(LatencyHistogram),
    Counter(f64),
    Rate(f64),
    Gauge(f64),
}

/// The samples a threshold's tags select.
struct Selection<'a> {
    threshold: &'a Threshold,
    scenarios: Vec<&'a ScenarioSummary>,
}

impl<'a> Selection<'a> {
    fn new(s: &'a Summary, t: &'a Threshold) -> Selection<'a> {
        let mut sel = Selection {
            threshold: t,
            scenarios: Vec::new(),
        };
        sel.scenarios = s
            .scenarios
            .iter()
            .filter(|sc| sel.scenario_ok(sc))
            .collect();
        sel
    }

    fn tag(&self, tag: Tag) -> Option<&'a str> {
        self.threshold
            .metric
            .tags
            .iter()
            .find(|(k, _)| k == tag.key())
            .map(|(_, v)| v.as_str())
    }

    fn scenario_ok(&self, sc: &ScenarioSummary) -> bool {
        self.tag(Tag::Scenario).is_none_or(|v| v == sc.name)
            && self.tag(Tag::EndpointType).is_none_or(|v| {
                v.parse::<EndpointType>()
                    .map(|e| e == sc.endpoint_type)
                    .unwrap_or(false)
            })
    }

    fn step_ok(&self, st: &StepSummary) -> bool {
        self.tag(Tag::Name).is_none_or(|v| v == st.name)
            && self
                .tag(Tag::Method)
                .is_none_or(|v| v.eq_ignore_ascii_case(&st.method))
            && self.tag(Tag::Url).is_none_or(|v| v == st.url)
    }

    /// The selected steps' HTTP figures, merged.
    fn http(&self) -> HttpSummary {
        let mut m = HttpSummary::default();
        for sc in &self.scenarios {
            for st in sc.steps.iter().filter(|st| self.step_ok(st)) {
                m.merge(&st.http);
            }
        }
        m
    }

    /// The selected LLM steps' figures, merged.
    fn llm(&self) -> LlmSummary {
        let mut m = LlmSummary::default();
        for sc in &self.scenarios {
            for st in sc.steps.iter().filter(|st| self.step_ok(st)) {
                if let Some(l) = &st.llm {
                    m.merge(l);
                }
            }
        }
        m
    }

    /// A per-scenario latency metric, merged over the selected scenarios.
    fn trend(&self, pick: impl Fn(&ScenarioSummary) -> Vec<&LatencyHistogram>) -> Observation {
        let mut h = LatencyHistogram::new();
        for sc in &self.scenarios {
            for x in pick(sc) {
                let _ = h.merge(x);
            }
        }
        Observation::Trend(h)
    }

    /// A per-scenario counter, summed over the selected scenarios.
    fn sum(&self, f: impl Fn(&ScenarioSummary) -> u64) -> f64 {
        self.scenarios.iter().map(|sc| f(sc)).sum::<u64>() as f64
    }
}

/// `metric` over the selection, unaggregated.
fn observation(metric: Metric, sel: &Selection<'_>) -> Observation {
    use Observation::{Counter, Gauge, Rate, Trend};
    match metric {
        Metric::HttpReqDuration => Trend(sel.http().duration.histogram),
        Metric::HttpReqDurationRaw => Trend(sel.http().duration_raw.histogram),
        Metric::HttpReqs => Counter(sel.http().reqs as f64),
        Metric::HttpReqFailed => Rate(sel.http().failed_rate()),
        Metric::HttpReqBlocked => sel.trend(|sc| vec![&sc.phases.blocked.histogram]),
        Metric::HttpReqConnecting => sel.trend(|sc| vec![&sc.phases.connecting.histogram]),
        Metric::HttpReqTlsHandshaking => sel.trend(|sc| vec![&sc.phases.tls_handshaking.histogram]),
        Metric::HttpReqSending => sel.trend(|sc| vec![&sc.phases.sending.histogram]),
        Metric::HttpReqWaiting => sel.trend(|sc| vec![&sc.phases.waiting.histogram]),
        Metric::HttpReqReceiving => sel.trend(|sc| vec![&sc.phases.receiving.histogram]),
        Metric::Iterations => Counter(sel.sum(|sc| sc.iterations)),
        Metric::IterationDuration => sel.trend(|sc| vec![&sc.iteration_duration.histogram]),
        Metric::DroppedIterations => Counter(sel.sum(|sc| sc.dropped_iterations)),
        Metric::Checks => {
            let (p, f) = sel
                .scenarios
                .iter()
                .flat_map(|sc| sc.checks.iter())
                .fold((0, 0), |a, c| (a.0 + c.passes, a.1 + c.fails));
            Rate(if p + f == 0 {
                0.0
            } else {
                p as f64 / (p + f) as f64
            })
        }
        Metric::DataSent => Counter(sel.sum(|sc| sc.data_sent)),
        Metric::DataReceived => Counter(sel.sum(|sc| sc.data_received)),
        Metric::VusMax => Gauge(sel.sum(|sc| sc.vus_max)),
        Metric::WsConnecting => {
            sel.trend(|sc| sc.ws.iter().map(|w| &w.connecting.histogram).collect())
        }
        Metric::WsSubscribeDuration => sel.trend(|sc| {
            sc.ws
                .iter()
                .map(|w| &w.subscribe_duration.histogram)
                .collect()
        }),
        Metric::WsSessionDuration => sel.trend(|sc| {
            sc.ws
                .iter()
                .map(|w| &w.session_duration.histogram)
                .collect()
        }),
        Metric::WsSessions => Counter(sel.sum(|sc| sc.ws.as_ref().map_or(0, |w| w.sessions))),
        Metric::WsMsgsReceived => {
            Counter(sel.sum(|sc| sc.ws.as_ref().map_or(0, |w| w.msgs_received)))
        }
        Metric::LlmTtft => Trend(sel.llm().ttft.histogram),
        Metric::LlmItl => Trend(sel.llm().itl.histogram),
        Metric::LlmTpot => Trend(sel.llm().tpot.histogram),
        Metric::LlmTokensPerS => Trend(sel.llm().tokens_per_s.histogram),
        Metric::LlmOutputTokens => Counter(sel.llm().output_tokens as f64),
        Metric::LlmStreamErrors => Counter(sel.llm().stream_errors.total() as f64),
    }
}

impl Observation {
    fn kind(&self) -> MetricKind {
        match self {
            Observation::Trend(_) => MetricKind::Trend,
            Observation::Counter(_) => MetricKind::Counter,
            Observation::Rate(_) => MetricKind::Rate,
            Observation::Gauge(_) => MetricKind::Gauge,
        }
    }

    /// The aggregated value; `None` when `agg` does not apply to this kind.
    fn aggregate(self, agg: Aggregation, secs: f64) -> Option<f64> {
        if !self.kind().accepts(agg) {
            return None;
        }
        match (self, agg) {
            (Observation::Trend(h), Aggregation::Avg) => Some(h.mean_ms()),
            (Observation::Trend(h), Aggregation::Min) => Some(h.min_ms()),
            (Observation::Trend(h), Aggregation::Max) => Some(h.max_ms()),
            (Observation::Trend(h), Aggregation::Med) => Some(h.percentile_ms(50.0)),
            (Observation::Trend(h), Aggregation::Percentile(p)) => Some(h.percentile_ms(p)),
            (Observation::Trend(h), Aggregation::Count) => Some(h.count() as f64),
            (Observation::Counter(c), Aggregation::Count) => Some(c),
            (Observation::Counter(c), Aggregation::Rate) => Some(c / secs),
            (Observation::Rate(r), Aggregation::Rate) => Some(r),
            (Observation::Gauge(g), _) => Some(g),
            _ => None,
        }
    }
}

/// Observed value of a threshold over the summary, `None` when the metric is not in
/// the catalogue or the aggregation does not apply to it.
pub fn observe(s: &Summary, t: &Threshold) -> Option<f64> {
    let metric = Metric::from_name(&t.metric.name)?;
    let sel = Selection::new(s, t);
    observation(metric, &sel).aggregate(t.expr.agg, s.duration_s.max(1e-9))
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

/// A threshold's figure (its observed value or its bound) with its unit: milliseconds
/// for latency aggregations, a count for counts (bytes for `data_sent` and
/// `data_received`), per second for a counter's rate, and a percentage for the rate
/// metrics (`http_req_failed`, `checks`), whose 0–1 share is shown × 100.
pub fn quantity(t: &Threshold, v: f64) -> Quantity {
    let metric = Metric::from_name(&t.metric.name);
    match (metric.map(Metric::kind), t.expr.agg) {
        (Some(MetricKind::Trend), Aggregation::Count) => Quantity::count(v),
        (Some(MetricKind::Trend), _) if metric.is_some_and(Metric::is_rate_trend) => {
            Quantity::per_second(v)
        }
        (Some(MetricKind::Trend), _) => Quantity::ms(v),
        (Some(MetricKind::Counter), Aggregation::Rate) => Quantity::per_second(v),
        (Some(MetricKind::Rate), _) => Quantity::percent(v * 100.0),
        _ if matches!(metric, Some(Metric::DataSent | Metric::DataReceived)) => {
            Quantity::new(v, Unit::Bytes)
        }
        _ => Quantity::count(v),
    }
}

fn cmp(op: Op) -> Cmp {
    match op {
        Op::Lt => Cmp::Lt,
        Op::Le => Cmp::Le,
        Op::Gt => Cmp::Gt,
        Op::Ge => Cmp::Ge,
        Op::Eq => Cmp::Eq,
    }
}

impl ThresholdResult {
    /// The threshold, read back from its metric and expression text.
    fn threshold(&self) -> Option<Threshold> {
        Threshold::parse(&self.metric, &self.expr).ok()
    }

    /// What was observed, with its unit (`212ms`, `0.5%`); words when nothing was.
    pub fn observed_value(&self) -> Value {
        match (self.observed, self.threshold()) {
            (None, _) => Value::from("not measured"),
            (Some(v), Some(t)) => Value::of(quantity(&t, v)),
            (Some(v), None) => Value::of(Quantity::count(v)),
        }
    }

    /// The bound, with its unit and the expression as written as its note
    /// (`< 300ms (p(95)<300)`).
    pub fn target_value(&self) -> Value {
        match self.threshold() {
            Some(t) => Value::bound(cmp(t.expr.op), quantity(&t, t.expr.value)).note(&self.expr),
            None => Value::from(self.expr.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Shard;
    use crate::plan::Plan;
    use crate::snapshot::Collected;
    use std::time::Duration;

    const PLAN: &str = r#"
[scenarios.api]
endpoint_type = "read_crud"
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.api.steps]]
name = "list"
url = "/items"
checks = { status = 200 }
[[scenarios.api.steps]]
ws = { url = "/ws", expect = "pong" }

[scenarios.other]
endpoint_type = "authentication"
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.other.steps]]
method = "POST"
url = "/login"
endpoint_type = "authentication"
llm = "openai"
"#;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A recorded run with a distinct value behind every metric: scenario `api`
    /// (step `list`: 4 requests at 10 ms, 8 ms raw, 1 failed; a ws step) and scenario
    /// `other` (6 requests at 30 ms), over 2 s.
    fn summary() -> Summary {
        let plan = Plan::from_toml_str(PLAN, "p.toml").unwrap();
        let mut shard = Shard::new(plan.n_series, 2, plan.n_checks);
        for (series, n, d, raw, failed) in [(0, 4, 10, 8, 1), (1, 6, 30, 30, 0)] {
            let m = &mut shard.series[series];
            m.reqs = n;
            m.failed = failed;
            for _ in 0..n {
                m.duration.record(ms(d));
                m.raw.record(ms(raw));
            }
        }
        let a = &mut shard.scenarios[0];
        a.iterations = 5;
        a.dropped = 2;
        for _ in 0..5 {
            a.iteration_duration.record(ms(50));
        }
        a.blocked.record(ms(1));
        a.connecting.record(ms(2));
        a.tls.record(ms(3));
        a.sending.record(ms(4));
        a.waiting.record(ms(5));
        a.receiving.record(ms(6));
        a.data_sent = 100;
        a.data_received = 200;
        a.ws_sessions = 3;
        a.ws_msgs_received = 7;
        a.ws_connecting.record(ms(11));
        a.ws_subscribe.record(ms(12));
        a.ws_session.record(ms(13));
        let l = &mut shard.series[1].llm;
        l.ttft.record(ms(21));
        l.itl.record(ms(22));
        l.tpot.record(ms(23));
        l.tokens_per_s.record_value(24.5);
        l.output_tokens = 25;
        l.faults.stall = 2;
        l.faults.dropped = 1;
        let o = &mut shard.scenarios[1];
        o.iterations = 6;
        o.data_sent = 50;
        shard.checks = vec![(3, 1), (1, 0)];
        Summary::build(Collected {
            plan: &plan,
            shard: &shard,
            elapsed: Duration::from_secs(2),
            started_at: chrono::Utc::now(),
            base_url: "http://x/",
            vus_max: 5,
            scenario_vus_max: &[2, 3],
            vus: None,
            aborted: None,
        })
    }

    /// One row per built-in metric: selector, aggregation, expected observation.
    const ROWS: &[(&str, &str, f64)] = &[
        ("http_req_duration{scenario:api}", "max", 10.0),
        ("http_req_duration_raw{name:list}", "max", 8.0),
        ("http_reqs", "count", 10.0),
        ("http_req_failed{method:GET}", "rate", 0.25),
        ("http_req_blocked", "max", 1.0),
        ("http_req_connecting", "max", 2.0),
        ("http_req_tls_handshaking", "max", 3.0),
        ("http_req_sending", "max", 4.0),
        ("http_req_waiting", "max", 5.0),
        ("http_req_receiving", "max", 6.0),
        ("iterations", "count", 11.0),
        ("iteration_duration{scenario:api}", "avg", 50.0),
        ("dropped_iterations", "count", 2.0),
        ("checks", "rate", 0.8),
        ("data_sent", "count", 150.0),
        ("data_received", "count", 200.0),
        ("vus_max", "value", 5.0),
        ("ws_connecting", "max", 11.0),
        ("ws_subscribe_duration", "max", 12.0),
        ("ws_session_duration", "max", 13.0),
        ("ws_sessions", "count", 3.0),
        ("ws_msgs_received", "count", 7.0),
        ("llm_ttft{name:POST /login}", "max", 21.0),
        ("llm_itl", "max", 22.0),
        ("llm_tpot{scenario:other}", "max", 23.0),
        ("llm_tokens_per_s", "med", 24.5),
        ("llm_output_tokens", "count", 25.0),
        ("llm_stream_errors", "count", 3.0),
    ];

    fn observed(s: &Summary, selector: &str, agg: &str) -> Option<f64> {
        let t = Threshold::parse(selector, &format!("{agg}<0")).unwrap();
        observe(s, &t)
    }

    #[test]
    fn every_built_in_metric_observes_its_samples() {
        let s = summary();
        for m in Metric::ALL {
            assert!(
                ROWS.iter()
                    .any(|(sel, _, _)| sel.split('{').next() == Some(m.name())),
                "no row for {}",
                m.name()
            );
        }
        for (sel, agg, want) in ROWS {
            let got = observed(&s, sel, agg).unwrap_or_else(|| panic!("{sel} {agg}: none"));
            assert!(
                (got - want).abs() <= want.abs() * 0.01,
                "{sel} {agg}: observed {got}, want {want}"
            );
        }
    }

    #[test]
    fn tags_rates_and_kinds_shape_the_observation() {
        let s = summary();
        // Counters as a rate are per second of the run (2 s).
        assert_eq!(observed(&s, "http_reqs", "rate"), Some(5.0));
        assert_eq!(
            observed(&s, "http_reqs{scenario:other}", "count"),
            Some(6.0)
        );
        assert_eq!(
            observed(&s, "http_reqs{endpoint_type:auth}", "count"),
            Some(6.0)
        );
        assert_eq!(observed(&s, "http_reqs{url:/login}", "count"), Some(6.0));
        assert_eq!(observed(&s, "http_reqs{scenario:none}", "count"), Some(0.0));
        assert_eq!(
            observed(&s, "data_sent{scenario:other}", "count"),
            Some(50.0)
        );
        assert_eq!(observed(&s, "http_req_duration", "count"), Some(10.0));
        // An aggregation the kind does not take observes nothing, and fails.
        assert_eq!(observed(&s, "http_reqs", "avg"), None);
        assert_eq!(observed(&s, "checks", "count"), None);
        let t = Threshold::parse("checks", "p(95)<1").unwrap();
        let r = evaluate(&s, &[t]);
        assert!(!r[0].ok && r[0].observed.is_none());
        let t = Threshold::parse("http_req_failed", "rate<0.5").unwrap();
        let r = evaluate(&s, &[t]);
        assert!(r[0].ok);
        assert_eq!(r[0].observed, Some(0.1));
    }

    #[test]
    fn figures_carry_the_unit_of_their_metric() {
        let s = summary();
        let one = |sel: &str, expr: &str| {
            let t = Threshold::parse(sel, expr).unwrap();
            evaluate(&s, &[t]).remove(0)
        };
        let r = one("http_req_duration{scenario:api}", "p(95)<300");
        assert_eq!(
            r.observed_value().quantity().map(|q| q.unit),
            Some(Unit::Ms)
        );
        assert_eq!(
            r.target_value(),
            Value::lt(Quantity::ms(300.0)).note("p(95)<300")
        );
        assert_eq!(r.target_value().to_string(), "< 300ms (p(95)<300)");
        let r = one("http_req_failed", "rate<0.01");
        assert_eq!(r.observed_value(), Value::of(Quantity::percent(10.0)));
        assert_eq!(
            r.target_value(),
            Value::lt(Quantity::percent(1.0)).note("rate<0.01")
        );
        let r = one("http_reqs", "rate>=2");
        assert_eq!(r.observed_value(), Value::of(Quantity::per_second(5.0)));
        assert_eq!(r.target_value().quantity(), Some(Quantity::per_second(2.0)));
        let r = one("http_reqs", "count==10");
        assert_eq!(r.observed_value(), Value::of(Quantity::count(10.0)));
        assert_eq!(r.target_value().to_string(), "= 10 (count==10)");
        let r = one("data_received", "count>1024");
        assert_eq!(
            r.observed_value(),
            Value::of(Quantity::new(200.0, Unit::Bytes))
        );
        assert_eq!(r.target_value().to_string(), "> 1.0 KiB (count>1024)");
        let r = one("http_req_duration", "count>5");
        assert_eq!(r.observed_value(), Value::of(Quantity::count(10.0)));
        let r = one("vus_max", "value<10");
        assert_eq!(r.observed_value(), Value::of(Quantity::count(5.0)));
        // Nothing observed is said in words, never as a number.
        let r = one("checks", "p(95)<1");
        assert_eq!(r.observed_value(), Value::from("not measured"));
    }
}
