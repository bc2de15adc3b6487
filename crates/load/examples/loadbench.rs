//! A bare harness for profiling the engine without the CLI:
//! `cargo run --release -p powertune-load --example loadbench -- PLAN.toml BASE_URL`
//! prints `requests failed` on one line. The CLI (`powertune load`) is the real entry.
// A benchmark/demo program, not library code: it may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]
use powertune_load::{Plan, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(base)) = (args.next(), args.next()) else {
        return Err("usage: loadbench PLAN.toml BASE_URL".into());
    };
    let plan = Plan::from_path(path.as_ref())?;
    let rt = tokio::runtime::Runtime::new()?;
    let s = rt.block_on(powertune_load::run(&RunOptions::new(plan, base)))?;
    println!("{} {}", s.http.reqs, s.http.failed);
    Ok(())
}
