//! `powertune queues record`: samples Sidekiq every interval into a bounded history
//! file until stopped (Ctrl-C, SIGTERM or --samples), one progress line per sample on
//! standard error.

use crate::args;
use crate::commands::block_on;
use crate::commands::redis::ConnArgs;
use anyhow::anyhow;
use powertune_core::units;
use powertune_core::ExitCode;
use powertune_redis::sidekiq::history::file::{DEFAULT_MAX_BYTES, MAX_FILE_BYTES, MIN_MAX_BYTES};
use powertune_redis::sidekiq::history::{record, Event, RecordOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Time between samples (100ms to 1h).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = super::watch_interval)]
    interval: Duration,
    /// The history file: created with a header, or appended to after its header and
    /// every record are checked (an interrupted last write is cut off).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The file's bound (64KiB to 1GiB): past it the file is rewritten in compressed
    /// blocks and, if still over half the bound, its oldest samples are merged into
    /// coarser ones.
    #[arg(long, default_value = "16MiB", value_name = "SIZE", value_parser = max_bytes)]
    max_bytes: u64,
    /// Stop after N samples (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    samples: Option<u64>,
    /// No line per sample; gaps, compactions and the summary are still printed.
    #[arg(long)]
    quiet: bool,
}

fn max_bytes(s: &str) -> Result<u64, String> {
    let v = args::size(s)?;
    if !(MIN_MAX_BYTES..=MAX_FILE_BYTES).contains(&v) {
        return Err(format!(
            "must be from {} to {}, e.g. {}",
            units::bytes(MIN_MAX_BYTES),
            units::bytes(MAX_FILE_BYTES),
            units::bytes(DEFAULT_MAX_BYTES)
        ));
    }
    Ok(v)
}

fn clock(at: f64) -> String {
    chrono::DateTime::from_timestamp_millis((at * 1000.0) as i64)
        .map(|d| d.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The progress line of one event.
fn line(e: &Event, quiet: bool) -> Option<String> {
    Some(match e {
        Event::Opened(o) if o.created => "recording into a new history file".to_string(),
        Event::Opened(o) => format!(
            "appending to a history of {} records{}",
            o.records,
            if o.dropped_tail > 0 {
                format!(
                    " (cut off {} of an interrupted last write)",
                    units::bytes(o.dropped_tail)
                )
            } else {
                String::new()
            }
        ),
        Event::Sampled { .. } if quiet => return None,
        Event::Sampled { sample, file_bytes } => {
            let worst = sample
                .queues
                .iter()
                .max_by(|a, b| a.latency_s.total_cmp(&b.latency_s));
            format!(
                "{}  {} queues, {} enqueued, max latency {}{}  busy {}/{}  processed {} failed {}  retry {} dead {}  file {}",
                clock(sample.at),
                sample.queues.len(),
                sample.queues.iter().map(|q| q.depth).sum::<u64>(),
                units::seconds(worst.map(|q| q.latency_s).unwrap_or(0.0)),
                worst.map(|q| format!(" ({})", q.name)).unwrap_or_default(),
                units::count(sample.busy().round()),
                sample.concurrency(),
                sample.processed,
                sample.failed,
                sample.retry,
                sample.dead,
                units::bytes(*file_bytes)
            )
        }
        Event::Unreachable { reason } => {
            format!("cannot read Sidekiq, retrying every interval: {reason}")
        }
        Event::Resumed(g) => format!(
            "sampling again after a gap of {} ({})",
            units::seconds(g.to - g.from),
            g.reason
        ),
        Event::Compacted(c) => format!(
            "file at its bound: rewrote {} as {} ({} pairs of old samples merged, {} samples kept)",
            units::bytes(c.before_bytes),
            units::bytes(c.after_bytes),
            c.merged,
            c.samples
        ),
    })
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let conn = a.conn.validate()?;
    let opts = RecordOptions {
        conn,
        every: a.interval,
        max_bytes: a.max_bytes,
        samples: a.samples,
    };
    let quiet = a.quiet;
    let progress = |e: &Event| {
        if let Some(l) = line(e, quiet) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{l}");
            let _ = err.flush();
        }
    };
    let done = block_on(async {
        let interrupt = crate::signal::Interrupt::listen("the recording");
        let stop = interrupt.graceful().clone();
        record(&a.out, &opts, progress, stop.cancelled_owned()).await
    })?
    .map_err(|e| anyhow!("{e}"))?;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "recorded {} samples and {} gaps into {} ({}, {} rewrites)",
        done.samples,
        done.gaps,
        a.out.display(),
        units::bytes(done.file_bytes),
        done.compactions
    );
    Ok(ExitCode::Passed)
}
