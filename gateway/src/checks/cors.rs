//! CORS stage: preflights answered here, before authentication (browsers
//! send no credentials on a preflight); CORS headers for every other answer.
//!
//! In: the request method and headers, the matched route's methods.
//! Out: for a preflight, the complete answer (204 with the CORS headers) or
//! a 403 refusal; for any other request, the headers to add to its response,
//! errors included, or a 403 for a cross-origin write when the operator
//! asked for that protection.
//!
//! Rules (WHATWG Fetch, "CORS protocol"; OWASP ASVS 5.0 3.4.2 and 3.5.2):
//! * Origins match an allowlist **exactly**, byte for byte, after the
//!   allowlist itself was normalised (lower-case scheme and host, no
//!   default port). Browsers always send origins in that form, so an
//!   upper-case `Origin` can only come from a non-browser client, which
//!   CORS does not concern. (The legacy backend matched case-insensitively.)
//! * `null`, `*`, paths and malformed origins are refused at validation;
//!   wildcard headers are refused too (`*` never covers `Authorization`).
//! * A disallowed origin never sees `Access-Control-Allow-Origin`.
//! * `Vary: Origin` is on every answer, including ones without CORS headers,
//!   so a cache never serves one origin's answer to another.
//! * `Retry-After`, the rate-limit headers and `X-Request-Id` are exposed.
//! * CORS is not access control: a disallowed origin on a read is still
//!   served (without CORS headers, so a browser script cannot read it).
//!   Writes are different: a form or `fetch` with a CORS-safelisted content
//!   type (`multipart/form-data`, `text/plain`, …) is sent without any
//!   preflight, so a hostile page could make a visitor's browser upload or
//!   change settings. With `block_cross_origin_writes` (the default), a
//!   state-changing request whose `Origin` is present, not allowlisted and
//!   not the gateway's own origin is refused (ASVS 5.0 3.5.2).

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::problems::{index, join, Problems};
use super::Rejection;

/// Default `Access-Control-Max-Age`: 10 minutes.
pub const DEFAULT_MAX_AGE_SECONDS: u32 = 600;

/// Largest accepted `max_age_seconds`: Chromium caps preflight caching at
/// two hours, so a longer value only misleads the operator.
pub const MAX_MAX_AGE_SECONDS: u32 = 7200;

/// Request headers a browser may send cross-origin by default.
pub const DEFAULT_ALLOWED_HEADERS: &[&str] = &["Authorization", "Content-Type", "X-API-Key"];

/// Response headers browser scripts may read.
pub const EXPOSED_HEADERS: &str = "Retry-After, RateLimit, RateLimit-Policy, X-Request-Id";

/// Longest origin considered (scheme + host + port).
const MAX_ORIGIN_BYTES: usize = 256;

/// A `[cors]` section as written in the policy file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CorsRaw {
    /// Origins allowed to read answers, e.g. `https://app.tradehab.it`.
    /// Default: none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Request headers allowed cross-origin. Default:
    /// [`DEFAULT_ALLOWED_HEADERS`].
    pub allowed_headers: Option<Vec<String>>,
    /// Send `Access-Control-Allow-Credentials: true`. Default: false (the
    /// API uses headers, not cookies).
    #[serde(default)]
    pub allow_credentials: bool,
    /// Preflight cache lifetime in seconds. Default
    /// [`DEFAULT_MAX_AGE_SECONDS`], at most [`MAX_MAX_AGE_SECONDS`].
    pub max_age_seconds: Option<u32>,
    /// Refuse state-changing requests from origins that are not allowed.
    /// Default: true.
    pub block_cross_origin_writes: Option<bool>,
}

/// A validated CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
    allowed_headers: Vec<HeaderName>,
    allow_headers_value: HeaderValue,
    allow_credentials: bool,
    max_age_seconds: u32,
    block_cross_origin_writes: bool,
}

impl Default for CorsPolicy {
    /// No origin allowed; every preflight refused.
    fn default() -> Self {
        let mut problems = Problems::new();
        validate(&CorsRaw::default(), "cors", &mut problems)
            .expect("the empty CORS section is valid")
    }
}

/// Validates a CORS section at key path `path`.
pub fn validate(raw: &CorsRaw, path: &str, problems: &mut Problems) -> Option<CorsPolicy> {
    let before = problems.len();

    let origins_path = join(path, "allowed_origins");
    let mut origins = Vec::new();
    for (i, text) in raw.allowed_origins.iter().enumerate() {
        match normalise_origin(text) {
            Ok(origin) if origins.contains(&origin) => {
                problems.push(index(&origins_path, i), format!("{text:?} is listed twice"))
            }
            Ok(origin) => origins.push(origin),
            Err(why) => problems.push(index(&origins_path, i), format!("{text:?}: {why}")),
        }
    }

    let headers_path = join(path, "allowed_headers");
    let header_names: Vec<String> = match &raw.allowed_headers {
        Some(list) => list.clone(),
        None => DEFAULT_ALLOWED_HEADERS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    };
    let mut allowed_headers = Vec::new();
    for (i, name) in header_names.iter().enumerate() {
        if name == "*" {
            problems.push(
                index(&headers_path, i),
                "\"*\" is not allowed: list the headers (a wildcard never covers Authorization)",
            );
            continue;
        }
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => allowed_headers.push(header),
            Err(_) => problems.push(
                index(&headers_path, i),
                format!("{name:?} is not a header name"),
            ),
        }
    }

    let max_age_seconds = raw.max_age_seconds.unwrap_or(DEFAULT_MAX_AGE_SECONDS);
    if max_age_seconds > MAX_MAX_AGE_SECONDS {
        problems.push(
            join(path, "max_age_seconds"),
            format!(
                "{max_age_seconds} is above the maximum of {MAX_MAX_AGE_SECONDS} (browsers cap it)"
            ),
        );
    }

    if problems.len() != before {
        return None;
    }
    let allow_headers_value = HeaderValue::from_str(&header_names.join(", "))
        .expect("validated header names form a valid header value");
    Some(CorsPolicy {
        origins,
        allowed_headers,
        allow_headers_value,
        allow_credentials: raw.allow_credentials,
        max_age_seconds,
        block_cross_origin_writes: raw.block_cross_origin_writes.unwrap_or(true),
    })
}

/// Normalises an allowlist entry to the form browsers send: lower-case
/// `scheme://host[:port]`, default port dropped.
fn normalise_origin(text: &str) -> Result<String, &'static str> {
    if text == "null" {
        return Err(
            "the null origin is sent by sandboxed frames and local files; it is never allowed",
        );
    }
    if text.contains('*') {
        return Err("wildcards are not allowed; list each origin");
    }
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("expected scheme://host[:port]")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return Err("the scheme must be http or https"),
    };
    if rest.is_empty() {
        return Err("the host is missing");
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Err("an origin has no path, query, user or trailing slash: scheme://host[:port]");
    }
    let (host, port) = split_host_port(rest).ok_or("malformed host or port")?;
    if !is_valid_host(host) {
        return Err("malformed host (use the ASCII/punycode form)");
    }
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = &authority[..=end];
        let after = &authority[end + 1..];
        return match after.strip_prefix(':') {
            Some(port) => valid_port(port).then_some((host, Some(port))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => valid_port(port).then_some((host, Some(port))),
        None => Some((authority, None)),
    }
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

fn is_valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why the CORS stage refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// Preflight from an origin that is not allowed.
    #[error("preflight from an origin that is not allowed")]
    OriginNotAllowed,
    /// Preflight asking for a method the route does not serve.
    #[error("preflight for a method the route does not serve")]
    MethodNotAllowed,
    /// Preflight asking for a header that is not allowed.
    #[error("preflight for a request header that is not allowed")]
    HeaderNotAllowed,
    /// State-changing request from an origin that is not allowed.
    #[error("cross-origin write from an origin that is not allowed")]
    CrossOriginWrite,
}

impl CorsError {
    /// Stable audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::OriginNotAllowed => "cors.origin_not_allowed",
            Self::MethodNotAllowed => "cors.method_not_allowed",
            Self::HeaderNotAllowed => "cors.header_not_allowed",
            Self::CrossOriginWrite => "cors.cross_origin_write",
        }
    }
}

impl From<CorsError> for Rejection {
    fn from(err: CorsError) -> Self {
        let (message, vary) = match err {
            CorsError::CrossOriginWrite => ("cross-origin request refused", vary_value(false)),
            _ => ("CORS preflight refused", vary_value(true)),
        };
        Rejection::new(StatusCode::FORBIDDEN, message, err.reason()).with_header(VARY, vary)
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with
/// `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

fn vary_value(preflight: bool) -> HeaderValue {
    if preflight {
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        )
    } else {
        HeaderValue::from_static("Origin")
    }
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl CorsPolicy {
    /// The allowed origins, normalised.
    pub fn allowed_origins(&self) -> &[String] {
        &self.origins
    }

    /// The allowed origin this request comes from, if any.
    fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let origin = headers.get(ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o == text).then_some(origin)
    }

    /// Answers a preflight for a route serving `route_methods`.
    ///
    /// Returns the headers of the 204 answer, or why it is refused (403,
    /// without `Access-Control-Allow-Origin`).
    pub fn preflight(
        &self,
        headers: &HeaderMap,
        route_methods: &[Method],
    ) -> Result<HeaderMap, CorsError> {
        let origin = self
            .allowed_origin(headers)
            .ok_or(CorsError::OriginNotAllowed)?;
        let requested = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
            .ok_or(CorsError::MethodNotAllowed)?;
        if !route_methods.contains(&requested) {
            return Err(CorsError::MethodNotAllowed);
        }
        for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            let text = value.to_str().map_err(|_| CorsError::HeaderNotAllowed)?;
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                // HeaderName comparison is case-insensitive (names are lower-cased).
                let allowed = HeaderName::from_bytes(name.as_bytes())
                    .is_ok_and(|n| self.allowed_headers.contains(&n));
                if !allowed {
                    return Err(CorsError::HeaderNotAllowed);
                }
            }
        }

        let mut out = HeaderMap::new();
        out.insert(VARY, vary_value(true));
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        let methods: Vec<&str> = route_methods.iter().map(Method::as_str).collect();
        out.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_str(&methods.join(", ")).expect("method names are valid header text"),
        );
        out.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers_value.clone(),
        );
        out.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.max_age_seconds),
        );
        if self.allow_credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        Ok(out)
    }

    /// Checks a non-preflight request and returns the CORS headers for its
    /// answer, whatever that answer turns out to be.
    ///
    /// `authority` is the request's host (`Host` or the URI authority): an
    /// `Origin` of `https://<authority>` is the gateway's own origin and
    /// never a cross-origin write.
    pub fn actual(
        &self,
        method: &Method,
        headers: &HeaderMap,
        authority: Option<&str>,
    ) -> Result<HeaderMap, CorsError> {
        let mut out = HeaderMap::new();
        out.insert(VARY, vary_value(false));
        if let Some(more) = self.actual_beyond_vary(method, headers, authority)? {
            out.extend(more);
        }
        Ok(out)
    }

    /// [`CorsPolicy::actual`] without its `Vary: Origin`, which every
    /// answer gets in any case (`policy.rs` adds it): `None` when that is
    /// all there would be, as for every request without an allowed
    /// `Origin`, so such a request builds no header map at all.
    pub(crate) fn actual_beyond_vary(
        &self,
        method: &Method,
        headers: &HeaderMap,
        authority: Option<&str>,
    ) -> Result<Option<HeaderMap>, CorsError> {
        if let Some(origin) = self.allowed_origin(headers) {
            let mut out = HeaderMap::with_capacity(4);
            out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            if self.allow_credentials {
                out.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
            return Ok(Some(out));
        }
        if self.block_cross_origin_writes && is_state_changing(method) {
            if let Some(origin) = headers.get(ORIGIN) {
                if !is_same_origin(origin, authority) {
                    return Err(CorsError::CrossOriginWrite);
                }
            }
        }
        Ok(None)
    }
}

fn is_same_origin(origin: &HeaderValue, authority: Option<&str>) -> bool {
    let (Ok(origin), Some(authority)) = (origin.to_str(), authority) else {
        return false;
    };
    if origin.len() > MAX_ORIGIN_BYTES {
        return false;
    }
    origin.strip_prefix("https://").is_some_and(|host| {
        host.eq_ignore_ascii_case(authority)
            || format!("{host}:443").eq_ignore_ascii_case(authority)
    })
}

#[cfg(test)]
mod tests;
