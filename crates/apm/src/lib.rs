//! powertune's APM: reads OpenTelemetry traces (OTLP protobuf or JSON, over HTTP,
//! gRPC or from a file), assembles them into traces inside a bounded window, and
//! analyses them the way the runbook's "Application Performance Monitoring" and
//! "investigate a slow endpoint" sections ask: P50/P95/P99 per route and endpoint
//! type, the DB / outgoing HTTP / application breakdown, N+1 and slow queries,
//! slow requests, Sidekiq jobs, mission and agent spans, provider latency.
//!
//! Shape of the inspections ([`inspect`]): [`collect`] (the only I/O: the receiver's
//! API, an export file, the baseline file) → [`snapshot`] ([`Summary`], plain data)
//! → [`judge`] (pure) → [`render`]. The analysis itself is the [`engine`], fed by
//! [`decode`] / [`wire`] and configured by [`config`] ([`classify`], [`normalize`],
//! [`model`]). The receiver ([`server`]) is a service: config → live state → handlers.

pub mod classify;
pub mod collect;
pub mod config;
pub mod decode;
pub mod engine;
pub mod inspect;
pub mod judge;
pub mod model;
pub mod normalize;
pub mod render;
pub mod server;
pub mod snapshot;
pub mod wire;

pub use config::{ApmConfig, EngineConfig};
pub use engine::Engine;
pub use inspect::ApmError;
pub use snapshot::{Baseline, EndpointDetail, Summary};
