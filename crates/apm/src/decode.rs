//! OTLP trace bodies: protobuf, JSON (one `ExportTraceServiceRequest`, or the
//! collector file exporter's one request per line), gzip; and the conversion of a
//! request into [`SpanRec`]s.

use crate::model::{from_otlp, Reject, SpanRec};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not valid gzip: {0}")]
    Gzip(String),
    #[error("body is larger than {} once decompressed", powertune_core::units::bytes(*limit as u64))]
    TooLarge { limit: usize },
    #[error("body is not an OTLP protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(String),
    #[error("{where_}is not OTLP/JSON ({message}); expected {{\"resourceSpans\":[...]}} as written by an OTLP/JSON exporter")]
    Json { where_: String, message: String },
}

/// Body formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// From a Content-Type header; `None` for anything else.
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// Whether `b` starts with the gzip magic number.
pub fn is_gzip(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b
}

/// Decompresses at most `limit` bytes (a bomb stops at the limit with an error).
pub fn gunzip(b: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut d = flate2::read::MultiGzDecoder::new(b).take(limit as u64 + 1);
    d.read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

pub fn decode_protobuf(b: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    ExportTraceServiceRequest::decode(b).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

pub fn decode_json(b: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    serde_json::from_slice(b).map_err(|e| DecodeError::Json {
        where_: "body ".to_string(),
        message: e.to_string(),
    })
}

pub fn decode_body(format: Format, b: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    match format {
        Format::Protobuf => decode_protobuf(b),
        Format::Json => decode_json(b),
    }
}

/// An OTLP/JSON file: one request (possibly pretty-printed), or one request per line
/// (the collector's file exporter). Requests are handed to `each` one at a time, so
/// memory stays that of one request whatever the file's size.
pub fn for_each_json_request(
    text: &str,
    name: &str,
    mut each: impl FnMut(ExportTraceServiceRequest),
) -> Result<usize, DecodeError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DecodeError::Json {
            where_: format!("{name} "),
            message: "the file is empty".to_string(),
        });
    }
    // Whole document first (pretty-printed single request).
    if let Ok(req) = serde_json::from_str::<ExportTraceServiceRequest>(trimmed) {
        each(req);
        return Ok(1);
    }
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let req: ExportTraceServiceRequest =
            serde_json::from_str(line).map_err(|e| DecodeError::Json {
                where_: format!("{name} line {} ", i + 1),
                message: e.to_string(),
            })?;
        each(req);
        n += 1;
    }
    Ok(n)
}

/// The spans of a request; rejected spans are returned with their reasons.
pub fn to_spans(req: &ExportTraceServiceRequest) -> (Vec<SpanRec>, Vec<Reject>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                match from_otlp(s) {
                    Ok(r) => ok.push(r),
                    Err(e) => bad.push(e),
                }
            }
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"backend"}}]},
      "scopeSpans":[{"scope":{"name":"x"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "parentSpanId":"","name":"GET /api/v1/users/:id","kind":2,"startTimeUnixNano":"1544712660000000000",
      "endTimeUnixNano":"1544712661000000000","attributes":[{"key":"http.route","value":{"stringValue":"/api/v1/users/:id"}},
      {"key":"http.response.status_code","value":{"intValue":"200"}}],"status":{}}]}]}]}"#;

    #[test]
    fn json_hex_ids_and_string_int64() {
        let req = decode_json(JSON.as_bytes()).unwrap();
        let (spans, bad) = to_spans(&req);
        assert!(bad.is_empty());
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].trace_id, 0x5b8efff798038103d269b633813fc60c);
        assert_eq!(spans[0].duration_ns(), 1_000_000_000);
        // protobuf round trip
        let bytes = req.encode_to_vec();
        assert_eq!(decode_protobuf(&bytes).unwrap(), req);
        assert!(decode_protobuf(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn lines_and_gzip() {
        let two = format!("{}\n{}\n", JSON.replace('\n', ""), JSON.replace('\n', ""));
        let mut n = 0;
        assert_eq!(
            for_each_json_request(&two, "f.json", |_| n += 1).unwrap(),
            2
        );
        assert_eq!(n, 2);
        let e = for_each_json_request("{\"resourceSpans\":[]}\nnot json\n", "f.json", |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("f.json line 2"), "{e}");
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&[0u8; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert!(is_gzip(&gz));
        assert_eq!(gunzip(&gz, 20_000).unwrap().len(), 10_000);
        let e = gunzip(&gz, 100).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { .. }));
        assert_eq!(e.to_string(), "body is larger than 100 B once decompressed");
        let e = DecodeError::TooLarge { limit: 128 << 20 };
        assert_eq!(
            e.to_string(),
            "body is larger than 128.0 MiB once decompressed"
        );
        assert!(gunzip(b"\x1f\x8bxx", 100).is_err());
    }
}
