//! One client call from request to response: parse (or peek) the body, resolve the
//! model to targets, pick a credential, run attempts under the retry policy, and
//! answer in the client's format.

use super::attempt::{CallGuard, Success};
use super::auth::ClientGate;
use super::call::CallState;
use super::gateway::Gateway;
use super::live::Live;
use super::relay::Relay;
use super::response::{decorate, error_response, internal_error};
use crate::breaker::Admission;
use crate::config::Target;
use crate::events::{api_name, CallLog};
use crate::metrics::Outcome;
use crate::quota::Steer;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use powertune_dialect::{
    check_request, has_provider_limits, parse_request, peek_request, provider_request,
    render_response, same_format, ApiError, ChatRequest, ErrorKind, Front, StreamEncoder,
};
use rand::Rng;
use std::sync::Arc;
use tokio::time::Instant;

/// Header a client sets to pick a route class (`latency`, `batch`, ...).
pub const ROUTE_HEADER: &str = "x-powertune-route";

pub(super) enum Picked {
    Go { target: usize, cred: usize },
    None { soonest: Option<Instant> },
}

impl Gateway {
    /// The ordered targets for a request.
    /// The ordered targets for a request, and the route class it takes (by the
    /// route header, by naming the class as the model, or by a rule).
    pub(super) fn resolve<'a>(
        &self,
        live: &'a Live,
        model: &str,
        route: Option<&str>,
    ) -> Result<(Arc<[Target]>, Option<&'a str>), ApiError> {
        let cfg = &live.cfg;
        let classes = || cfg.routes.keys().cloned().collect::<Vec<_>>().join(", ");
        let class = |name: &str| {
            live.classes
                .get_key_value(name)
                .map(|(k, t)| (t.clone(), Some(k.as_str())))
        };
        if let Some(r) = route {
            return class(r).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "{ROUTE_HEADER}: unknown route class {r:?}; configured: [{}]",
                        classes()
                    ),
                )
            });
        }
        if let Some(found) = class(model) {
            return Ok(found);
        }
        if let Some(t) = live.aliases.get(model) {
            return Ok((t.clone(), None));
        }
        for (prefix, c) in &cfg.rules {
            if model.starts_with(prefix.as_str()) {
                if let Some(found) = class(c) {
                    return Ok(found);
                }
            }
        }
        if let Some(t) = crate::config::parse_target(model, &cfg.providers) {
            return Ok((Arc::from(vec![t]), None));
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
    /// A credential whose quota (tpm, the provider's rate-limit headers) is near its
    /// end is picked only when no other credential of the target is available.
    pub(super) fn pick(
        &self,
        live: &Live,
        targets: &[Target],
        avoid: &[(usize, usize)],
        tokens: u64,
    ) -> Picked {
        let now = self.clock.now();
        // [shared]: the mirror's rpm wait stands in for the local limiter, and a
        // breaker wait older than shared.cache is asked again instead of trusted
        let shared = self
            .shared
            .as_ref()
            .filter(|s| s.is_shared())
            .map(|s| s.config().cache);
        let mut soonest: Option<Instant> = None;
        let mut avail: Vec<(usize, u32)> = Vec::new();
        let mut last: Vec<(usize, u32)> = Vec::new();
        for pass in 0..2 {
            for (ti, t) in targets.iter().enumerate() {
                let p = &live.cfg.providers[t.provider];
                let sel = &live.selectors[t.provider];
                let mut picker = sel.picker.lock();
                avail.clear();
                last.clear();
                for (ci, c) in p.credentials.iter().enumerate() {
                    if pass == 0 && avoid.contains(&(t.provider, ci)) {
                        continue;
                    }
                    let (b, l, q) = {
                        let st = sel.creds[ci].lock();
                        let b = st.breaker.check(now);
                        let q = st.quota(now, tokens, shared.is_none());
                        let (b, l) = match shared {
                            None => (b, st.limiter.as_ref().and_then(|l| l.check(now))),
                            Some(cache) => {
                                let stale = st
                                    .synced
                                    .is_none_or(|t| now.saturating_duration_since(t) >= cache);
                                let b = match b {
                                    Admission::Wait { .. } if stale => {
                                        Admission::Go { probe: false }
                                    }
                                    b => b,
                                };
                                (b, st.shared_wait.filter(|w| *w > now))
                            }
                        };
                        (b, l, q)
                    };
                    let l = match q {
                        Steer::Wait(w) => Some(l.map_or(w, |l| l.max(w))),
                        _ => l,
                    };
                    match (b, l) {
                        (Admission::Go { .. }, None) if q == Steer::Last => {
                            last.push((ci, c.weight))
                        }
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
                let usable = if avail.is_empty() { &last } else { &avail };
                if let Some(ci) = picker.pick(p.credentials.len(), usable) {
                    let (from, to, consecutive) = {
                        let mut st = sel.creds[ci].lock();
                        let from = st.breaker.phase();
                        let _ = st.breaker.admit(now);
                        if shared.is_none() {
                            if let Some(l) = st.limiter.as_mut() {
                                l.take(now);
                            }
                        }
                        st.reserve(now, tokens);
                        (from, st.breaker.phase(), st.breaker.consecutive_failures())
                    };
                    // an open breaker past its deadline lets this call through as a probe
                    self.log_transition(live, (t.provider, ci), from, to, consecutive, "probe");
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

    /// Handles one chat call for `front`, with its access-log line.
    pub(super) async fn chat(
        self: Arc<Self>,
        front: Front,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut log = CallLog::new(self.event_log(), "chat", api_name(front));
        let resp = self.chat_call(front, headers, body, &mut log).await;
        log.with(|l| l.status = resp.status().as_u16());
        resp
    }

    /// May `client` (from [`Gateway::authenticate`]) call `model` by route class
    /// `class`? `Err` is the refusal to answer; `Ok(Some)`, a client whose rpm and tpm
    /// the call's shared admission decides (`[shared]`).
    pub(super) fn admit_client(
        self: &Arc<Self>,
        live: &Arc<Live>,
        front: Front,
        client: Option<usize>,
        model: &str,
        class: Option<&str>,
    ) -> Result<Option<ClientGate>, Box<Response>> {
        let Some(client) = client else {
            return Ok(None);
        };
        let name = &live.cfg.clients[client].name;
        match self.permit(live, client, model, class) {
            Ok(true) => Ok(Some(ClientGate::new(self, live, client))),
            Ok(false) => {
                self.metrics.record_client(name, None);
                Ok(None)
            }
            Err((why, e, wait)) => {
                self.metrics.record_client(name, Some(why));
                Err(Box::new(error_response(front, &e, wait)))
            }
        }
    }

    async fn chat_call(
        self: Arc<Self>,
        front: Front,
        headers: HeaderMap,
        body: Bytes,
        log: &mut CallLog,
    ) -> Response {
        let t0 = std::time::Instant::now();
        let live = self.live();
        let client = match self.authenticate(&live, &headers) {
            Ok(c) => c,
            Err((why, e)) => {
                self.metrics.record_refusal(why);
                return error_response(front, &e, None);
            }
        };
        if let Some(c) = client {
            log.with(|l| l.client = Some(live.cfg.clients[c].name.clone()));
        }
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
        log.with(|l| l.model = Some(crate::metrics::label(&model).into_owned()));
        let (targets, class) = match self.resolve(&live, &model, route) {
            Ok(t) => t,
            Err(e) => return error_response(front, &e, None),
        };
        log.with(|l| l.route = class.map(str::to_string));
        let gate = match self.admit_client(&live, front, client, &model, class) {
            Ok(g) => g,
            Err(refused) => return *refused,
        };
        let (targets, class, bill) = match self
            .admit_budget(&live, front, client, &model, (targets, class))
            .await
        {
            Ok(admitted) => admitted,
            Err(answer) => return answer,
        };
        log.with(|l| l.route = class.map(str::to_string));
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
        let mut call = CallState::new(front, t0, &live);
        call.tokens = crate::quota::estimate(&body, true);
        call.client = gate;
        call.span = self.telemetry.call(&headers, t0, "chat", &model, class);
        let deadline = call.retry.deadline();
        loop {
            let attempt = call.retry.attempt();
            let (ti, ci) = match self
                .next_credential(&live, &targets, &model, &mut call)
                .await
            {
                Ok(picked) => picked,
                Err(answer) => return answer,
            };
            let target = &targets[ti];
            log.with(|l| {
                let p = &live.cfg.providers[target.provider];
                l.provider = Some(p.name.clone());
                l.credential = Some(p.credentials[ci].name.clone());
                l.attempts = attempt + 1;
            });
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
            let mut guard = CallGuard::new(&self, &live, &targets, ti, ci);
            (guard.reserved, guard.client) = (call.tokens, client);
            guard.client_reserved = std::mem::take(&mut call.client_reserved);
            guard.bill = bill.clone();
            guard.start_span(&call);
            let up_start = std::time::Instant::now();
            let result = guard
                .span
                .scope(self.attempt(&live, target, ci, up_body, stream, pass, deadline))
                .await;
            call.waited += up_start.elapsed();
            match result {
                Ok(Success::Raw { body, peeked }) => {
                    guard.usage = peeked.usage;
                    guard.span.note_peeked(peeked.model, peeked.finish);
                    guard.log = log.hand_off();
                    guard.log.with(|l| l.status = 200);
                    guard.finish(Outcome::Ok);
                    let ov = call.overhead();
                    self.metrics.record_client_call(attempt, ov);
                    let mut r = Response::new(Body::from(body));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    decorate(&live, &mut r, target.provider, ci, attempt, ov);
                    return r;
                }
                Ok(Success::Full(resp)) => {
                    guard.usage = resp.usage;
                    guard.span.note_answer(&resp.model, resp.finish.openai());
                    guard.log = log.hand_off();
                    guard.log.with(|l| l.status = 200);
                    guard.finish(Outcome::Ok);
                    let ov = call.overhead();
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
                    // the stream's end writes the line, with its tokens
                    guard.log = log.hand_off();
                    guard.log.with(|l| l.status = 200);
                    let ov = call.overhead();
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
                    if let Err(answer) = self
                        .attempt_failed(guard, failure, ra, log, &mut call)
                        .await
                    {
                        return answer;
                    }
                }
            }
        }
    }
}
