//! `powertune redis keys`: the one entry. Connects, scans every key (or a sample),
//! judges and renders the scan.

use super::collect::{collect, Progress};
use super::judge::judge;
use super::options::ScanOptions;
use super::render::render;
use super::snapshot::ScanSnapshot;
use crate::conn::ConnOptions;
use crate::error::RedisError;
use powertune_core::{Inspection, Targets};
use serde::Serialize;

/// Everything `powertune redis keys` needs.
#[derive(Debug, Clone)]
pub struct KeysOptions {
    pub conn: ConnOptions,
    pub scan: ScanOptions,
}

/// The metrics payload of `powertune redis keys`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct KeysMetrics {
    pub scan: ScanSnapshot,
}

/// Scans the keys of the database the URL selects.
pub async fn inspect(
    options: &KeysOptions,
    targets: &Targets,
) -> Result<Inspection<KeysMetrics>, RedisError> {
    inspect_with(options, targets, &|_, _| {}).await
}

/// [`inspect`], calling `progress` after each batch with (keys scanned, keys in the
/// database).
pub async fn inspect_with(
    options: &KeysOptions,
    targets: &Targets,
    progress: Progress<'_>,
) -> Result<Inspection<KeysMetrics>, RedisError> {
    options.scan.validate()?;
    let mut conn = options.conn.open().await?;
    let scan = collect(&mut conn, &options.scan, progress).await?;
    let findings = judge(&scan, &targets.redis);
    let text = render(&scan);
    Ok(Inspection::new(
        "redis keys",
        findings,
        KeysMetrics { scan },
        text,
    ))
}
