//! The operator's words for what a check found, for the dry run's trace
//! (`trace.rs`). Only called while a trace records: never on the live path.

use std::collections::BTreeSet;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ORIGIN};
use http::request::Parts;
use http::HeaderMap;

use super::trace::Outcome;
use crate::checks::auth::{AuthMode, Principal};
use crate::checks::rate_limit::Usage;
use crate::config::{PathMatch, Route};
use crate::request_body::Decoding;

/// The route matched, and its main settings.
pub(super) fn route(route: &Route) -> String {
    let matching = match route.path_match {
        PathMatch::Exact => "exactly",
        PathMatch::Prefix => "and below",
    };
    let methods: Vec<&str> = route.methods.iter().map(http::Method::as_str).collect();
    format!(
        "route {:?}: {} {matching}, methods {}",
        route.name,
        route.path,
        methods.join(", ")
    )
}

/// The CORS decision for a request that is no preflight.
pub(super) fn cors(request: &HeaderMap, answer: Option<&HeaderMap>) -> String {
    let Some(origin) = request.get(ORIGIN) else {
        return "no Origin: not a cross-origin browser request".to_owned();
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    if answer.is_some_and(|answer| answer.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)) {
        format!("origin {origin} is allowed: the answer carries its CORS headers")
    } else {
        format!(
            "origin {origin} is not allowed: no CORS headers (a browser will not show the answer)"
        )
    }
}

/// What a rate-limit stage charged (`kind`: `per_ip`, `per_principal`)
/// and to which key.
pub(super) fn usage(usage: &[Usage], kind: &str, key: &str) -> String {
    if usage.is_empty() {
        return format!("the route has no {kind} quota");
    }
    let charged: Vec<String> = usage
        .iter()
        .map(|u| {
            format!(
                "{} {}/{}s ({} left)",
                u.name, u.limit, u.window_seconds, u.remaining
            )
        })
        .collect();
    format!("charges 1 to {key}: {}", charged.join(", "))
}

/// Who the caller is, under the route's `auth` mode.
pub(super) fn principal(mode: AuthMode, principal: Option<&Principal>) -> String {
    let mode = match mode {
        AuthMode::Required => "required",
        AuthMode::Optional => "optional",
        AuthMode::None => "none",
    };
    match principal {
        Some(p) => format!(
            "auth = {mode}: {} by {}, scopes [{}]",
            p.id,
            p.method.as_str(),
            p.scopes_header()
        ),
        None if mode == "none" => "auth = none: credentials are not looked at".to_owned(),
        None => format!("auth = {mode}: no credential, anonymous"),
    }
}

/// The scopes the route needs against those held.
pub(super) fn scopes(required: &[String], held: Option<&BTreeSet<String>>) -> String {
    if required.is_empty() {
        return "the route requires no scope".to_owned();
    }
    let held: Vec<&str> = held.into_iter().flatten().map(String::as_str).collect();
    format!(
        "requires [{}], holds [{}]",
        required.join(" "),
        held.join(" ")
    )
}

/// The query that passed the route's rules.
pub(super) fn query(query: Option<&str>) -> String {
    match query {
        None | Some("") => "no query".to_owned(),
        Some(_) => "every parameter is the route's, typed and in range".to_owned(),
    }
}

/// The content type that passed.
pub(super) fn content_type(allowed: &[String], headers: &HeaderMap, has_body: bool) -> String {
    if !has_body {
        return "no body".to_owned();
    }
    let given = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    format!("{given:?} is one of [{}]", allowed.join(", "))
}

/// The body's head: declared length against the limit, and its coding.
pub(super) fn body_head(parts: &Parts, route: &Route, decoding: Option<&Decoding>) -> String {
    let limit = route.body_limit;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut text = match declared {
        Some(length) => format!("declared length {length} within body_limit {limit}"),
        None => format!("no declared length: counted against body_limit {limit} as it arrives"),
    };
    if let Some(decoding) = decoding {
        text.push_str(&format!(
            "; {:?} decoded up to {} bytes",
            decoding.encoding, decoding.max_decoded_bytes
        ));
    }
    text
}

/// Whether the body's contents are checked before forwarding.
pub(super) fn body_contents_outcome(route: &Route) -> Outcome {
    if route.checks.buffers_body() {
        Outcome::Later
    } else {
        Outcome::Skip
    }
}

/// What happens to the body's contents.
pub(super) fn body_contents(route: &Route) -> String {
    let checks = &route.checks;
    if checks.upload.is_some() {
        "read in full, then the upload form is checked (field, file type, size): not evaluated \
         without a body"
            .to_owned()
    } else if let Some(json) = &checks.json {
        format!(
            "read in full, then the JSON nesting depth is checked (at most {}): not evaluated \
             without a body",
            json.max_depth
        )
    } else {
        "streamed to the upstream as it arrives".to_owned()
    }
}
