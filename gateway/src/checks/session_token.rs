//! Tokens the gateway signs itself: anonymous browser sessions
//! (`POST /auth/session`) and API-key exchange (`POST /auth/token`). Both
//! are off by default.
//!
//! * A **session** gives an anonymous browser a short-lived HS256 token
//!   with a random subject, so every browser gets its own isolated data
//!   space in the worker without accounts. The principal is
//!   `session:<subject>`. Issuing is rate limited per client IP.
//! * **Key exchange** turns a valid `X-API-Key` into a short-lived token
//!   carrying the key's identity (`key:<id>`, the same data space as the
//!   key itself) and scopes, so a browser app need not keep the key in
//!   memory. Every use re-checks the key: revoking or expiring it ends its
//!   tokens at once, and scopes removed from it are removed from them.
//!
//! Tokens: issuer and audience [`GATEWAY_ISSUER`], `sub`, `iat`, `exp`,
//! `scope`, and `th_kind` (`session` or `api-key`). They are verified by
//! the [`jwt`](super::jwt) module like any other token, through an issuer
//! entry added when either feature is on.

use std::collections::BTreeSet;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::api_key::KeyMatch;
use super::jwt::{Issuer, GATEWAY_ISSUER};
use super::problems::{join, Problems};
use super::rate_limit::{validate_quotas, QuotaSpec};
use super::secret::{self, LoadContext, Secret, SecretSourceRaw, MIN_SECRET_BYTES};
use super::session_cookie::{self, SessionCookieRaw, SessionCookies};
use super::{is_scope_token, problems::index};

/// Path of the session endpoint.
pub const SESSION_PATH: &str = "/auth/session";

/// Path of the key-exchange endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// Default session lifetime: one hour.
pub const DEFAULT_SESSION_TTL_SECONDS: u64 = 3600;

/// Default lifetime of a token obtained for an API key: 15 minutes.
pub const DEFAULT_EXCHANGE_TTL_SECONDS: u64 = 900;

/// Longest lifetime accepted for either kind: one day.
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// Default per-IP quotas for issuing tokens.
pub const DEFAULT_ISSUE_QUOTAS: &[&str] = &["10/minute", "100/day"];

/// `th_kind` of session tokens.
pub const KIND_SESSION: &str = "session";

/// `th_kind` of key-exchange tokens.
pub const KIND_API_KEY: &str = "api-key";

/// Random bytes in a session subject.
const SESSION_ID_BYTES: usize = 16;

/// The `[tokens]` section as written in the policy file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokensRaw {
    /// HS256 signing key for the gateway's tokens; required when either
    /// feature is enabled.
    pub secret: Option<SecretSourceRaw>,
    /// `POST /auth/session`.
    pub session: Option<SessionRaw>,
    /// `POST /auth/token`.
    pub exchange: Option<ExchangeRaw>,
    /// Cookie-carried sessions (`session_cookie.rs`).
    pub cookie: Option<SessionCookieRaw>,
}

/// `[tokens.session]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionRaw {
    /// Serve `POST /auth/session`. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Token lifetime. Default [`DEFAULT_SESSION_TTL_SECONDS`].
    pub ttl_seconds: Option<u64>,
    /// Scopes granted to every session.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Per-IP quotas for issuing. Default [`DEFAULT_ISSUE_QUOTAS`].
    pub rate_limit_per_ip: Option<Vec<String>>,
}

/// `[tokens.exchange]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRaw {
    /// Serve `POST /auth/token`. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Token lifetime. Default [`DEFAULT_EXCHANGE_TTL_SECONDS`].
    pub ttl_seconds: Option<u64>,
    /// Per-IP quotas for issuing. Default [`DEFAULT_ISSUE_QUOTAS`].
    pub rate_limit_per_ip: Option<Vec<String>>,
}

/// Settings of one enabled endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Token lifetime in seconds.
    pub ttl_seconds: u64,
    /// Per-IP quotas for issuing.
    pub rate_limit_per_ip: Vec<QuotaSpec>,
}

/// The validated `[tokens]` section.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct GatewayTokens {
    signing: Option<Secret>,
    session: Option<(Endpoint, BTreeSet<String>)>,
    exchange: Option<Endpoint>,
    cookie: Option<SessionCookies>,
}

impl fmt::Debug for GatewayTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayTokens")
            .field("session", &self.session)
            .field("exchange", &self.exchange)
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

/// Validates `[tokens]` at key path `path`.
pub fn validate(
    raw: &TokensRaw,
    path: &str,
    ctx: &LoadContext<'_>,
    problems: &mut Problems,
) -> Option<GatewayTokens> {
    let before = problems.len();
    let session = raw.session.as_ref().filter(|s| s.enabled).map(|s| {
        let path = join(path, "session");
        let endpoint = validate_endpoint(
            s.ttl_seconds.unwrap_or(DEFAULT_SESSION_TTL_SECONDS),
            s.rate_limit_per_ip.as_deref(),
            &path,
            problems,
        );
        for (i, scope) in s.scopes.iter().enumerate() {
            if !is_scope_token(scope) {
                problems.push(
                    index(&join(&path, "scopes"), i),
                    format!("{scope:?} is not a valid scope"),
                );
            }
        }
        (endpoint, s.scopes.iter().cloned().collect::<BTreeSet<_>>())
    });
    let exchange = raw.exchange.as_ref().filter(|e| e.enabled).map(|e| {
        validate_endpoint(
            e.ttl_seconds.unwrap_or(DEFAULT_EXCHANGE_TTL_SECONDS),
            e.rate_limit_per_ip.as_deref(),
            &join(path, "exchange"),
            problems,
        )
    });
    let signing = match &raw.secret {
        Some(source) if session.is_some() || exchange.is_some() => secret::load(
            source,
            &join(path, "secret"),
            ctx,
            MIN_SECRET_BYTES,
            problems,
        ),
        Some(_) => None,
        None if session.is_some() || exchange.is_some() => {
            problems.push(
                join(path, "secret"),
                "sessions or key exchange are enabled but no signing secret is configured",
            );
            None
        }
        None => None,
    };
    let cookie = session_cookie::validate(
        raw.cookie.as_ref(),
        session.is_some(),
        &join(path, "cookie"),
        problems,
    );
    (problems.len() == before).then_some(GatewayTokens {
        signing,
        session,
        exchange,
        cookie,
    })
}

fn validate_endpoint(
    ttl_seconds: u64,
    quotas: Option<&[String]>,
    path: &str,
    problems: &mut Problems,
) -> Endpoint {
    if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
        problems.push(
            join(path, "ttl_seconds"),
            format!("must be between 1 and {MAX_TTL_SECONDS}"),
        );
    }
    let defaults: Vec<String> = DEFAULT_ISSUE_QUOTAS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let quota_path = join(path, "rate_limit_per_ip");
    let texts = quotas.unwrap_or(&defaults);
    if texts.is_empty() {
        problems.push(&quota_path, "issuing tokens must be rate limited per IP");
    }
    Endpoint {
        ttl_seconds,
        rate_limit_per_ip: validate_quotas(texts, &quota_path, problems),
    }
}

/// A freshly issued token and what the client needs to know about it.
pub struct IssuedToken {
    /// The token itself.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Space-separated scopes.
    pub scope: String,
    /// The principal it stands for.
    pub principal: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("principal", &self.principal)
            .finish()
    }
}

impl IssuedToken {
    /// The JSON answer (RFC 6749 §5.1 shape), compact with sorted keys.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            access_token: &'a str,
            expires_in: u64,
            scope: &'a str,
            token_type: &'static str,
        }
        let mut body = serde_json::to_vec(&Body {
            access_token: &self.access_token,
            expires_in: self.expires_in,
            scope: &self.scope,
            token_type: "Bearer",
        })
        .expect("strings and numbers always serialise");
        body.push(b'\n');
        body
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'static str,
    aud: &'static str,
    sub: &'a str,
    iat: u64,
    exp: u64,
    scope: &'a str,
    th_kind: &'static str,
}

/// Why a gateway token does not stand for a principal any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayTokenError {
    /// The feature that issued it was switched off.
    #[error("{0} tokens are disabled")]
    Disabled(&'static str),
    /// The key behind an exchanged token is revoked, expired or gone.
    #[error("the API key {0} behind this token is no longer active")]
    KeyInactive(String),
    /// Unknown `th_kind`.
    #[error("unknown gateway token kind")]
    UnknownKind,
}

impl GatewayTokenError {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Disabled(_) => "token.disabled",
            Self::KeyInactive(_) => "token.key_inactive",
            Self::UnknownKind => "token.unknown_kind",
        }
    }
}

impl GatewayTokens {
    /// The issuer entry that lets the JWT verifier accept the gateway's
    /// tokens, when either feature is enabled.
    pub fn issuer(&self) -> Option<Issuer> {
        self.signing.as_ref().map(Issuer::gateway)
    }

    /// `POST /auth/session` settings, if enabled.
    pub fn session(&self) -> Option<&Endpoint> {
        self.session.as_ref().map(|(endpoint, _)| endpoint)
    }

    /// `POST /auth/token` settings, if enabled.
    pub fn exchange(&self) -> Option<&Endpoint> {
        self.exchange.as_ref()
    }

    /// The scopes sessions currently get (empty when sessions are off).
    pub fn session_scopes(&self) -> Option<&BTreeSet<String>> {
        self.session.as_ref().map(|(_, scopes)| scopes)
    }

    /// Cookie sessions (`[tokens.cookie]`), if enabled.
    pub fn cookie(&self) -> Option<&SessionCookies> {
        self.cookie.as_ref()
    }

    /// HMAC-SHA256 of `label` then `payload` under the signing secret
    /// (`session_cookie.rs`); `None` without a secret.
    pub(crate) fn mac(&self, label: &[u8], payload: &[u8]) -> Option<[u8; 32]> {
        Some(self.hmac(label, payload)?.finalize().into_bytes().into())
    }

    /// Whether `tag` is the MAC of `label` then `payload` (constant time).
    pub(crate) fn verify_mac(&self, label: &[u8], payload: &[u8], tag: &[u8]) -> bool {
        self.hmac(label, payload)
            .is_some_and(|mac| mac.verify_slice(tag).is_ok())
    }

    fn hmac(&self, label: &[u8], payload: &[u8]) -> Option<Hmac<Sha256>> {
        let secret = self.signing.as_ref()?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC accepts any key length");
        mac.update(label);
        mac.update(payload);
        Some(mac)
    }

    /// Issues a session token at `now` (Unix seconds), or `None` when
    /// sessions are off.
    pub fn issue_session<R: RngCore + CryptoRng>(
        &self,
        now: u64,
        rng: &mut R,
    ) -> Option<IssuedToken> {
        let (endpoint, scopes) = self.session.as_ref()?;
        let mut random = [0u8; SESSION_ID_BYTES];
        rng.fill_bytes(&mut random);
        let subject = format!("s_{}", URL_SAFE_NO_PAD.encode(random));
        let scope = join_scopes(scopes);
        let token = self.sign(&subject, &scope, KIND_SESSION, now, endpoint.ttl_seconds)?;
        Some(IssuedToken {
            access_token: token,
            expires_in: endpoint.ttl_seconds,
            scope,
            principal: format!("session:{subject}"),
        })
    }

    /// Issues a token for an API key that just authenticated, or `None`
    /// when key exchange is off.
    pub fn issue_for_key(&self, key: &KeyMatch, now: u64) -> Option<IssuedToken> {
        let endpoint = self.exchange.as_ref()?;
        let scope = join_scopes(&key.scopes);
        let token = self.sign(&key.id, &scope, KIND_API_KEY, now, endpoint.ttl_seconds)?;
        Some(IssuedToken {
            access_token: token,
            expires_in: endpoint.ttl_seconds,
            scope,
            principal: format!("key:{}", key.id),
        })
    }

    fn sign(
        &self,
        subject: &str,
        scope: &str,
        kind: &'static str,
        now: u64,
        ttl: u64,
    ) -> Option<String> {
        let secret = self.signing.as_ref()?;
        let claims = Claims {
            iss: GATEWAY_ISSUER,
            aud: GATEWAY_ISSUER,
            sub: subject,
            iat: now,
            exp: now + ttl,
            scope,
            th_kind: kind,
        };
        let key = EncodingKey::from_secret(secret.expose());
        Some(
            encode(&Header::new(Algorithm::HS256), &claims, &key)
                .expect("HS256 signing cannot fail"),
        )
    }
}

fn join_scopes(scopes: &BTreeSet<String>) -> String {
    scopes
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::jwt::{IssuerOrigin, JwtVerifier};
    use crate::checks::secret::tests::{context, env_of};
    use std::path::Path;
    use std::time::{SystemTime, UNIX_EPOCH};

    const SECRET: &str = "session-secret-session-secret-0123456789";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn tokens(toml_text: &str) -> (Option<GatewayTokens>, Problems) {
        let raw: TokensRaw = toml::from_str(toml_text).unwrap();
        let env = env_of(&[("TOKEN_SECRET", SECRET)]);
        let mut problems = Problems::new();
        let tokens = validate(
            &raw,
            "tokens",
            &context(&env, Path::new("/")),
            &mut problems,
        );
        (tokens, problems)
    }

    fn enabled() -> GatewayTokens {
        let (tokens, problems) = tokens(
            r#"
            secret = { env = "TOKEN_SECRET" }
            session = { enabled = true, scopes = ["trades:read", "trades:write"] }
            exchange = { enabled = true, ttl_seconds = 600 }
            "#,
        );
        assert!(problems.is_empty(), "{problems}");
        tokens.unwrap()
    }

    #[test]
    fn off_by_default() {
        let (tokens, problems) = tokens("");
        assert!(problems.is_empty());
        let tokens = tokens.unwrap();
        assert!(tokens.issuer().is_none());
        assert!(tokens
            .issue_session(now(), &mut rand::rngs::OsRng)
            .is_none());
        assert!(tokens.session().is_none() && tokens.exchange().is_none());
    }

    #[test]
    fn sessions_are_distinct_and_verify() {
        let tokens = enabled();
        let verifier = JwtVerifier::default().with_issuer(tokens.issuer().unwrap());
        let a = tokens.issue_session(now(), &mut rand::rngs::OsRng).unwrap();
        let b = tokens.issue_session(now(), &mut rand::rngs::OsRng).unwrap();
        assert_ne!(a.principal, b.principal);
        assert!(a.principal.starts_with("session:s_"));
        assert_eq!(a.expires_in, DEFAULT_SESSION_TTL_SECONDS);
        assert!(!format!("{a:?}").contains(&a.access_token));

        let verified = verifier.verify(&a.access_token).unwrap();
        assert_eq!(verified.origin, IssuerOrigin::Gateway);
        assert_eq!(verified.gateway_kind.as_deref(), Some(KIND_SESSION));
        assert_eq!(format!("session:{}", verified.subject), a.principal);
        assert_eq!(verified.scopes.len(), 2);

        let body: serde_json::Value = serde_json::from_slice(&a.to_json_bytes()).unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "trades:read trades:write");
    }

    #[test]
    fn expired_sessions_are_refused() {
        let tokens = enabled();
        let verifier = JwtVerifier::default().with_issuer(tokens.issuer().unwrap());
        let old = tokens
            .issue_session(now() - 2 * 3600, &mut rand::rngs::OsRng)
            .unwrap();
        assert_eq!(
            verifier.verify(&old.access_token).unwrap_err().reason(),
            "jwt.expired"
        );
    }

    #[test]
    fn key_exchange_carries_the_key_identity_and_scopes() {
        let tokens = enabled();
        let verifier = JwtVerifier::default().with_issuer(tokens.issuer().unwrap());
        let key = KeyMatch {
            id: "ci".into(),
            scopes: BTreeSet::from(["trades:read".to_owned()]),
        };
        let issued = tokens.issue_for_key(&key, now()).unwrap();
        assert_eq!(issued.principal, "key:ci");
        assert_eq!(issued.expires_in, 600);
        let verified = verifier.verify(&issued.access_token).unwrap();
        assert_eq!(verified.subject, "ci");
        assert_eq!(verified.gateway_kind.as_deref(), Some(KIND_API_KEY));
        assert_eq!(verified.scopes, key.scopes);
    }

    #[test]
    fn every_problem_is_reported() {
        let (tokens, problems) = tokens(
            r#"
            session = { enabled = true, ttl_seconds = 0, scopes = ["bad scope"], rate_limit_per_ip = [] }
            exchange = { enabled = true, ttl_seconds = 100000, rate_limit_per_ip = ["x"] }
            "#,
        );
        assert!(tokens.is_none());
        for path in [
            "tokens.secret",
            "tokens.session.ttl_seconds",
            "tokens.session.scopes[0]",
            "tokens.session.rate_limit_per_ip",
            "tokens.exchange.ttl_seconds",
            "tokens.exchange.rate_limit_per_ip[0]",
        ] {
            assert!(problems.has(path), "{path}: {problems}");
        }
    }

    #[test]
    fn default_issue_quotas_apply() {
        let tokens = enabled();
        let quotas: Vec<String> = tokens
            .session()
            .unwrap()
            .rate_limit_per_ip
            .iter()
            .map(|q| q.to_string())
            .collect();
        assert_eq!(quotas, DEFAULT_ISSUE_QUOTAS);
    }
}
