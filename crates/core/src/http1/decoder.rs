//! The response decoder: head, then body, then the end, as events over the caller's
//! bytes.

use super::chunked::{Chunked, Step};
use super::head::{self, Parsed};
use super::{Error, Framing, Head, Limits};

/// What the decoder found in the bytes it was handed.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Nothing more can be decoded until more bytes arrive.
    NeedMore,
    /// The final head (interim `1xx` heads are skipped).
    Head(Head),
    /// Payload: a slice of the input, framing removed.
    Body(&'a [u8]),
    /// The response is complete; the bytes after it belong to the next one.
    End,
}

/// One call's result: how many input bytes were used (framing and payload), and the
/// event. The caller drops `consumed` bytes from the front of its unread bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub consumed: usize,
    pub event: Event<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
    Failed(Error),
}

/// Decodes one response; make a new one (it is a few words) for each response.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    limits: Limits,
    head_request: bool,
    state: State,
    body_len: u64,
}

impl ResponseDecoder {
    /// A decoder for the response to a request; `head_request` when it was a HEAD
    /// (whose response has no body whatever its head says).
    pub fn new(limits: Limits, head_request: bool) -> ResponseDecoder {
        ResponseDecoder {
            limits,
            head_request,
            state: State::Head,
            body_len: 0,
        }
    }

    /// The response was decoded to its end.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `buf`, the caller's unread bytes.
    pub fn decode<'a>(&mut self, buf: &'a [u8]) -> Result<Decoded<'a>, Error> {
        self.decode_with(buf, &mut |_, _| {})
    }

    /// As [`decode`](Self::decode); `on_header` sees each field of the final head
    /// (name, raw value) while it is parsed.
    pub fn decode_with<'a, F: FnMut(&str, &[u8])>(
        &mut self,
        buf: &'a [u8],
        on_header: &mut F,
    ) -> Result<Decoded<'a>, Error> {
        let r = self.step(buf, on_header);
        if let Err(e) = r {
            self.state = State::Failed(e);
        }
        r
    }

    /// The connection ended (a read returned nothing): fine only for a body that runs
    /// to the end of the connection, which is then complete.
    pub fn finish(&mut self) -> Result<(), Error> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            State::Failed(e) => Err(e),
            State::Head => Err(self.fail(Error::ClosedInHead)),
            State::Length(_) | State::Chunked(_) => Err(self.fail(Error::ClosedInBody)),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.state = State::Failed(e);
        e
    }

    fn step<'a, F: FnMut(&str, &[u8])>(
        &mut self,
        buf: &'a [u8],
        on_header: &mut F,
    ) -> Result<Decoded<'a>, Error> {
        let done = |consumed, event| Ok(Decoded { consumed, event });
        match self.state {
            State::Failed(e) => Err(e),
            State::Done => done(0, Event::End),
            State::Head => {
                let mut skipped = 0;
                loop {
                    let rest = &buf[skipped..];
                    match head::parse(rest, self.head_request, &self.limits, on_header)? {
                        Parsed::Partial => return done(skipped, Event::NeedMore),
                        Parsed::Interim(n) => skipped += n,
                        Parsed::Final(n, head) => {
                            self.state = match head.framing {
                                Framing::None | Framing::Length(0) => State::Done,
                                Framing::Length(n) => {
                                    self.check_body(n)?;
                                    State::Length(n)
                                }
                                Framing::Chunked => State::Chunked(Chunked::Size),
                                Framing::UntilClose => State::UntilClose,
                            };
                            return done(skipped + n, Event::Head(head));
                        }
                    }
                }
            }
            State::Length(left) => {
                if buf.is_empty() {
                    return done(0, Event::NeedMore);
                }
                let n = (left.min(buf.len() as u64)) as usize;
                self.state = if left == n as u64 {
                    State::Done
                } else {
                    State::Length(left - n as u64)
                };
                done(n, Event::Body(&buf[..n]))
            }
            State::UntilClose => {
                if buf.is_empty() {
                    return done(0, Event::NeedMore);
                }
                self.add_body(buf.len())?;
                done(buf.len(), Event::Body(buf))
            }
            State::Chunked(mut c) => {
                let r = c.step(buf, &self.limits);
                self.state = State::Chunked(c);
                match r? {
                    Step::NeedMore(n) => done(n, Event::NeedMore),
                    Step::End(n) => {
                        self.state = State::Done;
                        done(n, Event::End)
                    }
                    Step::Data { skip, len } => {
                        self.add_body(len)?;
                        done(skip + len, Event::Body(&buf[skip..skip + len]))
                    }
                }
            }
        }
    }

    fn check_body(&self, len: u64) -> Result<(), Error> {
        match self.limits.max_body {
            Some(limit) if len > limit => Err(Error::BodyTooLarge { limit }),
            _ => Ok(()),
        }
    }

    fn add_body(&mut self, len: usize) -> Result<(), Error> {
        self.body_len = self.body_len.saturating_add(len as u64);
        self.check_body(self.body_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head, payload and leftover of `raw` fed in one piece.
    fn whole(raw: &[u8], head_request: bool) -> Result<(Head, Vec<u8>, &[u8]), Error> {
        let mut d = ResponseDecoder::new(Limits::default(), head_request);
        let mut at = 0;
        let mut head = None;
        let mut body = Vec::new();
        loop {
            let r = d.decode(&raw[at..])?;
            at += r.consumed;
            match r.event {
                Event::Head(h) => head = Some(h),
                Event::Body(b) => body.extend_from_slice(b),
                Event::End => return Ok((head.unwrap(), body, &raw[at..])),
                Event::NeedMore => {
                    d.finish()?;
                }
            }
        }
    }

    #[test]
    fn length_chunked_and_empty_bodies() {
        let (h, b, rest) = whole(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP",
            false,
        )
        .unwrap();
        assert_eq!(
            (h.status, b.as_slice(), rest),
            (200, &b"hello"[..], &b"HTTP"[..])
        );
        let raw = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
        let (h, b, rest) = whole(raw, false).unwrap();
        assert_eq!(
            (h.status, b.as_slice(), rest),
            (201, &b"abcde"[..], &b""[..])
        );
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (h, b, rest) = whole(raw, false).unwrap();
        assert_eq!((h.status, b.len(), rest.len()), (204, 0, 0));
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n";
        let (h, b, _) = whole(raw, true).unwrap();
        assert_eq!((h.content_length, b.len()), (Some(3), 0));
    }

    #[test]
    fn a_body_until_close_ends_at_finish() {
        let (h, b, _) = whole(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", false).unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        assert_eq!(b, b"until the end");
    }

    #[test]
    fn the_head_is_done_at_once_when_there_is_no_body() {
        let mut d = ResponseDecoder::new(Limits::default(), false);
        let r = d
            .decode(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        assert!(matches!(r.event, Event::Head(_)));
        assert!(d.is_done());
        assert_eq!(
            d.decode(b"").unwrap(),
            Decoded {
                consumed: 0,
                event: Event::End
            }
        );
    }

    #[test]
    fn interim_heads_are_consumed_while_the_final_one_is_partial() {
        let mut d = ResponseDecoder::new(Limits::default(), false);
        let r = d
            .decode(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2")
            .unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 25,
                event: Event::NeedMore
            }
        );
    }

    #[test]
    fn an_early_close_is_an_error() {
        for (raw, want) in [
            (&b"HTTP/1.1 200 OK\r\ncontent-le"[..], Error::ClosedInHead),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                Error::ClosedInBody,
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab",
                Error::ClosedInBody,
            ),
        ] {
            assert_eq!(whole(raw, false).err(), Some(want));
        }
    }

    #[test]
    fn errors_are_final() {
        let mut d = ResponseDecoder::new(Limits::default(), false);
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        let r = d.decode(raw).unwrap();
        assert!(matches!(r.event, Event::Head(_)));
        let rest = &raw[r.consumed..];
        assert_eq!(d.decode(rest), Err(Error::ChunkSize));
        assert_eq!(d.decode(b"0\r\n\r\n"), Err(Error::ChunkSize));
        assert_eq!(d.finish(), Err(Error::ChunkSize));
    }

    #[test]
    fn the_body_limit_holds_for_every_framing() {
        let limits = Limits {
            max_body: Some(4),
            ..Limits::default()
        };
        let run = |raw: &[u8]| {
            let mut d = ResponseDecoder::new(limits, false);
            let mut at = 0;
            loop {
                let r = d.decode(&raw[at..])?;
                at += r.consumed;
                match r.event {
                    Event::End => return Ok(()),
                    Event::NeedMore => d.finish()?,
                    _ => {}
                }
            }
        };
        let err = Err(Error::BodyTooLarge { limit: 4 });
        assert_eq!(
            run(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcd"),
            Ok(())
        );
        assert_eq!(
            run(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabcde"),
            err
        );
        assert_eq!(run(b"HTTP/1.1 200 OK\r\n\r\nabcde"), err);
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
        assert_eq!(run(chunked), err);
    }
}
