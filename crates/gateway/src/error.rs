//! The gateway crate's errors: serving (client, bind, serve) and inspecting a running
//! gateway (reaching `/status`, reading or writing a baseline).

use crate::collect::CollectError;
use powertune_core::baseline::BaselineError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {source} (is another process using it? try --listen 127.0.0.1:4001)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("[telemetry]: {0}")]
    Telemetry(String),
    #[error("gateway server stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
}
