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
//!    principal (401 + `WWW-Authenticate`); with `[tokens.cookie]`, a
//!    same-origin session cookie when neither is present, and a session
//!    cookie issued on the app's pages ([`cookie_session`]).
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
//! authenticated principal) through the `exchange::Trail`. Before all of
//! this, while the audit log cannot be written and `audit.on_failure` is
//! `"refuse"`, a request is answered 503 at once (`audit::Log::admits`).
//!
//! The admit stage can also be driven with a request head alone and a
//! [`trace`] that notes each check's decision: that is the dry run
//! ([`dry_run`]) behind `tradehabit-gateway explain` and the policy tests.
//! The live path passes the trace switched off.

mod admit;
mod cookie_session;
mod deadline;
mod describe;
pub(crate) mod dry_run;
mod forward;
mod route;
mod shape;
mod tokens;
mod trace;

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use tracing::Instrument;

use crate::audit;
use crate::body::progress::Progress;
use crate::body::{Body, Guarded};
use crate::config::Config;
use crate::conn::ConnInfo;
use crate::exchange::{Decision, Exchange, Started, Trail};
use crate::identity::{self, Identity};
use crate::record;
use crate::reject::{self, Rejection};
use crate::request_body::BodyWatch;
use crate::respond;
use crate::state::State;
use admit::{admit, Admitted};
use deadline::TimedOut;
use forward::forward;
pub(crate) use shape::HeadAsWritten;
pub(crate) use trace::{Outcome, Step};

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
    let started = Started::now(&request);
    let identity = identity::identify_at(
        request.headers(),
        conn.peer.ip(),
        &config.server.trusted_proxies,
        started.unix_millis(),
    );
    let span = tracing::info_span!(
        "policy",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        request.id = ?identity.request_id,
        route = tracing::field::Empty,
    );
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
    let (mut response, decision) = answer(outcome, watch.as_deref(), &span, &identity.request_id);
    hold_repeated_refusal(state, &config, identity.client_ip, response.status()).await;
    // Room for the policy and security headers at once (`respond.rs`),
    // instead of the map growing twice on the way.
    response
        .headers_mut()
        .reserve(policy_headers.len() + respond::HEADERS_SET);
    add_policy_headers(response.headers_mut(), policy_headers);
    respond::secure_response(&mut response, &config.headers, &identity.request_id);
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
        answered_at: crate::clock::now_std(),
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
    outcome: Result<Result<Response<Body>, Rejection>, TimedOut>,
    /// The CORS and rate-limit headers every answer gets.
    policy_headers: HeaderMap,
    /// The body while no stage has taken it.
    unread: Option<Incoming>,
    /// The body's watch once the forward stage took the body.
    watch: Option<Arc<BodyWatch>>,
}

impl Passage {
    /// Admits (or refuses) the request, and forwards what passes; the whole
    /// of it, checks included, under `limits.request_timeout`, and the
    /// forward also under `upstream.response_timeout` from the end of the
    /// body (`policy/deadline.rs`).
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
        let admission = admit(request, identity, config, &state.rate_limits, trail)
            .instrument(span.clone())
            .await;
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
        // Boxed: the forward stage's future is the largest part of a
        // request's, which would otherwise be moved whole along the way
        // (`docs/benchmarks.md`, "Smaller futures").
        let mut forwarded = Box::pin(forward(passed, identity, config, &state.upstream, trail));
        let deadline = began + config.limits.request_timeout;
        let response_timeout = config.upstream.response_timeout;
        let outcome = deadline::within(forwarded.as_mut(), deadline, response_timeout, &watch)
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
    outcome: Result<Result<Response<Body>, Rejection>, TimedOut>,
    watch: Option<&BodyWatch>,
    span: &tracing::Span,
    request_id: &HeaderValue,
) -> (Response<Body>, Decision) {
    let rejection = match outcome {
        Ok(Ok(response)) => return (response, Decision::ALLOWED),
        Ok(Err(rejection)) => rejection,
        Err(TimedOut) if watch.is_some_and(|w| !w.is_finished()) => Rejection::BodyTimeout,
        Err(TimedOut) => Rejection::UpstreamTimeout,
    };
    (
        span.in_scope(|| reject::respond(&rejection, Some(request_id))),
        audit::decision(&rejection),
    )
}

/// Holds a refusal (401, 403, 429) for `limits.refusal_delay` when its
/// client IP already had `limits.refusal_delay_after` of them this second,
/// so a client that asks again at once after each refusal slows down
/// instead of taking the gateway's CPU (`tarpit.rs`). The request keeps
/// its place in `limits.max_requests_per_ip` while held, and its audit line
/// records the real duration.
async fn hold_repeated_refusal(
    state: &State,
    config: &Config,
    client_ip: IpAddr,
    status: StatusCode,
) {
    let limits = &config.limits.clients;
    let is_refusal = matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    );
    if !is_refusal || limits.refusal_delay.is_zero() {
        return;
    }
    let now = tokio::time::Instant::now();
    if state
        .refusals
        .refused(client_ip, limits.refusal_delay_after, now)
    {
        state.metrics.refusal_delayed();
        tokio::time::sleep(limits.refusal_delay).await;
    }
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
    let upstream_varies = varies_by_origin(headers.get_all(VARY));
    // Whether the answer varies by `Origin` once ours are added: counted
    // on the way instead of read back.
    let mut varies = upstream_varies;
    let mut name = None;
    for (key, value) in policy_headers {
        // `HeaderMap`'s iterator names only the first of several values.
        name = key.or(name);
        let name = name.clone().expect("the first entry has a name");
        if name == VARY {
            if !upstream_varies {
                varies |= varies_by_origin([&value]);
                headers.append(VARY, value);
            }
        } else if name == SET_COOKIE {
            // The session cookie (`cookie_session.rs`) joins the
            // upstream's cookies, never replaces them.
            headers.append(SET_COOKIE, value);
        } else {
            headers.insert(name, value);
        }
    }
    // Every answer varies by `Origin`, whether or not the CORS stage ran
    // or had anything to add (`checks::cors`).
    if !varies {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// Whether one of these `Vary` fields names `Origin`.
fn varies_by_origin<'a>(fields: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    fields
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
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
        // The CORS stage leaves `Vary: Origin` to this function: an
        // upstream's own `Vary` gets it too, once.
        let mut upstream = HeaderMap::new();
        upstream.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        add_policy_headers(&mut upstream, HeaderMap::new());
        let vary: Vec<_> = upstream.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        // A preflight's longer `Vary` already names it.
        let mut preflight = HeaderMap::new();
        let mut ours = HeaderMap::new();
        ours.insert(
            VARY,
            HeaderValue::from_static("Origin, Access-Control-Request-Method"),
        );
        add_policy_headers(&mut preflight, ours);
        assert_eq!(preflight.get_all(VARY).iter().count(), 1);
    }
}
