//! The HTTP endpoints. Each API request does its simulated work the same way:
//! injected delay → wait for and hold a database pool slot for its "queries" →
//! work outside the pool (agent/provider time) → possibly an injected 500 → build
//! and serialise its answer from the live state.

use crate::monitoring::monitoring_snapshot;
use crate::route::Route;
use crate::state::{unix_now, Execution, Mission, Shared};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub type AppState = Arc<Shared>;

/// An error answer: `{"error": "...", "status": N}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid token (send Authorization: Bearer <token from POST /api/v1/auth/login>)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.message, "status": self.status.as_u16()})),
        )
            .into_response()
    }
}

/// Middleware: times every request and counts it by route and status.
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = Route::classify(req.uri().path());
    let resp = if matches!(route, Route::Metrics | Route::Cable | Route::Other) {
        next.run(req).await
    } else {
        // The request's span: a child of the incoming `traceparent`, if any.
        let parent = s.telemetry.extract(req.headers());
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        s.telemetry
            .server(parent, &method, route.label(), &path, next.run(req))
            .await
    };
    if route != Route::Metrics {
        s.record(route, resp.status().as_u16(), started.elapsed());
    }
    resp
}

/// The shared simulated work of an API request on `route`.
async fn simulate(s: &Shared, route: Route) -> Result<(), ApiError> {
    let stall = *s.stall_until.lock();
    if let Some(until) = stall {
        if until > tokio::time::Instant::now() {
            tokio::time::sleep_until(until).await;
        }
    }
    let Some(rc) = s.route_config(route) else {
        return Ok(());
    };
    let delay = s.settings.config.extra_delay + rc.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (db, work) = s.draw_latency(route, rc);
    if !db.is_zero() {
        let (name, statement) = crate::telemetry::statement_of(route);
        let waited_from = std::time::SystemTime::now();
        let wait_started = Instant::now();
        let slot = s.acquire_slot().await.map_err(|t| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "could not obtain a database connection within {:.3} seconds (pool of {} exhausted)",
                    t.0.as_secs_f64(),
                    s.settings.config.pool_size
                ),
            )
        })?;
        let queried_from = std::time::SystemTime::now();
        if wait_started.elapsed() >= std::time::Duration::from_millis(1) {
            s.telemetry.child(
                "connection checkout",
                opentelemetry::trace::SpanKind::Client,
                waited_from,
                crate::telemetry::db_attrs("connection checkout", "checkout"),
            );
        }
        tokio::time::sleep(db).await;
        drop(slot);
        let op = name.split(' ').next().unwrap_or("SELECT");
        s.telemetry.child(
            name,
            opentelemetry::trace::SpanKind::Client,
            queried_from,
            crate::telemetry::db_attrs(statement, op),
        );
    }
    if !rc.cpu.is_zero() {
        s.cpu_work(rc.cpu).await;
    }
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    if s.draw_failure(route, rc.error_rate) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (routes.*.error_rate)",
        ));
    }
    Ok(())
}

fn bearer(s: &Shared, headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthorized)?;
    s.token_user(token).ok_or_else(ApiError::unauthorized)
}

/// Parses an optional JSON object body (empty = `{}`).
fn object_body(body: &Bytes, example: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON object, e.g. {example}"),
        )),
    }
}

fn text_field(m: &serde_json::Map<String, Value>, key: &str, max: usize) -> Option<String> {
    m.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.chars().take(max).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// `POST /api/v1/auth/login`
pub async fn login(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let creds: LoginBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body must be JSON like {\"email\":\"ana@example.com\",\"password\":\"demo\"}",
        )
    })?;
    // The user lookup is the login's database work, failed logins included.
    simulate(&s, Route::Login).await?;
    if !s.credentials_ok(&creds.email, &creds.password) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid email or password",
        ));
    }
    let email = creds.email.trim().to_ascii_lowercase();
    let token = s.issue_token(&email);
    Ok(Json(json!({
        "token": token,
        "token_type": "Bearer",
        "user": {"email": email},
    }))
    .into_response())
}

const WORDS: [&str; 24] = [
    "analysed", "queue", "latency", "provider", "mission", "agent", "summary", "retry", "budget",
    "tokens", "context", "plan", "step", "result", "cache", "index", "worker", "circuit",
    "breaker", "deploy", "metric", "trace", "span", "report",
];

/// `POST /api/v1/ai/agents/{id}/execute`
pub async fn execute(
    State(s): State<AppState>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    bearer(&s, &headers)?;
    if agent_id.len() > 64
        || !agent_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such agent (ids are up to 64 letters, digits, - or _, e.g. 42)",
        ));
    }
    let m = object_body(&body, "{\"input\":\"summarise the queue backlog\"}")?;
    let input = text_field(&m, "input", 4000)
        .or_else(|| text_field(&m, "prompt", 4000))
        .unwrap_or_default();
    if crate::llm::wants_stream(&m) {
        return crate::llm::stream_answer(&s.settings.config().llm, &s.telemetry, &input).await;
    }
    let started = Instant::now();
    let outcome = simulate(&s, Route::Execute).await;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let id = {
        let mut e = s.executions.lock();
        e.total += 1;
        if outcome.is_err() {
            e.failed += 1;
        }
        e.duration_ms_sum += duration_ms;
        let id = e.total;
        e.recent.push_back(Execution {
            id,
            agent_id: agent_id.clone(),
            status: if outcome.is_ok() {
                "completed"
            } else {
                "failed"
            },
            duration_ms,
            finished_at: unix_now(),
        });
        while e.recent.len() > s.settings.config.recent_missions {
            e.recent.pop_front();
        }
        id
    };
    outcome?;
    // The "model output": real CPU work proportional to the input, bounded.
    let output_words = 32 + input.split_whitespace().count().min(224);
    let mut output = String::with_capacity(output_words * 8);
    {
        let mut r = s.text_rng.lock();
        for i in 0..output_words {
            if i > 0 {
                output.push(' ');
            }
            output.push_str(WORDS[(r.next_u64() % WORDS.len() as u64) as usize]);
        }
    }
    Ok(Json(json!({
        "execution_id": id,
        "agent_id": agent_id,
        "status": "completed",
        "output": output,
        "usage": {
            "input_tokens": input.split_whitespace().count(),
            "output_tokens": output_words,
        },
        "duration_ms": (duration_ms * 1000.0).round() / 1000.0,
    }))
    .into_response())
}

/// `POST /api/v1/ai/missions`
pub async fn create_mission(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = bearer(&s, &headers)?;
    let m = object_body(
        &body,
        "{\"name\":\"nightly triage\",\"objective\":\"sort the retry set\",\"agent_id\":42}",
    )?;
    simulate(&s, Route::Missions).await?;
    let mission = {
        let mut ms = s.missions.lock();
        ms.total += 1;
        let id = ms.total;
        let mission = Mission {
            id,
            name: text_field(&m, "name", 200).unwrap_or_else(|| format!("mission-{id}")),
            objective: text_field(&m, "objective", 1000).unwrap_or_default(),
            agent_id: text_field(&m, "agent_id", 64),
            status: "queued",
            created_by: user.to_string(),
            created_at: unix_now(),
        };
        ms.recent.push_back(mission.clone());
        while ms.recent.len() > s.settings.config.recent_missions {
            ms.recent.pop_front();
        }
        mission
    };
    let location = format!("/api/v1/ai/missions/{}", mission.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(json!({ "mission": mission })),
    )
        .into_response())
}

/// `GET /api/v1/ai/monitoring/dashboard`
pub async fn dashboard(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    bearer(&s, &headers)?;
    simulate(&s, Route::Dashboard).await?;
    let n = s.settings.config.recent_missions;
    Ok(Json(monitoring_snapshot(&s, n)).into_response())
}

/// `GET /health`
pub async fn health(State(s): State<AppState>) -> Result<Response, ApiError> {
    simulate(&s, Route::Health).await?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

/// `GET /metrics`
pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(&s),
    )
        .into_response()
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route (see GET /health, POST /api/v1/auth/login, /cable, /metrics)",
    )
}

/// `GET /cable`: the ActionCable WebSocket upgrade.
pub async fn cable(
    State(s): State<AppState>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if *s.shutdown.borrow() {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let open = s.cable_connections.load(Ordering::Relaxed).max(0) as usize;
    if open >= s.settings.config.cable.max_connections {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many WebSocket connections ({open}; cable.max_connections)"),
        )
        .into_response();
    }
    let token = query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    let authorized = !s.settings.config.cable.require_token
        || token.as_deref().and_then(|t| s.token_user(t)).is_some();
    let tracker = s.sessions.clone();
    ws.protocols([crate::cable::PROTOCOL])
        .on_upgrade(move |socket| {
            tracker.track_future(crate::cable::session(s, socket, authorized))
        })
}
