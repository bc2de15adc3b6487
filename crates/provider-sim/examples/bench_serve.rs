//! The simulator on ONE thread (a current-thread tokio runtime), for
//! scripts/bench/provider-sim.sh: `bench_serve [CONFIG.toml]` prints
//! `listening http://IP:PORT` and serves until SIGTERM or Ctrl-C.
// An example prints and may unwrap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use powertune_provider_sim::{ProviderSim, SimConfig};

fn main() {
    let cfg = match std::env::args().nth(1) {
        Some(p) => SimConfig::load(std::path::Path::new(&p)).unwrap(),
        None => SimConfig::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ProviderSim::start(cfg, l).await.unwrap();
        println!("listening {}", sim.url());
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let s = sim.stats();
        println!("completed {}", s.totals.completed);
        sim.shutdown().await;
    });
}
