//! One TOML loader and one error shape for every configuration file (targets,
//! scenario files, gateway, apm, target).
//!
//! The path is always: read the text ([`Source::read`], refusing files over
//! [`MAX_BYTES`]) → deserialise into a raw struct with `#[serde(deny_unknown_fields)]`
//! ([`Source::deserialize`]) → the caller's `validate()` turns it into a typed config,
//! reporting problems with [`Source::error`] at the key they concern. Every error reads
//!
//! ```text
//! FILE:LINE:COL: KEY: WHY, e.g. RIGHT_VALUE
//! ```
//!
//! Durations in files are strings (`"30s"`, [`Duration`](crate::duration)); where older
//! files used bare numbers of seconds, [`DurationField`] accepts them and records a
//! deprecation line in [`Source::warnings`].

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The largest configuration file read (4 MiB).
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// A configuration problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub path: String,
    /// 1-based; 0 when the problem has no place (an unreadable file).
    pub line: usize,
    pub column: usize,
    /// The dotted key concerned (`providers[0].base_url`), or empty.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", crate::redact::text(&self.message))
    }
}

/// A configuration file's text, at most [`MAX_BYTES`]: the read stops there, so a
/// device or a growing file (`/dev/zero`, a FIFO) cannot exhaust memory.
pub fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "larger than the {} a configuration file may be",
            crate::units::bytes(MAX_BYTES)
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("cannot read: not UTF-8 text ({e})"))
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, col)
}

/// The text of one configuration file and what was noticed while reading it.
#[derive(Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
    warnings: RefCell<Vec<String>>,
}

impl Source {
    /// A file's text, refusing files over [`MAX_BYTES`].
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let shown = path.display().to_string();
        let err = |message: String| ConfigError {
            path: shown.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        };
        let text = read_capped(path).map_err(err)?;
        Ok(Source::new(&shown, text))
    }

    /// Text already in memory, shown as `path` in errors.
    pub fn new(path: &str, text: impl Into<String>) -> Source {
        Source {
            path: path.to_string(),
            text: text.into(),
            warnings: RefCell::new(Vec::new()),
        }
    }

    /// Deserialises the raw struct; syntax errors, unknown keys and wrong types come
    /// back at their place, with the key they concern.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = line_col(&self.text, offset);
            ConfigError {
                path: self.path.clone(),
                line,
                column,
                key: key_at(&self.text, offset),
                message: e.message().trim().to_string(),
            }
        })
    }

    /// An error at the place of `key` (dotted: `breaker.failure_threshold`,
    /// `providers[1].base_url`), or at the file when the key is not written in it.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = match offset_of(&self.text, key) {
            Some(o) => line_col(&self.text, o),
            None => (0, 0),
        };
        ConfigError {
            path: self.path.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Records a deprecation or other notice (the CLI prints them).
    pub fn warn(&self, key: &str, message: impl Into<String>) {
        let (line, _) = offset_of(&self.text, key).map_or((0, 0), |o| line_col(&self.text, o));
        let place = if line > 0 {
            format!("{}:{line}", self.path)
        } else {
            self.path.clone()
        };
        self.warnings
            .borrow_mut()
            .push(format!("{place}: {key}: {}", message.into()));
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings.borrow().clone()
    }
}

/// A duration in a file: a string with a unit (`"30s"`, `"250ms"`), or, deprecated, a
/// bare number in the unit the key's old name implied.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationField {
    Text(String),
    Number(f64),
}

impl DurationField {
    /// The duration; a bare number is read as `legacy_unit` (seconds: 1.0, ms: 0.001)
    /// and recorded as deprecated.
    pub fn resolve(
        &self,
        source: &Source,
        key: &str,
        legacy_unit_secs: f64,
    ) -> Result<Duration, ConfigError> {
        match self {
            DurationField::Text(t) => crate::duration::parse(t).map_err(|e| source.error(key, e)),
            DurationField::Number(n) => {
                let secs = n * legacy_unit_secs;
                if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
                    return Err(
                        source.error(key, format!("{n} is not a usable duration, e.g. \"30s\""))
                    );
                }
                let d = Duration::from_secs_f64(secs);
                source.warn(
                    key,
                    format!(
                        "a bare number is deprecated; write the duration with its unit, e.g. \"{}\"",
                        crate::duration::format(d)
                    ),
                );
                Ok(d)
            }
        }
    }
}

/// The dotted key written on the line of byte `offset`, under the table header above
/// it (`[[providers]]` headers are numbered: `providers[1].base_url`). Empty when the
/// line holds no key.
pub fn key_at(text: &str, offset: usize) -> String {
    let (line_no, _) = line_col(text, offset);
    let mut header = String::new();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        let is_line = n + 1 == line_no;
        if let Some(name) = t
            .strip_prefix("[[")
            .and_then(|r| r.split_once("]]"))
            .map(|(h, _)| h.trim())
        {
            let idx = match seen.iter_mut().find(|(h, _)| h == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    seen.push((name.to_string(), 0));
                    0
                }
            };
            header = format!("{name}[{idx}]");
            if is_line {
                return header;
            }
        } else if let Some(name) = t
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|(h, _)| h.trim())
        {
            header = name.to_string();
            if is_line {
                return header;
            }
        } else if is_line {
            let key = t
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"'))
                .unwrap_or("");
            return match (header.is_empty(), key.is_empty()) {
                (_, true) => header,
                (true, false) => key.to_string(),
                (false, false) => format!("{header}.{key}"),
            };
        }
    }
    String::new()
}

/// Byte offset of the key `dotted` (`a.b[2].c`) in `text`, when it is written there.
pub fn offset_of(text: &str, dotted: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let (k, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name)?;
        found = Some(k.span().start);
        let mut value = v.get_ref();
        if let (Some(i), toml::de::DeValue::Array(items)) = (index, value) {
            let item = items.get(i)?;
            found = Some(item.span().start);
            value = item.get_ref();
        }
        if n + 1 < parts.len() {
            match value {
                toml::de::DeValue::Table(t) => table = t,
                _ => return found,
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        listen: String,
        #[serde(default)]
        breaker: Option<RawBreaker>,
        #[serde(default)]
        providers: Vec<RawProvider>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct RawBreaker {
        failures: u32,
        recovery: Option<DurationField>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct RawProvider {
        name: String,
        base_url: String,
    }

    const GOOD: &str = "listen = \"127.0.0.1:0\"\n[breaker]\nfailures = 5\nrecovery = 120\n[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\n[[providers]]\nname = \"b\"\nbase_url = \"ftp://y\"\n";

    #[test]
    fn unknown_keys_come_back_at_their_place_with_the_key() {
        let s = Source::new(
            "g.toml",
            "listen = \"x\"\n[breaker]\nfailures = 5\nfailurez = 3\n",
        );
        let e = s.deserialize::<Raw>().unwrap_err();
        assert_eq!((e.line, e.column), (4, 1), "{e}");
        assert_eq!(e.key, "breaker.failurez");
        let shown = e.to_string();
        assert!(
            shown.starts_with("g.toml:4:1: breaker.failurez: unknown field `failurez`"),
            "{shown}"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let s = Source::new("g.toml", "listen = \"x\"\n[breaker]\nfailures = \"five\"\n");
        let e = s.deserialize::<Raw>().unwrap_err();
        assert_eq!(e.line, 3);
        assert_eq!(e.key, "breaker.failures");
    }

    #[test]
    fn validation_errors_point_at_the_key_including_array_items() {
        let s = Source::new("g.toml", GOOD);
        let _raw: Raw = s.deserialize().unwrap();
        let e = s.error(
            "providers[1].base_url",
            "must be http:// or https://, e.g. \"https://api.openai.com/v1\"",
        );
        assert_eq!(e.line, 10, "{e}");
        assert_eq!(
            e.to_string(),
            "g.toml:10:1: providers[1].base_url: must be http:// or https://, e.g. \"https://api.openai.com/v1\""
        );
        let e = s.error("nowhere.key", "missing");
        assert_eq!(e.to_string(), "g.toml: nowhere.key: missing");
    }

    #[test]
    fn bare_number_durations_work_with_a_deprecation_line() {
        let s = Source::new("g.toml", GOOD);
        let raw: Raw = s.deserialize().unwrap();
        let rec = raw.breaker.unwrap().recovery.unwrap();
        assert_eq!(
            rec.resolve(&s, "breaker.recovery", 1.0).unwrap(),
            Duration::from_secs(120)
        );
        let w = s.warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("g.toml:4: breaker.recovery: a bare number is deprecated"),
            "{w:?}"
        );
        assert!(w[0].contains("\"2m\""), "{w:?}");
        let text = DurationField::Text("2m".into());
        assert_eq!(
            text.resolve(&s, "breaker.recovery", 1.0).unwrap(),
            Duration::from_secs(120)
        );
        let bad = DurationField::Text("soon".into());
        let e = bad.resolve(&s, "breaker.recovery", 1.0).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.toml:4:1: breaker.recovery: bad duration"),
            "{e}"
        );
    }

    #[test]
    fn secrets_in_quoted_lines_are_masked() {
        let s = Source::new("g.toml", "password = \"hunter2\"\n");
        let e = s.error("password", "password = \"hunter2\" is not allowed here");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
