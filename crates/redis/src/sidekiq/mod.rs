//! `powertune queues`: Sidekiq 6, 7 and 8 as stored in Redis — the `queues` set and
//! `queue:NAME` lists, the `schedule`/`retry`/`dead` sorted sets, `stat:*` counters and
//! daily keys, the `processes` set with each process hash and its `:work` hash, and
//! Sidekiq 7+'s `j|...` per-minute metrics hashes. Timestamps are float seconds (6.x,
//! 7.x) or integer milliseconds (8.x), detected per value.
//!
//! [`collect`](collect::collect) and [`watch`]'s sampler are the only code that talks to
//! Redis; [`judge`](judge::judge) and [`render`](render::render) are pure functions over
//! the [`SidekiqSnapshot`] it returns; [`inspect`](inspect::inspect) is the command's entry.

pub mod collect;
/// Public for the fuzz tests (`crates/fuzz`); the collector is its only caller.
#[doc(hidden)]
pub mod decode;
pub mod history;
pub mod inspect;
pub mod judge;
pub mod payload;
pub mod render;
pub mod snapshot;
pub mod watch;
pub mod weights;

pub use collect::{collect, Options};
pub use inspect::{inspect, inspect_watching, QueuesMetrics, QueuesOptions, WatchOptions};
pub use judge::{judge, judge_trend};
pub use payload::{job_class, timestamp_secs};
pub use render::{render, render_delta, render_tick};
pub use snapshot::{
    DayStat, DeadJob, ErrorSample, JobMetric, ProcessInfo, QueueInfo, RetryStats, RunningJob,
    SidekiqSnapshot, WatchDelta, WatchRow, WatchSample,
};
pub use watch::{delta, sample, Reconnect, WatchRun};
pub use weights::{poll_first, weights_in_force};
