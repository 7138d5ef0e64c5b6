//! The per-route policy checks, one module per check, in request order.
//!
//! Every check is a small pure function (or a method on a value built once
//! from the policy file): it takes only what it needs — request parts or a
//! few headers, the client address, a clock — does no I/O, and returns
//! either what the next stage needs or a typed failure that converts into a
//! [`Rejection`]. The pipeline that calls them lives in `policy.rs`.
//!
//! The client address they use comes from `identity` (the socket
//! peer, or `X-Forwarded-For` through trusted proxies).
//!
//! 1. [`cors`]: preflights are answered here, before authentication; every
//!    other response gets its CORS headers from here.
//! 2. [`request_rules`] (credentials in the URL only): refused before
//!    anything looks at credentials, so the refusal says why.
//! 3. [`rate_limit`] (per client IP): throttles credential guessing too.
//! 4. [`auth`]: API key ([`api_key`]) or bearer JWT ([`jwt`], including the
//!    gateway's own browser-session tokens from [`session_token`]) → a
//!    [`auth::Principal`].
//! 5. [`scopes`]: the route's scopes, all required.
//! 6. [`rate_limit`] (per principal).
//! 7. [`request_rules`]: query parameters, JSON body depth.
//! 8. [`upload`]: content type and, on the upload route, the multipart form.
//!
//! Configuration follows the same split: each module has a raw serde section
//! (`…Raw`, unknown keys rejected) and a `validate` function that reports
//! every problem with its key path into [`Problems`] and returns the typed
//! value only when the section is sound. Secrets are never in the file: see
//! [`secret`].

pub mod api_key;
pub mod auth;
pub mod cors;
pub mod jwt;
pub mod problems;
pub mod rate_limit;
pub mod request_rules;
pub mod scopes;
pub mod secret;
pub mod session_cookie;
pub mod session_token;
pub mod upload;

use std::borrow::Cow;

use http::{HeaderName, HeaderValue, StatusCode};
use tradehabit_shared::envelope::ErrorEnvelope;

pub use problems::Problems;

/// A request refused by one of the checks: what the client sees and what the
/// audit log records.
///
/// The client gets `status`, the generic `message`, client-safe `details`
/// (a parameter name, a limit) and `headers` (`WWW-Authenticate`,
/// `Retry-After`, …). The audit log gets `reason`, a stable dotted name such
/// as `jwt.expired`, and `audit_detail`, a non-secret fact for the operator
/// (an API key id, a JWT issuer) that is never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Generic client message.
    pub message: Cow<'static, str>,
    /// Client-safe specifics, shown in the envelope's `details`.
    pub details: Vec<String>,
    /// Precise, stable reason for the audit log (`jwt.expired`).
    pub reason: &'static str,
    /// Operator-only context for the audit log; never sent to the client.
    pub audit_detail: Option<String>,
    /// Extra response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection with no details, audit detail or extra headers.
    pub fn new(
        status: StatusCode,
        message: impl Into<Cow<'static, str>>,
        reason: &'static str,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            details: Vec::new(),
            reason,
            audit_detail: None,
            headers: Vec::new(),
        }
    }

    /// Adds a client-safe detail line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(detail.into());
        self
    }

    /// Sets the operator-only audit detail.
    pub fn with_audit_detail(mut self, detail: impl Into<String>) -> Self {
        self.audit_detail = Some(detail.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The JSON body the client receives.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope::new(self.reason, self.message.clone()).with_details(self.details.clone())
    }
}

/// `value`, marked so that HTTP/2 sends it as a literal never added to the
/// connection's HPACK table (RFC 7541 §6.2.3): for a value that changes
/// from one answer to the next (a request id, what is left of a quota),
/// indexing costs an insertion and evicts the fields that do recur
/// (`docs/benchmarks.md`, "HPACK and values that never recur"). HTTP/1.1
/// writes it as any other.
pub(crate) fn unindexed(mut value: http::HeaderValue) -> http::HeaderValue {
    value.set_sensitive(true);
    value
}

/// Truncates client-supplied text before it is echoed in a detail line, so
/// a hostile parameter name cannot make the answer arbitrarily large.
/// JSON escaping of control characters is the envelope's job.
pub(crate) fn echo_safe(text: &str) -> String {
    const MAX_ECHO_CHARS: usize = 64;
    if text.chars().count() <= MAX_ECHO_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_ECHO_CHARS).collect();
    short.push('…');
    short
}

/// Whether `scope` is a valid OAuth scope token (RFC 6749 §3.3: printable
/// ASCII except space, `"` and `\`). Scopes are joined with spaces in a
/// forwarded header, so anything else could smuggle extra scopes in.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 128
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_carries_code_message_and_details_only() {
        let rejection = Rejection::new(StatusCode::BAD_REQUEST, "bad", "query.unknown_parameter")
            .with_detail("x")
            .with_audit_detail("operator only");
        let body = String::from_utf8(rejection.envelope().to_bytes()).unwrap();
        assert_eq!(
            body,
            "{\"code\":\"query.unknown_parameter\",\"details\":[\"x\"],\"message\":\"bad\",\"status\":\"ERROR\"}\n"
        );
        assert!(!body.contains("operator only"));
    }

    #[test]
    fn echoed_text_is_truncated() {
        let long = "a".repeat(1000);
        let echoed = echo_safe(&long);
        assert_eq!(echoed.chars().count(), 65);
        assert_eq!(echo_safe("sigma"), "sigma");
    }

    #[test]
    fn scope_tokens() {
        assert!(is_scope_token("trades:read"));
        assert!(!is_scope_token(""));
        assert!(!is_scope_token("a b"));
        assert!(!is_scope_token("a\"b"));
        assert!(!is_scope_token("a\\b"));
        assert!(!is_scope_token("é"));
    }
}
