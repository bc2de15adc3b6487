//! A sans-I/O HTTP/1.1 response decoder.
//!
//! The caller owns the socket and the read buffer; the decoder only looks at the
//! unread bytes it is handed and says how many of them it used and what they were:
//!
//! ```text
//! loop {
//!     let d = decoder.decode(&buf[start..end])?;
//!     start += d.consumed;
//!     match d.event {
//!         Event::NeedMore => read more (at end of stream: decoder.finish()),
//!         Event::Head(head) => status, framing, keep-alive,
//!         Event::Body(bytes) => a slice of the caller's own buffer,
//!         Event::End => the response is complete,
//!     }
//! }
//! ```
//!
//! It parses the head with `httparse`, skips interim `1xx` responses, decides the
//! framing (no body for HEAD, `1xx`, `204` and `304`; chunked when it is the final
//! transfer coding; another transfer coding or no length means the body runs to the
//! end of the connection; else `Content-Length`), removes chunked framing (sizes,
//! extensions, trailers) and enforces one set of [`Limits`]. Body bytes are never
//! copied: each [`Event::Body`] borrows the buffer it was found in.

mod chunked;
mod decoder;
mod head;

#[cfg(test)]
mod proptests;

pub use decoder::{Decoded, Event, ResponseDecoder};
pub use head::{Framing, Head};

/// Header slots available to one head: the upper bound of [`Limits::max_headers`].
pub const MAX_HEADERS: usize = 64;

/// What a response may hold before the decoder refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one response head, status line and final empty line included.
    pub max_head: usize,
    /// Header fields in one head (at most [`MAX_HEADERS`]).
    pub max_headers: usize,
    /// Bytes in one chunk-size line, extensions included, CRLF excluded.
    pub max_chunk_line: usize,
    /// Bytes in the trailer section after the last chunk, CRLFs included.
    pub max_trailers: usize,
    /// Payload bytes in one body; `None` for no limit.
    pub max_body: Option<u64>,
}

impl Limits {
    /// 64 KiB heads of up to [`MAX_HEADERS`] fields, 4 KiB chunk-size lines, 64 KiB of
    /// trailers, bodies of any size.
    pub const DEFAULT: Limits = Limits {
        max_head: 64 * 1024,
        max_headers: MAX_HEADERS,
        max_chunk_line: 4096,
        max_trailers: 64 * 1024,
        max_body: None,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a response cannot be decoded. The decoder stops at the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("a malformed response head ({0})")]
    Head(httparse::Error),
    #[error("a response head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("more than {limit} header fields in the response head")]
    TooManyHeaders { limit: usize },
    #[error("content-length is not a number")]
    ContentLength,
    #[error("two different content-lengths")]
    ConflictingContentLength,
    #[error("a malformed chunk size")]
    ChunkSize,
    #[error("a chunk-size line longer than {limit} bytes")]
    ChunkLineTooLong { limit: usize },
    #[error("chunk data longer than its size")]
    ChunkDataTooLong,
    #[error("trailers larger than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    #[error("a response body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the connection closed inside the response head")]
    ClosedInHead,
    #[error("the connection closed inside the body")]
    ClosedInBody,
}

/// The length of the line at the start of `b` (CRLF excluded), if it is complete.
fn line_len(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = b[from..].iter().position(|c| *c == b'\n') {
        let at = from + i;
        if at > 0 && b[at - 1] == b'\r' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// How long the incomplete line at the start of `b` is known to be at least (a final
/// `\r` may begin its CRLF).
fn partial_line_len(b: &[u8]) -> usize {
    b.len() - usize::from(b.last() == Some(&b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_crlf_only() {
        assert_eq!(line_len(b"ab\r\ncd"), Some(2));
        assert_eq!(line_len(b"\r\n"), Some(0));
        assert_eq!(line_len(b"a\nb\r\n"), Some(3));
        assert_eq!(line_len(b"ab\r"), None);
        assert_eq!(line_len(b""), None);
        assert_eq!(partial_line_len(b"ab\r"), 2);
        assert_eq!(partial_line_len(b"ab"), 2);
        assert_eq!(partial_line_len(b""), 0);
    }

    #[test]
    fn errors_read_as_one_line() {
        assert_eq!(
            Error::ChunkLineTooLong { limit: 4096 }.to_string(),
            "a chunk-size line longer than 4096 bytes"
        );
        assert_eq!(
            Error::Head(httparse::Error::Version).to_string(),
            "a malformed response head (invalid HTTP version)"
        );
    }
}
