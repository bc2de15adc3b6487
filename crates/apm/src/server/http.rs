//! The HTTP handlers: OTLP/HTTP `POST /v1/traces` (protobuf or JSON, gzip or not)
//! and the summary API (`GET /api/summary`, `GET /api/endpoint`).

use super::forward::{Forwarder, Payload};
use super::state::{submit, Cmd, Shared};
use crate::decode::{decode_body, gunzip, is_gzip, to_spans, DecodeError, Format};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The HTTP routes over the shared state.
pub(super) fn router(shared: Arc<Shared>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/traces", post(traces).fallback(method_not_allowed))
        .route("/api/summary", get(summary))
        .route("/api/endpoint", get(endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(shared)
}

/// The format of an error answer: the request's own (OTLP/HTTP answers in the
/// content type it was sent), JSON when that is not an OTLP one.
fn answer_format(headers: &HeaderMap) -> Format {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_content_type)
        .unwrap_or(Format::Json)
}

/// 404 as a `google.rpc.Status` (code 5, NOT_FOUND).
async fn not_found(uri: Uri, headers: HeaderMap) -> Response {
    error(
        StatusCode::NOT_FOUND,
        answer_format(&headers),
        5,
        format!(
            "no such path `{}`; OTLP traces go to POST /v1/traces",
            uri.path()
        ),
    )
}

/// 405 as a `google.rpc.Status` (code 12, UNIMPLEMENTED), with `Allow: POST`.
async fn method_not_allowed(method: Method, headers: HeaderMap) -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        answer_format(&headers),
        12,
        format!("method {method} is not allowed on /v1/traces; use POST"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

/// 413 as a `google.rpc.Status` (code 8, RESOURCE_EXHAUSTED).
fn too_large(format: Format, message: String) -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, format, 8, message)
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

async fn traces(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(
                answer_format(&headers),
                format!(
                    "body is larger than {} (server.max_body_bytes)",
                    powertune_core::units::bytes(shared.max_body as u64)
                ),
            )
        }
        Err(r) => {
            return error(
                StatusCode::BAD_REQUEST,
                answer_format(&headers),
                3,
                format!("cannot read the body: {}", r.body_text()),
            )
        }
    };
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
    // A JSON body may come gzip-compressed without saying so (its magic number
    // tells); a protobuf body is taken as it is announced.
    let gzipped = match encoding.as_str() {
        "gzip" => true,
        "identity" | "" => is_gzip(&body) && format != Format::Protobuf,
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format,
                3,
                format!("Content-Encoding `{other}` is not supported; use gzip or none"),
            )
        }
    };
    let raw: Vec<u8>;
    let plain: &[u8] = if gzipped {
        match gunzip(&body, shared.max_decompressed) {
            Ok(b) => {
                raw = b;
                &raw
            }
            Err(e @ DecodeError::TooLarge { .. }) => {
                let _ = shared.tx.try_send(Cmd::Malformed);
                return too_large(format, format!("{e} (server.max_decompressed_bytes)"));
            }
            Err(e) => {
                let _ = shared.tx.try_send(Cmd::Malformed);
                return error(StatusCode::BAD_REQUEST, format, 3, e.to_string());
            }
        }
    } else {
        &body
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

/// Sends a query to the engine task (behind every batch queued before it) and
/// waits for the answer; the error is the answer to give when the task is gone.
async fn ask<T>(
    shared: &Shared,
    cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    if shared.tx.send(cmd(tx)).await.is_err() {
        return Err(engine_gone());
    }
    rx.await.map_err(|_| engine_gone())
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
    match ask(&shared, |tx| Cmd::Summary(w, tx)).await {
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
        Err(gone) => gone,
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
    match ask(&shared, |tx| Cmd::Endpoint(route.clone(), w, tx)).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no requests for route `{route}` in the window")})),
        )
            .into_response(),
        Err(gone) => gone,
    }
}
