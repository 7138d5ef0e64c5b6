//! Policy: the ordered checks every HTTPS request passes before it is
//! forwarded, and the one function that runs them.
//!
//! The order, and why:
//!
//! 1. **identify** ([`identify`]) — client IP and request id first, so that
//!    every answer, even a refusal, carries the request id.
//! 2. **shape** ([`shape`]) — request line, header sizes and count, framing,
//!    host: cheap, and everything after relies on a sane head.
//! 3. **path** ([`path`]) — normalise once (refuse, never rewrite), so
//!    routing and the upstream see the same bytes.
//! 4. **route** ([`route`]) — which `[[routes]]` entry applies: 404 / 405.
//!    Nothing unrouted is ever forwarded.
//! 5. *(issue 5)* CORS (preflight answered here, before authentication),
//!    authenticate, authorize, rate limits, query validation — each a
//!    `policy/<check>.rs` returning `Result<_, Rejection>`, inserted below in
//!    that order.
//! 6. **body** ([`body`]) — declared length over the route limit (413) and
//!    compressed bodies (415) before a byte is read; the streamed body is
//!    counted on its way to the upstream. *(issue 5: upload rules here.)*
//! 7. **forward** (`proxy.rs`) — the only stage that talks to the upstream.
//!
//! Every answer, forwarded or refused, then gets the security headers
//! (`respond.rs`). The whole exchange runs under `limits.request_timeout`.

pub(crate) mod body;
pub(crate) mod identify;
pub(crate) mod path;
mod route;
mod shape;

use std::sync::{Arc, OnceLock};

use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::accept::ConnInfo;
use crate::body::Body;
use crate::config::Config;
use crate::lifecycle::State;
use crate::proxy::Upstream;
use crate::reject::{self, Rejection};
use crate::respond;
use body::{BodyWatch, Limited};
use identify::Identity;

/// Answers one HTTPS request: checks, forwards, secures the response.
pub(crate) async fn handle(
    request: Request<Incoming>,
    conn: &ConnInfo,
    state: &State,
) -> Response<Body> {
    // One snapshot per request: a reload in the middle never mixes policies.
    let config = state.config();
    let identity = identify::identify(
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
    let watch = OnceLock::new();
    let checked = check_and_forward(request, &identity, &config, &state.upstream, &watch);
    let outcome = tokio::time::timeout(config.limits.request_timeout, checked)
        .instrument(span.clone())
        .await;
    let mut response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(rejection)) => span.in_scope(|| reject::respond(&rejection)),
        Err(_elapsed) => {
            let is_body_pending = watch
                .get()
                .is_some_and(|w: &Arc<BodyWatch>| !w.is_finished());
            let rejection = if is_body_pending {
                Rejection::BodyTimeout
            } else {
                Rejection::UpstreamTimeout
            };
            span.in_scope(|| reject::respond(&rejection))
        }
    };
    respond::secure(
        response.headers_mut(),
        &config.headers,
        &identity.request_id,
    );
    response
}

/// The checks in order (see the module doc), then the forward.
async fn check_and_forward(
    request: Request<Incoming>,
    identity: &Identity,
    config: &Config,
    upstream: &Upstream,
    watch: &OnceLock<Arc<BodyWatch>>,
) -> Result<Response<Body>, Rejection> {
    let (parts, body) = request.into_parts();
    let host = shape::check(&parts, &config.limits)?;
    path::check(parts.uri.path()).map_err(Rejection::PathRefused)?;
    let route = route::find(&config.routes, parts.uri.path(), &parts.method)?;
    tracing::Span::current().record("route", route.name.as_str());
    body::check(&parts, &route)?;

    let body_watch = Arc::clone(watch.get_or_init(|| Arc::new(BodyWatch::new(route.body_limit))));
    let request = Request::from_parts(parts, Limited::new(body, Arc::clone(&body_watch)));
    upstream
        .forward(request, identity, &host, &config.upstream, &body_watch)
        .await
}
