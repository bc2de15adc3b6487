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

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// `user`, `assistant` or `tool` (system text is in [`ChatRequest::system`]).
    pub role: String,
    pub content: String,
    /// Tool calls the assistant made (OpenAI `tool_calls`, Anthropic `tool_use`).
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the id of the call it answers.
    pub tool_call_id: Option<String>,
}

/// One tool call: its id, the function name and the arguments (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// A tool the model may call: name, description, JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Value,
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
    pub tools: Vec<ToolDef>,
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
    pub tool_calls: Vec<ToolCall>,
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

/// Arguments as a JSON value: OpenAI sends a JSON text, Anthropic/Ollama an object.
fn args_value(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    }
}

/// Tool calls of an assistant message in any of the three formats.
fn message_tool_calls(m: &Value, i: usize) -> Vec<ToolCall> {
    let mut out = Vec::new();
    // OpenAI / Ollama: "tool_calls": [{"id", "function": {"name", "arguments"}}]
    for (j, c) in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = c.get("function").unwrap_or(c);
        out.push(ToolCall {
            id: c
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{i}_{j}"), String::from),
            name: f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            arguments: args_value(f.get("arguments")),
        });
    }
    // Anthropic: content blocks {"type": "tool_use", "id", "name", "input"}
    for b in m
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if b.get("type").and_then(Value::as_str) == Some("tool_use") {
            out.push(ToolCall {
                id: b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                name: b
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                arguments: b.get("input").cloned().unwrap_or_else(|| json!({})),
            });
        }
    }
    out
}

/// Splits `[{role, content}]` into the system text and user/assistant/tool messages
/// (Anthropic `tool_result` blocks in a user message become `tool` messages).
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
            "user" => {
                let mut rest_text = true;
                for b in m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if b.get("type").and_then(Value::as_str) == Some("tool_result") {
                        rest_text = false;
                        messages.push(Message {
                            role: "tool".into(),
                            content: content_text(b.get("content").unwrap_or(&Value::Null))?,
                            tool_call_id: b
                                .get("tool_use_id")
                                .and_then(Value::as_str)
                                .map(String::from),
                            ..Default::default()
                        });
                    }
                }
                if rest_text || !text.is_empty() {
                    messages.push(Message {
                        role: "user".into(),
                        content: text,
                        ..Default::default()
                    });
                }
            }
            "assistant" => messages.push(Message {
                role: "assistant".into(),
                content: text,
                tool_calls: message_tool_calls(m, i),
                tool_call_id: None,
            }),
            "tool" => messages.push(Message {
                role: "tool".into(),
                content: text,
                tool_call_id: m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(String::from),
                ..Default::default()
            }),
            other => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].role {other:?} is not system, user, assistant or tool"
                )))
            }
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n"));
    Ok((system, messages))
}

/// `tools` in OpenAI/Ollama (`{"type": "function", "function": {...}}`) or Anthropic
/// (`{"name", "description", "input_schema"}`) shape.
fn parse_tools(v: &Value) -> Vec<ToolDef> {
    v.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = t.get("function").unwrap_or(t);
            Some(ToolDef {
                name: f.get("name")?.as_str()?.to_string(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(String::from),
                parameters: f
                    .get("parameters")
                    .or_else(|| f.get("input_schema"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect()
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
            tools: parse_tools(&v),
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
                tools: parse_tools(&v),
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
                tools: parse_tools(&v),
            })
        }
    }
}

/// A complete (non-streaming) response in the client's API shape.
pub fn render_response(front: Front, r: &ChatResponse, elapsed_ns: u64) -> Value {
    let mut v = render_text_response(front, r, elapsed_ns);
    if r.tool_calls.is_empty() {
        return v;
    }
    match front {
        Front::OpenAi => {
            let m = &mut v["choices"][0]["message"];
            m["tool_calls"] = openai_message(
                &Message {
                    role: "assistant".into(),
                    tool_calls: r.tool_calls.clone(),
                    ..Default::default()
                },
                false,
            )["tool_calls"]
                .clone();
            if r.text.is_empty() {
                m["content"] = Value::Null;
            }
        }
        Front::Anthropic => {
            let mut blocks: Vec<Value> = Vec::new();
            if !r.text.is_empty() {
                blocks.push(json!({"type": "text", "text": r.text}));
            }
            for c in &r.tool_calls {
                blocks.push(
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}),
                );
            }
            v["content"] = Value::Array(blocks);
        }
        Front::Ollama => {
            v["message"]["tool_calls"] = r
                .tool_calls
                .iter()
                .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
        }
    }
    v
}

fn render_text_response(front: Front, r: &ChatResponse, elapsed_ns: u64) -> Value {
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
    /// OpenAI: everything of a chunk up to its `delta` value, built once.
    openai_prefix: String,
}

/// Appends `t` as a JSON string literal (RFC 8259 escaping).
fn push_json_str(s: &mut String, t: &str) {
    s.push('"');
    // copy runs of bytes that need no escaping in one go; every escaped byte is
    // ASCII, so `run..i` and `i + 1` are char boundaries
    let mut run = 0;
    for (i, b) in t.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 => "",
            _ => continue,
        };
        s.push_str(&t[run..i]);
        if esc.is_empty() {
            let _ = std::fmt::Write::write_fmt(s, format_args!("\\u{:04x}", b));
        } else {
            s.push_str(esc);
        }
        run = i + 1;
    }
    s.push_str(&t[run..]);
    s.push('"');
}

fn sse_data(v: &Value) -> String {
    format!("data: {v}\n\n")
}

fn sse_event(name: &str, v: &Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

impl StreamEncoder {
    pub fn new(front: Front, id: String, model: String, include_usage: bool) -> Self {
        let created = now_secs();
        let mut openai_prefix = String::new();
        if front == Front::OpenAi {
            openai_prefix.push_str("{\"id\":");
            push_json_str(&mut openai_prefix, &id);
            openai_prefix.push_str(",\"object\":\"chat.completion.chunk\",\"created\":");
            openai_prefix.push_str(&created.to_string());
            openai_prefix.push_str(",\"model\":");
            push_json_str(&mut openai_prefix, &model);
            openai_prefix.push_str(",\"choices\":[{\"index\":0,\"delta\":");
        }
        StreamEncoder {
            front,
            id,
            model,
            created,
            include_usage,
            started: false,
            openai_prefix,
        }
    }

    /// The content type of the stream.
    pub fn content_type(&self) -> &'static str {
        match self.front {
            Front::OpenAi | Front::Anthropic => "text/event-stream",
            Front::Ollama => "application/x-ndjson",
        }
    }

    /// Appends `data: {chunk}\n\n` with `delta` (raw JSON) and `finish`.
    fn openai_chunk_into(&self, s: &mut String, delta: &str, finish: Option<&str>) {
        s.push_str("data: ");
        s.push_str(&self.openai_prefix);
        s.push_str(delta);
        self.openai_chunk_tail(s, finish);
    }

    /// The end of an OpenAI chunk after its `delta` value.
    fn openai_chunk_tail(&self, s: &mut String, finish: Option<&str>) {
        s.push_str(",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                s.push('"');
                s.push_str(f);
                s.push('"');
            }
            None => s.push_str("null"),
        }
        s.push_str("}]");
        if self.include_usage {
            s.push_str(",\"usage\":null");
        }
        s.push_str("}\n\n");
    }

    /// What opens the stream (emitted once, before the first delta).
    pub fn start(&mut self, input_tokens: u64) -> String {
        if self.started {
            return String::new();
        }
        self.started = true;
        match self.front {
            Front::OpenAi => {
                let mut s = String::with_capacity(self.openai_prefix.len() + 128);
                self.openai_chunk_into(&mut s, "{\"role\":\"assistant\",\"content\":\"\"}", None);
                s
            }
            Front::Anthropic => {
                let mut s = String::with_capacity(512);
                s.push_str(
                    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
                );
                push_json_str(&mut s, &self.id);
                s.push_str(",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
                push_json_str(&mut s, &self.model);
                s.push_str(",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
                s.push_str(&input_tokens.to_string());
                s.push_str(",\"output_tokens\":0}}}\n\n");
                s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
                s.push_str("event: ping\ndata: {\"type\":\"ping\"}\n\n");
                s
            }
            Front::Ollama => String::new(),
        }
    }

    /// One content delta (written directly, no JSON tree: this is the per-chunk path).
    pub fn delta(&mut self, text: &str) -> String {
        let mut s = String::new();
        self.delta_into(&mut s, text);
        s
    }

    /// [`StreamEncoder::delta`] appended to `s` (the relay's per-chunk path: no
    /// intermediate strings).
    pub fn delta_into(&mut self, s: &mut String, text: &str) {
        if !self.started {
            let start = self.start(0);
            s.push_str(&start);
        }
        s.reserve(text.len() + self.openai_prefix.len() + 96);
        match self.front {
            Front::OpenAi => {
                s.push_str("data: ");
                s.push_str(&self.openai_prefix);
                s.push_str("{\"content\":");
                push_json_str(s, text);
                s.push('}');
                self.openai_chunk_tail(s, None);
            }
            Front::Anthropic => {
                s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":");
                push_json_str(s, text);
                s.push_str("}}\n\n");
            }
            Front::Ollama => {
                s.push_str("{\"model\":");
                push_json_str(s, &self.model);
                s.push_str(",\"created_at\":\"");
                s.push_str(&rfc3339_now());
                s.push_str("\",\"message\":{\"role\":\"assistant\",\"content\":");
                push_json_str(s, text);
                s.push_str("},\"done\":false}\n");
            }
        }
    }

    /// What closes a stream that completed.
    pub fn finish(&mut self, finish: &Finish, usage: Usage, elapsed_ns: u64) -> String {
        let mut s = self.start(usage.input);
        match self.front {
            Front::OpenAi => {
                self.openai_chunk_into(&mut s, "{}", Some(finish.openai()));
                if self.include_usage {
                    s.push_str("data: {\"id\":");
                    push_json_str(&mut s, &self.id);
                    s.push_str(",\"object\":\"chat.completion.chunk\",\"created\":");
                    s.push_str(&self.created.to_string());
                    s.push_str(",\"model\":");
                    push_json_str(&mut s, &self.model);
                    s.push_str(&format!(
                        ",\"choices\":[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\n",
                        usage.input,
                        usage.output,
                        usage.input + usage.output
                    ));
                }
                s.push_str("data: [DONE]\n\n");
            }
            Front::Anthropic => {
                s.push_str("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
                s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
                s.push_str(finish.anthropic());
                s.push_str("\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
                s.push_str(&usage.output.to_string());
                s.push_str("}}\n\n");
                s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
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

/// The path a provider of `kind` serves chat on, appended to its base URL.
pub fn provider_path(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "/chat/completions",
        ProviderKind::Anthropic => "/v1/messages",
        ProviderKind::Ollama => "/api/chat",
    }
}

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
                msgs.push(openai_message(m, false));
            }
            let mut b = json!({"model": model, "messages": msgs, "stream": req.stream});
            if !req.tools.is_empty() {
                b["tools"] = openai_tools(&req.tools);
            }
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
            let mut msgs: Vec<Value> = Vec::new();
            for m in &req.messages {
                match m.role.as_str() {
                    "tool" => {
                        let block = json!({"type": "tool_result",
                            "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                            "content": m.content});
                        // consecutive results go in one user message (roles alternate)
                        match msgs.last_mut() {
                            Some(last)
                                if last["role"] == "user"
                                    && last["content"][0]["type"] == "tool_result" =>
                            {
                                if let Some(a) = last["content"].as_array_mut() {
                                    a.push(block);
                                }
                            }
                            _ => msgs.push(json!({"role": "user", "content": [block]})),
                        }
                    }
                    "assistant" if !m.tool_calls.is_empty() => {
                        let mut blocks = Vec::new();
                        if !m.content.is_empty() {
                            blocks.push(json!({"type": "text", "text": m.content}));
                        }
                        for c in &m.tool_calls {
                            blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                        }
                        msgs.push(json!({"role": "assistant", "content": blocks}));
                    }
                    _ => msgs.push(json!({"role": m.role, "content": m.content})),
                }
            }
            let mut b = json!({"model": model, "messages": msgs,
                "max_tokens": req.max_tokens.unwrap_or(1024), "stream": req.stream});
            if !req.tools.is_empty() {
                b["tools"] = Value::Array(
                    req.tools
                        .iter()
                        .map(|t| {
                            let mut v = json!({"name": t.name, "input_schema": t.parameters});
                            if let Some(d) = &t.description {
                                v["description"] = json!(d);
                            }
                            v
                        })
                        .collect(),
                );
            }
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
                msgs.push(openai_message(m, true));
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
            if !req.tools.is_empty() {
                b["tools"] = openai_tools(&req.tools);
            }
            if !opts.is_empty() {
                b["options"] = Value::Object(opts);
            }
            ("/api/chat", b)
        }
    }
}

/// A message in OpenAI shape (`ollama`: Ollama's variant, arguments as an object and
/// no call ids).
fn openai_message(m: &Message, ollama: bool) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                if ollama {
                    json!({"function": {"name": c.name, "arguments": c.arguments}})
                } else {
                    json!({"id": c.id, "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()}})
                }
            })
            .collect();
    }
    if let (Some(id), false) = (&m.tool_call_id, ollama) {
        v["tool_call_id"] = json!(id);
    }
    v
}

fn openai_tools(tools: &[ToolDef]) -> Value {
    tools
        .iter()
        .map(|t| {
            let mut f = json!({"name": t.name, "parameters": t.parameters});
            if let Some(d) = &t.description {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        })
        .collect()
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
                tool_calls: choice
                    .get("message")
                    .map(|m| message_tool_calls(m, 0))
                    .unwrap_or_default(),
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
                tool_calls: message_tool_calls(&v, 0),
            })
        }
        ProviderKind::Ollama => {
            let text = v
                .pointer("/message/content")
                .and_then(Value::as_str)
                .ok_or_else(|| garbage(kind, "no message.content"))?;
            let tool_calls = v
                .get("message")
                .map(|m| message_tool_calls(m, 0))
                .unwrap_or_default();
            Ok(ChatResponse {
                id: format!("ollama-{}", now_secs()),
                model: v
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or(model)
                    .to_string(),
                text: text.to_string(),
                finish: if tool_calls.is_empty() {
                    Finish::from_ollama(
                        v.get("done_reason")
                            .and_then(Value::as_str)
                            .unwrap_or("stop"),
                    )
                } else {
                    Finish::ToolUse
                },
                usage: Usage {
                    input: u(&v, "/prompt_eval_count"),
                    output: u(&v, "/eval_count"),
                },
                tool_calls,
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

// ---------------------------------------------------------------- pass-through fast path

/// Does a client speaking `front` talk to a provider of `kind` in the same wire format?
/// Then the request and the non-streaming response pass through without translation.
pub fn same_format(front: Front, kind: ProviderKind) -> bool {
    matches!(
        (front, kind),
        (Front::OpenAi, ProviderKind::OpenAi)
            | (Front::Anthropic, ProviderKind::Anthropic)
            | (Front::Ollama, ProviderKind::Ollama)
    )
}

/// A request body's top-level fields, values left as raw JSON text (no DOM is built).
#[derive(Debug)]
pub struct RawRequest<'a> {
    fields: Vec<(&'a str, &'a serde_json::value::RawValue)>,
    /// The `model` the client asked for.
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage` (always true for the other APIs).
    pub include_usage: bool,
}

struct Fields<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(8);
                while let Some(e) = m.next_entry::<&'de str, &'de serde_json::value::RawValue>()? {
                    v.push(e);
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Reads what routing needs from a request body without building a DOM. `None` when
/// the body is anything but the plain, valid case (the full parser then answers with
/// the precise error, or translates).
pub fn peek_request(front: Front, body: &[u8]) -> Option<RawRequest<'_>> {
    let Fields(fields) = serde_json::from_slice(body).ok()?;
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.get());
    let model: String = serde_json::from_str::<&str>(get("model")?)
        .ok()?
        .to_string();
    if model.is_empty() {
        return None;
    }
    let msgs = get("messages")?;
    if !msgs.starts_with('[') || msgs[1..].trim_start().starts_with(']') {
        return None;
    }
    if front == Front::Anthropic && serde_json::from_str::<u64>(get("max_tokens")?).is_err() {
        return None;
    }
    let stream = match get("stream") {
        None | Some("null") => front == Front::Ollama,
        Some(v) => serde_json::from_str::<bool>(v).ok()?,
    };
    let include_usage = match front {
        Front::OpenAi => match get("stream_options") {
            None | Some("null") => false,
            Some(v) => serde_json::from_str::<StreamOptions>(v).ok()?.include_usage,
        },
        _ => true,
    };
    Some(RawRequest {
        fields,
        model,
        stream,
        include_usage,
    })
}

impl RawRequest<'_> {
    /// The body for a provider of the client's own format: the same fields with
    /// `model` replaced (and, for an OpenAI stream, usage asked for so tokens count).
    pub fn upstream_body(&self, kind: ProviderKind, model: &str) -> Vec<u8> {
        let len: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(len + model.len() + 48);
        out.push(b'{');
        let force_usage = kind == ProviderKind::OpenAi && self.stream;
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        let mut saw_options = false;
        for (k, v) in &self.fields {
            sep(&mut out);
            // keys were plain (borrowed) strings, so they need no escaping
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            match *k {
                "model" => {
                    let _ = serde_json::to_writer(&mut out, model);
                }
                "stream_options" if force_usage => {
                    saw_options = true;
                    out.extend_from_slice(b"{\"include_usage\":true}");
                }
                _ => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        if force_usage && !saw_options {
            sep(&mut out);
            out.extend_from_slice(b"\"stream_options\":{\"include_usage\":true}");
        }
        out.push(b'}');
        out
    }
}

#[derive(serde::Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(serde::Deserialize)]
struct OpenAiPeek {
    choices: Vec<serde::de::IgnoredAny>,
    usage: Option<OpenAiUsage>,
}

#[derive(serde::Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(serde::Deserialize)]
struct AnthropicPeek {
    #[allow(dead_code)]
    content: Vec<serde::de::IgnoredAny>,
    usage: Option<AnthropicUsage>,
}

#[derive(serde::Deserialize)]
struct OllamaPeek {
    #[allow(dead_code)]
    message: serde::de::IgnoredAny,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
}

/// Checks a complete provider response is its API's shape and reads its token counts,
/// without building a DOM (the body then goes to a same-format client unchanged).
pub fn peek_provider_response(kind: ProviderKind, body: &[u8]) -> Result<Usage, DecodeError> {
    let bad = |e: serde_json::Error| garbage(kind, format!("not its response shape ({e})"));
    match kind {
        ProviderKind::OpenAi => {
            let p: OpenAiPeek = serde_json::from_slice(body).map_err(bad)?;
            if p.choices.is_empty() {
                return Err(garbage(kind, "no choices[0]"));
            }
            Ok(p.usage.map_or(Usage::default(), |u| Usage {
                input: u.prompt_tokens,
                output: u.completion_tokens,
            }))
        }
        ProviderKind::Anthropic => {
            let p: AnthropicPeek = serde_json::from_slice(body).map_err(bad)?;
            Ok(p.usage.map_or(Usage::default(), |u| Usage {
                input: u.input_tokens,
                output: u.output_tokens,
            }))
        }
        ProviderKind::Ollama => {
            let p: OllamaPeek = serde_json::from_slice(body).map_err(bad)?;
            Ok(Usage {
                input: p.prompt_eval_count,
                output: p.eval_count,
            })
        }
    }
}

#[derive(serde::Deserialize)]
struct OpenAiStreamChunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<OpenAiStreamChoice<'a>>>,
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(serde::Deserialize)]
struct OpenAiStreamChoice<'a> {
    #[serde(borrow, default)]
    delta: Option<OpenAiDelta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct OpenAiDelta<'a> {
    #[serde(borrow, default)]
    content: Option<std::borrow::Cow<'a, str>>,
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
        let mut out = Vec::new();
        // lines are read in place (no per-line copy); what is left after the last
        // newline stays in `buf` for the next call
        let mut buf = std::mem::take(&mut self.buf);
        buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut result = Ok(());
        while let Some(rel) = buf[start..].iter().position(|&b| b == b'\n') {
            let raw = &buf[start..start + rel];
            start += rel + 1;
            if self.done {
                continue;
            }
            let line = match std::str::from_utf8(raw) {
                Ok(l) => std::borrow::Cow::Borrowed(l),
                Err(_) => String::from_utf8_lossy(raw),
            };
            let line = line.trim_end_matches(['\n', '\r']);
            result = match self.kind {
                ProviderKind::Ollama if line.trim().is_empty() => Ok(()),
                ProviderKind::Ollama => self.ollama_line(line, &mut out),
                _ => self.sse_line(line, &mut out),
            };
            if result.is_err() {
                break;
            }
        }
        buf.drain(..start);
        self.buf = buf;
        result?;
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
            let mut data = std::mem::take(&mut self.data);
            let event = self.event.take();
            let r = self.sse_event(event.as_deref(), &data, out);
            data.clear();
            self.data = data; // keeps its capacity for the next event
            return r;
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
            // typed and borrowed: the per-chunk path builds no JSON tree
            let c: OpenAiStreamChunk = serde_json::from_str(data)
                .map_err(|e| garbage(kind, format!("SSE data is not a chunk ({e})")))?;
            if let Some(err) = c.error.filter(|e| !e.is_null()) {
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
            if let Some(us) = c.usage {
                self.usage = Usage {
                    input: us.prompt_tokens,
                    output: us.completion_tokens,
                };
            }
            if let Some(ch) = c.choices.as_ref().and_then(|v| v.first()) {
                if let Some(t) = ch.delta.as_ref().and_then(|d| d.content.as_deref()) {
                    if !t.is_empty() {
                        out.push(Chunk::Delta(t.to_string()));
                    }
                }
                if let Some(f) = ch.finish_reason.as_deref() {
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
    fn pass_through_rewrites_only_the_model() {
        let body = br#"{"model":"fast","messages":[{"role":"user","content":"hi \"x\""}],"tools":[{"type":"function"}],"stream":true,"temperature":0.5}"#;
        let r = peek_request(Front::OpenAi, body).unwrap();
        assert_eq!(r.model, "fast");
        assert!(r.stream && !r.include_usage);
        let up = r.upstream_body(ProviderKind::OpenAi, "gpt-\"q\"");
        let v: Value = serde_json::from_slice(&up).unwrap();
        assert_eq!(v["model"], "gpt-\"q\"");
        assert_eq!(v["messages"][0]["content"], "hi \"x\"");
        assert_eq!(v["tools"][0]["type"], "function");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["temperature"], 0.5);
        // anything unusual falls back to the full parser
        assert!(peek_request(Front::OpenAi, br#"{"model":"m","messages":[]}"#).is_none());
        assert!(peek_request(Front::OpenAi, br#"{"messages":[{}]}"#).is_none());
        assert!(peek_request(Front::Anthropic, br#"{"model":"m","messages":[{}]}"#).is_none());
        assert!(peek_request(Front::OpenAi, b"[1]").is_none());
        let r = peek_request(Front::Ollama, br#"{"model":"m","messages":[{}]}"#).unwrap();
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn response_peek_reads_usage_and_refuses_other_shapes() {
        let u = peek_provider_response(
            ProviderKind::OpenAi,
            br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!((u.input, u.output), (3, 4));
        assert!(peek_provider_response(ProviderKind::OpenAi, br#"{"choices":[]}"#).is_err());
        assert!(peek_provider_response(ProviderKind::Anthropic, br#"{"choices":[{}]}"#).is_err());
        let u = peek_provider_response(
            ProviderKind::Ollama,
            br#"{"message":{"content":"x"},"prompt_eval_count":2,"eval_count":5}"#,
        )
        .unwrap();
        assert_eq!((u.input, u.output), (2, 5));
    }

    #[test]
    fn direct_deltas_are_valid_json_with_escapes() {
        let text = "a \"q\" \\ b\nc\u{1}é";
        for front in [Front::OpenAi, Front::Anthropic, Front::Ollama] {
            let mut e = StreamEncoder::new(front, "id\"1".into(), "m\\x".into(), true);
            let _ = e.start(0);
            let s = e.delta(text);
            let line = s
                .lines()
                .find_map(|l| {
                    l.strip_prefix("data: ")
                        .or((front == Front::Ollama).then_some(l))
                })
                .unwrap();
            let v: Value = serde_json::from_str(line).unwrap();
            let got = match front {
                Front::OpenAi => {
                    assert_eq!(v["id"], "id\"1");
                    assert!(v["usage"].is_null() && v.get("usage").is_some());
                    v["choices"][0]["delta"]["content"].clone()
                }
                Front::Anthropic => v["delta"]["text"].clone(),
                Front::Ollama => {
                    assert_eq!(v["model"], "m\\x");
                    v["message"]["content"].clone()
                }
            };
            assert_eq!(got, text, "{front:?}: {s}");
        }
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
