//! Errors: the client-facing [`ApiError`] in each front's shape, and the
//! [`DecodeError`] of a provider answer that is not its format.

use crate::canonical::{Front, ProviderKind};
use serde_json::{json, Value};

/// The kinds of error a client can get, mapped to each API's own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    NotFound,
    Authentication,
    RateLimited,
    Overloaded,
    Timeout,
    Upstream,
    /// The request body is over the server's limit (413).
    TooLarge,
    /// No such endpoint (404 for a path, unlike [`ErrorKind::NotFound`] for a model).
    UnknownPath,
    /// The endpoint exists but not for this HTTP method (405).
    MethodNotAllowed,
    /// The caller is known but may not do this (403).
    PermissionDenied,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Authentication => 401,
            ErrorKind::RateLimited => 429,
            ErrorKind::Overloaded => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Upstream => 502,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnknownPath => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::PermissionDenied => 403,
        }
    }
    fn openai(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
            ErrorKind::NotFound => ("invalid_request_error", "model_not_found"),
            ErrorKind::Authentication => ("authentication_error", "invalid_api_key"),
            ErrorKind::RateLimited => ("rate_limit_error", "rate_limit_exceeded"),
            ErrorKind::Overloaded => ("server_error", "all_providers_unavailable"),
            ErrorKind::Timeout => ("timeout_error", "upstream_timeout"),
            ErrorKind::Upstream => ("server_error", "upstream_error"),
            ErrorKind::TooLarge => ("invalid_request_error", "request_too_large"),
            ErrorKind::UnknownPath => ("invalid_request_error", "unknown_url"),
            ErrorKind::MethodNotAllowed => ("invalid_request_error", "method_not_allowed"),
            ErrorKind::PermissionDenied => ("permission_error", "permission_denied"),
        }
    }
    fn anthropic(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Upstream => "api_error",
            ErrorKind::TooLarge => "request_too_large",
            ErrorKind::UnknownPath => "not_found_error",
            ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::PermissionDenied => "permission_error",
        }
    }
}

/// A client-facing error: what went wrong, in words, plus its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, message)
    }

    /// The error body in the client's API shape.
    pub fn body(&self, front: Front) -> Value {
        match front {
            Front::OpenAi => {
                let (t, c) = self.kind.openai();
                json!({"error": {"message": self.message, "type": t, "param": null, "code": c}})
            }
            Front::Anthropic => {
                json!({"type": "error", "error": {"type": self.kind.anthropic(), "message": self.message}})
            }
            Front::Ollama => json!({"error": self.message}),
        }
    }
}

/// Decoding failed: the provider answered something that is not its format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("{provider} answered something that is not its API format: {detail}")]
    Garbage {
        provider: &'static str,
        detail: String,
    },
    /// The provider itself reported an error inside the stream.
    #[error("{provider} reported a mid-stream error: {message}")]
    Provider {
        provider: &'static str,
        message: String,
        overloaded: bool,
    },
}

pub(crate) fn garbage(kind: ProviderKind, detail: impl Into<String>) -> DecodeError {
    DecodeError::Garbage {
        provider: kind.as_str(),
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_the_clients_shape() {
        let e = ApiError::new(ErrorKind::Overloaded, "all open");
        assert_eq!(e.body(Front::OpenAi)["error"]["type"], "server_error");
        assert_eq!(
            e.body(Front::Anthropic)["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(e.body(Front::Ollama)["error"], "all open");
    }

    #[test]
    fn server_limits_have_their_status_and_each_apis_type() {
        for (kind, status, openai, anthropic) in [
            (
                ErrorKind::TooLarge,
                413,
                "request_too_large",
                "request_too_large",
            ),
            (
                ErrorKind::UnknownPath,
                404,
                "unknown_url",
                "not_found_error",
            ),
            (
                ErrorKind::MethodNotAllowed,
                405,
                "method_not_allowed",
                "invalid_request_error",
            ),
        ] {
            let e = ApiError::new(kind, "no");
            assert_eq!(kind.status(), status);
            assert_eq!(e.body(Front::OpenAi)["error"]["code"], openai);
            assert_eq!(
                e.body(Front::OpenAi)["error"]["type"],
                "invalid_request_error"
            );
            assert_eq!(e.body(Front::Anthropic)["error"]["type"], anthropic);
            assert_eq!(e.body(Front::Ollama)["error"], "no");
        }
    }
}
