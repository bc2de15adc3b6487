//! Integration tests: hand-built OTLP fixtures in both semantic-convention
//! generations through the engine and detectors; the receiver over real HTTP and
//! gRPC on loopback port 0 (protobuf, JSON, gzip, malformed bodies, over capacity,
//! forwarding over HTTP and gRPC, slow and dead forward targets); and traces exported
//! by the real OpenTelemetry SDK.

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use powertune_apm::decode::to_spans;
use powertune_apm::server::{self, ServeConfig};
use powertune_apm::summary::{Baseline, DetectionKind, Summary};
use powertune_apm::{client, judge, Engine, EngineConfig};
use powertune_core::{EndpointType, Targets, Verdict};
use prost::Message;
use std::time::Duration;

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Gen {
    Old,
    New,
}

fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn b(k: &str, v: bool) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(v)),
        }),
        ..Default::default()
    }
}

/// Builds one trace's spans; times in ms from the trace start.
struct TraceBuilder {
    trace: u128,
    next: u64,
    spans: Vec<Span>,
    gen: Gen,
}

impl TraceBuilder {
    fn new(trace: u128, gen: Gen) -> Self {
        TraceBuilder {
            trace,
            next: 1,
            spans: vec![],
            gen,
        }
    }

    fn span(
        &mut self,
        parent: u64,
        kind: i32,
        name: &str,
        start: u64,
        end: u64,
        attrs: Vec<KeyValue>,
    ) -> u64 {
        let id = self.next;
        self.next += 1;
        self.spans.push(Span {
            trace_id: self.trace.to_be_bytes().to_vec(),
            span_id: id.to_be_bytes().to_vec(),
            parent_span_id: if parent == 0 {
                vec![]
            } else {
                parent.to_be_bytes().to_vec()
            },
            name: name.into(),
            kind,
            start_time_unix_nano: T0 + start * MS,
            end_time_unix_nano: T0 + end * MS,
            attributes: attrs,
            ..Default::default()
        });
        id
    }

    /// A Rails request: route template from `http.route` (new) or a raw path (old).
    fn request(
        &mut self,
        method: &str,
        route: &str,
        raw_path: &str,
        status: i64,
        start: u64,
        end: u64,
    ) -> u64 {
        let attrs = match self.gen {
            Gen::New => vec![
                s("http.request.method", method),
                s("http.route", route),
                s("url.path", raw_path),
                i("http.response.status_code", status),
            ],
            Gen::Old => vec![
                s("http.method", method),
                s("http.target", raw_path),
                i("http.status_code", status),
            ],
        };
        self.span(0, 2, &format!("{method} {route}"), start, end, attrs)
    }

    fn sql(&mut self, parent: u64, q: &str, start: u64, end: u64) -> u64 {
        let attrs = match self.gen {
            Gen::New => vec![
                s("db.system.name", "postgresql"),
                s("db.query.text", q),
                s("db.operation.name", "SELECT"),
            ],
            Gen::Old => vec![
                s("db.system", "postgresql"),
                s("db.statement", q),
                s("db.operation", "SELECT"),
            ],
        };
        self.span(parent, 3, "SELECT", start, end, attrs)
    }

    fn http_call(&mut self, parent: u64, host: &str, start: u64, end: u64) -> u64 {
        let attrs = match self.gen {
            Gen::New => vec![s("http.request.method", "GET"), s("server.address", host)],
            Gen::Old => vec![s("http.method", "GET"), s("net.peer.name", host)],
        };
        self.span(parent, 3, "GET", start, end, attrs)
    }

    fn request_proto(self) -> ExportTraceServiceRequest {
        request_of(vec![self])
    }
}

fn request_of(traces: Vec<TraceBuilder>) -> ExportTraceServiceRequest {
    let spans: Vec<Span> = traces.into_iter().flat_map(|t| t.spans).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", "powernode-backend")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn analyse(req: &ExportTraceServiceRequest) -> Summary {
    let mut e = Engine::new(EngineConfig::defaults(&Targets::default()));
    let (spans, bad) = to_spans(req);
    assert!(bad.is_empty(), "{bad:?}");
    e.ingest(spans, 0);
    e.flush_all(0);
    e.summary(0, None)
}

fn detections(s: &Summary, kind: DetectionKind) -> Vec<&powertune_apm::summary::Detection> {
    s.detections.iter().filter(|d| d.kind == kind).collect()
}

/// N+1: 6 identical SELECTs (10 ms each) under the request.
fn n_plus_one_trace(id: u128, gen: Gen, n: u64, cached: bool) -> TraceBuilder {
    let mut t = TraceBuilder::new(id, gen);
    let root = t.request("GET", "/api/v1/posts", "/api/v1/posts", 200, 0, 100);
    t.sql(root, "SELECT * FROM posts LIMIT 20", 1, 5);
    for k in 0..n {
        let st = 10 + k * 12;
        let sid = t.sql(
            root,
            &format!("SELECT * FROM users WHERE id = {}", k + 1),
            st,
            st + 10,
        );
        if cached {
            let sp = t
                .spans
                .iter_mut()
                .find(|sp| sp.span_id == sid.to_be_bytes().to_vec())
                .unwrap();
            sp.name = "CACHE User Load".into();
            sp.attributes.push(b("db.cached", true));
        }
    }
    t
}

#[test]
fn n_plus_one_fires_in_both_generations_and_stays_quiet_without_it() {
    for gen in [Gen::Old, Gen::New] {
        let s = analyse(&n_plus_one_trace(11, gen, 6, false).request_proto());
        let hits = detections(&s, DetectionKind::NPlusOne);
        assert_eq!(hits.len(), 1, "{gen:?}: {:?}", s.detections);
        assert_eq!(hits[0].route, "GET /api/v1/posts");
        assert_eq!(hits[0].subject, "SELECT * FROM users WHERE id = ?");
        assert_eq!(hits[0].spans, 6);
        assert_eq!(hits[0].example_trace, format!("{:032x}", 11));
        let f = judge::judge(&s, &Targets::default(), None);
        assert!(f
            .iter()
            .any(|x| x.check == "n_plus_one" && x.verdict == Verdict::Fail));
        // Four repeats: below the count threshold.
        let s = analyse(&n_plus_one_trace(12, gen, 4, false).request_proto());
        assert!(
            detections(&s, DetectionKind::NPlusOne).is_empty(),
            "{gen:?}"
        );
        // Query-cache hits are not queries.
        let s = analyse(&n_plus_one_trace(13, gen, 8, true).request_proto());
        assert!(
            detections(&s, DetectionKind::NPlusOne).is_empty(),
            "{gen:?}"
        );
    }
    // Repeats adding up to less than the time threshold (5 × 2 ms) stay quiet.
    let mut t = TraceBuilder::new(14, Gen::New);
    let root = t.request("GET", "/x", "/x", 200, 0, 50);
    for k in 0..5 {
        t.sql(root, "SELECT 1 FROM t WHERE id = 1", 1 + k * 3, 3 + k * 3);
    }
    assert!(detections(&analyse(&t.request_proto()), DetectionKind::NPlusOne).is_empty());
}

#[test]
fn slow_queries_slow_requests_and_consecutive_queries() {
    for gen in [Gen::Old, Gen::New] {
        let mut t = TraceBuilder::new(21, gen);
        let root = t.request(
            "GET",
            "/api/v1/reports/:id",
            "/api/v1/reports/77",
            200,
            0,
            1500,
        );
        t.sql(
            root,
            "SELECT * FROM events WHERE account_id = 5 ORDER BY created_at",
            10,
            160,
        );
        t.sql(root, "SELECT count(*) FROM events WHERE x = 'a'", 200, 900);
        t.sql(root, "SELECT * FROM small WHERE id = 1", 950, 960);
        let s = analyse(&t.request_proto());
        let slow = detections(&s, DetectionKind::SlowQuery);
        assert_eq!(slow.len(), 2, "{gen:?} {slow:?}");
        assert!(
            slow.iter().all(|d| d.route == "GET /api/v1/reports/:id"),
            "{gen:?}: ids collapsed"
        );
        let f = judge::judge(&s, &Targets::default(), None);
        let verdicts: Vec<Verdict> = f
            .iter()
            .filter(|x| x.check == "slow_query")
            .map(|x| x.verdict)
            .collect();
        assert!(
            verdicts.contains(&Verdict::Warn) && verdicts.contains(&Verdict::Fail),
            "{verdicts:?}"
        );
        assert_eq!(detections(&s, DetectionKind::SlowRequest).len(), 1);
        assert_eq!(s.routes[0].endpoint_type, EndpointType::Analytics);
    }
    // Quiet: fast queries, fast request.
    let mut t = TraceBuilder::new(22, Gen::New);
    let root = t.request("GET", "/api/v1/users/:id", "/api/v1/users/1", 200, 0, 80);
    t.sql(root, "SELECT * FROM users WHERE id = 1", 1, 30);
    let s = analyse(&t.request_proto());
    assert!(s.detections.is_empty(), "{:?}", s.detections);

    // Three sequential SELECTs, the later two independent (no WHERE): could run together.
    let mut t = TraceBuilder::new(23, Gen::New);
    let root = t.request(
        "GET",
        "/api/v1/ai/monitoring/dashboard",
        "/api/v1/ai/monitoring/dashboard",
        200,
        0,
        400,
    );
    t.sql(root, "SELECT * FROM accounts WHERE id = 1", 0, 60);
    t.sql(root, "SELECT count(*) FROM missions", 60, 180);
    t.sql(root, "SELECT count(*) FROM agents", 180, 300);
    let s = analyse(&t.request_proto());
    let c = detections(&s, DetectionKind::ConsecutiveQueries);
    assert_eq!(c.len(), 1, "{:?}", s.detections);
    // 300 ms in a row; the two independent ones could overlap the first: 300 - 120.
    assert!((c[0].saved_ms - 180.0).abs() < 1.0, "{}", c[0].saved_ms);
    // The same queries already running in parallel: quiet.
    let mut t = TraceBuilder::new(24, Gen::New);
    let root = t.request(
        "GET",
        "/api/v1/ai/monitoring/dashboard",
        "/api/v1/ai/monitoring/dashboard",
        200,
        0,
        200,
    );
    t.sql(root, "SELECT * FROM accounts WHERE id = 1", 0, 60);
    t.sql(root, "SELECT count(*) FROM missions", 60, 180);
    t.sql(root, "SELECT count(*) FROM agents", 61, 181);
    assert!(detections(
        &analyse(&t.request_proto()),
        DetectionKind::ConsecutiveQueries
    )
    .is_empty());
}

#[test]
fn breakdown_adds_up_to_the_trace_duration() {
    for gen in [Gen::Old, Gen::New] {
        let mut t = TraceBuilder::new(31, gen);
        let root = t.request(
            "POST",
            "/api/v1/ai/agents/:id/execute",
            "/api/v1/ai/agents/9/execute",
            200,
            0,
            1000,
        );
        let inner = t.span(root, 1, "Ai::AgentRunner#call", 50, 950, vec![]);
        t.sql(inner, "SELECT * FROM agents WHERE id = 9", 60, 160); // db 100
        t.http_call(inner, "api.openai.com", 200, 800); // provider 600
        t.http_call(inner, "vault.internal", 700, 850); // overlaps: 50 more http
        t.sql(inner, "UPDATE agents SET x = 1 WHERE id = 9", 780, 820); // db inside http: db wins (40)
        let s = analyse(&t.request_proto());
        let r = &s.routes[0];
        assert_eq!(r.route, "POST /api/v1/ai/agents/:id/execute");
        assert_eq!(r.endpoint_type, EndpointType::AiLlm);
        let bd = r.breakdown;
        assert!((bd.total_ms() - 1000.0).abs() < 1e-6, "{bd:?}");
        assert!((bd.db_ms - 140.0).abs() < 1e-6, "{bd:?}");
        assert!((bd.http_ms - 610.0).abs() < 1e-6, "{bd:?}");
        assert!((bd.app_ms - 250.0).abs() < 1e-6, "{bd:?}");
        assert_eq!(s.providers.len(), 1, "{:?}", s.providers);
        assert_eq!(s.providers[0].key, "openai/(unknown)");
        // A 1 s LLM-call route is no "slow request" (its type allows 30 s).
        assert!(detections(&s, DetectionKind::SlowRequest).is_empty());
    }
}

#[test]
fn jobs_missions_agents_and_providers() {
    let mut traces = Vec::new();
    // 100 jobs: 6 s each, 2 failing, one of 70 s.
    for k in 0..100u128 {
        let mut t = TraceBuilder::new(1000 + k, Gen::New);
        let dur = if k == 0 { 70_000 } else { 6_000 };
        let id = t.span(
            0,
            5,
            "default process",
            0,
            dur,
            vec![
                s("messaging.system", "sidekiq"),
                s("messaging.sidekiq.job_class", "Ai::MissionJob"),
                s("messaging.destination", "default"),
            ],
        );
        if k < 2 {
            t.spans.last_mut().unwrap().status = Some(Status {
                code: 2,
                message: "boom".into(),
            });
        }
        if k == 0 {
            let m = t.span(id, 1, "ai.mission.execute", 10, 65_000, vec![]);
            t.span(m, 1, "ai.agent.execution", 20, 35_020, vec![]);
            t.span(
                m,
                3,
                "chat gpt-4o",
                100,
                3_100,
                vec![
                    s("gen_ai.provider.name", "openai"),
                    s("gen_ai.request.model", "gpt-4o"),
                ],
            );
        }
        traces.push(t);
    }
    // A fast mission and agent: quiet.
    let mut t = TraceBuilder::new(2000, Gen::Old);
    let m = t.span(0, 1, "ai.mission.execute", 0, 5_000, vec![]);
    t.span(m, 1, "ai.agent.execution", 0, 4_000, vec![]);
    t.span(
        m,
        3,
        "chat gpt-4o",
        0,
        1_000,
        vec![
            s("gen_ai.system", "openai"),
            s("gen_ai.request.model", "gpt-4o"),
        ],
    );
    traces.push(t);
    let s = analyse(&request_of(traces));
    assert_eq!(s.jobs.len(), 1);
    let j = &s.jobs[0];
    assert_eq!(
        (j.class.as_str(), j.latency.count, j.latency.errors, j.slow),
        ("Ai::MissionJob", 100, 2, 1)
    );
    assert_eq!(detections(&s, DetectionKind::SlowMission).len(), 1);
    assert_eq!(detections(&s, DetectionKind::SlowAgent).len(), 1);
    assert_eq!(
        detections(&s, DetectionKind::SlowMission)[0].route,
        "job Ai::MissionJob"
    );
    let f = judge::judge(&s, &Targets::default(), None);
    let get = |c: &str| f.iter().find(|x| x.check == c).unwrap().verdict;
    assert_eq!(get("job_avg_time"), Verdict::Fail);
    assert_eq!(get("job_failure_rate"), Verdict::Fail);
    assert_eq!(get("slow_job"), Verdict::Warn);
    // Provider against a saved baseline: P95 3 s vs 1 s baseline → FAIL; vs 2 s → PASS.
    assert_eq!(s.providers[0].key, "openai/gpt-4o");
    let base = |ms: f64| Baseline {
        providers: [("openai/gpt-4o".to_string(), ms)].into(),
    };
    let f = judge::judge(&s, &Targets::default(), Some(&base(1000.0)));
    assert_eq!(
        f.iter()
            .find(|x| x.check == "provider_p95")
            .unwrap()
            .verdict,
        Verdict::Fail
    );
    let f = judge::judge(&s, &Targets::default(), Some(&base(2000.0)));
    assert_eq!(
        f.iter()
            .find(|x| x.check == "provider_p95")
            .unwrap()
            .verdict,
        Verdict::Pass
    );
}

#[test]
fn window_bounds_hold_and_buckets_roll() {
    let mut cfg = EngineConfig::defaults(&Targets::default());
    cfg.max_open_traces = 10;
    cfg.max_spans = 50;
    let mut e = Engine::new(cfg.clone());
    // 100 traces without roots: never more than 10 open.
    for k in 0..100u128 {
        let mut t = TraceBuilder::new(5000 + k, Gen::New);
        t.span(
            77,
            3,
            "SELECT",
            0,
            1,
            vec![s("db.system.name", "postgresql")],
        );
        let (spans, _) = to_spans(&t.request_proto());
        e.ingest(spans, 0);
        let st = e.summary(0, None).ingest;
        assert!(st.open_traces <= 10 && st.open_spans <= 50, "{st:?}");
    }
    // Requests in minute 0 leave a 1-minute window by minute 2, stay in a 15-minute one.
    let mut e = Engine::new(cfg);
    let (spans, _) = to_spans(&n_plus_one_trace(9, Gen::New, 1, false).request_proto());
    e.ingest(spans, 0);
    e.tick(5_000_000_000);
    let now = 120_000_000_000;
    assert_eq!(e.summary(now, Some(900_000_000_000)).routes.len(), 1);
    assert!(e.summary(now, Some(60_000_000_000)).routes.is_empty());
}

// ---- the receiver over real sockets ----

async fn start(cfg: ServeConfig) -> server::Running {
    server::start(
        cfg,
        Engine::new(EngineConfig::defaults(&Targets::default())),
    )
    .await
    .unwrap()
}

fn local() -> ServeConfig {
    let mut c = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    c.grpc = Some("127.0.0.1:0".parse().unwrap());
    c
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

async fn post(addr: std::net::SocketAddr, ct: &str, gz: bool, body: Vec<u8>) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", ct);
    if gz {
        r = r.header("content-encoding", "gzip");
    }
    r.body(body).send().await.unwrap()
}

async fn summary_of(addr: std::net::SocketAddr) -> Summary {
    client::fetch_summary(&client::base_url(&format!("http://{addr}")).unwrap(), None)
        .await
        .unwrap()
}

#[tokio::test]
async fn http_receiver_takes_protobuf_json_and_gzip_and_survives_garbage() {
    let run = start(local()).await;
    let addr = run.http_addr;
    let pb = n_plus_one_trace(101, Gen::New, 6, false)
        .request_proto()
        .encode_to_vec();
    let r = post(addr, "application/x-protobuf", false, pb).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(resp.partial_success.is_none());
    let json =
        serde_json::to_vec(&n_plus_one_trace(102, Gen::Old, 6, false).request_proto()).unwrap();
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(
        text.contains("\"traceId\":\"00000000000000000000000000000066\""),
        "hex ids: {text:.300}"
    );
    assert_eq!(
        post(addr, "application/json", false, json.clone())
            .await
            .status(),
        200
    );
    let gz_pb = gzip(
        &n_plus_one_trace(103, Gen::New, 6, false)
            .request_proto()
            .encode_to_vec(),
    );
    assert_eq!(
        post(addr, "application/x-protobuf", true, gz_pb)
            .await
            .status(),
        200
    );
    let gz_json = gzip(
        &serde_json::to_vec(&n_plus_one_trace(104, Gen::Old, 6, false).request_proto()).unwrap(),
    );
    assert_eq!(
        post(addr, "application/json", true, gz_json).await.status(),
        200
    );
    let before = summary_of(addr).await;
    assert_eq!(before.routes[0].latency.count, 4);
    assert_eq!(
        detections(&before, DetectionKind::NPlusOne)[0].occurrences,
        4
    );
    // Garbage: 400 in the request's own format, nothing lost.
    let r = post(
        addr,
        "application/x-protobuf",
        false,
        b"\xff\xff\xff\xff garbage".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        addr,
        "application/json",
        false,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("OTLP/JSON"),
        "{body}"
    );
    assert_eq!(
        post(addr, "application/json", true, b"not gzip".to_vec())
            .await
            .status(),
        400
    );
    assert_eq!(
        post(addr, "text/plain", false, b"x".to_vec())
            .await
            .status(),
        415
    );
    let after = summary_of(addr).await;
    assert_eq!(after.routes, before.routes);
    assert_eq!(after.ingest.bodies_malformed, 3);
    // Partial success: one span with a bad id is rejected, the rest kept.
    let mut req = n_plus_one_trace(105, Gen::New, 6, false).request_proto();
    req.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
    let r = post(addr, "application/x-protobuf", false, req.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(
        ps.error_message.contains("span id of 3 bytes"),
        "{}",
        ps.error_message
    );
    let s = summary_of(addr).await;
    assert_eq!(s.routes[0].latency.count, 5);
    assert_eq!(s.ingest.spans_rejected, 1);
    // The endpoint view: slowest traces as span trees.
    let d = client::fetch_endpoint(
        &client::base_url(&format!("http://{addr}")).unwrap(),
        "GET /api/v1/posts",
        Some(Duration::from_secs(900)),
    )
    .await
    .unwrap();
    assert!(!d.slowest.is_empty());
    assert_eq!(d.slowest[0].spans[0].depth, 0);
    assert!(d.slowest[0].spans[1..].iter().all(|n| n.depth == 1));
    let text = powertune_apm::render::endpoint(&d);
    assert!(text.contains("n_plus_one"), "{text}");
    let e = client::fetch_endpoint(
        &client::base_url(&format!("http://{addr}")).unwrap(),
        "GET /nope",
        None,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    run.stop();
}

#[tokio::test]
async fn over_capacity_answers_503_with_retry_after() {
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.queue_batches = 1;
    // The engine task is not started, so the queue stays full after one batch.
    let (router, _shared, _rx) = server::router_parts(&cfg).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(l, router).await });
    let body = n_plus_one_trace(201, Gen::New, 1, false)
        .request_proto()
        .encode_to_vec();
    assert_eq!(
        post(addr, "application/x-protobuf", false, body.clone())
            .await
            .status(),
        200
    );
    let r = post(addr, "application/x-protobuf", false, body).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    task.abort();
}

/// One request span on `route`.
fn route_trace(id: u128, route: &str) -> ExportTraceServiceRequest {
    let mut t = TraceBuilder::new(id, Gen::New);
    t.request("GET", route, route, 200, 0, 10);
    t.request_proto()
}

async fn count_of(addr: std::net::SocketAddr, route: &str) -> u64 {
    summary_of(addr)
        .await
        .routes
        .iter()
        .find(|r| r.route == route)
        .map_or(0, |r| r.latency.count)
}

async fn grpc_client(
    addr: std::net::SocketAddr,
) -> opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
    tonic::transport::Channel,
> {
    opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(
        format!("http://{addr}"),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn forwarding_over_http_and_grpc_whichever_way_spans_came_in() {
    use powertune_apm::forward::{Protocol, Target};
    let downstream = start(local()).await;
    for (k, protocol) in [Protocol::HttpProtobuf, Protocol::Grpc]
        .into_iter()
        .enumerate()
    {
        let to = match protocol {
            Protocol::HttpProtobuf => format!("http://{}", downstream.http_addr),
            // The collector's `otlp` exporter style: host:port.
            Protocol::Grpc => downstream.grpc_addr.unwrap().to_string(),
        };
        let mut cfg = local();
        cfg.forward = Some(Target::parse(&to, protocol).unwrap());
        let front = start(cfg).await;
        let route = format!("/front/{}", protocol.name().replace('/', "-"));
        let key = format!("GET {route}");
        let base = 600 + 10 * k as u128;
        // In over gRPC, OTLP/HTTP protobuf (gzip) and OTLP/HTTP JSON.
        let resp = grpc_client(front.grpc_addr.unwrap())
            .await
            .export(route_trace(base, &route))
            .await
            .unwrap();
        assert!(resp.into_inner().partial_success.is_none());
        let pb = gzip(&route_trace(base + 1, &route).encode_to_vec());
        let r = post(front.http_addr, "application/x-protobuf", true, pb).await;
        assert_eq!(r.status(), 200);
        let json = serde_json::to_vec(&route_trace(base + 2, &route)).unwrap();
        let r = post(front.http_addr, "application/json", false, json).await;
        assert_eq!(r.status(), 200);
        assert_eq!(count_of(front.http_addr, &key).await, 3);
        let mut got = 0;
        for _ in 0..200 {
            got = count_of(downstream.http_addr, &key).await;
            if got == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(got, 3, "{protocol:?}: all three batches reached the target");
        let st = summary_of(front.http_addr).await.ingest;
        assert_eq!(
            (st.forwarded, st.forward_failed, st.forward_dropped),
            (3, 0, 0),
            "{protocol:?}"
        );
        front.stop();
    }
    assert!(Target::parse("ftp://x", Protocol::HttpProtobuf).is_err());
    assert!(
        Target::parse("collector", Protocol::Grpc).is_err(),
        "no port"
    );
    assert!(Target::parse("https://collector:4317", Protocol::Grpc).is_err());
    let e = Target::parse("http://user:hunter2@collector:4318", Protocol::HttpProtobuf)
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2") && e.contains("credentials"), "{e}");
    assert_eq!(
        Target::parse("http://c:4318", Protocol::HttpProtobuf)
            .unwrap()
            .url
            .path(),
        "/v1/traces"
    );
    assert!("http/json".parse::<Protocol>().is_err());
}

#[tokio::test]
async fn a_slow_or_dead_forward_target_never_blocks_or_loses_ingestion() {
    use powertune_apm::forward::{Protocol, Target, IN_FLIGHT};
    // A black hole: accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = hole.accept().await {
            held.push(c);
        }
    });
    let mut cfg = local();
    cfg.forward =
        Some(Target::parse(&format!("http://{hole_addr}"), Protocol::HttpProtobuf).unwrap());
    cfg.forward_queue = 2;
    let front = start(cfg).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for k in 0..30u128 {
        let r = client
            .post(format!("http://{}/v1/traces", front.http_addr))
            .header("content-type", "application/x-protobuf")
            .body(route_trace(700 + k, "/slow-target").encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "batch {k} accepted at once");
    }
    let s = summary_of(front.http_addr).await;
    assert_eq!(s.routes[0].latency.count, 30, "every batch analysed");
    let st = s.ingest;
    assert_eq!(st.forwarded, 0);
    assert!(
        st.forward_dropped >= (30 - 2 - IN_FLIGHT) as u64,
        "the bounded queue dropped the rest: {st:?}"
    );
    assert!(st.forward_queued <= (2 + IN_FLIGHT) as u64, "{st:?}");
    assert_eq!(st.forward_dropped + st.forward_queued, 30, "{st:?}");
    front.stop();
    holder.abort();

    // A target that is down (connection refused), over gRPC.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let mut cfg = local();
    cfg.forward = Some(Target::parse(&gone_addr.to_string(), Protocol::Grpc).unwrap());
    let front = start(cfg).await;
    let mut c = grpc_client(front.grpc_addr.unwrap()).await;
    for k in 0..5u128 {
        c.export(route_trace(800 + k, "/dead-target"))
            .await
            .unwrap();
    }
    let mut st = summary_of(front.http_addr).await.ingest;
    for _ in 0..200 {
        if st.forward_failed == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        st = summary_of(front.http_addr).await.ingest;
    }
    assert_eq!((st.forward_failed, st.forwarded), (5, 0), "{st:?}");
    assert_eq!(count_of(front.http_addr, "GET /dead-target").await, 5);
    front.stop();
}

/// Spans from the real OpenTelemetry SDK (opentelemetry-otlp's HTTP exporter,
/// protobuf and JSON, gzip) exported to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_exporter_reaches_the_receiver() {
    let run = start(local()).await;
    let endpoint = format!("http://{}/v1/traces", run.http_addr);
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || export_with_sdk(&endpoint))
            .join()
            .unwrap();
    })
    .await
    .unwrap();
    let s = summary_of(run.http_addr).await;
    let r = s
        .routes
        .iter()
        .find(|r| r.route == "GET /api/v1/ai/monitoring/dashboard")
        .expect("route from the SDK");
    assert_eq!(r.latency.count, 3, "{:?}", s.routes);
    assert_eq!(r.endpoint_type, EndpointType::Analytics);
    let np = detections(&s, DetectionKind::NPlusOne);
    assert_eq!(np.len(), 1, "{:?}", s.detections);
    assert_eq!(np[0].occurrences, 3);
    assert_eq!(np[0].subject, "SELECT * FROM agents WHERE id = ?");
    // The SDK's span links tie each job to the request that enqueued it.
    assert_eq!(s.ingest.jobs_linked, 3, "{:?}", s.ingest);
    assert_eq!(s.linked_jobs.len(), 1, "{:?}", s.linked_jobs);
    assert_eq!(
        (
            s.linked_jobs[0].route.as_str(),
            s.linked_jobs[0].class.as_str(),
            s.linked_jobs[0].latency.count
        ),
        (
            "GET /api/v1/ai/monitoring/dashboard",
            "DashboardRefreshJob",
            3
        )
    );
    let total = r.breakdown.total_ms();
    assert!(
        total > 0.0 && (r.breakdown.db_ms - 3.0 * 6.0 * 10.0).abs() < 0.01,
        "{:?}",
        r.breakdown
    );
    run.stop();
}

fn export_with_sdk(endpoint: &str) {
    use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
    use opentelemetry::KeyValue as Kv;
    use opentelemetry_otlp::{Compression, Protocol, WithExportConfig, WithHttpConfig};
    use std::time::SystemTime;
    for (protocol, gz) in [
        (Protocol::HttpBinary, false),
        (Protocol::HttpJson, false),
        (Protocol::HttpBinary, true),
    ] {
        let mut b = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_protocol(protocol)
            .with_timeout(Duration::from_secs(10));
        if gz {
            b = b.with_compression(Compression::Gzip);
        }
        let exporter = b.build().unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let tracer = provider.tracer("powertune-test");
        let t0 = SystemTime::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut root = tracer
            .span_builder("GET /api/v1/ai/monitoring/dashboard")
            .with_kind(SpanKind::Server)
            .with_start_time(at(0))
            .with_attributes(vec![
                Kv::new("http.request.method", "GET"),
                Kv::new("http.route", "/api/v1/ai/monitoring/dashboard"),
                Kv::new("http.response.status_code", 200),
            ])
            .start(&tracer);
        root.set_attribute(Kv::new("url.path", "/api/v1/ai/monitoring/dashboard"));
        let cx = opentelemetry::Context::new().with_span(root);
        for k in 0..6u64 {
            let mut q = tracer
                .span_builder("SELECT agents")
                .with_kind(SpanKind::Client)
                .with_start_time(at(10 + k * 12))
                .with_attributes(vec![
                    Kv::new("db.system.name", "postgresql"),
                    Kv::new(
                        "db.query.text",
                        format!("SELECT * FROM agents WHERE id = {k}"),
                    ),
                ])
                .start_with_context(&tracer, &cx);
            q.end_with_timestamp(at(20 + k * 12));
        }
        cx.span().end_with_timestamp(at(200));
        // The job the request enqueued: its own trace, linked to the request's span
        // (ruby-contrib Sidekiq's default propagation).
        let link = opentelemetry::trace::Link::with_context(cx.span().span_context().clone());
        let mut job = tracer
            .span_builder("default process")
            .with_kind(SpanKind::Consumer)
            .with_start_time(at(300))
            .with_links(vec![link])
            .with_attributes(vec![
                Kv::new("messaging.system", "sidekiq"),
                Kv::new("messaging.sidekiq.job_class", "DashboardRefreshJob"),
            ])
            .start_with_context(&tracer, &opentelemetry::Context::new());
        job.end_with_timestamp(at(900));
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    }
}

#[test]
fn traces_wait_for_late_spans_then_get_analysed() {
    let mut cfg = EngineConfig::defaults(&Targets::default());
    cfg.linger_ns = 2_000_000_000;
    cfg.max_trace_age_ns = 30_000_000_000;
    let mut e = Engine::new(cfg);
    let t = n_plus_one_trace(401, Gen::New, 6, false);
    let (mut spans, _) = to_spans(&t.request_proto());
    // Children first, root later (exporters send spans as they end).
    let root = spans.remove(0);
    e.ingest(spans, 0);
    e.tick(10_000_000_000);
    assert_eq!(
        e.summary(10_000_000_000, None).ingest.open_traces,
        1,
        "no root yet: still open"
    );
    e.ingest(vec![root], 10_000_000_000);
    e.tick(11_000_000_000);
    assert_eq!(
        e.summary(11_000_000_000, None).ingest.open_traces,
        1,
        "lingering for late spans"
    );
    e.tick(12_000_000_000);
    let s = e.summary(12_000_000_000, None);
    assert_eq!((s.ingest.open_traces, s.ingest.traces_analyzed), (0, 1));
    assert_eq!(detections(&s, DetectionKind::NPlusOne).len(), 1);
    // A trace whose root never comes is analysed after max_trace_age.
    let (mut spans, _) = to_spans(&n_plus_one_trace(402, Gen::New, 6, false).request_proto());
    spans.remove(0);
    e.ingest(spans, 20_000_000_000);
    e.tick(49_000_000_000);
    assert_eq!(e.summary(49_000_000_000, None).ingest.open_traces, 1);
    e.tick(50_000_000_000);
    let s = e.summary(50_000_000_000, None);
    assert_eq!((s.ingest.open_traces, s.ingest.traces_without_root), (0, 1));
}

#[test]
fn offline_files_pretty_lines_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let one =
        serde_json::to_string_pretty(&n_plus_one_trace(501, Gen::Old, 6, false).request_proto())
            .unwrap();
    let lines = format!(
        "{}\n\n{}\n",
        serde_json::to_string(&n_plus_one_trace(502, Gen::New, 6, false).request_proto()).unwrap(),
        serde_json::to_string(&n_plus_one_trace(503, Gen::Old, 6, false).request_proto()).unwrap()
    );
    let cases = [
        ("one.json", one.into_bytes(), 1),
        ("lines.jsonl", lines.clone().into_bytes(), 2),
        ("lines.jsonl.gz", gzip(lines.as_bytes()), 2),
    ];
    for (name, bytes, count) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let mut e = Engine::new(EngineConfig::defaults(&Targets::default()));
        let s = powertune_apm::offline::analyze_file(&p, &mut e).unwrap();
        assert_eq!(s.routes[0].latency.count, count, "{name}");
        assert_eq!(
            detections(&s, DetectionKind::NPlusOne)[0].occurrences,
            count,
            "{name}"
        );
    }
    let p = dir.path().join("bad.jsonl");
    std::fs::write(
        &p,
        format!(
            "{}\n{{\"resourceSpans\": 5}}\n",
            lines.lines().next().unwrap()
        ),
    )
    .unwrap();
    let mut e = Engine::new(EngineConfig::defaults(&Targets::default()));
    let err = powertune_apm::offline::analyze_file(&p, &mut e)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.jsonl line 2"), "{err}");
}

/// 100 login requests, `failing` of them answering 500 (or with span status ERROR
/// when `status_error`), the rest 200 or 404 (a client error is no server error).
fn logins(gen: Gen, first: u128, failing: u128, status_error: bool) -> Vec<TraceBuilder> {
    (0..100u128)
        .map(|k| {
            let mut t = TraceBuilder::new(first + k, gen);
            let code = if k < failing && !status_error {
                500
            } else if k % 10 == 9 {
                404
            } else {
                200
            };
            t.request(
                "POST",
                "/api/v1/auth/login",
                "/api/v1/auth/login",
                code,
                0,
                20,
            );
            if k < failing && status_error {
                t.spans[0].status = Some(Status {
                    code: 2,
                    message: "PG::ConnectionBad".into(),
                });
            }
            t
        })
        .collect()
}

#[test]
fn error_rate_per_route_and_endpoint_type_fires_with_example_traces_and_stays_quiet() {
    let t = Targets::default();
    for gen in [Gen::Old, Gen::New] {
        for status_error in [false, true] {
            // 3% failing: FAIL for the route and for Authentication, naming failing traces.
            let s = analyse(&request_of(logins(gen, 7000, 3, status_error)));
            let r = &s.routes[0];
            assert_eq!((r.latency.count, r.latency.errors), (100, 3), "{gen:?}");
            let failing: Vec<String> = (7000..7003u128).map(|k| format!("{k:032x}")).collect();
            assert_eq!(r.latency.error_traces.len(), 3);
            assert!(r.latency.error_traces.iter().all(|x| failing.contains(x)));
            let f = judge::judge(&s, &t, None);
            for (check, subject) in [
                ("route_error_rate", "POST /api/v1/auth/login"),
                ("api_error_rate", "Authentication"),
            ] {
                let x = f
                    .iter()
                    .find(|x| x.check == check)
                    .unwrap_or_else(|| panic!("{check} missing: {f:?}"));
                assert_eq!(x.verdict, Verdict::Fail, "{check} {gen:?}");
                assert_eq!(x.subject, subject);
                assert_eq!(x.observed, "3.00%");
                assert!(x.evidence.contains("3 of 100"), "{}", x.evidence);
                assert!(x.evidence.contains(&failing[2]), "{}", x.evidence);
            }
            let mut e = Engine::new(EngineConfig::defaults(&t));
            let (spans, _) = to_spans(&request_of(logins(gen, 7000, 3, status_error)));
            e.ingest(spans, 0);
            e.flush_all(0);
            let text = powertune_apm::render::endpoint(
                &e.endpoint("POST /api/v1/auth/login", 0, None).unwrap(),
            );
            let line = text
                .lines()
                .find(|l| l.starts_with("failing traces (latest): "))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(failing.iter().all(|f| line.contains(f.as_str())), "{line}");
        }
        // No server errors (10 answers are 404): the type passes, no route finding.
        let s = analyse(&request_of(logins(gen, 8000, 0, false)));
        assert_eq!(s.routes[0].latency.errors, 0);
        let f = judge::judge(&s, &t, None);
        assert!(!f.iter().any(|x| x.check == "route_error_rate"), "{f:?}");
        let x = f.iter().find(|x| x.check == "api_error_rate").unwrap();
        assert_eq!(
            (x.verdict, x.observed.text().as_str()),
            (Verdict::Pass, "0.00%")
        );
    }
    // Below the threshold (1 failing of 200): the route's finding passes.
    let mut traces = logins(Gen::New, 9000, 1, false);
    traces.extend(logins(Gen::Old, 9100, 0, false));
    let s = analyse(&request_of(traces));
    let f = judge::judge(&s, &t, None);
    for check in ["route_error_rate", "api_error_rate"] {
        let x = f.iter().find(|x| x.check == check).unwrap();
        assert_eq!(
            (x.verdict, x.observed.text().as_str()),
            (Verdict::Pass, "0.50%")
        );
    }
}

/// A request that enqueues a Sidekiq job (a PRODUCER span); returns the builder and
/// the enqueue span's id.
fn enqueuing_request(id: u128) -> (TraceBuilder, u64) {
    let mut t = TraceBuilder::new(id, Gen::New);
    let root = t.request(
        "POST",
        "/api/v1/ai/missions",
        "/api/v1/ai/missions",
        201,
        0,
        40,
    );
    t.sql(root, "INSERT INTO missions (name) VALUES ('x')", 2, 8);
    let p = t.span(
        root,
        4,
        "default publish",
        10,
        12,
        vec![
            s("messaging.system", "sidekiq"),
            s("messaging.sidekiq.job_class", "Ai::MissionJob"),
        ],
    );
    (t, p)
}

/// The job's own trace: a root CONSUMER span linked to (`trace`, `span`).
fn linked_job(id: u128, trace: u128, span: u64, failed: bool) -> TraceBuilder {
    let mut t = TraceBuilder::new(id, Gen::New);
    let j = t.span(
        0,
        5,
        "default process",
        1000,
        7000,
        vec![
            s("messaging.system", "sidekiq"),
            s("messaging.sidekiq.job_class", "Ai::MissionJob"),
            s("messaging.destination.name", "default"),
        ],
    );
    t.sql(j, "SELECT * FROM missions WHERE id = 1", 1001, 1020);
    let js = &mut t.spans[0];
    js.links = vec![opentelemetry_proto::tonic::trace::v1::span::Link {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: span.to_be_bytes().to_vec(),
        ..Default::default()
    }];
    if failed {
        js.status = Some(Status {
            code: 2,
            message: "Timeout".into(),
        });
    }
    t
}

#[test]
fn span_links_tie_jobs_to_the_enqueuing_request() {
    let route = "POST /api/v1/ai/missions";
    let (req, producer) = enqueuing_request(900);
    // Jobs first in the batch: the linked request is analysed before them all the same.
    let traces = vec![
        linked_job(901, 900, producer, true),
        // A link to the request's server span (not an enqueue span): tied by its trace.
        linked_job(902, 900, 1, false),
        // A link to a trace never seen: not tied.
        linked_job(903, 77_777, 5, false),
        req,
    ];
    let req = request_of(traces);
    let mut e = Engine::new(EngineConfig::defaults(&Targets::default()));
    let (spans, bad) = to_spans(&req);
    assert!(bad.is_empty());
    e.ingest(spans, 0);
    e.flush_all(0);
    let s = e.summary(0, None);
    assert_eq!(s.ingest.jobs_linked, 2, "{:?}", s.ingest);
    assert_eq!(s.linked_jobs.len(), 1, "{:?}", s.linked_jobs);
    let l = &s.linked_jobs[0];
    assert_eq!(
        (l.route.as_str(), l.class.as_str()),
        (route, "Ai::MissionJob")
    );
    assert_eq!((l.latency.count, l.latency.errors), (2, 1));
    assert_eq!(s.jobs[0].latency.count, 3, "all three jobs counted as jobs");
    // The job findings name the enqueuing route.
    let f = judge::judge(&s, &Targets::default(), None);
    let jf = f.iter().find(|x| x.check == "job_failure_rate").unwrap();
    assert!(
        jf.evidence
            .contains(&format!("enqueued by {route} (2 jobs, 1 failed")),
        "{}",
        jf.evidence
    );
    // `apm endpoint`: the linked job traces under the request's example trace.
    let d = e.endpoint(route, 0, None).unwrap();
    assert_eq!(d.linked_jobs.len(), 1);
    let ex = &d.slowest[0];
    assert_eq!(ex.trace_id, format!("{:032x}", 900));
    assert_eq!(ex.linked.len(), 2, "{:?}", ex.linked);
    let under_producer = ex
        .linked
        .iter()
        .find(|x| x.trace_id == format!("{:032x}", 901))
        .unwrap();
    assert_eq!(under_producer.from_span_id, format!("{producer:016x}"));
    assert!(under_producer.error);
    assert_eq!(under_producer.spans.len(), 2);
    assert_eq!(under_producer.spans[0].category, "job");
    let text = powertune_apm::render::endpoint(&d);
    assert!(
        text.contains(&format!("↳ linked job trace {:032x}", 901)),
        "{text}"
    );
    assert!(text.contains("jobs enqueued by this route"), "{text}");

    // Bounded: at most 3 linked traces per example; the link index forgets the
    // oldest requests beyond max_open_traces entries.
    let mut cfg = EngineConfig::defaults(&Targets::default());
    cfg.max_open_traces = 4;
    let mut e = Engine::new(cfg);
    let (req, producer) = enqueuing_request(910);
    let (spans, _) = to_spans(&req.request_proto());
    e.ingest(spans, 0);
    e.flush_all(0);
    for k in 0..5u128 {
        let (spans, _) = to_spans(&linked_job(920 + k, 910, producer, false).request_proto());
        e.ingest(spans, 0);
        e.flush_all(0);
    }
    let d = e.endpoint(route, 0, None).unwrap();
    assert_eq!(d.slowest[0].linked.len(), 3);
    assert_eq!(d.linked_jobs[0].latency.count, 5);
    for k in 0..4u128 {
        let (t, _) = enqueuing_request(930 + k);
        let (spans, _) = to_spans(&t.request_proto());
        e.ingest(spans, 0);
        e.flush_all(0);
    }
    let (spans, _) = to_spans(&linked_job(940, 910, producer, false).request_proto());
    e.ingest(spans, 0);
    e.flush_all(0);
    let s = e.summary(0, None);
    assert_eq!(
        s.ingest.jobs_linked, 5,
        "the forgotten request is not found"
    );
}
