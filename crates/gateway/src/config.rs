//! `gateway.toml`, read with core's loader: raw serde structs (unknown keys are
//! errors) → [`RawConfig::validate`] → a typed [`Config`], before any socket opens.
//! Every error reads `FILE:LINE:COL: KEY: WHY, e.g. RIGHT`; durations are strings
//! (`"30s"`), and the older keys of bare numbers (`request_s`, `base_ms`) still work
//! with a deprecation line in [`Loaded::warnings`]. API keys are read from the
//! environment variables the file names (`api_key_env`) and never appear in errors,
//! logs or `Debug` output.

mod clients;
mod duration;
mod pricing;
mod shared;
mod telemetry;
mod tuning;

pub use clients::{check_exposure, key_hash, Client, RawClient};
pub use pricing::{Budget, BudgetScope, Fallback, RawBudget, RawPrice};
pub use shared::{RawShared, SharedConfig, DEFAULT_KEY_PREFIX};
pub use telemetry::{RawTelemetry, TelemetryConfig};
pub use tuning::{
    BreakerConfig, RawBreaker, RawRetry, RawServer, RawTimeouts, RetryConfig, ServerConfig,
    Timeouts, DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES_LIMIT,
};

pub use powertune_core::config_file::ConfigError;
use powertune_core::config_file::Source;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

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
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub shared: RawShared,
    /// `"provider:model" = { input_per_mtok, output_per_mtok }` (USD per million tokens).
    #[serde(default)]
    pub pricing: BTreeMap<String, RawPrice>,
    /// Or: a file of such entries, relative to this one.
    pub pricing_file: Option<String>,
    /// `"route:CLASS"` / `"client:NAME"` = { daily_usd, monthly_usd, fallback }.
    #[serde(default)]
    pub budgets: BTreeMap<String, RawBudget>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Accept `POST /admin/reload` from non-loopback peers too (default: loopback only).
    pub allow_remote: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    /// Azure OpenAI (`kind = "azure"`): the `api-version` query parameter.
    pub api_version: Option<String>,
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
    /// Requests the rpm limit lets through at once (default rpm/60, at least 1).
    pub burst: Option<u32>,
    /// Tokens (input + output) per minute (docs/gateway.md "Token quotas").
    pub tpm: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `"provider:model"` in fallback order.
    pub targets: Vec<String>,
    /// `"order"` (default: the targets in their order) or `"latency"` (fastest first).
    pub routing: Option<String>,
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
pub struct Credential {
    pub name: String,
    pub key: Option<Secret>,
    pub weight: u32,
    pub rpm: Option<u32>,
    /// Requests the rpm limit lets through at once (rpm/60, at least 1, unless set).
    pub burst: u32,
    /// Tokens (input + output) per minute.
    pub tpm: Option<u64>,
}

impl Credential {
    /// The rpm limiter's (rpm, burst), when it has an rpm.
    pub fn rate(&self) -> Option<(u32, u32)> {
        self.rpm.map(|r| (r, self.burst))
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// The wire format (Azure OpenAI speaks OpenAI's).
    pub kind: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    /// `kind = "azure"`: the `api-version`; the model of a target is the deployment
    /// (`{base_url}/openai/deployments/{model}/chat/completions?api-version=...`,
    /// key in an `api-key` header).
    pub azure_api_version: Option<String>,
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
    /// `[server]`: read at start; a reload keeps the values in force.
    pub server: ServerConfig,
    /// `[[clients]]`: the virtual keys a caller must present (none: no check).
    pub clients: Vec<Client>,
    /// `[shared]`: the Redis replicas share breakers and rpm limits through; read at
    /// start (a reload keeps the one in force).
    pub shared: Option<SharedConfig>,
    /// Model aliases with `routing = "latency"` (docs/gateway.md "Latency routing").
    pub latency_routed: std::collections::BTreeSet<String>,
    /// `[pricing]` / `pricing_file`: prices per provider model (reloaded with the config).
    pub pricing: crate::pricing::PriceTable,
    /// `[budgets]`, by name.
    pub budgets: Vec<Budget>,
    /// `[telemetry]`: OTLP span export; read at start (a reload keeps the one in
    /// force).
    pub telemetry: Option<TelemetryConfig>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";

/// A validated config and what was noticed while reading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Deprecation lines (`FILE:LINE: KEY: deprecated; write ...`) for the caller to
    /// show; the library prints nothing.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads, parses and validates `path`; keys come from the process environment.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        Config::load_with(path, &|k| std::env::var(k).ok())
    }

    /// [`Config::load`] with keys looked up by `env`.
    pub fn load_with(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        Config::from_source(&Source::read(path)?, env)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        Config::from_source(&Source::new(origin, text), env)
    }

    fn from_source(
        src: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loaded, ConfigError> {
        let raw: RawConfig = src.deserialize()?;
        let config = raw.validate(src, env)?;
        Ok(Loaded {
            config,
            warnings: src.warnings(),
        })
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

impl RawConfig {
    /// Checks every value and builds the typed config; problems are placed at their
    /// key in `src`, deprecations recorded in its warnings.
    pub fn validate(
        self,
        src: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let bad = |key: &str, message: String| src.error(key, message);
        let listen_s = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_s.parse().map_err(|_| {
            bad(
                "listen",
                format!("not a socket address: {listen_s:?}, e.g. listen = \"127.0.0.1:4000\""),
            )
        })?;
        let timeouts = self.timeouts.validate(src)?;
        let retry = self.retry.validate(src)?;
        let breaker = self.breaker.validate(src)?;
        let server = self.server.validate(src)?;
        let shared = self.shared.validate(src, env)?;
        let telemetry = self.telemetry.validate(src, env)?;

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
                "openai" | "azure" => ProviderKind::OpenAi,
                "anthropic" => ProviderKind::Anthropic,
                "ollama" => ProviderKind::Ollama,
                other => {
                    return Err(bad(
                        &format!("{key}.kind"),
                        format!(
                            "unknown kind {other:?}; use \"openai\", \"azure\", \"anthropic\" or \"ollama\""
                        ),
                    ))
                }
            };
            let azure_api_version =
                match (p.kind.as_str(), p.api_version) {
                    ("azure", Some(v)) if !v.trim().is_empty() => Some(v.trim().to_string()),
                    ("azure", _) => return Err(bad(
                        &format!("{key}.api_version"),
                        "kind = \"azure\" needs the API version, e.g. api_version = \"2024-10-21\""
                            .into(),
                    )),
                    (_, Some(_)) => {
                        return Err(bad(
                            &format!("{key}.api_version"),
                            "only kind = \"azure\" takes an api_version".into(),
                        ))
                    }
                    (_, None) => None,
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
                    burst: None,
                    tpm: None,
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
                let burst = match (c.rpm, c.burst) {
                    (_, Some(0)) => {
                        return Err(bad(
                            &format!("{ck}.burst"),
                            "must be at least 1 (got 0), e.g. burst = 10".into(),
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(bad(
                            &format!("{ck}.burst"),
                            "is the burst of the rpm limit; set rpm too, e.g. rpm = 600".into(),
                        ))
                    }
                    (Some(r), Some(b)) if b > r => {
                        return Err(bad(
                            &format!("{ck}.burst"),
                            format!(
                                "must not exceed rpm ({b} > {r}), e.g. burst = {}",
                                (r / 60).max(1)
                            ),
                        ))
                    }
                    (_, Some(b)) => b,
                    (Some(r), None) => (r / 60).max(1),
                    (None, None) => 1,
                };
                if c.tpm == Some(0) {
                    return Err(bad(
                        &format!("{ck}.tpm"),
                        "must be at least 1 or left out for no limit (got 0), e.g. tpm = 90000"
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
                    burst,
                    tpm: c.tpm,
                });
            }
            providers.push(Provider {
                name: p.name,
                kind,
                base_url,
                azure_api_version,
                credentials: creds,
            });
        }
        let mut models = BTreeMap::new();
        let mut latency_routed = std::collections::BTreeSet::new();
        for (alias, m) in self.models {
            match m.routing.as_deref() {
                None | Some("order") => {}
                Some("latency") => {
                    latency_routed.insert(alias.clone());
                }
                Some(other) => {
                    return Err(bad(
                        &format!("models.{alias}.routing"),
                        format!("must be \"order\" or \"latency\" (got {other:?}), e.g. routing = \"latency\""),
                    ))
                }
            }
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
        let clients = clients::validate(
            self.clients,
            src,
            env,
            &self.routes.keys().map(String::as_str).collect(),
            &models.keys().map(String::as_str).collect(),
        )?;
        let pricing = pricing::validate_pricing(self.pricing, self.pricing_file, src, &providers)?;
        let budgets = pricing::validate_budgets(
            self.budgets,
            src,
            pricing.configured,
            &self.routes.keys().map(String::as_str).collect(),
            &models.keys().map(String::as_str).collect(),
            &clients.iter().map(|c| c.name.as_str()).collect(),
        )?;
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
            server,
            clients,
            shared,
            latency_routed,
            pricing,
            budgets,
            telemetry,
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
    use std::time::Duration;

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
        let loaded = Config::from_toml(GOOD, "g.toml", &env).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
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
    fn unknown_key_is_named_at_its_place() {
        let e = Config::from_toml("[retry]\nmax_retry = 2\n", "g.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("g.toml:2:1: retry.max_retry: unknown field `max_retry`"),
            "{e}"
        );
    }

    #[test]
    fn validation_errors_read_file_line_col_key_why_and_example() {
        let text = GOOD.replace("weight = 3", "weight = 0");
        let e = Config::from_toml(&text, "g.toml", &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "g.toml:10:3: providers[0].credentials[0].weight: must be 1..=1000 (got 0), e.g. weight = 3"
        );
    }

    #[test]
    fn durations_are_strings_with_a_unit() {
        let text = format!(
            "{GOOD}[timeouts]\nrequest = \"5m\"\nconnect = \"2s\"\nfirst_token = \"300ms\"\nidle = \"1m30s\"\n[retry]\nbase = \"1ms\"\nmax = \"50ms\"\n[breaker]\nrecovery = \"90s\"\nrate_limit_default = \"1s\"\nwindow = \"30s\"\nfailure_rate = 0.5\n"
        );
        let loaded = Config::from_toml(&text, "g.toml", &env).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert_eq!(c.timeouts.request, Duration::from_secs(300));
        assert_eq!(c.timeouts.connect, Duration::from_secs(2));
        assert_eq!(c.timeouts.first_token, Duration::from_millis(300));
        assert_eq!(c.timeouts.idle, Duration::from_secs(90));
        assert_eq!(c.retry.base, Duration::from_millis(1));
        assert_eq!(c.retry.max, Duration::from_millis(50));
        assert_eq!(c.breaker.recovery, Duration::from_secs(90));
        assert_eq!(c.breaker.rate_limit_default, Duration::from_secs(1));
        assert_eq!(c.breaker.window, Some((Duration::from_secs(30), 0.5, 20)));
    }

    #[test]
    fn the_old_numeric_keys_still_work_with_one_deprecation_line_each() {
        let text = format!(
            "{GOOD}[timeouts]\nrequest_s = 300\nidle_s = 0.3\n[retry]\nbase_ms = 1\nmax_ms = 50\n[breaker]\nrecovery_timeout_s = 90\nwindow_s = 30\nfailure_rate = 0.5\n"
        );
        let loaded = Config::from_toml(&text, "g.toml", &env).unwrap();
        let c = &loaded.config;
        assert_eq!(c.timeouts.request, Duration::from_secs(300));
        assert_eq!(c.timeouts.idle, Duration::from_millis(300));
        assert_eq!(c.retry.base, Duration::from_millis(1));
        assert_eq!(c.retry.max, Duration::from_millis(50));
        assert_eq!(c.breaker.recovery, Duration::from_secs(90));
        assert_eq!(c.breaker.window, Some((Duration::from_secs(30), 0.5, 20)));
        assert_eq!(
            loaded.warnings,
            [
                "g.toml:23: timeouts.request_s: deprecated; write request = \"5m\"",
                "g.toml:24: timeouts.idle_s: deprecated; write idle = \"300ms\"",
                "g.toml:26: retry.base_ms: deprecated; write base = \"1ms\"",
                "g.toml:27: retry.max_ms: deprecated; write max = \"50ms\"",
                "g.toml:29: breaker.recovery_timeout_s: deprecated; write recovery = \"1m30s\"",
                "g.toml:30: breaker.window_s: deprecated; write window = \"30s\"",
            ]
        );
    }

    #[test]
    fn bad_durations_name_their_key_and_a_right_value() {
        for (extra, want) in [
            (
                "[timeouts]\nrequest = 600\n",
                "timeouts.request: 600 has no unit; write the duration as a string, e.g. request = \"10m\"",
            ),
            ("[timeouts]\nconnect = \"soon\"\n", "timeouts.connect: bad duration `soon`"),
            ("[timeouts]\nidle_s = 0\n", "timeouts.idle_s: must be above 0 and at most 24h (got 0ms), e.g. idle = \"30s\""),
            (
                "[retry]\nbase = \"2s\"\nmax = \"1s\"\n",
                "retry.base: must not exceed retry.max (2s > 1s), e.g. base = \"250ms\"",
            ),
            (
                "[breaker]\nrecovery = \"1m\"\nrecovery_timeout_s = 60\n",
                "breaker.recovery_timeout_s: breaker.recovery replaces this key; keep only breaker.recovery",
            ),
            ("[breaker]\nwindow = \"1m\"\n", "breaker.window: the failure-rate window needs both"),
        ] {
            let e = Config::from_toml(&format!("{GOOD}{extra}"), "g.toml", &env).unwrap_err();
            assert!(e.line > 21 && e.column == 1, "{extra}: {e}");
            let e = e.to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
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
