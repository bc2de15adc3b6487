//! The fast path for a client and a provider that speak the same format: the
//! request and the non-streaming response pass through without a DOM.

use crate::canonical::*;
use crate::error::{garbage, DecodeError};

/// Does a client speaking `front` talk to a provider of `kind` in the same wire format?
/// Then the request and the non-streaming response pass through without translation.
pub fn same_format(front: Front, kind: ProviderKind) -> bool {
    matches!(
        (front, kind),
        (Front::OpenAi, ProviderKind::OpenAi)
            | (Front::Anthropic, ProviderKind::Anthropic)
            | (Front::Ollama, ProviderKind::Ollama)
    )
}

/// A request body's top-level fields, values left as raw JSON text (no DOM is built).
#[derive(Debug)]
pub struct RawRequest<'a> {
    fields: Vec<(&'a str, &'a serde_json::value::RawValue)>,
    /// The `model` the client asked for.
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage` (always true for the other APIs).
    pub include_usage: bool,
}

struct Fields<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(8);
                while let Some(e) = m.next_entry::<&'de str, &'de serde_json::value::RawValue>()? {
                    v.push(e);
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(serde::Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Reads what routing needs from a request body without building a DOM. `None` when
/// the body is anything but the plain, valid case (the full parser then answers with
/// the precise error, or translates).
pub fn peek_request(front: Front, body: &[u8]) -> Option<RawRequest<'_>> {
    let Fields(fields) = serde_json::from_slice(body).ok()?;
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.get());
    let model: String = serde_json::from_str::<&str>(get("model")?)
        .ok()?
        .to_string();
    if model.is_empty() {
        return None;
    }
    let msgs = get("messages")?;
    if !msgs.starts_with('[') || msgs[1..].trim_start().starts_with(']') {
        return None;
    }
    if front == Front::Anthropic && serde_json::from_str::<u64>(get("max_tokens")?).is_err() {
        return None;
    }
    let stream = match get("stream") {
        None | Some("null") => front == Front::Ollama,
        Some(v) => serde_json::from_str::<bool>(v).ok()?,
    };
    let include_usage = match front {
        Front::OpenAi => match get("stream_options") {
            None | Some("null") => false,
            Some(v) => serde_json::from_str::<StreamOptions>(v).ok()?.include_usage,
        },
        _ => true,
    };
    Some(RawRequest {
        fields,
        model,
        stream,
        include_usage,
    })
}

impl RawRequest<'_> {
    /// The body for a provider of the client's own format: the same fields with
    /// `model` replaced (and, for an OpenAI stream, usage asked for so tokens count).
    pub fn upstream_body(&self, kind: ProviderKind, model: &str) -> Vec<u8> {
        let len: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(len + model.len() + 48);
        out.push(b'{');
        let force_usage = kind == ProviderKind::OpenAi && self.stream;
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        let mut saw_options = false;
        for (k, v) in &self.fields {
            sep(&mut out);
            // keys were plain (borrowed) strings, so they need no escaping
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            match *k {
                "model" => {
                    let _ = serde_json::to_writer(&mut out, model);
                }
                "stream_options" if force_usage => {
                    saw_options = true;
                    out.extend_from_slice(b"{\"include_usage\":true}");
                }
                _ => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        if force_usage && !saw_options {
            sep(&mut out);
            out.extend_from_slice(b"\"stream_options\":{\"include_usage\":true}");
        }
        out.push(b'}');
        out
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct OpenAiUsage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) completion_tokens: u64,
}

#[derive(serde::Deserialize)]
struct OpenAiChoicePeek {
    finish_reason: Option<String>,
}

#[derive(serde::Deserialize)]
struct OpenAiPeek {
    model: Option<String>,
    choices: Vec<OpenAiChoicePeek>,
    usage: Option<OpenAiUsage>,
}

#[derive(serde::Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(serde::Deserialize)]
struct AnthropicPeek {
    model: Option<String>,
    #[allow(dead_code)]
    content: Vec<serde::de::IgnoredAny>,
    stop_reason: Option<String>,
    usage: Option<AnthropicUsage>,
}

#[derive(serde::Deserialize)]
struct OllamaPeek {
    model: Option<String>,
    #[allow(dead_code)]
    message: serde::de::IgnoredAny,
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
}

/// What a complete provider response says of itself, read by
/// [`peek_provider_response`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peeked {
    pub usage: Usage,
    /// The model the provider answered with, as it named it.
    pub model: Option<String>,
    /// The first finish reason, in the provider's own words (`stop`, `end_turn`, …).
    pub finish: Option<String>,
}

/// Checks a complete provider response is its API's shape and reads its token counts,
/// model and finish reason, without building a DOM (the body then goes to a
/// same-format client unchanged).
pub fn peek_provider_response(kind: ProviderKind, body: &[u8]) -> Result<Peeked, DecodeError> {
    let bad = |e: serde_json::Error| garbage(kind, format!("not its response shape ({e})"));
    match kind {
        ProviderKind::OpenAi => {
            let p: OpenAiPeek = serde_json::from_slice(body).map_err(bad)?;
            if p.choices.is_empty() {
                return Err(garbage(kind, "no choices[0]"));
            }
            Ok(Peeked {
                usage: p.usage.map_or(Usage::default(), |u| Usage {
                    input: u.prompt_tokens,
                    output: u.completion_tokens,
                }),
                model: p.model,
                finish: p.choices.into_iter().find_map(|c| c.finish_reason),
            })
        }
        ProviderKind::Anthropic => {
            let p: AnthropicPeek = serde_json::from_slice(body).map_err(bad)?;
            Ok(Peeked {
                usage: p.usage.map_or(Usage::default(), |u| Usage {
                    input: u.input_tokens,
                    output: u.output_tokens,
                }),
                model: p.model,
                finish: p.stop_reason,
            })
        }
        ProviderKind::Ollama => {
            let p: OllamaPeek = serde_json::from_slice(body).map_err(bad)?;
            Ok(Peeked {
                usage: Usage {
                    input: p.prompt_eval_count,
                    output: p.eval_count,
                },
                model: p.model,
                finish: p.done_reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn pass_through_rewrites_only_the_model() {
        let body = br#"{"model":"fast","messages":[{"role":"user","content":"hi \"x\""}],"tools":[{"type":"function"}],"stream":true,"temperature":0.5}"#;
        let r = peek_request(Front::OpenAi, body).unwrap();
        assert_eq!(r.model, "fast");
        assert!(r.stream && !r.include_usage);
        let up = r.upstream_body(ProviderKind::OpenAi, "gpt-\"q\"");
        let v: Value = serde_json::from_slice(&up).unwrap();
        assert_eq!(v["model"], "gpt-\"q\"");
        assert_eq!(v["messages"][0]["content"], "hi \"x\"");
        assert_eq!(v["tools"][0]["type"], "function");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["temperature"], 0.5);
        // anything unusual falls back to the full parser
        assert!(peek_request(Front::OpenAi, br#"{"model":"m","messages":[]}"#).is_none());
        assert!(peek_request(Front::OpenAi, br#"{"messages":[{}]}"#).is_none());
        assert!(peek_request(Front::Anthropic, br#"{"model":"m","messages":[{}]}"#).is_none());
        assert!(peek_request(Front::OpenAi, b"[1]").is_none());
        let r = peek_request(Front::Ollama, br#"{"model":"m","messages":[{}]}"#).unwrap();
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn response_peek_reads_usage_model_finish_and_refuses_other_shapes() {
        let p = peek_provider_response(
            ProviderKind::OpenAi,
            br#"{"id":"x","model":"gpt-4o-mini-2024","choices":[{"message":{"content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!((p.usage.input, p.usage.output), (3, 4));
        assert_eq!(p.model.as_deref(), Some("gpt-4o-mini-2024"));
        assert_eq!(p.finish.as_deref(), Some("length"));
        assert!(peek_provider_response(ProviderKind::OpenAi, br#"{"choices":[]}"#).is_err());
        assert!(peek_provider_response(ProviderKind::OpenAi, br#"{"choices":[1]}"#).is_err());
        assert!(peek_provider_response(ProviderKind::Anthropic, br#"{"choices":[{}]}"#).is_err());
        let p = peek_provider_response(
            ProviderKind::Anthropic,
            br#"{"model":"claude-x","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}"#,
        )
        .unwrap();
        assert_eq!((p.usage.input, p.usage.output), (1, 2));
        assert_eq!(
            (p.model.as_deref(), p.finish.as_deref()),
            (Some("claude-x"), Some("end_turn"))
        );
        let p = peek_provider_response(
            ProviderKind::Ollama,
            br#"{"message":{"content":"x"},"prompt_eval_count":2,"eval_count":5}"#,
        )
        .unwrap();
        assert_eq!((p.usage.input, p.usage.output), (2, 5));
        assert_eq!((p.model, p.finish), (None, None));
    }
}
