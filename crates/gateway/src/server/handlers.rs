//! The HTTP side: the axum router and its handlers (chat for the three fronts,
//! models, metrics, status, health, admin reload).

use super::gateway::Gateway;
use super::response::error_response;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use powertune_dialect::{ApiError, ErrorKind, Front};
use powertune_serve::{Outcome, Server, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

impl Gateway {
    /// The axum router with every endpoint. Request bodies are limited to
    /// `[server] max_body_bytes`; a 404, 405 or 413 the router itself answers comes in
    /// the error shape of the API the path belongs to ([`front_of`]).
    pub fn router(self: &Arc<Self>) -> Router {
        let max_body = self.config().server.max_body_bytes;
        Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/api/chat", post(ollama_chat))
            .route("/v1/embeddings", post(openai_embeddings))
            .route("/v1/models", get(models))
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .route("/admin/reload", post(admin_reload))
            .route("/health", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(max_body))
            .layer(axum::middleware::from_fn(move |req, next| {
                in_client_shape(req, next, max_body)
            }))
            .with_state(self.clone())
    }

    /// Serves on `listener` with the shared accept loop (`powertune-serve`) and the
    /// `[server]` limits of the config in force at start, until `shutdown.graceful`;
    /// then stops accepting and lets calls in flight (streams included) finish for up
    /// to `server.drain_timeout`, or until `shutdown.hard`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) -> Outcome {
        let limits = self.config().server.limits;
        self.start_shared();
        let app = self.router();
        Server::new(limits).run(listener, app, shutdown).await
    }
}

/// The API whose error shape a path's answers take: Anthropic for `/v1/messages…`,
/// Ollama for `/api/…`, OpenAI for everything else.
pub(super) fn front_of(path: &str) -> Front {
    if path.starts_with("/v1/messages") {
        Front::Anthropic
    } else if path.starts_with("/api/") {
        Front::Ollama
    } else {
        Front::OpenAi
    }
}

/// Rewrites the router's own plain-text 404, 405 and 413 in the client's error shape
/// (the gateway's JSON answers, such as an unknown model's 404, pass untouched).
async fn in_client_shape(req: Request, next: Next, max_body: usize) -> Response {
    let front = front_of(req.uri().path());
    let method = req.method().clone();
    // the path is the client's: cut so the message stays small
    let path: String = req.uri().path().chars().take(200).collect();
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return resp;
    }
    let e = match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorKind::TooLarge,
            format!("the request body is larger than the gateway's limit of {max_body} bytes ([server] max_body_bytes)"),
        ),
        StatusCode::NOT_FOUND => ApiError::new(
            ErrorKind::UnknownPath,
            format!("no endpoint {method} {path}; the gateway serves POST /v1/chat/completions, POST /v1/messages, POST /api/chat, POST /v1/embeddings and GET /v1/models"),
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            // (axum adds its Allow header outside this layer)
            let allow = match path.as_str() {
                "/v1/chat/completions" | "/v1/messages" | "/api/chat" | "/v1/embeddings"
                | "/admin/reload" => "POST",
                _ => "GET",
            };
            ApiError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on {path}; use {allow}"),
            )
        }
        _ => return resp,
    };
    error_response(front, &e, None)
}

pub(super) async fn openai_chat(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gw.chat(Front::OpenAi, headers, body).await
}

pub(super) async fn anthropic_messages(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gw.chat(Front::Anthropic, headers, body).await
}

pub(super) async fn ollama_chat(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gw.chat(Front::Ollama, headers, body).await
}

pub(super) async fn openai_embeddings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gw.embeddings(headers, body).await
}

/// `GET /v1/models`: the aliases and route classes (a client key is needed when
/// client keys are configured).
pub(super) async fn models(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let live = gw.live();
    if let Err((why, e)) = gw.authenticate(&live, &headers) {
        gw.metrics.record_refusal(why);
        return error_response(Front::OpenAi, &e, None);
    }
    let cfg = &live.cfg;
    let mut ids: Vec<String> = cfg.models.keys().cloned().collect();
    ids.extend(
        cfg.routes
            .keys()
            .filter(|k| !cfg.models.contains_key(*k))
            .cloned(),
    );
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "powertune"}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

pub(super) async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let text = gw.metrics_text();
    (
        [("content-type", powertune_core::prometheus::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

pub(super) async fn status(State(gw): State<Arc<Gateway>>) -> Response {
    axum::Json(gw.status()).into_response()
}

/// May `peer` ask for a reload? Loopback always; others only with `allow_remote`.
pub(super) fn reload_allowed(peer: std::net::IpAddr, allow_remote: bool) -> bool {
    allow_remote || peer.to_canonical().is_loopback()
}

/// `POST /admin/reload`: re-read the config file (loopback peers only unless
/// `[admin] allow_remote = true`).
pub(super) async fn admin_reload(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !reload_allowed(peer.ip(), gw.config().admin_allow_remote) {
        let body = serde_json::json!({"reloaded": false, "error": format!(
            "POST /admin/reload is accepted from loopback only (you are {}); set [admin] allow_remote = true to allow other peers",
            peer.ip()
        )});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    match gw.reload_reported("POST /admin/reload") {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => {
            let body = serde_json::json!({"reloaded": false, "error": e.to_string()});
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_answers_in_its_apis_shape() {
        for (path, front) in [
            ("/v1/chat/completions", Front::OpenAi),
            ("/v1/messages", Front::Anthropic),
            ("/v1/messages/count_tokens", Front::Anthropic),
            ("/api/chat", Front::Ollama),
            ("/api/generate", Front::Ollama),
            ("/v1/embeddings", Front::OpenAi),
            ("/nope", Front::OpenAi),
        ] {
            assert_eq!(front_of(path), front, "{path}");
        }
    }

    #[test]
    fn reload_is_loopback_only_unless_allowed() {
        for (ip, remote, want) in [
            ("127.0.0.1", false, true),
            ("::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("10.0.0.7", false, false),
            ("2001:db8::1", false, false),
            ("10.0.0.7", true, true),
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(
                reload_allowed(ip, remote),
                want,
                "{ip} allow_remote={remote}"
            );
        }
    }
}
