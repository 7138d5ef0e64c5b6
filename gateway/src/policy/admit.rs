//! Admit: the ordered checks of the module doc of `policy.rs`, from the
//! request's shape to the head of its body, as one function that returns
//! an [`Admission`]. Nothing here talks to the upstream; the only await is
//! the rate-limit store (`state/rate_limits.rs`), bounded by its timeout.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body as _, Incoming};

use super::trace::{Outcome, Trace};
use super::{cookie_session, describe, route, shape, tokens};
use crate::body::Body;
use crate::checks::auth::Principal;
use crate::checks::{cors, rate_limit, request_rules, scopes, upload};
use crate::config::{Config, Route, Serve};
use crate::exchange::Trail;
use crate::identity::Identity;
use crate::reject::{check, Rejection};
use crate::request_body::{self, BodyWatch, Decoding};
use crate::state::rate_limits::{Owner, RateLimits, Stage};
use crate::{host, path};

/// What the admit stage decided: the policy headers every answer gets
/// (CORS, rate limits; gathered whatever the outcome), the verdict, and the
/// request's body while no stage has taken it.
pub(super) struct Admission {
    pub(super) headers: HeaderMap,
    pub(super) verdict: Result<Admitted, Rejection>,
    pub(super) unread: Option<Incoming>,
}

/// A request that passed the checks.
pub(super) enum Admitted {
    /// Answered by the gateway itself: a CORS preflight, a token endpoint.
    Answered(Response<Body>),
    /// To be forwarded, with everything the forward stage needs.
    Forward(Box<Forward>),
}

/// A request on its way to the upstream: its head, its body (not read
/// yet), and what the checks found.
pub(super) struct Forward {
    pub(super) parts: Parts,
    pub(super) body: Incoming,
    pub(super) route: Arc<Route>,
    pub(super) host: host::Authority,
    pub(super) principal: Option<Principal>,
    pub(super) decoding: Option<Decoding>,
    /// Counts the body as it is read; shared with the caller, which needs
    /// it after a timeout (was the body still arriving?).
    pub(super) watch: Arc<BodyWatch>,
}

/// The admit stage: the checks in order (see the module doc), up to and
/// including the body's head (content type, declared length, encoding).
/// The body is read by the forward stage.
pub(super) async fn admit(
    request: Request<Incoming>,
    identity: &Identity,
    config: &Config,
    limits: &RateLimits,
    trail: &Trail,
) -> Admission {
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::new();
    let has_body = !body.is_end_stream();
    let context = Context {
        identity,
        config,
        limits,
        trail,
    };
    let mut trace = Trace::off();
    let checked = admit_head(&mut parts, has_body, &context, &mut headers, &mut trace).await;
    let (verdict, unread) = match checked {
        Ok(Checked::Answered(response)) => (Ok(Admitted::Answered(response)), Some(body)),
        Ok(Checked::Forward {
            route,
            host,
            principal,
            decoding,
        }) => {
            let watch = Arc::new(BodyWatch::new(route.body_limit));
            let forward = Forward {
                parts,
                body,
                route,
                host,
                principal,
                decoding,
                watch,
            };
            (Ok(Admitted::Forward(Box::new(forward))), None)
        }
        Err(rejection) => (Err(rejection), Some(body)),
    };
    Admission {
        headers,
        verdict,
        unread,
    }
}

/// The admit stage on a request's head alone (`has_body`: whether a body
/// follows): the head checks, then the body's head. The live path calls it
/// from [`admit`] with [`Trace::off`]; the dry run (`explain`, policy
/// tests) with a synthetic head and [`Trace::on`].
pub(super) async fn admit_head(
    parts: &mut Parts,
    has_body: bool,
    context: &Context<'_>,
    headers: &mut HeaderMap,
    trace: &mut Trace,
) -> Result<Checked, Rejection> {
    let checked = run_checks(parts, has_body, context, headers, trace).await?;
    let (route, host, principal) = match checked {
        Checked::Forward {
            route,
            host,
            principal,
            ..
        } => (route, host, principal),
        answered => return Ok(answered),
    };
    let decoding = request_body::check(parts, &route).map_err(|r| upload_too_large(r, &route));
    let decoding = trace.step("body", decoding, |decoding| {
        describe::body_head(parts, &route, decoding.as_ref())
    })?;
    trace.note(
        "body_contents",
        describe::body_contents_outcome(&route),
        || describe::body_contents(&route),
    );
    Ok(Checked::Forward {
        route,
        host,
        principal,
        decoding,
    })
}

/// What the head checks let through.
pub(super) enum Checked {
    /// Answered by the gateway itself: a CORS preflight, a token endpoint,
    /// a cookie session's page load, the OpenAPI document.
    Answered(Response<Body>),
    /// To be forwarded; `decoding` is set once the body's head is checked.
    Forward {
        route: Arc<Route>,
        host: host::Authority,
        principal: Option<Principal>,
        decoding: Option<Decoding>,
    },
}

/// What every check of one request may consult.
pub(super) struct Context<'a> {
    pub(super) identity: &'a Identity,
    /// The request's policy snapshot.
    pub(super) config: &'a Config,
    /// The rate-limit state.
    pub(super) limits: &'a RateLimits,
    pub(super) trail: &'a Trail,
}

/// The head checks in order, gathering the policy headers into `headers`
/// and each decision into `trace`.
async fn run_checks(
    parts: &mut Parts,
    has_body: bool,
    context: &Context<'_>,
    headers: &mut HeaderMap,
    trace: &mut Trace,
) -> Result<Checked, Rejection> {
    let Context { config, trail, .. } = *context;
    let host = check_head(parts, config, trace)?;
    if let Some(endpoint) = tokens::Endpoint::find(parts.uri.path(), &config.checks) {
        let answer = endpoint
            .serve(parts, has_body, host.as_str(), context, headers)
            .await;
        let answer = trace.note_answer("endpoint", answer, || {
            format!("{} is the gateway's own endpoint", parts.uri.path())
        })?;
        return Ok(Checked::Answered(answer));
    }
    if cors::is_preflight(&parts.method, &parts.headers) {
        headers.extend(preflight(parts, config, trace)?);
        return Ok(Checked::Answered(no_content()));
    }
    let route = route::find(&config.routes, parts.uri.path(), &parts.method);
    let route = trace.step("route", route, |route| describe::route(route))?;
    tracing::Span::current().record("route", route.name.as_str());
    trail.routed(&route.name);
    trace.routed(&route.name);
    let checks = &route.checks;

    // `Vary: Origin` alone is left to `policy.rs`, which adds it to every
    // answer: most requests then build no CORS headers at all.
    let cors_headers = checks
        .cors
        .actual_beyond_vary(&parts.method, &parts.headers, Some(host.as_str()))
        .map_err(check);
    let cors_headers = trace.step("cors", cors_headers, |cors| {
        describe::cors(&parts.headers, cors.as_ref())
    })?;
    if let Some(cors_headers) = cors_headers {
        gather(headers, cors_headers);
    }
    let in_url = request_rules::refuse_credentials_in_url(parts.uri.query()).map_err(check);
    trace.step("credentials_in_url", in_url, |()| "none".to_owned())?;
    let mut usage = charge_ip(&route, context, trace).await?;
    let now = crate::clock::now_utc();
    let unix_now = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let page = cookie_session::on_page(parts, &route, context, unix_now, headers).await;
    if let Some(answer) = trace.answer_if("cookie_session", page, || {
        "a cross-site page load without the session cookie: the page that loads it again".to_owned()
    })? {
        return Ok(Checked::Answered(answer));
    }
    let principal =
        match cookie_session::authenticate(parts, &route, host.as_str(), config, unix_now, headers)
        {
            Ok(Some(principal)) => Ok(Some(principal)),
            Ok(None) => config
                .checks
                .auth
                .authenticate(&parts.headers, checks.auth, now)
                .map_err(check),
            Err(rejection) => Err(rejection),
        };
    let principal = trace.step("authenticate", principal, |principal| {
        describe::principal(checks.auth, principal.as_ref())
    })?;
    if let Some(principal) = &principal {
        trail.authenticated(principal.method.as_str(), &principal.id);
    }
    let held = principal.as_ref().map(|p| &p.scopes);
    let scoped = scopes::check(&checks.scopes, held).map_err(check);
    trace.step("scopes", scoped, |()| {
        describe::scopes(&checks.scopes, held)
    })?;
    let principal_id = principal.as_ref().map(|p| p.id.as_str());
    usage.extend(charge_principal(&route, principal_id, &usage, context, trace).await?);
    headers.extend(rate_limit::headers(&usage));
    let query = checks.query.check(parts.uri.query()).map_err(check);
    trace.step("query", query, |()| describe::query(parts.uri.query()))?;

    if let Some(types) = &checks.content_types {
        let typed = upload::check_content_type(types, &parts.headers, has_body).map_err(check);
        trace.step("content_type", typed, |()| {
            describe::content_type(types, &parts.headers, has_body)
        })?;
    } else {
        trace.note("content_type", Outcome::Skip, || {
            "the route sets no content_types: any is accepted".to_owned()
        });
    }
    if route.serve == Serve::OpenApi {
        trace.note("openapi", Outcome::Answer, || {
            "the route serves the API's OpenAPI document: 200".to_owned()
        });
        return Ok(Checked::Answered(openapi_document()));
    }
    Ok(Checked::Forward {
        route,
        host,
        principal,
        decoding: None,
    })
}

/// The route's per-IP quotas: what they charged, or the 429.
async fn charge_ip(
    route: &Route,
    context: &Context<'_>,
    trace: &mut Trace,
) -> Result<Vec<rate_limit::Usage>, Rejection> {
    let owner = Owner::Route {
        name: &route.name,
        path: &route.path,
    };
    let client_ip = context.identity.client_ip;
    let usage = context
        .limits
        .check(
            context.config,
            owner,
            &route.checks.quotas,
            Stage::Ip(client_ip),
            context.trail,
        )
        .await;
    trace.step("rate_limit_ip", usage, |usage| {
        describe::usage(
            usage,
            "per_ip",
            &rate_limit::rate_key_for_ip(client_ip).to_string(),
        )
    })
}

/// The route's per-principal quotas (`principal`: the authenticated id;
/// anonymous callers count by address): what they charged, or the 429,
/// which names the per-IP quotas already counted (`earlier`) too: one 429
/// lists every quota that applies (`docs/errors.md`).
async fn charge_principal(
    route: &Route,
    principal: Option<&str>,
    earlier: &[rate_limit::Usage],
    context: &Context<'_>,
    trace: &mut Trace,
) -> Result<Vec<rate_limit::Usage>, Rejection> {
    let quotas = &route.checks.quotas;
    if quotas.per_principal.is_empty() {
        trace.note("rate_limit_principal", Outcome::Skip, || {
            "the route has no per_principal quota".to_owned()
        });
        return Ok(Vec::new());
    }
    let rate_key = match principal {
        Some(id) => id.to_owned(),
        None => rate_limit::anonymous_key(context.identity.client_ip),
    };
    let owner = Owner::Route {
        name: &route.name,
        path: &route.path,
    };
    let stage = Stage::Principal(&rate_key);
    let charged = context
        .limits
        .check(context.config, owner, quotas, stage, context.trail)
        .await
        .map_err(|refusal| with_earlier_quotas(refusal, earlier));
    trace.step("rate_limit_principal", charged, |usage| {
        describe::usage(usage, "per_principal", &rate_key)
    })
}

/// The head's shape, its host and its path: the host (`host[:port]`).
fn check_head(
    parts: &Parts,
    config: &Config,
    trace: &mut Trace,
) -> Result<host::Authority, Rejection> {
    let host = trace.step("shape", shape::check(parts, &config.limits), |host| {
        format!("head within the limits; host {host}")
    })?;
    trace.step("host", check_host(&host, &config.server.names), |()| {
        format!("{host} is served here")
    })?;
    let path = path::check(parts.uri.path()).map_err(Rejection::PathRefused);
    trace.step("path", path, |()| "already normal".to_owned())?;
    Ok(host)
}

/// The API's OpenAPI document (`docs/openapi.json`), generated once.
fn openapi_document() -> Response<Body> {
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let bytes = DOCUMENT.get_or_init(|| tradehabit_shared::openapi::to_json_bytes().into());
    let mut response = Response::new(crate::body::full(bytes.clone()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Checks a CORS preflight against the route serving the method it asks
/// about: the CORS headers of the 204 answer, or 403 without them.
fn preflight(parts: &Parts, config: &Config, trace: &mut Trace) -> Result<HeaderMap, Rejection> {
    let method_refused = || check(cors::CorsError::MethodNotAllowed);
    let requested = parts
        .headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| http::Method::from_bytes(v.as_bytes()).ok())
        .ok_or_else(method_refused);
    let requested = trace.step("cors_preflight", requested, |method| {
        format!("a preflight asking for {method}")
    })?;
    // A path served with other methods: the preflight is refused (403);
    // an unrouted path stays a 404.
    let route = match route::find(&config.routes, parts.uri.path(), &requested) {
        Err(Rejection::MethodNotAllowed { .. }) => Err(method_refused()),
        other => other,
    };
    let route = trace.step("route", route, |route| describe::route(route))?;
    tracing::Span::current().record("route", route.name.as_str());
    trace.routed(&route.name);
    let allowed = route
        .checks
        .cors
        .preflight(&parts.headers, &served_methods(&route))
        .map_err(check);
    trace.note_answer("cors", allowed, || {
        "a preflight the route's CORS policy allows: 204 with its CORS headers".to_owned()
    })
}

/// The methods a route serves, `HEAD` included with `GET`.
fn served_methods(route: &Route) -> Vec<http::Method> {
    let mut methods = route.methods.clone();
    if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
        methods.push(http::Method::HEAD);
    }
    methods
}

/// An empty 204 answer (a preflight's; its CORS headers are added with
/// the other policy headers).
pub(crate) fn no_content() -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// On the upload route an oversize body is a bad upload (400, the legacy
/// backend's answer and its security tests' expectation), not a 413.
pub(super) fn upload_too_large(rejection: Rejection, route: &Route) -> Rejection {
    match (&rejection, &route.checks.upload) {
        (Rejection::BodyTooLarge { .. }, Some(rules)) => check(rules.refusal(rules.too_large())),
        _ => rejection,
    }
}

/// A per-principal 429 with the request's per-IP quotas (`earlier`, already
/// counted) listed first in its RateLimit headers.
fn with_earlier_quotas(refusal: Rejection, earlier: &[rate_limit::Usage]) -> Rejection {
    let Rejection::Check(mut refused) = refusal else {
        return refusal;
    };
    if refused.status != StatusCode::TOO_MANY_REQUESTS || earlier.is_empty() {
        return Rejection::Check(refused);
    }
    for (name, value) in rate_limit::headers(earlier) {
        if let Some((_, current)) = refused.headers.iter_mut().find(|(n, _)| *n == name) {
            let joined = format!(
                "{}, {}",
                value.to_str().unwrap_or_default(),
                current.to_str().unwrap_or_default()
            );
            if let Ok(joined) = http::HeaderValue::from_str(&joined) {
                *current = joined;
            }
        }
    }
    Rejection::Check(refused)
}

/// Refuses (421) a request whose host (`authority`, as `policy::shape`
/// returns it) is not one of `names` (`host.rs`).
fn check_host(authority: &host::Authority, names: &host::ServerNames) -> Result<(), Rejection> {
    if names.serves_authority(authority) {
        Ok(())
    } else {
        Err(Rejection::HostMisdirected)
    }
}

/// Adds `more` to the policy headers gathered so far; the first set is
/// taken as it is rather than copied into a second map.
fn gather(headers: &mut HeaderMap, more: HeaderMap) {
    if headers.is_empty() {
        *headers = more;
    } else {
        headers.extend(more);
    }
}
