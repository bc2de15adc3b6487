//! Collector for `apm report` / `apm endpoint`: fetches the running receiver's
//! summary API.

use crate::snapshot::{EndpointDetail, Summary};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--url {url}: {why} (example: --url http://127.0.0.1:4318)")]
    BadUrl { url: String, why: String },
    #[error("cannot reach the APM receiver at {url}: {why}")]
    Connect { url: String, why: String },
    #[error("the APM receiver at {url} answered HTTP {status}: {body}")]
    Query {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the APM receiver at {url} answered something that is not a powertune summary: {why}")]
    Parse { url: String, why: String },
}

/// Checks a receiver base URL.
pub fn base_url(s: &str) -> Result<url::Url, ClientError> {
    let bad = |why: String| ClientError::BadUrl {
        url: powertune_core::redact::url(s),
        why,
    };
    let u = url::Url::parse(s).map_err(|e| bad(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(bad("must be an http:// URL with a host".to_string()));
    }
    Ok(u)
}

async fn get<T: serde::de::DeserializeOwned>(
    base: &url::Url,
    path: &str,
    query: &[(&str, String)],
) -> Result<T, ClientError> {
    let mut u = base.clone();
    u.set_path(path);
    if !query.is_empty() {
        let mut pairs = u.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    let shown = powertune_core::redact::url(base.as_str());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ClientError::Connect {
            url: shown.clone(),
            why: e.to_string(),
        })?;
    let resp = client
        .get(u)
        .send()
        .await
        .map_err(|e| ClientError::Connect {
            url: shown.clone(),
            why: e.without_url().to_string(),
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| ClientError::Connect {
        url: shown.clone(),
        why: e.without_url().to_string(),
    })?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| powertune_core::report::truncate(text.trim(), 200));
        return Err(ClientError::Query {
            url: shown,
            status: status.as_u16(),
            body: msg,
        });
    }
    serde_json::from_slice(&body).map_err(|e| ClientError::Parse {
        url: shown,
        why: e.to_string(),
    })
}

fn window_q(window: Option<Duration>) -> Vec<(&'static str, String)> {
    window
        .map(|w| vec![("window", format!("{}s", w.as_secs().max(1)))])
        .unwrap_or_default()
}

pub async fn fetch_summary(
    base: &url::Url,
    window: Option<Duration>,
) -> Result<Summary, ClientError> {
    get(base, "/api/summary", &window_q(window)).await
}

pub async fn fetch_endpoint(
    base: &url::Url,
    route: &str,
    window: Option<Duration>,
) -> Result<EndpointDetail, ClientError> {
    let mut q = window_q(window);
    q.push(("route", route.to_string()));
    get(base, "/api/endpoint", &q).await
}
