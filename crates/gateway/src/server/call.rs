//! What every client call (chat or embeddings) does between attempts: pick the next
//! (target, credential) or wait for one to come back, and after a failed attempt
//! either retry or answer the client with the failure.

use super::attempt::{CallGuard, Failure, UpResponse};
use super::auth::{over_limit, ClientGate};
use super::dispatch::Picked;
use super::fleet::Admit;
use super::gateway::Gateway;
use super::live::{CredState, Live};
use super::response::{error_response, overhead};
use super::retry::{AfterFailure, RetryLoop, WhenNoneAvailable};
use crate::config::Target;
use crate::events::CallLog;
use crate::metrics::Outcome;
use crate::quota::{RateHeaders, Steer};
use crate::routing::LatencyTable;
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
    /// The tokens each attempt reserves on its credential's tpm ([`crate::quota::estimate`]).
    pub(super) tokens: u64,
    /// The call's span (`[telemetry]`), or the client's trace context.
    pub(super) span: crate::telemetry::CallSpan,
    /// `[shared]`: the calling client whose rpm and tpm the call's first admission
    /// decides (see [`ClientGate`]).
    pub(super) client: Option<ClientGate>,
    /// Tokens that admission reserved on the client's shared tpm, for the attempt
    /// that takes them (its outcome corrects them with the real usage).
    pub(super) client_reserved: u64,
}

impl CallState {
    pub(super) fn new(front: Front, t0: std::time::Instant, live: &Live) -> CallState {
        CallState {
            front,
            t0,
            retry: RetryLoop::new(&live.cfg.retry, live.cfg.timeouts.request, Instant::now()),
            waited: Duration::ZERO,
            last: None,
            tokens: 0,
            span: Default::default(),
            client: None,
            client_reserved: 0,
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
        // routing = "latency": the targets fastest first (`order[i]` is the index in
        // `targets` of the i-th tried)
        let ordered = self.latency_order(live, targets);
        let (order, tried_targets) = match &ordered {
            Some((o, t)) => (Some(o.as_slice()), t.as_slice()),
            None => (None, targets),
        };
        loop {
            let attempt = call.retry.attempt();
            if let Some(refused) = self.client_on_local(live, call) {
                return Err(refused);
            }
            let picked = self.pick(live, tried_targets, call.retry.tried(), call.tokens);
            let soonest = match picked {
                Picked::Go { target, cred } => {
                    let target = order.map_or(target, |o| o[target]);
                    let provider = targets[target].provider;
                    if refused < MAX_SHARED_REFUSALS {
                        let client = call.client.as_ref().filter(|g| g.open()).map(|g| g.client);
                        let admit = self
                            .shared_admit(live, (provider, cred), call.tokens, client)
                            .await;
                        // (the mirror's tpm bucket took the shared one's level)
                        match admit {
                            Admit::Go { client: true } => {
                                call.client_reserved = call.tokens;
                                if let Some(g) = call.client.as_mut() {
                                    g.decide(None);
                                }
                            }
                            Admit::Go { client: false } => {}
                            Admit::Refused => {
                                refused += 1;
                                continue;
                            }
                            Admit::Client { tokens, wait } => {
                                // (only asked with the call's client)
                                if let Some(g) = call.client.as_mut() {
                                    let c = &live.cfg.clients[g.client];
                                    let (why, e, ra) = over_limit(c, tokens, wait);
                                    g.decide(Some(why));
                                    return Err(error_response(call.front, &e, ra));
                                }
                            }
                        }
                    }
                    // not decided by Redis (it went away during the admission, or too
                    // many refusals): the call goes, counted on this replica's limiter
                    if let Some(g) = call.client.as_mut().filter(|g| g.open()) {
                        let _ = self.client_limits(live, g.client, false);
                        g.decide(None);
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

    /// A client left to the shared admission when the replica has gone local since
    /// the call came in: its limits on this replica decide, before anything is picked
    /// (`Some`: the refusal to answer).
    fn client_on_local(&self, live: &Live, call: &mut CallState) -> Option<Response> {
        let g = call.client.as_mut().filter(|g| g.open())?;
        if self.client_shared(live, g.client).is_some() {
            return None;
        }
        match self.client_limits(live, g.client, true) {
            Ok(()) => {
                g.decide(None);
                None
            }
            Err((why, e, wait)) => {
                g.decide(Some(why));
                Some(error_response(call.front, &e, wait))
            }
        }
    }

    /// Takes the provider's rate-limit headers of an answer on (provider, cred) into
    /// the credential's state (the steering of [`Gateway::pick`]).
    pub(super) fn note_rate_headers(
        &self,
        live: &Live,
        (pi, ci): (usize, usize),
        resp: &UpResponse,
    ) {
        let wall = std::time::SystemTime::now();
        let told = match resp {
            UpResponse::Plain(r) if r.rate_headers.is_empty() => return,
            UpResponse::Plain(r) => RateHeaders::read(
                |n| {
                    r.rate_headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.as_str())
                },
                wall,
            ),
            UpResponse::Reqwest(r) => {
                let h = r.headers();
                RateHeaders::read(|n| h.get(n).and_then(|v| v.to_str().ok()), wall)
            }
        };
        if let Some(told) = told {
            let now = self.clock.now();
            live.selectors[pi].creds[ci].lock().told.update(&told, now);
        }
    }

    /// With `routing = "latency"` on (part of) `targets`: the order to try them in,
    /// and the targets in that order.
    fn latency_order(&self, live: &Live, targets: &[Target]) -> Option<(Vec<usize>, Vec<Target>)> {
        if live.latency_segments.is_empty() {
            return None;
        }
        let seg = live
            .latency_segments
            .get(&crate::routing::list_id(targets))?;
        let now = self.clock.now();
        let order = LatencyTable::order(targets.len(), seg, |i| {
            let t = &targets[i];
            self.latency
                .p95(&live.cfg.providers[t.provider].name, &t.model, now)
        });
        let list = order.iter().map(|&i| targets[i].clone()).collect();
        Some((order, list))
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
        let cost = guard.bill.as_ref().and_then(|b| b.cost_usd());
        log.with(|l| l.cost_usd = cost);
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

impl CredState {
    /// What this credential's quotas say about a call of `tokens` now: its own tpm
    /// bucket (when `local`; under `[shared]` the shared bucket decides at admission)
    /// and its provider's rate-limit headers.
    pub(super) fn quota(&self, now: Instant, tokens: u64, local: bool) -> Steer {
        let tpm = self
            .tpm
            .as_ref()
            .filter(|_| local)
            .and_then(|b| b.check(now, tokens));
        match (tpm, self.told.steer(now, tokens)) {
            (Some(a), Steer::Wait(b)) => Steer::Wait(a.max(b)),
            (Some(a), _) => Steer::Wait(a),
            (None, s) => s,
        }
    }

    /// A call of `tokens` was picked for this credential.
    pub(super) fn reserve(&mut self, now: Instant, tokens: u64) {
        if let Some(b) = self.tpm.as_mut() {
            b.take(now, tokens);
        }
        self.told.sent(now);
    }

    /// A call that reserved `reserved` ended having used `used`.
    pub(super) fn settle(&mut self, now: Instant, reserved: u64, used: u64) {
        if let Some(b) = self.tpm.as_mut() {
            b.settle(now, reserved, used);
        }
    }
}

impl CallGuard {
    /// With latency routing configured: the attempt's latency goes into its target's
    /// estimate (the time to first token of a stream, else the whole round trip; a
    /// timeout counts its time).
    pub(super) fn note_latency(&self, now: Instant, outcome: Outcome) {
        if self.live.latency_segments.is_empty()
            || !matches!(outcome, Outcome::Ok | Outcome::Timeout)
        {
            return;
        }
        let t = &self.targets[self.target];
        let took = self.ttft.unwrap_or_else(|| self.started.elapsed());
        let p = &self.live.cfg.providers[t.provider].name;
        self.gw.latency.observe(p, &t.model, now, took);
    }

    /// The attempt ended: its credential's tpm gets back what it reserved and did not
    /// use (the usage the answer reported; an answer that reported none keeps its
    /// estimate; a failure before any answer used nothing), and the calling client's
    /// tpm is charged what it used. Returns what went back (negative: taken), for
    /// the shared buckets: the credential's, the client's (of what its admission
    /// reserved there).
    pub(super) fn settle_tokens(&self, now: Instant, outcome: Outcome) -> (i64, i64) {
        let reported = self.usage.input.saturating_add(self.usage.output);
        let answered = matches!(
            outcome,
            Outcome::Ok | Outcome::ClientClosed | Outcome::StreamError
        );
        let used = match reported {
            0 if answered => self.reserved,
            n => n,
        };
        let provider = self.targets[self.target].provider;
        self.live.selectors[provider].creds[self.cred]
            .lock()
            .settle(now, self.reserved, used);
        if used > 0 {
            self.gw.charge_client(&self.live, self.client, used);
        }
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (
            signed(self.reserved) - signed(used),
            signed(self.client_reserved) - signed(used),
        )
    }
}
