//! `POST /v1/embeddings` (OpenAI's API) to OpenAI-compatible, Azure OpenAI and
//! Ollama providers: the same client keys, routing, breakers, credential split,
//! retries and access log as a chat call; targets whose provider has no embeddings
//! endpoint (Anthropic) are left out.

use super::attempt::{read_whole, CallGuard};
use super::call::CallState;
use super::endpoint::Op;
use super::gateway::Gateway;
use super::response::{decorate, error_response};
use crate::config::{ProviderKind, Target};
use crate::events::CallLog;
use crate::metrics::Outcome;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use powertune_dialect::{
    parse_embedding_request, parse_provider_embeddings, provider_embedding_request, ApiError,
    ErrorKind, Front,
};
use std::sync::Arc;

impl Gateway {
    /// Handles one embeddings call, with its access-log line.
    pub(super) async fn embeddings(self: Arc<Self>, headers: HeaderMap, body: Bytes) -> Response {
        let mut log = CallLog::new(self.event_log(), "embeddings", "openai");
        let resp = self.embeddings_call(headers, body, &mut log).await;
        log.with(|l| l.status = resp.status().as_u16());
        resp
    }

    async fn embeddings_call(
        self: Arc<Self>,
        headers: HeaderMap,
        body: Bytes,
        log: &mut CallLog,
    ) -> Response {
        let front = Front::OpenAi;
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
        let req = match parse_embedding_request(&body) {
            Ok(r) => r,
            Err(e) => return error_response(front, &e, None),
        };
        log.with(|l| l.model = Some(crate::metrics::label(&req.model).into_owned()));
        let route = headers
            .get(super::ROUTE_HEADER)
            .and_then(|v| v.to_str().ok());
        let (targets, class) = match self.resolve(&live, &req.model, route) {
            Ok(t) => t,
            Err(e) => return error_response(front, &e, None),
        };
        log.with(|l| l.route = class.map(str::to_string));
        let gate = match self.admit_client(&live, front, client, &req.model, class) {
            Ok(g) => g,
            Err(refused) => return *refused,
        };
        let (targets, class, bill) = match self
            .admit_budget(&live, front, client, &req.model, (targets, class))
            .await
        {
            Ok(admitted) => admitted,
            Err(answer) => return answer,
        };
        log.with(|l| l.route = class.map(str::to_string));
        // only providers with an embeddings endpoint; token arrays only to OpenAI's format
        let usable: Vec<Target> = targets
            .iter()
            .filter(|t| {
                let kind = live.cfg.providers[t.provider].kind;
                live.endpoints.get(t, Op::Embeddings).is_some()
                    && (req.texts.is_some() || kind == ProviderKind::OpenAi)
            })
            .cloned()
            .collect();
        if usable.is_empty() {
            let model = crate::metrics::label(&req.model);
            return error_response(
                front,
                &ApiError::new(
                    ErrorKind::InvalidRequest,
                    format!("model {model:?} has no target that serves embeddings (OpenAI-compatible, Azure or Ollama providers; token-array input needs an OpenAI-compatible one)"),
                ),
                None,
            );
        }
        let targets: Arc<[Target]> = usable.into();
        let mut call = CallState::new(front, t0, &live);
        call.tokens = crate::quota::estimate(&body, false);
        call.client = gate;
        call.span = self
            .telemetry
            .call(&headers, t0, "embeddings", &req.model, class);
        let deadline = call.retry.deadline();
        loop {
            let attempt = call.retry.attempt();
            let (ti, ci) = match self
                .next_credential(&live, &targets, &req.model, &mut call)
                .await
            {
                Ok(picked) => picked,
                Err(answer) => return answer,
            };
            let target = &targets[ti];
            let p = &live.cfg.providers[target.provider];
            log.with(|l| {
                l.provider = Some(p.name.clone());
                l.credential = Some(p.credentials[ci].name.clone());
                l.attempts = attempt + 1;
            });
            let up_body = match provider_embedding_request(p.kind, &req, &target.model) {
                Ok(b) => b,
                Err(e) => return error_response(front, &e, None),
            };
            let mut guard = CallGuard::new(&self, &live, &targets, ti, ci);
            (guard.reserved, guard.client) = (call.tokens, client);
            guard.client_reserved = std::mem::take(&mut call.client_reserved);
            guard.bill = bill.clone();
            guard.start_span(&call);
            let up_start = std::time::Instant::now();
            let result = match guard
                .span
                .scope(self.send_checked(
                    live.as_ref(),
                    target,
                    Op::Embeddings,
                    ci,
                    up_body,
                    deadline,
                    "request timeout",
                ))
                .await
            {
                Ok(resp) => read_whole(resp, deadline, p.kind).await.and_then(|b| {
                    parse_provider_embeddings(p.kind, &b, &req)
                        .map_err(|e| (super::attempt::Failure::Decode(e), None))
                }),
                Err(e) => Err(e),
            };
            call.waited += up_start.elapsed();
            match result {
                Ok(answer) => {
                    guard.usage.input = answer.prompt_tokens;
                    guard.log = log.hand_off();
                    guard.log.with(|l| l.status = 200);
                    guard.finish(Outcome::Ok);
                    let ov = call.overhead();
                    self.metrics.record_client_call(attempt, ov);
                    let mut r = Response::new(Body::from(answer.body));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    decorate(&live, &mut r, target.provider, ci, attempt, ov);
                    return r;
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
