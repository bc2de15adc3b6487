//! powertune's Redis engine: the runbook's "Redis Tuning", "Caching Strategy" and
//! "Worker / Background Jobs" sections against a real Redis.
//!
//! Same shape as every command, one folder per check — [`info`], [`slowlog`], [`keys`]
//! and [`sidekiq`] — each with `collect` (the only code that talks to Redis, and only
//! with read-only commands), `snapshot` (plain data), `judge` (pure functions: an index
//! function listing every check, then one function per check) and `render`.
//!
//! The entries, each `inspect(&Options, &Targets) -> Result<Inspection<Metrics>, RedisError>`:
//! [`inspect()`] for `powertune redis` (INFO, SLOWLOG and a sampled key scan),
//! [`keys::inspect()`] for `redis keys`, [`sidekiq::inspect()`] for `powertune queues`.
//! The library prints nothing: the key scan's progress and `--watch`'s intervals go to
//! callbacks the caller passes (`inspect_with`, `inspect_watching`).

pub mod baseline;
pub mod conn;
pub mod error;
pub mod info;
pub mod inspect;
pub mod keys;
pub mod sidekiq;
pub mod slowlog;
pub mod units;

pub use conn::{Conn, ConnOptions, RedisUrl};
pub use error::RedisError;
pub use inspect::{inspect, inspect_with, RedisMetrics, RedisOptions};
pub use units::{human_bytes, human_secs};

#[cfg(test)]
pub(crate) mod test_util {
    use powertune_core::Value;

    /// The note of a figure ("" for words or a figure without one).
    pub fn note(v: &Value) -> &str {
        match v {
            Value::Quantity { note, .. } => note,
            Value::Text(_) => "",
        }
    }
}
