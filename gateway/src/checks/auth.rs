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
mod tests {
    use super::*;
    use crate::checks::api_key::{self, keygen, ApiKeysRaw};
    use crate::checks::jwt::JwtRaw;
    use crate::checks::problems::Problems;
    use crate::checks::secret::tests::{context, env_of};
    use crate::checks::secret::Secret;
    use crate::checks::session_token::{self, TokensRaw};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;
    use std::path::Path;
    use time::macros::datetime;

    const PEPPER: &str = "pepper-pepper-pepper-pepper-pepper!";
    const IDP_SECRET: &str = "idp-secret-idp-secret-idp-secret-0123";
    const TOKEN_SECRET: &str = "gateway-token-secret-0123456789abcdef";
    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    struct Setup {
        auth: Authenticator,
        ci_key: String,
        revoked_key: String,
    }

    impl Setup {
        /// Authenticates a request carrying `authorization` on a route
        /// that requires credentials.
        fn authorize(&self, authorization: &str) -> Result<Option<Principal>, AuthFailure> {
            self.auth.authenticate(
                &headers(&[("authorization", authorization)]),
                AuthMode::Required,
                NOW,
            )
        }
    }

    fn setup(tokens_toml: &str) -> Setup {
        let pepper = Secret::new(PEPPER.as_bytes().to_vec());
        let ci = keygen(
            &pepper,
            "ci",
            &["trades:read".into()],
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        let old = keygen(&pepper, "old", &[], &mut rand::rngs::OsRng).unwrap();
        let env = env_of(&[
            ("PEPPER", PEPPER),
            ("IDP", IDP_SECRET),
            ("TOKENS", TOKEN_SECRET),
        ]);
        let ctx = context(&env, Path::new("/"));
        let mut problems = Problems::new();
        let keys_raw: ApiKeysRaw = toml::from_str(&format!(
            "pepper = {{ env = \"PEPPER\" }}\nkeys = [{}, {}]",
            ci.policy_entry,
            old.policy_entry.replace(" }", ", revoked = true }")
        ))
        .unwrap();
        let jwt_raw: JwtRaw = toml::from_str(
            r#"
            [[issuers]]
            issuer = "https://idp.example/"
            audiences = ["api"]
            algorithms = ["HS256"]
            secret = { env = "IDP" }
            "#,
        )
        .unwrap();
        let tokens_raw: TokensRaw = toml::from_str(tokens_toml).unwrap();
        let keys = api_key::validate(&keys_raw, "api_keys", &ctx, &mut problems).unwrap();
        let jwt = crate::checks::jwt::validate(&jwt_raw, "jwt", &ctx, &mut problems).unwrap();
        let tokens = session_token::validate(&tokens_raw, "tokens", &ctx, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems}");
        Setup {
            auth: Authenticator::new(keys, jwt, tokens),
            ci_key: ci.key,
            revoked_key: old.key,
        }
    }

    const TOKENS_ON: &str = r#"
        secret = { env = "TOKENS" }
        session = { enabled = true, scopes = ["trades:read"] }
        exchange = { enabled = true }
    "#;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn idp_token(sub: &str) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"iss": "https://idp.example/", "aud": "api", "sub": sub, "exp": now + 600, "scp": ["trades:read"]});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(IDP_SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn api_key_principal() {
        let s = setup("");
        let principal = s
            .auth
            .authenticate(
                &headers(&[("x-api-key", &s.ci_key)]),
                AuthMode::Required,
                NOW,
            )
            .unwrap()
            .unwrap();
        assert_eq!(principal.id, "key:ci");
        assert_eq!(principal.method.as_str(), "api-key");
        assert_eq!(principal.scopes_header(), "trades:read");
    }

    #[test]
    fn jwt_principal_is_issuer_and_subject() {
        let s = setup("");
        let bearer = format!("Bearer {}", idp_token("alice"));
        let principal = s.authorize(&bearer).unwrap().unwrap();
        assert_eq!(principal.id, "jwt:https://idp.example/|alice");
        assert_eq!(principal.method, AuthMethod::Jwt);
        // The scheme is case-insensitive.
        let lower = format!("bearer {}", idp_token("alice"));
        assert!(s.authorize(&lower).is_ok());
    }

    #[test]
    fn failures_are_401_with_a_challenge_and_a_precise_reason() {
        let s = setup("");
        let cases: Vec<(HeaderMap, &str, &str)> = vec![
            (headers(&[]), "auth.missing", CHALLENGE),
            (
                headers(&[("x-api-key", "th_wrong")]),
                "api_key.unknown",
                CHALLENGE_API_KEY,
            ),
            (
                headers(&[("x-api-key", &s.revoked_key)]),
                "api_key.revoked",
                CHALLENGE_API_KEY,
            ),
            (
                headers(&[("authorization", "Basic dTpw")]),
                "auth.unsupported_scheme",
                CHALLENGE,
            ),
            (
                headers(&[("authorization", "Bearer x.y.z")]),
                "jwt.malformed",
                CHALLENGE_INVALID_TOKEN,
            ),
            (
                headers(&[
                    ("x-api-key", &s.ci_key),
                    ("authorization", &format!("Bearer {}", idp_token("a"))),
                ]),
                "auth.ambiguous",
                CHALLENGE,
            ),
            (
                headers(&[("x-api-key", &s.ci_key), ("x-api-key", &s.ci_key)]),
                "auth.ambiguous",
                CHALLENGE,
            ),
        ];
        for (request, reason, challenge) in cases {
            let failure = s
                .auth
                .authenticate(&request, AuthMode::Required, NOW)
                .unwrap_err();
            let rejection = Rejection::from(failure);
            assert_eq!(rejection.status, StatusCode::UNAUTHORIZED, "{reason}");
            assert_eq!(rejection.reason, reason);
            assert_eq!(rejection.message, "authentication required");
            assert_eq!(
                rejection.headers,
                vec![(WWW_AUTHENTICATE, HeaderValue::from_static(challenge))]
            );
            let body = String::from_utf8(rejection.envelope().to_bytes()).unwrap();
            assert!(
                !body.contains(&s.ci_key) && !body.contains("th_wrong"),
                "{body}"
            );
        }
        let revoked = s
            .auth
            .authenticate(
                &headers(&[("x-api-key", &s.revoked_key)]),
                AuthMode::Required,
                NOW,
            )
            .unwrap_err();
        assert_eq!(
            Rejection::from(revoked).audit_detail.as_deref(),
            Some("key old")
        );
    }

    #[test]
    fn optional_and_none_modes() {
        let s = setup("");
        assert_eq!(
            s.auth.authenticate(&headers(&[]), AuthMode::Optional, NOW),
            Ok(None)
        );
        // Present credentials are still verified on optional routes.
        assert!(s
            .auth
            .authenticate(
                &headers(&[("x-api-key", "th_wrong")]),
                AuthMode::Optional,
                NOW
            )
            .is_err());
        assert_eq!(
            s.auth
                .authenticate(&headers(&[("x-api-key", "th_wrong")]), AuthMode::None, NOW),
            Ok(None)
        );
    }

    #[test]
    fn session_tokens_give_session_principals() {
        let s = setup(TOKENS_ON);
        let issued = s
            .auth
            .tokens()
            .issue_session(
                jsonwebtoken::get_current_timestamp(),
                &mut rand::rngs::OsRng,
            )
            .unwrap();
        let bearer = format!("Bearer {}", issued.access_token);
        let principal = s.authorize(&bearer).unwrap().unwrap();
        assert_eq!(principal.id, issued.principal);
        assert_eq!(principal.method, AuthMethod::Session);

        // After sessions are switched off (a reload), the token is refused.
        let off = setup("");
        let err = off.authorize(&bearer).unwrap_err();
        assert_eq!(err.reason(), "jwt.unknown_issuer");
    }

    #[test]
    fn exchanged_key_tokens_follow_the_key() {
        let s = setup(TOKENS_ON);
        let key = s.auth.api_keys().check(s.ci_key.as_bytes(), NOW).unwrap();
        let issued = s
            .auth
            .tokens()
            .issue_for_key(&key, jsonwebtoken::get_current_timestamp())
            .unwrap();
        let bearer = format!("Bearer {}", issued.access_token);
        let principal = s.authorize(&bearer).unwrap().unwrap();
        assert_eq!(principal.id, "key:ci");
        assert_eq!(principal.method, AuthMethod::ApiKey);
        assert_eq!(principal.scopes_header(), "trades:read");

        // A token minted for a key that is now revoked is refused.
        let revoked = crate::checks::api_key::KeyMatch {
            id: "old".into(),
            scopes: BTreeSet::new(),
        };
        let stale = s
            .auth
            .tokens()
            .issue_for_key(&revoked, jsonwebtoken::get_current_timestamp())
            .unwrap();
        let err = s
            .authorize(&format!("Bearer {}", stale.access_token))
            .unwrap_err();
        assert_eq!(err.reason(), "token.key_inactive");
    }

    #[test]
    fn overlong_principals_are_refused() {
        // 256 characters, the longest issuer accepted.
        let issuer = format!("https://{}/", "i".repeat(247));
        let env = env_of(&[("IDP", IDP_SECRET)]);
        let mut problems = Problems::new();
        let jwt_raw: JwtRaw = toml::from_str(&format!(
            "[[issuers]]\nissuer = \"{issuer}\"\naudiences = [\"api\"]\nalgorithms = [\"HS256\"]\nsecret = {{ env = \"IDP\" }}"
        ))
        .unwrap();
        let jwt = crate::checks::jwt::validate(
            &jwt_raw,
            "jwt",
            &context(&env, Path::new("/")),
            &mut problems,
        )
        .unwrap();
        let auth = Authenticator::new(ApiKeys::empty(), jwt, GatewayTokens::default());
        let token = |sub: &str| {
            let now = jsonwebtoken::get_current_timestamp();
            let claims = json!({"iss": issuer, "aud": "api", "sub": sub, "exp": now + 600});
            let token = encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(IDP_SECRET.as_bytes()),
            )
            .unwrap();
            headers(&[("authorization", &format!("Bearer {token}"))])
        };
        assert!(auth
            .authenticate(&token("short"), AuthMode::Required, NOW)
            .is_ok());
        assert_eq!(
            auth.authenticate(&token(&"s".repeat(255)), AuthMode::Required, NOW),
            Err(AuthFailure::PrincipalTooLong)
        );
    }
}
