//! The runbook's endpoint types ("Key Performance Targets" → "API Latency (P95)").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One row of the runbook's API latency table.
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
#[serde(rename_all = "snake_case")]
pub enum EndpointType {
    Authentication,
    ReadCrud,
    MutationCrud,
    AiSync,
    AiLlm,
    Analytics,
    Webhook,
}

impl EndpointType {
    pub const ALL: [EndpointType; 7] = [
        EndpointType::Authentication,
        EndpointType::ReadCrud,
        EndpointType::MutationCrud,
        EndpointType::AiSync,
        EndpointType::AiLlm,
        EndpointType::Analytics,
        EndpointType::Webhook,
    ];

    /// The key used in `powertune.toml` and scenario files.
    pub fn key(self) -> &'static str {
        match self {
            EndpointType::Authentication => "authentication",
            EndpointType::ReadCrud => "read_crud",
            EndpointType::MutationCrud => "mutation_crud",
            EndpointType::AiSync => "ai_sync",
            EndpointType::AiLlm => "ai_llm",
            EndpointType::Analytics => "analytics",
            EndpointType::Webhook => "webhook",
        }
    }

    /// The runbook's own name for the row.
    pub fn title(self) -> &'static str {
        match self {
            EndpointType::Authentication => "Authentication",
            EndpointType::ReadCrud => "Read-heavy CRUD",
            EndpointType::MutationCrud => "Mutation CRUD",
            EndpointType::AiSync => "AI orchestration (synchronous)",
            EndpointType::AiLlm => "AI orchestration (LLM call)",
            EndpointType::Analytics => "Analytics / reporting",
            EndpointType::Webhook => "Webhook ingest",
        }
    }
}

impl fmt::Display for EndpointType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title())
    }
}

impl FromStr for EndpointType {
    type Err = String;

    /// Accepts the key (`read_crud`), the runbook title (`Read-heavy CRUD`) and
    /// loose spellings (`read-heavy crud`, `ai orchestration sync`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("_");
        let t = match norm.as_str() {
            "authentication" | "auth" => EndpointType::Authentication,
            "read_crud" | "read_heavy_crud" | "read" => EndpointType::ReadCrud,
            "mutation_crud" | "mutation" | "write_crud" => EndpointType::MutationCrud,
            "ai_sync" | "ai_orchestration_sync" | "ai_orchestration_synchronous" => {
                EndpointType::AiSync
            }
            "ai_llm" | "ai_orchestration_llm_call" | "ai_orchestration_llm" | "llm_call" => {
                EndpointType::AiLlm
            }
            "analytics" | "analytics_reporting" | "reporting" => EndpointType::Analytics,
            "webhook" | "webhook_ingest" | "webhooks" => EndpointType::Webhook,
            _ => {
                let keys: Vec<&str> = EndpointType::ALL.iter().map(|t| t.key()).collect();
                return Err(format!(
                    "unknown endpoint type `{s}` (expected one of: {})",
                    keys.join(", ")
                ));
            }
        };
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_titles() {
        for t in EndpointType::ALL {
            assert_eq!(t.key().parse::<EndpointType>().unwrap(), t);
            assert_eq!(t.title().parse::<EndpointType>().unwrap(), t);
        }
        assert_eq!(
            "AI orchestration sync".parse::<EndpointType>().unwrap(),
            EndpointType::AiSync
        );
        assert!("graphql"
            .parse::<EndpointType>()
            .unwrap_err()
            .contains("read_crud"));
    }
}
