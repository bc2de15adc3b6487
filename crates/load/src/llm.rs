//! Streamed LLM answers: an HTTP step with `llm = "openai" | "anthropic" | "ollama"`
//! has its response body decoded as it arrives, by the dialect's own incremental
//! decoder (`powertune_dialect::StreamDecoder`, the one the gateway relays with), and
//! timed per content chunk: time to first token (TTFT), the gaps between content
//! chunks (ITL), time per output token after the first (TPOT), end-to-end duration,
//! output tokens and tokens/s; a stream that breaks is counted by kind.
//!
//! The [`Probe`] is fed by the HTTP/1.1 and HTTP/2 clients ([`crate::h1`],
//! [`crate::http`]) with each piece of body as it is read; it never holds the body
//! (a whole, non-streamed answer is kept up to [`crate::http::MAX_KEPT_BODY`] to read
//! its `usage`). At the end the VU records what it measured into its metric shard
//! ([`crate::metrics::Registry::record_llm`]).

use crate::metrics::Registry;
use powertune_dialect::{ChunkSink, DecodeError, Finish, ProviderKind, StreamDecoder, Usage};
use std::time::{Duration, Instant};

/// The dialects a step may name, as written in scenario files.
pub const DIALECTS: &[(&str, ProviderKind)] = &[
    ("openai", ProviderKind::OpenAi),
    ("anthropic", ProviderKind::Anthropic),
    ("ollama", ProviderKind::Ollama),
];

/// How long a stream may send nothing before it counts as stalled, unless the step
/// sets `stall_timeout`.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// What an HTTP step declares with `llm = "…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmStep {
    pub dialect: ProviderKind,
    /// Longest silence between two reads of the answer (before its first byte too).
    pub stall_timeout: Duration,
}

impl LlmStep {
    /// The dialect named `name` (`openai`, `anthropic`, `ollama`).
    pub fn dialect(name: &str) -> Option<ProviderKind> {
        DIALECTS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, k)| *k)
    }

    /// Whether a request with this JSON body asks for a stream: its `stream` field,
    /// which Ollama defaults to true and the other APIs to false.
    pub fn streams(&self, body: Option<&serde_json::Value>) -> bool {
        match body.and_then(|b| b.get("stream")) {
            Some(v) => v.as_bool().unwrap_or(false),
            None => self.dialect == ProviderKind::Ollama,
        }
    }
}

/// Why a streamed answer failed after its status line said 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// The provider sent an error event (Anthropic `event: error`, an OpenAI error
    /// object, an Ollama `{"error": …}` line).
    Provider,
    /// A chunk that is not the dialect's format (cut-off JSON, an unknown shape).
    Malformed,
    /// Nothing arrived for the step's `stall_timeout`.
    Stall,
    /// The connection closed, or the body ended, before the stream's end marker.
    Dropped,
}

/// How many inter-token gaps a probe holds before it records them into the shard.
const GAP_BATCH: usize = 64;

/// What one LLM answer measured, handed to [`Registry::record_llm`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LlmSample {
    pub streamed: bool,
    /// The answer finished (end marker or whole JSON read) without a fault.
    pub completed: bool,
    pub fault: Option<StreamFault>,
    pub ttft: Option<Duration>,
    pub tpot: Option<Duration>,
    pub e2e: Option<Duration>,
    pub output_tokens: u64,
    pub input_tokens: u64,
    /// The output tokens came from the answer's usage (else: content chunks counted).
    pub from_usage: bool,
    /// Output tokens per second of end-to-end duration.
    pub tokens_per_s: Option<f64>,
}

/// Reads one LLM answer as the HTTP client receives it.
pub struct Probe<'r> {
    reg: &'r Registry,
    series: usize,
    step: LlmStep,
    streamed: bool,
    decoder: StreamDecoder,
    /// A whole (non-streamed) answer, kept to read its usage.
    whole: Vec<u8>,
    /// The status was 2xx: the body is an answer, not an error document.
    ok: bool,
    t0: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    end: Option<Instant>,
    chunks: u64,
    gaps: [u32; GAP_BATCH],
    n_gaps: usize,
    fault: Option<StreamFault>,
    finished: bool,
    usage_output: u64,
    usage_input: u64,
}

impl<'r> Probe<'r> {
    pub fn new(reg: &'r Registry, series: usize, step: LlmStep, streamed: bool) -> Probe<'r> {
        Probe {
            reg,
            series,
            step,
            streamed,
            decoder: StreamDecoder::new(step.dialect),
            whole: Vec::new(),
            ok: false,
            t0: None,
            first: None,
            last: None,
            end: None,
            chunks: 0,
            gaps: [0; GAP_BATCH],
            n_gaps: 0,
            fault: None,
            finished: false,
            usage_output: 0,
            usage_input: 0,
        }
    }

    /// The longest a read of this answer may wait.
    pub fn stall_timeout(&self) -> Duration {
        self.step.stall_timeout
    }

    /// The request is about to be written (TTFT counts from here). A retry on a
    /// fresh connection starts the clock again.
    pub fn start(&mut self, at: Instant) {
        self.t0 = Some(at);
    }

    /// The final response head arrived.
    pub fn head(&mut self, status: u16) {
        self.ok = (200..300).contains(&status);
    }

    /// A piece of body, read at `at`.
    pub fn body(&mut self, bytes: &[u8], at: Instant) {
        if !self.ok || self.fault.is_some() || self.finished {
            return;
        }
        if !self.streamed {
            if self.whole.len() + bytes.len() > crate::http::MAX_KEPT_BODY {
                self.fault = Some(StreamFault::Malformed);
                self.whole = Vec::new();
            } else {
                self.whole.extend_from_slice(bytes);
            }
            return;
        }
        let mut seen = Seen::default();
        let r = self.decoder.feed_to(bytes, &mut seen);
        self.seen(&seen, at);
        if let Err(e) = r {
            self.fault = Some(fault_of(&e));
        }
    }

    /// What one read decoded, all at the instant `at`: its content chunks' gaps (the
    /// first to the chunk before, the others 0) and the end.
    fn seen(&mut self, seen: &Seen, at: Instant) {
        if seen.content > 0 {
            if let Some(prev) = self.last {
                let gap = at.saturating_duration_since(prev).as_micros();
                self.gap(gap.min(u32::MAX as u128) as u32);
            } else {
                self.first = Some(at);
            }
            for _ in 1..seen.content {
                self.gap(0);
            }
            self.last = Some(at);
            self.chunks += seen.content;
        }
        if let Some(usage) = seen.done {
            self.finished = true;
            self.usage_output = usage.output;
            self.usage_input = usage.input;
        }
    }

    fn gap(&mut self, us: u32) {
        self.gaps[self.n_gaps] = us;
        self.n_gaps += 1;
        if self.n_gaps == GAP_BATCH {
            self.flush_gaps();
        }
    }

    fn flush_gaps(&mut self) {
        if self.n_gaps == 0 {
            return;
        }
        let gaps = &self.gaps[..self.n_gaps];
        self.reg.record_itl(self.series, gaps);
        self.n_gaps = 0;
    }

    /// The body ended as framed (the response is complete) at `at`.
    pub fn end(&mut self, at: Instant) {
        self.end = Some(at);
        if !self.ok || self.fault.is_some() {
            return;
        }
        if self.streamed {
            if self.finished {
                return;
            }
            let mut seen = Seen::default();
            let r = self.decoder.end_to(&mut seen);
            self.seen(&seen, at);
            if r.is_err() || !self.finished {
                // the body ended without the stream's end marker
                self.fault = Some(StreamFault::Dropped);
            }
            return;
        }
        match powertune_dialect::parse_provider_response(self.step.dialect, &self.whole, "") {
            Ok(r) => {
                self.finished = true;
                self.usage_output = r.usage.output;
                self.usage_input = r.usage.input;
            }
            Err(e) => self.fault = Some(fault_of(&e)),
        }
        self.whole = Vec::new();
    }

    /// The exchange broke off (connection lost, or `stalled`: nothing arrived for
    /// the stall timeout) after a 2xx head.
    pub fn broken(&mut self, stalled: bool) {
        if self.ok && self.fault.is_none() && !self.finished {
            self.fault = Some(if stalled {
                StreamFault::Stall
            } else {
                StreamFault::Dropped
            });
        }
    }

    /// Whether the answer failed after a 2xx status (the request then counts as
    /// failed in `http_req_failed`).
    pub fn failed(&self) -> bool {
        self.ok && !(self.finished && self.fault.is_none())
    }

    /// Records what was measured (nothing when the status was not 2xx: there was no
    /// answer) and the gaps still held.
    pub fn record(mut self) {
        self.flush_gaps();
        if !self.ok {
            return;
        }
        let completed = self.finished && self.fault.is_none();
        let from_usage = if self.streamed {
            self.decoder.usage_reported()
        } else {
            completed
        };
        let output_tokens = if from_usage {
            self.usage_output
        } else {
            self.chunks
        };
        let e2e = match (self.t0, self.end) {
            (Some(a), Some(b)) if completed => Some(b.saturating_duration_since(a)),
            _ => None,
        };
        let ttft = match (self.t0, self.first) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
            _ => None,
        };
        let tpot = match (self.first, self.last) {
            (Some(a), Some(b)) if completed && output_tokens > 1 => Some(
                b.saturating_duration_since(a) / (output_tokens - 1).min(u32::MAX as u64) as u32,
            ),
            _ => None,
        };
        let tokens_per_s = e2e
            .filter(|d| !d.is_zero())
            .map(|d| output_tokens as f64 / d.as_secs_f64());
        self.reg.record_llm(
            self.series,
            &LlmSample {
                streamed: self.streamed,
                completed,
                fault: self.fault,
                ttft,
                tpot,
                e2e,
                output_tokens,
                input_tokens: self.usage_input,
                from_usage,
                tokens_per_s,
            },
        );
    }
}

/// What the decoder found in one read: content chunks (text or tool-call
/// arguments) counted, the text never copied, and the end's usage.
#[derive(Default)]
struct Seen {
    content: u64,
    done: Option<Usage>,
}

impl ChunkSink for Seen {
    fn delta(&mut self, _text: &str) {
        self.content += 1;
    }
    fn tool_start(&mut self, _index: usize, _id: String, _name: String) {}
    fn tool_args(&mut self, _index: usize, _json: &str) {
        self.content += 1;
    }
    fn done(&mut self, _finish: Finish, usage: Usage) {
        self.done = Some(usage);
    }
}

fn fault_of(e: &DecodeError) -> StreamFault {
    match e {
        DecodeError::Garbage { .. } => StreamFault::Malformed,
        DecodeError::Provider { .. } => StreamFault::Provider,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(d: ProviderKind) -> LlmStep {
        LlmStep {
            dialect: d,
            stall_timeout: DEFAULT_STALL,
        }
    }

    fn feed(reg: &Registry, d: ProviderKind, streamed: bool, parts: &[&str]) -> bool {
        let mut p = Probe::new(reg, 0, step(d), streamed);
        let t0 = Instant::now();
        p.start(t0);
        p.head(200);
        for (i, part) in parts.iter().enumerate() {
            p.body(
                part.as_bytes(),
                t0 + Duration::from_millis(100 + 10 * i as u64),
            );
        }
        p.end(t0 + Duration::from_millis(100 + 10 * parts.len() as u64));
        let failed = p.failed();
        p.record();
        failed
    }

    #[test]
    fn an_openai_stream_is_timed_per_chunk_and_counted_from_usage() {
        let reg = Registry::new(1, 1, 0);
        let parts = [
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\" b\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\" c\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n",
        ];
        assert!(!feed(&reg, ProviderKind::OpenAi, true, &parts));
        let s = reg.snapshot();
        let l = &s.series[0].llm;
        assert_eq!((l.responses, l.completed, l.streamed), (1, 1, 1));
        assert_eq!((l.output_tokens, l.from_usage, l.input_tokens), (7, 1, 4));
        // the role-only chunk is no token: the first content arrives 110ms in
        assert!((l.ttft.histogram().min_ms() - 110.0).abs() < 0.5);
        assert_eq!(l.itl.count(), 2);
        assert!((l.itl.histogram().max_ms() - 10.0).abs() < 0.1);
        // TPOT: 20ms between first and last content chunk over 6 further tokens
        assert!((l.tpot.histogram().max_ms() - 20.0 / 6.0).abs() < 0.01);
    }

    #[test]
    fn without_usage_tokens_are_counted_from_chunks() {
        let reg = Registry::new(1, 1, 0);
        let parts = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        ];
        assert!(!feed(&reg, ProviderKind::OpenAi, true, &parts));
        let l = &reg.snapshot().series[0].llm;
        assert_eq!((l.output_tokens, l.from_usage, l.from_chunks), (2, 0, 1));
    }

    #[test]
    fn each_break_is_counted_by_its_kind() {
        let reg = Registry::new(1, 1, 0);
        // an Anthropic error event after a 200
        assert!(feed(
            &reg,
            ProviderKind::Anthropic,
            true,
            &["event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n",
              "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"]
        ));
        // cut-off JSON
        assert!(feed(
            &reg,
            ProviderKind::Ollama,
            true,
            &[
                "{\"message\":{\"content\":\"a\"},\"done\":false}\n",
                "{\"message\":{\"cont\n"
            ]
        ));
        // the body ends before the end marker
        assert!(feed(
            &reg,
            ProviderKind::OpenAi,
            true,
            &["data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"]
        ));
        let mut p = Probe::new(&reg, 0, step(ProviderKind::OpenAi), true);
        p.start(Instant::now());
        p.head(200);
        p.broken(true);
        assert!(p.failed());
        p.record();
        let l = &reg.snapshot().series[0].llm;
        assert_eq!(
            (
                l.faults.provider,
                l.faults.malformed,
                l.faults.dropped,
                l.faults.stall
            ),
            (1, 1, 1, 1)
        );
        assert_eq!((l.responses, l.completed), (4, 0));
    }

    #[test]
    fn a_whole_answer_records_its_usage_and_an_error_status_nothing() {
        let reg = Registry::new(1, 1, 0);
        let body = r#"{"id":"x","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":9}}"#;
        assert!(!feed(&reg, ProviderKind::Anthropic, false, &[body]));
        let mut p = Probe::new(&reg, 0, step(ProviderKind::OpenAi), true);
        p.start(Instant::now());
        p.head(429);
        p.body(b"{\"error\":{}}", Instant::now());
        p.end(Instant::now());
        assert!(!p.failed());
        p.record();
        let l = &reg.snapshot().series[0].llm;
        assert_eq!((l.responses, l.streamed, l.output_tokens), (1, 0, 9));
        assert_eq!(l.ttft.count(), 0);
        assert_eq!(l.e2e.count(), 1);
    }

    #[test]
    fn ollama_streams_by_default_the_others_when_asked() {
        let o = step(ProviderKind::Ollama);
        let a = step(ProviderKind::OpenAi);
        let j = serde_json::json!({"model": "m"});
        assert!(o.streams(Some(&j)));
        assert!(!a.streams(Some(&j)));
        assert!(a.streams(Some(&serde_json::json!({"stream": true}))));
        assert!(!o.streams(Some(&serde_json::json!({"stream": false}))));
        assert_eq!(LlmStep::dialect("Anthropic"), Some(ProviderKind::Anthropic));
        assert_eq!(LlmStep::dialect("gemini"), None);
    }
}
