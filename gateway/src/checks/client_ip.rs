//! Identify stage: the client's IP address.
//!
//! In: the socket peer address and the request's `X-Forwarded-For` lines.
//! Out: the address that rate limits and the audit log use. The header is
//! believed only when the peer is one of the operator's trusted proxies;
//! then it is walked right to left, skipping further trusted hops, and the
//! first untrusted address is the client. Entries left of that one were
//! written by the client itself and are never looked at. Nothing is trusted
//! by default, and trust-all ranges (`0.0.0.0/0`, `::/0`) are refused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::problems::{index, join, Problems};
use super::Rejection;

/// The `[client_ip]` section as written in the policy file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientIpRaw {
    /// Proxies whose `X-Forwarded-For` is believed, as CIDR ranges or single
    /// addresses. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// An IP range (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not an address or `address/prefix`.
    #[error("not an IP address or CIDR range")]
    Malformed,
    /// The prefix is longer than the address.
    #[error("prefix length {0} is too long for this address family")]
    PrefixTooLong(u8),
    /// Bits are set after the prefix (`10.0.0.1/8`), usually a typo.
    #[error("address has bits set beyond the /{0} prefix; did you mean the network address?")]
    HostBitsSet(u8),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => {
                let prefix: u8 = prefix.parse().map_err(|_| CidrError::Malformed)?;
                (addr, Some(prefix))
            }
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| CidrError::Malformed)?;
        let max = max_prefix(network);
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(CidrError::PrefixTooLong(prefix));
        }
        if mask(network, prefix) != network {
            return Err(CidrError::HostBitsSet(prefix));
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is inside this range. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`) count as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }

    fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Keeps the first `prefix` bits of `ip`.
pub(crate) fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = bits.checked_shr(32 - u32::from(prefix)).unwrap_or(0);
            let masked = kept.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(masked))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = bits.checked_shr(128 - u32::from(prefix)).unwrap_or(0);
            let masked = kept.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(masked))
        }
    }
}

/// The validated `[client_ip]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIpPolicy {
    trusted_proxies: Vec<Cidr>,
}

/// Validates `[client_ip]` (at key path `path`).
pub fn validate(raw: &ClientIpRaw, path: &str, problems: &mut Problems) -> Option<ClientIpPolicy> {
    let before = problems.len();
    let list_path = join(path, "trusted_proxies");
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match text.parse::<Cidr>() {
            Ok(cidr) if cidr.is_everything() => problems.push(
                index(&list_path, i),
                format!(
                    "{text:?} would trust every address, so any client could forge its address"
                ),
            ),
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(err) => problems.push(index(&list_path, i), format!("{text:?}: {err}")),
        }
    }
    (problems.len() == before).then_some(ClientIpPolicy { trusted_proxies })
}

/// Why the client address could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIpError {
    /// An `X-Forwarded-For` entry on the walked path is not an IP address.
    #[error("malformed X-Forwarded-For entry")]
    MalformedForwardedFor,
}

impl From<ClientIpError> for Rejection {
    fn from(err: ClientIpError) -> Self {
        match err {
            ClientIpError::MalformedForwardedFor => Rejection::new(
                StatusCode::BAD_REQUEST,
                "malformed X-Forwarded-For header",
                "client_ip.malformed_forwarded_for",
            ),
        }
    }
}

impl ClientIpPolicy {
    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client address for a request that arrived from `peer` with these
    /// headers.
    ///
    /// Fails only when the header is believed and an entry that must be
    /// read is not an address.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, ClientIpError> {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return Ok(peer);
        }
        // Several header lines form one list, in order (RFC 9110 §5.3).
        let lines: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let mut client = peer;
        for line in lines.iter().rev() {
            for entry in line.rsplit(|b| *b == b',') {
                let ip = parse_entry(entry).ok_or(ClientIpError::MalformedForwardedFor)?;
                client = ip;
                if !self.is_trusted(ip) {
                    return Ok(ip);
                }
            }
        }
        // Every hop was trusted: the leftmost one is the best we know.
        Ok(client)
    }
}

/// Parses one `X-Forwarded-For` entry: an IPv4 or IPv6 address, optionally
/// bracketed, surrounded by optional whitespace. Ports are not accepted.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn policy(trusted: &[&str]) -> ClientIpPolicy {
        let raw = ClientIpRaw {
            trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
        };
        let mut problems = Problems::new();
        let policy = validate(&raw, "client_ip", &mut problems);
        assert!(problems.is_empty(), "{problems}");
        policy.unwrap()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let policy = policy(&["10.0.0.0/8"]);
        let got = policy
            .client_ip(ip("203.0.113.9"), &xff(&["1.2.3.4"]))
            .unwrap();
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn nothing_is_trusted_by_default() {
        let policy = policy(&[]);
        let got = policy
            .client_ip(ip("127.0.0.1"), &xff(&["1.2.3.4"]))
            .unwrap();
        assert_eq!(got, ip("127.0.0.1"));
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let policy = policy(&["10.0.0.0/8"]);
        assert_eq!(
            policy.client_ip(ip("10.1.1.1"), &HeaderMap::new()).unwrap(),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn walks_right_to_left_past_trusted_hops() {
        let policy = policy(&["10.0.0.0/8", "192.168.1.1"]);
        // The client forged "6.6.6.6"; the real client is 198.51.100.7.
        let headers = xff(&["6.6.6.6, 198.51.100.7", "10.2.2.2 , 192.168.1.1"]);
        assert_eq!(
            policy.client_ip(ip("10.9.9.9"), &headers).unwrap(),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn junk_left_of_the_client_is_never_read() {
        let policy = policy(&["10.0.0.0/8"]);
        let headers = xff(&["not-an-ip, <script>, 198.51.100.7"]);
        assert_eq!(
            policy.client_ip(ip("10.0.0.1"), &headers).unwrap(),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn malformed_entry_on_the_path_is_refused() {
        let policy = policy(&["10.0.0.0/8"]);
        for bad in ["1.2.3.4:80", "example.com", "", "1.2.3.4 5"] {
            let err = policy.client_ip(ip("10.0.0.1"), &xff(&[bad])).unwrap_err();
            assert_eq!(err, ClientIpError::MalformedForwardedFor, "{bad:?}");
            assert_eq!(Rejection::from(err).status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost() {
        let policy = policy(&["10.0.0.0/8"]);
        assert_eq!(
            policy
                .client_ip(ip("10.0.0.1"), &xff(&["10.0.0.3, 10.0.0.2"]))
                .unwrap(),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let policy = policy(&["2001:db8::/32", "127.0.0.1"]);
        assert_eq!(
            policy
                .client_ip(ip("2001:db8::1"), &xff(&["[2001:db8:ffff::1]", "2a00::5"]))
                .unwrap(),
            ip("2a00::5")
        );
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        assert_eq!(
            policy
                .client_ip(ip("::ffff:127.0.0.1"), &xff(&["::ffff:203.0.113.1"]))
                .unwrap(),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn cidr_parsing_and_validation() {
        assert!("10.0.0.0/8"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip("10.255.0.1")));
        assert!(!"10.0.0.0/8"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip("11.0.0.1")));
        assert!(!"10.0.0.0/8".parse::<Cidr>().unwrap().contains(ip("::1")));
        assert_eq!("10.0.0.1/8".parse::<Cidr>(), Err(CidrError::HostBitsSet(8)));
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong(33))
        );
        assert_eq!("ten".parse::<Cidr>(), Err(CidrError::Malformed));

        let raw = ClientIpRaw {
            trusted_proxies: vec![
                "0.0.0.0/0".into(),
                "::/0".into(),
                "x".into(),
                "10.0.0.0/8".into(),
            ],
        };
        let mut problems = Problems::new();
        assert!(validate(&raw, "client_ip", &mut problems).is_none());
        assert_eq!(problems.len(), 3);
        assert!(problems.has("client_ip.trusted_proxies[0]"));
        assert!(problems.has("client_ip.trusted_proxies[1]"));
        assert!(problems.has("client_ip.trusted_proxies[2]"));
    }

    #[test]
    fn mask_keeps_the_prefix() {
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(mask(ip("192.168.7.9"), 24), ip("192.168.7.0"));
        assert_eq!(mask(ip("192.168.7.9"), 0), ip("0.0.0.0"));
        assert_eq!(mask(ip("192.168.7.9"), 32), ip("192.168.7.9"));
    }
}
