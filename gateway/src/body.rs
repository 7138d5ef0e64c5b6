//! The one response body type, a wrapper that keeps a guard alive until a
//! body has been sent (an upstream slot, a connection's in-flight count),
//! and one that reports how many bytes a body yielded (`bytes_out` of a
//! streamed response's audit line). `body/progress.rs` tells whether a
//! response body is still being taken by the client.

pub(crate) mod progress;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Any error a body can fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body failed mid-stream (the upstream went away, …).
///
/// A concrete type rather than `BoxError`: hyper's bounds on a boxed error
/// trip the compiler's higher-ranked lifetime check in spawned tasks.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BodyError(#[from] pub(crate) BoxError);

/// Every response the gateway sends has this body type.
pub(crate) type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A body holding these bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// `inner`, reporting the data bytes it yielded to `done` exactly once:
/// when it ends, fails, or is dropped unfinished (the client went away).
pub(crate) fn counted<F>(inner: Body, done: F) -> Body
where
    F: FnOnce(u64) + Send + Unpin + 'static,
{
    Counted {
        inner,
        sent: 0,
        done: Some(done),
    }
    .boxed_unsync()
}

struct Counted<F: FnOnce(u64)> {
    inner: Body,
    sent: u64,
    done: Option<F>,
}

impl<F: FnOnce(u64)> Counted<F> {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done(self.sent);
        }
    }
}

impl<F: FnOnce(u64) + Unpin> HttpBody for Counted<F> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let bytes = frame.data_ref().map_or(0, Bytes::len);
                self.sent += u64::try_from(bytes).unwrap_or(u64::MAX);
            }
            Poll::Ready(None | Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: FnOnce(u64)> Drop for Counted<F> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A body that owns `guard` until the body is finished or dropped.
pub(crate) struct Guarded<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> Guarded<B, G> {
    /// Wraps `inner`; `guard` is dropped when the last frame has been read.
    pub(crate) fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B, G> HttpBody for Guarded<B, G>
where
    B: HttpBody + Unpin,
    G: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::stream;
    use http_body_util::StreamBody;

    use super::*;

    /// A body of three data frames (2 + 3 + 4 bytes), then `end`.
    fn streamed(end: Option<&'static str>) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, BodyError>> = ["ab", "cde", "fghi"]
            .into_iter()
            .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            .collect();
        if let Some(error) = end {
            frames.push(Err(BodyError(error.into())));
        }
        StreamBody::new(stream::iter(frames)).boxed_unsync()
    }

    fn reports() -> (
        Arc<Mutex<Vec<u64>>>,
        impl FnOnce(u64) + Send + Unpin + 'static,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        (seen, move |sent| sink.lock().unwrap().push(sent))
    }

    #[tokio::test]
    async fn a_finished_body_reports_its_bytes_once() {
        let (seen, done) = reports();
        let body = counted(streamed(None), done);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefghi");
        assert_eq!(*seen.lock().unwrap(), [9]);
    }

    #[tokio::test]
    async fn a_failed_or_dropped_body_reports_what_was_sent_once() {
        let (seen, done) = reports();
        let body = counted(streamed(Some("upstream went away")), done);
        assert!(body.collect().await.is_err());
        assert_eq!(*seen.lock().unwrap(), [9]);

        let (seen, done) = reports();
        let mut body = counted(streamed(None), done);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        drop(body);
        assert_eq!(*seen.lock().unwrap(), [2]);
    }
}
