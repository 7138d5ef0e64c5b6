//! Identify: who is calling (client IP) and which request this is (request
//! id), before any check runs, so every answer and log line can carry them.
//!
//! Nothing a client sends is believed by default. `X-Forwarded-For` and an
//! inbound `X-Request-Id` count only when the TCP peer is one of the
//! operator's `server.trusted_proxies`; `X-Forwarded-For` is then walked
//! right to left past trusted hops (the leftmost entry is whatever the
//! client chose to write).

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use tradehabit_shared::headers::REQUEST_ID;

/// The longest inbound request id accepted from a trusted proxy.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a single address.
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an address or CIDR network (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
        };
        Ok(Cidr { network, prefix })
    }

    /// Whether this network is every address (`0.0.0.0/0`, `::/0`).
    pub(crate) fn is_everything(&self) -> bool {
        self.prefix == 0
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses count
    /// as their IPv4 address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// What the identify stage found out about one request.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The client's address: the TCP peer, or the first untrusted hop of
    /// `X-Forwarded-For` when the peer is a trusted proxy.
    pub(crate) client_ip: IpAddr,
    /// The request id sent upstream and echoed to the client.
    pub(crate) request_id: HeaderValue,
}

/// Identifies the client and the request.
pub(crate) fn identify(headers: &HeaderMap, peer: IpAddr, trusted: &[Cidr]) -> Identity {
    identify_at(
        headers,
        peer,
        trusted,
        unix_millis(crate::clock::now_utc().into()),
    )
}

/// [`identify`] for a request that arrived at `arrived_ms` (Unix time in
/// milliseconds, the time a new request id carries): the caller has read
/// the clock already.
pub(crate) fn identify_at(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &[Cidr],
    arrived_ms: u64,
) -> Identity {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return Identity {
            client_ip: peer,
            request_id: new_request_id(arrived_ms),
        };
    }
    Identity {
        client_ip: forwarded_client(headers, peer, is_trusted),
        request_id: headers
            .get(REQUEST_ID)
            .filter(|value| is_well_formed_request_id(value))
            .cloned()
            .unwrap_or_else(|| new_request_id(arrived_ms)),
    }
}

/// `at` as Unix time in milliseconds (0 before 1970).
pub(crate) fn unix_millis(at: std::time::SystemTime) -> u64 {
    let millis = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// Walks `X-Forwarded-For` from the right past trusted hops.
fn forwarded_client(
    headers: &HeaderMap,
    peer: IpAddr,
    is_trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Garbage in the chain: stop at the last hop we could read.
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

fn is_well_formed_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_BYTES
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A fresh UUIDv7: time-ordered, so ids sort like the log. Its 74 random
/// bits come from the thread's CSPRNG (seeded from the OS), not from a
/// `getrandom` system call per request.
///
/// The text is allocated once, with its reference count beside it: the
/// id goes into the upstream request, the response and the audit line,
/// and each copy of the header value only counts one more reference.
fn new_request_id(millis: u64) -> HeaderValue {
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn new_request_ids_are_distinct_uuid_v7_of_now() {
        let before = std::time::SystemTime::now();
        let a = new_request_id(unix_millis(before));
        let b = new_request_id(unix_millis(before));
        assert_ne!(a, b);
        let id = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(a.len(), 36, "hyphenated lower case");
        let (secs, _) = id.get_timestamp().unwrap().to_unix();
        let now = before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(secs.abs_diff(now) <= 1);
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(!Cidr::parse("::1").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten").is_err());
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-request-id", "abc")]);
        let id = identify(&h, ip("203.0.113.9"), &[]);
        assert_eq!(id.client_ip, ip("203.0.113.9"));
        assert_ne!(id.request_id, "abc");
        assert_eq!(id.request_id.len(), 36);
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-request-id", "req-42"),
        ]);
        let id = identify(&h, ip("10.0.0.1"), &trusted);
        assert_eq!(id.client_ip, ip("198.51.100.7"));
        assert_eq!(id.request_id, "req-42");
    }

    #[test]
    fn malformed_inbound_request_ids_are_replaced() {
        let trusted = [Cidr::parse("127.0.0.1").unwrap()];
        let long = "a".repeat(MAX_REQUEST_ID_BYTES + 1);
        for bad in ["a b", "x\"y", long.as_str()] {
            let h = headers(&[("x-request-id", bad)]);
            assert_ne!(identify(&h, ip("127.0.0.1"), &trusted).request_id, bad);
        }
    }
}
