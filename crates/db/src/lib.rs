//! `powertune db`: the runbook's Database section against a real PostgreSQL.
//!
//! Same shape as every command: [`collect`] reads the catalog into a [`DbSnapshot`]
//! (a fixed number of round trips whatever the number of tables), [`judge`] turns the
//! snapshot and the targets into findings, [`plan`] analyzes EXPLAIN output and
//! [`watch`] samples connection usage on an interval.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout
    )
)]

pub mod collect;
pub mod config;
pub mod error;
pub mod explain;
pub mod judge;
pub mod plan;
pub mod snapshot;
pub mod sql;
pub mod watch;

pub use config::{DbConfig, RawDbConfig};
pub use error::DbError;
pub use snapshot::DbSnapshot;
