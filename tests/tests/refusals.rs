//! Refusals a client can read: a request refused before its body is read
//! (413 from `Content-Length`, 403 for a disallowed origin, 401, 429) while
//! the client is still sending a 3 MiB upload. Over HTTP/1.1 the answer
//! carries `Connection: close` and the gateway closes gracefully (lingering
//! close), so the client that writes its whole upload and only then reads
//! gets the envelope, not a reset; over HTTP/2 the stream is not reset
//! before the client has sent its body and read the answer. Also: a
//! connection over the per-IP cap gets a 503 envelope instead of a silent
//! close. See `docs/security-controls.md` (F-6, F-7, F-8).

use std::future::poll_fn;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tradehabit_e2e::attack::{Stack, SAFETY};

/// The upload every refused request carries: larger than any route's limit
/// here, smaller than `limits.refusal_drain_bytes`' default.
const UPLOAD: usize = 3 * 1024 * 1024;

/// The client writes the body in pieces of this size.
const PIECE: usize = 64 * 1024;

/// The HTTP/1.1 client's socket send buffer (the kernel doubles it).
const SEND_BUFFER: u32 = 32 * 1024;

const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
auth = "none"
body_limit = 2162688

[[routes]]
name = "settings"
path = "/api/settings"
methods = ["GET", "POST"]
auth = "none"
body_limit = 65536

[[routes]]
name = "private"
path = "/api/private"
methods = ["POST"]
body_limit = 4194304

[[routes]]
name = "limited"
path = "/api/limited"
methods = ["POST"]
auth = "none"
body_limit = 4194304
rate_limit = { per_ip = ["1/minute"] }

[[routes]]
name = "health"
path = "/api/health"
methods = ["GET"]
auth = "none"
body_limit = 1024
"#;

/// One early refusal: where, with which extra headers, and its status.
struct Case {
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
}

const CASES: &[Case] = &[
    // Content-Length over the route's limit.
    Case {
        path: "/api/analyze",
        headers: &[],
        status: 413,
    },
    // A cross-origin write from an origin not on the allowlist.
    Case {
        path: "/api/settings",
        headers: &[("origin", "https://evil.example")],
        status: 403,
    },
    // No credentials on an authenticated route.
    Case {
        path: "/api/private",
        headers: &[],
        status: 401,
    },
    // The route's per-IP quota already spent (see `spend_the_quota`).
    Case {
        path: "/api/limited",
        headers: &[],
        status: 429,
    },
];

async fn start() -> Stack {
    Stack::start_with(
        |dir| {
            std::fs::write(dir.join("pepper"), "refusal-tests-pepper-0123456789abcdef").unwrap();
            "[api_keys]\npepper = { file = \"pepper\" }\n\n\
             [cors]\nallowed_origins = [\"https://app.example\"]\n"
                .to_string()
        },
        ROUTES,
    )
    .await
}

/// Spends the one request a minute of `/api/limited`.
async fn spend_the_quota(stack: &Stack) {
    let request = Request::post("/api/limited")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let first = stack.send(request).await;
    assert_ne!(first.status, 429, "the first request is inside the quota");
}

/// An answer read off the wire.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// Asserts the gateway's error envelope with `status`.
    fn assert_envelope(&self, status: u16, what: &str) {
        assert_eq!(self.status, status, "{what}: {self:?}");
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {self:?}"));
        assert_eq!(json["status"], "ERROR", "{what}: {json}");
        assert!(json["message"].is_string(), "{what}: {json}");
        assert!(
            self.headers.contains_key("x-request-id"),
            "{what}: a request id to quote: {self:?}"
        );
    }
}

/// Parses a raw HTTP/1.1 answer (head and body until the close).
fn parse_h1(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer head: {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| StatusCode::from_bytes(code.as_bytes()).ok())
        .ok_or_else(|| format!("no status line: {text:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or("a header without a colon")?;
        let name =
            http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?;
        let value = http::HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    Ok(Answer {
        status,
        headers,
        body: Bytes::from(body.to_owned()),
    })
}

/// A keep-alive HTTP/1.1 client as Python's `requests` behaves: it writes
/// the whole upload, and only then reads the answer. Any write or read
/// error (a reset, an EOF before `close_notify`) is the test's failure.
async fn h1_upload(stack: &Stack, case: &Case) -> Result<Answer, String> {
    // A small send buffer, as on a real network where the upload is still
    // on its way when the answer comes: on loopback the kernel would
    // otherwise take the whole upload into its buffers at once.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SEND_BUFFER).unwrap();
    let tcp = socket.connect(stack.addr()).await.expect("connect");
    let mut tls = stack.tls_over(tcp, b"http/1.1").await;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {UPLOAD}\r\n",
        case.path
    );
    for (name, value) in case.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let exchange = async {
        tls.write_all(head.as_bytes())
            .await
            .map_err(|e| format!("writing the head: {e}"))?;
        let piece = vec![b'x'; PIECE];
        for _ in 0..UPLOAD / PIECE {
            tls.write_all(&piece)
                .await
                .map_err(|e| format!("writing the body: {e}"))?;
        }
        tls.flush().await.map_err(|e| format!("flushing: {e}"))?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw)
            .await
            .map_err(|e| format!("reading the answer: {e} (read so far: {raw:?})"))?;
        parse_h1(&raw)
    };
    tokio::time::timeout(SAFETY, exchange)
        .await
        .map_err(|_| "no answer within the safety net".to_string())?
}

#[tokio::test]
async fn http1_early_refusals_of_a_large_upload_are_read_by_the_client() {
    let stack = start().await;
    spend_the_quota(&stack).await;
    for case in CASES {
        let what = format!("HTTP/1.1 {} {}", case.status, case.path);
        let answer = h1_upload(&stack, case)
            .await
            .unwrap_or_else(|error| panic!("{what}: the client got no answer: {error}"));
        answer.assert_envelope(case.status, &what);
        assert_eq!(
            answer.headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "{what}: the answer says the connection closes: {answer:?}"
        );
        // The next request, on a new connection, is served.
        stack.assert_serving().await;
    }
    stack.stop().await;
}

/// Sends `UPLOAD` bytes on an HTTP/2 stream as flow control allows,
/// ending the stream with the last piece; fails if the stream is reset.
async fn h2_send_body(mut send: h2::SendStream<Bytes>) -> Result<(), String> {
    let mut left = UPLOAD;
    while left > 0 {
        send.reserve_capacity(left.min(PIECE));
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted.min(left),
            Some(Err(error)) => return Err(format!("{error} with {left} bytes unsent")),
            None => return Err(format!("stream closed with {left} bytes unsent")),
        };
        if granted == 0 {
            continue;
        }
        left -= granted;
        send.send_data(Bytes::from(vec![b'x'; granted]), left == 0)
            .map_err(|error| format!("{error} with {left} bytes unsent"))?;
    }
    Ok(())
}

/// An HTTP/2 client as curl behaves: it sends the upload while it reads
/// the answer. The stream must not be reset before the client has read
/// the whole answer and sent its whole body.
async fn h2_upload(stack: &Stack, case: &Case) -> Result<Answer, String> {
    let tls = stack.tls_alpn(b"h2").await;
    let exchange = async {
        let (client, connection) = h2::client::handshake(tls)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let mut request = Request::post(format!("https://localhost{}", case.path))
            .header("content-type", "application/json")
            .header("content-length", UPLOAD.to_string());
        for (name, value) in case.headers {
            request = request.header(*name, *value);
        }
        let (response, send) = client
            .send_request(request.body(()).unwrap(), false)
            .map_err(|e| format!("sending the head: {e}"))?;
        let upload = tokio::spawn(h2_send_body(send));
        let response = response
            .await
            .map_err(|e| format!("the answer head: {e}"))?;
        let (parts, mut body) = response.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("the answer body: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        upload
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the upload: {e}"))?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(data),
        })
    };
    tokio::time::timeout(SAFETY, exchange)
        .await
        .map_err(|_| "no answer within the safety net".to_string())?
}

#[tokio::test]
async fn http2_early_refusals_of_a_large_upload_are_not_reset() {
    let stack = start().await;
    spend_the_quota(&stack).await;
    for case in CASES {
        let what = format!("HTTP/2 {} {}", case.status, case.path);
        let answer = h2_upload(&stack, case)
            .await
            .unwrap_or_else(|error| panic!("{what}: {error}"));
        answer.assert_envelope(case.status, &what);
        stack.assert_serving().await;
    }
    stack.stop().await;
}

/// Limits for the connection-cap test: two connections per address, held
/// open for the whole test.
const TWO_PER_IP: &str = "idle_timeout = \"60s\"\nheader_read_timeout = \"60s\"\n\
                          max_connections_per_ip = 2";

/// A `GET /api/health` over HTTP/2 on `tls`, with the h2 crate.
async fn h2_get(tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Answer {
    let (client, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.expect("a stream");
    let request = Request::get("https://localhost/api/health")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).expect("the head");
    let (parts, mut body) = response.await.expect("an answer").into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.expect("the answer body"));
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(data),
    }
}

#[tokio::test]
async fn a_connection_over_the_per_ip_cap_gets_503_with_retry_after() {
    let stack = Stack::start_with_limits(TWO_PER_IP, |_| String::new(), ROUTES).await;
    // Two connections, handshaken (so admitted), held open.
    let mut held = vec![stack.tls().await, stack.tls().await];

    // The third, over HTTP/1.1: a handshake and a 503 envelope.
    let mut third = stack.tls().await;
    third
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(SAFETY, third.read_to_end(&mut raw))
        .await
        .expect("the over-cap connection is closed after its answer")
        .expect("closed gracefully");
    let answer = parse_h1(&raw).unwrap();
    answer.assert_envelope(503, "HTTP/1.1 over the cap");
    assert_eq!(answer.headers["connection"], "close", "{answer:?}");
    assert!(answer.headers.contains_key("retry-after"), "{answer:?}");
    assert!(
        answer.headers.contains_key("strict-transport-security"),
        "the security headers: {answer:?}"
    );

    // The same over HTTP/2.
    let answer = h2_get(stack.tls_alpn(b"h2").await).await;
    answer.assert_envelope(503, "HTTP/2 over the cap");
    assert!(answer.headers.contains_key("retry-after"), "{answer:?}");

    // Once a held connection closes, the address is served again.
    drop(held.pop());
    let served = async {
        loop {
            let mut tls = stack.tls().await;
            tls.write_all(
                b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            let mut raw = Vec::new();
            let _ = tls.read_to_end(&mut raw).await;
            if parse_h1(&raw).is_ok_and(|answer| answer.status == 200) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SAFETY, served)
        .await
        .expect("served again once a held connection closed");
    drop(held);
    stack.stop().await;
}
