//! Request shape: the head must fit the limits the upstream can take
//! (gunicorn: request line 4094 bytes, 100 fields, 8190 bytes per field),
//! its framing must be unambiguous, it must ask for no protocol upgrade or
//! tunnel, and it must name a host (which `host.rs` then checks is
//! one of ours).
//!
//! Upgrades and tunnels: no route upgrades, so a request with an `Upgrade`
//! header (HTTP/1.1) or the `CONNECT` method (HTTP/1.1 and HTTP/2, extended
//! CONNECT included) is refused with 400 before anything else looks at
//! it. 400, not 501: the request is the client's choice, and a 5xx would
//! count against the upstream's error-rate alert. On HTTP/1.1 the framing
//! reader stops following a connection at such a head, so the refusal also
//! ends the connection (`accept.rs`).
//!
//! Header names with `_` (WSGI servers read `X_Foo` as `X-Foo`) are refused
//! here under `limits.underscore_headers = "refuse"`; otherwise they are
//! dropped on the way to the upstream (`proxy/headers.rs`).
//!
//! hyper already refuses, on HTTP/1.1, differing duplicate
//! `Content-Length`s and a `Transfer-Encoding` whose last coding is not
//! chunked. It resolves the other ambiguous heads itself — drops
//! `Content-Length` when `Transfer-Encoding` is present (RFC 9112 §6.3),
//! keeps one of several equal `Content-Length`s — before this check sees
//! them; the connection's framing reader (`accept/framing.rs`) notes such a
//! head as [`HeadAsWritten::Ambiguous`] on the request, and it is refused
//! here. The request is re-framed toward the upstream in any case, so the
//! two hops can never disagree on where it ends. The reader also ends a
//! head that is over hyper's own bounds (twice `max_header_bytes`, more than
//! `max_header_count` fields, a request line beyond them) before hyper sees
//! all of it, and notes why as [`HeadAsWritten::TooLarge`] or
//! [`HeadAsWritten::RequestLineTooLong`]: the head that reaches this check
//! is then only its beginning, and is refused here (431 / 414) by what the
//! reader found, before anything looks at it. The header checks repeat
//! hyper's for HTTP/2, where the h2 crate is the only other guard.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::request::Parts;
use http::{Method, Version};

use crate::config::{Limits, UnderscoreHeaders};
use crate::host::Authority;
use crate::reject::Rejection;

/// `" HTTP/1.1"` plus the space after the method.
const REQUEST_LINE_OVERHEAD: usize = 10;

/// Checks the head and returns the request's host (`host[:port]`).
pub(crate) fn check(parts: &Parts, limits: &Limits) -> Result<Authority, Rejection> {
    match parts.extensions.get() {
        Some(HeadAsWritten::Ambiguous(why)) => return Err(Rejection::AmbiguousLength(why)),
        Some(HeadAsWritten::TooLarge(why)) => return Err(Rejection::HeadersTooLarge(why)),
        Some(HeadAsWritten::RequestLineTooLong { at_least }) => {
            return Err(Rejection::RequestLineTooLong { length: *at_least })
        }
        None => {}
    }
    let target_len = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().len())
        .unwrap_or(1);
    let line = parts.method.as_str().len() + target_len + REQUEST_LINE_OVERHEAD;
    if line > limits.max_request_line_bytes {
        return Err(Rejection::RequestLineTooLong { length: line });
    }
    if parts.headers.len() > limits.max_header_count {
        return Err(Rejection::HeadersTooLarge("too many header fields"));
    }
    // Each field as it appears on an HTTP/1.1 wire: name + ": " + value,
    // then CRLF; the section is all of them.
    let mut section = 0;
    for (name, value) in &parts.headers {
        let field = name.as_str().len() + 2 + value.len();
        if field > limits.max_header_field_bytes {
            return Err(Rejection::HeadersTooLarge("a header field is too long"));
        }
        section += field + 2;
    }
    if section > limits.max_header_bytes {
        return Err(Rejection::HeadersTooLarge(
            "the header section is too large",
        ));
    }
    check_framing(parts)?;
    check_upgrade(parts)?;
    let has_underscore = || parts.headers.keys().any(|n| n.as_str().contains('_'));
    if limits.underscore_headers == UnderscoreHeaders::Refuse && has_underscore() {
        return Err(Rejection::UnderscoreHeader);
    }
    host(parts)
}

/// Refuses protocol upgrades and tunnels: no route opts in to either.
fn check_upgrade(parts: &Parts) -> Result<(), Rejection> {
    if parts.method == Method::CONNECT {
        return Err(Rejection::UpgradeRefused(
            "the CONNECT method is not accepted",
        ));
    }
    if parts.headers.contains_key(UPGRADE) {
        return Err(Rejection::UpgradeRefused(
            "the Upgrade header is not accepted",
        ));
    }
    Ok(())
}

/// A request extension set by the connection's HTTP/1.1 framing reader:
/// what is wrong with the head as the client wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadAsWritten {
    /// Its length is ambiguous, or it came after the point where the
    /// reader stopped following the connection (400), in this way.
    Ambiguous(&'static str),
    /// It is over hyper's bound on a head or on its field count (431): the
    /// request carries only the head's beginning.
    TooLarge(&'static str),
    /// Its request line is over hyper's bound (414), at least this long:
    /// the request carries a stand-in request line.
    RequestLineTooLong { at_least: usize },
}

fn check_framing(parts: &Parts) -> Result<(), Rejection> {
    let lengths: Vec<_> = parts.headers.get_all(CONTENT_LENGTH).iter().collect();
    if lengths.len() > 1
        || lengths
            .first()
            .is_some_and(|v| v.as_bytes().contains(&b','))
    {
        return Err(Rejection::AmbiguousLength("several Content-Length values"));
    }
    if parts.headers.contains_key(TRANSFER_ENCODING) {
        if parts.version >= Version::HTTP_2 {
            return Err(Rejection::AmbiguousLength("Transfer-Encoding over HTTP/2"));
        }
        if !lengths.is_empty() {
            return Err(Rejection::AmbiguousLength(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }
    Ok(())
}

/// The host from the URI authority (HTTP/2, absolute-form) or `Host`; when
/// both are present they must agree.
fn host(parts: &Parts) -> Result<Authority, Rejection> {
    let from_uri = parts.uri.authority().map(|a| a.as_str());
    let mut from_header = parts.headers.get_all(HOST).iter();
    let header = from_header.next();
    if from_header.next().is_some() {
        return Err(Rejection::HostInvalid);
    }
    let header_text = match header {
        Some(value) => Some(value.to_str().map_err(|_| Rejection::HostInvalid)?),
        None => None,
    };
    let host = match (from_uri, header_text) {
        (Some(uri), Some(header)) if !uri.eq_ignore_ascii_case(header) => {
            return Err(Rejection::HostInvalid)
        }
        (Some(host), _) | (None, Some(host)) => host,
        (None, None) => return Err(Rejection::HostInvalid),
    };
    let valid = |host: &str| {
        host.parse::<http::uri::Authority>().is_ok_and(|authority| {
            !authority.as_str().contains('@') && !authority.host().is_empty()
        })
    };
    Authority::of_valid(host, header, valid).ok_or(Rejection::HostInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        crate::config::tests::minimal().limits
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn an_ordinary_request_passes_and_yields_its_host() {
        let p = parts("/api/summary", &[("host", "Example.COM:8443")]);
        assert_eq!(check(&p, &limits()).unwrap().as_str(), "example.com:8443");
        let lower = parts("/api/summary", &[("host", "example.com:8443")]);
        assert_eq!(
            check(&lower, &limits()).unwrap().as_str(),
            "example.com:8443"
        );
    }

    #[test]
    fn gunicorn_limits_are_enforced() {
        let long = format!("/api/{}", "a".repeat(4094));
        assert!(matches!(
            check(&parts(&long, &[("host", "x")]), &limits()),
            Err(Rejection::RequestLineTooLong { .. })
        ));
        let big = "v".repeat(8190);
        assert!(matches!(
            check(&parts("/", &[("host", "x"), ("x-big", &big)]), &limits()),
            Err(Rejection::HeadersTooLarge(_))
        ));
        let mut p = parts("/", &[("host", "x")]);
        for i in 0..100 {
            p.headers.insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                http::HeaderValue::from_static("1"),
            );
        }
        assert!(matches!(
            check(&p, &limits()),
            Err(Rejection::HeadersTooLarge(_))
        ));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let both = parts(
            "/",
            &[
                ("host", "x"),
                ("content-length", "3"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert!(matches!(
            check(&both, &limits()),
            Err(Rejection::AmbiguousLength(_))
        ));
        let twice = parts(
            "/",
            &[
                ("host", "x"),
                ("content-length", "3"),
                ("content-length", "4"),
            ],
        );
        assert!(matches!(
            check(&twice, &limits()),
            Err(Rejection::AmbiguousLength(_))
        ));
        let mut noted = parts("/", &[("host", "x"), ("content-length", "3")]);
        noted
            .extensions
            .insert(HeadAsWritten::Ambiguous("noted by the reader"));
        assert!(matches!(
            check(&noted, &limits()),
            Err(Rejection::AmbiguousLength("noted by the reader"))
        ));
        let listed = parts("/", &[("host", "x"), ("content-length", "3, 3")]);
        assert!(matches!(
            check(&listed, &limits()),
            Err(Rejection::AmbiguousLength(_))
        ));
    }

    #[test]
    fn what_the_reader_found_is_refused_before_anything_else() {
        let mut cut = parts("/", &[("host", "x")]);
        cut.extensions
            .insert(HeadAsWritten::TooLarge("too many header fields"));
        assert!(matches!(
            check(&cut, &limits()),
            Err(Rejection::HeadersTooLarge("too many header fields"))
        ));
        let mut stand_in = parts("/a", &[]);
        stand_in
            .extensions
            .insert(HeadAsWritten::RequestLineTooLong { at_least: 32769 });
        assert!(matches!(
            check(&stand_in, &limits()),
            Err(Rejection::RequestLineTooLong { length: 32769 })
        ));
    }

    #[test]
    fn upgrades_and_tunnels_are_refused() {
        let upgrade = parts(
            "/api/health",
            &[
                ("host", "x"),
                ("upgrade", "websocket"),
                ("connection", "upgrade"),
            ],
        );
        assert!(matches!(
            check(&upgrade, &limits()),
            Err(Rejection::UpgradeRefused(_))
        ));
        let mut connect = parts("/", &[("host", "x:443")]);
        connect.method = Method::CONNECT;
        connect.uri = "x:443".parse().unwrap();
        assert!(matches!(
            check(&connect, &limits()),
            Err(Rejection::UpgradeRefused(_))
        ));
    }

    #[test]
    fn underscore_names_are_refused_only_when_the_policy_says_so() {
        let spoof = parts(
            "/",
            &[("host", "x"), ("x_tradehabit_principal", "key:admin")],
        );
        assert!(
            check(&spoof, &limits()).is_ok(),
            "dropped later, by default"
        );
        let mut refusing = limits();
        refusing.underscore_headers = UnderscoreHeaders::Refuse;
        assert!(matches!(
            check(&spoof, &refusing),
            Err(Rejection::UnderscoreHeader)
        ));
        let plain = parts("/", &[("host", "x"), ("x-note", "a_b")]);
        assert!(check(&plain, &refusing).is_ok(), "values may hold `_`");
    }

    #[test]
    fn host_must_be_present_single_and_consistent() {
        assert!(check(&parts("/", &[]), &limits()).is_err());
        assert!(check(&parts("/", &[("host", "a"), ("host", "b")]), &limits()).is_err());
        assert!(check(
            &parts("https://a.example/", &[("host", "b.example")]),
            &limits()
        )
        .is_err());
        assert!(check(&parts("/", &[("host", "user@evil")]), &limits()).is_err());
        assert_eq!(
            check(&parts("https://a.example/", &[]), &limits())
                .unwrap()
                .as_str(),
            "a.example"
        );
        assert_eq!(
            check(
                &parts("https://A.example/", &[("host", "a.EXAMPLE")]),
                &limits()
            )
            .unwrap()
            .as_str(),
            "a.example"
        );
    }
}
