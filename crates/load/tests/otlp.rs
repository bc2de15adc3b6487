//! `--out otlp`: a run pushes its live metrics as OTLP/HTTP protobuf to a receiver
//! that decodes them with the OpenTelemetry project's own Python bindings
//! (`tests/fixtures/otlp_receiver.py`; Prometheus 2.42, Debian 12's, predates
//! Prometheus' OTLP receiver), and what arrived is compared with the run's summary
//! exactly: counts, failures, iterations, and every histogram bucket recomputed from
//! the summary's own HDR histogram.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_load::out::{by_endpoint_type, otlp, Outputs, Sink};
use powertune_load::segment::Share;
use powertune_load::{Plan, RunOptions, Summary};
use powertune_test_support::http::{FixtureConfig, TestServer};
use serde_json::Value;
use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::prometheus::{prometheus, query};

struct Receiver {
    child: std::process::Child,
    url: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver(args: &[&str]) -> Receiver {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/otlp_receiver.py"
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).args(args);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3 on PATH (scripts/test.sh sets up its virtual environment)");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap_or_else(|_| {
        panic!(
            "the OTLP receiver did not start (`{}`): scripts/test.sh installs the Python package opentelemetry-proto",
            line.trim()
        )
    });
    Receiver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn received(r: &Receiver) -> Vec<Value> {
    reqwest::get(format!("{}/received", r.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The metrics of one received request, by name.
fn metrics(req: &Value) -> Vec<Value> {
    let rm = &req["request"]["resourceMetrics"];
    assert_eq!(rm.as_array().unwrap().len(), 1, "{req}");
    let attrs = &rm[0]["resource"]["attributes"];
    assert_eq!(attrs[0]["key"], "service.name");
    assert_eq!(attrs[0]["value"]["stringValue"], "powertune");
    assert_eq!(rm[0]["scopeMetrics"][0]["scope"]["name"], "powertune-load");
    rm[0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
        .clone()
}

fn metric<'a>(ms: &'a [Value], name: &str) -> &'a Value {
    ms.iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {ms:?}"))
}

fn attr<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .and_then(|a| a["value"]["stringValue"].as_str())
}

/// The point of `m` labelled with this scenario (and endpoint type, when given).
fn point<'a>(m: &'a Value, kind: &str, scenario: &str, t: Option<&str>) -> &'a Value {
    m[kind]["dataPoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| attr(p, "scenario") == Some(scenario) && attr(p, "endpoint_type") == t)
        .unwrap_or_else(|| panic!("no point {scenario}/{t:?} in {m}"))
}

/// protobuf's JSON mapping writes 64-bit integers as strings.
fn int(v: &Value) -> u64 {
    v.as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

fn check_against_summary(last: &Value, s: &Summary) {
    let ms = metrics(last);
    let reqs = metric(&ms, "k6_http_reqs");
    assert_eq!(
        reqs["sum"]["aggregationTemporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(reqs["sum"]["isMonotonic"], true);
    assert_eq!(reqs["unit"], "{request}");
    let dur = metric(&ms, otlp::DURATION);
    assert_eq!(dur["unit"], "s");
    assert_eq!(
        dur["histogram"]["aggregationTemporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    let mut types = 0;
    for sc in &s.scenarios {
        for (t, h) in by_endpoint_type(sc) {
            types += 1;
            let p = point(reqs, "sum", &sc.name, Some(t));
            assert_eq!(int(&p["asInt"]), h.reqs, "{} {t}", sc.name);
            assert_eq!(attr(p, "segment"), Some("1/2:1"));
            let f = point(
                metric(&ms, "powertune_http_req_failures"),
                "sum",
                &sc.name,
                Some(t),
            );
            assert_eq!(int(&f["asInt"]), h.failed);
            let r = point(
                metric(&ms, "k6_http_req_failed_rate"),
                "gauge",
                &sc.name,
                Some(t),
            );
            assert_eq!(r["asDouble"].as_f64().unwrap_or(0.0), h.failed_rate());
            let d = point(dur, "histogram", &sc.name, Some(t));
            assert_eq!(int(&d["count"]), h.reqs);
            let buckets: Vec<u64> = d["bucketCounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(int)
                .collect();
            assert_eq!(
                buckets,
                otlp::bucket_counts(&h.duration.histogram, otlp::BOUNDS_S)
            );
            let bounds: Vec<f64> = d["explicitBounds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_f64().unwrap())
                .collect();
            assert_eq!(bounds, otlp::BOUNDS_S);
            let st = &h.duration.stats;
            assert_eq!(d["max"].as_f64().unwrap(), st.max / 1000.0);
            assert_eq!(d["min"].as_f64().unwrap(), st.min / 1000.0);
            assert_eq!(
                d["sum"].as_f64().unwrap(),
                st.avg * st.count as f64 / 1000.0
            );
            let start = int(&d["startTimeUnixNano"]);
            assert!(start > 0 && start <= int(&d["timeUnixNano"]));
        }
        let it = point(metric(&ms, "k6_iterations"), "sum", &sc.name, None);
        assert_eq!(int(&it["asInt"]), sc.iterations);
        let dr = point(metric(&ms, "k6_dropped_iterations"), "sum", &sc.name, None);
        assert_eq!(int(&dr["asInt"]), sc.dropped_iterations);
        point(metric(&ms, "k6_vus"), "gauge", &sc.name, None);
    }
    assert_eq!(types, 2, "two endpoint types in the plan");
    let vus = metric(&ms, "k6_vus")["gauge"]["dataPoints"]
        .as_array()
        .unwrap();
    assert!(
        vus.iter().any(|p| attr(p, "scenario").is_none()),
        "the process's VUs: {vus:?}"
    );
}

const PLAN: &str = r#"
[scenarios.shop]
endpoint_type = "read_crud"
executor = "constant-arrival-rate"
rate = 100
duration = "3s"
pre_allocated_vus = 8
max_vus = 16
[[scenarios.shop.steps]]
url = "/delay"
[[scenarios.shop.steps]]
endpoint_type = "auth"
method = "POST"
url = "/login"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_pushes_otlp_metrics_that_match_its_summary_with_remote_write_beside() {
    let recv = receiver(&[]);
    let prom = prometheus().await;
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let mut plan = Plan::from_toml_str(PLAN, "p.toml").unwrap();
    plan.split(Share::parse("2/2", None).unwrap()).unwrap();
    let outputs = Arc::new(Outputs::new(
        vec![
            Sink::parse(&format!("otlp={}", recv.url)).unwrap(),
            Sink::parse(&format!("prometheus-rw={}/api/v1/write", prom.url)).unwrap(),
        ],
        Duration::from_millis(500),
    ));
    let mut opts = RunOptions::new(plan, srv.url.clone());
    opts.outputs = Some(outputs.clone());
    let summary = powertune_load::run(&opts).await.unwrap();
    assert_eq!(summary.iterations, 150, "half of 300 arrivals");
    assert_eq!(srv.requests(), 300, "two steps per iteration");
    for (sink, st) in &outputs.sinks {
        assert!(st.pushed.load(Ordering::Relaxed) >= 4, "{sink:?} {st:?}");
        assert_eq!(st.failed.load(Ordering::Relaxed), 0, "{sink:?} {st:?}");
        assert_eq!(st.dropped.load(Ordering::Relaxed), 0, "{sink:?} {st:?}");
    }
    let got = received(&recv).await;
    assert_eq!(
        got.len() as u64,
        outputs.sinks[0].1.pushed.load(Ordering::Relaxed),
        "every push arrived and decoded"
    );
    assert!(got[0]["user_agent"]
        .as_str()
        .unwrap()
        .starts_with("powertune/"));
    // The last push holds the run's totals, exactly.
    check_against_summary(got.last().unwrap(), &summary);
    // Cumulative: one start time, counts that never fall, times that rise.
    let series: Vec<(u64, u64, u64)> = got
        .iter()
        .map(|r| {
            let ms = metrics(r);
            let p = point(
                metric(&ms, "k6_http_reqs"),
                "sum",
                "shop",
                Some("read_crud"),
            );
            (
                int(&p["startTimeUnixNano"]),
                int(&p["timeUnixNano"]),
                int(&p["asInt"]),
            )
        })
        .collect();
    assert!(series
        .windows(2)
        .all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1 && w[0].2 <= w[1].2));
    // The remote write output ran beside it and agrees.
    let r = query(&prom.url, "k6_http_reqs_total").await;
    assert_eq!(r.len(), 2, "{r:?}");
    let total: f64 = r
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total as u64, summary.http.reqs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_otlp_receiver_never_slows_the_run() {
    let recv = receiver(&["--stall"]);
    common::run_beside_a_dead_receiver(&format!("otlp={}/v1/metrics", recv.url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_that_rejected_points_counts_as_failed() {
    let recv = receiver(&["--reject", "3"]);
    let srv = TestServer::start(FixtureConfig::default()).await;
    let plan = Plan::from_toml_str(
        "[scenarios.a]\nendpoint_type = \"auth\"\nexecutor = \"shared-iterations\"\nvus = 1\niterations = 5\n[[scenarios.a.steps]]\nurl = \"/delay\"\n",
        "p.toml",
    )
    .unwrap();
    let outputs = Arc::new(Outputs::new(
        vec![Sink::parse(&format!("otlp={}", recv.url)).unwrap()],
        Duration::from_millis(100),
    ));
    let mut opts = RunOptions::new(plan, srv.url.clone());
    opts.outputs = Some(outputs.clone());
    powertune_load::run(&opts).await.unwrap();
    let st = &outputs.sinks[0].1;
    assert_eq!(st.pushed.load(Ordering::Relaxed), 0, "{st:?}");
    assert!(st.failed.load(Ordering::Relaxed) >= 1, "{st:?}");
    let e = st.last_error.lock().clone().unwrap();
    assert!(
        e.contains("rejected 3 data point(s): out of order sample") && e.contains("/v1/metrics"),
        "{e}"
    );
}
