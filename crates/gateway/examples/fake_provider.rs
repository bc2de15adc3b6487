//! A zero-delay fake LLM provider for `scripts/bench/gateway-overhead.sh`: the test
//! fake (OpenAI, Anthropic and Ollama wire formats) on 127.0.0.1, until killed.
//!
//!   cargo run --release -p powertune-gateway --example fake_provider [PORT]

use powertune_test_support::providers::FakeProvider;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = std::env::args().nth(1); // port choice is the fake's own (port 0)
    let fake = FakeProvider::start().await;
    println!("{}", fake.url);
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("fake provider served {} requests", fake.requests());
}
