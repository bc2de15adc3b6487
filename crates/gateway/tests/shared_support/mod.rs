//! What the `[shared]` tests share: the provider simulator, a gateway config sharing
//! through a Redis, in-process replicas on loopback, and a redis-server of a test's own
//! for stopping and starting.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use parking_lot::Mutex;
use powertune_gateway::{Config, Gateway, TokioClock};
use powertune_provider_sim::{ProviderSim, SimConfig, SimHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A provider simulator that answers at once (`extra`: more of its sim.toml).
pub async fn sim(extra: &str) -> SimHandle {
    let cfg = SimConfig::from_toml(
        "sim.toml",
        &format!("[defaults]\nttft = \"0ms..1ms\"\nitl = \"0ms..1ms\"\noutput_tokens = \"2..4\"\n{extra}"),
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ProviderSim::start(cfg, l).await.unwrap()
}

/// One provider with one credential (`cred` holds its extra keys, e.g. `rpm = 10`),
/// no retries, sharing through `redis` under a prefix of the test's own.
pub fn config(sim: &str, redis: &str, prefix: &str, cred: &str, shared: &str) -> String {
    format!(
        r#"
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
[[providers]]
name = "oai"
kind = "openai"
base_url = "{sim}/v1"
  [[providers.credentials]]
  name = "main"
  {cred}
[models.fast]
targets = ["oai:gpt-4o-mini"]
[shared]
redis_url = "{redis}"
key_prefix = "{prefix}"
{shared}
"#
    )
}

/// A gateway replica serving on a loopback port of its own.
pub struct Replica {
    pub url: String,
    pub gw: Arc<Gateway>,
    pub notices: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a replica of `toml`; its one-line notices are kept.
pub async fn replica(toml: &str) -> Replica {
    let cfg = Config::from_toml(toml, "gateway.toml", &|_| None)
        .unwrap()
        .config;
    let gw = Gateway::new(cfg, Arc::new(TokioClock)).unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let n = notices.clone();
    gw.set_notice_listener(Arc::new(move |l: &str| n.lock().push(l.to_string())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let g = gw.clone();
    let task = tokio::spawn(async move {
        let _ = g.serve(listener, Default::default()).await;
    });
    Replica {
        url,
        gw,
        notices,
        task,
    }
}

/// Waits (at most 10 s) until the replica's shared state is in `mode`.
pub async fn wait_mode(r: &Replica, mode: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = r.gw.status().shared.map(|s| s.mode).unwrap_or_default();
        if m == mode {
            return;
        }
        assert!(Instant::now() < deadline, "{}: mode {m}, not {mode}", r.url);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A redis-server of the test's own on `port`, for stopping and starting.
pub struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    pub async fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        // owned at once: dropped (killed and waited for) on every path
        let me = OwnRedis { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = async {
                let c = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).ok()?;
                let mut con = c.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .ok()
            };
            if ok.await.is_some() {
                return me;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server :{port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (for a redis-server of the test's own).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
