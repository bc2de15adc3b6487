//! Fuzz tests: one module per parser of outside input. Each module replays its
//! corpus (`crates/fuzz/corpus/<target>/`) and runs proptest over mutated corpus
//! entries and generated structured inputs; see docs/reliability.md#fuzzing.
//!
//! Budget: each proptest run does its module's default case count (a few seconds
//! on a debug build); `POWERTUNE_FUZZ_CASES=N` runs N cases each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};

mod config_toml;
mod dialect_requests;
mod dialect_streams;
mod explain;
mod gzip;
mod http1;
mod otlp_json;
mod otlp_protobuf;
mod scenario_toml;
mod sidekiq;
mod threshold;

/// A target's corpus as plain inputs for the mutator.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    powertune_fuzz::corpus(target)
        .unwrap()
        .into_iter()
        .map(|s| s.bytes)
        .collect()
}

/// Runs `check` over every corpus file of `target`; fails naming every file that
/// panicked. A target keeps at least `min` files, so an emptied corpus fails too.
pub fn replay(target: &str, min: usize, check: impl Fn(&[u8])) {
    let corpus = powertune_fuzz::corpus(target).unwrap();
    assert!(
        corpus.len() >= min,
        "{target}: {} corpus files, expected at least {min}",
        corpus.len()
    );
    let failed: Vec<String> = corpus
        .iter()
        .filter(|s| catch_unwind(AssertUnwindSafe(|| check(&s.bytes))).is_err())
        .map(|s| s.name.clone())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: these corpus files panicked: {failed:?}"
    );
}

/// The text of an input the way a file reader would see it (lossy UTF-8).
pub fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}
