//! `powertune db`: the runbook's Database section against a real PostgreSQL.
//!
//! Same shape as every command, one file per stage: [`config`] checks the connection
//! settings before any socket opens, [`collect`] reads the catalog into a
//! [`DbSnapshot`] (a fixed number of round trips whatever the number of tables),
//! [`judge`] turns the snapshot and the targets into findings, [`render`] builds the
//! typed [`DbMetrics`] and the terminal text. [`inspect()`] runs them in that order.
//! [`explain`] is the same pipeline for one statement's plan (`db explain`), and
//! [`watch`] samples connection usage on an interval (`db watch`). Nothing here
//! prints: text is returned or handed to a callback.

pub mod collect;
pub mod config;
pub mod conninfo;
pub mod error;
pub mod explain;
pub mod hypo;
pub mod inspect;
pub mod judge;
pub mod render;
pub mod replication;
pub mod sequences;
pub mod snapshot;
pub mod sources;
pub mod space;
pub mod suggest;
pub mod tls;
pub mod visibility;
pub mod watch;

pub use config::{DbConfig, RawDbConfig};
pub use error::DbError;
pub use explain::{ExplainMetrics, ExplainOptions};
pub use inspect::{inspect, DbOptions};
pub use render::DbMetrics;
pub use snapshot::DbSnapshot;
pub use watch::{watch, WatchOptions};
