//! A fake LLM provider for `scripts/bench/gateway-overhead.sh`: the test fake (OpenAI,
//! Anthropic and Ollama wire formats) on 127.0.0.1, until killed.
//!
//!   cargo run --release -p powertune-gateway --example fake_provider
//!
//! Zero-delay by default (a stream leaves in one write). `FAKE_CHUNK_DELAY_MS=N`
//! (1..1000) waits N ms between a stream's content chunks, so each event reaches the
//! gateway in a read of its own, as a real provider's tokens do; `FAKE_WORDS=N`
//! (1..1000) sets the answer's length in words (one content chunk per word; default 5).
// A benchmark/demo program, not library code: it may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_test_support::providers::{Behavior, FakeProvider};
use std::time::Duration;

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse::<u64>() {
        Ok(n) if (1..=1000).contains(&n) => Some(n),
        _ => {
            eprintln!("{name} must be a whole number 1..1000 (got {v:?})");
            std::process::exit(1);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let delay = env_num("FAKE_CHUNK_DELAY_MS");
    let words = env_num("FAKE_WORDS");
    let fake = FakeProvider::start().await;
    let mut b = Behavior::default();
    if let Some(ms) = delay {
        b.chunk_delay = Duration::from_millis(ms);
    }
    if let Some(n) = words {
        b.text = (0..n).map(|i| format!("w{i} ")).collect();
    }
    fake.set(b);
    println!("{}", fake.url);
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("fake provider served {} requests", fake.requests());
}
