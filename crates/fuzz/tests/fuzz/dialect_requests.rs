//! The gateway's three dialects, requests and whole answers: what a client sends
//! (`parse_request`, `peek_request` for OpenAI, Anthropic and Ollama fronts), what is
//! sent upstream (`provider_request`, `RawRequest::upstream_body`), and what a
//! provider answers (`parse_provider_response`, `peek_provider_response`,
//! `provider_error_message`), then rendered back (`render_response`).

use powertune_dialect::{
    check_images, parse_provider_response, parse_request, peek_provider_response, peek_request,
    provider_error_message, provider_request, render_response, same_format, Front, ProviderKind,
};
use proptest::prelude::*;

const TARGET: &str = "dialect_requests";

pub const FRONTS: [Front; 3] = [Front::OpenAi, Front::Anthropic, Front::Ollama];
pub const KINDS: [ProviderKind; 3] = [
    ProviderKind::OpenAi,
    ProviderKind::Anthropic,
    ProviderKind::Ollama,
];

static TOKENS: &[&[u8]] = &[
    b"\"model\":\"m\",",
    b"\"messages\":[",
    b"{\"role\":\"user\",\"content\":\"hi\"}",
    b"{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"x\"}",
    b"{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}",
    b"{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AAAA\"}}",
    b"{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}",
    b"{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":[]}",
    b"\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]",
    b"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]",
    b"\"tool_choice\":\"required\"",
    b"\"tool_choice\":{\"type\":\"any\"}",
    b"\"stream\":true,",
    b"\"max_tokens\":",
    b"\"system\":",
    b"\"images\":[\"AAAA\"]",
    b"\"choices\":[",
    b"\"content\":[",
    b"\"usage\":{",
    b"\"done\":true",
];

fn front_of(kind: ProviderKind) -> Front {
    match kind {
        ProviderKind::OpenAi => Front::OpenAi,
        ProviderKind::Anthropic => Front::Anthropic,
        ProviderKind::Ollama => Front::Ollama,
    }
}

pub fn check(input: &[u8]) {
    for front in FRONTS {
        match parse_request(front, input) {
            Ok(req) => {
                for kind in KINDS {
                    let _ = check_images(kind, &req);
                    if let Ok((path, body)) = provider_request(kind, &req, "m") {
                        assert!(path.starts_with('/'), "{path}");
                        // What goes upstream is a request of that provider's own
                        // format: the gateway's front for that format reads it.
                        let bytes = serde_json::to_vec(&body).unwrap();
                        let back = parse_request(front_of(kind), &bytes);
                        assert!(
                            back.is_ok(),
                            "{front:?} request sent to {kind:?} is not read back: {:?}\n{}",
                            back.err(),
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                }
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
        // The pass-through body is the client's, model replaced: JSON when the
        // client's was (numbers out of f64's range pass through as written).
        let client_json = serde_json::from_slice::<serde_json::Value>(input).is_ok();
        if let Some(raw) = peek_request(front, input).filter(|_| client_json) {
            for kind in KINDS.into_iter().filter(|k| same_format(front, *k)) {
                let up = raw.upstream_body(kind, "m\"odel");
                let v: serde_json::Value = serde_json::from_slice(&up).unwrap_or_else(|e| {
                    panic!(
                        "upstream body is not JSON ({e}): {}",
                        String::from_utf8_lossy(&up)
                    )
                });
                assert_eq!(v["model"], "m\"odel");
            }
        }
    }
    for kind in KINDS {
        if let Ok(resp) = parse_provider_response(kind, input, "m") {
            for front in FRONTS {
                let v = render_response(front, &resp, 1_000);
                let _ = serde_json::to_vec(&v).unwrap();
            }
        }
        let _ = peek_provider_response(kind, input);
    }
    let _ = provider_error_message(input);
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 8, check);
}

static KEYS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "image_url",
    "url",
    "source",
    "media_type",
    "data",
    "images",
    "tool_calls",
    "tool_call_id",
    "id",
    "function",
    "name",
    "arguments",
    "input",
    "tools",
    "tool_choice",
    "parameters",
    "input_schema",
    "stream",
    "stream_options",
    "include_usage",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "system",
    "options",
    "num_predict",
    "choices",
    "message",
    "delta",
    "finish_reason",
    "stop_reason",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "done",
    "done_reason",
    "error",
    "tool_use_id",
];

static STRINGS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "developer",
    "text",
    "image_url",
    "image",
    "tool_use",
    "tool_result",
    "base64",
    "url",
    "function",
    "auto",
    "none",
    "required",
    "any",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:;base64,",
    "https://example.com/a.png",
    "image/png",
    "stop",
    "length",
    "tool_calls",
    "end_turn",
    "max_tokens",
    "{}",
    "{\"a\":1}",
    "{",
    "m",
];

proptest! {
    #![proptest_config(powertune_fuzz::config(2000))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }

    /// JSON with the dialects' keys and values in any arrangement.
    #[test]
    fn generated_json_never_panics(
        v in powertune_fuzz::json_value(KEYS, STRINGS, 6),
        msgs in proptest::collection::vec(powertune_fuzz::json_value(KEYS, STRINGS, 4), 0..4),
    ) {
        check(&serde_json::to_vec(&v).unwrap());
        let mut req = serde_json::json!({"model": "m", "max_tokens": 10, "messages": msgs});
        if let (Some(o), serde_json::Value::Object(extra)) = (req.as_object_mut(), v) {
            for (k, x) in extra {
                if k != "messages" {
                    o.insert(k, x);
                }
            }
        }
        check(&serde_json::to_vec(&req).unwrap());
    }
}
