//! The routes: the three chat APIs, the model lists, `/control`, `/stats`, `/health`.

use crate::headers::rate_limit;
use crate::plan::{Fault, Plan};
use crate::quota::Over;
use crate::stats::mask_key;
use crate::stream::{streamed, whole, Answer, Tally};
use crate::{control, Control, State};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as Ext};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use powertune_dialect::{parse_request, render_models, ApiError, ErrorKind, Front};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type S = Ext<Arc<State>>;

pub(crate) fn router(state: Arc<State>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai))
        .route("/chat/completions", post(openai))
        .route("/v1/messages", post(anthropic))
        .route("/api/chat", post(ollama))
        .route("/v1/models", get(models))
        .route("/api/tags", get(tags))
        .route("/control", get(control_get).post(control_post))
        .route("/stats", get(stats))
        .route("/health", get(|| async { "ok\n" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn openai(Ext(s): S, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    chat(&s, Front::OpenAi, uri.path(), &h, body).await
}

async fn anthropic(Ext(s): S, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    chat(&s, Front::Anthropic, uri.path(), &h, body).await
}

async fn ollama(Ext(s): S, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    chat(&s, Front::Ollama, uri.path(), &h, body).await
}

/// The API key a request carries: `x-api-key` (Anthropic) or `Authorization: Bearer`.
fn api_key(h: &HeaderMap) -> &str {
    if let Some(k) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return k.trim();
    }
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map_or("", str::trim)
}

fn error(front: Front, status: u16, e: &ApiError, headers: HeaderMap) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, headers, Json(e.body(front))).into_response()
}

/// The API's error kind for a scripted status.
fn kind_of(status: u16) -> ErrorKind {
    match status {
        401 => ErrorKind::Authentication,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        413 => ErrorKind::TooLarge,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        504 => ErrorKind::Timeout,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Upstream,
    }
}

async fn chat(s: &Arc<State>, front: Front, path: &str, h: &HeaderMap, body: Bytes) -> Response {
    let t0 = Instant::now();
    let key = api_key(h);
    s.count_key(key);
    *s.last.lock() = Some((path.to_string(), body.clone()));
    let label = match s.keys.get(key) {
        Some(k) => k.name.clone(),
        None if key.is_empty() => "(none)".to_string(),
        None => mask_key(key),
    };
    let req = match parse_request(front, &body) {
        Ok(r) => r,
        Err(e) => {
            s.stats.update(&label, "(unreadable)", |c| {
                c.calls += 1;
                c.bad_requests += 1;
            });
            return error(front, e.kind.status(), &e, HeaderMap::new());
        }
    };
    let live = s.live();
    let (slot, seq) = match s.seqs.get(&req.model) {
        Some((slot, n)) => (*slot, n.fetch_add(1, Ordering::Relaxed)),
        None => (0, s.default_seq.fetch_add(1, Ordering::Relaxed)),
    };
    let spec = live.models.get(&req.model).unwrap_or(&live.defaults);
    let scale = live.time_scale;
    let mut plan = Plan::draw(s.seed, slot, seq, &req, spec, &live.faults, scale);
    let script = s.script(&live);
    if let Some(sc) = &script {
        plan.follow(sc, req.max_tokens);
    }
    let model = req.model.as_str();
    s.stats.update(&label, model, |c| {
        c.calls += 1;
        c.streamed += u64::from(req.stream);
        c.scripted += u64::from(script.is_some());
    });
    if let Some(f) = live.faults.flap {
        let every = f.every.mul_f64(scale).as_nanos().max(1);
        let down = f.down.mul_f64(scale).as_nanos();
        if t0.duration_since(s.started).as_nanos() % every < down {
            s.stats.update(&label, model, |c| c.faults.flap_down += 1);
            let e = ApiError::new(
                ErrorKind::Overloaded,
                "the simulated provider is down (flapping)",
            );
            return error(front, 503, &e, HeaderMap::new());
        }
    }
    let quota = s.keys.get(key).map_or(live.quota, |k| k.quota);
    let mut headers = HeaderMap::new();
    if quota.rpm.is_some() || quota.tpm.is_some() {
        let cost = plan.input_tokens + plan.output_tokens;
        let window = Duration::from_secs(60).mul_f64(scale);
        match s.quotas.admit(key, quota, cost, window, t0) {
            Ok(q) => headers = rate_limit(front, &q, false),
            Err((over, q)) => {
                let (what, limit) = match over {
                    Over::Requests => ("requests per min (RPM)", quota.rpm),
                    Over::Tokens => ("tokens per min (TPM)", quota.tpm),
                };
                s.stats.update(&label, model, |c| match over {
                    Over::Requests => c.rate_limited_requests += 1,
                    Over::Tokens => c.rate_limited_tokens += 1,
                });
                let e = ApiError::new(
                    ErrorKind::RateLimited,
                    format!(
                        "Rate limit reached for {what} on key {label}: Limit {}, Requested {}. Please try again in {}.",
                        limit.unwrap_or(0),
                        if over == Over::Requests { 1 } else { cost },
                        crate::headers::openai_reset(q.reset_in)
                    ),
                );
                return error(front, 429, &e, rate_limit(front, &q, true));
            }
        }
    }
    if let Some(sc) = &script {
        if !sc.delay.is_zero() {
            tokio::time::sleep(sc.delay.mul_f64(scale)).await;
        }
        if let Some(status) = sc.status {
            if let Some(ra) = &sc.retry_after {
                headers.insert(header::RETRY_AFTER, ra.clone());
            }
            let e = ApiError::new(
                kind_of(status),
                format!("the simulated provider answered {status} (script)"),
            );
            return error(front, status, &e, headers);
        }
    }
    match plan.fault {
        Some(Fault::ServerError) => {
            s.stats
                .update(&label, model, |c| c.faults.server_error += 1);
            let e = ApiError::new(
                ErrorKind::Upstream,
                "the simulated provider failed (fault script: error_rate)",
            );
            return error(front, live.faults.error_status, &e, headers);
        }
        Some(Fault::Overloaded) => {
            s.stats.update(&label, model, |c| c.faults.overloaded += 1);
            let e = ApiError::new(ErrorKind::Overloaded, "Overloaded");
            let status = if front == Front::Anthropic { 529 } else { 503 };
            return error(front, status, &e, headers);
        }
        _ => {}
    }
    s.stats.update(&label, model, |c| {
        c.completed += 1;
        c.input_tokens += plan.input_tokens;
        c.output_tokens += plan.output_tokens;
        match plan.fault {
            Some(Fault::StallFirst) => c.faults.stall_first += 1,
            Some(Fault::StallMid) => c.faults.stall_mid += 1,
            Some(Fault::Drop) => c.faults.dropped += 1,
            Some(Fault::Malformed) => c.faults.malformed += 1,
            Some(Fault::MidStreamError) => c.faults.mid_stream_error += 1,
            _ => {}
        }
    });
    let id = match front {
        Front::OpenAi => format!("chatcmpl-sim{slot}x{seq}"),
        Front::Anthropic => format!("msg_sim{slot}x{seq}"),
        Front::Ollama => String::new(),
    };
    let call_id = match front {
        Front::Anthropic => format!("toolu_sim{slot}x{seq}"),
        _ => format!("call_sim{slot}x{seq}"),
    };
    let error_after = match (&script, plan.fault) {
        (Some(sc), _) if sc.error_after.is_some() => sc.error_after,
        (_, Some(Fault::MidStreamError)) => Some(
            live.faults
                .mid_stream_error_after
                .unwrap_or(plan.midpoint()),
        ),
        _ => None,
    };
    let a = Answer {
        front,
        id,
        call_id,
        model: req.model.clone(),
        include_usage: req.include_usage,
        stall_first: live.faults.stall_first.mul_f64(scale),
        stall_mid: live.faults.stall_mid.mul_f64(scale),
        error_after,
        stall_after: script
            .as_ref()
            .and_then(|sc| sc.stall_after.map(|n| (n, sc.stall.mul_f64(scale)))),
        chunk_delay: script
            .as_ref()
            .and_then(|sc| sc.chunk_delay.map(|d| d.mul_f64(scale))),
        words: script.as_ref().and_then(|sc| sc.words.clone()),
        tool_call: script.as_ref().and_then(|sc| sc.tool_call.clone()),
        t0,
        headers,
        tally: Tally {
            state: Arc::clone(s),
            label,
            model: req.model.clone(),
        },
    };
    if req.stream {
        streamed(plan, a)
    } else {
        whole(plan, a).await
    }
}

fn model_ids(s: &State) -> Vec<String> {
    let live = s.live();
    if live.models.is_empty() {
        vec!["sim".to_string()]
    } else {
        live.models.keys().cloned().collect()
    }
}

/// `GET /v1/models`: Anthropic's list when the request carries `anthropic-version`
/// (the Anthropic SDKs always send it), else OpenAI's.
async fn models(Ext(s): S, h: HeaderMap) -> Response {
    let front = if h.contains_key("anthropic-version") {
        Front::Anthropic
    } else {
        Front::OpenAi
    };
    let ids = model_ids(&s);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Json(render_models(front, &ids, "powertune-provider-sim")).into_response()
}

async fn tags(Ext(s): S) -> Response {
    let ids = model_ids(&s);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Json(render_models(Front::Ollama, &ids, "powertune-provider-sim")).into_response()
}

async fn stats(Ext(s): S) -> Response {
    Json(s.stats.snapshot(s.started.elapsed().as_secs_f64())).into_response()
}

async fn control_get(Ext(s): S) -> Response {
    Json(control::settings(&s.live(), s.next.lock().len())).into_response()
}

async fn control_post(Ext(s): S, body: Bytes) -> Response {
    let bad = |why: String| {
        let e = ApiError::new(ErrorKind::InvalidRequest, why);
        error(Front::OpenAi, 400, &e, HeaderMap::new())
    };
    let c: Control = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad(format!("the /control body is not a change: {e}, e.g. {{\"ttft\": \"200ms\", \"faults\": {{\"drop_rate\": 0.1}}}}")),
    };
    match control::apply(&s, &c) {
        Ok(()) => Json(control::settings(&s.live(), s.next.lock().len())).into_response(),
        Err(why) => bad(why),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let front = if uri.path().starts_with("/api/") {
        Front::Ollama
    } else {
        Front::OpenAi
    };
    let e = ApiError::new(
        ErrorKind::UnknownPath,
        format!(
            "no such endpoint: {}; the simulator serves POST /v1/chat/completions, /v1/messages, /api/chat, GET /v1/models, /api/tags, /stats, /control",
            uri.path()
        ),
    );
    error(front, 404, &e, HeaderMap::new())
}
