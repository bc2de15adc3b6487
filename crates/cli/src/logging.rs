//! Logs of the long-running services (`gateway`, `apm serve`, `target`): tracing
//! events on standard error, filtered by `RUST_LOG` (tracing-subscriber's
//! `EnvFilter` syntax; `warn` when unset), as text or, with
//! `POWERTUNE_LOG_FORMAT=json`, one JSON object per line. Under systemd (which sets
//! `JOURNAL_STREAM`) text lines carry no timestamp of their own: the journal adds one.
//! The commands' own status lines (listening, reload, stopped) stay plain lines on
//! standard error whatever the filter.

use anyhow::anyhow;
use is_terminal::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// The filter when `RUST_LOG` is unset or empty.
pub const DEFAULT_FILTER: &str = "warn";

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Reads `RUST_LOG` and `POWERTUNE_LOG_FORMAT`; a bad value is one clear error.
pub fn settings() -> anyhow::Result<(EnvFilter, Format)> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::try_new(s.trim()).map_err(|e| {
            anyhow!(
                "RUST_LOG={s:?}: {e}; e.g. RUST_LOG=info or RUST_LOG=warn,powertune_serve=debug"
            )
        })?,
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let format = match std::env::var("POWERTUNE_LOG_FORMAT").as_deref() {
        Err(_) | Ok("") | Ok("text") => Format::Text,
        Ok("json") => Format::Json,
        Ok(other) => {
            return Err(anyhow!(
                "POWERTUNE_LOG_FORMAT={other:?}: expected text or json"
            ))
        }
    };
    Ok((filter, format))
}

/// Installs the subscriber for a service command.
pub fn init() -> anyhow::Result<()> {
    let (filter, format) = settings()?;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = (format == Format::Text && !journald)
        .then(|| fmt::layer().with_writer(std::io::stderr).with_ansi(ansi));
    let journal = (format == Format::Text && journald).then(|| {
        fmt::layer()
            .without_time()
            .with_writer(std::io::stderr)
            .with_ansi(false)
    });
    let json = (format == Format::Json).then(|| {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(journal)
        .with(json)
        .try_init()
        .map_err(|e| anyhow!("cannot start logging: {e}"))
}

/// The service a command line starts, if it starts one: `gateway` (not `gateway
/// status`), `apm serve`, `target`.
pub fn service(matches: &clap::ArgMatches) -> Option<&'static str> {
    match matches.subcommand() {
        Some(("gateway", m)) if m.subcommand().is_none() => Some("gateway"),
        Some(("apm", m)) if m.subcommand_name() == Some("serve") => Some("apm serve"),
        Some(("target", _)) => Some("target"),
        Some(("provider-sim", _)) => Some("provider-sim"),
        _ => None,
    }
}
