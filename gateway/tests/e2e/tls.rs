//! TLS versions, ALPN, and certificate reload.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test]
async fn tls12_only_and_tls13_only_clients_both_succeed() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let stream = client.tls_with(&[version], &[b"http/1.1"]).await.unwrap();
        let negotiated = stream.get_ref().1.protocol_version().unwrap();
        assert_eq!(negotiated, version.version);
        let reply = send_on(stream, Proto::H1, request("GET", "/api/echo", "")).await;
        assert_eq!(reply.status, 200);
    }
}

#[tokio::test]
async fn h2_and_http11_are_both_served() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    let h2 = client.tls(Proto::H2).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let reply = send_on(h2, Proto::H2, request("POST", "/api/echo", "abc")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["received"], 3);
    let h1 = client.tls(Proto::H1).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let reply = send_on(h1, Proto::H1, request("POST", "/api/echo", "abcd")).await;
    assert_eq!(reply.status, 200);
    // Both reached the upstream as HTTP/1.1 requests with their bodies.
    let bodies: Vec<_> = up.seen().iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, [&b"abc"[..], &b"abcd"[..]]);
}

/// A hand-written TLS 1.1 ClientHello (no supported_versions extension):
/// rustls must answer with a fatal protocol_version alert.
#[tokio::test]
async fn a_tls11_client_hello_is_refused_with_protocol_version_alert() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let mut hello_body = Vec::new();
    hello_body.extend_from_slice(&[0x03, 0x02]); // client_version TLS 1.1
    hello_body.extend_from_slice(&[7u8; 32]); // random
    hello_body.push(0); // session id
    hello_body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x13]); // ECDHE-ECDSA-AES128-GCM, ECDHE-RSA-AES128-SHA
    hello_body.extend_from_slice(&[0x01, 0x00]); // compression: null
                                                 // Extensions a real client sends, so that the only thing wrong is the
                                                 // version: signature_algorithms, supported_groups, ec_point_formats.
    let extensions: &[u8] = &[
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01, //
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, //
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,
    ];
    hello_body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello_body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello_body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello_body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);

    let mut tcp = TcpStream::connect(gw.addr()).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SAFETY, tcp.read_to_end(&mut answer)).await;
    // An alert record: type 21, then level 2 (fatal), description 70
    // (protocol_version).
    assert!(answer.len() >= 7, "no alert: {answer:?}");
    assert_eq!(answer[0], 0x15, "not an alert record: {answer:?}");
    assert_eq!(
        &answer[5..7],
        &[2, 70],
        "not a fatal protocol_version alert: {answer:?}"
    );
}

/// The same with OpenSSL's client, when the machine has one: TLS 1.1 and
/// 1.0 fail, TLS 1.2 (the control) works.
#[tokio::test]
async fn openssl_tls10_and_tls11_are_refused_when_openssl_is_installed() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl not installed; the raw ClientHello test covers this");
        return;
    }
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let connect = gw.addr().to_string();
    let run = |flag: &'static str| {
        let connect = connect.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &connect,
                    flag,
                    "-cipher",
                    "DEFAULT:@SECLEVEL=0",
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
    };
    let control = run("-tls1_2").await.unwrap();
    assert!(
        String::from_utf8_lossy(&control.stdout).contains("TLSv1.2"),
        "TLS 1.2 control failed: {}",
        String::from_utf8_lossy(&control.stderr)
    );
    for flag in ["-tls1_1", "-tls1"] {
        let out = run(flag).await.unwrap();
        assert!(!out.status.success(), "{flag} handshake succeeded");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A server-sent alert (rustls answers a pre-1.2 hello without
        // TLS 1.2 extensions with handshake_failure), not a client-side
        // refusal to offer the protocol.
        assert!(text.contains("SSL alert number"), "{flag}: {text}");
    }
}

#[tokio::test]
async fn certificate_reload_swaps_for_new_handshakes_and_keeps_old_connections() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let old_client = gw.client();
    let old_conn = old_client.tls(Proto::H2).await;
    let seen_cert = |s: &tokio_rustls::client::TlsStream<TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    assert_eq!(seen_cert(&old_conn), gw.cert.der);

    // A broken key: the reload is refused and the old certificate stays.
    std::fs::write(gw.dir.path().join("key.pem"), "garbage").unwrap();
    assert!(gw.handle().reload().is_err());
    let still_old = old_client.tls(Proto::H1).await;
    assert_eq!(seen_cert(&still_old), gw.cert.der);

    let next = Cert::generate();
    next.write(gw.dir.path());
    gw.handle()
        .reload()
        .expect("reload with a good certificate");
    let new_client = Client::new(gw.addr(), &next.der);
    let new_conn = new_client.tls(Proto::H1).await;
    assert_eq!(seen_cert(&new_conn), next.der);
    // The connection opened before the reload still serves requests.
    let reply = send_on(old_conn, Proto::H2, request("GET", "/api/echo", "")).await;
    assert_eq!(reply.status, 200);
}
