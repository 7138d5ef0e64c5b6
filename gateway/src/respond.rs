//! Respond: the headers every answer leaves with, whoever wrote it (the
//! upstream, a check, `reject.rs`).
//!
//! Over HTTPS: exactly one `Strict-Transport-Security` (any upstream copy is
//! replaced, RFC 6797 §7.1), `X-Content-Type-Options: nosniff`,
//! `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, the configured
//! `Content-Security-Policy` and `Cache-Control: no-store` (trading data
//! must not sit in caches). Upstream `Server` and `X-Powered-By` are
//! removed. Over plain HTTP the same, minus HSTS, which RFC 6797 §7.2 forbids
//! on insecure transport.
//!
//! One exception: an answer marked [`OwnCaching`] (a static file the
//! gateway serves itself, `static_files.rs`) keeps its own `Cache-Control`
//! and `Content-Security-Policy`, unless it sets a cookie: then it is
//! `no-store` like every other answer.

use http::header::SET_COOKIE;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, SERVER, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response};
use tradehabit_shared::headers::REQUEST_ID;

use crate::checks::unindexed;
use crate::config::SecurityHeaders;

/// Marks a response whose `Cache-Control` and `Content-Security-Policy`
/// the gateway chose itself for a public file (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnCaching;

/// [`secure`] for a whole response, honouring [`OwnCaching`].
pub(crate) fn secure_response<B>(
    response: &mut Response<B>,
    config: &SecurityHeaders,
    request_id: &HeaderValue,
) {
    let own = response.extensions().get::<OwnCaching>().is_some();
    let headers = response.headers_mut();
    let kept = own.then(|| {
        (
            headers.get(CACHE_CONTROL).cloned(),
            headers.get(CONTENT_SECURITY_POLICY).cloned(),
        )
    });
    secure(headers, config, request_id);
    if let Some((cache, csp)) = kept {
        if let Some(cache) = cache.filter(|_| !headers.contains_key(SET_COOKIE)) {
            headers.insert(CACHE_CONTROL, cache);
        }
        if let Some(csp) = csp {
            headers.insert(CONTENT_SECURITY_POLICY, csp);
        }
    }
}

/// Sets the HTTPS security headers and the request id.
pub(crate) fn secure(headers: &mut HeaderMap, config: &SecurityHeaders, request_id: &HeaderValue) {
    common(headers);
    headers.insert(STRICT_TRANSPORT_SECURITY, config.hsts.clone());
    headers.insert(
        CONTENT_SECURITY_POLICY,
        config.content_security_policy.clone(),
    );
    // A request id never recurs: never indexed by HTTP/2's HPACK.
    headers.insert(REQUEST_ID_NAME, unindexed(request_id.clone()));
}

/// Built once: inserting a name given as `&str` copies it into a new
/// allocation for every answer.
const REQUEST_ID_NAME: http::HeaderName = http::HeaderName::from_static(REQUEST_ID);

/// Built once, as [`REQUEST_ID_NAME`]: a name given as `&str` is parsed
/// again at every call.
const X_POWERED_BY: http::HeaderName = http::HeaderName::from_static("x-powered-by");

/// Sets the headers of a plain-HTTP answer: everything but HSTS.
pub(crate) fn plain(headers: &mut HeaderMap, config: &SecurityHeaders) {
    common(headers);
    headers.remove(STRICT_TRANSPORT_SECURITY);
    headers.insert(
        CONTENT_SECURITY_POLICY,
        config.content_security_policy.clone(),
    );
}

/// How many headers [`secure`] sets at most (the common four, HSTS, the
/// CSP, the request id, one to spare): callers reserve room for them.
pub(crate) const HEADERS_SET: usize = 8;

fn common(headers: &mut HeaderMap) {
    // Room for ours at once, instead of growing the map step by step.
    headers.reserve(HEADERS_SET);
    // One pass over the names there are, not a lookup for each; then only
    // the ones found are removed.
    let (mut server, mut powered_by) = (false, false);
    for name in headers.keys() {
        server |= name == SERVER;
        powered_by |= name == X_POWERED_BY;
    }
    if server {
        headers.remove(SERVER);
    }
    if powered_by {
        headers.remove(X_POWERED_BY);
    }
    // `insert` replaces every earlier value, so upstream copies go too.
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SecurityHeaders {
        crate::config::tests::minimal().headers
    }

    #[test]
    fn upstream_copies_are_replaced_by_exactly_one_of_ours() {
        let mut headers = HeaderMap::new();
        headers.append(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=0"),
        );
        headers.append(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=5"),
        );
        headers.append(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600"),
        );
        headers.append(SERVER, HeaderValue::from_static("gunicorn"));
        headers.append("x-powered-by", HeaderValue::from_static("Flask"));
        secure(&mut headers, &config(), &HeaderValue::from_static("id-1"));
        assert_eq!(headers.get_all(STRICT_TRANSPORT_SECURITY).iter().count(), 1);
        assert_eq!(
            headers[STRICT_TRANSPORT_SECURITY],
            "max-age=63072000; includeSubDomains"
        );
        assert_eq!(headers.get_all(CACHE_CONTROL).iter().count(), 1);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(!headers.contains_key(SERVER));
        assert!(!headers.contains_key("x-powered-by"));
        assert_eq!(headers[REQUEST_ID], "id-1");
        assert!(
            headers[REQUEST_ID].is_sensitive(),
            "a request id is never indexed by HPACK"
        );
        assert!(!headers[STRICT_TRANSPORT_SECURITY].is_sensitive());
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }

    #[test]
    fn plain_http_never_carries_hsts() {
        let mut headers = HeaderMap::new();
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=1"),
        );
        plain(&mut headers, &config());
        assert!(!headers.contains_key(STRICT_TRANSPORT_SECURITY));
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
