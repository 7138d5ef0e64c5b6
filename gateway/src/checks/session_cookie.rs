//! Cookie-carried anonymous sessions (`[tokens.cookie]`, off by default):
//! a browser that loads the web app from the gateway (a static-files
//! route, `static_files.rs`) gets its own session in a `__Host-` cookie,
//! so the unmodified app, which never asks for a token, still gets a data
//! space of its own (`docs/configuration.md`, "Cookie sessions").
//!
//! * The session is the same as a `POST /auth/session` one: principal
//!   `session:<subject>`, the scopes of `[tokens.session]`, signed with
//!   the same `[tokens] secret` (HMAC-SHA256, its own domain-separation
//!   label, so a cookie is never a bearer token nor the reverse).
//! * The cookie is `HttpOnly; Secure; SameSite=Strict; Path=/`, named
//!   [`COOKIE_NAME`]; its value is `v1.<subject>.<start>.<expiry>.<mac>`.
//! * It counts as a credential only on same-origin requests
//!   ([`same_origin`]): `Origin` equal to the origin served, or, for safe
//!   methods without `Origin`, `Sec-Fetch-Site: same-origin`. Anything
//!   else carrying the cookie is refused with 403 (cross-site request
//!   forgery), whatever the method.
//! * Sliding expiry: each cookie lives `idle_seconds`; used past half of
//!   that, it is re-issued, but never beyond `max_lifetime_seconds` from
//!   the session's start.
//! * An `Authorization` or `X-API-Key` header wins: the cookie is then
//!   ignored. The cookie is never forwarded upstream ([`strip`]).
//!
//! Pure functions: no I/O, the clock and randomness passed in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{COOKIE, ORIGIN};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand::{CryptoRng, RngCore};
use serde::Deserialize;

use super::problems::{join, Problems};
use super::session_token::GatewayTokens;
use super::Rejection;

/// The cookie's name; the `__Host-` prefix makes browsers insist on
/// `Secure`, `Path=/` and no `Domain`.
pub const COOKIE_NAME: &str = "__Host-th_session";

/// Default lifetime of one cookie (renewed while in use): one hour.
pub const DEFAULT_COOKIE_IDLE_SECONDS: u64 = 3600;

/// Default longest life of a session, renewals included: one day.
pub const DEFAULT_COOKIE_MAX_LIFETIME_SECONDS: u64 = 86_400;

/// Longest `max_lifetime_seconds` accepted: thirty days.
pub const MAX_COOKIE_LIFETIME_SECONDS: u64 = 30 * 86_400;

/// Random bytes in a session subject (as `/auth/session`'s).
const SUBJECT_BYTES: usize = 16;

/// What the MAC covers before the payload: keeps cookie MACs apart from
/// every other use of the secret.
const MAC_LABEL: &[u8] = b"tradehabit session cookie v1\n";

/// `[tokens.cookie]` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionCookieRaw {
    /// Issue and accept session cookies. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Default [`DEFAULT_COOKIE_IDLE_SECONDS`].
    pub idle_seconds: Option<u64>,
    /// Default [`DEFAULT_COOKIE_MAX_LIFETIME_SECONDS`].
    pub max_lifetime_seconds: Option<u64>,
}

/// The validated `[tokens.cookie]`, when enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCookies {
    /// Lifetime of one cookie.
    pub idle_seconds: u64,
    /// Longest life of a session.
    pub max_lifetime_seconds: u64,
}

/// Validates `[tokens.cookie]` at `path`; `sessions_enabled` says whether
/// `[tokens.session]` is on (its scopes and secret are the cookie's).
pub fn validate(
    raw: Option<&SessionCookieRaw>,
    sessions_enabled: bool,
    path: &str,
    problems: &mut Problems,
) -> Option<SessionCookies> {
    let raw = raw.filter(|r| r.enabled)?;
    let idle = raw.idle_seconds.unwrap_or(DEFAULT_COOKIE_IDLE_SECONDS);
    let max = raw
        .max_lifetime_seconds
        .unwrap_or(DEFAULT_COOKIE_MAX_LIFETIME_SECONDS);
    if !sessions_enabled {
        problems.push(
            join(path, "enabled"),
            "cookie sessions need [tokens.session] enabled (their scopes and secret)",
        );
    }
    if idle < 2 {
        problems.push(join(path, "idle_seconds"), "must be at least 2");
    }
    if !(idle..=MAX_COOKIE_LIFETIME_SECONDS).contains(&max) {
        problems.push(
            join(path, "max_lifetime_seconds"),
            format!("must be between idle_seconds and {MAX_COOKIE_LIFETIME_SECONDS}"),
        );
    }
    Some(SessionCookies {
        idle_seconds: idle,
        max_lifetime_seconds: max,
    })
}

/// A verified cookie session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSession {
    /// The random subject: the principal is `session:<subject>`.
    pub subject: String,
    /// When the session began (Unix seconds).
    pub start: u64,
    /// When this cookie expires (Unix seconds).
    pub expires: u64,
}

impl CookieSession {
    /// The forwarded principal id.
    pub fn principal(&self) -> String {
        format!("session:{}", self.subject)
    }
}

impl SessionCookies {
    /// A new session at `now`; `None` when the tokens have no secret.
    pub fn issue<R: RngCore + CryptoRng>(
        &self,
        tokens: &GatewayTokens,
        now: u64,
        rng: &mut R,
    ) -> Option<(CookieSession, HeaderValue)> {
        let mut random = [0u8; SUBJECT_BYTES];
        rng.fill_bytes(&mut random);
        let session = CookieSession {
            subject: format!("s_{}", URL_SAFE_NO_PAD.encode(random)),
            start: now,
            expires: now + self.idle_seconds.min(self.max_lifetime_seconds),
        };
        let cookie = self.set_cookie(tokens, &session, now)?;
        Some((session, cookie))
    }

    /// The session a cookie value stands for at `now`, if its MAC is
    /// right and neither it nor the session has expired.
    pub fn verify(&self, tokens: &GatewayTokens, value: &str, now: u64) -> Option<CookieSession> {
        let mut parts = value.split('.');
        let (version, subject, start, expires, mac) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if version != "v1" || parts.next().is_some() {
            return None;
        }
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let payload = format!("{subject}.{start}.{expires}");
        if !tokens.verify_mac(MAC_LABEL, payload.as_bytes(), &mac) {
            return None;
        }
        let session = CookieSession {
            subject: subject.to_owned(),
            start: start.parse().ok()?,
            expires: expires.parse().ok()?,
        };
        let alive =
            now < session.expires && now < session.start.saturating_add(self.max_lifetime_seconds);
        alive.then_some(session)
    }

    /// The renewed cookie when `session` is past half its cookie lifetime
    /// and may still grow (sliding expiry under the absolute cap).
    pub fn renew(
        &self,
        tokens: &GatewayTokens,
        session: &CookieSession,
        now: u64,
    ) -> Option<HeaderValue> {
        let left = session.expires.saturating_sub(now);
        let expires = (now + self.idle_seconds).min(session.start + self.max_lifetime_seconds);
        if left * 2 > self.idle_seconds || expires <= session.expires {
            return None;
        }
        let renewed = CookieSession {
            expires,
            ..session.clone()
        };
        self.set_cookie(tokens, &renewed, now)
    }

    fn set_cookie(
        &self,
        tokens: &GatewayTokens,
        session: &CookieSession,
        now: u64,
    ) -> Option<HeaderValue> {
        let payload = format!("{}.{}.{}", session.subject, session.start, session.expires);
        let mac = tokens.mac(MAC_LABEL, payload.as_bytes())?;
        let value = format!(
            "{COOKIE_NAME}=v1.{payload}.{}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            URL_SAFE_NO_PAD.encode(mac),
            session.expires.saturating_sub(now),
        );
        HeaderValue::from_str(&value).ok()
    }
}

/// The `Set-Cookie` that ends a session in the browser.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-th_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// The session cookie's value, if the request carries one (the first, if
/// a confused client sends several).
pub fn find(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_owned())
}

/// Removes the session cookie from the request's `Cookie` headers (other
/// cookies stay): the upstream never sees it.
pub fn strip(headers: &mut HeaderMap) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split('=').next().map(str::trim) != Some(COOKIE_NAME))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
        headers.insert(COOKIE, value);
    }
}

/// A cookie-carried request that is not same-origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cross-origin request with a session cookie")]
pub struct CrossOrigin;

impl From<CrossOrigin> for Rejection {
    fn from(_: CrossOrigin) -> Self {
        Rejection::new(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
            "session_cookie.cross_origin",
        )
        .with_detail("the session cookie is only accepted on same-origin requests")
    }
}

/// Whether a request comes from a page of the origin served at `host`
/// (the request's authority, already checked against `server.names`):
/// `Origin` must be that origin when present, and is required on unsafe
/// methods; without it a safe method needs `Sec-Fetch-Site: same-origin`.
pub fn same_origin(method: &Method, headers: &HeaderMap, host: &str) -> Result<(), CrossOrigin> {
    let host = host.strip_suffix(":443").unwrap_or(host);
    if let Some(origin) = headers.get(ORIGIN) {
        let matches = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        return if matches { Ok(()) } else { Err(CrossOrigin) };
    }
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.as_bytes() == b"same-origin");
    match fetch_site {
        Some(true) if safe => Ok(()),
        _ => Err(CrossOrigin),
    }
}

#[cfg(test)]
mod tests;
