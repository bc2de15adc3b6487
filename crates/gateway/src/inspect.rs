//! `powertune gateway status` as one inspection: read the baseline (if any), collect
//! `/status` (the only network I/O), save a baseline (if asked), judge, render.

use crate::baseline::Baseline;
use crate::collect::collect_status;
use crate::error::GatewayError;
use crate::judge::judge;
use crate::render::render;
use crate::snapshot::StatusSnapshot;
use powertune_core::report::Style;
use powertune_core::{Inspection, Targets};
use std::path::PathBuf;
use std::sync::Arc;

/// The metrics payload of a gateway status report: the `/status` snapshot as served.
pub type StatusMetrics = StatusSnapshot;

/// Told one line of progress the terminal may show (a saved baseline).
pub type Note = Arc<dyn Fn(&str) + Send + Sync>;

/// What `powertune gateway status` is asked to do.
#[derive(Clone)]
pub struct StatusOptions {
    /// The gateway's base URL (`http://127.0.0.1:4000`).
    pub url: String,
    /// Judge provider P95 against this saved baseline.
    pub baseline: Option<PathBuf>,
    /// Save the current provider P95s as a baseline here.
    pub save_baseline: Option<PathBuf>,
    /// Styling of the terminal section.
    pub style: Style,
    /// Told of what the inspection did besides reporting (the baseline it saved).
    pub note: Option<Note>,
}

impl std::fmt::Debug for StatusOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusOptions")
            .field("url", &crate::config::redact_url(&self.url))
            .field("baseline", &self.baseline)
            .field("save_baseline", &self.save_baseline)
            .finish_non_exhaustive()
    }
}

impl StatusOptions {
    /// Options for `url` with no baseline, plain text and no notes.
    pub fn new(url: impl Into<String>) -> Self {
        StatusOptions {
            url: url.into(),
            baseline: None,
            save_baseline: None,
            style: Style::plain(),
            note: None,
        }
    }
}

/// Inspects the gateway at `o.url` against the runbook's AI provider targets.
pub async fn inspect(
    o: &StatusOptions,
    targets: &Targets,
) -> Result<Inspection<StatusMetrics>, GatewayError> {
    let baseline = o.baseline.as_deref().map(Baseline::load).transpose()?;
    let snap = collect_status(&o.url).await?;
    if let Some(path) = &o.save_baseline {
        let b = Baseline::from_snapshot(&snap);
        b.save(path, &o.url)?;
        if let Some(note) = &o.note {
            note(&format!(
                "saved a baseline of {} providers to {}",
                b.providers.len(),
                path.display()
            ));
        }
    }
    let findings = judge(&snap, baseline.as_ref(), &targets.ai);
    let text = render(&snap, o.style);
    Ok(Inspection::new("gateway status", findings, snap, text))
}
