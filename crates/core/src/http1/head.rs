//! The response head: `httparse` and the framing decision (RFC 9112 section 6.3).

use super::{Error, Limits, MAX_HEADERS};
use std::mem::MaybeUninit;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, an interim or `101`, `204` or `304` response.
    None,
    /// Exactly this many payload bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything up to the end of the connection.
    UntilClose,
}

/// A final response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub framing: Framing,
    /// The connection may carry another request after this response's body.
    pub keep_alive: bool,
    /// `Content-Length` as sent, when no transfer coding overrides it.
    pub content_length: Option<u64>,
}

/// What one parse of the bytes at the start of a response found.
pub(super) enum Parsed {
    Partial,
    /// An interim `1xx` head of this length, to be skipped.
    Interim(usize),
    /// The final head and its length.
    Final(usize, Head),
}

/// Parses the head at the start of `buf`; `on_header` sees every field of a final head.
pub(super) fn parse<F: FnMut(&str, &[u8])>(
    buf: &[u8],
    head_request: bool,
    limits: &Limits,
    on_header: &mut F,
) -> Result<Parsed, Error> {
    // Uninitialised slots: no memset of the whole array per response.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let max_headers = limits.max_headers.min(MAX_HEADERS);
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut slots[..max_headers],
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head => {
            return Err(Error::HeadTooLarge {
                limit: limits.max_head,
            })
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::TooManyHeaders { limit: max_headers })
        }
        Err(e) => return Err(Error::Head(e)),
    };
    if len > limits.max_head {
        return Err(Error::HeadTooLarge {
            limit: limits.max_head,
        });
    }
    let status = resp.code.unwrap_or(0);
    if (100..200).contains(&status) && status != 101 {
        return Ok(Parsed::Interim(len));
    }
    let version = resp.version.unwrap_or(1);
    let mut keep_alive = version == 1;
    let mut content_length = None;
    let mut coded = false;
    let mut chunked = false;
    for h in resp.headers.iter() {
        on_header(h.name, h.value);
        // Only three names matter here; compare lengths first.
        match h.name.len() {
            14 if h.name.eq_ignore_ascii_case("content-length") => {
                let n = parse_decimal(h.value).ok_or(Error::ContentLength)?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(Error::ConflictingContentLength);
                }
                content_length = Some(n);
            }
            17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                // the final coding decides
                let last = h.value.rsplit(|c| *c == b',').next().unwrap_or_default();
                coded = true;
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
            10 if h.name.eq_ignore_ascii_case("connection") => {
                for t in h.value.split(|c| *c == b',') {
                    let t = t.trim_ascii();
                    if t.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                        keep_alive = true;
                    }
                }
            }
            _ => {}
        }
    }
    let framing = if head_request || status == 101 || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if coded {
        Framing::UntilClose
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    if framing == Framing::UntilClose || status == 101 {
        keep_alive = false;
    }
    Ok(Parsed::Final(
        len,
        Head {
            status,
            version,
            framing,
            keep_alive,
            content_length: content_length.filter(|_| !coded),
        },
    ))
}

/// Digits only (optional blanks around them), no sign, no overflow.
fn parse_decimal(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, c| {
        if c.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], head_request: bool) -> Result<Head, Error> {
        match parse(raw, head_request, &Limits::default(), &mut |_, _| {})? {
            Parsed::Final(n, h) => {
                assert_eq!(n, raw.len());
                Ok(h)
            }
            Parsed::Interim(_) => panic!("interim"),
            Parsed::Partial => panic!("partial"),
        }
    }

    fn framing(raw: &str) -> Framing {
        head(raw.as_bytes(), false).unwrap().framing
    }

    #[test]
    fn framing_follows_status_coding_and_length() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n"
            ),
            Framing::Chunked
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
        for s in [204, 304, 101] {
            assert_eq!(
                framing(&format!("HTTP/1.1 {s} X\r\ncontent-length: 9\r\n\r\n")),
                Framing::None
            );
        }
        let h = head(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true).unwrap();
        assert_eq!((h.framing, h.content_length), (Framing::None, Some(9)));
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        let ka = |raw: &str| head(raw.as_bytes(), false).unwrap().keep_alive;
        assert!(ka("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!ka("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(ka(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!ka("HTTP/1.1 200 OK\r\n\r\n"), "a body until close");
        assert!(!ka("HTTP/1.1 101 Switching\r\n\r\n"));
        assert!(ka("HTTP/1.1 204 No Content\r\n\r\n"));
    }

    #[test]
    fn content_length_must_be_one_number() {
        let h = |raw: &str| head(raw.as_bytes(), false);
        assert_eq!(
            h("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"),
            Err(Error::ContentLength)
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n"),
            Err(Error::ContentLength)
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n"),
            Err(Error::ContentLength)
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"),
            Err(Error::ConflictingContentLength)
        );
        let same = h("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nContent-Length:  2 \r\n\r\n");
        assert_eq!(same.unwrap().content_length, Some(2));
        let coded = h("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n");
        assert_eq!(coded.unwrap().content_length, None);
    }

    #[test]
    fn interim_heads_are_reported_then_passed_over() {
        let raw = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n";
        let mut seen = 0;
        let p = parse(raw, false, &Limits::default(), &mut |_, _| seen += 1).unwrap();
        assert!(matches!(p, Parsed::Interim(n) if n == raw.len()));
        assert_eq!(seen, 0, "an interim head's fields are not shown");
    }

    #[test]
    fn every_field_of_a_final_head_is_shown() {
        let raw = b"HTTP/1.1 429 Slow Down\r\nretry-after: 7\r\nX-A: b\r\n\r\n";
        let mut seen = Vec::new();
        let p = parse(raw, false, &Limits::default(), &mut |n, v| {
            seen.push(format!("{n}={}", String::from_utf8_lossy(v)))
        })
        .unwrap();
        assert!(matches!(p, Parsed::Final(_, h) if h.status == 429));
        assert_eq!(seen, ["retry-after=7", "X-A=b"]);
    }

    #[test]
    fn head_size_and_field_count_are_limited() {
        let limits = Limits {
            max_head: 40,
            max_headers: 2,
            ..Limits::default()
        };
        let p = |raw: &[u8]| parse(raw, false, &limits, &mut |_, _| {}).map(|_| ());
        assert_eq!(p(b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\n\r\n"), Ok(()));
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"),
            Err(Error::TooManyHeaders { limit: 2 })
        );
        let long = b"HTTP/1.1 200 OK\r\na: 0123456789012345678901234\r\n\r\n";
        assert_eq!(p(long), Err(Error::HeadTooLarge { limit: 40 }));
        assert_eq!(p(&long[..40]), Err(Error::HeadTooLarge { limit: 40 }));
        assert_eq!(p(&long[..39]), Ok(()), "still partial");
        assert!(matches!(p(b"SMTP ready\r\n\r\n"), Err(Error::Head(_))));
    }
}
