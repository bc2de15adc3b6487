//! Scripted answers: what one request (a queued script) or every request (the
//! standing script) gets instead of the drawn answer: an error status with
//! `Retry-After`, a delay before the headers, a fixed time between chunks, a stall or
//! the API's error event after N chunks, a fixed text, a tool call. Set with
//! `POST /control` (`script`, `next`) or `sim.toml`'s `[script]`.

use crate::config::{bounded_duration, MAX_OUTPUT_TOKENS};
use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Most scripts queued with `next` at once.
pub const MAX_QUEUED: usize = 10_000;

/// Longest scripted text, in bytes.
pub const MAX_TEXT: usize = 1 << 20;

/// How long a `stall_after` stall lasts unless the script sets `stall`.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// A script as written (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Answer this status (400..=599) with the API's own error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` on that error answer, as given (`"2"`, an HTTP date).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// Wait before answering (before the headers): `"250ms"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Time between two content chunks (instead of the model's ITL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_delay: Option<String>,
    /// Stream: after this many content chunks send nothing for `stall`, then close
    /// the connection (no end marker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_after: Option<u64>,
    /// How long a `stall_after` stall lasts (default 30 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<String>,
    /// Stream: after this many content chunks send the API's mid-stream error event
    /// and end the stream. A whole answer gets the error as a 503 (529 Anthropic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_after: Option<u64>,
    /// The answer's text, one token per word (a word carries the space before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Answer with a call of this tool instead of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCallScript>,
}

/// A scripted tool call: the function's name and its arguments object.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCallScript {
    pub name: String,
    pub arguments: Value,
}

impl Script {
    /// A script that answers `status` with the API's error body.
    pub fn status(status: u16) -> Script {
        Script {
            status: Some(status),
            ..Script::default()
        }
    }

    /// A script that answers `text`.
    pub fn text(text: &str) -> Script {
        Script {
            text: Some(text.to_string()),
            ..Script::default()
        }
    }

    /// Checks the script; an error names the field (`status`) and says why.
    pub(crate) fn check(&self) -> Result<Scripted, String> {
        let dur = |name: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
            v.as_deref()
                .map(bounded_duration)
                .transpose()
                .map_err(|e| format!("{name}: {e}"))
        };
        if let Some(s) = self.status {
            if !(400..=599).contains(&s) {
                return Err(format!(
                    "status: {s} is not an error status (400 to 599), e.g. 429"
                ));
            }
        }
        let retry_after = match &self.retry_after {
            None => None,
            Some(_) if self.status.is_none() => {
                return Err("retry_after: only an error answer carries it; set status too, e.g. {\"status\": 429, \"retry_after\": \"2\"}".into())
            }
            Some(v) => Some(HeaderValue::from_str(v).map_err(|_| {
                format!("retry_after: {v:?} is not a header value, e.g. \"2\"")
            })?),
        };
        if self.stall_after.is_some() && self.error_after.is_some() {
            return Err(
                "stall_after: a script stalls or errors mid-stream, not both; leave one out".into(),
            );
        }
        let words = match &self.text {
            None => None,
            Some(t) if t.len() > MAX_TEXT => {
                return Err(format!("text: {} bytes, more than {MAX_TEXT}", t.len()))
            }
            Some(t) => {
                let w = split_words(t);
                if t.trim().is_empty() || w.len() as u64 > MAX_OUTPUT_TOKENS {
                    return Err(format!(
                        "text: {} words; a text has 1 to {MAX_OUTPUT_TOKENS} (not only spaces), e.g. \"Hello there\"",
                        w.len()
                    ));
                }
                Some(Arc::from(w))
            }
        };
        let tool_call = match &self.tool_call {
            None => None,
            Some(t) if t.name.is_empty() || !t.arguments.is_object() => {
                return Err("tool_call: needs a name and an arguments object, e.g. {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}".into())
            }
            Some(_) if self.text.is_some() => {
                return Err("tool_call: a script answers a text or a tool call, not both".into())
            }
            Some(t) => Some(Arc::new((t.name.clone(), t.arguments.clone()))),
        };
        Ok(Scripted {
            status: self.status,
            retry_after,
            delay: dur("delay", &self.delay)?.unwrap_or(Duration::ZERO),
            chunk_delay: dur("chunk_delay", &self.chunk_delay)?,
            stall_after: self.stall_after,
            stall: dur("stall", &self.stall)?.unwrap_or(DEFAULT_STALL),
            error_after: self.error_after,
            words,
            tool_call,
            source: self.clone(),
        })
    }
}

/// A checked script.
#[derive(Debug, Clone)]
pub(crate) struct Scripted {
    pub status: Option<u16>,
    pub retry_after: Option<HeaderValue>,
    pub delay: Duration,
    pub chunk_delay: Option<Duration>,
    pub stall_after: Option<u64>,
    pub stall: Duration,
    pub error_after: Option<u64>,
    pub words: Option<Arc<[Box<str>]>>,
    pub tool_call: Option<Arc<(String, Value)>>,
    /// As written, for `GET /control`.
    pub source: Script,
}

/// `text` cut before every space that follows a non-space: the pieces joined are
/// the text, and every piece but the first starts with its space.
fn split_words(text: &str) -> Vec<Box<str>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && !prev_space && i > start {
            out.push(text[start..i].into());
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        out.push(text[start..].into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_spaces_and_join_to_the_text() {
        let w = split_words("Hello from  the fake provider");
        assert_eq!(
            w.iter().map(|x| &**x).collect::<Vec<_>>(),
            ["Hello", " from", "  the", " fake", " provider"]
        );
        assert_eq!(w.concat(), "Hello from  the fake provider");
        assert!(split_words("").is_empty());
    }

    #[test]
    fn a_script_is_checked_whole() {
        let ok: Script =
            serde_json::from_str(r#"{"status": 429, "retry_after": "2", "delay": "10ms"}"#)
                .unwrap();
        let s = ok.check().unwrap();
        assert_eq!((s.status, s.delay), (Some(429), Duration::from_millis(10)));
        for (bad, why) in [
            (r#"{"status": 200}"#, "status: 200 is not an error status"),
            (
                r#"{"retry_after": "2"}"#,
                "retry_after: only an error answer",
            ),
            (r#"{"stall_after": 1, "error_after": 1}"#, "not both"),
            (r#"{"chunk_delay": "fast"}"#, "chunk_delay: "),
            (r#"{"text": "  "}"#, "not only spaces"),
            (
                r#"{"tool_call": {"name": "f", "arguments": 3}}"#,
                "arguments object",
            ),
        ] {
            let s: Script = serde_json::from_str(bad).unwrap();
            let e = s.check().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<Script>(r#"{"stauts": 500}"#).is_err());
    }
}
