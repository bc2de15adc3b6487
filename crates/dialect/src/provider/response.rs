//! Complete (non-streaming) provider responses into the canonical [`ChatResponse`].

use crate::canonical::*;
use crate::error::{garbage, DecodeError};
use crate::time::now_secs;
use crate::tool_calls::message_tool_calls;
use serde_json::Value;

pub(crate) fn u(v: &Value, p: &str) -> u64 {
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
