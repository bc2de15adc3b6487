//! `powertune provider-sim`: one server that answers like OpenAI
//! (`POST /v1/chat/completions`, JSON and SSE), Anthropic (`POST /v1/messages`, JSON
//! and its SSE event sequence) and Ollama (`POST /api/chat`, JSON and NDJSON), plus
//! the model lists, with seeded latency and length distributions per model, per-key
//! RPM/TPM quotas answering 429 with each API's rate-limit headers, and fault
//! scripts. Every answer is encoded by `powertune-dialect`, the code the gateway
//! uses. `POST /control` changes latencies and faults while it runs; `GET /stats`
//! counts what it served.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use powertune_provider_sim::{ProviderSim, SimConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = ProviderSim::start(SimConfig::default(), listener).await?;
//! let base = sim.url(); // OpenAI base URL: {base}/v1
//! let served = sim.stats().totals.calls;
//! sim.shutdown().await;
//! # let _ = (base, served); Ok(()) }
//! ```

pub mod config;
pub mod control;
pub mod dist;
mod handlers;
mod headers;
mod plan;
mod quota;
pub mod script;
pub mod stats;
mod stream;

pub use config::{Faults, Flap, KeySpec, ModelSpec, Quota, SimConfig};
pub use control::Control;
pub use dist::Dist;
pub use powertune_serve::{Limits, Outcome, Shutdown};
pub use script::{Script, ToolCallScript};
pub use stats::{Counts, FaultCounts, StatsSnapshot};

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a graceful stop lets streams in flight finish, by default.
pub const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Limits(String),
    #[error("script: {0}")]
    Script(String),
    #[error("cannot listen on loopback: {0}")]
    Addr(std::io::Error),
}

/// What `/control` can change while the simulator runs.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub time_scale: f64,
    pub defaults: ModelSpec,
    pub models: BTreeMap<String, ModelSpec>,
    pub faults: Faults,
    pub quota: Quota,
    /// The standing script.
    pub script: Option<Arc<script::Scripted>>,
}

/// Shared by every handler.
#[derive(Debug)]
pub(crate) struct State {
    pub live: RwLock<Arc<Live>>,
    pub keys: HashMap<String, KeySpec>,
    pub seed: u64,
    /// Per named model: its slot number and how many requests it has had; unnamed
    /// models share slot 0 and `default_seq`.
    pub seqs: HashMap<String, (u64, AtomicU64)>,
    pub default_seq: AtomicU64,
    pub stats: stats::Stats,
    pub quotas: quota::Quotas,
    pub started: tokio::time::Instant,
    /// Scripts for the next requests, in order (at most [`script::MAX_QUEUED`]).
    pub next: Mutex<VecDeque<Arc<script::Scripted>>>,
    /// Calls per API key, by the key's hash (the key itself is not kept), for at
    /// most [`quota::MAX_KEYS`] keys.
    pub key_calls: Mutex<HashMap<u64, u64>>,
    pub key_hasher: RandomState,
    /// The path and body of the last chat request.
    pub last: Mutex<Option<(String, bytes::Bytes)>>,
}

impl State {
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read())
    }

    /// The script of the next request: a queued one, else the standing one.
    pub fn script(&self, live: &Live) -> Option<Arc<script::Scripted>> {
        self.next.lock().pop_front().or_else(|| live.script.clone())
    }

    pub fn count_key(&self, key: &str) {
        let h = self.key_hasher.hash_one(key);
        let mut m = self.key_calls.lock();
        let full = m.len() >= quota::MAX_KEYS;
        match m.get_mut(&h) {
            Some(n) => *n += 1,
            None if !full => {
                m.insert(h, 1);
            }
            None => {}
        }
    }
}

/// The simulator's entry.
pub struct ProviderSim;

impl ProviderSim {
    /// Serves `config` on `listener` in the background of the current tokio runtime,
    /// with powertune-serve's default limits and a [`DRAIN`] drain.
    pub async fn start(config: SimConfig, listener: TcpListener) -> Result<SimHandle, SimError> {
        let limits = Limits {
            drain_timeout: DRAIN,
            ..Limits::default()
        };
        ProviderSim::start_with_limits(config, listener, limits).await
    }

    /// Serves on 127.0.0.1 (a free port) with no latency (TTFT and ITL 0) and
    /// `script` as the standing script (`Script::default()`: drawn answers): the
    /// provider for a gateway's tests and overhead benchmarks.
    pub async fn instant(script: Script) -> Result<SimHandle, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(SimError::Addr)?;
        let mut config = SimConfig::default();
        config.defaults.ttft = Dist::Fixed(0.0);
        config.defaults.itl = Dist::Fixed(0.0);
        config.script = (script != Script::default()).then_some(script);
        ProviderSim::start(config, listener).await
    }

    /// As [`ProviderSim::start`], with the connection limits given.
    pub async fn start_with_limits(
        config: SimConfig,
        listener: TcpListener,
        limits: Limits,
    ) -> Result<SimHandle, SimError> {
        limits
            .validate(|f| format!("--{}", f.replace('_', "-")))
            .map_err(SimError::Limits)?;
        let addr = listener.local_addr().map_err(SimError::Addr)?;
        let script = match &config.script {
            Some(s) => Some(Arc::new(s.check().map_err(SimError::Script)?)),
            None => None,
        };
        let seqs = config
            .models
            .keys()
            .enumerate()
            .map(|(i, m)| (m.clone(), (i as u64 + 1, AtomicU64::new(0))))
            .collect();
        let state = Arc::new(State {
            live: RwLock::new(Arc::new(Live {
                time_scale: config.time_scale,
                defaults: config.defaults.clone(),
                models: config.models.clone(),
                faults: config.faults.clone(),
                quota: config.quota,
                script,
            })),
            keys: config.keys.clone(),
            seed: config.seed,
            seqs,
            default_seq: AtomicU64::new(0),
            stats: stats::Stats::default(),
            quotas: quota::Quotas::default(),
            started: tokio::time::Instant::now(),
            next: Mutex::new(VecDeque::new()),
            key_calls: Mutex::new(HashMap::new()),
            key_hasher: RandomState::new(),
            last: Mutex::new(None),
        });
        let router = handlers::router(Arc::clone(&state), config.max_body_bytes);
        let stop = Shutdown::default();
        let task =
            tokio::spawn(powertune_serve::Server::new(limits).run(listener, router, stop.clone()));
        Ok(SimHandle {
            addr,
            state,
            stop,
            task: Some(task),
        })
    }
}

/// A simulator serving in the background. Dropping it stops it at once.
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Shutdown,
    task: Option<JoinHandle<Outcome>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (the OpenAI API is under `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `GET /stats` shows.
    pub fn stats(&self) -> StatsSnapshot {
        self.state
            .stats
            .snapshot(self.state.started.elapsed().as_secs_f64())
    }

    /// What `POST /control` does.
    pub fn control(&self, c: &Control) -> Result<(), String> {
        control::apply(&self.state, c)
    }

    /// Chat requests received (every answer, errors included): `/stats`' total calls.
    pub fn calls(&self) -> u64 {
        self.stats().totals.calls
    }

    /// Chat requests that carried this API key (`x-api-key` or `Authorization:
    /// Bearer`); the simulator keeps a hash of each key, not the key.
    pub fn calls_with_key(&self, key: &str) -> u64 {
        let h = self.state.key_hasher.hash_one(key);
        self.state.key_calls.lock().get(&h).copied().unwrap_or(0)
    }

    /// The path and JSON body of the last chat request (`None` before the first, or
    /// when its body was not JSON).
    pub fn last_request(&self) -> Option<(String, serde_json::Value)> {
        let last = self.state.last.lock().clone()?;
        Some((last.0, serde_json::from_slice(&last.1).ok()?))
    }

    /// Queues a script for the next request (after those already queued).
    pub fn push(&self, s: Script) -> Result<(), String> {
        self.control(&Control {
            next: Some(vec![s]),
            ..Control::default()
        })
    }

    /// Sets the standing script (for every request no queued script is left for);
    /// `Script::default()` removes it.
    pub fn set_script(&self, s: Script) -> Result<(), String> {
        self.control(&Control {
            script: Some(s),
            ..Control::default()
        })
    }

    /// The tokens that stop the server: `graceful` drains streams in flight (up to
    /// the drain timeout), `hard` ends the drain.
    pub fn stop_tokens(&self) -> Shutdown {
        self.stop.clone()
    }

    /// Waits until the server has stopped (after a cancel of [`SimHandle::stop_tokens`]).
    pub async fn wait(mut self) -> Outcome {
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Outcome {
                drained: false,
                abandoned: 0,
            }),
            None => Outcome {
                drained: true,
                abandoned: 0,
            },
        }
    }

    /// Stops accepting, lets streams in flight finish, and waits.
    pub async fn shutdown(self) -> Outcome {
        self.stop.graceful.cancel();
        self.wait().await
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.stop.graceful.cancel();
            self.stop.hard.cancel();
        }
    }
}
