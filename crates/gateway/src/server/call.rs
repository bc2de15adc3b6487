//! What every client call (chat or embeddings) does between attempts: pick the next
//! (target, credential) or wait for one to come back, and after a failed attempt
//! either retry or answer the client with the failure.

use super::attempt::{CallGuard, Failure};
use super::dispatch::Picked;
use super::fleet::Admit;
use super::gateway::Gateway;
use super::live::Live;
use super::response::{error_response, overhead};
use super::retry::{AfterFailure, RetryLoop, WhenNoneAvailable};
use crate::config::Target;
use crate::events::CallLog;
use crate::metrics::Outcome;
use axum::response::Response;
use powertune_dialect::{ApiError, ErrorKind, Front};
use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// Most shared-state refusals one pick goes through before it sends anyway.
const MAX_SHARED_REFUSALS: u32 = 16;

/// One client call's retry state, and the time it spent waiting (not its own).
pub(super) struct CallState {
    pub(super) front: Front,
    pub(super) t0: std::time::Instant,
    pub(super) retry: RetryLoop,
    /// Time spent on providers and in backoff: the call's overhead is the rest.
    pub(super) waited: Duration,
    /// The last failure and its provider, reported if no credential comes back.
    last: Option<(Failure, usize)>,
    /// The call's span (`[telemetry]`), or the client's trace context.
    pub(super) span: crate::telemetry::CallSpan,
}

impl CallState {
    pub(super) fn new(front: Front, t0: std::time::Instant, live: &Live) -> CallState {
        CallState {
            front,
            t0,
            retry: RetryLoop::new(&live.cfg.retry, live.cfg.timeouts.request, Instant::now()),
            waited: Duration::ZERO,
            last: None,
            span: Default::default(),
        }
    }

    async fn sleep(&mut self, d: Duration) {
        let s = std::time::Instant::now();
        tokio::time::sleep(d).await;
        self.waited += s.elapsed();
    }

    /// The gateway's own time so far.
    pub(super) fn overhead(&self) -> Duration {
        overhead(self.t0, self.waited)
    }
}

impl Gateway {
    /// The (target, credential) of the next attempt, waiting for one to come back
    /// when the retry policy allows; else the answer for the client.
    pub(super) async fn next_credential(
        &self,
        live: &Live,
        targets: &[Target],
        model: &str,
        call: &mut CallState,
    ) -> Result<(usize, usize), Response> {
        // [shared] refusals of credentials the mirror thought usable; each refusal
        // puts a wait on the mirror, so this ends; the bound is a backstop
        let mut refused = 0;
        loop {
            let attempt = call.retry.attempt();
            let soonest = match self.pick(live, targets, call.retry.tried()) {
                Picked::Go { target, cred } => {
                    let provider = targets[target].provider;
                    if refused < MAX_SHARED_REFUSALS {
                        if let Admit::Refused = self.shared_admit(live, provider, cred).await {
                            refused += 1;
                            continue;
                        }
                    }
                    call.retry.note_tried(provider, cred);
                    return Ok((target, cred));
                }
                Picked::None { soonest } => soonest,
            };
            let now = self.clock.now();
            let wait = soonest.map(|s| s.saturating_duration_since(now));
            // after a failure, wait out a short Retry-After / recovery instead of giving up
            if let WhenNoneAvailable::Wait(w) = call.retry.when_none_available(wait, Instant::now())
            {
                call.sleep(w).await;
                continue;
            }
            self.metrics
                .record_client_call(attempt.saturating_sub(1), call.overhead());
            if let Some((f, pi)) = call.last.take() {
                // a failure just happened (e.g. 429 with a long Retry-After): report it
                let ra = wait.filter(|w| !w.is_zero());
                return Err(error_response(
                    call.front,
                    &f.api_error(&live.cfg.providers[pi].name, &live.secrets),
                    ra,
                ));
            }
            // nothing was sent upstream for this call: the one case counted as
            // rejected_all_open (docs/gateway.md, /status)
            self.metrics.record_all_open();
            let secs = wait.map_or(1, |w| w.as_secs_f64().ceil().max(1.0) as u64);
            let e = ApiError::new(
                ErrorKind::Overloaded,
                format!("every provider credential for {model:?} is open or rate-limited; retry in {secs}s"),
            );
            return Err(error_response(
                call.front,
                &e,
                Some(Duration::from_secs(secs)),
            ));
        }
    }

    /// An attempt failed: its guard records the outcome (breaker, metrics), the
    /// call's log line notes it; then [`Gateway::after_failure`].
    pub(super) async fn attempt_failed(
        &self,
        mut guard: CallGuard,
        failure: Failure,
        retry_after: Option<Duration>,
        log: &mut CallLog,
        call: &mut CallState,
    ) -> Result<(), Response> {
        guard.retry_after = retry_after;
        let outcome = failure.outcome();
        log.with(|l| l.outcome = Some(outcome.as_str()));
        guard.finish(outcome);
        let (live, provider) = (guard.live.clone(), guard.targets[guard.target].provider);
        drop(guard);
        self.after_failure(&live, provider, failure, retry_after, call)
            .await
    }

    /// After a failed attempt on `provider` (its guard already finished): `Ok` to
    /// make the next attempt (the backoff slept), or the answer for the client.
    pub(super) async fn after_failure(
        &self,
        live: &Live,
        provider: usize,
        failure: Failure,
        retry_after: Option<Duration>,
        call: &mut CallState,
    ) -> Result<(), Response> {
        let attempt = call.retry.attempt();
        let outcome = failure.outcome();
        let jitter = |hi: f64| rand::rng().random_range(0.0..=hi);
        match call
            .retry
            .after_failure(failure.retryable(), Instant::now(), jitter)
        {
            AfterFailure::Stop => {
                self.metrics.record_client_call(attempt, call.overhead());
                let ra = match outcome {
                    // when the credential is usable again: the wait asked for, cut
                    // to breaker.retry_after_max like the breaker's
                    Outcome::RateLimited => Some(
                        retry_after
                            .unwrap_or(live.cfg.breaker.rate_limit_default)
                            .min(live.cfg.breaker.retry_after_max),
                    ),
                    _ => None,
                };
                Err(error_response(
                    call.front,
                    &failure.api_error(&live.cfg.providers[provider].name, &live.secrets),
                    ra,
                ))
            }
            AfterFailure::Retry { pause } => {
                call.last = Some((failure, provider));
                if !pause.is_zero() {
                    call.sleep(pause).await;
                }
                Ok(())
            }
        }
    }
}
