//! The retry policy of one client call, as a value: how many attempts, the request
//! deadline, the backoff between attempts, the one wait per attempt for a credential
//! to come back (a short `Retry-After`, a breaker's recovery), and the credentials
//! already tried (avoided while others are available).
//!
//! It decides; the caller sleeps. Every decision takes the time it is made at, so
//! the policy is tested on tokio's paused time without sleeping.

use crate::config::RetryConfig;
use std::time::Duration;
use tokio::time::Instant;

/// Most (provider, credential) pairs remembered as tried for one call.
pub(super) const TRIED: usize = 3;

/// What to do when no credential can take the call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenNoneAvailable {
    /// Sleep this long, then pick again.
    Wait(Duration),
    /// Answer the client now.
    GiveUp,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Sleep `pause` (may be zero), then make the next attempt.
    Retry { pause: Duration },
    /// Answer the client with this failure.
    Stop,
}

/// The state of one call's retries.
#[derive(Debug, Clone)]
pub(crate) struct RetryLoop {
    pub(super) deadline: Instant,
    pub(super) max_attempts: u32,
    pub(super) base: Duration,
    pub(super) max: Duration,
    pub(super) attempt: u32,
    pub(super) waited_for_attempt: bool,
    pub(super) tried: [(usize, usize); TRIED],
    pub(super) n_tried: usize,
}

impl RetryLoop {
    /// A call starting at `now` with `timeout` for all of its attempts.
    pub(crate) fn new(retry: &RetryConfig, timeout: Duration, now: Instant) -> Self {
        RetryLoop {
            deadline: now + timeout,
            max_attempts: retry.max_retries + 1,
            base: retry.base,
            max: retry.max,
            attempt: 0,
            waited_for_attempt: false,
            tried: [(usize::MAX, usize::MAX); TRIED],
            n_tried: 0,
        }
    }

    /// When the whole call must be answered.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The attempt under way: 0 for the first, then the number of retries so far.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The (provider, credential) pairs tried so far (the first few).
    pub(crate) fn tried(&self) -> &[(usize, usize)] {
        &self.tried[..self.n_tried]
    }

    /// Remembers that the attempt under way goes to (provider, credential).
    pub(crate) fn note_tried(&mut self, provider: usize, cred: usize) {
        if self.n_tried < TRIED {
            self.tried[self.n_tried] = (provider, cred);
            self.n_tried += 1;
        }
    }

    /// No credential can take the call at `now`; one can again after `wait` (None:
    /// none will). After a failure, a wait no longer than the longest backoff that
    /// ends before the deadline is waited out, once per attempt so the loop stays
    /// bounded; otherwise the call gives up.
    pub(crate) fn when_none_available(
        &mut self,
        wait: Option<Duration>,
        now: Instant,
    ) -> WhenNoneAvailable {
        if self.attempt > 0 && !self.waited_for_attempt {
            if let Some(w) = wait.filter(|w| *w <= self.max && now + *w < self.deadline) {
                self.waited_for_attempt = true;
                return WhenNoneAvailable::Wait(w);
            }
        }
        WhenNoneAvailable::GiveUp
    }

    /// The attempt under way failed at `now`. A retryable failure is retried while
    /// attempts are left and the deadline has not passed, after a backoff that ends
    /// by the deadline. `jitter(hi)` draws a value in `0..=hi` (see [`backoff`]).
    pub(crate) fn after_failure(
        &mut self,
        retryable: bool,
        now: Instant,
        jitter: impl FnOnce(f64) -> f64,
    ) -> AfterFailure {
        if !(retryable && self.attempt + 1 < self.max_attempts && now < self.deadline) {
            return AfterFailure::Stop;
        }
        let pause = backoff(self.base, self.max, self.attempt, jitter)
            .min(self.deadline.saturating_duration_since(now));
        self.attempt += 1;
        self.waited_for_attempt = false;
        AfterFailure::Retry { pause }
    }
}

/// The pause after failed attempt number `attempt` (0 = the first): `base · 2^attempt`
/// capped at `max`, with "equal jitter" (half fixed, half `jitter(half)`, which draws
/// in `0..=half`).
pub(crate) fn backoff(
    base: Duration,
    max: Duration,
    attempt: u32,
    jitter: impl FnOnce(f64) -> f64,
) -> Duration {
    let b = base.as_secs_f64() * 2f64.powi(attempt as i32);
    let capped = b.min(max.as_secs_f64());
    if capped <= 0.0 {
        return Duration::ZERO;
    }
    let j = jitter(capped / 2.0);
    Duration::from_secs_f64(capped / 2.0 + j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_retries: u32, base_ms: u64, max_ms: u64) -> RetryConfig {
        RetryConfig {
            max_retries,
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    fn none(_: f64) -> f64 {
        0.0
    }

    fn full(hi: f64) -> f64 {
        hi
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_is_capped_and_keeps_half_fixed() {
        let (base, max) = (ms(100), ms(1000));
        assert_eq!(backoff(base, max, 0, none), ms(50));
        assert_eq!(backoff(base, max, 0, full), ms(100));
        assert_eq!(backoff(base, max, 2, full), ms(400));
        assert_eq!(backoff(base, max, 5, full), ms(1000));
        assert_eq!(backoff(base, max, 5, none), ms(500));
        assert_eq!(backoff(Duration::ZERO, max, 3, full), Duration::ZERO);
        // the jitter is asked for a draw up to half the capped pause
        let mut asked = 0.0;
        let _ = backoff(base, max, 1, |hi| {
            asked = hi;
            0.0
        });
        assert!((asked - 0.1).abs() < 1e-9, "{asked}");
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_sleep_the_backoff_until_attempts_run_out() {
        let start = Instant::now();
        let mut r = RetryLoop::new(&cfg(2, 100, 1000), Duration::from_secs(30), start);
        let mut pauses = Vec::new();
        while let AfterFailure::Retry { pause } = r.after_failure(true, Instant::now(), full) {
            pauses.push(pause);
            tokio::time::sleep(pause).await;
        }
        assert_eq!(pauses, [ms(100), ms(200)]);
        assert_eq!(r.attempt(), 2);
        assert_eq!(Instant::now() - start, ms(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_error_is_never_retried() {
        let mut r = RetryLoop::new(&cfg(2, 100, 1000), Duration::from_secs(30), Instant::now());
        assert_eq!(
            r.after_failure(false, Instant::now(), full),
            AfterFailure::Stop
        );
        assert_eq!(r.attempt(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_ends_by_the_deadline_and_no_attempt_starts_after_it() {
        let start = Instant::now();
        let mut r = RetryLoop::new(&cfg(5, 400, 1000), ms(500), start);
        tokio::time::sleep(ms(300)).await;
        // 400 ms of backoff would end past the deadline: only the 200 ms left
        let AfterFailure::Retry { pause } = r.after_failure(true, Instant::now(), full) else {
            panic!("expected a retry")
        };
        assert_eq!(pause, ms(200));
        tokio::time::sleep(pause).await;
        assert_eq!(Instant::now(), r.deadline());
        assert_eq!(
            r.after_failure(true, Instant::now(), full),
            AfterFailure::Stop
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_wait_is_waited_out_once_per_attempt_and_only_after_a_failure() {
        let start = Instant::now();
        let mut r = RetryLoop::new(&cfg(2, 0, 1000), Duration::from_secs(30), start);
        // before any failure: nothing available is answered at once
        assert_eq!(
            r.when_none_available(Some(ms(50)), Instant::now()),
            WhenNoneAvailable::GiveUp
        );
        assert_eq!(
            r.after_failure(true, Instant::now(), full),
            AfterFailure::Retry {
                pause: Duration::ZERO
            }
        );
        let WhenNoneAvailable::Wait(w) = r.when_none_available(Some(ms(50)), Instant::now()) else {
            panic!("expected a wait")
        };
        tokio::time::sleep(w).await;
        assert_eq!(Instant::now() - start, ms(50));
        // the same attempt does not wait twice
        assert_eq!(
            r.when_none_available(Some(ms(50)), Instant::now()),
            WhenNoneAvailable::GiveUp
        );
        // the next attempt may wait again
        let _ = r.after_failure(true, Instant::now(), full);
        assert_eq!(
            r.when_none_available(Some(ms(50)), Instant::now()),
            WhenNoneAvailable::Wait(ms(50))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn long_or_unknown_waits_and_waits_past_the_deadline_give_up() {
        let mut r = RetryLoop::new(&cfg(3, 0, 1000), ms(800), Instant::now());
        let _ = r.after_failure(true, Instant::now(), full);
        // longer than the longest backoff (a long Retry-After): reported, not waited
        assert_eq!(
            r.when_none_available(Some(ms(1500)), Instant::now()),
            WhenNoneAvailable::GiveUp
        );
        assert_eq!(
            r.when_none_available(None, Instant::now()),
            WhenNoneAvailable::GiveUp
        );
        tokio::time::sleep(ms(500)).await;
        // 400 ms from now is past the 800 ms deadline
        assert_eq!(
            r.when_none_available(Some(ms(400)), Instant::now()),
            WhenNoneAvailable::GiveUp
        );
        assert_eq!(
            r.when_none_available(Some(ms(200)), Instant::now()),
            WhenNoneAvailable::Wait(ms(200))
        );
    }

    #[test]
    fn the_first_tried_credentials_are_remembered() {
        let mut r = RetryLoop::new(&cfg(5, 0, 0), ms(1), Instant::now());
        assert!(r.tried().is_empty());
        for i in 0..5 {
            r.note_tried(i, i + 10);
        }
        assert_eq!(r.tried(), [(0, 10), (1, 11), (2, 12)]);
    }
}
