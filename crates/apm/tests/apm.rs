//! Integration tests: hand-built OTLP fixtures in both semantic-convention
//! generations through the engine and detectors; the receiver over real HTTP and
//! gRPC on loopback port 0 (protobuf, JSON, gzip, malformed bodies, over capacity,
//! forwarding); and traces exported by the real OpenTelemetry SDK.

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

#[tokio::test]
async fn grpc_export_and_forwarding() {
    let downstream = start(local()).await;
    let mut cfg = local();
    cfg.forward = Some(server::parse_forward(&format!("http://{}", downstream.http_addr)).unwrap());
    let front = start(cfg).await;
    // gRPC into the front receiver.
    let mut c = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::connect(format!(
        "http://{}",
        front.grpc_addr.unwrap()
    ))
    .await
    .unwrap();
    let resp = c
        .export(n_plus_one_trace(301, Gen::New, 6, false).request_proto())
        .await
        .unwrap();
    assert!(resp.into_inner().partial_success.is_none());
    // HTTP into the front receiver: analysed there and forwarded downstream.
    let pb = n_plus_one_trace(302, Gen::Old, 6, false)
        .request_proto()
        .encode_to_vec();
    assert_eq!(
        post(front.http_addr, "application/x-protobuf", true, gzip(&pb))
            .await
            .status(),
        200
    );
    let s = summary_of(front.http_addr).await;
    assert_eq!(s.routes[0].latency.count, 2);
    let mut got = 0;
    for _ in 0..100 {
        let d = summary_of(downstream.http_addr).await;
        got = d.routes.first().map(|r| r.latency.count).unwrap_or(0);
        if got == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, 1, "the HTTP body reached the downstream receiver");
    assert_eq!(summary_of(front.http_addr).await.ingest.forwarded, 1);
    assert!(server::parse_forward("ftp://x").is_err());
    let e = server::parse_forward("http://user:hunter2@")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("hunter2"), "{e}");
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
