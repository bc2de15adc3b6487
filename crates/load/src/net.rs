//! What the HTTP client, the HTTP/1.1 connection and the WebSocket sessions share:
//! where requests go ([`Origin`]), the TCP-or-TLS [`Stream`] and the reachability
//! check made before a run starts. URLs are shown through `powertune_core::redact`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Where requests go: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn from_url(u: &url::Url) -> Result<Origin, String> {
        let https = match u.scheme() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            other => {
                return Err(format!(
                "unsupported scheme `{other}` (expected http or https, e.g. http://127.0.0.1:8080)"
            ))
            }
        };
        let host = u
            .host_str()
            .ok_or_else(|| "URL has no host (expected e.g. http://127.0.0.1:8080)".to_string())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = u
            .port_or_known_default()
            .unwrap_or(if https { 443 } else { 80 });
        Ok(Origin { https, host, port })
    }

    /// Appends `host[:port]` as written in a Host header (IPv6 in brackets).
    pub fn write_authority(&self, w: &mut Vec<u8>) {
        let v6 = self.host.contains(':');
        if v6 {
            w.push(b'[');
        }
        w.extend_from_slice(self.host.as_bytes());
        if v6 {
            w.push(b']');
        }
        if self.port != if self.https { 443 } else { 80 } {
            use std::io::Write as _;
            let _ = write!(w, ":{}", self.port);
        }
    }

    /// `host:port` as written in a Host header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A TCP or TLS stream.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Checks that the origin accepts TCP connections (before any VU starts).
pub async fn reachable(origin: &Origin, timeout: Duration) -> Result<(), String> {
    let addr = format!("{}:{}", origin.host, origin.port);
    match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => Err(format!(
            "connecting to {addr} took over {}",
            powertune_core::units::duration(timeout)
        )),
    }
}
