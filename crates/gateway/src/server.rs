//! The gateway server: front APIs on axum, upstream calls with a pooled reqwest client,
//! breaker-gated credential selection, retries and timeouts, streaming relay, and the
//! `/metrics` and `/status` endpoints.

use crate::breaker::{Admission, Breaker, Clock, RpmLimiter, WeightedPicker};
use crate::config::{Config, ProviderKind, Target};
use crate::metrics::{prometheus, CallRecord, CredentialStatus, Metrics, Outcome, StatusSnapshot};
use crate::wire::{
    parse_provider_response, parse_request, provider_error_message, provider_request,
    render_response, ApiError, ChatRequest, Chunk, DecodeError, ErrorKind, Front, StreamDecoder,
    StreamEncoder, Usage,
};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use std::future::Future;
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

struct Selector {
    picker: WeightedPicker,
    breakers: Vec<Breaker>,
    limiters: Vec<Option<RpmLimiter>>,
}

/// The running gateway: config, per-credential breakers, the upstream client, metrics.
pub struct Gateway {
    cfg: Config,
    selectors: Vec<Mutex<Selector>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    started: Instant,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("cfg", &self.cfg)
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
    provider: usize,
    cred: usize,
    model: String,
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
        {
            let mut sel = self.gw.selectors[self.provider].lock();
            let b = &mut sel.breakers[self.cred];
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
        let p = &self.gw.cfg.providers[self.provider];
        self.gw.metrics.record_call(&CallRecord {
            provider: &p.name,
            credential: &p.credentials[self.cred].name,
            model: &self.model,
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

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
    {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 86_400.0)
        .map(Duration::from_secs_f64)
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// What a committed stream needs to keep relaying.
struct Relay {
    guard: CallGuard,
    upstream: ByteStream,
    dec: StreamDecoder,
    enc: StreamEncoder,
    pending: std::collections::VecDeque<Chunk>,
    idle: Duration,
    deadline: Instant,
    finished: bool,
    provider_name: String,
}

impl Relay {
    async fn next_piece(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            let mut out = String::new();
            while let Some(c) = self.pending.pop_front() {
                match c {
                    Chunk::Delta(t) => out.push_str(&self.enc.delta(&t)),
                    Chunk::Done { finish, usage } => {
                        self.guard.usage = usage;
                        let elapsed = self.guard.started.elapsed().as_nanos() as u64;
                        out.push_str(&self.enc.finish(&finish, usage, elapsed));
                        self.guard.finish(Outcome::Ok);
                        self.finished = true;
                        self.pending.clear();
                        break;
                    }
                }
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            let now = Instant::now();
            let wait = self.idle.min(self.deadline.saturating_duration_since(now));
            let read = tokio::time::timeout(wait, self.upstream.next()).await;
            let failure = match read {
                Ok(Some(Ok(bytes))) => match self.dec.feed(&bytes) {
                    Ok(chunks) => {
                        self.pending.extend(chunks);
                        continue;
                    }
                    Err(e) => Failure::Decode(e),
                },
                Ok(Some(Err(e))) => Failure::Decode(DecodeError::Provider {
                    provider: "upstream",
                    message: format!("the stream broke: {}", short_err(&e)),
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
            let outcome = failure.outcome();
            let err = failure.api_error(&self.provider_name);
            self.guard.finish(outcome);
            self.finished = true;
            return Some(Bytes::from(self.enc.error(&err)));
        }
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
    Full(crate::wire::ChatResponse),
    Stream {
        upstream: ByteStream,
        dec: StreamDecoder,
        first: Vec<Chunk>,
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
        let now = clock.now();
        let selectors = cfg
            .providers
            .iter()
            .map(|p| {
                Mutex::new(Selector {
                    picker: WeightedPicker::default(),
                    breakers: p
                        .credentials
                        .iter()
                        .map(|_| Breaker::new(cfg.breaker.clone(), now))
                        .collect(),
                    limiters: p
                        .credentials
                        .iter()
                        .map(|c| c.rpm.map(RpmLimiter::new))
                        .collect(),
                })
            })
            .collect();
        Ok(Arc::new(Gateway {
            cfg,
            selectors,
            http,
            clock,
            metrics: Metrics::default(),
            started: Instant::now(),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
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
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(GatewayError::Serve)
    }

    /// The `/status` snapshot.
    pub fn status(&self) -> StatusSnapshot {
        let now = self.clock.now();
        let mut creds = Vec::new();
        for (pi, p) in self.cfg.providers.iter().enumerate() {
            let sel = self.selectors[pi].lock();
            for (ci, c) in p.credentials.iter().enumerate() {
                let b = &sel.breakers[ci];
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
        self.metrics
            .snapshot(self.started.elapsed().as_secs_f64(), creds)
    }

    /// The ordered targets for a request.
    fn resolve(&self, model: &str, route: Option<&str>) -> Result<Vec<Target>, ApiError> {
        let cfg = &self.cfg;
        let classes = || cfg.routes.keys().cloned().collect::<Vec<_>>().join(", ");
        if let Some(r) = route {
            return cfg.route_targets(r).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "{ROUTE_HEADER}: unknown route class {r:?}; configured: [{}]",
                        classes()
                    ),
                )
            });
        }
        if let Some(t) = cfg.route_targets(model) {
            return Ok(t);
        }
        if let Some(t) = cfg.alias(model) {
            return Ok(t.to_vec());
        }
        for (prefix, class) in &cfg.rules {
            if model.starts_with(prefix.as_str()) {
                if let Some(t) = cfg.route_targets(class) {
                    return Ok(t);
                }
            }
        }
        if let Some(t) = crate::config::parse_target(model, &cfg.providers) {
            return Ok(vec![t]);
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
    fn pick(&self, targets: &[Target], avoid: &[(usize, usize)]) -> Picked {
        let now = self.clock.now();
        let mut soonest: Option<Instant> = None;
        for pass in 0..2 {
            for (ti, t) in targets.iter().enumerate() {
                let p = &self.cfg.providers[t.provider];
                let mut sel = self.selectors[t.provider].lock();
                let mut avail: Vec<(usize, u32)> = Vec::new();
                for (ci, c) in p.credentials.iter().enumerate() {
                    if pass == 0 && avoid.contains(&(t.provider, ci)) {
                        continue;
                    }
                    let b = sel.breakers[ci].check(now);
                    let l = sel.limiters[ci].as_ref().and_then(|l| l.check(now));
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
                let n = p.credentials.len();
                if let Some(ci) = sel.picker.pick(n, &avail) {
                    let _ = sel.breakers[ci].admit(now);
                    if let Some(l) = sel.limiters[ci].as_mut() {
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

    fn upstream_request(
        &self,
        t: &Target,
        cred: usize,
        req: &ChatRequest,
    ) -> reqwest::RequestBuilder {
        let p = &self.cfg.providers[t.provider];
        let (path, body) = provider_request(p.kind, req, &t.model);
        let mut rb = self
            .http
            .post(format!("{}{}", p.base_url, path))
            .json(&body);
        let key = p.credentials[cred].key.as_ref();
        match p.kind {
            ProviderKind::Anthropic => {
                rb = rb.header("anthropic-version", "2023-06-01");
                if let Some(k) = key {
                    rb = rb.header("x-api-key", k.expose());
                }
            }
            ProviderKind::OpenAi | ProviderKind::Ollama => {
                if let Some(k) = key {
                    rb = rb.bearer_auth(k.expose());
                }
            }
        }
        rb
    }

    /// One attempt on (target, credential): until the full response (non-streaming) or
    /// until the first decoded chunk (streaming).
    async fn attempt(
        &self,
        t: &Target,
        cred: usize,
        req: &ChatRequest,
        deadline: Instant,
    ) -> Result<Success, (Failure, Option<Duration>)> {
        let kind = self.cfg.providers[t.provider].kind;
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        let first_wait = if req.stream {
            self.cfg.timeouts.first_token.min(remaining)
        } else {
            remaining
        };
        let what = if req.stream && first_wait < remaining {
            "time to first token"
        } else {
            "request timeout"
        };
        let first_deadline = now + first_wait;
        let send = self.upstream_request(t, cred, req).send();
        let resp = match tokio::time::timeout_at(first_deadline, send).await {
            Err(_) => return Err((Failure::Timeout(what), None)),
            Ok(Err(e)) if e.is_timeout() => {
                return Err((Failure::Timeout("connect timeout"), None))
            }
            Ok(Err(e)) => return Err((Failure::Connect(short_err(&e)), None)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let ra = retry_after(resp.headers());
            let body = tokio::time::timeout_at(first_deadline, read_limited(resp, 64 << 10))
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let message =
                provider_error_message(&body).unwrap_or_else(|| "(no error message)".into());
            return Err((Failure::Status { status, message }, ra));
        }
        if !req.stream {
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
            return parse_provider_response(kind, &body, &t.model)
                .map(Success::Full)
                .map_err(|e| (Failure::Decode(e), None));
        }
        let mut upstream: ByteStream = Box::pin(resp.bytes_stream());
        let mut dec = StreamDecoder::new(kind);
        loop {
            match tokio::time::timeout_at(first_deadline, upstream.next()).await {
                Err(_) => return Err((Failure::Timeout(what), None)),
                Ok(Some(Ok(b))) => match dec.feed(&b) {
                    Ok(first) if !first.is_empty() => {
                        return Ok(Success::Stream {
                            upstream,
                            dec,
                            first,
                        })
                    }
                    Ok(_) => continue,
                    Err(e) => return Err((Failure::Decode(e), None)),
                },
                Ok(Some(Err(e))) => {
                    return Err((
                        Failure::Decode(DecodeError::Provider {
                            provider: kind.as_str(),
                            message: format!("the stream broke: {}", short_err(&e)),
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

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.retry.base.as_secs_f64() * 2f64.powi(attempt as i32);
        let capped = base.min(self.cfg.retry.max.as_secs_f64());
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
        let req = match parse_request(front, &body) {
            Ok(r) => r,
            Err(e) => return error_response(front, &e, None),
        };
        let route = headers.get(ROUTE_HEADER).and_then(|v| v.to_str().ok());
        let targets = match self.resolve(&req.model, route) {
            Ok(t) => t,
            Err(e) => return error_response(front, &e, None),
        };
        let deadline = Instant::now() + self.cfg.timeouts.request;
        let mut waited = Duration::ZERO;
        let mut tried: Vec<(usize, usize)> = Vec::new();
        let mut last: Option<(Failure, String)> = None;
        let max_attempts = self.cfg.retry.max_retries + 1;
        let mut attempt = 0u32;
        let mut slept_for_attempt = false;
        loop {
            let (ti, ci) = match self.pick(&targets, &tried) {
                Picked::Go { target, cred } => (target, cred),
                Picked::None { soonest } => {
                    let now = self.clock.now();
                    let wait = soonest.map(|s| s.saturating_duration_since(now));
                    // after a failure, wait out a short Retry-After / recovery instead of giving up
                    // (once per attempt, so the loop stays bounded)
                    if attempt > 0 && !slept_for_attempt {
                        if let Some(w) = wait
                            .filter(|w| *w <= self.cfg.retry.max && Instant::now() + *w < deadline)
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
                    if let Some((f, pname)) = last {
                        // a failure just happened (e.g. 429 with a long Retry-After): report it
                        let ra = wait.filter(|w| !w.is_zero());
                        return error_response(front, &f.api_error(&pname), ra);
                    }
                    let secs = wait.map_or(1, |w| w.as_secs_f64().ceil().max(1.0) as u64);
                    let e = ApiError::new(
                        ErrorKind::Overloaded,
                        format!("every provider credential for {:?} is open or rate-limited; retry in {secs}s", req.model),
                    );
                    return error_response(front, &e, Some(Duration::from_secs(secs)));
                }
            };
            let target = &targets[ti];
            tried.push((target.provider, ci));
            let mut guard = CallGuard {
                gw: self.clone(),
                provider: target.provider,
                cred: ci,
                model: target.model.clone(),
                started: Instant::now(),
                ttft: None,
                usage: Usage::default(),
                retry_after: None,
                done: false,
            };
            let up_start = std::time::Instant::now();
            let result = self.attempt(target, ci, &req, deadline).await;
            waited += up_start.elapsed();
            let pname = self.cfg.providers[target.provider].name.clone();
            match result {
                Ok(Success::Full(resp)) => {
                    guard.usage = resp.usage;
                    guard.finish(Outcome::Ok);
                    let ov = overhead(t0, waited);
                    self.metrics.record_client_call(attempt, ov);
                    let v =
                        render_response(front, &resp, guard.started.elapsed().as_nanos() as u64);
                    let mut r = (StatusCode::OK, axum::Json(v)).into_response();
                    self.decorate(&mut r, target, ci, attempt, ov);
                    return r;
                }
                Ok(Success::Stream {
                    upstream,
                    dec,
                    first,
                }) => {
                    guard.ttft = Some(guard.started.elapsed());
                    let ov = overhead(t0, waited);
                    self.metrics.record_client_call(attempt, ov);
                    let id = match front {
                        Front::Anthropic => format!("msg_{:016x}", rand::rng().random::<u64>()),
                        _ => format!("chatcmpl-{:016x}", rand::rng().random::<u64>()),
                    };
                    let mut enc =
                        StreamEncoder::new(front, id, target.model.clone(), req.include_usage);
                    let ct = enc.content_type();
                    let mut lead = String::new();
                    lead.push_str(&enc.start(dec.input_tokens()));
                    let relay = Relay {
                        guard,
                        upstream,
                        dec,
                        enc,
                        pending: first.into(),
                        idle: self.cfg.timeouts.idle,
                        deadline,
                        finished: false,
                        provider_name: pname,
                    };
                    let lead = futures_util::stream::iter(
                        (!lead.is_empty())
                            .then(|| Ok::<Bytes, std::convert::Infallible>(Bytes::from(lead))),
                    );
                    let rest = futures_util::stream::unfold(relay, |mut r| async move {
                        r.next_piece()
                            .await
                            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), r))
                    });
                    let mut resp = Response::new(Body::from_stream(lead.chain(rest)));
                    let h = resp.headers_mut();
                    h.insert("content-type", HeaderValue::from_static(ct));
                    h.insert("cache-control", HeaderValue::from_static("no-cache"));
                    self.decorate(&mut resp, target, ci, attempt, ov);
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
                                ra.or(Some(self.cfg.breaker.rate_limit_default))
                            }
                            _ => None,
                        };
                        return error_response(front, &failure.api_error(&pname), ra);
                    }
                    last = Some((failure, pname));
                    let pause = self.backoff(attempt);
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

    fn decorate(
        &self,
        r: &mut Response,
        t: &Target,
        cred: usize,
        retries: u32,
        overhead: Duration,
    ) {
        let p = &self.cfg.providers[t.provider];
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", overhead.as_secs_f64() * 1000.0)) {
            h.insert(OVERHEAD_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&p.name) {
            h.insert("x-powertune-provider", v);
        }
        if let Ok(v) = HeaderValue::from_str(&p.credentials[cred].name) {
            h.insert("x-powertune-credential", v);
        }
        h.insert("x-powertune-retries", HeaderValue::from(retries));
    }
}

fn overhead(t0: std::time::Instant, waited: Duration) -> Duration {
    t0.elapsed().saturating_sub(waited)
}

async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut s = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.map_err(|e| format!("the response body broke off: {}", short_err(&e)))?;
        if out.len() + c.len() > limit {
            return Err(format!("the response body is larger than {limit} bytes"));
        }
        out.extend_from_slice(&c);
    }
    Ok(out)
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
