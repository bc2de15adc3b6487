//! Why a capacity run could not start or go on.

/// One clear line each; nothing here carries a secret (URLs are redacted first).
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// A bad `[capacity]` key or flag.
    #[error("{0}")]
    Config(String),
    /// The scenario file cannot be used for capacity steps.
    #[error("{0}")]
    Plan(String),
    /// A resource source given on the command line is unusable (`--pid 0`).
    #[error("{0}")]
    Source(String),
    /// The load engine could not run a step.
    #[error("step at {rate}/s: {source}")]
    Load {
        rate: String,
        #[source]
        source: powertune_load::LoadError,
    },
}
