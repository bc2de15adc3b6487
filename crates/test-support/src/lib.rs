//! Test helpers shared by the crates' integration tests: where the test PostgreSQL and
//! Redis are (started by `scripts/test.sh`), throw-away databases and key spaces, and
//! loopback servers on port 0. Tests only: helpers panic with a clear message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

pub mod browser;
pub mod http;
pub mod pg;
pub mod python;
pub mod redis_db;
pub mod schema;
pub mod tls;

/// A name unique within this machine for the test run: `prefix_<pid>_<counter>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}
