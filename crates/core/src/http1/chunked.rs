//! The chunked transfer coding (RFC 9112 section 7.1) as a state machine.

use super::{line_len, partial_line_len, Error, Limits};

/// Where the decoder is inside a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data: bytes still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to the empty line; bytes seen so far.
    Trailers(usize),
    /// The empty line after the trailers was read.
    Done,
}

/// One step through a chunked body.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// This many bytes were framing; nothing more can be done without more bytes.
    NeedMore(usize),
    /// Payload at `skip..skip + len` of the input (the bytes before it were framing).
    Data { skip: usize, len: usize },
    /// The body ended after this many more framing bytes.
    End(usize),
}

impl Chunked {
    /// Walks the framing at the start of `b` up to the next payload, the end of the
    /// body or the end of `b`.
    pub(super) fn step(&mut self, b: &[u8], limits: &Limits) -> Result<Step, Error> {
        let mut at = 0;
        loop {
            let rest = &b[at..];
            match *self {
                Chunked::Done => return Ok(Step::End(at)),
                Chunked::Data(left) => {
                    if rest.is_empty() {
                        return Ok(Step::NeedMore(at));
                    }
                    let len = (left.min(rest.len() as u64)) as usize;
                    *self = if left == len as u64 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - len as u64)
                    };
                    return Ok(Step::Data { skip: at, len });
                }
                Chunked::DataEnd => match rest {
                    [] | [b'\r'] => return Ok(Step::NeedMore(at)),
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        *self = Chunked::Size;
                    }
                    _ => return Err(Error::ChunkDataTooLong),
                },
                Chunked::Size => {
                    let limit = limits.max_chunk_line;
                    let Some(n) = line_len(rest) else {
                        if partial_line_len(rest) > limit {
                            return Err(Error::ChunkLineTooLong { limit });
                        }
                        return Ok(Step::NeedMore(at));
                    };
                    if n > limit {
                        return Err(Error::ChunkLineTooLong { limit });
                    }
                    *self = match chunk_size(&rest[..n])? {
                        0 => Chunked::Trailers(0),
                        size => Chunked::Data(size),
                    };
                    at += n + 2;
                }
                Chunked::Trailers(seen) => {
                    let limit = limits.max_trailers;
                    let Some(n) = line_len(rest) else {
                        if seen + partial_line_len(rest) + 2 > limit {
                            return Err(Error::TrailersTooLarge { limit });
                        }
                        return Ok(Step::NeedMore(at));
                    };
                    if seen + n + 2 > limit {
                        return Err(Error::TrailersTooLarge { limit });
                    }
                    at += n + 2;
                    *self = if n == 0 {
                        Chunked::Done
                    } else {
                        Chunked::Trailers(seen + n + 2)
                    };
                }
            }
        }
    }
}

/// A chunk-size line: hex digits, then optional `;extensions` (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let hex = line
        .split(|c| *c == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    // at most 15 digits: no overflow
    if hex.is_empty() || hex.len() > 15 {
        return Err(Error::ChunkSize);
    }
    hex.iter().try_fold(0u64, |n, c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(Error::ChunkSize),
        };
        Ok(n * 16 + u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload of a whole chunked body fed in one piece, and the bytes used.
    fn decode(b: &[u8], limits: &Limits) -> Result<(Vec<u8>, usize), Error> {
        let mut c = Chunked::Size;
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            match c.step(&b[at..], limits)? {
                Step::Data { skip, len } => {
                    out.extend_from_slice(&b[at + skip..at + skip + len]);
                    at += skip + len;
                }
                Step::End(n) => return Ok((out, at + n)),
                Step::NeedMore(_) => panic!("incomplete at {at}"),
            }
        }
    }

    #[test]
    fn sizes_extensions_and_trailers() {
        let b = b"3;x=y\r\nabc\r\nA ; n=\"v\"\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nnext";
        let (out, used) = decode(b, &Limits::default()).unwrap();
        assert_eq!(out, b"abc0123456789");
        assert_eq!(&b[used..], b"next");
    }

    #[test]
    fn sizes_are_hex_digits_only() {
        assert_eq!(chunk_size(b"1f"), Ok(31));
        assert_eq!(chunk_size(b"A ; name=v"), Ok(10));
        assert_eq!(chunk_size(b"fffffffffffffff"), Ok(0xfff_ffff_ffff_ffff));
        for bad in [&b""[..], b"12345678901234567", b"+1", b"zz", b"-0", b";x"] {
            assert_eq!(chunk_size(bad), Err(Error::ChunkSize), "{bad:?}");
        }
    }

    #[test]
    fn data_must_end_where_its_size_says() {
        let l = Limits::default();
        assert_eq!(
            decode(b"2\r\nabc\r\n0\r\n\r\n", &l),
            Err(Error::ChunkDataTooLong)
        );
        let mut c = Chunked::DataEnd;
        assert_eq!(c.step(b"\r", &l), Ok(Step::NeedMore(0)));
        assert_eq!(c.step(b"\rx", &l), Err(Error::ChunkDataTooLong));
    }

    #[test]
    fn size_lines_and_trailers_are_limited_however_they_arrive() {
        let l = Limits {
            max_chunk_line: 4,
            max_trailers: 10,
            ..Limits::default()
        };
        assert!(decode(b"1;ab\r\nx\r\n0\r\n\r\n", &l).is_ok());
        let long = b"1;abc\r\nx\r\n0\r\n\r\n";
        assert_eq!(decode(long, &l), Err(Error::ChunkLineTooLong { limit: 4 }));
        let mut c = Chunked::Size;
        assert_eq!(c.step(b"1;ab\r", &l), Ok(Step::NeedMore(0)));
        assert_eq!(
            c.step(b"1;abc", &l),
            Err(Error::ChunkLineTooLong { limit: 4 })
        );
        // "a: 123\r\n" and the empty line are 10 bytes; one more is too many
        assert!(decode(b"0\r\na: 123\r\n\r\n", &l).is_ok());
        let big = b"0\r\na: 1234\r\n\r\n";
        assert_eq!(decode(big, &l), Err(Error::TrailersTooLarge { limit: 10 }));
        let mut c = Chunked::Trailers(0);
        assert_eq!(c.step(b"a: 12\r", &l), Ok(Step::NeedMore(0)));
        assert_eq!(
            c.step(b"a: 123456", &l),
            Err(Error::TrailersTooLarge { limit: 10 })
        );
    }
}
