//! Threshold expressions in k6's syntax: `p(95)<500`, `p(99.9)<=800`, `avg<200`,
//! `rate<0.01`, `count>=100`, on a metric selected by name and tags
//! (`http_req_duration{scenario:login}`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a threshold aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Avg,
    Min,
    Max,
    Med,
    Count,
    Rate,
    Value,
    /// `p(N)`, N in 0..=100.
    Percentile(f64),
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Avg => f.write_str("avg"),
            Aggregation::Min => f.write_str("min"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Med => f.write_str("med"),
            Aggregation::Count => f.write_str("count"),
            Aggregation::Rate => f.write_str("rate"),
            Aggregation::Value => f.write_str("value"),
            Aggregation::Percentile(p) => write!(f, "p({p})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }

    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => (observed - limit).abs() <= f64::EPSILON * limit.abs().max(1.0),
        }
    }
}

/// `p(95)<500`: an aggregation compared with a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Expr {
    pub agg: Aggregation,
    pub op: Op,
    pub value: f64,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.agg, self.op.symbol(), self.value)
    }
}

impl Expr {
    pub fn holds(&self, observed: f64) -> bool {
        self.op.holds(observed, self.value)
    }
}

/// A metric name with optional tag filters: `http_req_duration{scenario:login}`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct MetricSelector {
    pub name: String,
    pub tags: Vec<(String, String)>,
}

impl fmt::Display for MetricSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            write!(f, "{{{}}}", tags.join(","))?;
        }
        Ok(())
    }
}

/// A bad expression: the text, the 1-based column and what was expected there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad threshold `{input}` at column {column}: {message}")]
pub struct ParseError {
    pub input: String,
    pub column: usize,
    pub message: String,
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(|c: char| c.is_whitespace()) {
            self.pos += self.s[self.pos..].chars().next().map_or(1, char::len_utf8);
        }
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            input: self.s.to_string(),
            column: self.s[..self.pos].chars().count() + 1,
            message: message.into(),
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.s[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> Option<f64> {
        let rest = &self.s[self.pos..];
        let len = rest
            .char_indices()
            .take_while(|(i, c)| {
                c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+'))
            })
            .map(|(i, c)| i + c.len_utf8())
            .last()?;
        // Digits past f64's range parse as infinity: not a usable limit.
        let v: f64 = rest[..len].parse().ok().filter(|v: &f64| v.is_finite())?;
        self.pos += len;
        Some(v)
    }
}

/// Parses `p(95)<500` and the other aggregations.
pub fn parse_expr(text: &str) -> Result<Expr, ParseError> {
    let mut c = Cursor { s: text, pos: 0 };
    c.skip_ws();
    let agg = if c.eat("p(") {
        c.skip_ws();
        let p = c
            .number()
            .ok_or_else(|| c.err("expected a percentile number, e.g. p(95)"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(ParseError {
                column: c.pos,
                ..c.err(format!("percentile {p} is outside 0..100"))
            });
        }
        c.skip_ws();
        if !c.eat(")") {
            return Err(c.err("expected `)` to close p(...)"));
        }
        Aggregation::Percentile(p)
    } else {
        let words = [
            ("avg", Aggregation::Avg),
            ("min", Aggregation::Min),
            ("max", Aggregation::Max),
            ("med", Aggregation::Med),
            ("count", Aggregation::Count),
            ("rate", Aggregation::Rate),
            ("value", Aggregation::Value),
        ];
        let found = words.iter().find(|(w, _)| {
            c.s[c.pos..].starts_with(w)
                && !c.s[c.pos + w.len()..].starts_with(|ch: char| ch.is_ascii_alphanumeric())
        });
        match found {
            Some((w, a)) => {
                c.pos += w.len();
                *a
            }
            None => {
                return Err(c.err(
                    "expected an aggregation: avg, min, max, med, count, rate, value or p(N)",
                ))
            }
        }
    };
    c.skip_ws();
    let op = if c.eat("<=") {
        Op::Le
    } else if c.eat(">=") {
        Op::Ge
    } else if c.eat("==") {
        Op::Eq
    } else if c.eat("<") {
        Op::Lt
    } else if c.eat(">") {
        Op::Gt
    } else {
        return Err(c.err("expected a comparison: <, <=, >, >= or =="));
    };
    c.skip_ws();
    let value = c
        .number()
        .ok_or_else(|| c.err(format!("expected a number after `{}`", op.symbol())))?;
    c.skip_ws();
    if c.pos != text.len() {
        return Err(c.err("unexpected text after the number"));
    }
    Ok(Expr { agg, op, value })
}

/// Parses `http_req_duration` or `http_req_duration{scenario:login,method:POST}`.
pub fn parse_selector(text: &str) -> Result<MetricSelector, ParseError> {
    let err = |pos: usize, message: &str| ParseError {
        input: text.to_string(),
        column: text[..pos.min(text.len())].chars().count() + 1,
        message: message.to_string(),
    };
    let t = text.trim_end();
    let (name, tags_part, open) = match t.find('{') {
        Some(i) => {
            if !t.ends_with('}') {
                return Err(err(t.len(), "expected `}` to close the tag list"));
            }
            (&t[..i], Some(&t[i + 1..t.len() - 1]), i)
        }
        None => (t, None, t.len()),
    };
    let name_trim = name.trim();
    if name_trim.is_empty() {
        return Err(err(0, "expected a metric name, e.g. http_req_duration"));
    }
    if let Some(bad) = name_trim
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
    {
        return Err(err(
            name.find(name_trim).unwrap_or(0) + bad.0,
            "metric names use letters, digits, `_` and `.`",
        ));
    }
    let mut tags = Vec::new();
    if let Some(inner) = tags_part {
        let mut offset = open + 1;
        for part in inner.split(',') {
            match part.split_once(':') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    tags.push((k.trim().to_string(), v.trim().to_string()));
                }
                _ => return Err(err(offset, "expected tag:value")),
            }
            offset += part.len() + 1;
        }
    }
    Ok(MetricSelector {
        name: name_trim.to_string(),
        tags,
    })
}

/// One threshold of a scenario file or `--threshold` flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Threshold {
    pub metric: MetricSelector,
    pub expr: Expr,
    /// Stop the run as soon as this threshold fails (k6's `abortOnFail`).
    pub abort_on_fail: bool,
    /// How long into the run before an abort is judged (k6's `delayAbortEval`).
    #[serde(with = "opt_duration_ms")]
    #[schemars(with = "Option<u64>", description = "milliseconds")]
    pub delay_abort_eval: Option<std::time::Duration>,
}

mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

impl Threshold {
    pub fn parse(metric: &str, expr: &str) -> Result<Threshold, ParseError> {
        Ok(Threshold {
            metric: parse_selector(metric)?,
            expr: parse_expr(expr)?,
            abort_on_fail: false,
            delay_abort_eval: None,
        })
    }

    /// Parses the flag form `p(95)<200` (metric defaults to `default_metric`) or
    /// `http_req_failed: rate<0.01` / `http_req_failed rate<0.01`.
    pub fn parse_flag(text: &str, default_metric: &str) -> Result<Threshold, ParseError> {
        let t = text.trim();
        // The separator is the first `:` outside `{...}` and before any `(`.
        let mut depth = 0i32;
        let mut split = None;
        for (i, ch) in t.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                '(' => break,
                ':' if depth == 0 => {
                    split = Some(i);
                    break;
                }
                _ => {}
            }
        }
        match split {
            Some(i) => {
                let expr_part = &t[i + 1..];
                Threshold::parse(&t[..i], expr_part).map_err(|mut e| {
                    if e.input == expr_part {
                        e.column += i + 1;
                        e.input = t.to_string();
                    }
                    e
                })
            }
            None => Threshold::parse(default_metric, t),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.metric, self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k6_expressions() {
        let e = parse_expr("p(95)<500").unwrap();
        assert_eq!(e.agg, Aggregation::Percentile(95.0));
        assert_eq!(e.op, Op::Lt);
        assert_eq!(e.value, 500.0);
        let e = parse_expr(" p(99.9) <= 800 ").unwrap();
        assert_eq!(e.agg, Aggregation::Percentile(99.9));
        assert_eq!(e.op, Op::Le);
        assert_eq!(parse_expr("rate<0.01").unwrap().agg, Aggregation::Rate);
        assert_eq!(parse_expr("count>=100").unwrap().op, Op::Ge);
        assert_eq!(parse_expr("med==3").unwrap().op, Op::Eq);
        assert_eq!(parse_expr("avg>1").unwrap().op, Op::Gt);
        assert!(parse_expr("p(95)<500").unwrap().holds(499.0));
        assert!(!parse_expr("p(95)<500").unwrap().holds(500.0));
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = parse_expr("p(95)<abc").unwrap_err();
        assert_eq!(e.column, 7, "{e}");
        assert!(e.to_string().contains("column 7"));
        assert_eq!(parse_expr("p95<1").unwrap_err().column, 1);
        assert_eq!(parse_expr("avg ~ 1").unwrap_err().column, 5);
        assert_eq!(parse_expr("p(95<1").unwrap_err().column, 5);
        assert_eq!(parse_expr("avg<1 ms").unwrap_err().column, 7);
        assert!(parse_expr("p(150)<1").is_err());
    }

    #[test]
    fn selectors_take_tags() {
        let s = parse_selector("http_req_duration{scenario:login}").unwrap();
        assert_eq!(s.name, "http_req_duration");
        assert_eq!(s.tags, vec![("scenario".into(), "login".into())]);
        assert_eq!(s.to_string(), "http_req_duration{scenario:login}");
        assert!(parse_selector("http_req_duration{scenario}").is_err());
        assert!(parse_selector("http req").is_err());
    }

    #[test]
    fn flag_form_defaults_the_metric() {
        let t = Threshold::parse_flag("p(95)<200", "http_req_duration").unwrap();
        assert_eq!(t.metric.name, "http_req_duration");
        let t = Threshold::parse_flag("http_req_failed: rate<0.01", "x").unwrap();
        assert_eq!(t.metric.name, "http_req_failed");
        let t = Threshold::parse_flag("http_req_duration{scenario:a}:p(99)<9", "x").unwrap();
        assert_eq!(t.metric.tags.len(), 1);
        let e = Threshold::parse_flag("http_req_failed: rate<x", "x").unwrap_err();
        assert_eq!(e.column, 23, "{e}");
    }
}
