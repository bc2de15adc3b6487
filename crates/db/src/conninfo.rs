//! Connection strings as libpq reads them: a `postgres://` URL or a `key=value`
//! string, with `PG*` environment variables as defaults for what the string leaves
//! out. The TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) are taken
//! out here (the driver knows only some of them); the rest goes to the driver.

use crate::tls::{RootCert, SslMode, TlsSettings};
use percent_encoding::percent_decode_str;
use std::path::PathBuf;

/// The TLS parameters powertune handles itself.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// The libpq environment variables powertune reads, as values (the caller looks
/// them up; the library never reads the process environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgEnv {
    pub host: Option<String>,
    pub port: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
}

impl PgEnv {
    /// `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` through `lookup`; empty values count
    /// as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> PgEnv {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        PgEnv {
            host: get("PGHOST"),
            port: get("PGPORT"),
            database: get("PGDATABASE"),
            user: get("PGUSER"),
            password: get("PGPASSWORD"),
            sslmode: get("PGSSLMODE"),
            sslrootcert: get("PGSSLROOTCERT"),
            sslcert: get("PGSSLCERT"),
            sslkey: get("PGSSLKEY"),
        }
    }
}

/// Which form a connection string is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Url,
    Keywords,
}

/// The form of `text`, or `None` when it is neither a URL nor `key=value` pairs.
pub fn form(text: &str) -> Option<Form> {
    let lower = text.trim_start().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Some(Form::Url)
    } else if text.trim().is_empty() || text.contains('=') {
        Some(Form::Keywords)
    } else {
        None
    }
}

/// A connection string split in two: what the driver parses, and the TLS
/// parameters found in it (key, decoded value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub driver: String,
    pub tls: Vec<(String, String)>,
}

/// Takes the TLS parameters out of a URL's query or a keyword string.
pub fn split(text: &str, form: Form) -> Result<Split, String> {
    match form {
        Form::Url => Ok(split_url(text)),
        Form::Keywords => split_keywords(text),
    }
}

fn split_url(text: &str) -> Split {
    let Some((base, query)) = text.split_once('?') else {
        return Split {
            driver: text.to_string(),
            tls: vec![],
        };
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode_str(k).decode_utf8_lossy();
        if TLS_KEYS.contains(&key.as_ref()) {
            tls.push((
                key.into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            ));
        } else {
            kept.push(part);
        }
    }
    let driver = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Split { driver, tls }
}

/// libpq's keyword/value syntax: `key = value` pairs separated by spaces; a value
/// is single-quoted (with `\'` and `\\`) or runs to the next space.
pub fn keyword_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = text.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(format!("missing \"=\" after \"{key}\""));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(format!("unterminated quoted value of \"{key}\"")),
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn split_keywords(text: &str) -> Result<Split, String> {
    let (tls, kept): (Vec<_>, Vec<_>) = keyword_pairs(text)?
        .into_iter()
        .partition(|(k, _)| TLS_KEYS.contains(&k.as_str()));
    let driver = kept
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Split { driver, tls })
}

/// The TLS settings: the string's parameters first, then `PGSSL*`, then libpq's
/// defaults (`prefer`, no root certificate, no client certificate).
pub fn tls_settings(found: &[(String, String)], env: &PgEnv) -> Result<TlsSettings, String> {
    let param = |key: &str, env_value: &Option<String>| -> Option<String> {
        found
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| env_value.clone())
            .filter(|v| !v.is_empty())
    };
    let mode = match param("sslmode", &env.sslmode) {
        Some(m) => SslMode::parse(&m)?,
        None => SslMode::default(),
    };
    Ok(TlsSettings {
        mode,
        root_cert: param("sslrootcert", &env.sslrootcert).map(|v| RootCert::parse(&v)),
        cert: param("sslcert", &env.sslcert).map(PathBuf::from),
        key: param("sslkey", &env.sslkey).map(PathBuf::from),
    })
}

/// A URL whose hosts name no port, given `port` for each (the driver fills in 5432
/// for a URL host without one, so `PGPORT` has to be written into the URL).
pub fn url_default_port(url: &str, port: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| i + start);
    let authority = &url[start..end];
    let hosts_at = authority.rfind('@').map_or(start, |i| start + i + 1);
    let hosts = &url[hosts_at..end];
    let has_port = |h: &str| match h.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => h.contains(':'),
    };
    if hosts.is_empty() || hosts.split(',').any(has_port) {
        return url.to_string();
    }
    let with_ports = hosts
        .split(',')
        .map(|h| format!("{h}:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    format!("{}{with_ports}{}", &url[..hosts_at], &url[end..])
}

/// Fills what the string left out from `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`
/// and `PGDATABASE`, as libpq does (for a URL, `PGPORT` goes through
/// [`url_default_port`] first).
pub fn apply_env(pg: &mut tokio_postgres::Config, env: &PgEnv) -> Result<(), String> {
    if pg.get_hosts().is_empty() {
        if let Some(hosts) = &env.host {
            for h in hosts.split(',').filter(|h| !h.is_empty()) {
                pg.host(h);
            }
        }
    }
    if pg.get_ports().is_empty() {
        if let Some(ports) = &env.port {
            for p in ports.split(',') {
                let port = p
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| format!("PGPORT `{ports}` is not a port number (e.g. 5432)"))?;
                pg.port(port);
            }
        }
    }
    if pg.get_user().is_none() {
        if let Some(u) = &env.user {
            pg.user(u);
        }
    }
    if pg.get_password().is_none() {
        if let Some(p) = &env.password {
            pg.password(p);
        }
    }
    if pg.get_dbname().is_none() {
        if let Some(d) = &env.database {
            pg.dbname(d);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms_are_recognised() {
        assert_eq!(form("postgresql://db/app"), Some(Form::Url));
        assert_eq!(form("host=db dbname=app"), Some(Form::Keywords));
        assert_eq!(form(""), Some(Form::Keywords));
        assert_eq!(form("mysql://db"), None);
        assert_eq!(form("db.internal"), None);
    }

    #[test]
    fn url_tls_parameters_are_taken_out_and_decoded() {
        let s = split(
            "postgres://app@db/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca%20b.pem",
            Form::Url,
        )
        .unwrap();
        assert_eq!(s.driver, "postgres://app@db/app?application_name=x");
        assert_eq!(
            s.tls,
            kv(&[("sslmode", "verify-full"), ("sslrootcert", "/etc/ca b.pem")])
        );
        let s = split("postgres://db/app?sslmode=require", Form::Url).unwrap();
        assert_eq!(s.driver, "postgres://db/app");
    }

    #[test]
    fn keyword_strings_follow_libpq_quoting() {
        let pairs =
            keyword_pairs(r"host=db  port = 5433 password='it''s' dbname='my \'app\'' x=a\ b")
                .unwrap_err();
        assert!(pairs.contains("missing \"=\""), "{pairs}");
        let pairs = keyword_pairs(r"host=db  port = 5433 dbname='my \'app\'' x=a\ b").unwrap();
        assert_eq!(
            pairs,
            kv(&[
                ("host", "db"),
                ("port", "5433"),
                ("dbname", "my 'app'"),
                ("x", "a b")
            ])
        );
        assert!(keyword_pairs("host='db")
            .unwrap_err()
            .contains("unterminated"));
        let s = split(
            "host=db sslmode=verify-ca sslrootcert='/a b/ca.pem' user=app",
            Form::Keywords,
        )
        .unwrap();
        assert_eq!(s.driver, "host='db' user='app'");
        assert_eq!(
            s.tls,
            kv(&[("sslmode", "verify-ca"), ("sslrootcert", "/a b/ca.pem")])
        );
    }

    #[test]
    fn the_string_wins_over_the_environment() {
        let env = PgEnv::from_lookup(|k| match k {
            "PGSSLMODE" => Some("verify-full".into()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".into()),
            "PGHOST" => Some("envhost".into()),
            "PGPORT" => Some("6432".into()),
            "PGUSER" => Some("envuser".into()),
            "PGPASSWORD" => Some("envpw".into()),
            "PGDATABASE" => Some("".into()),
            _ => None,
        });
        assert_eq!(env.database, None);
        let t = tls_settings(&kv(&[("sslmode", "require")]), &env).unwrap();
        assert_eq!(t.mode, SslMode::Require);
        assert_eq!(t.root_cert, Some(RootCert::File("/env/ca.pem".into())));
        let t = tls_settings(&[], &PgEnv::default()).unwrap();
        assert_eq!(t, TlsSettings::default());
        assert!(tls_settings(&kv(&[("sslmode", "yes")]), &env).is_err());

        let url = url_default_port("postgres://app@db/app", "6432");
        assert_eq!(url, "postgres://app@db:6432/app");
        assert_eq!(
            url_default_port("postgres://a:b@h1,[::1]/x?sslmode=require", "7"),
            "postgres://a:b@h1:7,[::1]:7/x?sslmode=require"
        );
        assert_eq!(
            url_default_port("postgres://h:5/x", "7"),
            "postgres://h:5/x"
        );
        assert_eq!(url_default_port("postgres:///x", "7"), "postgres:///x");
        let mut pg: tokio_postgres::Config = url.parse().unwrap();
        apply_env(&mut pg, &env).unwrap();
        assert_eq!(pg.get_user(), Some("app"));
        assert_eq!(pg.get_ports(), &[6432]);
        assert_eq!(pg.get_password(), Some(&b"envpw"[..]));
        let mut pg: tokio_postgres::Config = "".parse().unwrap();
        apply_env(&mut pg, &env).unwrap();
        assert_eq!(
            pg.get_hosts(),
            &[tokio_postgres::config::Host::Tcp("envhost".into())]
        );
        let bad = PgEnv {
            port: Some("x".into()),
            ..PgEnv::default()
        };
        let mut pg: tokio_postgres::Config = "".parse().unwrap();
        assert!(apply_env(&mut pg, &bad).unwrap_err().contains("PGPORT"));
    }
}
