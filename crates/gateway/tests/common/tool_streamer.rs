//! A loopback provider that streams a canned tool call in each API's own format.

use serde_json::{json, Value};
use std::sync::Arc;

/// A loopback provider (a real axum server on port 0) that streams one canned answer
/// in each API's own format: the text "Checking." and a call of get_weather
/// {"city":"Oslo"} (arguments in fragments where the API streams them; Ollama sends
/// the call whole). The shared fake streams text only. Keeps the last request.
pub struct ToolStreamer {
    pub url: String,
    pub last: Arc<std::sync::Mutex<Option<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ToolStreamer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn tool_stream_pieces(path: &str) -> (&'static str, Vec<String>) {
    let sse = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    match path {
        "/v1/chat/completions" => {
            let chunk = |delta: Value, finish: Value| {
                format!(
                    "data: {}\n\n",
                    json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 0, "model": "m",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                )
            };
            let n = Value::Null;
            (
                "text/event-stream",
                vec![
                    chunk(
                        json!({"role": "assistant", "content": "Checking."}),
                        n.clone(),
                    ),
                    chunk(
                        json!({"tool_calls": [{"index": 0, "id": "call_up", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}]}),
                        n.clone(),
                    ),
                    chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}),
                        n.clone(),
                    ),
                    chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": ": \"Oslo\"}"}}]}),
                        n,
                    ),
                    chunk(json!({}), json!("tool_calls")),
                    format!(
                        "data: {}\n\ndata: [DONE]\n\n",
                        json!({"id": "chatcmpl-t", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}})
                    ),
                ],
            )
        }
        "/v1/messages" => (
            "text/event-stream",
            vec![
                sse(
                    json!({"type": "message_start", "message": {"id": "msg_t", "type": "message", "role": "assistant",
                    "model": "m", "content": [], "usage": {"input_tokens": 4, "output_tokens": 1}}}),
                ),
                sse(
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
                sse(json!({"type": "ping"})),
                sse(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
                ),
                sse(json!({"type": "content_block_stop", "index": 0})),
                sse(
                    json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                    "id": "toolu_up", "name": "get_weather", "input": {}}}),
                ),
                sse(
                    json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\""}}),
                ),
                sse(
                    json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ": \"Oslo\"}"}}),
                ),
                sse(json!({"type": "content_block_stop", "index": 1})),
                sse(
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 6}}),
                ),
                sse(json!({"type": "message_stop"})),
            ],
        ),
        _ => (
            "application/x-ndjson",
            vec![
                format!(
                    "{}\n",
                    json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": "Checking."}, "done": false})
                ),
                format!(
                    "{}\n",
                    json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": "",
                    "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}, "done": false})
                ),
                format!(
                    "{}\n",
                    json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
                    "done": true, "done_reason": "stop", "prompt_eval_count": 4, "eval_count": 6})
                ),
            ],
        ),
    }
}

pub async fn tool_streamer() -> ToolStreamer {
    use axum::http::{header, Uri};
    let last: Arc<std::sync::Mutex<Option<(String, Value)>>> = Arc::default();
    let l = last.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, body: axum::body::Bytes| {
        let l = l.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            *l.lock().unwrap() = Some((uri.path().to_string(), v));
            let (ct, pieces) = tool_stream_pieces(uri.path());
            // one body frame per piece, so the gateway decodes across reads
            let frames = futures_util::stream::iter(
                pieces
                    .into_iter()
                    .map(|p| Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(p))),
            );
            (
                [(header::CONTENT_TYPE, ct)],
                axum::body::Body::from_stream(frames),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ToolStreamer { url, last, task }
}

/// (text, tool calls as (id, name, arguments object), finish reason) a client of
/// `front` reads from a stream.
pub fn read_tool_stream(front: &str, raw: &str) -> (String, Vec<(String, String, Value)>, String) {
    let mut text = String::new();
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = String::new();
    for l in raw.lines().filter(|l| !l.is_empty()) {
        let data = match front {
            "ollama" => l,
            _ => match l.strip_prefix("data: ") {
                Some(d) => d,
                None => continue,
            },
        };
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        match front {
            "openai" => {
                let d = &v["choices"][0]["delta"];
                text.push_str(d["content"].as_str().unwrap_or(""));
                for tc in d["tool_calls"].as_array().into_iter().flatten() {
                    let i = tc["index"].as_u64().unwrap() as usize;
                    if let Some(id) = tc["id"].as_str() {
                        assert_eq!(i, calls.len(), "{raw}");
                        calls.push((
                            id.into(),
                            tc["function"]["name"].as_str().unwrap().into(),
                            String::new(),
                        ));
                    }
                    calls[i]
                        .2
                        .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
                    finish = f.into();
                }
            }
            "anthropic" => match v["type"].as_str().unwrap() {
                "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                    let cb = &v["content_block"];
                    calls.push((
                        cb["id"].as_str().unwrap().into(),
                        cb["name"].as_str().unwrap().into(),
                        String::new(),
                    ));
                }
                "content_block_delta" => {
                    text.push_str(v["delta"]["text"].as_str().unwrap_or(""));
                    if let Some(p) = v["delta"]["partial_json"].as_str() {
                        calls.last_mut().unwrap().2.push_str(p);
                    }
                }
                "message_delta" => finish = v["delta"]["stop_reason"].as_str().unwrap().into(),
                _ => {}
            },
            _ => {
                text.push_str(v["message"]["content"].as_str().unwrap_or(""));
                for tc in v["message"]["tool_calls"].as_array().into_iter().flatten() {
                    calls.push((
                        String::new(),
                        tc["function"]["name"].as_str().unwrap().into(),
                        tc["function"]["arguments"].to_string(),
                    ));
                }
                if v["done"] == true {
                    finish = v["done_reason"].as_str().unwrap().into();
                }
            }
        }
    }
    let calls = calls
        .into_iter()
        .map(|(id, n, a)| (id, n, serde_json::from_str(&a).unwrap()))
        .collect();
    (text, calls, finish)
}
