use std::path::Path;

use super::*;
use crate::checks::secret::tests::{context, env_of};
use crate::checks::session_token::{self, TokensRaw};

const SECRET: &str = "cookie-secret-cookie-secret-0123456789ab";

fn tokens(toml_text: &str) -> (Option<GatewayTokens>, Problems) {
    let raw: TokensRaw = toml::from_str(toml_text).unwrap();
    let env = env_of(&[
        ("TOKEN_SECRET", SECRET),
        ("OTHER_SECRET", "another-secret-another-secret-0123456789"),
    ]);
    let mut problems = Problems::new();
    let tokens = session_token::validate(
        &raw,
        "tokens",
        &context(&env, Path::new("/")),
        &mut problems,
    );
    (tokens, problems)
}

fn enabled() -> (GatewayTokens, SessionCookies) {
    let (tokens, problems) = tokens(
        r#"
        secret = { env = "TOKEN_SECRET" }
        session = { enabled = true, scopes = ["trades:read"] }
        cookie = { enabled = true, idle_seconds = 100, max_lifetime_seconds = 250 }
        "#,
    );
    assert!(problems.is_empty(), "{problems}");
    let tokens = tokens.unwrap();
    let cookies = *tokens.cookie().unwrap();
    (tokens, cookies)
}

/// The cookie value of a `Set-Cookie` header.
fn value_of(set_cookie: &HeaderValue) -> String {
    let text = set_cookie.to_str().unwrap();
    let pair = text.split(';').next().unwrap();
    pair.strip_prefix("__Host-th_session=").unwrap().to_owned()
}

#[test]
fn off_by_default_and_needs_sessions() {
    let (off, problems) = tokens("");
    assert!(problems.is_empty());
    assert!(off.unwrap().cookie().is_none());
    let (refused, problems) = tokens(
        r#"
        secret = { env = "TOKEN_SECRET" }
        cookie = { enabled = true, idle_seconds = 1, max_lifetime_seconds = 999999999 }
        "#,
    );
    assert!(refused.is_none());
    for key in [
        "tokens.cookie.enabled",
        "tokens.cookie.idle_seconds",
        "tokens.cookie.max_lifetime_seconds",
    ] {
        assert!(problems.has(key), "{key}: {problems}");
    }
}

#[test]
fn issued_cookies_verify_and_are_host_only_strict_http_only() {
    let (tokens, cookies) = enabled();
    let (session, header) = cookies
        .issue(&tokens, 1000, &mut rand::rngs::OsRng)
        .unwrap();
    let text = header.to_str().unwrap();
    for attribute in [
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=100",
    ] {
        assert!(text.contains(attribute), "{attribute}: {text}");
    }
    assert!(session.principal().starts_with("session:s_"));
    let value = value_of(&header);
    assert_eq!(cookies.verify(&tokens, &value, 1050), Some(session.clone()));
    // Expired, tampered, or signed with another secret: nothing.
    assert_eq!(cookies.verify(&tokens, &value, 1100), None);
    let tampered = value.replacen(&session.subject, "s_AAAAAAAAAAAAAAAAAAAAAA", 1);
    assert_eq!(cookies.verify(&tokens, &tampered, 1050), None);
    let longer = value.replacen(".1100.", ".9999.", 1);
    assert_eq!(cookies.verify(&tokens, &longer, 1050), None);
    assert_eq!(cookies.verify(&tokens, "v1.a.b", 1050), None);
    let (other, problems) = self::tokens(
        r#"
        secret = { env = "OTHER_SECRET" }
        session = { enabled = true }
        cookie = { enabled = true, idle_seconds = 100, max_lifetime_seconds = 250 }
        "#,
    );
    assert!(problems.is_empty(), "{problems}");
    assert_eq!(cookies.verify(&other.unwrap(), &value, 1050), None);
}

#[test]
fn renewal_slides_under_the_absolute_lifetime() {
    let (tokens, cookies) = enabled();
    let (session, _) = cookies
        .issue(&tokens, 1000, &mut rand::rngs::OsRng)
        .unwrap();
    // Less than half used: no renewal.
    assert!(cookies.renew(&tokens, &session, 1040).is_none());
    // Past half: a new cookie, same subject and start, later expiry.
    let renewed = cookies.renew(&tokens, &session, 1060).unwrap();
    let renewed = cookies.verify(&tokens, &value_of(&renewed), 1150).unwrap();
    assert_eq!(
        (renewed.subject.as_str(), renewed.start),
        (session.subject.as_str(), 1000)
    );
    assert_eq!(renewed.expires, 1160);
    // Never beyond start + max_lifetime (1250), and never renewed again
    // once capped.
    let late = CookieSession {
        expires: 1240,
        ..session.clone()
    };
    let capped = cookies.renew(&tokens, &late, 1200).unwrap();
    assert_eq!(
        cookies
            .verify(&tokens, &value_of(&capped), 1249)
            .unwrap()
            .expires,
        1250
    );
    let at_cap = CookieSession {
        expires: 1250,
        ..session.clone()
    };
    assert!(cookies.renew(&tokens, &at_cap, 1220).is_none());
    assert_eq!(cookies.verify(&tokens, &value_of(&capped), 1250), None);
}

#[test]
fn the_cookie_is_found_and_stripped_alone() {
    let mut headers = HeaderMap::new();
    headers.append(
        COOKIE,
        HeaderValue::from_static("a=1; __Host-th_session=v1.x; b=2"),
    );
    headers.append(COOKIE, HeaderValue::from_static("c=3"));
    assert_eq!(find(&headers).as_deref(), Some("v1.x"));
    strip(&mut headers);
    assert_eq!(headers.get_all(COOKIE).iter().count(), 1);
    assert_eq!(headers[COOKIE], "a=1; b=2; c=3");
    let mut only = HeaderMap::new();
    only.insert(COOKIE, HeaderValue::from_static("__Host-th_session=v1.x"));
    strip(&mut only);
    assert!(!only.contains_key(COOKIE));
}

#[test]
fn only_same_origin_requests_pass() {
    let host = "app.example:8443";
    let with = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_static(value));
        }
        h
    };
    let same = with(&[("origin", "https://app.example:8443")]);
    assert!(same_origin(&Method::POST, &same, host).is_ok());
    let fetch = with(&[("sec-fetch-site", "same-origin")]);
    assert!(same_origin(&Method::GET, &fetch, host).is_ok());
    // Unsafe methods need Origin.
    assert!(same_origin(&Method::POST, &fetch, host).is_err());
    assert!(same_origin(&Method::DELETE, &HeaderMap::new(), host).is_err());
    // Another origin, another scheme, another site: refused.
    for origin in ["https://evil.example", "http://app.example:8443", "null"] {
        let h = with(&[("origin", origin)]);
        assert!(same_origin(&Method::GET, &h, host).is_err(), "{origin}");
    }
    let cross = with(&[("sec-fetch-site", "same-site")]);
    assert!(same_origin(&Method::GET, &cross, host).is_err());
    assert!(same_origin(&Method::GET, &HeaderMap::new(), host).is_err());
    // The default port is not part of an origin.
    let default_port = with(&[("origin", "https://app.example")]);
    assert!(same_origin(&Method::POST, &default_port, "app.example:443").is_ok());
}
