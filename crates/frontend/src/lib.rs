//! `powertune frontend`: the runbook's "Frontend Performance" section.
//!
//! `frontend bundle` reads a Vite build: [`manifest`] finds and parses Vite's
//! manifest, [`closure`] walks the entries' static imports into the initial load,
//! [`sizes`] measures each file raw, gzip and Brotli, [`sources`] finds the route
//! modules and the import chain that pulls one into the first load, [`baseline`]
//! compares with a saved build; [`bundle::inspect`] runs them and [`judge`] and
//! [`render`] turn the [`snapshot::BundleMetrics`] into findings and text.
//! `frontend lcp` ([`lcp`]) measures cold-load LCP and layout shift in headless
//! Chromium. Nothing here prints.

pub mod baseline;
pub mod bundle;
pub mod closure;
pub mod error;
pub mod judge;
pub mod lcp;
pub mod manifest;
pub mod render;
pub mod sizes;
pub mod snapshot;
pub mod sources;

pub use baseline::BundleBaseline;
pub use bundle::{BundleOptions, DEFAULT_ROUTES};
pub use error::FrontendError;
pub use lcp::{LcpMetrics, LcpOptions, Throttle};
pub use sizes::Sizes;
pub use snapshot::BundleMetrics;
