//! Wire formats: the canonical chat request/response, the three front APIs (what
//! clients send and receive) and the three provider APIs (what the gateway sends
//! upstream and reads back), streaming included. Pure functions, no I/O.

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which API a client spoke (its errors come back in the same shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    OpenAi,
    Anthropic,
    Ollama,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `user` or `assistant` (system text is in [`ChatRequest::system`]).
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    StopSequence,
    ContentFilter,
    ToolUse,
}

impl Finish {
    fn from_openai(s: &str) -> Finish {
        match s {
            "length" => Finish::Length,
            "content_filter" => Finish::ContentFilter,
            "tool_calls" | "function_call" => Finish::ToolUse,
            _ => Finish::Stop,
        }
    }
    fn from_anthropic(s: &str) -> Finish {
        match s {
            "max_tokens" => Finish::Length,
            "stop_sequence" => Finish::StopSequence,
            "tool_use" => Finish::ToolUse,
            "refusal" => Finish::ContentFilter,
            _ => Finish::Stop,
        }
    }
    fn from_ollama(s: &str) -> Finish {
        match s {
            "length" => Finish::Length,
            _ => Finish::Stop,
        }
    }
    pub fn openai(&self) -> &'static str {
        match self {
            Finish::Stop | Finish::StopSequence => "stop",
            Finish::Length => "length",
            Finish::ContentFilter => "content_filter",
            Finish::ToolUse => "tool_calls",
        }
    }
    pub fn anthropic(&self) -> &'static str {
        match self {
            Finish::Stop | Finish::ContentFilter => "end_turn",
            Finish::Length => "max_tokens",
            Finish::StopSequence => "stop_sequence",
            Finish::ToolUse => "tool_use",
        }
    }
    pub fn ollama(&self) -> &'static str {
        match self {
            Finish::Length => "length",
            _ => "stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    pub text: String,
    pub finish: Finish,
    pub usage: Usage,
}

/// One decoded piece of an upstream stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Delta(String),
    Done { finish: Finish, usage: Usage },
}

/// The kinds of error a client can get, mapped to each API's own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    NotFound,
    Authentication,
    RateLimited,
    Overloaded,
    Timeout,
    Upstream,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Authentication => 401,
            ErrorKind::RateLimited => 429,
            ErrorKind::Overloaded => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Upstream => 502,
        }
    }
    fn openai(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
            ErrorKind::NotFound => ("invalid_request_error", "model_not_found"),
            ErrorKind::Authentication => ("authentication_error", "invalid_api_key"),
            ErrorKind::RateLimited => ("rate_limit_error", "rate_limit_exceeded"),
            ErrorKind::Overloaded => ("server_error", "all_providers_unavailable"),
            ErrorKind::Timeout => ("timeout_error", "upstream_timeout"),
            ErrorKind::Upstream => ("server_error", "upstream_error"),
        }
    }
    fn anthropic(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Upstream => "api_error",
        }
    }
}

/// A client-facing error: what went wrong, in words, plus its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, message)
    }

    /// The error body in the client's API shape.
    pub fn body(&self, front: Front) -> Value {
        match front {
            Front::OpenAi => {
                let (t, c) = self.kind.openai();
                json!({"error": {"message": self.message, "type": t, "param": null, "code": c}})
            }
            Front::Anthropic => {
                json!({"type": "error", "error": {"type": self.kind.anthropic(), "message": self.message}})
            }
            Front::Ollama => json!({"error": self.message}),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp for Ollama's `created_at`.
fn rfc3339_now() -> String {
    let secs = now_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Text of a message `content`: a string, or an array of parts of which the text
/// parts are joined.
fn content_text(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                } else if let Some(s) = p.as_str() {
                    out.push_str(s);
                }
            }
            Ok(out)
        }
        _ => Err(ApiError::bad(
            "message content must be a string or an array of text parts, e.g. \"content\": \"Hello\"",
        )),
    }
}

fn opt_u64(v: &Value, k: &str) -> Result<Option<u64>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad(format!("{k} must be a positive integer, e.g. \"{k}\": 256"))
        }),
    }
}

fn opt_f64(v: &Value, k: &str) -> Result<Option<f64>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::bad(format!("{k} must be a number, e.g. \"{k}\": 0.7"))),
    }
}

fn stop_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Splits `[{role, content}]` into the system text and user/assistant messages.
fn split_messages(arr: &[Value]) -> Result<(Option<String>, Vec<Message>), ApiError> {
    let mut system: Vec<String> = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in arr.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
            ApiError::bad(format!(
                "messages[{i}].role is missing, e.g. {{\"role\": \"user\", \"content\": \"Hi\"}}"
            ))
        })?;
        let text = content_text(m.get("content").unwrap_or(&Value::Null))?;
        match role {
            "system" | "developer" => system.push(text),
            "user" | "assistant" => messages.push(Message {
                role: role.to_string(),
                content: text,
            }),
            "tool" => messages.push(Message {
                role: "user".into(),
                content: text,
            }),
            other => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].role {other:?} is not system, user or assistant"
                )))
            }
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n"));
    Ok((system, messages))
}

/// Parses a client request body for `front`.
pub fn parse_request(front: Front, body: &[u8]) -> Result<ChatRequest, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(format!(
            "request body is not JSON ({e}), e.g. {{\"model\": \"fast\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hi\"}}]}}"
        ))
    })?;
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("\"model\" is missing, e.g. \"model\": \"fast\""))?
        .to_string();
    let arr = v.get("messages").and_then(Value::as_array).ok_or_else(|| {
        ApiError::bad(
            "\"messages\" must be an array, e.g. [{\"role\": \"user\", \"content\": \"Hi\"}]",
        )
    })?;
    let (mut system, messages) = split_messages(arr)?;
    if messages.is_empty() {
        return Err(ApiError::bad(
            "\"messages\" needs at least one user message, e.g. [{\"role\": \"user\", \"content\": \"Hi\"}]",
        ));
    }
    match front {
        Front::OpenAi => Ok(ChatRequest {
            model,
            system,
            messages,
            max_tokens: match opt_u64(&v, "max_completion_tokens")? {
                Some(n) => Some(n),
                None => opt_u64(&v, "max_tokens")?,
            },
            temperature: opt_f64(&v, "temperature")?,
            top_p: opt_f64(&v, "top_p")?,
            stop: stop_list(v.get("stop")),
            stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: v
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }),
        Front::Anthropic => {
            if let Some(s) = v.get("system") {
                let t = content_text(s)?;
                if !t.is_empty() {
                    system = Some(match system {
                        Some(prev) => format!("{t}\n{prev}"),
                        None => t,
                    });
                }
            }
            let max_tokens = opt_u64(&v, "max_tokens")?.ok_or_else(|| {
                ApiError::bad(
                    "max_tokens is required by the Messages API, e.g. \"max_tokens\": 1024",
                )
            })?;
            Ok(ChatRequest {
                model,
                system,
                messages,
                max_tokens: Some(max_tokens),
                temperature: opt_f64(&v, "temperature")?,
                top_p: opt_f64(&v, "top_p")?,
                stop: stop_list(v.get("stop_sequences")),
                stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
                include_usage: true,
            })
        }
        Front::Ollama => {
            let opts = v.get("options").cloned().unwrap_or(Value::Null);
            Ok(ChatRequest {
                model,
                system,
                messages,
                max_tokens: opt_u64(&opts, "num_predict")?,
                temperature: opt_f64(&opts, "temperature")?,
                top_p: opt_f64(&opts, "top_p")?,
                stop: stop_list(opts.get("stop")),
                // Ollama streams unless told not to
                stream: v.get("stream").and_then(Value::as_bool).unwrap_or(true),
                include_usage: true,
            })
        }
    }
}

/// A complete (non-streaming) response in the client's API shape.
pub fn render_response(front: Front, r: &ChatResponse, elapsed_ns: u64) -> Value {
    match front {
        Front::OpenAi => json!({
            "id": r.id,
            "object": "chat.completion",
            "created": now_secs(),
            "model": r.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": r.text},
                "logprobs": null,
                "finish_reason": r.finish.openai(),
            }],
            "usage": {
                "prompt_tokens": r.usage.input,
                "completion_tokens": r.usage.output,
                "total_tokens": r.usage.input + r.usage.output,
            },
        }),
        Front::Anthropic => json!({
            "id": r.id,
            "type": "message",
            "role": "assistant",
            "model": r.model,
            "content": [{"type": "text", "text": r.text}],
            "stop_reason": r.finish.anthropic(),
            "stop_sequence": null,
            "usage": {"input_tokens": r.usage.input, "output_tokens": r.usage.output},
        }),
        Front::Ollama => json!({
            "model": r.model,
            "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": r.text},
            "done": true,
            "done_reason": r.finish.ollama(),
            "total_duration": elapsed_ns,
            "prompt_eval_count": r.usage.input,
            "eval_count": r.usage.output,
        }),
    }
}

/// Encodes canonical stream pieces into the client's streaming format.
#[derive(Debug)]
pub struct StreamEncoder {
    front: Front,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
}

fn sse_data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn sse_event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

impl StreamEncoder {
    pub fn new(front: Front, id: String, model: String, include_usage: bool) -> Self {
        StreamEncoder {
            front,
            id,
            model,
            created: now_secs(),
            include_usage,
            started: false,
        }
    }

    /// The content type of the stream.
    pub fn content_type(&self) -> &'static str {
        match self.front {
            Front::OpenAi | Front::Anthropic => "text/event-stream",
            Front::Ollama => "application/x-ndjson",
        }
    }

    fn openai_chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// What opens the stream (emitted once, before the first delta).
    pub fn start(&mut self, input_tokens: u64) -> String {
        if self.started {
            return String::new();
        }
        self.started = true;
        match self.front {
            Front::OpenAi => {
                sse_data(&self.openai_chunk(json!({"role": "assistant", "content": ""}), None))
            }
            Front::Anthropic => {
                let mut s = sse_event(
                    "message_start",
                    &json!({"type": "message_start", "message": {
                        "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 0}}}),
                );
                s.push_str(&sse_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ));
                s.push_str(&sse_event("ping", &json!({"type": "ping"})));
                s
            }
            Front::Ollama => String::new(),
        }
    }

    pub fn delta(&mut self, text: &str) -> String {
        let mut s = self.start(0);
        match self.front {
            Front::OpenAi => s.push_str(&sse_data(&self.openai_chunk(json!({"content": text}), None))),
            Front::Anthropic => s.push_str(&sse_event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            )),
            Front::Ollama => {
                s.push_str(
                    &json!({"model": self.model, "created_at": rfc3339_now(),
                        "message": {"role": "assistant", "content": text}, "done": false})
                    .to_string(),
                );
                s.push('\n');
            }
        }
        s
    }

    /// What closes a stream that completed.
    pub fn finish(&mut self, finish: &Finish, usage: Usage, elapsed_ns: u64) -> String {
        let mut s = self.start(usage.input);
        match self.front {
            Front::OpenAi => {
                s.push_str(&sse_data(
                    &self.openai_chunk(json!({}), Some(finish.openai())),
                ));
                if self.include_usage {
                    s.push_str(&sse_data(&json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                        "usage": {"prompt_tokens": usage.input, "completion_tokens": usage.output,
                                  "total_tokens": usage.input + usage.output}})));
                }
                s.push_str("data: [DONE]\n\n");
            }
            Front::Anthropic => {
                s.push_str(&sse_event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                ));
                s.push_str(&sse_event(
                    "message_delta",
                    &json!({"type": "message_delta",
                        "delta": {"stop_reason": finish.anthropic(), "stop_sequence": null},
                        "usage": {"output_tokens": usage.output}}),
                ));
                s.push_str(&sse_event("message_stop", &json!({"type": "message_stop"})));
            }
            Front::Ollama => {
                s.push_str(
                    &json!({"model": self.model, "created_at": rfc3339_now(),
                        "message": {"role": "assistant", "content": ""}, "done": true,
                        "done_reason": finish.ollama(), "total_duration": elapsed_ns,
                        "prompt_eval_count": usage.input, "eval_count": usage.output})
                    .to_string(),
                );
                s.push('\n');
            }
        }
        s
    }

    /// A mid-stream error in the client's own shape (the stream ends after it).
    pub fn error(&mut self, e: &ApiError) -> String {
        match self.front {
            Front::OpenAi => sse_data(&e.body(Front::OpenAi)),
            Front::Anthropic => sse_event("error", &e.body(Front::Anthropic)),
            Front::Ollama => format!("{}\n", e.body(Front::Ollama)),
        }
    }
}

// ---------------------------------------------------------------- providers

use crate::config::ProviderKind;

/// The upstream request: path appended to the base URL, and the JSON body.
pub fn provider_request(
    kind: ProviderKind,
    req: &ChatRequest,
    model: &str,
) -> (&'static str, Value) {
    match kind {
        ProviderKind::OpenAi => {
            let mut msgs = Vec::new();
            if let Some(s) = &req.system {
                msgs.push(json!({"role": "system", "content": s}));
            }
            for m in &req.messages {
                msgs.push(json!({"role": m.role, "content": m.content}));
            }
            let mut b = json!({"model": model, "messages": msgs, "stream": req.stream});
            if req.stream {
                b["stream_options"] = json!({"include_usage": true});
            }
            if let Some(n) = req.max_tokens {
                b["max_tokens"] = json!(n);
            }
            if let Some(t) = req.temperature {
                b["temperature"] = json!(t);
            }
            if let Some(t) = req.top_p {
                b["top_p"] = json!(t);
            }
            if !req.stop.is_empty() {
                b["stop"] = json!(req.stop);
            }
            ("/chat/completions", b)
        }
        ProviderKind::Anthropic => {
            let msgs: Vec<Value> = req
                .messages
                .iter()
                .map(|m| json!({"role": m.role, "content": m.content}))
                .collect();
            let mut b = json!({"model": model, "messages": msgs,
                "max_tokens": req.max_tokens.unwrap_or(1024), "stream": req.stream});
            if let Some(s) = &req.system {
                b["system"] = json!(s);
            }
            if let Some(t) = req.temperature {
                b["temperature"] = json!(t);
            }
            if let Some(t) = req.top_p {
                b["top_p"] = json!(t);
            }
            if !req.stop.is_empty() {
                b["stop_sequences"] = json!(req.stop);
            }
            ("/v1/messages", b)
        }
        ProviderKind::Ollama => {
            let mut msgs = Vec::new();
            if let Some(s) = &req.system {
                msgs.push(json!({"role": "system", "content": s}));
            }
            for m in &req.messages {
                msgs.push(json!({"role": m.role, "content": m.content}));
            }
            let mut opts = serde_json::Map::new();
            if let Some(n) = req.max_tokens {
                opts.insert("num_predict".into(), json!(n));
            }
            if let Some(t) = req.temperature {
                opts.insert("temperature".into(), json!(t));
            }
            if let Some(t) = req.top_p {
                opts.insert("top_p".into(), json!(t));
            }
            if !req.stop.is_empty() {
                opts.insert("stop".into(), json!(req.stop));
            }
            let mut b = json!({"model": model, "messages": msgs, "stream": req.stream});
            if !opts.is_empty() {
                b["options"] = Value::Object(opts);
            }
            ("/api/chat", b)
        }
    }
}

/// Decoding failed: the provider answered something that is not its format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{provider} answered something that is not its API format: {detail}")]
    Garbage {
        provider: &'static str,
        detail: String,
    },
    /// The provider itself reported an error inside the stream.
    #[error("{provider} reported a mid-stream error: {message}")]
    Provider {
        provider: &'static str,
        message: String,
        overloaded: bool,
    },
}

fn garbage(kind: ProviderKind, detail: impl Into<String>) -> DecodeError {
    DecodeError::Garbage {
        provider: kind.as_str(),
        detail: detail.into(),
    }
}

fn u(v: &Value, p: &str) -> u64 {
    v.pointer(p).and_then(Value::as_u64).unwrap_or(0)
}

/// Parses a complete provider response.
pub fn parse_provider_response(
    kind: ProviderKind,
    body: &[u8],
    model: &str,
) -> Result<ChatResponse, DecodeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| garbage(kind, format!("not JSON ({e})")))?;
    match kind {
        ProviderKind::OpenAi => {
            let choice = v
                .pointer("/choices/0")
                .ok_or_else(|| garbage(kind, "no choices[0]"))?;
            Ok(ChatResponse {
                id: v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("chatcmpl-gw")
                    .to_string(),
                model: v
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or(model)
                    .to_string(),
                text: choice
                    .pointer("/message/content")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                finish: Finish::from_openai(
                    choice
                        .get("finish_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("stop"),
                ),
                usage: Usage {
                    input: u(&v, "/usage/prompt_tokens"),
                    output: u(&v, "/usage/completion_tokens"),
                },
            })
        }
        ProviderKind::Anthropic => {
            let content = v
                .get("content")
                .and_then(Value::as_array)
                .ok_or_else(|| garbage(kind, "no content array"))?;
            let text: String = content
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            Ok(ChatResponse {
                id: v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("msg_gw")
                    .to_string(),
                model: v
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or(model)
                    .to_string(),
                text,
                finish: Finish::from_anthropic(
                    v.get("stop_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("end_turn"),
                ),
                usage: Usage {
                    input: u(&v, "/usage/input_tokens"),
                    output: u(&v, "/usage/output_tokens"),
                },
            })
        }
        ProviderKind::Ollama => {
            let text = v
                .pointer("/message/content")
                .and_then(Value::as_str)
                .ok_or_else(|| garbage(kind, "no message.content"))?;
            Ok(ChatResponse {
                id: format!("ollama-{}", now_secs()),
                model: v
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or(model)
                    .to_string(),
                text: text.to_string(),
                finish: Finish::from_ollama(
                    v.get("done_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("stop"),
                ),
                usage: Usage {
                    input: u(&v, "/prompt_eval_count"),
                    output: u(&v, "/eval_count"),
                },
            })
        }
    }
}

/// The error message a provider put in its error body, if any (short, for clients).
pub fn provider_error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let m = v
        .pointer("/error/message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)?;
    Some(m.chars().take(300).collect())
}

/// Longest line or SSE event the decoder holds before calling it garbage.
const MAX_PENDING: usize = 1 << 20;

/// Incremental decoder of a provider stream (SSE for OpenAI and Anthropic, NDJSON for
/// Ollama) into [`Chunk`]s. Memory is bounded by [`MAX_PENDING`].
#[derive(Debug)]
pub struct StreamDecoder {
    kind: ProviderKind,
    buf: Vec<u8>,
    event: Option<String>,
    data: String,
    usage: Usage,
    finish: Option<Finish>,
    done: bool,
}

impl StreamDecoder {
    pub fn new(kind: ProviderKind) -> Self {
        StreamDecoder {
            kind,
            buf: Vec::new(),
            event: None,
            data: String::new(),
            usage: Usage::default(),
            finish: None,
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn input_tokens(&self) -> u64 {
        self.usage.input
    }

    /// Feeds bytes; returns the chunks they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Chunk>, DecodeError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if self.done {
                continue;
            }
            match self.kind {
                ProviderKind::Ollama => {
                    if !line.trim().is_empty() {
                        self.ollama_line(line, &mut out)?;
                    }
                }
                _ => self.sse_line(line, &mut out)?,
            }
        }
        if self.buf.len() > MAX_PENDING || self.data.len() > MAX_PENDING {
            return Err(garbage(self.kind, "a line longer than 1 MiB"));
        }
        Ok(out)
    }

    /// The upstream body ended: a stream without its end marker is an error.
    pub fn end(&mut self) -> Result<Vec<Chunk>, DecodeError> {
        let mut out = Vec::new();
        if !self.done {
            if !self.buf.is_empty() {
                let rest = std::mem::take(&mut self.buf);
                let line = String::from_utf8_lossy(&rest).to_string();
                match self.kind {
                    ProviderKind::Ollama => self.ollama_line(&line, &mut out)?,
                    _ => {
                        self.sse_line(&line, &mut out)?;
                        self.sse_line("", &mut out)?;
                    }
                }
            } else if self.kind != ProviderKind::Ollama && !self.data.is_empty() {
                self.sse_line("", &mut out)?;
            }
        }
        if !self.done {
            // OpenAI-compatible servers that end after the finish chunk without [DONE]
            if let (ProviderKind::OpenAi, Some(f)) = (self.kind, self.finish.clone()) {
                self.done = true;
                out.push(Chunk::Done {
                    finish: f,
                    usage: self.usage,
                });
                return Ok(out);
            }
            return Err(DecodeError::Provider {
                provider: self.kind.as_str(),
                message: "the provider closed the stream before it finished".into(),
                overloaded: false,
            });
        }
        Ok(out)
    }

    fn sse_line(&mut self, line: &str, out: &mut Vec<Chunk>) -> Result<(), DecodeError> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_none() {
                return Ok(());
            }
            let data = std::mem::take(&mut self.data);
            let event = self.event.take();
            return self.sse_event(event.as_deref(), &data, out);
        }
        if line.starts_with(':') {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value);
            }
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }

    fn sse_event(
        &mut self,
        event: Option<&str>,
        data: &str,
        out: &mut Vec<Chunk>,
    ) -> Result<(), DecodeError> {
        let kind = self.kind;
        if kind == ProviderKind::OpenAi {
            if data.trim() == "[DONE]" {
                self.done = true;
                out.push(Chunk::Done {
                    finish: self.finish.clone().unwrap_or(Finish::Stop),
                    usage: self.usage,
                });
                return Ok(());
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| garbage(kind, format!("SSE data is not JSON ({e})")))?;
            if let Some(err) = v.get("error") {
                return Err(DecodeError::Provider {
                    provider: kind.as_str(),
                    message: err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("stream error")
                        .to_string(),
                    overloaded: false,
                });
            }
            if let Some(us) = v.get("usage").filter(|x| !x.is_null()) {
                self.usage = Usage {
                    input: u(us, "/prompt_tokens"),
                    output: u(us, "/completion_tokens"),
                };
            }
            if let Some(c) = v.pointer("/choices/0") {
                if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                    if !t.is_empty() {
                        out.push(Chunk::Delta(t.to_string()));
                    }
                }
                if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
                    self.finish = Some(Finish::from_openai(f));
                }
            }
            return Ok(());
        }
        // Anthropic: the event name, or the data's "type"
        let v: Value = serde_json::from_str(data)
            .map_err(|e| garbage(kind, format!("SSE data is not JSON ({e})")))?;
        let ty = event
            .map(String::from)
            .or_else(|| v.get("type").and_then(Value::as_str).map(String::from))
            .unwrap_or_default();
        match ty.as_str() {
            "message_start" => {
                self.usage.input = u(&v, "/message/usage/input_tokens");
                self.usage.output = u(&v, "/message/usage/output_tokens");
            }
            "content_block_delta"
                if v.pointer("/delta/type").and_then(Value::as_str) == Some("text_delta") =>
            {
                if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                    out.push(Chunk::Delta(t.to_string()));
                }
            }
            "message_delta" => {
                if let Some(s) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.finish = Some(Finish::from_anthropic(s));
                }
                if let Some(n) = v.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.usage.output = n;
                }
                if let Some(n) = v.pointer("/usage/input_tokens").and_then(Value::as_u64) {
                    if n > 0 {
                        self.usage.input = n;
                    }
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(Chunk::Done {
                    finish: self.finish.clone().unwrap_or(Finish::Stop),
                    usage: self.usage,
                });
            }
            "error" => {
                let et = v
                    .pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                return Err(DecodeError::Provider {
                    provider: kind.as_str(),
                    message: v
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("stream error")
                        .to_string(),
                    overloaded: et == "overloaded_error",
                });
            }
            // ping, content_block_start/stop and unknown events are tolerated
            _ => {}
        }
        Ok(())
    }

    fn ollama_line(&mut self, line: &str, out: &mut Vec<Chunk>) -> Result<(), DecodeError> {
        let kind = self.kind;
        let v: Value = serde_json::from_str(line)
            .map_err(|e| garbage(kind, format!("NDJSON line is not JSON ({e})")))?;
        if let Some(e) = v.get("error") {
            return Err(DecodeError::Provider {
                provider: kind.as_str(),
                message: e.as_str().unwrap_or("stream error").to_string(),
                overloaded: false,
            });
        }
        if let Some(t) = v.pointer("/message/content").and_then(Value::as_str) {
            if !t.is_empty() {
                out.push(Chunk::Delta(t.to_string()));
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.usage = Usage {
                input: u(&v, "/prompt_eval_count"),
                output: u(&v, "/eval_count"),
            };
            out.push(Chunk::Done {
                finish: Finish::from_ollama(
                    v.get("done_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("stop"),
                ),
                usage: self.usage,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_request_round_trips_to_anthropic_shape() {
        let body = br#"{"model":"fast","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"stop":"END","stream":true,"stream_options":{"include_usage":true}}"#;
        let r = parse_request(Front::OpenAi, body).unwrap();
        assert_eq!(r.system.as_deref(), Some("be brief"));
        assert_eq!(r.messages[0].content, "hi");
        assert!(r.stream && r.include_usage);
        let (path, b) = provider_request(ProviderKind::Anthropic, &r, "claude-x");
        assert_eq!(path, "/v1/messages");
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["stop_sequences"][0], "END");
        assert_eq!(b["max_tokens"], 5);
        assert_eq!(b["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn anthropic_front_needs_max_tokens_and_ollama_streams_by_default() {
        let e = parse_request(
            Front::Anthropic,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("max_tokens"));
        let r = parse_request(
            Front::Ollama,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert!(r.stream);
    }

    #[test]
    fn errors_take_the_clients_shape() {
        let e = ApiError::new(ErrorKind::Overloaded, "all open");
        assert_eq!(e.body(Front::OpenAi)["error"]["type"], "server_error");
        assert_eq!(
            e.body(Front::Anthropic)["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(e.body(Front::Ollama)["error"], "all open");
    }

    #[test]
    fn openai_sse_decodes_split_across_reads() {
        let mut d = StreamDecoder::new(ProviderKind::OpenAi);
        let s = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        let mut got = Vec::new();
        for part in s.as_bytes().chunks(7) {
            got.extend(d.feed(part).unwrap());
        }
        assert_eq!(
            got,
            vec![
                Chunk::Delta("Hel".into()),
                Chunk::Delta("lo".into()),
                Chunk::Done {
                    finish: Finish::Length,
                    usage: Usage {
                        input: 3,
                        output: 2
                    }
                }
            ]
        );
    }

    #[test]
    fn anthropic_sse_decodes_and_reports_overload() {
        let mut d = StreamDecoder::new(ProviderKind::Anthropic);
        let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\nevent: some_future_event\ndata: {}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":4}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let got = d.feed(s.as_bytes()).unwrap();
        assert_eq!(
            got,
            vec![
                Chunk::Delta("Hi".into()),
                Chunk::Done {
                    finish: Finish::Length,
                    usage: Usage {
                        input: 9,
                        output: 4
                    }
                }
            ]
        );
        let mut d = StreamDecoder::new(ProviderKind::Anthropic);
        let e = d
            .feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
            .unwrap_err();
        assert!(matches!(
            e,
            DecodeError::Provider {
                overloaded: true,
                ..
            }
        ));
    }

    #[test]
    fn ollama_ndjson_and_early_end() {
        let mut d = StreamDecoder::new(ProviderKind::Ollama);
        let got = d
            .feed(b"{\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n")
            .unwrap();
        assert_eq!(got, vec![Chunk::Delta("a".into())]);
        assert!(d.end().is_err());
        let mut d = StreamDecoder::new(ProviderKind::Ollama);
        assert!(d.feed(b"not json\n").is_err());
    }

    #[test]
    fn encoders_emit_each_apis_sequence() {
        let mut e = StreamEncoder::new(Front::OpenAi, "id1".into(), "m".into(), true);
        let s = format!(
            "{}{}",
            e.delta("x"),
            e.finish(
                &Finish::Stop,
                Usage {
                    input: 1,
                    output: 2
                },
                0
            )
        );
        assert!(s.contains("\"role\":\"assistant\""));
        assert!(s.contains("\"choices\":[]"));
        assert!(s.ends_with("data: [DONE]\n\n"));
        let mut e = StreamEncoder::new(Front::Anthropic, "id1".into(), "m".into(), true);
        let s = format!(
            "{}{}",
            e.delta("x"),
            e.finish(&Finish::Length, Usage::default(), 0)
        );
        let names: Vec<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(s.contains("\"stop_reason\":\"max_tokens\""));
        assert!(rfc3339_now().ends_with('Z'));
    }
}
