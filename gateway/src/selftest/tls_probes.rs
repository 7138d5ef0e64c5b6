//! The transport checks: TLS 1.0 and 1.1 refused (a hand-written
//! ClientHello, since no modern TLS library can send one), TLS 1.2 and 1.3
//! accepted, ALPN, and the certificate's names and expiry.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::client::{bounded, Target};
use super::{Check, Outcome};

const MOZILLA_PROTOCOLS: &str = "ASVS 5.0 12.1.1; Mozilla TLS intermediate (TLS 1.2, 1.3)";
const CERTIFICATE: &str = "ASVS 5.0 12.2.2";

/// TLS 1.0 (`0x0301`) and TLS 1.1 (`0x0302`) must get no ServerHello.
pub(super) async fn legacy_versions_refused(target: &Target) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, version) in [("TLS 1.0 refused", 0x0301), ("TLS 1.1 refused", 0x0302)] {
        let (result, detail) = match legacy_hello(target, version).await {
            Ok(Some(server_version)) => (
                Outcome::Fail,
                format!("the server answered with a ServerHello (version {server_version:#06x})"),
            ),
            Ok(None) => (
                Outcome::Pass,
                "no ServerHello: alert, close or silence".to_string(),
            ),
            Err(error) => (Outcome::Fail, error),
        };
        checks.push(Check::new(name, MOZILLA_PROTOCOLS, result, detail));
    }
    checks
}

/// Sends a ClientHello offering at most `version`; the version of the
/// ServerHello if one came back.
async fn legacy_hello(target: &Target, version: u16) -> Result<Option<u16>, String> {
    let mut tcp = target.tcp().await?;
    let hello = client_hello(&target.host, version);
    bounded(tcp.write_all(&hello))
        .await?
        .map_err(|e| format!("cannot send the ClientHello: {e}"))?;
    // The first record's header: an alert (21), a close or silence is a
    // refusal; only a handshake record (22) can hold a ServerHello.
    let mut header = [0u8; 5];
    match bounded(tcp.read_exact(&mut header)).await {
        Ok(Ok(_)) if header[0] == 0x16 => {}
        _ => return Ok(None),
    }
    // A ServerHello (handshake type 2) and the version it picked?
    let mut hello = [0u8; 6];
    match bounded(tcp.read_exact(&mut hello)).await {
        Ok(Ok(_)) if hello[0] == 0x02 => Ok(Some(u16::from_be_bytes([hello[4], hello[5]]))),
        _ => Ok(None),
    }
}

/// A TLS 1.0/1.1-style ClientHello: no `supported_versions`, the suites
/// of that era, SNI and the elliptic-curve extensions.
fn client_hello(host: &str, version: u16) -> Vec<u8> {
    let suites: [u16; 6] = [0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035];
    let mut extensions = Vec::new();
    if host.parse::<std::net::IpAddr>().is_err() {
        let name = host.as_bytes();
        let mut sni = Vec::new();
        push_u16(&mut sni, name.len() as u16 + 3);
        sni.push(0);
        push_u16(&mut sni, name.len() as u16);
        sni.extend_from_slice(name);
        push_extension(&mut extensions, 0x0000, &sni);
    }
    // supported_groups: x25519, secp256r1, secp384r1; ec_point_formats.
    push_extension(&mut extensions, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
    push_extension(&mut extensions, 0x000b, &[1, 0]);
    let mut body = Vec::new();
    push_u16(&mut body, version);
    body.extend_from_slice(&[0x42; 32]); // client random (not secret: no key agreement follows)
    body.push(0); // no session id
    push_u16(&mut body, (suites.len() * 2) as u16);
    for suite in suites {
        push_u16(&mut body, suite);
    }
    body.extend_from_slice(&[1, 0]); // null compression only
    push_u16(&mut body, extensions.len() as u16);
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01, 0];
    push_u16(&mut handshake, body.len() as u16);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16];
    push_u16(&mut record, 0x0301);
    push_u16(&mut record, handshake.len() as u16);
    record.extend_from_slice(&handshake);
    record
}

fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn push_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    push_u16(out, kind);
    push_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

/// TLS 1.2 and 1.3 each complete a verified handshake; ALPN picks `h2`
/// when offered with `http/1.1`, and `http/1.1` alone; the certificate
/// covers the host name and does not expire within `min_days`.
pub(super) async fn modern_handshakes(target: &Target, min_days: u32) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, version) in [
        ("TLS 1.2 accepted", &rustls::version::TLS12),
        ("TLS 1.3 accepted", &rustls::version::TLS13),
    ] {
        let (result, detail) = match target.tls(&[version], &[b"http/1.1"]).await {
            Ok(_) => (Outcome::Pass, "verified handshake".to_string()),
            Err(error) => (Outcome::Fail, error),
        };
        checks.push(Check::new(name, MOZILLA_PROTOCOLS, result, detail));
    }
    let both = target
        .tls(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"])
        .await;
    let only_h1 = target.tls(rustls::DEFAULT_VERSIONS, &[b"http/1.1"]).await;
    let alpn = |stream: &Result<tokio_rustls::client::TlsStream<_>, String>| {
        stream.as_ref().ok().and_then(|s| {
            s.get_ref()
                .1
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        })
    };
    let (h2, h1) = (alpn(&both), alpn(&only_h1));
    let ok = h2.as_deref() == Some("h2") && h1.as_deref() == Some("http/1.1");
    checks.push(Check::new(
        "ALPN h2 and http/1.1",
        "RFC 9113 §3.2; RFC 7301",
        if ok { Outcome::Pass } else { Outcome::Fail },
        format!("offered h2+http/1.1: {h2:?}; offered http/1.1: {h1:?}"),
    ));
    checks.push(match &both {
        Ok(_) => Check::new(
            "certificate covers the host name",
            CERTIFICATE,
            Outcome::Pass,
            format!("trusted chain for {}", target.host),
        ),
        Err(error) => Check::new(
            "certificate covers the host name",
            CERTIFICATE,
            Outcome::Fail,
            error.clone(),
        ),
    });
    checks.push(expiry(&both, min_days));
    checks
}

fn expiry(
    stream: &Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String>,
    min_days: u32,
) -> Check {
    const NAME: &str = "certificate not about to expire";
    let leaf = stream
        .as_ref()
        .ok()
        .and_then(|s| s.get_ref().1.peer_certificates()?.first().cloned());
    let Some(not_after) = leaf.and_then(|der| crate::cert_dates::not_after(&der)) else {
        return Check::new(
            NAME,
            CERTIFICATE,
            Outcome::Fail,
            "no readable certificate".into(),
        );
    };
    let left = not_after - time::OffsetDateTime::now_utc();
    let result = if left >= time::Duration::days(i64::from(min_days)) {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Check::new(
        NAME,
        CERTIFICATE,
        result,
        format!(
            "expires {not_after} ({} days left; at least {min_days} required)",
            left.whole_days()
        ),
    )
}
