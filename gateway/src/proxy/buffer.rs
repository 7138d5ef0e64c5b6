//! Proxy buffering: an upstream answer that fits `upstream.response_buffer_bytes`
//! is read in full before its head goes to the client, so its upstream
//! connection returns to the pool and its slot is freed however slowly the
//! client reads (`docs/security-controls.md`, F-4).
//!
//! Only answers that declare their length (`Content-Length`) and fit are
//! buffered: the upstream has them ready, and reading them costs the
//! gateway at most the buffer. Larger answers, and answers of unknown
//! length (a stream the upstream produces over time), are passed on as
//! they arrive, with back-pressure; for those the send watch
//! (`limits.send_timeout`) bounds how long a client that stops reading can
//! hold the upstream.

use bytes::BytesMut;
use http_body::Body as _;
use http_body_util::BodyExt;

use super::UpstreamBody;
use crate::body::{self, Body, BodyError};
use crate::reject::Rejection;

/// `body` whole when its declared length is at most `limit` bytes (its
/// connection then already checked in); otherwise `body` streaming. A
/// failure while reading is the upstream's (502): no head has gone out yet.
pub(super) async fn buffer(mut body: UpstreamBody, limit: usize) -> Result<Body, Rejection> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let Some(length) = body.size_hint().exact().filter(|length| *length <= limit) else {
        return Ok(body
            .map_err(|error| BodyError(Box::new(error)))
            .boxed_unsync());
    };
    let mut bytes = BytesMut::with_capacity(usize::try_from(length).unwrap_or(0));
    // Polled to its end: `UpstreamBody` checks its connection in and frees
    // the slot when it sees the end.
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            Rejection::UpstreamBroken(format!("reading the answer's body: {error}"))
        })?;
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    Ok(body::full(bytes.freeze()))
}
