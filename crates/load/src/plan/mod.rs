//! Scenario files: TOML read through core's `config_file::Source` with
//! `deny_unknown_fields` ([`file`]), validated into a [`Plan`] ([`parse`],
//! [`scenario`], [`step`]) before any socket opens. Errors are core's `ConfigError`:
//! `FILE:LINE:COL: KEY: WHY, e.g. RIGHT`.

mod at_path;
mod context;
mod file;
mod model;
mod one_off;
mod parse;
mod scenario;
mod step;

pub use context::{PlanError, MAX_BACKLOG, MAX_DURATION, MAX_RATE_PER_S};
pub use model::{
    Body, CableStep, Check, CheckKind, DataMode, DataSet, Executor, Hold, HttpStep, HttpVersion,
    Options, Plan, Scenario, Stage, Step, Think, WsStep,
};
pub use one_off::OneOff;

#[cfg(test)]
mod tests;
