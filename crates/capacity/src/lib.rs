//! `powertune capacity`: the runbook's Capacity Planning procedure end to end.
//!
//! Graduated open-model steps over a plan's scenario mix ([`mix`], [`step`],
//! [`run`]), resources sampled during every step ([`resources`]), and the judge
//! ([`judge`]): the knee (first SLO violation or saturation), the limiting resource
//! with its figures and the runbook's step-4 action, the headroom against a growth
//! factor, and the Universal Scalability Law fit; `--verify` re-tests an earlier
//! report ([`verify`]). The one entry is [`inspect`].
//!
//! The models are kept apart from any I/O so each is tested on synthetic data:
//!
//! - [`usl`]: the Universal Scalability Law fitted to (concurrency, throughput)
//!   points, to extrapolate beyond the last step measured;
//! - [`steady`]: whether a step's latency had settled after its warm-up, or was still
//!   trending;
//! - [`knee`]: the first step that broke a target or saturated, and the point of
//!   maximum curvature of the throughput curve (Kneedle).

pub mod config;
pub mod error;
pub mod judge;
pub mod knee;
pub mod mix;
pub mod model;
pub mod render;
pub mod resources;
pub mod run;
pub mod steady;
pub mod step;
pub mod usl;
pub mod verify;

pub use config::{RawCapacity, Schedule};
pub use error::CapacityError;
pub use mix::Mix;
pub use model::CapacityMetrics;
pub use resources::ResourceOptions;
pub use run::{inspect, CapacityOptions, Event, ProgressFn};
