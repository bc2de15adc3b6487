//! INFO checks of `powertune redis`: memory, clients, ops/s against a baseline,
//! eviction policy and evictions, hit rate, MEMORY DOCTOR's heuristics, rejected and
//! blocked clients.
//!
//! [`collect`](collect::collect) is the only code that talks to Redis; [`judge`] and
//! [`render`] are pure functions over the [`InfoSnapshot`] it returns.

pub mod collect;
pub mod judge;
pub mod render;
pub mod snapshot;

pub use collect::collect;
pub use judge::{judge, InfoJudgeInput};
pub use render::render;
pub use snapshot::{parse_info, snapshot_from_info, DbKeyspace, InfoSnapshot};
