//! The HTML report page as a person opens it: in headless Chromium, offline, with
//! its charts drawn by the inlined uPlot and nothing fetched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_core::finding::{Finding, Verdict};
use powertune_core::html::{render, Chart, Level, Mark, Page, Series, Table, XAxis};
use powertune_core::units::{Quantity, Unit};
use powertune_core::{Report, Value};
use std::path::PathBuf;

fn out_dir() -> PathBuf {
    // target/browser-tests, beside the build output, for a person to look at.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_page_draws_its_charts_offline_without_errors() {
    let report = Report::new(
        "load",
        vec![
            Finding::new("load", "api_latency_p95", "Authentication", Verdict::Fail)
                .observed(Quantity::ms(212.0))
                .target(Value::lt(Quantity::ms(100.0)))
                .limit(Quantity::ms(200.0))
                .action("Check the connection pool"),
            Finding::new("load", "load_p95", "all requests", Verdict::Pass),
        ],
        serde_json::Value::Null,
    );
    let x: Vec<f64> = (0..120).map(f64::from).collect();
    let wave = |base: f64| -> Vec<Option<f64>> {
        x.iter()
            .map(|t| Some(base + 10.0 * (t / 7.0).sin()))
            .collect()
    };
    let page = Page {
        subject: "examples/runbook.toml".into(),
        charts: vec![
            Chart {
                id: "latency".into(),
                title: "Latency".into(),
                unit: Unit::Ms,
                x_axis: XAxis::Elapsed,
                x_label: "s".into(),
                x: x.clone(),
                series: vec![
                    Series {
                        label: "p50".into(),
                        values: wave(40.0),
                        dashed: false,
                    },
                    Series {
                        label: "p95".into(),
                        values: wave(90.0),
                        dashed: false,
                    },
                    Series {
                        label: "p95 raw".into(),
                        values: wave(80.0),
                        dashed: true,
                    },
                ],
                levels: vec![Level {
                    label: "target".into(),
                    value: 100.0,
                }],
                marks: vec![Mark {
                    label: "spike".into(),
                    x: 60.0,
                }],
            },
            Chart {
                id: "rps".into(),
                title: "Requests per second".into(),
                unit: Unit::PerSecond,
                x_axis: XAxis::Elapsed,
                x_label: "s".into(),
                x: x.clone(),
                series: vec![Series {
                    label: "requests/s".into(),
                    values: wave(200.0),
                    dashed: false,
                }],
                levels: vec![],
                marks: vec![],
            },
        ],
        tables: vec![Table {
            title: "Endpoint types".into(),
            rows: vec![
                vec!["type".into(), "p95".into()],
                vec!["Authentication".into(), "212ms".into()],
            ],
        }],
        metadata: vec![("base URL".into(), "http://user:secret@127.0.0.1:1/".into())],
    };
    let dir = out_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("sample-load.html");
    std::fs::write(&html, render(&report, &page)).unwrap();

    let opened = powertune_test_support::browser::open(
        &html,
        "({charts: window.powertuneCharts || null, canvases: document.querySelectorAll('canvas').length})",
        &dir.join("sample-load.png"),
    )
    .await
    .unwrap();
    assert!(opened.console.is_empty(), "console: {:?}", opened.console);
    assert!(
        opened.exceptions.is_empty(),
        "exceptions: {:?}",
        opened.exceptions
    );
    assert!(
        opened.requests.is_empty(),
        "requests left the page: {:?}",
        opened.requests
    );
    let charts = &opened.probe["charts"];
    assert_eq!(
        charts["latency"]["series"],
        serde_json::json!(["p50", "p95", "p95 raw"]),
        "{}",
        opened.probe
    );
    assert_eq!(charts["rps"]["points"], 120, "{}", opened.probe);
    assert!(
        opened.probe["canvases"].as_u64().unwrap() >= 2,
        "{}",
        opened.probe
    );
    assert!(opened.text.contains("FAIL"), "{}", opened.text);
    assert!(
        opened.text.contains("Check the connection pool"),
        "{}",
        opened.text
    );
    assert!(!opened.text.contains("secret"));
    assert!(dir.join("sample-load.png").metadata().unwrap().len() > 10_000);
}
