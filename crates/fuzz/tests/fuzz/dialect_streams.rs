//! Provider streams: OpenAI and Anthropic SSE, Ollama NDJSON
//! (`powertune_dialect::StreamDecoder`), and the client streams the gateway writes
//! from what was decoded (`StreamEncoder`).

use super::dialect_requests::{FRONTS, KINDS};
use powertune_dialect::{ApiError, Chunk, ErrorKind, ProviderKind, StreamDecoder, StreamEncoder};
use proptest::prelude::*;

const TARGET: &str = "dialect_streams";

static TOKENS: &[&[u8]] = &[
    b"data: ",
    b"data:",
    b"event: ",
    b"event: content_block_start\n",
    b"event: message_delta\n",
    b"event: error\n",
    b"id: 1\n",
    b": comment\n",
    b"data: [DONE]\n\n",
    b"\n\n",
    b"\r\n\r\n",
    b"\r",
    b"{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}",
    b"{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}",
    b"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}",
    b"{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\"}}",
    b"{\"message\":{\"content\":\"x\"},\"done\":false}\n",
    b"{\"done\":true}\n",
    b"\"index\":18446744073709551615",
    b"\"index\":255",
];

/// What decoding gave: the chunks up to the first error, and that error (or the end's).
#[derive(Debug, PartialEq)]
struct Outcome {
    chunks: Vec<Chunk>,
    error: Option<String>,
}

/// Made-up tool call ids (Ollama sends none) are random: compare them as one.
fn normalize(c: Chunk) -> Chunk {
    match c {
        Chunk::ToolStart { index, id, name } if id.starts_with("call_") && id.len() == 21 => {
            Chunk::ToolStart {
                index,
                id: "call_*".into(),
                name,
            }
        }
        c => c,
    }
}

fn decode(kind: ProviderKind, input: &[u8], step: usize) -> Outcome {
    let mut d = StreamDecoder::new(kind);
    let mut chunks = Vec::new();
    let mut error = None;
    for r in powertune_fuzz::pieces(input.len(), step) {
        if let Err(e) = d.feed_into(&input[r], &mut chunks) {
            error = Some(e.to_string());
            break;
        }
    }
    if error.is_none() {
        match d.end() {
            Ok(more) => chunks.extend(more),
            Err(e) => error = Some(e.to_string()),
        }
    }
    Outcome {
        chunks: chunks.into_iter().map(normalize).collect(),
        error,
    }
}

/// Encodes what was decoded for every front: each `data:` line of an SSE stream and
/// each NDJSON line is JSON (or `[DONE]`).
fn encode_all(chunks: &[Chunk]) {
    for front in FRONTS {
        let mut enc = StreamEncoder::new(front, "id-1".into(), "m".into(), true);
        let mut s = enc.start(3);
        for c in chunks {
            enc.chunk_into(&mut s, c);
        }
        s.push_str(&enc.error(&ApiError::new(ErrorKind::Upstream, "upstream \"failed\"\n")));
        for line in s.lines() {
            let json = match enc.content_type() {
                "text/event-stream" => match line.strip_prefix("data: ") {
                    Some("[DONE]") | None => continue,
                    Some(j) => j,
                },
                _ if line.is_empty() => continue,
                _ => line,
            };
            assert!(
                serde_json::from_str::<serde_json::Value>(json).is_ok(),
                "{front:?} wrote a line that is not JSON: {line}"
            );
        }
    }
}

pub fn check(input: &[u8]) {
    for kind in KINDS {
        let whole = decode(kind, input, input.len().max(1));
        // Text comes out no longer than it came in.
        let text: usize = whole
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Delta(t) => t.len(),
                _ => 0,
            })
            .sum();
        assert!(
            text <= input.len(),
            "{text} bytes of text from {} bytes",
            input.len()
        );
        // However the bytes are split across reads, the same chunks come out.
        for step in [1, 7, 64] {
            let split = decode(kind, input, step);
            assert_eq!(
                whole, split,
                "{kind:?}: reads of {step} bytes decode differently"
            );
        }
        encode_all(&whole.chunks);
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 8, check);
}

/// A line that never ends is refused at the 1 MiB pending limit, not buffered.
#[test]
fn an_endless_line_is_refused_at_the_pending_limit() {
    for kind in KINDS {
        let mut d = StreamDecoder::new(kind);
        let piece = vec![b'a'; 64 * 1024];
        let mut fed = 0usize;
        let mut refused = false;
        while fed < 4 << 20 {
            if d.feed(&piece).is_err() {
                refused = true;
                break;
            }
            fed += piece.len();
        }
        assert!(refused, "{kind:?} buffered {fed} bytes of one line");
        assert!(
            fed <= (1 << 20) + piece.len(),
            "{kind:?} refused only after {fed} bytes"
        );
    }
}

/// SSE events and NDJSON lines built from JSON values with the streams' keys.
fn events() -> impl Strategy<Value = Vec<u8>> {
    static KEYS: &[&str] = &[
        "choices",
        "delta",
        "content",
        "tool_calls",
        "index",
        "id",
        "function",
        "name",
        "arguments",
        "finish_reason",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "type",
        "message",
        "content_block",
        "text",
        "partial_json",
        "input_json_delta",
        "text_delta",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "error",
        "done",
        "done_reason",
        "prompt_eval_count",
        "eval_count",
    ];
    static STRINGS: &[&str] = &[
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
        "ping",
        "tool_use",
        "text",
        "text_delta",
        "input_json_delta",
        "stop",
        "length",
        "tool_calls",
        "end_turn",
        "max_tokens",
        "{",
        "}",
    ];
    let event = (
        proptest::option::of(proptest::sample::select(STRINGS)),
        powertune_fuzz::json_value(KEYS, STRINGS, 5),
        prop_oneof![Just("\n\n"), Just("\r\n\r\n"), Just("\n")],
    )
        .prop_map(|(ev, v, end)| {
            let data = serde_json::to_string(&v).unwrap();
            let mut s = String::new();
            if let Some(e) = ev {
                s.push_str("event: ");
                s.push_str(e);
                s.push('\n');
            }
            s.push_str("data: ");
            s.push_str(&data);
            s.push_str(end);
            s.push_str(&data);
            s.push('\n');
            s.into_bytes()
        });
    proptest::collection::vec(event, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(powertune_fuzz::config(800))]

    #[test]
    fn generated_streams_decode_the_same_however_split(input in events()) {
        check(&input);
    }
}

proptest! {
    #![proptest_config(powertune_fuzz::config(300))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }
}
