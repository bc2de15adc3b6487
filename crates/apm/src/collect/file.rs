//! Collector for `apm analyze`: an OTLP/JSON export on disk (one request, or one
//! request per line as the collector's file exporter writes; gzip-compressed or
//! not), read as a stream: line by line, one request at a time.

use crate::decode::{to_spans, DecodeError};
use crate::engine::Engine;
use crate::snapshot::Summary;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The largest request (one line, or the whole file when it holds one document)
/// `apm analyze` reads, decompressed: the same as the receiver's default
/// `max_decompressed_bytes`. Larger ones are refused before they are held whole.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;

/// Feeds every request of the file into `engine`, analyses everything and returns
/// the summary of the whole file.
pub fn analyze_file(path: &Path, engine: &mut Engine) -> Result<Summary, OfflineError> {
    let name = path.display().to_string();
    let rd = |source| OfflineError::Read {
        path: name.clone(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(rd)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(rd)?;
    let f = std::fs::File::open(path).map_err(rd)?;
    let reader: Box<dyn Read> = if n == 2 && crate::decode::is_gzip(&magic) {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    analyze_reader(BufReader::new(reader), &name, engine)
}

/// As [`analyze_file`], over any reader.
pub fn analyze_reader(
    r: impl BufRead,
    name: &str,
    engine: &mut Engine,
) -> Result<Summary, OfflineError> {
    analyze_capped(r, name, engine, MAX_REQUEST_BYTES)
}

/// Reads one line of at most `cap` bytes into `buf` (cleared first); the byte count,
/// or an error naming the line when it is longer.
fn read_line_capped(
    r: &mut impl BufRead,
    buf: &mut String,
    cap: u64,
    name: &str,
    lineno: usize,
) -> Result<usize, OfflineError> {
    buf.clear();
    let n = r
        .by_ref()
        .take(cap + 1)
        .read_line(buf)
        .map_err(|source| OfflineError::Read {
            path: name.to_string(),
            source,
        })?;
    if n as u64 > cap {
        return Err(too_large(name, &format!("line {lineno} is"), cap));
    }
    Ok(n)
}

fn too_large(name: &str, what: &str, cap: u64) -> OfflineError {
    OfflineError::Read {
        path: name.to_string(),
        source: std::io::Error::other(format!(
            "{what} longer than {}, the largest request apm analyze reads",
            powertune_core::units::bytes(cap)
        )),
    }
}

fn analyze_capped(
    mut r: impl BufRead,
    name: &str,
    engine: &mut Engine,
    cap: u64,
) -> Result<Summary, OfflineError> {
    let rd = |source| OfflineError::Read {
        path: name.to_string(),
        source,
    };
    let feed = |req: ExportTraceServiceRequest, engine: &mut Engine| {
        let (spans, bad) = to_spans(&req);
        engine.note_rejected(bad.len() as u64);
        engine.ingest(spans, 0);
    };
    // The first non-empty line decides: a complete request means one per line.
    let mut first = String::new();
    let mut lineno = 0usize;
    loop {
        if read_line_capped(&mut r, &mut first, cap, name, lineno + 1)? == 0 {
            return Err(DecodeError::Json {
                where_: format!("{name} "),
                message: "the file is empty".to_string(),
            }
            .into());
        }
        lineno += 1;
        if !first.trim().is_empty() {
            break;
        }
    }
    match serde_json::from_str::<ExportTraceServiceRequest>(first.trim()) {
        Ok(req) => {
            feed(req, engine);
            let mut line = String::new();
            loop {
                if read_line_capped(&mut r, &mut line, cap, name, lineno + 1)? == 0 {
                    break;
                }
                lineno += 1;
                if line.trim().is_empty() {
                    continue;
                }
                let req: ExportTraceServiceRequest =
                    serde_json::from_str(line.trim()).map_err(|e| DecodeError::Json {
                        where_: format!("{name} line {lineno} "),
                        message: e.to_string(),
                    })?;
                feed(req, engine);
            }
        }
        Err(_) => {
            // One (pretty-printed) document: read it whole, up to the cap.
            let mut doc = first;
            r.take(cap + 1 - doc.len() as u64)
                .read_to_string(&mut doc)
                .map_err(rd)?;
            if doc.len() as u64 > cap {
                return Err(too_large(name, "the document is", cap));
            }
            let req: ExportTraceServiceRequest =
                serde_json::from_str(&doc).map_err(|e| DecodeError::Json {
                    where_: format!("{name} "),
                    message: e.to_string(),
                })?;
            feed(req, engine);
        }
    }
    engine.flush_all(0);
    Ok(engine.summary(0, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(crate::config::EngineConfig::defaults(
            &powertune_core::Targets::default(),
        ))
    }

    #[test]
    fn a_line_or_document_over_the_cap_is_refused_before_it_is_held() {
        let long_line = format!("{{\"resourceSpans\":[]}}\n{}\n", "x".repeat(5000));
        let e = analyze_capped(long_line.as_bytes(), "f.jsonl", &mut engine(), 1024)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2 is longer than 1.0 KiB"), "{e}");

        let doc = format!("{{\n\"resourceSpans\": [{}]}}", " ".repeat(5000));
        let e = analyze_capped(doc.as_bytes(), "f.json", &mut engine(), 1024)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the document is longer than 1.0 KiB"), "{e}");

        let ok = "{\"resourceSpans\":[]}\n{\"resourceSpans\":[]}\n";
        assert!(analyze_capped(ok.as_bytes(), "f.jsonl", &mut engine(), 1024).is_ok());
    }
}
