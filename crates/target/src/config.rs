//! The target's configuration: a serde struct read from TOML (every field optional,
//! unknown keys refused), validated into [`Settings`] before any socket opens.

use crate::error::TargetError;
use crate::route::Route;
use powertune_core::config_file::Source;
use powertune_core::duration::serde_human;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Everything the target can be told. `TargetConfig::default()` is the target
/// `powertune demo` runs: a 25-slot database pool, latencies in the runbook's
/// "within target" range, no injected errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// Seed of the latency and error-injection random streams (same seed, same draws).
    pub seed: u64,
    /// Slots in the simulated database pool (ActiveRecord `pool`).
    pub pool_size: usize,
    /// How long a request waits for a pool slot before it fails with 503
    /// (ActiveRecord `checkout_timeout`, 5 s by default).
    #[serde(with = "serde_human")]
    pub pool_timeout: Duration,
    /// Fixed delay added to every API request (fault injection).
    #[serde(with = "serde_human")]
    pub extra_delay: Duration,
    /// Threads that do the routes' CPU work (`routes.*.cpu`): a request waits for
    /// one, as Ruby work waits for a Puma thread, so CPU saturates at
    /// `cpu_workers / cpu` requests a second, before the pool does.
    pub cpu_workers: usize,
    /// Most login tokens held at once; the oldest is forgotten beyond this.
    pub max_tokens: usize,
    /// Missions kept for the dashboard's "recent missions" list.
    pub recent_missions: usize,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Who may log in.
    pub auth: AuthConfig,
    /// Per-route simulated work and fault injection.
    pub routes: RoutesConfig,
    /// The ActionCable endpoint `/cable`.
    pub cable: CableConfig,
    /// The Redis-backed cache route `GET /api/v1/cache/{key}`.
    pub redis: crate::redis_cache::RedisConfig,
    /// Where streamed agent runs send their LLM calls (`crate::llm`).
    pub llm: crate::llm::LlmConfig,
    /// The target's own traces over OTLP (`crate::telemetry`).
    pub telemetry: crate::telemetry::TelemetryConfig,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            seed: 1,
            pool_size: 25,
            pool_timeout: Duration::from_secs(5),
            extra_delay: Duration::ZERO,
            cpu_workers: 2,
            max_tokens: 100_000,
            recent_missions: 20,
            max_body_bytes: 64 * 1024,
            auth: AuthConfig::default(),
            routes: RoutesConfig::default(),
            cable: CableConfig::default(),
            redis: Default::default(),
            llm: crate::llm::LlmConfig::default(),
            telemetry: Default::default(),
        }
    }
}

/// What errors of a configuration built in code (defaults and flags, no file) name as
/// their place.
pub const IN_CODE: &str = "target settings";

/// What a password is shown as (in `Debug` and in [`TargetConfig::masked`]): the mask
/// of core's one secrets policy (`powertune_core::redact::MASK`, `***`).
pub const MASK: &str = powertune_core::redact::MASK;

/// Demo users. With `users` empty, any `<name>@<email_domain>` logs in with
/// `password`; otherwise only the listed users do. `Debug` masks the passwords.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub email_domain: String,
    pub password: String,
    pub users: Vec<UserConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            email_domain: "example.com".into(),
            password: "demo".into(),
            users: Vec::new(),
        }
    }
}

/// One listed user. `Debug` masks the password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("email_domain", &self.email_domain)
            .field("password", &MASK)
            .field("users", &self.users)
            .finish()
    }
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("email", &self.email)
            .field("password", &MASK)
            .finish()
    }
}

/// A latency distribution: log-normal around `median` with shape `spread`
/// (sigma of the underlying normal; 0 = always exactly `median`), capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    #[serde(with = "serde_human")]
    pub median: Duration,
    #[serde(default)]
    pub spread: f64,
    #[serde(with = "serde_human", default = "default_max")]
    pub max: Duration,
}

fn default_max() -> Duration {
    Duration::from_secs(30)
}

impl Latency {
    /// Always exactly `d`.
    pub fn fixed(d: Duration) -> Self {
        Latency {
            median: d,
            spread: 0.0,
            max: d.max(default_max()),
        }
    }

    /// Log-normal around `median_ms` with shape `spread`, capped at 30 s.
    pub fn lognormal(median_ms: u64, spread: f64) -> Self {
        Latency {
            median: Duration::from_millis(median_ms),
            spread,
            max: default_max(),
        }
    }

    /// No time at all.
    pub fn none() -> Self {
        Latency::fixed(Duration::ZERO)
    }
}

/// What one route does per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Time spent holding a database pool slot (the request's queries).
    pub db: Latency,
    /// Time spent outside the pool (agent work, provider calls, rendering waits).
    #[serde(default = "Latency::none")]
    pub work: Latency,
    /// Fraction of requests answered 500 after their work (0.0 to 1.0).
    #[serde(default)]
    pub error_rate: f64,
    /// Fixed delay added to this route only.
    #[serde(with = "serde_human", default)]
    pub delay: Duration,
    /// CPU time burned per request on one of the `cpu_workers` threads (rendering,
    /// serialisation); none by default.
    #[serde(with = "serde_human", default)]
    pub cpu: Duration,
}

impl RouteConfig {
    fn new(db: Latency, work: Latency) -> Self {
        RouteConfig {
            db,
            work,
            error_rate: 0.0,
            delay: Duration::ZERO,
            cpu: Duration::ZERO,
        }
    }
}

/// The routes that do simulated work. In a file, a route table changes only the
/// keys it gives; the others keep that route's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawRoutes")]
pub struct RoutesConfig {
    /// `POST /api/v1/auth/login`
    pub login: RouteConfig,
    /// `POST /api/v1/ai/agents/{id}/execute`
    pub execute: RouteConfig,
    /// `POST /api/v1/ai/missions`
    pub missions: RouteConfig,
    /// `GET /api/v1/ai/monitoring/dashboard`
    pub dashboard: RouteConfig,
    /// `GET /health` (no database work by default)
    pub health: RouteConfig,
}

impl Default for RoutesConfig {
    fn default() -> Self {
        RoutesConfig {
            login: RouteConfig::new(Latency::lognormal(8, 0.3), Latency::none()),
            execute: RouteConfig::new(Latency::lognormal(15, 0.3), Latency::lognormal(120, 0.4)),
            missions: RouteConfig::new(Latency::lognormal(12, 0.3), Latency::none()),
            dashboard: RouteConfig::new(Latency::lognormal(35, 0.4), Latency::none()),
            health: RouteConfig::new(Latency::none(), Latency::none()),
        }
    }
}

/// A route table as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    db: Option<Latency>,
    work: Option<Latency>,
    error_rate: Option<f64>,
    #[serde(default, with = "opt_human")]
    delay: Option<Duration>,
    #[serde(default, with = "opt_human")]
    cpu: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoutes {
    login: Option<RawRoute>,
    execute: Option<RawRoute>,
    missions: Option<RawRoute>,
    dashboard: Option<RawRoute>,
    health: Option<RawRoute>,
}

impl RawRoute {
    fn over(self, mut base: RouteConfig) -> RouteConfig {
        if let Some(db) = self.db {
            base.db = db;
        }
        if let Some(work) = self.work {
            base.work = work;
        }
        if let Some(rate) = self.error_rate {
            base.error_rate = rate;
        }
        if let Some(delay) = self.delay {
            base.delay = delay;
        }
        if let Some(cpu) = self.cpu {
            base.cpu = cpu;
        }
        base
    }
}

impl From<RawRoutes> for RoutesConfig {
    fn from(raw: RawRoutes) -> Self {
        let d = RoutesConfig::default();
        let merge = |r: Option<RawRoute>, base: RouteConfig| match r {
            Some(r) => r.over(base),
            None => base,
        };
        RoutesConfig {
            login: merge(raw.login, d.login),
            execute: merge(raw.execute, d.execute),
            missions: merge(raw.missions, d.missions),
            dashboard: merge(raw.dashboard, d.dashboard),
            health: merge(raw.health, d.health),
        }
    }
}

mod opt_human {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        powertune_core::duration::parse(&s)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

impl RoutesConfig {
    /// The config of a work route by its key (`login`, `execute`, `missions`,
    /// `dashboard`, `health`).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut RouteConfig> {
        match key {
            "login" => Some(&mut self.login),
            "execute" => Some(&mut self.execute),
            "missions" => Some(&mut self.missions),
            "dashboard" => Some(&mut self.dashboard),
            "health" => Some(&mut self.health),
            _ => None,
        }
    }

    /// The config of a work route.
    pub fn get(&self, route: Route) -> Option<&RouteConfig> {
        match route {
            Route::Login => Some(&self.login),
            Route::Execute => Some(&self.execute),
            Route::Missions => Some(&self.missions),
            Route::Dashboard => Some(&self.dashboard),
            Route::Health => Some(&self.health),
            _ => None,
        }
    }
}

/// The ActionCable endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CableConfig {
    /// Refuse connections without a valid `?token=` (ActionCable's
    /// `reject_unauthorized_connection`).
    pub require_token: bool,
    /// Interval of `{"type":"ping"}` messages (ActionCable: 3 s).
    #[serde(with = "serde_human")]
    pub ping_interval: Duration,
    /// Interval of monitoring broadcasts to subscribers.
    #[serde(with = "serde_human")]
    pub broadcast_interval: Duration,
    /// Channels a client may subscribe to; others get `reject_subscription`.
    pub channels: Vec<String>,
    /// Most WebSocket connections at once (503 beyond).
    pub max_connections: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
}

impl Default for CableConfig {
    fn default() -> Self {
        CableConfig {
            require_token: false,
            ping_interval: Duration::from_secs(3),
            broadcast_interval: Duration::from_secs(1),
            channels: vec!["MonitoringChannel".into()],
            max_connections: 50_000,
            max_subscriptions: 16,
        }
    }
}

impl TargetConfig {
    /// Reads a TOML config file through the shared loader (`Source::read` →
    /// `deserialize` → [`TargetConfig::validate_in`]); errors name the file, line,
    /// column and key.
    pub fn load(path: &Path) -> Result<Self, TargetError> {
        Self::from_source(&Source::read(path)?)
    }

    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TargetError> {
        Self::from_source(&Source::new(origin, text))
    }

    fn from_source(src: &Source) -> Result<Self, TargetError> {
        let config: TargetConfig = src.deserialize()?;
        config.validate_in(src)?;
        Ok(config)
    }

    /// The configuration as TOML (the format [`TargetConfig::load`] reads).
    pub fn to_toml(&self) -> Result<String, TargetError> {
        toml::to_string(self).map_err(|e| TargetError::Render {
            message: e.to_string(),
        })
    }

    /// The configuration with every password replaced by [`MASK`]: the only form
    /// shown to people (`powertune target --print-config`).
    pub fn masked(&self) -> TargetConfig {
        let mut shown = self.clone();
        shown.auth.password = MASK.into();
        shown.redis.url = shown.redis.url.map(|u| powertune_core::redact::url(&u));
        for u in &mut shown.auth.users {
            u.password = MASK.into();
        }
        shown
    }

    /// [`TargetConfig::masked`] as TOML.
    pub fn to_masked_toml(&self) -> Result<String, TargetError> {
        self.masked().to_toml()
    }

    /// Sets a route's error rate from `ROUTE=RATE` (`execute=0.02`).
    pub fn set_error_rate(&mut self, spec: &str) -> Result<(), TargetError> {
        let bad = |reason: &str| TargetError::Invalid {
            field: "--error-rate".into(),
            value: spec.to_string(),
            reason: reason.to_string(),
            example: "execute=0.02 (routes: login, execute, missions, dashboard, health)".into(),
        };
        let (key, rate) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected ROUTE=RATE"))?;
        let rate: f64 = rate
            .trim()
            .parse()
            .map_err(|_| bad("the rate is not a number"))?;
        let route = self
            .routes
            .get_mut(key.trim())
            .ok_or_else(|| bad("unknown route"))?;
        route.error_rate = rate;
        Ok(())
    }

    /// Checks every value; returns the typed settings the server runs with. Errors
    /// name the key (`pool_size: 0 must be between 1 and 10000, e.g. pool_size = 25`)
    /// under [`IN_CODE`]; [`TargetConfig::validate_in`] places them in a file.
    pub fn validate(&self) -> Result<Settings, TargetError> {
        self.validate_in(&Source::new(IN_CODE, ""))
    }

    /// As [`TargetConfig::validate`], with every error at its key's place in `src`
    /// (`FILE:LINE:COL: KEY: WHY, e.g. RIGHT`), through `Source::error`.
    pub fn validate_in(&self, src: &Source) -> Result<Settings, TargetError> {
        let invalid = |key: &str, value: String, reason: &str, example: &str| {
            Err(TargetError::Config(
                src.error(key, format!("{value} {reason}, e.g. {example}")),
            ))
        };
        self.llm.validate(src)?;
        self.telemetry.validate(src)?;
        let dur = |d: Duration| format!("\"{}\"", powertune_core::duration::format(d));
        if !(1..=10_000).contains(&self.pool_size) {
            return invalid(
                "pool_size",
                self.pool_size.to_string(),
                "must be between 1 and 10000",
                "pool_size = 25",
            );
        }
        if self.pool_timeout.is_zero() || self.pool_timeout > Duration::from_secs(600) {
            return invalid(
                "pool_timeout",
                dur(self.pool_timeout),
                "must be above 0 and at most 10m",
                "pool_timeout = \"5s\"",
            );
        }
        if self.extra_delay > Duration::from_secs(600) {
            return invalid(
                "extra_delay",
                dur(self.extra_delay),
                "must be at most 10m",
                "extra_delay = \"50ms\"",
            );
        }
        self.redis.validate_in(src)?;
        if !(1..=1024).contains(&self.cpu_workers) {
            return invalid(
                "cpu_workers",
                self.cpu_workers.to_string(),
                "must be between 1 and 1024",
                "cpu_workers = 2",
            );
        }
        if !(1..=10_000_000).contains(&self.max_tokens) {
            return invalid(
                "max_tokens",
                self.max_tokens.to_string(),
                "must be between 1 and 10000000",
                "max_tokens = 100000",
            );
        }
        if !(1..=10_000).contains(&self.recent_missions) {
            return invalid(
                "recent_missions",
                self.recent_missions.to_string(),
                "must be between 1 and 10000",
                "recent_missions = 20",
            );
        }
        if !(256..=64 * 1024 * 1024).contains(&self.max_body_bytes) {
            return invalid(
                "max_body_bytes",
                self.max_body_bytes.to_string(),
                "must be between 256 and 67108864",
                "max_body_bytes = 65536",
            );
        }
        let domain = self.auth.email_domain.trim().to_ascii_lowercase();
        if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
            return invalid(
                "auth.email_domain",
                format!("{:?}", self.auth.email_domain),
                "must be a bare domain",
                "email_domain = \"example.com\"",
            );
        }
        if self.auth.password.is_empty() {
            return invalid(
                "auth.password",
                "\"\"".into(),
                "must not be empty",
                "password = \"demo\"",
            );
        }
        for (i, u) in self.auth.users.iter().enumerate() {
            if !u.email.contains('@') || u.password.is_empty() {
                // The password itself is never echoed.
                return invalid(
                    &format!("auth.users[{i}]"),
                    format!("email {:?}", u.email),
                    "needs an email with @ and a non-empty password",
                    "users = [{ email = \"ops@example.com\", password = \"s3cret\" }]",
                );
            }
        }
        for (key, rc) in [
            ("login", &self.routes.login),
            ("execute", &self.routes.execute),
            ("missions", &self.routes.missions),
            ("dashboard", &self.routes.dashboard),
            ("health", &self.routes.health),
        ] {
            if !(0.0..=1.0).contains(&rc.error_rate) {
                return invalid(
                    &format!("routes.{key}.error_rate"),
                    rc.error_rate.to_string(),
                    "must be between 0.0 and 1.0",
                    "error_rate = 0.02",
                );
            }
            if rc.delay > Duration::from_secs(600) {
                return invalid(
                    &format!("routes.{key}.delay"),
                    dur(rc.delay),
                    "must be at most 10m",
                    "delay = \"100ms\"",
                );
            }
            if rc.cpu > Duration::from_secs(10) {
                return invalid(
                    &format!("routes.{key}.cpu"),
                    dur(rc.cpu),
                    "must be at most 10s",
                    "cpu = \"5ms\"",
                );
            }
            for (part, l) in [("db", &rc.db), ("work", &rc.work)] {
                let field = format!("routes.{key}.{part}");
                if !(0.0..=3.0).contains(&l.spread) {
                    return invalid(
                        &format!("{field}.spread"),
                        l.spread.to_string(),
                        "must be between 0.0 and 3.0",
                        "spread = 0.4",
                    );
                }
                if l.median > Duration::from_secs(600) || l.max > Duration::from_secs(600) {
                    return invalid(
                        &field,
                        format!("median {}, max {}", dur(l.median), dur(l.max)),
                        "must be at most 10m",
                        "{ median = \"20ms\", spread = 0.3, max = \"2s\" }",
                    );
                }
                if l.max < l.median {
                    return invalid(
                        &format!("{field}.max"),
                        format!("{} (median {})", dur(l.max), dur(l.median)),
                        "must be at least the median",
                        "{ median = \"20ms\", max = \"2s\" }",
                    );
                }
            }
        }
        let c = &self.cable;
        if c.ping_interval < Duration::from_millis(100)
            || c.ping_interval > Duration::from_secs(3600)
        {
            return invalid(
                "cable.ping_interval",
                dur(c.ping_interval),
                "must be between 100ms and 1h",
                "ping_interval = \"3s\"",
            );
        }
        if c.broadcast_interval < Duration::from_millis(10)
            || c.broadcast_interval > Duration::from_secs(3600)
        {
            return invalid(
                "cable.broadcast_interval",
                dur(c.broadcast_interval),
                "must be between 10ms and 1h",
                "broadcast_interval = \"1s\"",
            );
        }
        if c.channels.is_empty() || c.channels.iter().any(|ch| ch.trim().is_empty()) {
            return invalid(
                "cable.channels",
                format!("{:?}", c.channels),
                "must name at least one channel, none empty",
                "channels = [\"MonitoringChannel\"]",
            );
        }
        if !(1..=1_000_000).contains(&c.max_connections) {
            return invalid(
                "cable.max_connections",
                c.max_connections.to_string(),
                "must be between 1 and 1000000",
                "max_connections = 50000",
            );
        }
        if !(1..=1000).contains(&c.max_subscriptions) {
            return invalid(
                "cable.max_subscriptions",
                c.max_subscriptions.to_string(),
                "must be between 1 and 1000",
                "max_subscriptions = 16",
            );
        }
        Ok(Settings {
            config: self.clone(),
            email_domain: domain,
        })
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) config: TargetConfig,
    /// Lower-case email domain for the "any user" mode.
    pub(crate) email_domain: String,
}

impl Settings {
    /// The configuration these settings were validated from.
    pub fn config(&self) -> &TargetConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_roundtrips_through_toml() {
        let c = TargetConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back = TargetConfig::from_toml(&text, "x.toml").unwrap();
        assert_eq!(back.pool_size, 25);
        assert_eq!(back.routes.execute.work.median, Duration::from_millis(120));
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let c = TargetConfig::from_toml(
            "pool_size = 2\n[routes.execute]\ndb = { median = \"200ms\" }\nerror_rate = 0.1\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.pool_size, 2);
        assert_eq!(c.routes.execute.db.median, Duration::from_millis(200));
        assert_eq!(c.routes.execute.db.spread, 0.0);
        assert_eq!(c.routes.execute.work, RoutesConfig::default().execute.work);
        assert_eq!(c.routes.login, RoutesConfig::default().login);
        c.validate().unwrap();
    }

    #[test]
    fn a_route_table_changes_only_its_keys() {
        let c = TargetConfig::from_toml("[routes.execute]\nerror_rate = 0.1\n", "t.toml").unwrap();
        let d = RoutesConfig::default();
        assert_eq!(c.routes.execute.error_rate, 0.1);
        assert_eq!(c.routes.execute.db, d.execute.db);
        assert_eq!(c.routes.execute.work, d.execute.work);
        let c = TargetConfig::from_toml("[routes.login]\ndelay = \"20ms\"\n", "t.toml").unwrap();
        assert_eq!(c.routes.login.delay, Duration::from_millis(20));
        assert_eq!(c.routes.login.db, d.login.db);
        let e = TargetConfig::from_toml("[routes.logn]\ndelay = \"20ms\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().starts_with("t.toml:1:"), "{e}");
        let e = TargetConfig::from_toml(
            "[routes.login]\ndb = { median = \"1ms\", sprad = 1 }\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("t.toml:2:"), "{e}");
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let e = TargetConfig::from_toml("seed = 3\npool_sise = 2\n", "t.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("t.toml:2:1:"), "{s}");
        assert!(s.contains("pool_sise"), "{s}");
    }

    #[test]
    fn bad_duration_is_refused() {
        let e = TargetConfig::from_toml("pool_timeout = \"5\"\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("no unit"), "{e}");
    }

    #[test]
    fn validation_names_field_value_and_example() {
        let c = TargetConfig {
            pool_size: 0,
            ..Default::default()
        };
        let s = c.validate().unwrap_err().to_string();
        assert_eq!(
            s,
            "target settings: pool_size: 0 must be between 1 and 10000, e.g. pool_size = 25"
        );

        let mut c = TargetConfig::default();
        c.routes.dashboard.error_rate = 1.5;
        let s = c.validate().unwrap_err().to_string();
        assert!(s.contains("routes.dashboard.error_rate"), "{s}");

        let mut c = TargetConfig::default();
        c.routes.login.db = Latency {
            median: Duration::from_secs(2),
            spread: 0.1,
            max: Duration::from_secs(1),
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "target settings: routes.login.db.max: \"1s\" (median \"2s\") must be at least the median, e.g. { median = \"20ms\", max = \"2s\" }"
        );

        let mut c = TargetConfig::default();
        c.cable.channels.clear();
        assert!(c.validate().is_err());

        let c = TargetConfig {
            cpu_workers: 0,
            ..Default::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "target settings: cpu_workers: 0 must be between 1 and 1024, e.g. cpu_workers = 2"
        );
        let c =
            TargetConfig::from_toml("[routes.dashboard]\ncpu = \"11s\"\n", "t.toml").unwrap_err();
        assert!(
            c.to_string()
                .contains("routes.dashboard.cpu: \"11s\" must be at most 10s"),
            "{c}"
        );
        let c = TargetConfig::from_toml("[routes.dashboard]\ncpu = \"5ms\"\n", "t.toml").unwrap();
        assert_eq!(c.routes.dashboard.cpu, Duration::from_millis(5));
        assert_eq!(
            c.routes.dashboard.db,
            TargetConfig::default().routes.dashboard.db
        );
    }

    #[test]
    fn values_out_of_range_in_a_file_are_placed_at_their_key() {
        let e = TargetConfig::from_toml("seed = 3\npool_size = 0\n", "t.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:2:1: pool_size: 0 must be between 1 and 10000, e.g. pool_size = 25"
        );
        let e = TargetConfig::from_toml(
            "[routes.execute]\nerror_rate = 0.1\n[routes.login]\nerror_rate = 1.5\n",
            "t.toml",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:4:1: routes.login.error_rate: 1.5 must be between 0.0 and 1.0, e.g. error_rate = 0.02"
        );
        let e =
            TargetConfig::from_toml("[cable]\nping_interval = \"10ms\"\n", "t.toml").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "t.toml:2:1: cable.ping_interval: \"10ms\" must be between 100ms and 1h"
            ),
            "{e}"
        );
        let e = TargetConfig::from_toml(
            "[auth]\nusers = [{ email = \"nobody\", password = \"hunter2\" }]\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("t.toml:2:10: auth.users[0]: "), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn listed_user_password_is_never_echoed() {
        let mut c = TargetConfig::default();
        c.auth.users.push(UserConfig {
            email: "nobody".into(),
            password: "hunter2".into(),
        });
        let s = c.validate().unwrap_err().to_string();
        assert!(!s.contains("hunter2"), "{s}");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("\"demo\""), "{d}");
        assert!(d.contains("nobody"), "{d}");
    }

    #[test]
    fn the_masked_config_hides_every_password_and_keeps_the_rest() {
        let mut c = TargetConfig::default();
        c.auth.password = "topsecret".into();
        c.auth.users.push(UserConfig {
            email: "ops@example.com".into(),
            password: "hunter2".into(),
        });
        c.pool_size = 7;
        let text = c.to_masked_toml().unwrap();
        assert!(
            !text.contains("topsecret") && !text.contains("hunter2"),
            "{text}"
        );
        assert_eq!(text.matches(MASK).count(), 2, "{text}");
        let back = TargetConfig::from_toml(&text, "masked.toml").unwrap();
        assert_eq!(back.pool_size, 7);
        assert_eq!(back.auth.users[0].email, "ops@example.com");
        assert_eq!(back.auth.password, MASK);
        assert_eq!(c.auth.password, "topsecret", "the original is untouched");
    }

    #[test]
    fn error_rate_flag() {
        let mut c = TargetConfig::default();
        c.set_error_rate("execute=0.02").unwrap();
        assert_eq!(c.routes.execute.error_rate, 0.02);
        assert!(c.set_error_rate("nope=0.1").is_err());
        assert!(c.set_error_rate("execute").is_err());
        assert!(c.set_error_rate("execute=lots").is_err());
        c.set_error_rate("login=2").unwrap();
        assert!(c.validate().is_err());
    }
}
