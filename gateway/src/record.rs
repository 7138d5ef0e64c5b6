//! Record: the last stage of the request path. Once a response head is
//! ready, the [`Exchange`] — what the pipeline learnt about the request —
//! is written to the metrics and to the audit log (one line, finished when
//! the body has been sent or abandoned: `audit.rs`).
//!
//! Above the services it writes to (`audit`, `metrics`), below the
//! pipeline (`policy.rs`) that calls it.

use std::sync::Arc;

use http::Response;

use crate::audit::{Decision, Outcome, Started, Trail};
use crate::body::progress::Progress;
use crate::body::Body;
use crate::conn::ConnInfo;
use crate::identity::Identity;
use crate::state::State;

/// One request as it travelled the path: who sent it, on which
/// connection, what the checks learnt (route, principal, upstream time),
/// how it was decided, and how much was read.
pub(crate) struct Exchange<'a> {
    /// The connection it came on (peer, TLS facts).
    pub(crate) conn: &'a ConnInfo,
    /// Client IP and request id.
    pub(crate) identity: &'a Identity,
    /// Arrival: time, method, path, user agent, declared length.
    pub(crate) started: &'a Started,
    /// What the checks reported on the way: route, principal, upstream time.
    pub(crate) trail: &'a Trail,
    /// Allowed, or refused and why.
    pub(crate) decision: Decision,
    /// Request body bytes read so far.
    pub(crate) bytes_in: u64,
    /// The send progress of its stream or connection, if watched: a stall
    /// becomes the line's decision.
    pub(crate) progress: Option<&'a Arc<Progress>>,
}

/// Records one answered request: its metrics now, its audit line when the
/// response body is done (see [`crate::audit::Log::answered`]).
pub(crate) fn record(
    state: &State,
    exchange: &Exchange<'_>,
    response: Response<Body>,
) -> Response<Body> {
    let Exchange {
        started,
        trail,
        decision,
        bytes_in,
        ..
    } = *exchange;
    let status = response.status();
    let metrics = &state.metrics;
    let route = trail.route();
    metrics.request(
        route,
        started.method(),
        status,
        started.elapsed(),
        trail.upstream_elapsed(),
    );
    if decision.is_refused() {
        metrics.rejection(decision.outcome);
    }
    if let Some((method, reason)) = decision.auth_failure {
        metrics.auth_failure(method, reason);
    }
    if decision.is_rate_limited {
        metrics.rate_limited(route.unwrap_or("unmatched"));
    }
    if let Some(route) = route {
        // Counted only on routes with an upload rule. A refused oversized
        // upload counts at its declared size: the "near the limit" alert
        // includes uploads over it.
        metrics.upload(route, bytes_in.max(started.declared_length().unwrap_or(0)));
    }
    let outcome = Outcome {
        request_id: exchange.identity.request_id.to_str().unwrap_or("invalid"),
        client_ip: exchange.identity.client_ip,
        status,
        decision,
        bytes_in: Some(bytes_in),
        bytes_out: None,
        tls: &exchange.conn.tls,
    };
    state
        .audit
        .answered(started, trail, outcome, exchange.progress, response)
}
