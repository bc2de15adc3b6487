//! The capacity HTML page in headless Chromium: a real `capacity --demo` run's
//! report draws the latency-against-throughput curve with the knee marked and the
//! runbook's maximums as levels, the throughput and resource charts and the step
//! table, with no console errors, no exceptions and nothing fetched from elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value;
use std::path::PathBuf;

/// What the probe reads: the charts drawn (series labels, points), the chart specs
/// embedded in the page (levels and marks), the canvases, the uPlot legends' text
/// and the step table's rows.
const PROBE: &str = r#"(() => {
  const specs = JSON.parse(document.getElementById('charts-data').textContent);
  const rendered = {};
  for (const f of document.querySelectorAll('figure[data-chart]')) {
    rendered[f.dataset.chart] = f.getAttribute('data-rendered-series');
  }
  const legends = {};
  for (const f of document.querySelectorAll('figure[data-chart]')) {
    legends[f.dataset.chart] = (f.querySelector('.u-legend') || {}).textContent || '';
  }
  const steps = [...document.querySelectorAll('section.table')]
    .find(s => s.querySelector('h2').textContent.startsWith('Steps'));
  return {
    drawn: window.powertuneCharts || {},
    specs: specs.map(s => ({ id: s.id, levels: s.levels.map(l => l.label), marks: s.marks, x: s.x })),
    rendered,
    legends,
    canvases: document.querySelectorAll('#charts canvas').length,
    step_rows: steps ? steps.querySelectorAll('tbody tr').length : 0,
    verdict: (document.querySelector('#verdict') || {}).textContent || '',
  };
})()"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_capacity_page_draws_the_curve_the_knee_and_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("cap.html");
    let json = dir.path().join("cap.json");
    let o = common::powertune_within(
        &[
            "capacity",
            "--demo",
            "--start",
            "250",
            "--factor",
            "2",
            "--step",
            "1500ms",
            "--warmup",
            "500ms",
            "--refine",
            "1",
            "--html",
            html.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "-q",
        ],
        240,
    )
    .await;
    assert!(
        matches!(o.status.code(), Some(0) | Some(99)),
        "{}",
        common::stderr(&o)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = report["metrics"]["steps"].as_array().unwrap().len();
    assert!(
        report["metrics"]["knee_rate"].is_number(),
        "no knee: {report}"
    );

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests");
    std::fs::create_dir_all(&shots).unwrap();
    let opened = powertune_test_support::browser::open(&html, PROBE, &shots.join("capacity.png"))
        .await
        .unwrap();
    assert!(opened.console.is_empty(), "{:?}", opened.console);
    assert!(opened.exceptions.is_empty(), "{:?}", opened.exceptions);
    assert!(opened.requests.is_empty(), "{:?}", opened.requests);
    let p = &opened.probe;

    // The curve: drawn, one point per step, p95 and the endpoint types' lines.
    let curve = &p["drawn"]["latency-throughput"];
    assert_eq!(curve["points"].as_u64().unwrap() as usize, steps, "{p}");
    let labels = curve["series"].to_string();
    assert!(labels.contains("p95, all requests"), "{labels}");
    assert!(labels.contains("Authentication p95"), "{labels}");
    // The targets: each endpoint type's maximum is a level, shown in the legend.
    let spec = p["specs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "latency-throughput")
        .unwrap();
    assert!(
        spec["levels"]
            .to_string()
            .contains("Authentication maximum"),
        "{spec}"
    );
    assert!(
        p["legends"]["latency-throughput"]
            .as_str()
            .unwrap()
            .contains("Authentication maximum"),
        "{p}"
    );
    // The knee: marked within the curve's range.
    let mark = &spec["marks"][0];
    assert_eq!(mark["label"], "knee", "{spec}");
    let xs: Vec<f64> = spec["x"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let kx = mark["x"].as_f64().unwrap();
    assert!(
        xs.iter().any(|x| (x - kx).abs() < 1e-6),
        "{kx} not in {xs:?}"
    );
    // Every chart drew: curve, throughput, utilisation and queue over the steps.
    for id in [
        "latency-throughput",
        "throughput",
        "utilisation",
        "saturation",
    ] {
        assert!(p["rendered"][id].is_string(), "{id} not drawn: {p}");
    }
    assert!(p["canvases"].as_u64().unwrap() >= 4, "{p}");
    assert_eq!(p["step_rows"].as_u64().unwrap() as usize, steps, "{p}");
    assert!(opened.text.contains("limiting_resource"), "{}", opened.text);
}
