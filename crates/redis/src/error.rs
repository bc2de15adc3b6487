//! The one error type of the Redis engine: connect, query and parse failures are kept
//! apart so the CLI can say which. Messages carry the URL with its password removed.

/// Everything that can go wrong talking to Redis or reading what it holds.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The `--url` (or another option) is not usable; nothing was contacted.
    #[error("{input}: {reason} (example: {example})")]
    Input {
        input: String,
        reason: String,
        example: String,
    },
    /// The server could not be reached or refused the connection / database.
    #[error("cannot connect to Redis at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A command failed.
    #[error("Redis at {url}: {command} failed: {reason}")]
    Query {
        url: String,
        command: String,
        reason: String,
    },
    /// The server answered something that is not what the command returns.
    #[error("Redis at {url}: cannot read {what}: {reason}")]
    Parse {
        url: String,
        what: String,
        reason: String,
    },
    /// The database holds no Sidekiq data, or data that is not Sidekiq's.
    #[error("Redis at {url}: {reason}")]
    NotSidekiq { url: String, reason: String },
    /// A baseline file could not be read or written.
    #[error("baseline file {path}: {reason}")]
    Baseline { path: String, reason: String },
}
