//! `{{name}}` templating: parsed once when the plan loads, rendered per request from
//! the VU's variables (extracted values, CSV columns) and then the environment.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

/// A string with `{{name}}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; an unclosed `{{` or an empty name is an error naming the text.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        // Errors quote the text with any password in it masked.
        let shown = || powertune_core::redact::text(text);
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!(
                    "unclosed `{{{{` in `{}` (expected e.g. `Bearer {{{{token}}}}`)",
                    shown()
                )
            })?;
            let name = after[..close].trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
            {
                return Err(format!(
                    "bad variable name `{name}` in `{}` (expected letters, digits, `_`, e.g. {{{{token}}}})",
                    shown()
                ));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the text has no placeholders.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The variable names used.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders with `vars` first, then `env`; an unknown name renders empty.
    pub fn render(&self, vars: &HashMap<String, String>, env: &HashMap<String, String>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    if let Some(val) = vars.get(v).or_else(|| env.get(v)) {
                        out.push_str(val);
                    }
                }
            }
        }
        out
    }
}

/// Renders every string inside a JSON value.
pub fn render_json(
    v: &serde_json::Value,
    vars: &HashMap<String, String>,
    env: &HashMap<String, String>,
) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains("{{") => match Template::parse(s) {
            Ok(t) => Value::String(t.render(vars, env)),
            Err(_) => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(x, vars, env)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), render_json(x, vars, env)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A header value that may be written on the wire: no CR, LF, NUL or other control
/// character but tab (RFC 9110 field-value). Checked when a scenario file is read (the
/// value as written) and again before each request (the value as rendered).
pub fn safe_header_value(v: &str) -> bool {
    !v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vars_then_env() {
        let t = Template::parse("Bearer {{token}} for {{ user }}").unwrap();
        let mut vars = HashMap::new();
        vars.insert("token".to_string(), "abc".to_string());
        let mut env = HashMap::new();
        env.insert("user".to_string(), "ann".to_string());
        env.insert("token".to_string(), "from-env".to_string());
        assert_eq!(t.render(&vars, &env), "Bearer abc for ann");
        assert!(!t.is_static());
        assert!(Template::parse("plain").unwrap().is_static());
        assert!(Template::parse("{{open").unwrap_err().contains("unclosed"));
        assert!(Template::parse("{{}}").is_err());
    }

    #[test]
    fn renders_inside_json() {
        let mut vars = HashMap::new();
        vars.insert("n".to_string(), "7".to_string());
        let v = serde_json::json!({"a": ["x{{n}}", 1], "b": {"c": "{{n}}"}});
        let r = render_json(&v, &vars, &HashMap::new());
        assert_eq!(r, serde_json::json!({"a": ["x7", 1], "b": {"c": "7"}}));
    }
}
