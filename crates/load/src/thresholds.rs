//! Threshold evaluation: each threshold's metric (from the [`catalogue`]) observed
//! over the summary, filtered by its tags, aggregated and compared.
//!
//! [`catalogue`]: crate::catalogue

use crate::catalogue::{Metric, MetricKind, Tag};
use crate::snapshot::{HttpSummary, ScenarioSummary, StepSummary, Summary, ThresholdResult};
use powertune_core::threshold::{Aggregation, Threshold};
use powertune_core::{EndpointType, LatencyHistogram};

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
