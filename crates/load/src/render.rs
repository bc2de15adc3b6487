//! The terminal text: the k6-like summary of a run and the run-to-run comparison
//! table. Metric names come from the [`catalogue`](crate::catalogue).

use crate::catalogue::Metric;
use crate::compare::Delta;
use crate::snapshot::{HttpSummary, Summary, TrendSummary};
use powertune_core::report::{table, Style};

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
        &format!("{prefix}{}", Metric::HttpReqDuration.name()),
        &h.duration,
        secs,
    ));
    rows.push(trend_row(
        &format!("{prefix}{}", Metric::HttpReqDurationRaw.name()),
        &h.duration_raw,
        secs,
    ));
    let mut r = vec![
        format!("{prefix}{}", Metric::HttpReqs.name()),
        h.reqs.to_string(),
        format!("{:.1}/s", h.reqs as f64 / secs),
    ];
    r.extend(std::iter::repeat_n(String::new(), 7));
    rows.push(r);
    let mut f = vec![
        format!("{prefix}{}", Metric::HttpReqFailed.name()),
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
            Metric::Iterations.name().to_string(),
            self.iterations.to_string(),
            format!("{:.1}/s", self.iterations as f64 / secs),
        ];
        it.extend(std::iter::repeat_n(String::new(), 7));
        rows.push(it);
        if self.dropped_iterations > 0 {
            let mut d = vec![
                Metric::DroppedIterations.name().to_string(),
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
                rows.push(trend_row(
                    Metric::HttpReqWaiting.name(),
                    &sc.phases.waiting,
                    secs,
                ));
                rows.push(trend_row(
                    Metric::HttpReqConnecting.name(),
                    &sc.phases.connecting,
                    secs,
                ));
            }
            rows.push(trend_row(
                Metric::IterationDuration.name(),
                &sc.iteration_duration,
                secs,
            ));
            if let Some(w) = &sc.ws {
                rows.push(trend_row(Metric::WsConnecting.name(), &w.connecting, secs));
                rows.push(trend_row(
                    Metric::WsSubscribeDuration.name(),
                    &w.subscribe_duration,
                    secs,
                ));
                rows.push(trend_row(
                    Metric::WsSessionDuration.name(),
                    &w.session_duration,
                    secs,
                ));
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

/// The comparison as a table.
pub fn render_compare(deltas: &[Delta], style: Style) -> String {
    let mut rows = vec![vec![
        "metric".to_string(),
        "baseline".to_string(),
        "current".to_string(),
        "change".to_string(),
    ]];
    for d in deltas {
        let change = match d.change_pct {
            None => "n/a".to_string(),
            Some(p) => {
                let text = format!("{p:+.1}%");
                let worse = if d.higher_is_better {
                    p < -5.0
                } else {
                    p > 5.0
                };
                if worse {
                    style.bold(&text)
                } else {
                    text
                }
            }
        };
        rows.push(vec![
            d.metric.clone(),
            format!("{:.2}", d.baseline),
            format!("{:.2}", d.current),
            change,
        ]);
    }
    table(&rows)
}
