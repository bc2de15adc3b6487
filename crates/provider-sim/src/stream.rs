//! An answer played out in time: streamed (SSE or NDJSON, one token a chunk, each
//! at its planned instant) or whole (JSON after the time the stream would take),
//! with the plan's mid-answer fault, encoded by `powertune-dialect`.

use crate::plan::{Fault, Plan};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use powertune_dialect::{render_response, ChatResponse, Finish, Front, StreamEncoder, Usage};
use std::time::Duration;
use tokio::time::Instant;

/// What every answer needs besides its plan.
pub(crate) struct Answer {
    pub front: Front,
    pub id: String,
    pub model: String,
    pub include_usage: bool,
    pub stall_first: Duration,
    pub stall_mid: Duration,
    /// When the request arrived.
    pub t0: Instant,
    pub headers: HeaderMap,
}

/// A chunk that is not valid JSON, in the place of a content chunk.
fn malformed(front: Front) -> &'static str {
    match front {
        Front::OpenAi => "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\n\n",
        Front::Anthropic => "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\n\n",
        Front::Ollama => "{\"message\":{\"role\":\"assistant\",\"content\":\n",
    }
}

fn finish(plan: &Plan) -> Finish {
    if plan.truncated {
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
    done: bool,
}

impl Gen {
    /// The bytes of the next step, after waiting for its instant.
    async fn step(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        let fault = self.plan.fault;
        let i = self.next;
        if i == 0 {
            self.at = self.a.t0 + self.plan.ttft;
            if fault == Some(Fault::StallFirst) {
                self.at += self.a.stall_first;
            }
        } else {
            self.at += self.plan.next_itl();
        }
        let mid = i == self.plan.midpoint();
        if mid && i > 0 && fault == Some(Fault::StallMid) {
            self.at += self.a.stall_mid;
        }
        let word = self.plan.word(i);
        wait_until(self.at).await;
        if mid && fault == Some(Fault::Drop) {
            self.done = true;
            return Some(Err(std::io::Error::other(
                "connection dropped by the fault script",
            )));
        }
        let mut s = String::new();
        if i == 0 {
            s.push_str(&self.enc.start(self.plan.input_tokens));
        }
        if mid && fault == Some(Fault::Malformed) {
            s.push_str(malformed(self.a.front));
        } else {
            self.enc.delta_into(&mut s, word);
        }
        self.next += 1;
        if self.next >= self.plan.output_tokens {
            let elapsed = self.a.t0.elapsed().as_nanos() as u64;
            s.push_str(
                &self
                    .enc
                    .finish(&finish(&self.plan), usage(&self.plan), elapsed),
            );
            self.done = true;
        }
        Some(Ok(Bytes::from(s)))
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
        done: false,
    };
    let body = futures_util::stream::unfold(g, |mut g| async move {
        let item = g.step().await?;
        Some((item, g))
    });
    (StatusCode::OK, headers, Body::from_stream(body)).into_response()
}

/// A whole (JSON) answer, sent when the stream would have ended. A drop fault
/// closes the connection after the headers; a malformed fault sends half the JSON.
pub(crate) async fn whole(mut plan: Plan, a: Answer) -> Response {
    let mut at = a.t0 + plan.ttft;
    let mut text = String::new();
    for i in 0..plan.output_tokens {
        if i > 0 {
            at += plan.next_itl();
        }
        text.push_str(plan.word(i));
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
    if plan.fault == Some(Fault::Drop) {
        let body = futures_util::stream::once(async {
            Err::<Bytes, _>(std::io::Error::other(
                "connection dropped by the fault script",
            ))
        });
        return (StatusCode::OK, headers, Body::from_stream(body)).into_response();
    }
    let r = ChatResponse {
        id: a.id,
        model: a.model,
        text,
        finish: finish(&plan),
        usage: usage(&plan),
        tool_calls: Vec::new(),
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
