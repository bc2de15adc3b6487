//! `[shared]`: replicas share breaker state and rpm limits through one Redis. The
//! URL is checked with the Redis engine's own rules (`redis://`, `rediss://`, an ACL
//! user, `tls_ca`) before any socket opens; its password never appears in errors,
//! `/status` or logs.

use super::duration::Setting;
use super::{ConfigError, Source};
use powertune_core::config_file::DurationField;
use powertune_redis::RedisUrl;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    /// `redis://[USER:PASSWORD@]HOST:PORT/DB` or `rediss://...` (TLS).
    pub redis_url: Option<String>,
    /// Or: the environment variable holding that URL (keeps a password out of the file).
    pub redis_url_env: Option<String>,
    /// `rediss://`: trust only this CA (PEM), relative to the config file.
    pub tls_ca: Option<String>,
    /// Longest a call waits on Redis before it goes on with local state.
    pub timeout: Option<DurationField>,
    /// How long a breaker state read from Redis is trusted before it is asked again.
    pub cache: Option<DurationField>,
    /// While on local state: how often the replica tries to reach Redis again.
    pub retry_interval: Option<DurationField>,
    /// Prefix of every key the gateway writes.
    pub key_prefix: Option<String>,
}

/// `[shared]`, validated. `Debug` shows the URL with its password redacted.
#[derive(Clone)]
pub struct SharedConfig {
    /// Where Redis is (its password only inside; `redacted` for messages).
    pub url: RedisUrl,
    pub timeout: Duration,
    pub cache: Duration,
    pub retry_interval: Duration,
    pub key_prefix: String,
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("url", &self.url.redacted)
            .field("timeout", &self.timeout)
            .field("cache", &self.cache)
            .field("retry_interval", &self.retry_interval)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

const TIMEOUT: Setting = Setting::millis("shared.timeout", "", 50);
const CACHE: Setting = Setting::millis("shared.cache", "", 1000);
const RETRY_INTERVAL: Setting = Setting::millis("shared.retry_interval", "", 1000);
pub const DEFAULT_KEY_PREFIX: &str = "powertune:gateway";

impl RawShared {
    /// `None` when the section is absent or empty of a URL (nothing shared).
    pub(super) fn validate(
        self,
        src: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SharedConfig>, ConfigError> {
        let dir = Path::new(&src.path).parent();
        let url = match (&self.redis_url, &self.redis_url_env) {
            (None, None) => {
                if self.tls_ca.is_some() || self.timeout.is_some() || self.key_prefix.is_some()
                {
                    return Err(src.error(
                        "shared.redis_url",
                        "[shared] needs the Redis to share through, e.g. redis_url = \"redis://127.0.0.1:6379/5\"",
                    ));
                }
                return Ok(None);
            }
            (Some(_), Some(_)) => {
                return Err(src.error(
                    "shared.redis_url_env",
                    "give redis_url or redis_url_env, not both",
                ))
            }
            (Some(u), None) => (u.clone(), "shared.redis_url"),
            (None, Some(var)) => match env(var) {
                Some(v) if !v.trim().is_empty() => (v.trim().to_string(), "shared.redis_url_env"),
                _ => {
                    return Err(src.error(
                        "shared.redis_url_env",
                        format!("environment variable {var} is not set or empty; export it, e.g. export {var}=redis://127.0.0.1:6379/5"),
                    ))
                }
            },
        };
        let (text, key) = url;
        let ca = self.tls_ca.as_ref().map(|p| {
            let p = Path::new(p);
            match dir {
                Some(d) if p.is_relative() => d.join(p),
                _ => p.to_path_buf(),
            }
        });
        let url = RedisUrl::parse(&text)
            .and_then(|u| u.with_tls(ca.as_deref(), false))
            .map_err(|e| {
                let why = e.to_string();
                // the Redis engine names its flags (--url, --tls-ca); here they are keys
                let why = why
                    .strip_prefix("--url ")
                    .map(str::to_string)
                    .unwrap_or(why)
                    .replace("--tls-ca", "tls_ca");
                src.error(key, why)
            })?;
        let timeout = TIMEOUT.positive(src, self.timeout.as_ref(), None)?;
        let cache = CACHE.positive(src, self.cache.as_ref(), None)?;
        let retry_interval = RETRY_INTERVAL.positive(src, self.retry_interval.as_ref(), None)?;
        if timeout > Duration::from_secs(5) {
            return Err(src.error(
                "shared.timeout",
                format!(
                    "at most 5s: every call may wait this long when Redis stops answering (got {}), e.g. timeout = \"50ms\"",
                    powertune_core::duration::format(timeout)
                ),
            ));
        }
        let key_prefix = self
            .key_prefix
            .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
        if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
            return Err(src.error(
                "shared.key_prefix",
                format!("must be non-empty without braces or spaces (got {key_prefix:?}), e.g. key_prefix = \"{DEFAULT_KEY_PREFIX}\""),
            ));
        }
        Ok(Some(SharedConfig {
            url,
            timeout,
            cache,
            retry_interval,
            key_prefix,
        }))
    }
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
  rpm = 600
[models.fast]
targets = ["openai:gpt-4o-mini"]
"#;

    fn load(extra: &str) -> Result<Config, String> {
        let env = |k: &str| (k == "REDIS_URL").then(|| "redis://:pw@cache:6379/5".to_string());
        Config::from_toml(&format!("{BASE}{extra}"), "g.toml", &env)
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn shared_is_off_without_a_url_and_has_defaults_with_one() {
        assert!(load("").unwrap().shared.is_none());
        let c = load("[shared]\nredis_url = \"redis://127.0.0.1:6379/5\"\n").unwrap();
        let s = c.shared.unwrap();
        assert_eq!(s.url.db, 5);
        assert_eq!(s.timeout, Duration::from_millis(50));
        assert_eq!(s.cache, Duration::from_secs(1));
        assert_eq!(s.retry_interval, Duration::from_secs(1));
        assert_eq!(s.key_prefix, "powertune:gateway");
        // the rpm's burst: a second's worth by default
        assert_eq!(c.providers[0].credentials[0].rate(), Some((600, 10)));
        let c = load("[shared]\nredis_url_env = \"REDIS_URL\"\ntimeout = \"20ms\"\n").unwrap();
        let s = c.shared.unwrap();
        assert!(
            !format!("{s:?}").contains("pw@"),
            "the password stays out of Debug"
        );
        assert_eq!(s.url.redacted, "redis://:***@cache:6379/5");
    }

    #[test]
    fn bad_shared_sections_name_the_key() {
        let e = load("[shared]\nredis_url = \"http://cache:6379\"\n").unwrap_err();
        assert!(
            e.contains("shared.redis_url") && e.contains("not a Redis URL"),
            "{e}"
        );
        let e = load("[shared]\nredis_url = \"redis://:s3cret@cache:6379/x\"\n").unwrap_err();
        assert!(e.contains("not a number") && !e.contains("s3cret"), "{e}");
        let e = load("[shared]\ntimeout = \"20ms\"\n").unwrap_err();
        assert!(
            e.contains("shared.redis_url: [shared] needs the Redis"),
            "{e}"
        );
        let e = load("[shared]\nredis_url_env = \"NOPE\"\n").unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        let e = load("[shared]\nredis_url = \"redis://c/0\"\ntimeout = \"10s\"\n").unwrap_err();
        assert!(e.contains("shared.timeout: at most 5s"), "{e}");
        let e = load("[shared]\nredis_url = \"redis://c/0\"\nkey_prefix = \"a{b}\"\n").unwrap_err();
        assert!(e.contains("shared.key_prefix"), "{e}");
        let e = load("[shared]\nredis_url = \"redis://c/0\"\ntls_ca = \"ca.pem\"\n").unwrap_err();
        assert!(e.contains("tls_ca: needs a TLS URL (rediss://)"), "{e}");
        let e = load("[shared]\nredis_url = \"redis://c/0\"\nttl = 3\n").unwrap_err();
        assert!(e.contains("ttl"), "{e}");
    }

    #[test]
    fn burst_needs_rpm_and_stays_within_it() {
        let with = |cred: &str| {
            load(&format!(
                "[[providers]]\nname = \"p2\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n  [[providers.credentials]]\n  name = \"c\"\n  {cred}\n"
            ))
        };
        assert_eq!(
            with("rpm = 10\n  burst = 10").unwrap().providers[1].credentials[0].rate(),
            Some((10, 10))
        );
        let e = with("burst = 3").unwrap_err();
        assert!(e.contains("burst: is the burst of the rpm limit"), "{e}");
        let e = with("rpm = 10\n  burst = 11").unwrap_err();
        assert!(e.contains("must not exceed rpm"), "{e}");
        let e = with("rpm = 10\n  burst = 0").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
    }
}
