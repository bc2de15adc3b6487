//! Complete (non-streaming) responses in the client's API shape.

use crate::canonical::*;
use crate::provider::request::openai_message;
use crate::time::{now_secs, rfc3339_now};
use serde_json::{json, Value};

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
