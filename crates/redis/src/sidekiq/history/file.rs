//! The queue history file: gzip members, each holding JSON lines.
//!
//! The first member holds one line, the [`Header`] (`format`, `version`, the redacted
//! Redis URL recorded, the interval, the creation time). Every later line is one
//! [`Record`]: a sample or a gap. The recorder appends one member per record (one
//! `write` and an `fsync`), so a crash can only leave the last member incomplete;
//! that tail is detected (the member does not inflate and no whole member follows it)
//! and cut off when the recorder starts again. A member that does not inflate with
//! whole members after it is corruption, and the file is refused.
//!
//! When an append would take the file past its bound, the file is rewritten
//! ([`Writer::append`]): records in blocks of [`BLOCK_LINES`] lines per member
//! (compressing far better than one line per member), and while that is still over
//! half the bound, the oldest half of the samples merged in pairs
//! ([`super::downsample`]). The rewrite goes to `FILE.tmp`, is synced and renamed
//! over the file, so an interruption leaves the old or the new file whole.
//!
//! Concatenated gzip members are one gzip stream: `zcat FILE` prints the JSON lines.

use super::downsample::halve_oldest;
use super::sample::Sample;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The `format` of the header line.
pub const FORMAT: &str = "powertune-queues-history";
/// The version this code writes and the newest it reads.
pub const VERSION: u32 = 1;
/// Lines per gzip member when the file is rewritten.
pub const BLOCK_LINES: usize = 256;
/// The most one member may inflate to.
pub const MAX_MEMBER_BYTES: u64 = 16 << 20;
/// The largest history file read (and the largest bound accepted).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// The smallest bound accepted.
pub const MIN_MAX_BYTES: u64 = 64 << 10;
/// The bound when none is given.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;

/// The first line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The Redis URL recorded, redacted.
    pub source: String,
    /// The interval the file was created with, seconds.
    pub interval_s: f64,
    /// Unix seconds the file was created.
    pub created: f64,
}

/// A time without samples: Redis did not answer, or the recorder was not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Gap {
    /// Unix seconds of the last record before it.
    pub from: f64,
    /// Unix seconds sampling resumed (or the recorder stopped).
    pub to: f64,
    /// Why (the first error, redacted).
    pub reason: String,
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Sample(Sample),
    Gap(Gap),
}

impl Record {
    /// Unix seconds this record ends at.
    pub fn end(&self) -> f64 {
        match self {
            Record::Sample(s) => s.at,
            Record::Gap(g) => g.to,
        }
    }
}

/// A history file as read.
#[derive(Debug, Clone)]
pub struct History {
    pub header: Header,
    pub records: Vec<Record>,
    /// Bytes of whole members.
    pub len: u64,
    /// Bytes after the last whole member (an interrupted write), ignored.
    pub dropped_tail: u64,
}

impl History {
    /// The samples in time order.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.records.iter().filter_map(|r| match r {
            Record::Sample(s) => Some(s),
            Record::Gap(_) => None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: not a powertune queue history ({why}); give a new file or one `powertune queues record` wrote")]
    Foreign { path: String, why: String },
    #[error("{path}: corrupt at byte {offset} ({why}); move it away and record into a new file")]
    Corrupt {
        path: String,
        offset: u64,
        why: String,
    },
    #[error("{path}: format version {found}; this powertune reads version {VERSION} (use a newer powertune)")]
    Version { path: String, found: u32 },
    #[error("{path}: recorded from {recorded}, not {given}: record each Redis into its own file")]
    Source {
        path: String,
        recorded: String,
        given: String,
    },
    #[error("{path}: {why}")]
    Bound { path: String, why: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> HistoryError + '_ {
    move |e| HistoryError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// One gzip member holding `lines`, each ended by a newline.
pub fn encode_member(lines: &[String]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    for l in lines {
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(l.as_bytes());
        let _ = enc.write_all(b"\n");
    }
    enc.finish().unwrap_or_default()
}

/// The whole file for `header` and `records`, in blocks of [`BLOCK_LINES`].
pub fn encode_all(header: &Header, records: &[Record]) -> Vec<u8> {
    let mut out = encode_member(&[serde_json::to_string(header).unwrap_or_default()]);
    for block in records.chunks(BLOCK_LINES) {
        let lines: Vec<String> = block
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect();
        out.extend(encode_member(&lines));
    }
    out
}

/// Inflates the member at the start of `bytes`: its text and its length in bytes.
fn inflate(bytes: &[u8]) -> Result<(String, usize), String> {
    let mut d = GzDecoder::new(bytes);
    let mut text = Vec::new();
    (&mut d)
        .take(MAX_MEMBER_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_MEMBER_BYTES {
        return Err(format!("a member inflates past {} bytes", MAX_MEMBER_BYTES));
    }
    let rest = d.into_inner().len();
    let text = String::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    Ok((text, bytes.len() - rest))
}

/// Whether a whole member starts anywhere in `bytes`.
fn whole_member_in(bytes: &[u8]) -> bool {
    (0..bytes.len().saturating_sub(2))
        .filter(|&i| bytes[i..].starts_with(&[0x1f, 0x8b, 0x08]))
        .any(|i| inflate(&bytes[i..]).is_ok())
}

/// Reads a history from `bytes` (the contents of `path`).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<History, HistoryError> {
    let p = || path.display().to_string();
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(HistoryError::Foreign {
            path: p(),
            why: "it is not gzip data".into(),
        });
    }
    let mut header: Option<Header> = None;
    let mut records = Vec::new();
    let mut off = 0usize;
    let mut dropped_tail = 0u64;
    while off < bytes.len() {
        let (text, used) = match inflate(&bytes[off..]) {
            Ok(m) => m,
            Err(why) => {
                if header.is_none() || whole_member_in(&bytes[off + 1..]) {
                    return Err(if header.is_none() {
                        HistoryError::Foreign {
                            path: p(),
                            why: format!("no readable header: {why}"),
                        }
                    } else {
                        HistoryError::Corrupt {
                            path: p(),
                            offset: off as u64,
                            why,
                        }
                    });
                }
                dropped_tail = (bytes.len() - off) as u64;
                break;
            }
        };
        for (i, line) in text.lines().enumerate() {
            if header.is_none() {
                header = Some(read_header(path, line)?);
                continue;
            }
            let r: Record = serde_json::from_str(line).map_err(|e| HistoryError::Corrupt {
                path: p(),
                offset: off as u64,
                why: format!("line {} of the member: {e}", i + 1),
            })?;
            records.push(r);
        }
        off += used;
    }
    let header = header.ok_or_else(|| HistoryError::Foreign {
        path: p(),
        why: "it has no header".into(),
    })?;
    Ok(History {
        header,
        records,
        len: off as u64,
        dropped_tail,
    })
}

fn read_header(path: &Path, line: &str) -> Result<Header, HistoryError> {
    let p = || path.display().to_string();
    let h: Header = serde_json::from_str(line).map_err(|_| HistoryError::Foreign {
        path: p(),
        why: "its first line is not a history header".into(),
    })?;
    if h.format != FORMAT {
        return Err(HistoryError::Foreign {
            path: p(),
            why: format!("its format is `{}`, not `{FORMAT}`", h.format),
        });
    }
    if h.version > VERSION {
        return Err(HistoryError::Version {
            path: p(),
            found: h.version,
        });
    }
    Ok(h)
}

/// Reads the history at `path` (at most [`MAX_FILE_BYTES`]); a cut-off last member is
/// ignored and counted in `dropped_tail`.
pub fn read(path: &Path) -> Result<History, HistoryError> {
    regular(path)?;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_err(path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(HistoryError::Bound {
            path: path.display().to_string(),
            why: format!("larger than the {MAX_FILE_BYTES} bytes a history may hold"),
        });
    }
    parse(path, &bytes)
}

/// Refuses anything but a regular file (a device, a pipe, a directory).
fn regular(path: &Path) -> Result<(), HistoryError> {
    let m = std::fs::metadata(path).map_err(io_err(path))?;
    if !m.is_file() {
        return Err(HistoryError::Foreign {
            path: path.display().to_string(),
            why: "it is not a regular file".into(),
        });
    }
    Ok(())
}

/// Samples with their times and latencies to the millisecond, busy threads to the
/// hundredth: finer digits are noise and cost bytes.
pub fn trimmed(mut s: Sample) -> Sample {
    let ms = |v: f64| (v * 1000.0).round() / 1000.0;
    let cs = |v: f64| (v * 100.0).round() / 100.0;
    s.at = ms(s.at);
    for q in &mut s.queues {
        q.latency_s = ms(q.latency_s);
        q.latency_max_s = q.latency_max_s.map(ms);
        q.busy = cs(q.busy);
        for v in q.classes.values_mut() {
            *v = cs(*v);
        }
    }
    for p in &mut s.processes {
        p.busy = cs(p.busy);
    }
    s
}

/// Checks that `path`, when it exists and is not empty, is a history of `source`
/// that can be appended to (what [`Writer::open`] checks, without writing).
pub fn check(path: &Path, source: &str) -> Result<(), HistoryError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 || !m.is_file() => {
            let h = read(path)?;
            same_source(path, &h.header, source)
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn same_source(path: &Path, h: &Header, source: &str) -> Result<(), HistoryError> {
    if h.source != source {
        return Err(HistoryError::Source {
            path: path.display().to_string(),
            recorded: h.source.clone(),
            given: source.to_string(),
        });
    }
    Ok(())
}

/// What opening a file for appending found.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// A new file was created (with its header).
    pub created: bool,
    /// Records already in it.
    pub records: usize,
    /// Bytes of an interrupted last write that were cut off.
    pub dropped_tail: u64,
    /// Unix seconds of its last record.
    pub last_end: Option<f64>,
}

/// A rewrite to stay within the bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// Pairs of samples merged (0 when blocking alone was enough).
    pub merged: usize,
    /// Samples in the file after the rewrite.
    pub samples: usize,
}

/// Appends records to a history file within `max_bytes`.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
}

impl Writer {
    /// Opens `path` for appending: a missing or empty file gets a new header; an
    /// existing one must be a history of `source` (its header is checked, every
    /// member read, an interrupted last write cut off).
    pub fn open(
        path: &Path,
        source: &str,
        interval_s: f64,
        max_bytes: u64,
        now: f64,
    ) -> Result<(Writer, Opened), HistoryError> {
        let p = || path.display().to_string();
        if !(MIN_MAX_BYTES..=MAX_FILE_BYTES).contains(&max_bytes) {
            return Err(HistoryError::Bound {
                path: p(),
                why: format!(
                    "the bound {max_bytes} bytes is outside {MIN_MAX_BYTES}..={MAX_FILE_BYTES}"
                ),
            });
        }
        let existing = match std::fs::metadata(path) {
            Ok(m) if m.len() > 0 || !m.is_file() => Some(read(path)?),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut opened = Opened {
            created: existing.is_none(),
            records: 0,
            dropped_tail: 0,
            last_end: None,
        };
        let len = match existing {
            Some(h) => {
                same_source(path, &h.header, source)?;
                opened.records = h.records.len();
                opened.dropped_tail = h.dropped_tail;
                opened.last_end = h.records.iter().map(Record::end).reduce(f64::max);
                if h.dropped_tail > 0 {
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io_err(path))?;
                    f.set_len(h.len).map_err(io_err(path))?;
                    f.sync_all().map_err(io_err(path))?;
                }
                h.len
            }
            None => {
                let header = Header {
                    format: FORMAT.into(),
                    version: VERSION,
                    source: source.to_string(),
                    interval_s,
                    created: now,
                };
                let bytes = encode_all(&header, &[]);
                write_whole(path, &bytes)?;
                bytes.len() as u64
            }
        };
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok((
            Writer {
                path: path.to_path_buf(),
                file,
                len,
                max_bytes,
            },
            opened,
        ))
    }

    /// Bytes in the file.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Appends `record` as one member and syncs it; when that would pass the bound,
    /// rewrites the file with it instead (and says how).
    pub fn append(&mut self, record: &Record) -> Result<Option<Compaction>, HistoryError> {
        let line = serde_json::to_string(record).map_err(|e| HistoryError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let bytes = encode_member(&[line]);
        if self.len + bytes.len() as u64 > self.max_bytes {
            return self.compact(record).map(Some);
        }
        self.file.write_all(&bytes).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.len += bytes.len() as u64;
        Ok(None)
    }

    fn compact(&mut self, extra: &Record) -> Result<Compaction, HistoryError> {
        let mut h = read(&self.path)?;
        h.records.push(extra.clone());
        let target = self.max_bytes / 2;
        let mut bytes = encode_all(&h.header, &h.records);
        let mut merged = 0;
        while bytes.len() as u64 > target {
            let m = halve_oldest(&mut h.records);
            if m == 0 {
                return Err(HistoryError::Bound {
                    path: self.path.display().to_string(),
                    why: format!(
                        "{} records do not fit in half the bound ({target} bytes) even merged as far as gaps and counter resets allow; raise --max-bytes",
                        h.records.len()
                    ),
                });
            }
            merged += m;
            bytes = encode_all(&h.header, &h.records);
        }
        write_whole(&self.path, &bytes)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        let c = Compaction {
            before_bytes: self.len,
            after_bytes: bytes.len() as u64,
            merged,
            samples: h.samples().count(),
        };
        self.len = bytes.len() as u64;
        Ok(c)
    }
}

/// Writes `bytes` to `path` through `path.tmp`, synced and renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), HistoryError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidekiq::history::sample::{ProcessSample, QueueSample};
    use std::collections::BTreeMap;

    fn sample(at: f64, processed: u64) -> Record {
        Record::Sample(Sample {
            at,
            n: 1,
            queues: vec![QueueSample {
                name: "default".into(),
                depth: (at as u64) % 50,
                latency_s: (at % 7.0) * 1.5,
                busy: 3.0,
                depth_max: None,
                latency_max_s: None,
                classes: BTreeMap::new(),
            }],
            processes: vec![ProcessSample {
                identity: "w:1:a".into(),
                concurrency: 5,
                busy: 3.0,
                queues: vec!["default".into()],
                weights: BTreeMap::new(),
            }],
            processed,
            failed: 0,
            retry: 0,
            dead: 0,
        })
    }

    #[test]
    fn appends_read_back_and_a_cut_tail_is_dropped_not_a_middle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let (mut w, o) = Writer::open(&path, "redis://x/0", 10.0, 1 << 20, 0.0).unwrap();
        assert!(o.created);
        for i in 0..5 {
            assert!(w.append(&sample(i as f64, i)).unwrap().is_none());
        }
        let h = read(&path).unwrap();
        assert_eq!(h.records.len(), 5);
        assert_eq!(h.header.interval_s, 10.0);
        let mut bytes = std::fs::read(&path).unwrap();
        // A write cut short: half a member at the end.
        let m = encode_member(&[serde_json::to_string(&sample(9.0, 9)).unwrap()]);
        bytes.extend_from_slice(&m[..m.len() / 2]);
        let h = parse(&path, &bytes).unwrap();
        assert_eq!(
            (h.records.len() as u64, h.dropped_tail),
            (5, (m.len() / 2) as u64)
        );
        // The same damage before a whole member is corruption.
        bytes.extend_from_slice(&m);
        let e = parse(&path, &bytes).unwrap_err().to_string();
        assert!(e.contains("corrupt at byte"), "{e}");
        let e = parse(&path, b"hello").unwrap_err().to_string();
        assert!(e.contains("not a powertune queue history"), "{e}");
        let foreign = encode_member(&["{\"a\":1}".into()]);
        let e = parse(&path, &foreign).unwrap_err().to_string();
        assert!(e.contains("not a history header"), "{e}");
        let e = Writer::open(&path, "redis://y/0", 10.0, 1 << 20, 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not redis://y/0"), "{e}");
        for dev in ["/dev/zero", "/dev/null"] {
            let e = read(Path::new(dev)).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
            let e = Writer::open(Path::new(dev), "redis://x/0", 10.0, 1 << 20, 0.0)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
