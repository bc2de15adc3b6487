//! Relaying a committed stream: decode what the provider sends, encode it for the
//! client, and end it in the client's error shape when the provider breaks off.

use super::attempt::{ByteStream, CallGuard, Failure};
use crate::metrics::Outcome;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderValue;
use axum::response::Response;
use powertune_dialect::{Chunk, DecodeError, StreamDecoder, StreamEncoder};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

/// What a committed stream needs to keep relaying.
pub(crate) struct Relay {
    pub(super) guard: CallGuard,
    pub(super) upstream: ByteStream,
    pub(super) dec: StreamDecoder,
    pub(super) enc: StreamEncoder,
    pub(super) pending: Vec<Chunk>,
    /// A provider error decoded after the pending chunks: sent after them.
    pub(super) broken: Option<Failure>,
    /// The stream's opening events, sent with the first piece.
    pub(super) lead: String,
    pub(super) idle: Duration,
    pub(super) deadline: Instant,
    /// One timer for the whole stream, re-armed only when it fires early: a chunk
    /// costs a clock read, not a timer registration (see [`Relay::read`]).
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
    pub(super) finished: bool,
    pub(super) provider_name: String,
}

impl Relay {
    /// The relay of a committed stream: `first` holds the chunks decoded before the
    /// commit and `broken` a provider error read right after them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        guard: CallGuard,
        upstream: ByteStream,
        dec: StreamDecoder,
        mut enc: StreamEncoder,
        first: Vec<Chunk>,
        broken: Option<Failure>,
        idle: Duration,
        deadline: Instant,
        provider_name: String,
    ) -> Relay {
        let mut lead = String::new();
        lead.push_str(&enc.start(dec.input_tokens()));
        Relay {
            guard,
            upstream,
            dec,
            enc,
            pending: first,
            broken,
            lead,
            idle,
            deadline,
            timer: Box::pin(tokio::time::sleep_until(deadline)),
            finished: false,
            provider_name,
        }
    }

    /// The streaming response to the client, in the encoder's content type.
    pub(crate) fn into_response(self) -> Response {
        let ct = self.enc.content_type();
        let rest = futures_util::stream::unfold(self, |mut r| async move {
            r.next_piece()
                .await
                .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), r))
        });
        let mut resp = Response::new(Body::from_stream(rest));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        resp
    }

    /// The next upstream item, or `Err(())` once `limit` has passed without one; the
    /// same as `tokio::time::timeout_at(limit, upstream.next())`, but the stream's
    /// one timer is only moved (later) when it fires before `limit`.
    pub(super) async fn read(
        &mut self,
        limit: Instant,
    ) -> Result<Option<Result<Bytes, String>>, ()> {
        let Relay {
            upstream, timer, ..
        } = self;
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(item) = upstream.as_mut().poll_next(cx) {
                return std::task::Poll::Ready(Ok(item));
            }
            loop {
                if timer.deadline() > limit {
                    // once: the timer starts at the request deadline, and
                    // later limits are never earlier than this first one
                    timer.as_mut().reset(limit);
                }
                match timer.as_mut().poll(cx) {
                    std::task::Poll::Pending => return std::task::Poll::Pending,
                    std::task::Poll::Ready(()) if Instant::now() >= limit => {
                        return std::task::Poll::Ready(Err(()))
                    }
                    std::task::Poll::Ready(()) => timer.as_mut().reset(limit),
                }
            }
        })
        .await
    }

    pub(super) async fn next_piece(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        loop {
            // everything decoded so far goes out as one piece (one write to the client)
            let mut out = std::mem::take(&mut self.lead);
            let mut pending = std::mem::take(&mut self.pending);
            for c in pending.drain(..) {
                match c {
                    Chunk::Done { finish, usage } => {
                        self.guard.usage = usage;
                        let elapsed = self.guard.started.elapsed().as_nanos() as u64;
                        out.push_str(&self.enc.finish(&finish, usage, elapsed));
                        self.guard.finish(Outcome::Ok);
                        self.finished = true;
                        break;
                    }
                    other => self.enc.chunk_into(&mut out, &other),
                }
            }
            self.pending = pending;
            if let Some(f) = self.broken.take().filter(|_| !self.finished) {
                self.fail_into(&mut out, f);
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
            if self.finished {
                return None;
            }
            let now = Instant::now();
            let wait = self.idle.min(self.deadline.saturating_duration_since(now));
            let read = self.read(now + wait).await;
            let failure = match read {
                Ok(Some(Ok(bytes))) => {
                    if let Err(e) = self.dec.feed_into(&bytes, &mut self.pending) {
                        // sent after the chunks decoded before it
                        self.broken = Some(Failure::Decode(e));
                    }
                    continue;
                }
                Ok(Some(Err(message))) => Failure::Decode(DecodeError::Provider {
                    provider: "upstream",
                    message,
                    overloaded: false,
                }),
                Ok(None) => match self.dec.end() {
                    Ok(chunks) => {
                        self.pending.extend(chunks);
                        if self.pending.is_empty() {
                            // decoder said done earlier; nothing more
                            self.finished = true;
                            self.guard.finish(Outcome::Ok);
                            return None;
                        }
                        continue;
                    }
                    Err(e) => Failure::Decode(e),
                },
                Err(_) if wait < self.idle => Failure::Timeout("request timeout"),
                Err(_) => Failure::Timeout("idle between chunks"),
            };
            let mut out = String::new();
            self.fail_into(&mut out, failure);
            return Some(Bytes::from(out));
        }
    }

    /// Ends the stream with `failure` in the client's error shape.
    pub(super) fn fail_into(&mut self, out: &mut String, failure: Failure) {
        let outcome = failure.outcome();
        let err = failure.api_error(&self.provider_name, &self.guard.live.secrets);
        self.guard.finish(outcome);
        self.finished = true;
        out.push_str(&self.enc.error(&err));
    }
}
