//! The receiver: OTLP/HTTP `/v1/traces` (protobuf and JSON, gzip), OTLP/gRPC
//! (`TraceService/Export`), the summary API, and optional forwarding of everything
//! received to another OTLP receiver over HTTP or gRPC ([`forward`]).
//!
//! Handlers decode in parallel and hand spans to one engine task through a bounded
//! queue: when the queue is full the receiver answers 503 with `Retry-After`
//! (gRPC: UNAVAILABLE), as the OTLP specification asks of a server over capacity,
//! instead of buffering without bound. Queries go through the same queue, so a
//! summary always includes every batch accepted before it.

//!
//! Layout: [`config`] (settings, validated before any socket opens) → [`state`]
//! (the engine task and its queue, the forwarder) → handlers ([`http`], [`grpc`]).

pub mod config;
pub mod forward;
mod grpc;
mod http;
pub mod state;

pub use config::{ServeConfig, ServeError};
pub use state::{spawn_engine, Cmd, Shared};

use crate::engine::Engine;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
pub use powertune_serve::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A running receiver.
pub struct Running {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until the HTTP server ends (after a graceful stop, once it has drained).
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

/// Builds the HTTP router and the engine queue without starting the engine task
/// (tests use it to fill the queue); [`start`] is what a program calls.
pub fn router_parts(
    cfg: &ServeConfig,
) -> Result<(Router, Arc<Shared>, mpsc::Receiver<Cmd>), ServeError> {
    let (tx, rx) = mpsc::channel(cfg.queue_batches.max(1));
    let forward = match &cfg.forward {
        None => None,
        Some(t) => Some(forward::start(
            t.clone(),
            cfg.forward_queue,
            cfg.forward_queue_bytes,
        )?),
    };
    let shared = Arc::new(Shared {
        tx,
        max_body: cfg.limits.max_body,
        max_decompressed: cfg.limits.max_decompressed,
        forward,
    });
    let router = http::router(shared.clone(), cfg.limits.max_body);
    Ok((router, shared, rx))
}

/// Binds the listeners and starts the engine, HTTP and (optionally) gRPC tasks; they
/// run until the process stops (see [`start_with`]).
pub async fn start(cfg: ServeConfig, engine: Engine) -> Result<Running, ServeError> {
    start_with(cfg, engine, Shutdown::default()).await
}

/// As [`start`]; at `shutdown.graceful` the listeners close and requests in flight
/// finish (for up to the drain timeout, or until `shutdown.hard`).
pub async fn start_with(
    cfg: ServeConfig,
    engine: Engine,
    shutdown: Shutdown,
) -> Result<Running, ServeError> {
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
        let limits = cfg.limits;
        let svc = TraceServiceServer::new(grpc::Grpc {
            shared: shared.clone(),
        })
        .max_decoding_message_size(limits.max_body);
        let graceful = shutdown.graceful.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = grpc::capped_incoming(
                l,
                limits.grpc_max_connections,
                limits.connection.header_read_timeout,
            );
            let header_list = u32::try_from(limits.connection.max_header_bytes).unwrap_or(u32::MAX);
            if let Err(e) = tonic::transport::Server::builder()
                .max_concurrent_streams(limits.grpc_max_concurrent_streams)
                .http2_max_header_list_size(header_list)
                .http2_keepalive_interval(Some(grpc::KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(grpc::KEEPALIVE_TIMEOUT))
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, graceful.cancelled_owned())
                .await
            {
                tracing::error!("gRPC receiver stopped: {e}");
            }
        }));
    }
    let server = powertune_serve::Server::new(cfg.limits.connection);
    tasks.push(tokio::spawn(async move {
        let outcome = server.run(listener, router, shutdown).await;
        if !outcome.drained {
            tracing::warn!(
                abandoned = outcome.abandoned,
                "HTTP receiver stopped before every request finished"
            );
        }
    }));
    Ok(Running {
        http_addr,
        grpc_addr,
        tasks,
    })
}
