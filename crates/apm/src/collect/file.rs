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
    mut r: impl BufRead,
    name: &str,
    engine: &mut Engine,
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
        first.clear();
        if r.read_line(&mut first).map_err(rd)? == 0 {
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
                line.clear();
                if r.read_line(&mut line).map_err(rd)? == 0 {
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
            // One (pretty-printed) document: parse it from the stream.
            let rest = std::io::Cursor::new(first.into_bytes()).chain(r);
            let req: ExportTraceServiceRequest =
                serde_json::from_reader(rest).map_err(|e| DecodeError::Json {
                    where_: format!("{name} "),
                    message: e.to_string(),
                })?;
            feed(req, engine);
        }
    }
    engine.flush_all(0);
    Ok(engine.summary(0, None))
}
