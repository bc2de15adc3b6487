//! An answer played out in time: streamed (SSE or NDJSON, one token a chunk, each
//! at its planned instant) or whole (JSON after the time the stream would take),
//! with the plan's mid-answer fault, encoded by `powertune-dialect`.

use crate::plan::{Fault, Plan};
use crate::stats::Counts;
use crate::State;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use powertune_dialect::{
    render_response, ApiError, ChatResponse, Chunk, ErrorKind, Finish, Front, StreamEncoder,
    ToolCall, Usage,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What every answer needs besides its plan.
pub(crate) struct Answer {
    pub front: Front,
    pub id: String,
    /// The id of a scripted tool call.
    pub call_id: String,
    pub model: String,
    pub include_usage: bool,
    pub stall_first: Duration,
    pub stall_mid: Duration,
    /// Content chunks before a mid-stream error event (a fault or a script).
    pub error_after: Option<u64>,
    /// Scripted: content chunks before a stall, and how long it lasts.
    pub stall_after: Option<(u64, Duration)>,
    /// Scripted: the time between chunks, instead of the drawn ITL.
    pub chunk_delay: Option<Duration>,
    /// Scripted: the answer's words, instead of drawn ones.
    pub words: Option<Arc<[Box<str>]>>,
    /// Scripted: a tool call (name, arguments) instead of text.
    pub tool_call: Option<Arc<(String, Value)>>,
    /// When the request arrived.
    pub t0: Instant,
    pub headers: HeaderMap,
    pub tally: Tally,
}

/// Where a stream's end (or its client's hang-up) is counted.
pub(crate) struct Tally {
    pub state: Arc<State>,
    pub label: String,
    pub model: String,
}

impl Tally {
    fn add(&self, f: impl FnOnce(&mut Counts)) {
        self.state.stats.update(&self.label, &self.model, f);
    }
}

/// A chunk that is not valid JSON, in the place of a content chunk.
fn malformed(front: Front) -> &'static str {
    match front {
        Front::OpenAi => "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\n\n",
        Front::Anthropic => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\n\n",
        Front::Ollama => "{\"message\":{\"role\":\"assistant\",\"content\":\n",
    }
}

/// The error a mid-stream error fault sends, in the API's own shape.
fn mid_stream_error() -> ApiError {
    ApiError::new(
        ErrorKind::Overloaded,
        "Overloaded (the simulated provider failed mid-stream: fault script mid_stream_error_rate)",
    )
}

fn finish(plan: &Plan, a: &Answer) -> Finish {
    if a.tool_call.is_some() {
        Finish::ToolUse
    } else if plan.truncated {
        Finish::Length
    } else {
        Finish::Stop
    }
}

fn usage(plan: &Plan) -> Usage {
    Usage {
        input: plan.input_tokens,
        output: plan.output_tokens,
    }
}

async fn wait_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

struct Gen {
    enc: StreamEncoder,
    plan: Plan,
    a: Answer,
    next: u64,
    at: Instant,
    /// The start (and what came before a stall) was sent: the next step stalls.
    stall_next: bool,
    done: bool,
}

fn closed() -> Option<Result<Bytes, std::io::Error>> {
    Some(Err(std::io::Error::other(
        "connection closed by the fault script",
    )))
}

impl Gen {
    /// The bytes of the next step, after waiting for its instant.
    async fn step(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let n = self.plan.output_tokens;
        let stall = self.a.stall_after.map(|(k, d)| (k.min(n), d));
        if self.stall_next {
            tokio::time::sleep(stall.map_or(Duration::ZERO, |s| s.1)).await;
            self.done = true;
            return closed();
        }
        let fault = self.plan.fault;
        let i = self.next;
        if i == 0 {
            self.at = self.a.t0 + self.plan.ttft;
            if fault == Some(Fault::StallFirst) {
                self.at += self.a.stall_first;
            }
        } else {
            self.at += match self.a.chunk_delay {
                Some(d) => d,
                None => self.plan.next_itl(),
            };
        }
        let mid = i == self.plan.midpoint();
        if mid && i > 0 && fault == Some(Fault::StallMid) {
            self.at += self.a.stall_mid;
        }
        let drawn = self.plan.word(i);
        wait_until(self.at).await;
        if mid && fault == Some(Fault::Drop) {
            self.done = true;
            return closed();
        }
        let mut s = String::new();
        if i == 0 {
            s.push_str(&self.enc.start(self.plan.input_tokens));
        }
        if stall.is_some_and(|(k, _)| k == i) {
            self.stall_next = true;
            return Some(Ok(Bytes::from(s)));
        }
        let error_at = self.a.error_after.map(|k| k.min(n));
        if error_at == Some(i) {
            return Some(Ok(self.error_end(s)));
        }
        if let Some(t) = &self.a.tool_call {
            let start = Chunk::ToolStart {
                index: 0,
                id: self.a.call_id.clone(),
                name: t.0.clone(),
            };
            self.enc.chunk_into(&mut s, &start);
            let args = Chunk::ToolArgs {
                index: 0,
                json: t.1.to_string(),
            };
            self.enc.chunk_into(&mut s, &args);
            self.next = n;
        } else {
            if mid && fault == Some(Fault::Malformed) {
                s.push_str(malformed(self.a.front));
            } else {
                let word = match &self.a.words {
                    Some(w) => w.get(i as usize).map_or(drawn, |w| &**w),
                    None => drawn,
                };
                self.enc.delta_into(&mut s, word);
            }
            self.next += 1;
        }
        if self.next >= n {
            if error_at == Some(n) {
                return Some(Ok(self.error_end(s)));
            }
            if stall.is_some_and(|(k, _)| k == n) {
                self.stall_next = true;
                return Some(Ok(Bytes::from(s)));
            }
            let elapsed = self.a.t0.elapsed().as_nanos() as u64;
            let f = finish(&self.plan, &self.a);
            s.push_str(&self.enc.finish(&f, usage(&self.plan), elapsed));
            self.end();
        }
        Some(Ok(Bytes::from(s)))
    }

    /// `s` and the API's error event: the stream's end.
    fn error_end(&mut self, mut s: String) -> Bytes {
        s.push_str(&self.enc.error(&mid_stream_error()));
        self.end();
        Bytes::from(s)
    }

    fn end(&mut self) {
        self.done = true;
        self.a.tally.add(|c| c.streams_finished += 1);
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        if !self.done {
            self.a.tally.add(|c| c.closed_by_client += 1);
        }
    }
}

/// A streamed answer.
pub(crate) fn streamed(plan: Plan, a: Answer) -> Response {
    let enc = StreamEncoder::new(a.front, a.id.clone(), a.model.clone(), a.include_usage);
    let content_type = enc.content_type();
    let mut headers = a.headers.clone();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let g = Gen {
        enc,
        plan,
        at: a.t0,
        a,
        next: 0,
        stall_next: false,
        done: false,
    };
    let body = futures_util::stream::unfold(g, |mut g| async move {
        let item = g.step().await?;
        Some((item, g))
    });
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

/// A whole (JSON) answer, sent when the stream would have ended. A drop fault
/// closes the connection after the headers; a malformed fault sends half the JSON;
/// a mid-stream error is a 503 (529 Anthropic) with the API's error body.
pub(crate) async fn whole(mut plan: Plan, a: Answer) -> Response {
    let fin = finish(&plan, &a);
    let mut at = a.t0 + plan.ttft;
    let mut text = String::new();
    for i in 0..plan.output_tokens {
        if i > 0 {
            at += match a.chunk_delay {
                Some(d) => d,
                None => plan.next_itl(),
            };
        }
        let drawn = plan.word(i);
        if a.tool_call.is_none() {
            match &a.words {
                Some(w) => text.push_str(w.get(i as usize).map_or(drawn, |w| &**w)),
                None => text.push_str(drawn),
            }
        }
    }
    match plan.fault {
        Some(Fault::StallFirst) => at += a.stall_first,
        Some(Fault::StallMid) => at += a.stall_mid,
        _ => {}
    }
    wait_until(at).await;
    let mut headers = a.headers;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if a.error_after.is_some() {
        let e = mid_stream_error();
        let status = match a.front {
            Front::Anthropic => {
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return (status, headers, e.body(a.front).to_string()).into_response();
    }
    let stall = a.stall_after.map(|s| s.1);
    if plan.fault == Some(Fault::Drop) || stall.is_some() {
        let body = futures_util::stream::once(async move {
            tokio::time::sleep(stall.unwrap_or(Duration::ZERO)).await;
            Err::<Bytes, _>(std::io::Error::other(
                "connection closed by the fault script",
            ))
        });
        return (StatusCode::OK, headers, Body::from_stream(body)).into_response();
    }
    let r = ChatResponse {
        id: a.id,
        model: a.model,
        text,
        finish: fin,
        usage: usage(&plan),
        tool_calls: a
            .tool_call
            .iter()
            .map(|t| ToolCall {
                id: a.call_id.clone(),
                name: t.0.clone(),
                arguments: t.1.clone(),
            })
            .collect(),
    };
    let mut body = render_response(a.front, &r, a.t0.elapsed().as_nanos() as u64).to_string();
    if plan.fault == Some(Fault::Malformed) {
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    (StatusCode::OK, headers, body).into_response()
}
