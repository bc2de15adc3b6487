//! The gateway server: front APIs on axum, upstream calls (a lean HTTP/1.1 client for
//! http:// providers, reqwest for https), breaker-gated credential selection, retries
//! and timeouts, streaming relay, and the `/metrics` and `/status` endpoints.

use crate::breaker::{Admission, Breaker, Clock, RpmLimiter, WeightedPicker};
use crate::config::{Config, ConfigError, ProviderKind, Target};
use crate::metrics::{prometheus, CallRecord, CredentialStatus, Metrics, Outcome, StatusSnapshot};
use crate::upstream::{Origin, PlainClient, PlainResponse, SendError};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::{Stream, StreamExt};
use parking_lot::{Mutex, RwLock};
use powertune_dialect::{
    check_request, has_provider_limits, parse_provider_response, parse_request,
    peek_provider_response, peek_request, provider_error_message, provider_path, provider_request,
    render_response, same_format, ApiError, ChatRequest, Chunk, DecodeError, ErrorKind, Front,
    StreamDecoder, StreamEncoder, Usage,
};
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Header a client sets to pick a route class (`latency`, `batch`, ...).
pub const ROUTE_HEADER: &str = "x-powertune-route";
/// Response header with the gateway's own time for the call, in milliseconds.
pub const OVERHEAD_HEADER: &str = "x-powertune-overhead-ms";

/// Largest provider response body read for a non-streaming call.
const MAX_UPSTREAM_BODY: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the upstream HTTP client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {source} (is another process using it? try --listen 127.0.0.1:4001)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("gateway server stopped: {0}")]
    Serve(std::io::Error),
}

/// Breaker and rpm limiter of one (provider, credential). Shared by every config
/// generation in which the pair is unchanged, so a reload keeps its state and calls
/// still in flight from before the reload land on the same breaker.
struct CredState {
    breaker: Breaker,
    limiter: Option<RpmLimiter>,
}

type Slot = Arc<Mutex<CredState>>;

struct Selector {
    picker: Mutex<WeightedPicker>,
    creds: Vec<Slot>,
}

/// One configuration generation, with everything derived from it once (so the hot
/// path formats no URLs, header values or names). A call keeps the generation it
/// started with until it ends.
struct Live {
    cfg: Arc<Config>,
    generation: u64,
    selectors: Vec<Selector>,
    /// Per provider: the chat endpoint (base URL + path), parsed once; for plain-HTTP
    /// providers also as the origin the plain client takes.
    endpoints: Vec<reqwest::Url>,
    plain: Vec<Option<Origin>>,
    /// Per provider: `x-powertune-provider`; per credential: `x-powertune-credential`
    /// and the auth header (marked sensitive).
    provider_hv: Vec<HeaderValue>,
    cred_hv: Vec<Vec<HeaderValue>>,
    auth: Vec<Vec<Option<(HeaderName, HeaderValue)>>>,
    /// Route class → targets; model alias → targets.
    classes: BTreeMap<String, Arc<[Target]>>,
    aliases: BTreeMap<String, Arc<[Target]>>,
}

/// Where a reload reads the config from: the file, and how API keys are looked up.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct ConfigSource {
    path: PathBuf,
    env: EnvLookup,
}

/// Why a reload was refused (the previous config keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file, so there is nothing to reload (start it with --config gateway.toml)")]
    NoSource,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What an accepted reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadSummary {
    pub reloaded: bool,
    /// The new config generation (1 at start).
    pub generation: u64,
    /// (provider, credential) pairs unchanged: breaker state kept.
    pub kept: usize,
    /// New or changed pairs: breaker starts closed.
    pub fresh: usize,
    /// Pairs that were disabled (401/403) and are usable again.
    pub reenabled: usize,
    /// Pairs (by provider and credential name) no longer in the config.
    pub removed: usize,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config generation {}: {} credentials kept their breaker state, {} new or changed start closed, {} re-enabled, {} removed",
            self.generation, self.kept, self.fresh, self.reenabled, self.removed
        )
    }
}

/// The running gateway: config, per-credential breakers, the upstream client, metrics.
pub struct Gateway {
    live: RwLock<Arc<Live>>,
    source: Mutex<Option<ConfigSource>>,
    http: reqwest::Client,
    plain: PlainClient,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    started: Instant,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("cfg", &self.live.read().cfg)
            .finish_non_exhaustive()
    }
}

/// Why an upstream attempt failed, before it is classified.
#[derive(Debug)]
enum Failure {
    Connect(String),
    Timeout(&'static str),
    Status { status: u16, message: String },
    Decode(DecodeError),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Failure::Connect(_) => Outcome::ConnectError,
            Failure::Timeout(_) => Outcome::Timeout,
            Failure::Status { status: 429, .. } => Outcome::RateLimited,
            Failure::Status {
                status: 401 | 403, ..
            } => Outcome::AuthFailed,
            Failure::Status { status, .. } if *status >= 500 || *status == 408 => {
                Outcome::ServerError
            }
            Failure::Status { .. } => Outcome::ClientError,
            Failure::Decode(_) => Outcome::StreamError,
        }
    }

    /// Worth another attempt (on this or another credential)?
    fn retryable(&self) -> bool {
        !matches!(self.outcome(), Outcome::ClientError)
    }

    fn api_error(&self, provider: &str) -> ApiError {
        match self {
            Failure::Connect(m) => ApiError::new(
                ErrorKind::Upstream,
                format!("cannot reach provider {provider}: {m}"),
            ),
            Failure::Timeout(what) => ApiError::new(
                ErrorKind::Timeout,
                format!("provider {provider} timed out ({what})"),
            ),
            Failure::Status {
                status, message, ..
            } => {
                let kind = match status {
                    429 => ErrorKind::RateLimited,
                    401 | 403 => ErrorKind::Upstream,
                    404 => ErrorKind::NotFound,
                    s if *s >= 500 || *s == 408 => ErrorKind::Upstream,
                    _ => ErrorKind::InvalidRequest,
                };
                ApiError::new(
                    kind,
                    format!("provider {provider} answered {status}: {message}"),
                )
            }
            Failure::Decode(e) => ApiError::new(
                match e {
                    DecodeError::Provider {
                        overloaded: true, ..
                    } => ErrorKind::Overloaded,
                    _ => ErrorKind::Upstream,
                },
                e.to_string(),
            ),
        }
    }
}

/// Owns one admitted call on (provider, credential): records its outcome on the
/// breaker and in the metrics exactly once; dropped unfinished = the client hung up.
struct CallGuard {
    gw: Arc<Gateway>,
    live: Arc<Live>,
    targets: Arc<[Target]>,
    target: usize,
    cred: usize,
    started: Instant,
    ttft: Option<Duration>,
    usage: Usage,
    retry_after: Option<Duration>,
    done: bool,
}

impl CallGuard {
    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let now = self.gw.clock.now();
        let t = &self.targets[self.target];
        {
            let mut st = self.live.selectors[t.provider].creds[self.cred].lock();
            let b = &mut st.breaker;
            match outcome {
                Outcome::Ok => b.on_success(now),
                Outcome::ServerError
                | Outcome::ConnectError
                | Outcome::Timeout
                | Outcome::StreamError => b.on_failure(now),
                Outcome::RateLimited => b.on_rate_limited(now, self.retry_after),
                Outcome::AuthFailed => b.on_auth_failure(),
                Outcome::ClientError | Outcome::ClientClosed => b.on_neutral(),
            }
        }
        let p = &self.live.cfg.providers[t.provider];
        self.gw.metrics.record_call(&CallRecord {
            provider: &p.name,
            credential: &p.credentials[self.cred].name,
            model: &t.model,
            outcome,
            total: self.started.elapsed(),
            ttft: self.ttft,
            tokens_in: self.usage.input,
            tokens_out: self.usage.output,
        });
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.finish(Outcome::ClientClosed);
    }
}

/// The wait a provider asked for: `retry-after-ms` (OpenAI's), else `retry-after` in
/// seconds.
fn retry_after(ms: Option<&str>, secs: Option<&str>) -> Option<Duration> {
    if let Some(ms) = ms.and_then(|s| s.trim().parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    secs.and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
}

/// An upstream body as a stream of data; an error item is the reason it broke off.
type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// A provider's response from either upstream client (the plain HTTP/1.1 client for
/// http://, reqwest with rustls for https://).
enum UpResponse {
    Plain(PlainResponse),
    Reqwest(reqwest::Response),
}

impl UpResponse {
    fn status(&self) -> u16 {
        match self {
            UpResponse::Plain(r) => r.status,
            UpResponse::Reqwest(r) => r.status().as_u16(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            UpResponse::Plain(r) => {
                retry_after(r.retry_after_ms.as_deref(), r.retry_after.as_deref())
            }
            UpResponse::Reqwest(r) => {
                let h = r.headers();
                let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
                retry_after(get("retry-after-ms"), get("retry-after"))
            }
        }
    }

    fn into_stream(self) -> ByteStream {
        match self {
            UpResponse::Reqwest(r) => Box::pin(
                r.bytes_stream()
                    .map(|c| c.map_err(|e| format!("the stream broke: {}", short_err(&e)))),
            ),
            UpResponse::Plain(r) => Box::pin(r.body),
        }
    }
}

/// What a committed stream needs to keep relaying.
struct Relay {
    guard: CallGuard,
    upstream: ByteStream,
    dec: StreamDecoder,
    enc: StreamEncoder,
    pending: Vec<Chunk>,
    /// A provider error decoded after the pending chunks: sent after them.
    broken: Option<Failure>,
    /// The stream's opening events, sent with the first piece.
    lead: String,
    idle: Duration,
    deadline: Instant,
    /// One timer for the whole stream, re-armed only when it fires early: a chunk
    /// costs a clock read, not a timer registration (see [`Relay::read`]).
    timer: Pin<Box<tokio::time::Sleep>>,
    finished: bool,
    provider_name: String,
}

impl Relay {
    /// The next upstream item, or `Err(())` once `limit` has passed without one; the
    /// same as `tokio::time::timeout_at(limit, upstream.next())`, but the stream's
    /// one timer is only moved (later) when it fires before `limit`.
    async fn read(&mut self, limit: Instant) -> Result<Option<Result<Bytes, String>>, ()> {
        let Relay {
            upstream, timer, ..
        } = self;
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(item) = upstream.as_mut().poll_next(cx) {
                return std::task::Poll::Ready(Ok(item));
            }
            loop {
                if timer.deadline() > limit {
                    // once: the timer starts at the request deadline, and
                    // later limits are never earlier than this first one
                    timer.as_mut().reset(limit);
                }
                match timer.as_mut().poll(cx) {
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                    std::task::Poll::Ready(()) if Instant::now() >= limit => {
                        return std::task::Poll::Ready(Err(()))
                    }
                    std::task::Poll::Ready(()) => timer.as_mut().reset(limit),
                }
            }
        })
        .await
    }

    async fn next_piece(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            // everything decoded so far goes out as one piece (one write to the client)
            let mut out = std::mem::take(&mut self.lead);
            let mut pending = std::mem::take(&mut self.pending);
            for c in pending.drain(..) {
                match c {
                    Chunk::Done { finish, usage } => {
                        self.guard.usage = usage;
                        let elapsed = self.guard.started.elapsed().as_nanos() as u64;
                        out.push_str(&self.enc.finish(&finish, usage, elapsed));
                        self.guard.finish(Outcome::Ok);
                        self.finished = true;
                        break;
                    }
                    other => self.enc.chunk_into(&mut out, &other),
                }
            }
            self.pending = pending;
            if let Some(f) = self.broken.take().filter(|_| !self.finished) {
                self.fail_into(&mut out, f);
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            if self.finished {
                return None;
            }
            let now = Instant::now();
            let wait = self.idle.min(self.deadline.saturating_duration_since(now));
            let read = self.read(now + wait).await;
            let failure = match read {
                Ok(Some(Ok(bytes))) => {
                    if let Err(e) = self.dec.feed_into(&bytes, &mut self.pending) {
                        // sent after the chunks decoded before it
                        self.broken = Some(Failure::Decode(e));
                    }
                    continue;
                }
                Ok(Some(Err(message))) => Failure::Decode(DecodeError::Provider {
                    provider: "upstream",
                    message,
                    overloaded: false,
                }),
                Ok(None) => match self.dec.end() {
                    Ok(chunks) => {
                        self.pending.extend(chunks);
                        if self.pending.is_empty() {
                            // decoder said done earlier; nothing more
                            self.finished = true;
                            self.guard.finish(Outcome::Ok);
                            return None;
                        }
                        continue;
                    }
                    Err(e) => Failure::Decode(e),
                },
                Err(_) if wait < self.idle => Failure::Timeout("request timeout"),
                Err(_) => Failure::Timeout("idle between chunks"),
            };
            let mut out = String::new();
            self.fail_into(&mut out, failure);
            return Some(Bytes::from(out));
        }
    }

    /// Ends the stream with `failure` in the client's error shape.
    fn fail_into(&mut self, out: &mut String, failure: Failure) {
        let outcome = failure.outcome();
        let err = failure.api_error(&self.provider_name);
        self.guard.finish(outcome);
        self.finished = true;
        out.push_str(&self.enc.error(&err));
    }
}

/// A reqwest error without its URL's query (and never a key: keys are headers).
fn short_err(e: &reqwest::Error) -> String {
    let mut s = if e.is_connect() {
        "connection failed".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_body() || e.is_decode() {
        "the response body broke off".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(c) = src {
        if depth == 2 {
            break;
        }
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
        depth += 1;
    }
    s
}

enum Picked {
    Go { target: usize, cred: usize },
    None { soonest: Option<Instant> },
}

/// What a successful attempt produced.
enum Success {
    Full(powertune_dialect::ChatResponse),
    /// A same-format response passed through as it came (usage read from it).
    Raw {
        body: Bytes,
        usage: Usage,
    },
    Stream {
        upstream: ByteStream,
        dec: StreamDecoder,
        first: Vec<Chunk>,
        /// The provider's error right after `first` (same read).
        broken: Option<Failure>,
    },
}

impl Gateway {
    /// Builds the gateway (no socket opens here).
    pub fn new(cfg: Config, clock: Arc<dyn Clock>) -> Result<Arc<Gateway>, GatewayError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| GatewayError::Client(e.to_string()))?;
        let plain = PlainClient::new(cfg.timeouts.connect);
        let now = clock.now();
        let live = build_live(cfg, 1, None, now)
            .map_err(GatewayError::Client)?
            .0;
        Ok(Arc::new(Gateway {
            live: RwLock::new(Arc::new(live)),
            source: Mutex::new(None),
            http,
            plain,
            clock,
            metrics: Metrics::default(),
            started: Instant::now(),
        }))
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().clone()
    }

    /// The config now in force.
    pub fn config(&self) -> Arc<Config> {
        self.live.read().cfg.clone()
    }

    /// Where [`Gateway::reload_from_source`] (SIGHUP, `POST /admin/reload`) reads the
    /// config from, and how it looks up API keys.
    pub fn set_config_source(&self, path: PathBuf, env: EnvLookup) {
        *self.source.lock() = Some(ConfigSource { path, env });
    }

    /// Swaps in a validated config. Unchanged (provider, credential) pairs (same
    /// provider name, kind and base URL; same credential name and key) keep their
    /// breaker; disabled ones are re-enabled; new or changed pairs start closed. The
    /// listen address stays (changing it needs a restart).
    pub fn reload(&self, mut cfg: Config) -> ReloadSummary {
        let mut w = self.live.write();
        let old = w.clone();
        cfg.listen = old.cfg.listen;
        let generation = old.generation + 1;
        let now = self.clock.now();
        match build_live(cfg, generation, Some(&old), now) {
            Ok((live, mut summary)) => {
                *w = Arc::new(live);
                summary.reloaded = true;
                summary
            }
            // only a header value can fail, and validation already refused those
            Err(_) => ReloadSummary::default(),
        }
    }

    /// Re-reads and validates the config file given to [`Gateway::set_config_source`]
    /// and swaps it in; a bad file changes nothing.
    pub fn reload_from_source(&self) -> Result<ReloadSummary, ReloadError> {
        let cfg = {
            let src = self.source.lock();
            let src = src.as_ref().ok_or(ReloadError::NoSource)?;
            let env = src.env.clone();
            Config::load_with(&src.path, &move |k| env(k))?
        };
        Ok(self.reload(cfg))
    }

    /// [`Gateway::reload_from_source`] with one line on standard error either way.
    pub fn reload_logged(&self, trigger: &str) -> Result<ReloadSummary, ReloadError> {
        let r = self.reload_from_source();
        match &r {
            Ok(s) => eprintln!("powertune gateway: reload ({trigger}): {s}"),
            Err(e) => eprintln!(
                "powertune gateway: reload ({trigger}) refused, still serving config generation {}: {e}",
                self.live.read().generation
            ),
        }
        r
    }

    /// Reloads on every SIGHUP (call inside the runtime).
    #[cfg(unix)]
    pub fn spawn_sighup_reloader(self: &Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let gw = self.clone();
        Ok(tokio::spawn(async move {
            while sig.recv().await.is_some() {
                let _ = gw.reload_logged("SIGHUP");
            }
        }))
    }

    /// The axum router with every endpoint.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(openai_chat))
            .route("/v1/messages", post(anthropic_messages))
            .route("/api/chat", post(ollama_chat))
            .route("/v1/models", get(models))
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .route("/admin/reload", post(admin_reload))
            .route("/health", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(16 << 20))
            .with_state(self.clone())
    }

    /// Binds `addr`; a taken port is a [`GatewayError::Bind`] naming it.
    pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, GatewayError> {
        TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: addr.to_string(),
                source,
            })
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let app = self.router();
        // TCP_NODELAY: a relayed stream is many small writes; with Nagle each one after
        // the first would wait for the client's delayed ACK (~40 ms)
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(GatewayError::Serve)
    }

    /// The `/status` snapshot.
    pub fn status(&self) -> StatusSnapshot {
        let now = self.clock.now();
        let live = self.live();
        let mut creds = Vec::new();
        for (pi, p) in live.cfg.providers.iter().enumerate() {
            for (ci, c) in p.credentials.iter().enumerate() {
                let st = live.selectors[pi].creds[ci].lock();
                let b = &st.breaker;
                let state = b.state(now);
                creds.push(CredentialStatus {
                    provider: p.name.clone(),
                    credential: c.name.clone(),
                    state: state.as_str().to_string(),
                    open_for_s: b
                        .open_until()
                        .filter(|u| *u > now)
                        .map(|u| u.duration_since(now).as_secs_f64()),
                    consecutive_failures: b.consecutive_failures(),
                    trips: b.trips,
                    transitions: b.transitions,
                    weight: c.weight,
                    rpm: c.rpm,
                });
            }
        }
        let mut s = self
            .metrics
            .snapshot(self.started.elapsed().as_secs_f64(), creds);
        s.config_generation = live.generation;
        s
    }

    /// The ordered targets for a request.
    fn resolve(
        &self,
        live: &Live,
        model: &str,
        route: Option<&str>,
    ) -> Result<Arc<[Target]>, ApiError> {
        let cfg = &live.cfg;
        let classes = || cfg.routes.keys().cloned().collect::<Vec<_>>().join(", ");
        if let Some(r) = route {
            return live.classes.get(r).cloned().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "{ROUTE_HEADER}: unknown route class {r:?}; configured: [{}]",
                        classes()
                    ),
                )
            });
        }
        if let Some(t) = live.classes.get(model) {
            return Ok(t.clone());
        }
        if let Some(t) = live.aliases.get(model) {
            return Ok(t.clone());
        }
        for (prefix, class) in &cfg.rules {
            if model.starts_with(prefix.as_str()) {
                if let Some(t) = live.classes.get(class) {
                    return Ok(t.clone());
                }
            }
        }
        if let Some(t) = crate::config::parse_target(model, &cfg.providers) {
            return Ok(Arc::from(vec![t]));
        }
        Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "model {model:?} is not configured; use an alias [{}], a route class [{}] or \"provider:model\"",
                cfg.models.keys().cloned().collect::<Vec<_>>().join(", "),
                classes()
            ),
        ))
    }

    /// Chooses (target, credential) among `targets` in order: the first target whose
    /// provider has an available credential (breaker admits, rpm allows), weighted.
    /// Credentials in `avoid` are used only if nothing else is available.
    fn pick(&self, live: &Live, targets: &[Target], avoid: &[(usize, usize)]) -> Picked {
        let now = self.clock.now();
        let mut soonest: Option<Instant> = None;
        let mut avail: Vec<(usize, u32)> = Vec::new();
        for pass in 0..2 {
            for (ti, t) in targets.iter().enumerate() {
                let p = &live.cfg.providers[t.provider];
                let sel = &live.selectors[t.provider];
                let mut picker = sel.picker.lock();
                avail.clear();
                for (ci, c) in p.credentials.iter().enumerate() {
                    if pass == 0 && avoid.contains(&(t.provider, ci)) {
                        continue;
                    }
                    let (b, l) = {
                        let st = sel.creds[ci].lock();
                        (
                            st.breaker.check(now),
                            st.limiter.as_ref().and_then(|l| l.check(now)),
                        )
                    };
                    match (b, l) {
                        (Admission::Go { .. }, None) => avail.push((ci, c.weight)),
                        (Admission::Never, _) => {}
                        (a, l) => {
                            let b_until = match a {
                                Admission::Wait { until } => until,
                                _ => now,
                            };
                            let ready = l.map_or(b_until, |l| l.max(b_until));
                            soonest = Some(soonest.map_or(ready, |s| s.min(ready)));
                        }
                    }
                }
                if let Some(ci) = picker.pick(p.credentials.len(), &avail) {
                    let mut st = sel.creds[ci].lock();
                    let _ = st.breaker.admit(now);
                    if let Some(l) = st.limiter.as_mut() {
                        l.take(now);
                    }
                    return Picked::Go {
                        target: ti,
                        cred: ci,
                    };
                }
            }
            if avoid.is_empty() {
                break;
            }
        }
        Picked::None { soonest }
    }

    /// Sends the chat request to (provider, credential): the plain HTTP/1.1 client
    /// ([`crate::upstream`]) for http:// providers, reqwest (rustls) for https.
    async fn send(
        &self,
        live: &Live,
        provider: usize,
        cred: usize,
        body: Vec<u8>,
    ) -> Result<UpResponse, SendError> {
        let anthropic = live.cfg.providers[provider].kind == ProviderKind::Anthropic;
        let auth = &live.auth[provider][cred];
        if let Some(origin) = &live.plain[provider] {
            let mut h: [(&[u8], &[u8]); 3] = [(b"content-type", b"application/json"); 3];
            let mut n = 1;
            if anthropic {
                h[n] = (b"anthropic-version", b"2023-06-01");
                n += 1;
            }
            if let Some((name, value)) = auth {
                h[n] = (name.as_str().as_bytes(), value.as_bytes());
                n += 1;
            }
            return self
                .plain
                .post(origin, &h[..n], &body)
                .await
                .map(UpResponse::Plain);
        }
        let mut rb = self
            .http
            .post(live.endpoints[provider].clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        if anthropic {
            rb = rb.header("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        if let Some((name, value)) = auth {
            rb = rb.header(name.clone(), value.clone());
        }
        match rb.send().await {
            Ok(r) => Ok(UpResponse::Reqwest(r)),
            Err(e) if e.is_timeout() => Err(SendError::ConnectTimeout),
            Err(e) => Err(SendError::Failed(short_err(&e))),
        }
    }

    /// One attempt on (target, credential): until the full response (non-streaming) or
    /// until the first decoded chunk (streaming). `pass` = the body is in the client's
    /// own format and the response passes through.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        live: &Live,
        t: &Target,
        cred: usize,
        body: Vec<u8>,
        stream: bool,
        pass: bool,
        deadline: Instant,
    ) -> Result<Success, (Failure, Option<Duration>)> {
        let kind = live.cfg.providers[t.provider].kind;
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let first_wait = if stream {
            self.cfg_first_token(live).min(remaining)
        } else {
            remaining
        };
        let what = if stream && first_wait < remaining {
            "time to first token"
        } else {
            "request timeout"
        };
        let first_deadline = now + first_wait;
        let send = self.send(live, t.provider, cred, body);
        let resp = match tokio::time::timeout_at(first_deadline, send).await {
            Err(_) => return Err((Failure::Timeout(what), None)),
            Ok(Err(SendError::ConnectTimeout)) => {
                return Err((Failure::Timeout("connect timeout"), None))
            }
            Ok(Err(SendError::Failed(m))) => return Err((Failure::Connect(m), None)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !(200..300).contains(&status) {
            let ra = resp.retry_after();
            let body = tokio::time::timeout_at(first_deadline, read_limited(resp, 64 << 10))
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let message =
                provider_error_message(&body).unwrap_or_else(|| "(no error message)".into());
            return Err((Failure::Status { status, message }, ra));
        }
        if !stream {
            let body = match tokio::time::timeout_at(
                deadline,
                read_limited(resp, MAX_UPSTREAM_BODY),
            )
            .await
            {
                Err(_) => return Err((Failure::Timeout("request timeout"), None)),
                Ok(Err(e)) => {
                    return Err((
                        Failure::Decode(DecodeError::Provider {
                            provider: kind.as_str(),
                            message: e,
                            overloaded: false,
                        }),
                        None,
                    ))
                }
                Ok(Ok(b)) => b,
            };
            if pass {
                return peek_provider_response(kind, &body)
                    .map(|usage| Success::Raw { body, usage })
                    .map_err(|e| (Failure::Decode(e), None));
            }
            return parse_provider_response(kind, &body, &t.model)
                .map(Success::Full)
                .map_err(|e| (Failure::Decode(e), None));
        }
        let mut upstream: ByteStream = resp.into_stream();
        let mut dec = StreamDecoder::new(kind);
        let mut first = Vec::new();
        loop {
            match tokio::time::timeout_at(first_deadline, upstream.next()).await {
                Err(_) => return Err((Failure::Timeout(what), None)),
                Ok(Some(Ok(b))) => {
                    let fed = dec.feed_into(&b, &mut first);
                    match fed {
                        Err(e) if first.is_empty() => return Err((Failure::Decode(e), None)),
                        Ok(()) if first.is_empty() => continue,
                        // content decoded: the stream is committed, a provider error
                        // after it goes to the client after that content
                        _ => {
                            return Ok(Success::Stream {
                                upstream,
                                dec,
                                first,
                                broken: fed.err().map(Failure::Decode),
                            })
                        }
                    }
                }
                Ok(Some(Err(message))) => {
                    return Err((
                        Failure::Decode(DecodeError::Provider {
                            provider: kind.as_str(),
                            message,
                            overloaded: false,
                        }),
                        None,
                    ))
                }
                Ok(None) => match dec.end() {
                    Ok(first) if !first.is_empty() => {
                        return Ok(Success::Stream {
                            upstream,
                            dec,
                            first,
                            broken: None,
                        })
                    }
                    Ok(_) => {
                        return Err((
                            Failure::Decode(DecodeError::Provider {
                                provider: kind.as_str(),
                                message: "the stream ended without content".into(),
                                overloaded: false,
                            }),
                            None,
                        ))
                    }
                    Err(e) => return Err((Failure::Decode(e), None)),
                },
            }
        }
    }

    fn cfg_first_token(&self, live: &Live) -> Duration {
        live.cfg.timeouts.first_token
    }

    fn backoff(&self, live: &Live, attempt: u32) -> Duration {
        let r = &live.cfg.retry;
        let base = r.base.as_secs_f64() * 2f64.powi(attempt as i32);
        let capped = base.min(r.max.as_secs_f64());
        if capped <= 0.0 {
            return Duration::ZERO;
        }
        // "equal jitter": half fixed, half random
        let j = rand::rng().random_range(0.0..=capped / 2.0);
        Duration::from_secs_f64(capped / 2.0 + j)
    }

    /// Handles one chat call for `front`.
    async fn chat(self: Arc<Self>, front: Front, headers: HeaderMap, body: Bytes) -> Response {
        let t0 = std::time::Instant::now();
        let live = self.live();
        // the plain case is read without a DOM; anything else goes to the full parser
        let mut raw = peek_request(front, &body);
        let mut canon: Option<ChatRequest> = None;
        if raw.is_none() {
            match parse_request(front, &body) {
                Ok(r) => canon = Some(r),
                Err(e) => return error_response(front, &e, None),
            }
        }
        let (model, stream, include_usage) = match (&mut raw, &canon) {
            (Some(r), _) => (std::mem::take(&mut r.model), r.stream, r.include_usage),
            (None, Some(c)) => (c.model.clone(), c.stream, c.include_usage),
            (None, None) => return internal_error(front),
        };
        let route = headers.get(ROUTE_HEADER).and_then(|v| v.to_str().ok());
        let targets = match self.resolve(&live, &model, route) {
            Ok(t) => t,
            Err(e) => return error_response(front, &e, None),
        };
        // a target in another wire format needs the canonical request
        if canon.is_none()
            && targets
                .iter()
                .any(|t| !same_format(front, live.cfg.providers[t.provider].kind))
        {
            match parse_request(front, &body) {
                Ok(r) => canon = Some(r),
                Err(e) => return error_response(front, &e, None),
            }
        }
        // images and forced tool calls go only to targets whose format can carry them
        // (Ollama: base64 images only, no tool_choice)
        let targets = match &canon {
            Some(c) if has_provider_limits(c) => {
                let mut refused = None;
                let kept: Vec<Target> = targets
                    .iter()
                    .filter(|t| {
                        let kind = live.cfg.providers[t.provider].kind;
                        if raw.is_some() && same_format(front, kind) {
                            return true; // passed through as sent
                        }
                        match check_request(kind, c) {
                            Ok(()) => true,
                            Err(e) => {
                                refused.get_or_insert(e);
                                false
                            }
                        }
                    })
                    .cloned()
                    .collect();
                match refused {
                    Some(e) if kept.is_empty() => return error_response(front, &e, None),
                    Some(_) => kept.into(),
                    None => targets,
                }
            }
            _ => targets,
        };
        let deadline = Instant::now() + live.cfg.timeouts.request;
        let mut waited = Duration::ZERO;
        let mut tried = [(usize::MAX, usize::MAX); 3];
        let mut n_tried = 0usize;
        let mut last: Option<(Failure, usize)> = None;
        let max_attempts = live.cfg.retry.max_retries + 1;
        let mut attempt = 0u32;
        let mut slept_for_attempt = false;
        loop {
            let (ti, ci) = match self.pick(&live, &targets, &tried[..n_tried]) {
                Picked::Go { target, cred } => (target, cred),
                Picked::None { soonest } => {
                    let now = self.clock.now();
                    let wait = soonest.map(|s| s.saturating_duration_since(now));
                    // after a failure, wait out a short Retry-After / recovery instead of giving up
                    // (once per attempt, so the loop stays bounded)
                    if attempt > 0 && !slept_for_attempt {
                        if let Some(w) = wait
                            .filter(|w| *w <= live.cfg.retry.max && Instant::now() + *w < deadline)
                        {
                            let s = std::time::Instant::now();
                            tokio::time::sleep(w).await;
                            waited += s.elapsed();
                            slept_for_attempt = true;
                            continue;
                        }
                    }
                    self.metrics.record_all_open();
                    self.metrics
                        .record_client_call(attempt.saturating_sub(1), overhead(t0, waited));
                    if let Some((f, pi)) = last {
                        // a failure just happened (e.g. 429 with a long Retry-After): report it
                        let ra = wait.filter(|w| !w.is_zero());
                        return error_response(
                            front,
                            &f.api_error(&live.cfg.providers[pi].name),
                            ra,
                        );
                    }
                    let secs = wait.map_or(1, |w| w.as_secs_f64().ceil().max(1.0) as u64);
                    let e = ApiError::new(
                        ErrorKind::Overloaded,
                        format!("every provider credential for {model:?} is open or rate-limited; retry in {secs}s"),
                    );
                    return error_response(front, &e, Some(Duration::from_secs(secs)));
                }
            };
            let target = &targets[ti];
            if n_tried < tried.len() {
                tried[n_tried] = (target.provider, ci);
                n_tried += 1;
            }
            let kind = live.cfg.providers[target.provider].kind;
            let pass = same_format(front, kind);
            let up_body = match (&raw, &canon) {
                (Some(r), _) if pass => r.upstream_body(kind, &target.model),
                // targets that cannot carry the request were left out above
                (_, Some(c)) => match provider_request(kind, c, &target.model) {
                    Ok((_, v)) => serde_json::to_vec(&v).unwrap_or_default(),
                    Err(e) => return error_response(front, &e, None),
                },
                _ => return internal_error(front),
            };
            let pass = pass && raw.is_some();
            let mut guard = CallGuard {
                gw: self.clone(),
                live: live.clone(),
                targets: targets.clone(),
                target: ti,
                cred: ci,
                started: Instant::now(),
                ttft: None,
                usage: Usage::default(),
                retry_after: None,
                done: false,
            };
            let up_start = std::time::Instant::now();
            let result = self
                .attempt(&live, target, ci, up_body, stream, pass, deadline)
                .await;
            waited += up_start.elapsed();
            match result {
                Ok(Success::Raw { body, usage }) => {
                    guard.usage = usage;
                    guard.finish(Outcome::Ok);
                    let ov = overhead(t0, waited);
                    self.metrics.record_client_call(attempt, ov);
                    let mut r = Response::new(Body::from(body));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    decorate(&live, &mut r, target.provider, ci, attempt, ov);
                    return r;
                }
                Ok(Success::Full(resp)) => {
                    guard.usage = resp.usage;
                    guard.finish(Outcome::Ok);
                    let ov = overhead(t0, waited);
                    self.metrics.record_client_call(attempt, ov);
                    let v =
                        render_response(front, &resp, guard.started.elapsed().as_nanos() as u64);
                    let mut r = (StatusCode::OK, axum::Json(v)).into_response();
                    decorate(&live, &mut r, target.provider, ci, attempt, ov);
                    return r;
                }
                Ok(Success::Stream {
                    upstream,
                    dec,
                    first,
                    broken,
                }) => {
                    guard.ttft = Some(guard.started.elapsed());
                    let ov = overhead(t0, waited);
                    self.metrics.record_client_call(attempt, ov);
                    let id = match front {
                        Front::Anthropic => format!("msg_{:016x}", rand::rng().random::<u64>()),
                        _ => format!("chatcmpl-{:016x}", rand::rng().random::<u64>()),
                    };
                    let mut enc =
                        StreamEncoder::new(front, id, target.model.clone(), include_usage);
                    let ct = enc.content_type();
                    let mut lead = String::new();
                    lead.push_str(&enc.start(dec.input_tokens()));
                    let relay = Relay {
                        guard,
                        upstream,
                        dec,
                        enc,
                        pending: first,
                        broken,
                        lead,
                        idle: live.cfg.timeouts.idle,
                        deadline,
                        timer: Box::pin(tokio::time::sleep_until(deadline)),
                        finished: false,
                        provider_name: live.cfg.providers[target.provider].name.clone(),
                    };
                    let rest = futures_util::stream::unfold(relay, |mut r| async move {
                        r.next_piece()
                            .await
                            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), r))
                    });
                    let mut resp = Response::new(Body::from_stream(rest));
                    let h = resp.headers_mut();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
                    h.insert("cache-control", HeaderValue::from_static("no-cache"));
                    decorate(&live, &mut resp, target.provider, ci, attempt, ov);
                    return resp;
                }
                Err((failure, ra)) => {
                    guard.retry_after = ra;
                    let outcome = failure.outcome();
                    guard.finish(outcome);
                    drop(guard);
                    let retry = failure.retryable()
                        && attempt + 1 < max_attempts
                        && Instant::now() < deadline;
                    if !retry {
                        self.metrics
                            .record_client_call(attempt, overhead(t0, waited));
                        let ra = match outcome {
                            Outcome::RateLimited => {
                                ra.or(Some(live.cfg.breaker.rate_limit_default))
                            }
                            _ => None,
                        };
                        return error_response(
                            front,
                            &failure.api_error(&live.cfg.providers[target.provider].name),
                            ra,
                        );
                    }
                    last = Some((failure, target.provider));
                    let pause = self.backoff(&live, attempt);
                    if !pause.is_zero() {
                        let s = std::time::Instant::now();
                        tokio::time::sleep(
                            pause.min(deadline.saturating_duration_since(Instant::now())),
                        )
                        .await;
                        waited += s.elapsed();
                    }
                    attempt += 1;
                    slept_for_attempt = false;
                }
            }
        }
    }
}

/// Builds a config generation; with `old`, unchanged (provider, credential) pairs
/// share their breaker slot with it.
fn build_live(
    cfg: Config,
    generation: u64,
    old: Option<&Live>,
    now: Instant,
) -> Result<(Live, ReloadSummary), String> {
    let mut summary = ReloadSummary {
        generation,
        ..Default::default()
    };
    let mut selectors = Vec::new();
    let mut endpoints = Vec::new();
    let mut plain = Vec::new();
    let mut provider_hv = Vec::new();
    let mut cred_hv = Vec::new();
    let mut auth = Vec::new();
    for p in &cfg.providers {
        let url = format!("{}{}", p.base_url, provider_path(p.kind));
        let parsed = reqwest::Url::parse(&url).map_err(|e| format!("provider {}: {e}", p.name))?;
        plain.push(if parsed.scheme() == "http" {
            Some(Origin::new(&parsed).map_err(|e| format!("provider {}: {e}", p.name))?)
        } else {
            None
        });
        endpoints.push(parsed);
        provider_hv
            .push(HeaderValue::from_str(&p.name).map_err(|e| format!("provider {}: {e}", p.name))?);
        let old_p = old.and_then(|o| {
            o.cfg
                .providers
                .iter()
                .position(|q| q.name == p.name && q.kind == p.kind && q.base_url == p.base_url)
                .map(|pi| (o, pi))
        });
        let mut slots = Vec::new();
        let mut hvs = Vec::new();
        let mut auths = Vec::new();
        for c in &p.credentials {
            hvs.push(
                HeaderValue::from_str(&c.name)
                    .map_err(|e| format!("credential {}: {e}", c.name))?,
            );
            auths.push(match &c.key {
                None => None,
                Some(k) => {
                    let (name, value) = match p.kind {
                        ProviderKind::Anthropic => (
                            HeaderName::from_static("x-api-key"),
                            HeaderValue::from_str(k.expose()),
                        ),
                        _ => (
                            AUTHORIZATION,
                            HeaderValue::from_str(&format!("Bearer {}", k.expose())),
                        ),
                    };
                    // the error text never carries the key
                    let mut value = value.map_err(|_| {
                        format!(
                            "the API key of credential {} is not a valid header value",
                            c.name
                        )
                    })?;
                    value.set_sensitive(true);
                    Some((name, value))
                }
            });
            let reuse = old_p.and_then(|(o, pi)| {
                o.cfg.providers[pi]
                    .credentials
                    .iter()
                    .position(|d| d.name == c.name && d.key == c.key)
                    .map(|ci| {
                        (
                            o.cfg.providers[pi].credentials[ci].rpm,
                            o.selectors[pi].creds[ci].clone(),
                        )
                    })
            });
            let slot = match reuse {
                Some((old_rpm, slot)) => {
                    {
                        let mut st = slot.lock();
                        st.breaker.set_config(cfg.breaker.clone());
                        if st.breaker.reenable() {
                            summary.reenabled += 1;
                        }
                        if old_rpm != c.rpm {
                            st.limiter = c.rpm.map(RpmLimiter::new);
                        }
                    }
                    summary.kept += 1;
                    slot
                }
                None => {
                    if old.is_some() {
                        summary.fresh += 1;
                    }
                    Arc::new(Mutex::new(CredState {
                        breaker: Breaker::new(cfg.breaker.clone(), now),
                        limiter: c.rpm.map(RpmLimiter::new),
                    }))
                }
            };
            slots.push(slot);
        }
        selectors.push(Selector {
            picker: Mutex::new(WeightedPicker::default()),
            creds: slots,
        });
        cred_hv.push(hvs);
        auth.push(auths);
    }
    if let Some(o) = old {
        summary.removed = o
            .cfg
            .providers
            .iter()
            .flat_map(|p| p.credentials.iter().map(move |c| (p, c)))
            .filter(|(p, c)| {
                !cfg.providers
                    .iter()
                    .any(|q| q.name == p.name && q.credentials.iter().any(|d| d.name == c.name))
            })
            .count();
    }
    let mut classes = BTreeMap::new();
    for class in cfg.routes.keys() {
        if let Some(t) = cfg.route_targets(class) {
            classes.insert(class.clone(), Arc::from(t));
        }
    }
    let aliases = cfg
        .models
        .iter()
        .map(|(a, t)| (a.clone(), Arc::from(t.clone())))
        .collect();
    Ok((
        Live {
            cfg: Arc::new(cfg),
            generation,
            selectors,
            endpoints,
            plain,
            provider_hv,
            cred_hv,
            auth,
            classes,
            aliases,
        },
        summary,
    ))
}

fn decorate(
    live: &Live,
    r: &mut Response,
    provider: usize,
    cred: usize,
    retries: u32,
    overhead: Duration,
) {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_bytes(millis_text(overhead, &mut [0u8; 24])) {
        h.insert(OVERHEAD_HEADER, v);
    }
    h.insert("x-powertune-provider", live.provider_hv[provider].clone());
    h.insert(
        "x-powertune-credential",
        live.cred_hv[provider][cred].clone(),
    );
    h.insert("x-powertune-retries", HeaderValue::from(retries));
}

/// `d` in milliseconds with three decimals ("0.042"), written without float formatting.
fn millis_text(d: Duration, buf: &mut [u8; 24]) -> &[u8] {
    let us = d.as_micros().min(u64::MAX as u128) as u64;
    let (mut ms, frac) = (us / 1000, us % 1000);
    let mut i = buf.len();
    for k in 0..3 {
        i -= 1;
        buf[i] = b'0' + ((frac / 10u64.pow(k)) % 10) as u8;
    }
    i -= 1;
    buf[i] = b'.';
    loop {
        i -= 1;
        buf[i] = b'0' + (ms % 10) as u8;
        ms /= 10;
        if ms == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

fn internal_error(front: Front) -> Response {
    error_response(
        front,
        &ApiError::new(
            ErrorKind::Upstream,
            "the gateway lost the parsed request (a bug; please report it)",
        ),
        None,
    )
}

fn overhead(t0: std::time::Instant, waited: Duration) -> Duration {
    t0.elapsed().saturating_sub(waited)
}

async fn read_limited(resp: UpResponse, limit: usize) -> Result<Bytes, String> {
    let too_large = || format!("the response body is larger than {limit} bytes");
    let resp = match resp {
        UpResponse::Plain(r) => {
            if r.content_length.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let mut body = r.body;
            let mut out: Vec<u8> = Vec::with_capacity(r.content_length.unwrap_or(0) as usize);
            while let Some(piece) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
                let piece = piece.map_err(|e| format!("the response body broke off: {e}"))?;
                if out.len() + piece.len() > limit {
                    return Err(too_large());
                }
                if out.is_empty() {
                    out = piece;
                } else {
                    out.extend_from_slice(&piece);
                }
            }
            return Ok(Bytes::from(out));
        }
        UpResponse::Reqwest(r) => r,
    };
    if resp.content_length().is_some_and(|n| n as usize <= limit) {
        // one read of a body whose size is known and allowed
        return resp
            .bytes()
            .await
            .map_err(|e| format!("the response body broke off: {}", short_err(&e)));
    }
    let mut s = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| format!("the response body broke off: {}", short_err(&e)))?;
        if out.len() + c.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&c);
    }
    Ok(Bytes::from(out))
}

fn error_response(front: Front, e: &ApiError, retry_after: Option<Duration>) -> Response {
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = (status, axum::Json(e.body(front))).into_response();
    if let Some(ra) = retry_after {
        let secs = ra.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    r
}

async fn openai_chat(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    gw.chat(Front::OpenAi, headers, body).await
}

async fn anthropic_messages(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gw.chat(Front::Anthropic, headers, body).await
}

async fn ollama_chat(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    gw.chat(Front::Ollama, headers, body).await
}

async fn models(State(gw): State<Arc<Gateway>>) -> Response {
    let cfg = gw.config();
    let mut ids: Vec<String> = cfg.models.keys().cloned().collect();
    ids.extend(
        cfg.routes
            .keys()
            .filter(|k| !cfg.models.contains_key(*k))
            .cloned(),
    );
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "powertune"}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let text = prometheus(&gw.status());
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(gw): State<Arc<Gateway>>) -> Response {
    axum::Json(gw.status()).into_response()
}

/// May `peer` ask for a reload? Loopback always; others only with `allow_remote`.
fn reload_allowed(peer: std::net::IpAddr, allow_remote: bool) -> bool {
    allow_remote || peer.to_canonical().is_loopback()
}

/// `POST /admin/reload`: re-read the config file (loopback peers only unless
/// `[admin] allow_remote = true`).
async fn admin_reload(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !reload_allowed(peer.ip(), gw.config().admin_allow_remote) {
        let body = serde_json::json!({"reloaded": false, "error": format!(
            "POST /admin/reload is accepted from loopback only (you are {}); set [admin] allow_remote = true to allow other peers",
            peer.ip()
        )});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    match gw.reload_logged("POST /admin/reload") {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => {
            let body = serde_json::json!({"reloaded": false, "error": e.to_string()});
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_header_text() {
        for (us, want) in [
            (0, "0.000"),
            (42, "0.042"),
            (1_234, "1.234"),
            (987_654_321, "987654.321"),
        ] {
            let mut buf = [0u8; 24];
            let got = millis_text(Duration::from_micros(us), &mut buf);
            assert_eq!(std::str::from_utf8(got).unwrap(), want);
        }
    }

    #[test]
    fn reload_is_loopback_only_unless_allowed() {
        for (ip, remote, want) in [
            ("127.0.0.1", false, true),
            ("::1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("10.0.0.7", false, false),
            ("2001:db8::1", false, false),
            ("10.0.0.7", true, true),
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(
                reload_allowed(ip, remote),
                want,
                "{ip} allow_remote={remote}"
            );
        }
    }
}
