//! Header rewriting on the upstream hop, both directions.
//!
//! Toward the upstream: hop-by-hop headers go (RFC 9110 §7.6.1: `Connection`
//! and every header it names, `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-*`), as does `Expect` (answered
//! here) and every client copy of a header the gateway owns
//! (`tradehabit_shared::headers::GATEWAY_OWNED`: identity, `X-Forwarded-*`,
//! `Forwarded`, `X-Real-IP`, the request id). Then the gateway's own values
//! are set — the authenticated principal, its scopes and how it
//! authenticated (`tradehabit_shared::headers`) — and `Accept-Encoding:
//! identity` so the upstream never compresses (compression side channels
//! leak secrets). Credentials the gateway verified (`Authorization`,
//! `X-API-Key`) are not passed on: the upstream trusts the identity headers,
//! and a token it never needs is a token it cannot leak.
//!
//! Every header whose name contains `_` goes too, whatever
//! `limits.underscore_headers` says (under `"refuse"` none gets here): WSGI
//! servers (gunicorn) turn `X_TradeHabit_Principal` and
//! `X-TradeHabit-Principal` into the same variable, so an underscore
//! spelling of an owned or credential header would otherwise pose as the
//! real one for a legacy upstream.
//!
//! From the upstream: hop-by-hop headers go; `respond.rs` then sets the
//! security headers.

use http::header::{ACCEPT_ENCODING, CONNECTION, CONTENT_LENGTH, COOKIE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use tradehabit_shared::headers::{AUTH_METHOD, GATEWAY_OWNED, PRINCIPAL, REQUEST_ID, SCOPES};

use crate::checks::auth::{Principal, X_API_KEY};
use crate::host::Authority;
use crate::identity::Identity;

/// Who is calling, as the policy checks established it.
#[derive(Debug, Default)]
pub(crate) struct Caller<'a> {
    /// The authenticated principal; `None` for an anonymous caller.
    pub(crate) principal: Option<&'a Principal>,
    /// Whether the route looked at credentials, so they are the gateway's
    /// and are not forwarded. Routes with `auth = "none"` pass them on.
    pub(crate) consumed_credentials: bool,
}

/// Whether `name` is hop-by-hop: the fixed list (`Proxy-Connection`
/// among the `Proxy-*` names). The names `Connection` lists are looked up
/// apart ([`strip_connection_named`]).
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-")
}

/// The hop-by-hop names besides the `Proxy-*` ones.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a client's header stays off the upstream hop, whatever its
/// value: hop-by-hop, `Expect`, a name with `_`, a gateway-owned name, and
/// the credentials when the gateway consumed them.
fn is_dropped_upstream(name: &str, consumed_credentials: bool) -> bool {
    is_hop_by_hop(name)
        || name == "expect"
        || name.contains('_')
        || GATEWAY_OWNED.contains(&name)
        || (consumed_credentials
            && (name == http::header::AUTHORIZATION.as_str() || name == X_API_KEY.as_str()))
}

/// Removes every header `drop` picks. One pass over the names the request
/// has (a handful), instead of a lookup for each name that could be there
/// (a score of them); the removals, if any, come after.
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&str) -> bool) -> usize {
    // The first few names on the stack: a response's `Connection` alone
    // needs no allocation.
    let mut few: [Option<HeaderName>; 4] = Default::default();
    let mut more = Vec::new();
    let mut count = 0;
    for name in headers.keys().filter(|name| drop(name.as_str())) {
        match few.get_mut(count) {
            Some(slot) => *slot = Some(name.clone()),
            None => more.push(name.clone()),
        }
        count += 1;
    }
    for name in few.into_iter().flatten().chain(more) {
        headers.remove(name);
    }
    count
}

/// Removes the headers `Connection` names as hop-by-hop.
fn strip_connection_named(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(CONNECTION).iter().peekable();
    if fields.peek().is_none() {
        return;
    }
    let named: Vec<HeaderName> = fields
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        // `keep-alive`, `upgrade`: most tokens name a header removed
        // anyway; no name is built for those. (`close` is still looked up:
        // a `Close` field would go with it.)
        .filter(|token| !removed_anyway(token))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        // The framing and target headers are re-derived, never dropped
        // on a client's say-so.
        .filter(|name| *name != CONTENT_LENGTH && *name != HOST)
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Whether a token of `Connection` names a header that goes as
/// hop-by-hop in any case ([`is_hop_by_hop`], in any letter case).
fn removed_anyway(token: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|name| token.eq_ignore_ascii_case(name))
        || token
            .get(..6)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("proxy-"))
}

/// Removes hop-by-hop headers, including those `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_connection_named(headers);
    remove_where(headers, is_hop_by_hop);
}

/// Rewrites a client's request headers for the upstream.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    identity: &Identity,
    caller: &Caller<'_>,
    host: &Authority,
) {
    strip_connection_named(headers);
    let consumed = caller.consumed_credentials;
    if remove_where(headers, |name| is_dropped_upstream(name, consumed)) > 0 {
        tracing::debug!("hop-by-hop, owned or underscore headers not forwarded");
    }
    if let Some(principal) = caller.principal {
        set_identity(headers, principal);
    }
    join_cookies(headers);
    // Room for the six below at once, and for the answer: the upstream
    // connection keeps this map's allocation, emptied, and parses the
    // response into it, where the policy's and the security headers are
    // added (`respond.rs`). An HTTP/1.1 client's map is itself recycled by
    // its connection and is already this large after the first request; an
    // HTTP/2 stream's is new and small, and grows once here instead of here
    // and again on the response.
    headers.reserve(EXCHANGE_ROOM.saturating_sub(headers.len()).max(6));
    headers.insert(HOST, host.to_header_value());
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.insert(X_FORWARDED_FOR, ip_value(identity.client_ip));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    headers.insert(X_FORWARDED_HOST, host.to_header_value());
    headers.insert(REQUEST_ID_NAME, identity.request_id.clone());
}

/// Header fields the map forwarded upstream has room for: the request's
/// and then the response's (up to a dozen upstream fields with the
/// policy's and the gateway's own).
const EXCHANGE_ROOM: usize = 24;

// Header names built once: inserting a name given as `&str` copies it into
// a new allocation for every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);

/// An address as a header value, formatted on the stack (an IPv4
/// address digit by digit, without the formatting machinery).
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write;
    // The longest text form of an IPv6 address is 45 bytes.
    let mut text = [0u8; 48];
    let len = match ip {
        std::net::IpAddr::V4(v4) => {
            let mut len = 0;
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let octet = digits.format(octet).as_bytes();
                text[len..len + octet.len()].copy_from_slice(octet);
                len += octet.len();
            }
            len
        }
        std::net::IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            write!(cursor, "{v6}").expect("an address fits 48 bytes");
            usize::try_from(cursor.position()).expect("at most 48")
        }
    };
    HeaderValue::from_bytes(&text[..len]).expect("an IP address is header text")
}

/// Sets the identity headers. Principal ids and scope tokens are printable
/// ASCII by construction (`checks::auth`); a value that still fails to be a
/// header is left out rather than forwarded mangled.
fn set_identity(headers: &mut HeaderMap, principal: &Principal) {
    let values = [
        (PRINCIPAL, principal.id.clone()),
        (SCOPES, principal.scopes_header()),
        (AUTH_METHOD, principal.method.as_str().to_owned()),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// HTTP/2 may split `Cookie` into several fields; an HTTP/1.1 hop needs
/// one (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = headers
        .get_all(COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_every_length_become_their_text() {
        for text in [
            "0.0.0.0",
            "10.0.0.1",
            "192.0.2.17",
            "255.255.255.255",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(ip_value(ip), text);
        }
    }

    fn host(text: &str) -> Authority {
        Authority::of_checked(text, None)
    }

    fn identity() -> Identity {
        Identity {
            client_ip: "198.51.100.7".parse().unwrap(),
            request_id: HeaderValue::from_static("rid-1"),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_and_spoofed_headers_are_replaced() {
        let mut h = headers(&[
            (
                "connection",
                "keep-alive, x-secret, content-length, close, Proxy-Foo",
            ),
            ("x-secret", "1"),
            ("close", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-foo", "1"),
            ("expect", "100-continue"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "http"),
            ("x-real-ip", "1.1.1.1"),
            ("forwarded", "for=1.1.1.1"),
            ("x-tradehabit-principal", "admin"),
            ("x-tradehabit-scopes", "all"),
            ("x-tradehabit-auth-method", "jwt"),
            ("x-request-id", "spoofed"),
            ("accept-encoding", "gzip, br"),
            ("content-length", "3"),
            ("authorization", "Bearer t"),
        ]);
        to_upstream(
            &mut h,
            &identity(),
            &Caller::default(),
            &host("api.example:8443"),
        );
        for gone in [
            "connection",
            "x-secret",
            "close",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "proxy-foo",
            "expect",
            "x-real-ip",
            "forwarded",
            "x-tradehabit-principal",
            "x-tradehabit-scopes",
            "x-tradehabit-auth-method",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be stripped");
        }
        assert_eq!(h["x-forwarded-for"], "198.51.100.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example:8443");
        assert_eq!(h["host"], "api.example:8443");
        assert_eq!(h["x-request-id"], "rid-1");
        assert_eq!(h.get_all("x-request-id").iter().count(), 1);
        assert_eq!(h["accept-encoding"], "identity");
        assert_eq!(h["content-length"], "3");
        // Credentials the gateway did not verify are the upstream's business
        // (it drops only the ones it consumed; see the next test).
        assert_eq!(h["authorization"], "Bearer t");
    }

    #[test]
    fn the_principal_replaces_spoofed_identity_and_credentials_stay_here() {
        let principal = Principal {
            id: "key:ci".into(),
            method: crate::checks::auth::AuthMethod::ApiKey,
            scopes: ["read".to_owned(), "analyze".to_owned()].into(),
        };
        let mut h = headers(&[
            ("x-tradehabit-principal", "jwt:evil|admin"),
            ("x-tradehabit-scopes", "everything"),
            ("authorization", "Bearer t"),
            ("x-api-key", "th_secret"),
        ]);
        let caller = Caller {
            principal: Some(&principal),
            consumed_credentials: true,
        };
        to_upstream(&mut h, &identity(), &caller, &host("x"));
        assert_eq!(h.get_all(PRINCIPAL).iter().count(), 1);
        assert_eq!(h[PRINCIPAL], "key:ci");
        assert_eq!(h[SCOPES], "analyze read");
        assert_eq!(h[AUTH_METHOD], "api-key");
        assert!(!h.contains_key("authorization"));
        assert!(!h.contains_key("x-api-key"));
    }

    #[test]
    fn underscore_spellings_of_owned_and_credential_headers_never_pass() {
        let principal = Principal {
            id: "key:ci".into(),
            method: crate::checks::auth::AuthMethod::ApiKey,
            scopes: ["read".to_owned()].into(),
        };
        let folded: Vec<String> = GATEWAY_OWNED
            .iter()
            .chain(&["x-api-key", "x-custom-header"])
            .filter(|name| name.contains('-'))
            .map(|name| name.replace('-', "_"))
            .chain(["x-tradehabit_principal".to_owned()])
            .collect();
        for caller in [
            Caller::default(),
            Caller {
                principal: Some(&principal),
                consumed_credentials: true,
            },
        ] {
            let pairs: Vec<(&str, &str)> = folded.iter().map(|n| (n.as_str(), "forged")).collect();
            let mut h = headers(&pairs);
            to_upstream(&mut h, &identity(), &caller, &host("x"));
            let left: Vec<&str> = h
                .keys()
                .map(|n| n.as_str())
                .filter(|n| n.contains('_'))
                .collect();
            assert!(left.is_empty(), "forwarded: {left:?}");
            assert!(h.values().all(|v| v != "forged"), "{h:?}");
        }
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = headers(&[("cookie", "a=1"), ("cookie", "b=2")]);
        to_upstream(&mut h, &identity(), &Caller::default(), &host("x"));
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }

    #[test]
    fn a_small_map_leaves_with_room_for_the_answer() {
        let mut h = headers(&[("accept", "*/*")]);
        to_upstream(&mut h, &identity(), &Caller::default(), &host("x"));
        assert!(h.capacity() >= EXCHANGE_ROOM, "{}", h.capacity());
    }
}
