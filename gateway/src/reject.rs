//! The one place a refusal becomes an HTTP response.
//!
//! Every stage reports failure as a [`Rejection`] value; [`respond`] picks the
//! status from whose fault it is (the client's: 4xx; the upstream's:
//! 502/503/504), writes the JSON error envelope shared with the worker, adds
//! the headers the status needs (`Allow`, `Retry-After`) and logs the
//! precise reason once. The client only ever sees a generic message.

use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use tradehabit_shared::envelope::{self, ErrorEnvelope};

use crate::body::{self, Body};
use crate::checks;

/// Why the gateway answered instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    /// The path failed normalisation (dot segments, encoded slashes, …).
    #[error("path refused: {0}")]
    PathRefused(&'static str),
    /// The request line is longer than `limits.max_request_line_bytes`.
    #[error("request line of {length} bytes over the limit")]
    RequestLineTooLong { length: usize },
    /// A header line or the header count is over its limit.
    #[error("request headers over the limit: {0}")]
    HeadersTooLarge(&'static str),
    /// The message length is ambiguous (smuggling attempt or broken client).
    #[error("ambiguous message length: {0}")]
    AmbiguousLength(&'static str),
    /// No usable `Host`.
    #[error("host missing or invalid")]
    HostInvalid,
    /// A well-formed host that is not one of the server's names
    /// (`server.names`, default the certificate's).
    #[error("host not served here")]
    HostMisdirected,
    /// A protocol upgrade (`Upgrade`) or a tunnel (`CONNECT`, extended
    /// CONNECT); no route upgrades.
    #[error("protocol upgrade refused: {0}")]
    UpgradeRefused(&'static str),
    /// A header name with `_` under `limits.underscore_headers = "refuse"`.
    #[error("header name with an underscore")]
    UnderscoreHeader,
    /// No route matches the path.
    #[error("no route matches")]
    NoRoute,
    /// A route matches the path but not the method.
    #[error("method not allowed")]
    MethodNotAllowed { allow: HeaderValue },
    /// The body is larger than the route's limit (declared or counted).
    #[error("body over the route limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// A `Content-Encoding` other than identity on the request body.
    #[error("compressed request body refused")]
    CompressedBody,
    /// A compressed body on a route that accepts some encodings, but not
    /// this one, or more than one layer of them.
    #[error("request body encoding not accepted: {0}")]
    EncodingNotAccepted(&'static str),
    /// The decoded body is larger than the route's `max_decoded_bytes`.
    #[error("decoded body over the route cap of {limit} bytes")]
    DecodedTooLarge { limit: u64 },
    /// The compressed body is not a valid stream of its encoding.
    #[error("compressed body corrupt")]
    EncodingCorrupt,
    /// The client did not send its body within the request timeout.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The client's body ended in an error (reset stream, broken framing).
    #[error("request body incomplete")]
    BodyIncomplete,
    /// The chunked framing of an HTTP/1.1 body breaks RFC 9112 §7.1 (found
    /// by the connection's framing reader), in this way.
    #[error("chunked framing refused: {0}")]
    ChunkedFraming(&'static str),
    /// A policy check refused the request (CORS, authentication, scopes,
    /// rate limits, query, body and upload rules); it carries its own
    /// status, generic message, details, headers and audit reason.
    #[error("{}", .0.reason)]
    Check(Box<checks::Rejection>),
    /// A plain-HTTP request for an API path.
    #[error("API call over plain HTTP")]
    HttpsRequired,
    /// The upstream could not be reached (down, refused, connect timeout).
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The upstream broke the exchange (closed early, invalid answer).
    #[error("upstream answer unusable: {0}")]
    UpstreamBroken(String),
    /// With several workers (`upstream.addresses`): the caller's worker
    /// refused the connection or broke the exchange. Its sessions are gone;
    /// it is ejected for `upstream.eject_for` (see `proxy/workers.rs`).
    #[error("worker {worker} lost: {error}")]
    WorkerLost {
        worker: usize,
        error: String,
        retry_after: Duration,
    },
    /// The client's address holds `limits.max_connections_per_ip`
    /// connections already; this one is answered and closed.
    #[error("connection cap per client address reached")]
    TooManyConnections { retry_after: Duration },
    /// No free upstream slot within `upstream.queue_timeout`.
    #[error("upstream concurrency limit reached")]
    UpstreamBusy { retry_after: Duration },
    /// The client's IP already holds its share (requests in flight, or
    /// upstream slots); `reason` is the audit reason naming which.
    #[error("client share reached: {reason}")]
    ClientBusy {
        reason: &'static str,
        retry_after: Duration,
    },
    /// The upstream answered no response head within its timeout.
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    /// The upstream answered a 5xx whose body is replaced.
    #[error("upstream answered {status}")]
    UpstreamFailed {
        status: StatusCode,
        retry_after: Option<HeaderValue>,
    },
    /// The audit log cannot be written and `audit.on_failure` is
    /// `"refuse"`: no request passes unaudited.
    #[error("the audit log cannot be written")]
    AuditUnavailable { retry_after: Duration },
}

impl Rejection {
    /// The status this rejection is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Rejection::PathRefused(_)
            | Rejection::AmbiguousLength(_)
            | Rejection::HostInvalid
            | Rejection::UpgradeRefused(_)
            | Rejection::UnderscoreHeader
            | Rejection::BodyIncomplete
            | Rejection::ChunkedFraming(_)
            | Rejection::EncodingCorrupt => StatusCode::BAD_REQUEST,
            Rejection::Check(check) => check.status,
            // RFC 9110 §15.5.20: this server does not answer for that host;
            // a client may retry on a connection to the right one.
            Rejection::HostMisdirected => StatusCode::MISDIRECTED_REQUEST,
            Rejection::RequestLineTooLong { .. } => StatusCode::URI_TOO_LONG,
            Rejection::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::NoRoute => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::BodyTooLarge { .. } | Rejection::DecodedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Rejection::CompressedBody | Rejection::EncodingNotAccepted(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            // ASVS 5.0 4.1.2: an API must not redirect to HTTPS, because the
            // credentials have already crossed the network in clear. 403
            // says "not over this channel"; 421 would suggest a routing
            // mistake and a retry on another connection, which clients do
            // automatically.
            Rejection::HttpsRequired => StatusCode::FORBIDDEN,
            Rejection::UpstreamUnreachable(_) | Rejection::UpstreamBroken(_) => {
                StatusCode::BAD_GATEWAY
            }
            Rejection::UpstreamBusy { .. }
            | Rejection::TooManyConnections { .. }
            | Rejection::ClientBusy { .. }
            | Rejection::WorkerLost { .. }
            | Rejection::AuditUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::UpstreamFailed { status, .. } => *status,
        }
    }

    /// The generic, client-safe message.
    fn message(&self) -> &'static str {
        match self {
            Rejection::PathRefused(_) => "The request path is not acceptable",
            Rejection::RequestLineTooLong { .. } => "The request URI is too long",
            Rejection::HeadersTooLarge(_) => "The request headers are too large",
            Rejection::AmbiguousLength(_) => "The request framing is ambiguous",
            Rejection::HostInvalid => "The request host is missing or invalid",
            Rejection::HostMisdirected => "This server does not serve the requested host",
            Rejection::UpgradeRefused(_) => "Protocol upgrades and tunnels are not supported",
            Rejection::UnderscoreHeader => "Header names with underscores are not accepted",
            Rejection::NoRoute => "The requested URL was not found on the server",
            Rejection::MethodNotAllowed { .. } => "The method is not allowed for the requested URL",
            Rejection::BodyTooLarge { .. } => "The request body is too large",
            Rejection::CompressedBody => "Compressed request bodies are not accepted",
            Rejection::EncodingNotAccepted(_) => {
                "The request body's Content-Encoding is not accepted on this route"
            }
            Rejection::DecodedTooLarge { .. } => "The decompressed request body is too large",
            Rejection::EncodingCorrupt => "The compressed request body could not be decoded",
            Rejection::BodyTimeout => "The request body was not received in time",
            Rejection::BodyIncomplete => "The request body was incomplete",
            Rejection::ChunkedFraming(_) => "The request body's chunked framing is malformed",
            // Answered from the check's own envelope in `respond`.
            Rejection::Check(_) => "The request was refused",
            Rejection::HttpsRequired => {
                "This API is only served over HTTPS; resend the request with https://"
            }
            Rejection::UpstreamUnreachable(_) | Rejection::UpstreamBroken(_) => {
                "The service is unavailable"
            }
            Rejection::UpstreamBusy { .. } => "The service is busy; retry later",
            Rejection::WorkerLost { .. } => {
                "Your analysis session was lost; upload your file again"
            }
            Rejection::TooManyConnections { .. } => {
                "Too many connections from this address; retry later"
            }
            Rejection::ClientBusy { .. } => {
                "Too many requests in flight from this client; retry later"
            }
            Rejection::UpstreamTimeout => "The service did not answer in time",
            Rejection::UpstreamFailed { status, .. }
                if *status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                "The service is busy; retry later"
            }
            Rejection::UpstreamFailed { .. } => "The service failed to handle the request",
            Rejection::AuditUnavailable { .. } => {
                "The service is temporarily unavailable; retry later"
            }
        }
    }

    /// The stable `<check>.<why>` code of the envelope, which is also the
    /// audit log's `reason` (`docs/errors.md`).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Rejection::PathRefused(_) => "path.refused",
            Rejection::RequestLineTooLong { .. } => "shape.request_line_too_long",
            Rejection::HeadersTooLarge(_) => "shape.headers_too_large",
            Rejection::AmbiguousLength(_) => "shape.ambiguous_length",
            Rejection::HostInvalid => "shape.host_invalid",
            Rejection::HostMisdirected => "shape.host_misdirected",
            Rejection::UpgradeRefused(_) => "shape.upgrade_refused",
            Rejection::UnderscoreHeader => "shape.underscore_header",
            Rejection::NoRoute => "route.not_found",
            Rejection::MethodNotAllowed { .. } => "route.method_not_allowed",
            Rejection::BodyTooLarge { .. } => "body.too_large",
            Rejection::CompressedBody => "body.compressed",
            Rejection::EncodingNotAccepted(_) => "body.encoding_not_accepted",
            Rejection::DecodedTooLarge { .. } => "body.decoded_too_large",
            Rejection::EncodingCorrupt => "body.encoding_corrupt",
            Rejection::BodyTimeout => "body.timeout",
            Rejection::BodyIncomplete => "body.incomplete",
            Rejection::ChunkedFraming(_) => "body.chunked_framing",
            Rejection::Check(check) => check.reason,
            Rejection::HttpsRequired => "plain_http.https_required",
            Rejection::UpstreamUnreachable(_) => "upstream.unreachable",
            Rejection::UpstreamBroken(_) => "upstream.broken",
            Rejection::WorkerLost { .. } => "upstream.worker_lost",
            Rejection::UpstreamBusy { .. } => "upstream.busy",
            Rejection::TooManyConnections { .. } => "accept.connection_cap",
            Rejection::ClientBusy { reason, .. } => reason,
            Rejection::UpstreamTimeout => "upstream.timeout",
            Rejection::UpstreamFailed { .. } => "upstream.failed",
            Rejection::AuditUnavailable { .. } => "audit.unavailable",
        }
    }

    /// What precisely was wrong with the request's shape, for the
    /// envelope's `details`: the gateway's own wording, never request data.
    fn detail(&self) -> Option<&'static str> {
        match self {
            Rejection::PathRefused(why)
            | Rejection::HeadersTooLarge(why)
            | Rejection::AmbiguousLength(why)
            | Rejection::UpgradeRefused(why)
            | Rejection::ChunkedFraming(why) => Some(why),
            _ => None,
        }
    }

    /// Whose fault: the upstream's failures are worth an operator's look.
    fn is_upstream_fault(&self) -> bool {
        matches!(
            self,
            Rejection::UpstreamUnreachable(_)
                | Rejection::UpstreamBroken(_)
                | Rejection::WorkerLost { .. }
                | Rejection::UpstreamBusy { .. }
                | Rejection::UpstreamTimeout
                | Rejection::UpstreamFailed { .. }
        )
    }
}

/// Turns a rejection into its response and logs why, once. The envelope
/// carries the rejection's [`Rejection::code`] and `request_id` (the
/// answer's `X-Request-Id`), when there is one.
pub(crate) fn respond(rejection: &Rejection, request_id: Option<&HeaderValue>) -> Response<Body> {
    let status = rejection.status();
    let envelope = match rejection {
        Rejection::Check(check) => {
            // Expected client failures: the precise reason (never a
            // credential) for the audit trail, at info.
            tracing::info!(
                http.status = status.as_u16(),
                policy.reason = check.reason,
                policy.detail = check.audit_detail.as_deref(),
                "refused"
            );
            check.envelope()
        }
        _ if rejection.is_upstream_fault() => {
            tracing::warn!(http.status = status.as_u16(), reason = %rejection, "refused");
            ErrorEnvelope::new(rejection.code(), rejection.message())
        }
        // Also an unwritable audit log's refusals: the audit writer logs
        // that failure itself, rate-limited; one line per request here
        // would be the flood it avoids.
        _ => {
            tracing::debug!(http.status = status.as_u16(), reason = %rejection, "refused");
            let envelope = ErrorEnvelope::new(rejection.code(), rejection.message());
            match rejection.detail() {
                Some(detail) => envelope.with_detail(detail),
                None => envelope,
            }
        }
    };
    let envelope = match request_id.and_then(|id| id.to_str().ok()) {
        Some(id) => envelope.with_request_id(id),
        None => envelope,
    };
    let mut response = Response::new(body::full(envelope.to_bytes()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(envelope::CONTENT_TYPE),
    );
    match rejection {
        Rejection::Check(check) => {
            for (name, value) in &check.headers {
                headers.append(name.clone(), value.clone());
            }
        }
        Rejection::MethodNotAllowed { allow } => {
            headers.insert(ALLOW, allow.clone());
        }
        Rejection::UpstreamBusy { retry_after }
        | Rejection::WorkerLost { retry_after, .. }
        | Rejection::TooManyConnections { retry_after }
        | Rejection::ClientBusy { retry_after, .. }
        | Rejection::AuditUnavailable { retry_after } => {
            headers.insert(RETRY_AFTER, seconds(*retry_after));
        }
        Rejection::UpstreamFailed {
            retry_after,
            status,
        } => {
            if let Some(value) = retry_after {
                headers.insert(RETRY_AFTER, value.clone());
            } else if *status == StatusCode::SERVICE_UNAVAILABLE {
                headers.insert(RETRY_AFTER, seconds(crate::config::DEFAULT_RETRY_AFTER));
            }
        }
        _ => {}
    }
    response
}

impl From<checks::Rejection> for Rejection {
    fn from(check: checks::Rejection) -> Self {
        Rejection::Check(Box::new(check))
    }
}

/// Converts any check failure (`AuthFailure`, `RateLimited`, …) into a
/// rejection, for `.map_err(check)`.
pub(crate) fn check(failure: impl Into<checks::Rejection>) -> Rejection {
    Rejection::Check(Box::new(failure.into()))
}

/// A `Retry-After` value in whole seconds, at least 1.
fn seconds(duration: Duration) -> HeaderValue {
    HeaderValue::from(duration.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn shape_refusals_say_precisely_what_was_wrong() {
        let response = respond(
            &Rejection::HeadersTooLarge("a header field is too long"),
            None,
        );
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let json: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(
            json["details"],
            serde_json::json!(["a header field is too long"])
        );
    }

    #[tokio::test]
    async fn every_rejection_is_an_envelope() {
        let response = respond(
            &Rejection::NoRoute,
            Some(&HeaderValue::from_static("req-7")),
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let text = body_text(response).await;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["status"], "ERROR");
        assert_eq!(json["details"], serde_json::json!([]));
        assert_eq!(json["code"], "route.not_found");
        assert_eq!(json["request_id"], "req-7");
    }

    #[test]
    fn status_follows_whose_fault_it_is() {
        let cases = [
            (Rejection::PathRefused("x"), 400),
            (Rejection::RequestLineTooLong { length: 5000 }, 414),
            (Rejection::HeadersTooLarge("x"), 431),
            (Rejection::BodyTooLarge { limit: 1 }, 413),
            (Rejection::CompressedBody, 415),
            (Rejection::EncodingNotAccepted("br"), 415),
            (Rejection::DecodedTooLarge { limit: 1 }, 413),
            (Rejection::EncodingCorrupt, 400),
            (Rejection::ChunkedFraming("x"), 400),
            (Rejection::BodyTimeout, 408),
            (Rejection::HttpsRequired, 403),
            (Rejection::HostMisdirected, 421),
            (Rejection::UpgradeRefused("x"), 400),
            (Rejection::UnderscoreHeader, 400),
            (Rejection::UpstreamUnreachable("refused".into()), 502),
            (Rejection::UpstreamBroken("closed".into()), 502),
            (
                Rejection::UpstreamBusy {
                    retry_after: Duration::from_secs(3),
                },
                503,
            ),
            (Rejection::UpstreamTimeout, 504),
            (
                Rejection::TooManyConnections {
                    retry_after: Duration::from_secs(5),
                },
                503,
            ),
        ];
        for (rejection, status) in cases {
            assert_eq!(rejection.status().as_u16(), status, "{rejection:?}");
        }
    }

    #[test]
    fn busy_and_405_carry_their_headers() {
        let busy = respond(
            &Rejection::UpstreamBusy {
                retry_after: Duration::from_millis(1500),
            },
            None,
        );
        assert_eq!(busy.headers()[RETRY_AFTER], "1");
        let failed = respond(
            &Rejection::UpstreamFailed {
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: None,
            },
            None,
        );
        assert_eq!(failed.headers()[RETRY_AFTER], "5");
        let not_allowed = respond(
            &Rejection::MethodNotAllowed {
                allow: HeaderValue::from_static("GET, HEAD"),
            },
            None,
        );
        assert_eq!(not_allowed.headers()[ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn check_rejections_keep_their_status_headers_and_details() {
        let refusal = checks::Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests",
            "rate_limit.exceeded",
        )
        .with_detail("retry after 12 seconds")
        .with_audit_detail("ip-minute")
        .with_header(RETRY_AFTER, HeaderValue::from_static("12"));
        let response = respond(&Rejection::from(refusal), None);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "12");
        let text = body_text(response).await;
        assert_eq!(
            text,
            "{\"code\":\"rate_limit.exceeded\",\"details\":[\"retry after 12 seconds\"],\"message\":\"too many requests\",\"status\":\"ERROR\"}\n"
        );
        assert!(!text.contains("ip-minute"));
    }

    #[tokio::test]
    async fn upstream_details_never_reach_the_client() {
        let response = respond(
            &Rejection::UpstreamUnreachable("connect /run/secret/worker.sock: refused".into()),
            None,
        );
        assert!(!body_text(response).await.contains("secret"));
    }
}
