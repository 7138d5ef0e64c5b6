//! The audit log holds one allowlisted line per request and none
//! of the credentials or CSV content; metrics move; `/readyz` follows the
//! upstream; `healthcheck` and `verify-audit` exit as documented.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use tradehabit_gateway::checks::api_key::keygen;
use tradehabit_gateway::checks::secret::Secret;

use crate::support::{audit_lines_written, request, Policy, Proto, TestGateway, Upstream, SAFETY};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0cmFkZXItNDIifQ.c2VjcmV0LXNpZw";
const SYMBOL: &str = "ZQXWVSYM";
const PRICE: &str = "98765.4321";

/// The allowlist: every line has exactly these fields (plus the chain's).
const FIELDS: &[&str] = &[
    "ts",
    "event",
    "request_id",
    "client_ip",
    "method",
    "route",
    "path",
    "status",
    "decision",
    "reason",
    "auth_method",
    "principal",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "tls_version",
    "alpn",
    "user_agent",
    "prev_hash",
    "hash",
];

const ROUTES: &str = r#"
[[routes]]
name = "analyze"
path = "/api/analyze"
methods = ["POST"]
body_limit = 20480
scopes = ["analyze"]
upload = { max_file_bytes = 1024 }

[[routes]]
name = "notes"
path = "/api/notes"
methods = ["POST"]
auth = "none"
body_limit = 1024
"#;
const PEPPER: &str = "audit-pepper-audit-pepper-audit-pepper-0123";

/// A policy with one real API key, returned with it.
fn audited_policy(dir: &Path) -> (Policy, String) {
    let pepper = dir.join("pepper");
    std::fs::write(&pepper, PEPPER).unwrap();
    let issued = keygen(
        &Secret::new(PEPPER.as_bytes().to_vec()),
        "ci",
        &["analyze".to_string()],
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let checks = format!(
        "[api_keys]\npepper = {{ file = \"{}\" }}\nkeys = [{}]\n",
        pepper.display(),
        issued.policy_entry
    );
    let key = dir.join("pseudonym.key");
    std::fs::write(&key, "a-test-pseudonym-key-0123456789").unwrap();
    let policy = Policy {
        routes: ROUTES.to_string(),
        admin: "ready_probe_interval = \"50ms\"\n".to_string(),
        audit: format!(
            "output = \"{}\"\nhash_chain = true\npseudonym_key = {{ file = \"{}\" }}\n",
            dir.join("audit.log").display(),
            key.display()
        ),
        checks,
        ..Policy::default()
    };
    (policy, issued.key)
}

/// Starts a gateway whose audit log is a file in a directory it shares.
async fn start() -> (TestGateway, Upstream, tempfile::TempDir, String) {
    let files = tempfile::tempdir().unwrap();
    let (policy, key) = audited_policy(files.path());
    let (gateway, upstream) = TestGateway::with_upstream(policy).await;
    (gateway, upstream, files, key)
}

/// An upload with the real API key, or (`key` = None) with a bearer token
/// no issuer signed.
fn upload_request(key: Option<&str>, body: String) -> Request<Full<Bytes>> {
    let builder = match key {
        Some(key) => Request::builder().header("x-api-key", key),
        None => Request::builder().header("authorization", format!("Bearer {TOKEN}")),
    };
    builder
        .method("POST")
        .uri("/api/analyze")
        .header("cookie", "session=COOKIESECRET")
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .header("user-agent", "audit-test\"},\"forged\":{\"")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn csv_upload() -> String {
    format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\n\
         Content-Type: text/csv\r\n\r\nsymbol,price,qty\n{SYMBOL},{PRICE},3\n\r\n--XyZ--\r\n"
    )
}

/// GET on the admin listener: status and body.
pub(crate) async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(SAFETY, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of one exact series line in a metrics text, 0 if absent.
pub(crate) fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Polls `/readyz` until it answers `status` (bounded by the safety net).
async fn wait_ready(admin: SocketAddr, status: u16) {
    let waiting = async {
        while admin_get(admin, "/readyz").await.0 != status {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SAFETY, waiting)
        .await
        .unwrap_or_else(|_| panic!("/readyz never answered {status}"));
}

#[tokio::test]
#[allow(clippy::too_many_lines)] // one scenario read top to bottom; the limit is for non-test code
async fn the_audit_log_holds_one_allowlisted_line_per_request_and_no_secrets() {
    let (gateway, _upstream, files, key) = start().await;
    let client = gateway.client();

    let allowed = client
        .send(Proto::H2, upload_request(Some(&key), csv_upload()))
        .await;
    assert_eq!(
        allowed.status,
        200,
        "{}",
        String::from_utf8_lossy(&allowed.body)
    );
    let not_found = client.get("/api/nowhere?token=QUERYSECRET").await;
    assert_eq!(not_found.status, 404);
    let too_large = client
        .send(Proto::H1, request("POST", "/api/notes", &"x".repeat(5000)))
        .await;
    assert_eq!(
        too_large.status,
        413,
        "{}",
        String::from_utf8_lossy(&too_large.body)
    );
    let unauthenticated = client
        .send(Proto::H1, upload_request(None, csv_upload()))
        .await;
    assert_eq!(unauthenticated.status, 401);

    audit_lines_written(&files.path().join("audit.log"), 4).await;
    let log = std::fs::read(files.path().join("audit.log")).unwrap();
    let text = String::from_utf8(log.clone()).unwrap();
    for secret in [
        TOKEN,
        "Bearer",
        key.as_str(),
        SYMBOL,
        PRICE,
        "QUERYSECRET",
        "COOKIESECRET",
        "trader-42",
    ] {
        assert!(
            !log.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "`{secret}` leaked into the audit log:\n{text}"
        );
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4, "one line per request:\n{text}");
    for line in &lines {
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut expected = FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(line["event"], "request");
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["tls_version"], "TLSv1.3");
    }
    let decisions: Vec<(&str, &str, &str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["decision"].as_str().unwrap(),
                l["reason"].as_str().unwrap_or("null"),
                l["path"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions[..3],
        [
            ("allowed", "null", "/api/analyze", 200),
            ("route", "route.not_found", "/api/nowhere", 404),
            ("body", "body.too_large", "/api/notes", 413),
        ]
    );
    let refused = &lines[3];
    assert_eq!(refused["status"], 401);
    let check = refused["decision"].as_str().unwrap();
    assert_ne!(check, "allowed");
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{check}.")));
    assert_eq!(lines[0]["auth_method"], "api-key");
    let pseudonym = lines[0]["principal"].as_str().unwrap();
    assert_eq!(pseudonym.len(), 32);
    assert_eq!(lines[2]["principal"], serde_json::Value::Null, "open route");
    assert_eq!(lines[0]["route"], "analyze");
    assert_eq!(lines[0]["alpn"], "h2");
    assert_eq!(lines[1]["route"], serde_json::Value::Null);
    assert_eq!(lines[0]["user_agent"], "audit-test\"},\"forged\":{\"");
    assert_eq!(
        tradehabit_gateway::audit::verify(text.as_bytes()).map(|v| (v.lines, v.gaps.len())),
        Ok((4, 0)),
        "the chain written by the gateway verifies"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn metrics_move_for_an_allowed_request_a_401_a_404_and_a_413() {
    let (gateway, _upstream, _files, key) = start().await;
    let admin = gateway.handle().admin_addr();
    let client = gateway.client();
    let (status, before) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    for (metric, value) in [
        (
            "tradehabit_gateway_config_reloads_total{result=\"failure\"}",
            0.0,
        ),
        (
            "tradehabit_gateway_upload_limit_bytes{route=\"analyze\"}",
            1024.0,
        ),
    ] {
        assert!(before.contains(metric), "{metric} missing");
        assert_eq!(sample(&before, metric), value);
    }

    assert_eq!(
        client
            .send(Proto::H1, upload_request(Some(&key), csv_upload()))
            .await
            .status,
        200
    );
    assert_eq!(client.get("/api/nowhere").await.status, 404);
    assert_eq!(
        client
            .send(Proto::H1, request("POST", "/api/notes", &"x".repeat(5000)))
            .await
            .status,
        413
    );
    assert_eq!(
        client
            .send(Proto::H1, upload_request(None, csv_upload()))
            .await
            .status,
        401
    );

    let (_, after) = admin_get(admin, "/metrics").await;
    let auth_failures = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("tradehabit_gateway_auth_failures_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(
        auth_failures(&after) - auth_failures(&before),
        1.0,
        "{after}"
    );
    for (series, delta) in [
        (
            "tradehabit_gateway_requests_total{route=\"analyze\",method=\"POST\",status_class=\"2xx\"}",
            1.0,
        ),
        (
            "tradehabit_gateway_requests_total{route=\"unmatched\",method=\"GET\",status_class=\"4xx\"}",
            1.0,
        ),
        (
            "tradehabit_gateway_requests_total{route=\"analyze\",method=\"POST\",status_class=\"4xx\"}",
            1.0,
        ),
        (
            "tradehabit_gateway_requests_total{route=\"notes\",method=\"POST\",status_class=\"4xx\"}",
            1.0,
        ),
        ("tradehabit_gateway_rejections_total{check=\"route\"}", 1.0),
        ("tradehabit_gateway_rejections_total{check=\"body\"}", 1.0),
        ("tradehabit_gateway_upload_bytes_count{route=\"analyze\"}", 2.0),
        ("tradehabit_gateway_request_duration_seconds_count{route=\"analyze\"}", 2.0),
        ("tradehabit_gateway_upstream_duration_seconds_count{route=\"analyze\"}", 1.0),
    ] {
        assert_eq!(
            sample(&after, series) - sample(&before, series),
            delta,
            "{series} in\n{after}"
        );
    }
    // The worker's metrics follow the gateway's, labelled with its index
    // in `upstream.addresses` (docs/audit-and-metrics.md, "Metrics").
    let labelled = crate::support::WORKER_METRICS.replace(
        "tradehabit_worker_sessions_active 3",
        "tradehabit_worker_sessions_active{worker=\"0\"} 3",
    );
    assert!(after.ends_with(&labelled), "{after}");
    assert_eq!(
        sample(&after, "tradehabit_gateway_worker_scrape_up{worker=\"0\"}"),
        1.0
    );
    assert_eq!(after.matches("# EOF").count(), 1, "one document");
    gateway.shutdown().await;
}

#[tokio::test]
async fn readyz_follows_the_upstream_and_healthcheck_reports_it() {
    let (gateway, upstream, _files, _) = start().await;
    let admin = gateway.handle().admin_addr();
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    wait_ready(admin, 200).await;
    let url = format!("http://{admin}/readyz");
    tradehabit_gateway::healthcheck::check(&url).await.unwrap();

    drop(upstream);
    wait_ready(admin, 503).await;
    assert!(tradehabit_gateway::healthcheck::check(&url).await.is_err());
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(sample(&metrics, "tradehabit_gateway_upstream_up"), 0.0);
    assert_eq!(
        admin_get(admin, "/healthz").await.0,
        200,
        "alive while unready"
    );

    let _upstream = Upstream::start(&TestGateway::socket_in(gateway.dir.path())).await;
    wait_ready(admin, 200).await;
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(sample(&metrics, "tradehabit_gateway_upstream_up"), 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_failed_tls_handshake_is_one_audit_line_and_a_metric() {
    let (gateway, _upstream, files, _) = start().await;
    let mut stream = TcpStream::connect(gateway.addr()).await.unwrap();
    let _ = send_until_closed(&mut stream, b"GET / HTTP/1.1\r\n\r\n").await;
    let admin = gateway.handle().admin_addr();
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(
        sample(&metrics, "tradehabit_gateway_tls_handshake_failures_total"),
        1.0
    );
    audit_lines_written(&files.path().join("audit.log"), 1).await;
    let text = std::fs::read_to_string(files.path().join("audit.log")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["event"], "tls_handshake_failed");
    assert_eq!(line["reason"], "tls.handshake_failed");
    gateway.shutdown().await;
}

fn gateway_binary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tradehabit-gateway"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn verify_audit_accepts_the_written_chain_and_finds_edits_deletions_and_reordering() {
    let (gateway, _upstream, files, _) = start().await;
    let client = gateway.client();
    for path in ["/api/a", "/api/b", "/api/c", "/api/d"] {
        assert_eq!(client.get(path).await.status, 404);
    }
    gateway.shutdown().await;
    let log = files.path().join("audit.log");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 4);
    let check = |lines: &[String]| {
        let path = files.path().join("check.log");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        gateway_binary(&["verify-audit", path.to_str().unwrap()])
    };
    let intact = check(&lines);
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stderr)
    );

    let mut edited = lines.clone();
    edited[2] = edited[2].replace("/api/c", "/api/x");
    let mut deleted = lines.clone();
    deleted.remove(1);
    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    for (case, tampered, line) in [
        ("edited", edited, 3),
        ("deleted", deleted, 2),
        ("reordered", reordered, 3),
    ] {
        let out = check(&tampered);
        assert_eq!(out.status.code(), Some(1), "{case}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("line {line}:")),
            "{case}: {stderr}"
        );
    }
}

#[tokio::test]
async fn verify_audit_reports_a_gap_record_apart_from_a_break() {
    let (gateway, _upstream, files, _) = start().await;
    assert_eq!(gateway.client().get("/api/a").await.status, 404);
    gateway.shutdown().await;
    let text = std::fs::read_to_string(files.path().join("audit.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let prev = last["hash"].as_str().unwrap();
    // The record the gateway chains in when writing resumes after 12 lines
    // could not be written (tests/tests/audit_full_disk.rs makes real ones).
    let body = format!(
        "{{\"ts\":\"2026-11-28T03:04:06.000Z\",\"event\":\"audit_gap\",\"decision\":\"audit\",\
         \"reason\":\"audit.lines_lost\",\"lost_lines\":12,\"lost_since\":\"2026-11-28T03:04:05.000Z\",\
         \"lost_until\":\"2026-11-28T03:04:05.900Z\",\"prev_hash\":\"{prev}\"}}"
    );
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!(
        "{prev}{body}"
    )));
    let gap = format!("{},\"hash\":\"{hash}\"}}", body.strip_suffix('}').unwrap());
    let check = |log: &str| {
        let path = files.path().join("check.log");
        std::fs::write(&path, log).unwrap();
        gateway_binary(&["verify-audit", path.to_str().unwrap()])
    };

    let with_gap = check(&format!("{text}{gap}\n"));
    let stdout = String::from_utf8_lossy(&with_gap.stdout);
    assert_eq!(with_gap.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("2 line(s), chain intact"), "{stdout}");
    assert!(
        stdout.contains("line 2: gap: 12 line(s) could not be written"),
        "{stdout}"
    );
    // The count is chained like any line: lowering it breaks the chain.
    let lowered = gap.replace("\"lost_lines\":12", "\"lost_lines\":1");
    let tampered = check(&format!("{text}{lowered}\n"));
    assert_eq!(tampered.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("line 2:"));
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_against_a_dead_port() {
    let (gateway, _upstream, _files, _) = start().await;
    let admin = gateway.handle().admin_addr();
    wait_ready(admin, 200).await;
    let url = format!("http://{admin}/readyz");
    let ok = tokio::task::spawn_blocking(move || gateway_binary(&["healthcheck", "--url", &url]))
        .await
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    gateway.shutdown().await;

    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{dead}/readyz");
    let failed = gateway_binary(&["healthcheck", "--url", &url]);
    assert_eq!(failed.status.code(), Some(1));
}

// ------------------------------------------------ upload metrics (policy)

/// An upload route named otherwise than `analyze`, with its own limit.
fn import_route(max_file_bytes: u64) -> String {
    format!(
        r#"
[[routes]]
name = "import"
path = "/api/import"
methods = ["POST"]
auth = "none"
body_limit = 40000
upload = {{ max_file_bytes = {max_file_bytes} }}
"#
    )
}

/// A multipart upload of a CSV whose whole body is exactly `total` bytes.
fn upload_of_size(path: &str, total: usize) -> Request<Full<Bytes>> {
    let head = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.csv\"\r\n\
                Content-Type: text/csv\r\n\r\nsymbol,price\n";
    let tail = "\r\n--XyZ--\r\n";
    let rows = "A,1\n".repeat((total - head.len() - tail.len()) / 4);
    let mut body = format!("{head}{rows}");
    body.push_str(&"A".repeat(total - body.len() - tail.len()));
    body.push_str(tail);
    assert_eq!(body.len(), total);
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn upload_metrics_follow_the_policys_upload_route_and_its_reload() {
    let policy = Policy {
        routes: format!("{}{}", import_route(4096), crate::support::ROUTES),
        ..Policy::default()
    };
    let (gateway, _upstream) = TestGateway::with_upstream(policy.clone()).await;
    let admin = gateway.handle().admin_addr();
    let client = gateway.client();
    let (_, before) = admin_get(admin, "/metrics").await;
    assert_eq!(
        sample(
            &before,
            "tradehabit_gateway_upload_limit_bytes{route=\"import\"}"
        ),
        4096.0,
        "{before}"
    );
    assert!(
        !before.contains("route=\"analyze\"")
            && !before.contains("upload_limit_bytes{route=\"echo\"}"),
        "only routes with an upload rule have upload series:\n{before}"
    );

    // 3900 bytes: above 90% of 4096 (3686.4), under the limit.
    let reply = client
        .send(Proto::H1, upload_of_size("/api/import", 3900))
        .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // A body on a route without an upload rule is not an upload.
    assert_eq!(
        client
            .send(Proto::H1, request("POST", "/api/echo", "plain"))
            .await
            .status,
        200
    );
    let (_, after) = admin_get(admin, "/metrics").await;
    for (series, value) in [
        (
            "tradehabit_gateway_upload_bytes_count{route=\"import\"}",
            1.0,
        ),
        (
            "tradehabit_gateway_upload_bytes_sum{route=\"import\"}",
            3900.0,
        ),
        (
            "tradehabit_gateway_upload_bytes_bucket{le=\"3686.4\",route=\"import\"}",
            0.0,
        ),
        (
            "tradehabit_gateway_upload_bytes_bucket{le=\"4096.0\",route=\"import\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&after, series), value, "{series} in\n{after}");
    }
    assert!(
        !after.contains("upload_bytes_count{route=\"echo\"}"),
        "{after}"
    );

    // Reload with a larger limit: the gauge and the buckets follow.
    let reloaded = Policy {
        routes: format!("{}{}", import_route(8192), crate::support::ROUTES),
        ..policy
    };
    TestGateway::write_policy(gateway.dir.path(), &reloaded);
    gateway.handle().reload().expect("the new policy is valid");
    let (_, reloaded) = admin_get(admin, "/metrics").await;
    assert_eq!(
        sample(
            &reloaded,
            "tradehabit_gateway_upload_limit_bytes{route=\"import\"}"
        ),
        8192.0,
        "{reloaded}"
    );
    assert!(
        reloaded
            .contains("tradehabit_gateway_upload_bytes_bucket{le=\"7372.8\",route=\"import\"} 0"),
        "buckets scaled to the new limit:\n{reloaded}"
    );
    gateway.shutdown().await;
}

// ------------------------------- connections that end before a request

/// A gateway with a short header-read timeout, auditing to a file in the
/// returned directory.
async fn start_with_header_timeout() -> (TestGateway, Upstream, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    let policy = Policy {
        limits: "header_read_timeout = \"300ms\"\n".to_string(),
        audit: format!(
            "output = \"{}\"\n",
            files.path().join("audit.log").display()
        ),
        ..Policy::default()
    };
    let (gateway, upstream) = TestGateway::with_upstream(policy).await;
    (gateway, upstream, files)
}

/// Writes `bytes` to `stream`, then reads until the gateway closes it:
/// what it answered, or `None` when it did not close within `SAFETY`. A
/// read error counts as the close (a TLS peer may hang up without
/// close_notify).
async fn send_until_closed<S>(stream: &mut S, bytes: &[u8]) -> Option<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::io::AsyncWriteExt::write_all(stream, bytes)
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(stream, &mut answer);
    let _closed_or_failed = tokio::time::timeout(SAFETY, read).await.ok()?;
    Some(answer)
}

/// The audit lines written so far.
fn audit_lines(files: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(files.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect()
}

/// Polls the audit log until it holds a line with `reason` (bounded by the
/// safety net); returns all lines then.
async fn wait_for_reason(files: &Path, reason: &str) -> Vec<serde_json::Value> {
    let waiting = async {
        loop {
            let lines = audit_lines(files);
            if lines.iter().any(|l| l["reason"] == reason) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(SAFETY, waiting)
        .await
        .unwrap_or_else(|_| panic!("no audit line with reason {reason}"))
}

/// Asserts `line` is a request-head failure with `reason` and carries no
/// request data.
fn assert_head_failure(line: &serde_json::Value, reason: &str) {
    assert_eq!(line["event"], "request_head_failed", "{line}");
    assert_eq!(line["decision"], "http", "{line}");
    assert_eq!(line["reason"], reason, "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    for field in [
        "request_id",
        "method",
        "route",
        "path",
        "status",
        "user_agent",
    ] {
        assert!(line[field].is_null(), "{field} in {line}");
    }
}

#[tokio::test]
async fn a_slowloris_head_is_one_audit_line_and_a_metric() {
    let (gateway, _upstream, files) = start_with_header_timeout().await;
    let mut slow = gateway.client().tls(Proto::H1).await;
    let head = b"GET /api/echo HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow-SECRETUA\r\n";
    // The gateway hangs up once the header-read timeout has passed.
    send_until_closed(&mut slow, head)
        .await
        .expect("the gateway closed the slow connection");
    let lines = wait_for_reason(files.path(), "http.header_timeout").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_head_failure(&lines[0], "http.header_timeout");
    let log = std::fs::read_to_string(files.path().join("audit.log")).unwrap();
    assert!(
        !log.contains("SECRETUA") && !log.contains("/api/echo"),
        "{log}"
    );
    assert_connection_errors(&gateway, [1.0, 0.0, 0.0, 0.0]).await;
    gateway.shutdown().await;
}

/// `connection_errors_total` for header_timeout, malformed_head,
/// head_too_large and h2_protocol_violation, each series present.
async fn assert_connection_errors(gateway: &TestGateway, expected: [f64; 4]) {
    let (_, metrics) = admin_get(gateway.handle().admin_addr(), "/metrics").await;
    let reasons = [
        "header_timeout",
        "malformed_head",
        "head_too_large",
        "h2_protocol_violation",
    ];
    for (reason, value) in reasons.into_iter().zip(expected) {
        let series = format!("tradehabit_gateway_connection_errors_total{{reason=\"{reason}\"}}");
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
        assert_eq!(sample(&metrics, &series), value, "{series} in\n{metrics}");
    }
}

#[tokio::test]
async fn malformed_and_oversized_heads_are_one_audit_line_each() {
    let (gateway, upstream, files) = start_with_header_timeout().await;
    let client = gateway.client();
    let answer = crate::support::raw_exchange(
        &client,
        b"GET /api/echo HTTP/1.1\r\nHost: localhost\r\nNo colon here\r\n\r\n",
    )
    .await;
    assert_eq!(crate::support::raw_status(&answer), 400, "{answer}");
    let lines = wait_for_reason(files.path(), "http.malformed_head").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_head_failure(&lines[0], "http.malformed_head");

    let big = format!(
        "GET /api/echo HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "v".repeat(40_000)
    );
    let answer = crate::support::raw_exchange(&client, big.as_bytes()).await;
    assert_eq!(crate::support::raw_status(&answer), 431, "{answer}");
    // Beyond hyper's bound the framing reader ends the head short: the
    // gateway answers it as a request, with a request line of its own.
    let lines = wait_for_reason(files.path(), "shape.headers_too_large").await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["event"], "request", "{}", lines[1]);
    assert_eq!(lines[1]["status"], 431, "{}", lines[1]);
    assert_eq!(lines[1]["path"], "/api/echo", "{}", lines[1]);
    assert!(lines[1]["request_id"].is_string(), "{}", lines[1]);
    assert!(upstream.seen().is_empty());

    assert_connection_errors(&gateway, [0.0, 1.0, 0.0, 0.0]).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_http2_protocol_violation_is_one_audit_line_and_a_metric() {
    let (gateway, upstream, files) = start_with_header_timeout().await;
    let client = gateway.client();
    // A well-behaved HTTP/2 client first: its connection ends without a line.
    let reply = client
        .send(Proto::H2, request("GET", "/api/echo", ""))
        .await;
    assert_eq!(reply.status, 200);
    // The connection preface, an empty SETTINGS frame, then a HEADERS frame
    // (END_STREAM | END_HEADERS, `:method: GET`) on stream 2: a client may
    // only open odd-numbered streams (RFC 9113 §5.1.1).
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&[0, 0, 1, 0x1, 0x5, 0, 0, 0, 2, 0x82]);
    let mut stream = client.tls(Proto::H2).await;
    let answer = send_until_closed(&mut stream, &frames)
        .await
        .expect("the gateway closes the connection");
    // Its last frame is a GOAWAY (type 7) with PROTOCOL_ERROR (1).
    let goaway = answer.windows(4).any(|w| w == [0x7, 0, 0, 0]);
    assert!(goaway && answer.ends_with(&[0, 0, 0, 1]), "{answer:?}");

    let lines = wait_for_reason(files.path(), "http.h2_protocol_violation").await;
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["request", "protocol_violation"], "{lines:?}");
    let line = &lines[1];
    assert_eq!(line["decision"], "http", "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert!(line["path"].is_null() && line["status"].is_null(), "{line}");
    assert_eq!(upstream.seen().len(), 1);
    assert_connection_errors(&gateway, [0.0, 0.0, 0.0, 1.0]).await;
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_keep_alive_session_that_idles_out_leaves_only_its_request_lines() {
    let (gateway, _upstream, files) = start_with_header_timeout().await;
    let client = gateway.client();
    let stream = client.tls(Proto::H1).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..2 {
        let mut req = request("GET", "/api/echo", "");
        req.headers_mut()
            .insert("host", "localhost".parse().unwrap());
        let reply = crate::support::collect(sender.send_request(req).await.unwrap()).await;
        assert_eq!(reply.status, 200);
    }
    // Idle past the header-read timeout: the gateway closes the connection,
    // which ends the client's connection task.
    tokio::time::timeout(SAFETY, conn)
        .await
        .expect("the gateway closed the idle connection")
        .unwrap()
        .ok();
    // A client that opens a connection and closes it without a byte.
    drop(client.tls(Proto::H1).await);
    // A marker on a later connection: once its line is there, anything
    // the earlier connections would have written is there too.
    let _ = crate::support::raw_exchange(&client, b"BROKEN\r\n\r\n").await;
    let lines = wait_for_reason(files.path(), "http.malformed_head").await;
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        ["request", "request", "request_head_failed"],
        "{lines:?}"
    );
    gateway.shutdown().await;
}

// ------------------------------------------- bytes_out of streamed bodies

/// An upstream on the gateway's socket that streams its answers without a
/// length: `/api/stream` three chunks (12 bytes); `/api/stream-abort` one
/// chunk (3 bytes), then fails once `fail` is notified; `/api/stream-hold`
/// one chunk, then nothing.
async fn streaming_upstream(
    socket: &Path,
    fail: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt as _;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fail = Arc::clone(&fail);
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let fail = Arc::clone(&fail);
                    async move {
                        let chunk = |text: &'static str| -> Chunk {
                            Ok(Frame::data(Bytes::from_static(text.as_bytes())))
                        };
                        let body = match request.uri().path() {
                            "/api/stream" => futures_util::stream::iter(vec![
                                chunk("aaa"),
                                chunk("bbbb"),
                                chunk("ccccc"),
                            ])
                            .boxed(),
                            "/api/stream-abort" => futures_util::stream::iter(vec![chunk("aaa")])
                                .chain(futures_util::stream::once(async move {
                                    fail.notified().await;
                                    Err(std::io::Error::other("upstream failed mid-body"))
                                }))
                                .boxed(),
                            _ => futures_util::stream::iter(vec![chunk("aaa")])
                                .chain(futures_util::stream::pending())
                                .boxed(),
                        };
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(StreamBody::new(
                            body,
                        )))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    })
}

/// A raw HTTP/1.1 `GET path` whose answer has been read up to its first
/// chunk (`aaa`); the connection is returned open.
async fn first_chunk(
    client: &crate::support::Client,
    path: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut stream = client.tls(Proto::H1).await;
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    let reading = async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&received).contains("aaa") {
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
                .await
                .unwrap();
            assert!(n > 0, "closed before the first chunk");
            received.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(SAFETY, reading)
        .await
        .expect("first chunk");
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    stream
}

#[tokio::test]
async fn a_streamed_response_is_one_line_with_the_bytes_actually_sent() {
    let files = tempfile::tempdir().unwrap();
    let policy = Policy {
        audit: format!(
            "output = \"{}\"\n",
            files.path().join("audit.log").display()
        ),
        ..Policy::default()
    };
    let gateway = TestGateway::without_upstream(policy).await;
    let fail = Arc::new(tokio::sync::Notify::new());
    let upstream = streaming_upstream(
        &TestGateway::socket_in(gateway.dir.path()),
        Arc::clone(&fail),
    )
    .await;
    let client = gateway.client();

    let whole = client.get("/api/stream").await;
    assert_eq!(whole.status, 200, "{:?}", audit_lines(files.path()));
    assert_eq!(whole.body, "aaabbbbccccc");
    assert!(whole.header("content-length").is_none(), "streamed");

    // The upstream fails after the client got its first chunk: the client
    // gets a cut-off body.
    let mut cut = first_chunk(&client, "/api/stream-abort").await;
    fail.notify_one();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        SAFETY,
        tokio::io::AsyncReadExt::read_to_end(&mut cut, &mut rest),
    )
    .await
    .expect("the gateway ends the cut-off response");
    assert!(
        !String::from_utf8_lossy(&rest).contains("\r\n0\r\n\r\n"),
        "a failed body must not end like a complete one"
    );

    // The client goes away after the first chunk of an endless body.
    drop(first_chunk(&client, "/api/stream-hold").await);

    let waiting = async {
        loop {
            let lines = audit_lines(files.path());
            if lines.len() >= 3 {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let lines = tokio::time::timeout(SAFETY, waiting)
        .await
        .expect("three audit lines");
    let by_path = |path: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["path"] == path).collect()
    };
    for (path, bytes_out) in [
        ("/api/stream", 12),
        ("/api/stream-abort", 3),
        ("/api/stream-hold", 3),
    ] {
        let found = by_path(path);
        assert_eq!(found.len(), 1, "one line for {path}: {lines:?}");
        assert_eq!(found[0]["bytes_out"], bytes_out, "{path}: {}", found[0]);
        assert_eq!(found[0]["status"], 200, "{path}");
    }
    gateway.shutdown().await;
    upstream.abort();
    assert_eq!(audit_lines(files.path()).len(), 3, "still one line each");
}

// ------------------------------------------------------ 429s on /metrics

#[tokio::test]
async fn a_429_from_the_rate_limiter_is_counted_on_metrics_and_in_the_audit_log() {
    let files = tempfile::tempdir().unwrap();
    let policy = Policy {
        routes: r#"
[[routes]]
name = "limited"
path = "/api/limited"
methods = ["GET"]
auth = "none"
# One cell back every 30 s: no replenishment during the test.
rate_limit = { per_ip = ["2/minute"] }
"#
        .to_string(),
        audit: format!(
            "output = \"{}\"\n",
            files.path().join("audit.log").display()
        ),
        ..Policy::default()
    };
    let (gateway, upstream) = TestGateway::with_upstream(policy).await;
    let admin = gateway.handle().admin_addr();
    let client = gateway.client();
    let (_, before) = admin_get(admin, "/metrics").await;
    assert_eq!(
        sample(
            &before,
            "tradehabit_gateway_rate_limited_total{route=\"limited\"}"
        ),
        0.0
    );
    for _ in 0..2 {
        assert_eq!(client.get("/api/limited").await.status, 200);
    }
    let limited = client.get("/api/limited").await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(upstream.seen().len(), 2, "the 429 was not forwarded");

    let (_, after) = admin_get(admin, "/metrics").await;
    for (series, value) in [
        ("tradehabit_gateway_rate_limited_total{route=\"limited\"}", 1.0),
        (
            "tradehabit_gateway_requests_total{route=\"limited\",method=\"GET\",status_class=\"4xx\"}",
            1.0,
        ),
        (
            "tradehabit_gateway_requests_total{route=\"limited\",method=\"GET\",status_class=\"2xx\"}",
            2.0,
        ),
        ("tradehabit_gateway_rejections_total{check=\"rate_limit\"}", 1.0),
    ] {
        assert_eq!(sample(&after, series), value, "{series} in\n{after}");
    }
    let auth_failures = after
        .lines()
        .filter(|l| l.starts_with("tradehabit_gateway_auth_failures_total{"))
        .count();
    assert_eq!(auth_failures, 0, "a 429 is not an authentication failure");
    audit_lines_written(&files.path().join("audit.log"), 3).await;
    let lines = audit_lines(files.path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2]["status"], 429);
    assert_eq!(lines[2]["decision"], "rate_limit");
    assert!(lines[2]["reason"]
        .as_str()
        .unwrap()
        .starts_with("rate_limit."));
    gateway.shutdown().await;
}
