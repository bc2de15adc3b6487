//! The connection: the `--url` is validated before any socket opens, the password
//! never leaves this module (errors and reports show the URL with `***`), and every
//! command goes through [`Conn::query`] / [`Conn::pipe`], which turn failures into
//! [`RedisError::Query`] naming the command.
//!
//! TLS: `rediss://` verifies the server's certificate against the system's CAs, or
//! against the CA file given with [`RedisUrl::with_tls`]; `rediss://...#insecure` (or
//! `insecure` there) encrypts without checking it. An ACL user is given in the URL,
//! `rediss://USER:PASSWORD@host:port/0`.

use crate::error::RedisError;
use powertune_core::redact;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Value};
use std::path::Path;
use std::time::Duration;

/// A validated Redis location: what to connect to and how to name it in messages.
#[derive(Debug, Clone)]
pub struct RedisUrl {
    full: String,
    /// The URL with any password replaced by `***`: safe for messages and reports.
    pub redacted: String,
    /// The database index the URL selects (0 when it names none).
    pub db: u32,
    secret: Option<String>,
    /// `Some` for `rediss://`: how the server's certificate is checked.
    pub tls: Option<RedisTls>,
}

/// How a `rediss://` connection checks the server's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The CA file given (`--tls-ca`) and its PEM text; `None`: the system's CAs.
    pub ca: Option<(String, Vec<u8>)>,
    /// Encrypt without checking the certificate (`--tls-insecure`, `#insecure`).
    pub insecure: bool,
}

const EXAMPLE: &str = "redis://127.0.0.1:6379/0";

impl RedisUrl {
    /// Checks the URL: scheme `redis://` (or `unix://`), a host, an optional port and an
    /// optional numeric database index.
    pub fn parse(input: &str) -> Result<RedisUrl, RedisError> {
        let bad = |shown: &str, reason: String| RedisError::Input {
            input: format!("--url {shown}"),
            reason,
            example: EXAMPLE.to_string(),
        };
        let parsed = url::Url::parse(input).map_err(|e| bad(&redact::url(input), e.to_string()))?;
        let secret = parsed.password().map(str::to_string);
        let redacted = redact::url(input);
        let tls = match parsed.scheme() {
            "redis" | "unix" | "redis+unix" => None,
            "rediss" => Some(RedisTls {
                ca: None,
                insecure: parsed.fragment() == Some("insecure"),
            }),
            other => {
                return Err(bad(
                    &redacted,
                    format!("scheme {other}:// is not a Redis URL"),
                ))
            }
        };
        match parsed.fragment() {
            None => {}
            Some("insecure") if tls.is_some() => {}
            Some(f) => {
                return Err(bad(
                    &redacted,
                    format!("fragment #{f} is not understood (only rediss://...#insecure is)"),
                ))
            }
        }
        let tcp = matches!(parsed.scheme(), "redis" | "rediss");
        if tcp && parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(&redacted, "no host".into()));
        }
        let path = parsed.path().trim_matches('/');
        let db = if !tcp || path.is_empty() {
            parsed
                .query_pairs()
                .find(|(k, _)| k == "db")
                .map(|(_, v)| v.to_string())
                .map_or(Ok(0), |v| {
                    v.parse::<u32>()
                        .map_err(|_| bad(&redacted, format!("database {v:?} is not a number")))
                })?
        } else {
            path.parse::<u32>().map_err(|_| {
                bad(
                    &redacted,
                    format!(
                        "database {path:?} is not a number (the path selects a database index)"
                    ),
                )
            })?
        };
        Ok(RedisUrl {
            full: input.to_string(),
            redacted,
            db,
            secret: secret.filter(|s| !s.is_empty()),
            tls,
        })
    }

    /// Applies `--tls-ca FILE` (trust only that CA, read now) and `--tls-insecure`
    /// (do not check the certificate); both need a `rediss://` URL and exclude each
    /// other.
    pub fn with_tls(mut self, ca: Option<&Path>, insecure: bool) -> Result<RedisUrl, RedisError> {
        if ca.is_none() && !insecure {
            return Ok(self);
        }
        let flag = if insecure {
            "--tls-insecure"
        } else {
            "--tls-ca"
        };
        let bad = |reason: String| RedisError::Input {
            input: flag.to_string(),
            reason,
            example: "--url rediss://cache.internal:6380/0 --tls-ca ca.pem".to_string(),
        };
        let Some(tls) = self.tls.as_mut() else {
            return Err(bad(format!(
                "needs a TLS URL (rediss://), not {}",
                self.redacted
            )));
        };
        if ca.is_some() && insecure {
            return Err(bad("--tls-ca and --tls-insecure exclude each other: check the certificate against the CA, or not at all".into()));
        }
        tls.insecure |= insecure;
        if let Some(path) = ca {
            let shown = path.display().to_string();
            let text = powertune_core::baseline::read_limited(path)
                .map_err(|e| bad(format!("{shown}: {e}")))?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(bad(format!("{shown}: no PEM certificate in the file")));
            }
            tls.ca = Some((shown, text.into_bytes()));
        }
        Ok(self)
    }

    /// The client for this URL, with its TLS settings.
    fn client(&self) -> redis::RedisResult<redis::Client> {
        let Some(tls) = &self.tls else {
            return redis::Client::open(self.full.as_str());
        };
        // The client library takes the process's default TLS provider; with more than
        // one compiled in there is none until one is chosen. An error means another
        // part of the process chose first, which is as good.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let base = self.full.split('#').next().unwrap_or(&self.full);
        let url = if tls.insecure {
            format!("{base}#insecure")
        } else {
            base.to_string()
        };
        match &tls.ca {
            None => redis::Client::open(url),
            Some((_, pem)) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
    }

    /// A refused server certificate in words, or `None` for any other failure.
    fn explain_tls(&self, text: &str) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let trusted = tls.ca.as_ref().map_or_else(
            || "the system's CAs".to_string(),
            |(p, _)| format!("--tls-ca {p}"),
        );
        if text.contains("NotValidForName") || text.contains("certificate not valid for name") {
            let detail = text
                .split_once("invalid peer certificate: ")
                .map_or(text, |(_, d)| d);
            Some(format!("TLS: the server's certificate does not name the host connected to ({detail}); connect by a name it lists"))
        } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
            Some(format!(
                "TLS: the server's certificate is not signed by a CA in {trusted} (give the CA of the server's provider with --tls-ca FILE)"
            ))
        } else if text.contains("invalid peer certificate") {
            Some(format!(
                "TLS: the server's certificate was refused ({text})"
            ))
        } else {
            None
        }
    }

    /// Removes the password from a message produced by the client library.
    pub fn scrub(&self, msg: &str) -> String {
        let msg = msg.replace(&self.full, &self.redacted);
        match &self.secret {
            Some(s) => msg.replace(s.as_str(), "***"),
            None => msg,
        }
    }
}

/// Where to connect and how long to wait: the connection part of every command's
/// options, validated before any socket opens.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    pub url: RedisUrl,
    /// For the connection and for each reply.
    pub timeout: Duration,
}

impl ConnOptions {
    /// Opens the connection ([`Conn::open`]).
    pub async fn open(&self) -> Result<Conn, RedisError> {
        Conn::open(&self.url, self.timeout).await
    }
}

/// An open connection to one database of one server.
#[derive(Clone)]
pub struct Conn {
    con: MultiplexedConnection,
    /// Where it goes, safe to print.
    pub url: RedisUrl,
}

impl Conn {
    /// Connects (with `timeout` for the connection and for each reply), selects the
    /// database and checks the server answers PING.
    pub async fn open(url: &RedisUrl, timeout: Duration) -> Result<Conn, RedisError> {
        let connect_err = |reason: String| RedisError::Connect {
            url: url.redacted.clone(),
            reason: url.scrub(&reason),
        };
        let client = url.client().map_err(|e| connect_err(e.to_string()))?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let con = match client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                if text.contains("DB index is out of range") || text.contains("invalid DB index") {
                    return Err(connect_err(format!(
                        "database {} does not exist on this server (it has fewer databases; example: {EXAMPLE})",
                        url.db
                    )));
                }
                if let Some(why) = url.explain_tls(&text) {
                    return Err(connect_err(why));
                }
                return Err(connect_err(text));
            }
        };
        let mut conn = Conn {
            con,
            url: url.clone(),
        };
        let pong: String = conn.query(redis::cmd("PING"), "PING").await?;
        if pong != "PONG" {
            return Err(RedisError::Parse {
                url: url.redacted.clone(),
                what: "the reply to PING".into(),
                reason: format!("expected PONG, got {pong:?}: is this a Redis server?"),
            });
        }
        Ok(conn)
    }

    /// Runs one command; `name` is how the command is named in errors.
    pub async fn query<T: FromRedisValue>(
        &mut self,
        cmd: redis::Cmd,
        name: &str,
    ) -> Result<T, RedisError> {
        let v: Value = cmd
            .query_async(&mut self.con)
            .await
            .map_err(|e| self.query_err(name, &e))?;
        T::from_redis_value(v).map_err(|e| RedisError::Parse {
            url: self.url.redacted.clone(),
            what: format!("the reply to {name}"),
            reason: self.url.scrub(&e.to_string()),
        })
    }

    /// Runs a pipeline; one reply per command, server errors kept per item (a
    /// `Value::ServerError`) so one failing command does not lose the batch.
    pub async fn pipe(
        &mut self,
        pipe: &mut redis::Pipeline,
        name: &str,
    ) -> Result<Vec<Value>, RedisError> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        pipe.ignore_errors();
        pipe.query_async::<Vec<Value>>(&mut self.con)
            .await
            .map_err(|e| self.query_err(name, &e))
    }

    fn query_err(&self, name: &str, e: &redis::RedisError) -> RedisError {
        let reason = self.url.scrub(&e.to_string());
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
        {
            RedisError::Connect {
                url: self.url.redacted.clone(),
                reason: format!("{name}: {reason}"),
            }
        } else {
            RedisError::Query {
                url: self.url.redacted.clone(),
                command: name.to_string(),
                reason,
            }
        }
    }
}

/// CONFIG GET one parameter; Err(reason) when CONFIG is disabled or denied.
pub async fn config_get(conn: &mut Conn, name: &str) -> Result<Option<String>, String> {
    let mut c = redis::cmd("CONFIG");
    c.arg("GET").arg(name);
    let v: redis::Value = match conn.query(c, "CONFIG GET").await {
        Ok(v) => v,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(reason) = crate::conn::server_error(&v) {
        return Err(reason);
    }
    let pairs: Vec<String> = match &v {
        redis::Value::Map(m) => m
            .iter()
            .flat_map(|(k, v)| [as_string(k), as_string(v)])
            .flatten()
            .collect(),
        other => as_array(other)
            .map(|a| a.iter().filter_map(as_string).collect())
            .unwrap_or_default(),
    };
    Ok(pairs
        .chunks(2)
        .find(|p| p[0] == name)
        .and_then(|p| p.get(1).cloned()))
}

/// A reply item as a string (bulk, simple or verbatim), if it is one.
pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A reply item as an integer (also parsing numeric strings).
pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        Value::SimpleString(s) => s.trim().parse().ok(),
        Value::Double(d) => Some(*d as i64),
        _ => None,
    }
}

/// A reply item as raw bytes.
pub fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A reply item as an array of items.
pub fn as_array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// The server's error message when the item is an error reply.
pub fn server_error(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated_and_redacted() {
        let u = RedisUrl::parse("redis://:s3cret@127.0.0.1:6379/3").unwrap();
        assert_eq!(u.db, 3);
        assert!(!u.redacted.contains("s3cret"), "{}", u.redacted);
        assert_eq!(u.scrub("auth s3cret failed"), "auth *** failed");
        let e = RedisUrl::parse("redis://u:s3cret@127.0.0.1:6379/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a number") && !e.contains("s3cret") && e.contains("example"),
            "{e}"
        );
        let e = RedisUrl::parse("http://127.0.0.1").unwrap_err().to_string();
        assert!(e.contains("not a Redis URL"), "{e}");
        let e = RedisUrl::parse("not a url :pw@").unwrap_err().to_string();
        assert!(e.contains("example: redis://"), "{e}");
        assert_eq!(RedisUrl::parse("redis://localhost").unwrap().db, 0);
        let e = RedisUrl::parse("redis://u:pw@h:99999/0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("u:***@") && !e.contains(":pw@"), "{e}");
    }

    #[test]
    fn tls_urls_and_options() {
        let u = RedisUrl::parse("rediss://app:s3cret@cache:6380/2").unwrap();
        assert_eq!(u.db, 2);
        assert_eq!(u.tls, Some(RedisTls::default()));
        assert!(!u.redacted.contains("s3cret"));
        let u = RedisUrl::parse("rediss://cache:6380/0#insecure").unwrap();
        assert!(u.tls.as_ref().unwrap().insecure);
        let e = RedisUrl::parse("redis://cache/0#insecure")
            .unwrap_err()
            .to_string();
        assert!(e.contains("#insecure"), "{e}");

        let e = RedisUrl::parse("redis://cache/0")
            .unwrap()
            .with_tls(None, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--tls-insecure: needs a TLS URL (rediss://)"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("powertune-redis-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let e = RedisUrl::parse("rediss://cache/0")
            .unwrap()
            .with_tls(Some(&not_pem), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = RedisUrl::parse("rediss://cache/0")
            .unwrap()
            .with_tls(Some(&not_pem), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exclude each other"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let u = RedisUrl::parse("rediss://cache/0")
            .unwrap()
            .with_tls(None, true)
            .unwrap();
        assert!(u.tls.unwrap().insecure);
    }
}
