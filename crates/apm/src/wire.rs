//! A zero-copy reader of OTLP protobuf `ExportTraceServiceRequest` bodies: walks the
//! protobuf wire format and reads each span's fields as slices of the body, so the
//! hot path of the receiver allocates only the [`SpanRec`]s it keeps (no owned
//! `String` per attribute key and value, as a full decode would make).
//!
//! Only the fields the analysis reads are looked at (span ids, name, kind, times,
//! status code, attributes with scalar values, links); every other field is skipped
//! by its wire type. A body that is not valid protobuf (truncated, a bad varint, a
//! wrong wire type for a known field, group wire types, invalid UTF-8 in a string
//! that is read) is refused as a whole, like a full decode would.

use crate::decode::DecodeError;
use crate::model::{Attrs, Reject, SpanRec, SpanView, Val};

/// One field's value, by wire type.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

fn err(what: &str, at: usize) -> DecodeError {
    DecodeError::Protobuf(format!("{what} at byte {at}"))
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.b.get(self.pos) else {
                return Err(err("truncated varint", self.pos));
            };
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err(err("varint longer than 10 bytes", self.pos))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| err("truncated field", self.pos))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field (number and value), `None` at the end.
    #[inline]
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, DecodeError> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(err("field number 0", at));
        }
        let w = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Wire::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| err("length too large", at))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                let s = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(s);
                Wire::Fixed32(u32::from_le_bytes(a))
            }
            t => return Err(err(&format!("unsupported wire type {t}"), at)),
        };
        Ok(Some((number, w)))
    }
}

fn bytes<'a>(w: Wire<'a>, field: &str) -> Result<&'a [u8], DecodeError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(DecodeError::Protobuf(format!(
            "{field}: wrong wire type (expected length-delimited)"
        ))),
    }
}

fn varint(w: Wire<'_>, field: &str) -> Result<u64, DecodeError> {
    match w {
        Wire::Varint(v) => Ok(v),
        _ => Err(DecodeError::Protobuf(format!(
            "{field}: wrong wire type (expected varint)"
        ))),
    }
}

fn fixed64(w: Wire<'_>, field: &str) -> Result<u64, DecodeError> {
    match w {
        Wire::Fixed64(v) => Ok(v),
        _ => Err(DecodeError::Protobuf(format!(
            "{field}: wrong wire type (expected fixed64)"
        ))),
    }
}

fn utf8<'a>(b: &'a [u8], field: &str) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(b)
        .map_err(|_| DecodeError::Protobuf(format!("{field}: invalid UTF-8 in a string field")))
}

/// Reads every span of a protobuf `ExportTraceServiceRequest`, appending the valid
/// ones to `ok` and the rejected ones' reasons to `bad`. On a malformed body nothing
/// is appended and the error is returned.
pub fn read_request(
    body: &[u8],
    ok: &mut Vec<SpanRec>,
    bad: &mut Vec<Reject>,
) -> Result<(), DecodeError> {
    let (n_ok, n_bad) = (ok.len(), bad.len());
    // A span takes 100 bytes or more on the wire.
    ok.reserve(body.len() / 128);
    let r = walk_request(body, ok, bad);
    if r.is_err() {
        ok.truncate(n_ok);
        bad.truncate(n_bad);
    }
    r
}

fn walk_request(
    body: &[u8],
    ok: &mut Vec<SpanRec>,
    bad: &mut Vec<Reject>,
) -> Result<(), DecodeError> {
    let mut req = Reader::new(body);
    while let Some((n, w)) = req.field()? {
        if n != 1 {
            continue; // ExportTraceServiceRequest.resource_spans = 1
        }
        let mut rs = Reader::new(bytes(w, "resource_spans")?);
        while let Some((n, w)) = rs.field()? {
            if n != 2 {
                continue; // ResourceSpans.scope_spans = 2 (resource, schema_url skipped)
            }
            let mut ss = Reader::new(bytes(w, "scope_spans")?);
            while let Some((n, w)) = ss.field()? {
                if n != 2 {
                    continue; // ScopeSpans.spans = 2
                }
                match read_span(bytes(w, "span")?)?.build() {
                    Ok(s) => ok.push(s),
                    Err(e) => bad.push(e),
                }
            }
        }
    }
    Ok(())
}

fn read_span(b: &[u8]) -> Result<SpanView<'_>, DecodeError> {
    let mut v = SpanView::default();
    let mut r = Reader::new(b);
    while let Some((n, w)) = r.field()? {
        match n {
            1 => v.trace_id = bytes(w, "span.trace_id")?,
            2 => v.span_id = bytes(w, "span.span_id")?,
            4 => v.parent_span_id = bytes(w, "span.parent_span_id")?,
            5 => v.name = utf8(bytes(w, "span.name")?, "span.name")?,
            6 => v.kind = varint(w, "span.kind")? as i32,
            7 => v.start_ns = fixed64(w, "span.start_time_unix_nano")?,
            8 => v.end_ns = fixed64(w, "span.end_time_unix_nano")?,
            9 => read_attribute(bytes(w, "span.attributes")?, &mut v.attrs)?,
            13 => {
                let (t, s) = read_link(bytes(w, "span.links")?)?;
                v.add_link(t, s);
            }
            15 => v.status_code = read_status(bytes(w, "span.status")?)?,
            16 => {
                if let Wire::Fixed32(f) = w {
                    v.flags = f;
                }
            }
            _ => {}
        }
    }
    Ok(v)
}

fn read_attribute<'a>(b: &'a [u8], attrs: &mut Attrs<'a>) -> Result<(), DecodeError> {
    let mut r = Reader::new(b);
    let mut key: &[u8] = &[];
    let mut val = None;
    while let Some((n, w)) = r.field()? {
        match n {
            1 => key = bytes(w, "attribute.key")?,
            2 => val = Some(read_any(bytes(w, "attribute.value")?)?),
            _ => {}
        }
    }
    if let Some(v) = val {
        attrs.set(key, v);
    }
    Ok(())
}

fn read_any(b: &[u8]) -> Result<Val<'_>, DecodeError> {
    let mut r = Reader::new(b);
    let mut v = Val::Other;
    while let Some((n, w)) = r.field()? {
        v = match n {
            1 => Val::Str(utf8(bytes(w, "string_value")?, "string_value")?),
            2 => Val::Bool(varint(w, "bool_value")? != 0),
            3 => Val::Int(varint(w, "int_value")? as i64),
            4 => Val::Double(f64::from_bits(fixed64(w, "double_value")?)),
            5 => first_str(bytes(w, "array_value")?)?,
            _ => Val::Other,
        };
    }
    Ok(v)
}

/// An `ArrayValue` whose first element is a string: that string. Nested arrays
/// are not entered (no recursion on hostile input).
fn first_str(b: &[u8]) -> Result<Val<'_>, DecodeError> {
    let mut r = Reader::new(b);
    while let Some((n, w)) = r.field()? {
        if n != 1 {
            continue;
        }
        let mut e = Reader::new(bytes(w, "array_value.values")?);
        let mut v = Val::Other;
        while let Some((n, w)) = e.field()? {
            v = match n {
                1 => Val::FirstStr(utf8(bytes(w, "string_value")?, "string_value")?),
                _ => Val::Other,
            };
        }
        return Ok(v);
    }
    Ok(Val::Other)
}

fn read_link(b: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    let mut r = Reader::new(b);
    let (mut t, mut s): (&[u8], &[u8]) = (&[], &[]);
    while let Some((n, w)) = r.field()? {
        match n {
            1 => t = bytes(w, "link.trace_id")?,
            2 => s = bytes(w, "link.span_id")?,
            _ => {}
        }
    }
    Ok((t, s))
}

fn read_status(b: &[u8]) -> Result<i32, DecodeError> {
    let mut r = Reader::new(b);
    let mut code = 0;
    while let Some((n, w)) = r.field()? {
        if n == 3 {
            code = varint(w, "status.code")? as i32;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::to_spans;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::Link;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn sv(s: &str) -> any_value::Value {
        any_value::Value::StringValue(s.into())
    }

    fn sample() -> ExportTraceServiceRequest {
        let span = |id: u8, parent: u8, kind: i32, name: &str, attrs: Vec<KeyValue>| Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            name: name.into(),
            kind,
            start_time_unix_nano: 1_000_000 * u64::from(id),
            end_time_unix_nano: 9_000_000 * u64::from(id),
            attributes: attrs,
            trace_state: "x=1".into(),
            ..Default::default()
        };
        let mut root = span(
            1,
            0,
            2,
            "GET /x/:id",
            vec![
                kv("http.method", sv("GET")),
                kv("http.request.method", sv("POST")),
                kv("http.target", sv("/x/42?q=1")),
                kv("http.status_code", any_value::Value::IntValue(503)),
                kv(
                    "ignored.array",
                    any_value::Value::ArrayValue(ArrayValue::default()),
                ),
                kv("ignored.double", any_value::Value::DoubleValue(1.5)),
            ],
        );
        root.status = Some(Status {
            code: 1,
            message: "fine".into(),
        });
        let db = span(
            2,
            1,
            3,
            "SELECT",
            vec![
                kv("db.system", sv("postgresql")),
                kv("db.statement", sv("SELECT * FROM x WHERE id = 42")),
                kv("db.cached", any_value::Value::BoolValue(true)),
            ],
        );
        let mut job = span(
            3,
            0,
            5,
            "default process",
            vec![
                kv("messaging.system", sv("sidekiq")),
                kv("messaging.sidekiq.job_class", sv("SyncJob")),
            ],
        );
        job.links = (0..6u8)
            .map(|k| Link {
                trace_id: vec![9; 16],
                span_id: vec![k + 1; 8],
                ..Default::default()
            })
            .collect();
        job.status = Some(Status {
            code: 2,
            message: "boom".into(),
        });
        let mut bad = span(4, 0, 1, "bad", vec![]);
        bad.trace_id = vec![1, 2];
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", sv("backend"))],
                    ..Default::default()
                }),
                scope_spans: vec![
                    ScopeSpans {
                        spans: vec![root, db],
                        schema_url: "https://opentelemetry.io/schemas/1.24.0".into(),
                        ..Default::default()
                    },
                    ScopeSpans {
                        spans: vec![job, bad],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn reads_the_same_spans_as_a_full_decode() {
        let req = sample();
        let body = req.encode_to_vec();
        let (want_ok, want_bad) = to_spans(&req);
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        read_request(&body, &mut ok, &mut bad).unwrap();
        assert_eq!(ok, want_ok);
        assert_eq!(bad, want_bad);
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[2].links.len(), crate::model::MAX_LINKS);
        assert!(ok[2].error);
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        let body = sample().encode_to_vec();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        // Every truncation of a valid body either fails or yields a prefix of it;
        // a failure leaves nothing behind.
        for cut in [1, 5, 17, body.len() / 2, body.len() - 1] {
            if read_request(&body[..cut], &mut ok, &mut bad).is_err() {
                assert!(ok.is_empty() && bad.is_empty(), "cut {cut}");
            }
            ok.clear();
            bad.clear();
        }
        for garbage in [
            &b"\xff\xff\xff\xff"[..],
            b"\x0b\x00",
            b"\x0a\x05ab",
            b"\x00",
        ] {
            assert!(
                read_request(garbage, &mut ok, &mut bad).is_err(),
                "{garbage:?}"
            );
            assert!(ok.is_empty());
        }
        // Invalid UTF-8 in a span name is refused, as a full decode refuses it.
        let mut req = sample();
        req.resource_spans[0].scope_spans[0].spans[0].name = "GET".into();
        let mut b = req.encode_to_vec();
        let at = b.windows(3).position(|w| w == b"GET").unwrap();
        b[at] = 0xff;
        assert!(read_request(&b, &mut ok, &mut bad).is_err());
        assert!(ExportTraceServiceRequest::decode(&b[..]).is_err());
        // Empty body: an empty request.
        read_request(&[], &mut ok, &mut bad).unwrap();
        assert!(ok.is_empty());
    }
}
