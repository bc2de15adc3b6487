//! The embedded Powernode-like target that `powertune demo`, tests and benchmarks load.
//!
//! An axum application with the runbook's hot endpoints:
//!
//! | route | what it does |
//! |---|---|
//! | `POST /api/v1/auth/login` | `{"email","password"}` → `{"token": ...}`; bad credentials → 401 |
//! | `POST /api/v1/ai/agents/{id}/execute` | needs `Authorization: Bearer <token>`; simulated agent work |
//! | `POST /api/v1/ai/missions` | needs the token; creates a mission → 201 |
//! | `GET /api/v1/ai/monitoring/dashboard` | needs the token; counts and recent missions from live state |
//! | `GET /cable` | ActionCable (`actioncable-v1-json`): welcome, pings, `MonitoringChannel` broadcasts |
//! | `GET /api/v1/cache/{key}` | read-through cache on Redis behind a bounded pool (`[redis]`) |
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /metrics` | Prometheus text: requests, latency histograms, pool, WebSockets |
//!
//! Every API request waits for and holds a slot of a bounded "database pool"
//! (a semaphore, 25 slots by default) while it sleeps its drawn query time, so under
//! overload requests queue and latency grows the way a real application's does.
//! Latencies are drawn from seeded log-normal distributions ([`Latency`]); errors
//! and delays can be injected per route ([`RouteConfig`]).
//!
//! # Library API
//!
//! ```no_run
//! # async fn demo() -> Result<(), powertune_target::TargetError> {
//! use powertune_target::{start, TargetConfig};
//! let mut config = TargetConfig::default();
//! config.pool_size = 10;
//! config.set_error_rate("execute=0.02")?;
//! let target = start(config, "127.0.0.1:0".parse().unwrap()).await?; // port 0: a free port
//! println!("serving {}", target.base_url()); // http://127.0.0.1:PORT
//! // ... load it ...
//! let stats = target.stats(); // server-side counts per route and status
//! println!("{} requests", stats.total);
//! target.shutdown().await; // graceful; WebSocket clients get a disconnect + close
//! # Ok(()) }
//! ```
//!
//! [`TargetConfig`] is also read from TOML ([`TargetConfig::load`]); see `docs/target.md`
//! for every field, the CLI flags and the metric names.

mod cable;
pub mod config;
mod error;
mod handlers;
pub mod llm;
mod metrics;
mod monitoring;
mod redis_cache;
mod rng;
pub mod route;
mod server;
mod state;
mod telemetry;

pub use config::{
    AuthConfig, CableConfig, Latency, RouteConfig, RoutesConfig, TargetConfig, UserConfig, MASK,
};
pub use error::TargetError;
pub use powertune_serve::Limits;
pub use redis_cache::RedisConfig;
pub use route::Route;
pub use server::{default_limits, start, start_with_limits, RunningTarget, ENDPOINTS};
pub use state::{CableStats, PoolStats, RouteStats, TargetStats};
pub use telemetry::TelemetryConfig;
