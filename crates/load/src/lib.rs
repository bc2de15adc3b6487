//! powertune's load engine.
//!
//! The library API (`powertune load`, `powertune compare` and `powertune demo` use it):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use powertune_load::{Plan, RunOptions};
//! // 1. Load a plan from a path (or `Plan::from_toml_str(text, "name")`); errors carry
//! //    file:line:column and nothing has touched the network yet.
//! let mut plan = Plan::from_path("examples/runbook.toml".as_ref())?;
//! // 2. Optionally scale every executor duration (stages, start times, graceful stops,
//! //    cable holds) — 0.1 turns a 10-minute plan into one minute.
//! plan.scale_time(0.1);
//! // 3. Run it against a base URL, with live progress on standard error or not.
//! let summary = powertune_load::run(&plan, RunOptions {
//!     base_url: "http://127.0.0.1:8080".into(),
//!     env: Default::default(),
//!     progress: true,
//! }).await?;
//! // 4. Render the k6-like text, and judge it against the runbook's targets.
//! let text = summary.render_text(powertune_core::report::Style::plain());
//! let report = summary.to_report(&powertune_core::Targets::default(), None);
//! # let _ = (text, report); Ok(()) }
//! ```
//!
//! Shape: collector ([`engine`], [`http`], [`h1`], [`ws`]: the only I/O) → snapshot
//! ([`metrics`] shards merged into a [`Summary`]) → judge ([`judge::findings`], a pure
//! function) → findings → [`powertune_core::Report`].
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout
    )
)]

pub mod engine;
pub mod h1;
pub mod http;
pub mod judge;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod summary;
pub mod template;
pub mod ws;

pub use engine::{run, RunError, RunOptions};
pub use judge::{compare, render_compare, Delta};
pub use plan::{OneOff, Plan, PlanError};
pub use summary::{Summary, SUMMARY_SCHEMA};
