//! `powertune gateway`: the runbook's LlmProxyClient as a fast LLM provider proxy.
//!
//! Clients speak OpenAI (`/v1/chat/completions`), Anthropic (`/v1/messages`) or Ollama
//! (`/api/chat`); providers are OpenAI-compatible, Anthropic or Ollama, with
//! translation in every direction (the [`wire`] dialects, from `powertune-dialect`).
//! Every call goes through a circuit breaker per (provider, credential) ([`breaker`]),
//! a weighted credential split with rpm limits, route classes with fallback, bounded retries and timeouts
//! ([`server`]). [`metrics`] serves `/metrics` and `/status`; [`collect`] and
//! [`judge`] turn a `/status` snapshot into findings.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

pub mod breaker;
pub mod collect;
pub mod config;
pub mod error;
pub mod judge;
pub mod metrics;
pub mod server;
mod upstream;

/// The chat dialects, from their own crate.
pub use powertune_dialect as wire;

pub use breaker::{Clock, ManualClock, TokioClock};
pub use config::Config;
pub use error::GatewayError;
pub use metrics::StatusSnapshot;
pub use server::Gateway;
