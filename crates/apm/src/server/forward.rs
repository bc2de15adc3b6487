//! Forwarding of everything received to another OTLP receiver (`--forward`), over
//! OTLP/HTTP (`http/protobuf`, bodies passed on unchanged) or OTLP/gRPC (`grpc`),
//! whichever way the spans came in.
//!
//! Ingestion never waits for the forward target: handlers put a batch on a bounded
//! queue (`try_send`, at most `queue_batches` batches and `queue_bytes` bytes) and go
//! on; a full queue drops the batch for forwarding only (it is still analysed) and
//! counts it in `forward_dropped`. One task drains the queue with at most
//! `IN_FLIGHT` requests outstanding, each with a timeout.

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Requests to the forward target outstanding at once, at most.
pub const IN_FLIGHT: usize = 8;
/// Timeout of one forward request.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("--forward {url}: {why} (example: {example})")]
    Url {
        url: String,
        why: String,
        example: &'static str,
    },
    #[error("--forward-protocol {0}: not a protocol; use http/protobuf or grpc (as in OTEL_EXPORTER_OTLP_PROTOCOL)")]
    Protocol(String),
    #[error("--forward-ca {path}: {why}")]
    Ca { path: String, why: String },
}

/// The wire protocol towards the forward target, named as in the OpenTelemetry
/// SDKs' `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP to `URL/v1/traces`; bodies received over HTTP go on unchanged
    /// (protobuf or JSON, gzip or not), gRPC exports go as protobuf.
    HttpProtobuf,
    /// OTLP/gRPC `TraceService/Export` (HTTP/2; TLS with an `https://` URL).
    Grpc,
}

impl std::str::FromStr for Protocol {
    type Err = ForwardError;
    fn from_str(s: &str) -> Result<Protocol, ForwardError> {
        match s {
            "http/protobuf" | "http" => Ok(Protocol::HttpProtobuf),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(ForwardError::Protocol(other.to_string())),
        }
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// A checked forward target.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: url::Url,
    pub protocol: Protocol,
    /// PEM certificates trusted for an `https://` target instead of the system's
    /// roots (`--forward-ca`), e.g. a private collector's CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl Target {
    /// Checks a `--forward` value for `protocol`. HTTP: an http(s) URL, `/v1/traces`
    /// appended unless already there. gRPC: `http://host:port` or, as in a collector's
    /// `otlp` exporter, plain `host:port`. Credentials in the URL are refused.
    pub fn parse(s: &str, protocol: Protocol) -> Result<Target, ForwardError> {
        let example = match protocol {
            Protocol::HttpProtobuf => "--forward http://collector:4318",
            Protocol::Grpc => "--forward collector:4317 --forward-protocol grpc",
        };
        let bad = |why: &str| ForwardError::Url {
            url: powertune_core::redact::url(s),
            why: why.to_string(),
            example,
        };
        let text = if protocol == Protocol::Grpc && !s.contains("://") {
            format!("http://{s}")
        } else {
            s.to_string()
        };
        let mut u = url::Url::parse(&text).map_err(|e| bad(&e.to_string()))?;
        if u.host_str().is_none_or(str::is_empty) {
            return Err(bad("needs a host"));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad("credentials do not belong in the URL"));
        }
        match protocol {
            Protocol::HttpProtobuf => {
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(bad("must be an http:// or https:// URL"));
                }
                if u.path() == "/" || u.path().is_empty() {
                    u.set_path("/v1/traces");
                } else if !u.path().ends_with("/v1/traces") {
                    let p = format!("{}/v1/traces", u.path().trim_end_matches('/'));
                    u.set_path(&p);
                }
            }
            Protocol::Grpc => {
                if !matches!(u.scheme(), "http" | "https") {
                    return Err(bad(
                        "must be host:port, http://host:port (plaintext) or https://host:port (TLS)",
                    ));
                }
                if u.port().is_none() {
                    return Err(bad("needs a port (the OTLP/gRPC port is 4317)"));
                }
                u.set_path("/");
            }
        }
        Ok(Target {
            url: u,
            protocol,
            ca_pem: None,
        })
    }

    /// Trusts the PEM certificates in `path` (and only them) for an `https://` target.
    /// A missing file, one without a certificate or a plaintext target is refused.
    pub fn with_ca(mut self, path: &std::path::Path) -> Result<Target, ForwardError> {
        let err = |why: String| ForwardError::Ca {
            path: path.display().to_string(),
            why,
        };
        if self.url.scheme() != "https" {
            return Err(err(
                "only for an https:// --forward target (this one is plaintext)".into(),
            ));
        }
        let pem = powertune_core::baseline::read_limited(path).map_err(err)?;
        let n = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| err(format!("not PEM certificates: {e}")))?
            .len();
        if n == 0 {
            return Err(err(
                "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        self.ca_pem = Some(pem.into_bytes());
        Ok(self)
    }

    pub fn shown(&self) -> String {
        format!(
            "{} ({})",
            powertune_core::redact::url(self.url.as_str()),
            self.protocol.name()
        )
    }
}

/// One batch to pass on.
pub struct Payload {
    pub body: Bytes,
    /// For OTLP/HTTP: the content type and encoding to send with it.
    pub content_type: HeaderValue,
    pub gzip: bool,
}

/// Counters, reported in `/api/summary` `ingest`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches the target accepted.
    pub forwarded: AtomicU64,
    /// Batches the target refused or that failed (error, timeout, unreachable).
    pub failed: AtomicU64,
    /// Batches not forwarded because the queue was full.
    pub dropped: AtomicU64,
    /// Bytes queued or in flight now.
    pub queued_bytes: AtomicUsize,
    /// Batches queued or in flight now.
    pub queued: AtomicUsize,
}

/// The handlers' side: a bounded queue into the forwarding task.
pub struct Forwarder {
    pub target: Target,
    tx: mpsc::Sender<Payload>,
    max_bytes: usize,
    pub stats: Arc<Stats>,
}

impl Forwarder {
    /// Whether bodies must be protobuf (gRPC target): HTTP JSON and gzip bodies are
    /// converted before [`Forwarder::offer`].
    pub fn wants_plain_protobuf(&self) -> bool {
        self.target.protocol == Protocol::Grpc
    }

    /// Queues a batch for forwarding without waiting; `false` when it was dropped
    /// (queue full by count or bytes, or the task is gone).
    pub fn offer(&self, p: Payload) -> bool {
        let len = p.body.len();
        let before = self.stats.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_bytes && before > 0 {
            self.stats.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(p) {
            Ok(()) => true,
            Err(_) => {
                self.stats.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// Raw protobuf bytes as the gRPC request message; the answer is read and dropped
/// (its partial success is the target's business).
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct DiscardDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for DiscardDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        bytes::Buf::advance(src, n);
        Ok(Some(()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = DiscardDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> DiscardDecoder {
        DiscardDecoder
    }
}

enum Client {
    Http(reqwest::Client, url::Url),
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
}

impl Client {
    async fn send(&self, p: Payload) -> Result<(), String> {
        match self {
            Client::Http(c, url) => {
                let mut req = c
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, p.content_type)
                    .body(p.body);
                if p.gzip {
                    req = req.header(header::CONTENT_ENCODING, "gzip");
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.without_url().to_string()),
                }
            }
            Client::Grpc(g) => {
                let mut g = g.clone();
                g.ready().await.map_err(|e| e.to_string())?;
                let mut req = tonic::Request::new(p.body);
                req.set_timeout(TIMEOUT);
                g.unary(
                    req,
                    axum::http::uri::PathAndQuery::from_static(GRPC_PATH),
                    RawCodec,
                )
                .await
                .map(|_| ())
                .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))
            }
        }
    }
}

/// Starts the forwarding task (on the current tokio runtime) and returns the
/// handlers' side.
pub fn start(
    target: Target,
    queue_batches: usize,
    queue_bytes: usize,
) -> Result<Forwarder, ForwardError> {
    let bad = |why: String, example: &'static str| ForwardError::Url {
        url: powertune_core::redact::url(target.url.as_str()),
        why,
        example,
    };
    let client = match target.protocol {
        Protocol::HttpProtobuf => {
            let http_example = "--forward http://collector:4318";
            let mut b = reqwest::Client::builder().timeout(TIMEOUT);
            if let Some(pem) = &target.ca_pem {
                b = b.tls_certs_only(
                    reqwest::Certificate::from_pem_bundle(pem)
                        .map_err(|e| bad(e.to_string(), http_example))?,
                );
            }
            Client::Http(
                b.build().map_err(|e| bad(e.to_string(), http_example))?,
                target.url.clone(),
            )
        }
        Protocol::Grpc => {
            let grpc_example = "--forward collector:4317 --forward-protocol grpc";
            let mut ep = tonic::transport::Endpoint::from_shared(target.url.to_string())
                .map_err(|e| bad(e.to_string(), grpc_example))?
                .connect_timeout(TIMEOUT)
                .timeout(TIMEOUT);
            if target.url.scheme() == "https" {
                let tls = tonic::transport::ClientTlsConfig::new()
                    .domain_name(target.url.host_str().unwrap_or_default());
                let tls = match &target.ca_pem {
                    Some(pem) => tls.ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                    None => tls.with_native_roots(),
                };
                ep = ep
                    .tls_config(tls)
                    .map_err(|e| bad(e.to_string(), grpc_example))?;
            }
            Client::Grpc(tonic::client::Grpc::new(ep.connect_lazy()))
        }
    };
    let (tx, mut rx) = mpsc::channel::<Payload>(queue_batches.max(1));
    let stats = Arc::new(Stats::default());
    let st = stats.clone();
    let client = Arc::new(client);
    let shown = target.shown();
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        // A slot first, then a batch: while every slot is busy, batches wait in
        // the bounded channel (so at most queue + IN_FLIGHT are held).
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let Some(p) = rx.recv().await else {
                break;
            };
            let (client, st, shown) = (client.clone(), st.clone(), shown.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let len = p.body.len();
                match client.send(p).await {
                    Ok(()) => {
                        st.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => {
                        let n = st.failed.fetch_add(1, Ordering::Relaxed);
                        // One line per 1000 failures: a target that is down must not
                        // flood the log.
                        if n % 1000 == 0 {
                            tracing::warn!("forward to {shown}: {why} ({} failed so far)", n + 1);
                        }
                    }
                }
                st.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                st.queued.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok(Forwarder {
        target,
        tx,
        max_bytes: queue_bytes.max(1),
        stats,
    })
}
