//! The gateway server: front APIs on axum ([`handlers`]), one configuration
//! generation at a time ([`live`], swapped by [`reload`]), each client call run by
//! [`dispatch`] under the [`retry`] policy as upstream attempts ([`attempt`]: a lean
//! HTTP/1.1 client for http:// providers, reqwest for https), committed streams
//! relayed by [`relay`], and the `/metrics` and `/status` endpoints.

mod attempt;
mod auth;
mod call;
mod dispatch;
mod embed;
mod endpoint;
mod fleet;
mod gateway;
mod handlers;
mod live;
mod relay;
mod reload;
mod response;
mod retry;
mod source;
mod spans;

pub use crate::error::GatewayError;
pub(crate) use auth::Refusal;
pub use dispatch::ROUTE_HEADER;
pub use gateway::Gateway;
pub use live::ReloadSummary;
pub use powertune_serve::{Limits, Outcome, Shutdown};
pub use response::OVERHEAD_HEADER;
pub use source::{EnvLookup, ReloadError, ReloadEvent, ReloadListener};
