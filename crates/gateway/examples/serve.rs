//! The gateway as `powertune gateway --config FILE` runs it, without the CLI, for
//! profiling the crate alone (callgrind, perf):
//!
//!   cargo run --release -p powertune-gateway --example serve -- gateway.toml
// A benchmark/demo program, not library code: it may unwrap, panic and print.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use powertune_gateway::{Config, Gateway, TokioClock};
use std::sync::Arc;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: serve GATEWAY.toml");
        std::process::exit(1);
    };
    let cfg = match Config::load(std::path::Path::new(&path)) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            loaded.config
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let addr = cfg.listen;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let r = rt.block_on(async move {
        let gw = Gateway::new(cfg, Arc::new(TokioClock))?;
        let listener = Gateway::bind(addr).await?;
        eprintln!("serving on http://{addr}");
        let shutdown = powertune_gateway::server::Shutdown::default();
        let stop = shutdown.graceful.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        gw.serve(listener, shutdown).await;
        Ok::<_, powertune_gateway::GatewayError>(())
    });
    if let Err(e) = r {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
