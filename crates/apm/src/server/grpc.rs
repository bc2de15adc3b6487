//! The OTLP/gRPC handler: `TraceService/Export`, and its listener with a cap on
//! connections (beyond it new connections wait in the listen backlog).

use super::forward::Payload;
use super::state::{submit, Shared};
use crate::decode::{to_spans, Format};
use axum::body::Bytes;
use axum::http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// HTTP/2 PING interval on idle gRPC connections, and how long a client has to
/// answer before the connection is closed.
pub(super) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A gRPC connection holding one of the listener's permits until it closes. Until
/// its first bytes arrive it has a deadline (the header read timeout): a client that
/// connects and never speaks gives its place back.
pub(super) struct Capped {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    first_bytes: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Some(deadline) = this.first_bytes.as_mut() {
            match &read {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.first_bytes = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the header read timeout",
                    )));
                }
                _ => {}
            }
        }
        read
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Capped {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// The connections of `listener`, at most `cap` open at once: a permit is taken
/// before each accept and given back when the connection closes; a connection that
/// sends nothing for `first_bytes` after accept is closed.
pub(super) fn capped_incoming(
    listener: TcpListener,
    cap: usize,
    first_bytes: Duration,
) -> impl futures_util::Stream<Item = io::Result<Capped>> {
    let permits = Arc::new(Semaphore::new(cap.max(1)));
    futures_util::stream::unfold((listener, permits), move |(listener, permits)| async move {
        let permit = Arc::clone(&permits).acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((io, _)) => {
                    let _ = io.set_nodelay(true);
                    let conn = Capped {
                        io,
                        _permit: permit,
                        first_bytes: Some(Box::pin(tokio::time::sleep(first_bytes))),
                    };
                    return Some((Ok(conn), (listener, permits)));
                }
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait, do not spin.
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

pub(super) struct Grpc {
    pub(super) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        let (spans, bad) = to_spans(&req);
        match submit(&self.shared, spans, bad) {
            Ok(r) => {
                if let Some(f) = &self.shared.forward {
                    f.offer(Payload {
                        body: Bytes::from(req.encode_to_vec()),
                        content_type: HeaderValue::from_static(Format::Protobuf.content_type()),
                        gzip: false,
                    });
                }
                Ok(tonic::Response::new(r))
            }
            Err(()) => Err(tonic::Status::unavailable(
                "over capacity: the analysis queue is full; retry later",
            )),
        }
    }
}
