//! Which check refused a request and why, in the audit log's words.
//!
//! [`decision`] is the one mapping from a [`Rejection`] to the audit
//! `decision` (the check) and `reason` (precise, dotted, stable). The reason
//! is the rejection's envelope `code` ([`Rejection::code`], listed in
//! `docs/errors.md`), so the client and the audit log name the same cause.

use crate::exchange::Decision;
use crate::reject::Rejection;

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
