//! Properties: how a response is cut into reads does not change what it decodes to;
//! no input panics; the limits hold.

use super::*;
use proptest::prelude::*;

/// What decoding a response produced: the head, the payload, the bytes used, or the
/// error.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    head: Option<Head>,
    body: Vec<u8>,
    used: usize,
    error: Option<Error>,
}

/// Feeds `raw` as a socket would: the reads end at the given cut points, and each
/// read appends to the unread bytes; ends the stream after the last byte.
fn decode_in_reads(raw: &[u8], cuts: &[usize], limits: Limits, head_request: bool) -> Outcome {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
    cuts.push(raw.len());
    cuts.sort_unstable();
    let mut d = ResponseDecoder::new(limits, head_request);
    let mut out = Outcome {
        head: None,
        body: Vec::new(),
        used: 0,
        error: None,
    };
    let mut available = 0;
    let mut next_cut = cuts.into_iter();
    loop {
        let r = match d.decode(&raw[out.used..available]) {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        out.used += r.consumed;
        match r.event {
            Event::Head(h) => {
                assert!(out.head.is_none(), "two heads");
                out.head = Some(h);
            }
            Event::Body(b) => {
                assert!(!b.is_empty(), "an empty body event");
                out.body.extend_from_slice(b);
            }
            Event::End => return out,
            Event::NeedMore => match next_cut.by_ref().find(|c| *c > available) {
                Some(c) => available = c,
                None => {
                    if let Err(e) = d.finish() {
                        out.error = Some(e);
                    }
                    return out;
                }
            },
        }
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,12}"
}

/// A valid response: its bytes, then the head status and the payload it carries.
fn response() -> impl Strategy<Value = (Vec<u8>, u16, Vec<u8>)> {
    let status = prop_oneof![
        Just(200u16),
        Just(201),
        Just(404),
        Just(500),
        Just(204),
        Just(304)
    ];
    let headers = prop::collection::vec((token(), "[ -~]{0,20}"), 0..6);
    let body = prop::collection::vec(any::<u8>(), 0..300);
    let chunks = prop::collection::vec(1usize..40, 1..8);
    let trailers = prop::collection::vec((token(), "[!-~]{0,10}"), 0..3);
    (
        status,
        headers,
        body,
        0u8..3,
        chunks,
        trailers,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(status, headers, body, framing, chunks, trailers, interim, ext)| {
                let mut raw = Vec::new();
                if interim {
                    raw.extend_from_slice(b"HTTP/1.1 100 Continue\r\nx-wait: 1\r\n\r\n");
                }
                raw.extend_from_slice(format!("HTTP/1.1 {status} Reason\r\n").as_bytes());
                for (n, v) in &headers {
                    let n = format!("x-{n}");
                    raw.extend_from_slice(format!("{n}: {}\r\n", v.trim()).as_bytes());
                }
                let has_body = status != 204 && status != 304;
                let payload = if has_body { body.clone() } else { Vec::new() };
                match framing {
                    0 => {
                        raw.extend_from_slice(
                            format!("content-length: {}\r\n\r\n", body.len()).as_bytes(),
                        );
                        if has_body {
                            raw.extend_from_slice(&body);
                        }
                    }
                    1 => {
                        raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                        if has_body {
                            let mut rest = &body[..];
                            let mut sizes = chunks.iter().cycle();
                            while !rest.is_empty() {
                                let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
                                let e = if ext { ";name=\"v\"" } else { "" };
                                raw.extend_from_slice(format!("{n:x}{e}\r\n").as_bytes());
                                raw.extend_from_slice(&rest[..n]);
                                raw.extend_from_slice(b"\r\n");
                                rest = &rest[n..];
                            }
                            raw.extend_from_slice(b"0\r\n");
                            for (n, v) in &trailers {
                                raw.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                            }
                            raw.extend_from_slice(b"\r\n");
                        }
                    }
                    _ => {
                        raw.extend_from_slice(b"connection: close\r\n\r\n");
                        if has_body {
                            raw.extend_from_slice(&body);
                        }
                    }
                }
                (raw, status, payload)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_decodes_to_the_same_head_and_body(
        (raw, status, payload) in response(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = decode_in_reads(&raw, &[], Limits::default(), false);
        prop_assert_eq!(whole.error, None);
        prop_assert_eq!(whole.head.map(|h| h.status), Some(status));
        prop_assert_eq!(&whole.body, &payload);
        prop_assert_eq!(whole.used, raw.len());
        let split = decode_in_reads(&raw, &cuts, Limits::default(), false);
        prop_assert_eq!(&split, &whole);
        let bytewise: Vec<usize> = (1..raw.len()).collect();
        prop_assert_eq!(&decode_in_reads(&raw, &bytewise, Limits::default(), false), &whole);
    }

    #[test]
    fn random_bytes_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        head_request in any::<bool>(),
    ) {
        decode_in_reads(&raw, &cuts, Limits::default(), head_request);
    }

    #[test]
    fn mangled_responses_never_panic_and_split_alike(
        (raw, _, _) in response(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut raw = raw;
        for (at, b) in edits {
            let i = at % raw.len();
            raw[i] = b;
        }
        let whole = decode_in_reads(&raw, &[], Limits::default(), false);
        let split = decode_in_reads(&raw, &cuts, Limits::default(), false);
        // a head too large may be refused before a later malformation is seen
        if whole.error.is_none() || split.error.is_none() {
            prop_assert_eq!(&split, &whole);
        }
    }

    #[test]
    fn limits_hold_however_the_bytes_arrive(
        (raw, _, _) in response(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        deltas in prop::array::uniform5(-1i64..=1),
    ) {
        // each limit at, just under or just over what the response needs
        let sizes = measure(&raw);
        let near = |n: usize, d: i64| (n as i64 + d).max(0) as usize;
        let limits = Limits {
            max_head: near(sizes.head, deltas[0]),
            max_headers: near(sizes.fields, deltas[1]),
            max_chunk_line: near(sizes.chunk_line, deltas[2]),
            max_trailers: near(sizes.trailers, deltas[3]),
            max_body: Some(near(sizes.body, deltas[4]) as u64),
        };
        let fits = limits.max_head >= sizes.head
            && limits.max_headers >= sizes.fields
            && limits.max_chunk_line >= sizes.chunk_line
            && limits.max_trailers >= sizes.trailers
            && limits.max_body >= Some(sizes.body as u64);
        let unlimited = decode_in_reads(&raw, &[], Limits::default(), false);
        let bytewise: Vec<usize> = (1..raw.len()).collect();
        for cuts in [&[][..], &cuts, &bytewise] {
            let got = decode_in_reads(&raw, cuts, limits, false);
            if fits {
                prop_assert_eq!(&got, &unlimited);
            } else {
                prop_assert!(got.error.is_some(), "{:?} within {:?}", sizes, limits);
            }
        }
    }
}

/// The largest head, field count and chunk-size line of a valid response, its
/// trailer section and payload (measured independently of the decoder).
#[derive(Debug, Default)]
struct Sizes {
    head: usize,
    fields: usize,
    chunk_line: usize,
    trailers: usize,
    body: usize,
}

fn measure(raw: &[u8]) -> Sizes {
    let mut sizes = Sizes::default();
    let mut at = 0;
    let status = loop {
        let end = at + find(&raw[at..], b"\r\n\r\n").map_or(0, |i| i + 4);
        let head = &raw[at..end];
        sizes.head = sizes.head.max(head.len());
        let lines = head.windows(2).filter(|w| w == b"\r\n").count();
        sizes.fields = sizes.fields.max(lines.saturating_sub(2));
        at = end;
        if !head.starts_with(b"HTTP/1.1 1") {
            break &head[9..12];
        }
    };
    let head = &raw[..at];
    let rest = &raw[at..];
    if status == b"204" || status == b"304" {
        return sizes;
    }
    if find(head, b"transfer-encoding: chunked").is_none() {
        sizes.body = rest.len();
        return sizes;
    }
    let mut rest = rest;
    loop {
        let line = find(rest, b"\r\n").unwrap_or(rest.len());
        sizes.chunk_line = sizes.chunk_line.max(line);
        let hex = std::str::from_utf8(&rest[..line])
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        let size = usize::from_str_radix(hex, 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            sizes.trailers = rest.len();
            return sizes;
        }
        sizes.body += size;
        rest = &rest[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
