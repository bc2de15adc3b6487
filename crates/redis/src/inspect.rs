//! `powertune redis`: the one entry. Connects once, then reads INFO, SLOWLOG and
//! (unless turned off) a sampled key scan, judges each and renders them in that order.

use crate::baseline::Baseline;
use crate::conn::ConnOptions;
use crate::error::RedisError;
use crate::info::{self, InfoJudgeInput, InfoSnapshot};
use crate::keys::{self, Progress, ScanOptions, ScanSnapshot};
use crate::slowlog::{self, SlowlogSnapshot};
use powertune_core::{Inspection, Targets};
use serde::Serialize;

/// SLOWLOG entries that may be asked for at most.
const SLOWLOG_MAX: u32 = 128;

/// Everything `powertune redis` needs.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub conn: ConnOptions,
    /// SLOWLOG entries read (1..=128).
    pub slowlog: u32,
    /// The ops/s baseline to judge against (`--baseline`, already read).
    pub baseline: Option<Baseline>,
    /// The key scan; None skips it (`--no-scan`).
    pub scan: Option<ScanOptions>,
}

impl RedisOptions {
    /// Checks the options before any connection opens.
    pub fn validate(&self) -> Result<(), RedisError> {
        if self.slowlog == 0 || self.slowlog > SLOWLOG_MAX {
            return Err(RedisError::Input {
                input: format!("--slowlog {}", self.slowlog),
                reason: format!("must be 1..={SLOWLOG_MAX}"),
                example: "--slowlog 10".into(),
            });
        }
        match &self.scan {
            Some(s) => s.validate(),
            None => Ok(()),
        }
    }
}

/// The metrics payload of `powertune redis`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RedisMetrics {
    pub info: InfoSnapshot,
    pub slowlog: SlowlogSnapshot,
    /// None when the scan was skipped.
    pub scan: Option<ScanSnapshot>,
}

/// Inspects one Redis database: INFO, SLOWLOG and the key scan.
pub async fn inspect(
    options: &RedisOptions,
    targets: &Targets,
) -> Result<Inspection<RedisMetrics>, RedisError> {
    inspect_with(options, targets, &|_, _| {}).await
}

/// [`inspect`], calling `progress` after each batch of the key scan with (keys
/// scanned, keys in the database).
pub async fn inspect_with(
    options: &RedisOptions,
    targets: &Targets,
    progress: Progress<'_>,
) -> Result<Inspection<RedisMetrics>, RedisError> {
    options.validate()?;
    let mut conn = options.conn.open().await?;
    let info_snap = info::collect(&mut conn).await?;
    let slow = slowlog::collect(&mut conn, options.slowlog).await?;
    let scan = match &options.scan {
        Some(o) => Some(keys::collect(&mut conn, o, progress).await?),
        None => None,
    };
    let input = InfoJudgeInput {
        baseline: options.baseline.clone(),
    };
    let mut findings = info::judge(&info_snap, &targets.redis, &input);
    findings.extend(slowlog::judge(&slow, &targets.redis));
    let mut text = info::render(&info_snap, &options.conn.url.redacted);
    text.push('\n');
    text.push_str(&slowlog::render(&slow));
    if let Some(s) = &scan {
        findings.extend(keys::judge(s, &targets.redis));
        text.push('\n');
        text.push_str(&keys::render(s));
    }
    Ok(Inspection::new(
        "redis",
        findings,
        RedisMetrics {
            info: info_snap,
            slowlog: slow,
            scan,
        },
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::RedisUrl;
    use std::time::Duration;

    #[test]
    fn slowlog_count_and_scan_options_are_validated() {
        let t = Targets::default();
        let mut o = RedisOptions {
            conn: ConnOptions {
                url: RedisUrl::parse("redis://127.0.0.1:1/0").unwrap(),
                timeout: Duration::from_secs(1),
            },
            slowlog: 10,
            baseline: None,
            scan: Some(ScanOptions::new(&t.redis, &t.cache)),
        };
        assert!(o.validate().is_ok());
        o.slowlog = 129;
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "--slowlog 129: must be 1..=128 (example: --slowlog 10)"
        );
        o.slowlog = 10;
        if let Some(s) = &mut o.scan {
            s.top = 0;
        }
        assert!(o.validate().unwrap_err().to_string().contains("--top 0"));
    }
}
