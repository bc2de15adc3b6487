//! The key scan (`redis keys`, and the sampled scan of `redis`): the biggest keys,
//! keys without TTL by prefix, memory and key count per prefix, cache types.
//!
//! [`collect`](collect::collect) is the only code that talks to Redis; [`judge`] and
//! [`render`] are pure functions over the [`ScanSnapshot`] it returns.

pub mod classify;
pub mod collect;
pub mod inspect;
pub mod judge;
pub mod options;
pub mod render;
pub mod snapshot;

pub use classify::{looks_compressed, prefix_of, SIDEKIQ_GROUP};
pub use collect::{collect, Progress};
pub use inspect::{inspect, inspect_with, KeysMetrics, KeysOptions};
pub use judge::judge;
pub use options::ScanOptions;
pub use render::render;
pub use snapshot::{CacheTypeStats, KeyInfo, PrefixStats, ScanSnapshot};
