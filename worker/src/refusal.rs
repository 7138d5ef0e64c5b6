//! The one place where the HTTP layer's own refusals become responses.
//!
//! Everything the legacy contract knows about (routes, parameters, upload
//! rules, CSV errors) is answered by [`crate::api`]. This module covers what
//! only the server can see: identity headers, body size and timing, the
//! multipart framing, capacity, and our own faults. The status says whose
//! fault it is: the caller's (4xx), capacity (503 + `Retry-After`), or ours
//! (500). Bodies use the shared error envelope and stay generic; they never
//! echo header values or uploaded bytes.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use tradehabit_shared::envelope::{ErrorEnvelope, CONTENT_TYPE};

/// Seconds a caller should wait before retrying after a capacity refusal.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The name of the worker's per-caller quota in its 429's RateLimit
/// headers: requests in progress at once.
pub const IN_PROGRESS_QUOTA: &str = "worker-in-progress";

/// A request the HTTP layer answers itself, without the engine.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The principal header appears more than once.
    #[error("the principal header is repeated")]
    PrincipalRepeated,
    /// The principal header is present but empty.
    #[error("the principal header is empty")]
    PrincipalEmpty,
    /// The principal header is longer than the shared limit.
    #[error("the principal header is longer than {max} bytes")]
    PrincipalTooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// A method this layer's own routes do not serve.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// The body (or, for uploads, the whole multipart stream) is larger than
    /// the limit; reading stopped there.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body did not arrive within the body read timeout.
    #[error("request body not received within {secs} s")]
    BodyTimedOut {
        /// The timeout, in seconds.
        secs: u64,
    },
    /// The connection failed while the body was being read.
    #[error("request body could not be read")]
    BodyUnreadable,
    /// `POST /api/analyze` with a `Content-Type` that is not
    /// `multipart/form-data`.
    #[error("upload is not multipart/form-data")]
    NotMultipart,
    /// `multipart/form-data` without a usable `boundary` parameter.
    #[error("multipart Content-Type has no boundary")]
    NoBoundary,
    /// The multipart body does not follow the format.
    #[error("malformed multipart body: {reason}")]
    MalformedMultipart {
        /// What was wrong, in fixed words (never the offending bytes).
        reason: &'static str,
    },
    /// This principal already has the maximum number of requests in progress.
    #[error("too many requests in progress for this caller")]
    PrincipalBusy {
        /// The per-principal limit (`--max-requests-per-principal`).
        limit: usize,
    },
    /// Every analysis slot is busy and the waiting queue is full.
    #[error("analysis queue is full")]
    QueueFull,
    /// The engine panicked; the caller's session was restored.
    #[error("the engine panicked")]
    EnginePanicked,
    /// The engine task was cancelled (runtime shutting down).
    #[error("the engine task did not complete")]
    EngineLost,
    /// The metrics registry could not be written out.
    #[error("the metrics could not be encoded")]
    MetricsUnavailable,
    /// The worker is shutting down (readiness answer).
    #[error("the worker is shutting down")]
    Draining,
    /// The connecting process's uid/gid is not allowed (`crate::trust`).
    #[error("peer process not allowed")]
    PeerNotAllowed,
    /// The gateway's signature is missing or wrong (`crate::trust`).
    #[error("gateway signature refused: {0}")]
    NotSigned(tradehabit_shared::signature::SignatureError),
}

impl Refusal {
    /// The HTTP status: whose fault it is.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::PrincipalRepeated
            | Self::PrincipalEmpty
            | Self::PrincipalTooLong { .. }
            | Self::BodyUnreadable
            | Self::NotMultipart
            | Self::NoBoundary
            | Self::MalformedMultipart { .. } => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PeerNotAllowed => StatusCode::FORBIDDEN,
            Self::NotSigned(_) => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimedOut { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::PrincipalBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QueueFull | Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Self::EnginePanicked | Self::EngineLost | Self::MetricsUnavailable => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The envelope's stable code (`docs/errors.md`), also written in the
    /// request's log line.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::PrincipalRepeated => "identity.repeated",
            Self::PrincipalEmpty => "identity.empty",
            Self::PrincipalTooLong { .. } => "identity.too_long",
            Self::MethodNotAllowed { .. } => "route.method_not_allowed",
            Self::BodyTooLarge { .. } => "body.too_large",
            Self::BodyTimedOut { .. } => "body.timeout",
            Self::BodyUnreadable => "body.incomplete",
            Self::NotMultipart => "upload.not_multipart",
            Self::NoBoundary => "upload.no_boundary",
            Self::MalformedMultipart { .. } => "upload.malformed",
            Self::PrincipalBusy { .. } => "admission.principal_busy",
            Self::QueueFull => "admission.queue_full",
            Self::EnginePanicked => "internal.engine_panicked",
            Self::EngineLost => "internal.engine_lost",
            Self::MetricsUnavailable => "internal.metrics_unavailable",
            Self::Draining => "worker.draining",
            Self::PeerNotAllowed => "identity.peer_not_allowed",
            Self::NotSigned(_) => "identity.not_signed",
        }
    }

    /// The envelope: a message a client can act on, plus a specific detail
    /// where there is one.
    fn envelope(&self) -> ErrorEnvelope {
        match self {
            Self::PrincipalRepeated | Self::PrincipalEmpty | Self::PrincipalTooLong { .. } => {
                ErrorEnvelope::new(
                    self.code(),
                    "The caller identity sent by the gateway is invalid.",
                )
                .with_detail(self.to_string())
            }
            Self::MethodNotAllowed { .. } => ErrorEnvelope::new(
                self.code(),
                "The method is not allowed for the requested URL.",
            ),
            Self::BodyTooLarge { limit } => {
                ErrorEnvelope::new(self.code(), "The request body is too large.")
                    .with_detail(format!("limit: {limit} bytes"))
            }
            Self::BodyTimedOut { secs } => {
                ErrorEnvelope::new(self.code(), "The request body was not received in time.")
                    .with_detail(format!("timeout: {secs} s"))
            }
            Self::BodyUnreadable => {
                ErrorEnvelope::new(self.code(), "The request body could not be read.")
            }
            Self::NotMultipart => ErrorEnvelope::new(
                self.code(),
                "Uploads must be sent as multipart/form-data with the CSV in a part named 'file'.",
            ),
            Self::NoBoundary => ErrorEnvelope::new(
                self.code(),
                "The multipart/form-data Content-Type has no valid boundary parameter.",
            ),
            Self::MalformedMultipart { reason } => {
                ErrorEnvelope::new(self.code(), "The multipart/form-data body is malformed.")
                    .with_detail(*reason)
            }
            Self::PrincipalBusy { .. } => ErrorEnvelope::new(
                self.code(),
                "Too many of your requests are in progress; retry in a moment.",
            ),
            Self::QueueFull => {
                ErrorEnvelope::new(self.code(), "The service is busy; retry in a moment.")
            }
            Self::EnginePanicked | Self::EngineLost => ErrorEnvelope::new(
                self.code(),
                "Internal error; your previous data is unchanged.",
            ),
            Self::MetricsUnavailable => ErrorEnvelope::new(self.code(), "Internal error."),
            Self::Draining => ErrorEnvelope::new(self.code(), "The worker is shutting down."),
            Self::PeerNotAllowed | Self::NotSigned(_) => {
                ErrorEnvelope::new(self.code(), "The worker answers the gateway only.")
                    .with_detail(self.to_string())
            }
        }
    }

    /// Whether to tell the caller when to retry.
    fn retry_after(&self) -> Option<u64> {
        matches!(
            self,
            Self::PrincipalBusy { .. } | Self::QueueFull | Self::Draining
        )
        .then_some(RETRY_AFTER_SECS)
    }

    /// The response: status, envelope body, `Content-Type`, and `Allow` or
    /// `Retry-After` where they apply.
    pub(crate) fn response(&self) -> Response<Full<Bytes>> {
        let mut response = json_response(self.status(), self.envelope().to_bytes());
        let headers = response.headers_mut();
        if let Self::MethodNotAllowed { allow } = *self {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Self::PrincipalBusy { limit } = *self {
            // The gateway's 429 shape (`docs/errors.md`): the quota that
            // applies, as the RateLimit headers name quotas.
            let policy = format!("\"{IN_PROGRESS_QUOTA}\";q={limit};w={RETRY_AFTER_SECS}");
            let current = format!("\"{IN_PROGRESS_QUOTA}\";r=0;t={RETRY_AFTER_SECS}");
            for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        response
    }
}

/// A response with a JSON body and `Content-Type: application/json`.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn client_faults_are_4xx_capacity_is_503_and_ours_is_500() {
        assert_eq!(Refusal::NoBoundary.status(), 400);
        assert_eq!(Refusal::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(Refusal::BodyTimedOut { secs: 1 }.status(), 408);
        assert_eq!(Refusal::PrincipalBusy { limit: 2 }.status(), 429);
        assert_eq!(Refusal::QueueFull.status(), 503);
        assert_eq!(Refusal::EnginePanicked.status(), 500);
    }

    #[tokio::test]
    async fn every_refusal_is_an_envelope_with_json_content_type() {
        let response = Refusal::QueueFull.response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = body_of(response).await;
        assert_eq!(body["status"], "ERROR");
        assert!(body["details"].is_array());
        assert!(!body["message"].as_str().unwrap().is_empty());
    }

    #[tokio::test]
    async fn method_not_allowed_names_the_allowed_method() {
        let response = Refusal::MethodNotAllowed { allow: "DELETE" }.response();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "DELETE");
    }
}
