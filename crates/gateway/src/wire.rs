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
    /// Images attached to the message (OpenAI `image_url` parts, Anthropic `image`
    /// blocks, Ollama `images`), in the order the client sent them.
    pub images: Vec<Image>,
    /// Position of the message in the client's `messages` array (named in errors).
    pub index: usize,
}

/// An image in a message: inline base64 data, or a URL the provider fetches.
#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// Base64 data; the media type (`image/png`) when the client named it or the
    /// data's first bytes tell it.
    Base64 {
        media_type: Option<String>,
        data: String,
    },
    /// An `http(s)://` URL.
    Url(String),
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
    /// Whether and which tool the model must call (OpenAI `tool_choice`, Anthropic
    /// `tool_choice`; Ollama has none).
    pub tool_choice: Option<ToolChoice>,
    /// OpenAI `parallel_tool_calls`; Anthropic `disable_parallel_tool_use` inverted.
    pub parallel_tool_calls: Option<bool>,
}

/// What the model may do with the tools it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// It decides (OpenAI `"auto"`, Anthropic `auto`).
    Auto,
    /// It must not call one (OpenAI `"none"`, Anthropic `none`).
    None,
    /// It must call at least one (OpenAI `"required"`, Anthropic `any`).
    Required,
    /// It must call this one.
    Tool(String),
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
    /// Text.
    Delta(String),
    /// The model starts tool call number `index` (0, 1, .. in the order the calls
    /// start): its id and the function's name.
    ToolStart {
        index: usize,
        id: String,
        name: String,
    },
    /// A fragment of the arguments (JSON text) of tool call `index`; the fragments of
    /// one call, joined, are its arguments object.
    ToolArgs { index: usize, json: String },
    /// The end: finish reason and token counts.
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

/// The media type of base64 image data, told from its first characters (PNG, JPEG,
/// GIF, WebP), for formats that send the data without one (Ollama).
fn sniff_media_type(data: &str) -> Option<String> {
    const MAGIC: [(&str, &str); 4] = [
        ("iVBORw0KGgo", "image/png"),
        ("/9j/", "image/jpeg"),
        ("R0lGOD", "image/gif"),
        ("UklGR", "image/webp"),
    ];
    let d = data.trim_start();
    MAGIC
        .iter()
        .find(|(m, _)| d.starts_with(m))
        .map(|(_, t)| (*t).to_string())
}

/// An image given as a URL: `data:image/png;base64,...` becomes inline data, an
/// `http(s)://` URL stays a URL. `what` names the field in errors.
fn image_from_url(url: &str, what: &str) -> Result<Image, ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').unwrap_or((rest, ""));
        let Some(media_type) = meta.strip_suffix(";base64") else {
            return Err(ApiError::bad(format!(
                "{what} is a data URL that is not base64, e.g. \"data:image/png;base64,iVBORw0KGgo...\""
            )));
        };
        if data.is_empty() {
            return Err(ApiError::bad(format!(
                "{what} is a data URL without data, e.g. \"data:image/png;base64,iVBORw0KGgo...\""
            )));
        }
        let media_type = match media_type {
            "" => sniff_media_type(data),
            "image/jpg" => Some("image/jpeg".to_string()), // a common misspelling
            t => Some(t.to_string()),
        };
        return Ok(Image::Base64 {
            media_type,
            data: data.to_string(),
        });
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Image::Url(url.to_string()));
    }
    let shown: String = url.chars().take(40).collect();
    Err(ApiError::bad(format!(
        "{what} {shown:?} is neither an http(s) URL nor a base64 data URL, e.g. \"https://example.com/cat.png\" or \"data:image/png;base64,iVBORw0KGgo...\""
    )))
}

/// Images among the content parts `parts` (OpenAI `image_url`, Anthropic `image`);
/// `at` names the array in errors (`messages[2].content`).
fn part_images(parts: Option<&Value>, at: &str) -> Result<Vec<Image>, ApiError> {
    let mut out = Vec::new();
    for (j, p) in parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        match p.get("type").and_then(Value::as_str) {
            Some("image_url") => {
                let what = format!("{at}[{j}].image_url.url");
                let url = p
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "{what} is missing, e.g. {{\"type\": \"image_url\", \"image_url\": {{\"url\": \"https://example.com/cat.png\"}}}}"
                        ))
                    })?;
                out.push(image_from_url(url, &what)?);
            }
            Some("image") => {
                let src = p.get("source").unwrap_or(&Value::Null);
                let field = |k: &str| src.get(k).and_then(Value::as_str);
                match field("type") {
                    Some("base64") => {
                        let data = field("data").filter(|d| !d.is_empty()).ok_or_else(|| {
                            ApiError::bad(format!(
                                "{at}[{j}].source.data is missing, e.g. {{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"iVBORw0KGgo...\"}}"
                            ))
                        })?;
                        out.push(Image::Base64 {
                            media_type: field("media_type")
                                .map(String::from)
                                .or_else(|| sniff_media_type(data)),
                            data: data.to_string(),
                        });
                    }
                    Some("url") => {
                        let what = format!("{at}[{j}].source.url");
                        let url = field("url").ok_or_else(|| {
                            ApiError::bad(format!(
                                "{what} is missing, e.g. {{\"type\": \"url\", \"url\": \"https://example.com/cat.png\"}}"
                            ))
                        })?;
                        out.push(image_from_url(url, &what)?);
                    }
                    other => {
                        return Err(ApiError::bad(format!(
                            "{at}[{j}].source.type {} is not \"base64\" or \"url\", e.g. {{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"iVBORw0KGgo...\"}}",
                            other.map_or_else(|| "(missing)".to_string(), |t| format!("{t:?}"))
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Ollama's `images: ["<base64>", ...]` on message `i`.
fn ollama_images(m: &Value, i: usize) -> Result<Vec<Image>, ApiError> {
    let mut out = Vec::new();
    let Some(v) = m.get("images").filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let arr = v.as_array().ok_or_else(|| {
        ApiError::bad(format!(
            "messages[{i}].images must be an array of base64 strings, e.g. \"images\": [\"iVBORw0KGgo...\"]"
        ))
    })?;
    for (j, x) in arr.iter().enumerate() {
        let what = format!("messages[{i}].images[{j}]");
        let d = x.as_str().filter(|d| !d.is_empty()).ok_or_else(|| {
            ApiError::bad(format!(
                "{what} must be a base64 string, e.g. \"images\": [\"iVBORw0KGgo...\"]"
            ))
        })?;
        out.push(if d.starts_with("data:") || d.starts_with("http") {
            image_from_url(d, &what)?
        } else {
            Image::Base64 {
                media_type: sniff_media_type(d),
                data: d.to_string(),
            }
        });
    }
    Ok(out)
}

/// Splits `[{role, content}]` into the system text and user/assistant/tool messages
/// (Anthropic `tool_result` blocks in a user message become `tool` messages). Images
/// (content parts, Ollama `images`) ride on their message.
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
        let at = format!("messages[{i}].content");
        let mut images = part_images(m.get("content"), &at)?;
        images.extend(ollama_images(m, i)?);
        match role {
            "system" | "developer" => {
                if !images.is_empty() {
                    return Err(ApiError::bad(format!(
                        "messages[{i}] is a {role} message with an image; put images in a user message, e.g. {{\"role\": \"user\", \"content\": [{{\"type\": \"image_url\", \"image_url\": {{\"url\": \"https://example.com/cat.png\"}}}}]}}"
                    )));
                }
                system.push(text)
            }
            "user" => {
                let mut rest_text = true;
                for (j, b) in m
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
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
                            images: part_images(b.get("content"), &format!("{at}[{j}].content"))?,
                            index: i,
                            ..Default::default()
                        });
                    }
                }
                if rest_text || !text.is_empty() || !images.is_empty() {
                    messages.push(Message {
                        role: "user".into(),
                        content: text,
                        images,
                        index: i,
                        ..Default::default()
                    });
                }
            }
            "assistant" => messages.push(Message {
                role: "assistant".into(),
                content: text,
                tool_calls: message_tool_calls(m, i),
                tool_call_id: None,
                images,
                index: i,
            }),
            "tool" => messages.push(Message {
                role: "tool".into(),
                content: text,
                tool_call_id: m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .map(String::from),
                images,
                index: i,
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

/// `tool_choice` (and the parallel-calls switch) in the client's shape.
fn parse_tool_choice(
    front: Front,
    v: &Value,
) -> Result<(Option<ToolChoice>, Option<bool>), ApiError> {
    let Some(tc) = v.get("tool_choice").filter(|t| !t.is_null()) else {
        return Ok((None, v.get("parallel_tool_calls").and_then(Value::as_bool)));
    };
    match front {
        Front::OpenAi => {
            let choice = match tc {
                Value::String(s) if s == "auto" => ToolChoice::Auto,
                Value::String(s) if s == "none" => ToolChoice::None,
                Value::String(s) if s == "required" => ToolChoice::Required,
                _ => match tc.pointer("/function/name").and_then(Value::as_str) {
                    Some(name) => ToolChoice::Tool(name.to_string()),
                    None => {
                        return Err(ApiError::bad(format!(
                            "tool_choice {tc} is not one of \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": \"get_weather\"}}}}"
                        )))
                    }
                },
            };
            Ok((
                Some(choice),
                v.get("parallel_tool_calls").and_then(Value::as_bool),
            ))
        }
        Front::Anthropic => {
            let choice = match (
                tc.get("type").and_then(Value::as_str),
                tc.get("name").and_then(Value::as_str),
            ) {
                (Some("auto"), _) => ToolChoice::Auto,
                (Some("none"), _) => ToolChoice::None,
                (Some("any"), _) => ToolChoice::Required,
                (Some("tool"), Some(name)) => ToolChoice::Tool(name.to_string()),
                _ => {
                    return Err(ApiError::bad(format!(
                        "tool_choice {tc} is not {{\"type\": \"auto\"|\"any\"|\"none\"}} or {{\"type\": \"tool\", \"name\": \"get_weather\"}}"
                    )))
                }
            };
            let parallel = tc
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                .map(|d| !d);
            Ok((Some(choice), parallel))
        }
        // Ollama's API has no tool_choice: the field is ignored, as Ollama does
        Front::Ollama => Ok((None, None)),
    }
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
    let (tool_choice, parallel_tool_calls) = parse_tool_choice(front, &v)?;
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
            tool_choice,
            parallel_tool_calls,
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
                tool_choice,
                parallel_tool_calls,
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
                tool_choice,
                parallel_tool_calls,
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
    /// Anthropic: the content block open now and whether it is the text block.
    open_block: Option<usize>,
    text_open: bool,
    /// Anthropic: the index the next content block gets.
    next_block: usize,
    /// Tool calls seen, by call number: Anthropic block index, and for Ollama the
    /// call held whole until the end (Ollama sends a call in one piece).
    tools: Vec<Option<ToolState>>,
    /// Ollama: bytes of arguments held; past [`MAX_HELD_ARGS`] the stream ends in an
    /// error instead of growing without bound.
    held_bytes: usize,
    overflow: bool,
}

/// A tool call the encoder has started.
#[derive(Debug)]
struct ToolState {
    block: usize,
    id: String,
    name: String,
    args: String,
}

/// Most tool calls one stream may hold (decoder and encoder).
const MAX_TOOL_CALLS: usize = 256;
/// Most bytes of tool-call arguments an Ollama-front stream holds until its end.
const MAX_HELD_ARGS: usize = 4 << 20;

/// Appends `n` in decimal.
fn push_usize(s: &mut String, n: usize) {
    if n < 10 {
        s.push((b'0' + n as u8) as char); // the per-delta case: no formatter
    } else {
        let _ = std::fmt::Write::write_fmt(s, format_args!("{n}"));
    }
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
            open_block: None,
            text_open: false,
            next_block: 0,
            tools: Vec::new(),
            held_bytes: 0,
            overflow: false,
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
                // the first content block (text or tool_use) opens with the first piece
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
                if !self.text_open {
                    self.open_block_into(s, None);
                }
                s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
                push_usize(s, self.open_block.unwrap_or(0));
                s.push_str(",\"delta\":{\"type\":\"text_delta\",\"text\":");
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

    /// One decoded upstream piece other than the end, appended to `s` in the client's
    /// format (the relay calls this for every piece before [`Chunk::Done`]).
    pub fn chunk_into(&mut self, s: &mut String, c: &Chunk) {
        match c {
            Chunk::Delta(t) => self.delta_into(s, t),
            Chunk::ToolStart { index, id, name } => self.tool_start_into(s, *index, id, name),
            Chunk::ToolArgs { index, json } => self.tool_args_into(s, *index, json),
            Chunk::Done { finish, usage } => s.push_str(&self.finish(finish, *usage, 0)),
        }
    }

    /// Anthropic: closes the open block and opens the next one, a text block
    /// (`tool` None) or a `tool_use` block (id, name); the stream's first block is
    /// followed by a `ping`, as the Messages API does.
    fn open_block_into(&mut self, s: &mut String, tool: Option<(&str, &str)>) {
        self.close_block_into(s);
        let b = self.next_block;
        self.next_block += 1;
        s.push_str(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":",
        );
        push_usize(s, b);
        match tool {
            None => s.push_str(",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"),
            Some((id, name)) => {
                s.push_str(",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                push_json_str(s, id);
                s.push_str(",\"name\":");
                push_json_str(s, name);
                s.push_str(",\"input\":{}}}\n\n");
            }
        }
        if b == 0 {
            s.push_str("event: ping\ndata: {\"type\":\"ping\"}\n\n");
        }
        self.open_block = Some(b);
        self.text_open = tool.is_none();
    }

    /// Anthropic: `content_block_stop` for the open block, if any.
    fn close_block_into(&mut self, s: &mut String) {
        if let Some(b) = self.open_block.take() {
            s.push_str(
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
            );
            push_usize(s, b);
            s.push_str("}\n\n");
        }
        self.text_open = false;
    }

    /// Tool call `index` starts (see [`Chunk::ToolStart`]).
    fn tool_start_into(&mut self, s: &mut String, index: usize, id: &str, name: &str) {
        if index >= MAX_TOOL_CALLS || self.tools.get(index).is_some_and(Option::is_some) {
            return; // the decoders never send these (bounded, each call starts once)
        }
        if !self.started {
            let start = self.start(0);
            s.push_str(&start);
        }
        if self.tools.len() <= index {
            self.tools.resize_with(index + 1, || None);
        }
        let mut st = ToolState {
            block: 0,
            id: String::new(),
            name: String::new(),
            args: String::new(),
        };
        match self.front {
            Front::OpenAi => {
                s.push_str("data: ");
                s.push_str(&self.openai_prefix);
                s.push_str("{\"tool_calls\":[{\"index\":");
                push_usize(s, index);
                s.push_str(",\"id\":");
                push_json_str(s, id);
                s.push_str(",\"type\":\"function\",\"function\":{\"name\":");
                push_json_str(s, name);
                s.push_str(",\"arguments\":\"\"}}]}");
                self.openai_chunk_tail(s, None);
            }
            Front::Anthropic => {
                self.open_block_into(s, Some((id, name)));
                st.block = self.open_block.unwrap_or(0);
            }
            Front::Ollama => {
                st.id = id.to_string();
                st.name = name.to_string();
            }
        }
        self.tools[index] = Some(st);
    }

    /// A fragment of tool call `index`'s arguments (see [`Chunk::ToolArgs`]).
    fn tool_args_into(&mut self, s: &mut String, index: usize, json: &str) {
        if index >= MAX_TOOL_CALLS {
            return;
        }
        if !self.tools.get(index).is_some_and(Option::is_some) {
            // arguments before a start: start the call without a name
            let id = format!("call_{index}");
            self.tool_start_into(s, index, &id, "");
        }
        let Some(Some(st)) = self.tools.get_mut(index) else {
            return;
        };
        if json.is_empty() {
            return;
        }
        match self.front {
            Front::OpenAi => {
                s.push_str("data: ");
                s.push_str(&self.openai_prefix);
                s.push_str("{\"tool_calls\":[{\"index\":");
                push_usize(s, index);
                s.push_str(",\"function\":{\"arguments\":");
                push_json_str(s, json);
                s.push_str("}}]}");
                self.openai_chunk_tail(s, None);
            }
            Front::Anthropic => {
                // a fragment for a call whose block was closed (a provider that
                // interleaves calls) still names that call's block: SDKs accumulate
                // by index
                s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
                push_usize(s, st.block);
                s.push_str(",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
                push_json_str(s, json);
                s.push_str("}}\n\n");
            }
            Front::Ollama => {
                if self.held_bytes + json.len() > MAX_HELD_ARGS {
                    self.overflow = true;
                } else {
                    self.held_bytes += json.len();
                    st.args.push_str(json);
                }
            }
        }
    }

    /// Ollama: the held tool calls as one `message.tool_calls` line (before the end).
    fn ollama_tools_line(&mut self) -> Option<String> {
        let calls: Vec<Value> = self
            .tools
            .drain(..)
            .flatten()
            .map(|t| {
                let args = if t.args.trim().is_empty() {
                    json!({})
                } else {
                    args_value(Some(&Value::String(t.args)))
                };
                json!({"function": {"name": t.name, "arguments": args}})
            })
            .collect();
        if calls.is_empty() {
            return None;
        }
        let mut line = json!({"model": self.model, "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false})
        .to_string();
        line.push('\n');
        Some(line)
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
                if self.next_block == 0 {
                    // nothing came: one empty text block, as the Messages API sends
                    self.open_block_into(&mut s, None);
                }
                self.close_block_into(&mut s);
                s.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
                s.push_str(finish.anthropic());
                s.push_str("\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
                s.push_str(&usage.output.to_string());
                s.push_str("}}\n\n");
                s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
            }
            Front::Ollama => {
                if self.overflow {
                    let e = ApiError::new(
                        ErrorKind::Upstream,
                        format!("the provider's tool call arguments passed {MAX_HELD_ARGS} bytes, more than the gateway holds for an Ollama client"),
                    );
                    s.push_str(&self.error(&e));
                    return s;
                }
                if let Some(line) = self.ollama_tools_line() {
                    s.push_str(&line);
                }
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

/// Why `img` on a message of `role` cannot go to a provider of `kind` (None: it can).
fn image_problem(kind: ProviderKind, role: &str, img: &Image) -> Option<String> {
    let media_type = match img {
        Image::Base64 { media_type, .. } => Some(media_type.as_deref()),
        Image::Url(_) => None,
    };
    match kind {
        ProviderKind::OpenAi if role != "user" => Some(format!(
            "OpenAI chat completions take images on user messages only, and this is a{} {role} message",
            if role.starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" }
        )),
        ProviderKind::Anthropic if role == "assistant" => Some(
            "Anthropic messages take images from the user and in tool results only, and this is an assistant message"
                .into(),
        ),
        ProviderKind::OpenAi | ProviderKind::Anthropic => match media_type {
            Some(None) => Some(
                "its media type is unknown (the data is not PNG, JPEG, GIF or WebP) and the provider needs one; send it as data:image/png;base64,..."
                    .into(),
            ),
            Some(Some(t))
                if kind == ProviderKind::Anthropic
                    && !matches!(t, "image/jpeg" | "image/png" | "image/gif" | "image/webp") =>
            {
                Some(format!(
                    "Anthropic takes image/jpeg, image/png, image/gif or image/webp, not {t:?}"
                ))
            }
            _ => None,
        },
        ProviderKind::Ollama => matches!(img, Image::Url(_)).then(|| {
            "Ollama takes images as base64 data only, not URLs; send the image inline, e.g. data:image/png;base64,iVBORw0KGgo..."
                .into()
        }),
    }
}

/// Every image of `req` that a provider of `kind` can carry, or a 400 naming the
/// first one it cannot (message index in the client's array, image number, why).
pub fn check_images(kind: ProviderKind, req: &ChatRequest) -> Result<(), ApiError> {
    for m in &req.messages {
        for (k, img) in m.images.iter().enumerate() {
            if let Some(why) = image_problem(kind, &m.role, img) {
                return Err(ApiError::bad(format!(
                    "messages[{}]: image {k} cannot be sent to the {} provider: {why}",
                    m.index,
                    kind.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// Everything in `req` that a provider of `kind` cannot carry, as a 400: its images
/// ([`check_images`]) and a forced tool call for Ollama, which has no `tool_choice`.
pub fn check_request(kind: ProviderKind, req: &ChatRequest) -> Result<(), ApiError> {
    check_images(kind, req)?;
    if kind == ProviderKind::Ollama && !req.tools.is_empty() {
        let forced = match &req.tool_choice {
            Some(ToolChoice::Required) => Some("\"required\"".to_string()),
            Some(ToolChoice::Tool(name)) => Some(format!("{name:?}")),
            _ => None,
        };
        if let Some(what) = forced {
            return Err(ApiError::bad(format!(
                "tool_choice {what} cannot be sent to the ollama provider: Ollama has no tool_choice and cannot be made to call a tool; use \"auto\", or route the model to an OpenAI or Anthropic target"
            )));
        }
    }
    Ok(())
}

/// True when `req` holds something only some providers can carry (images, a forced
/// tool call): the targets are then checked with [`check_request`] before picking.
pub fn has_provider_limits(req: &ChatRequest) -> bool {
    req.messages.iter().any(|m| !m.images.is_empty())
        || matches!(
            req.tool_choice,
            Some(ToolChoice::Required | ToolChoice::Tool(_))
        )
}

/// `data:` URL of inline image data (OpenAI's way of sending it).
fn data_url(media_type: &str, data: &str) -> String {
    let mut s = String::with_capacity(data.len() + media_type.len() + 13);
    s.push_str("data:");
    s.push_str(media_type);
    s.push_str(";base64,");
    s.push_str(data);
    s
}

/// Anthropic `image` block.
fn anthropic_image(img: &Image) -> Value {
    match img {
        Image::Base64 { media_type, data } => json!({"type": "image", "source": {
            "type": "base64", "media_type": media_type.as_deref().unwrap_or("image/png"), "data": data}}),
        Image::Url(u) => json!({"type": "image", "source": {"type": "url", "url": u}}),
    }
}

/// The upstream request: path appended to the base URL, and the JSON body, or a 400
/// (in [`ApiError`]) when the request holds something a provider of `kind` cannot
/// carry (an image URL for Ollama, an image on an assistant message, a forced tool
/// call for Ollama): nothing is ever dropped silently.
pub fn provider_request(
    kind: ProviderKind,
    req: &ChatRequest,
    model: &str,
) -> Result<(&'static str, Value), ApiError> {
    check_request(kind, req)?;
    Ok(render_provider_request(kind, req, model))
}

/// Renders a request whose images `kind` can carry (see [`check_images`]).
fn render_provider_request(
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
                let mut v = openai_message(m, false);
                if !m.images.is_empty() {
                    let mut parts = Vec::with_capacity(m.images.len() + 1);
                    if !m.content.is_empty() {
                        parts.push(json!({"type": "text", "text": m.content}));
                    }
                    for img in &m.images {
                        let url = match img {
                            Image::Base64 { media_type, data } => {
                                data_url(media_type.as_deref().unwrap_or("image/png"), data)
                            }
                            Image::Url(u) => u.clone(),
                        };
                        parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                    }
                    v["content"] = Value::Array(parts);
                }
                msgs.push(v);
            }
            let mut b = json!({"model": model, "messages": msgs, "stream": req.stream});
            if !req.tools.is_empty() {
                b["tools"] = openai_tools(&req.tools);
                if let Some(tc) = &req.tool_choice {
                    b["tool_choice"] = match tc {
                        ToolChoice::Auto => json!("auto"),
                        ToolChoice::None => json!("none"),
                        ToolChoice::Required => json!("required"),
                        ToolChoice::Tool(name) => {
                            json!({"type": "function", "function": {"name": name}})
                        }
                    };
                }
                if let Some(p) = req.parallel_tool_calls {
                    b["parallel_tool_calls"] = json!(p);
                }
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
                        let content = if m.images.is_empty() {
                            json!(m.content)
                        } else {
                            let mut parts = Vec::with_capacity(m.images.len() + 1);
                            if !m.content.is_empty() {
                                parts.push(json!({"type": "text", "text": m.content}));
                            }
                            parts.extend(m.images.iter().map(anthropic_image));
                            Value::Array(parts)
                        };
                        let block = json!({"type": "tool_result",
                            "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                            "content": content});
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
                    _ if !m.images.is_empty() => {
                        // images first, as Anthropic's guide recommends, then the text
                        let mut blocks: Vec<Value> = m.images.iter().map(anthropic_image).collect();
                        if !m.content.is_empty() {
                            blocks.push(json!({"type": "text", "text": m.content}));
                        }
                        msgs.push(json!({"role": m.role, "content": blocks}));
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
                if req.tool_choice.is_some() || req.parallel_tool_calls == Some(false) {
                    let mut c = match req.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
                        ToolChoice::Auto => json!({"type": "auto"}),
                        ToolChoice::None => json!({"type": "none"}),
                        ToolChoice::Required => json!({"type": "any"}),
                        ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
                    };
                    if req.parallel_tool_calls == Some(false)
                        && req.tool_choice != Some(ToolChoice::None)
                    {
                        c["disable_parallel_tool_use"] = json!(true);
                    }
                    b["tool_choice"] = c;
                }
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
                let mut v = openai_message(m, true);
                if !m.images.is_empty() {
                    v["images"] = m
                        .images
                        .iter()
                        .filter_map(|img| match img {
                            Image::Base64 { data, .. } => Some(json!(data)),
                            Image::Url(_) => None, // refused by check_images
                        })
                        .collect();
                }
                msgs.push(v);
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
            // no tool_choice in Ollama's API: "none" is honoured by not offering the
            // tools; a forced call cannot be sent (see `check_request`)
            if !req.tools.is_empty() && req.tool_choice != Some(ToolChoice::None) {
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
    #[serde(borrow, default)]
    tool_calls: Option<Vec<OpenAiToolDelta<'a>>>,
}

#[derive(serde::Deserialize)]
struct OpenAiToolDelta<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<OpenAiFunctionDelta<'a>>,
}

#[derive(serde::Deserialize)]
struct OpenAiFunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<std::borrow::Cow<'a, str>>,
}

/// An id for a tool call whose provider sent none (Ollama): unique, so a client that
/// sends the conversation on to a provider that wants unique ids is not refused.
fn made_up_call_id() -> String {
    format!("call_{:016x}", rand::random::<u64>())
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
    /// Tool calls started so far (OpenAI: by its `index`, at most [`MAX_TOOL_CALLS`]).
    tools_started: Vec<bool>,
    n_tools: usize,
    /// Anthropic: (content block index, tool call number) of each `tool_use` block.
    tool_blocks: Vec<(u64, usize)>,
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
            tools_started: Vec::new(),
            n_tools: 0,
            tool_blocks: Vec::new(),
        }
    }

    /// The finish reason to report: a plain stop after tool calls is a tool-use stop
    /// (what the other APIs call it).
    fn final_finish(&self) -> Finish {
        match self.finish.clone().unwrap_or(Finish::Stop) {
            Finish::Stop if self.n_tools > 0 => Finish::ToolUse,
            f => f,
        }
    }

    /// Call number for a new tool call, or garbage past [`MAX_TOOL_CALLS`].
    fn next_tool(&mut self) -> Result<usize, DecodeError> {
        if self.n_tools >= MAX_TOOL_CALLS {
            return Err(garbage(
                self.kind,
                format!("more than {MAX_TOOL_CALLS} tool calls in one answer"),
            ));
        }
        self.n_tools += 1;
        Ok(self.n_tools - 1)
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
        self.feed_into(bytes, &mut out)?;
        Ok(out)
    }

    /// [`StreamDecoder::feed`] appending to `out`; on an error, `out` keeps what was
    /// decoded before it (a provider's last deltas and then its mid-stream error can
    /// arrive in one read: the client gets both, in order).
    pub fn feed_into(&mut self, bytes: &[u8], out: &mut Vec<Chunk>) -> Result<(), DecodeError> {
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
                ProviderKind::Ollama => self.ollama_line(line, out),
                _ => self.sse_line(line, out),
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
        Ok(())
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
            if let (ProviderKind::OpenAi, Some(_)) = (self.kind, &self.finish) {
                self.done = true;
                out.push(Chunk::Done {
                    finish: self.final_finish(),
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
                    finish: self.final_finish(),
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
                if let Some(calls) = ch.delta.as_ref().and_then(|d| d.tool_calls.as_ref()) {
                    for (pos, tc) in calls.iter().enumerate() {
                        let index = tc.index.unwrap_or(pos as u64);
                        if index >= MAX_TOOL_CALLS as u64 {
                            return Err(garbage(
                                kind,
                                format!("tool call index {index} (at most {MAX_TOOL_CALLS} calls)"),
                            ));
                        }
                        let index = index as usize;
                        let f = tc.function.as_ref();
                        if !self.tools_started.get(index).copied().unwrap_or(false) {
                            if self.tools_started.len() <= index {
                                self.tools_started.resize(index + 1, false);
                            }
                            self.tools_started[index] = true;
                            self.n_tools += 1;
                            out.push(Chunk::ToolStart {
                                index,
                                id: tc.id.as_deref().map_or_else(made_up_call_id, String::from),
                                name: f.and_then(|f| f.name.as_deref()).unwrap_or("").to_string(),
                            });
                        }
                        if let Some(a) = f.and_then(|f| f.arguments.as_deref()) {
                            if !a.is_empty() {
                                out.push(Chunk::ToolArgs {
                                    index,
                                    json: a.to_string(),
                                });
                            }
                        }
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
            "content_block_start" => {
                let block = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let cb = v.get("content_block").unwrap_or(&Value::Null);
                match cb.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = self.next_tool()?;
                        self.tool_blocks.push((block, index));
                        let field =
                            |k: &str| cb.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        out.push(Chunk::ToolStart {
                            index,
                            id: field("id"),
                            name: field("name"),
                        });
                        // the API sends `input: {}` and the arguments as deltas; a
                        // server that sends them whole here is read too
                        if let Some(input) = cb
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.push(Chunk::ToolArgs {
                                index,
                                json: input.to_string(),
                            });
                        }
                    }
                    Some("text") => {
                        if let Some(t) = cb.get("text").and_then(Value::as_str) {
                            if !t.is_empty() {
                                out.push(Chunk::Delta(t.to_string()));
                            }
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => match v.pointer("/delta/type").and_then(Value::as_str) {
                Some("text_delta") => {
                    if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                        out.push(Chunk::Delta(t.to_string()));
                    }
                }
                Some("input_json_delta") => {
                    let block = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let Some(&(_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block)
                    else {
                        return Err(garbage(
                            kind,
                            format!("input_json_delta for content block {block}, which is not a tool_use block"),
                        ));
                    };
                    if let Some(p) = v.pointer("/delta/partial_json").and_then(Value::as_str) {
                        if !p.is_empty() {
                            out.push(Chunk::ToolArgs {
                                index,
                                json: p.to_string(),
                            });
                        }
                    }
                }
                // thinking, signature and future delta types are tolerated
                _ => {}
            },
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
                    finish: self.final_finish(),
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
        // Ollama sends each tool call whole, arguments as an object
        for c in v
            .pointer("/message/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = self.next_tool()?;
            let f = c.get("function").unwrap_or(c);
            out.push(Chunk::ToolStart {
                index,
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(made_up_call_id, String::from),
                name: f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
            let json = match f.get("arguments") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(a) => a.to_string(),
            };
            out.push(Chunk::ToolArgs { index, json });
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.usage = Usage {
                input: u(&v, "/prompt_eval_count"),
                output: u(&v, "/eval_count"),
            };
            let finish = Finish::from_ollama(
                v.get("done_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("stop"),
            );
            out.push(Chunk::Done {
                // Ollama says "stop" after a tool call; the other APIs say so
                finish: if self.n_tools > 0 && finish == Finish::Stop {
                    Finish::ToolUse
                } else {
                    finish
                },
                usage: self.usage,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(media_type: Option<&str>, data: &str) -> Image {
        Image::Base64 {
            media_type: media_type.map(String::from),
            data: data.into(),
        }
    }

    #[test]
    fn openai_request_round_trips_to_anthropic_shape() {
        let body = br#"{"model":"fast","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"stop":"END","stream":true,"stream_options":{"include_usage":true}}"#;
        let r = parse_request(Front::OpenAi, body).unwrap();
        assert_eq!(r.system.as_deref(), Some("be brief"));
        assert_eq!(r.messages[0].content, "hi");
        assert!(r.stream && r.include_usage);
        let (path, b) = provider_request(ProviderKind::Anthropic, &r, "claude-x").unwrap();
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
            // the delta is the last line (an Anthropic stream opens its text block first)
            let line = s
                .lines()
                .rev()
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

    // ------------------------------------------------ tool calls inside streams

    /// A provider stream of `kind`: optional text, then get_weather {"city":"Oslo"}
    /// (arguments in fragments where the API streams them) and get_time {"tz":"CET"}.
    fn provider_tool_stream(kind: ProviderKind, with_text: bool) -> String {
        let text = "Let me check \"both\".";
        match kind {
            ProviderKind::OpenAi => {
                let mut s = String::new();
                let mut chunk = |delta: Value, finish: Value| {
                    s.push_str(&format!(
                        "data: {}\n\n",
                        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                    ));
                };
                chunk(
                    json!({"role": "assistant", "content": if with_text { Value::from(text) } else { Value::Null }}),
                    Value::Null,
                );
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
                    Value::Null,
                );
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
                    Value::Null,
                );
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"Oslo\"}"}}]}),
                    Value::Null,
                );
                chunk(
                    json!({"tool_calls": [{"index": 1, "id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}]}),
                    Value::Null,
                );
                chunk(json!({}), json!("tool_calls"));
                s.push_str("data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
                s
            }
            ProviderKind::Anthropic => {
                let mut s = String::new();
                let mut ev = |v: Value| {
                    s.push_str(&format!(
                        "event: {}\ndata: {v}\n\n",
                        v["type"].as_str().unwrap()
                    ));
                };
                ev(
                    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
                );
                let mut b = 0;
                if with_text {
                    ev(
                        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                    );
                    ev(json!({"type": "ping"}));
                    ev(
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                    );
                    ev(json!({"type": "content_block_stop", "index": 0}));
                    b = 1;
                }
                ev(
                    json!({"type": "content_block_start", "index": b, "content_block": {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}}),
                );
                for p in ["", "{\"city\":", " \"Oslo\"}"] {
                    ev(
                        json!({"type": "content_block_delta", "index": b, "delta": {"type": "input_json_delta", "partial_json": p}}),
                    );
                }
                ev(json!({"type": "content_block_stop", "index": b}));
                ev(
                    json!({"type": "content_block_start", "index": b + 1, "content_block": {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}}}),
                );
                ev(
                    json!({"type": "content_block_delta", "index": b + 1, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":\"CET\"}"}}),
                );
                ev(json!({"type": "content_block_stop", "index": b + 1}));
                ev(
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
                );
                ev(json!({"type": "message_stop"}));
                s
            }
            ProviderKind::Ollama => {
                let mut s = String::new();
                if with_text {
                    s.push_str(&format!("{}\n", json!({"model": "m", "message": {"role": "assistant", "content": text}, "done": false})));
                }
                s.push_str(&format!("{}\n", json!({"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
                    {"function": {"name": "get_time", "arguments": {"tz": "CET"}}}]}, "done": false})));
                s.push_str(&format!("{}\n", json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true,
                    "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 9})));
                s
            }
        }
    }

    /// Decodes `upstream` (fed in 5-byte reads) and encodes it for `front`, as the relay
    /// does: `start`, `chunk_into` for every piece, `finish` on `Done`.
    fn relay(kind: ProviderKind, front: Front, upstream: &str) -> String {
        let mut d = StreamDecoder::new(kind);
        let mut e = StreamEncoder::new(front, "id-1".into(), "m".into(), true);
        let mut chunks = Vec::new();
        for part in upstream.as_bytes().chunks(5) {
            chunks.extend(d.feed(part).unwrap());
        }
        chunks.extend(d.end().unwrap());
        let mut out = e.start(d.input_tokens());
        let mut done = 0;
        for c in chunks {
            match c {
                Chunk::Done { finish, usage } => {
                    out.push_str(&e.finish(&finish, usage, 1));
                    done += 1;
                }
                other => e.chunk_into(&mut out, &other),
            }
        }
        assert_eq!(done, 1, "{kind:?} → {front:?}: one Done");
        out
    }

    /// What a client of `front` reads from `out`: text, calls (id, name, arguments
    /// object) and the finish reason; checks the event grammar on the way (Anthropic
    /// block indices: consecutive from 0, deltas and stops name the open block).
    fn client_view(front: Front, out: &str) -> (String, Vec<(String, String, Value)>, String) {
        let mut text = String::new();
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut finish = String::new();
        match front {
            Front::OpenAi => {
                assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
                let mut by_index: Vec<usize> = Vec::new();
                for l in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    if l == "[DONE]" {
                        continue;
                    }
                    let v: Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["object"], "chat.completion.chunk");
                    let Some(ch) = v["choices"].get(0) else {
                        continue;
                    };
                    if let Some(t) = ch["delta"]["content"].as_str() {
                        text.push_str(t);
                    }
                    for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                        let i = tc["index"].as_u64().unwrap() as usize;
                        if let Some(id) = tc["id"].as_str() {
                            assert_eq!(tc["type"], "function", "{l}");
                            assert!(!by_index.contains(&i), "call {i} started twice: {out}");
                            by_index.push(i);
                            calls.push((
                                id.into(),
                                tc["function"]["name"].as_str().unwrap().into(),
                                String::new(),
                            ));
                        }
                        let k = by_index
                            .iter()
                            .position(|x| *x == i)
                            .expect("arguments before the call's start");
                        calls[k]
                            .2
                            .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                    }
                    if let Some(f) = ch["finish_reason"].as_str() {
                        finish = f.into();
                    }
                }
            }
            Front::Anthropic => {
                let mut next = 0u64;
                let mut open: Option<(u64, bool)> = None; // (index, is tool)
                let mut names = Vec::new();
                for l in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    let v: Value = serde_json::from_str(l).unwrap();
                    let ty = v["type"].as_str().unwrap().to_string();
                    names.push(ty.clone());
                    match ty.as_str() {
                        "content_block_start" => {
                            assert!(open.is_none(), "a block opened inside another: {out}");
                            assert_eq!(v["index"], next, "block indices run 0, 1, ..: {out}");
                            let cb = &v["content_block"];
                            let tool = cb["type"] == "tool_use";
                            if tool {
                                assert_eq!(cb["input"], json!({}));
                                calls.push((
                                    cb["id"].as_str().unwrap().into(),
                                    cb["name"].as_str().unwrap().into(),
                                    String::new(),
                                ));
                            }
                            open = Some((next, tool));
                            next += 1;
                        }
                        "content_block_delta" => {
                            let (i, tool) = open.expect("delta outside a block");
                            assert_eq!(v["index"], i, "delta names the open block: {out}");
                            if tool {
                                assert_eq!(v["delta"]["type"], "input_json_delta");
                                calls
                                    .last_mut()
                                    .unwrap()
                                    .2
                                    .push_str(v["delta"]["partial_json"].as_str().unwrap());
                            } else {
                                assert_eq!(v["delta"]["type"], "text_delta");
                                text.push_str(v["delta"]["text"].as_str().unwrap());
                            }
                        }
                        "content_block_stop" => {
                            assert_eq!(
                                Some(v["index"].as_u64().unwrap()),
                                open.map(|o| o.0),
                                "{out}"
                            );
                            open = None;
                        }
                        "message_delta" => {
                            assert!(open.is_none(), "message_delta with a block open: {out}");
                            finish = v["delta"]["stop_reason"].as_str().unwrap().into();
                        }
                        _ => {}
                    }
                }
                assert_eq!(names.first().map(String::as_str), Some("message_start"));
                assert_eq!(names.last().map(String::as_str), Some("message_stop"));
                if let Some(i) = names.iter().position(|n| n == "ping") {
                    assert_eq!(
                        names[i - 1],
                        "content_block_start",
                        "ping after the first block start"
                    );
                }
            }
            Front::Ollama => {
                let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
                for (n, l) in lines.iter().enumerate() {
                    let v: Value = serde_json::from_str(l).unwrap();
                    text.push_str(v["message"]["content"].as_str().unwrap());
                    for tc in v["message"]["tool_calls"].as_array().into_iter().flatten() {
                        assert!(tc["function"]["arguments"].is_object(), "{l}");
                        calls.push((
                            String::new(),
                            tc["function"]["name"].as_str().unwrap().into(),
                            tc["function"]["arguments"].to_string(),
                        ));
                    }
                    assert_eq!(v["done"] == true, n == lines.len() - 1, "{out}");
                    if v["done"] == true {
                        finish = v["done_reason"].as_str().unwrap().into();
                        assert_eq!(v["eval_count"], 9);
                    }
                }
            }
        }
        let calls = calls
            .into_iter()
            .map(|(id, name, args)| {
                (
                    id,
                    name,
                    serde_json::from_str(&args).unwrap_or_else(|e| panic!("{args:?}: {e}")),
                )
            })
            .collect();
        (text, calls, finish)
    }

    #[test]
    fn tool_calls_stream_from_every_provider_kind_to_every_front() {
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Ollama,
        ] {
            for front in [Front::OpenAi, Front::Anthropic, Front::Ollama] {
                for with_text in [true, false] {
                    let out = relay(kind, front, &provider_tool_stream(kind, with_text));
                    let (text, calls, finish) = client_view(front, &out);
                    let what = format!("{kind:?} → {front:?} (text: {with_text}):\n{out}");
                    assert_eq!(
                        text,
                        if with_text {
                            "Let me check \"both\"."
                        } else {
                            ""
                        },
                        "{what}"
                    );
                    assert_eq!(calls.len(), 2, "{what}");
                    assert_eq!(
                        (calls[0].1.as_str(), &calls[0].2),
                        ("get_weather", &json!({"city": "Oslo"})),
                        "{what}"
                    );
                    assert_eq!(
                        (calls[1].1.as_str(), &calls[1].2),
                        ("get_time", &json!({"tz": "CET"})),
                        "{what}"
                    );
                    match (kind, front) {
                        (_, Front::Ollama) => {}
                        (ProviderKind::OpenAi, _) => assert_eq!(
                            (calls[0].0.as_str(), calls[1].0.as_str()),
                            ("call_A", "call_B")
                        ),
                        (ProviderKind::Anthropic, _) => assert_eq!(
                            (calls[0].0.as_str(), calls[1].0.as_str()),
                            ("toolu_A", "toolu_B")
                        ),
                        (ProviderKind::Ollama, _) => {
                            assert!(
                                calls[0].0.starts_with("call_") && calls[0].0.len() > 8,
                                "{what}"
                            );
                            assert_ne!(calls[0].0, calls[1].0, "made-up ids are unique");
                        }
                    }
                    let want = match front {
                        Front::OpenAi => "tool_calls",
                        Front::Anthropic => "tool_use",
                        Front::Ollama => "stop",
                    };
                    assert_eq!(finish, want, "{what}");
                }
            }
        }
    }

    /// `[index, block type]` of every Anthropic `content_block_start` in `out`.
    fn block_starts(out: &str) -> Vec<Value> {
        out.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["type"] == "content_block_start")
            .map(|v| json!([v["index"], v["content_block"]["type"]]))
            .collect()
    }

    #[test]
    fn anthropic_front_numbers_text_then_tool_blocks_and_tool_blocks_alone_from_zero() {
        let out = relay(
            ProviderKind::OpenAi,
            Front::Anthropic,
            &provider_tool_stream(ProviderKind::OpenAi, true),
        );
        let starts = block_starts(&out);
        assert_eq!(
            starts,
            vec![
                json!([0, "text"]),
                json!([1, "tool_use"]),
                json!([2, "tool_use"])
            ]
        );
        let out = relay(
            ProviderKind::Ollama,
            Front::Anthropic,
            &provider_tool_stream(ProviderKind::Ollama, false),
        );
        let starts = block_starts(&out);
        assert_eq!(starts, vec![json!([0, "tool_use"]), json!([1, "tool_use"])]);
        // a stream with nothing in it still has its one (empty) text block
        let mut e = StreamEncoder::new(Front::Anthropic, "id".into(), "m".into(), true);
        let s = format!(
            "{}{}",
            e.start(1),
            e.finish(&Finish::Stop, Usage::default(), 0)
        );
        assert!(
            s.contains("\"index\":0,\"content_block\":{\"type\":\"text\""),
            "{s}"
        );
        assert!(s.contains("content_block_stop\",\"index\":0"), "{s}");
    }

    #[test]
    fn block_and_call_numbers_past_nine_are_written_whole() {
        let mut s = String::new();
        for n in [0, 9, 10, 255, 1234] {
            push_usize(&mut s, n);
            s.push(',');
        }
        assert_eq!(s, "0,9,10,255,1234,");
        // twelve calls: Anthropic blocks 10 and 11 carry their own index
        let mut e = StreamEncoder::new(Front::Anthropic, "id".into(), "m".into(), true);
        let mut out = e.start(0);
        for i in 0..12 {
            e.chunk_into(
                &mut out,
                &Chunk::ToolStart {
                    index: i,
                    id: format!("t{i}"),
                    name: "f".into(),
                },
            );
            e.chunk_into(
                &mut out,
                &Chunk::ToolArgs {
                    index: i,
                    json: format!("{{\"n\":{i}}}"),
                },
            );
        }
        out.push_str(&e.finish(&Finish::ToolUse, Usage::default(), 0));
        let (_, calls, finish) = client_view(Front::Anthropic, &out);
        assert_eq!(calls.len(), 12);
        assert_eq!(calls[11].2, json!({"n": 11}));
        assert_eq!(finish, "tool_use");
    }

    #[test]
    fn interleaved_calls_keep_their_arguments_and_ollama_holding_is_bounded() {
        // a provider that sends call 1 before call 0's last fragment
        let pieces = [
            Chunk::ToolStart {
                index: 0,
                id: "a".into(),
                name: "f".into(),
            },
            Chunk::ToolArgs {
                index: 0,
                json: "{\"x\":".into(),
            },
            Chunk::ToolStart {
                index: 1,
                id: "b".into(),
                name: "g".into(),
            },
            Chunk::ToolArgs {
                index: 1,
                json: "{\"y\":2}".into(),
            },
            Chunk::ToolArgs {
                index: 0,
                json: "1}".into(),
            },
        ];
        let mut e = StreamEncoder::new(Front::Anthropic, "id".into(), "m".into(), true);
        let mut out = e.start(0);
        for c in &pieces {
            e.chunk_into(&mut out, c);
        }
        out.push_str(&e.finish(&Finish::ToolUse, Usage::default(), 0));
        let late = out
            .lines()
            .filter(|l| l.contains("\"partial_json\":\"1}\""))
            .collect::<Vec<_>>();
        assert_eq!(late.len(), 1, "{out}");
        assert!(
            late[0].contains("\"index\":0"),
            "the late fragment names call 0's block: {out}"
        );
        let mut e = StreamEncoder::new(Front::Ollama, "id".into(), "m".into(), true);
        let mut out = String::new();
        for c in &pieces {
            e.chunk_into(&mut out, c);
        }
        out.push_str(&e.finish(&Finish::ToolUse, Usage::default(), 0));
        let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        assert_eq!(
            v["message"]["tool_calls"][0]["function"]["arguments"],
            json!({"x": 1})
        );
        assert_eq!(
            v["message"]["tool_calls"][1]["function"]["arguments"],
            json!({"y": 2})
        );
        // more arguments than the Ollama encoder holds: the stream ends in an error line
        let mut e = StreamEncoder::new(Front::Ollama, "id".into(), "m".into(), true);
        let mut out = String::new();
        e.chunk_into(
            &mut out,
            &Chunk::ToolStart {
                index: 0,
                id: "a".into(),
                name: "f".into(),
            },
        );
        let big = "x".repeat(1 << 20);
        for _ in 0..5 {
            e.chunk_into(
                &mut out,
                &Chunk::ToolArgs {
                    index: 0,
                    json: big.clone(),
                },
            );
        }
        assert!(out.is_empty());
        let end = e.finish(&Finish::ToolUse, Usage::default(), 0);
        let v: Value = serde_json::from_str(end.trim()).unwrap();
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("tool call arguments passed"),
            "{end}"
        );
    }

    #[test]
    fn openai_tool_chunks_are_written_without_json_trees_and_escape() {
        let mut e = StreamEncoder::new(Front::OpenAi, "id".into(), "m".into(), false);
        let mut s = String::new();
        e.chunk_into(
            &mut s,
            &Chunk::ToolStart {
                index: 0,
                id: "c\"1".into(),
                name: "f".into(),
            },
        );
        e.chunk_into(
            &mut s,
            &Chunk::ToolArgs {
                index: 0,
                json: "{\"a\":\"x\\ny\"}".into(),
            },
        );
        let pieces: Vec<Value> = s
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(pieces.len(), 3, "{s}"); // role chunk, start, arguments
        assert_eq!(
            pieces[1]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "c\"1"
        );
        assert_eq!(
            pieces[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            ""
        );
        assert_eq!(
            pieces[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":\"x\\ny\"}"
        );
        assert!(pieces[2]["choices"][0]["finish_reason"].is_null());
    }

    #[test]
    fn decoders_refuse_runaway_or_orphan_tool_pieces() {
        let mut d = StreamDecoder::new(ProviderKind::OpenAi);
        let e = d
            .feed(b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":100000,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n")
            .unwrap_err();
        assert!(e.to_string().contains("tool call index 100000"), "{e}");
        let mut d = StreamDecoder::new(ProviderKind::Anthropic);
        let e = d
            .feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n")
            .unwrap_err();
        assert!(e.to_string().contains("content block 3"), "{e}");
        // an Ollama answer that only calls a tool ends as a tool-use stop
        let mut d = StreamDecoder::new(ProviderKind::Ollama);
        let got = d
            .feed(provider_tool_stream(ProviderKind::Ollama, false).as_bytes())
            .unwrap();
        assert!(
            matches!(
                got.last(),
                Some(Chunk::Done {
                    finish: Finish::ToolUse,
                    ..
                })
            ),
            "{got:?}"
        );
    }

    // ------------------------------------------------ images

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==";
    const JPEG: &str = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQ==";

    fn images_of(r: &ChatRequest) -> Vec<(usize, Image)> {
        r.messages
            .iter()
            .flat_map(|m| m.images.iter().map(|i| (m.index, i.clone())))
            .collect()
    }

    #[test]
    fn images_parse_from_each_front_into_the_canonical_message() {
        let openai = json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what are these?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]});
        let r = parse_request(Front::OpenAi, openai.to_string().as_bytes()).unwrap();
        assert_eq!(r.messages[0].content, "what are these?");
        assert_eq!(
            images_of(&r),
            vec![
                (1, b64(Some("image/png"), PNG)),
                (1, Image::Url("https://example.com/cat.jpg".into()))
            ]
        );
        let anthropic = json!({"model": "m", "max_tokens": 10, "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": JPEG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/dog.png"}},
                {"type": "text", "text": "compare"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "zoom", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "zoomed"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]});
        let r = parse_request(Front::Anthropic, anthropic.to_string().as_bytes()).unwrap();
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.messages[2].role, "tool");
        assert_eq!(r.messages[2].content, "zoomed");
        assert_eq!(
            images_of(&r),
            vec![
                (0, b64(Some("image/jpeg"), JPEG)),
                (0, Image::Url("https://example.com/dog.png".into())),
                (2, b64(Some("image/png"), PNG)),
            ]
        );
        let ollama = json!({"model": "m", "messages": [
            {"role": "user", "content": "what is this?", "images": [PNG, JPEG, "AAAA"]}]});
        let r = parse_request(Front::Ollama, ollama.to_string().as_bytes()).unwrap();
        assert_eq!(
            images_of(&r),
            vec![
                (0, b64(Some("image/png"), PNG)),
                (0, b64(Some("image/jpeg"), JPEG)),
                (0, b64(None, "AAAA")),
            ]
        );
        let r = parse_request(
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/jpg;base64,{JPEG}")}},
                {"type": "image_url", "image_url": {"url": format!("data:;base64,{PNG}")}}]}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            images_of(&r),
            vec![
                (0, b64(Some("image/jpeg"), JPEG)),
                (0, b64(Some("image/png"), PNG)),
            ]
        );
        // malformed images are the client's 400, naming the field
        for (front, body, needle) in [
            (
                Front::OpenAi,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]}),
                "messages[0].content[0].image_url.url is a data URL that is not base64",
            ),
            (
                Front::OpenAi,
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
                "neither an http(s) URL",
            ),
            (
                Front::Anthropic,
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
                "messages[0].content[0].source.type \"file\"",
            ),
            (
                Front::Ollama,
                json!({"model": "m", "messages": [{"role": "user", "content": "x", "images": [1]}]}),
                "messages[0].images[0] must be a base64 string",
            ),
            (
                Front::Ollama,
                json!({"model": "m", "messages": [{"role": "system", "content": "x", "images": [PNG]}]}),
                "messages[0] is a system message with an image",
            ),
        ] {
            let e = parse_request(front, body.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            assert!(e.message.contains(needle), "{front:?}: {}", e.message);
        }
    }

    #[test]
    fn images_render_for_each_provider_kind() {
        let r = parse_request(
            Front::Ollama,
            json!({"model": "m", "messages": [{"role": "user", "content": "what is this?", "images": [PNG]}]}).to_string().as_bytes(),
        )
        .unwrap();
        let (_, b) = provider_request(ProviderKind::OpenAi, &r, "gpt").unwrap();
        assert_eq!(
            b["messages"][0]["content"],
            json!([{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}])
        );
        let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
        assert_eq!(
            b["messages"][0]["content"],
            json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}, {"type": "text", "text": "what is this?"}])
        );
        let (_, b) = provider_request(ProviderKind::Ollama, &r, "llava").unwrap();
        assert_eq!(
            b["messages"][0],
            json!({"role": "user", "content": "what is this?", "images": [PNG]})
        );

        // OpenAI data URL → Ollama base64; a URL → Anthropic url source
        let r = parse_request(
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{JPEG}")}}]}]}).to_string().as_bytes(),
        )
        .unwrap();
        let (_, b) = provider_request(ProviderKind::Ollama, &r, "llava").unwrap();
        assert_eq!(b["messages"][0]["images"], json!([JPEG]));
        assert_eq!(b["messages"][0]["content"], "");
        let r = parse_request(
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "cat?"}, {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}).to_string().as_bytes(),
        )
        .unwrap();
        let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
        assert_eq!(
            b["messages"][0]["content"][0],
            json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
        );
        // Anthropic URL source → OpenAI image_url; tool_result images stay in the result
        let r = parse_request(
            Front::Anthropic,
            json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/d.png"}}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "zoom", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]}]}).to_string().as_bytes(),
        )
        .unwrap();
        let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
        assert_eq!(
            b["messages"][2]["content"][0]["content"],
            json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}])
        );
        // OpenAI tool messages take no images: a 400 naming the client's message
        let e = provider_request(ProviderKind::OpenAi, &r, "gpt").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("messages[2]: image 0 cannot be sent to the openai provider: OpenAI chat completions take images on user messages only"), "{}", e.message);
    }

    #[test]
    fn images_a_provider_cannot_carry_are_a_400_in_the_clients_shape() {
        // Ollama takes base64 only
        let r = parse_request(
            Front::OpenAi,
            json!({"model": "m", "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}]}).to_string().as_bytes(),
        )
        .unwrap();
        let e = provider_request(ProviderKind::Ollama, &r, "llava").unwrap_err();
        assert_eq!(e.message, "messages[3]: image 0 cannot be sent to the ollama provider: Ollama takes images as base64 data only, not URLs; send the image inline, e.g. data:image/png;base64,iVBORw0KGgo...");
        assert_eq!(
            e.body(Front::OpenAi)["error"]["type"],
            "invalid_request_error"
        );
        assert_eq!(
            e.body(Front::Anthropic)["error"]["type"],
            "invalid_request_error"
        );
        assert!(e.kind.status() == 400);
        // the same request is fine for OpenAI and Anthropic
        assert!(provider_request(ProviderKind::OpenAi, &r, "g").is_ok());
        assert!(provider_request(ProviderKind::Anthropic, &r, "c").is_ok());

        // an Ollama assistant message with an image; data of unknown type
        let r = parse_request(
            Front::Ollama,
            json!({"model": "m", "messages": [
                {"role": "user", "content": "x", "images": ["AAAA"]},
                {"role": "assistant", "content": "y", "images": [PNG]}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let e = provider_request(ProviderKind::Anthropic, &r, "c").unwrap_err();
        assert!(e.message.starts_with("messages[0]: image 0 cannot be sent to the anthropic provider: its media type is unknown"), "{}", e.message);
        let mut r2 = r.clone();
        r2.messages[0].images.clear();
        let e = provider_request(ProviderKind::OpenAi, &r2, "g").unwrap_err();
        assert!(
            e.message
                .starts_with("messages[1]: image 0 cannot be sent to the openai provider"),
            "{}",
            e.message
        );
        let e = provider_request(ProviderKind::Anthropic, &r2, "c").unwrap_err();
        assert!(
            e.message.contains("this is an assistant message"),
            "{}",
            e.message
        );
        assert!(provider_request(ProviderKind::Ollama, &r, "llava").is_ok());
        // a media type Anthropic does not take
        let r = parse_request(
            Front::OpenAi,
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let e = provider_request(ProviderKind::Anthropic, &r, "c").unwrap_err();
        assert!(e.message.contains("not \"image/bmp\""), "{}", e.message);
    }

    #[test]
    fn the_fast_path_keeps_images_and_tools_and_the_full_parser_reads_them() {
        let body = json!({"model": "fast", "stream": true, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}],
            "tools": [{"type": "function", "function": {"name": "zoom", "parameters": {"type": "object"}}}]})
        .to_string();
        // same format: the raw body goes upstream with only the model replaced
        let raw = peek_request(Front::OpenAi, body.as_bytes()).unwrap();
        let up: Value =
            serde_json::from_slice(&raw.upstream_body(ProviderKind::OpenAi, "gpt")).unwrap();
        let orig: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(up["messages"], orig["messages"]);
        assert_eq!(up["tools"], orig["tools"]);
        // another format: the full parser (which the relay uses then) carries both
        let r = parse_request(Front::OpenAi, body.as_bytes()).unwrap();
        let (_, b) = provider_request(ProviderKind::Anthropic, &r, "claude").unwrap();
        assert_eq!(b["messages"][0]["content"][0]["source"]["data"], PNG);
        assert_eq!(b["tools"][0]["name"], "zoom");
        let (_, b) = provider_request(ProviderKind::Ollama, &r, "llava").unwrap();
        assert_eq!(b["messages"][0]["images"][0], PNG);
        assert_eq!(b["tools"][0]["function"]["name"], "zoom");
    }

    #[test]
    fn tool_choice_and_parallel_calls_translate_between_formats() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        let openai = |tc: Value, parallel: Option<bool>| {
            let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "tools": tools, "tool_choice": tc});
            if let Some(p) = parallel {
                v["parallel_tool_calls"] = json!(p);
            }
            parse_request(Front::OpenAi, v.to_string().as_bytes()).unwrap()
        };
        let to = |kind, r: &ChatRequest| provider_request(kind, r, "x").unwrap().1;
        // OpenAI client → Anthropic provider
        let r = openai(json!("required"), Some(false));
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!(
            to(ProviderKind::Anthropic, &r)["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        let r = openai(
            json!({"type": "function", "function": {"name": "get_weather"}}),
            None,
        );
        assert_eq!(
            to(ProviderKind::Anthropic, &r)["tool_choice"],
            json!({"type": "tool", "name": "get_weather"})
        );
        let r = openai(json!("none"), None);
        assert_eq!(
            to(ProviderKind::Anthropic, &r)["tool_choice"],
            json!({"type": "none"})
        );
        // "none" to Ollama: the tools are not offered at all
        assert!(to(ProviderKind::Ollama, &r).get("tools").is_none());
        let r = openai(json!("auto"), Some(true));
        assert!(to(ProviderKind::Ollama, &r)["tools"].is_array());
        assert!(check_request(ProviderKind::Ollama, &r).is_ok());
        // a forced call cannot go to Ollama: a 400 that says why
        let r = openai(json!("required"), None);
        assert!(!has_provider_limits(&openai(json!("auto"), None)));
        assert!(has_provider_limits(&r));
        let e = check_request(ProviderKind::Ollama, &r).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(
            e.message
                .contains("tool_choice \"required\" cannot be sent to the ollama provider"),
            "{}",
            e.message
        );
        assert!(provider_request(ProviderKind::Ollama, &r, "x").is_err());
        assert!(check_request(ProviderKind::Anthropic, &r).is_ok());
        // Anthropic client → OpenAI provider
        let a = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}});
        let r = parse_request(Front::Anthropic, a.to_string().as_bytes()).unwrap();
        let b = to(ProviderKind::OpenAi, &r);
        assert_eq!(
            b["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(b["parallel_tool_calls"], json!(false));
        let a = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}});
        let r = parse_request(Front::Anthropic, a.to_string().as_bytes()).unwrap();
        assert_eq!(
            to(ProviderKind::OpenAi, &r)["tool_choice"],
            json!("required")
        );
        // no tools: no tool_choice upstream (providers refuse one without tools)
        let v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"});
        let r = parse_request(Front::OpenAi, v.to_string().as_bytes()).unwrap();
        assert!(to(ProviderKind::OpenAi, &r).get("tool_choice").is_none());
        assert!(to(ProviderKind::Anthropic, &r).get("tool_choice").is_none());
        // malformed choices are the client's 400, with an example of a right one
        for (front, body) in [
            (
                Front::OpenAi,
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"}),
            ),
            (
                Front::Anthropic,
                json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "tool"}}),
            ),
        ] {
            let e = parse_request(front, body.to_string().as_bytes()).unwrap_err();
            assert!(
                e.message.starts_with("tool_choice ") && e.message.contains("get_weather"),
                "{}",
                e.message
            );
        }
    }
}
