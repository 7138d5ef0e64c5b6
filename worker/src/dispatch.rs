//! Request stage: one HTTP request from arrival to the log line.
//!
//! The worker answers four things itself and hands everything else — every
//! legacy path, unknown paths and wrong methods included — to the engine:
//!
//! | route | answer |
//! |---|---|
//! | `GET /internal/ready` | 200 `{"status":"ready"}`, 503 while shutting down |
//! | `GET /internal/metrics` | the metrics registry, OpenMetrics text |
//! | `DELETE /api/session` | erases the caller's session; 200 `{"status":"OK"}` |
//! | anything else | identity → body (size, time, multipart) → session → admission → engine |
//!
//! Which request is an upload, and the route labels of metrics and logs,
//! come from the API's route table ([`tradehabit_shared::routes`]).
//!
//! Then it writes exactly one log line: request id, method, route, status,
//! duration, and counts — never bodies, CSV values or the principal in clear.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use prometheus_client::registry::Registry;
use tracing::Instrument;
use tradehabit_shared::routes;

use crate::admission::Admission;
use crate::api::{Facts, Reply};
use crate::config::BodyLimits;
use crate::engine::{Engine, Job, Turn};
use crate::identity::{self, Principal, TagKey};
use crate::metrics::{self, RequestMetrics};
use crate::refusal::{json_response, Refusal};
use crate::session::Store;
use crate::trust::{Trust, TrustMetrics};
use crate::upload;

/// The readiness answer.
pub const READY_PATH: &str = "/internal/ready";
/// The metrics exposition.
pub const METRICS_PATH: &str = "/internal/metrics";
/// `DELETE` erases the caller's session.
pub const SESSION_PATH: &str = routes::SESSION_PATH;

/// The route label of a path: itself if it is a path of the API's route
/// table or one of our own, else `other`. Labels are exactly these strings,
/// so their number is bounded.
pub fn route_name(path: &str) -> &'static str {
    routes::ROUTES
        .iter()
        .map(|route| route.path)
        .chain([READY_PATH, METRICS_PATH])
        .find(|route| *route == path)
        .unwrap_or("other")
}

/// Everything a request may touch; one per worker.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) body: BodyLimits,
    pub(crate) sessions: Arc<Store>,
    pub(crate) admission: Admission,
    pub(crate) engine: Engine,
    pub(crate) registry: Registry,
    pub(crate) requests: RequestMetrics,
    pub(crate) tag_key: TagKey,
    pub(crate) draining: AtomicBool,
    pub(crate) trust: Trust,
    pub(crate) untrusted: TrustMetrics,
}

/// What a request produced, for the response and the log line.
struct Answer {
    response: Response<Full<Bytes>>,
    facts: Facts,
    refusal: Option<Refusal>,
}

impl From<Refusal> for Answer {
    fn from(refusal: Refusal) -> Self {
        Self {
            response: refusal.response(),
            facts: Facts::default(),
            refusal: Some(refusal),
        }
    }
}

/// Answers one request and logs it.
pub(crate) async fn respond<B>(state: Arc<State>, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let request_id = identity::request_id(request.headers());
    let method = request.method().clone();
    let route = route_name(request.uri().path());
    let principal = Principal::from_headers(request.headers());
    let principal_tag = principal
        .as_ref()
        .ok()
        .map(|principal| principal.tag(&state.tag_key));
    let span = tracing::info_span!("request", request.id = %request_id, http.route = route);
    let answer = match state.trust.check(&request, &state.untrusted) {
        Ok(()) => {
            answer(&state, route, principal, request)
                .instrument(span)
                .await
        }
        Err(refusal) => Answer::from(refusal),
    };
    let response = with_request_id(answer.response, &request_id).await;
    let status = response.status().as_u16();
    state.requests.count(route, status);
    log_request(&LogLine {
        request_id: &request_id,
        method: &method,
        route,
        status,
        duration: started.elapsed(),
        principal_tag: principal_tag.as_deref(),
        facts: answer.facts,
        refusal: answer.refusal.as_ref(),
    });
    response
}

/// An error answer's envelope with the request's id (`request_id`, the
/// gateway's `X-Request-Id`): the API layer builds its envelopes without
/// knowing the request (`docs/errors.md`). Other answers pass unchanged.
async fn with_request_id(
    response: Response<Full<Bytes>>,
    request_id: &str,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt as _;
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let bytes =
        tradehabit_shared::envelope::add_request_id(&bytes, request_id).map_or(bytes, Bytes::from);
    Response::from_parts(parts, Full::new(bytes))
}

async fn answer<B>(
    state: &State,
    route: &'static str,
    principal: Result<Principal, Refusal>,
    request: Request<B>,
) -> Answer
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method();
    match route {
        READY_PATH => ready(state, method).map_or_else(Answer::from, plain),
        METRICS_PATH => exposition(state, method).map_or_else(Answer::from, plain),
        SESSION_PATH => principal
            .and_then(|principal| delete_session(state, method, &principal))
            .map_or_else(Answer::from, plain),
        _ => match principal {
            Ok(principal) => legacy(state, principal, request)
                .await
                .unwrap_or_else(Answer::from),
            Err(refusal) => Answer::from(refusal),
        },
    }
}

fn plain(response: Response<Full<Bytes>>) -> Answer {
    Answer {
        response,
        facts: Facts::default(),
        refusal: None,
    }
}

fn ready(state: &State, method: &Method) -> Result<Response<Full<Bytes>>, Refusal> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(Refusal::MethodNotAllowed { allow: "GET, HEAD" });
    }
    if state.draining.load(Ordering::Acquire) {
        return Err(Refusal::Draining);
    }
    Ok(json_response(
        StatusCode::OK,
        Bytes::from_static(b"{\"status\":\"ready\"}\n"),
    ))
}

fn exposition(state: &State, method: &Method) -> Result<Response<Full<Bytes>>, Refusal> {
    if *method != Method::GET {
        return Err(Refusal::MethodNotAllowed { allow: "GET" });
    }
    // Idle sessions end on a timer too; sweeping here keeps the gauges
    // exact at the moment they are read.
    state.sessions.expire_idle();
    let text = metrics::encode(&state.registry).map_err(|_| Refusal::MetricsUnavailable)?;
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    Ok(response)
}

fn delete_session(
    state: &State,
    method: &Method,
    principal: &Principal,
) -> Result<Response<Full<Bytes>>, Refusal> {
    if *method != Method::DELETE {
        return Err(Refusal::MethodNotAllowed { allow: "DELETE" });
    }
    state.sessions.remove(principal);
    Ok(json_response(
        StatusCode::OK,
        Bytes::from_static(b"{\"status\":\"OK\"}\n"),
    ))
}

/// A legacy request: body → session → admission → engine.
async fn legacy<B>(
    state: &State,
    principal: Principal,
    request: Request<B>,
) -> Result<Answer, Refusal>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (head, body) = request.into_parts();
    let is_upload = routes::is_upload(head.method.as_str(), head.uri.path());
    let read = async {
        if is_upload {
            let file = upload::read_upload(&head.headers, body).await?;
            Ok((Bytes::new(), file))
        } else {
            let bytes = upload::read_body(&head.headers, body, state.body.max_body_bytes).await?;
            Ok((bytes, None))
        }
    };
    let (body, file) = tokio::time::timeout(state.body.read_timeout, read)
        .await
        .map_err(|_| Refusal::BodyTimedOut {
            secs: state.body.read_timeout.as_secs(),
        })??;

    let slot = state.sessions.checkout(&principal);
    let _ticket = state.admission.enter(&slot)?;
    let session = state.admission.session(&slot).await;
    let engine_slot = state.admission.engine_slot().await?;
    let job = Job { head, body, file };
    let turn = Turn {
        principal,
        slot,
        session,
        engine_slot,
    };
    let reply = state.engine.run(job, turn).await?;
    Ok(Answer {
        facts: reply.facts,
        response: reply_response(reply),
        refusal: None,
    })
}

/// The engine's reply as a response: JSON content type unless the reply
/// sets its own, plus the reply's headers (invalid ones are dropped and
/// logged: a bug, but not one worth failing the request for).
fn reply_response(reply: Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or_else(|_| {
        tracing::error!(status = reply.status, "engine returned an invalid status");
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let mut response = json_response(status, reply.body);
    for (name, value) in reply.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            (Ok(name), Ok(value)) if name == CONTENT_TYPE => {
                response.headers_mut().insert(name, value);
            }
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::error!(header = name, "engine returned an invalid header"),
        }
    }
    response
}

/// The fields of the one log line per request.
struct LogLine<'a> {
    request_id: &'a str,
    method: &'a Method,
    route: &'static str,
    status: u16,
    duration: Duration,
    principal_tag: Option<&'a str>,
    facts: Facts,
    refusal: Option<&'a Refusal>,
}

fn log_request(line: &LogLine<'_>) {
    let duration_ms = line.duration.as_secs_f64() * 1000.0;
    let refusal = line.refusal.map(tracing::field::display);
    let code = line.refusal.map(Refusal::code);
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "tradehabit_worker::request",
                $level,
                request.id = line.request_id,
                http.method = %line.method,
                http.route = line.route,
                http.status = line.status,
                duration_ms,
                principal.tag = line.principal_tag,
                upload.rows = line.facts.rows,
                analysis.trades = line.facts.trades,
                refusal,
                error.code = code,
                "request"
            )
        };
    }
    if line.status >= 500 {
        emit!(tracing::Level::WARN);
    } else if is_probe(line.route) && line.status < 400 {
        // The gateway asks every few seconds; `RUST_LOG=debug` shows them.
        emit!(tracing::Level::DEBUG);
    } else {
        emit!(tracing::Level::INFO);
    }
}

/// The readiness probe and the metrics scrape.
fn is_probe(route: &str) -> bool {
    matches!(route, "/internal/ready" | "/internal/metrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_name_themselves_and_the_rest_is_other() {
        assert_eq!(route_name("/api/summary"), "/api/summary");
        assert_eq!(route_name("/api/goals/calculate"), "/api/goals/calculate");
        assert_eq!(route_name("/api/summary/"), "other");
        assert_eq!(route_name("/api/users/12345"), "other");
    }

    #[test]
    fn reply_headers_are_copied_and_invalid_ones_dropped() {
        let reply = Reply {
            status: 405,
            body: b"{}\n".to_vec(),
            headers: vec![
                ("allow", "GET, HEAD, OPTIONS".to_owned()),
                ("bad header", "x".to_owned()),
                ("x-ok", "line\nbreak".to_owned()),
            ],
            facts: Facts::default(),
        };
        let response = reply_response(reply);
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET, HEAD, OPTIONS");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.headers().len(), 2);
    }
}
