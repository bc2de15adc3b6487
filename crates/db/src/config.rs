//! Connection settings: a raw serde struct (what flags and files say) validated into
//! a typed [`DbConfig`] before any socket opens.

use crate::conninfo::{self, PgEnv};
use crate::error::DbError;
use crate::tls::TlsSettings;
use powertune_core::redact::{self, Secrets};
use serde::Deserialize;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// An example of a right URL, quoted in error messages.
pub const URL_EXAMPLE: &str = "postgres://app@db.internal:5432/app_production";

/// Settings as given (flags or a file); every field is validated by [`RawDbConfig::validate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDbConfig {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=verify-full&sslrootcert=FILE]`
    /// or libpq's `host=... dbname=... sslmode=...`; empty: the `PG*` variables alone.
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
    /// The `PG*` environment variables, defaults for what `url` leaves out.
    #[serde(skip)]
    pub env: Box<PgEnv>,
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
            env: Box::default(),
        }
    }

    /// Checks everything and builds the typed configuration. Reads the TLS
    /// certificate files it names; opens no socket.
    pub fn validate(&self) -> Result<DbConfig, DbError> {
        let redacted = redact_url(&self.url);
        let shown = if self.url.trim().is_empty() {
            "the PG* environment variables".to_string()
        } else {
            format!("--url `{redacted}`")
        };
        let bad = |why: String| DbError::Config(format!("{shown}: {why}"));
        let form = conninfo::form(&self.url).ok_or_else(|| {
            bad(format!(
                "not a PostgreSQL URL nor a key=value string (expected e.g. {URL_EXAMPLE} or \"host=db.internal dbname=app sslmode=verify-full\")"
            ))
        })?;
        let mut split = conninfo::split(&self.url, form).map_err(&bad)?;
        if let (conninfo::Form::Url, Some(port)) = (form, &self.env.port) {
            split.driver = conninfo::url_default_port(&split.driver, port);
        }
        let mut pg = tokio_postgres::Config::from_str(&split.driver).map_err(|e| {
            bad(format!(
                "cannot be parsed: {} (expected e.g. {URL_EXAMPLE})",
                crate::error::describe(&e, &secrets_of(&self.url, None))
            ))
        })?;
        conninfo::apply_env(&mut pg, &self.env).map_err(&bad)?;
        if pg.get_hosts().is_empty() {
            return Err(bad(format!(
                "names no host, nor does PGHOST (expected e.g. {URL_EXAMPLE})"
            )));
        }
        let tls = conninfo::tls_settings(&split.tls, &self.env).map_err(&bad)?;
        pg.ssl_mode(tls.mode.driver());
        let tls_config = Arc::new(tls.client_config().map_err(&bad)?);
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let statement_timeout = timeout("statement_timeout", &self.statement_timeout)?;
        let lock_timeout = timeout("lock_timeout", &self.lock_timeout)?;
        let connect_timeout = timeout("connect_timeout", &self.connect_timeout)?;
        pg.application_name("powertune");
        pg.connect_timeout(connect_timeout);
        let secrets = secrets_of(&self.url, password.as_deref());
        let redacted_url = if self.url.trim().is_empty() {
            target_of(&pg)
        } else {
            redacted
        };
        Ok(DbConfig {
            pg,
            redacted_url,
            secrets,
            tls,
            tls_config,
            statement_timeout,
            lock_timeout,
            connect_timeout,
        })
    }
}

/// `user@host:port/database` of a configuration built from the environment, for
/// messages (never a password).
fn target_of(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or("?"),
        pg.get_dbname().unwrap_or("?")
    )
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
    /// `sslmode`, `sslrootcert`, `sslcert`, `sslkey` as given.
    pub tls: TlsSettings,
    /// The rustls configuration they ask for (certificates read).
    pub tls_config: Arc<rustls::ClientConfig>,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub connect_timeout: Duration,
}

impl DbConfig {
    /// A tokio-postgres error as one redacted line; a refused server certificate
    /// is said in words (which check failed and what to give instead).
    pub fn describe(&self, e: &tokio_postgres::Error) -> String {
        match crate::tls::explain_failure(e, &self.tls) {
            Some(why) => self
                .secrets
                .scrub(&format!("TLS (sslmode={}): {why}", self.tls.mode.as_str())),
            None => crate::error::describe(e, &self.secrets),
        }
    }

    /// The TLS connector for the driver.
    pub fn connector(&self) -> tokio_postgres_rustls::MakeRustlsConnect {
        tokio_postgres_rustls::MakeRustlsConnect::new((*self.tls_config).clone())
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

        let e = RawDbConfig::new("postgres://app:topsecret@db/app?sslmode=verify-full")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs sslrootcert"), "{e}");
        assert!(!e.contains("topsecret"), "{e}");
        let ok = RawDbConfig::new("postgres://app:topsecret@db/app?sslmode=require")
            .validate()
            .unwrap();
        assert_eq!(ok.tls.mode, crate::tls::SslMode::Require);
        assert_eq!(
            ok.pg.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );

        let mut raw = RawDbConfig::new("postgres://app:topsecret@db/app");
        raw.statement_timeout = "5".into();
        assert!(raw.validate().unwrap_err().to_string().contains("no unit"));

        let ok = RawDbConfig::new("postgres://app:topsecret@db/app")
            .validate()
            .unwrap();
        assert_eq!(ok.redacted_url, "postgres://app:***@db/app");
        assert_eq!(ok.tls.mode, crate::tls::SslMode::Prefer);
        assert_eq!(
            ok.redact("FATAL password topsecret wrong"),
            "FATAL password *** wrong"
        );
    }

    #[test]
    fn keyword_strings_and_the_environment() {
        let mut raw =
            RawDbConfig::new("host=db port=5433 user=app password='top secret' sslmode=disable");
        let ok = raw.validate().unwrap();
        assert_eq!(ok.pg.get_ports(), &[5433]);
        assert_eq!(ok.tls.mode, crate::tls::SslMode::Disable);
        assert!(
            !ok.redacted_url.contains("top secret"),
            "{}",
            ok.redacted_url
        );
        assert_eq!(ok.redact("FATAL top secret"), "FATAL ***");

        raw.url = String::new();
        *raw.env = PgEnv::from_lookup(|k| match k {
            "PGHOST" => Some("envdb".into()),
            "PGUSER" => Some("app".into()),
            "PGDATABASE" => Some("shop".into()),
            "PGPASSWORD" => Some("envsecret".into()),
            "PGSSLMODE" => Some("require".into()),
            _ => None,
        });
        let ok = raw.validate().unwrap();
        assert_eq!(ok.redacted_url, "app@envdb:5432/shop");
        assert_eq!(ok.tls.mode, crate::tls::SslMode::Require);
        assert_eq!(ok.redact("x envsecret"), "x ***");

        *raw.env = PgEnv::default();
        let e = raw.validate().unwrap_err().to_string();
        assert!(
            e.contains("PG* environment") && e.contains("no host"),
            "{e}"
        );
        let e = RawDbConfig::new("db.internal")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("key=value"), "{e}");
    }
}
