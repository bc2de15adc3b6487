//! Each Troubleshooting row on a real environment the test starts: planted → the
//! symptom and its cause confirmed; clean → ruled out. Real Redis (a private
//! redis-server for the instance-wide hit counters, a reserved database of the test
//! Redis for Sidekiq's data), a gateway in front of the provider simulator, a spawned
//! process for memory, a Vite-shaped build for the bundle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

use common::*;
use powertune_doctor::{Row, Status};
use std::time::Duration;

fn row<'a>(rows: &'a [Row], id: &str) -> &'a Row {
    rows.iter().find(|r| r.id == id).unwrap()
}

fn statuses(r: &Row) -> (Status, Status) {
    (r.symptom.status, r.causes[0].status)
}

#[tokio::test]
async fn nothing_configured_is_never_a_pass() {
    let o = options(&[]);
    let i = powertune_doctor::inspect(&o, &targets()).await.unwrap();
    let r = i.report().unwrap();
    assert_eq!(r.verdict, powertune_core::Verdict::Fail);
    assert!(r.findings.iter().any(|f| f.check == "coverage"));
    assert!(
        i.text.contains("not configured — not checked"),
        "{}",
        i.text
    );
    for row in &i.metrics.rows {
        assert_eq!(row.symptom.status, Status::NotMeasured, "{row:?}");
    }
}

#[tokio::test]
async fn cache_hit_rate_degraded_from_the_redis_keyspace() {
    let redis = powertune_test_support::redis_db::PrivateRedis::start(&[]).await;
    let url = format!("{}/0", redis.url);
    // planted: lookups of keys that are not there during the run
    let load = lookups(redis.connection(0).await, false);
    let i = doctor(&[("redis", &url)]).await;
    load.abort();
    let r = row(&i.metrics.rows, "p95_cache");
    assert_eq!(r.causes[0].status, Status::Confirmed, "{r:?}");
    assert!(
        r.causes[0].figure.contains("over the"),
        "{}",
        r.causes[0].figure
    );
    // no apm: the symptom is not measurable, and the finding is not a pass
    assert_eq!(r.symptom.status, Status::NotMeasured);
    assert!(r.symptom.figure.contains("apm: not configured"));

    // clean: lookups that hit
    let load = lookups(redis.connection(0).await, true);
    let i = doctor(&[("redis", &url)]).await;
    load.abort();
    let r = row(&i.metrics.rows, "p95_cache");
    assert_eq!(r.causes[0].status, Status::RuledOut, "{r:?}");
}

#[tokio::test]
async fn a_failing_job_class_filling_the_retry_set() {
    let db = powertune_test_support::redis_db::TestRedis::reserve().await;
    // planted: MissionJob failures arrive in the retry set during the run
    let feed = retries(db.connection().await, "MissionJob", 8);
    let i = doctor(&[("queues", &db.url)]).await;
    feed.abort();
    let r = row(&i.metrics.rows, "retry_set");
    assert_eq!(statuses(r), (Status::Confirmed, Status::Confirmed), "{r:?}");
    assert!(
        r.causes[0].figure.contains("MissionJob"),
        "{}",
        r.causes[0].figure
    );
    assert!(
        r.signals
            .iter()
            .any(|s| s.contains("Faraday::TimeoutError")),
        "{:?}",
        r.signals
    );
    let f = i.findings.iter().find(|f| f.check == "retry_set").unwrap();
    assert_eq!(f.verdict, powertune_core::Verdict::Fail);

    // clean: the set stays as it is
    let i = doctor(&[("queues", &db.url)]).await;
    let r = row(&i.metrics.rows, "retry_set");
    assert_eq!(r.symptom.status, Status::RuledOut, "{r:?}");
    db.release().await;

    // a Sidekiq database with an empty retry set
    let empty = powertune_test_support::redis_db::TestRedis::reserve().await;
    let mut con = empty.connection().await;
    sidekiq_db(&mut con).await;
    let i = doctor(&[("queues", &empty.url)]).await;
    let r = row(&i.metrics.rows, "retry_set");
    assert_eq!(statuses(r), (Status::RuledOut, Status::RuledOut), "{r:?}");
    let f = i.findings.iter().find(|f| f.check == "retry_set").unwrap();
    assert_eq!(f.verdict, powertune_core::Verdict::Pass);
    empty.release().await;
}

#[tokio::test]
async fn memory_growth_of_a_process() {
    // planted: a process that keeps allocating
    let mut leak = Spawned::python(
        "import time\na=[]\nfor _ in range(600):\n    a.append(b'x'*(2<<20))\n    time.sleep(0.05)\n",
    );
    let pid = leak.pid().to_string();
    let i = doctor(&[("pid", &pid)]).await;
    let r = row(&i.metrics.rows, "memory");
    assert_eq!(statuses(r), (Status::Confirmed, Status::Confirmed), "{r:?}");
    leak.kill();

    // clean: a process that holds still
    let mut still = Spawned::still();
    let pid = still.pid().to_string();
    let i = doctor(&[("pid", &pid)]).await;
    let r = row(&i.metrics.rows, "memory");
    assert_eq!(statuses(r), (Status::RuledOut, Status::RuledOut), "{r:?}");
    still.kill();
}

#[tokio::test]
async fn provider_p95_doubled_and_mission_completion_at_the_gateway() {
    let env = LlmEnv::start("").await;
    env.calls(6).await;
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("gateway.json");
    env.save_baseline(&baseline).await;
    let b = baseline.display().to_string();

    // clean: same latency, every call completed, breakers closed
    env.calls(6).await;
    let i = doctor(&[("gateway", &env.gateway_url), ("gateway_baseline", &b)]).await;
    let p = row(&i.metrics.rows, "provider_p95");
    assert_eq!(statuses(p), (Status::RuledOut, Status::RuledOut), "{p:?}");
    let m = row(&i.metrics.rows, "mission_completion");
    assert_eq!(statuses(m), (Status::RuledOut, Status::RuledOut), "{m:?}");

    // planted: the provider slows down on every credential
    env.slow_down().await;
    env.calls(30).await;
    let i = doctor(&[("gateway", &env.gateway_url), ("gateway_baseline", &b)]).await;
    let p = row(&i.metrics.rows, "provider_p95");
    assert_eq!(statuses(p), (Status::Confirmed, Status::Confirmed), "{p:?}");
    assert!(
        p.causes[0].figure.contains("2 of 2 credentials slow"),
        "{}",
        p.causes[0].figure
    );
}

#[tokio::test]
async fn mission_completion_dropped_with_the_quota_spent() {
    // planted: the provider's quota is 2 requests a minute per key
    let env = LlmEnv::start("[quota]\nrpm = 2\n").await;
    env.calls(12).await;
    let i = doctor(&[("gateway", &env.gateway_url)]).await;
    let m = row(&i.metrics.rows, "mission_completion");
    assert_eq!(statuses(m), (Status::Confirmed, Status::Confirmed), "{m:?}");
    // The gateway reads the provider's rate-limit headers and holds calls back
    // before a 429: the quota shows as credentials told "0 requests left".
    assert!(
        m.causes[0]
            .figure
            .contains("0 requests left until the reset"),
        "{}",
        m.causes[0].figure
    );
    // without a baseline the P95 doubling cannot be told
    let p = row(&i.metrics.rows, "provider_p95");
    assert_eq!(p.symptom.status, Status::NotMeasured);
    assert!(
        p.symptom.figure.contains("gateway_baseline"),
        "{}",
        p.symptom.figure
    );
}

#[tokio::test]
async fn frontend_bundle_ballooned_by_a_static_import() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("app/dist");
    let base = dir.path().join("bundle.json");
    write_build(&dist, false, 0);
    save_bundle_baseline(&dist, &base);
    let d = dist.display().to_string();
    let b = base.display().to_string();

    // clean: the same build
    let i = doctor(&[("frontend_dist", &d), ("frontend_baseline", &b)]).await;
    let r = row(&i.metrics.rows, "bundle");
    assert_eq!(statuses(r), (Status::RuledOut, Status::RuledOut), "{r:?}");

    // lazy growth only: the initial load is unaffected
    write_build(&dist, false, 200_000);
    let i = doctor(&[("frontend_dist", &d), ("frontend_baseline", &b)]).await;
    let r = row(&i.metrics.rows, "bundle");
    assert_eq!(r.symptom.status, Status::RuledOut, "{r:?}");

    // planted: a new dependency imported statically by the entry
    write_build(&dist, true, 0);
    let i = doctor(&[("frontend_dist", &d), ("frontend_baseline", &b)]).await;
    let r = row(&i.metrics.rows, "bundle");
    assert_eq!(statuses(r), (Status::Confirmed, Status::Confirmed), "{r:?}");
    assert!(
        r.causes[0].figure.contains("added"),
        "{}",
        r.causes[0].figure
    );
}

#[tokio::test]
async fn a_system_that_does_not_answer_is_not_measured_with_the_reason() {
    let mut o = options(&[
        ("db", "postgres://nobody:sekrit-pw@127.0.0.1:1/x"),
        ("gateway", "http://127.0.0.1:1"),
    ]);
    o.timeout = Duration::from_secs(10);
    let i = powertune_doctor::inspect(&o, &targets()).await.unwrap();
    let json = serde_json::to_string(&i.report().unwrap()).unwrap();
    assert!(!json.contains("sekrit-pw"), "{json}");
    assert!(!i.text.contains("sekrit-pw"));
    let db = i.metrics.systems.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(db.state, powertune_doctor::SystemState::NotMeasured);
    assert!(!db.reason.is_empty());
    let p = row(&i.metrics.rows, "provider_p95");
    assert!(
        p.symptom.figure.contains("gateway: not measured"),
        "{}",
        p.symptom.figure
    );
    powertune_test_support::schema::check::<powertune_doctor::DoctorMetrics>(
        "doctor.v1",
        &serde_json::to_value(&i.metrics).unwrap(),
    );
}

#[tokio::test]
async fn a_hung_system_times_out_within_the_bound() {
    // a listener that accepts and never answers
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let mut o = options(&[("apm", &url)]);
    o.timeout = Duration::from_secs(3);
    o.window = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let i = powertune_doctor::inspect(&o, &targets()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    let apm = i.metrics.systems.iter().find(|s| s.name == "apm").unwrap();
    assert_eq!(apm.state, powertune_doctor::SystemState::NotMeasured);
    assert!(!apm.reason.is_empty(), "{apm:?}");
    hold.abort();
}

#[tokio::test]
async fn memory_growth_from_a_metrics_endpoint() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // a Prometheus page whose process_resident_memory_bytes grows 10 MiB a scrape
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    let scrapes = std::sync::Arc::new(AtomicU64::new(0));
    let n = scrapes.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let rss = (200 + 10 * n.fetch_add(1, Ordering::SeqCst)) << 20;
            let body = format!(
                "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
            );
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    let i = doctor(&[("metrics", &url)]).await;
    server.abort();
    let r = row(&i.metrics.rows, "memory");
    assert_eq!(statuses(r), (Status::Confirmed, Status::Confirmed), "{r:?}");
    assert!(r.symptom.figure.contains("MiB"), "{}", r.symptom.figure);
    assert!(scrapes.load(Ordering::SeqCst) >= 3);
}
