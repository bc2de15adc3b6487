//! The gateway crate's errors.

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {source} (is another process using it? try --listen 127.0.0.1:4001)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("gateway server stopped: {0}")]
    Serve(std::io::Error),
}
