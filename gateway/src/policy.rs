//! Policy: the ordered checks every HTTPS request passes before it is
//! forwarded, and the one function that runs them.
//!
//! The order, and why:
//!
//! 1. **identify** (`identity.rs`) — client IP and request id first, so that
//!    every answer, even a refusal, carries the request id.
//! 2. **shape** ([`shape`], `host.rs`) — request line, header sizes and
//!    count, framing, no upgrade or tunnel, header names, and a host that
//!    is one of the server's names (421 otherwise): cheap, and everything
//!    after relies on a sane head.
//! 3. **path** (`path.rs`) — normalise once (refuse, never rewrite), so
//!    routing and the upstream see the same bytes.
//! 4. **gateway endpoints** ([`tokens`]) — `POST /auth/session` and
//!    `POST /auth/token`, when enabled, are answered here.
//! 5. **route** ([`route`]) — which `[[routes]]` entry applies: 404 / 405.
//!    Nothing unrouted is ever forwarded. A CORS preflight is routed by the
//!    method it asks about and answered at once, before authentication
//!    (browsers send no credentials on a preflight).
//! 6. **CORS** (`checks::cors`) — the CORS headers of the answer, whatever
//!    it turns out to be; a cross-origin write from an origin that is not
//!    allowed is refused (403).
//! 7. **credentials in the URL** (`checks::request_rules`) — refused (400)
//!    before anything reads credentials, so the answer says why.
//! 8. **rate limit per client IP** (`checks::rate_limit`) — before
//!    authentication, so guessing credentials is throttled too (429).
//! 9. **authenticate** (`checks::auth`) — API key or bearer token → the
//!    principal (401 + `WWW-Authenticate`).
//! 10. **authorize** (`checks::scopes`) — every scope of the route (403).
//! 11. **rate limit per principal** — each principal its own budget; an
//!     anonymous caller is counted by IP (429).
//! 12. **query** (`checks::request_rules`) — the route's parameters only,
//!     typed and in range (400).
//! 13. **body** (`request_body.rs`, `checks::upload`) — content type (415); declared
//!     length over the route limit (413; 400 on the upload route, as the
//!     legacy backend answers) and compressed bodies (415, unless the route
//!     accepts them: then decoded under a cap) before a byte is read. The
//!     upload form and JSON bodies are read in full under the limit and
//!     checked (400); other bodies are counted as they stream.
//! 14. **forward** (`proxy.rs`) — the only stage that talks to the
//!     upstream; it sets the identity headers and drops the credentials the
//!     gateway consumed.
//!
//! Every answer, forwarded or refused, then gets the CORS and rate-limit
//! headers gathered on the way (upstream copies of CORS headers are
//! replaced: CORS is the gateway's job) and the security headers
//! (`respond.rs`). The whole exchange runs under `limits.request_timeout`.
//! Before any of it, a client IP with `limits.max_requests_per_ip` requests
//! (HTTP/2 streams included) already in flight gets 503 + `Retry-After`;
//! a request counts until its response body has been sent or abandoned.
//! Finally each request gets exactly one audit line and its metrics
//! (`record.rs`, from the exchange); checks report what they learn (route,
//! authenticated principal) through the `audit::Trail`. Before all of
//! this, while the audit log cannot be written and `audit.on_failure` is
//! `"refuse"`, a request is answered 503 at once (`audit::Log::admits`).

mod route;
mod shape;
mod tokens;

use std::sync::Arc;

use http::header::VARY;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use time::OffsetDateTime;
use tokio::time::error::Elapsed;
use tracing::Instrument;

use crate::audit::{self, Decision, Started, Trail};
use crate::body::progress::Progress;
use crate::body::{Body, Guarded};
use crate::checks::auth::{AuthMode, Principal};
use crate::checks::{cors, rate_limit, request_rules, scopes, upload};
use crate::config::{Config, Route};
use crate::conn::ConnInfo;
use crate::identity::{self, Identity};
use crate::proxy::{Caller, Upstream};
use crate::record::{self, Exchange};
use crate::reject::{self, check, Rejection};
use crate::request_body::{self, BodyWatch, Decoding, ForwardBody};
use crate::respond;
use crate::state::State;
use crate::{host, path};
pub(crate) use shape::HeadAsWritten;

/// What is left of a request's body once its answer is ready: the
/// connection layer reads and discards the rest before it ends the stream
/// (HTTP/2) or the connection (HTTP/1.1), so that the client reads the
/// answer instead of a reset (`docs/security-controls.md`, F-6 and F-7).
pub(crate) enum Leftover {
    /// Nothing: no body, the whole body read, or a forwarded body (the
    /// upstream exchange owns it).
    Nothing,
    /// Not read at all (the request was answered before its body stage).
    Unread(Incoming),
    /// Read in part, then given up (over its limit, a failed exchange).
    Abandoned,
}

impl Leftover {
    /// Whether some of the body was not read.
    pub(crate) fn is_pending(&self) -> bool {
        !matches!(self, Leftover::Nothing)
    }
}

/// Answers one HTTPS request: checks, forwards, secures the response; also
/// says what is left of the request's body. `progress` is the send progress
/// of its stream or connection, if it is watched: the audit line of an
/// abandoned response says so.
pub(crate) async fn handle(
    request: Request<Incoming>,
    conn: &ConnInfo,
    state: &State,
    progress: Option<&Arc<Progress>>,
) -> (Response<Body>, Leftover) {
    // One snapshot per request: a reload in the middle never mixes policies.
    let config = state.config();
    let identity = identity::identify(
        request.headers(),
        conn.peer.ip(),
        &config.server.trusted_proxies,
    );
    let span = tracing::info_span!(
        "policy",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        request.id = ?identity.request_id,
        route = tracing::field::Empty,
    );
    let started = Started::now(&request);
    let trail = Trail::default();
    let in_flight = state.requests_per_ip.try_take(
        identity.client_ip,
        config.limits.clients.max_requests_per_ip,
    );
    // admit → forward
    let passage = Passage::run(
        request,
        state,
        &config,
        &identity,
        &trail,
        &span,
        in_flight.is_some(),
    )
    .await;
    let Passage {
        outcome,
        policy_headers,
        unread,
        watch,
    } = passage;
    let allowed = matches!(outcome, Ok(Ok(_)));
    // respond
    let (mut response, decision) = answer(outcome, watch.as_deref(), &span);
    add_policy_headers(response.headers_mut(), policy_headers);
    respond::secure(
        response.headers_mut(),
        &config.headers,
        &identity.request_id,
    );
    let bytes_in = watch.as_ref().map_or(0, |w| w.received());
    let leftover = match unread {
        Some(body) if body.is_end_stream() => Leftover::Nothing,
        Some(body) => Leftover::Unread(body),
        // Taken by the forward: the upstream exchange owns it.
        None if allowed => Leftover::Nothing,
        None if watch.as_ref().is_some_and(|w| !w.is_finished()) => Leftover::Abandoned,
        None => Leftover::Nothing,
    };
    // record
    let exchange = Exchange {
        conn,
        identity: &identity,
        started: &started,
        trail: &trail,
        decision,
        bytes_in,
        progress,
    };
    let response = record::record(state, &exchange, response);
    let response = match in_flight {
        // Counted until the body has been sent or abandoned.
        Some(held) => response.map(|body| Guarded::new(body, held).boxed_unsync()),
        None => response,
    };
    (response, leftover)
}

/// A request's way through the admit and forward stages.
struct Passage {
    /// The answer, a refusal, or the request timeout.
    outcome: Result<Result<Response<Body>, Rejection>, Elapsed>,
    /// The CORS and rate-limit headers every answer gets.
    policy_headers: HeaderMap,
    /// The body while no stage has taken it.
    unread: Option<Incoming>,
    /// The body's watch once the forward stage took the body.
    watch: Option<Arc<BodyWatch>>,
}

impl Passage {
    /// Admits (or refuses) the request, and forwards what passes; the whole
    /// of it, checks included, under `limits.request_timeout`.
    async fn run(
        request: Request<Incoming>,
        state: &State,
        config: &Config,
        identity: &Identity,
        trail: &Trail,
        span: &tracing::Span,
        has_place: bool,
    ) -> Passage {
        let began = tokio::time::Instant::now();
        if let Err(rejection) = gate(state, config, has_place) {
            return Passage::answered(Err(rejection), HeaderMap::new(), Some(request.into_body()));
        }
        let admission = span.in_scope(|| admit(request, identity, config, trail));
        let passed = match admission.verdict {
            Ok(Admitted::Forward(passed)) => passed,
            Ok(Admitted::Answered(response)) => {
                return Passage::answered(Ok(response), admission.headers, admission.unread)
            }
            Err(rejection) => {
                return Passage::answered(Err(rejection), admission.headers, admission.unread)
            }
        };
        let watch = Arc::clone(&passed.watch);
        let forwarded = forward(passed, identity, config, &state.upstream, trail);
        let left = config
            .limits
            .request_timeout
            .saturating_sub(began.elapsed());
        let outcome = tokio::time::timeout(left, forwarded)
            .instrument(span.clone())
            .await;
        Passage {
            outcome,
            policy_headers: admission.headers,
            unread: None,
            watch: Some(watch),
        }
    }

    /// Answered without forwarding.
    fn answered(
        answer: Result<Response<Body>, Rejection>,
        policy_headers: HeaderMap,
        unread: Option<Incoming>,
    ) -> Passage {
        Passage {
            outcome: Ok(answer),
            policy_headers,
            unread,
            watch: None,
        }
    }
}

/// The respond stage's first step: the response for an outcome (a refusal
/// becomes its envelope through `reject.rs`; a timeout is the body's while
/// the body was still arriving, the upstream's otherwise) and the decision
/// the audit line records.
fn answer(
    outcome: Result<Result<Response<Body>, Rejection>, Elapsed>,
    watch: Option<&BodyWatch>,
    span: &tracing::Span,
) -> (Response<Body>, Decision) {
    let rejection = match outcome {
        Ok(Ok(response)) => return (response, Decision::ALLOWED),
        Ok(Err(rejection)) => rejection,
        Err(_elapsed) if watch.is_some_and(|w| !w.is_finished()) => Rejection::BodyTimeout,
        Err(_elapsed) => Rejection::UpstreamTimeout,
    };
    (
        span.in_scope(|| reject::respond(&rejection)),
        audit::decision(&rejection),
    )
}

/// Whether a request may go through the checks at all: not while the
/// audit log cannot be written and `audit.on_failure = "refuse"`
/// (`docs/audit-and-metrics.md`), nor from a client IP that already has
/// `limits.max_requests_per_ip` requests in flight (`has_place` false). The
/// body of a request refused here stays unread, like any early refusal's.
fn gate(state: &State, config: &Config, has_place: bool) -> Result<(), Rejection> {
    if !state.audit.admits(config.audit.on_failure) {
        return Err(Rejection::AuditUnavailable {
            retry_after: config.upstream.retry_after,
        });
    }
    if !has_place {
        return Err(Rejection::ClientBusy {
            reason: "limits.client_requests",
            retry_after: config.upstream.retry_after,
        });
    }
    Ok(())
}

/// Puts the gathered CORS and rate-limit headers on an answer. Upstream
/// CORS headers go first: the legacy backend reflects any origin on some
/// routes, and only the gateway's allowlist may decide. `Vary: Origin` is
/// on every answer, so no cache serves one origin's answer to another.
fn add_policy_headers(headers: &mut HeaderMap, policy_headers: HeaderMap) {
    let upstream_cors: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in upstream_cors {
        headers.remove(name);
    }
    let varies_by_origin = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"));
    let mut name = None;
    for (key, value) in policy_headers {
        // `HeaderMap`'s iterator names only the first of several values.
        name = key.or(name);
        let name = name.clone().expect("the first entry has a name");
        if name == VARY {
            if !varies_by_origin {
                headers.append(VARY, value);
            }
        } else {
            headers.insert(name, value);
        }
    }
    if !headers.contains_key(VARY) {
        headers.insert(VARY, HeaderValue::from_static("Origin"));
    }
}

/// What the admit stage decided: the policy headers every answer gets
/// (CORS, rate limits; gathered whatever the outcome), the verdict, and the
/// request's body while no stage has taken it.
struct Admission {
    headers: HeaderMap,
    verdict: Result<Admitted, Rejection>,
    unread: Option<Incoming>,
}

/// A request that passed the checks.
enum Admitted {
    /// Answered by the gateway itself: a CORS preflight, a token endpoint.
    Answered(Response<Body>),
    /// To be forwarded, with everything the forward stage needs.
    Forward(Box<Forward>),
}

/// A request on its way to the upstream: its head, its body (not read
/// yet), and what the checks found.
struct Forward {
    parts: Parts,
    body: Incoming,
    route: Arc<Route>,
    host: String,
    principal: Option<Principal>,
    decoding: Option<Decoding>,
    /// Counts the body as it is read; shared with the caller, which needs
    /// it after a timeout (was the body still arriving?).
    watch: Arc<BodyWatch>,
}

/// The admit stage: the checks in order (see the module doc), up to and
/// including the body's head (content type, declared length, encoding).
/// Nothing here awaits; the body is read by the forward stage.
fn admit(
    request: Request<Incoming>,
    identity: &Identity,
    config: &Config,
    trail: &Trail,
) -> Admission {
    let (mut parts, body) = request.into_parts();
    let mut headers = HeaderMap::new();
    let has_body = !body.is_end_stream();
    let checked = run_checks(&mut parts, has_body, identity, config, trail, &mut headers);
    let (verdict, unread) = match checked {
        Ok(Checked::Answered(response)) => (Ok(Admitted::Answered(response)), Some(body)),
        Ok(Checked::Forward {
            route,
            host,
            principal,
        }) => match request_body::check(&mut parts, &route) {
            Err(rejection) => (Err(upload_too_large(rejection, &route)), Some(body)),
            Ok(decoding) => {
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
        },
        Err(rejection) => (Err(rejection), Some(body)),
    };
    Admission {
        headers,
        verdict,
        unread,
    }
}

/// What the head checks let through, before the body's head is checked.
enum Checked {
    Answered(Response<Body>),
    Forward {
        route: Arc<Route>,
        host: String,
        principal: Option<Principal>,
    },
}

/// The head checks in order, gathering the policy headers into `headers`.
fn run_checks(
    parts: &mut Parts,
    has_body: bool,
    identity: &Identity,
    config: &Config,
    trail: &Trail,
    headers: &mut HeaderMap,
) -> Result<Checked, Rejection> {
    let host = shape::check(parts, &config.limits)?;
    check_host(&host, &config.server.names)?;
    path::check(parts.uri.path()).map_err(Rejection::PathRefused)?;
    if let Some(endpoint) = tokens::Endpoint::find(parts.uri.path(), &config.checks) {
        let answer = endpoint.serve(parts, has_body, identity, &host, config, headers)?;
        return Ok(Checked::Answered(answer));
    }
    if cors::is_preflight(&parts.method, &parts.headers) {
        headers.extend(preflight(parts, config)?);
        return Ok(Checked::Answered(no_content()));
    }
    let route = route::find(&config.routes, parts.uri.path(), &parts.method)?;
    tracing::Span::current().record("route", route.name.as_str());
    trail.routed(&route.name);
    let checks = &route.checks;

    let cors_headers = checks
        .cors
        .actual(&parts.method, &parts.headers, Some(&host))
        .map_err(check)?;
    headers.extend(cors_headers);
    request_rules::refuse_credentials_in_url(parts.uri.query()).map_err(check)?;
    let mut usage = checks
        .limiters
        .check_ip(identity.client_ip)
        .map_err(check)?;
    let now = OffsetDateTime::now_utc();
    let principal = config
        .checks
        .auth
        .authenticate(&parts.headers, checks.auth, now)
        .map_err(check)?;
    if let Some(principal) = &principal {
        trail.authenticated(principal.method.as_str(), &principal.id);
    }
    scopes::check(&checks.scopes, principal.as_ref().map(|p| &p.scopes)).map_err(check)?;
    if checks.limiters.has_principal_quotas() {
        let rate_key = match &principal {
            Some(principal) => principal.id.clone(),
            None => rate_limit::anonymous_key(identity.client_ip),
        };
        usage.extend(checks.limiters.check_principal(&rate_key).map_err(check)?);
    }
    headers.extend(rate_limit::headers(&usage));
    checks.query.check(parts.uri.query()).map_err(check)?;

    if let Some(types) = &checks.content_types {
        upload::check_content_type(types, &parts.headers, has_body).map_err(check)?;
    }
    Ok(Checked::Forward {
        route,
        host,
        principal,
    })
}

/// The forward stage: reads a buffered route's body in full and checks it
/// (the upload form, JSON depth), or streams it, then forwards the request
/// (`proxy.rs`).
async fn forward(
    forward: Box<Forward>,
    identity: &Identity,
    config: &Config,
    upstream: &Upstream,
    trail: &Trail,
) -> Result<Response<Body>, Rejection> {
    let Forward {
        parts,
        body,
        route,
        host,
        principal,
        decoding,
        watch,
    } = *forward;
    let checks = &route.checks;
    let body = if checks.buffers_body() {
        let bytes = request_body::collect(body, Arc::clone(&watch), decoding)
            .await
            .map_err(|r| upload_too_large(r, &route))?;
        check_buffered(&route, &parts, &bytes).await?;
        ForwardBody::Buffered(Some(bytes))
    } else {
        ForwardBody::streamed(body, Arc::clone(&watch), decoding)
    };
    let caller = Caller {
        principal: principal.as_ref(),
        consumed_credentials: checks.auth != AuthMode::None,
    };
    let request = Request::from_parts(parts, body);
    trail.forwarding();
    upstream
        .forward(request, identity, &caller, &host, config, &watch)
        .await
        .map_err(|rejection| watch.refine(rejection))
}

/// Checks a CORS preflight against the route serving the method it asks
/// about: the CORS headers of the 204 answer, or 403 without them.
fn preflight(parts: &Parts, config: &Config) -> Result<HeaderMap, Rejection> {
    let method_refused = || check(cors::CorsError::MethodNotAllowed);
    let requested = parts
        .headers
        .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| http::Method::from_bytes(v.as_bytes()).ok())
        .ok_or_else(method_refused)?;
    // A path served with other methods: the preflight is refused (403);
    // an unrouted path stays a 404.
    let route = match route::find(&config.routes, parts.uri.path(), &requested) {
        Err(Rejection::MethodNotAllowed { .. }) => return Err(method_refused()),
        other => other?,
    };
    tracing::Span::current().record("route", route.name.as_str());
    route
        .checks
        .cors
        .preflight(&parts.headers, &served_methods(&route))
        .map_err(check)
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
fn upload_too_large(rejection: Rejection, route: &Route) -> Rejection {
    match (&rejection, &route.checks.upload) {
        (Rejection::BodyTooLarge { .. }, Some(rules)) => check(rules.too_large()),
        _ => rejection,
    }
}

/// The checks that need the whole body: the upload form, JSON depth.
async fn check_buffered(
    route: &Route,
    parts: &Parts,
    bytes: &bytes::Bytes,
) -> Result<(), Rejection> {
    if let Some(rules) = &route.checks.upload {
        rules
            .check(&parts.headers, bytes.clone())
            .await
            .map_err(check)?;
    }
    if let Some(rules) = &route.checks.json {
        rules.check(bytes).map_err(check)?;
    }
    Ok(())
}

/// Refuses (421) a request whose host (`authority`, as `policy::shape`
/// returns it) is not one of `names` (`host.rs`).
fn check_host(authority: &str, names: &host::ServerNames) -> Result<(), Rejection> {
    // A host that is no name at all (`a..b`) is not ours either.
    match host::Name::of_authority(authority) {
        Some(name) if names.serves(&name) => Ok(()),
        _ => Err(Rejection::HostMisdirected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_headers_replace_upstream_cors_and_keep_vary() {
        let mut upstream = HeaderMap::new();
        upstream.insert(
            "access-control-allow-origin",
            HeaderValue::from_static("https://evil.example"),
        );
        upstream.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        upstream.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        let mut ours = HeaderMap::new();
        ours.insert(VARY, HeaderValue::from_static("Origin"));
        ours.insert(
            "ratelimit",
            HeaderValue::from_static("\"ip-minute\";r=1;t=1"),
        );
        add_policy_headers(&mut upstream, ours);
        assert!(!upstream.contains_key("access-control-allow-origin"));
        assert!(!upstream.contains_key("access-control-allow-credentials"));
        let vary: Vec<_> = upstream.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        assert_eq!(upstream["ratelimit"], "\"ip-minute\";r=1;t=1");

        // An answer that never reached the CORS stage still varies by origin.
        let mut early = HeaderMap::new();
        add_policy_headers(&mut early, HeaderMap::new());
        assert_eq!(early[VARY], "Origin");
        // No duplicate when the upstream already varies by origin.
        let mut varied = HeaderMap::new();
        varied.insert(VARY, HeaderValue::from_static("origin"));
        let mut ours = HeaderMap::new();
        ours.insert(VARY, HeaderValue::from_static("Origin"));
        add_policy_headers(&mut varied, ours);
        assert_eq!(varied.get_all(VARY).iter().count(), 1);
    }
}
