//! The target's live state: the database pool, request counters and latency
//! buckets, login tokens, missions and agent executions, WebSocket gauges. All of it
//! is bounded by configuration (fixed route set, fixed buckets, capped stores).

use crate::config::{RouteConfig, Settings};
use crate::rng::SplitMix;
use crate::route::Route;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Semaphore, SemaphorePermit};

/// Upper bounds (seconds) of the latency histogram buckets; they include the
/// runbook's P95 targets and maximums (100, 150, 200, 250, 300, 400, 500 ms, 1 s,
/// 30 s, 60 s).
pub const BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500; // 100..=599

/// A Prometheus-style histogram with fixed buckets; lock-free.
#[derive(Debug)]
pub struct Buckets {
    counts: [AtomicU64; BUCKETS.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Buckets {
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (Prometheus `le` semantics), sum in seconds, count.
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        let mut acc = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                acc += c.load(Ordering::Relaxed);
                acc
            })
            .collect();
        (
            cumulative,
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Per-route counters.
#[derive(Debug)]
pub struct RouteMetrics {
    statuses: Box<[AtomicU64]>,
    pub latency: Buckets,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics {
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            latency: Buckets::default(),
        }
    }
}

impl RouteMetrics {
    pub fn record(&self, status: u16, d: Duration) {
        let slot = status.clamp(STATUS_MIN, 599) - STATUS_MIN;
        self.statuses[slot as usize].fetch_add(1, Ordering::Relaxed);
        self.latency.record(d);
    }

    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        self.statuses
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((i as u16 + STATUS_MIN, n))
            })
            .collect()
    }
}

/// Server-side counters, as returned by [`crate::RunningTarget::stats`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetStats {
    /// Requests answered, every route except `/metrics`.
    pub total: u64,
    /// Per route label (`/api/v1/auth/login`, ...): counts by status.
    pub routes: BTreeMap<&'static str, RouteStats>,
    pub pool: PoolStats,
    pub cable: CableStats,
    pub missions_total: u64,
    pub executions_total: u64,
    pub active_tokens: usize,
}

impl TargetStats {
    /// Requests on `route` answered with `status`.
    pub fn count(&self, route: Route, status: u16) -> u64 {
        self.routes
            .get(route.label())
            .and_then(|r| r.by_status.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Requests on `route`, any status.
    pub fn route_total(&self, route: Route) -> u64 {
        self.routes.get(route.label()).map(|r| r.total).unwrap_or(0)
    }
}

/// Counts of one route.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteStats {
    pub total: u64,
    pub by_status: BTreeMap<u16, u64>,
}

/// The simulated database pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolStats {
    pub size: usize,
    pub in_use: usize,
    /// Requests waiting for a slot now.
    pub waiting: u64,
    /// The most requests ever waiting at once.
    pub waiting_max: u64,
    /// Requests that gave up waiting (answered 503).
    pub timeouts: u64,
    /// Slot acquisitions.
    pub acquired: u64,
}

/// The ActionCable endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CableStats {
    /// Open WebSocket connections now.
    pub connections: u64,
    /// Connections ever opened.
    pub connections_total: u64,
    /// Subscriptions now.
    pub subscriptions: u64,
    /// Monitoring broadcasts sent (one per interval with at least one listener).
    pub broadcasts: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
}

/// A created mission.
#[derive(Debug, Clone, Serialize)]
pub struct Mission {
    pub id: u64,
    pub name: String,
    pub objective: String,
    pub agent_id: Option<String>,
    pub status: &'static str,
    pub created_by: String,
    pub created_at: u64,
}

/// A finished agent execution.
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub id: u64,
    pub agent_id: String,
    pub status: &'static str,
    pub duration_ms: f64,
    pub finished_at: u64,
}

/// Tokens, oldest forgotten first beyond the cap.
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
}

/// Recent missions plus their total.
#[derive(Debug, Default)]
pub struct Missions {
    pub recent: VecDeque<Mission>,
    pub total: u64,
}

/// Recent executions plus totals.
#[derive(Debug, Default)]
pub struct Executions {
    pub recent: VecDeque<Execution>,
    pub total: u64,
    pub failed: u64,
    pub duration_ms_sum: f64,
}

/// Why a request could not get a pool slot.
#[derive(Debug)]
pub struct PoolTimeout(pub Duration);

/// Everything the handlers share.
pub struct Shared {
    pub settings: Settings,
    pub started: Instant,
    pool: Semaphore,
    pool_waiting: AtomicI64,
    pool_waiting_max: AtomicU64,
    pool_timeouts: AtomicU64,
    pool_acquired: AtomicU64,
    pub pool_wait: Buckets,
    /// The threads doing the routes' CPU work (`cpu_workers` permits).
    cpu: Arc<Semaphore>,
    cpu_waiting: AtomicI64,
    /// CPU work done, in microseconds.
    cpu_micros: AtomicU64,
    pub routes: [RouteMetrics; Route::ALL.len()],
    latency_rng: [Mutex<SplitMix>; Route::ALL.len()],
    error_rng: [Mutex<SplitMix>; Route::ALL.len()],
    pub text_rng: Mutex<SplitMix>,
    tokens: Mutex<Tokens>,
    pub missions: Mutex<Missions>,
    pub executions: Mutex<Executions>,
    pub cable_connections: AtomicI64,
    pub cable_connections_total: AtomicU64,
    pub cable_subscriptions: AtomicI64,
    pub cable_broadcasts: AtomicU64,
    pub cable_sent: AtomicU64,
    pub cable_received: AtomicU64,
    pub updates: broadcast::Sender<Arc<str>>,
    pub shutdown: watch::Receiver<bool>,
    pub sessions: tokio_util::task::TaskTracker,
    /// Requests arriving before this instant wait until it (see `RunningTarget::stall`).
    pub stall_until: Mutex<Option<tokio::time::Instant>>,
    /// The cache route's Redis pool (`[redis]` with a URL).
    pub redis: Option<crate::redis_cache::RedisCache>,
    /// The request spans and their export (`[telemetry]`).
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

impl Shared {
    pub(crate) fn new(
        settings: Settings,
        shutdown: watch::Receiver<bool>,
        telemetry: crate::telemetry::Telemetry,
    ) -> Self {
        let seed = settings.config.seed;
        let pool_size = settings.config.pool_size;
        let (updates, _) = broadcast::channel(16);
        Shared {
            started: Instant::now(),
            pool: Semaphore::new(pool_size),
            pool_waiting: AtomicI64::new(0),
            pool_waiting_max: AtomicU64::new(0),
            pool_timeouts: AtomicU64::new(0),
            pool_acquired: AtomicU64::new(0),
            pool_wait: Buckets::default(),
            cpu: Arc::new(Semaphore::new(settings.config.cpu_workers)),
            cpu_waiting: AtomicI64::new(0),
            cpu_micros: AtomicU64::new(0),
            routes: std::array::from_fn(|_| RouteMetrics::default()),
            latency_rng: std::array::from_fn(|i| {
                Mutex::new(SplitMix::new(seed ^ (0x1000 + i as u64)))
            }),
            error_rng: std::array::from_fn(|i| {
                Mutex::new(SplitMix::new(seed ^ (0x2000 + i as u64)))
            }),
            text_rng: Mutex::new(SplitMix::new(seed ^ 0x3000)),
            tokens: Mutex::new(Tokens::default()),
            missions: Mutex::new(Missions::default()),
            executions: Mutex::new(Executions::default()),
            cable_connections: AtomicI64::new(0),
            cable_connections_total: AtomicU64::new(0),
            cable_subscriptions: AtomicI64::new(0),
            cable_broadcasts: AtomicU64::new(0),
            cable_sent: AtomicU64::new(0),
            cable_received: AtomicU64::new(0),
            updates,
            shutdown,
            sessions: tokio_util::task::TaskTracker::new(),
            stall_until: Mutex::new(None),
            redis: crate::redis_cache::RedisCache::new(&settings.config.redis, seed),
            telemetry,
            settings,
        }
    }

    /// Waits for a database pool slot, at most `pool_timeout`.
    pub async fn acquire_slot(&self) -> Result<SemaphorePermit<'_>, PoolTimeout> {
        if let Ok(p) = self.pool.try_acquire() {
            self.pool_acquired.fetch_add(1, Ordering::Relaxed);
            self.pool_wait.record(Duration::ZERO);
            return Ok(p);
        }
        let started = Instant::now();
        let _waiting = WaitingGuard::new(self);
        let timeout = self.settings.config.pool_timeout;
        match tokio::time::timeout(timeout, self.pool.acquire()).await {
            Ok(Ok(p)) => {
                self.pool_acquired.fetch_add(1, Ordering::Relaxed);
                self.pool_wait.record(started.elapsed());
                Ok(p)
            }
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => {
                self.pool_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(PoolTimeout(timeout))
            }
        }
    }

    /// Burns `d` of CPU on one of the `cpu_workers` threads, waiting for a free one
    /// first (counted in `cpu_stats().waiting` meanwhile).
    pub async fn cpu_work(&self, d: Duration) {
        let permit = {
            self.cpu_waiting.fetch_add(1, Ordering::Relaxed);
            let p = self.cpu.clone().acquire_owned().await;
            self.cpu_waiting.fetch_sub(1, Ordering::Relaxed);
            p
        };
        let Ok(permit) = permit else {
            return;
        };
        let spun = tokio::task::spawn_blocking(move || {
            let _held = permit;
            burn(d)
        })
        .await
        .unwrap_or(Duration::ZERO);
        self.cpu_micros
            .fetch_add(spun.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn cpu_stats(&self) -> CpuStats {
        let workers = self.settings.config.cpu_workers;
        CpuStats {
            workers,
            busy: workers.saturating_sub(self.cpu.available_permits()),
            waiting: self.cpu_waiting.load(Ordering::Relaxed).max(0) as u64,
            seconds: self.cpu_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    pub fn route_config(&self, route: Route) -> Option<&RouteConfig> {
        self.settings.config.routes.get(route)
    }

    /// Draws (db time, work time) for one request on `route`.
    pub fn draw_latency(&self, route: Route, rc: &RouteConfig) -> (Duration, Duration) {
        let mut r = self.latency_rng[route.index()].lock();
        (r.latency(&rc.db), r.latency(&rc.work))
    }

    /// Draws whether this request on `route` fails (injected error).
    pub fn draw_failure(&self, route: Route, rate: f64) -> bool {
        rate > 0.0 && self.error_rng[route.index()].lock().chance(rate)
    }

    pub fn record(&self, route: Route, status: u16, d: Duration) {
        self.routes[route.index()].record(status, d);
    }

    /// Stores a new login token for `email`.
    pub fn issue_token(&self, email: &str) -> String {
        use base64::Engine;
        let bytes: [u8; 24] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let cap = self.settings.config.max_tokens;
        let mut t = self.tokens.lock();
        while t.order.len() >= cap {
            match t.order.pop_front() {
                Some(old) => {
                    t.by_token.remove(&old);
                }
                None => break,
            }
        }
        t.by_token.insert(token.clone(), Arc::from(email));
        t.order.push_back(token.clone());
        token
    }

    /// The user a token belongs to.
    pub fn token_user(&self, token: &str) -> Option<Arc<str>> {
        self.tokens.lock().by_token.get(token).cloned()
    }

    /// Whether `email`/`password` may log in.
    pub fn credentials_ok(&self, email: &str, password: &str) -> bool {
        let auth = &self.settings.config.auth;
        if auth.users.is_empty() {
            let email = email.trim().to_ascii_lowercase();
            match email.rsplit_once('@') {
                Some((name, domain)) => {
                    !name.is_empty()
                        && domain == self.settings.email_domain
                        && constant_time_eq(password.as_bytes(), auth.password.as_bytes())
                }
                None => false,
            }
        } else {
            auth.users.iter().any(|u| {
                u.email.eq_ignore_ascii_case(email.trim())
                    && constant_time_eq(password.as_bytes(), u.password.as_bytes())
            })
        }
    }

    pub fn pool_stats(&self) -> PoolStats {
        let size = self.settings.config.pool_size;
        PoolStats {
            size,
            in_use: size.saturating_sub(self.pool.available_permits()),
            waiting: self.pool_waiting.load(Ordering::Relaxed).max(0) as u64,
            waiting_max: self.pool_waiting_max.load(Ordering::Relaxed),
            timeouts: self.pool_timeouts.load(Ordering::Relaxed),
            acquired: self.pool_acquired.load(Ordering::Relaxed),
        }
    }

    pub fn cable_stats(&self) -> CableStats {
        CableStats {
            connections: self.cable_connections.load(Ordering::Relaxed).max(0) as u64,
            connections_total: self.cable_connections_total.load(Ordering::Relaxed),
            subscriptions: self.cable_subscriptions.load(Ordering::Relaxed).max(0) as u64,
            broadcasts: self.cable_broadcasts.load(Ordering::Relaxed),
            messages_sent: self.cable_sent.load(Ordering::Relaxed),
            messages_received: self.cable_received.load(Ordering::Relaxed),
        }
    }

    pub fn stats(&self) -> TargetStats {
        let mut routes = BTreeMap::new();
        let mut total = 0;
        for r in Route::ALL {
            if r == Route::Metrics {
                continue;
            }
            let by_status = self.routes[r.index()].by_status();
            let n: u64 = by_status.values().sum();
            total += n;
            if n > 0 {
                routes.insert(
                    r.label(),
                    RouteStats {
                        total: n,
                        by_status,
                    },
                );
            }
        }
        let missions_total = self.missions.lock().total;
        let executions_total = self.executions.lock().total;
        let active_tokens = self.tokens.lock().order.len();
        TargetStats {
            total,
            routes,
            pool: self.pool_stats(),
            cable: self.cable_stats(),
            missions_total,
            executions_total,
            active_tokens,
        }
    }
}

/// The CPU worker threads now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuStats {
    pub workers: usize,
    pub busy: usize,
    pub waiting: u64,
    /// CPU work done since the start.
    pub seconds: f64,
}

/// Keeps this thread busy for `d` (wall time on a thread of its own: CPU time when
/// the machine has a core free for it); returns the time spent.
fn burn(d: Duration) -> Duration {
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while start.elapsed() < d {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
    start.elapsed()
}

/// Counts a request as waiting for a slot while it lives (also when the waiting
/// request is cancelled because its client went away).
struct WaitingGuard<'a>(&'a Shared);

impl<'a> WaitingGuard<'a> {
    fn new(s: &'a Shared) -> Self {
        let now = s.pool_waiting.fetch_add(1, Ordering::Relaxed) + 1;
        s.pool_waiting_max
            .fetch_max(now.max(0) as u64, Ordering::Relaxed);
        WaitingGuard(s)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.pool_waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TargetConfig, UserConfig};

    fn shared(c: TargetConfig) -> Shared {
        let (_tx, rx) = watch::channel(false);
        let t = crate::telemetry::Telemetry::new(&c.telemetry).unwrap();
        Shared::new(c.validate().unwrap(), rx, t)
    }

    #[test]
    fn buckets_are_cumulative() {
        let b = Buckets::default();
        b.record(Duration::from_millis(3));
        b.record(Duration::from_millis(120));
        b.record(Duration::from_secs(100));
        let (cum, sum, count) = b.snapshot();
        assert_eq!(count, 3);
        assert_eq!(cum[0], 1);
        assert_eq!(cum[5], 2); // le 0.15
        assert_eq!(*cum.last().unwrap(), 2); // 100 s only in +Inf
        assert!((sum - 100.123).abs() < 1e-6);
    }

    #[test]
    fn statuses_by_route() {
        let m = RouteMetrics::default();
        m.record(200, Duration::from_millis(1));
        m.record(200, Duration::from_millis(1));
        m.record(500, Duration::from_millis(1));
        let s = m.by_status();
        assert_eq!(s.get(&200), Some(&2));
        assert_eq!(s.get(&500), Some(&1));
    }

    #[test]
    fn credentials_default_domain_and_listed_users() {
        let s = shared(TargetConfig::default());
        assert!(s.credentials_ok("ana@example.com", "demo"));
        assert!(s.credentials_ok("ANA@Example.COM", "demo"));
        assert!(!s.credentials_ok("ana@example.org", "demo"));
        assert!(!s.credentials_ok("@example.com", "demo"));
        assert!(!s.credentials_ok("ana@example.com", "demo2"));

        let mut c = TargetConfig::default();
        c.auth.users = vec![UserConfig {
            email: "ops@corp.test".into(),
            password: "s3cret".into(),
        }];
        let s = shared(c);
        assert!(s.credentials_ok("ops@corp.test", "s3cret"));
        assert!(!s.credentials_ok("ana@example.com", "demo"));
    }

    #[test]
    fn tokens_are_bounded_oldest_first() {
        let c = TargetConfig {
            max_tokens: 2,
            ..Default::default()
        };
        let s = shared(c);
        let a = s.issue_token("a@example.com");
        let b = s.issue_token("b@example.com");
        assert_ne!(a, b);
        assert_eq!(s.token_user(&a).as_deref(), Some("a@example.com"));
        let c3 = s.issue_token("c@example.com");
        assert!(s.token_user(&a).is_none());
        assert!(s.token_user(&b).is_some() && s.token_user(&c3).is_some());
        assert_eq!(s.stats().active_tokens, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pool_times_out_after_checkout_timeout() {
        let c = TargetConfig {
            pool_size: 1,
            pool_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let s = shared(c);
        let held = s.acquire_slot().await.unwrap();
        assert_eq!(s.pool_stats().in_use, 1);
        let err = s.acquire_slot().await.unwrap_err();
        assert_eq!(err.0, Duration::from_secs(5));
        let p = s.pool_stats();
        assert_eq!((p.timeouts, p.waiting, p.waiting_max), (1, 0, 1));
        drop(held);
        assert!(s.acquire_slot().await.is_ok());
    }
}
