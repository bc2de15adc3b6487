//! A lean HTTP/1.1 client for plain-HTTP providers (`http://` base URLs: Ollama,
//! local OpenAI-compatible servers, an internal LLM proxy).
//!
//! Why not hyper's client: hyper runs each connection in a task of its own and hands
//! the response body to the caller one frame per scheduler turn, so a streamed answer
//! that arrives in one socket read leaves the gateway as one write per event. Here the
//! relay's own task reads the socket: every read yields all the payload it holds
//! (chunked framing removed by [`powertune_core::http1`]), and the relay sends it on
//! as one piece.
//!
//! Connections are kept per `host:port` (most recently used first, closed after
//! [`IDLE_TIMEOUT`] unused, at most [`MAX_IDLE`] per origin) and are reused only after
//! a response was read to its end with nothing left over. A reused connection that
//! turns out to be closed before any response byte arrives is retried once on a new
//! connection.

use bytes::Bytes;
use parking_lot::Mutex;
use powertune_core::http1::{self, Event, Limits, ResponseDecoder};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long an unused connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin.
pub(crate) const MAX_IDLE: usize = 512;
/// What a provider's response may hold.
const LIMITS: Limits = Limits::DEFAULT;
/// Read buffer per connection (it grows only for a head that does not fit).
const READ_BUF: usize = 16 << 10;
/// Most payload bytes handed over by one [`PlainBody::poll_data`].
const MAX_PIECE: usize = 256 << 10;

/// Where a provider lives and the fixed start of every request to it.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// `host:port`: the pool key.
    key: Arc<str>,
    host: Host,
    port: u16,
    /// `POST /path HTTP/1.1\r\nhost: ...\r\n`.
    head_start: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Host {
    Ip(std::net::IpAddr),
    Name(String),
}

impl Origin {
    /// The origin of an `http://` URL (path and query included in the request line).
    pub(crate) fn new(url: &url::Url) -> Result<Origin, String> {
        if url.scheme() != "http" {
            return Err(format!("{} is not an http:// URL", url.scheme()));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let host = match url.host() {
            Some(url::Host::Ipv4(a)) => Host::Ip(a.into()),
            Some(url::Host::Ipv6(a)) => Host::Ip(a.into()),
            Some(url::Host::Domain(d)) => Host::Name(d.to_string()),
            None => return Err("the URL has no host".into()),
        };
        let host_text = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(p) => format!("{host_text}:{p}"),
            None => host_text.to_string(),
        };
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let head_start = format!("POST {target} HTTP/1.1\r\nhost: {authority}\r\n").into_bytes();
        Ok(Origin {
            key: format!("{host_text}:{port}").into(),
            host,
            port,
            head_start,
        })
    }
}

/// Why a request got no response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError {
    ConnectTimeout,
    /// Connecting, writing or reading the head failed (words, no URL or key).
    Failed(String),
}

struct Conn {
    io: TcpStream,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Conn {
    fn new(io: TcpStream) -> Conn {
        Conn {
            io,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
        }
    }

    /// One read into the free end of the buffer (moving unread bytes to the front,
    /// or growing it up to `max` when it is full).
    fn poll_fill(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<std::io::Result<usize>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // the decoder refuses a partial head or trailer line before it reaches `max`
            let n = (self.buf.len() * 2).min(max).max(self.buf.len() + 1);
            self.buf.resize(n, 0);
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.end += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// False when the peer closed it or sent something unasked while it was idle
    /// (no system call unless the socket was reported readable).
    fn still_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<Arc<str>, Vec<Idle>>>,
}

impl Pool {
    fn take(&self, key: &str) -> Option<Conn> {
        let mut map = self.idle.lock();
        let list = map.get_mut(key)?;
        let now = Instant::now();
        while let Some(mut i) = list.pop() {
            if now.saturating_duration_since(i.since) >= IDLE_TIMEOUT {
                // the rest are older still
                list.clear();
                return None;
            }
            if i.conn.still_open() {
                return Some(i.conn);
            }
        }
        None
    }

    fn put(&self, key: &Arc<str>, conn: Conn) {
        let mut map = self.idle.lock();
        let list = map.entry(key.clone()).or_default();
        let now = Instant::now();
        let stale = list
            .iter()
            .take_while(|i| now.saturating_duration_since(i.since) >= IDLE_TIMEOUT)
            .count();
        let over = (list.len() - stale + 1).saturating_sub(MAX_IDLE);
        list.drain(..stale + over);
        list.push(Idle { conn, since: now });
    }

    #[cfg(test)]
    fn idle_count(&self, key: &str) -> usize {
        self.idle.lock().get(key).map_or(0, Vec::len)
    }
}

/// The client: a pool of keep-alive connections per origin.
#[derive(Clone)]
pub(crate) struct PlainClient {
    pool: Arc<Pool>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainClient")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// A response head and its body.
pub(crate) struct PlainResponse {
    pub(crate) status: u16,
    /// `retry-after-ms` and `retry-after`, as sent.
    pub(crate) retry_after_ms: Option<String>,
    pub(crate) retry_after: Option<String>,
    pub(crate) content_length: Option<u64>,
    pub(crate) body: PlainBody,
    /// The provider's rate-limit headers (`x-ratelimit-*`, `anthropic-ratelimit-*`),
    /// names lowercased, at most [`MAX_RATE_HEADERS`].
    pub(crate) rate_headers: Vec<(String, String)>,
}

/// Most rate-limit headers kept from one response head.
pub(crate) const MAX_RATE_HEADERS: usize = 16;

impl PlainClient {
    pub(crate) fn new(connect_timeout: Duration) -> PlainClient {
        PlainClient {
            pool: Arc::default(),
            connect_timeout,
        }
    }

    /// POSTs `body` with `headers` (name, value) and reads the response head.
    pub(crate) async fn post(
        &self,
        origin: &Origin,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Result<PlainResponse, SendError> {
        let mut req = Vec::with_capacity(origin.head_start.len() + 160 + body.len());
        req.extend_from_slice(&origin.head_start);
        for (n, v) in headers {
            req.extend_from_slice(n);
            req.extend_from_slice(b": ");
            req.extend_from_slice(v);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"content-length: ");
        req.extend_from_slice(body.len().to_string().as_bytes());
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(body);
        let mut retried = false;
        loop {
            let pooled = if retried {
                None
            } else {
                self.pool.take(&origin.key)
            };
            let (mut conn, reused) = match pooled {
                Some(c) => (c, true),
                None => (self.connect(origin).await?, false),
            };
            if let Err(e) = conn.io.write_all(&req).await {
                if reused {
                    retried = true;
                    continue;
                }
                return Err(SendError::Failed(format!("request failed: {e}")));
            }
            match read_head(&mut conn).await {
                Ok(head) => {
                    let mut body = PlainBody {
                        conn: Some(conn),
                        decoder: head.decoder,
                        keep_alive: head.keep_alive,
                        pool: self.pool.clone(),
                        key: origin.key.clone(),
                        failed: false,
                    };
                    body.release_if_done();
                    return Ok(PlainResponse {
                        status: head.status,
                        retry_after_ms: head.retry_after_ms,
                        retry_after: head.retry_after,
                        content_length: head.content_length,
                        body,
                        rate_headers: head.rate_headers,
                    });
                }
                Err(HeadError::ClosedEarly) if reused => {
                    retried = true;
                    continue;
                }
                Err(HeadError::ClosedEarly) => {
                    return Err(SendError::Failed(
                        "request failed: the provider closed the connection before answering"
                            .into(),
                    ))
                }
                Err(HeadError::Io(e)) => {
                    return Err(SendError::Failed(format!("request failed: {e}")))
                }
                Err(HeadError::Bad(why)) => {
                    return Err(SendError::Failed(format!(
                        "request failed: the provider's HTTP response is malformed ({why})"
                    )))
                }
            }
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, SendError> {
        let connect = async {
            match &origin.host {
                Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, origin.port)).await,
                Host::Name(n) => TcpStream::connect((n.as_str(), origin.port)).await,
            }
        };
        let io = match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => return Err(SendError::ConnectTimeout),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(SendError::ConnectTimeout)
            }
            Ok(Err(e)) => return Err(SendError::Failed(format!("connection failed: {e}"))),
            Ok(Ok(io)) => io,
        };
        let _ = io.set_nodelay(true);
        Ok(Conn::new(io))
    }

    #[cfg(test)]
    fn idle_count(&self, origin: &Origin) -> usize {
        self.pool.idle_count(&origin.key)
    }
}

struct Head {
    status: u16,
    keep_alive: bool,
    content_length: Option<u64>,
    retry_after_ms: Option<String>,
    retry_after: Option<String>,
    rate_headers: Vec<(String, String)>,
    /// Past the head: it decodes the body next.
    decoder: ResponseDecoder,
}

enum HeadError {
    /// The connection ended before any byte of a response.
    ClosedEarly,
    Io(std::io::Error),
    Bad(String),
}

/// A provider rate-limit header, by its name.
fn is_rate_header(name: &str) -> bool {
    let starts = |p: &str| {
        name.get(..p.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(p))
    };
    starts("x-ratelimit-") || starts("anthropic-ratelimit-")
}

async fn read_head(conn: &mut Conn) -> Result<Head, HeadError> {
    let mut decoder = ResponseDecoder::new(LIMITS, false);
    let mut retry_after_ms = None;
    let mut retry_after = None;
    let mut rate_headers = Vec::new();
    let mut got_any = false;
    loop {
        if conn.start < conn.end {
            got_any = true;
            let d = decoder
                .decode_with(&conn.buf[conn.start..conn.end], &mut |name, value| {
                    if name.eq_ignore_ascii_case("retry-after-ms") {
                        retry_after_ms = Some(String::from_utf8_lossy(value).into_owned());
                    } else if name.eq_ignore_ascii_case("retry-after") {
                        retry_after = Some(String::from_utf8_lossy(value).into_owned());
                    } else if rate_headers.len() < MAX_RATE_HEADERS && is_rate_header(name) {
                        rate_headers.push((
                            name.to_ascii_lowercase(),
                            String::from_utf8_lossy(value).into_owned(),
                        ));
                    }
                })
                .map_err(|e| {
                    HeadError::Bad(match e {
                        http1::Error::Head(e) => e.to_string(),
                        e => e.to_string(),
                    })
                })?;
            conn.start += d.consumed;
            if let Event::Head(head) = d.event {
                if head.status == 101 {
                    return Err(HeadError::Bad("101 Switching Protocols to a POST".into()));
                }
                return Ok(Head {
                    status: head.status,
                    keep_alive: head.keep_alive,
                    content_length: head.content_length,
                    retry_after_ms,
                    retry_after,
                    rate_headers,
                    decoder,
                });
            }
        }
        // the decoder refuses a partial head before it reaches the limit
        let n = std::future::poll_fn(|cx| conn.poll_fill(cx, LIMITS.max_head))
            .await
            .map_err(|e| {
                if !got_any
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    )
                {
                    HeadError::ClosedEarly
                } else {
                    HeadError::Io(e)
                }
            })?;
        if n == 0 {
            return Err(if got_any {
                HeadError::Bad("the connection closed inside the response head".into())
            } else {
                HeadError::ClosedEarly
            });
        }
    }
}

/// A response body read by the caller's task; dropping it before its end closes
/// the connection (which is what frees the provider's side of an abandoned call).
pub(crate) struct PlainBody {
    conn: Option<Conn>,
    decoder: ResponseDecoder,
    keep_alive: bool,
    pool: Arc<Pool>,
    key: Arc<str>,
    failed: bool,
}

impl PlainBody {
    /// All payload the connection holds now (at least one byte, at most
    /// [`MAX_PIECE`]), `None` at the end, or why the body broke off.
    pub(crate) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Vec<u8>, String>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let mut out = Vec::new();
        loop {
            if let Err(e) = self.decode(&mut out) {
                return self.fail(e);
            }
            if self.decoder.is_done() {
                self.release_if_done();
                return Poll::Ready((!out.is_empty()).then_some(Ok(out)));
            }
            if out.len() >= MAX_PIECE {
                return Poll::Ready(Some(Ok(out)));
            }
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // payload-sized reads: the buffer grows past its first size only for a
            // trailer line longer than it (the decoder refuses one at the limit)
            match conn.poll_fill(cx, READ_BUF.max(LIMITS.max_trailers)) {
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Some(Ok(out))),
                Poll::Ready(Ok(0)) => {
                    if self.decoder.finish().is_err() {
                        return self
                            .fail("the provider closed the connection inside the body".into());
                    }
                    // a body until close: complete, and the connection is not reused
                    self.keep_alive = false;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return self.fail(format!("reading the body failed: {e}")),
            }
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<Result<Vec<u8>, String>>> {
        self.failed = true;
        self.conn = None;
        Poll::Ready(Some(Err(why)))
    }

    /// Moves the payload in the read buffer to `out`, framing removed.
    fn decode(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        loop {
            let d = self
                .decoder
                .decode(&conn.buf[conn.start..conn.end])
                .map_err(|e| e.to_string())?;
            conn.start += d.consumed;
            match d.event {
                Event::Body(b) => out.extend_from_slice(b),
                Event::Head(_) | Event::NeedMore | Event::End => return Ok(()),
            }
        }
    }

    /// Back to the pool once the whole body was read with nothing after it.
    fn release_if_done(&mut self) {
        if !self.decoder.is_done() {
            return;
        }
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.start == conn.end {
                self.pool.put(&self.key, conn);
            }
        }
    }
}

impl futures_util::Stream for PlainBody {
    type Item = Result<Bytes, String>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_data(cx)
            .map(|o| o.map(|r| r.map(Bytes::from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A loopback server that answers each connection's requests with `replies` in
    /// order (one per request read), each reply written in the given pieces; returns
    /// its port and a handle giving every request head it read.
    async fn server(
        conns: Vec<Vec<Vec<&'static [u8]>>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        server_on("127.0.0.1:0", conns).await
    }

    async fn server_on(
        addr: &str,
        conns: Vec<Vec<Vec<&'static [u8]>>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind(addr).await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let mut seen = Vec::new();
            for replies in conns {
                let (mut s, _) = l.accept().await.unwrap();
                for pieces in replies {
                    let mut req = Vec::new();
                    let mut b = [0u8; 4096];
                    // read until the head and its content-length body are in
                    loop {
                        let n = s.read(&mut b).await.unwrap();
                        if n == 0 {
                            return seen;
                        }
                        req.extend_from_slice(&b[..n]);
                        let text = String::from_utf8_lossy(&req).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len: usize = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map(|v| v.trim().parse().unwrap())
                                .unwrap_or(0);
                            if req.len() >= end + 4 + len {
                                seen.push(text);
                                break;
                            }
                        }
                    }
                    for p in pieces {
                        s.write_all(p).await.unwrap();
                        s.flush().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            seen
        });
        (port, h)
    }

    fn origin(port: u16) -> Origin {
        Origin::new(&url::Url::parse(&format!("http://127.0.0.1:{port}/v1/chat?x=1")).unwrap())
            .unwrap()
    }

    async fn collect(mut body: PlainBody) -> Result<Vec<Vec<u8>>, String> {
        let mut pieces = Vec::new();
        while let Some(p) = std::future::poll_fn(|cx| body.poll_data(cx)).await {
            pieces.push(p?);
        }
        Ok(pieces)
    }

    #[tokio::test]
    async fn length_chunked_and_close_bodies_and_reuse() {
        let (port, h) = server(vec![
            vec![
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", b"lo"],
                vec![
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n",
                    b"A\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n",
                ],
                vec![b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"],
                vec![
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil",
                    b" the end",
                ],
            ],
            vec![vec![
                b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n",
            ]],
        ])
        .await;
        let c = PlainClient::new(Duration::from_secs(2));
        let o = origin(port);
        let hdr: &[(&[u8], &[u8])] = &[(b"authorization", b"Bearer k")];
        let r = c.post(&o, hdr, b"{\"a\":1}").await.unwrap();
        assert_eq!((r.status, r.content_length), (200, Some(5)));
        assert_eq!(collect(r.body).await.unwrap().concat(), b"hello");
        assert_eq!(c.idle_count(&o), 1);
        let r = c.post(&o, hdr, b"{}").await.unwrap();
        let pieces = collect(r.body).await.unwrap();
        assert_eq!(pieces.concat(), b"abc0123456789");
        assert!(pieces.len() >= 2, "two reads, two pieces: {pieces:?}");
        let r = c.post(&o, hdr, b"{}").await.unwrap();
        assert_eq!(r.status, 204);
        assert!(collect(r.body).await.unwrap().is_empty());
        let r = c.post(&o, hdr, b"{}").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"until the end");
        assert_eq!(c.idle_count(&o), 0, "a close-delimited body is not reused");
        let r = c.post(&o, hdr, b"{}").await.unwrap();
        assert_eq!((r.status, r.retry_after.as_deref()), (429, Some("7")));
        let seen = h.await.unwrap();
        assert_eq!(seen.len(), 5);
        assert!(seen[0].starts_with("POST /v1/chat?x=1 HTTP/1.1\r\nhost: 127.0.0.1:"));
        assert!(seen[0].contains("authorization: Bearer k\r\ncontent-length: 7\r\n\r\n{\"a\":1}"));
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_used() {
        // the first connection answers once and closes while idle: the next request
        // goes out on a second connection, and the first is never written to
        let (port, h) = server(vec![
            vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]],
            vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nyes"]],
        ])
        .await;
        let c = PlainClient::new(Duration::from_secs(2));
        let o = origin(port);
        let r = c.post(&o, &[], b"1").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = c.post(&o, &[], b"2").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"yes");
        assert_eq!(h.await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_reused_connection_closed_before_answering_is_retried_once_on_a_new_one() {
        // connection 1 answers request 1, then reads request 2 and closes without a
        // byte: request 2 goes out again on connection 2
        let (port, h) = server(vec![
            vec![
                vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
                vec![],
            ],
            vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nyes"]],
        ])
        .await;
        let c = PlainClient::new(Duration::from_secs(2));
        let o = origin(port);
        let r = c.post(&o, &[], b"1").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"ok");
        let r = c.post(&o, &[], b"22").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"yes");
        let seen = h.await.unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[1].ends_with("\r\n\r\n22") && seen[2].ends_with("\r\n\r\n22"));
        // a fresh connection that closes before answering is an error, not retried
        let (port, h) = server(vec![vec![vec![]], vec![vec![]]]).await;
        let o = origin(port);
        match c.post(&o, &[], b"3").await {
            Err(SendError::Failed(m)) => assert!(m.contains("before answering"), "{m}"),
            Err(e) => panic!("{e:?}"),
            Ok(r) => panic!("status {}", r.status),
        }
        drop(c);
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            // the server's second accept never comes: abort it after the first
            tokio::time::sleep(Duration::from_millis(100)).await;
            h.abort();
            h.await
        })
        .await
        .unwrap();
        assert!(
            seen.is_err(),
            "the server was still waiting for a second connection"
        );
    }

    #[tokio::test]
    async fn lies_and_breaks_are_errors_not_panics() {
        let (port, _h) = server(vec![
            vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]],
            vec![vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            ]],
            vec![vec![b"NOT HTTP AT ALL\r\n\r\n"]],
            vec![vec![b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"]],
            vec![vec![]],
        ])
        .await;
        let c = PlainClient::new(Duration::from_secs(2));
        let o = origin(port);
        let r = c.post(&o, &[], b"").await.unwrap();
        let e = collect(r.body).await.unwrap_err();
        assert!(e.contains("closed the connection inside the body"), "{e}");
        let r = c.post(&o, &[], b"").await.unwrap();
        let e = collect(r.body).await.unwrap_err();
        assert!(e.contains("malformed chunk size"), "{e}");
        for want in [
            "malformed",
            "content-length is not a number",
            "before answering",
        ] {
            let e = match c.post(&o, &[], b"").await {
                Err(SendError::Failed(m)) => m,
                Err(e) => panic!("{e:?}"),
                Ok(r) => panic!("status {}", r.status),
            };
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        assert_eq!(c.idle_count(&o), 0);
    }

    #[tokio::test]
    async fn a_head_over_the_limit_and_long_trailers_are_refused() {
        let leak = |s: String| -> &'static [u8] { Box::leak(s.into_bytes().into_boxed_slice()) };
        let big = leak(format!(
            "HTTP/1.1 200 OK\r\nx-pad: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(LIMITS.max_head)
        ));
        let trailers = leak(format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: {}\r\n\r\n",
            "b".repeat(LIMITS.max_trailers)
        ));
        // one server each: a refused reply may leave its server unable to write
        let (port, _h) = server(vec![vec![vec![big]]]).await;
        let c = PlainClient::new(Duration::from_secs(2));
        match c.post(&origin(port), &[], b"").await {
            Err(SendError::Failed(m)) => {
                assert!(m.contains("head larger than 65536 bytes"), "{m}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(r) => panic!("status {}", r.status),
        }
        let (port, _h) = server(vec![vec![vec![trailers]]]).await;
        let o = origin(port);
        let r = c.post(&o, &[], b"").await.unwrap();
        let e = collect(r.body).await.unwrap_err();
        assert!(e.contains("trailers larger than 65536 bytes"), "{e}");
        assert_eq!(c.idle_count(&o), 0);
    }

    #[tokio::test]
    async fn refused_connection_is_a_clear_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = PlainClient::new(Duration::from_secs(2));
        match c.post(&origin(port), &[], b"").await {
            Err(SendError::Failed(m)) => assert!(m.starts_with("connection failed"), "{m}"),
            other => panic!("{:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn ipv6_literal_and_host_name_origins_connect() {
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let c = PlainClient::new(Duration::from_secs(2));
        let (port, h) = server_on("[::1]:0", vec![vec![vec![OK]]]).await;
        let o = Origin::new(&url::Url::parse(&format!("http://[::1]:{port}/x")).unwrap()).unwrap();
        let r = c.post(&o, &[], b"").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"ok");
        assert!(h.await.unwrap()[0].contains(&format!("host: [::1]:{port}\r\n")));
        // a name is resolved (every address tried): localhost reaches a 127.0.0.1 server
        let (port, h) = server(vec![vec![vec![OK]]]).await;
        let o =
            Origin::new(&url::Url::parse(&format!("http://localhost:{port}/x")).unwrap()).unwrap();
        let r = c.post(&o, &[], b"").await.unwrap();
        assert_eq!(collect(r.body).await.unwrap().concat(), b"ok");
        assert!(h.await.unwrap()[0].contains(&format!("host: localhost:{port}\r\n")));
    }

    #[test]
    fn origins() {
        let o = Origin::new(&url::Url::parse("http://[::1]:8080/api/chat").unwrap()).unwrap();
        assert_eq!(&*o.key, "[::1]:8080");
        assert_eq!(
            o.head_start,
            b"POST /api/chat HTTP/1.1\r\nhost: [::1]:8080\r\n"
        );
        let o = Origin::new(&url::Url::parse("http://ollama.internal/api/chat").unwrap()).unwrap();
        assert_eq!(&*o.key, "ollama.internal:80");
        assert!(Origin::new(&url::Url::parse("https://x/").unwrap()).is_err());
    }
}
