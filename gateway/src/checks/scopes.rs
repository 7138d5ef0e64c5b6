//! Authorize stage: a route's scopes, all required.
//!
//! In: the route's required scopes and the principal's granted scopes (or
//! none for an anonymous caller). Out: allow, 401 when the route needs
//! scopes and nobody authenticated, or 403 `insufficient_scope` when a
//! valid principal lacks one (RFC 6750 §3.1). Scope names are not secret:
//! the answer names the missing ones so a client can ask for them.

use std::collections::BTreeSet;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, StatusCode};

use super::problems::{index, Problems};
use super::{is_scope_token, Rejection};

/// Validates a route's `scopes` list at key path `path`.
pub fn validate(scopes: &[String], path: &str, problems: &mut Problems) -> Option<Vec<String>> {
    let before = problems.len();
    let mut seen = BTreeSet::new();
    for (i, scope) in scopes.iter().enumerate() {
        if !is_scope_token(scope) {
            problems.push(index(path, i), format!("{scope:?} is not a valid scope"));
        } else if !seen.insert(scope) {
            problems.push(index(path, i), format!("{scope:?} is listed twice"));
        }
    }
    (problems.len() == before).then(|| scopes.to_vec())
}

/// Why a request was not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The route requires scopes and the caller is anonymous.
    #[error("authentication required for a scoped route")]
    Unauthenticated,
    /// The principal lacks these scopes.
    #[error("missing scopes: {}", .0.join(" "))]
    Missing(Vec<String>),
}

impl From<ScopeError> for Rejection {
    fn from(err: ScopeError) -> Self {
        match err {
            ScopeError::Unauthenticated => Rejection::new(
                StatusCode::UNAUTHORIZED,
                "authentication required",
                "authz.unauthenticated",
            )
            .with_header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tradehabit\""),
            ),
            ScopeError::Missing(missing) => {
                let list = missing.join(" ");
                let challenge = format!(
                    "Bearer realm=\"tradehabit\", error=\"insufficient_scope\", scope=\"{list}\""
                );
                Rejection::new(
                    StatusCode::FORBIDDEN,
                    "insufficient scope",
                    "authz.missing_scope",
                )
                .with_detail(format!("required scopes: {list}"))
                .with_audit_detail(list)
                .with_header(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).expect("scope tokens are header-safe"),
                )
            }
        }
    }
}

/// Checks that `granted` holds every scope in `required`.
pub fn check(required: &[String], granted: Option<&BTreeSet<String>>) -> Result<(), ScopeError> {
    if required.is_empty() {
        return Ok(());
    }
    let granted = granted.ok_or(ScopeError::Unauthenticated)?;
    let missing: Vec<String> = required
        .iter()
        .filter(|s| !granted.contains(*s))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ScopeError::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(scopes: &[&str]) -> BTreeSet<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    fn list(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_required_scope_must_be_granted() {
        let required = list(&["trades:read", "trades:write"]);
        assert!(check(&required, Some(&set(&["trades:read", "trades:write", "x"]))).is_ok());
        assert_eq!(
            check(&required, Some(&set(&["trades:read"]))),
            Err(ScopeError::Missing(list(&["trades:write"])))
        );
        assert_eq!(check(&required, None), Err(ScopeError::Unauthenticated));
        assert!(check(&[], None).is_ok());
        assert!(check(&[], Some(&set(&[]))).is_ok());
    }

    #[test]
    fn missing_scope_is_a_403_naming_it() {
        let rejection = Rejection::from(ScopeError::Missing(list(&["trades:write"])));
        assert_eq!(rejection.status, StatusCode::FORBIDDEN);
        assert_eq!(rejection.reason, "authz.missing_scope");
        assert_eq!(rejection.details, vec!["required scopes: trades:write"]);
        assert_eq!(
            rejection.headers[0].1,
            "Bearer realm=\"tradehabit\", error=\"insufficient_scope\", scope=\"trades:write\""
        );
        assert_eq!(
            Rejection::from(ScopeError::Unauthenticated).status,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn scope_lists_are_validated() {
        let mut problems = Problems::new();
        assert!(validate(
            &list(&["ok", "bad scope", "ok"]),
            "routes[0].scopes",
            &mut problems
        )
        .is_none());
        assert!(problems.has("routes[0].scopes[1]"));
        assert!(problems.has("routes[0].scopes[2]"));
    }
}
