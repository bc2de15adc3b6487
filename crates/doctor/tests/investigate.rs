//! `investigate endpoint|queue` over real systems: an in-process `apm serve` fed
//! OTLP spans over HTTP, the test PostgreSQL and the test Redis with Sidekiq's data
//! written as Sidekiq writes it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use powertune_core::targets::Systems;
use powertune_core::{Targets, Verdict};
use powertune_doctor::investigate::{
    investigate_endpoint, investigate_queue, EndpointOptions, QueueOptions, Step, WaitOutcome,
};
use powertune_doctor::model::Status;
use powertune_test_support::pg::TestDb;
use powertune_test_support::redis_db::TestRedis;
use prost::Message;
use std::time::Duration;

const MS: u64 = 1_000_000;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// One trace's spans; times in ms from the trace start.
struct Trace {
    id: u128,
    t0: u64,
    next: u64,
    spans: Vec<Span>,
}

impl Trace {
    fn new(id: u128) -> Trace {
        Trace {
            id,
            t0: now_ns(),
            next: 1,
            spans: Vec::new(),
        }
    }

    fn span(
        &mut self,
        parent: u64,
        kind: i32,
        name: &str,
        at: (u64, u64),
        attrs: Vec<KeyValue>,
    ) -> u64 {
        let id = self.next;
        self.next += 1;
        self.spans.push(Span {
            trace_id: self.id.to_be_bytes().to_vec(),
            span_id: id.to_be_bytes().to_vec(),
            parent_span_id: if parent == 0 {
                vec![]
            } else {
                parent.to_be_bytes().to_vec()
            },
            name: name.into(),
            kind,
            start_time_unix_nano: self.t0 + at.0 * MS,
            end_time_unix_nano: self.t0 + at.1 * MS,
            attributes: attrs,
            ..Default::default()
        });
        id
    }

    fn request(&mut self, route: &str, at: (u64, u64)) -> u64 {
        let (method, path) = route.split_once(' ').unwrap();
        self.span(
            0,
            2,
            route,
            at,
            vec![
                kv("http.request.method", method),
                kv("http.route", path),
                kv("url.path", path),
            ],
        )
    }

    fn sql(&mut self, parent: u64, q: &str, at: (u64, u64)) -> u64 {
        self.span(
            parent,
            3,
            "SELECT",
            at,
            vec![kv("db.system", "postgresql"), kv("db.statement", q)],
        )
    }

    fn job(&mut self, class: &str, queue: &str, ms: u64) -> u64 {
        self.span(
            0,
            5,
            &format!("{queue} process"),
            (0, ms),
            vec![
                kv("messaging.system", "sidekiq"),
                kv("messaging.sidekiq.job_class", class),
                kv("messaging.destination", queue),
            ],
        )
    }
}

/// An `apm serve` on loopback port 0.
struct Apm {
    run: Option<powertune_apm::server::Running>,
    url: String,
}

impl Apm {
    async fn start() -> Apm {
        let cfg = powertune_apm::server::ServeConfig::new("127.0.0.1:0".parse().unwrap());
        let engine =
            powertune_apm::Engine::new(powertune_apm::EngineConfig::defaults(&Targets::default()));
        let run = powertune_apm::server::start(cfg, engine).await.unwrap();
        let url = format!("http://{}", run.http_addr);
        Apm {
            run: Some(run),
            url,
        }
    }

    async fn send(&self, traces: Vec<Trace>) {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "powernode-backend")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: traces.into_iter().flat_map(|t| t.spans).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let r = reqwest::Client::new()
            .post(format!("{}/v1/traces", self.url))
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

impl Drop for Apm {
    fn drop(&mut self) {
        if let Some(r) = self.run.take() {
            r.stop();
        }
    }
}

fn systems(list: &[(&str, &str)]) -> Systems {
    let mut s = Systems::default();
    for (k, v) in list {
        s.set(k, v, "test").unwrap();
    }
    s
}

fn step<'a>(steps: &'a [Step], id: &str) -> &'a Step {
    steps.iter().find(|s| s.id == id).unwrap()
}

/// A table big enough for the plan judge (past `database.hot_table_rows`) and no index
/// on `note`.
async fn orders_db() -> TestDb {
    let db = TestDb::create("inv_orders").await;
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE big_orders (id serial PRIMARY KEY, account_id int, note text);
             INSERT INTO big_orders (account_id, note)
               SELECT g % 500, 'n-' || g FROM generate_series(1, 30000) g;
             ANALYZE big_orders;",
        )
        .await
        .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_is_named_with_its_seq_scan_and_the_index_to_add() {
    let db = orders_db().await;
    let apm = Apm::start().await;
    let mut traces = Vec::new();
    for i in 0..4u128 {
        let mut t = Trace::new(1000 + i);
        let root = t.request("GET /api/v1/orders", (0, 420));
        t.sql(root, "SELECT id FROM accounts_cache LIMIT 1", (2, 4));
        t.sql(
            root,
            &format!("SELECT * FROM big_orders WHERE note = 'n-{}'", 77 + i),
            (5, 400),
        );
        traces.push(t);
    }
    apm.send(traces).await;
    let o = EndpointOptions::new(
        systems(&[("apm", &apm.url), ("db", &db.url)]),
        "GET /api/v1/orders",
    );
    let i = investigate_endpoint(&o, &Targets::default()).await.unwrap();
    let m = &i.metrics;
    println!("{}", i.text);
    assert_eq!(
        step(&m.steps, "p95").status,
        Status::Confirmed,
        "{}",
        i.text
    );
    let e = m
        .explain
        .as_ref()
        .expect("the heaviest statement explained");
    assert_eq!(e.statement, "SELECT * FROM big_orders WHERE note = ?");
    assert!(e.analyze, "a span carried the values: {}", e.note);
    assert!(
        e.flags.iter().any(|f| f.check == "seq_scan_filter"),
        "{:?}",
        e.flags
    );
    let s = step(&m.steps, "db_bound");
    assert_eq!(s.status, Status::Confirmed, "{}", i.text);
    assert!(s.found.contains("Seq Scan"), "{}", s.found);
    assert!(s.found.contains("big_orders WHERE note = ?"), "{}", s.found);
    assert!(
        m.candidates
            .iter()
            .any(|c| c.starts_with("index:") && c.contains("big_orders (note)")),
        "{:?}",
        m.candidates
    );
    assert_eq!(
        m.statements[0].statement,
        "SELECT * FROM big_orders WHERE note = ?"
    );
    assert!(m.statements[0].captured);
    let r = i.report().unwrap();
    assert_eq!(r.verdict, Verdict::Fail);
    powertune_test_support::schema::check::<powertune_doctor::investigate::EndpointMetrics>(
        "investigate-endpoint.v1",
        &r.metrics,
    );
    // A statement sent with bind parameters has no values: the generic plan only.
    let mut t = Trace::new(2000);
    let root = t.request("GET /api/v1/accounts/:id/orders", (0, 300));
    t.sql(
        root,
        "SELECT * FROM big_orders WHERE account_id = $1",
        (1, 290),
    );
    apm.send(vec![t]).await;
    let o = EndpointOptions::new(
        systems(&[("apm", &apm.url), ("db", &db.url)]),
        "GET /api/v1/accounts/:id/orders",
    );
    let i = investigate_endpoint(&o, &Targets::default()).await.unwrap();
    let e = i.metrics.explain.as_ref().expect("explained");
    assert!(!e.analyze);
    assert!(e.note.contains("without its values"), "{}", e.note);
    assert!(e.tree.contains("big_orders"), "{}", e.tree);
    drop(apm);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_n_plus_one_is_found_and_includes_suggested() {
    let apm = Apm::start().await;
    let mut traces = Vec::new();
    for i in 0..3u128 {
        let mut t = Trace::new(3000 + i);
        let root = t.request("GET /api/v1/posts", (0, 600));
        t.sql(root, "SELECT * FROM posts LIMIT 20", (1, 5));
        for k in 0..8u64 {
            let st = 10 + k * 12;
            t.sql(
                root,
                &format!("SELECT * FROM users WHERE id = {}", k + 1),
                (st, st + 10),
            );
        }
        traces.push(t);
    }
    apm.send(traces).await;
    let o = EndpointOptions::new(systems(&[("apm", &apm.url)]), "GET /api/v1/posts");
    let i = investigate_endpoint(&o, &Targets::default()).await.unwrap();
    let m = &i.metrics;
    let s = step(&m.steps, "ruby_bound");
    assert_eq!(s.status, Status::Confirmed, "{}", i.text);
    assert!(
        s.details
            .iter()
            .any(|d| d.contains("SELECT * FROM users WHERE id = ?")),
        "{:?}",
        s.details
    );
    assert!(
        m.candidates.iter().any(|c| c.starts_with(".includes()")),
        "{:?}",
        m.candidates
    );
    // Not DB-bound: nothing to explain; the gateway is not configured.
    assert!(m.explain.is_none());
    assert_eq!(
        step(&m.steps, "db_bound").status,
        Status::RuledOut,
        "{}",
        i.text
    );
    assert_eq!(i.report().unwrap().verdict, Verdict::Fail);
    // A route the APM has not seen: not measured, and the routes it has are named.
    let o = EndpointOptions::new(systems(&[("apm", &apm.url)]), "GET /nope");
    let i = investigate_endpoint(&o, &Targets::default()).await.unwrap();
    let s = step(&i.metrics.steps, "p95");
    assert_eq!(s.status, Status::NotMeasured);
    assert!(s.found.contains("no traces for `GET /nope`"), "{}", s.found);
    assert!(s.found.contains("GET /api/v1/posts"), "{}", s.found);
    assert!(i
        .findings
        .iter()
        .any(|f| f.check == "coverage" && f.verdict == Verdict::Fail));
}

#[tokio::test]
async fn nothing_configured_measures_nothing_and_fails() {
    let o = EndpointOptions::new(Systems::default(), "GET /api/v1/posts");
    let i = investigate_endpoint(&o, &Targets::default()).await.unwrap();
    assert!(i
        .metrics
        .steps
        .iter()
        .all(|s| s.status == Status::NotMeasured));
    assert_eq!(i.report().unwrap().verdict, Verdict::Fail);
    let t = Targets::default();
    let mut o = QueueOptions::new(Systems::default(), "default", &t);
    o.max_wait = Some(Duration::from_secs(1));
    let i = investigate_queue(&o, &t, |_| {}, std::future::pending())
        .await
        .unwrap();
    assert_eq!(i.metrics.wait, WaitOutcome::NotMeasured);
    assert_eq!(i.report().unwrap().verdict, Verdict::Fail);
}

// ---- queues ----

fn now_s() -> f64 {
    now_ns() as f64 / 1e9
}

/// Sidekiq 8's data: `n` jobs of `class` on queue `default` enqueued `age_s` ago (epoch
/// milliseconds), one process polling it with `busy` of `concurrency` threads busy.
async fn plant_queue(r: &TestRedis, n: u32, age_s: f64, busy: u32, concurrency: u32) {
    let mut con = r.connection().await;
    let t = now_s();
    let mut pipe = redis::pipe();
    pipe.cmd("SADD").arg("queues").arg("default");
    for k in 0..n {
        let job = serde_json::json!({
            "class": "SyncJob", "queue": "default", "args": [k], "jid": format!("{k:024x}"),
            "created_at": ((t - age_s) * 1000.0) as u64, "enqueued_at": ((t - age_s) * 1000.0) as u64,
        });
        pipe.cmd("LPUSH").arg("queue:default").arg(job.to_string());
    }
    let id = "worker-1:4242:abcdef";
    let info = serde_json::json!({"hostname": "worker-1", "pid": 4242, "tag": "app", "concurrency": concurrency,
        "queues": ["default"], "weights": [{"default": 1}], "version": "8.0.4", "identity": id, "started_at": t - 600.0});
    pipe.cmd("SADD").arg("processes").arg(id);
    pipe.cmd("HSET")
        .arg(id)
        .arg("info")
        .arg(info.to_string())
        .arg("busy")
        .arg(busy)
        .arg("beat")
        .arg(t)
        .arg("quiet")
        .arg("false")
        .arg("rss")
        .arg(204800);
    let payload =
        serde_json::json!({"class": "SyncJob", "jid": "w1", "queue": "default"}).to_string();
    let work = serde_json::json!({"queue": "default", "payload": payload, "run_at": ((t - 3.0) * 1000.0) as u64});
    pipe.cmd("HSET")
        .arg(format!("{id}:work"))
        .arg("tid-1")
        .arg(work.to_string());
    pipe.cmd("SET").arg("stat:processed").arg(5000);
    let _: () = pipe.query_async(&mut con).await.unwrap();
}

/// Retries as Sidekiq's job_retry writes them, with a compressed backtrace.
async fn plant_retries(r: &TestRedis, n: u32) {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(
        br#"["app/services/crm_client.rb:41:in `fetch'","app/jobs/sync_job.rb:9:in `perform'"]"#,
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
    let mut con = r.connection().await;
    let mut pipe = redis::pipe();
    for k in 0..n {
        let job = serde_json::json!({
            "class": "SyncJob", "queue": "default", "args": [k], "jid": format!("r{k:023x}"),
            "retry": true, "retry_count": 1, "error_class": "Faraday::TimeoutError",
            "error_message": "timed out after 30s", "failed_at": now_s() - 60.0,
            "error_backtrace": b64,
        });
        pipe.cmd("ZADD")
            .arg("retry")
            .arg(now_s() + 600.0 + f64::from(k))
            .arg(job.to_string());
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();
}

async fn job_spans(apm: &Apm, ms: u64, n: u32) {
    let traces = (0..n)
        .map(|k| {
            let mut t = Trace::new(9000 + u128::from(k) + u128::from(ms) * 100);
            t.job("SyncJob", "default", ms);
            t
        })
        .collect();
    apm.send(traces).await;
}

fn queue_options(r: &TestRedis, apm: &Apm) -> QueueOptions {
    let t = Targets::default();
    let mut o = QueueOptions::new(
        systems(&[("queues", &r.url), ("apm", &apm.url)]),
        "default",
        &t,
    );
    o.max_wait = None;
    o.every = Duration::from_millis(200);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_job_and_a_capacity_shortage_are_told_apart() {
    let t = Targets::default();
    // Slow job: threads free, job spans of 8 s.
    let r = TestRedis::reserve().await;
    let apm = Apm::start().await;
    plant_queue(&r, 40, 120.0, 2, 10).await;
    plant_retries(&r, 6).await;
    job_spans(&apm, 8_000, 5).await;
    let i = investigate_queue(&queue_options(&r, &apm), &t, |_| {}, std::future::pending())
        .await
        .unwrap();
    let m = &i.metrics;
    println!("{}", i.text);
    assert_eq!(
        step(&m.steps, "backlog").status,
        Status::Confirmed,
        "{}",
        i.text
    );
    assert_eq!(
        step(&m.steps, "capacity").status,
        Status::RuledOut,
        "{}",
        i.text
    );
    let slow = step(&m.steps, "slow_job");
    assert_eq!(slow.status, Status::Confirmed, "{}", i.text);
    assert!(slow.found.contains("SyncJob"), "{}", slow.found);
    let errors = step(&m.steps, "errors");
    assert_eq!(errors.status, Status::Confirmed, "{}", i.text);
    assert!(
        errors.found.contains("Faraday::TimeoutError in 6 of 6"),
        "{}",
        errors.found
    );
    assert!(
        errors
            .details
            .iter()
            .any(|d| d.contains("at app/services/crm_client.rb:41:in `fetch'")),
        "{:?}",
        errors.details
    );
    assert_eq!(m.wait, WaitOutcome::Skipped);
    assert_eq!(step(&m.steps, "steady_state").status, Status::NotMeasured);
    let report = i.report().unwrap();
    powertune_test_support::schema::check::<powertune_doctor::investigate::QueueMetrics>(
        "investigate-queue.v1",
        &report.metrics,
    );
    drop(apm);
    r.release().await;

    // Capacity shortage: every thread busy, fast jobs.
    let r = TestRedis::reserve().await;
    let apm = Apm::start().await;
    plant_queue(&r, 1500, 90.0, 10, 10).await;
    job_spans(&apm, 40, 20).await;
    let i = investigate_queue(&queue_options(&r, &apm), &t, |_| {}, std::future::pending())
        .await
        .unwrap();
    let m = &i.metrics;
    let cap = step(&m.steps, "capacity");
    assert_eq!(cap.status, Status::Confirmed, "{}", i.text);
    assert!(
        cap.found.contains("busy 10 of concurrency 10"),
        "{}",
        cap.found
    );
    assert!(cap.action.contains("WORKER_CONCURRENCY"), "{}", cap.action);
    assert_eq!(
        step(&m.steps, "slow_job").status,
        Status::RuledOut,
        "{}",
        i.text
    );
    assert_eq!(
        step(&m.steps, "errors").status,
        Status::RuledOut,
        "{}",
        i.text
    );
    assert_eq!(m.capacity.as_ref().map(|c| c.busy), Some(10));
    drop(apm);
    r.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_ends_by_itself_drained_or_at_max_wait() {
    let t = Targets::default();
    let r = TestRedis::reserve().await;
    let apm = Apm::start().await;
    plant_queue(&r, 30, 120.0, 10, 10).await;
    // Still backed up at the end of a short --max-wait: step 6 fails.
    let mut o = queue_options(&r, &apm);
    o.max_wait = Some(Duration::from_millis(900));
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let started = std::time::Instant::now();
    let i = investigate_queue(
        &o,
        &t,
        |l| lines.lock().unwrap().push(l.to_string()),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(i.metrics.wait, WaitOutcome::TimedOut, "{}", i.text);
    let s = step(&i.metrics.steps, "steady_state");
    assert_eq!(s.status, Status::Confirmed);
    assert!(s.found.contains("still backed up"), "{}", s.found);
    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("queue default: 30 enqueued")),
        "{lines:?}"
    );
    // Drained while watched: steady state, the watch ends before --max-wait.
    let mut con = r.connection().await;
    let drain = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _: () = redis::cmd("DEL")
            .arg("queue:default")
            .query_async(&mut con)
            .await
            .unwrap();
    });
    o.max_wait = Some(Duration::from_secs(30));
    let started = std::time::Instant::now();
    let i = investigate_queue(&o, &t, |_| {}, std::future::pending())
        .await
        .unwrap();
    drain.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(i.metrics.wait, WaitOutcome::Steady, "{}", i.text);
    assert!(step(&i.metrics.steps, "steady_state")
        .found
        .contains("back to steady state"));
    // Stopped by the caller (Ctrl-C in the CLI): interrupted.
    plant_queue(&r, 30, 120.0, 10, 10).await;
    let i = investigate_queue(
        &o,
        &t,
        |_| {},
        tokio::time::sleep(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    assert_eq!(i.metrics.wait, WaitOutcome::Interrupted);
    drop(apm);
    r.release().await;
}
