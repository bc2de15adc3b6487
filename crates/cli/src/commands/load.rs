//! `powertune load`: run a scenario file (or a one-off `--url`) and judge it against the
//! runbook's targets and the file's thresholds.

use super::Context;
use anyhow::bail;
use powertune_core::threshold::Threshold;
use powertune_core::{EndpointType, ExitCode};
use powertune_load::template::safe_header_value;
use powertune_load::{OneOff, Plan, RunOptions, Summary};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Scenario file (TOML; see docs/scenarios.md). Omit it and give --url for a
    /// one-off run.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,

    /// Base URL every relative step URL is joined to (overrides options.base_url).
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,

    /// One-off run against this URL (no scenario file), e.g. http://127.0.0.1:8080/health.
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    url: Option<String>,

    /// Virtual users (closed model), or pre-allocated VUs with --rate (1 to
    /// 1,000,000). With FILE it replaces every scenario's executor (see docs/load.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    vus: Option<u32>,

    /// How long to run (e.g. 30s, 5m; at most 30 days). With FILE it replaces every
    /// scenario's executor (see docs/load.md).
    #[arg(long, value_name = "DURATION", value_parser = crate::args::positive_duration_at_most(powertune_load::plan::MAX_DURATION))]
    duration: Option<Duration>,

    /// Open model at this arrival rate (e.g. 200/s, 200, 12000/m). With FILE it
    /// replaces every scenario's executor with constant-arrival-rate.
    #[arg(long, value_name = "RATE", value_parser = crate::args::rate)]
    rate: Option<f64>,

    /// One-off: HTTP method [default: GET].
    #[arg(long)]
    method: Option<String>,

    /// One-off: a request header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,

    /// One-off: request body.
    #[arg(long, value_name = "TEXT")]
    body: Option<String>,

    /// One-off: the runbook endpoint type the URL is judged as (e.g. read_crud,
    /// authentication) [default: read_crud].
    #[arg(
        long,
        value_name = "TYPE",
        value_parser = |s: &str| s.parse::<EndpointType>()
    )]
    endpoint_type: Option<EndpointType>,

    /// A threshold in k6 syntax, on http_req_duration unless a metric is named:
    /// 'p(95)<200', 'http_req_failed: rate<0.01' (repeatable).
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,

    /// A variable for {{NAME}} templates: NAME=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// Multiply every scenario duration by this factor (0.1 = ten times shorter).
    #[arg(long, value_name = "FACTOR", value_parser = crate::args::factor)]
    time_scale: Option<f64>,

    /// An earlier run's JSON report: applies "throughput ≥ baseline × 0.8" and shows
    /// each metric's change.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,

    #[command(flatten)]
    output: crate::args::Output,

    #[command(flatten)]
    journal: super::verify::JournalArgs,

    /// k6's spelling of --json: `--out json=FILE`; live metrics with
    /// `--out prometheus-rw=URL` (Prometheus remote write) or `--out otlp=URL` (OTLP
    /// metrics over HTTP; see docs/scale-out.md). Repeatable.
    #[arg(long, value_name = "KIND=TARGET")]
    out: Vec<String>,

    /// How often --out prometheus-rw and --out otlp push (e.g. 5s, at least 100ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::args::positive_duration_at_most(std::time::Duration::from_secs(3600)))]
    out_interval: Duration,

    /// No live progress on standard error.
    #[arg(long, short = 'q')]
    quiet: bool,

    /// k6's noVUConnectionReuse: each VU closes its connection at the end of every
    /// iteration (and before thinking), so sleeping VUs hold no socket.
    #[arg(long)]
    no_vu_connection_reuse: bool,

    /// Send a W3C traceparent (sampled, a new trace per request) on every request and
    /// WebSocket upgrade; the report names the slowest requests' trace ids.
    #[arg(long)]
    trace: bool,

    /// Trust the certificate authorities in this PEM file too (a staging CA).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,

    /// k6's insecureSkipTLSVerify: accept any server certificate.
    #[arg(long)]
    insecure_skip_tls_verify: bool,

    /// Run one execution segment of the plan: i/n (the i-th of n equal parts, e.g.
    /// 2/4) or k6's from:to (1/4:1/2, 25%:50%). See docs/scale-out.md.
    #[arg(long, value_name = "SEGMENT", conflicts_with = "segment_index")]
    segment: Option<String>,

    /// k6's execution segment sequence, every split point from 0 to 1
    /// (0,1/4,1/2,3/4,1); give the same one to every part of an uneven split.
    #[arg(long, value_name = "SEQUENCE")]
    segment_sequence: Option<String>,

    /// Run segment K (0-based) of --segment-sequence (a Kubernetes Indexed Job passes
    /// its JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "K", requires = "segment_sequence")]
    segment_index: Option<usize>,

    /// Start the load at this time (RFC 3339, e.g. 2026-12-05T10:00:00Z) so the
    /// segments on several machines begin together; a past time starts at once.
    #[arg(long, value_name = "TIME", value_parser = rfc3339)]
    start_at: Option<chrono::DateTime<chrono::Utc>>,

    /// Print a Kubernetes manifest instead of running: a ConfigMap with the plan, an
    /// Indexed Job of N pods (one segment each) and a suspended merge Job (see
    /// docs/scale-out.md).
    #[arg(long, value_name = "N", requires = "image", value_parser = clap::value_parser!(u32).range(1..=10_000), conflicts_with_all = ["segment", "segment_index", "segment_sequence", "url"])]
    k8s_job: Option<u32>,

    /// The powertune image the pods run (with --k8s-job), e.g. registry/powertune:0.2.
    #[arg(long, value_name = "IMAGE", requires = "k8s_job")]
    image: Option<String>,

    /// The results volume's size request (with --k8s-job).
    #[arg(long, value_name = "SIZE", default_value = "1Gi", requires = "k8s_job")]
    k8s_results_size: String,
}

fn rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("`{s}` is not an RFC 3339 time ({e}), e.g. 2026-12-05T10:00:00Z"))
}

/// The execution segment the flags ask for (the whole run when none).
fn share(args: &Args) -> anyhow::Result<powertune_load::segment::Share> {
    use powertune_load::segment::{parse_sequence, Share};
    let share = match (&args.segment, args.segment_index, &args.segment_sequence) {
        (Some(s), _, q) => Share::parse(s, q.as_deref())?,
        (None, Some(k), Some(q)) => {
            let points = parse_sequence(q)?;
            if k + 1 >= points.len() {
                bail!(
                    "--segment-index {k} is past the {} segments of --segment-sequence {q} (0-based, e.g. --segment-index 0)",
                    points.len() - 1
                );
            }
            Share::new(points, k)?
        }
        (None, None, Some(_)) => {
            bail!("--segment-sequence needs --segment (e.g. --segment 1/4:1/2) or --segment-index (e.g. 0)")
        }
        _ => Share::whole(),
    };
    Ok(share)
}

/// What `--k8s-job` needs from the flags: the pods get the same executor flags.
fn args_k8s(
    args: &Args,
    n: u32,
    file: &std::path::Path,
    base_url: &str,
) -> super::load_k8s::Request {
    let mut extra: Vec<String> = Vec::new();
    let mut flag = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            extra.push(name.to_string());
            extra.push(v);
        }
    };
    flag("--vus", args.vus.map(|v| v.to_string()));
    flag(
        "--duration",
        args.duration.map(|d| format!("{}ms", d.as_millis())),
    );
    flag("--rate", args.rate.map(|r| r.to_string()));
    flag("--time-scale", args.time_scale.map(|t| t.to_string()));
    for t in &args.thresholds {
        extra.push("--threshold".into());
        extra.push(t.clone());
    }
    if args.no_vu_connection_reuse {
        extra.push("--no-vu-connection-reuse".into());
    }
    if args.trace {
        extra.push("--trace".into());
    }
    if args.insecure_skip_tls_verify {
        extra.push("--insecure-skip-tls-verify".into());
    }
    super::load_k8s::Request {
        segments: n,
        image: args.image.clone().unwrap_or_default(),
        plan_file: file.to_path_buf(),
        base_url: base_url.to_string(),
        start_at: args.start_at,
        extra_args: extra,
        results_size: args.k8s_results_size.clone(),
        refused: [
            (!args.env.is_empty(), "--env (its values would be written into the manifest; give them to the pods from a Secret)"),
            (args.ca_cert.is_some(), "--ca-cert (the file is not shipped to the pods)"),
            (args.baseline.is_some(), "--baseline (give it to the merge step)"),
        ]
        .into_iter()
        .find_map(|(given, what)| given.then_some(what)),
    }
}

/// `--env NAME=VALUE` flags as a map (`load` and `capacity`).
pub fn parse_env(flags: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut env = HashMap::new();
    for e in flags {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => bail!("--env `{e}` is not NAME=VALUE (expected e.g. --env JWT=abc)"),
        }
    }
    Ok(env)
}

/// Splits `http://host:port/path?q` into (`http://host:port`, `/path?q`).
fn split_url(u: &str) -> anyhow::Result<(String, String)> {
    let Some(i) = u.find("://") else {
        bail!("--url `{u}` has no scheme (expected e.g. http://127.0.0.1:8080/health)");
    };
    let rest = &u[i + 3..];
    let (auth, path) = match rest.find(['/', '?']) {
        Some(j) => (&rest[..j], &rest[j..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        bail!("--url `{u}` has no host (expected e.g. http://127.0.0.1:8080/health)");
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok((format!("{}{auth}", &u[..i + 3]), path))
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    // Everything is validated before any socket opens.
    let targets = ctx.targets()?;
    args.journal.check()?;
    if args.k8s_job.is_some() && args.journal.journal.is_some() {
        bail!("--journal records a run's verdict and --k8s-job runs nothing here: journal the merged run instead");
    }
    let mut json_out: Option<PathBuf> = None;
    let mut sinks = Vec::new();
    for o in &args.out {
        match o.strip_prefix("json=") {
            Some("") => bail!("--out `{o}` names no file (expected json=FILE)"),
            Some(_) if json_out.is_some() => bail!("--out json=FILE is given twice"),
            Some(f) => json_out = Some(PathBuf::from(f)),
            None => sinks.push(powertune_load::out::Sink::parse(o).map_err(anyhow::Error::msg)?),
        }
    }
    if args.out_interval < Duration::from_millis(100) {
        bail!("--out-interval must be at least 100ms, e.g. --out-interval 5s");
    }
    let json_path: Option<PathBuf> = match (&args.output.json, json_out) {
        (Some(_), Some(_)) => bail!("give --json FILE or --out json=FILE, not both"),
        (j, o) => j.clone().or(o),
    };
    let env = parse_env(&args.env)?;
    let (mut plan, base_url) = match (&args.file, &args.url) {
        (Some(f), None) => {
            if let Some(flag) = one_off_flag(&args) {
                bail!(
                    "{flag} describes the request of a one-off --url run; with a scenario file, set it on the step in {}",
                    f.display()
                );
            }
            let mut plan = Plan::from_path(f)?;
            if args.vus.is_some() || args.duration.is_some() || args.rate.is_some() {
                // k6's CLI flags override the script's options the same way.
                plan.override_executors(args.vus, args.duration, args.rate);
                if !args.quiet {
                    eprintln!(
                        "powertune load: {} replace the executors of the {} scenario(s) of {} ({}, all starting at once)",
                        override_flags(&args),
                        plan.scenarios.len(),
                        f.display(),
                        if args.rate.is_some() { "constant-arrival-rate" } else { "constant-vus" }
                    );
                }
            }
            let base = args
                .base_url
                .clone()
                .or_else(|| plan.options.base_url.clone())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no base URL: give --base-url (e.g. --base-url http://127.0.0.1:8080) or options.base_url in {}",
                        f.display()
                    )
                })?;
            (plan, base)
        }
        (None, Some(u)) => {
            let (base, path) = split_url(u)?;
            let duration = args.duration.unwrap_or(Duration::from_secs(10));
            let rate = args.rate;
            let mut headers = Vec::new();
            for h in &args.headers {
                match h.split_once(':') {
                    Some((k, v)) if !safe_header_value(v.trim()) => bail!(
                        "-H `{}`: the value holds a CR, LF or other control character, which would inject headers; give it on one line, e.g. -H '{}: Bearer abc'",
                        k.trim(),
                        k.trim()
                    ),
                    Some((k, v)) if !k.trim().is_empty() => {
                        headers.push((k.trim().to_string(), v.trim().to_string()))
                    }
                    _ => bail!("-H `{h}` is not 'Name: value' (expected e.g. -H 'Authorization: Bearer abc')"),
                }
            }
            let endpoint_type = args.endpoint_type.unwrap_or(EndpointType::ReadCrud);
            let vus = args.vus.unwrap_or(10);
            let plan = Plan::one_off(&OneOff {
                url: path,
                method: args.method.clone().unwrap_or_else(|| "GET".into()),
                headers,
                body: args.body.clone(),
                vus,
                duration,
                rate,
                endpoint_type,
            })?;
            (plan, base)
        }
        _ => bail!("give a scenario file (powertune load FILE --base-url URL) or --url URL for a one-off run"),
    };
    for t in &args.thresholds {
        let th = Threshold::parse_flag(t, "http_req_duration")?;
        plan.add_threshold(th)
            .map_err(|e| anyhow::anyhow!("--threshold `{t}`: {e}"))?;
    }
    if let Some(f) = args.time_scale {
        plan.scale_time(f);
    }
    if args.no_vu_connection_reuse {
        plan.options.no_vu_connection_reuse = true;
    }
    if args.trace {
        plan.options.trace = true;
    }
    if let Some(c) = &args.ca_cert {
        plan.options.ca_cert = Some(c.clone());
    }
    if args.insecure_skip_tls_verify {
        plan.options.insecure_skip_tls_verify = true;
    }
    if let (Some(n), Some(f)) = (args.k8s_job, &args.file) {
        return super::load_k8s::print(ctx, &args_k8s(&args, n, f, &base_url), &plan);
    }
    plan.split(share(&args)?)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|p| Summary::read_report(p).map_err(|e| anyhow::anyhow!("--baseline {e}")))
        .transpose()?;
    let env = plan_env(&plan, env);
    let total = plan.total_duration();
    let mut opts = RunOptions::new(plan, base_url);
    opts.env = env;
    opts.baseline = baseline;
    opts.start_at = args.start_at;
    let outputs = (!sinks.is_empty())
        .then(|| std::sync::Arc::new(powertune_load::out::Outputs::new(sinks, args.out_interval)));
    opts.outputs = outputs.clone();
    let inspection = run_with_progress(opts, &targets, !args.quiet, total)?;
    if let Some(o) = &outputs {
        report_outputs(o);
    }
    let report = run_report(&inspection)?;
    args.journal.append(&report)?;
    super::emit(
        &report,
        &inspection.text,
        crate::outputs::Files::from(&args.output).with_json(json_path.as_deref()),
    )
}

/// One line per live output on standard error: what it pushed, dropped and why
/// pushes failed.
fn report_outputs(o: &powertune_load::out::Outputs) {
    use std::sync::atomic::Ordering::Relaxed;
    for (sink, st) in &o.sinks {
        let mut line = format!(
            "powertune load: --out {}: {} pushed, {} dropped (queue full), {} failed",
            sink.kind(),
            st.pushed.load(Relaxed),
            st.dropped.load(Relaxed),
            st.failed.load(Relaxed)
        );
        if let Some(e) = st.last_error.lock().as_ref() {
            line.push_str(&format!(" (last: {e})"));
        }
        eprintln!("{line}");
    }
}

/// A run's report, marked interrupted (exit code 105) when a signal cut it short.
pub fn run_report(
    inspection: &powertune_core::Inspection<powertune_load::LoadMetrics>,
) -> anyhow::Result<powertune_core::Report> {
    let mut report = inspection
        .report()
        .map_err(|e| anyhow::anyhow!("cannot build the report: {e}"))?;
    if inspection.metrics.summary.interrupted {
        report.mark_interrupted();
    }
    Ok(report)
}

/// The first flag given that only a one-off `--url` run takes.
fn one_off_flag(args: &Args) -> Option<&'static str> {
    [
        (args.method.is_some(), "--method"),
        (!args.headers.is_empty(), "-H/--header"),
        (args.body.is_some(), "--body"),
        (args.endpoint_type.is_some(), "--endpoint-type"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
}

/// The executor flags given, as the note names them.
fn override_flags(args: &Args) -> String {
    let mut v = Vec::new();
    if args.vus.is_some() {
        v.push("--vus");
    }
    if args.duration.is_some() {
        v.push("--duration");
    }
    if args.rate.is_some() {
        v.push("--rate");
    }
    v.join(" and ")
}

/// The values of `{{NAME}}` for the plan: the process environment's values of the
/// names the plan's templates use, overridden by `overrides` (`--env NAME=VALUE`).
pub fn plan_env(plan: &Plan, overrides: HashMap<String, String>) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = plan
        .variables()
        .into_iter()
        .filter_map(|name| std::env::var(&name).ok().map(|v| (name, v)))
        .collect();
    env.extend(overrides);
    env
}

/// Inspects the run on a fresh runtime, with live progress on standard error when
/// `show` is set.
pub fn run_with_progress(
    mut opts: RunOptions,
    targets: &powertune_core::Targets,
    show: bool,
    total: Duration,
) -> anyhow::Result<powertune_core::Inspection<powertune_load::LoadMetrics>> {
    let progress = show.then(|| crate::progress::LoadProgress::new(total));
    opts.progress = progress.as_ref().map(|p| p.callback());
    let result = super::block_on(async move {
        // SIGINT/SIGTERM: the first stops the run gracefully, a second at once; the
        // summary and --json are still written, marked interrupted.
        let interrupt = crate::signal::Interrupt::listen("the run");
        opts.stop = Some(interrupt.graceful().clone());
        opts.halt = Some(interrupt.hard().clone());
        powertune_load::inspect(&opts, targets).await
    });
    if let Some(p) = &progress {
        p.finish();
    }
    Ok(result??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health?x=1").unwrap(),
            ("http://127.0.0.1:8080".into(), "/health?x=1".into())
        );
        assert_eq!(
            split_url("https://a.example").unwrap(),
            ("https://a.example".into(), "/".into())
        );
        assert!(split_url("127.0.0.1/x").is_err());
    }
}
