//! Connections over `limits.max_connections_per_ip`: a client that simply
//! opened too many connections (a browser, a pool, a script) gets an answer
//! it can act on — a TLS handshake, then `503` in the error envelope with
//! `Retry-After` and `Connection: close` — instead of a connection closed
//! without a word.
//!
//! Answering costs a handshake, so it must not become a resource hole of
//! its own: at most `limits.over_cap_answers_per_second` such connections
//! are answered (a token bucket of that many tokens, refilled at that rate
//! across all addresses; 0 turns answering off), each within
//! [`DEADLINE`] from accept to close, handshake included. Beyond the
//! budget, and whenever `limits.max_connections` (the total) is reached,
//! the connection is closed at once as before. Answered connections are
//! not counted against either cap; at most the rate times [`DEADLINE`] of
//! them are open at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::drain::Drained;
use super::held::HeldWrites;
use super::linger::{lingering, LingerSwitch};
use super::send_watch::WriteWatch;
use super::{drive, h1_builder, h2_builder, Activity, DrainBounds, InFlight};
use crate::body::Guarded;
use crate::reject::{self, Rejection};
use crate::state::State;
use crate::{respond, tls};

/// From accept to close, handshake included, for one answered connection.
pub(crate) const DEADLINE: Duration = Duration::from_secs(5);

/// An answered HTTP/2 connection is ended (GOAWAY) once it has had no
/// request in flight for this long.
const IDLE: Duration = Duration::from_secs(1);

/// Answers every request of an over-cap connection with 503, within
/// [`DEADLINE`].
pub(crate) async fn answer(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let limits = state.config().limits.clone();
    let served = async move {
        let handshake = limits.tls_handshake_timeout.min(DEADLINE);
        // Not watched: the whole connection is bounded by `DEADLINE`.
        let stream = WriteWatch::new(HeldWrites::new(stream), Arc::default());
        let failed = |_| state.metrics.tls_handshake_failed();
        let Some(stream) = tls::handshake(&acceptor, stream, handshake, failed).await else {
            return;
        };
        let is_h2 = super::chose_h2(&stream);
        let bounds = DrainBounds::of(&limits);
        let streams = super::h2_streams(&limits, &state);
        let activity = Arc::new(Activity::new());
        let in_flight = Arc::clone(&activity);
        let service = service_fn(move |request: Request<Incoming>| {
            let guard = InFlight::start(&activity);
            let config = state.config();
            let identity = crate::identity::identify(
                request.headers(),
                peer.ip(),
                &config.server.trusted_proxies,
            );
            let refusal = Rejection::TooManyConnections {
                retry_after: crate::config::DEFAULT_RETRY_AFTER,
            };
            let mut response = reject::respond(&refusal, Some(&identity.request_id));
            let headers = response.headers_mut();
            respond::secure(headers, &config.headers, &identity.request_id);
            if !is_h2 {
                let close = http::HeaderValue::from_static("close");
                headers.insert(http::header::CONNECTION, close);
            }
            // HTTP/2: the stream ends once the unread body is drained, as
            // for any refusal (`drain.rs`); HTTP/1.1 lingers on close.
            let body = request.into_body();
            let response = response.map(|answer| match is_h2 && !body.is_end_stream() {
                true => Drained::new(answer, body, bounds).boxed_unsync(),
                false => answer,
            });
            let response = response.map(|body| Guarded::new(body, guard));
            async move { Ok::<_, Infallible>(response) }
        });
        if is_h2 {
            let connection =
                h2_builder(&limits, streams).serve_connection(TokioIo::new(stream), service);
            let never = std::future::pending();
            let _ = drive(connection, in_flight, IDLE, stop, never).await;
        } else {
            // One answer, then a lingering close (the client may be
            // sending a body).
            let switch = Arc::new(LingerSwitch::default());
            switch.turn_on();
            let io = lingering(stream, switch, bounds);
            let mut builder = h1_builder(&limits);
            builder.keep_alive(false);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let never = std::future::pending();
            let _ = drive(connection, in_flight, IDLE, stop, never).await;
        }
    };
    let _ = tokio::time::timeout(DEADLINE, served).await;
}
