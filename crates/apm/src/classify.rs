//! Endpoint types: which row of the runbook's "API Latency (P95)" table a route is
//! judged against. Rules are tried in order; the first match wins.

use crate::normalize::path_glob;
use powertune_core::EndpointType;

/// One rule: `[METHOD[|METHOD..]] /path/glob` → endpoint type.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub glob: String,
    pub endpoint_type: EndpointType,
}

impl Rule {
    /// Parses `"POST /api/v1/ai/**/execute"` or `"/api/v1/auth/**"`.
    pub fn parse(pattern: &str, endpoint_type: EndpointType) -> Result<Rule, String> {
        let pattern = pattern.trim();
        let (methods, glob) = match pattern.split_once(' ') {
            Some((m, g)) => (
                m.split('|')
                    .map(|m| m.trim().to_ascii_uppercase())
                    .collect::<Vec<_>>(),
                g.trim(),
            ),
            None => (Vec::new(), pattern),
        };
        if !glob.starts_with('/') && !glob.starts_with("**") {
            return Err(format!(
                "endpoint pattern `{pattern}` must be a path glob, optionally after a method \
                 (example: \"POST /api/v1/ai/**/execute\" or \"/api/v1/auth/**\")"
            ));
        }
        if methods
            .iter()
            .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(format!(
                "endpoint pattern `{pattern}` has a bad method (example: \"GET|HEAD /api/**\")"
            ));
        }
        Ok(Rule {
            methods,
            glob: glob.to_string(),
            endpoint_type,
        })
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && path_glob(&self.glob, path)
    }
}

/// Powernode's paths. The runbook's load-test table names them: `/api/v1/auth/*`,
/// `/api/v1/ai/agents/:id/execute`, `/api/v1/ai/missions`, `/api/v1/ai/monitoring/dashboard`.
pub fn default_rules() -> Vec<Rule> {
    use EndpointType::*;
    let table: [(&str, EndpointType); 10] = [
        ("/api/v1/auth/**", Authentication),
        ("/auth/**", Authentication),
        ("**/webhooks/**", Webhook),
        ("**/webhooks", Webhook),
        ("**/webhook", Webhook),
        ("/api/v1/ai/**/execute", AiLlm),
        ("/api/v1/analytics/**", Analytics),
        ("**/reports/**", Analytics),
        ("/api/v1/ai/monitoring/**", Analytics),
        ("/api/v1/ai/**", AiSync),
    ];
    let mut rules: Vec<Rule> = table
        .iter()
        .filter_map(|(p, t)| Rule::parse(p, *t).ok())
        .collect();
    rules.extend(Rule::parse("GET|HEAD|OPTIONS /**", ReadCrud).ok());
    rules.extend(Rule::parse("/**", MutationCrud).ok());
    rules
}

/// The rules in force: the user's first, then the defaults.
#[derive(Debug, Clone)]
pub struct Classifier {
    rules: Vec<Rule>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            rules: default_rules(),
        }
    }
}

impl Classifier {
    pub fn new(user: Vec<Rule>) -> Classifier {
        let mut rules = user;
        rules.extend(default_rules());
        Classifier { rules }
    }

    /// Classifies a route `METHOD /template` (a route without a method counts as GET).
    pub fn classify(&self, route: &str) -> EndpointType {
        let (method, path) = match route.split_once(' ') {
            Some((m, p)) => (m, p),
            None => ("GET", route),
        };
        self.rules
            .iter()
            .find(|r| r.matches(method, path))
            .map(|r| r.endpoint_type)
            .unwrap_or(if method == "GET" {
                EndpointType::ReadCrud
            } else {
                EndpointType::MutationCrud
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EndpointType::*;

    #[test]
    fn powernode_defaults() {
        let c = Classifier::default();
        assert_eq!(c.classify("POST /api/v1/auth/login"), Authentication);
        assert_eq!(c.classify("POST /api/v1/ai/agents/:id/execute"), AiLlm);
        assert_eq!(c.classify("POST /api/v1/ai/missions"), AiSync);
        assert_eq!(c.classify("GET /api/v1/ai/monitoring/dashboard"), Analytics);
        assert_eq!(c.classify("POST /api/v1/webhooks/stripe"), Webhook);
        assert_eq!(c.classify("GET /api/v1/users/:id"), ReadCrud);
        assert_eq!(c.classify("PATCH /api/v1/users/:id"), MutationCrud);
        assert_eq!(c.classify("DELETE /api/v1/users/:id"), MutationCrud);
        assert_eq!(c.classify("GET /api/v1/analytics/usage"), Analytics);
    }

    #[test]
    fn user_rules_come_first() {
        let c = Classifier::new(vec![Rule::parse("GET /api/v1/users/**", Analytics).unwrap()]);
        assert_eq!(c.classify("GET /api/v1/users/:id"), Analytics);
        assert_eq!(c.classify("PUT /api/v1/users/:id"), MutationCrud);
        assert!(Rule::parse("users", ReadCrud).is_err());
        assert!(Rule::parse("G3T /x", ReadCrud).is_err());
    }
}
