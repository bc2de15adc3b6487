//! `powertune queues record`: reads a [`Sample`] every interval and appends it to a
//! history file ([`super::file`]) until stopped.
//!
//! Redis going away does not end the recording: the connection is opened again at
//! every interval, and when a sample is read again a [`Gap`] record (from the last
//! record to the first sample after it, with the first error) precedes it. Starting
//! on an existing file records the time the recorder was not running as a gap too.
//! Stopping (the `stop` future) between or during reads leaves every written record
//! whole; an open gap is written first.

use super::file::{Compaction, Gap, HistoryError, Opened, Record, Writer};
use super::sample::{read, Sample};
use crate::conn::{Conn, ConnOptions};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Queues read per sample at most (more are not recorded).
pub const MAX_QUEUES: usize = 1000;

#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub conn: ConnOptions,
    pub every: Duration,
    /// The file's bound in bytes.
    pub max_bytes: u64,
    /// Stop after this many samples (None: until stopped).
    pub samples: Option<u64>,
}

/// What the recorder tells as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Opened(Opened),
    Sampled {
        sample: Box<Sample>,
        file_bytes: u64,
    },
    /// A reading failed (Redis away, or its Sidekiq keys gone); the recorder keeps
    /// trying every interval.
    Unreachable {
        reason: String,
    },
    /// Sampling resumed after a gap.
    Resumed(Gap),
    Compacted(Compaction),
}

/// What a recording wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    pub samples: u64,
    pub gaps: u64,
    pub compactions: u64,
    pub file_bytes: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn rounded(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// An error of the recording itself (the file), which ends it. Redis errors do not.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    File(#[from] HistoryError),
    #[error(transparent)]
    Redis(#[from] crate::error::RedisError),
}

/// Records into `path` every `opts.every` until `stop` completes (or `opts.samples`
/// were written). The first reading must succeed (a wrong URL, or a database without
/// Sidekiq's keys, is an error at once); later failures become gaps.
pub async fn record<F, S>(
    path: &Path,
    opts: &RecordOptions,
    mut progress: F,
    stop: S,
) -> Result<Recorded, RecordError>
where
    F: FnMut(&Event),
    S: Future<Output = ()>,
{
    let source = opts.conn.url.redacted.clone();
    // The file first (no socket for a file that would be refused), then Redis.
    super::file::check(path, &source)?;
    let mut c = opts.conn.open().await?;
    // Read before the file is touched: a wrong URL leaves no file behind.
    let mut first = Some(read(&mut c, MAX_QUEUES).await?);
    let mut conn: Option<Conn> = Some(c);
    let (mut w, opened) = Writer::open(
        path,
        &source,
        opts.every.as_secs_f64(),
        opts.max_bytes,
        rounded(unix_now()),
    )?;
    // The recorder was not running between the file's last record and now.
    let mut gap: Option<Gap> = opened.last_end.map(|from| Gap {
        from,
        to: from,
        reason: "the recorder was not running".into(),
    });
    progress(&Event::Opened(opened));
    let mut done = Recorded::default();
    let append = |w: &mut Writer, r: &Record, done: &mut Recorded, progress: &mut F| {
        if let Some(c) = w.append(r)? {
            done.compactions += 1;
            progress(&Event::Compacted(c));
        }
        done.file_bytes = w.bytes();
        Ok::<(), HistoryError>(())
    };
    tokio::pin!(stop);
    let mut next = tokio::time::Instant::now();
    let mut last_end = None::<f64>;
    loop {
        let got = match first.take() {
            Some(s) => Ok(s),
            None => {
                let read_one = async {
                    if conn.is_none() {
                        conn = Some(opts.conn.open().await?);
                    }
                    match conn.as_mut() {
                        Some(c) => read(c, MAX_QUEUES).await,
                        None => Err(crate::error::RedisError::Connect {
                            url: source.clone(),
                            reason: "no connection".into(),
                        }),
                    }
                };
                tokio::select! {
                    got = read_one => got,
                    _ = &mut stop => break,
                }
            }
        };
        match got {
            Ok(s) => {
                let s = super::file::trimmed(s);
                if let Some(mut g) = gap.take() {
                    g.to = s.at;
                    append(&mut w, &Record::Gap(g.clone()), &mut done, &mut progress)?;
                    done.gaps += 1;
                    progress(&Event::Resumed(g));
                }
                last_end = Some(s.at);
                append(&mut w, &Record::Sample(s.clone()), &mut done, &mut progress)?;
                done.samples += 1;
                progress(&Event::Sampled {
                    sample: Box::new(s),
                    file_bytes: w.bytes(),
                });
                if opts.samples.is_some_and(|n| done.samples >= n) {
                    break;
                }
            }
            Err(e) => {
                conn = None;
                let reason = e.to_string();
                if gap.is_none() {
                    gap = Some(Gap {
                        from: last_end.unwrap_or_else(|| rounded(unix_now())),
                        to: 0.0,
                        reason: reason.clone(),
                    });
                }
                progress(&Event::Unreachable { reason });
            }
        }
        next += opts.every;
        let now = tokio::time::Instant::now();
        if next < now {
            // A read took longer than the interval: keep the beat, skip the missed ones.
            next = now + opts.every;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = &mut stop => break,
        }
    }
    // A gap of Redis away still open when stopped ends now. A gap of the recorder
    // not running that no sample closed is written on the next start instead.
    if let Some(mut g) = gap.filter(|g| g.to == 0.0) {
        g.to = rounded(unix_now());
        append(&mut w, &Record::Gap(g), &mut done, &mut progress)?;
        done.gaps += 1;
    }
    done.file_bytes = w.bytes();
    Ok(done)
}
