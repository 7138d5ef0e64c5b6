//! Cookie sessions in a request's way (`checks::session_cookie`, off
//! unless `[tokens.cookie]` enables them):
//!
//! * on a static-files route, a page request (`static_files.rs`) from a
//!   browser without a valid cookie gets a new session in `Set-Cookie`
//!   (rate limited per client IP with `[tokens.session]`'s quotas, like
//!   `POST /auth/session`); a valid one past half its life is renewed. A
//!   cross-site navigation without the cookie is answered with a page that
//!   loads the same path again: the browser withholds a `SameSite=Strict`
//!   cookie on such a navigation, and the second load, same-origin,
//!   carries it, so an existing session is never replaced by a new one;
//! * on the other routes the cookie is a credential for same-origin
//!   requests only (403 otherwise), unless `Authorization` or `X-API-Key`
//!   is present (they win); it is renewed while in use, cleared by
//!   `DELETE /api/session`, and a stale or forged one is cleared;
//! * everywhere, the cookie is removed from the request before anything
//!   can forward it: the upstream never sees it.

use http::header::{AUTHORIZATION, CONTENT_TYPE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response};
use tradehabit_shared::routes::SESSION_PATH;

use crate::body::{self, Body};
use crate::checks::auth::{AuthMethod, AuthMode, Principal, X_API_KEY};
use crate::checks::session_cookie::{self, clear_cookie};
use crate::config::{Config, Route};
use crate::reject::{check, Rejection};
use crate::state::rate_limits::{Owner, Stage};

use super::admit::Context;

/// The page that loads its own URL again (see the module doc): a meta
/// refresh, no script, so no CSP stands in its way. It names the path and
/// query (a refresh to the document's own URL with a fragment would only
/// scroll); the fragment is lost.
fn reload_page(target: &str) -> Response<Body> {
    let escaped = target
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html><head><meta http-equiv=\"refresh\" content=\"0; url={escaped}\"></head></html>\n"
    );
    let mut response = Response::new(body::full(html));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Not cached (`respond.rs` sets `no-store`); the gateway's CSP
    // (`default-src 'none'`) does not stop a meta refresh.
    response
}

/// A page request on a static-files route: issues or renews the session
/// cookie into `out`; `Some` is an answer in the page's place (the reload
/// page). Strips the cookie from the request.
pub(super) async fn on_page(
    parts: &mut Parts,
    route: &Route,
    context: &Context<'_>,
    now: u64,
    out: &mut HeaderMap,
) -> Result<Option<Response<Body>>, Rejection> {
    let config = context.config;
    let Some(files) = &route.static_files else {
        return Ok(None);
    };
    let value = session_cookie::find(&parts.headers);
    session_cookie::strip(&mut parts.headers);
    let tokens = config.checks.auth.tokens();
    let Some(cookies) = tokens.cookie() else {
        return Ok(None);
    };
    let below = parts
        .uri
        .path()
        .strip_prefix(route.path.as_str())
        .unwrap_or_default();
    let reads = matches!(parts.method, Method::GET | Method::HEAD);
    if !reads || !files.serves_document(below) {
        return Ok(None);
    }
    if let Some(session) = value.and_then(|v| cookies.verify(tokens, &v, now)) {
        if let Some(renewed) = cookies.renew(tokens, &session, now) {
            out.insert(SET_COOKIE, renewed);
        }
        return Ok(None);
    }
    let fetch_site = parts
        .headers
        .get("sec-fetch-site")
        .map(HeaderValue::as_bytes);
    if matches!(fetch_site, Some(b"cross-site" | b"same-site")) {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        return Ok(Some(reload_page(target)));
    }
    if let Some(quotas) = &config.checks.session_quotas {
        let stage = Stage::Ip(context.identity.client_ip);
        context
            .limits
            .check(config, Owner::Session, quotas, stage, context.trail)
            .await?;
    }
    if let Some((_, cookie)) = cookies.issue(tokens, now, &mut rand::rngs::OsRng) {
        tracing::info!(policy.issued = "session-cookie", "issued a gateway token");
        out.insert(SET_COOKIE, cookie);
    }
    Ok(None)
}

/// The cookie's principal on a route that looks at credentials, when the
/// request carries no other credential; 403 when it is not same-origin.
/// Renewal, logout and clearing go into `out`. Strips the cookie.
pub(super) fn authenticate(
    parts: &mut Parts,
    route: &Route,
    host: &str,
    config: &Config,
    now: u64,
    out: &mut HeaderMap,
) -> Result<Option<Principal>, Rejection> {
    let value = session_cookie::find(&parts.headers);
    session_cookie::strip(&mut parts.headers);
    let tokens = config.checks.auth.tokens();
    let (Some(cookies), Some(value)) = (tokens.cookie(), value) else {
        return Ok(None);
    };
    let other_credential =
        parts.headers.contains_key(AUTHORIZATION) || parts.headers.contains_key(X_API_KEY);
    if route.checks.auth == AuthMode::None || other_credential {
        return Ok(None);
    }
    let Some(session) = cookies.verify(tokens, &value, now) else {
        // Stale or forged: the browser drops it; the request goes on
        // without a credential.
        out.insert(SET_COOKIE, clear_cookie());
        return Ok(None);
    };
    session_cookie::same_origin(&parts.method, &parts.headers, host).map_err(check)?;
    if parts.method == Method::DELETE && parts.uri.path() == SESSION_PATH {
        out.insert(SET_COOKIE, clear_cookie());
    } else if let Some(renewed) = cookies.renew(tokens, &session, now) {
        out.insert(SET_COOKIE, renewed);
    }
    Ok(Some(Principal {
        id: session.principal(),
        method: AuthMethod::Session,
        scopes: tokens.session_scopes().cloned().unwrap_or_default(),
    }))
}
