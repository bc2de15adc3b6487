//! The one accept loop every powertune server uses (`gateway serve`, `apm serve`,
//! `target`), so that no client can block the others:
//!
//! - a cap on concurrent connections ([`Limits::max_connections`]); beyond it new
//!   connections wait in the kernel's listen backlog until one closes. At start the
//!   process's open-files soft limit is raised to its hard limit (as Go's runtime
//!   does), and the cap is lowered, with a warning, to what that limit can hold, so
//!   the loop never runs out of descriptors and stops accepting;
//! - an HTTP/1.1 header read timeout ([`Limits::header_read_timeout`]), counted from
//!   the moment a connection is accepted and, on a kept-alive connection, from the end
//!   of the previous response — so it is also the keep-alive idle timeout (hyper has
//!   one timer for both);
//! - limits on the request head ([`Limits::max_header_bytes`], [`Limits::max_headers`]);
//!   a larger head gets `431 Request Header Fields Too Large`;
//! - a graceful drain: at [`Shutdown::graceful`] the listener closes, connections finish
//!   the request in flight (streams included) and close, for up to
//!   [`Limits::drain_timeout`]; [`Shutdown::hard`] ends the drain at once.
//!
//! Request body limits and error shapes belong to each service (they differ: OTLP's
//! `Status`, the providers' error JSON), not to this loop.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What one server allows each client. Every service documents its own defaults and
/// the configuration keys that set these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed to send a complete request head, from accept or from the end of
    /// the previous response on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    pub max_headers: usize,
    /// How long a graceful stop waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// The smallest head buffer hyper accepts.
    pub const MIN_HEADER_BYTES: usize = 8 * 1024;
    /// The largest head this loop agrees to buffer per connection.
    pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
    /// The most connections this loop agrees to hold.
    pub const MAX_CONNECTIONS: usize = 1_000_000;
    /// The longest header read timeout and drain.
    pub const MAX_WAIT: Duration = Duration::from_secs(3600);

    /// Checks every limit is one the loop can use; the error names the field (with
    /// the service's own key names supplied by `key`) and the allowed range.
    pub fn validate(&self, key: impl Fn(&'static str) -> String) -> Result<(), String> {
        if !(1..=Self::MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(format!(
                "{}: must be between 1 and {}, not {}",
                key("max_connections"),
                Self::MAX_CONNECTIONS,
                self.max_connections
            ));
        }
        if self.header_read_timeout.is_zero() || self.header_read_timeout > Self::MAX_WAIT {
            return Err(format!(
                "{}: must be more than 0 and at most 1h",
                key("header_read_timeout")
            ));
        }
        if !(Self::MIN_HEADER_BYTES..=Self::MAX_HEADER_BYTES).contains(&self.max_header_bytes) {
            return Err(format!(
                "{}: must be between 8KiB and 1MiB, not {} bytes",
                key("max_header_bytes"),
                self.max_header_bytes
            ));
        }
        if !(1..=10_000).contains(&self.max_headers) {
            return Err(format!(
                "{}: must be between 1 and 10000, not {}",
                key("max_headers"),
                self.max_headers
            ));
        }
        if self.drain_timeout > Self::MAX_WAIT {
            return Err(format!("{}: must be at most 1h", key("drain_timeout")));
        }
        Ok(())
    }
}

/// The two stages of a stop: drain, then give up on the drain.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub graceful: CancellationToken,
    pub hard: CancellationToken,
}

/// Descriptors kept back for everything that is not a client connection (log and
/// config files, the listener, database and Redis pools).
const RESERVED_FDS: u64 = 128;

/// The connections a process can hold with `open_files` descriptors: half of what is
/// left after [`RESERVED_FDS`], since a proxied call also holds an upstream socket.
pub fn connection_budget(configured: usize, open_files: u64) -> usize {
    let budget = open_files.saturating_sub(RESERVED_FDS) / 2;
    configured
        .min(usize::try_from(budget).unwrap_or(usize::MAX))
        .max(1)
}

/// Raises the open-files soft limit to the hard limit and returns the new soft limit
/// (`None` when it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft),
    }
}

/// Live counts a service can show on its status page or metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    max_connections: AtomicUsize,
    accepted: AtomicU64,
    active: AtomicUsize,
    waited_at_cap: AtomicU64,
}

impl ConnectionStats {
    /// The cap in force (after [`connection_budget`]); 0 before the server starts.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }
    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
    /// Times the loop stopped accepting because the cap was reached.
    pub fn waited_at_cap(&self) -> u64 {
        self.waited_at_cap.load(Ordering::Relaxed)
    }
}

/// How a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Every connection finished within the drain.
    pub drained: bool,
    /// Connections still open when the drain ran out or a hard stop came; closed.
    pub abandoned: usize,
}

/// A server: its limits and its live counts.
#[derive(Debug, Clone)]
pub struct Server {
    limits: Limits,
    stats: Arc<ConnectionStats>,
}

impl Server {
    pub fn new(limits: Limits) -> Server {
        Server {
            limits,
            stats: Arc::default(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> Arc<ConnectionStats> {
        Arc::clone(&self.stats)
    }

    /// Serves `router` on `listener` until `shutdown.graceful`, then drains. Handlers
    /// can extract `ConnectInfo<SocketAddr>` (the peer address). WebSocket upgrades
    /// work; an upgraded connection leaves the cap once it is handed to its handler.
    pub async fn run(self, listener: TcpListener, router: Router, shutdown: Shutdown) -> Outcome {
        let limits = self.limits;
        let stats = self.stats;
        let mut cap = limits.max_connections.max(1);
        if let Some(open_files) = raise_open_files_limit() {
            let budget = connection_budget(cap, open_files);
            if budget < cap {
                tracing::warn!(
                    configured = cap,
                    used = budget,
                    open_files,
                    "max_connections lowered to what the open-files limit can hold"
                );
                cap = budget;
            }
        }
        stats.max_connections.store(cap, Ordering::Relaxed);
        let permits = Arc::new(Semaphore::new(cap));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(Limits::MIN_HEADER_BYTES))
            .max_headers(limits.max_headers);
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            if permits.available_permits() == 0 {
                stats.waited_at_cap.fetch_add(1, Ordering::Relaxed);
            }
            let permit = tokio::select! {
                _ = shutdown.graceful.cancelled() => break,
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = shutdown.graceful.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or a connection reset before accept:
                        // wait a little rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            stats.active.fetch_add(1, Ordering::Relaxed);
            let service = router
                .clone()
                .map_request(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
            let conn = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            let graceful = shutdown.graceful.clone();
            let stats = Arc::clone(&stats);
            conns.spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let ended = tokio::select! {
                    ended = conn.as_mut() => ended,
                    _ = graceful.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                stats.active.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        drop(listener);
        let deadline = tokio::time::sleep(limits.drain_timeout);
        let mut deadline = std::pin::pin!(deadline);
        let drained = loop {
            tokio::select! {
                next = conns.join_next() => if next.is_none() { break true },
                _ = &mut deadline => break false,
                _ = shutdown.hard.cancelled() => break false,
            }
        };
        let abandoned = conns.len();
        conns.abort_all();
        while conns.join_next().await.is_some() {}
        if abandoned > 0 {
            stats.active.store(0, Ordering::Relaxed);
        }
        Outcome { drained, abandoned }
    }
}
