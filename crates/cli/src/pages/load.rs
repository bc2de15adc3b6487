//! The HTML page of a `load` (or `demo`) report, built from its summary alone
//! (`report.metrics`, a `powertune.load-summary/v1`): requests/s, latency percentiles,
//! VUs and errors over time, each scenario's start and end marked, the runbook's
//! target and maximum as levels; tables per scenario, per endpoint type, the LLM
//! answers' figures (when the run has LLM steps), thresholds and checks. A report without a load summary (`compare`, an older file) gets the
//! generic page.

use super::cells::header;
use powertune_core::html::{Chart, Level, Mark, Page, Series, Table, XAxis};
use powertune_core::units as fmt;
use powertune_core::{redact, Band, EndpointType, Report, Targets, Unit};
use powertune_load::snapshot::{HttpSummary, LlmSummary, TrendSummary};
use powertune_load::timeline::{Latency, Point, TimelineSummary};
use powertune_load::Summary;

/// One percentile of a point's latency.
pub(super) type LatencyOf = fn(&Latency) -> f64;
/// One count of a point.
type CountOf = fn(&Point) -> u64;

pub fn page(report: &Report) -> Page {
    let Ok(s) = serde_json::from_value::<Summary>(report.metrics.clone()) else {
        return super::generic(report);
    };
    let bands = Bands::of(report);
    let mut page = Page {
        subject: redact::text(&s.source),
        ..Page::default()
    };
    if let Some(tl) = s.timeline.as_ref().filter(|t| !t.run.is_empty()) {
        page.charts = charts(&s, tl, &bands);
    }
    page.tables = tables(&s, &bands);
    page.metadata = metadata(&s);
    page
}

fn is_open(executor: &str) -> bool {
    executor.ends_with("arrival-rate")
}

/// Per point, `f` over its seconds (a rate).
pub(super) fn per_s(points: &[Point], f: impl Fn(&Point) -> u64) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| (p.secs > 0.0).then(|| f(p) as f64 / p.secs))
        .collect()
}

pub(super) fn lat(points: &[Point], raw: bool, f: fn(&Latency) -> f64) -> Vec<Option<f64>> {
    points
        .iter()
        .map(|p| if raw { p.latency_raw } else { p.latency }.map(|l| f(&l)))
        .collect()
}

/// A line over the timeline's x (see [`charts`]): no value at the run's start.
pub(super) fn series(label: impl Into<String>, values: Vec<Option<f64>>, dashed: bool) -> Series {
    Series {
        label: label.into(),
        values: std::iter::once(None).chain(values).collect(),
        dashed,
    }
}

pub(super) fn chart(id: &str, title: &str, unit: Unit, x: &[f64], s: Vec<Series>) -> Chart {
    Chart {
        id: id.to_string(),
        title: title.to_string(),
        unit,
        x_axis: XAxis::Elapsed,
        x_label: "elapsed".to_string(),
        x: x.to_vec(),
        series: s,
        levels: Vec::new(),
        marks: Vec::new(),
    }
}

/// p50/p95/p99 of `points`, corrected, with the raw ones dashed beside them when
/// `open` (an open model: the two differ when the target falls behind).
fn latency_series(points: &[Point], open: bool) -> Vec<Series> {
    let qs: [(&str, LatencyOf); 3] = [("p50", |l| l.p50), ("p95", |l| l.p95), ("p99", |l| l.p99)];
    let mut out = Vec::new();
    for (name, f) in qs {
        out.push(series(name, lat(points, false, f), false));
        if open {
            out.push(series(format!("{name} raw"), lat(points, true, f), true));
        }
    }
    out
}

/// The latency target and maximum of each endpoint type as the run was judged: from
/// the report's `api_latency_p95` findings (so `--targets` files show), else the
/// runbook's defaults (a type with no answered request has no finding).
struct Bands {
    judged: Vec<(String, Band)>,
    defaults: Targets,
}

impl Bands {
    fn of(report: &Report) -> Bands {
        let judged = report
            .findings
            .iter()
            .filter(|f| f.check == "api_latency_p95")
            .filter_map(|f| {
                let target = f.target.quantity()?.value;
                let max = f.limit.as_ref()?.quantity()?.value;
                Some((
                    f.subject.clone(),
                    Band {
                        target_ms: target,
                        max_ms: max,
                    },
                ))
            })
            .collect();
        Bands {
            judged,
            defaults: Targets::default(),
        }
    }

    fn band(&self, t: EndpointType) -> Band {
        self.judged
            .iter()
            .find(|(title, _)| title == t.title())
            .map(|(_, b)| *b)
            .unwrap_or_else(|| self.defaults.api.band(t))
    }
}

/// The target and maximum acceptable for one endpoint type.
fn levels(band: Band, title: &str) -> Vec<Level> {
    vec![
        Level {
            label: format!("{title} target"),
            value: band.target_ms,
        },
        Level {
            label: format!("{title} max"),
            value: band.max_ms,
        },
    ]
}

/// Each point is drawn at its interval's end (the figure covers the interval before
/// it), after an empty one at 0 s, so the axis spans the whole run and every
/// scenario's start and end mark falls on it.
fn charts(s: &Summary, tl: &TimelineSummary, bands: &Bands) -> Vec<Chart> {
    let x: Vec<f64> = std::iter::once(0.0)
        .chain(tl.run.iter().map(|p| p.t_s + p.secs))
        .collect();
    let mut marks = Vec::new();
    for l in &tl.scenarios {
        if let Some(t) = l.start_s {
            marks.push(Mark {
                label: format!("{} start", l.name),
                x: t,
            });
        }
        if let Some(t) = l.end_s {
            marks.push(Mark {
                label: format!("{} end", l.name),
                x: t,
            });
        }
    }
    let open_by_name = |name: &str| {
        s.scenarios
            .iter()
            .any(|sc| sc.name == name && is_open(&sc.executor))
    };
    let any_open = s.scenarios.iter().any(|sc| is_open(&sc.executor));
    let several = tl.scenarios.len() > 1;
    let mut out = Vec::new();

    let mut rps = vec![series("all", per_s(&tl.run, |p| p.reqs), false)];
    if several {
        for l in &tl.scenarios {
            rps.push(series(&l.name, per_s(&l.points, |p| p.reqs), false));
        }
    }
    out.push(chart(
        "rps",
        "Requests per second",
        Unit::PerSecond,
        &x,
        rps,
    ));

    let mut latency = chart(
        "latency",
        "Latency percentiles, all requests (corrected; raw dashed for open models)",
        Unit::Ms,
        &x,
        latency_series(&tl.run, any_open),
    );
    if let [only] = tl.endpoint_types.as_slice() {
        let t = only.endpoint_type;
        latency.levels = levels(bands.band(t), t.title());
    }
    out.push(latency);
    if tl.endpoint_types.len() > 1 {
        for l in &tl.endpoint_types {
            let t: EndpointType = l.endpoint_type;
            let open = s
                .endpoint_types
                .iter()
                .find(|e| e.endpoint_type == t)
                .is_some_and(|e| e.scenarios.iter().any(|n| open_by_name(n)));
            let mut c = chart(
                &format!("latency-{}", t.key()),
                &format!("Latency percentiles, {}", t.title()),
                Unit::Ms,
                &x,
                latency_series(&l.points, open),
            );
            c.levels = levels(bands.band(t), t.title());
            out.push(c);
        }
    }

    let mut vus = vec![series(
        "all",
        tl.run.iter().map(|p| p.vus.map(|v| v as f64)).collect(),
        false,
    )];
    if several {
        for l in &tl.scenarios {
            vus.push(series(
                &l.name,
                l.points.iter().map(|p| p.vus.map(|v| v as f64)).collect(),
                false,
            ));
        }
    }
    out.push(chart("vus", "Virtual users", Unit::Count, &x, vus));

    let kinds: [(&str, CountOf); 7] = [
        ("status ≥ 400", |p| p.errors.status),
        ("connect", |p| p.errors.connect),
        ("tls", |p| p.errors.tls),
        ("timeout", |p| p.errors.timeout),
        ("protocol", |p| p.errors.protocol),
        ("interrupted", |p| p.errors.interrupted),
        ("invalid", |p| p.errors.invalid),
    ];
    let mut errs = vec![series("failed", per_s(&tl.run, |p| p.failed), false)];
    for (name, f) in kinds {
        if tl.run.iter().any(|p| f(p) > 0) {
            errs.push(series(name, per_s(&tl.run, f), false));
        }
    }
    if tl.run.iter().any(|p| p.dropped_iterations.unwrap_or(0) > 0) {
        errs.push(series(
            "dropped iterations",
            per_s(&tl.run, |p| p.dropped_iterations.unwrap_or(0)),
            true,
        ));
    }
    out.push(chart(
        "errors",
        "Errors per second by kind",
        Unit::PerSecond,
        &x,
        errs,
    ));
    for c in &mut out {
        c.marks = marks.clone();
    }
    out
}

fn http_cells(h: &HttpSummary) -> Vec<String> {
    let d = &h.duration.stats;
    vec![
        fmt::count(h.reqs as f64),
        fmt::rate(h.rate),
        fmt::ms(d.med),
        fmt::ms(d.p95),
        fmt::ms(d.p99),
        format!("{} ({})", h.failed, fmt::fraction(h.failed_rate())),
    ]
}

fn tables(s: &Summary, bands: &Bands) -> Vec<Table> {
    let mut out = Vec::new();
    let mut rows = vec![header(&[
        "scenario",
        "endpoint type",
        "executor",
        "requests",
        "rate",
        "p50",
        "p95",
        "p99",
        "errors",
    ])];
    for sc in &s.scenarios {
        let mut r = vec![
            sc.name.clone(),
            sc.endpoint_type.title().to_string(),
            sc.executor.clone(),
        ];
        r.extend(http_cells(&sc.http));
        rows.push(r);
    }
    let mut all = vec!["all".to_string(), String::new(), String::new()];
    all.extend(http_cells(&s.http));
    rows.push(all);
    out.push(Table {
        title: "Scenarios".to_string(),
        rows,
    });

    let mut rows = vec![header(&[
        "endpoint type",
        "target / max",
        "requests",
        "rate",
        "p50",
        "p95",
        "p99",
        "errors",
    ])];
    for e in &s.endpoint_types {
        let b = bands.band(e.endpoint_type);
        let mut r = vec![
            e.title.clone(),
            format!("< {} / {}", fmt::ms(b.target_ms), fmt::ms(b.max_ms)),
        ];
        r.extend(http_cells(&e.http));
        rows.push(r);
    }
    out.push(Table {
        title: "Endpoint types".to_string(),
        rows,
    });

    if !s.thresholds.is_empty() {
        let mut rows = vec![header(&["", "metric", "expression", "observed"])];
        for t in &s.thresholds {
            rows.push(vec![
                if t.ok { "✓ pass" } else { "✗ FAIL" }.to_string(),
                t.metric.clone(),
                t.expr.clone(),
                t.observed_value().to_string(),
            ]);
        }
        out.push(Table {
            title: "Thresholds".to_string(),
            rows,
        });
    }

    if let Some(l) = s.llm.as_ref().filter(|l| l.responses > 0) {
        out.extend(llm_tables(l));
    }

    let mut rows = vec![header(&["scenario", "check", "passes", "fails", "passed"])];
    for sc in &s.scenarios {
        for c in &sc.checks {
            let n = c.passes + c.fails;
            rows.push(vec![
                sc.name.clone(),
                c.name.clone(),
                fmt::count(c.passes as f64),
                fmt::count(c.fails as f64),
                if n == 0 {
                    "n/a".to_string()
                } else {
                    fmt::fraction(c.passes as f64 / n as f64)
                },
            ]);
        }
    }
    if rows.len() > 1 {
        out.push(Table {
            title: "Checks".to_string(),
            rows,
        });
    }
    out
}

/// A run with LLM steps: the answers' timing percentiles (TTFT, ITL, TPOT, end to
/// end, tokens/s), then tokens and stream errors by kind.
fn llm_tables(l: &LlmSummary) -> Vec<Table> {
    let mut rows = vec![header(&["", "answers", "p50", "p95", "p99", "max"])];
    let trends: [(&str, &TrendSummary); 4] = [
        ("time to first token (TTFT)", &l.ttft),
        ("inter-token latency (ITL)", &l.itl),
        ("time per output token (TPOT)", &l.tpot),
        ("end to end", &l.e2e),
    ];
    for (name, t) in trends {
        let st = &t.stats;
        let cells = if st.count == 0 {
            vec!["-".to_string(); 4]
        } else {
            vec![
                fmt::ms(st.med),
                fmt::ms(st.p95),
                fmt::ms(st.p99),
                fmt::ms(st.max),
            ]
        };
        let mut r = vec![name.to_string(), fmt::count(st.count as f64)];
        r.extend(cells);
        rows.push(r);
    }
    let tps = &l.tokens_per_s.stats;
    let mut r = vec![
        "output tokens/s per answer".to_string(),
        fmt::count(tps.count as f64),
    ];
    if tps.count == 0 {
        r.extend(vec!["-".to_string(); 4]);
    } else {
        r.extend([tps.med, tps.p95, tps.p99, tps.max].map(fmt::rate));
    }
    rows.push(r);
    let timing = Table {
        title: format!("LLM answers ({})", l.dialects.join(", ")),
        rows,
    };
    let e = &l.stream_errors;
    let counted = match (l.tokens_from_usage, l.tokens_from_chunks) {
        (_, 0) => "all from the answers' usage".to_string(),
        (0, _) => "all counted from content chunks (the streams sent no usage)".to_string(),
        (u, c) => format!(
            "{} answers from usage, {} counted from content chunks",
            fmt::count(u as f64),
            fmt::count(c as f64)
        ),
    };
    let rows = vec![
        header(&["", ""]),
        vec![
            "answers".to_string(),
            format!(
                "{} ({} streamed, {} completed)",
                fmt::count(l.responses as f64),
                fmt::count(l.streamed as f64),
                fmt::count(l.completed as f64)
            ),
        ],
        vec![
            "output tokens".to_string(),
            format!("{} ({counted})", fmt::count(l.output_tokens as f64)),
        ],
        vec![
            "input tokens".to_string(),
            fmt::count(l.input_tokens as f64),
        ],
        vec![
            "output tokens/s over the run".to_string(),
            fmt::rate(l.output_tokens_rate),
        ],
        vec![
            "stream errors".to_string(),
            format!(
                "{} (provider error {}, malformed chunk {}, stall {}, dropped {})",
                fmt::count(e.total() as f64),
                e.provider,
                e.malformed,
                e.stall,
                e.dropped
            ),
        ],
    ];
    vec![
        timing,
        Table {
            title: "LLM tokens and stream errors".to_string(),
            rows,
        },
    ]
}

fn metadata(s: &Summary) -> Vec<(String, String)> {
    let mut m = vec![
        ("plan".to_string(), redact::text(&s.source)),
        ("base URL".to_string(), redact::url(&s.base_url)),
        ("started".to_string(), s.started_at.clone()),
        ("duration".to_string(), fmt::seconds(s.duration_s)),
        ("VUs max".to_string(), fmt::count(s.vus_max as f64)),
        (
            "iterations".to_string(),
            format!(
                "{} ({} dropped)",
                fmt::count(s.iterations as f64),
                fmt::count(s.dropped_iterations as f64)
            ),
        ),
        (
            "data".to_string(),
            format!(
                "{} sent, {} received",
                fmt::bytes(s.data_sent),
                fmt::bytes(s.data_received)
            ),
        ),
    ];
    if let Some(tl) = &s.timeline {
        m.push((
            "timeline".to_string(),
            format!("one point per {}", fmt::seconds(tl.interval_s)),
        ));
    }
    if let Some(a) = &s.aborted {
        m.push(("aborted".to_string(), a.clone()));
    }
    if s.interrupted {
        m.push((
            "interrupted".to_string(),
            "a signal stopped the run: figures cover what was measured until then".to_string(),
        ));
    }
    m
}
