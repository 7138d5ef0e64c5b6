//! The HTTP/2 counterpart of the lingering close (`linger.rs`): a stream
//! answered before its request body was read.
//!
//! Ending such a stream's answer while the request body is still arriving
//! makes h2 reset the stream with `RST_STREAM(NO_ERROR)` (RFC 9113 §8.1
//! allows it), and common clients (Debian 12's curl, Python's httpx) then
//! report an error and throw the answer away. [`Drained`] sends the answer's
//! head and data at once, but ends the stream only after it has read and
//! discarded the rest of the request body: until the client ends it,
//! `limits.refusal_drain_bytes` have been discarded or
//! `limits.refusal_drain_timeout` has passed, whichever comes first. Past a
//! bound the stream ends (and h2 resets the request side) with the whole
//! answer already sent.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::DrainBounds;
use crate::body::{Body, BodyError};

/// An answer whose stream ends only after the unread request body has been
/// discarded, within [`DrainBounds`].
pub(crate) struct Drained {
    answer: Body,
    answer_done: bool,
    request: Option<Incoming>,
    left: usize,
    deadline: Pin<Box<Sleep>>,
}

impl Drained {
    /// `answer`, ending after `request` (the unread body) is drained.
    pub(crate) fn new(answer: Body, request: Incoming, bounds: DrainBounds) -> Self {
        Drained {
            answer,
            answer_done: false,
            request: Some(request),
            left: bounds.max_bytes,
            deadline: Box::pin(tokio::time::sleep(bounds.timeout)),
        }
    }

    /// Reads and discards the request body until its end, an error or a
    /// bound; dropping it then (h2 resets the request side if unfinished).
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(request) = &mut self.request {
            if self.left == 0 || self.deadline.as_mut().poll(cx).is_ready() {
                break;
            }
            match Pin::new(request).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let length = frame.data_ref().map_or(0, Bytes::len);
                    self.left = self.left.saturating_sub(length);
                }
                Poll::Ready(None | Some(Err(_))) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.request = None;
        Poll::Ready(())
    }
}

impl HttpBody for Drained {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if !this.answer_done {
            match ready!(Pin::new(&mut this.answer).poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => this.answer_done = true,
            }
        }
        ready!(this.poll_discard(cx));
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.request.is_none() && self.answer.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.answer.size_hint()
    }
}
