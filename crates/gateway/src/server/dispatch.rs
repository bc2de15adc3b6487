//! One client call from request to response: parse (or peek) the body, resolve the
//! model to targets, pick a credential, run attempts under the retry policy, and
//! answer in the client's format.

use super::attempt::{CallGuard, Failure, Success};
use super::gateway::Gateway;
use super::live::Live;
use super::relay::Relay;
use super::response::{decorate, error_response, internal_error, overhead};
use super::retry::{AfterFailure, RetryLoop, WhenNoneAvailable};
use crate::breaker::Admission;
use crate::config::Target;
use crate::metrics::Outcome;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use powertune_dialect::{
    check_request, has_provider_limits, parse_request, peek_request, provider_request,
    render_response, same_format, ApiError, ChatRequest, ErrorKind, Front, StreamEncoder, Usage,
};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Header a client sets to pick a route class (`latency`, `batch`, ...).
pub const ROUTE_HEADER: &str = "x-powertune-route";

pub(super) enum Picked {
    Go { target: usize, cred: usize },
    None { soonest: Option<Instant> },
}

impl Gateway {
    /// The ordered targets for a request.
    pub(super) fn resolve(
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
        // the name is the client's: cut like a metrics label so the answer stays small
        let model = crate::metrics::label(model);
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
    pub(super) fn pick(&self, live: &Live, targets: &[Target], avoid: &[(usize, usize)]) -> Picked {
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

    /// Handles one chat call for `front`.
    pub(super) async fn chat(
        self: Arc<Self>,
        front: Front,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
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
        let mut retry = RetryLoop::new(&live.cfg.retry, live.cfg.timeouts.request, Instant::now());
        let deadline = retry.deadline();
        let mut waited = Duration::ZERO;
        let mut last: Option<(Failure, usize)> = None;
        loop {
            let attempt = retry.attempt();
            let (ti, ci) = match self.pick(&live, &targets, retry.tried()) {
                Picked::Go { target, cred } => (target, cred),
                Picked::None { soonest } => {
                    let now = self.clock.now();
                    let wait = soonest.map(|s| s.saturating_duration_since(now));
                    // after a failure, wait out a short Retry-After / recovery instead of giving up
                    if let WhenNoneAvailable::Wait(w) =
                        retry.when_none_available(wait, Instant::now())
                    {
                        let s = std::time::Instant::now();
                        tokio::time::sleep(w).await;
                        waited += s.elapsed();
                        continue;
                    }
                    self.metrics
                        .record_client_call(attempt.saturating_sub(1), overhead(t0, waited));
                    if let Some((f, pi)) = last {
                        // a failure just happened (e.g. 429 with a long Retry-After): report it
                        let ra = wait.filter(|w| !w.is_zero());
                        return error_response(
                            front,
                            &f.api_error(&live.cfg.providers[pi].name, &live.secrets),
                            ra,
                        );
                    }
                    // nothing was sent upstream for this call: the one case counted as
                    // rejected_all_open (docs/gateway.md, /status)
                    self.metrics.record_all_open();
                    let secs = wait.map_or(1, |w| w.as_secs_f64().ceil().max(1.0) as u64);
                    let e = ApiError::new(
                        ErrorKind::Overloaded,
                        format!("every provider credential for {model:?} is open or rate-limited; retry in {secs}s"),
                    );
                    return error_response(front, &e, Some(Duration::from_secs(secs)));
                }
            };
            let target = &targets[ti];
            retry.note_tried(target.provider, ci);
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
                    let enc = StreamEncoder::new(front, id, target.model.clone(), include_usage);
                    let relay = Relay::new(
                        guard,
                        upstream,
                        dec,
                        enc,
                        first,
                        broken,
                        live.cfg.timeouts.idle,
                        deadline,
                        live.cfg.providers[target.provider].name.clone(),
                    );
                    let mut resp = relay.into_response();
                    decorate(&live, &mut resp, target.provider, ci, attempt, ov);
                    return resp;
                }
                Err((failure, ra)) => {
                    guard.retry_after = ra;
                    let outcome = failure.outcome();
                    guard.finish(outcome);
                    drop(guard);
                    let jitter = |hi: f64| rand::rng().random_range(0.0..=hi);
                    match retry.after_failure(failure.retryable(), Instant::now(), jitter) {
                        AfterFailure::Stop => {
                            self.metrics
                                .record_client_call(attempt, overhead(t0, waited));
                            let ra = match outcome {
                                // when the credential is usable again: the wait asked
                                // for, cut to breaker.retry_after_max like the breaker's
                                Outcome::RateLimited => Some(
                                    ra.unwrap_or(live.cfg.breaker.rate_limit_default)
                                        .min(live.cfg.breaker.retry_after_max),
                                ),
                                _ => None,
                            };
                            return error_response(
                                front,
                                &failure.api_error(
                                    &live.cfg.providers[target.provider].name,
                                    &live.secrets,
                                ),
                                ra,
                            );
                        }
                        AfterFailure::Retry { pause } => {
                            last = Some((failure, target.provider));
                            if !pause.is_zero() {
                                let s = std::time::Instant::now();
                                tokio::time::sleep(pause).await;
                                waited += s.elapsed();
                            }
                        }
                    }
                }
            }
        }
    }
}
