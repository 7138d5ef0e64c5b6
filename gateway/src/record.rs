//! Record: the last stage of the request path. Once a response head is
//! ready, the [`Exchange`] — what the pipeline learnt about the request,
//! `exchange.rs` — is written to the metrics and to the audit log (one
//! line, finished when the body has been sent or abandoned: `audit.rs`).
//!
//! Above the services it writes to (`audit`, `metrics`), below the
//! pipeline (`policy.rs`) that calls it.

use http::Response;

use crate::body::Body;
use crate::exchange::Exchange;
use crate::state::State;

/// Records one answered request: its metrics now, its audit line when the
/// response body is done (see [`crate::audit::Log::answered`]).
pub(crate) fn record(
    state: &State,
    exchange: &Exchange<'_>,
    response: Response<Body>,
) -> Response<Body> {
    state.metrics.answered(exchange, response.status());
    state.audit.answered(exchange, response)
}
