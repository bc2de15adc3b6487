//! Fake LLM providers for the gateway's tests: one real HTTP/1.1 server on loopback
//! port 0 that speaks OpenAI (`POST /v1/chat/completions`), Anthropic
//! (`POST /v1/messages`) and Ollama (`POST /api/chat`), JSON and streaming, with
//! scriptable behaviour (delay, status codes, Retry-After, mid-stream errors, stalls)
//! and counters (requests, requests per key, connections closed mid-stream).
//!
//! The HTTP is written by hand on tokio so the server sees exactly when a client
//! closes a connection.

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// HTTP status; anything but 200 answers an error body in the API's own shape.
    pub status: u16,
    /// `Retry-After` header value on an error answer.
    pub retry_after: Option<String>,
    /// Wait before answering (headers).
    pub delay: Duration,
    /// Wait between stream chunks.
    pub chunk_delay: Duration,
    /// Stream: after this many content chunks, stop sending and hold the connection
    /// open (up to 30 s) watching for the client to close it.
    pub stall_after: Option<usize>,
    /// Stream: after this many content chunks, send the API's mid-stream error.
    pub error_after: Option<usize>,
    /// The reply; streamed word by word.
    pub text: String,
    /// Non-streaming: answer with a call of this tool (name, arguments object) in
    /// the API's own shape instead of text.
    pub tool_call: Option<(String, Value)>,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            status: 200,
            retry_after: None,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            stall_after: None,
            error_after: None,
            text: "Hello from the fake provider".to_string(),
            tool_call: None,
        }
    }
}

impl Behavior {
    pub fn status(status: u16) -> Self {
        Behavior {
            status,
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    default: Behavior,
    queue: VecDeque<Behavior>,
    requests: u64,
    by_key: HashMap<String, u64>,
    closed_mid_stream: u64,
    completed_streams: u64,
    last_body: Option<Value>,
    last_path: Option<String>,
}

/// A running fake provider. Dropping it stops accepting connections.
pub struct FakeProvider {
    /// `http://127.0.0.1:PORT` (an OpenAI-kind provider's base URL is this + `/v1`).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake provider: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake provider: local addr");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let st = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(sock, st).await;
                });
            }
        });
        FakeProvider {
            url: format!("http://{addr}"),
            inner,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The behaviour for every request not scripted with [`FakeProvider::push`].
    pub fn set(&self, b: Behavior) {
        self.lock().default = b;
    }

    /// A one-shot behaviour for the next request (queued in order).
    pub fn push(&self, b: Behavior) {
        self.lock().queue.push_back(b);
    }

    /// Requests received (all paths).
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Requests that carried this API key (Bearer or x-api-key).
    pub fn requests_with_key(&self, key: &str) -> u64 {
        self.lock().by_key.get(key).copied().unwrap_or(0)
    }

    /// Streams whose client closed the connection before the stream ended.
    pub fn closed_mid_stream(&self) -> u64 {
        self.lock().closed_mid_stream
    }

    /// Streams sent to their end.
    pub fn completed_streams(&self) -> u64 {
        self.lock().completed_streams
    }

    /// The JSON body and path of the last request.
    pub fn last_request(&self) -> Option<(String, Value)> {
        let g = self.lock();
        Some((g.last_path.clone()?, g.last_body.clone()?))
    }

    /// Waits (bounded by `within`) until `closed_mid_stream() >= n`.
    pub async fn wait_closed_mid_stream(&self, n: u64, within: Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            if self.closed_mid_stream() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.closed_mid_stream() >= n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    OpenAi,
    Anthropic,
    Ollama,
}

struct Req {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Req>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or("");
            let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
            let mut headers = HashMap::new();
            for l in lines {
                if let Some((k, v)) = l.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let start = end + 4;
            while buf.len() < start + len {
                let mut tmp = [0u8; 8192];
                let n = sock.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = buf[start..start + len].to_vec();
            buf.drain(..start + len);
            return Ok(Some(Req {
                path,
                headers,
                body,
            }));
        }
        let mut tmp = [0u8; 8192];
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn serve_conn(mut sock: TcpStream, st: Arc<Mutex<Inner>>) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut sock, &mut buf).await? {
        let api = match req.path.as_str() {
            "/v1/chat/completions" => Api::OpenAi,
            "/v1/messages" => Api::Anthropic,
            "/api/chat" => Api::Ollama,
            _ => {
                write_simple(
                    &mut sock,
                    404,
                    "application/json",
                    b"{\"error\":\"not found\"}",
                    None,
                )
                .await?;
                continue;
            }
        };
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let key = req
            .headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").map(String::from))
            .or_else(|| req.headers.get("x-api-key").cloned())
            .unwrap_or_default();
        let b = {
            let mut g = st.lock().unwrap_or_else(|e| e.into_inner());
            g.requests += 1;
            *g.by_key.entry(key).or_insert(0) += 1;
            g.last_body = Some(body.clone());
            g.last_path = Some(req.path.clone());
            g.queue.pop_front().unwrap_or_else(|| g.default.clone())
        };
        if !b.delay.is_zero() {
            tokio::time::sleep(b.delay).await;
        }
        if b.status != 200 {
            let msg = format!("fake provider error {}", b.status);
            let err = match api {
                Api::OpenAi => {
                    json!({"error": {"message": msg, "type": "server_error", "code": null}})
                }
                Api::Anthropic => {
                    json!({"type": "error", "error": {"type": if b.status == 529 {"overloaded_error"} else {"api_error"}, "message": msg}})
                }
                Api::Ollama => json!({"error": msg}),
            };
            write_simple(
                &mut sock,
                b.status,
                "application/json",
                err.to_string().as_bytes(),
                b.retry_after.as_deref(),
            )
            .await?;
            continue;
        }
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("fake")
            .to_string();
        let prompt_tokens = body
            .get("messages")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("content").and_then(Value::as_str))
                    .map(|c| c.split_whitespace().count() as u64)
                    .sum()
            })
            .unwrap_or(0);
        let words: Vec<String> = b.text.split_inclusive(' ').map(String::from).collect();
        let out_tokens = words.len() as u64;
        let stream = body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(api == Api::Ollama);
        if let (false, Some((name, args))) = (stream, &b.tool_call) {
            let v = match api {
                Api::OpenAi => json!({
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                        "tool_calls": [{"id": "call_fake_1", "type": "function",
                            "function": {"name": name, "arguments": args.to_string()}}]},
                        "finish_reason": "tool_calls"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7, "total_tokens": prompt_tokens + 7}}),
                Api::Anthropic => json!({
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "tool_use", "id": "toolu_fake_1", "name": name, "input": args}],
                    "stop_reason": "tool_use", "stop_sequence": null,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": 7}}),
                Api::Ollama => json!({
                    "model": model, "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": "",
                        "tool_calls": [{"function": {"name": name, "arguments": args}}]},
                    "done": true, "done_reason": "stop", "prompt_eval_count": prompt_tokens, "eval_count": 7}),
            };
            write_simple(
                &mut sock,
                200,
                "application/json",
                v.to_string().as_bytes(),
                None,
            )
            .await?;
            continue;
        }
        if !stream {
            let v = match api {
                Api::OpenAi => json!({
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": b.text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens, "total_tokens": prompt_tokens + out_tokens}}),
                Api::Anthropic => json!({
                    "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": b.text}], "stop_reason": "end_turn", "stop_sequence": null,
                    "usage": {"input_tokens": prompt_tokens, "output_tokens": out_tokens}}),
                Api::Ollama => json!({
                    "model": model, "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": b.text}, "done": true, "done_reason": "stop",
                    "prompt_eval_count": prompt_tokens, "eval_count": out_tokens}),
            };
            write_simple(
                &mut sock,
                200,
                "application/json",
                v.to_string().as_bytes(),
                None,
            )
            .await?;
            continue;
        }
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ct = if api == Api::Ollama {
            "application/x-ndjson"
        } else {
            "text/event-stream"
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n"
        );
        // what is written goes out when the stream waits (a delay, a stall) or ends:
        // a zero-delay stream leaves in one write, like a provider whose tokens are all
        // ready at once (and the benchmark's load side stays cheap)
        let mut out: Vec<u8> = head.into_bytes();
        let mut pieces: Vec<String> = Vec::new();
        if api == Api::Anthropic {
            pieces.push(sse("message_start", &json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null, "usage": {"input_tokens": prompt_tokens, "output_tokens": 1}}})));
            pieces.push(sse("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            pieces.push(sse("ping", &json!({"type": "ping"})));
        }
        push_chunks(&mut out, &pieces);
        for (i, w) in words.iter().enumerate() {
            if b.stall_after == Some(i) {
                if send_now(&mut sock, &mut out).await.is_err() {
                    mark_closed(&st);
                    return Ok(());
                }
                // hold the connection, watching for the client to close it
                let mut tmp = [0u8; 64];
                let r = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut tmp)).await;
                if matches!(r, Ok(Ok(0)) | Ok(Err(_))) {
                    mark_closed(&st);
                }
                return Ok(());
            }
            if b.error_after == Some(i) {
                let e = match api {
                    Api::OpenAi => format!(
                        "data: {}\n\n",
                        json!({"error": {"message": "fake mid-stream failure", "type": "server_error"}})
                    ),
                    Api::Anthropic => sse(
                        "error",
                        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
                    ),
                    Api::Ollama => format!("{}\n", json!({"error": "fake mid-stream failure"})),
                };
                push_chunks(&mut out, &[e]);
                out.extend_from_slice(b"0\r\n\r\n");
                let _ = send_now(&mut sock, &mut out).await;
                return Ok(());
            }
            let piece = match api {
                Api::OpenAi => format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]})
                ),
                Api::Anthropic => sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
                ),
                Api::Ollama => format!(
                    "{}\n",
                    json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": w}, "done": false})
                ),
            };
            push_chunks(&mut out, &[piece]);
            if !b.chunk_delay.is_zero() {
                if send_now(&mut sock, &mut out).await.is_err() {
                    mark_closed(&st);
                    return Ok(());
                }
                tokio::time::sleep(b.chunk_delay).await;
            }
        }
        let mut tail: Vec<String> = Vec::new();
        match api {
            Api::OpenAi => {
                tail.push(format!("data: {}\n\n", json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
                if include_usage {
                    tail.push(format!("data: {}\n\n", json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": out_tokens, "total_tokens": prompt_tokens + out_tokens}})));
                }
                tail.push("data: [DONE]\n\n".to_string());
            }
            Api::Anthropic => {
                tail.push(sse("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
                tail.push(sse("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": out_tokens}})));
                tail.push(sse("message_stop", &json!({"type": "message_stop"})));
            }
            Api::Ollama => tail.push(format!("{}\n", json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop", "total_duration": 1000, "prompt_eval_count": prompt_tokens, "eval_count": out_tokens}))),
        }
        push_chunks(&mut out, &tail);
        out.extend_from_slice(b"0\r\n\r\n");
        if send_now(&mut sock, &mut out).await.is_err() {
            mark_closed(&st);
            return Ok(());
        }
        st.lock()
            .unwrap_or_else(|e| e.into_inner())
            .completed_streams += 1;
    }
    Ok(())
}

fn mark_closed(st: &Arc<Mutex<Inner>>) {
    st.lock()
        .unwrap_or_else(|e| e.into_inner())
        .closed_mid_stream += 1;
}

fn sse(event: &str, v: &Value) -> String {
    format!("event: {event}\ndata: {v}\n\n")
}

/// Appends `pieces` to `out` as HTTP/1.1 chunks.
fn push_chunks(out: &mut Vec<u8>, pieces: &[String]) {
    for p in pieces {
        out.extend_from_slice(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes());
    }
}

/// Writes what `out` holds (one write) and empties it.
async fn send_now(sock: &mut TcpStream, out: &mut Vec<u8>) -> std::io::Result<()> {
    sock.write_all(out).await?;
    out.clear();
    sock.flush().await
}

async fn write_simple(
    sock: &mut TcpStream,
    status: u16,
    ct: &str,
    body: &[u8],
    retry_after: Option<&str>,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ra) = retry_after {
        head.push_str(&format!("Retry-After: {ra}\r\n"));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.flush().await
}
