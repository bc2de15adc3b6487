//! `powertune load FILE --k8s-job N --image IMAGE`: prints the Kubernetes manifest
//! (`powertune_load::k8s`) that runs the plan as N segments and merges them, after
//! checking that the plan reads and splits into N segments here.

use super::Context;
use anyhow::{anyhow, bail};
use powertune_core::ExitCode;
use powertune_load::k8s::{dns_label, equal_sequence, manifest, JobSpec};
use powertune_load::segment::{parse_sequence, Share};
use powertune_load::Plan;
use std::io::Write;
use std::path::PathBuf;

/// What the load command's flags ask for.
pub struct Request {
    pub segments: u32,
    pub image: String,
    pub plan_file: PathBuf,
    pub base_url: String,
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    pub extra_args: Vec<String>,
    pub results_size: String,
    /// A flag given that the pods cannot be given, and why.
    pub refused: Option<&'static str>,
}

/// How long after the manifest is printed the pods start by default: time to apply
/// it and for the pods to be scheduled.
const DEFAULT_LEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

pub fn print(ctx: &Context, r: &Request, plan: &Plan) -> anyhow::Result<ExitCode> {
    if let Some(what) = r.refused {
        bail!("--k8s-job does not take {what}");
    }
    // Every pod's segment must be runnable: the split is checked for all of them.
    let points = parse_sequence(&equal_sequence(r.segments))?;
    plan.clone().split(Share::new(points, 0)?)?;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map_err(|e| anyhow!("--k8s-job: cannot read {}: {e}", p.display()))
    };
    let plan_name = file_name(&r.plan_file)?;
    let mut files = vec![(plan_name.clone(), read(&r.plan_file)?)];
    let dir = r
        .plan_file
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    for sc in &plan.scenarios {
        let Some(d) = &sc.data else { continue };
        let p = PathBuf::from(&d.path);
        let beside = p.parent().map(|q| same_dir(q, &dir)).unwrap_or(false);
        if !beside {
            bail!(
                "--k8s-job: scenario `{}`'s data file {} is not beside {}; the pods see the plan's folder only, so put the file there (file = \"{}\")",
                sc.name,
                d.path,
                r.plan_file.display(),
                p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
            );
        }
        let name = file_name(&p)?;
        if !files.iter().any(|(n, _)| *n == name) {
            files.push((name, read(&p)?));
        }
    }
    let targets = ctx.targets_path.as_deref().map(read).transpose()?;
    let start_at = r
        .start_at
        .unwrap_or_else(|| chrono::Utc::now() + DEFAULT_LEAD);
    let stem = r
        .plan_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spec = JobSpec {
        name: dns_label(&format!("powertune-{stem}")),
        image: r.image.clone(),
        segments: r.segments,
        files,
        plan_file: plan_name,
        targets,
        base_url: r.base_url.clone(),
        start_at: start_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        extra_args: r.extra_args.clone(),
        results_size: r.results_size.clone(),
    };
    let yaml = manifest(&spec)?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(ExitCode::Passed)
}

fn file_name(p: &std::path::Path) -> anyhow::Result<String> {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("--k8s-job: {} has no file name", p.display()))
}

fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    let norm = |p: &std::path::Path| {
        let p = if p.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            p
        };
        std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
    };
    norm(a) == norm(b)
}
