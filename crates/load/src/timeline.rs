//! The run over time: once a second the live monitor drains every metric shard's
//! interval state (counters are cumulative and diffed here; latencies go into
//! per-interval HDR histograms next to the run's, taken and reset at each drain) and
//! adds one interval to a [`Timeline`] — for the whole run, each scenario and each
//! endpoint type.
//!
//! Memory is bounded whatever the run's length: each line holds at most [`CAP`]
//! points. When a line is full, neighbouring points are merged pairwise (counts are
//! added, the VU gauge and every latency percentile keep the larger of the two: an
//! upper bound) and each new point covers twice as many intervals, its percentiles
//! then exact over its whole span (one pending histogram pair per line).

use crate::metrics::{ErrorCounts, Trend};
use crate::plan::Plan;
use powertune_core::{EndpointType, LatencyHistogram};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most points a line holds (the `vus` series has the same budget).
pub const CAP: usize = 600;

/// Latency percentiles of one point, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(h: &LatencyHistogram) -> Option<Latency> {
        (h.count() > 0).then(|| Latency {
            p50: h.percentile_ms(50.0),
            p90: h.percentile_ms(90.0),
            p95: h.percentile_ms(95.0),
            p99: h.percentile_ms(99.0),
            max: h.max_ms(),
        })
    }

    pub(crate) fn upper(a: Option<Latency>, b: Option<Latency>) -> Option<Latency> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Latency {
                p50: a.p50.max(b.p50),
                p90: a.p90.max(b.p90),
                p95: a.p95.max(b.p95),
                p99: a.p99.max(b.p99),
                max: a.max.max(b.max),
            }),
            (a, b) => a.or(b),
        }
    }
}

/// One point of a line: what happened over `secs` seconds from `t_s`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Point {
    /// Seconds since the run started, at the point's start.
    pub t_s: f64,
    /// Seconds the point covers (the last one may be shorter).
    pub secs: f64,
    pub reqs: u64,
    pub failed: u64,
    pub errors: ErrorCounts,
    /// Coordinated-omission corrected latency of the successful requests; null when
    /// there were none.
    pub latency: Option<Latency>,
    /// Send → last byte latency of the successful requests.
    pub latency_raw: Option<Latency>,
    /// The largest `vus` sample (not for endpoint types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vus: Option<u64>,
    /// Iterations finished (not for endpoint types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_iterations: Option<u64>,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sent: Option<u64>,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_received: Option<u64>,
}

fn add_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

impl Point {
    /// The point covering `self` then `o` (percentiles: the larger of each).
    pub(crate) fn fold(&self, o: &Point) -> Point {
        let mut errors = self.errors;
        errors.add(&o.errors);
        Point {
            t_s: self.t_s,
            secs: self.secs + o.secs,
            reqs: self.reqs + o.reqs,
            failed: self.failed + o.failed,
            errors,
            latency: Latency::upper(self.latency, o.latency),
            latency_raw: Latency::upper(self.latency_raw, o.latency_raw),
            vus: match (self.vus, o.vus) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            iterations: add_opt(self.iterations, o.iterations),
            dropped_iterations: add_opt(self.dropped_iterations, o.dropped_iterations),
            data_sent: add_opt(self.data_sent, o.data_sent),
            data_received: add_opt(self.data_received, o.data_received),
        }
    }
}

/// Cumulative counters of one step's requests, as drained from the shards.
#[derive(Debug, Clone, Default)]
pub struct SeriesTick {
    pub reqs: u64,
    pub failed: u64,
    pub errors: ErrorCounts,
    /// Latencies recorded since the last drain (corrected, raw).
    pub duration: Trend,
    pub raw: Trend,
}

/// Cumulative counters of one scenario.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScenarioTick {
    pub iterations: u64,
    pub dropped: u64,
    pub data_sent: u64,
    pub data_received: u64,
}

/// One drain of every shard (see `Registry::drain_interval`).
#[derive(Debug, Clone, Default)]
pub struct Tick {
    pub series: Vec<SeriesTick>,
    pub scenarios: Vec<ScenarioTick>,
}

/// A point being filled (one interval, or several once the line has been folded).
#[derive(Debug, Clone, Default)]
struct Pending {
    point: Point,
    duration: Trend,
    raw: Trend,
}

impl Pending {
    fn take(&mut self) -> Point {
        let mut p = std::mem::take(&mut self.point);
        p.latency = Latency::of(&self.duration.histogram());
        p.latency_raw = Latency::of(&self.raw.histogram());
        self.duration = Trend::default();
        self.raw = Trend::default();
        p
    }
}

/// One line: the whole run, a scenario or an endpoint type.
#[derive(Debug, Clone, Default)]
struct Line {
    points: Vec<Point>,
    pending: Pending,
}

impl Line {
    fn fold(&mut self) {
        self.points = fold(&self.points);
    }
}

/// `points` with each pair of neighbours merged into one point covering both.
pub(crate) fn fold(points: &[Point]) -> Vec<Point> {
    points
        .chunks(2)
        .map(|c| match c {
            [a, b] => a.fold(b),
            [a] => a.clone(),
            _ => Point::default(),
        })
        .collect()
}

/// Two runs' whole-run lines on one grid, for drawing one over the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct Aligned {
    /// Seconds each point covers on both lines (the coarser of the two runs'; the
    /// finer run's points are merged pairwise until they match).
    pub interval_s: f64,
    #[schemars(length(max = 600))]
    pub baseline: Vec<Point>,
    #[schemars(length(max = 600))]
    pub current: Vec<Point>,
}

/// The whole-run lines of two timelines on the coarser one's interval; `None` when
/// either is empty or their intervals are not a power of two apart (they always are
/// for timelines this engine wrote).
pub fn align(baseline: &TimelineSummary, current: &TimelineSummary) -> Option<Aligned> {
    if baseline.run.is_empty() || current.run.is_empty() {
        return None;
    }
    let interval_s = baseline.interval_s.max(current.interval_s);
    let coarsen = |t: &TimelineSummary| -> Option<Vec<Point>> {
        let mut points = t.run.clone();
        let mut interval = t.interval_s;
        while interval * 1.5 < interval_s {
            points = fold(&points);
            interval *= 2.0;
        }
        ((interval - interval_s).abs() < 1e-6 * interval_s.max(1.0)).then_some(points)
    };
    Some(Aligned {
        interval_s,
        baseline: coarsen(baseline)?,
        current: coarsen(current)?,
    })
}

/// The time series of a run in progress.
#[derive(Debug, Clone)]
pub struct Timeline {
    cap: usize,
    /// Seconds one drain covers (nominally).
    tick_s: f64,
    /// Drains per point (doubles at each fold).
    per_point: u32,
    /// Drains in the pending point so far.
    pending_n: u32,
    /// Series index → (scenario, endpoint type line).
    series_map: Vec<(usize, usize)>,
    run: Line,
    scenarios: Vec<Line>,
    types: Vec<(EndpointType, Line)>,
    last: Tick,
    /// Seconds since the run started at the end of the last drain.
    last_t: f64,
}

impl Timeline {
    pub fn new(plan: &Plan, tick_s: f64) -> Timeline {
        Timeline::with_cap(plan, tick_s, CAP)
    }

    /// A timeline of at most `cap` (at least 2) points per line.
    pub fn with_cap(plan: &Plan, tick_s: f64, cap: usize) -> Timeline {
        let mut series_map = vec![(usize::MAX, usize::MAX); plan.n_series];
        let mut types: Vec<(EndpointType, Line)> = Vec::new();
        for (i, sc) in plan.scenarios.iter().enumerate() {
            for h in sc.http_steps() {
                let t = match types.iter().position(|(t, _)| *t == h.endpoint_type) {
                    Some(t) => t,
                    None => {
                        types.push((h.endpoint_type, Line::default()));
                        types.len() - 1
                    }
                };
                if let Some(m) = series_map.get_mut(h.series) {
                    *m = (i, t);
                }
            }
        }
        types.sort_by_key(|(t, _)| *t);
        // Re-point the map after sorting.
        for sc in plan.scenarios.iter() {
            for h in sc.http_steps() {
                if let (Some(m), Some(t)) = (
                    series_map.get_mut(h.series),
                    types.iter().position(|(t, _)| *t == h.endpoint_type),
                ) {
                    m.1 = t;
                }
            }
        }
        Timeline {
            cap: cap.max(2),
            tick_s,
            per_point: 1,
            pending_n: 0,
            series_map,
            run: Line::default(),
            scenarios: vec![Line::default(); plan.scenarios.len()],
            types,
            last: Tick::default(),
            last_t: 0.0,
        }
    }

    /// Adds one drain: `tick` (cumulative counters, interval latencies), the `vus`
    /// gauge now (whole run and per scenario), `now_s` seconds since the run started.
    /// `last` closes the pending point whatever its length.
    pub fn record(&mut self, tick: &Tick, vus: u64, scen_vus: &[u64], now_s: f64, last: bool) {
        let start = self.last_t;
        let secs = (now_s - start).max(0.0);
        self.last_t = now_s;
        let mut lines: Vec<&mut Line> = Vec::new();
        lines.push(&mut self.run);
        let first = self.pending_n == 0;
        let n_scen = self.scenarios.len();
        for l in self.scenarios.iter_mut() {
            lines.push(l);
        }
        for (_, l) in self.types.iter_mut() {
            lines.push(l);
        }
        for (i, l) in lines.iter_mut().enumerate() {
            let p = &mut l.pending.point;
            if first {
                p.t_s = start;
            }
            p.secs += secs;
            if i <= n_scen {
                let v = if i == 0 {
                    vus
                } else {
                    scen_vus.get(i - 1).copied().unwrap_or(0)
                };
                p.vus = Some(p.vus.map_or(v, |m| m.max(v)));
            }
        }
        for (k, s) in tick.series.iter().enumerate() {
            let prev = self.last.series.get(k).cloned().unwrap_or_default();
            let reqs = s.reqs.saturating_sub(prev.reqs);
            let failed = s.failed.saturating_sub(prev.failed);
            let errors = diff_errors(&s.errors, &prev.errors);
            let (si, ti) = self.series_map.get(k).copied().unwrap_or((usize::MAX, 0));
            let mut targets: Vec<&mut Pending> = vec![&mut self.run.pending];
            if let Some(l) = self.scenarios.get_mut(si) {
                targets.push(&mut l.pending);
            }
            if let Some((_, l)) = self.types.get_mut(ti) {
                targets.push(&mut l.pending);
            }
            for t in targets {
                t.point.reqs += reqs;
                t.point.failed += failed;
                t.point.errors.add(&errors);
                t.duration.merge(&s.duration);
                t.raw.merge(&s.raw);
            }
        }
        for (k, s) in tick.scenarios.iter().enumerate() {
            let prev = self.last.scenarios.get(k).copied().unwrap_or_default();
            let d = ScenarioTick {
                iterations: s.iterations.saturating_sub(prev.iterations),
                dropped: s.dropped.saturating_sub(prev.dropped),
                data_sent: s.data_sent.saturating_sub(prev.data_sent),
                data_received: s.data_received.saturating_sub(prev.data_received),
            };
            let mut targets: Vec<&mut Point> = vec![&mut self.run.pending.point];
            if let Some(l) = self.scenarios.get_mut(k) {
                targets.push(&mut l.pending.point);
            }
            for p in targets {
                p.iterations = add_opt(p.iterations, Some(d.iterations));
                p.dropped_iterations = add_opt(p.dropped_iterations, Some(d.dropped));
                p.data_sent = add_opt(p.data_sent, Some(d.data_sent));
                p.data_received = add_opt(p.data_received, Some(d.data_received));
            }
        }
        self.last = Tick {
            series: tick
                .series
                .iter()
                .map(|s| SeriesTick {
                    reqs: s.reqs,
                    failed: s.failed,
                    errors: s.errors,
                    ..SeriesTick::default()
                })
                .collect(),
            scenarios: tick.scenarios.clone(),
        };
        self.pending_n += 1;
        if self.pending_n < self.per_point && !last {
            return;
        }
        // A last drain of under half a tick alone (the run ended just after a tick)
        // joins the point before it: a sliver would show as a spike in every rate.
        let sliver = last && self.pending_n == 1 && secs < self.tick_s / 2.0;
        self.pending_n = 0;
        let cap = self.cap;
        let mut full = false;
        for l in self.lines_mut() {
            let p = l.pending.take();
            match l.points.last_mut() {
                Some(prev) if sliver => *prev = prev.fold(&p),
                _ => l.points.push(p),
            }
            full |= l.points.len() >= cap;
        }
        if full && !last {
            for l in self.lines_mut() {
                l.fold();
            }
            self.per_point *= 2;
        }
    }

    fn lines_mut(&mut self) -> impl Iterator<Item = &mut Line> {
        std::iter::once(&mut self.run)
            .chain(self.scenarios.iter_mut())
            .chain(self.types.iter_mut().map(|(_, l)| l))
    }

    /// The series as written in the summary.
    pub fn summary(&self, plan: &Plan, spans: &[(Option<f64>, Option<f64>)]) -> TimelineSummary {
        TimelineSummary {
            interval_s: self.tick_s * f64::from(self.per_point),
            run: self.run.points.clone(),
            scenarios: plan
                .scenarios
                .iter()
                .zip(&self.scenarios)
                .enumerate()
                .map(|(i, (sc, l))| {
                    let span = spans.get(i).copied().unwrap_or((None, None));
                    ScenarioLine {
                        name: sc.name.clone(),
                        start_s: span.0,
                        end_s: span.1,
                        points: l.points.clone(),
                    }
                })
                .collect(),
            endpoint_types: self
                .types
                .iter()
                .map(|(t, l)| EndpointLine {
                    endpoint_type: *t,
                    points: l.points.clone(),
                })
                .collect(),
        }
    }
}

fn diff_errors(a: &ErrorCounts, b: &ErrorCounts) -> ErrorCounts {
    ErrorCounts {
        connect: a.connect.saturating_sub(b.connect),
        tls: a.tls.saturating_sub(b.tls),
        timeout: a.timeout.saturating_sub(b.timeout),
        status: a.status.saturating_sub(b.status),
        protocol: a.protocol.saturating_sub(b.protocol),
        interrupted: a.interrupted.saturating_sub(b.interrupted),
        invalid: a.invalid.saturating_sub(b.invalid),
    }
}

/// The run over time, in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct TimelineSummary {
    /// Seconds each point covers (1, doubled each time the lines were folded).
    pub interval_s: f64,
    /// The whole run: at most 600 points.
    #[schemars(length(max = 600))]
    pub run: Vec<Point>,
    pub scenarios: Vec<ScenarioLine>,
    pub endpoint_types: Vec<EndpointLine>,
}

/// One scenario over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct ScenarioLine {
    pub name: String,
    /// Seconds since the run started when the scenario's executor started (after its
    /// `start_time`); null if it never started.
    pub start_s: Option<f64>,
    /// When its executor ended (graceful stop included).
    pub end_s: Option<f64>,
    #[schemars(length(max = 600))]
    pub points: Vec<Point>,
}

/// One endpoint type over time (its steps across every scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct EndpointLine {
    pub endpoint_type: EndpointType,
    #[schemars(length(max = 600))]
    pub points: Vec<Point>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan() -> Plan {
        Plan::from_toml_str(
            "[scenarios.a]\nendpoint_type = \"auth\"\nusers = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nurl = \"/a\"\n[scenarios.b]\nendpoint_type = \"read_crud\"\nusers = 1\nduration = \"1s\"\n[[scenarios.b.steps]]\nurl = \"/b\"\n",
            "p.toml",
        )
        .unwrap()
    }

    /// A drain after `n` more requests per series (cumulative `total`).
    fn tick(total: u64, lat_ms: u64, n: u64, series: usize) -> Tick {
        let mut t = Tick::default();
        for _ in 0..series {
            let mut d = Trend::default();
            for _ in 0..n {
                d.record(Duration::from_millis(lat_ms));
            }
            t.series.push(SeriesTick {
                reqs: total,
                failed: total / 10,
                errors: ErrorCounts {
                    status: total / 10,
                    ..ErrorCounts::default()
                },
                duration: d.clone(),
                raw: d,
            });
            t.scenarios.push(ScenarioTick {
                iterations: total,
                dropped: 0,
                data_sent: total * 100,
                data_received: total * 200,
            });
        }
        t
    }

    fn line(interval_s: f64, n: usize) -> TimelineSummary {
        TimelineSummary {
            interval_s,
            run: (0..n)
                .map(|i| Point {
                    t_s: i as f64 * interval_s,
                    secs: interval_s,
                    reqs: 10,
                    ..Point::default()
                })
                .collect(),
            scenarios: Vec::new(),
            endpoint_types: Vec::new(),
        }
    }

    #[test]
    fn two_runs_align_on_the_coarser_interval_and_keep_their_totals() {
        let a = align(&line(1.0, 9), &line(4.0, 3)).unwrap();
        assert_eq!(a.interval_s, 4.0);
        assert_eq!(a.baseline.len(), 3, "9 one-second points fold to 5, then 3");
        assert_eq!(a.baseline.iter().map(|p| p.reqs).sum::<u64>(), 90);
        assert_eq!(a.baseline[1].t_s, 4.0);
        assert_eq!(a.baseline[1].secs, 4.0);
        assert_eq!(a.current.len(), 3);
        let same = align(&line(2.0, 5), &line(2.0, 7)).unwrap();
        assert_eq!((same.baseline.len(), same.current.len()), (5, 7));
        assert!(
            align(&line(1.0, 4), &line(3.0, 4)).is_none(),
            "not a power of two"
        );
        assert!(
            align(&line(1.0, 0), &line(1.0, 4)).is_none(),
            "nothing to draw"
        );
    }

    #[test]
    fn lines_stay_bounded_fold_pairwise_and_keep_the_totals_and_peaks() {
        let p = plan();
        let mut tl = Timeline::with_cap(&p, 1.0, 8);
        let n_ticks = 50u64;
        for i in 1..=n_ticks {
            let lat = if i == 20 { 900 } else { 10 };
            let t = tick(i * 10, lat, 10, p.n_series);
            tl.record(&t, i, &[i, 1], i as f64, i == n_ticks);
        }
        let s = tl.summary(&p, &[(Some(0.0), Some(50.0)), (None, None)]);
        assert!(s.run.len() <= 8, "{}", s.run.len());
        assert!(s.run.len() >= 3, "{}", s.run.len());
        assert_eq!(s.interval_s, 8.0);
        let reqs: u64 = s.run.iter().map(|p| p.reqs).sum();
        assert_eq!(reqs, n_ticks * 10 * 2);
        let a: u64 = s.scenarios[0].points.iter().map(|p| p.reqs).sum();
        assert_eq!(a, n_ticks * 10);
        let failed: u64 = s.endpoint_types[1]
            .points
            .iter()
            .map(|p| p.errors.status)
            .sum();
        assert_eq!(failed, n_ticks);
        let secs: f64 = s.run.iter().map(|p| p.secs).sum();
        assert!((secs - 50.0).abs() < 1e-9, "{secs}");
        let sent: u64 = s.run.iter().filter_map(|p| p.data_sent).sum();
        assert_eq!(sent, n_ticks * 10 * 100 * 2);
        // The 900 ms second survives every fold as its point's max and p99.
        let peak = s
            .run
            .iter()
            .filter_map(|p| p.latency)
            .map(|l| l.max)
            .fold(0.0, f64::max);
        assert!(peak >= 899.0, "{peak}");
        assert_eq!(s.run.iter().filter_map(|p| p.vus).max(), Some(50));
        // Points are contiguous.
        for w in s.run.windows(2) {
            assert!((w[0].t_s + w[0].secs - w[1].t_s).abs() < 1e-9);
        }
        // Endpoint types carry no VU or iteration figures.
        assert!(s.endpoint_types[0].points.iter().all(|p| p.vus.is_none()));
        assert_eq!(
            s.endpoint_types[0].endpoint_type,
            EndpointType::Authentication
        );
        assert_eq!(s.scenarios[0].start_s, Some(0.0));
    }

    #[test]
    fn a_short_run_keeps_one_point_per_second_and_its_last_partial_one() {
        let p = plan();
        let mut tl = Timeline::new(&p, 1.0);
        tl.record(&tick(5, 10, 5, p.n_series), 1, &[1, 1], 1.0, false);
        tl.record(&tick(8, 20, 3, p.n_series), 2, &[1, 1], 2.0, false);
        tl.record(&tick(9, 30, 1, p.n_series), 0, &[0, 0], 2.6, true);
        let s = tl.summary(&p, &[]);
        let reqs: Vec<u64> = s.scenarios[1].points.iter().map(|p| p.reqs).collect();
        assert_eq!(reqs, [5, 3, 1]);
        assert!((s.run[2].secs - 0.6).abs() < 1e-9);
        let l = s.run[1].latency.unwrap();
        assert!((l.p50 - 20.0).abs() < 0.1, "{l:?}");
        assert_eq!(s.interval_s, 1.0);
        let empty = Timeline::new(&p, 1.0).summary(&p, &[]);
        assert!(empty.run.is_empty());
        // A last drain of a sliver joins the point before it.
        let mut tl = Timeline::new(&p, 1.0);
        tl.record(&tick(5, 10, 5, p.n_series), 1, &[1, 1], 1.0, false);
        tl.record(&tick(7, 90, 2, p.n_series), 0, &[0, 0], 1.05, true);
        let s = tl.summary(&p, &[]);
        assert_eq!(s.run.len(), 1);
        assert_eq!(s.run[0].reqs, 14);
        assert!((s.run[0].secs - 1.05).abs() < 1e-9);
        assert!(s.run[0].latency.unwrap().max >= 89.0);
    }
}
