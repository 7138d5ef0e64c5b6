//! Forward: send an admitted request to the upstream over a pooled
//! keep-alive connection and stream the answer back.
//!
//! In: a request that passed every check, its [`Identity`] and host, and the
//! body wrapped by `policy::body`. Out: the upstream's response with its
//! body streaming, or a [`Rejection`] saying whose fault the failure was:
//!
//! | what happened | answer |
//! |---|---|
//! | no free slot within `upstream.queue_timeout` | 503 + `Retry-After` |
//! | connect refused / socket missing | 502 |
//! | connect timed out, or no response head within `response_timeout` after the body was sent | 504 |
//! | connection closed early, invalid answer, compressed answer | 502 |
//! | the client's streamed body went over the route limit | 413 |
//! | upstream answered 5xx (and `replace_error_bodies`) | same status, generic envelope; 503 keeps/gets `Retry-After` |
//!
//! Upstream 5xx bodies are replaced by default because the legacy backend
//! writes Python exception texts into its 500s (ASVS 16.5.1); 4xx bodies
//! pass through, they are the API's own validation messages.

mod connector;
mod headers;

use std::sync::Arc;

use http::header::{CONTENT_ENCODING, RETRY_AFTER};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use crate::body::{Body, BodyError, Guarded};
use crate::config::{self, UpstreamAddress};
use crate::policy::body::{BodyWatch, ForwardBody};
use crate::policy::identify::Identity;
use crate::reject::Rejection;

pub(crate) use connector::{is_accepting, Connector};
pub(crate) use headers::{strip_hop_by_hop, Caller};

/// The pooled client for the one upstream, and its concurrency slots.
pub(crate) struct Upstream {
    client: Client<connector::Connector, ForwardBody>,
    slots: Arc<Semaphore>,
    authority: Authority,
}

impl Upstream {
    /// Builds the pool. Nothing connects until the first request.
    pub(crate) fn new(config: &config::Upstream) -> Self {
        let connector = connector::Connector::new(config.address.clone(), config.connect_timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let authority = match &config.address {
            // Only used as the pool key; the socket path is not a host.
            UpstreamAddress::Unix(_) => Authority::from_static("upstream"),
            UpstreamAddress::Tcp { host, port } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("{host}:{port}")
                    .parse()
                    .expect("validated host and port")
            }
        };
        Self {
            client,
            slots: Arc::new(Semaphore::new(config.max_in_flight.get())),
            authority,
        }
    }

    /// Forwards one request; see the module table for the failures.
    pub(crate) async fn forward(
        &self,
        request: Request<ForwardBody>,
        identity: &Identity,
        caller: &Caller<'_>,
        host: &str,
        config: &config::Upstream,
        watch: &BodyWatch,
    ) -> Result<Response<Body>, Rejection> {
        // A free slot is taken at once; only a wait for one needs a timer.
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => tokio::time::timeout(
                config.queue_timeout,
                Arc::clone(&self.slots).acquire_owned(),
            )
            .await
            .map_err(|_| Rejection::UpstreamBusy {
                retry_after: config.retry_after,
            })?
            .expect("the semaphore is never closed"),
        };

        let request = self.to_upstream(request, identity, caller, host);
        let exchange = self.client.request(request);
        // The response clock starts once the client's body has been sent,
        // so a slow upload is not blamed on the upstream (the total
        // request timeout covers the upload).
        let response_deadline = async {
            watch.finished().await;
            tokio::time::sleep(config.response_timeout).await;
        };
        let response = tokio::select! {
            result = exchange => result.map_err(|error| classify(&error, watch))?,
            () = response_deadline => return Err(Rejection::UpstreamTimeout),
        };
        from_upstream(response, config, slot)
    }

    fn to_upstream(
        &self,
        request: Request<ForwardBody>,
        identity: &Identity,
        caller: &Caller<'_>,
        host: &str,
    ) -> Request<ForwardBody> {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .expect("scheme, authority and a checked path form a URI");
        parts.version = Version::HTTP_11;
        headers::to_upstream(&mut parts.headers, identity, caller, host);
        Request::from_parts(parts, body)
    }
}

/// Whose fault an exchange failure was.
fn classify(error: &hyper_util::client::legacy::Error, watch: &BodyWatch) -> Rejection {
    if watch.is_exceeded() {
        return Rejection::BodyTooLarge {
            limit: watch.limit(),
        };
    }
    // A client body that broke mid-stream (e.g. a bad chunk size) fails the
    // exchange too; it is the client's fault, so 400 rather than 502.
    if watch.is_malformed() {
        return Rejection::BodyIncomplete;
    }
    let is_timeout = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
    if error.is_connect() && is_timeout {
        Rejection::UpstreamTimeout
    } else if error.is_connect() {
        Rejection::UpstreamUnreachable(error_chain(error))
    } else {
        Rejection::UpstreamBroken(error_chain(error))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Checks and cleans the upstream's answer; the slot is released when its
/// body has been sent.
fn from_upstream(
    response: Response<hyper::body::Incoming>,
    config: &config::Upstream,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response<Body>, Rejection> {
    let (mut parts, body) = response.into_parts();
    let is_compressed = parts
        .headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if is_compressed {
        return Err(Rejection::UpstreamBroken(
            "compressed response despite Accept-Encoding: identity".into(),
        ));
    }
    if parts.status.is_server_error() && config.replace_error_bodies {
        return Err(Rejection::UpstreamFailed {
            status: parts.status,
            retry_after: parts.headers.get(RETRY_AFTER).cloned(),
        });
    }
    strip_hop_by_hop(&mut parts.headers);
    let body = Guarded::new(body, slot)
        .map_err(|error| BodyError(Box::new(error)))
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}
