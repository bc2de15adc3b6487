//! The HTTP client: one keep-alive connection per VU driven through hyper's
//! `conn::http1::SendRequest` (or `http2::SendRequest`: h2 by TLS ALPN, or h2c with
//! prior knowledge), reconnecting when the server closes it. A counting wrapper on the
//! socket yields k6's phases (sending / waiting / receiving) and the bytes moved.

use crate::h1::{H1Conn, H1Error};
use crate::metrics::{ErrorKind, Proto, Timings};
pub use crate::net::{Origin, Stream};
use crate::plan::HttpVersion;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Settings shared by every VU of a run.
#[derive(Debug)]
pub struct ClientShared {
    pub version: HttpVersion,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    tls_http: Arc<rustls::ClientConfig>,
    tls_h1_only: Arc<rustls::ClientConfig>,
}

/// How the client decides whether to trust a server certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsTrust {
    /// Extra CA certificates (PEM file), beside the webpki roots.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Accept any certificate (k6's `insecureSkipTLSVerify`).
    pub insecure: bool,
}

fn load_roots(trust: &TlsTrust) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = &trust.ca_cert {
        let shown = p.display();
        let bytes = powertune_core::baseline::read_limited(p).map_err(|e| {
            format!("cannot read CA certificate {shown}: {e} (expected a PEM file, e.g. ca.pem)")
        })?;
        let mut n = 0;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(bytes.as_bytes()) {
            let c = c.map_err(|e| {
                format!("CA certificate {shown} is not valid PEM: {e} (expected -----BEGIN CERTIFICATE-----)")
            })?;
            roots
                .add(c)
                .map_err(|e| format!("CA certificate {shown} was refused: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "CA certificate {shown} holds no certificate (expected -----BEGIN CERTIFICATE-----)"
            ));
        }
    }
    Ok(roots)
}

/// Accepts any server certificate (signatures are still checked for form).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config(
    alpn: Vec<Vec<u8>>,
    roots: &rustls::RootCertStore,
    insecure: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?;
    let mut c = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth()
    };
    c.alpn_protocols = alpn;
    Ok(Arc::new(c))
}

impl ClientShared {
    pub fn new(
        version: HttpVersion,
        connect_timeout: Duration,
        request_timeout: Duration,
        trust: &TlsTrust,
    ) -> Result<ClientShared, String> {
        let alpn = match version {
            HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
            HttpVersion::Http2 => vec![b"h2".to_vec()],
            HttpVersion::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let roots = load_roots(trust)?;
        Ok(ClientShared {
            version,
            connect_timeout,
            request_timeout,
            tls_http: tls_config(alpn, &roots, trust.insecure)?,
            tls_h1_only: tls_config(vec![b"http/1.1".to_vec()], &roots, trust.insecure)?,
        })
    }
}

/// Bytes and the times of the last write and first read on one connection.
#[derive(Debug)]
struct IoStats {
    base: Instant,
    written: AtomicU64,
    read: AtomicU64,
    last_write_ns: AtomicU64,
    first_read_ns: AtomicU64,
}

impl IoStats {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }
    fn at(&self, ns: u64) -> Option<Instant> {
        (ns > 0).then(|| self.base + Duration::from_nanos(ns - 1))
    }
}

struct CountingIo {
    inner: Stream,
    stats: Arc<IoStats>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.stats.read.fetch_add(n as u64, Ordering::Relaxed);
            let now = this.stats.now_ns();
            let _ = this.stats.first_read_ns.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        r
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.stats.written.fetch_add(*n as u64, Ordering::Relaxed);
            this.stats
                .last_write_ns
                .store(this.stats.now_ns(), Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Opens TCP (and TLS when `origin.https`), returning the stream, the connect and
/// TLS durations and whether ALPN chose h2.
pub async fn connect(
    origin: &Origin,
    shared: &ClientShared,
    http_alpn: bool,
) -> Result<(Stream, Duration, Duration, bool), (ErrorKind, String)> {
    let t0 = Instant::now();
    let addr = format!("{}:{}", origin.host, origin.port);
    let tcp = match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err((ErrorKind::Connect, format!("cannot connect to {addr}: {e}"))),
        Err(_) => {
            return Err((
                ErrorKind::Timeout,
                format!(
                    "connecting to {addr} took over {}",
                    powertune_core::units::duration(shared.connect_timeout)
                ),
            ))
        }
    };
    let _ = tcp.set_nodelay(true);
    let connecting = t0.elapsed();
    if !origin.https {
        return Ok((Stream::Tcp(tcp), connecting, Duration::ZERO, false));
    }
    let t1 = Instant::now();
    let cfg = if http_alpn {
        shared.tls_http.clone()
    } else {
        shared.tls_h1_only.clone()
    };
    let name = rustls::pki_types::ServerName::try_from(origin.host.clone()).map_err(|e| {
        (
            ErrorKind::Tls,
            format!("bad TLS server name {}: {e}", origin.host),
        )
    })?;
    let tls = tokio::time::timeout(
        shared.connect_timeout,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| {
        (
            ErrorKind::Timeout,
            format!("TLS handshake with {addr} timed out"),
        )
    })?
    .map_err(|e| (ErrorKind::Tls, format!("TLS handshake with {addr}: {e}")))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    Ok((Stream::Tls(Box::new(tls)), connecting, t1.elapsed(), h2))
}

enum Conn {
    H1 {
        origin: Origin,
        conn: Box<H1Conn>,
    },
    H2 {
        origin: Origin,
        sender: http2::SendRequest<Full<Bytes>>,
        stats: Arc<IoStats>,
    },
}

/// One HTTP request to send.
pub struct Request<'a, 'p> {
    pub method: hyper::Method,
    pub origin: &'a Origin,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    pub headers: &'a [(hyper::header::HeaderName, String)],
    pub body: Bytes,
    pub content_type: Option<&'static str>,
    /// Keep the body (checks or extraction need it); otherwise it is drained.
    pub keep_body: bool,
    /// An LLM step's probe: sees the answer as it arrives ([`crate::llm`]).
    pub llm: Option<&'a mut crate::llm::Probe<'p>>,
}

/// What came back.
#[derive(Debug)]
pub struct Response {
    pub status: Option<u16>,
    pub body: Bytes,
    pub error: Option<(ErrorKind, String)>,
    pub timings: Timings,
    pub sent: u64,
    pub received: u64,
    /// The protocol of the connection that carried it (None: no connection).
    pub proto: Option<Proto>,
}

fn fail(kind: ErrorKind, msg: String, timings: Timings) -> Response {
    Response {
        status: None,
        body: Bytes::new(),
        error: Some((kind, msg)),
        timings,
        sent: 0,
        received: 0,
        proto: None,
    }
}

/// The most response body bytes kept for a step's checks and extractions (16 MiB); a
/// longer body fails the request (a `protocol` error) instead of growing memory. Bodies
/// no check needs are drained, never kept, whatever their size.
pub const MAX_KEPT_BODY: usize = 16 * 1024 * 1024;

/// The error of a kept body past [`MAX_KEPT_BODY`].
pub(crate) fn body_too_long() -> String {
    format!(
        "the response body is over {}, the most kept for checks and extraction",
        powertune_core::units::bytes(MAX_KEPT_BODY as u64)
    )
}

/// The error of a streamed answer that sent nothing for its stall timeout.
fn stalled(limit: Option<Duration>) -> String {
    format!(
        "the stream sent nothing for {}",
        powertune_core::units::duration(limit.unwrap_or_default())
    )
}

/// The `Authorization: Basic` value for a URL's user info (`http://user:pass@host/`),
/// as curl and k6 send it: user name and password percent-decoded, joined by `:`.
/// `None` when the URL carries no user info.
pub fn basic_auth(u: &url::Url) -> Option<String> {
    use base64::Engine as _;
    if u.username().is_empty() && u.password().is_none() {
        return None;
    }
    let decode = |s: &str| -> Vec<u8> { percent_encoding::percent_decode_str(s).collect() };
    let mut creds = decode(u.username());
    creds.push(b':');
    creds.extend(decode(u.password().unwrap_or("")));
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    ))
}

/// A VU's HTTP client: at most one open connection.
pub struct VuClient {
    shared: Arc<ClientShared>,
    conn: Option<Conn>,
}

impl VuClient {
    pub fn new(shared: Arc<ClientShared>) -> VuClient {
        VuClient { shared, conn: None }
    }

    async fn open(&mut self, origin: &Origin) -> Result<(Duration, Duration), (ErrorKind, String)> {
        self.conn = None;
        let (stream, connecting, tls, alpn_h2) = connect(origin, &self.shared, true).await?;
        let use_h2 = alpn_h2 || (!origin.https && self.shared.version == HttpVersion::Http2);
        if !use_h2 {
            self.conn = Some(Conn::H1 {
                origin: origin.clone(),
                conn: Box::new(H1Conn::new(stream)),
            });
            return Ok((connecting, tls));
        }
        let stats = Arc::new(IoStats {
            base: Instant::now(),
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            last_write_ns: AtomicU64::new(0),
            first_read_ns: AtomicU64::new(0),
        });
        let io = TokioIo::new(CountingIo {
            inner: stream,
            stats: stats.clone(),
        });
        let (s, c) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| (ErrorKind::Protocol, format!("HTTP/2 handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = c.await;
        });
        self.conn = Some(Conn::H2 {
            origin: origin.clone(),
            sender: s,
            stats,
        });
        Ok((connecting, tls))
    }

    /// Drops the connection (the VU is done, or does not reuse connections).
    pub fn close(&mut self) {
        self.conn = None;
    }

    /// Releases buffers while the VU is idle (thinking); the connection stays open.
    pub fn idle(&mut self) {
        if let Some(Conn::H1 { conn, .. }) = &mut self.conn {
            conn.trim();
        }
    }

    /// Sends one request over the VU's connection, opening it when needed.
    pub async fn send(&mut self, mut req: Request<'_, '_>) -> Response {
        let t_start = Instant::now();
        let mut timings = Timings::default();
        let mut reused = match &self.conn {
            Some(Conn::H1 { origin, .. }) => origin == req.origin,
            Some(Conn::H2 { origin, sender, .. }) => origin == req.origin && !sender.is_closed(),
            None => false,
        };
        if !reused {
            match Box::pin(self.open(req.origin)).await {
                Ok((c, t)) => {
                    timings.connecting = c;
                    timings.tls = t;
                }
                Err((k, m)) => {
                    timings.blocked = t_start.elapsed();
                    return fail(k, m, timings);
                }
            }
        }
        if matches!(self.conn, Some(Conn::H2 { .. })) {
            // Boxed, like `open`: the common HTTP/1.1 path then stays a small future.
            return Box::pin(self.send_h2(req, t_start, timings)).await;
        }
        // HTTP/1.1: a request on a reused connection that the server closed while idle
        // is retried once on a fresh connection.
        let head = req.method == hyper::Method::HEAD;
        for _attempt in 0..2 {
            let Some(Conn::H1 { conn, .. }) = self.conn.as_mut() else {
                timings.blocked = t_start.elapsed();
                return fail(ErrorKind::Connect, "no connection".into(), timings);
            };
            conn.encode(
                &req.method,
                req.path,
                req.origin,
                req.headers,
                req.content_type,
                &req.body,
            );
            let t_send = if reused && timings.connecting.is_zero() {
                t_start
            } else {
                Instant::now()
            };
            timings.blocked = t_send.saturating_duration_since(t_start);
            let result = tokio::time::timeout(
                self.shared.request_timeout,
                conn.exchange(head, req.keep_body, req.llm.as_deref_mut()),
            )
            .await;
            let t_end = Instant::now();
            match result {
                Ok(Ok(x)) => {
                    timings.sending = x.last_write.saturating_duration_since(t_send);
                    timings.waiting = x.first_read.saturating_duration_since(x.last_write);
                    timings.receiving = t_end.saturating_duration_since(x.first_read);
                    timings.duration = t_end.saturating_duration_since(t_send);
                    if x.close {
                        self.conn = None;
                    }
                    return Response {
                        status: Some(x.status),
                        body: Bytes::from(x.body),
                        error: None,
                        timings,
                        sent: x.sent,
                        received: x.received,
                        proto: Some(Proto::Http1),
                    };
                }
                Ok(Err(H1Error::Stale(_))) if reused => {
                    reused = false;
                    match Box::pin(self.open(req.origin)).await {
                        Ok((c, t)) => {
                            timings.connecting += c;
                            timings.tls += t;
                        }
                        Err((k, m)) => {
                            timings.blocked = t_start.elapsed();
                            return fail(k, m, timings);
                        }
                    }
                }
                Ok(Err(H1Error::Stale(m) | H1Error::Protocol(m))) => {
                    self.conn = None;
                    if let Some(p) = req.llm.as_deref_mut() {
                        p.broken(false);
                    }
                    timings.duration = t_end.saturating_duration_since(t_send);
                    let mut r = fail(ErrorKind::Protocol, m, timings);
                    r.proto = Some(Proto::Http1);
                    return r;
                }
                Ok(Err(H1Error::Stall(m))) => {
                    self.conn = None;
                    if let Some(p) = req.llm.as_deref_mut() {
                        p.broken(true);
                    }
                    timings.duration = t_end.saturating_duration_since(t_send);
                    let mut r = fail(ErrorKind::Timeout, m, timings);
                    r.proto = Some(Proto::Http1);
                    return r;
                }
                Err(_) => {
                    self.conn = None;
                    if let Some(p) = req.llm.as_deref_mut() {
                        p.broken(true);
                    }
                    timings.duration = t_end.saturating_duration_since(t_send);
                    let mut r = fail(
                        ErrorKind::Timeout,
                        format!(
                            "no response within {}",
                            powertune_core::units::duration(self.shared.request_timeout)
                        ),
                        timings,
                    );
                    r.proto = Some(Proto::Http1);
                    return r;
                }
            }
        }
        timings.blocked = t_start.elapsed();
        fail(
            ErrorKind::Connect,
            "the connection closed before the request".into(),
            timings,
        )
    }

    async fn send_h2(
        &mut self,
        req: Request<'_, '_>,
        t_start: Instant,
        mut timings: Timings,
    ) -> Response {
        // Wait until the connection takes a request; reopen once if it closed.
        for attempt in 0..2 {
            let ready = match self.conn.as_mut() {
                Some(Conn::H2 { sender, .. }) => sender.ready().await.is_ok(),
                _ => false,
            };
            if ready {
                break;
            }
            if attempt == 1 {
                timings.blocked = t_start.elapsed();
                return fail(
                    ErrorKind::Connect,
                    "the connection closed before the request".into(),
                    timings,
                );
            }
            match Box::pin(self.open(req.origin)).await {
                Ok((c, t)) => {
                    timings.connecting += c;
                    timings.tls += t;
                }
                Err((k, m)) => {
                    timings.blocked = t_start.elapsed();
                    return fail(k, m, timings);
                }
            }
        }
        timings.blocked = t_start.elapsed();
        let Some(Conn::H2 { sender, stats, .. }) = self.conn.as_mut() else {
            // The reopen above may have negotiated HTTP/1.1; the next request uses it.
            return fail(ErrorKind::Connect, "no HTTP/2 connection".into(), timings);
        };
        let scheme = if req.origin.https { "https" } else { "http" };
        let mut b = hyper::Request::builder()
            .method(req.method.clone())
            .uri(format!("{scheme}://{}{}", req.origin.authority(), req.path));
        for (k, v) in req.headers {
            b = b.header(k, v.as_str());
        }
        if let Some(ct) = req.content_type {
            if !req
                .headers
                .iter()
                .any(|(k, _)| *k == hyper::header::CONTENT_TYPE)
            {
                b = b.header(hyper::header::CONTENT_TYPE, ct);
            }
        }
        let request = match b.body(Full::new(req.body)) {
            Ok(r) => r,
            Err(e) => return fail(ErrorKind::Protocol, format!("bad request: {e}"), timings),
        };
        let stats = stats.clone();
        let w0 = stats.written.load(Ordering::Relaxed);
        let r0 = stats.read.load(Ordering::Relaxed);
        stats.first_read_ns.store(0, Ordering::Relaxed);
        let t_send = Instant::now();
        let keep = req.keep_body;
        let mut probe = req.llm;
        let stall = probe.as_ref().map(|p| p.stall_timeout());
        if let Some(p) = probe.as_deref_mut() {
            p.start(t_send);
        }
        let exchange = async {
            let within = |d: Option<Duration>| async move {
                match d {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let resp = tokio::select! {
                r = sender.send_request(request) => r.map_err(|e| (false, e.to_string()))?,
                _ = within(stall) => return Err((true, stalled(stall))),
            };
            let status = resp.status().as_u16();
            if let Some(p) = probe.as_deref_mut() {
                p.head(status);
            }
            let mut body = resp.into_body();
            let mut kept = Vec::new();
            loop {
                let frame = tokio::select! {
                    f = body.frame() => f,
                    _ = within(stall) => return Err((true, stalled(stall))),
                };
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| (false, e.to_string()))?;
                if let (Some(p), Some(d)) = (probe.as_deref_mut(), frame.data_ref()) {
                    p.body(d, Instant::now());
                }
                if keep {
                    if let Some(d) = frame.data_ref() {
                        if kept.len() + d.len() > MAX_KEPT_BODY {
                            return Err((false, body_too_long()));
                        }
                        kept.extend_from_slice(d);
                    }
                }
            }
            if let Some(p) = probe.as_deref_mut() {
                p.end(Instant::now());
            }
            Ok::<_, (bool, String)>((status, Bytes::from(kept)))
        };
        let result = tokio::time::timeout(self.shared.request_timeout, exchange).await;
        let t_end = Instant::now();
        let sent = stats.written.load(Ordering::Relaxed) - w0;
        let received = stats.read.load(Ordering::Relaxed) - r0;
        let last_write = stats
            .at(stats.last_write_ns.load(Ordering::Relaxed))
            .filter(|t| *t >= t_send)
            .unwrap_or(t_send);
        let first_read = stats
            .at(stats.first_read_ns.load(Ordering::Relaxed))
            .unwrap_or(t_end);
        timings.sending = last_write.saturating_duration_since(t_send);
        timings.waiting = first_read.saturating_duration_since(last_write);
        timings.receiving = t_end.saturating_duration_since(first_read);
        timings.duration = t_end.saturating_duration_since(t_send);
        let mut r = match result {
            Ok(Ok((status, body))) => Response {
                status: Some(status),
                body,
                error: None,
                timings,
                sent,
                received,
                proto: None,
            },
            Ok(Err((stalled, e))) => {
                self.conn = None;
                if let Some(p) = probe.as_deref_mut() {
                    p.broken(stalled);
                }
                let kind = if stalled {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Protocol
                };
                let mut r = fail(kind, e, timings);
                r.sent = sent;
                r.received = received;
                r
            }
            Err(_) => {
                self.conn = None;
                if let Some(p) = probe {
                    p.broken(true);
                }
                let mut r = fail(
                    ErrorKind::Timeout,
                    format!(
                        "no response within {}",
                        powertune_core::units::duration(self.shared.request_timeout)
                    ),
                    timings,
                );
                r.sent = sent;
                r.received = received;
                r
            }
        };
        r.proto = Some(Proto::Http2);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one request per connection, then closes it without saying so (no
    /// `Connection: close`), the way a server drops idle keep-alive connections.
    async fn one_shot_server() -> (u16, Arc<AtomicU64>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicU64::new(0));
        let c2 = conns.clone();
        tokio::spawn(async move {
            for _ in 0..10 {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                c2.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 2048];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        });
        (port, conns)
    }

    #[tokio::test]
    async fn a_keep_alive_connection_closed_while_idle_is_retried_once() {
        let (port, conns) = one_shot_server().await;
        let shared = Arc::new(
            ClientShared::new(
                HttpVersion::Auto,
                Duration::from_secs(2),
                Duration::from_secs(2),
                &TlsTrust::default(),
            )
            .unwrap(),
        );
        let origin = Origin {
            https: false,
            host: "127.0.0.1".into(),
            port,
        };
        let mut c = VuClient::new(shared);
        for i in 0..3 {
            let r = c
                .send(Request {
                    method: hyper::Method::GET,
                    origin: &origin,
                    path: "/",
                    headers: &[],
                    body: Bytes::new(),
                    content_type: None,
                    keep_body: true,
                    llm: None,
                })
                .await;
            assert_eq!(r.status, Some(200), "request {i}: {:?}", r.error);
            assert_eq!(&r.body[..], b"ok");
            assert_eq!(r.proto, Some(Proto::Http1));
            // Give the server time to close the connection behind the client's back.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::Relaxed), 3);
    }
}
