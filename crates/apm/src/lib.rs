//! powertune's APM: reads OpenTelemetry traces (OTLP protobuf or JSON, over HTTP,
//! gRPC or from a file), assembles them into traces inside a bounded window, and
//! analyses them the way the runbook's "Application Performance Monitoring" and
//! "investigate a slow endpoint" sections ask: P50/P95/P99 per route and endpoint
//! type, the DB / outgoing HTTP / application breakdown, N+1 and slow queries,
//! slow requests, Sidekiq jobs, mission and agent spans, provider latency.
//!
//! Shape: collector ([`decode`], [`server`], [`client`]) → snapshot ([`Summary`])
//! → judge ([`judge::judge`], pure) → findings.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout
    )
)]

pub mod classify;
pub mod client;
pub mod config;
pub mod decode;
pub mod engine;
pub mod forward;
pub mod hist;
pub mod judge;
pub mod model;
pub mod normalize;
pub mod offline;
pub mod render;
pub mod server;
pub mod summary;
pub mod wire;

pub use config::{ApmConfig, EngineConfig};
pub use engine::Engine;
pub use summary::{Baseline, EndpointDetail, Summary};
