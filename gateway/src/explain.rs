//! `tradehabit-gateway explain` and the policy tests: what the gateway
//! would decide for a request, worked out by the live admission code
//! (`policy::dry_run`) without listeners, upstream or audit log
//! (`docs/configuration.md`, "Explain a decision" and "Policy tests").
//!
//! A [`Report`] holds each check's decision in order, the final answer
//! (status, headers, envelope) and, for a forwarded request, the exact
//! head the upstream would get. Credentials are never shown.
//! [`run_policy_tests`] runs a file of expected decisions through the same.

mod policy_tests;
mod render;
mod setup;

use std::net::IpAddr;

use http::HeaderMap;
use serde::Serialize;

use crate::config::Config;
use crate::policy::dry_run::{self, Answer};
use crate::policy::Step;
use crate::state::RateLimits;

pub use policy_tests::{run_file as run_policy_tests, TestRun};
pub use setup::{DEFAULT_CLIENT_IP, EXPLAIN_CALLER_ID};

/// One request to explain, in the command line's words.
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// `https://HOST[:PORT]/PATH[?QUERY]`, or a path with a `Host` header.
    pub url: String,
    /// `Name: value` lines.
    pub headers: Vec<String>,
    /// The body's declared length (`Content-Length`), if it has one.
    pub body_size: Option<u64>,
    /// The client's address [default: [`DEFAULT_CLIENT_IP`]].
    pub client_ip: Option<IpAddr>,
    /// Make the caller an API key holding these scopes.
    pub caller_scopes: Option<Vec<String>>,
    /// That key's id [default: [`EXPLAIN_CALLER_ID`]]: the principal is
    /// `key:<id>`.
    pub caller_id: Option<String>,
}

/// What the gateway would do with one request.
#[derive(Debug, Serialize)]
pub struct Report {
    request: RequestEcho,
    /// What the dry run had to assume (a certificate not readable here).
    assumptions: Vec<String>,
    route: Option<String>,
    principal: Option<String>,
    steps: Vec<Step>,
    answer: AnswerReport,
    /// The head the upstream would get, for a forwarded request.
    upstream: Option<UpstreamReport>,
}

#[derive(Debug, Serialize)]
struct RequestEcho {
    method: String,
    url: String,
    client_ip: IpAddr,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct AnswerReport {
    /// Whether the request goes to the upstream (which then answers).
    forwarded: bool,
    /// The gateway's own answer's status.
    status: Option<u16>,
    /// The refusing check (`auth`, `route`, …) and its audit reason.
    check: Option<&'static str>,
    reason: Option<&'static str>,
    /// The envelope of a refusal.
    envelope: Option<serde_json::Value>,
    /// The answer's headers (for a forwarded request: those the gateway
    /// adds to the upstream's answer).
    headers: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct UpstreamReport {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

/// Explains `request` under `config`, its quotas charged to fresh
/// buckets: nothing is kept between runs.
pub async fn explain(config: Config, request: &ExplainRequest) -> anyhow::Result<Report> {
    let (limits, store) = setup::fresh_rate_limits(&config)?;
    let mut report = explain_with(config, &limits, request).await?;
    report.assumptions.extend(store);
    Ok(report)
}

/// Explains `request` under `config`, its quotas charged to `limits`.
async fn explain_with(
    mut config: Config,
    limits: &RateLimits,
    request: &ExplainRequest,
) -> anyhow::Result<Report> {
    let (mut parts, has_body) = setup::request_head(request)?;
    let assumptions = setup::adopt_certificate(&mut config, &parts)?;
    if let Some(scopes) = &request.caller_scopes {
        let id = request.caller_id.as_deref().unwrap_or(EXPLAIN_CALLER_ID);
        setup::add_caller(&mut config, &mut parts, id, scopes)?;
    }
    let client_ip = request.client_ip.unwrap_or(DEFAULT_CLIENT_IP);
    let echo = RequestEcho {
        method: parts.method.to_string(),
        url: request.url.clone(),
        client_ip,
        headers: shown(&parts.headers),
    };
    let run = dry_run::dry_run(&config, limits, parts, has_body, client_ip).await;
    let (answer, upstream) = match run.answer {
        Answer::Forwarded {
            upstream,
            response_headers,
        } => (
            AnswerReport {
                forwarded: true,
                status: None,
                check: None,
                reason: None,
                envelope: None,
                headers: shown(&response_headers),
            },
            Some(UpstreamReport {
                method: upstream.method.to_string(),
                target: upstream.uri.to_string(),
                headers: shown(&upstream.headers),
            }),
        ),
        Answer::Answered {
            status,
            headers,
            body,
            refused,
        } => (
            AnswerReport {
                forwarded: false,
                status: Some(status.as_u16()),
                check: refused.map(|(check, _)| check),
                reason: refused.map(|(_, reason)| reason),
                envelope: body.and_then(|b| serde_json::from_str(&b).ok()),
                headers: shown(&headers),
            },
            None,
        ),
    };
    Ok(Report {
        request: echo,
        assumptions,
        route: run.route,
        principal: run.principal,
        steps: run.steps,
        answer,
        upstream,
    })
}

impl Report {
    /// The report for people.
    pub fn human(&self) -> String {
        render::human(self)
    }

    /// The report as one JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }
}

/// Headers as shown: credentials replaced by `<redacted>`.
fn shown(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if setup::is_secret(name) {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests;
