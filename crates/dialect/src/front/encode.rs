//! Canonical stream pieces encoded into each front's streaming format (SSE for
//! OpenAI and Anthropic, NDJSON for Ollama).

use crate::canonical::*;
use crate::error::{ApiError, ErrorKind};
use crate::time::{now_secs, rfc3339_now};
use crate::tool_calls::args_value;
use serde_json::{json, Value};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339_now;

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

    #[test]
    fn block_and_call_numbers_past_nine_are_written_whole() {
        let mut s = String::new();
        for n in [0, 9, 10, 255, 1234] {
            push_usize(&mut s, n);
            s.push(',');
        }
        assert_eq!(s, "0,9,10,255,1234,");
    }
}
