//! Authenticate stage: credentials → [`Principal`].
//!
//! In: the request headers, the route's [`AuthMode`] and the current time.
//! Out: the principal (or `None` for an anonymous caller on a route that
//! allows one), or a 401 with `WWW-Authenticate`. A request carries at most
//! one credential: `X-API-Key` ([`api_key`](super::api_key)) or
//! `Authorization: Bearer` ([`jwt`](super::jwt), which also verifies the
//! gateway's own [`session_token`](super::session_token)s). Sending both is
//! refused rather than guessing which one counts.
//!
//! Principals are the opaque ids of `tradehabit_shared::headers::PRINCIPAL`:
//! `jwt:<iss>|<sub>` (issuers never contain `|`, so this is unambiguous),
//! `key:<id>` and `session:<id>`.

use std::collections::BTreeSet;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use time::OffsetDateTime;
use tradehabit_shared::headers::MAX_PRINCIPAL_BYTES;

use super::api_key::{ApiKeyError, ApiKeys};
use super::jwt::{IssuerOrigin, JwtError, JwtVerifier, VerifiedToken};
use super::session_token::{GatewayTokenError, GatewayTokens, KIND_API_KEY, KIND_SESSION};
use super::Rejection;

/// The API key header.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Challenge sent when credentials are missing.
const CHALLENGE: &str = "Bearer realm=\"tradehabit\"";

/// Challenge sent when a bearer token was refused (RFC 6750 §3.1).
const CHALLENGE_INVALID_TOKEN: &str = "Bearer realm=\"tradehabit\", error=\"invalid_token\"";

/// Challenge sent when an API key was refused.
const CHALLENGE_API_KEY: &str = "ApiKey realm=\"tradehabit\", header=\"X-API-Key\"";

/// How a route treats credentials.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// A valid credential is required (the default).
    #[default]
    Required,
    /// Credentials are verified when present; without them the caller is
    /// anonymous (the worker's shared anonymous space).
    Optional,
    /// Credentials are not looked at; every caller is anonymous.
    None,
}

/// How a principal authenticated, as forwarded in
/// `tradehabit_shared::headers::AUTH_METHOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A token from a configured issuer.
    Jwt,
    /// An API key, directly or through a key-exchange token.
    ApiKey,
    /// A gateway browser session.
    Session,
}

impl AuthMethod {
    /// The forwarded header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api-key",
            Self::Session => "session",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The opaque id forwarded to the worker.
    pub id: String,
    /// How it authenticated.
    pub method: AuthMethod,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
}

impl Principal {
    /// The scopes as one space-separated header value.
    pub fn scopes_header(&self) -> String {
        self.scopes
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No credential on a route that requires one.
    #[error("no credentials")]
    Missing,
    /// Both an API key and a bearer token, or a header repeated.
    #[error("more than one credential")]
    Ambiguous,
    /// `Authorization` with a scheme other than Bearer.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    /// The bearer token was refused.
    #[error("{0}")]
    Jwt(JwtError),
    /// The API key was refused.
    #[error("{0}")]
    ApiKey(ApiKeyError),
    /// A gateway token no longer stands for a principal.
    #[error("{0}")]
    GatewayToken(GatewayTokenError),
    /// The principal id would be too long to forward.
    #[error("principal too long")]
    PrincipalTooLong,
}

impl AuthFailure {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "auth.missing",
            Self::Ambiguous => "auth.ambiguous",
            Self::UnsupportedScheme => "auth.unsupported_scheme",
            Self::Jwt(err) => err.reason(),
            Self::ApiKey(err) => err.reason(),
            Self::GatewayToken(err) => err.reason(),
            Self::PrincipalTooLong => "auth.principal_too_long",
        }
    }
}

impl From<AuthFailure> for Rejection {
    fn from(failure: AuthFailure) -> Self {
        let challenge = match &failure {
            AuthFailure::Jwt(_) | AuthFailure::GatewayToken(_) | AuthFailure::PrincipalTooLong => {
                CHALLENGE_INVALID_TOKEN
            }
            AuthFailure::ApiKey(_) => CHALLENGE_API_KEY,
            AuthFailure::Missing | AuthFailure::Ambiguous | AuthFailure::UnsupportedScheme => {
                CHALLENGE
            }
        };
        let mut rejection = match &failure {
            // Only an otherwise valid token gets this far: say what to fix.
            AuthFailure::Jwt(JwtError::WrongType { required }) => Rejection::new(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not of the required type",
                failure.reason(),
            )
            .with_detail(format!("the token's typ header must be {required:?}")),
            _ => Rejection::new(
                StatusCode::UNAUTHORIZED,
                "authentication required",
                failure.reason(),
            ),
        }
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        rejection.audit_detail = match &failure {
            AuthFailure::ApiKey(err) => err.key_id().map(|id| format!("key {id}")),
            AuthFailure::GatewayToken(GatewayTokenError::KeyInactive(id)) => {
                Some(format!("key {id}"))
            }
            AuthFailure::Jwt(JwtError::MissingClaim(claim)) => Some(format!("claim {claim}")),
            AuthFailure::Jwt(JwtError::ForbiddenHeader(param)) => Some(format!("header {param}")),
            _ => None,
        };
        rejection
    }
}

/// Everything authentication needs, built once from the policy.
#[derive(Debug, Clone)]
pub struct Authenticator {
    api_keys: ApiKeys,
    jwt: JwtVerifier,
    tokens: GatewayTokens,
}

impl Authenticator {
    /// Combines the validated sections; the gateway's own issuer is added
    /// to the verifier when sessions or key exchange are enabled.
    pub fn new(api_keys: ApiKeys, jwt: JwtVerifier, tokens: GatewayTokens) -> Self {
        let jwt = match tokens.issuer() {
            Some(issuer) => jwt.with_issuer(issuer),
            None => jwt,
        };
        Self {
            api_keys,
            jwt,
            tokens,
        }
    }

    /// The API keys (for `POST /auth/token`).
    pub fn api_keys(&self) -> &ApiKeys {
        &self.api_keys
    }

    /// The same, with these API keys instead (a dry run's probe keys).
    pub(crate) fn with_api_keys(&self, api_keys: ApiKeys) -> Self {
        Self {
            api_keys,
            ..self.clone()
        }
    }

    /// The gateway token settings (for `POST /auth/session` and `/auth/token`).
    pub fn tokens(&self) -> &GatewayTokens {
        &self.tokens
    }

    /// Authenticates a request under `mode` at instant `now`.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        mode: AuthMode,
        now: OffsetDateTime,
    ) -> Result<Option<Principal>, AuthFailure> {
        if mode == AuthMode::None {
            return Ok(None);
        }
        let credential = credential(headers)?;
        let principal = match credential {
            None if mode == AuthMode::Optional => return Ok(None),
            None => return Err(AuthFailure::Missing),
            Some(Credential::ApiKey(value)) => {
                let key = self
                    .api_keys
                    .check(value.as_bytes(), now)
                    .map_err(AuthFailure::ApiKey)?;
                Principal {
                    id: format!("key:{}", key.id),
                    method: AuthMethod::ApiKey,
                    scopes: key.scopes,
                }
            }
            Some(Credential::Bearer(token)) => {
                let verified = self.jwt.verify(token).map_err(AuthFailure::Jwt)?;
                self.principal_for(verified, now)?
            }
        };
        if principal.id.len() > MAX_PRINCIPAL_BYTES {
            return Err(AuthFailure::PrincipalTooLong);
        }
        Ok(Some(principal))
    }

    fn principal_for(
        &self,
        token: VerifiedToken,
        now: OffsetDateTime,
    ) -> Result<Principal, AuthFailure> {
        if token.origin == IssuerOrigin::External {
            return Ok(Principal {
                id: format!("jwt:{}|{}", token.issuer, token.subject),
                method: AuthMethod::Jwt,
                scopes: token.scopes,
            });
        }
        // Gateway tokens stand for their principal only while the feature
        // and, for exchanged keys, the key itself are still active; scopes
        // are limited to what the current policy grants.
        match token.gateway_kind.as_deref() {
            Some(KIND_SESSION) => {
                let granted = self
                    .tokens
                    .session_scopes()
                    .ok_or(AuthFailure::GatewayToken(GatewayTokenError::Disabled(
                        "session",
                    )))?;
                Ok(Principal {
                    id: format!("session:{}", token.subject),
                    method: AuthMethod::Session,
                    scopes: token.scopes.intersection(granted).cloned().collect(),
                })
            }
            Some(KIND_API_KEY) => {
                if self.tokens.exchange().is_none() {
                    return Err(AuthFailure::GatewayToken(GatewayTokenError::Disabled(
                        "key exchange",
                    )));
                }
                let granted = self
                    .api_keys
                    .active_scopes(&token.subject, now)
                    .ok_or_else(|| {
                        AuthFailure::GatewayToken(GatewayTokenError::KeyInactive(
                            token.subject.clone(),
                        ))
                    })?;
                Ok(Principal {
                    id: format!("key:{}", token.subject),
                    method: AuthMethod::ApiKey,
                    scopes: token.scopes.intersection(granted).cloned().collect(),
                })
            }
            _ => Err(AuthFailure::GatewayToken(GatewayTokenError::UnknownKind)),
        }
    }
}

enum Credential<'h> {
    ApiKey(&'h HeaderValue),
    Bearer(&'h str),
}

/// The one credential a request carries, if any.
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, AuthFailure> {
    let mut keys = headers.get_all(X_API_KEY).iter();
    let mut auths = headers.get_all(AUTHORIZATION).iter();
    let key = keys.next();
    let auth = auths.next();
    if keys.next().is_some() || auths.next().is_some() || (key.is_some() && auth.is_some()) {
        return Err(AuthFailure::Ambiguous);
    }
    if let Some(key) = key {
        return Ok(Some(Credential::ApiKey(key)));
    }
    let Some(auth) = auth else {
        return Ok(None);
    };
    let text = auth.to_str().map_err(|_| AuthFailure::UnsupportedScheme)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthFailure::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::UnsupportedScheme);
    }
    Ok(Some(Credential::Bearer(token.trim())))
}

#[cfg(test)]
mod tests;
