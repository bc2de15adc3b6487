//! The HTTP/1.1 response decoder of the load engine and the gateway's upstream
//! client (`powertune_core::http1::ResponseDecoder`), driven the way a connection
//! loop drives it: bytes arrive in reads of any size, the caller drops what was
//! consumed, and the end of the connection is `finish()`.

use powertune_core::http1::{Error, Event, Framing, Head, Limits, ResponseDecoder};
use proptest::prelude::*;

const TARGET: &str = "http1";

static TOKENS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.0 204 No Content\r\n",
    b"Content-Length: ",
    b"Content-Length: 0\r\n",
    b"Content-Length: 18446744073709551616\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b";ext=\"q\"",
    b"Trailer: x\r\n",
    b" \t",
];

#[derive(Debug, PartialEq)]
struct Outcome {
    head: Option<Head>,
    body: Vec<u8>,
    /// Where the response ended in the input, or the decoder's error.
    end: Result<usize, Error>,
}

/// Decodes one response from `input` arriving in reads of `step` bytes.
fn run(input: &[u8], limits: Limits, head_request: bool, step: usize) -> Outcome {
    let mut d = ResponseDecoder::new(limits, head_request);
    let reads = powertune_fuzz::pieces(input.len(), step);
    let mut next_read = reads.iter();
    let mut avail = 0usize; // bytes of input the caller has read so far
    let mut start = 0usize; // bytes the decoder consumed
    let mut head = None;
    let mut body = Vec::new();
    let mut guard = 0usize;
    let end = loop {
        guard += 1;
        assert!(
            guard < 4 * input.len() + 64,
            "no progress at byte {start} of {}",
            input.len()
        );
        let unread = &input[start..avail];
        let decoded = match d.decode(unread) {
            Ok(x) => x,
            Err(e) => break Err(e),
        };
        assert!(
            decoded.consumed <= unread.len(),
            "consumed {} of {}",
            decoded.consumed,
            unread.len()
        );
        start += decoded.consumed;
        match decoded.event {
            Event::NeedMore => match next_read.next() {
                Some(r) => avail = r.end,
                None => match d.finish() {
                    Ok(()) => break Ok(start),
                    Err(e) => break Err(e),
                },
            },
            Event::Head(h) => {
                assert!(head.is_none(), "two final heads");
                assert!(decoded.consumed > 0);
                if head_request {
                    assert_eq!(h.framing, Framing::None);
                }
                head = Some(h);
            }
            Event::Body(b) => {
                assert!(head.is_some(), "body before the head");
                assert!(!b.is_empty() && b.len() <= decoded.consumed);
                body.extend_from_slice(b);
                if let Some(max) = limits.max_body {
                    assert!(
                        body.len() as u64 <= max,
                        "{} body bytes past a {max}-byte limit",
                        body.len()
                    );
                }
                if let Some(Head {
                    framing: Framing::Length(n),
                    ..
                }) = head
                {
                    assert!(body.len() as u64 <= n);
                }
            }
            Event::End => {
                assert!(head.is_some(), "end before the head");
                assert!(d.is_done());
                break Ok(start);
            }
        }
    };
    Outcome { head, body, end }
}

const SMALL: Limits = Limits {
    max_head: 512,
    max_headers: 8,
    max_chunk_line: 32,
    max_trailers: 256,
    max_body: Some(1000),
};

pub fn check(input: &[u8]) {
    for (limits, head_request) in [
        (Limits::DEFAULT, false),
        (SMALL, false),
        (Limits::DEFAULT, true),
    ] {
        let whole = run(input, limits, head_request, input.len().max(1));
        for step in [1, 5, 97] {
            let split = run(input, limits, head_request, step);
            match (&whole.end, &split.end) {
                (Ok(_), Ok(_)) => {
                    assert_eq!(whole, split, "reads of {step} bytes decode differently")
                }
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "reads of {step} bytes: {:?}, all at once: {:?}",
                    split.end, whole.end
                ),
            }
        }
    }
}

#[test]
fn corpus_replays_cleanly() {
    super::replay(TARGET, 10, check);
}

/// A response as a server could frame it, sometimes wrongly.
fn response() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just("HTTP/1.1 200 OK".to_string()),
        Just("HTTP/1.0 200 OK".to_string()),
        (100u16..600).prop_map(|s| format!("HTTP/1.1 {s} X")),
        "HTTP/1\\.[0-9] [0-9]{1,4}[ -~]{0,8}",
    ];
    let header = prop_oneof![
        (0u64..3000).prop_map(|n| format!("Content-Length: {n}")),
        Just("Content-Length: 18446744073709551615".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: gzip, chunked".to_string()),
        Just("Transfer-Encoding: chunked, gzip".to_string()),
        Just("Connection: close".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,20}",
    ];
    let chunk = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|d| {
            let mut c = format!("{:x}\r\n", d.len()).into_bytes();
            c.extend(d);
            c.extend(b"\r\n");
            c
        }),
        "[0-9a-fA-F]{1,20}(;[a-z=]{0,8})?\r\n[a-z]{0,20}\r\n".prop_map(String::into_bytes),
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2000),
        (
            proptest::collection::vec(chunk, 0..5),
            "([A-Za-z]{1,6}: [a-z]{0,6}\r\n){0,2}"
        )
            .prop_map(|(cs, trailers)| {
                let mut b = cs.concat();
                b.extend(b"0\r\n");
                b.extend(trailers.into_bytes());
                b.extend(b"\r\n");
                b
            }),
    ];
    (
        proptest::option::of(Just("HTTP/1.1 100 Continue\r\n\r\n")),
        status,
        proptest::collection::vec(header, 0..5),
        body,
    )
        .prop_map(|(interim, status, headers, body)| {
            let mut r = Vec::new();
            if let Some(i) = interim {
                r.extend(i.as_bytes());
            }
            r.extend(status.into_bytes());
            r.extend(b"\r\n");
            for h in headers {
                r.extend(h.into_bytes());
                r.extend(b"\r\n");
            }
            r.extend(b"\r\n");
            r.extend(body);
            r
        })
}

proptest! {
    #![proptest_config(powertune_fuzz::config(1000))]

    #[test]
    fn generated_responses_decode_the_same_however_split(input in response()) {
        check(&input);
    }
}

proptest! {
    #![proptest_config(powertune_fuzz::config(800))]

    #[test]
    fn mutated_corpus_never_panics(input in powertune_fuzz::mutated(super::seeds(TARGET), TOKENS)) {
        check(&input);
    }
}
