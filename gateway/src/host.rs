//! Host: a request must name one of the server's own host names.
//!
//! The HTTPS listener serves the names in `server.names`, or, when the
//! policy lists none, every name its certificate is valid for (DNS names,
//! wildcards and IP addresses of the subject alternative names, decided by
//! `webpki` exactly as a rustls client decides it; `*.example.com` covers
//! one label). A request for any other host gets 421 Misdirected Request
//! (RFC 9110 §15.5.20), so nothing downstream (the upstream's `Host`,
//! `X-Forwarded-Host`, absolute URLs the upstream builds, the CORS
//! same-origin test) ever sees a host chosen by the client. The plain-HTTP
//! redirect uses the same test before it names a host.
//!
//! How a request's host is compared: the port is ignored (the certificate
//! does not bind a port, and behind a port mapping or a load balancer the
//! client's port is not the listener's); letters are compared without case;
//! one trailing dot is dropped (`example.com.` is `example.com`); IPv6
//! literals are written in brackets (`[::1]:8443`) and compared as
//! addresses, so `[0:0::1]` is `[::1]`.
//!
//! [`ServerNames`] is built from the policy file, then given the
//! certificate at start-up and on every reload
//! ([`ServerNames::adopt`]), which also checks that the certificate covers
//! every listed name (`check-config` runs the same check).

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderValue;
use rustls::pki_types::{CertificateDer, DnsName, ServerName};

/// A host name or address, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Name {
    /// A DNS name: lower case, no trailing dot.
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl Name {
    /// Parses a bare host (no port): a DNS name, an IPv4 address, or an
    /// IPv6 address with or without brackets. `None` for anything else
    /// (wildcards, empty labels, user info, ports).
    pub(crate) fn parse(host: &str) -> Option<Name> {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'));
        if let Some(inner) = unbracketed {
            return match inner.parse() {
                Ok(IpAddr::V6(ip)) => Some(Name::Ip(IpAddr::V6(ip))),
                _ => None,
            };
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Name::Ip(ip));
        }
        let lower = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        // The same syntax rules a TLS client applies to a server name.
        DnsName::try_from(lower.as_str()).ok()?;
        Some(Name::Dns(lower))
    }

    /// The host of a request authority (`host[:port]`, as `policy::shape`
    /// returns it); the port is ignored.
    pub(crate) fn of_authority(authority: &str) -> Option<Name> {
        let authority: http::uri::Authority = authority.parse().ok()?;
        Name::parse(authority.host())
    }

    fn server_name(&self) -> Option<ServerName<'static>> {
        match self {
            Name::Dns(name) => DnsName::try_from(name.as_str())
                .ok()
                .map(|dns| ServerName::DnsName(dns.to_owned())),
            Name::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
        }
    }
}

/// As written in a URL: IPv6 addresses in brackets.
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Dns(name) => f.write_str(name),
            Name::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Name::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A request's host as the request names it (`host[:port]`), in lower
/// case, once `policy::shape` has found it a valid URI authority. Held as a
/// header value: the upstream's `Host` and `X-Forwarded-Host` share it.
/// It is the thread's remembered copy when the text is the one the thread
/// last checked ([`Authority::of_valid`]); otherwise, when the client's own
/// `Host` field is already lower case, it is that field, not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authority(HeaderValue);

impl Authority {
    /// `value` as a request's authority: `checked` is its text, which the
    /// caller has parsed as a URI authority (so it is visible ASCII).
    /// `value` itself is kept when it is the text in lower case already;
    /// otherwise the text is lowered into a new value.
    pub(crate) fn of_checked(checked: &str, value: Option<&HeaderValue>) -> Authority {
        match value {
            Some(value)
                if value.as_bytes() == checked.as_bytes()
                    && !checked.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                Authority(value.clone())
            }
            _ => Authority(
                HeaderValue::from_str(&checked.to_ascii_lowercase())
                    .expect("a URI authority is header text"),
            ),
        }
    }

    /// `text` as a request's authority, if `valid` finds it a valid one
    /// ([`Authority::of_checked`] then makes it), or the authority this
    /// thread last made from the same text, without asking `valid` again:
    /// nearly every request on a thread names the same host in the same
    /// letters, and parsing and lowering it cost more than the rest of the
    /// head's checks (`docs/benchmarks.md`, "Per-IP counts without a
    /// lock"). What is remembered is a copy, never the request's own value,
    /// which may share the connection's whole read buffer.
    pub(crate) fn of_valid(
        text: &str,
        value: Option<&HeaderValue>,
        valid: impl FnOnce(&str) -> bool,
    ) -> Option<Authority> {
        let remembered = LAST_VALID.with_borrow(|last| {
            last.as_ref()
                .filter(|(known, _)| **known == *text)
                .map(|(_, authority)| authority.clone())
        });
        if remembered.is_some() {
            return remembered;
        }
        if !valid(text) {
            return None;
        }
        let authority = Authority::of_checked(text, value);
        let copy =
            HeaderValue::from_bytes(authority.0.as_bytes()).expect("copied from a header value");
        LAST_VALID.set(Some((text.into(), Authority(copy))));
        Some(authority)
    }

    /// The authority as text.
    pub(crate) fn as_str(&self) -> &str {
        // Visible ASCII by construction (a parsed URI authority).
        self.0.to_str().unwrap_or_default()
    }

    /// The authority as a header value (shared, not copied).
    pub(crate) fn to_header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host names the HTTPS listener serves (`server.names`, default: the
/// certificate's names).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ServerNames {
    /// `server.names`; `None`: whatever the certificate covers.
    listed: Option<Vec<Name>>,
    /// The certificate's leaf, once [`ServerNames::adopt`] has run. Until
    /// then no name is served (fails closed).
    certificate: Option<Arc<CertificateDer<'static>>>,
}

impl ServerNames {
    /// The names of `server.names`, or `None` for the certificate's.
    pub(crate) fn new(listed: Option<Vec<Name>>) -> Self {
        ServerNames {
            listed,
            certificate: None,
        }
    }

    /// Takes the certificate now being served (its leaf). The names it
    /// does not cover are returned as the error, and nothing changes.
    pub(crate) fn adopt(&mut self, leaf: &CertificateDer<'_>) -> Result<(), Vec<String>> {
        let uncovered: Vec<String> = self
            .listed
            .iter()
            .flatten()
            .filter(|name| !covers(leaf, name))
            .map(ToString::to_string)
            .collect();
        if !uncovered.is_empty() {
            return Err(uncovered);
        }
        self.certificate = Some(Arc::new(leaf.clone().into_owned()));
        Ok(())
    }

    /// `server.names` as listed (`None`: the certificate's names).
    pub(crate) fn listed(&self) -> Option<&[Name]> {
        self.listed.as_deref()
    }

    /// Whether a request naming `authority` (its port ignored) is served
    /// here. A host that is no name at all (`a..b`) is not.
    pub(crate) fn serves_authority(&self, authority: &Authority) -> bool {
        let Some(leaf) = &self.certificate else {
            return false;
        };
        // The certificate's `Arc` is made afresh by each `adopt`, and the
        // listed names never change after `new`: the same `Arc` means the
        // same names served.
        let remembered = LAST_SERVED.with_borrow(|last| {
            last.as_ref().is_some_and(|(certificate, served)| {
                Arc::ptr_eq(certificate, leaf) && served == authority
            })
        });
        if remembered {
            return true;
        }
        let served = Name::of_authority(authority.as_str()).is_some_and(|name| self.serves(&name));
        if served {
            // A copy: the request's own value may share the connection's
            // whole read buffer, which this must not keep alive.
            let copy = HeaderValue::from_bytes(authority.0.as_bytes())
                .expect("copied from a header value");
            LAST_SERVED.set(Some((Arc::clone(leaf), Authority(copy))));
        }
        served
    }

    /// Whether a request for `name` is served here.
    pub(crate) fn serves(&self, name: &Name) -> bool {
        match (&self.listed, &self.certificate) {
            (_, None) => false,
            (Some(listed), Some(_)) => listed.contains(name),
            (None, Some(leaf)) => covers_remembered(leaf, name),
        }
    }
}

thread_local! {
    /// The last name this thread found the served certificate covers, and
    /// that certificate. Nearly every request names the same host, and
    /// parsing the certificate again for each one cost more than the rest
    /// of the host check (`docs/benchmarks.md`, "Run 6"). The certificate
    /// is compared by identity: a reload adopts a new one, which is asked
    /// afresh; holding the old one here keeps its address from being
    /// reused meanwhile.
    static LAST_COVERED: RefCell<Option<(Arc<CertificateDer<'static>>, Name)>> =
        const { RefCell::new(None) };

    /// The last authority (as requests write it, port included) this
    /// thread found served, and the certificate then served: the same
    /// request's authority is then neither parsed nor lowered again. Same
    /// identity rule as [`LAST_COVERED`].
    static LAST_SERVED: RefCell<Option<(Arc<CertificateDer<'static>>, Authority)>> =
        const { RefCell::new(None) };

    /// The last text this thread found a valid authority, as written, and
    /// the authority made of it ([`Authority::of_valid`]). The check is
    /// the same for every policy, so no identity is needed.
    static LAST_VALID: RefCell<Option<(Box<str>, Authority)>> = const { RefCell::new(None) };
}

/// [`covers`], remembering this thread's last name found covered.
fn covers_remembered(leaf: &Arc<CertificateDer<'static>>, name: &Name) -> bool {
    let remembered = LAST_COVERED.with_borrow(|last| {
        last.as_ref()
            .is_some_and(|(certificate, covered)| Arc::ptr_eq(certificate, leaf) && covered == name)
    });
    if remembered {
        return true;
    }
    let covered = covers(leaf, name);
    if covered {
        LAST_COVERED.set(Some((Arc::clone(leaf), name.clone())));
    }
    covered
}

/// Whether the certificate is valid for `name`, by `webpki`'s rules (the
/// subject alternative names only; a wildcard covers exactly one label).
fn covers(leaf: &CertificateDer<'_>, name: &Name) -> bool {
    let (Ok(certificate), Some(name)) = (webpki::EndEntityCert::try_from(leaf), name.server_name())
    else {
        return false;
    };
    certificate.verify_is_valid_for_subject_name(&name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(names: &[&str]) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        generated.cert.der().clone()
    }

    fn name(text: &str) -> Name {
        Name::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(name("Example.COM."), Name::Dns("example.com".into()));
        assert_eq!(name("[0:0::1]"), name("::1"));
        assert_eq!(name("127.0.0.1").to_string(), "127.0.0.1");
        assert_eq!(name("::1").to_string(), "[::1]");
        for bad in [
            "",
            "*.example.com",
            "a..b",
            "user@host",
            "[127.0.0.1]",
            "[::1",
            "a b",
        ] {
            assert_eq!(Name::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Name::of_authority("LOCALHOST.:8443"),
            Some(Name::Dns("localhost".into()))
        );
        assert_eq!(Name::of_authority("[::1]:8443"), Some(name("::1")));
    }

    #[test]
    fn by_default_the_certificates_names_are_served() {
        let mut names = ServerNames::new(None);
        assert!(!names.serves(&name("localhost")), "nothing before adopt");
        names
            .adopt(&leaf(&["localhost", "127.0.0.1", "::1", "*.example.com"]))
            .unwrap();
        for served in ["localhost", "127.0.0.1", "::1", "app.example.com"] {
            assert!(names.serves(&name(served)), "{served}");
        }
        for other in [
            "attacker.example",
            "example.com",
            "a.b.example.com",
            "127.0.0.2",
        ] {
            assert!(!names.serves(&name(other)), "{other}");
        }
    }

    #[test]
    fn listed_names_must_be_covered_and_are_all_that_is_served() {
        let certificate = leaf(&["*.example.com", "192.0.2.7"]);
        let mut names = ServerNames::new(Some(vec![name("app.example.com"), name("192.0.2.7")]));
        names.adopt(&certificate).unwrap();
        assert!(names.serves(&name("APP.example.com.")));
        assert!(
            !names.serves(&name("www.example.com")),
            "covered, not listed"
        );

        let mut uncovered = ServerNames::new(Some(vec![
            name("example.com"),
            name("a.b.example.com"),
            name("app.example.com"),
            name("192.0.2.8"),
        ]));
        assert_eq!(
            uncovered.adopt(&certificate),
            Err(vec![
                "example.com".to_string(),
                "a.b.example.com".to_string(),
                "192.0.2.8".to_string()
            ])
        );
        assert!(!uncovered.serves(&name("app.example.com")));
    }

    #[test]
    fn a_name_remembered_as_covered_is_asked_again_of_a_new_certificate() {
        let mut names = ServerNames::new(None);
        names
            .adopt(&leaf(&["localhost", "app.example.com"]))
            .unwrap();
        assert!(names.serves(&name("localhost")));
        assert!(names.serves(&name("localhost")), "remembered");
        assert!(!names.serves(&name("attacker.example")));
        let before_reload = names.clone();
        // A reload serves a certificate without `localhost`: the name this
        // thread remembered must not carry over to it.
        names.adopt(&leaf(&["app.example.com"])).unwrap();
        assert!(!names.serves(&name("localhost")));
        assert!(names.serves(&name("app.example.com")));
        // A snapshot taken before the reload still serves what its
        // certificate covers.
        assert!(before_reload.serves(&name("localhost")));
        assert!(!names.serves(&name("localhost")));
    }

    fn authority(text: &str) -> Authority {
        Authority::of_checked(text, None)
    }

    #[test]
    fn an_authority_is_kept_when_lower_case_and_lowered_otherwise() {
        let lower = HeaderValue::from_static("app.example.com:8443");
        let kept = Authority::of_checked("app.example.com:8443", Some(&lower));
        assert_eq!(kept.to_header_value(), lower);
        let upper = HeaderValue::from_static("App.Example.COM");
        assert_eq!(
            Authority::of_checked("App.Example.COM", Some(&upper)).as_str(),
            "app.example.com"
        );
        // The text from the URI when the header differs (in case only).
        assert_eq!(
            Authority::of_checked("APP.example.com", Some(&lower)).as_str(),
            "app.example.com"
        );
    }

    #[test]
    fn a_valid_text_is_checked_once_per_thread_until_another_comes() {
        std::thread::spawn(|| {
            let checks = std::cell::Cell::new(0);
            let valid = |text: &str| {
                checks.set(checks.get() + 1);
                !text.contains('@')
            };
            let value = HeaderValue::from_static("App.example.com");
            let first = Authority::of_valid("App.example.com", Some(&value), valid).unwrap();
            let again = Authority::of_valid("App.example.com", Some(&value), valid).unwrap();
            assert_eq!(
                (first.as_str(), again.as_str()),
                ("app.example.com", "app.example.com")
            );
            assert_eq!(checks.get(), 1, "the second was remembered");
            // Other letters are other text: checked, and remembered instead.
            let lower = Authority::of_valid("app.example.com", None, valid).unwrap();
            assert_eq!(lower, first);
            assert_eq!(checks.get(), 2);
            // An invalid text is never remembered, nor does it displace.
            assert!(Authority::of_valid("u@app.example.com", None, valid).is_none());
            assert!(Authority::of_valid("u@app.example.com", None, valid).is_none());
            assert_eq!(checks.get(), 4);
            assert!(Authority::of_valid("app.example.com", None, valid).is_some());
            assert_eq!(checks.get(), 4);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn authorities_are_served_by_their_host_and_asked_again_of_a_new_certificate() {
        let mut names = ServerNames::new(None);
        assert!(
            !names.serves_authority(&authority("localhost")),
            "nothing before adopt"
        );
        names
            .adopt(&leaf(&["localhost", "app.example.com", "::1"]))
            .unwrap();
        for served in [
            "localhost:8443",
            "localhost",
            "app.example.com.:1",
            "[::1]:8443",
        ] {
            assert!(names.serves_authority(&authority(served)), "{served}");
            assert!(
                names.serves_authority(&authority(served)),
                "{served} remembered"
            );
        }
        for other in ["attacker.example:8443", "a..b", "127.0.0.1"] {
            assert!(!names.serves_authority(&authority(other)), "{other}");
        }
        assert!(names.serves_authority(&authority("localhost:8443")));
        let before_reload = names.clone();
        names.adopt(&leaf(&["app.example.com"])).unwrap();
        assert!(!names.serves_authority(&authority("localhost:8443")));
        assert!(before_reload.serves_authority(&authority("localhost:8443")));
        assert!(!names.serves_authority(&authority("localhost:8443")));

        let mut listed = ServerNames::new(Some(vec![name("app.example.com")]));
        listed
            .adopt(&leaf(&["localhost", "app.example.com"]))
            .unwrap();
        assert!(listed.serves_authority(&authority("app.example.com:8443")));
        assert!(
            !listed.serves_authority(&authority("localhost:8443")),
            "covered, not listed"
        );
    }
}
