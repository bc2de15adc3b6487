//! The entries of `apm report`, `apm endpoint` and `apm analyze`: collect → snapshot
//! → judge → render, returned as one [`Inspection`] with the typed snapshot as its
//! metrics payload. The CLI parses and validates the options, calls one of these and
//! emits what it gets back.
//!
//! `report` and `endpoint` are async (they ask a running receiver over HTTP);
//! `analyze` and `analyze_endpoint` read a file and are synchronous.

use crate::collect::baseline;
use crate::collect::file::{self, OfflineError};
use crate::collect::receiver::{self, ClientError};
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::judge::{judge, judge_endpoint};
use crate::render;
use crate::snapshot::{Baseline, EndpointDetail, Summary};
use powertune_core::baseline::BaselineError;
use powertune_core::{Inspection, Targets};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Routes shown in the table above the findings, at most.
pub const TABLE_ROUTES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ApmError {
    #[error(transparent)]
    Receiver(#[from] ClientError),
    #[error(transparent)]
    File(#[from] OfflineError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error("--endpoint `{route}`: no such route in {file} (routes there: {known})")]
    UnknownRoute {
        route: String,
        file: String,
        known: String,
    },
}

/// `apm report`: the receiver's window judged against the targets.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Base URL of the receiver, checked with [`receiver::base_url`].
    pub url: url::Url,
    pub window: Duration,
    /// Saved provider P95s to compare with.
    pub baseline: Option<PathBuf>,
    /// Where to write the providers' current P95s.
    pub save_baseline: Option<PathBuf>,
}

/// `apm endpoint`: the slow-endpoint procedure for one route of the receiver's window.
#[derive(Debug, Clone)]
pub struct EndpointOptions {
    pub url: url::Url,
    /// `METHOD /template`, as the receiver names it.
    pub route: String,
    pub window: Duration,
}

/// `apm analyze`: an OTLP/JSON export file analysed offline.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub file: PathBuf,
    pub engine: EngineConfig,
    pub baseline: Option<PathBuf>,
    pub save_baseline: Option<PathBuf>,
}

/// `apm report`.
pub async fn report(o: &ReportOptions, t: &Targets) -> Result<Inspection<Summary>, ApmError> {
    let base = read_baseline(o.baseline.as_deref())?;
    let summary = receiver::fetch_summary(&o.url, Some(o.window)).await?;
    save_baseline(o.save_baseline.as_deref(), o.url.as_str(), &summary)?;
    Ok(routes_inspection("apm report", summary, t, base.as_ref()))
}

/// `apm endpoint`.
pub async fn endpoint(
    o: &EndpointOptions,
    t: &Targets,
) -> Result<Inspection<EndpointDetail>, ApmError> {
    let detail = receiver::fetch_endpoint(&o.url, &o.route, Some(o.window)).await?;
    Ok(endpoint_inspection(detail, t))
}

/// `apm analyze`: the route table and every check over the whole file.
pub fn analyze(o: &AnalyzeOptions, t: &Targets) -> Result<Inspection<Summary>, ApmError> {
    let (_, summary, base) = analyze_file(o)?;
    Ok(routes_inspection("apm analyze", summary, t, base.as_ref()))
}

/// `apm analyze --endpoint ROUTE`: the slow-endpoint procedure for one route of the
/// file.
pub fn analyze_endpoint(
    o: &AnalyzeOptions,
    route: &str,
    t: &Targets,
) -> Result<Inspection<EndpointDetail>, ApmError> {
    let (engine, summary, _) = analyze_file(o)?;
    let detail = engine
        .endpoint(route, 0, None)
        .ok_or_else(|| ApmError::UnknownRoute {
            route: route.to_string(),
            file: o.file.display().to_string(),
            known: summary
                .routes
                .iter()
                .map(|r| r.route.as_str())
                .take(5)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    Ok(endpoint_inspection(detail, t))
}

/// Reads the baseline (a bad one is an error before any work), analyses the file
/// and saves the new baseline when asked.
fn analyze_file(o: &AnalyzeOptions) -> Result<(Engine, Summary, Option<Baseline>), ApmError> {
    let base = read_baseline(o.baseline.as_deref())?;
    let mut engine = Engine::new(o.engine.clone());
    let summary = file::analyze_file(&o.file, &mut engine)?;
    let source = o.file.display().to_string();
    save_baseline(o.save_baseline.as_deref(), &source, &summary)?;
    Ok((engine, summary, base))
}

fn read_baseline(p: Option<&Path>) -> Result<Option<Baseline>, BaselineError> {
    p.map(baseline::read).transpose()
}

fn save_baseline(p: Option<&Path>, source: &str, s: &Summary) -> Result<(), BaselineError> {
    match p {
        Some(p) => baseline::write(p, source, &Baseline::from_summary(s)),
        None => Ok(()),
    }
}

fn routes_inspection(
    command: &'static str,
    summary: Summary,
    t: &Targets,
    base: Option<&Baseline>,
) -> Inspection<Summary> {
    let findings = judge(&summary, t, base);
    let text = render::routes_table(&summary, TABLE_ROUTES);
    Inspection::new(command, findings, summary, text)
}

fn endpoint_inspection(detail: EndpointDetail, t: &Targets) -> Inspection<EndpointDetail> {
    let findings = judge_endpoint(&detail, t);
    let text = render::endpoint(&detail);
    Inspection::new("apm endpoint", findings, detail, text)
}
