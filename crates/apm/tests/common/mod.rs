//! Shared by the integration tests: OTLP fixtures built by hand in both
//! semantic-convention generations ([`TraceBuilder`]), engines with default or
//! adjusted settings, and a receiver on loopback port 0 with its HTTP client.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use powertune_apm::collect::receiver as client;
use powertune_apm::decode::to_spans;
use powertune_apm::server::{self, ServeConfig};
use powertune_apm::snapshot::{Detection, DetectionKind, Summary};
use powertune_apm::{Engine, EngineConfig};
use powertune_core::Targets;

pub const MS: u64 = 1_000_000;
pub const T0: u64 = 1_700_000_000_000_000_000;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Gen {
    Old,
    New,
}

pub fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

pub fn b(k: &str, v: bool) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(v)),
        }),
        ..Default::default()
    }
}

/// Builds one trace's spans; times in ms from the trace start.
pub struct TraceBuilder {
    pub trace: u128,
    pub next: u64,
    pub spans: Vec<Span>,
    pub gen: Gen,
}

impl TraceBuilder {
    pub fn new(trace: u128, gen: Gen) -> Self {
        TraceBuilder {
            trace,
            next: 1,
            spans: vec![],
            gen,
        }
    }

    pub fn span(
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
    pub fn request(
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

    pub fn sql(&mut self, parent: u64, q: &str, start: u64, end: u64) -> u64 {
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

    pub fn http_call(&mut self, parent: u64, host: &str, start: u64, end: u64) -> u64 {
        let attrs = match self.gen {
            Gen::New => vec![s("http.request.method", "GET"), s("server.address", host)],
            Gen::Old => vec![s("http.method", "GET"), s("net.peer.name", host)],
        };
        self.span(parent, 3, "GET", start, end, attrs)
    }

    pub fn request_proto(self) -> ExportTraceServiceRequest {
        request_of(vec![self])
    }
}

pub fn request_of(traces: Vec<TraceBuilder>) -> ExportTraceServiceRequest {
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

/// Engine settings: the defaults for the default targets, adjusted by `f`.
pub fn config(f: impl FnOnce(&mut EngineConfig)) -> EngineConfig {
    let mut c = EngineConfig::defaults(&Targets::default());
    f(&mut c);
    c
}

/// An engine with the default settings.
pub fn engine() -> Engine {
    Engine::new(config(|_| {}))
}

/// Ingests every span of `req` at time 0 and analyses them all.
pub fn feed(e: &mut Engine, req: &ExportTraceServiceRequest) {
    let (spans, _) = to_spans(req);
    e.ingest(spans, 0);
    e.flush_all(0);
}

/// The summary of `req` analysed alone with the default settings.
pub fn analyse(req: &ExportTraceServiceRequest) -> Summary {
    let mut e = engine();
    let (spans, bad) = to_spans(req);
    assert!(bad.is_empty(), "{bad:?}");
    e.ingest(spans, 0);
    e.flush_all(0);
    e.summary(0, None)
}

pub fn detections(s: &Summary, kind: DetectionKind) -> Vec<&Detection> {
    s.detections.iter().filter(|d| d.kind == kind).collect()
}

/// N+1: 6 identical SELECTs (10 ms each) under the request.
pub fn n_plus_one_trace(id: u128, gen: Gen, n: u64, cached: bool) -> TraceBuilder {
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

/// One request span on `route`.
pub fn route_trace(id: u128, route: &str) -> ExportTraceServiceRequest {
    let mut t = TraceBuilder::new(id, Gen::New);
    t.request("GET", route, route, 200, 0, 10);
    t.request_proto()
}

// ---- the receiver over real sockets ----

pub async fn start(cfg: ServeConfig) -> server::Running {
    server::start(cfg, engine()).await.unwrap()
}

pub fn local() -> ServeConfig {
    let mut c = ServeConfig::new("127.0.0.1:0".parse().unwrap());
    c.grpc = Some("127.0.0.1:0".parse().unwrap());
    c
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub async fn post(
    addr: std::net::SocketAddr,
    ct: &str,
    gz: bool,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", ct);
    if gz {
        r = r.header("content-encoding", "gzip");
    }
    r.body(body).send().await.unwrap()
}

pub async fn summary_of(addr: std::net::SocketAddr) -> Summary {
    client::fetch_summary(&client::base_url(&format!("http://{addr}")).unwrap(), None)
        .await
        .unwrap()
}

pub async fn count_of(addr: std::net::SocketAddr, route: &str) -> u64 {
    summary_of(addr)
        .await
        .routes
        .iter()
        .find(|r| r.route == route)
        .map_or(0, |r| r.latency.count)
}

pub async fn grpc_client(
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
