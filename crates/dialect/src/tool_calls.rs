//! Tool calls read from a message in any of the three formats (requests and
//! complete responses alike).

use crate::canonical::ToolCall;
use serde_json::{json, Value};

/// Arguments as a JSON value: OpenAI sends a JSON text, Anthropic/Ollama an object.
pub(crate) fn args_value(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    }
}

/// Tool calls of an assistant message in any of the three formats.
pub(crate) fn message_tool_calls(m: &Value, i: usize) -> Vec<ToolCall> {
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
