//! Helpers shared by the live-output tests.

pub mod prometheus;

use powertune_load::out::{Outputs, Sink};
use powertune_load::{Plan, RunOptions};
use powertune_test_support::http::{FixtureConfig, TestServer};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Runs 150 arrivals (50/s for 3 s) against a 5 ms server while pushing every 100 ms
/// to `sink`, a receiver that never answers: the schedule holds, the run ends within
/// the final wait, nothing is pushed and batches are dropped and counted.
pub async fn run_beside_a_dead_receiver(sink: &str) {
    let srv = TestServer::start(FixtureConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    })
    .await;
    let plan = Plan::from_toml_str(
        "[scenarios.a]\nendpoint_type = \"auth\"\nexecutor = \"constant-arrival-rate\"\nrate = 50\nduration = \"3s\"\npre_allocated_vus = 4\nmax_vus = 8\n[[scenarios.a.steps]]\nurl = \"/delay\"\n",
        "p.toml",
    )
    .unwrap();
    let outputs = Arc::new(Outputs::new(
        vec![Sink::parse(sink).unwrap()],
        Duration::from_millis(100),
    ));
    let mut opts = RunOptions::new(plan, srv.url.clone());
    opts.outputs = Some(outputs.clone());
    let t = std::time::Instant::now();
    let summary = powertune_load::run(&opts).await.unwrap();
    assert_eq!(summary.iterations + summary.dropped_iterations, 150);
    assert_eq!(summary.dropped_iterations, 0);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let st = &outputs.sinks[0].1;
    assert_eq!(st.pushed.load(Ordering::Relaxed), 0);
    assert!(st.dropped.load(Ordering::Relaxed) > 0, "{st:?}");
}
