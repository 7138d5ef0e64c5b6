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
