//! The canonical chat request, response and stream piece every dialect is read
//! into and written from, and the names of the dialects themselves.

use serde_json::Value;

/// Which API a client spoke (its errors come back in the same shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    OpenAi,
    Anthropic,
    Ollama,
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI-compatible `POST {base_url}/chat/completions` (OpenAI, vLLM, Ollama's /v1).
    OpenAi,
    /// Anthropic `POST {base_url}/v1/messages`.
    Anthropic,
    /// Ollama `POST {base_url}/api/chat`.
    Ollama,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Ollama => "ollama",
        }
    }
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
    pub(crate) fn from_openai(s: &str) -> Finish {
        match s {
            "length" => Finish::Length,
            "content_filter" => Finish::ContentFilter,
            "tool_calls" | "function_call" => Finish::ToolUse,
            _ => Finish::Stop,
        }
    }
    pub(crate) fn from_anthropic(s: &str) -> Finish {
        match s {
            "max_tokens" => Finish::Length,
            "stop_sequence" => Finish::StopSequence,
            "tool_use" => Finish::ToolUse,
            "refusal" => Finish::ContentFilter,
            _ => Finish::Stop,
        }
    }
    pub(crate) fn from_ollama(s: &str) -> Finish {
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

/// Most tool calls one stream may hold (decoder and encoder).
pub(crate) const MAX_TOOL_CALLS: usize = 256;
