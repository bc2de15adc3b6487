//! One secrets policy for every crate: what is masked, and how it looks.
//!
//! The mask is always `***`, and only the secret itself is replaced, so a reader still
//! sees which user, host, parameter or header it was:
//!
//! - the password of a URL's user info: `postgres://app:***@db/app` (the user name
//!   stays; a URL with a user name and no password is left as it is);
//! - query-string and libpq `key=value` parameters whose name says secret
//!   (`password`, `token`, `api_key`, `secret`, `signature`, … see [`SECRET_KEYS`]):
//!   `?password=***`, `password=*** host=db`;
//! - `user:password@` in text that does not parse as a URL (`postgres//u:pw@db`,
//!   `postgresql:/u:pw@db`), also with an empty user name (`redis//:pw@cache`);
//! - in free text, `Bearer <token>`, `Basic <credentials>` and provider API keys
//!   (`sk-…`, `sk-ant-…`): `Bearer ***`, `sk-***`;
//! - in SQL text, the literal after `PASSWORD` (`ALTER ROLE app PASSWORD '***'`), as
//!   `pg_stat_activity` and `pg_stat_statements` show role changes verbatim;
//! - any value the caller knows to be secret ([`Secrets`]), raw and percent-decoded.

use regex::Regex;
use std::sync::OnceLock;

/// What every secret is replaced by.
pub const MASK: &str = "***";

/// Parameter names (compared case-insensitively, `-` and `_` ignored) whose values
/// are masked in query strings and libpq connection strings.
pub const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "xapikey",
    "signature",
    "xamzsignature",
    "xamzsecuritytoken",
    "sslpassword",
];

fn is_secret_key(name: &str) -> bool {
    let norm: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.contains(&norm.as_str())
}

/// A URL or connection string (URL form or libpq `key=value` form) with its secrets
/// masked. Never fails: text that is neither is treated as free text ([`text`]).
pub fn url(s: &str) -> String {
    if let Some(masked) = url_form(s) {
        return masked;
    }
    if looks_like_keyword_dsn(s) {
        return keyword_dsn(s);
    }
    text(s)
}

/// Free text (an error message, a log line, a config line) with every secret pattern
/// masked: URLs' passwords and secret parameters, `user:pw@` fragments, bearer and
/// basic credentials, provider API keys.
pub fn text(s: &str) -> String {
    static URLS: OnceLock<Option<Regex>> = OnceLock::new();
    static USERINFO: OnceLock<Option<Regex>> = OnceLock::new();
    static AUTH: OnceLock<Option<Regex>> = OnceLock::new();
    static KEYS: OnceLock<Option<Regex>> = OnceLock::new();
    static PARAMS: OnceLock<Option<Regex>> = OnceLock::new();
    static SQL_PASSWORD: OnceLock<Option<Regex>> = OnceLock::new();

    let mut out = s.to_string();
    // Well-formed URLs first, each through the URL policy.
    if let Some(re) =
        URLS.get_or_init(|| Regex::new(r#"[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+"#).ok())
    {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                url_form(&c[0]).unwrap_or_else(|| c[0].to_string())
            })
            .into_owned();
    }
    // `user:secret@host` anywhere (malformed URLs such as `postgres//u:pw@db`), and
    // `:secret@host` with an empty user name (`redis//:pw@cache`).
    if let Some(re) = USERINFO
        .get_or_init(|| Regex::new(r"(^|[\s/(\[,;=`])([^\s:/@`]*):([^\s@/*][^\s@/]*)@").ok())
    {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                format!("{}{}:{MASK}@", &c[1], &c[2])
            })
            .into_owned();
    }
    // Authorization schemes.
    if let Some(re) = AUTH
        .get_or_init(|| Regex::new(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{4,}").ok())
    {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                format!("{}{}{MASK}", &c[1], &c[2])
            })
            .into_owned();
    }
    // SQL: `PASSWORD 'literal'` (CREATE/ALTER ROLE, also `ENCRYPTED PASSWORD`).
    if let Some(re) =
        SQL_PASSWORD.get_or_init(|| Regex::new(r"(?i)\b(password)(\s+)'(?:[^']|'')*'").ok())
    {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                format!("{}{}'{MASK}'", &c[1], &c[2])
            })
            .into_owned();
    }
    // Provider API keys: OpenAI `sk-…`/`sk-proj-…`, Anthropic `sk-ant-…`.
    if let Some(re) = KEYS.get_or_init(|| Regex::new(r"\bsk-[A-Za-z0-9_-]{6,}").ok()) {
        out = re.replace_all(&out, format!("sk-{MASK}")).into_owned();
    }
    // `password=…` and friends outside URLs (libpq strings inside messages, JSON-ish).
    if let Some(re) = PARAMS.get_or_init(|| {
        Regex::new(r#"(?i)\b([A-Za-z_-]+)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&,;"'}]+)"#).ok()
    }) {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                if is_secret_key(&c[1]) && &c[3] != MASK && !c[3].contains(MASK) {
                    let quote = match c[3].chars().next() {
                        Some(q @ ('"' | '\'')) => q.to_string(),
                        _ => String::new(),
                    };
                    format!("{}{}{quote}{MASK}{quote}", &c[1], &c[2])
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
    }
    out
}

/// A well-formed URL with its password and secret query parameters masked; `None`
/// when `s` does not parse as a URL with an authority.
fn url_form(s: &str) -> Option<String> {
    let mut u = url::Url::parse(s).ok()?;
    if !s.contains("://") {
        return None;
    }
    // Only rewrite what has something to mask, so other URLs keep their spelling.
    if u.password().is_none() && !u.query_pairs().any(|(k, _)| is_secret_key(&k)) {
        return Some(s.to_string());
    }
    if u.password().is_some() {
        u.set_password(Some(MASK)).ok()?;
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        let mut q = u.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        drop(q);
    }
    // The query serializer escapes `*`; show the mask as written.
    Some(u.to_string().replace("%2A%2A%2A", MASK))
}

fn looks_like_keyword_dsn(s: &str) -> bool {
    !s.contains("://") && s.split_whitespace().any(|w| w.contains('='))
}

/// libpq `key=value` pairs (values may be single-quoted with `\'` escapes).
fn keyword_dsn(s: &str) -> String {
    keyword_dsn_parts(s).0
}

/// The masked libpq string and the secret values found in it (unquoted, unescaped).
fn keyword_dsn_parts(s: &str) -> (String, Vec<String>) {
    let mut secrets = Vec::new();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let Some(eq) = rest.find('=') else {
            out.push_str(&text(rest));
            break;
        };
        let key = rest[..eq].trim();
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        let lead = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..lead]);
        rest = &rest[lead..];
        let end = if rest.starts_with('\'') {
            let mut i = 1;
            let b = rest.as_bytes();
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            (i + 1).min(rest.len())
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        let value = &rest[..end];
        if is_secret_key(key) {
            secrets.push(unquote_keyword_value(value));
            if value.starts_with('\'') {
                out.push_str(&format!("'{MASK}'"));
            } else {
                out.push_str(MASK);
            }
        } else {
            out.push_str(value);
        }
        rest = &rest[end..];
    }
    (out, secrets)
}

/// A libpq value as the server sees it: quotes removed, `\'` and `\\` unescaped.
fn unquote_keyword_value(v: &str) -> String {
    let Some(inner) = v.strip_prefix('\'') else {
        return v.to_string();
    };
    let inner = inner.strip_suffix('\'').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Secret values a command knows (passwords from URLs, API keys from the environment),
/// scrubbed from any text together with the patterns of [`text`].
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// The secrets inside a URL or connection string: the user-info password and
    /// secret parameters, raw and percent-decoded.
    pub fn from_url(s: &str) -> Secrets {
        let mut out = Secrets::new();
        out.add_from_url(s);
        out
    }

    /// Adds one value. Values shorter than 3 characters are ignored, so a one-letter
    /// password does not mangle every message.
    pub fn add(&mut self, value: impl Into<String>) {
        let v = value.into();
        if v.chars().count() >= 3 && !self.values.contains(&v) {
            self.values.push(v);
        }
    }

    pub fn add_from_url(&mut self, s: &str) {
        if let Some(u) = url::Url::parse(s).ok().filter(|_| s.contains("://")) {
            if let Some(p) = u.password() {
                self.add(p.to_string());
                if let Ok(d) = percent_decode(p) {
                    self.add(d);
                }
            }
            for (k, v) in u.query_pairs() {
                if is_secret_key(&k) {
                    self.add(v.into_owned());
                }
            }
            return;
        }
        if looks_like_keyword_dsn(s) {
            for v in keyword_dsn_parts(s).1 {
                self.add(v);
            }
            return;
        }
        // A malformed URL (`postgres//u:pw@db`, `redis//:pw@cache`): its user-info
        // password.
        static USERINFO: OnceLock<Option<Regex>> = OnceLock::new();
        if let Some(re) = USERINFO.get_or_init(|| Regex::new(r"[^\s:/@]*:([^\s@/]+)@").ok()) {
            for c in re.captures_iter(s) {
                self.add(c[1].to_string());
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every known value and every secret pattern masked.
    pub fn scrub(&self, input: &str) -> String {
        let mut out = input.to_string();
        // Longest first, so a secret containing another is masked whole.
        let mut vals: Vec<&String> = self.values.iter().collect();
        vals.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for v in vals {
            out = out.replace(v.as_str(), MASK);
        }
        text(&out)
    }
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_user_names_kept() {
        assert_eq!(
            url("postgres://app:s3cr%40t@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(url("redis://cache:6379/0"), "redis://cache:6379/0");
        assert_eq!(url("http://user@host/x"), "http://user@host/x");
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        assert_eq!(
            url("postgresql://db/app?user=x&password=hunter2&sslmode=disable"),
            "postgresql://db/app?user=x&password=***&sslmode=disable"
        );
        assert_eq!(
            url("https://api.example/v1?api_key=abc123&page=2"),
            "https://api.example/v1?api_key=***&page=2"
        );
        assert_eq!(
            url("https://x.example/?access_token=t0k&X-Amz-Signature=ff"),
            "https://x.example/?access_token=***&X-Amz-Signature=***"
        );
    }

    #[test]
    fn libpq_keyword_strings_are_masked() {
        assert_eq!(
            url("host=db user=app password=hunter2 dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
        assert_eq!(
            url("host=db password='a b\\'c' dbname=app"),
            "host=db password='***' dbname=app"
        );
    }

    #[test]
    fn malformed_urls_lose_their_password() {
        assert_eq!(url("postgres//user:pw@db/app"), "postgres//user:***@db/app");
        let t = text("connect to postgres:/u:secretpw@db failed");
        assert!(!t.contains("secretpw"), "{t}");
    }

    #[test]
    fn malformed_urls_with_an_empty_user_lose_their_password() {
        for (input, shown) in [
            ("redis//:hunter2@cache:6379", "redis//:***@cache:6379"),
            ("redis:/:hunter2@cache", "redis:/:***@cache"),
            ("postgresql:/user:hunter2@h", "postgresql:/user:***@h"),
            (
                "postgres//user:hunter2@host/db",
                "postgres//user:***@host/db",
            ),
        ] {
            assert_eq!(url(input), shown);
            assert_eq!(
                text(&format!("--url `{input}`: no host")),
                format!("--url `{shown}`: no host")
            );
            let s = Secrets::from_url(input);
            assert_eq!(s.scrub("auth hunter2 failed"), "auth *** failed", "{input}");
        }
    }

    #[test]
    fn libpq_strings_in_messages_and_known_values_are_masked() {
        let t = text("cannot connect with host=127.0.0.1 port=1 password=hunter2 dbname=x");
        assert_eq!(
            t,
            "cannot connect with host=127.0.0.1 port=1 password=*** dbname=x"
        );
        let t = text("dsn host=db password='hun ter2' user=app");
        assert!(!t.contains("hun") && !t.contains("ter2"), "{t}");
        let s = Secrets::from_url("host=db password='hun\\'ter 2' user=app");
        let msg = s.scrub("server said: password hun'ter 2 rejected");
        assert!(!msg.contains("ter 2"), "{msg}");
    }

    #[test]
    fn sql_password_literals_are_masked() {
        assert_eq!(
            text("ALTER ROLE app WITH PASSWORD 'hun''ter2' VALID UNTIL 'infinity'"),
            "ALTER ROLE app WITH PASSWORD '***' VALID UNTIL 'infinity'"
        );
        assert_eq!(
            text("create user x encrypted password\n  'hunter2'"),
            "create user x encrypted password\n  '***'"
        );
        assert_eq!(
            text("SELECT password FROM users"),
            "SELECT password FROM users"
        );
    }

    #[test]
    fn toml_lines_with_secrets_are_masked() {
        for line in [
            r#"2:1: url = "postgres://u:hunter2@db/app""#,
            r#"2:1: password = "hunter2""#,
            r#"2:1: password = 'hunter2'"#,
            r#"invalid type: string "redis://:hunter2@h", expected u64"#,
            r#"invalid type: string "host=db password=hunter2", expected u64"#,
        ] {
            let t = text(line);
            assert!(!t.contains("hunter2"), "{t}");
            assert!(t.contains(MASK), "{t}");
        }
    }

    #[test]
    fn free_text_loses_tokens_and_keys() {
        let t = text("401 from provider: Authorization: Bearer sk-abcdef123456 rejected");
        assert!(!t.contains("abcdef123456"), "{t}");
        assert!(t.contains("Bearer ***"), "{t}");
        let t = text("invalid x-api-key sk-ant-api03-XYZxyz0123");
        assert!(!t.contains("XYZxyz0123"), "{t}");
        assert!(t.contains("sk-***"), "{t}");
        let t = text("dial tcp: redis://:pw123@cache:6379 refused");
        assert_eq!(t, "dial tcp: redis://:***@cache:6379 refused");
        let t = text(r#"line 3: password = "hunter2""#);
        assert_eq!(t, r#"line 3: password = "***""#);
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for s in [
            "GET /api/v1/agents 200 in 12ms",
            "table orders: 50% dead tuples",
            "http://127.0.0.1:8080/health",
            "key_count=12 keys",
        ] {
            assert_eq!(text(s), s);
        }
    }

    #[test]
    fn known_secrets_are_scrubbed_raw_and_decoded() {
        let s = Secrets::from_url("postgres://app:s3cr%40t@db/app");
        let msg = s.scrub("auth failed for s3cr@t and s3cr%40t");
        assert!(!msg.contains("s3cr"), "{msg}");
        let mut s = Secrets::new();
        s.add("ab");
        assert!(s.is_empty(), "two-character values are not secrets");
        s.add("live-key-value");
        assert_eq!(s.scrub("key live-key-value!"), "key ***!");
    }
}
