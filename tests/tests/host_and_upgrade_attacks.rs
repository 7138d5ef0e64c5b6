//! Attacks on what a request says about where it goes and what it is: a
//! `Host` / `:authority` the server does not serve, the plain-HTTP redirect
//! as an open redirector, protocol upgrades and tunnels (and a smuggled
//! request after one), and underscore spellings of the identity headers a
//! WSGI upstream would read as the real ones. Real TLS to the real gateway,
//! in front of the real worker or, where the worker cannot show what
//! arrived, a recording upstream.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tradehabit_e2e::attack::{raw_statuses, Reply, Stack, LIMITS, SAFETY};

/// Writes `raw` to the plain-HTTP listener and reads until it closes.
async fn plain(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SAFETY, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The audit lines written so far, waiting (within the safety net) until
/// one carries `reason`: the line is written when its answer has ended.
async fn audit_line_with(stack: &Stack, reason: &str) -> serde_json::Value {
    let path = stack.dir().join("audit.log");
    let found = async {
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let line = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| l["reason"] == reason);
            if let Some(line) = line {
                return line;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SAFETY, found)
        .await
        .unwrap_or_else(|_| panic!("no audit line with reason {reason}"))
}

fn audited(dir: &std::path::Path) -> String {
    format!("[audit]\noutput = \"{}/audit.log\"\n", dir.display())
}

fn assert_misdirected(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 421, "{what}: {}", reply.text());
    let json = reply.json();
    assert_eq!(json["status"], "ERROR", "{what}");
    assert_eq!(
        json["message"], "This server does not serve the requested host",
        "{what}"
    );
    assert!(
        reply.headers.contains_key("strict-transport-security"),
        "{what}: the refusal carries the security headers"
    );
}

#[tokio::test]
async fn a_host_the_server_does_not_serve_gets_421_and_an_audit_line() {
    // The certificate covers `localhost` and `127.0.0.1`, nothing else.
    let stack = Stack::start_with(audited, tradehabit_e2e::attack::ROUTES).await;
    for host in [
        "attacker.example",
        "attacker.example:443",
        "localhost.attacker.example",
        "127.0.0.2",
        "[::1]",
    ] {
        let reply = stack.get_with("/api/health", &[("host", host)]).await;
        assert_misdirected(&reply, host);
    }
    let line = audit_line_with(&stack, "shape.host_misdirected").await;
    assert_eq!(line["status"], 421, "{line}");
    assert_eq!(line["decision"], "shape", "{line}");

    // The absolute form names the host in the request line.
    let answer = stack
        .raw(
            b"GET https://attacker.example/api/health HTTP/1.1\r\nHost: attacker.example\r\n\
              Connection: close\r\n\r\n",
        )
        .await;
    assert_eq!(raw_statuses(&answer), vec![421], "{answer}");

    // The names the certificate covers, in any case, with a trailing dot
    // or another port, are served.
    for host in ["localhost", "LocalHost.:8443", "127.0.0.1:1"] {
        let reply = stack.get_with("/api/health", &[("host", host)]).await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.text());
    }
    stack.stop().await;
}

#[tokio::test]
async fn an_http2_authority_the_server_does_not_serve_gets_421() {
    let stack = Stack::start().await;
    let get = |uri: &str| {
        Request::get(uri)
            .body(Full::<Bytes>::default())
            .expect("request")
    };
    let replies = stack
        .send_h2(vec![
            get("https://attacker.example/api/health"),
            get("https://attacker.example:8443/api/health"),
            get("https://localhost/api/health"),
        ])
        .await;
    assert_misdirected(&replies[0], ":authority attacker.example");
    assert_misdirected(&replies[1], ":authority attacker.example:8443");
    assert_eq!(replies[2].status, 200, "{}", replies[2].text());
    stack.stop().await;
}

#[tokio::test]
async fn the_plain_http_redirect_never_names_the_clients_host() {
    let stack = Stack::start_with(
        |_| "[plain_http]\nlisten = \"127.0.0.1:0\"\nhttps_port = 8443\n".into(),
        tradehabit_e2e::attack::ROUTES,
    )
    .await;
    let addr = stack.plain_http_addr().expect("the plain listener");
    for host in [
        "attacker.example",
        "attacker.example:8080",
        "localhost.attacker.example",
    ] {
        let answer = plain(
            addr,
            &format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(raw_statuses(&answer), vec![421], "{host}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(!lower.contains("location:"), "{host}: {answer}");
        assert!(!lower.contains("attacker"), "{host}: {answer}");
    }
    let answer = plain(
        addr,
        "GET /login?next=1 HTTP/1.1\r\nHost: LOCALHOST:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_statuses(&answer), vec![301], "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://localhost:8443/login?next=1\r\n"),
        "{answer}"
    );
    stack.stop().await;
}

/// The body of a request that, if it ever reached the worker as a request
/// of its own, would change the anonymous space's settings.
const SMUGGLED: &str = "POST /api/settings HTTP/1.1\r\nHost: localhost\r\n\
     Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"vr\": 0.9}";

/// The anonymous space's `vr` setting, read on a fresh connection.
async fn vr(stack: &Stack) -> serde_json::Value {
    let settings = stack.get("/api/settings").await;
    assert_eq!(settings.status, 200, "{}", settings.text());
    settings.json()["vr"].clone()
}

#[tokio::test]
async fn upgrade_and_connect_are_refused_and_nothing_after_them_reaches_the_worker() {
    let stack = Stack::start().await;
    let before = vr(&stack).await;
    // After the upgrade or tunnel head, a CL.TE request: its chunked body
    // changes the settings when hyper's reading of it (chunked) is
    // forwarded, and what its Content-Length leaves over is another
    // request that would do the same.
    let settings = "{\"vr\": 0.8}";
    let smuggler = format!(
        "POST /api/settings HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{settings}\r\n0\r\n\r\n{SMUGGLED}",
        settings.len()
    );
    let heads = [
        "GET /api/health HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        "GET /api/health HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
    ];
    for head in heads {
        let answer = stack.raw(format!("{head}{smuggler}").as_bytes()).await;
        assert_eq!(
            raw_statuses(&answer),
            vec![400],
            "{head:?}: one refusal and nothing after it\n{answer}"
        );
        assert!(
            answer.contains("Protocol upgrades and tunnels are not supported"),
            "{head:?}: the gateway's envelope\n{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{head:?}: the connection ends with the refusal\n{answer}"
        );
        assert_eq!(vr(&stack).await, before, "{head:?} smuggled a request");
    }
    stack.assert_serving().await;
    stack.stop().await;
}

#[tokio::test]
async fn tunnels_over_http2_are_refused_and_never_forwarded() {
    let (stack, upstream) = Stack::start_recording(LIMITS).await;
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri("localhost:443")
        .body(Full::<Bytes>::default())
        .expect("CONNECT");
    let websocket = Request::builder()
        .method(Method::CONNECT)
        .uri("https://localhost/api/health")
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Full::<Bytes>::default())
        .expect("extended CONNECT");
    // A first request, so that the server's SETTINGS (extended CONNECT
    // allowed, to be refused by the policy) have arrived.
    let health = Request::get("https://localhost/api/health")
        .body(Full::<Bytes>::default())
        .expect("GET");
    let replies = stack.send_h2(vec![health, connect, websocket]).await;
    assert_eq!(replies[0].status, 200, "{}", replies[0].text());
    for (reply, what) in replies[1..].iter().zip(["CONNECT", "extended CONNECT"]) {
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(
            reply.json()["message"],
            "Protocol upgrades and tunnels are not supported",
            "{what}"
        );
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "only the GET was forwarded: {seen:?}");
    assert_eq!(seen[0].method, Method::GET);
    stack.stop().await;
}

/// What a WSGI upstream (gunicorn) reads as `HTTP_X_TRADEHABIT_PRINCIPAL`
/// and the other identity, forwarding and credential variables.
const UNDERSCORED: &[(&str, &str)] = &[
    ("X_TradeHabit_Principal", "key:admin"),
    ("x-tradehabit_scopes", "admin"),
    ("X_TradeHabit_Auth_Method", "api-key"),
    ("X_Forwarded_For", "10.0.0.1"),
    ("X_Real_IP", "10.0.0.1"),
    ("X_Request_Id", "forged-request-id"),
    ("X_API_Key", "th_forged"),
];

#[tokio::test]
async fn underscore_spellings_of_identity_headers_never_reach_the_upstream() {
    let (stack, upstream) = Stack::start_recording(LIMITS).await;
    let reply = stack.get_with("/api/health", UNDERSCORED).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut over_h2 = Request::get("https://localhost/api/health");
    for (name, value) in UNDERSCORED {
        over_h2 = over_h2.header(*name, *value);
    }
    let replies = stack
        .send_h2(vec![over_h2.body(Full::default()).expect("request")])
        .await;
    assert_eq!(replies[0].status, 200, "{}", replies[0].text());

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        let names: Vec<&str> = request.headers.keys().map(|n| n.as_str()).collect();
        assert!(
            names.iter().all(|name| !name.contains('_')),
            "an underscore name reached the upstream: {names:?}"
        );
        for (_, forged) in UNDERSCORED {
            assert!(
                request.headers.values().all(|v| v != forged),
                "the forged {forged:?} reached the upstream: {:?}",
                request.headers
            );
        }
        assert!(!request.headers.contains_key("x-tradehabit-principal"));
    }
    stack.stop().await;
}

#[tokio::test]
async fn underscore_names_are_refused_when_the_policy_says_so() {
    let (stack, upstream) =
        Stack::start_recording(&format!("{LIMITS}\nunderscore_headers = \"refuse\"")).await;
    let reply = stack
        .get_with("/api/health", &[("X_TradeHabit_Principal", "key:admin")])
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.json()["message"],
        "Header names with underscores are not accepted"
    );
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    let reply = stack.get_with("/api/health", &[("x-note", "a_b")]).await;
    assert_eq!(reply.status, 200, "underscores in values are fine");
    stack.stop().await;
}
