//! The gateway's tuning sections of `gateway.toml`: `[server]`, `[timeouts]`, `[retry]`
//! and `[breaker]` — their raw serde structs, the typed values and the checks between
//! them (each duration key with its deprecated key of bare numbers and its default).

use super::duration::Setting;
use powertune_core::config_file::{ConfigError, DurationField, Source};
use serde::Deserialize;
use std::time::Duration;

/// `[server]`: what one client may hold of the gateway's own HTTP server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub max_connections: Option<u64>,
    pub header_read_timeout: Option<DurationField>,
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub drain_timeout: Option<DurationField>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub request: Option<DurationField>,
    pub connect: Option<DurationField>,
    pub first_token: Option<DurationField>,
    pub idle: Option<DurationField>,
    /// Deprecated: bare seconds (`request_s = 600`).
    pub request_s: Option<DurationField>,
    pub connect_s: Option<DurationField>,
    pub first_token_s: Option<DurationField>,
    pub idle_s: Option<DurationField>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_retries: Option<u32>,
    pub base: Option<DurationField>,
    pub max: Option<DurationField>,
    /// Deprecated: bare milliseconds (`base_ms = 250`).
    pub base_ms: Option<DurationField>,
    pub max_ms: Option<DurationField>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failure_threshold: Option<u32>,
    pub recovery: Option<DurationField>,
    pub half_open_probes: Option<u32>,
    pub rate_limit_default: Option<DurationField>,
    pub retry_after_max: Option<DurationField>,
    pub window: Option<DurationField>,
    pub failure_rate: Option<f64>,
    pub min_calls: Option<u32>,
    /// Deprecated: bare seconds (`recovery_timeout_s = 120`).
    pub recovery_timeout_s: Option<DurationField>,
    pub rate_limit_default_s: Option<DurationField>,
    pub window_s: Option<DurationField>,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub request: Duration,
    pub connect: Duration,
    pub first_token: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Retries after the first attempt (runbook: retry depth < 3, so at most 2).
    pub max_retries: u32,
    pub base: Duration,
    /// Longest single backoff, and the longest `Retry-After` the gateway waits out.
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub recovery: Duration,
    pub half_open_probes: u32,
    pub rate_limit_default: Duration,
    /// Longest time a provider's `Retry-After` (seconds or HTTP-date) takes a
    /// credential out; a longer one is cut to this and shown as capped in `/status`.
    pub retry_after_max: Duration,
    /// Optional failure-rate window: (window, rate 0..1, minimum calls).
    pub window: Option<(Duration, f64, u32)>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            recovery: Duration::from_secs(120),
            half_open_probes: 1,
            rate_limit_default: Duration::from_secs(5),
            retry_after_max: RETRY_AFTER_MAX.default,
            window: None,
        }
    }
}

/// The gateway's own HTTP server: connection and head limits and the drain (the
/// shared accept loop of `powertune-serve`), and the request body limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub limits: powertune_serve::Limits,
    /// Largest request body, in bytes; a larger one is a 413 in the client's shape.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: powertune_serve::Limits::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The default request body limit (16 MiB: room for a few inline images).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// The largest request body limit accepted (1 GiB).
pub const MAX_BODY_BYTES_LIMIT: usize = 1 << 30;

// Each duration key, the deprecated key of bare numbers it replaces, and its default.
const REQUEST: Setting = Setting::secs("timeouts.request", "timeouts.request_s", 600);
const CONNECT: Setting = Setting::secs("timeouts.connect", "timeouts.connect_s", 10);
const FIRST_TOKEN: Setting = Setting::secs("timeouts.first_token", "timeouts.first_token_s", 60);
const IDLE: Setting = Setting::secs("timeouts.idle", "timeouts.idle_s", 30);
const BASE: Setting = Setting::millis("retry.base", "retry.base_ms", 250);
const MAX: Setting = Setting::millis("retry.max", "retry.max_ms", 10_000);
const RECOVERY: Setting = Setting::secs("breaker.recovery", "breaker.recovery_timeout_s", 120);
const RATE_LIMIT_DEFAULT: Setting = Setting::secs(
    "breaker.rate_limit_default",
    "breaker.rate_limit_default_s",
    5,
);
const RETRY_AFTER_MAX: Setting = Setting::secs("breaker.retry_after_max", "", 3600);
const HEADER_READ_TIMEOUT: Setting = Setting::secs("server.header_read_timeout", "", 10);
const DRAIN_TIMEOUT: Setting = Setting::secs("server.drain_timeout", "", 30);
const WINDOW: Setting = Setting::secs("breaker.window", "breaker.window_s", 60);

impl RawTimeouts {
    pub(super) fn validate(&self, src: &Source) -> Result<Timeouts, ConfigError> {
        Ok(Timeouts {
            request: REQUEST.positive(src, self.request.as_ref(), self.request_s.as_ref())?,
            connect: CONNECT.positive(src, self.connect.as_ref(), self.connect_s.as_ref())?,
            first_token: FIRST_TOKEN.positive(
                src,
                self.first_token.as_ref(),
                self.first_token_s.as_ref(),
            )?,
            idle: IDLE.positive(src, self.idle.as_ref(), self.idle_s.as_ref())?,
        })
    }
}

impl RawServer {
    pub(super) fn validate(&self, src: &Source) -> Result<ServerConfig, ConfigError> {
        let d = ServerConfig::default();
        let size = |v: Option<u64>, default: usize| {
            v.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let limits = powertune_serve::Limits {
            max_connections: size(self.max_connections, d.limits.max_connections),
            header_read_timeout: HEADER_READ_TIMEOUT.positive(
                src,
                self.header_read_timeout.as_ref(),
                None,
            )?,
            max_header_bytes: size(self.max_header_bytes, d.limits.max_header_bytes),
            max_headers: size(self.max_headers, d.limits.max_headers),
            drain_timeout: DRAIN_TIMEOUT.positive(src, self.drain_timeout.as_ref(), None)?,
        };
        // the loop's own ranges, placed at the key that breaks them
        limits
            .validate(|field| field.to_string())
            .map_err(|m| match m.split_once(": ") {
                Some((field, why)) => src.error(&format!("server.{field}"), why.to_string()),
                None => src.error("server", m),
            })?;
        let max_body_bytes = size(self.max_body_bytes, d.max_body_bytes);
        if !(1024..=MAX_BODY_BYTES_LIMIT).contains(&max_body_bytes) {
            return Err(src.error(
                "server.max_body_bytes",
                format!("must be between 1024 and {MAX_BODY_BYTES_LIMIT} (1 GiB), not {max_body_bytes}, e.g. max_body_bytes = {DEFAULT_MAX_BODY_BYTES}"),
            ));
        }
        Ok(ServerConfig {
            limits,
            max_body_bytes,
        })
    }
}

impl RawRetry {
    pub(super) fn validate(&self, src: &Source) -> Result<RetryConfig, ConfigError> {
        let max_retries = self.max_retries.unwrap_or(2);
        if max_retries > 2 {
            return Err(src.error(
                "retry.max_retries",
                format!("the runbook allows a retry depth below 3, so at most 2 (got {max_retries}), e.g. max_retries = 2"),
            ));
        }
        let (base, base_key) = BASE
            .read(src, self.base.as_ref(), self.base_ms.as_ref())?
            .unwrap_or((BASE.default, BASE.key));
        let (max, max_key) = MAX
            .read(src, self.max.as_ref(), self.max_ms.as_ref())?
            .unwrap_or((MAX.default, MAX.key));
        // base = max = 0 is allowed: no waiting at all (tests, benchmarks)
        if base > max {
            return Err(src.error(
                base_key,
                format!(
                    "must not exceed {max_key} ({} > {}), e.g. {}",
                    powertune_core::duration::format(base),
                    powertune_core::duration::format(max),
                    BASE.example()
                ),
            ));
        }
        Ok(RetryConfig {
            max_retries,
            base,
            max,
        })
    }
}

impl RawBreaker {
    pub(super) fn validate(&self, src: &Source) -> Result<BreakerConfig, ConfigError> {
        let failure_threshold = self.failure_threshold.unwrap_or(5);
        if failure_threshold == 0 {
            return Err(src.error(
                "breaker.failure_threshold",
                "must be at least 1 (got 0), e.g. failure_threshold = 5",
            ));
        }
        let half_open_probes = self.half_open_probes.unwrap_or(1);
        if half_open_probes == 0 {
            return Err(src.error(
                "breaker.half_open_probes",
                "must be at least 1 (got 0), e.g. half_open_probes = 1",
            ));
        }
        let recovery = RECOVERY.positive(
            src,
            self.recovery.as_ref(),
            self.recovery_timeout_s.as_ref(),
        )?;
        let rate_limit_default = RATE_LIMIT_DEFAULT.positive(
            src,
            self.rate_limit_default.as_ref(),
            self.rate_limit_default_s.as_ref(),
        )?;
        let retry_after_max = RETRY_AFTER_MAX.positive(src, self.retry_after_max.as_ref(), None)?;
        let window_given = self.window.is_some() || self.window_s.is_some();
        let window = match (window_given, self.failure_rate, self.min_calls) {
            (false, None, None) => None,
            (true, Some(r), m) => {
                let w = WINDOW.positive(src, self.window.as_ref(), self.window_s.as_ref())?;
                if !(r > 0.0 && r <= 1.0) {
                    return Err(src.error(
                        "breaker.failure_rate",
                        format!("must be above 0 and at most 1 (got {r}), e.g. failure_rate = 0.5"),
                    ));
                }
                Some((w, r, m.unwrap_or(20).max(1)))
            }
            _ => {
                let key = if self.window_s.is_some() {
                    WINDOW.old
                } else {
                    WINDOW.key
                };
                return Err(src.error(
                    key,
                    "the failure-rate window needs both window and failure_rate, e.g. window = \"60s\" and failure_rate = 0.5",
                ));
            }
        };
        Ok(BreakerConfig {
            failure_threshold,
            recovery,
            half_open_probes,
            rate_limit_default,
            retry_after_max,
            window,
        })
    }
}
