//! What the quota and routing tests share: a gateway on loopback port 0 with the
//! clock and keys a test gives it, an HTTP client, and the simulator's `/control`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use powertune_gateway::breaker::Clock;
use powertune_gateway::{Config, Gateway};
use powertune_provider_sim::{ProviderSim, SimConfig, SimHandle};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The top of every test config: loopback port 0, short timeouts, no retries.
pub const HEAD: &str = r#"
listen = "127.0.0.1:0"
[timeouts]
connect = "2s"
first_token = "5s"
idle = "5s"
request = "10s"
[retry]
max_retries = 0
base = "1ms"
max = "5ms"
"#;

/// A provider simulator for `toml` (its `sim.toml`) on loopback port 0.
pub async fn sim(toml: &str) -> SimHandle {
    let cfg = SimConfig::from_toml("sim.toml", toml).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ProviderSim::start(cfg, l).await.unwrap()
}

pub struct Rig {
    pub url: String,
    pub gw: Arc<Gateway>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway for `toml` (keys from `env`) on `clock`, serving on loopback port 0.
pub async fn rig(toml: &str, clock: Arc<dyn Clock>, env: &dyn Fn(&str) -> Option<String>) -> Rig {
    let cfg = Config::from_toml(toml, "gateway.toml", env).unwrap().config;
    let gw = Gateway::new(cfg, clock).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, Default::default()).await;
    });
    Rig { url, gw, task }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `POST /control` of the simulator.
pub async fn control(s: &SimHandle, v: Value) {
    let resp = http()
        .post(format!("{}/control", s.url()))
        .json(&v)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
}
