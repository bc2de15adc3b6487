//! The models behind `powertune capacity` (the runbook's Capacity Planning
//! procedure), kept apart from any I/O so each is tested on synthetic data:
//!
//! - [`usl`]: the Universal Scalability Law fitted to (concurrency, throughput)
//!   points, to extrapolate beyond the last step measured;
//! - [`steady`]: whether a step's latency had settled after its warm-up, or was still
//!   trending;
//! - [`knee`]: the first step that broke a target or saturated, and the point of
//!   maximum curvature of the throughput curve (Kneedle).

pub mod knee;
pub mod steady;
pub mod usl;
