//! A lean HTTP/1.1 client connection, driven directly by the VU's own task.
//!
//! hyper's client hands every request to a separate connection task through a channel
//! and keeps 16 KiB of buffers per idle connection; a load generator with thousands of
//! mostly sleeping VUs pays for both. This connection writes the request into one
//! reused buffer, reads the response with `httparse` into another, frames the body
//! (Content-Length, chunked, or until close) and measures k6's phases with four clock
//! reads. Buffers are released while the VU thinks ([`H1Conn::trim`]), so a sleeping
//! VU holds little more than its socket.

use crate::net::{Origin, Stream};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Response heads larger than this are refused (hyper's default limit is similar).
const MAX_HEAD: usize = 64 * 1024;
/// How much the read buffer grows at a time.
const READ_CHUNK: usize = 4096;
/// Buffers larger than this are dropped after a request rather than kept.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum H1Error {
    /// Writing the request failed, or the server closed before any response byte
    /// arrived: on a reused connection the request may be retried on a new one.
    Stale(String),
    /// A response was malformed, or the connection broke mid-response.
    Protocol(String),
}

/// What one exchange produced.
pub struct Exchange {
    pub status: u16,
    pub body: Vec<u8>,
    pub sent: u64,
    pub received: u64,
    /// When the last request byte was written.
    pub last_write: Instant,
    /// When the first response byte arrived.
    pub first_read: Instant,
    /// The connection must not be reused (`Connection: close`, body until EOF).
    pub close: bool,
}

/// One keep-alive HTTP/1.1 connection.
pub struct H1Conn {
    io: Stream,
    /// Bytes read and not consumed yet, from `start`.
    rbuf: Vec<u8>,
    start: usize,
    wbuf: Vec<u8>,
    /// Requests sent on this connection so far.
    pub used: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl H1Conn {
    pub fn new(io: Stream) -> H1Conn {
        H1Conn {
            io,
            rbuf: Vec::new(),
            start: 0,
            wbuf: Vec::new(),
            used: 0,
        }
    }

    /// Frees the buffers (between requests, e.g. while the VU sleeps).
    pub fn trim(&mut self) {
        if self.start >= self.rbuf.len() {
            self.rbuf = Vec::new();
            self.start = 0;
        }
        self.wbuf = Vec::new();
    }

    /// Writes the request head and body into the write buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn encode(
        &mut self,
        method: &hyper::Method,
        path: &str,
        origin: &Origin,
        headers: &[(hyper::header::HeaderName, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) {
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(method.as_str().as_bytes());
        w.push(b' ');
        w.extend_from_slice(path.as_bytes());
        w.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        origin.write_authority(w);
        w.extend_from_slice(b"\r\n");
        let mut has_ct = false;
        for (k, v) in headers {
            if *k == hyper::header::CONTENT_TYPE {
                has_ct = true;
            }
            if *k == hyper::header::HOST || *k == hyper::header::CONTENT_LENGTH {
                continue;
            }
            w.extend_from_slice(k.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(v.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        if let (Some(ct), false) = (content_type, has_ct) {
            w.extend_from_slice(b"content-type: ");
            w.extend_from_slice(ct.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        let needs_length = !body.is_empty()
            || matches!(
                *method,
                hyper::Method::POST | hyper::Method::PUT | hyper::Method::PATCH
            );
        if needs_length {
            w.extend_from_slice(b"content-length: ");
            push_decimal(w, body.len() as u64);
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"\r\n");
        w.extend_from_slice(body);
    }

    /// Sends the encoded request and reads the whole response.
    pub async fn exchange(
        &mut self,
        head_request: bool,
        keep_body: bool,
    ) -> Result<Exchange, H1Error> {
        // Leftover bytes from an earlier response mean the server sent more than it
        // framed: this connection cannot be trusted (the request goes on a new one).
        if self.start < self.rbuf.len() {
            return Err(H1Error::Stale(
                "the server sent bytes after the previous response".into(),
            ));
        }
        self.used += 1;
        let sent = self.wbuf.len() as u64;
        if let Err(e) = self.io.write_all(&self.wbuf).await {
            return Err(H1Error::Stale(format!("writing the request: {e}")));
        }
        if let Stream::Tls(_) = self.io {
            if let Err(e) = self.io.flush().await {
                return Err(H1Error::Stale(format!("writing the request: {e}")));
            }
        }
        let last_write = Instant::now();
        if self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = Vec::new();
        }
        self.rbuf.clear();
        self.start = 0;
        let mut received = 0u64;
        // The first byte.
        match self.fill().await {
            Ok(0) => return Err(H1Error::Stale("the server closed the connection".into())),
            Ok(n) => received += n as u64,
            Err(e) => return Err(H1Error::Stale(format!("reading the response: {e}"))),
        }
        let first_read = Instant::now();
        let proto = |m: String| H1Error::Protocol(m);
        loop {
            // The head; interim 1xx responses are read past.
            let (status, framing, close, head_len) = loop {
                // Uninitialised header slots: no 2 KiB memset per response.
                let mut hdrs = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; 64];
                let mut resp = httparse::Response::new(&mut []);
                match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut resp,
                    &self.rbuf[self.start..],
                    &mut hdrs,
                ) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = resp.code.unwrap_or(0);
                        let http10 = resp.version == Some(0);
                        let mut length = None;
                        let mut chunked = false;
                        let mut close = http10;
                        for h in resp.headers.iter() {
                            // Only three names matter; compare lengths first.
                            let n = h.name.len();
                            if n != 14 && n != 17 && n != 10 {
                                continue;
                            }
                            if h.name.eq_ignore_ascii_case("content-length") {
                                let v = std::str::from_utf8(h.value)
                                    .ok()
                                    .and_then(|s| s.trim().parse::<u64>().ok())
                                    .ok_or_else(|| proto("bad Content-Length".into()))?;
                                length = Some(v);
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = h.value.rsplit(|b| *b == b',').next().is_some_and(|v| {
                                    v.trim_ascii().eq_ignore_ascii_case(b"chunked")
                                });
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                if h.value.eq_ignore_ascii_case(b"close") {
                                    close = true;
                                } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                                    close = false;
                                }
                            }
                        }
                        let framing = if head_request
                            || (100..200).contains(&status)
                            || status == 204
                            || status == 304
                        {
                            Framing::None
                        } else if chunked {
                            Framing::Chunked
                        } else if let Some(n) = length {
                            Framing::Length(n)
                        } else {
                            Framing::UntilClose
                        };
                        break (status, framing, close, len);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.rbuf.len() - self.start > MAX_HEAD {
                            return Err(proto(format!(
                                "response head larger than {} KiB",
                                MAX_HEAD / 1024
                            )));
                        }
                        received += self.more().await? as u64;
                    }
                    Err(e) => return Err(proto(format!("malformed response head: {e}"))),
                }
            };
            self.start += head_len;
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let mut body = Vec::new();
            let close = close || framing == Framing::UntilClose;
            match framing {
                Framing::None => {}
                Framing::Length(n) => {
                    let mut left = n;
                    loop {
                        let have = (self.rbuf.len() - self.start) as u64;
                        let take = have.min(left) as usize;
                        if keep_body {
                            body.extend_from_slice(&self.rbuf[self.start..self.start + take]);
                        }
                        self.start += take;
                        left -= take as u64;
                        if left == 0 {
                            break;
                        }
                        received += self.more().await? as u64;
                    }
                }
                Framing::UntilClose => loop {
                    if keep_body {
                        body.extend_from_slice(&self.rbuf[self.start..]);
                    }
                    self.start = self.rbuf.len();
                    match self.fill().await {
                        Ok(0) => break,
                        Ok(n) => received += n as u64,
                        Err(e) => return Err(proto(format!("reading the body: {e}"))),
                    }
                },
                Framing::Chunked => {
                    received += self.chunked(keep_body, &mut body).await?;
                }
            }
            if self.start >= self.rbuf.len() {
                self.start = 0;
                self.rbuf.clear();
            }
            if self.rbuf.capacity() > KEEP_CAPACITY && self.rbuf.is_empty() {
                self.rbuf = Vec::new();
            }
            return Ok(Exchange {
                status,
                body,
                sent,
                received,
                last_write,
                first_read,
                close,
            });
        }
    }

    /// Decodes a chunked body from the read buffer, reading more as needed.
    async fn chunked(&mut self, keep: bool, body: &mut Vec<u8>) -> Result<u64, H1Error> {
        let mut received = 0u64;
        loop {
            // The size line.
            let line_end = loop {
                if let Some(i) = find_crlf(&self.rbuf[self.start..]) {
                    break i;
                }
                if self.rbuf.len() - self.start > 4096 {
                    return Err(H1Error::Protocol("chunk size line too long".into()));
                }
                received += self.more().await? as u64;
            };
            let line = &self.rbuf[self.start..self.start + line_end];
            let hex = line.split(|b| *b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(hex)
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                .ok_or_else(|| H1Error::Protocol("bad chunk size".into()))?;
            self.start += line_end + 2;
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let end = loop {
                        if let Some(i) = find_crlf(&self.rbuf[self.start..]) {
                            break i;
                        }
                        if self.rbuf.len() - self.start > MAX_HEAD {
                            return Err(H1Error::Protocol("trailers too large".into()));
                        }
                        received += self.more().await? as u64;
                    };
                    self.start += end + 2;
                    if end == 0 {
                        return Ok(received);
                    }
                }
            }
            // The data and its CRLF.
            let mut left = size + 2;
            loop {
                let have = (self.rbuf.len() - self.start) as u64;
                let take = have.min(left) as usize;
                if keep {
                    let data_left = left.saturating_sub(2) as usize;
                    let data = take.min(data_left);
                    body.extend_from_slice(&self.rbuf[self.start..self.start + data]);
                }
                self.start += take;
                left -= take as u64;
                if left == 0 {
                    break;
                }
                received += self.more().await? as u64;
            }
        }
    }

    /// Reads at least one more byte; end of stream is an error (mid-response).
    async fn more(&mut self) -> Result<usize, H1Error> {
        match self.fill().await {
            Ok(0) => Err(H1Error::Protocol(
                "the connection closed in the middle of the response".into(),
            )),
            Ok(n) => Ok(n),
            Err(e) => Err(H1Error::Protocol(format!("reading the response: {e}"))),
        }
    }

    /// One read into the buffer (compacting consumed bytes first).
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start > 0 && self.start == self.rbuf.len() {
            self.rbuf.clear();
            self.start = 0;
        } else if self.start > READ_CHUNK && self.start * 2 > self.rbuf.len() {
            self.rbuf.drain(..self.start);
            self.start = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < 512 {
            self.rbuf.reserve(READ_CHUNK);
        }
        self.io.read_buf(&mut self.rbuf).await
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn push_decimal(w: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    /// A server that answers each request with the next canned reply (raw bytes).
    async fn canned(replies: Vec<&'static [u8]>) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for r in replies {
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                    if n == 0 || req.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                seen.extend_from_slice(&req);
                s.write_all(r).await.unwrap();
            }
            seen
        });
        (port, h)
    }

    fn origin(port: u16) -> Origin {
        Origin {
            https: false,
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[tokio::test]
    async fn frames_length_chunked_and_empty_bodies() {
        let (port, h) = canned(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 500 Oops\r\nConnection: close\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = H1Conn::new(Stream::Tcp(tcp));
        let o = origin(port);
        c.encode(&hyper::Method::GET, "/a", &o, &[], None, b"");
        let r = c.exchange(false, true).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.close),
            (200, &b"hello"[..], false)
        );
        c.trim();
        c.encode(
            &hyper::Method::POST,
            "/b",
            &o,
            &[(hyper::header::AUTHORIZATION, "Bearer t".into())],
            Some("application/json"),
            b"{}",
        );
        let r = c.exchange(false, true).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"abcde"[..]));
        assert!(r.received > 40, "{}", r.received);
        c.encode(&hyper::Method::GET, "/c", &o, &[], None, b"");
        let r = c.exchange(false, false).await.unwrap();
        assert_eq!(r.status, 204);
        c.encode(&hyper::Method::GET, "/d", &o, &[], None, b"");
        let r = c.exchange(false, false).await.unwrap();
        assert_eq!((r.status, r.close), (500, true));
        let seen = String::from_utf8(h.await.unwrap()).unwrap();
        assert!(
            seen.starts_with(&format!(
                "GET /a HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n"
            )),
            "{seen}"
        );
        assert!(seen.contains("authorization: Bearer t\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"), "{seen}");
    }

    #[tokio::test]
    async fn garbage_and_early_close_are_errors_not_panics() {
        let (port, _h) = canned(vec![b"SMTP ready\r\n\r\n"]).await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = H1Conn::new(Stream::Tcp(tcp));
        c.encode(&hyper::Method::GET, "/", &origin(port), &[], None, b"");
        assert!(matches!(
            c.exchange(false, false).await,
            Err(H1Error::Protocol(_))
        ));

        let (port, _h) = canned(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"]).await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = H1Conn::new(Stream::Tcp(tcp));
        c.encode(&hyper::Method::GET, "/", &origin(port), &[], None, b"");
        assert!(matches!(
            c.exchange(false, false).await,
            Err(H1Error::Protocol(_))
        ));

        let (port, _h) = canned(vec![]).await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = H1Conn::new(Stream::Tcp(tcp));
        c.encode(&hyper::Method::GET, "/", &origin(port), &[], None, b"");
        assert!(matches!(
            c.exchange(false, false).await,
            Err(H1Error::Stale(_))
        ));
    }

    #[test]
    fn decimals() {
        let mut v = Vec::new();
        push_decimal(&mut v, 0);
        v.push(b' ');
        push_decimal(&mut v, 1234567);
        assert_eq!(v, b"0 1234567");
    }
}
