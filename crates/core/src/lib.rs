//! powertune's shared model.
//!
//! Every command follows one shape: a collector measures a system into a snapshot,
//! a judge (a pure function) compares the snapshot with the runbook's [`targets`],
//! and the resulting [`Finding`]s are rendered as a [`report`].

pub mod baseline;
pub mod ci;
pub mod config_file;
pub mod duration;
pub mod endpoint;
pub mod finding;
pub mod histogram;
pub mod html;
pub mod http1;
pub mod inspect;
pub mod prometheus;
pub mod redact;
pub mod report;
pub mod stats;
pub mod targets;
pub mod threshold;
pub mod units;

pub use endpoint::EndpointType;
pub use finding::{Cmp, Finding, Value, Verdict};
pub use histogram::LatencyHistogram;
pub use inspect::Inspection;
pub use report::{ExitCode, Report};
pub use targets::{Band, Targets};
pub use units::{Quantity, Unit};
