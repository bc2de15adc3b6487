//! The agent-execute path's LLM call: when the target is configured with an LLM base
//! URL (`[llm] base_url`, an OpenAI-compatible API such as powertune's gateway), a
//! `POST /api/v1/ai/agents/{id}/execute` whose body asks for `"stream": true` sends the
//! agent's input to `{base_url}/chat/completions`, streamed, and relays the answer's
//! server-sent events to the client as they arrive (nothing is buffered). A status
//! other than 2xx from the LLM API is passed on with its body.

use crate::handlers::ApiError;
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use powertune_core::config_file::Source;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;

/// `[llm]`: where the agent-execute path sends its LLM calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// OpenAI-compatible base URL up to `/v1` (`http://127.0.0.1:4000/v1`, the
    /// gateway); unset: a streamed execute answers 503.
    pub base_url: Option<String>,
    /// The model (or gateway alias) asked for.
    pub model: String,
    /// `max_tokens` sent with each call (unset: none, the provider's own limit).
    pub max_tokens: Option<u32>,
    /// Longest a whole LLM call may take.
    #[serde(with = "powertune_core::duration::serde_human")]
    pub timeout: Duration,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            base_url: None,
            model: "gpt-4o-mini".into(),
            max_tokens: None,
            timeout: Duration::from_secs(120),
        }
    }
}

impl LlmConfig {
    /// Checks the values at their keys in `src`.
    pub(crate) fn validate(&self, src: &Source) -> Result<(), crate::TargetError> {
        let bad = |key: &str, why: String| Err(crate::TargetError::Config(src.error(key, why)));
        if let Some(u) = &self.base_url {
            let ok = url_ok(u);
            if !ok {
                return bad(
                    "llm.base_url",
                    format!(
                        "{:?} is not an http(s) URL without credentials, e.g. \"http://127.0.0.1:4000/v1\"",
                        powertune_core::redact::text(u)
                    ),
                );
            }
        }
        if self.model.trim().is_empty() || self.model.len() > 200 {
            return bad(
                "llm.model",
                "must be 1 to 200 characters, e.g. \"gpt-4o-mini\"".into(),
            );
        }
        if self.max_tokens == Some(0) {
            return bad("llm.max_tokens", "must be at least 1, e.g. 256".into());
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return bad(
                "llm.timeout",
                "must be above 0 and at most 1h, e.g. \"120s\"".into(),
            );
        }
        Ok(())
    }
}

pub(crate) fn url_ok(u: &str) -> bool {
    let Some(rest) = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty() && !host.contains('@') && !u.chars().any(|c| c.is_control() || c == ' ')
}

/// Whether an execute body asks for a streamed LLM answer.
pub(crate) fn wants_stream(m: &serde_json::Map<String, serde_json::Value>) -> bool {
    m.get("stream").and_then(serde_json::Value::as_bool) == Some(true)
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default()
    })
}

/// Calls the configured LLM with `input`, streamed, and relays the answer.
/// The call is a CLIENT span of the request (`chat MODEL`, GenAI attributes) whose
/// context goes to the LLM API in `traceparent`.
pub(crate) async fn stream_answer(
    cfg: &LlmConfig,
    telemetry: &crate::telemetry::Telemetry,
    input: &str,
) -> Result<Response, ApiError> {
    let Some(base) = &cfg.base_url else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no LLM is configured for streamed agent runs; start the target with [llm] base_url = \"http://127.0.0.1:4000/v1\" (powertune demo does)",
        ));
    };
    let mut body = json!({
        "model": cfg.model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "You are the platform's agent. Answer the task."},
            {"role": "user", "content": input},
        ],
    });
    if let Some(n) = cfg.max_tokens {
        body["max_tokens"] = json!(n);
    }
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let mut headers = axum::http::HeaderMap::new();
    let host = url
        .split_once("://")
        .map(|(_, r)| r.split('/').next().unwrap_or(""))
        .unwrap_or("");
    let mut span = telemetry.client(
        &format!("chat {}", cfg.model),
        vec![
            opentelemetry::KeyValue::new("gen_ai.operation.name", "chat"),
            // The API spoken: OpenAI's chat completions (the gateway's OpenAI front).
            opentelemetry::KeyValue::new("gen_ai.provider.name", "openai"),
            opentelemetry::KeyValue::new("gen_ai.request.model", cfg.model.clone()),
            opentelemetry::KeyValue::new("http.request.method", "POST"),
            opentelemetry::KeyValue::new("server.address", host.to_string()),
        ],
        &mut headers,
    );
    let resp = client()
        .post(&url)
        .headers(headers)
        .timeout(cfg.timeout)
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "the LLM call to {} failed: {}",
                    powertune_core::redact::text(&url),
                    powertune_core::redact::text(&e.without_url().to_string())
                ),
            )
        })?;
    span.answered(resp.status().as_u16());
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/event-stream")
        .to_string();
    // The span ends when the relayed stream is dropped (done, or the client left).
    let stream = futures_util::StreamExt::map(resp.bytes_stream(), move |r| {
        let _span = &span;
        r.map_err(|e| std::io::Error::other(e.without_url().to_string()))
    });
    Ok((
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        let src = Source::new("t.toml", "");
        let mut c = LlmConfig::default();
        assert!(c.validate(&src).is_ok());
        c.base_url = Some("http://127.0.0.1:4000/v1".into());
        assert!(c.validate(&src).is_ok());
        for bad in [
            "ftp://x",
            "http://",
            "http://u:secret@h/v1",
            "127.0.0.1:4000",
        ] {
            c.base_url = Some(bad.into());
            let e = c.validate(&src).unwrap_err().to_string();
            assert!(e.contains("llm.base_url"), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let c = LlmConfig {
            max_tokens: Some(0),
            ..Default::default()
        };
        assert!(c
            .validate(&src)
            .unwrap_err()
            .to_string()
            .contains("llm.max_tokens"));
    }

    #[test]
    fn only_a_true_stream_flag_asks_for_a_stream() {
        let m = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert!(wants_stream(&m(json!({"stream": true}))));
        assert!(!wants_stream(&m(json!({"stream": "yes"}))));
        assert!(!wants_stream(&m(json!({}))));
    }
}
