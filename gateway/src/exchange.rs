//! The exchange: the one value a request's facts travel the path in, and
//! what both the audit line and the metrics are written from.
//!
//! [`Started`] is noted on arrival, the [`Trail`] is filled in by the
//! checks as they pass, the [`Decision`] is taken by the answer, and the
//! [`Exchange`] gathers them with the connection and the identity for the
//! record stage (`record.rs`).
//!
//! Ground floor: it holds facts and plain accessors only, and imports
//! nothing above the connection facts (`conn`), the identity and the
//! body's send progress. How a refusal maps to its decision is the audit
//! log's (`audit/decision.rs`); how the facts are written is `audit.rs`'s
//! and `metrics.rs`'s.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Uri};
use time::OffsetDateTime;

use crate::body::progress::Progress;
use crate::conn::ConnInfo;
use crate::identity::Identity;

/// User agents are cut to this many characters.
const MAX_USER_AGENT_CHARS: usize = 128;

/// One request as it travelled the path: who sent it, on which
/// connection, what the checks learnt (route, principal, upstream time),
/// how it was decided, and how much was read.
pub(crate) struct Exchange<'a> {
    /// The connection it came on (peer, TLS facts).
    pub(crate) conn: &'a ConnInfo,
    /// Client IP and request id.
    pub(crate) identity: &'a Identity,
    /// Arrival: time, method, path, user agent, declared length.
    pub(crate) started: &'a Started,
    /// What the checks reported on the way: route, principal, upstream time.
    pub(crate) trail: &'a Trail,
    /// Allowed, or refused and why.
    pub(crate) decision: Decision,
    /// Request body bytes read so far.
    pub(crate) bytes_in: u64,
    /// The send progress of its stream or connection, if watched: a stall
    /// becomes the line's decision.
    pub(crate) progress: Option<&'a Arc<Progress>>,
    /// When its answer's head was ready: the end of the durations the
    /// metrics and the audit line give, read from the clock once for both.
    pub(crate) answered_at: Instant,
}

impl<'a> Exchange<'a> {
    /// The request id as text (`invalid` if it is not visible ASCII).
    pub(crate) fn request_id(&self) -> &'a str {
        self.identity.request_id.to_str().unwrap_or("invalid")
    }

    /// From arrival to the answer's head.
    pub(crate) fn duration(&self) -> Duration {
        self.answered_at
            .saturating_duration_since(self.started.instant())
    }

    /// From the hand-over to the upstream to the answer's head, if it was
    /// forwarded.
    pub(crate) fn upstream_duration(&self) -> Option<Duration> {
        let forwarded_at = self.trail.forwarded_at.get()?;
        Some(self.answered_at.saturating_duration_since(*forwarded_at))
    }
}

/// What is known about a request when it arrives.
pub(crate) struct Started {
    at: Instant,
    ts: OffsetDateTime,
    method: Method,
    /// The request's target: a shared handle on hyper's bytes, not a copy.
    uri: Uri,
    user_agent: Option<HeaderValue>,
    declared_length: Option<u64>,
}

impl Started {
    /// Notes the arrival of `request`: its target (only its path is ever
    /// read), its method and its user agent. Nothing else is kept.
    pub(crate) fn now<B>(request: &Request<B>) -> Started {
        Started {
            at: crate::clock::now_std(),
            ts: crate::clock::now_utc(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            declared_length: request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok()?.parse().ok()),
        }
    }

    /// The request's method.
    pub(crate) fn method(&self) -> &Method {
        &self.method
    }

    /// The request's path, without the query.
    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }

    /// The user agent as text (bytes that are not UTF-8 replaced), cut to
    /// [`MAX_USER_AGENT_CHARS`] characters.
    pub(crate) fn user_agent(&self) -> Option<Cow<'_, str>> {
        let text = String::from_utf8_lossy(self.user_agent.as_ref()?.as_bytes());
        // No more bytes than the limit in characters: nothing to cut.
        if text.len() <= MAX_USER_AGENT_CHARS {
            return Some(text);
        }
        let end = text
            .char_indices()
            .nth(MAX_USER_AGENT_CHARS)
            .map_or(text.len(), |(at, _)| at);
        Some(match text {
            Cow::Borrowed(text) => Cow::Borrowed(&text[..end]),
            Cow::Owned(mut text) => {
                text.truncate(end);
                Cow::Owned(text)
            }
        })
    }

    /// The `Content-Length` the client declared, if any.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        self.declared_length
    }

    /// The wall-clock time of arrival.
    pub(crate) fn arrived_at(&self) -> OffsetDateTime {
        self.ts
    }

    /// The wall-clock time of arrival as Unix time in milliseconds.
    pub(crate) fn unix_millis(&self) -> u64 {
        let seconds = u64::try_from(self.ts.unix_timestamp()).unwrap_or(0);
        seconds * 1000 + u64::from(self.ts.millisecond())
    }

    /// The monotonic instant of arrival, for durations measured later.
    pub(crate) fn instant(&self) -> Instant {
        self.at
    }
}

/// What the checks learn along the way, filled in as they pass.
#[derive(Default)]
pub(crate) struct Trail {
    route: OnceLock<String>,
    forwarded_at: OnceLock<Instant>,
    /// Set by the auth check: the method and the raw principal id; the
    /// principal is only ever logged as a pseudonym.
    authenticated: OnceLock<(&'static str, String)>,
    /// Set when a rate-limit stage let the request through uncounted (the
    /// shared store was unavailable, `on_store_error = "allow"`): the
    /// audit line's `reason` of an allowed request.
    rate_limit_skipped: OnceLock<&'static str>,
}

impl Trail {
    /// The route the request matched.
    pub(crate) fn routed(&self, name: &str) {
        let _ = self.route.set(name.to_string());
    }

    /// Who the caller is; logged only as `auth_method` and a pseudonym.
    pub(crate) fn authenticated(&self, method: &'static str, principal: &str) {
        let _ = self.authenticated.set((method, principal.to_string()));
    }

    /// A rate-limit stage could not count the request and let it through.
    pub(crate) fn rate_limit_skipped(&self, reason: &'static str) {
        let _ = self.rate_limit_skipped.set(reason);
    }

    /// The moment the request goes to the upstream.
    pub(crate) fn forwarding(&self) {
        let _ = self.forwarded_at.set(crate::clock::now_std());
    }

    /// The matched route's name, if any.
    pub(crate) fn route(&self) -> Option<&str> {
        self.route.get().map(String::as_str)
    }

    /// The auth method and the raw principal id, if authenticated.
    pub(crate) fn principal(&self) -> Option<(&'static str, &str)> {
        self.authenticated
            .get()
            .map(|(method, principal)| (*method, principal.as_str()))
    }

    /// Why a rate-limit stage let the request through uncounted, if it did.
    pub(crate) fn rate_limit_skipped_reason(&self) -> Option<&'static str> {
        self.rate_limit_skipped.get().copied()
    }
}

/// What the pipeline decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// `allowed`, or the name of the check that refused (`route`, `body`, …).
    pub(crate) outcome: &'static str,
    /// The precise reason (`route.not_found`, `body.too_large`); `null` in
    /// the log when allowed.
    pub(crate) reason: Option<&'static str>,
    /// For authentication failures: the method that failed (`jwt`, …), fed
    /// to `auth_failures_total`.
    pub(crate) auth_failure: Option<(&'static str, &'static str)>,
    /// Whether a rate limit refused it (`rate_limited_total`).
    pub(crate) is_rate_limited: bool,
}

impl Decision {
    /// The request was forwarded.
    pub(crate) const ALLOWED: Decision = Decision {
        outcome: "allowed",
        reason: None,
        auth_failure: None,
        is_rate_limited: false,
    };

    /// Forwarded (or answered), but the response was abandoned because the
    /// client took none of its body for `limits.send_timeout`.
    pub(crate) const CLIENT_STALLED: Decision = Decision::refused("send", "send.client_stalled");

    /// Refused by `check` for `reason`.
    pub(crate) const fn refused(check: &'static str, reason: &'static str) -> Decision {
        Decision {
            outcome: check,
            reason: Some(reason),
            auth_failure: None,
            is_rate_limited: false,
        }
    }

    /// Whether the gateway (not the upstream) answered.
    pub(crate) fn is_refused(&self) -> bool {
        self.reason.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_agent_of(value: &[u8]) -> Option<String> {
        let request = Request::builder()
            .header(http::header::USER_AGENT, value)
            .body(())
            .unwrap();
        Started::now(&request).user_agent().map(Cow::into_owned)
    }

    #[test]
    fn the_user_agent_is_cut_to_its_limit_in_characters() {
        assert_eq!(user_agent_of(b"curl/8.5").as_deref(), Some("curl/8.5"));
        // Two bytes a character: over the limit in bytes, not in characters.
        let short = "é".repeat(MAX_USER_AGENT_CHARS);
        assert_eq!(user_agent_of(short.as_bytes()), Some(short.clone()));
        let long = "é".repeat(MAX_USER_AGENT_CHARS + 5);
        assert_eq!(user_agent_of(long.as_bytes()), Some(short));
        let ascii = "a".repeat(MAX_USER_AGENT_CHARS + 1);
        assert_eq!(
            user_agent_of(ascii.as_bytes()).map(|ua| ua.chars().count()),
            Some(MAX_USER_AGENT_CHARS)
        );
        // Bytes that are not UTF-8 become the replacement character.
        assert_eq!(user_agent_of(b"a\xffb").as_deref(), Some("a\u{fffd}b"));
    }
}
