//! Loopback fixture servers for the load engine's tests (axum on 127.0.0.1:0):
//!
//! - `/delay`  any method: answers `{"ok":true}` after the configured delay
//! - `/flaky`  any method: every `fail_every`-th request answers 500
//! - `/stall`  any method: requests arriving inside the stall window wait for its end
//! - `/close`  any method: answers with `Connection: close` (the client must reconnect)
//! - `/login`  POST: `{"token":"tok-123"}`; `/me` GET: 200 with `Authorization: Bearer tok-123`, else 401
//! - `/cable`  ActionCable (`actioncable-v1-json`): welcome, confirm_subscription,
//!   pings, a broadcast every `broadcast_every`
//! - `/echo`   raw WebSocket echo
//!
//! Every HTTP request is counted (`requests()`), so tests can compare the server's
//! count with the client's.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the fixture does.
#[derive(Debug, Clone)]
pub struct FixtureConfig {
    pub delay: Duration,
    pub fail_every: u64,
    /// (offset from start, length) of the stall window.
    pub stall: Option<(Duration, Duration)>,
    pub broadcast_every: Duration,
}

impl Default for FixtureConfig {
    fn default() -> Self {
        FixtureConfig {
            delay: Duration::from_millis(50),
            fail_every: 50,
            stall: None,
            broadcast_every: Duration::from_millis(100),
        }
    }
}

struct St {
    cfg: FixtureConfig,
    start: Instant,
    requests: AtomicU64,
    flaky: AtomicU64,
    cable_sessions: AtomicU64,
    subscriptions: AtomicU64,
}

/// A running fixture; stops when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub addr: std::net::SocketAddr,
    st: Arc<St>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub async fn start(cfg: FixtureConfig) -> TestServer {
        let st = Arc::new(St {
            cfg,
            start: Instant::now(),
            requests: AtomicU64::new(0),
            flaky: AtomicU64::new(0),
            cable_sessions: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/delay", any(delay))
            .route("/flaky", any(flaky))
            .route("/stall", any(stall))
            .route("/close", any(close))
            .route("/login", post(login))
            .route("/me", get(me))
            .route("/cable", get(cable))
            .route("/echo", get(echo))
            .with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            url: format!("http://{addr}"),
            addr,
            st,
            task,
        }
    }

    /// HTTP requests served so far (WebSocket upgrades excluded).
    pub fn requests(&self) -> u64 {
        self.st.requests.load(Ordering::Relaxed)
    }

    /// ActionCable connections accepted and subscriptions confirmed.
    pub fn cable_counts(&self) -> (u64, u64) {
        (
            self.st.cable_sessions.load(Ordering::Relaxed),
            self.st.subscriptions.load(Ordering::Relaxed),
        )
    }
}

async fn delay(State(st): State<Arc<St>>) -> impl IntoResponse {
    st.requests.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(st.cfg.delay).await;
    ([("content-type", "application/json")], "{\"ok\":true}")
}

async fn close(State(st): State<Arc<St>>) -> impl IntoResponse {
    st.requests.fetch_add(1, Ordering::Relaxed);
    ([("connection", "close")], "bye")
}

async fn flaky(State(st): State<Arc<St>>) -> Response {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let n = st.flaky.fetch_add(1, Ordering::Relaxed) + 1;
    if st.cfg.fail_every > 0 && n % st.cfg.fail_every == 0 {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    } else {
        "ok".into_response()
    }
}

async fn stall(State(st): State<Arc<St>>) -> &'static str {
    st.requests.fetch_add(1, Ordering::Relaxed);
    if let Some((at, len)) = st.cfg.stall {
        let from = st.start + at;
        let to = from + len;
        let now = Instant::now();
        if now >= from && now < to {
            tokio::time::sleep_until(to).await;
        }
    }
    "ok"
}

async fn login(State(st): State<Arc<St>>, body: String) -> Response {
    st.requests.fetch_add(1, Ordering::Relaxed);
    if body.contains("\"password\":\"demo\"") {
        (
            [("content-type", "application/json")],
            "{\"token\":\"tok-123\",\"user\":{\"id\":7}}",
        )
            .into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "{\"error\":\"bad credentials\"}").into_response()
    }
}

async fn me(State(st): State<Arc<St>>, headers: HeaderMap) -> Response {
    st.requests.fetch_add(1, Ordering::Relaxed);
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer tok-123");
    if ok {
        ([("content-type", "application/json")], "{\"user\":\"ann\"}").into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn cable(State(st): State<Arc<St>>, ws: WebSocketUpgrade) -> Response {
    ws.protocols(["actioncable-v1-json"])
        .on_upgrade(move |socket| cable_session(st, socket))
}

async fn cable_session(st: Arc<St>, socket: WebSocket) {
    st.cable_sessions.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = socket.split();
    if tx
        .send(Message::Text("{\"type\":\"welcome\"}".into()))
        .await
        .is_err()
    {
        return;
    }
    let mut identifier: Option<String> = None;
    let mut tick = tokio::time::interval(st.cfg.broadcast_every);
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    // Bounded: a session ends when the client closes or after 10 minutes.
    let end = Instant::now() + Duration::from_secs(600);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["command"] == "subscribe" {
                        let id = v["identifier"].as_str().unwrap_or("").to_string();
                        let reply = serde_json::json!({"identifier": id, "type": "confirm_subscription"});
                        if tx.send(Message::Text(reply.to_string().into())).await.is_err() {
                            break;
                        }
                        st.subscriptions.fetch_add(1, Ordering::Relaxed);
                        identifier = Some(id);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                let p = serde_json::json!({"type": "ping", "message": 1_700_000_000u64});
                if tx.send(Message::Text(p.to_string().into())).await.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {
                if let Some(id) = &identifier {
                    n += 1;
                    let b = serde_json::json!({"identifier": id, "message": {"seq": n, "active_agents": 3}});
                    if tx.send(Message::Text(b.to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        let end = Instant::now() + Duration::from_secs(60);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, socket.recv()).await {
            let reply = match m {
                Message::Text(t) => Message::Text(t),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}
