//! What the doctor tests share: options over the systems a test started, load that
//! plants a symptom (cache misses, retries, allocations, slow or refused LLM calls),
//! and a Vite-shaped build.
#![allow(dead_code)]

use powertune_core::targets::Systems;
use powertune_core::{Inspection, Targets};
use powertune_doctor::{DoctorMetrics, DoctorOptions};
use powertune_gateway::{Config, Gateway, TokioClock};
use powertune_provider_sim::{Control, ProviderSim, SimConfig, SimHandle};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn targets() -> Targets {
    Targets::default()
}

/// Doctor over `systems` (key, value), with a short window.
pub fn options(systems: &[(&str, &str)]) -> DoctorOptions {
    let mut s = Systems::default();
    for (k, v) in systems {
        s.set(k, v, "test").unwrap();
    }
    let mut o = DoctorOptions::new(s);
    o.timeout = Duration::from_secs(30);
    o.window = Duration::from_millis(1500);
    o
}

pub async fn doctor(systems: &[(&str, &str)]) -> Inspection<DoctorMetrics> {
    powertune_doctor::inspect(&options(systems), &targets())
        .await
        .unwrap()
}

/// GETs during the run (at most 20 s): of keys that exist (`hit`) or do not.
pub fn lookups(
    mut con: redis::aio::MultiplexedConnection,
    hit: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _: () = redis::cmd("SET")
            .arg("cache:user_profile:1")
            .arg("v")
            .query_async(&mut con)
            .await
            .unwrap();
        for i in 0..2000u32 {
            let key = if hit {
                "cache:user_profile:1".to_string()
            } else {
                format!("cache:user_profile:missing:{i}")
            };
            let _: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Makes a Redis database a Sidekiq one: processed jobs, nothing else.
pub async fn sidekiq_db(con: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("SET")
        .arg("stat:processed")
        .arg(100)
        .query_async(con)
        .await
        .unwrap();
}

/// A Sidekiq retry entry as Sidekiq's job_retry writes it.
pub fn retry_job(class: &str, jid: u32) -> String {
    serde_json::json!({
        "class": class, "queue": "ai_orchestration", "jid": format!("{jid:024x}"),
        "args": [jid], "retry": true, "retry_count": 0,
        "error_class": "Faraday::TimeoutError", "error_message": "timed out",
        "failed_at": 1_700_000_000.0, "enqueued_at": 1_700_000_000.0,
    })
    .to_string()
}

/// Failures of `class` (and one of another class) arriving in the retry set, one every
/// 100 ms (at most 60).
pub fn retries(
    mut con: redis::aio::MultiplexedConnection,
    class: &'static str,
    first: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _: () = redis::cmd("ZADD")
            .arg("retry")
            .arg(1_800_000_000.0)
            .arg(retry_job("MailerJob", 1))
            .query_async(&mut con)
            .await
            .unwrap();
        for i in 0..60u32 {
            let _: () = redis::cmd("ZADD")
                .arg("retry")
                .arg(1_800_000_000.0 + f64::from(i))
                .arg(retry_job(class, first + i + 2))
                .query_async(&mut con)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A child process killed when dropped.
pub struct Spawned(std::process::Child);

impl Spawned {
    pub fn python(script: &str) -> Spawned {
        let child = std::process::Command::new("python3")
            .args(["-c", script])
            .spawn()
            .expect("python3 on PATH");
        // let it start and allocate its interpreter
        std::thread::sleep(Duration::from_millis(300));
        Spawned(child)
    }

    /// A program that starts at once and then holds its memory still.
    pub fn still() -> Spawned {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep on PATH");
        std::thread::sleep(Duration::from_millis(200));
        Spawned(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The provider simulator with two credentials of one provider behind a gateway.
pub struct LlmEnv {
    pub sim: SimHandle,
    pub gateway_url: String,
    gw: Arc<Gateway>,
    task: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
}

impl Drop for LlmEnv {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> Option<String> {
    match name {
        "DOCTOR_KEY_A" => Some("sk-doctor-a-0001".into()),
        "DOCTOR_KEY_B" => Some("sk-doctor-b-0002".into()),
        _ => None,
    }
}

impl LlmEnv {
    /// `sim_extra`: more of the simulator's TOML (a `[quota]`).
    pub async fn start(sim_extra: &str) -> LlmEnv {
        let sim_toml = format!(
            "[defaults]\nttft = \"10ms..12ms\"\nitl = \"0ms..1ms\"\noutput_tokens = \"3..4\"\n{sim_extra}"
        );
        let cfg = SimConfig::from_toml("sim.toml", &sim_toml).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = ProviderSim::start(cfg, l).await.unwrap();
        let gw_toml = format!(
            r#"listen = "127.0.0.1:0"
[timeouts]
connect = "2s"
first_token = "5s"
idle = "5s"
request = "20s"
[retry]
base = "1ms"
max = "5ms"
max_retries = 0
[[providers]]
name = "oai"
kind = "openai"
base_url = "{}/v1"
  [[providers.credentials]]
  name = "a"
  api_key_env = "DOCTOR_KEY_A"
  [[providers.credentials]]
  name = "b"
  api_key_env = "DOCTOR_KEY_B"
[models.fast]
targets = ["oai:gpt-4o-mini"]
[routes]
latency = ["fast"]
"#,
            sim.url()
        );
        let cfg = Config::from_toml(&gw_toml, "gateway.toml", &key)
            .unwrap()
            .config;
        let gw = Gateway::new(cfg, Arc::new(TokioClock)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_url = format!("http://{}", listener.local_addr().unwrap());
        let g = gw.clone();
        let task = tokio::spawn(async move {
            let _ = g.serve(listener, Default::default()).await;
        });
        LlmEnv {
            sim,
            gateway_url,
            gw,
            task,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    /// `n` chat calls through the gateway, one after the other; returns how many
    /// answered 200.
    pub async fn calls(&self, n: u32) -> u32 {
        let mut ok = 0;
        for _ in 0..n {
            let r = self
                .client
                .post(format!("{}/v1/chat/completions", self.gateway_url))
                .json(&serde_json::json!({
                    "model": "fast",
                    "messages": [{"role": "user", "content": "say hello"}]
                }))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                ok += 1;
            }
            let _ = r.bytes().await;
        }
        ok
    }

    pub async fn save_baseline(&self, path: &Path) {
        let mut o = powertune_gateway::StatusOptions::new(self.gateway_url.clone());
        o.save_baseline = Some(path.to_path_buf());
        powertune_gateway::inspect(&o, &targets()).await.unwrap();
    }

    /// Every answer ten times slower to start.
    pub async fn slow_down(&self) {
        self.sim
            .control(&Control {
                ttft: Some("120ms..130ms".into()),
                ..Default::default()
            })
            .unwrap();
    }
}

/// Deterministic, poorly compressible text of `n` bytes.
fn noise(seed: u64, n: usize) -> String {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out = String::with_capacity(n + 32);
    out.push_str("export const data = \"");
    while out.len() < n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(&format!("{:016x}", x));
    }
    out.push_str("\";\n");
    out
}

/// A Vite build: an entry importing a vendor chunk (and, with `static_dep`, a new
/// chart chunk), and a lazy reports chunk `lazy_extra` bytes bigger than usual.
pub fn write_build(dist: &Path, static_dep: bool, lazy_extra: usize) {
    let _ = std::fs::remove_dir_all(dist);
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::create_dir_all(dist.join(".vite")).unwrap();
    let write = |f: &str, text: String| std::fs::write(dist.join(f), text).unwrap();
    write("assets/index-a1.js", noise(1, 8_000));
    write("assets/vendor-b2.js", noise(2, 40_000));
    write("assets/reports-c3.js", noise(3, 10_000 + lazy_extra));
    let mut imports = vec!["_vendor-b2.js"];
    let mut manifest = serde_json::json!({
        "_vendor-b2.js": {"file": "assets/vendor-b2.js", "name": "vendor"},
        "src/pages/reports.tsx": {"file": "assets/reports-c3.js", "src": "src/pages/reports.tsx", "isDynamicEntry": true, "name": "reports"},
    });
    if static_dep {
        write("assets/chart-d4.js", noise(4, 120_000));
        imports.push("_chart-d4.js");
        manifest["_chart-d4.js"] =
            serde_json::json!({"file": "assets/chart-d4.js", "name": "chart"});
    }
    manifest["index.html"] = serde_json::json!({
        "file": "assets/index-a1.js", "src": "index.html", "isEntry": true, "name": "index",
        "imports": imports, "dynamicImports": ["src/pages/reports.tsx"],
    });
    write(".vite/manifest.json", manifest.to_string());
}

pub fn save_bundle_baseline(dist: &Path, path: &Path) {
    let o = powertune_frontend::BundleOptions::new(dist);
    let i = powertune_frontend::bundle::inspect(&o, &targets()).unwrap();
    powertune_frontend::BundleBaseline::save(&i.metrics, path).unwrap();
}
