//! The self-contained HTML report: one file that works offline (the chart library,
//! uPlot 1.6.32, and the page's own script and styles are inlined; nothing is fetched
//! when the page is opened), readable on a laptop screen and printable.
//!
//! Content, most important first: the verdict and every finding that did not pass with
//! its runbook action; then the charts the command's data supports; then tables; then
//! every finding; then the run's metadata. Engines describe their charts and tables
//! with [`Chart`] and [`Table`]; this module draws nothing itself (uPlot draws).

use crate::finding::{Finding, Verdict};
use crate::report::Report;
use crate::units::Unit;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Serialize;

const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");
const PAGE_JS: &str = include_str!("page.js");
const PAGE_CSS: &str = include_str!("page.css");

/// One line of a chart.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub label: String,
    /// One value per x; `None` where there is no data (a gap).
    pub values: Vec<Option<f64>>,
    /// Drawn dashed (e.g. the raw latency beside the corrected one).
    #[serde(default)]
    pub dashed: bool,
}

/// A horizontal line across a chart: a target or a maximum acceptable.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub label: String,
    pub value: f64,
}

/// A vertical mark: a scenario's start or end, a step change.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub label: String,
    pub x: f64,
}

/// How the x axis reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XAxis {
    /// Seconds since the run started.
    Elapsed,
    /// Unix time in seconds.
    Time,
    /// A plain number (offered load, step number).
    Number,
}

/// A chart: series over a shared x, in one unit, with target levels and marks.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// A stable id (used by tests and for anchors): `latency`, `rps`.
    pub id: String,
    pub title: String,
    pub unit: Unit,
    pub x_axis: XAxis,
    pub x_label: String,
    pub x: Vec<f64>,
    pub series: Vec<Series>,
    #[serde(default)]
    pub levels: Vec<Level>,
    #[serde(default)]
    pub marks: Vec<Mark>,
}

/// A table of already formatted cells; the first row is the header.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub title: String,
    pub rows: Vec<Vec<String>>,
}

/// What a command adds to its report page beyond the findings.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The page title's subject (`load of examples/runbook.toml`).
    pub subject: String,
    pub charts: Vec<Chart>,
    pub tables: Vec<Table>,
    /// Run metadata shown last (`base URL`, `plan`, …), already redacted.
    pub metadata: Vec<(String, String)>,
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
    }
}

fn target_text(f: &Finding) -> String {
    match &f.limit {
        Some(l) => format!("{} (max {l})", f.target),
        None => f.target.to_string(),
    }
}

/// JSON for an inline `<script type="application/json">`: `</` cannot close the tag.
fn script_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".to_string())
        .replace("</", "<\\/")
}

fn finding_rows(findings: &[&Finding]) -> Markup {
    html! {
        @for f in findings {
            tr class=(verdict_class(f.verdict)) {
                td { span.verdict { (f.verdict.label()) } }
                td { (f.check) }
                td { (f.subject) }
                td.num { (f.observed.to_string()) }
                td.num { (target_text(f)) }
            }
        }
    }
}

/// The whole page for `report` with what the command adds.
pub fn render(report: &Report, page: &Page) -> String {
    let mut worst: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.verdict != Verdict::Pass)
        .collect();
    worst.sort_by_key(|f| std::cmp::Reverse(f.verdict));
    let mut all: Vec<&Finding> = report.findings.iter().collect();
    all.sort_by_key(|f| std::cmp::Reverse(f.verdict));
    let title = if page.subject.is_empty() {
        format!("powertune {}", report.command)
    } else {
        format!("powertune {}: {}", report.command, page.subject)
    };
    let counts = format!(
        "{} pass, {} warn, {} fail",
        report.count(Verdict::Pass),
        report.count(Verdict::Warn),
        report.count(Verdict::Fail)
    );
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(UPLOT_CSS)) }
                style { (PreEscaped(PAGE_CSS)) }
            }
            body {
                header {
                    h1 { (title) }
                    p id="verdict" class=(format!("verdict-line {}", verdict_class(report.verdict))) {
                        span.verdict { (report.verdict.label()) } " " (counts)
                    }
                    @if report.interrupted {
                        p id="interrupted" class="verdict-line warn" {
                            strong { "Interrupted" } ": a signal stopped the run before it finished; \
                            the figures cover only what was measured until then (exit code 105)."
                        }
                    }
                }
                @if !worst.is_empty() {
                    section id="problems" {
                        h2 { "What did not pass" }
                        @for f in &worst {
                            div class=(format!("problem {}", verdict_class(f.verdict))) {
                                p.head {
                                    span.verdict { (f.verdict.label()) } " "
                                    strong { (f.check) } " — " (f.subject)
                                }
                                p { "observed " strong { (f.observed.to_string()) } ", target " (target_text(f)) }
                                @if !f.evidence.is_empty() { p.evidence { (f.evidence) } }
                                @if !f.action.is_empty() { p.action { "Action: " (f.action) } }
                            }
                        }
                    }
                }
                @if !page.charts.is_empty() {
                    section id="charts" {
                        h2 { "Charts" }
                        @for c in &page.charts {
                            figure.chart id=(format!("chart-{}", c.id)) data-chart=(c.id) {
                                figcaption { (c.title) }
                                div.plot {}
                            }
                        }
                    }
                }
                @for t in &page.tables {
                    section.table {
                        h2 { (t.title) }
                        table {
                            @if let Some((head, rows)) = t.rows.split_first() {
                                thead { tr { @for h in head { th { (h) } } } }
                                tbody { @for r in rows { tr { @for c in r { td { (c) } } } } }
                            }
                        }
                    }
                }
                section id="findings" {
                    h2 { "Findings" }
                    @if all.is_empty() {
                        p { "No findings." }
                    } @else {
                        table {
                            thead { tr { th { "verdict" } th { "check" } th { "subject" } th { "observed" } th { "target" } } }
                            tbody { (finding_rows(&all)) }
                        }
                    }
                }
                section id="metadata" {
                    h2 { "Run" }
                    dl {
                        dt { "command" } dd { (report.command) }
                        dt { "generated" } dd { (report.generated_at) }
                        dt { "powertune" } dd { (report.powertune_version) }
                        @for (k, v) in &page.metadata { dt { (k) } dd { (crate::redact::text(v)) } }
                    }
                }
                script type="application/json" id="charts-data" { (PreEscaped(script_json(&page.charts))) }
                script { (PreEscaped(UPLOT_JS)) }
                script { (PreEscaped(PAGE_JS)) }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Quantity;
    use crate::Value;

    fn report() -> Report {
        Report::new(
            "load",
            vec![
                Finding::new(
                    "load",
                    "api_latency_p95",
                    "Authentication <admin>",
                    Verdict::Fail,
                )
                .observed(Quantity::ms(212.0))
                .target(Value::lt(Quantity::ms(100.0)))
                .limit(Quantity::ms(200.0))
                .action("Check the pool"),
                Finding::new("load", "load_p95", "all requests", Verdict::Pass),
            ],
            serde_json::Value::Null,
        )
    }

    fn page() -> Page {
        Page {
            subject: "plan.toml".into(),
            charts: vec![Chart {
                id: "latency".into(),
                title: "Latency".into(),
                unit: Unit::Ms,
                x_axis: XAxis::Elapsed,
                x_label: "s".into(),
                x: vec![0.0, 1.0, 2.0],
                series: vec![Series {
                    label: "p95 </script>".into(),
                    values: vec![Some(10.0), None, Some(12.0)],
                    dashed: false,
                }],
                levels: vec![Level {
                    label: "target".into(),
                    value: 100.0,
                }],
                marks: vec![],
            }],
            tables: vec![Table {
                title: "Endpoint types".into(),
                rows: vec![
                    vec!["type".into(), "p95".into()],
                    vec!["Auth".into(), "212ms".into()],
                ],
            }],
            metadata: vec![("base URL".into(), "http://u:secret@127.0.0.1:1/".into())],
        }
    }

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let h = render(&report(), &page());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(!h.contains("src=\"http"), "no external scripts");
        assert!(!h.contains("href=\"http"), "no external styles");
        assert!(h.contains("Authentication &lt;admin&gt;"));
        assert!(
            !h.contains("p95 </script>"),
            "series labels cannot close the data script"
        );
        assert!(!h.contains("secret"), "metadata is redacted");
        assert!(h.contains("Action: Check the pool"));
        assert!(h.contains("data-chart=\"latency\""));
        assert!(h.contains("uPlot"));
    }

    #[test]
    fn an_interrupted_run_says_so_under_the_verdict() {
        let mut r = report();
        assert!(!render(&r, &page()).contains("id=\"interrupted\""));
        r.mark_interrupted();
        let h = render(&r, &page());
        let v = h.find("id=\"verdict\"").unwrap();
        let i = h.find("id=\"interrupted\"").unwrap();
        assert!(v < i && h.contains("exit code 105"));
    }

    #[test]
    fn problems_come_before_charts_and_findings() {
        let h = render(&report(), &page());
        let p = h.find("id=\"problems\"").unwrap();
        let c = h.find("id=\"charts\"").unwrap();
        let f = h.find("id=\"findings\"").unwrap();
        assert!(p < c && c < f);
    }
}
