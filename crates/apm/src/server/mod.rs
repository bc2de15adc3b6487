//! The receiver: OTLP/HTTP `/v1/traces` (protobuf and JSON, gzip), OTLP/gRPC
//! (`TraceService/Export`), the summary API, and optional forwarding of everything
//! received to another OTLP receiver over HTTP or gRPC ([`crate::forward`]).
//!
//! Handlers decode in parallel and hand spans to one engine task through a bounded
//! queue: when the queue is full the receiver answers 503 with `Retry-After`
//! (gRPC: UNAVAILABLE), as the OTLP specification asks of a server over capacity,
//! instead of buffering without bound. Queries go through the same queue, so a
//! summary always includes every batch accepted before it.

use crate::decode::{decode_body, gunzip, is_gzip, to_spans, Format};
use crate::engine::Engine;
use crate::forward::{Forwarder, Payload};
use crate::model::{Reject, SpanRec};
use crate::summary::{EndpointDetail, Summary};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (example: --listen 127.0.0.1:4318)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
}

/// The receiver's settings, validated by the caller.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub grpc: Option<SocketAddr>,
    /// Another OTLP receiver that gets everything received (HTTP or gRPC).
    pub forward: Option<crate::forward::Target>,
    /// Batches waiting to be forwarded, at most (then dropped for forwarding only).
    pub forward_queue: usize,
    /// Bytes waiting to be forwarded, at most.
    pub forward_queue_bytes: usize,
    /// Batches waiting for the engine, at most (then 503).
    pub queue_batches: usize,
    /// Largest accepted body, compressed or not (decompressed: 8×).
    pub max_body: usize,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr) -> ServeConfig {
        ServeConfig {
            listen,
            grpc: None,
            forward: None,
            forward_queue: 1024,
            forward_queue_bytes: 64 * 1024 * 1024,
            queue_batches: 256,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// A URL without its password, for messages.
pub fn redact(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparseable URL)".to_string(),
    }
}

/// What handlers ask of the engine task.
pub enum Cmd {
    Ingest(Vec<SpanRec>, u64),
    Malformed,
    Summary(Option<u64>, oneshot::Sender<Summary>),
    Endpoint(String, Option<u64>, oneshot::Sender<Option<EndpointDetail>>),
}

pub struct Shared {
    tx: mpsc::Sender<Cmd>,
    max_body: usize,
    forward: Option<Forwarder>,
}

/// A running receiver.
pub struct Running {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until a server task ends (they run until the process stops).
    pub async fn wait(mut self) {
        if let Some(t) = self.tasks.pop() {
            let _ = t.await;
        }
    }

    /// Stops every task.
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The engine task: owns the engine, ticks once a second on tokio's clock (paused
/// time works in tests).
pub fn spawn_engine(mut engine: Engine, mut rx: mpsc::Receiver<Cmd>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let now = move || start.elapsed().as_nanos() as u64;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Cmd::Ingest(spans, rejected)) => {
                        engine.note_rejected(rejected);
                        engine.ingest(spans, now());
                    }
                    Some(Cmd::Malformed) => engine.note_malformed(),
                    Some(Cmd::Summary(w, reply)) => {
                        let t = now();
                        engine.flush_rooted(t);
                        let _ = reply.send(engine.summary(t, w));
                    }
                    Some(Cmd::Endpoint(route, w, reply)) => {
                        let t = now();
                        engine.flush_rooted(t);
                        let _ = reply.send(engine.endpoint(&route, t, w));
                    }
                },
                _ = tick.tick() => engine.tick(now()),
            }
        }
    })
}

/// Builds the HTTP router and the engine queue without starting the engine task
/// (tests use it to fill the queue); [`start`] is what a program calls.
pub fn router_parts(
    cfg: &ServeConfig,
) -> Result<(Router, Arc<Shared>, mpsc::Receiver<Cmd>), ServeError> {
    let (tx, rx) = mpsc::channel(cfg.queue_batches.max(1));
    let forward = match &cfg.forward {
        None => None,
        Some(t) => Some(crate::forward::start(
            t.clone(),
            cfg.forward_queue,
            cfg.forward_queue_bytes,
        )?),
    };
    let shared = Arc::new(Shared {
        tx,
        max_body: cfg.max_body,
        forward,
    });
    let router = Router::new()
        .route("/v1/traces", post(traces))
        .route("/api/summary", get(summary))
        .route("/api/endpoint", get(endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(cfg.max_body))
        .with_state(shared.clone());
    Ok((router, shared, rx))
}

/// Binds the listeners and starts the engine, HTTP and (optionally) gRPC tasks.
pub async fn start(cfg: ServeConfig, engine: Engine) -> Result<Running, ServeError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let grpc = match cfg.grpc {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|source| ServeError::Bind { addr: a, source })?;
            let addr = l
                .local_addr()
                .map_err(|source| ServeError::Bind { addr: a, source })?;
            Some((l, addr))
        }
        None => None,
    };
    let (router, shared, rx) = router_parts(&cfg)?;
    let mut tasks = vec![spawn_engine(engine, rx)];
    let mut grpc_addr = None;
    if let Some((l, addr)) = grpc {
        grpc_addr = Some(addr);
        let svc = TraceServiceServer::new(Grpc {
            shared: shared.clone(),
        })
        .max_decoding_message_size(cfg.max_body);
        tasks.push(tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(l);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!("gRPC receiver stopped: {e}");
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("HTTP receiver stopped: {e}");
        }
    }));
    Ok(Running {
        http_addr,
        grpc_addr,
        tasks,
    })
}

fn encode<M: Message + serde::Serialize>(format: Format, m: &M) -> Vec<u8> {
    match format {
        Format::Protobuf => m.encode_to_vec(),
        Format::Json => serde_json::to_vec(m).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// `google.rpc.Status`, the body of OTLP error answers.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn answer(status: StatusCode, format: Format, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

fn error(status: StatusCode, format: Format, code: i32, message: String) -> Response {
    answer(status, format, encode(format, &RpcStatus { code, message }))
}

fn over_capacity(format: Format) -> Response {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format,
        14,
        "over capacity: the analysis queue is full; retry later".to_string(),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Accepts decoded spans: `Err` with an over-capacity answer when the queue is full.
fn submit(
    shared: &Shared,
    spans: Vec<SpanRec>,
    bad: Vec<Reject>,
) -> Result<ExportTraceServiceResponse, ()> {
    let rejected = bad.len() as u64;
    shared
        .tx
        .try_send(Cmd::Ingest(spans, rejected))
        .map_err(|_| ())?;
    let partial_success = if rejected > 0 {
        let mut msg = format!("{rejected} span(s) rejected: {}", bad[0]);
        if bad.len() > 1 {
            msg.push_str(" (and others)");
        }
        Some(ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: msg,
        })
    } else {
        None
    };
    Ok(ExportTraceServiceResponse { partial_success })
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(format) = Format::from_content_type(ct) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Format::Json,
            3,
            format!(
                "Content-Type `{ct}` is not OTLP; send application/x-protobuf or application/json"
            ),
        );
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    let raw: Vec<u8>;
    let plain: &[u8] = match encoding.as_str() {
        "gzip" => match gunzip(&body, shared.max_body.saturating_mul(8)) {
            Ok(b) => {
                raw = b;
                &raw
            }
            Err(e) => {
                let _ = shared.tx.try_send(Cmd::Malformed);
                return error(StatusCode::BAD_REQUEST, format, 3, e.to_string());
            }
        },
        "identity" | "" if !is_gzip(&body) || format == Format::Protobuf => &body,
        "identity" | "" => match gunzip(&body, shared.max_body.saturating_mul(8)) {
            Ok(b) => {
                raw = b;
                &raw
            }
            Err(e) => {
                let _ = shared.tx.try_send(Cmd::Malformed);
                return error(StatusCode::BAD_REQUEST, format, 3, e.to_string());
            }
        },
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format,
                3,
                format!("Content-Encoding `{other}` is not supported; use gzip or none"),
            )
        }
    };
    let compressed = plain.len() != body.len() || plain.as_ptr() != body.as_ptr();
    let want_proto = shared
        .forward
        .as_ref()
        .is_some_and(Forwarder::wants_plain_protobuf);
    // Protobuf is read in place (no owned copy of every attribute); JSON goes
    // through the full OTLP/JSON decode.
    let mut json_as_proto = None;
    let decoded = match format {
        Format::Protobuf => {
            let (mut ok, mut bad) = (Vec::new(), Vec::new());
            crate::wire::read_request(plain, &mut ok, &mut bad).map(|()| (ok, bad))
        }
        Format::Json => decode_body(format, plain).map(|req| {
            if want_proto {
                json_as_proto = Some(Bytes::from(req.encode_to_vec()));
            }
            to_spans(&req)
        }),
    };
    let (spans, bad) = match decoded {
        Ok(r) => r,
        Err(e) => {
            let _ = shared.tx.try_send(Cmd::Malformed);
            return error(StatusCode::BAD_REQUEST, format, 3, e.to_string());
        }
    };
    let resp = match submit(&shared, spans, bad) {
        Ok(r) => r,
        Err(()) => return over_capacity(format),
    };
    if let Some(f) = &shared.forward {
        let payload = if !want_proto {
            Payload {
                body,
                content_type: HeaderValue::from_static(format.content_type()),
                gzip: compressed,
            }
        } else {
            let body = match json_as_proto {
                Some(b) => b,
                None if compressed => Bytes::copy_from_slice(plain),
                None => body,
            };
            Payload {
                body,
                content_type: HeaderValue::from_static(Format::Protobuf.content_type()),
                gzip: false,
            }
        };
        f.offer(payload);
    }
    answer(StatusCode::OK, format, encode(format, &resp))
}

fn window_param(q: &HashMap<String, String>) -> Result<Option<u64>, Box<Response>> {
    match q.get("window") {
        None => Ok(None),
        Some(w) => powertune_core::duration::parse(w)
            .map(|d| Some(d.as_nanos() as u64))
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({"error": format!("window={w}: {e} (example: window=15m)")})),
                )
                    .into_response()
                    .into()
            }),
    }
}

fn engine_gone() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": "the analysis engine is not running"})),
    )
        .into_response()
}

async fn summary(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let w = match window_param(&q) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (tx, rx) = oneshot::channel();
    if shared.tx.send(Cmd::Summary(w, tx)).await.is_err() {
        return engine_gone();
    }
    match rx.await {
        Ok(mut s) => {
            if let Some(f) = &shared.forward {
                let st = &f.stats;
                s.ingest.forwarded = st.forwarded.load(Ordering::Relaxed);
                s.ingest.forward_failed = st.failed.load(Ordering::Relaxed);
                s.ingest.forward_dropped = st.dropped.load(Ordering::Relaxed);
                s.ingest.forward_queued = st.queued.load(Ordering::Relaxed) as u64;
            }
            Json(s).into_response()
        }
        Err(_) => engine_gone(),
    }
}

async fn endpoint(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let w = match window_param(&q) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let Some(route) = q.get("route").cloned() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "missing route= (example: route=GET%20/api/v1/users/:id)"})),
        )
            .into_response();
    };
    let (tx, rx) = oneshot::channel();
    if shared
        .tx
        .send(Cmd::Endpoint(route.clone(), w, tx))
        .await
        .is_err()
    {
        return engine_gone();
    }
    match rx.await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no requests for route `{route}` in the window")})),
        )
            .into_response(),
        Err(_) => engine_gone(),
    }
}

struct Grpc {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let (spans, bad) = to_spans(&req);
        match submit(&self.shared, spans, bad) {
            Ok(r) => {
                if let Some(f) = &self.shared.forward {
                    f.offer(Payload {
                        body: Bytes::from(req.encode_to_vec()),
                        content_type: HeaderValue::from_static(Format::Protobuf.content_type()),
                        gzip: false,
                    });
                }
                Ok(tonic::Response::new(r))
            }
            Err(()) => Err(tonic::Status::unavailable(
                "over capacity: the analysis queue is full; retry later",
            )),
        }
    }
}
