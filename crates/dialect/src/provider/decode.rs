//! Incremental decoding of provider streams into canonical [`Chunk`]s.

use crate::canonical::*;
use crate::error::{garbage, DecodeError};
use crate::provider::wire::{count, AnthropicEvent, ChunkSink, OllamaLine, OpenAiStreamChunk};
use serde_json::Value;

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
    /// The current SSE event's name (empty: none), kept for its capacity.
    event: String,
    data: String,
    usage: Usage,
    /// The stream reported its output tokens (OpenAI's usage chunk, Anthropic's
    /// `message_delta` usage, Ollama's `eval_count`).
    usage_reported: bool,
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
            event: String::new(),
            data: String::new(),
            usage: Usage::default(),
            usage_reported: false,
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

    /// Whether the stream reported its output token count so far (an OpenAI stream
    /// does only when asked with `stream_options.include_usage`); when it did not,
    /// the `usage.output` of [`Chunk::Done`] is 0 and a reader counts chunks instead.
    pub fn usage_reported(&self) -> bool {
        self.usage_reported
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
        self.feed_to(bytes, out)
    }

    /// [`StreamDecoder::feed_into`] for any [`ChunkSink`]: text reaches it borrowed
    /// from the read (or the line held from the read before).
    pub fn feed_to(&mut self, bytes: &[u8], out: &mut dyn ChunkSink) -> Result<(), DecodeError> {
        // lines are read in place (no per-line copy): from `bytes` itself when no
        // line was left over, else from `buf`; what is left after the last newline
        // stays in `buf` for the next call
        let mut buf = std::mem::take(&mut self.buf);
        let from_buf = !buf.is_empty();
        if from_buf {
            buf.extend_from_slice(bytes);
        }
        let text: &[u8] = if from_buf { &buf } else { bytes };
        let mut start = 0;
        let mut result = Ok(());
        while let Some(rel) = memchr::memchr(b'\n', &text[start..]) {
            let raw = &text[start..start + rel];
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
        if from_buf {
            buf.drain(..start);
        } else {
            buf.extend_from_slice(&bytes[start..]);
        }
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
        self.end_to(&mut out)?;
        Ok(out)
    }

    /// [`StreamDecoder::end`] for any [`ChunkSink`].
    pub fn end_to(&mut self, out: &mut dyn ChunkSink) -> Result<(), DecodeError> {
        if !self.done {
            if !self.buf.is_empty() {
                let rest = std::mem::take(&mut self.buf);
                let line = String::from_utf8_lossy(&rest).to_string();
                match self.kind {
                    ProviderKind::Ollama => self.ollama_line(&line, out)?,
                    _ => {
                        self.sse_line(&line, out)?;
                        self.sse_line("", out)?;
                    }
                }
            } else if self.kind != ProviderKind::Ollama && !self.data.is_empty() {
                self.sse_line("", out)?;
            }
        }
        if !self.done {
            // OpenAI-compatible servers that end after the finish chunk without [DONE]
            if let (ProviderKind::OpenAi, Some(_)) = (self.kind, &self.finish) {
                self.done = true;
                out.done(self.final_finish(), self.usage);
                return Ok(());
            }
            return Err(DecodeError::Provider {
                provider: self.kind.as_str(),
                message: "the provider closed the stream before it finished".into(),
                overloaded: false,
            });
        }
        Ok(())
    }

    fn sse_line(&mut self, line: &str, out: &mut dyn ChunkSink) -> Result<(), DecodeError> {
        if line.is_empty() {
            if self.data.is_empty() && self.event.is_empty() {
                return Ok(());
            }
            let mut data = std::mem::take(&mut self.data);
            let mut event = std::mem::take(&mut self.event);
            let r = self.sse_event((!event.is_empty()).then_some(event.as_str()), &data, out);
            data.clear();
            event.clear();
            // both keep their capacity for the next event
            self.data = data;
            self.event = event;
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
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            _ => {}
        }
        Ok(())
    }

    fn sse_event(
        &mut self,
        event: Option<&str>,
        data: &str,
        out: &mut dyn ChunkSink,
    ) -> Result<(), DecodeError> {
        let kind = self.kind;
        if kind == ProviderKind::OpenAi {
            if data.trim() == "[DONE]" {
                self.done = true;
                out.done(self.final_finish(), self.usage);
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
                self.usage_reported = true;
                self.usage = Usage {
                    input: us.prompt_tokens,
                    output: us.completion_tokens,
                };
            }
            if let Some(ch) = c.choices.as_ref().and_then(|v| v.0.as_ref()) {
                if let Some(t) = ch.delta.as_ref().and_then(|d| d.content.as_deref()) {
                    if !t.is_empty() {
                        out.delta(t);
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
                            out.tool_start(
                                index,
                                tc.id.as_deref().map_or_else(made_up_call_id, String::from),
                                f.and_then(|f| f.name.as_deref()).unwrap_or("").to_string(),
                            );
                        }
                        if let Some(a) = f.and_then(|f| f.arguments.as_deref()) {
                            if !a.is_empty() {
                                out.tool_args(index, a);
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
        // Anthropic: the event name, or the data's "type"; typed and borrowed
        let v: AnthropicEvent = serde_json::from_str(data)
            .map_err(|e| garbage(kind, format!("SSE data is not an event ({e})")))?;
        let ty = event.or(v.ty.as_deref()).unwrap_or_default();
        match ty {
            "message_start" => {
                let us = v.message.and_then(|m| m.usage).unwrap_or_default();
                self.usage.input = count(&us.input_tokens);
                self.usage.output = count(&us.output_tokens);
            }
            "content_block_start" => {
                let block = count(&v.index);
                let cb = v.content_block.as_ref().unwrap_or(&Value::Null);
                match cb.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = self.next_tool()?;
                        self.tool_blocks.push((block, index));
                        let field =
                            |k: &str| cb.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        out.tool_start(index, field("id"), field("name"));
                        // the API sends `input: {}` and the arguments as deltas; a
                        // server that sends them whole here is read too
                        if let Some(input) = cb
                            .get("input")
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            out.tool_args(index, &input.to_string());
                        }
                    }
                    Some("text") => {
                        if let Some(t) = cb.get("text").and_then(Value::as_str) {
                            if !t.is_empty() {
                                out.delta(t);
                            }
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = v.delta.as_ref();
                match d.and_then(|d| d.ty.as_deref()) {
                    Some("text_delta") => {
                        if let Some(t) = d.and_then(|d| d.text.as_deref()) {
                            out.delta(t);
                        }
                    }
                    Some("input_json_delta") => {
                        let block = count(&v.index);
                        let Some(&(_, index)) = self.tool_blocks.iter().find(|(b, _)| *b == block)
                        else {
                            return Err(garbage(
                                kind,
                                format!("input_json_delta for content block {block}, which is not a tool_use block"),
                            ));
                        };
                        if let Some(p) = d.and_then(|d| d.partial_json.as_deref()) {
                            if !p.is_empty() {
                                out.tool_args(index, p);
                            }
                        }
                    }
                    // thinking, signature and future delta types are tolerated
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(s) = v.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    self.finish = Some(Finish::from_anthropic(s));
                }
                let us = v.usage.unwrap_or_default();
                if let Some(n) = us.output_tokens.as_ref().and_then(Value::as_u64) {
                    self.usage.output = n;
                    self.usage_reported = true;
                }
                if let Some(n) = us.input_tokens.as_ref().and_then(Value::as_u64) {
                    if n > 0 {
                        self.usage.input = n;
                    }
                }
            }
            "message_stop" => {
                self.done = true;
                out.done(self.final_finish(), self.usage);
            }
            "error" => {
                let err = v.error.unwrap_or(Value::Null);
                let et = err.get("type").and_then(Value::as_str).unwrap_or("");
                return Err(DecodeError::Provider {
                    provider: kind.as_str(),
                    message: err
                        .get("message")
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

    fn ollama_line(&mut self, line: &str, out: &mut dyn ChunkSink) -> Result<(), DecodeError> {
        let kind = self.kind;
        let v: OllamaLine = serde_json::from_str(line)
            .map_err(|e| garbage(kind, format!("NDJSON line is not a chat chunk ({e})")))?;
        if let Some(e) = v.error {
            return Err(DecodeError::Provider {
                provider: kind.as_str(),
                message: e.as_str().unwrap_or("stream error").to_string(),
                overloaded: false,
            });
        }
        let msg = v.message.as_ref();
        if let Some(t) = msg.and_then(|m| m.content.as_deref()) {
            if !t.is_empty() {
                out.delta(t);
            }
        }
        // Ollama sends each tool call whole, arguments as an object
        for c in msg
            .and_then(|m| m.tool_calls.as_ref())
            .into_iter()
            .flatten()
        {
            let index = self.next_tool()?;
            let f = c.get("function").unwrap_or(c);
            out.tool_start(
                index,
                c.get("id")
                    .and_then(Value::as_str)
                    .map_or_else(made_up_call_id, String::from),
                f.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
            let json = match f.get("arguments") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(a) => a.to_string(),
            };
            out.tool_args(index, &json);
        }
        if v.done.as_ref().and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.usage_reported = v.eval_count.as_ref().is_some_and(Value::is_u64);
            self.usage = Usage {
                input: count(&v.prompt_eval_count),
                output: count(&v.eval_count),
            };
            let finish = Finish::from_ollama(
                v.done_reason
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or("stop"),
            );
            // Ollama says "stop" after a tool call; the other APIs say so
            let finish = if self.n_tools > 0 && finish == Finish::Stop {
                Finish::ToolUse
            } else {
                finish
            };
            out.done(finish, self.usage);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn usage_is_reported_only_when_the_stream_sends_it() {
        let mut d = StreamDecoder::new(ProviderKind::OpenAi);
        d.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
            .unwrap();
        assert!(d.is_done() && !d.usage_reported());
        let mut d = StreamDecoder::new(ProviderKind::Anthropic);
        d.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n")
            .unwrap();
        assert!(!d.usage_reported());
        d.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":4}}\n\n")
            .unwrap();
        assert!(d.usage_reported());
        let mut d = StreamDecoder::new(ProviderKind::Ollama);
        d.feed(b"{\"message\":{\"content\":\"\"},\"done\":true,\"eval_count\":3}\n")
            .unwrap();
        assert!(d.usage_reported());
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
}
