//! Which check refused a request and why, in the audit log's words.
//!
//! [`decision`] is the one mapping from a [`Rejection`] to the audit
//! `decision` (the check) and `reason` (precise, dotted, stable). The reason
//! is the rejection's envelope `code` ([`Rejection::code`], listed in
//! `docs/errors.md`), so the client and the audit log name the same cause.

use crate::reject::Rejection;

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

    const fn refused(check: &'static str, reason: &'static str) -> Decision {
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

/// The check and precise reason for a rejection.
///
/// An authentication failure maps to
/// `Decision { auth_failure: Some((method, reason)), .. }` and a rate limit
/// to `Decision { is_rate_limited: true, .. }`; the metrics follow.
pub(crate) fn decision(rejection: &Rejection) -> Decision {
    match rejection {
        Rejection::Check(check) => from_check(check),
        // The envelope's code is the reason; the check is its first part.
        _ => {
            let reason = rejection.code();
            let check = reason.split_once('.').map_or(reason, |(check, _)| check);
            Decision::refused(check, reason)
        }
    }
}

/// The policy checks carry their own dotted reason (`jwt.expired`,
/// `rate_limit.ip`): the check is the part before the first dot. A 401 is
/// an authentication failure (`auth_failures_total{method, reason}`), a
/// 429 a rate limit (`rate_limited_total`).
fn from_check(check: &crate::checks::Rejection) -> Decision {
    let reason = check.reason;
    let (name, why) = reason.split_once('.').unwrap_or((reason, reason));
    Decision {
        outcome: name,
        reason: Some(reason),
        auth_failure: (check.status == http::StatusCode::UNAUTHORIZED).then_some((name, why)),
        is_rate_limited: check.status == http::StatusCode::TOO_MANY_REQUESTS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_of_issue_5_feed_auth_failures_and_rate_limits() {
        let expired = crate::checks::Rejection::new(
            http::StatusCode::UNAUTHORIZED,
            "Authentication required",
            "jwt.expired",
        );
        let d = decision(&Rejection::Check(Box::new(expired)));
        assert_eq!((d.outcome, d.reason), ("jwt", Some("jwt.expired")));
        assert_eq!(d.auth_failure, Some(("jwt", "expired")));
        let limited = crate::checks::Rejection::new(
            http::StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "rate_limit.ip",
        );
        assert!(decision(&Rejection::Check(Box::new(limited))).is_rate_limited);
    }

    #[test]
    fn reasons_start_with_their_check() {
        let cases = [
            Rejection::NoRoute,
            Rejection::BodyTooLarge { limit: 1 },
            Rejection::PathRefused("x"),
            Rejection::UpstreamTimeout,
        ];
        for rejection in &cases {
            let d = decision(rejection);
            assert!(d.is_refused());
            assert!(d.reason.unwrap().starts_with(&format!("{}.", d.outcome)));
        }
        assert_eq!(
            decision(&Rejection::NoRoute).reason,
            Some("route.not_found")
        );
        assert_eq!(
            decision(&Rejection::BodyTooLarge { limit: 1 }).reason,
            Some("body.too_large")
        );
    }
}
