//! `--out prometheus-rw`: a run pushes its live series to a real Prometheus (the
//! Debian package's binary, started here with its remote-write receiver on a free
//! loopback port and a temporary storage folder, killed on drop), and the series are
//! read back through Prometheus' query API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_load::out::{Outputs, Sink};
use powertune_load::segment::Share;
use powertune_load::{Plan, RunOptions};
use powertune_test_support::http::{FixtureConfig, TestServer};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::prometheus::{prometheus, query};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_pushes_its_series_to_prometheus() {
    let prom = prometheus().await;
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let mut plan = Plan::from_toml_str(
        "[scenarios.login]\nendpoint_type = \"auth\"\nexecutor = \"constant-arrival-rate\"\nrate = 100\nduration = \"3s\"\npre_allocated_vus = 8\nmax_vus = 16\n[[scenarios.login.steps]]\nurl = \"/delay\"\n",
        "p.toml",
    )
    .unwrap();
    plan.split(Share::parse("2/2", None).unwrap()).unwrap();
    let outputs = Arc::new(Outputs::new(
        vec![Sink::parse(&format!("prometheus-rw={}/api/v1/write", prom.url)).unwrap()],
        Duration::from_millis(500),
    ));
    let mut opts = RunOptions::new(plan, srv.url.clone());
    opts.outputs = Some(outputs.clone());
    let summary = powertune_load::run(&opts).await.unwrap();
    let st = &outputs.sinks[0].1;
    assert!(st.pushed.load(Ordering::Relaxed) >= 4, "{st:?}");
    assert_eq!(st.failed.load(Ordering::Relaxed), 0, "{st:?}");
    // The last push carries the final count: Prometheus holds what the run counted.
    let r = query(&prom.url, "k6_http_reqs_total").await;
    assert_eq!(r.len(), 1, "{r:?}");
    let m = &r[0]["metric"];
    assert_eq!(m["scenario"], "login");
    assert_eq!(m["endpoint_type"], "authentication");
    assert_eq!(m["segment"], "1/2:1");
    let pushed: f64 = r[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert_eq!(pushed as u64, summary.http.reqs);
    assert_eq!(summary.http.reqs, 150, "half of 300 arrivals");
    assert_eq!(srv.requests(), 150);
    // Several points over the run, rising.
    let r = query(&prom.url, "k6_http_reqs_total[1m]").await;
    let points = r[0]["values"].as_array().unwrap();
    assert!(points.len() >= 4, "{points:?}");
    let p99 = query(&prom.url, "k6_http_req_duration_p99").await;
    let v: f64 = p99[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(v > 0.0 && v < 5.0, "seconds: {v}");
    assert_eq!(
        query(&prom.url, "k6_vus").await.len(),
        2,
        "per scenario and the run"
    );
    assert_eq!(query(&prom.url, "k6_iterations_total").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_never_slows_the_run() {
    // A listener that accepts and never answers.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    common::run_beside_a_dead_receiver(&format!("prometheus-rw=http://{addr}/api/v1/write")).await;
    drop(l);
}
