//! `[telemetry]`: OTLP/HTTP trace export of every client call and each of its
//! upstream attempts (see [`crate::telemetry`]). Off unless `otlp_endpoint` is set.
//! Header values for the collector (an API token) come from environment variables
//! the file names, never from the file, and never appear in errors or `Debug`.

use super::duration::Setting;
use super::{ConfigError, Secret, Source};
use powertune_core::config_file::DurationField;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP/HTTP receiver, e.g. `http://127.0.0.1:4318` (`/v1/traces` is appended
    /// unless the path already ends with it).
    pub otlp_endpoint: Option<String>,
    /// Request headers for the collector: header name → environment variable
    /// holding its value (`{ authorization = "OTLP_AUTH" }`).
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// The `service.name` resource attribute.
    pub service_name: Option<String>,
    /// Share of new traces recorded (0..=1); a call whose client sent a sampled
    /// `traceparent` follows the client's decision.
    pub sample_ratio: Option<f64>,
    /// Finished spans waiting for export, at most; more are dropped and counted.
    pub max_queue: Option<usize>,
    /// Spans per export request, at most.
    pub max_batch: Option<usize>,
    /// How often a partial batch is sent.
    pub flush_interval: Option<DurationField>,
    /// Longest one export request may take.
    pub export_timeout: Option<DurationField>,
}

/// `[telemetry]`, validated. `Debug` names the headers, never their values.
#[derive(Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are posted (ends in `/v1/traces`).
    pub traces_url: String,
    pub headers: Vec<(String, Secret)>,
    pub service_name: String,
    pub sample_ratio: f64,
    pub max_queue: usize,
    pub max_batch: usize,
    pub flush_interval: Duration,
    pub export_timeout: Duration,
}

impl std::fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TelemetryConfig")
            .field("traces_url", &self.traces_url)
            .field("headers", &names)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("max_queue", &self.max_queue)
            .field("max_batch", &self.max_batch)
            .field("flush_interval", &self.flush_interval)
            .field("export_timeout", &self.export_timeout)
            .finish()
    }
}

pub const DEFAULT_SERVICE_NAME: &str = "powertune-gateway";
pub const DEFAULT_MAX_QUEUE: usize = 4096;
pub const DEFAULT_MAX_BATCH: usize = 512;
const MAX_QUEUE_LIMIT: usize = 1_000_000;
const FLUSH_INTERVAL: Setting = Setting::millis("telemetry.flush_interval", "", 1000);
const EXPORT_TIMEOUT: Setting = Setting::secs("telemetry.export_timeout", "", 5);

impl RawTelemetry {
    /// `None` when no `otlp_endpoint` is set (nothing exported).
    pub(super) fn validate(
        self,
        src: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<TelemetryConfig>, ConfigError> {
        let Some(endpoint) = self.otlp_endpoint else {
            return Ok(None);
        };
        let traces_url = traces_url(&endpoint).ok_or_else(|| {
            src.error(
                "telemetry.otlp_endpoint",
                format!(
                    "{:?} is not an http(s) URL without credentials, e.g. otlp_endpoint = \"http://127.0.0.1:4318\"",
                    powertune_core::redact::text(&endpoint)
                ),
            )
        })?;
        let mut headers = Vec::new();
        for (name, var) in self.headers_env {
            let key = format!("telemetry.headers_env.{name}");
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(src.error(
                    &key,
                    format!(
                        "{name:?} is not an HTTP header name, e.g. authorization = \"OTLP_AUTH\""
                    ),
                ));
            }
            let value = match env(&var) {
                Some(v) if !v.trim().is_empty() => v.trim().to_string(),
                _ => {
                    return Err(src.error(
                        &key,
                        format!("environment variable {var} is not set or empty; export it, e.g. export {var}='Bearer ...'"),
                    ))
                }
            };
            if axum::http::HeaderValue::from_str(&value).is_err() {
                return Err(src.error(
                    &key,
                    format!(
                        "environment variable {var} holds characters a header value cannot carry"
                    ),
                ));
            }
            headers.push((name, Secret::new(value)));
        }
        let service_name = self
            .service_name
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
        if service_name.trim().is_empty() || service_name.len() > 200 {
            return Err(src.error(
                "telemetry.service_name",
                format!(
                    "must be 1 to 200 characters, e.g. service_name = \"{DEFAULT_SERVICE_NAME}\""
                ),
            ));
        }
        let sample_ratio = self.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(src.error(
                "telemetry.sample_ratio",
                format!("must be 0 to 1 (got {sample_ratio}), e.g. sample_ratio = 0.1"),
            ));
        }
        let max_queue = self.max_queue.unwrap_or(DEFAULT_MAX_QUEUE);
        if !(1..=MAX_QUEUE_LIMIT).contains(&max_queue) {
            return Err(src.error(
                "telemetry.max_queue",
                format!("must be 1 to {MAX_QUEUE_LIMIT} (got {max_queue}), e.g. max_queue = {DEFAULT_MAX_QUEUE}"),
            ));
        }
        let max_batch = self.max_batch.unwrap_or(DEFAULT_MAX_BATCH.min(max_queue));
        if !(1..=max_queue).contains(&max_batch) {
            return Err(src.error(
                "telemetry.max_batch",
                format!("must be 1 to max_queue ({max_queue}) (got {max_batch}), e.g. max_batch = {DEFAULT_MAX_BATCH}"),
            ));
        }
        let flush_interval = FLUSH_INTERVAL.positive(src, self.flush_interval.as_ref(), None)?;
        let export_timeout = EXPORT_TIMEOUT.positive(src, self.export_timeout.as_ref(), None)?;
        for (key, d) in [
            ("telemetry.flush_interval", flush_interval),
            ("telemetry.export_timeout", export_timeout),
        ] {
            if d > Duration::from_secs(60) {
                return Err(src.error(key, "at most 60s, e.g. \"5s\"".to_string()));
            }
        }
        Ok(Some(TelemetryConfig {
            traces_url,
            headers,
            service_name,
            sample_ratio,
            max_queue,
            max_batch,
            flush_interval,
            export_timeout,
        }))
    }
}

/// The URL spans are posted to: `endpoint` with `/v1/traces` appended unless it
/// already ends so; `None` unless http(s) with a host and without credentials.
fn traces_url(endpoint: &str) -> Option<String> {
    let u = url::Url::parse(endpoint.trim()).ok()?;
    let ok = matches!(u.scheme(), "http" | "https")
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none()
        && u.query().is_none();
    if !ok {
        return None;
    }
    let s = u.as_str().trim_end_matches('/');
    Some(if s.ends_with("/v1/traces") {
        s.to_string()
    } else {
        format!("{s}/v1/traces")
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::time::Duration;

    const BASE: &str = r#"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
  [[providers.credentials]]
  name = "a"
[models.fast]
targets = ["openai:gpt-4o-mini"]
"#;

    fn load(extra: &str) -> Result<Config, String> {
        let env = |k: &str| (k == "OTLP_AUTH").then(|| "Bearer tok-123".to_string());
        Config::from_toml(&format!("{BASE}{extra}"), "g.toml", &env)
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn telemetry_is_off_without_an_endpoint_and_has_defaults_with_one() {
        assert!(load("").unwrap().telemetry.is_none());
        assert!(load("[telemetry]\n").unwrap().telemetry.is_none());
        let t = load("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n")
            .unwrap()
            .telemetry
            .unwrap();
        assert_eq!(t.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.service_name, "powertune-gateway");
        assert_eq!((t.max_queue, t.max_batch), (4096, 512));
        assert_eq!(t.sample_ratio, 1.0);
        assert_eq!(t.flush_interval, Duration::from_secs(1));
        assert_eq!(t.export_timeout, Duration::from_secs(5));
        let t = load(
            "[telemetry]\notlp_endpoint = \"https://otel.example/v1/traces/\"\nmax_queue = 10\n",
        )
        .unwrap()
        .telemetry
        .unwrap();
        assert_eq!(t.traces_url, "https://otel.example/v1/traces");
        assert_eq!(t.max_batch, 10);
    }

    #[test]
    fn header_values_come_from_the_environment_and_never_show() {
        let t = load("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nheaders_env = { authorization = \"OTLP_AUTH\" }\n")
            .unwrap()
            .telemetry
            .unwrap();
        assert_eq!(t.headers[0].0, "authorization");
        assert_eq!(t.headers[0].1.expose(), "Bearer tok-123");
        assert!(!format!("{t:?}").contains("tok-123"));
        let e = load("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nheaders_env = { authorization = \"NOPE\" }\n")
            .unwrap_err();
        assert!(
            e.contains("telemetry.headers_env.authorization: environment variable NOPE is not set"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("otlp_endpoint = \"ftp://x\"", "telemetry.otlp_endpoint"),
            (
                "otlp_endpoint = \"http://u:pw@x:4318\"",
                "telemetry.otlp_endpoint",
            ),
            (
                "otlp_endpoint = \"http://x\"\nsample_ratio = 1.5",
                "telemetry.sample_ratio",
            ),
            (
                "otlp_endpoint = \"http://x\"\nmax_queue = 0",
                "telemetry.max_queue",
            ),
            (
                "otlp_endpoint = \"http://x\"\nmax_queue = 8\nmax_batch = 9",
                "telemetry.max_batch",
            ),
            (
                "otlp_endpoint = \"http://x\"\nflush_interval = \"0s\"",
                "telemetry.flush_interval",
            ),
            (
                "otlp_endpoint = \"http://x\"\nexport_timeout = \"2m\"",
                "telemetry.export_timeout",
            ),
            (
                "otlp_endpoint = \"http://x\"\nservice_name = \"\"",
                "telemetry.service_name",
            ),
        ] {
            let e = load(&format!("[telemetry]\n{extra}\n")).unwrap_err();
            assert!(e.contains(&format!("{key}: ")), "{extra}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }
}
