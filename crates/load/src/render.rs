//! The terminal text: the k6-like summary of a run and the run-to-run comparison
//! table. Metric names come from the [`catalogue`](crate::catalogue).

use crate::catalogue::Metric;
use crate::compare::Delta;
use crate::snapshot::{HttpSummary, LlmSummary, Summary, TrendSummary};
use powertune_core::report::table;
use powertune_core::units::{bytes, ms, percent, rate, seconds};
use powertune_core::Quantity;

fn trend_row(name: &str, t: &TrendSummary, secs: f64) -> Vec<String> {
    row_with(name, t, secs, ms)
}

/// A trend of values that are not durations (tokens/s), shown as they are.
fn value_row(name: &str, t: &TrendSummary, secs: f64) -> Vec<String> {
    row_with(name, t, secs, |x| {
        format!("{}/s", powertune_core::units::trim(x, 1))
    })
}

fn row_with(name: &str, t: &TrendSummary, secs: f64, show: fn(f64) -> String) -> Vec<String> {
    let s = &t.stats;
    vec![
        name.to_string(),
        s.count.to_string(),
        rate(s.count as f64 / secs),
        show(s.avg),
        show(s.min),
        show(s.med),
        show(s.p90),
        show(s.p95),
        show(s.p99),
        show(s.max),
    ]
}

/// The LLM trends of a step (or of the run).
fn llm_rows(rows: &mut Vec<Vec<String>>, prefix: &str, l: &LlmSummary, secs: f64) {
    for (m, t) in [
        (Metric::LlmTtft, &l.ttft),
        (Metric::LlmItl, &l.itl),
        (Metric::LlmTpot, &l.tpot),
    ] {
        if t.stats.count > 0 {
            rows.push(trend_row(&format!("{prefix}{}", m.name()), t, secs));
        }
    }
    if l.tokens_per_s.stats.count > 0 {
        rows.push(value_row(
            &format!("{prefix}{}", Metric::LlmTokensPerS.name()),
            &l.tokens_per_s,
            secs,
        ));
    }
}

/// One line of LLM totals: answers, tokens and where they were counted, errors.
fn llm_line(l: &LlmSummary) -> String {
    let e = &l.stream_errors;
    format!(
        "{}: {} answers ({} streamed, {} completed)  {} {} ({}/s), {}  {} {} (provider {}  malformed {}  stall {}  dropped {})\n",
        l.dialects.join("+"),
        l.responses,
        l.streamed,
        l.completed,
        Metric::LlmOutputTokens.name(),
        l.output_tokens,
        powertune_core::units::trim(l.output_tokens_rate, 1),
        l.token_source(),
        Metric::LlmStreamErrors.name(),
        e.total(),
        e.provider,
        e.malformed,
        e.stall,
        e.dropped
    )
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
        rate(h.reqs as f64 / secs),
    ];
    r.extend(std::iter::repeat_n(String::new(), 7));
    rows.push(r);
    let mut f = vec![
        format!("{prefix}{}", Metric::HttpReqFailed.name()),
        percent(h.failed_rate() * 100.0),
        format!("{} of {}", h.failed, h.reqs),
    ];
    f.extend(std::iter::repeat_n(String::new(), 7));
    rows.push(f);
}

impl Summary {
    /// The k6-like text summary, plain (no colour: the terminal renderer adds it).
    pub fn render_text(&self) -> String {
        let secs = self.duration_s.max(1e-9);
        let mut out = String::new();
        out.push_str(&format!(
            "powertune load — {} against {} — {}, up to {} VUs\n",
            self.source,
            self.base_url,
            seconds(self.duration_s),
            self.vus_max
        ));
        if let Some(a) = &self.aborted {
            out.push_str(&format!("ABORTED: {a}\n"));
        }
        if self.interrupted {
            out.push_str(
                "INTERRUPTED: a signal stopped the run; the figures cover what was measured until then\n",
            );
        }
        if let Some(v) = &self.vus {
            out.push_str(&format!(
                "vus: min {}  max {}  current {}  ({} samples, one per {})\n",
                v.min,
                v.max,
                v.current,
                v.series.len(),
                seconds(v.interval_s)
            ));
        }
        out.push('\n');
        let mut rows = vec![header()];
        http_rows(&mut rows, "", &self.http, secs);
        let mut it = vec![
            Metric::Iterations.name().to_string(),
            self.iterations.to_string(),
            rate(self.iterations as f64 / secs),
        ];
        it.extend(std::iter::repeat_n(String::new(), 7));
        rows.push(it);
        if self.dropped_iterations > 0 {
            let mut d = vec![
                Metric::DroppedIterations.name().to_string(),
                self.dropped_iterations.to_string(),
                rate(self.dropped_iterations as f64 / secs),
            ];
            d.extend(std::iter::repeat_n(String::new(), 7));
            rows.push(d);
        }
        if let Some(l) = &self.llm {
            llm_rows(&mut rows, "", l, secs);
        }
        out.push_str(&table(&rows));
        if let Some(l) = &self.llm {
            out.push_str(&llm_line(l));
        }
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
                "errors: connect {}  tls {}  timeout {}  status {}  protocol {}  interrupted {}  invalid {}\n",
                e.connect, e.tls, e.timeout, e.status, e.protocol, e.interrupted, e.invalid
            ));
        }
        for sc in &self.scenarios {
            out.push('\n');
            out.push_str(&format!(
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
            ));
            let mut rows = vec![header()];
            for st in &sc.steps {
                http_rows(&mut rows, &format!("{} · ", st.name), &st.http, secs);
                if let Some(l) = &st.llm {
                    llm_rows(&mut rows, &format!("{} · ", st.name), l, secs);
                }
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
                let share = if total == 0 {
                    0.0
                } else {
                    c.passes as f64 * 100.0 / total as f64
                };
                out.push_str(&format!(
                    "  {mark} {} — {} ({} / {})\n",
                    c.name,
                    percent(share),
                    c.passes,
                    total
                ));
            }
        }
        if !self.endpoint_types.is_empty() {
            out.push('\n');
            out.push_str("per endpoint type\n");
            let mut rows = vec![header()];
            for e in &self.endpoint_types {
                if e.http.reqs > 0 {
                    rows.push(trend_row(&e.title, &e.http.duration, secs));
                }
            }
            out.push_str(&table(&rows));
            out.push_str(&slowest_text(self));
        }
        if !self.thresholds.is_empty() {
            out.push('\n');
            out.push_str("thresholds\n");
            for t in &self.thresholds {
                let mark = if t.ok { "✓" } else { "✗" };
                out.push_str(&format!(
                    "  {mark} {}: {} (observed {})\n",
                    t.metric,
                    t.expr,
                    t.observed_value()
                ));
            }
        }
        out
    }
}

/// With `--trace`: the slowest requests of each endpoint type and their trace ids,
/// to look up in the APM (empty without traced requests).
fn slowest_text(s: &Summary) -> String {
    let mut rows = Vec::new();
    for e in s
        .endpoint_types
        .iter()
        .filter(|e| !e.http.slowest.is_empty())
    {
        for (i, r) in e.http.slowest.iter().enumerate() {
            let title = if i == 0 { e.title.as_str() } else { "" };
            rows.push(vec![
                title.to_string(),
                format!("slowest: {}", ms(r.duration_ms)),
                format!("trace {}", r.trace_id),
                r.status.map_or_else(|| "-".to_string(), |c| c.to_string()),
            ]);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\nslowest requests per endpoint type (send to last byte; traceparent trace ids)\n{}",
        table(&rows)
    )
}

/// The comparison as a table.
pub fn render_compare(deltas: &[Delta]) -> String {
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
                let sign = if p > 0.0 { "+" } else { "" };
                format!("{sign}{}", percent(p))
            }
        };
        rows.push(vec![
            d.metric.clone(),
            Quantity::new(d.baseline, d.unit).to_string(),
            Quantity::new(d.current, d.unit).to_string(),
            change,
        ]);
    }
    table(&rows)
}

/// One line per group: did latency really change (the words of the rank test).
pub fn render_latency_changes(changes: &[crate::compare::LatencyChange]) -> String {
    if changes.is_empty() {
        return String::new();
    }
    let mut rows = vec![vec!["latency".to_string(), "change".to_string()]];
    for c in changes {
        rows.push(vec![c.group.clone(), c.words.clone()]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare;
    use crate::metrics::Shard;
    use crate::plan::Plan;
    use crate::snapshot::one_scenario;
    use std::time::Duration;

    /// One scenario: 100 requests at `ms` ms over 10 s, 2 MiB sent.
    fn summary(ms: u64) -> Summary {
        let plan = Plan::from_toml_str(
            "[scenarios.a]\nendpoint_type = \"read_crud\"\nusers = 1\nduration = \"10s\"\n[[scenarios.a.steps]]\nurl = \"/x\"\nchecks = { status = 200 }\n",
            "p.toml",
        )
        .unwrap();
        let mut shard = Shard::new(plan.n_series, 1, plan.n_checks);
        let m = &mut shard.series[0];
        for _ in 0..100 {
            m.reqs += 1;
            m.duration.record(Duration::from_millis(ms));
            m.raw.record(Duration::from_millis(ms));
        }
        m.failed = 1;
        shard.scenarios[0].data_sent = 2 * 1024 * 1024;
        shard.scenarios[0].data_received = 1536;
        shard.checks = vec![(199, 1)];
        one_scenario(&plan, &shard, Duration::from_secs(10))
    }

    #[test]
    fn figures_are_written_the_core_way() {
        let text = summary(50).render_text();
        assert!(text.contains(" — 10s, up to 1 VUs"), "{text}");
        assert!(
            text.contains("data_sent 2.0 MiB  data_received 1.5 KiB"),
            "{text}"
        );
        assert!(text.contains("status 200 — 99.5% (199 / 200)"), "{text}");
        let row = text
            .lines()
            .find(|l| l.starts_with("http_req_duration "))
            .unwrap();
        assert!(row.contains("10.0/s") && row.contains("50ms"), "{row}");
        let failed = text
            .lines()
            .find(|l| l.starts_with("http_req_failed"))
            .unwrap();
        assert!(
            failed.contains("1%") && failed.contains("1 of 100"),
            "{failed}"
        );
    }

    #[test]
    fn the_comparison_shows_each_figure_with_its_unit() {
        let d = compare(&summary(50), &summary(100));
        assert_eq!(d[1].unit, powertune_core::Unit::Ms);
        let text = render_compare(&d);
        let p95 = text
            .lines()
            .find(|l| l.starts_with("http_req_duration p95 (ms)"))
            .unwrap();
        // `50.02ms   100.03ms  +100%`: HDR buckets, three significant digits.
        let cells: Vec<&str> = p95.split_whitespace().skip(3).collect();
        assert!(
            cells[0].starts_with("50.0") && cells[0].ends_with("ms"),
            "{p95}"
        );
        assert!(
            cells[1].starts_with("100.0") && cells[1].ends_with("ms"),
            "{p95}"
        );
        assert!(
            cells[2].starts_with('+') && cells[2].ends_with('%'),
            "{p95}"
        );
        let rate = text
            .lines()
            .find(|l| l.starts_with("http_reqs rate"))
            .unwrap();
        assert!(rate.contains("10.0/s") && rate.contains("0%"), "{rate}");
    }

    #[test]
    fn thresholds_show_their_observed_value_with_its_unit() {
        let mut s = summary(612);
        let ts: Vec<_> = [
            ("http_req_duration", "p(95)<500"),
            ("http_req_failed", "rate<0.05"),
            ("http_reqs", "rate>100"),
            ("data_sent", "count<1000"),
        ]
        .iter()
        .map(|(m, e)| powertune_core::threshold::Threshold::parse(m, e).unwrap())
        .collect();
        s.thresholds = crate::thresholds::evaluate(&s, &ts);
        let text = s.render_text();
        for want in [
            "✗ http_req_duration: p(95)<500 (observed 612",
            "✓ http_req_failed: rate<0.05 (observed 1%)",
            "✗ http_reqs: rate>100 (observed 10.0/s)",
            "✗ data_sent: count<1000 (observed 2.0 MiB)",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        let p95 = text.lines().find(|l| l.contains("p(95)<500")).unwrap();
        assert!(p95.ends_with("ms)"), "{p95}");
    }
}
