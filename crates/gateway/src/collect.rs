//! The `powertune gateway status` collector: reads `GET {url}/status` from a running
//! gateway into a [`StatusSnapshot`]. The only I/O of the status path.

use crate::snapshot::StatusSnapshot;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("gateway URL {url:?} is not valid ({reason}); e.g. --url http://127.0.0.1:4000")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the gateway at {url}: {reason} (is `powertune gateway --config gateway.toml` running?)")]
    Connect { url: String, reason: String },
    #[error("the gateway at {url} answered HTTP {status} to GET /status (expected 200 from a powertune gateway)")]
    Query { url: String, status: u16 },
    #[error("the answer from {url}/status is not a powertune gateway status: {reason}")]
    Parse { url: String, reason: String },
}

/// GET `{base}/status` with a 10 s timeout.
pub async fn collect_status(base: &str) -> Result<StatusSnapshot, CollectError> {
    let parsed = url::Url::parse(base).map_err(|e| CollectError::BadUrl {
        url: crate::config::redact_url(base),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CollectError::BadUrl {
            url: crate::config::redact_url(base),
            reason: format!("scheme {:?} is not http or https", parsed.scheme()),
        });
    }
    let shown = crate::config::redact_url(base)
        .trim_end_matches('/')
        .to_string();
    let url = format!("{}/status", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| CollectError::Connect {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| CollectError::Connect {
            url: shown.clone(),
            reason: if e.is_timeout() {
                "timed out".into()
            } else {
                "connection failed".into()
            },
        })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(CollectError::Query { url: shown, status });
    }
    let body = resp.bytes().await.map_err(|e| CollectError::Connect {
        url: shown.clone(),
        reason: format!("the body broke off ({e})"),
    })?;
    serde_json::from_slice(&body).map_err(|e| CollectError::Parse {
        url: shown,
        reason: e.to_string(),
    })
}
