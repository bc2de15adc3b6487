//! The circuit breaker per (provider, credential), the per-credential rpm limiter and
//! the clock they read. Pure state machines: the caller passes `now`, so tests run on
//! tokio's paused time or a [`ManualClock`].

use crate::config::BreakerConfig;
use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// tokio's clock (follows `tokio::time::pause`/`advance`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// tokio's clock plus an offset a test moves forward by hand, for tests that also do
/// real network I/O (where paused time would fire socket timeouts).
#[derive(Debug, Default)]
pub struct ManualClock {
    offset: Mutex<Duration>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advance(&self, d: Duration) {
        *self.offset.lock() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now() + *self.offset.lock()
    }
}

/// Why a breaker is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenReason {
    Failures,
    RateLimited,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open {
        until: Instant,
        reason: OpenReason,
    },
    HalfOpen {
        in_flight: u32,
    },
    /// 401/403: out until the config is reloaded.
    Disabled,
}

/// What the breaker says to a caller that wants to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go; `probe` is true for a half-open trial call.
    Go { probe: bool },
    /// Not before `until` (open, or half-open with all probe slots taken).
    Wait { until: Instant },
    /// Never (disabled credential).
    Never,
}

/// State name as shown in /status and /metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateName {
    Closed,
    Open,
    RateLimited,
    HalfOpen,
    Disabled,
}

impl StateName {
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Closed => "closed",
            StateName::Open => "open",
            StateName::RateLimited => "rate_limited",
            StateName::HalfOpen => "half_open",
            StateName::Disabled => "disabled",
        }
    }
    /// The gauge value in /metrics: 0 closed, 1 half-open, 2 open/rate-limited, 3 disabled.
    pub fn gauge(self) -> u8 {
        match self {
            StateName::Closed => 0,
            StateName::HalfOpen => 1,
            StateName::Open | StateName::RateLimited => 2,
            StateName::Disabled => 3,
        }
    }
}

const WINDOW_BUCKETS: usize = 10;

/// The wait of a provider's 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// What the provider asked for (`Retry-After`, or `rate_limit_default`).
    pub asked: Duration,
    /// `asked` was longer than `breaker.retry_after_max`, which was used instead.
    pub capped: bool,
}

/// A circuit breaker: opens after `failure_threshold` consecutive failures (or a
/// failure rate over a window with a minimum call count), half-opens after the
/// recovery time with a limited number of probes, closes on a probe's success and
/// reopens on its failure. A re-trip extends, never shortens, the open deadline.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    consecutive: u32,
    /// Transitions between states since start.
    pub transitions: u64,
    /// Times the breaker opened because of failures.
    pub trips: u64,
    /// The last 429's wait: what the provider asked for, and whether it was cut to
    /// `retry_after_max`.
    rate_limit: Option<RateLimit>,
    // failure-rate window: (bucket index, successes, failures)
    buckets: [(u64, u32, u32); WINDOW_BUCKETS],
    epoch: Instant,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        Breaker {
            cfg,
            state: State::Closed,
            consecutive: 0,
            transitions: 0,
            trips: 0,
            rate_limit: None,
            buckets: [(u64::MAX, 0, 0); WINDOW_BUCKETS],
            epoch: now,
        }
    }

    /// The state as seen at `now` (an expired open deadline reads as half-open).
    pub fn state(&self, now: Instant) -> StateName {
        match self.state {
            State::Closed => StateName::Closed,
            State::HalfOpen { .. } => StateName::HalfOpen,
            State::Disabled => StateName::Disabled,
            State::Open { until, .. } if now >= until => StateName::HalfOpen,
            State::Open { reason, .. } => match reason {
                OpenReason::Failures => StateName::Open,
                OpenReason::RateLimited => StateName::RateLimited,
            },
        }
    }

    /// The state as last set, whatever the time (an open breaker past its deadline
    /// is still open until a probe is admitted): what the access log's breaker lines
    /// compare before and after each event.
    pub fn phase(&self) -> StateName {
        match self.state {
            State::Closed => StateName::Closed,
            State::HalfOpen { .. } => StateName::HalfOpen,
            State::Disabled => StateName::Disabled,
            State::Open {
                reason: OpenReason::Failures,
                ..
            } => StateName::Open,
            State::Open {
                reason: OpenReason::RateLimited,
                ..
            } => StateName::RateLimited,
        }
    }

    /// When an open breaker may be tried again.
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            State::Open { until, .. } => Some(until),
            _ => None,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Would [`Breaker::admit`] say `Go` now? (No state change.)
    pub fn check(&self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Go { probe: false },
            State::Disabled => Admission::Never,
            State::Open { until, .. } if now < until => Admission::Wait { until },
            State::Open { .. } => Admission::Go { probe: true },
            State::HalfOpen { in_flight } if in_flight < self.cfg.half_open_probes => {
                Admission::Go { probe: true }
            }
            State::HalfOpen { .. } => Admission::Wait {
                until: now + Duration::from_secs(1),
            },
        }
    }

    /// Takes a slot: in half-open this uses one of the probe slots.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let a = self.check(now);
        if let Admission::Go { probe: true } = a {
            match self.state {
                State::Open { .. } => self.set(State::HalfOpen { in_flight: 1 }),
                State::HalfOpen { in_flight } => {
                    self.state = State::HalfOpen {
                        in_flight: in_flight + 1,
                    }
                }
                _ => {}
            }
        }
        a
    }

    fn set(&mut self, s: State) {
        let same_kind = std::mem::discriminant(&self.state) == std::mem::discriminant(&s);
        if !same_kind {
            self.transitions += 1;
        }
        self.state = s;
    }

    fn trip(&mut self, now: Instant, dur: Duration, reason: OpenReason) {
        let mut until = now + dur;
        if let State::Open { until: u, .. } = self.state {
            if u > until {
                until = u; // extend, never shorten
            }
        }
        if reason == OpenReason::Failures {
            self.trips += 1;
        }
        self.set(State::Open { until, reason });
    }

    fn bucket(&mut self, now: Instant) -> Option<&mut (u64, u32, u32)> {
        let (w, _, _) = self.cfg.window?;
        let width = (w.as_nanos() / WINDOW_BUCKETS as u128).max(1);
        let idx = (now.saturating_duration_since(self.epoch).as_nanos() / width) as u64;
        let slot = &mut self.buckets[(idx % WINDOW_BUCKETS as u64) as usize];
        if slot.0 != idx {
            *slot = (idx, 0, 0);
        }
        Some(slot)
    }

    fn window_rate(&self, now: Instant) -> Option<(f64, u32)> {
        let (w, _, _) = self.cfg.window?;
        let width = (w.as_nanos() / WINDOW_BUCKETS as u128).max(1);
        let idx = (now.saturating_duration_since(self.epoch).as_nanos() / width) as u64;
        let (mut s, mut f) = (0u32, 0u32);
        for b in &self.buckets {
            if b.0 != u64::MAX && b.0 + (WINDOW_BUCKETS as u64) > idx && b.0 <= idx {
                s += b.1;
                f += b.2;
            }
        }
        let n = s + f;
        (n > 0).then(|| (f as f64 / n as f64, n))
    }

    /// A call admitted by [`Breaker::admit`] succeeded.
    pub fn on_success(&mut self, now: Instant) {
        if let Some(b) = self.bucket(now) {
            b.1 += 1;
        }
        self.consecutive = 0;
        match self.state {
            State::HalfOpen { .. } => self.set(State::Closed),
            State::Open { .. } | State::Closed | State::Disabled => {}
        }
    }

    /// A call failed in a way that counts (connect error, timeout, 5xx/529, mid-stream
    /// provider error).
    pub fn on_failure(&mut self, now: Instant) {
        if let Some(b) = self.bucket(now) {
            b.2 += 1;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        let recovery = self.cfg.recovery;
        match self.state {
            State::HalfOpen { .. } | State::Open { .. } => {
                self.trip(now, recovery, OpenReason::Failures)
            }
            State::Closed => {
                let by_count = self.consecutive >= self.cfg.failure_threshold;
                let by_rate = match (self.cfg.window, self.window_rate(now)) {
                    (Some((_, rate, min)), Some((r, n))) => n >= min && r >= rate,
                    _ => false,
                };
                if by_count || by_rate {
                    self.trip(now, recovery, OpenReason::Failures);
                }
            }
            State::Disabled => {}
        }
    }

    /// The provider answered 429: out for `retry_after` (or the configured default),
    /// at most `retry_after_max`, without counting a failure.
    pub fn on_rate_limited(&mut self, now: Instant, retry_after: Option<Duration>) {
        let asked = retry_after.unwrap_or(self.cfg.rate_limit_default);
        let capped = asked > self.cfg.retry_after_max;
        let d = asked.min(self.cfg.retry_after_max);
        self.rate_limit = Some(RateLimit { asked, capped });
        self.trip(now, d, OpenReason::RateLimited);
    }

    /// While rate-limited: the wait the provider asked for and whether it was capped.
    pub fn rate_limit(&self, now: Instant) -> Option<RateLimit> {
        match self.state(now) {
            StateName::RateLimited => self.rate_limit,
            _ => None,
        }
    }

    /// 401/403: the credential is out until the config is reloaded.
    pub fn on_auth_failure(&mut self) {
        self.set(State::Disabled);
    }

    /// Config reload: a disabled credential (401/403) is usable again, closed with a
    /// clean count. Returns whether it was disabled.
    pub fn reenable(&mut self) -> bool {
        if self.state == State::Disabled {
            self.consecutive = 0;
            self.set(State::Closed);
            return true;
        }
        false
    }

    /// Config reload: new thresholds apply from the next call; the current state (open
    /// deadline, consecutive count, probes in flight) is kept.
    pub fn set_config(&mut self, cfg: BreakerConfig) {
        if cfg.window.map(|w| w.0) != self.cfg.window.map(|w| w.0) {
            self.buckets = [(u64::MAX, 0, 0); WINDOW_BUCKETS];
        }
        self.cfg = cfg;
    }

    /// A call that neither succeeded nor failed (the client's own 4xx, the client hung
    /// up): frees a half-open probe slot without deciding anything.
    pub fn on_neutral(&mut self) {
        if let State::HalfOpen { in_flight } = self.state {
            self.state = State::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
            };
        }
    }
}

/// A breaker's state as the replicas share it (read from `[shared]` Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedPhase {
    Closed,
    /// Open for `remaining` more (zero: past its deadline, the next call probes).
    Open {
        remaining: Duration,
        reason: OpenReason,
    },
    HalfOpen,
}

/// What the replicas agree a (provider, credential)'s breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedBreaker {
    pub phase: SharedPhase,
    pub consecutive: u32,
}

impl Breaker {
    /// Takes the shared state as its own (a disabled credential stays disabled: a
    /// 401/403 is this replica's, until its reload). Trips and transitions go on
    /// counting what this replica saw change.
    pub fn adopt(&mut self, shared: &SharedBreaker, now: Instant) {
        if self.state == State::Disabled {
            return;
        }
        self.consecutive = shared.consecutive;
        match shared.phase {
            SharedPhase::Closed => self.set(State::Closed),
            SharedPhase::HalfOpen => {
                if !matches!(self.state, State::HalfOpen { .. }) {
                    self.set(State::HalfOpen { in_flight: 0 });
                }
            }
            SharedPhase::Open { remaining, reason } => {
                let was = self.phase();
                if reason == OpenReason::Failures && was != StateName::Open {
                    self.trips += 1;
                }
                if reason == OpenReason::RateLimited && was != StateName::RateLimited {
                    self.rate_limit = Some(RateLimit {
                        asked: remaining,
                        capped: false,
                    });
                }
                self.set(State::Open {
                    until: now + remaining,
                    reason,
                });
            }
        }
    }
}

/// Local rpm limit (GCRA): one request every 60/rpm s, with a burst of one second's
/// worth (at least 1).
#[derive(Debug, Clone)]
pub struct RpmLimiter {
    interval: Duration,
    tolerance: Duration,
    tat: Option<Instant>,
}

impl RpmLimiter {
    pub fn new(rpm: u32) -> Self {
        RpmLimiter::with_burst(rpm, (rpm / 60).max(1))
    }

    /// `rpm` with up to `burst` requests at once (a bucket of `burst` refilled at
    /// `rpm` per minute).
    pub fn with_burst(rpm: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(60) / rpm.max(1);
        let burst = burst.max(1);
        RpmLimiter {
            interval,
            tolerance: interval * (burst - 1),
            tat: None,
        }
    }

    /// `None` if a request may go now, else when it may.
    pub fn check(&self, now: Instant) -> Option<Instant> {
        let tat = self.tat?;
        let allowed_at = tat.checked_sub(self.tolerance).unwrap_or(tat);
        (now < allowed_at).then_some(allowed_at)
    }

    /// Records a request sent at `now` (call only after `check` said yes).
    pub fn take(&mut self, now: Instant) {
        let base = match self.tat {
            Some(t) if t > now => t,
            _ => now,
        };
        self.tat = Some(base + self.interval);
    }
}

/// Smooth weighted round-robin (deterministic: weights 3:1 give exactly 3 of every 4
/// picks when both are available).
#[derive(Debug, Clone, Default)]
pub struct WeightedPicker {
    current: Vec<i64>,
}

impl WeightedPicker {
    /// Picks among `(index, weight)` of the available entries; `n` is the total count.
    pub fn pick(&mut self, n: usize, available: &[(usize, u32)]) -> Option<usize> {
        if self.current.len() != n {
            self.current = vec![0; n];
        }
        let total: i64 = available.iter().map(|&(_, w)| w as i64).sum();
        let mut best: Option<usize> = None;
        for &(i, w) in available {
            self.current[i] += w as i64;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            self.current[b] -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig::default()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_exactly_five_half_opens_after_120s_closes_on_success() {
        let clock = TokioClock;
        let mut b = Breaker::new(cfg(), clock.now());
        for i in 0..4 {
            assert_eq!(b.admit(clock.now()), Admission::Go { probe: false });
            b.on_failure(clock.now());
            assert_eq!(b.state(clock.now()), StateName::Closed, "after {}", i + 1);
        }
        b.on_failure(clock.now());
        assert_eq!(b.state(clock.now()), StateName::Open);
        assert!(matches!(b.admit(clock.now()), Admission::Wait { .. }));
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(matches!(b.admit(clock.now()), Admission::Wait { .. }));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(clock.now()), StateName::HalfOpen);
        assert_eq!(b.admit(clock.now()), Admission::Go { probe: true });
        // one probe only
        assert!(matches!(b.admit(clock.now()), Admission::Wait { .. }));
        b.on_success(clock.now());
        assert_eq!(b.state(clock.now()), StateName::Closed);
        assert_eq!(b.trips, 1);
        assert_eq!(b.transitions, 3); // closed→open→half-open→closed
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_a_full_recovery() {
        let clock = TokioClock;
        let mut b = Breaker::new(cfg(), clock.now());
        for _ in 0..5 {
            b.on_failure(clock.now());
        }
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(b.admit(clock.now()), Admission::Go { probe: true });
        b.on_failure(clock.now());
        assert_eq!(b.state(clock.now()), StateName::Open);
        assert_eq!(b.open_until(), Some(clock.now() + Duration::from_secs(120)));
    }

    #[tokio::test(start_paused = true)]
    async fn retrip_extends_never_shortens() {
        let clock = TokioClock;
        let mut b = Breaker::new(cfg(), clock.now());
        for _ in 0..5 {
            b.on_failure(clock.now());
        }
        let first = b.open_until().unwrap();
        // a short 429 Retry-After must not pull the deadline in
        b.on_rate_limited(clock.now(), Some(Duration::from_secs(3)));
        assert_eq!(b.open_until(), Some(first));
        tokio::time::advance(Duration::from_secs(10)).await;
        // a late failure from an in-flight call pushes it out
        b.on_failure(clock.now());
        assert_eq!(b.open_until(), Some(clock.now() + Duration::from_secs(120)));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_opens_for_retry_after_without_counting_a_failure() {
        let clock = TokioClock;
        let mut b = Breaker::new(cfg(), clock.now());
        b.on_rate_limited(clock.now(), Some(Duration::from_secs(7)));
        assert_eq!(b.state(clock.now()), StateName::RateLimited);
        assert_eq!(b.consecutive_failures(), 0);
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(b.admit(clock.now()), Admission::Go { probe: true });
        b.on_success(clock.now());
        assert_eq!(b.state(clock.now()), StateName::Closed);
        assert_eq!(b.trips, 0);
    }

    #[test]
    fn auth_failure_disables_and_neutral_frees_probe() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        b.on_auth_failure();
        assert_eq!(b.admit(now), Admission::Never);
        let mut b = Breaker::new(cfg(), now);
        for _ in 0..5 {
            b.on_failure(now);
        }
        let later = now + Duration::from_secs(121);
        assert_eq!(b.admit(later), Admission::Go { probe: true });
        b.on_neutral();
        assert_eq!(b.admit(later), Admission::Go { probe: true });
    }

    #[test]
    fn reload_reenables_a_disabled_breaker_and_keeps_an_open_one() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        b.on_auth_failure();
        assert!(b.reenable());
        assert_eq!(b.state(now), StateName::Closed);
        assert_eq!(b.admit(now), Admission::Go { probe: false });
        let mut b = Breaker::new(cfg(), now);
        for _ in 0..5 {
            b.on_failure(now);
        }
        let until = b.open_until();
        assert!(!b.reenable());
        b.set_config(BreakerConfig {
            failure_threshold: 2,
            ..cfg()
        });
        assert_eq!(b.state(now), StateName::Open);
        assert_eq!(b.open_until(), until);
    }

    #[test]
    fn a_long_retry_after_is_honoured_up_to_the_configured_maximum() {
        let now = Instant::now();
        let c = BreakerConfig {
            retry_after_max: Duration::from_secs(600),
            ..cfg()
        };
        let mut b = Breaker::new(c, now);
        // 5 minutes: honoured whole
        b.on_rate_limited(now, Some(Duration::from_secs(300)));
        assert_eq!(b.open_until(), Some(now + Duration::from_secs(300)));
        assert_eq!(
            b.rate_limit(now),
            Some(RateLimit {
                asked: Duration::from_secs(300),
                capped: false
            })
        );
        assert_eq!(
            b.state(now + Duration::from_secs(299)),
            StateName::RateLimited
        );
        // a day: cut to the maximum, and says so
        b.on_rate_limited(now, Some(Duration::from_secs(86_400)));
        assert_eq!(b.open_until(), Some(now + Duration::from_secs(600)));
        assert_eq!(
            b.rate_limit(now),
            Some(RateLimit {
                asked: Duration::from_secs(86_400),
                capped: true
            })
        );
        assert_eq!(b.state(now + Duration::from_secs(601)), StateName::HalfOpen);
        assert_eq!(b.rate_limit(now + Duration::from_secs(601)), None);
    }

    #[test]
    fn success_resets_the_consecutive_count() {
        let now = Instant::now();
        let mut b = Breaker::new(cfg(), now);
        for _ in 0..4 {
            b.on_failure(now);
        }
        b.on_success(now);
        for _ in 0..4 {
            b.on_failure(now);
        }
        assert_eq!(b.state(now), StateName::Closed);
    }

    #[test]
    fn failure_rate_window_needs_min_calls() {
        let now = Instant::now();
        let c = BreakerConfig {
            failure_threshold: 100,
            window: Some((Duration::from_secs(60), 0.5, 10)),
            ..cfg()
        };
        let mut b = Breaker::new(c, now);
        // 4 failures of 8 calls: below min calls
        for _ in 0..4 {
            b.on_success(now);
            b.on_failure(now);
        }
        assert_eq!(b.state(now), StateName::Closed);
        b.on_success(now);
        b.on_failure(now); // 5 of 10 = 50%
        assert_eq!(b.state(now), StateName::Open);
    }

    #[test]
    fn rpm_limiter_spaces_requests() {
        let now = Instant::now();
        let mut l = RpmLimiter::new(2);
        assert_eq!(l.check(now), None);
        l.take(now);
        assert_eq!(l.check(now), Some(now + Duration::from_secs(30)));
        assert_eq!(l.check(now + Duration::from_secs(30)), None);
    }

    #[test]
    fn weighted_picker_is_exact() {
        let mut p = WeightedPicker::default();
        let mut counts = [0; 2];
        for _ in 0..400 {
            counts[p.pick(2, &[(0, 3), (1, 1)]).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
        // an unavailable entry is skipped
        assert_eq!(p.pick(2, &[(1, 1)]), Some(1));
        assert_eq!(p.pick(2, &[]), None);
    }
}
