//! Findings: what a judge says about one thing it looked at.

use crate::units::{Quantity, Unit};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One meaning everywhere: `Pass` within target, `Warn` past target but within the
/// maximum acceptable, `Fail` past the maximum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }

    /// Judges a value where lower is better: within `target` passes, within `max` warns.
    /// `target` is exclusive (the runbook writes "< 100ms"), `max` inclusive
    /// ("Maximum Acceptable 200ms").
    pub fn lower_is_better(observed: f64, target: f64, max: Option<f64>) -> Verdict {
        if observed < target {
            Verdict::Pass
        } else if max.map_or(observed == target, |m| observed <= m) {
            Verdict::Warn
        } else {
            Verdict::Fail
        }
    }

    /// Judges a value where higher is better (hit rates, coverage, throughput ratios).
    pub fn higher_is_better(observed: f64, target: f64, min: Option<f64>) -> Verdict {
        if observed > target {
            Verdict::Pass
        } else if min.map_or(observed == target, |m| observed >= m) {
            Verdict::Warn
        } else {
            Verdict::Fail
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a bound compares: the runbook writes "< 100ms", "> 95%", "<= 20%".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Cmp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "=")]
    Eq,
}

impl Cmp {
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Eq => "=",
        }
    }
}

/// An observed figure, a target or a limit: a number with its unit (optionally with a
/// comparison, for bounds, and a short note such as `no baseline`), or plain words
/// where the thing is not a number (`noeviction`, `every FK indexed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Value {
    Quantity {
        value: f64,
        unit: Unit,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cmp: Option<Cmp>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        note: String,
    },
    Text(String),
}

impl Value {
    /// A bare figure.
    pub fn of(q: Quantity) -> Value {
        Value::Quantity {
            value: q.value,
            unit: q.unit,
            cmp: None,
            note: String::new(),
        }
    }

    /// A bound: `cmp q` (`< 100ms`).
    pub fn bound(cmp: Cmp, q: Quantity) -> Value {
        Value::Quantity {
            value: q.value,
            unit: q.unit,
            cmp: Some(cmp),
            note: String::new(),
        }
    }

    pub fn lt(q: Quantity) -> Value {
        Value::bound(Cmp::Lt, q)
    }
    pub fn le(q: Quantity) -> Value {
        Value::bound(Cmp::Le, q)
    }
    pub fn gt(q: Quantity) -> Value {
        Value::bound(Cmp::Gt, q)
    }
    pub fn ge(q: Quantity) -> Value {
        Value::bound(Cmp::Ge, q)
    }

    /// Adds a short note shown after the figure (`212ms (no baseline)`).
    pub fn note(self, n: impl Into<String>) -> Value {
        match self {
            Value::Quantity {
                value, unit, cmp, ..
            } => Value::Quantity {
                value,
                unit,
                cmp,
                note: n.into(),
            },
            Value::Text(t) => Value::Text(format!("{t} ({})", n.into())),
        }
    }

    /// The number and unit, when this is a figure.
    pub fn quantity(&self) -> Option<Quantity> {
        match self {
            Value::Quantity { value, unit, .. } => Some(Quantity::new(*value, *unit)),
            Value::Text(_) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Value::Text(t) if t.is_empty())
    }

    /// The rendered text (`< 100ms`); the same as `to_string()`.
    pub fn text(&self) -> String {
        self.to_string()
    }

    /// Whether the rendered text contains `needle` (for tests and filters).
    pub fn contains(&self, needle: &str) -> bool {
        self.to_string().contains(needle)
    }
}

impl Default for Value {
    fn default() -> Value {
        Value::Text(String::new())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Quantity {
                value,
                unit,
                cmp,
                note,
            } => {
                if let Some(c) = cmp {
                    write!(f, "{} ", c.symbol())?;
                }
                write!(f, "{}", Quantity::new(*value, *unit))?;
                if !note.is_empty() {
                    write!(f, " ({note})")?;
                }
                Ok(())
            }
            Value::Text(t) => f.write_str(t),
        }
    }
}

impl From<Quantity> for Value {
    fn from(q: Quantity) -> Value {
        Value::of(q)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Text(s.clone())
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Value::Text(t) => t == other,
            q => q.text() == *other,
        }
    }
}

/// What a judge says about one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    /// The runbook area: `load`, `db`, `redis`, `queues`, `gateway`, `apm`.
    pub area: String,
    /// A stable identifier of the check, e.g. `api_latency_p95`, `fk_without_index`.
    pub check: String,
    /// What was looked at: an endpoint type, a table, a queue, a provider.
    pub subject: String,
    /// The measured value.
    pub observed: Value,
    /// The runbook's target (`< 150ms`).
    pub target: Value,
    /// The maximum acceptable, when the runbook gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Value>,
    pub verdict: Verdict,
    /// Numbers and names behind the verdict.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evidence: String,
    /// The runbook's first action for this symptom, in words a person can do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
}

impl Finding {
    /// Starts a finding; fill the rest with the builder methods.
    pub fn new(area: &str, check: &str, subject: impl Into<String>, verdict: Verdict) -> Self {
        Finding {
            area: area.to_string(),
            check: check.to_string(),
            subject: subject.into(),
            observed: Value::default(),
            target: Value::default(),
            limit: None,
            verdict,
            evidence: String::new(),
            action: String::new(),
        }
    }

    pub fn observed(mut self, v: impl Into<Value>) -> Self {
        self.observed = v.into();
        self
    }

    pub fn target(mut self, v: impl Into<Value>) -> Self {
        self.target = v.into();
        self
    }

    pub fn limit(mut self, v: impl Into<Value>) -> Self {
        self.limit = Some(v.into());
        self
    }

    pub fn evidence(mut self, v: impl Into<String>) -> Self {
        self.evidence = v.into();
        self
    }

    pub fn action(mut self, v: impl Into<String>) -> Self {
        self.action = v.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_runbook() {
        // Authentication: < 100ms target, 200ms maximum acceptable.
        assert_eq!(
            Verdict::lower_is_better(99.0, 100.0, Some(200.0)),
            Verdict::Pass
        );
        assert_eq!(
            Verdict::lower_is_better(100.0, 100.0, Some(200.0)),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::lower_is_better(200.0, 100.0, Some(200.0)),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::lower_is_better(200.1, 100.0, Some(200.0)),
            Verdict::Fail
        );
        assert_eq!(Verdict::lower_is_better(5.0, 1.0, None), Verdict::Fail);
        assert_eq!(Verdict::higher_is_better(96.0, 95.0, None), Verdict::Pass);
        assert_eq!(
            Verdict::higher_is_better(60.0, 70.0, Some(50.0)),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::higher_is_better(40.0, 70.0, Some(50.0)),
            Verdict::Fail
        );
        assert!(Verdict::Fail > Verdict::Warn && Verdict::Warn > Verdict::Pass);
    }

    #[test]
    fn values_carry_numbers_and_render_through_units() {
        let t = Value::lt(Quantity::ms(100.0));
        assert_eq!(t.to_string(), "< 100ms");
        assert_eq!(t.quantity(), Some(Quantity::ms(100.0)));
        let o = Value::of(Quantity::ms(212.4)).note("no baseline");
        assert_eq!(o.to_string(), "212.4ms (no baseline)");
        assert_eq!(Value::from("noeviction").to_string(), "noeviction");
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"value": 100.0, "unit": "ms", "cmp": "<"})
        );
        let back: Value = serde_json::from_value(j).unwrap();
        assert_eq!(back, t);
        let back: Value = serde_json::from_value(serde_json::json!("every FK indexed")).unwrap();
        assert_eq!(back, "every FK indexed");
    }
}
