//! The receiver's settings: validated by the caller before any socket opens.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (example: --listen 127.0.0.1:4318)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Forward(#[from] super::forward::ForwardError),
}

/// The receiver's settings, validated by the caller.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub grpc: Option<SocketAddr>,
    /// Another OTLP receiver that gets everything received (HTTP or gRPC).
    pub forward: Option<super::forward::Target>,
    /// Batches waiting to be forwarded, at most (then dropped for forwarding only).
    pub forward_queue: usize,
    /// Bytes waiting to be forwarded, at most.
    pub forward_queue_bytes: usize,
    /// Batches waiting for the engine, at most (then 503).
    pub queue_batches: usize,
    /// Per-client limits: connections, request heads, bodies, gRPC (`[server]` in
    /// apm.toml).
    pub limits: crate::config::ServerLimits,
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
            limits: crate::config::ServerLimits::default(),
        }
    }
}
