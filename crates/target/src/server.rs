//! The running service: binds, builds the router over the live state, serves in the
//! background and shuts down gracefully.

use crate::config::TargetConfig;
use crate::error::TargetError;
use crate::state::{Shared, TargetStats};
use crate::{cable, handlers, metrics};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use powertune_serve::{Limits, Server, Shutdown};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The endpoints, for printing: (method, path, note).
pub const ENDPOINTS: [(&str, &str, &str); 8] = [
    (
        "POST",
        "/api/v1/auth/login",
        "{\"email\",\"password\"} -> token",
    ),
    (
        "POST",
        "/api/v1/ai/agents/{id}/execute",
        "Bearer token; agent work",
    ),
    ("POST", "/api/v1/ai/missions", "Bearer token; 201"),
    (
        "GET",
        "/api/v1/ai/monitoring/dashboard",
        "Bearer token; analytics",
    ),
    ("GET", "/cable", "ActionCable WebSocket (MonitoringChannel)"),
    (
        "GET",
        "/api/v1/cache/{key}",
        "read-through cache on Redis ([redis])",
    ),
    ("GET", "/health", "liveness"),
    ("GET", "/metrics", "Prometheus text"),
];

/// How long [`RunningTarget::shutdown`] lets requests and WebSockets finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The connection limits the target serves with by default: powertune-serve's
/// defaults, with the drain as long as [`RunningTarget::shutdown`] waits.
pub fn default_limits() -> Limits {
    Limits {
        drain_timeout: SHUTDOWN_GRACE,
        ..Limits::default()
    }
}

/// Validates `config`, binds `addr` (port 0 picks a free port) and serves in the
/// background on the current tokio runtime, with [`default_limits`].
pub async fn start(config: TargetConfig, addr: SocketAddr) -> Result<RunningTarget, TargetError> {
    start_with_limits(config, addr, default_limits()).await
}

/// As [`start`], with the connection limits given (connection cap, header read and
/// keep-alive timeout, request head size): no client can block the others.
pub async fn start_with_limits(
    config: TargetConfig,
    addr: SocketAddr,
    limits: Limits,
) -> Result<RunningTarget, TargetError> {
    limits
        .validate(|field| format!("--{}", field.replace('_', "-")))
        .map_err(TargetError::Limits)?;
    let settings = config.validate()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| TargetError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TargetError::Bind { addr, source })?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let body_limit = settings.config.max_body_bytes;
    let telemetry = crate::telemetry::Telemetry::new(&settings.config.telemetry)?;
    let state = Arc::new(Shared::new(settings, shutdown_rx.clone(), telemetry));
    let app = router(state.clone(), body_limit);
    let mut signal = shutdown_rx;
    let stop = Shutdown::default();
    let graceful = stop.graceful.clone();
    let server = tokio::spawn(async move {
        let serve = Server::new(limits).run(listener, app, stop);
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            _ = serve.as_mut() => return,
            _ = signal.wait_for(|stop| *stop) => graceful.cancel(),
        }
        serve.await;
    });
    let broadcaster = tokio::spawn(cable::broadcaster(state.clone()));
    Ok(RunningTarget {
        addr: local,
        state,
        shutdown_tx,
        server: Some(server),
        broadcaster: Some(broadcaster),
    })
}

fn router(state: Arc<Shared>, body_limit: usize) -> Router {
    Router::new()
        .route("/api/v1/auth/login", post(handlers::login))
        .route("/api/v1/ai/agents/{id}/execute", post(handlers::execute))
        .route("/api/v1/ai/missions", post(handlers::create_mission))
        .route("/api/v1/ai/monitoring/dashboard", get(handlers::dashboard))
        .route("/api/v1/cache/{key}", get(crate::redis_cache::cache))
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::metrics))
        .route("/cable", get(handlers::cable))
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            handlers::track,
        ))
        .with_state(state)
}

/// A target serving in the background. Dropping it signals shutdown without
/// waiting; [`RunningTarget::shutdown`] waits for it.
pub struct RunningTarget {
    addr: SocketAddr,
    state: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    broadcaster: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTarget")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningTarget {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://IP:PORT/cable`.
    pub fn cable_url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// The configuration in force.
    pub fn config(&self) -> &TargetConfig {
        self.state.settings.config()
    }

    /// Server-side counters now.
    pub fn stats(&self) -> TargetStats {
        self.state.stats()
    }

    /// Stalls the application for `d` from now (a GC pause, a lock, a stuck
    /// dependency): every API request and `/health` arriving before then waits until
    /// the stall ends, then does its normal work. Used to check coordinated-omission
    /// correction.
    pub fn stall(&self, d: std::time::Duration) {
        *self.state.stall_until.lock() = Some(tokio::time::Instant::now() + d);
    }

    /// The `/metrics` text now, without an HTTP request.
    pub fn metrics_text(&self) -> String {
        metrics::render(&self.state)
    }

    /// Stops accepting, lets in-flight requests finish, sends every WebSocket client
    /// `{"type":"disconnect","reason":"server_restart"}` and a close frame, and waits
    /// (at most 5 s for each) for both.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        self.state.sessions.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.state.sessions.wait()).await;
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
        if let Some(b) = self.broadcaster.take() {
            b.abort();
            let _ = b.await;
        }
        // The last spans go out (bounded by `telemetry.export_timeout`).
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.telemetry.shutdown()).await;
    }
}

impl Drop for RunningTarget {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
    }
}
