//! powertune's load engine.
//!
//! The one entry is [`inspect`] (`powertune load`, `powertune demo` and capacity
//! planning call it; `powertune compare` calls [`inspect_compare`]):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use powertune_load::{Plan, RunOptions};
//! // 1. Load a plan from a path (or `Plan::from_toml_str(text, "name")`); errors read
//! //    `FILE:LINE:COL: KEY: WHY` (core's `ConfigError`) and nothing has touched the
//! //    network yet.
//! let mut plan = Plan::from_path("examples/runbook.toml".as_ref())?;
//! // 2. Optionally scale every executor duration (stages, start times, graceful stops,
//! //    cable holds) — 0.1 turns a 10-minute plan into one minute.
//! plan.scale_time(0.1);
//! // 3. Run it against a base URL (a progress callback, `{{name}}` values and a
//! //    baseline run are further options) and judge it against the runbook's targets.
//! let opts = RunOptions::new(plan, "http://127.0.0.1:8080");
//! let inspection = powertune_load::inspect(&opts, &powertune_core::Targets::default()).await?;
//! // 4. The findings, the typed summary and the k6-like text (plain, no colour).
//! let report = inspection.report()?;
//! # let _ = report; Ok(()) }
//! ```
//!
//! Shape: [`plan`] (scenario file → validated plan) → collect ([`collect`] with its
//! executors, VUs and live monitor; [`http`], [`h1`], [`ws`], [`net`]: the only I/O;
//! [`metrics`] shards) → snapshot ([`snapshot::Summary`], thresholds evaluated by
//! [`thresholds`] over the metrics of the [`catalogue`]) → judge ([`judge::findings`],
//! a pure function) → render ([`render`]) → [`powertune_core::Inspection`].

pub mod catalogue;
pub mod collect;
pub mod compare;
pub mod h1;
pub mod http;
pub mod inspect;
pub mod judge;
pub mod k8s;
pub mod llm;
pub mod merge;
pub mod metrics;
pub mod net;
pub mod options;
pub mod out;
pub mod plan;
pub mod render;
pub mod segment;
pub mod snapshot;
pub mod template;
pub mod thresholds;
pub mod timeline;
pub mod trace;
pub mod ws;

pub use collect::run;
pub use compare::{compare, Delta};
pub use inspect::{
    inspect, inspect_compare, judge_run, CompareMetrics, CompareOptions, LoadMetrics,
};
pub use options::{LoadError, Progress, ProgressFn, RunOptions};
pub use plan::{OneOff, Plan, PlanError};
pub use render::render_compare;
pub use snapshot::{ReportError, Summary, SUMMARY_SCHEMA};
