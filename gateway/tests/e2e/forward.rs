//! What reaches the upstream, and what the checks keep from it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};

use crate::support::*;

const SPOOFED: &[(&str, &str)] = &[
    ("connection", "keep-alive, x-hop-secret"),
    ("x-hop-secret", "should-not-pass"),
    ("keep-alive", "timeout=99"),
    ("te", "trailers"),
    ("trailer", "x-trailing"),
    ("proxy-authorization", "Basic c2VjcmV0"),
    ("proxy-connection", "keep-alive"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-port", "1"),
    ("x-forwarded-prefix", "/admin"),
    ("x-real-ip", "6.6.6.6"),
    ("forwarded", "for=6.6.6.6;proto=http"),
    ("x-tradehabit-principal", "jwt:admin|root"),
    ("x-tradehabit-scopes", "admin"),
    ("x-tradehabit-auth-method", "jwt"),
    ("x-request-id", "spoofed-request-id"),
    ("accept-encoding", "gzip, br"),
    // What a WSGI upstream reads as the identity and forwarding headers.
    ("x_tradehabit_principal", "jwt:underscore|root"),
    ("x-tradehabit_scopes", "admin underscore"),
    ("x_forwarded_for", "6.6.6.7"),
    ("x_api_key", "th_underscore"),
];
// `Upgrade` is not in the list: a request with it is refused outright
// (`tests/tests/attacks.rs` in the e2e crate).

fn spoofed_request(proto: Proto) -> http::Request<Full<Bytes>> {
    let mut req = request("GET", "/api/echo?x=1", "");
    for (name, value) in SPOOFED {
        // h2 forbids connection-specific headers on the wire; hyper's h2
        // client would refuse to send them, so only the rest go there.
        let is_connection_specific = matches!(
            *name,
            "connection" | "keep-alive" | "te" | "proxy-connection"
        );
        // Without `Connection` naming it, this is an ordinary header.
        let is_named_by_connection = *name == "x-hop-secret";
        if proto == Proto::H2 && (is_connection_specific || is_named_by_connection) {
            continue;
        }
        req.headers_mut().append(*name, value.parse().unwrap());
    }
    req
}

#[tokio::test]
async fn hop_by_hop_and_spoofed_identity_headers_never_reach_the_upstream() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    for proto in [Proto::H1, Proto::H2] {
        let reply = gw.client().send(proto, spoofed_request(proto)).await;
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_security_headers(&reply);
        let request_id = reply.header("x-request-id").unwrap().to_string();
        assert_ne!(request_id, "spoofed-request-id");
        assert_eq!(
            uuid::Uuid::parse_str(&request_id)
                .unwrap()
                .get_version_num(),
            7
        );

        let seen = up.seen().pop().unwrap();
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("GET", "/api/echo?x=1")
        );
        for (name, _) in SPOOFED {
            let values: Vec<_> = seen.headers.get_all(*name).iter().collect();
            assert!(
                !values
                    .iter()
                    .any(|v| SPOOFED.iter().any(|(_, s)| v.as_bytes() == s.as_bytes())),
                "{proto:?}: client's {name} reached the upstream: {values:?}"
            );
        }
        let underscored: Vec<_> = seen
            .headers
            .keys()
            .filter(|name| name.as_str().contains('_'))
            .collect();
        assert!(underscored.is_empty(), "{proto:?}: {underscored:?}");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(seen.headers["x-forwarded-host"], "localhost");
        assert_eq!(seen.headers["host"], "localhost");
        assert_eq!(seen.headers["accept-encoding"], "identity");
        assert_eq!(seen.headers["x-request-id"], request_id.as_str());
        assert_eq!(seen.headers.get_all("x-request-id").iter().count(), 1);
        for owned in [
            "x-tradehabit-principal",
            "x-tradehabit-scopes",
            "x-tradehabit-auth-method",
            "x-real-ip",
            "forwarded",
        ] {
            assert!(!seen.headers.contains_key(owned), "{owned}");
        }
    }
}

#[tokio::test]
async fn a_request_id_is_believed_only_from_a_trusted_proxy() {
    let policy = Policy {
        server: "trusted_proxies = [\"127.0.0.1/32\"]".into(),
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream(policy).await;
    let mut req = request("GET", "/api/echo", "");
    req.headers_mut()
        .insert("x-request-id", "edge-123".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.5".parse().unwrap());
    let reply = gw.client().send(Proto::H1, req).await;
    assert_eq!(reply.header("x-request-id"), Some("edge-123"));
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.headers["x-request-id"], "edge-123");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.5");
}

#[tokio::test]
async fn unrouted_paths_are_404_and_wrong_methods_405_never_forwarded() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    for proto in [Proto::H1, Proto::H2] {
        let reply = client
            .send(proto, request("GET", "/internal/ready", ""))
            .await;
        assert_eq!(reply.status, 404);
        assert_envelope(&reply);
        assert_security_headers(&reply);
        let reply = client.send(proto, request("DELETE", "/api/echo", "")).await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));
        assert_envelope(&reply);
        let reply = client.send(proto, request("TRACE", "/api/echo", "")).await;
        assert_eq!(reply.status, 405);
        let reply = client.send(proto, request("GET", "/apix", "")).await;
        assert_eq!(reply.status, 404);
    }
    assert!(up.seen().is_empty(), "forwarded: {:?}", up.seen());
}

#[tokio::test]
async fn declared_bodies_over_the_limit_are_413_before_forwarding() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    for proto in [Proto::H1, Proto::H2] {
        let reply = gw
            .client()
            .send(proto, request("POST", "/api/echo", &"x".repeat(1025)))
            .await;
        assert_eq!(reply.status, 413, "{proto:?}");
        assert_envelope(&reply);
        assert_security_headers(&reply);
        let reply = gw
            .client()
            .send(proto, request("POST", "/api/echo", &"x".repeat(1024)))
            .await;
        assert_eq!(reply.status, 200, "{proto:?}");
    }
    assert_eq!(
        up.seen().len(),
        2,
        "only the bodies within the limit were forwarded"
    );
}

#[tokio::test]
async fn streamed_bodies_are_counted_and_cut_off_at_the_limit() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    for proto in [Proto::H1, Proto::H2] {
        // No Content-Length: HTTP/1.1 chunked, HTTP/2 plain DATA frames.
        let chunks = |n: usize| {
            let frames = (0..n).map(|_| {
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![
                    b'y';
                    300
                ])))
            });
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        };
        let stream = gw.client().tls(proto).await;
        let small = http::Request::builder()
            .method("POST")
            .uri("/api/echo")
            .body(chunks(3))
            .unwrap();
        let reply = send_stream(stream, proto, small).await;
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.json()["received"], 900);

        let stream = gw.client().tls(proto).await;
        let big = http::Request::builder()
            .method("POST")
            .uri("/api/echo")
            .body(chunks(5))
            .unwrap();
        let reply = send_stream(stream, proto, big).await;
        assert_eq!(reply.status, 413, "{proto:?}");
        assert_envelope(&reply);
        assert_security_headers(&reply);
    }
    // The over-limit bodies never arrived whole.
    assert!(
        up.seen().iter().all(|s| s.body.len() <= 1024),
        "{:?}",
        up.seen()
    );
}

/// Sends a request with a streamed body (no declared length) on `stream`.
pub(crate) async fn send_stream(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    proto: Proto,
    mut request: http::Request<
        http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>,
    >,
) -> Reply {
    let io = hyper_util::rt::TokioIo::new(stream);
    let response = match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            request
                .headers_mut()
                .insert("host", "localhost".parse().unwrap());
            sender.send_request(request).await.unwrap()
        }
        Proto::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            *request.uri_mut() = format!("https://localhost{}", request.uri())
                .parse()
                .unwrap();
            *request.version_mut() = http::Version::HTTP_2;
            sender.send_request(request).await.unwrap()
        }
    };
    collect(response).await
}

#[tokio::test]
async fn compressed_request_bodies_are_415() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let mut req = request("POST", "/api/echo", "gzipped");
    req.headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let reply = gw.client().send(Proto::H1, req).await;
    assert_eq!(reply.status, 415);
    assert_envelope(&reply);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn path_tricks_are_400_and_never_forwarded() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    for target in [
        "/api/../internal/ready",
        "/api/./echo",
        "/api//echo",
        "/api/%2e%2e/internal",
        "/api%2fecho",
        "/api/%5cecho",
        "/api/echo%00",
        "/api/%65cho",
        "/api/%252e%252e/x",
        "/api/echo;x=1",
        "/api\\echo",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(&client, raw.as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "{target}: {answer}");
    }
    assert!(up.seen().is_empty(), "forwarded: {:?}", up.seen());
}

#[tokio::test]
async fn ambiguous_framing_is_refused() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    // Two different Content-Lengths: refused by hyper before our code runs.
    let answer = raw_exchange(
        &client,
        b"POST /api/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    // Transfer-Encoding on HTTP/1.0: refused.
    let answer = raw_exchange(
        &client,
        b"POST /api/echo HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    // Heads hyper alone would resolve (drop Content-Length for chunked, keep
    // one of two equal lengths) are refused by the gateway's framing reader.
    for head in [
        &b"POST /api/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
        b"POST /api/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /api/echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    ] {
        let answer = raw_exchange(&client, head).await;
        assert_eq!(raw_status(&answer), 400, "{answer}");
        assert!(answer.contains("framing is ambiguous"), "{answer}");
    }
    assert!(up.seen().is_empty(), "forwarded: {:?}", up.seen());
}

#[tokio::test]
async fn oversized_heads_are_refused() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    let long_target = format!("/api/echo?q={}", "a".repeat(4100));
    let reply = client.get(&long_target).await;
    assert_eq!(reply.status, 414);
    assert_security_headers(&reply);
    let mut req = request("GET", "/api/echo", "");
    req.headers_mut()
        .insert("x-big", "v".repeat(8200).parse().unwrap());
    let reply = client.send(Proto::H2, req).await;
    assert_eq!(reply.status, 431);
    let mut raw = String::from("GET /api/echo HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..101 {
        raw.push_str(&format!("X-H{i}: 1\r\n"));
    }
    raw.push_str("\r\n");
    let answer = raw_exchange(&client, raw.as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    assert!(answer.contains("too many header fields"), "{answer}");

    // Over the policy's head limits but within twice them: the gateway's
    // own answer, with the security headers and the envelope.
    let one_long_field = format!("X-Big: {}\r\n", "v".repeat(20_000));
    let three_fields: String = (0..3)
        .map(|i| format!("X-Part{i}: {}\r\n", "v".repeat(7_000)))
        .collect();
    for (fields, message) in [
        (&one_long_field, "a header field is too long"),
        (&three_fields, "the header section is too large"),
    ] {
        let answer = raw_exchange(
            &client,
            format!(
                "GET /api/echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{fields}\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(raw_status(&answer), 431, "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(
            lower.contains("strict-transport-security: max-age=")
                && lower.contains("x-content-type-options: nosniff"),
            "{answer}"
        );
        assert!(answer.contains("\"status\":\"ERROR\""), "{answer}");
        assert!(answer.contains(message), "{message}: {answer}");
    }
    // The same over HTTP/2 (where HPACK counts 32 more bytes per field).
    let mut req = request("GET", "/api/echo", "");
    for i in 0..3 {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-part{i}").as_bytes()).unwrap(),
            "v".repeat(7_000).parse().unwrap(),
        );
    }
    let reply = client.send(Proto::H2, req).await;
    assert_eq!(reply.status, 431);
    assert_security_headers(&reply);
    assert_eq!(
        reply.json()["details"][0],
        "the header section is too large"
    );
    // Beyond twice the limit the framing reader ends the head before
    // hyper's bound: still the gateway's own answer, and the connection
    // closes.
    let answer = raw_exchange(
        &client,
        format!(
            "GET /api/echo HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
            "v".repeat(40_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=")
            && lower.contains("connection: close"),
        "{answer}"
    );
    assert!(
        answer.contains("the header section is too large"),
        "{answer}"
    );
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_streamed_body_with_a_lenient_chunk_line_is_400_while_the_upstream_reads_it() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    for (line, detail) in [
        ("2 ", "whitespace out of place in a chunk-size line"),
        ("2;a\0b", "a control byte in the chunked framing"),
    ] {
        let attack = format!(
            "POST /api/echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n{line}\r\nxy\r\n0\r\n\r\n"
        );
        let answer = raw_exchange(&client, attack.as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "{answer}");
        assert!(answer.contains(detail), "{detail}: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
}
