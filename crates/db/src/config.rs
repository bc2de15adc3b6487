//! Connection settings: a raw serde struct (what flags and files say) validated into
//! a typed [`DbConfig`] before any socket opens.

use crate::error::DbError;
use powertune_core::redact::{self, Secrets};
use serde::Deserialize;
use std::str::FromStr;
use std::time::Duration;

/// An example of a right URL, quoted in error messages.
pub const URL_EXAMPLE: &str = "postgres://app@db.internal:5432/app_production";

/// Settings as given (flags or a file); every field is validated by [`RawDbConfig::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDbConfig {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=disable]`.
    pub url: String,
    /// `statement_timeout` of the session (every query), e.g. `5s`.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: String,
    /// `lock_timeout` of the session, e.g. `1s`.
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: String,
    /// How long to wait for the server to answer the connection, e.g. `5s`.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
}

fn default_statement_timeout() -> String {
    "5s".into()
}
fn default_lock_timeout() -> String {
    "1s".into()
}
fn default_connect_timeout() -> String {
    "5s".into()
}

impl RawDbConfig {
    /// Settings with the default timeouts.
    pub fn new(url: &str) -> RawDbConfig {
        RawDbConfig {
            url: url.to_string(),
            statement_timeout: default_statement_timeout(),
            lock_timeout: default_lock_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }

    /// Checks everything and builds the typed configuration. No I/O.
    pub fn validate(&self) -> Result<DbConfig, DbError> {
        let redacted = redact_url(&self.url);
        let lower = self.url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            return Err(DbError::Config(format!(
                "--url `{redacted}` is not a PostgreSQL URL (expected e.g. {URL_EXAMPLE})"
            )));
        }
        let mut pg = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            DbError::Config(format!(
                "--url `{redacted}` cannot be parsed: {} (expected e.g. {URL_EXAMPLE})",
                crate::error::describe(&e, &secrets_of(&self.url, None))
            ))
        })?;
        if pg.get_hosts().is_empty() {
            return Err(DbError::Config(format!(
                "--url `{redacted}` names no host (expected e.g. {URL_EXAMPLE})"
            )));
        }
        if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(DbError::Config(format!(
                "--url `{redacted}` asks for sslmode=require but powertune connects without TLS; use sslmode=disable or prefer, through a TLS tunnel (stunnel, PgBouncer) when the network needs one"
            )));
        }
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let statement_timeout = timeout("statement_timeout", &self.statement_timeout)?;
        let lock_timeout = timeout("lock_timeout", &self.lock_timeout)?;
        let connect_timeout = timeout("connect_timeout", &self.connect_timeout)?;
        pg.application_name("powertune");
        pg.connect_timeout(connect_timeout);
        let secrets = secrets_of(&self.url, password.as_deref());
        Ok(DbConfig {
            pg,
            redacted_url: redacted,
            secrets,
            statement_timeout,
            lock_timeout,
            connect_timeout,
        })
    }
}

fn timeout(name: &str, text: &str) -> Result<Duration, DbError> {
    let d = powertune_core::duration::parse(text)
        .map_err(|e| DbError::Config(format!("{name}: {e}")))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(DbError::Config(format!(
            "{name} `{text}` must be between 1ms and 1h (e.g. 5s)"
        )));
    }
    Ok(d)
}

/// `url` with any password (user info or secret parameter) masked: the one policy of
/// [`powertune_core::redact`].
pub fn redact_url(url: &str) -> String {
    redact::url(url)
}

/// The strings that must never be printed: the URL's password (raw and decoded) and
/// the password the driver decoded from it.
fn secrets_of(url: &str, decoded: Option<&str>) -> Secrets {
    let mut out = Secrets::from_url(url);
    if let Some(d) = decoded {
        out.add(d);
    }
    out
}

/// Validated connection settings.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub pg: tokio_postgres::Config,
    /// The URL with its password replaced by `***`: the only form ever printed.
    pub redacted_url: String,
    /// Values to scrub from every message (the password, raw and decoded).
    pub secrets: Secrets,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
}

impl DbConfig {
    /// A tokio-postgres error as one redacted line.
    pub fn describe(&self, e: &tokio_postgres::Error) -> String {
        crate::error::describe(e, &self.secrets)
    }

    /// Any text with the secrets removed.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info_and_parameter_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            redact_url("postgresql://db/app?user=x&password=hunter2&sslmode=disable"),
            "postgresql://db/app?user=x&password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        let s = secrets_of("postgres://a:s3cr%40t@h/d", Some("s3cr@t"));
        assert_eq!(s.scrub("x s3cr%40t y s3cr@t"), "x *** y ***");
    }

    #[test]
    fn validation_names_the_input_and_hides_the_password() {
        let e = RawDbConfig::new("mysql://root:topsecret@db/app")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("mysql://root:***@db/app"), "{e}");
        assert!(e.contains(URL_EXAMPLE));
        assert!(!e.contains("topsecret"));

        let e = RawDbConfig::new("postgres://root:topsecret@db:notaport/app")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("topsecret"), "{e}");

        let e = RawDbConfig::new("postgres://app:topsecret@db/app?sslmode=require")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode=disable"), "{e}");
        assert!(!e.contains("topsecret"), "{e}");

        let mut raw = RawDbConfig::new("postgres://app:topsecret@db/app");
        raw.statement_timeout = "5".into();
        assert!(raw.validate().unwrap_err().to_string().contains("no unit"));

        let ok = RawDbConfig::new("postgres://app:topsecret@db/app")
            .validate()
            .unwrap();
        assert_eq!(ok.redacted_url, "postgres://app:***@db/app");
        assert_eq!(
            ok.redact("FATAL password topsecret wrong"),
            "FATAL password *** wrong"
        );
    }
}
