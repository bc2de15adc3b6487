//! `gateway.toml`: raw serde structs (unknown keys are errors) → [`RawConfig::validate`]
//! → a typed [`Config`], before any socket opens. API keys are read from the
//! environment variables the file names (`api_key_env`) and never appear in errors,
//! logs or `Debug` output.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Why a configuration was refused. Every message names the file, the key, the value
/// and an example of a right one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read gateway config {path}: {source} (create it, e.g. from docs/gateway.md)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("gateway config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("gateway config {path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

/// An API key. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The key itself, for the one place that puts it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------- raw file format

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub admin: RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Accept `POST /admin/reload` from non-loopback peers too (default: loopback only).
    pub allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub request_s: Option<f64>,
    pub connect_s: Option<f64>,
    pub first_token_s: Option<f64>,
    pub idle_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_retries: Option<u32>,
    pub base_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failure_threshold: Option<u32>,
    pub recovery_timeout_s: Option<f64>,
    pub half_open_probes: Option<u32>,
    pub rate_limit_default_s: Option<f64>,
    pub window_s: Option<f64>,
    pub failure_rate: Option<f64>,
    pub min_calls: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub name: String,
    pub api_key_env: Option<String>,
    pub weight: Option<u32>,
    pub rpm: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `"provider:model"` in fallback order.
    pub targets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub model_prefix: String,
    pub route: String,
}

// ---------------------------------------------------------------- typed config

pub use powertune_dialect::ProviderKind;

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
            window: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub key: Option<Secret>,
    pub weight: u32,
    pub rpm: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub credentials: Vec<Credential>,
}

/// One place a model can be served: provider index into [`Config::providers`] + its model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub provider: usize,
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub timeouts: Timeouts,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
    pub providers: Vec<Provider>,
    /// Alias → targets in fallback order.
    pub models: BTreeMap<String, Vec<Target>>,
    /// Route class → aliases in fallback order.
    pub routes: BTreeMap<String, Vec<String>>,
    /// (model prefix, route class), first match wins.
    pub rules: Vec<(String, String)>,
    /// `POST /admin/reload` from any peer, not only loopback (`[admin] allow_remote`).
    pub admin_allow_remote: bool,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

impl Config {
    /// Reads, parses and validates `path`; keys come from `env` (normally the process
    /// environment).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &|k| std::env::var(k).ok())
    }

    /// [`Config::load`] with keys looked up by `env`.
    pub fn load_with(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Config::from_toml(&text, &p, env)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().replace('\n', " "),
        })?;
        raw.validate(origin, env)
    }

    /// Targets for `alias`, or `None`.
    pub fn alias(&self, alias: &str) -> Option<&[Target]> {
        self.models.get(alias).map(|v| v.as_slice())
    }

    /// The targets of a route class: its aliases' targets in order, without repeats.
    pub fn route_targets(&self, class: &str) -> Option<Vec<Target>> {
        let aliases = self.routes.get(class)?;
        let mut out: Vec<Target> = Vec::new();
        for a in aliases {
            for t in self.models.get(a).into_iter().flatten() {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        Some(out)
    }

    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.name == name)
    }
}

fn secs(
    v: Option<f64>,
    default: f64,
    key: &str,
    bad: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    if !s.is_finite() || s <= 0.0 || s > 86_400.0 {
        return Err(bad(
            key,
            format!("must be a number of seconds above 0 and at most 86400 (got {s}), e.g. {key} = {default}"),
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

impl RawConfig {
    pub fn validate(
        self,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let listen_s = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            bad(
                "listen",
                format!("not a socket address: {listen_s:?}, e.g. listen = \"127.0.0.1:4000\""),
            )
        })?;
        let timeouts = Timeouts {
            request: secs(self.timeouts.request_s, 600.0, "timeouts.request_s", &bad)?,
            connect: secs(self.timeouts.connect_s, 10.0, "timeouts.connect_s", &bad)?,
            first_token: secs(
                self.timeouts.first_token_s,
                60.0,
                "timeouts.first_token_s",
                &bad,
            )?,
            idle: secs(self.timeouts.idle_s, 30.0, "timeouts.idle_s", &bad)?,
        };
        let max_retries = self.retry.max_retries.unwrap_or(2);
        if max_retries > 2 {
            return Err(bad(
                "retry.max_retries",
                format!("the runbook allows a retry depth below 3, so at most 2 (got {max_retries}), e.g. max_retries = 2"),
            ));
        }
        let base_ms = self.retry.base_ms.unwrap_or(250);
        let max_ms = self.retry.max_ms.unwrap_or(10_000);
        if base_ms == 0 && max_ms == 0 {
            // allowed: no waiting at all (tests, benchmarks)
        } else if base_ms > max_ms {
            return Err(bad(
                "retry.base_ms",
                format!("must not exceed retry.max_ms ({base_ms} > {max_ms}), e.g. base_ms = 250"),
            ));
        }
        let retry = RetryConfig {
            max_retries,
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        };
        let b = &self.breaker;
        let failure_threshold = b.failure_threshold.unwrap_or(5);
        if failure_threshold == 0 {
            return Err(bad(
                "breaker.failure_threshold",
                "must be at least 1 (got 0), e.g. failure_threshold = 5".into(),
            ));
        }
        let half_open_probes = b.half_open_probes.unwrap_or(1);
        if half_open_probes == 0 {
            return Err(bad(
                "breaker.half_open_probes",
                "must be at least 1 (got 0), e.g. half_open_probes = 1".into(),
            ));
        }
        let window = match (b.window_s, b.failure_rate, b.min_calls) {
            (None, None, None) => None,
            (Some(w), Some(r), m) => {
                let w = secs(Some(w), 60.0, "breaker.window_s", &bad)?;
                if !(r > 0.0 && r <= 1.0) {
                    return Err(bad(
                        "breaker.failure_rate",
                        format!("must be above 0 and at most 1 (got {r}), e.g. failure_rate = 0.5"),
                    ));
                }
                Some((w, r, m.unwrap_or(20).max(1)))
            }
            _ => {
                return Err(bad(
                    "breaker.window_s",
                    "the failure-rate window needs both window_s and failure_rate, e.g. window_s = 60 and failure_rate = 0.5".into(),
                ))
            }
        };
        let breaker = BreakerConfig {
            failure_threshold,
            recovery: secs(
                b.recovery_timeout_s,
                120.0,
                "breaker.recovery_timeout_s",
                &bad,
            )?,
            half_open_probes,
            rate_limit_default: secs(
                b.rate_limit_default_s,
                5.0,
                "breaker.rate_limit_default_s",
                &bad,
            )?,
            window,
        };

        if self.providers.is_empty() {
            return Err(bad(
                "providers",
                "at least one [[providers]] is needed, e.g. name = \"openai\", kind = \"openai\", base_url = \"https://api.openai.com/v1\"".into(),
            ));
        }
        let mut providers = Vec::new();
        for (i, p) in self.providers.into_iter().enumerate() {
            let key = format!("providers[{i}]");
            if p.name.is_empty() || p.name.contains(':') {
                return Err(bad(
                    &format!("{key}.name"),
                    format!(
                        "must be non-empty without ':' (got {:?}), e.g. name = \"openai\"",
                        p.name
                    ),
                ));
            }
            if providers.iter().any(|q: &Provider| q.name == p.name) {
                return Err(bad(
                    &format!("{key}.name"),
                    format!("provider {:?} is declared twice", p.name),
                ));
            }
            let kind = match p.kind.as_str() {
                "openai" => ProviderKind::OpenAi,
                "anthropic" => ProviderKind::Anthropic,
                "ollama" => ProviderKind::Ollama,
                other => {
                    return Err(bad(
                        &format!("{key}.kind"),
                        format!(
                            "unknown kind {other:?}; use \"openai\", \"anthropic\" or \"ollama\""
                        ),
                    ))
                }
            };
            let url = url::Url::parse(&p.base_url).map_err(|e| {
                bad(
                    &format!("{key}.base_url"),
                    format!(
                        "not a URL ({e}): {:?}, e.g. base_url = \"https://api.openai.com/v1\"",
                        redact_url(&p.base_url)
                    ),
                )
            })?;
            if !matches!(url.scheme(), "http" | "https")
                || !url.username().is_empty()
                || url.password().is_some()
            {
                return Err(bad(
                    &format!("{key}.base_url"),
                    format!("must be http(s) without credentials in it (got {:?}); put keys in api_key_env", redact_url(&p.base_url)),
                ));
            }
            let base_url = p.base_url.trim_end_matches('/').to_string();
            let mut creds = Vec::new();
            let raw_creds = if p.credentials.is_empty() {
                vec![RawCredential {
                    name: "default".into(),
                    api_key_env: None,
                    weight: None,
                    rpm: None,
                }]
            } else {
                p.credentials
            };
            for (j, c) in raw_creds.into_iter().enumerate() {
                let ck = format!("{key}.credentials[{j}]");
                if c.name.is_empty() || creds.iter().any(|d: &Credential| d.name == c.name) {
                    return Err(bad(
                        &format!("{ck}.name"),
                        format!("must be non-empty and unique within the provider (got {:?}), e.g. name = \"primary\"", c.name),
                    ));
                }
                let weight = c.weight.unwrap_or(1);
                if weight == 0 || weight > 1000 {
                    return Err(bad(
                        &format!("{ck}.weight"),
                        format!("must be 1..=1000 (got {weight}), e.g. weight = 3"),
                    ));
                }
                if c.rpm == Some(0) {
                    return Err(bad(
                        &format!("{ck}.rpm"),
                        "must be at least 1 or left out for no limit (got 0), e.g. rpm = 500"
                            .into(),
                    ));
                }
                let key_value = match &c.api_key_env {
                    None => None,
                    Some(var) => match env(var) {
                        Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
                        _ => {
                            return Err(bad(
                                &format!("{ck}.api_key_env"),
                                format!("environment variable {var} is not set or empty; export it, e.g. export {var}=sk-..."),
                            ))
                        }
                    },
                };
                creds.push(Credential {
                    name: c.name,
                    key: key_value,
                    weight,
                    rpm: c.rpm,
                });
            }
            providers.push(Provider {
                name: p.name,
                kind,
                base_url,
                credentials: creds,
            });
        }
        let mut models = BTreeMap::new();
        for (alias, m) in self.models {
            let key = format!("models.{alias}.targets");
            if m.targets.is_empty() {
                return Err(bad(
                    &key,
                    "needs at least one \"provider:model\", e.g. targets = [\"openai:gpt-4o-mini\"]".into(),
                ));
            }
            let mut ts = Vec::new();
            for t in &m.targets {
                let parsed = parse_target(t, &providers).ok_or_else(|| {
                    bad(
                        &key,
                        format!("{t:?} is not \"provider:model\" with a declared provider, e.g. \"openai:gpt-4o-mini\""),
                    )
                })?;
                ts.push(parsed);
            }
            models.insert(alias, ts);
        }
        for (class, aliases) in &self.routes {
            if aliases.is_empty() {
                return Err(bad(
                    &format!("routes.{class}"),
                    "needs at least one model alias, e.g. latency = [\"fast\"]".into(),
                ));
            }
            for a in aliases {
                if !models.contains_key(a) {
                    return Err(bad(
                        &format!("routes.{class}"),
                        format!("unknown model alias {a:?}; declare it as [models.{a}]"),
                    ));
                }
            }
        }
        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            if !self.routes.contains_key(&r.route) {
                return Err(bad(
                    &format!("rules[{i}].route"),
                    format!("unknown route class {:?}; declare it under [routes], e.g. batch = [\"cheap\"]", r.route),
                ));
            }
            rules.push((r.model_prefix, r.route));
        }
        Ok(Config {
            listen,
            timeouts,
            retry,
            breaker,
            providers,
            models,
            routes: self.routes,
            rules,
            admin_allow_remote: self.admin.allow_remote.unwrap_or(false),
        })
    }
}

/// `"provider:model"` → a target, when the provider is declared.
pub fn parse_target(s: &str, providers: &[Provider]) -> Option<Target> {
    let (p, m) = s.split_once(':')?;
    if m.is_empty() {
        return None;
    }
    let provider = providers.iter().position(|q| q.name == p)?;
    Some(Target {
        provider,
        model: m.to_string(),
    })
}

/// A URL with its credentials masked, by the one secrets policy of
/// `powertune_core::redact`.
pub fn redact_url(s: &str) -> String {
    powertune_core::redact::url(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:0"
[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1/"
  [[providers.credentials]]
  name = "a"
  api_key_env = "K1"
  weight = 3
  [[providers.credentials]]
  name = "b"
  api_key_env = "K2"
  rpm = 60
[models.fast]
targets = ["openai:gpt-4o-mini"]
[routes]
latency = ["fast"]
[[rules]]
model_prefix = "gpt-4"
route = "latency"
"#;

    fn env(k: &str) -> Option<String> {
        match k {
            "K1" => Some("sk-one".into()),
            "K2" => Some("sk-two".into()),
            _ => None,
        }
    }

    #[test]
    fn good_config_validates_with_runbook_defaults() {
        let c = Config::from_toml(GOOD, "g.toml", &env).unwrap();
        assert_eq!(c.providers[0].base_url, "http://127.0.0.1:9/v1");
        assert_eq!(c.providers[0].credentials[0].weight, 3);
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.breaker.recovery, Duration::from_secs(120));
        assert_eq!(c.timeouts.request, Duration::from_secs(600));
        assert_eq!(c.retry.max_retries, 2);
        assert_eq!(c.route_targets("latency").unwrap().len(), 1);
        // the key never shows in Debug
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sk-one"), "{dbg}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[retry]\nmax_retry = 2\n", "g.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_retry"), "{e}");
    }

    #[test]
    fn missing_env_names_the_key_not_a_value() {
        let text = GOOD.replace("\"K2\"", "\"NOT_SET_ANYWHERE\"");
        let e = Config::from_toml(&text, "g.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("providers[0].credentials[1].api_key_env"), "{e}");
        assert!(e.contains("NOT_SET_ANYWHERE"), "{e}");
    }

    #[test]
    fn retries_above_two_are_refused() {
        let text = format!("{GOOD}\n[retry]\nmax_retries = 3\n");
        let e = Config::from_toml(&text, "g.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("retry.max_retries"), "{e}");
    }

    #[test]
    fn url_with_password_is_refused_without_echoing_it() {
        let text = GOOD.replace(
            "http://127.0.0.1:9/v1/",
            "http://user:hunter2@127.0.0.1:9/v1",
        );
        let e = Config::from_toml(&text, "g.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("base_url"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (from, to, key) in [
            ("weight = 3", "weight = 0", "weight"),
            ("rpm = 60", "rpm = 0", "rpm"),
            (
                "\"openai:gpt-4o-mini\"",
                "\"nope:x\"",
                "models.fast.targets",
            ),
            ("route = \"latency\"", "route = \"slow\"", "rules[0].route"),
            ("kind = \"openai\"", "kind = \"gemini\"", "kind"),
            (
                "listen = \"127.0.0.1:0\"",
                "listen = \"localhost\"",
                "listen",
            ),
        ] {
            let text = GOOD.replace(from, to);
            let e = Config::from_toml(&text, "g.toml", &env)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
