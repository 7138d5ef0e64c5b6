//! Dry run: one request's head through the admit stage — the very checks
//! of the live path (`admit.rs`), with a [`Trace`] recording each decision
//! — without listeners, upstream or audit log. What `explain` and the
//! policy tests show (`docs/configuration.md`, "Explain a decision").
//!
//! The quotas are charged to the `RateLimits` given: a fresh one (see
//! `explain`) shows what a request would cost on fresh buckets.

use std::net::IpAddr;

use futures_util::FutureExt as _;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt as _;
use tracing::instrument::WithSubscriber as _;

use super::admit::{admit_head, Checked, Context};
use super::trace::{Step, Trace};
use crate::audit;
use crate::body::Body;
use crate::checks::auth::AuthMode;
use crate::config::Config;
use crate::exchange::Trail;
use crate::identity;
use crate::proxy::{upstream_headers, Caller};
use crate::reject;
use crate::respond;
use crate::state::RateLimits;

/// What the gateway would do with one request.
#[derive(Debug)]
pub(crate) struct DryRun {
    /// Each check's decision, in order.
    pub(crate) steps: Vec<Step>,
    /// The route that applied, if routing got that far.
    pub(crate) route: Option<String>,
    /// The authenticated principal, if any.
    pub(crate) principal: Option<String>,
    /// The final answer.
    pub(crate) answer: Answer,
}

/// The final answer of a dry run.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Forwarded: the upstream answers.
    Forwarded {
        /// The request head the upstream would get.
        upstream: Parts,
        /// The headers the gateway adds to the upstream's answer.
        response_headers: HeaderMap,
    },
    /// Answered by the gateway.
    Answered {
        status: StatusCode,
        headers: HeaderMap,
        /// The envelope of a refusal (never a token endpoint's body).
        body: Option<String>,
        /// The refusing check and its audit reason, for a refusal.
        refused: Option<(&'static str, &'static str)>,
    },
}

/// Runs `parts` (`has_body`: a body follows) from `client_ip` through the
/// admit stage of `config`, charging its quotas to `limits`.
pub(crate) async fn dry_run(
    config: &Config,
    limits: &RateLimits,
    parts: Parts,
    has_body: bool,
    client_ip: IpAddr,
) -> DryRun {
    // The refusal log lines of the live path are not wanted here.
    let quiet = tracing::Dispatch::none();
    traced(config, limits, parts, has_body, client_ip)
        .with_subscriber(quiet)
        .await
}

/// [`dry_run`], with whatever subscriber is current.
async fn traced(
    config: &Config,
    limits: &RateLimits,
    mut parts: Parts,
    has_body: bool,
    client_ip: IpAddr,
) -> DryRun {
    let identity = identity::identify(&parts.headers, client_ip, &config.server.trusted_proxies);
    let trail = Trail::default();
    let context = Context {
        identity: &identity,
        config,
        limits,
        trail: &trail,
    };
    let mut headers = HeaderMap::new();
    let mut trace = Trace::on();
    let checked = admit_head(&mut parts, has_body, &context, &mut headers, &mut trace).await;
    let mut principal = None;
    let answer = match checked {
        Ok(Checked::Forward {
            route,
            host,
            principal: caller,
            ..
        }) => {
            principal = caller.as_ref().map(|p| p.id.clone());
            let caller = Caller {
                principal: caller.as_ref(),
                consumed_credentials: route.checks.auth != AuthMode::None,
            };
            upstream_headers(&mut parts.headers, &identity, &caller, &host);
            if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
                if let Some(target) = parts.uri.path_and_query().cloned() {
                    parts.uri = target.into();
                }
            }
            parts.version = http::Version::HTTP_11;
            let mut response_headers = HeaderMap::new();
            super::add_policy_headers(&mut response_headers, headers);
            respond::secure(&mut response_headers, &config.headers, &identity.request_id);
            Answer::Forwarded {
                upstream: parts,
                response_headers,
            }
        }
        Ok(Checked::Answered(response)) => {
            finish(response, headers, config, &identity.request_id, None)
        }
        Err(rejection) => {
            let decision = audit::decision(&rejection);
            let refused = decision.reason.map(|reason| (decision.outcome, reason));
            let response = reject::respond(&rejection, Some(&identity.request_id));
            finish(response, headers, config, &identity.request_id, refused)
        }
    };
    let (steps, route) = trace.finish();
    DryRun {
        steps,
        route,
        principal,
        answer,
    }
}

/// The gateway's own answer as the client would get it: the policy and
/// security headers added, the envelope of a refusal read.
fn finish(
    mut response: Response<Body>,
    policy_headers: HeaderMap,
    config: &Config,
    request_id: &http::HeaderValue,
    refused: Option<(&'static str, &'static str)>,
) -> Answer {
    super::add_policy_headers(response.headers_mut(), policy_headers);
    respond::secure(response.headers_mut(), &config.headers, request_id);
    let (parts, body) = response.into_parts();
    let body = refused.and_then(|_| {
        // A refusal's body is one envelope, already in memory.
        let collected = body.collect().now_or_never()?.ok()?;
        Some(String::from_utf8_lossy(&collected.to_bytes()).into_owned())
    });
    Answer::Answered {
        status: parts.status,
        headers: parts.headers,
        body,
        refused,
    }
}
