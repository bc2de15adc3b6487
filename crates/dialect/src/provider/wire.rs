//! The wire shapes of provider stream events, read typed and borrowed from the line
//! buffer (no JSON tree, no copy of text without escapes), and where decoded pieces
//! go ([`ChunkSink`]).

use crate::canonical::{Chunk, Finish, Usage};
use crate::passthrough::OpenAiUsage;
use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;

/// Where [`crate::StreamDecoder`] puts what it decodes. A `Vec<Chunk>` keeps owned
/// pieces (the gateway re-encodes them); a reader that only times and counts them
/// (the load engine) implements this and sees text borrowed, with no allocation.
pub trait ChunkSink {
    /// Text (possibly empty: an Anthropic `text_delta` may carry none).
    fn delta(&mut self, text: &str);
    /// Tool call number `index` starts.
    fn tool_start(&mut self, index: usize, id: String, name: String);
    /// A fragment of the arguments of tool call `index`.
    fn tool_args(&mut self, index: usize, json: &str);
    /// The end.
    fn done(&mut self, finish: Finish, usage: Usage);
}

impl ChunkSink for Vec<Chunk> {
    fn delta(&mut self, text: &str) {
        self.push(Chunk::Delta(text.to_string()));
    }
    fn tool_start(&mut self, index: usize, id: String, name: String) {
        self.push(Chunk::ToolStart { index, id, name });
    }
    fn tool_args(&mut self, index: usize, json: &str) {
        self.push(Chunk::ToolArgs {
            index,
            json: json.to_string(),
        });
    }
    fn done(&mut self, finish: Finish, usage: Usage) {
        self.push(Chunk::Done { finish, usage });
    }
}

/// The first element of a JSON list, the rest skipped (no `Vec` per event).
pub(crate) struct First<T>(pub Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<First<T>, A::Error> {
                let first = s.next_element::<T>()?;
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct OpenAiStreamChunk<'a> {
    #[serde(borrow, default)]
    pub choices: Option<First<OpenAiStreamChoice<'a>>>,
    #[serde(default)]
    pub usage: Option<OpenAiUsage>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(serde::Deserialize)]
pub(crate) struct OpenAiStreamChoice<'a> {
    #[serde(borrow, default)]
    pub delta: Option<OpenAiDelta<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct OpenAiDelta<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<OpenAiToolDelta<'a>>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct OpenAiToolDelta<'a> {
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<OpenAiFunctionDelta<'a>>,
}

#[derive(serde::Deserialize)]
pub(crate) struct OpenAiFunctionDelta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

/// One Anthropic SSE event's data: the fields of every event type the decoder reads.
#[derive(serde::Deserialize)]
pub(crate) struct AnthropicEvent<'a> {
    #[serde(borrow, default, rename = "type")]
    pub ty: Option<Cow<'a, str>>,
    #[serde(default)]
    pub index: Option<Value>,
    #[serde(borrow, default)]
    pub delta: Option<AnthropicDelta<'a>>,
    #[serde(default)]
    pub usage: Option<AnthropicUsage>,
    #[serde(default)]
    pub message: Option<AnthropicMessage>,
    #[serde(default)]
    pub content_block: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(serde::Deserialize)]
pub(crate) struct AnthropicDelta<'a> {
    #[serde(borrow, default, rename = "type")]
    pub ty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stop_reason: Option<Cow<'a, str>>,
}

/// Token counts as numbers of any JSON kind (one that is not a whole number reads
/// as absent).
#[derive(serde::Deserialize, Default)]
pub(crate) struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: Option<Value>,
    #[serde(default)]
    pub output_tokens: Option<Value>,
}

#[derive(serde::Deserialize)]
pub(crate) struct AnthropicMessage {
    #[serde(default)]
    pub usage: Option<AnthropicUsage>,
}

/// One Ollama NDJSON line.
#[derive(serde::Deserialize)]
pub(crate) struct OllamaLine<'a> {
    #[serde(borrow, default)]
    pub message: Option<OllamaMessage<'a>>,
    #[serde(default)]
    pub done: Option<Value>,
    #[serde(default)]
    pub done_reason: Option<Value>,
    #[serde(default)]
    pub prompt_eval_count: Option<Value>,
    #[serde(default)]
    pub eval_count: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(serde::Deserialize)]
pub(crate) struct OllamaMessage<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
}

/// A count: a whole number, else 0.
pub(crate) fn count(v: &Option<Value>) -> u64 {
    v.as_ref().and_then(Value::as_u64).unwrap_or(0)
}
