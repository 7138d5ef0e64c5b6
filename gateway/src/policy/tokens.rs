//! Gateway endpoints: `POST /auth/session` (an anonymous browser session)
//! and `POST /auth/token` (an API key exchanged for a short-lived token),
//! answered by the gateway itself when `[tokens]` enables them. Otherwise
//! these paths are routed like any other (and, unrouted, answered 404).
//!
//! Both go through the same stages as a routed request, in the same order:
//! CORS (the top-level policy; preflights answered), credentials in the
//! URL, the per-IP quotas of `[tokens.session]` / `[tokens.exchange]`, and
//! for the exchange the API key itself. Neither takes a body; a small JSON
//! body (`{}`, what many HTTP clients send by default with a POST) is
//! accepted and ignored, unread (`docs/scripting.md`).

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response};
use time::OffsetDateTime;
use tradehabit_shared::envelope;

use crate::body::{self, Body};
use crate::checks::auth::{AuthFailure, X_API_KEY};
use crate::checks::rate_limit::{self, RouteRateLimits};
use crate::checks::session_token::{IssuedToken, SESSION_PATH, TOKEN_PATH};
use crate::checks::{cors, request_rules, upload};
use crate::config::{Config, PolicyChecks};
use crate::reject::{check, Rejection};
use crate::state::rate_limits::{Owner, Stage};

use super::admit::Context;

/// Which gateway endpoint a request is for, with its per-IP quotas.
pub(crate) enum Endpoint<'a> {
    /// `POST /auth/session`.
    Session(&'a RouteRateLimits),
    /// `POST /auth/token`.
    Token(&'a RouteRateLimits),
}

impl<'a> Endpoint<'a> {
    /// The enabled endpoint at `path`, if any.
    pub(crate) fn find(path: &str, checks: &'a PolicyChecks) -> Option<Endpoint<'a>> {
        match path {
            SESSION_PATH => checks.session_quotas.as_ref().map(Endpoint::Session),
            TOKEN_PATH => checks.token_quotas.as_ref().map(Endpoint::Token),
            _ => None,
        }
    }

    fn quotas(&self) -> (Owner<'static>, &'a RouteRateLimits) {
        match self {
            Endpoint::Session(quotas) => (Owner::Session, quotas),
            Endpoint::Token(quotas) => (Owner::Token, quotas),
        }
    }

    /// Answers the request (see the module doc for the stages).
    pub(super) async fn serve(
        &self,
        parts: &Parts,
        has_body: bool,
        host: &str,
        context: &Context<'_>,
        policy_headers: &mut HeaderMap,
    ) -> Result<Response<Body>, Rejection> {
        let config = context.config;
        let cors = &config.checks.cors;
        if cors::is_preflight(&parts.method, &parts.headers) {
            let headers = cors
                .preflight(&parts.headers, &[Method::POST])
                .map_err(check)?;
            policy_headers.extend(headers);
            return Ok(super::admit::no_content());
        }
        if parts.method != Method::POST {
            return Err(Rejection::MethodNotAllowed {
                allow: HeaderValue::from_static("POST"),
            });
        }
        policy_headers.extend(
            cors.actual(&parts.method, &parts.headers, Some(host))
                .map_err(check)?,
        );
        request_rules::refuse_credentials_in_url(parts.uri.query()).map_err(check)?;
        let (owner, quotas) = self.quotas();
        let stage = Stage::Ip(context.identity.client_ip);
        let usage = context
            .limits
            .check(config, owner, quotas, stage, context.trail)
            .await?;
        policy_headers.extend(rate_limit::headers(&usage));
        check_ignored_body(&parts.headers, has_body)?;

        let tokens = config.checks.auth.tokens();
        let now = OffsetDateTime::now_utc();
        let unix_now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
        let issued = match self {
            Endpoint::Session(_) => tokens.issue_session(unix_now, &mut rand::rngs::OsRng),
            Endpoint::Token(_) => {
                let key = api_key(&parts.headers, config, now)?;
                tokens.issue_for_key(&key, unix_now)
            }
        };
        // `find` only returns endpoints enabled in this policy snapshot, so
        // this is always `Some`; were it not, the path is simply not served.
        let issued = issued.ok_or(Rejection::NoRoute)?;
        tracing::info!(policy.issued = issued_kind(self), "issued a gateway token");
        Ok(token_response(&issued))
    }
}

/// The largest JSON body a token endpoint accepts (and ignores): room for
/// `{}` with whitespace, or a client's default empty-ish object.
pub(crate) const MAX_IGNORED_JSON_BODY_BYTES: u64 = 64;

/// A token endpoint's body: none, or a JSON body whose declared length is at
/// most [`MAX_IGNORED_JSON_BODY_BYTES`] (never read: the endpoints take no
/// parameters). Any other type is a 415; a larger or undeclared JSON body a
/// 413.
fn check_ignored_body(headers: &HeaderMap, has_body: bool) -> Result<(), Rejection> {
    const JSON: &str = "application/json";
    if upload::check_content_type(&[JSON.to_owned()], headers, has_body).is_err() {
        return upload::check_content_type(&[], headers, has_body).map_err(check);
    }
    if !has_body {
        return Ok(());
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    match declared {
        Some(length) if length <= MAX_IGNORED_JSON_BODY_BYTES => Ok(()),
        _ => Err(Rejection::BodyTooLarge {
            limit: MAX_IGNORED_JSON_BODY_BYTES,
        }),
    }
}

/// The API key of a key exchange: `X-API-Key` and nothing else.
fn api_key(
    headers: &HeaderMap,
    config: &Config,
    now: OffsetDateTime,
) -> Result<crate::checks::api_key::KeyMatch, Rejection> {
    let mut keys = headers.get_all(X_API_KEY).iter();
    let (key, extra) = (keys.next(), keys.next());
    if extra.is_some() || headers.contains_key(http::header::AUTHORIZATION) {
        return Err(check(AuthFailure::Ambiguous));
    }
    let key = key.ok_or_else(|| check(AuthFailure::Missing))?;
    config
        .checks
        .auth
        .api_keys()
        .check(key.as_bytes(), now)
        .map_err(|err| check(AuthFailure::ApiKey(err)))
}

fn issued_kind(endpoint: &Endpoint<'_>) -> &'static str {
    match endpoint {
        Endpoint::Session(_) => "session",
        Endpoint::Token(_) => "api-key",
    }
}

fn token_response(issued: &IssuedToken) -> Response<Body> {
    let mut response = Response::new(body::full(issued.to_json_bytes()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(envelope::CONTENT_TYPE),
    );
    // Never cached: respond.rs sets `Cache-Control: no-store` on every answer.
    response
}
