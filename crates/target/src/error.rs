//! Errors of the embedded target: reading and validating its config, binding its port.

/// What can go wrong before or while the target serves.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The config file could not be read, is not valid TOML, has an unknown key or a
    /// bad value type, or a value is out of range: `FILE:LINE:COL: KEY: WHY, e.g.
    /// RIGHT` (a configuration built in code names `target settings` as its place).
    #[error(transparent)]
    Config(#[from] powertune_core::config_file::ConfigError),
    /// A flag's value cannot be applied (`--error-rate nope=0.1`).
    #[error("invalid target setting {field} = {value}: {reason} (example: {example})")]
    Invalid {
        field: String,
        value: String,
        reason: String,
        example: String,
    },
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (example: 127.0.0.1:8080, or port 0 for a free one)"
    )]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A connection limit is out of range (`--max-connections 0`).
    #[error("{0}")]
    Limits(String),
    /// The OTLP exporter could not be built.
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Telemetry(String),
    /// The configuration could not be written as TOML.
    #[error("cannot render the target configuration as TOML: {message}")]
    Render { message: String },
}
