//! Reading a targets file: the defaults overlaid with `powertune.toml`, each error
//! naming the file, line and column, and where every value in force came from.

use super::{CacheType, Systems, Targets, DEFAULT_FILE};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tables whose keys are names the user chooses (new entries allowed).
const OPEN_TABLES: [&str; 2] = ["cache", "worker.weights"];

/// A targets file that could not be used. Messages are shown through the one secrets
/// policy: a TOML error may quote the value written (a URL with a password).
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    #[error("cannot read targets file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}:{column}: {}", crate::redact::text(.message))]
    At {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {}", crate::redact::text(.message))]
    Invalid { path: String, message: String },
}

/// One value in force, for `powertune targets`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub source: String,
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

impl Targets {
    /// Loads `path`, or `powertune.toml` in the working directory when `path` is
    /// `None` and that file exists, or the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Targets, TargetsError> {
        let chosen: Option<PathBuf> = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let p = PathBuf::from(DEFAULT_FILE);
                p.exists().then_some(p)
            }
        };
        match chosen {
            None => Ok(Targets::default()),
            Some(p) => {
                let shown = p.display().to_string();
                let text =
                    crate::config_file::read_capped(&p).map_err(|reason| TargetsError::Read {
                        path: shown.clone(),
                        reason,
                    })?;
                Targets::from_toml_str(&text, &shown)
            }
        }
    }

    /// Applies the overrides in `text` (the contents of `path`) to the defaults.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Targets, TargetsError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            TargetsError::At {
                path: path.to_string(),
                line,
                column,
                message,
            }
        };
        let spanned = toml::de::DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().to_string())
        })?;
        let mut user: toml::Table = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().to_string())
        })?;
        let systems = match user.remove("systems") {
            None => Systems::default(),
            Some(toml::Value::Table(t)) => read_systems(&t, text, path)?,
            Some(_) => {
                let offset = crate::config_file::offset_of(text, "systems").unwrap_or(0);
                return Err(at(
                    offset,
                    "`systems` must be a table, e.g. [systems]".to_string(),
                ));
            }
        };
        let defaults = Targets::default();
        let mut merged = toml::Table::try_from(&defaults).map_err(|e| TargetsError::Invalid {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let mut sources = BTreeMap::new();
        let mut spans = BTreeMap::new();
        merge(
            &mut merged,
            &user,
            spanned.get_ref(),
            "",
            &mut sources,
            &mut spans,
            text,
            path,
        )?;
        let mut targets: Targets =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| TargetsError::Invalid {
                    path: path.to_string(),
                    message: e.message().trim().to_string(),
                })?;
        targets.sources = sources;
        targets.systems = systems;
        if let Err((key, message)) = targets.validate() {
            // The key itself, or the nearest table written in the file (entries of
            // open tables such as `[cache.x]` are recorded whole).
            let mut place = key.as_str();
            while !spans.contains_key(place) {
                match place.rfind('.') {
                    Some(dot) => place = &place[..dot],
                    None => break,
                }
            }
            return Err(match spans.get(place) {
                Some(&offset) => at(offset, format!("`{key}`: {message}")),
                None => TargetsError::Invalid {
                    path: path.to_string(),
                    message: format!("`{key}`: {message}"),
                },
            });
        }
        Ok(targets)
    }

    /// Every value in force, flattened to dotted keys, with its source.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        if let Ok(table) = toml::Table::try_from(self) {
            flatten(&table, "", &mut out, &self.sources);
        }
        for e in self.systems.list() {
            if let Some(value) = e.value {
                out.push(Entry {
                    key: format!("systems.{}", e.name),
                    value,
                    source: e.source,
                });
            }
        }
        out
    }

    /// Whether any value came from a file.
    pub fn overridden(&self) -> bool {
        !self.sources.is_empty()
    }
}

/// `[systems]`, with `${NAME}` read from the process environment; errors at the
/// key's line and column (`FILE:LINE:COL: systems.KEY: WHY`).
fn read_systems(table: &toml::Table, text: &str, path: &str) -> Result<Systems, TargetsError> {
    let place = |dotted: &str| {
        let offset = crate::config_file::offset_of(text, dotted).unwrap_or(0);
        line_col(text, offset)
    };
    Systems::from_table(
        table,
        &|name| std::env::var(name).ok(),
        &|dotted| format!("{path}:{}", place(dotted).0),
        &|dotted, why| {
            let (line, column) = place(dotted);
            TargetsError::At {
                path: path.to_string(),
                line,
                column,
                message: format!("{dotted}: {why}"),
            }
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn merge(
    into: &mut toml::Table,
    user: &toml::Table,
    spans: &toml::de::DeTable<'_>,
    prefix: &str,
    sources: &mut BTreeMap<String, String>,
    offsets: &mut BTreeMap<String, usize>,
    text: &str,
    path: &str,
) -> Result<(), TargetsError> {
    for (key, value) in user {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let spanned = spans
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key.as_str());
        let offset = spanned.map_or(0, |(k, _)| k.span().start);
        let (line, column) = line_col(text, offset);
        let err = |message: String| TargetsError::At {
            path: path.to_string(),
            line,
            column,
            message,
        };
        offsets.insert(dotted.clone(), offset);
        let open = OPEN_TABLES.contains(&prefix);
        match into.get_mut(key) {
            None if open => {
                check_open_entry(prefix, &dotted, value).map_err(err)?;
                into.insert(key.clone(), value.clone());
                record_sources(value, &dotted, &format!("{path}:{line}"), sources);
            }
            None => {
                let known: Vec<&str> = into.keys().map(String::as_str).collect();
                let place = if prefix.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in [{prefix}]")
                };
                return Err(err(format!(
                    "unknown key `{key}` {place} (known keys: {})",
                    known.join(", ")
                )));
            }
            Some(toml::Value::Table(inner)) => {
                let toml::Value::Table(user_inner) = value else {
                    return Err(err(format!("`{dotted}` must be a table, e.g. [{dotted}]")));
                };
                let empty = toml::de::DeTable::new();
                let inner_spans = match spanned.map(|(_, v)| v.get_ref()) {
                    Some(toml::de::DeValue::Table(t)) => t,
                    _ => &empty,
                };
                merge(
                    inner,
                    user_inner,
                    inner_spans,
                    &dotted,
                    sources,
                    offsets,
                    text,
                    path,
                )?;
            }
            Some(existing) => {
                let coerced = match (&*existing, value) {
                    (toml::Value::Float(_), toml::Value::Integer(i)) => {
                        toml::Value::Float(*i as f64)
                    }
                    (a, b) if a.same_type(b) => b.clone(),
                    (a, b) => {
                        return Err(err(format!(
                            "`{dotted}` must be {}, found {} (default: {})",
                            type_name(a),
                            type_name(b),
                            a
                        )))
                    }
                };
                if let (toml::Value::Integer(i), toml::Value::Integer(_)) = (&coerced, &*existing) {
                    if *i < 0 {
                        return Err(err(format!("`{dotted}` must not be negative, found {i}")));
                    }
                }
                *existing = coerced;
                sources.insert(dotted, format!("{path}:{line}"));
            }
        }
    }
    Ok(())
}

/// A new entry of an open table must have the type its table holds, checked here so
/// the error names the line it is on.
fn check_open_entry(table: &str, dotted: &str, value: &toml::Value) -> Result<(), String> {
    let found = |e: toml::de::Error| format!("`{dotted}`: {}", e.message().trim());
    match table {
        "cache" => value
            .clone()
            .try_into::<CacheType>()
            .map(|_| ())
            .map_err(found),
        "worker.weights" => value.clone().try_into::<u32>().map(|_| ()).map_err(found),
        _ => Ok(()),
    }
}

fn record_sources(
    value: &toml::Value,
    dotted: &str,
    source: &str,
    sources: &mut BTreeMap<String, String>,
) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                record_sources(v, &format!("{dotted}.{k}"), source, sources);
            }
        }
        _ => {
            sources.insert(dotted.to_string(), source.to_string());
        }
    }
}

/// Defaults the runbook does not state, chosen by powertune (issue texts or common
/// practice); `powertune targets` labels them so nobody mistakes them for the runbook's.
const POWERTUNE_DEFAULTS: [&str; 10] = [
    "frontend.cls_max",
    "database.bloat_bytes",
    "database.hot_table_rows",
    "database.cache_hit_pct",
    "database.stuck_query_s",
    "database.dead_tuple_pct",
    "redis.slowlog_ms",
    "worker.heartbeat_stale_s",
    "cache.default.",
    ".pattern",
];

fn is_powertune_default(key: &str) -> bool {
    POWERTUNE_DEFAULTS.iter().any(|k| {
        key == *k
            || (k.ends_with('.') && key.starts_with(k))
            || (k.starts_with('.') && key.ends_with(k))
    })
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut Vec<Entry>,
    sources: &BTreeMap<String, String>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(t, &key, out, sources),
            other => {
                let source = sources.get(&key).cloned().unwrap_or_else(|| {
                    if is_powertune_default(&key) {
                        "default (powertune)".to_string()
                    } else {
                        "default (runbook)".to_string()
                    }
                });
                out.push(Entry {
                    key,
                    value: other.to_string(),
                    source,
                });
            }
        }
    }
}
