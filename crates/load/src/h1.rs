//! A lean HTTP/1.1 client connection, driven directly by the VU's own task.
//!
//! hyper's client hands every request to a separate connection task through a channel
//! and keeps 16 KiB of buffers per idle connection; a load generator with thousands of
//! mostly sleeping VUs pays for both. This connection writes the request into one
//! reused buffer, reads the response into another, has [`powertune_core::http1`]
//! decode it there (head, framing, chunks) and measures k6's phases with four clock
//! reads. Buffers are released while the VU thinks ([`H1Conn::trim`]), so a sleeping
//! VU holds little more than its socket.

use crate::llm::Probe;
use crate::net::{Origin, Stream};
use powertune_core::http1::{Event, Framing, Head, Limits, ResponseDecoder};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// A streamed LLM answer sent nothing for its stall timeout.
    Stall(String),
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

    /// Sends the encoded request and reads the whole response; a `probe` (an LLM
    /// step's) sees the head and each piece of body as it is read, and bounds every
    /// wait for bytes by its stall timeout.
    pub async fn exchange(
        &mut self,
        head_request: bool,
        keep_body: bool,
        mut probe: Option<&mut Probe<'_>>,
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
        let mut stall = probe.as_ref().map(|p| StallClock::new(p.stall_timeout()));
        if let Some(p) = probe.as_deref_mut() {
            p.start(Instant::now());
        }
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
        match self.fill_within(stall.as_mut()).await? {
            Ok(0) => return Err(H1Error::Stale("the server closed the connection".into())),
            Ok(n) => received += n as u64,
            Err(e) => return Err(H1Error::Stale(format!("reading the response: {e}"))),
        }
        let first_read = Instant::now();
        let mut read_at = first_read;
        let mut decoder = ResponseDecoder::new(Limits::default(), head_request);
        let mut head = None;
        let mut body = Vec::new();
        loop {
            let d = decoder
                .decode(&self.rbuf[self.start..])
                .map_err(|e| H1Error::Protocol(e.to_string()))?;
            self.start += d.consumed;
            match d.event {
                Event::Head(h) => {
                    if let Some(p) = probe.as_deref_mut() {
                        p.head(h.status);
                    }
                    head = Some(h)
                }
                Event::Body(b) => {
                    if let Some(p) = probe.as_deref_mut() {
                        p.body(b, read_at);
                    }
                    if keep_body {
                        if body.len() + b.len() > crate::http::MAX_KEPT_BODY {
                            return Err(H1Error::Protocol(crate::http::body_too_long()));
                        }
                        body.extend_from_slice(b);
                    }
                }
                Event::End => {
                    if let Some(p) = probe.as_deref_mut() {
                        p.end(read_at);
                    }
                    break;
                }
                Event::NeedMore => match self.fill_within(stall.as_mut()).await? {
                    Ok(0) => decoder.finish().map_err(|_| {
                        H1Error::Protocol(
                            "the connection closed in the middle of the response".into(),
                        )
                    })?,
                    Ok(n) => {
                        received += n as u64;
                        read_at = Instant::now();
                    }
                    Err(e) => {
                        let what = match head {
                            Some(Head {
                                framing: Framing::UntilClose,
                                ..
                            }) => "the body",
                            _ => "the response",
                        };
                        return Err(H1Error::Protocol(format!("reading {what}: {e}")));
                    }
                },
            }
        }
        let head = head.ok_or_else(|| H1Error::Protocol("a response without a head".into()))?;
        if self.start >= self.rbuf.len() {
            self.start = 0;
            self.rbuf.clear();
        }
        if self.rbuf.capacity() > KEEP_CAPACITY && self.rbuf.is_empty() {
            self.rbuf = Vec::new();
        }
        Ok(Exchange {
            status: head.status,
            body,
            sent,
            received,
            last_write,
            first_read,
            close: !head.keep_alive,
        })
    }

    /// [`H1Conn::fill`] waiting at most the stall clock's limit (when set) since the
    /// last read for bytes.
    async fn fill_within(
        &mut self,
        stall: Option<&mut StallClock>,
    ) -> Result<std::io::Result<usize>, H1Error> {
        let Some(c) = stall else {
            return Ok(self.fill().await);
        };
        loop {
            tokio::select! {
                biased;
                r = self.fill() => {
                    c.last = tokio::time::Instant::now();
                    return Ok(r);
                }
                () = c.sleep.as_mut() => {
                    let due = c.last + c.limit;
                    if tokio::time::Instant::now() >= due {
                        return Err(H1Error::Stall(format!(
                            "the stream sent nothing for {}",
                            powertune_core::units::duration(c.limit)
                        )));
                    }
                    c.sleep.as_mut().reset(due);
                }
            }
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

/// An LLM answer's stall timeout: one timer for the whole exchange, moved on only
/// when it fires (to the last read + the limit), rather than a timer per read.
struct StallClock {
    limit: std::time::Duration,
    last: tokio::time::Instant,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl StallClock {
    fn new(limit: std::time::Duration) -> StallClock {
        let last = tokio::time::Instant::now();
        StallClock {
            limit,
            last,
            sleep: Box::pin(tokio::time::sleep_until(last + limit)),
        }
    }
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
        let r = c.exchange(false, true, None).await.unwrap();
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
        let r = c.exchange(false, true, None).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"abcde"[..]));
        assert!(r.received > 40, "{}", r.received);
        c.encode(&hyper::Method::GET, "/c", &o, &[], None, b"");
        let r = c.exchange(false, false, None).await.unwrap();
        assert_eq!(r.status, 204);
        c.encode(&hyper::Method::GET, "/d", &o, &[], None, b"");
        let r = c.exchange(false, false, None).await.unwrap();
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
            c.exchange(false, false, None).await,
            Err(H1Error::Protocol(_))
        ));

        let (port, _h) = canned(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"]).await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = H1Conn::new(Stream::Tcp(tcp));
        c.encode(&hyper::Method::GET, "/", &origin(port), &[], None, b"");
        assert!(matches!(
            c.exchange(false, false, None).await,
            Err(H1Error::Protocol(_))
        ));

        let (port, _h) = canned(vec![]).await;
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut c = H1Conn::new(Stream::Tcp(tcp));
        c.encode(&hyper::Method::GET, "/", &origin(port), &[], None, b"");
        assert!(matches!(
            c.exchange(false, false, None).await,
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
