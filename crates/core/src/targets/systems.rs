//! `[systems]` of `powertune.toml`: the address of every system the compositions
//! (`doctor`, `baseline save`, `verify`, `monitor`) inspect.
//!
//! Every key is optional; a system left out is "not configured — not checked" and is
//! never reported as passing. A string value may name environment variables as
//! `${NAME}` (`db = "postgres://app:${PGPASSWORD}@db/app"`): they are expanded when
//! the file is read, an unset one is an error at its line, and every expanded value
//! is treated as a secret (masked in every listing, report and error). Flags and
//! `POWERTUNE_<KEY>` environment variables override the file (see
//! [`Systems::set`]).

use crate::redact;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One `[systems]` key: its name, what it holds and an example of a right value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub what: &'static str,
    pub example: &'static str,
    kind: KeyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Http,
    Postgres,
    Redis,
    Pid,
    Path,
}

/// Every key of `[systems]`, in listing order.
pub const KEYS: [Key; 12] = [
    Key {
        name: "base_url",
        what: "the application's base URL",
        example: "https://api.staging.example",
        kind: KeyKind::Http,
    },
    Key {
        name: "db",
        what: "PostgreSQL",
        example: "postgres://readonly:${PGPASSWORD}@db/app",
        kind: KeyKind::Postgres,
    },
    Key {
        name: "redis",
        what: "the cache Redis",
        example: "redis://cache:6379/0",
        kind: KeyKind::Redis,
    },
    Key {
        name: "queues",
        what: "Sidekiq's Redis",
        example: "redis://jobs:6379/1",
        kind: KeyKind::Redis,
    },
    Key {
        name: "gateway",
        what: "the LLM gateway",
        example: "http://gw:4000",
        kind: KeyKind::Http,
    },
    Key {
        name: "gateway_baseline",
        what: "a gateway baseline file (gateway status --save-baseline)",
        example: "baselines/gateway.json",
        kind: KeyKind::Path,
    },
    Key {
        name: "apm",
        what: "a running `powertune apm serve`",
        example: "http://apm:4318",
        kind: KeyKind::Http,
    },
    Key {
        name: "metrics",
        what: "the backend's Prometheus metrics endpoint",
        example: "http://app:9394/metrics",
        kind: KeyKind::Http,
    },
    Key {
        name: "pid",
        what: "the backend process id (memory trend)",
        example: "4242",
        kind: KeyKind::Pid,
    },
    Key {
        name: "cgroup",
        what: "the backend's cgroup v2 directory (memory trend)",
        example: "/sys/fs/cgroup/system.slice/powernode-backend.service",
        kind: KeyKind::Path,
    },
    Key {
        name: "frontend_dist",
        what: "the frontend's Vite build directory",
        example: "frontend/dist",
        kind: KeyKind::Path,
    },
    Key {
        name: "frontend_baseline",
        what: "a frontend bundle baseline (frontend bundle --save-baseline)",
        example: "baselines/bundle.json",
        kind: KeyKind::Path,
    },
];

/// The key named `name`.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The systems in force: values after `${NAME}` expansion and overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Systems {
    values: BTreeMap<&'static str, String>,
    /// Where each value came from (`powertune.toml:12`, `--db`, `POWERTUNE_DB`).
    sources: BTreeMap<&'static str, String>,
    /// Values expanded from the environment, masked wherever text is shown.
    secrets: Vec<String>,
}

/// One row of the systems listing.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct SystemEntry {
    pub name: String,
    /// Secrets masked; None when not configured.
    pub value: Option<String>,
    pub source: String,
}

impl Systems {
    /// The raw value of `name` (secrets included: for connecting, never for showing).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A path-valued key.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }

    /// The `pid` key.
    pub fn pid(&self) -> Option<u32> {
        self.get("pid").and_then(|p| p.parse().ok())
    }

    pub fn is_configured(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret these systems know masked (expanded variables,
    /// passwords in the URLs) and the shared secret patterns applied.
    pub fn redact(&self, text: &str) -> String {
        self.secrets().scrub(text)
    }

    /// The secrets of these systems, for callers that scrub text themselves.
    pub fn secrets(&self) -> redact::Secrets {
        let mut s = redact::Secrets::new();
        for v in &self.secrets {
            s.add(v.clone());
        }
        for v in self.values.values() {
            s.add_from_url(v);
        }
        s
    }

    /// Every key, configured or not, values masked.
    pub fn list(&self) -> Vec<SystemEntry> {
        KEYS.iter()
            .map(|k| SystemEntry {
                name: k.name.to_string(),
                value: self.get(k.name).map(|v| self.redact(v)),
                source: self
                    .sources
                    .get(k.name)
                    .cloned()
                    .unwrap_or_else(|| "not configured".to_string()),
            })
            .collect()
    }

    /// Sets `name` from a flag or an environment variable (`source` says which),
    /// checked like a file's value. The value is not expanded (the shell already did);
    /// a password in it is masked like any other.
    pub fn set(&mut self, name: &str, value: &str, source: &str) -> Result<(), String> {
        let k = key(name).ok_or_else(|| unknown(name))?;
        let v = check(k, value.trim())?;
        self.values.insert(k.name, v);
        self.sources.insert(k.name, source.to_string());
        Ok(())
    }

    /// Reads a `[systems]` table. `at(key, why)` builds the error for a key (the file
    /// places it); `lookup` reads one environment variable; `source(key)` says where a
    /// key was written (`file:line`).
    pub fn from_table<E>(
        table: &toml::Table,
        lookup: &dyn Fn(&str) -> Option<String>,
        source: &dyn Fn(&str) -> String,
        at: &dyn Fn(&str, String) -> E,
    ) -> Result<Systems, E> {
        let mut out = Systems::default();
        for (name, value) in table {
            let dotted = format!("systems.{name}");
            let Some(k) = key(name) else {
                return Err(at(&dotted, unknown(name)));
            };
            let text = match (k.kind, value) {
                (_, toml::Value::String(s)) => {
                    let (expanded, secrets) = expand(s, lookup).map_err(|why| at(&dotted, why))?;
                    out.secrets.extend(secrets);
                    expanded
                }
                (KeyKind::Pid, toml::Value::Integer(i)) => i.to_string(),
                (_, other) => {
                    return Err(at(
                        &dotted,
                        format!(
                            "must be a string, found {}, e.g. {name} = \"{}\"",
                            other.type_str(),
                            k.example
                        ),
                    ))
                }
            };
            let v = check(k, text.trim()).map_err(|why| at(&dotted, out.redact(&why)))?;
            out.values.insert(k.name, v);
            out.sources.insert(k.name, source(&dotted));
        }
        Ok(out)
    }
}

fn unknown(name: &str) -> String {
    let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    format!(
        "unknown key `{name}` in [systems] (known keys: {})",
        known.join(", ")
    )
}

/// Expands `${NAME}`; returns the text and the values it put in (secrets).
fn expand(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::new();
    let mut secrets = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("`${` without a closing `}`, e.g. ${PGPASSWORD}".to_string());
        };
        let name = &after[..end];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`${{{name}}}` is not an environment variable name, e.g. ${{PGPASSWORD}}"
            ));
        }
        let value = lookup(name).ok_or_else(|| {
            format!("environment variable {name} is not set (named as ${{{name}}})")
        })?;
        out.push_str(&value);
        secrets.push(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, secrets))
}

/// Checks a value's shape; returns it as kept. Messages show it masked.
fn check(k: &Key, v: &str) -> Result<String, String> {
    let shown = redact::url(v);
    let bad = |why: &str| {
        Err(format!(
            "{why}, found `{shown}`, e.g. {} = \"{}\"",
            k.name, k.example
        ))
    };
    if v.is_empty() {
        return bad("must not be empty");
    }
    match k.kind {
        KeyKind::Http => {
            let ok = url::Url::parse(v)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if ok.is_none() {
                return bad("must be an http:// or https:// URL");
            }
        }
        KeyKind::Postgres => {
            let url_ok = v.starts_with("postgres://") || v.starts_with("postgresql://");
            let dsn_ok = !v.contains("://") && v.contains('=');
            if !url_ok && !dsn_ok {
                return bad("must be a postgres:// URL or a libpq \"host=... dbname=...\" string");
            }
        }
        KeyKind::Redis => {
            let ok = url::Url::parse(v)
                .ok()
                .filter(|u| matches!(u.scheme(), "redis" | "rediss"));
            if ok.is_none() {
                return bad("must be a redis:// or rediss:// URL");
            }
        }
        KeyKind::Pid => match v.parse::<u32>() {
            Ok(p) if p > 0 => {}
            _ => return bad("must be a process id above 0"),
        },
        KeyKind::Path => {}
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Systems, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        Systems::from_table(
            table["systems"].as_table().unwrap(),
            &lookup,
            &|k| format!("f:{k}"),
            &|k, why| format!("{k}: {why}"),
        )
    }

    #[test]
    fn values_are_read_expanded_and_masked() {
        let s = parse(
            "[systems]\ndb = \"postgres://app:${PW}@db/app\"\nredis = \"redis://cache:6379/0\"\npid = 42\n",
            &[("PW", "hunter22")],
        )
        .unwrap();
        assert_eq!(s.get("db"), Some("postgres://app:hunter22@db/app"));
        assert_eq!(s.pid(), Some(42));
        let list = s.list();
        let db = list.iter().find(|e| e.name == "db").unwrap();
        assert!(!db.value.as_deref().unwrap().contains("hunter22"));
        assert_eq!(db.source, "f:systems.db");
        let q = list.iter().find(|e| e.name == "queues").unwrap();
        assert_eq!(
            (q.value.as_deref(), q.source.as_str()),
            (None, "not configured")
        );
        assert_eq!(s.redact("error near hunter22"), "error near ***");
    }

    #[test]
    fn a_secret_in_the_middle_of_a_value_is_masked() {
        let s = parse(
            "[systems]\ngateway = \"http://gw:4000/?token=${T}\"\n",
            &[("T", "abcdef")],
        )
        .unwrap();
        assert!(!s.list()[4].value.as_deref().unwrap().contains("abcdef"));
    }

    #[test]
    fn bad_values_name_the_key_and_a_right_example() {
        let e = parse("[systems]\ndb = \"mysql://x\"\n", &[]).unwrap_err();
        assert!(
            e.starts_with("systems.db: must be a postgres:// URL"),
            "{e}"
        );
        let e = parse("[systems]\nqueue = \"redis://x\"\n", &[]).unwrap_err();
        assert!(
            e.contains("unknown key `queue`") && e.contains("queues"),
            "{e}"
        );
        let e = parse("[systems]\nredis = \"http://x\"\n", &[]).unwrap_err();
        assert!(e.contains("redis://"), "{e}");
        let e = parse("[systems]\npid = 0\n", &[]).unwrap_err();
        assert!(e.contains("above 0"), "{e}");
        let e = parse("[systems]\ngateway = 4000\n", &[]).unwrap_err();
        assert!(e.contains("must be a string"), "{e}");
    }

    #[test]
    fn an_unset_or_malformed_variable_is_an_error() {
        let e = parse("[systems]\ndb = \"postgres://a:${NOPE}@db/x\"\n", &[]).unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        let e = parse("[systems]\ndb = \"postgres://a:${1X}@db/x\"\n", &[]).unwrap_err();
        assert!(e.contains("not an environment variable name"), "{e}");
        let e = parse("[systems]\ndb = \"postgres://a:${X@db/x\"\n", &[]).unwrap_err();
        assert!(e.contains("without a closing"), "{e}");
    }

    #[test]
    fn a_bad_value_with_a_secret_never_shows_it() {
        let e = parse(
            "[systems]\nredis = \"http://u:${PW}@cache\"\n",
            &[("PW", "s3cr3tpw")],
        )
        .unwrap_err();
        assert!(!e.contains("s3cr3tpw"), "{e}");
    }

    #[test]
    fn overrides_replace_file_values_and_say_so() {
        let mut s = parse("[systems]\nredis = \"redis://a:6379/0\"\n", &[]).unwrap();
        s.set("redis", "redis://:pw123@b:6379/1", "--redis")
            .unwrap();
        let e = s.list().into_iter().find(|e| e.name == "redis").unwrap();
        assert_eq!(e.source, "--redis");
        assert!(!e.value.unwrap().contains("pw123"));
        assert!(s.set("redis", "nope", "--redis").is_err());
        assert!(s.set("nope", "x", "--nope").is_err());
    }
}
