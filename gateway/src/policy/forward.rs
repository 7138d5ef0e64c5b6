//! Forward: the body read in full and checked (buffered routes) or
//! streamed, then the request handed to the upstream (`proxy.rs`); a
//! static-files route is answered from its directory instead
//! (`static_files.rs`). The caller runs this under `limits.request_timeout`.

use std::sync::Arc;

use http::request::Parts;
use http::{Request, Response};

use super::admit::{upload_too_large, Forward};
use crate::body::Body;
use crate::checks::auth::AuthMode;
use crate::config::{Config, Route};
use crate::exchange::Trail;
use crate::identity::Identity;
use crate::proxy::{Caller, Upstream};
use crate::reject::{check, Rejection};
use crate::request_body::{self, ForwardBody};
use crate::respond::OwnCaching;
use crate::static_files::Refused;

/// The forward stage: reads a buffered route's body in full and checks it
/// (the upload form, JSON depth), or streams it, then forwards the request
/// (`proxy.rs`).
pub(super) async fn forward(
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
    if let Some(files) = &route.static_files {
        // Answered from the route's directory; no body (refused earlier).
        let below = parts
            .uri
            .path()
            .strip_prefix(route.path.as_str())
            .unwrap_or_default();
        return match files.serve(&parts.method, below, &parts.headers).await {
            Ok(mut response) => {
                response.extensions_mut().insert(OwnCaching);
                Ok(response)
            }
            Err(refused) => Err(static_refusal(refused)),
        };
    }
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

/// A static file not served: 404, the symlink case with its own audit
/// reason.
fn static_refusal(refused: Refused) -> Rejection {
    match refused {
        Refused::NotFound => Rejection::NoRoute,
        Refused::Symlink => check(crate::checks::Rejection::new(
            http::StatusCode::NOT_FOUND,
            "The requested URL was not found on the server",
            "static.symlink",
        )),
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
            .map_err(|err| check(rules.refusal(err)))?;
    }
    if let Some(rules) = &route.checks.json {
        rules.check(bytes).map_err(check)?;
    }
    Ok(())
}
