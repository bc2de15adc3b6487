//! The HTTP side: the axum router and its handlers (chat for the three fronts,
//! models, metrics, status, health, admin reload).

use super::gateway::Gateway;
use crate::error::GatewayError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use powertune_dialect::Front;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

impl Gateway {
    /// The axum router with every endpoint.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/api/chat", post(ollama_chat))
            .route("/v1/models", get(models))
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .route("/admin/reload", post(admin_reload))
            .route("/health", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(16 << 20))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let app = self.router();
        // TCP_NODELAY: a relayed stream is many small writes; with Nagle each one after
        // the first would wait for the client's delayed ACK
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(GatewayError::Serve)
    }
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

pub(super) async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let cfg = gw.config();
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
