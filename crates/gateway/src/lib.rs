//! `powertune gateway`: the runbook's LlmProxyClient as a fast LLM provider proxy.
//!
//! Clients speak OpenAI (`/v1/chat/completions`), Anthropic (`/v1/messages`) or Ollama
//! (`/api/chat`); providers are OpenAI-compatible, Anthropic or Ollama, with
//! translation in every direction (the [`wire`] dialects, from `powertune-dialect`).
//! Every call goes through a circuit breaker per (provider, credential) ([`breaker`]),
//! a weighted credential split with rpm limits, route classes with fallback, bounded
//! retries and timeouts ([`server`]). [`metrics`] serves `/metrics` and `/status`.
//!
//! `powertune gateway status` is an inspection ([`inspect()`]): [`collect`] reads
//! `/status` into a [`snapshot`], [`judge`] turns it (and a saved [`baseline`]) into
//! findings, [`render`] writes the terminal section.

pub mod baseline;
pub mod breaker;
pub mod budget;
pub mod collect;
pub mod config;
pub mod error;
pub mod events;
pub mod inspect;
pub mod judge;
pub mod metrics;
pub mod pricing;
pub mod quota;
pub mod render;
pub mod routing;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod telemetry;
mod upstream;

/// The chat dialects, from their own crate.
pub use powertune_dialect as wire;

pub use breaker::{Clock, ManualClock, TokioClock};
pub use config::{Config, Loaded};
pub use error::GatewayError;
pub use events::EventLog;
pub use inspect::{inspect, StatusMetrics, StatusOptions};
pub use server::Gateway;
pub use snapshot::StatusSnapshot;
