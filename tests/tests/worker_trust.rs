//! The worker answers the gateway only (docs/security-controls.md): a real
//! worker with allowed peer uids and a shared HMAC key, the real gateway
//! signing with the same key file, and direct connections to the worker's
//! socket that try to get past it.
//!
//! * the gateway's requests and probes pass;
//! * a request without the gateway's signature, with a wrong one, a stale
//!   one, or one whose identity header was changed gets 401; each is
//!   counted in `tradehabit_worker_untrusted_refused_total`;
//! * a process running as another uid (a child of this test, switched to
//!   `nobody`) gets 403 even with a valid signature. That needs root (CI
//!   runs as root): without it the test prints `SKIPPED`, and under
//!   `CI=true` fails instead.

#[path = "pool_support/stack.rs"]
mod stack;

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use stack::{prepare_dir, start_gateway, trades, upload, users, RunningWorker};
use tradehabit_shared::headers::{PRINCIPAL, REQUEST_ID};
use tradehabit_shared::signature::{self, Key, Signed, SIGNATURE};
use tradehabit_worker::config::Config as WorkerConfig;

const CHILD_SOCKET: &str = "TRADEHABIT_TRUST_CHILD_SOCKET";
const CHILD_SIGNATURE: &str = "TRADEHABIT_TRUST_CHILD_SIGNATURE";
const NOBODY: u32 = 65534;

struct Trusting {
    dir: tempfile::TempDir,
    socket: PathBuf,
    key: Key,
    worker: RunningWorker,
}

/// A worker that answers only this process's uid, and only requests signed
/// with the key in `hmac_key`.
fn trusting_worker() -> Trusting {
    let dir = tempfile::tempdir().unwrap();
    // Group root may enter (the child below keeps gid 0); nobody else.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let own_uid = std::fs::metadata(dir.path()).unwrap().uid();
    let key_path = dir.path().join("hmac_key");
    std::fs::write(
        &key_path,
        format!("{}\n", hex::encode(rand::random::<[u8; 32]>())),
    )
    .unwrap();
    let key = Key::from_file(&key_path).unwrap();
    let socket = dir.path().join("worker.sock");
    let mut config = WorkerConfig::new(&socket);
    config.trust.allowed_uids = vec![own_uid];
    config.trust.hmac_key = Some(key.clone());
    let worker = RunningWorker::start(config);
    Trusting {
        dir,
        socket,
        key,
        worker,
    }
}

/// A signature for `GET /api/trades` as `principal` at `timestamp`.
fn signed_trades(key: &Key, principal: &str, timestamp: u64) -> String {
    let signed = Signed {
        method: "GET",
        path_and_query: "/api/trades",
        headers: [Some(principal.as_bytes()), None, None, Some(b"rid-1")],
    };
    signature::sign(key, timestamp, &signed)
}

/// One request straight to the worker's socket: status and body.
async fn direct(socket: &Path, principal: &str, signature: Option<&str>) -> (StatusCode, String) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::get("/api/trades")
        .header("host", "localhost")
        .header(PRINCIPAL, principal)
        .header(REQUEST_ID, "rid-1");
    if let Some(signature) = signature {
        request = request.header(SIGNATURE, signature);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn assert_refused(status: StatusCode, body: &str, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["status"], "ERROR", "{what}: {body}");
    assert_eq!(
        json["message"], "The worker answers the gateway only.",
        "{what}"
    );
    assert!(!body.contains("MNQ"), "{what}: trades leaked: {body}");
}

#[tokio::test]
async fn only_requests_the_gateway_signed_are_answered() {
    let trusting = trusting_worker();
    let cert = prepare_dir(trusting.dir.path());
    let users = users(1);
    let gateway = start_gateway(
        trusting.dir.path(),
        &[trusting.socket.as_path()],
        &users,
        r#"hmac_key = { file = "hmac_key" }"#,
    )
    .await;
    let addr = gateway.https_addr();
    // The gateway's own requests, and its signed readiness probe, pass.
    let (status, body) = upload(addr, &cert, &users[0]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = trades(addr, &cert, &users[0]).await;
    assert_eq!(status, 200, "{body}");
    let admin = gateway.admin_addr();
    let (status, _) = plain_get(admin, "/readyz").await;
    assert_eq!(status, 200, "the signed probe passes");

    let (socket, key) = (&trusting.socket, &trusting.key);
    let principal = "key:user-0";
    let now = signature::now_unix();
    let other_key = Key::new(vec![9u8; 32]).unwrap();
    let forged_elsewhere = signed_trades(key, "key:someone-else", now);
    for (what, value) in [
        ("no signature", None),
        ("garbage", Some("t=1,v1=zz".to_owned())),
        (
            "another key",
            Some(signed_trades(&other_key, principal, now)),
        ),
        (
            "an hour old",
            Some(signed_trades(key, principal, now - 3600)),
        ),
        ("another principal's", Some(forged_elsewhere)),
    ] {
        let (status, body) = direct(socket, principal, value.as_deref()).await;
        assert_refused(status, &body, 401, what);
    }
    // The check is precise: the same request, correctly signed, passes.
    let (status, body) = direct(socket, principal, Some(&signed_trades(key, principal, now))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("MNQ"), "{body}");

    // Every refusal was counted, by reason (the worker's metrics, through
    // the gateway's signed scrape, labelled with the worker's index).
    let (_, metrics) = plain_get(admin, "/metrics").await;
    for (reason, count) in [
        ("signature_missing", 1),
        ("signature_malformed", 1),
        ("signature_mismatch", 2),
        ("signature_stale", 1),
    ] {
        let series = format!(
            "tradehabit_worker_untrusted_refused_total{{worker=\"0\",reason=\"{reason}\"}} {count}"
        );
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }
    gateway.shutdown().await;
    trusting.worker.stop().await;
}

#[tokio::test]
async fn a_process_running_as_another_uid_is_refused() {
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        != 0
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "switching the child to nobody needs root, and CI runs as root"
        );
        println!("SKIPPED: a_process_running_as_another_uid_is_refused needs root");
        return;
    }
    let trusting = trusting_worker();
    let value = signed_trades(&trusting.key, "key:user-0", signature::now_unix());
    let socket = trusting.socket.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_sends_one_request", "--nocapture"])
            .env(CHILD_SOCKET, &socket)
            .env(CHILD_SIGNATURE, value)
            .uid(NOBODY)
            .gid(0)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("CHILD-STATUS: HTTP/1.1 403"),
        "the child (uid {NOBODY}) should get 403:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("CHILD-UID-WAS-NOT-ROOT"), "{stdout}");
    // The same signed request from this process's uid passes.
    let value = signed_trades(&trusting.key, "key:user-0", signature::now_unix());
    let (status, body) = direct(&trusting.socket, "key:user-0", Some(&value)).await;
    assert_eq!(status, 400, "answered (no data yet): {body}");
    let metrics = direct_metrics(&trusting.socket, &trusting.key).await;
    let series = "tradehabit_worker_untrusted_refused_total{reason=\"peer\"} 1";
    assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    trusting.worker.stop().await;
}

/// Run as the child of the test above (does nothing otherwise): one
/// signed request on the worker's socket, its status line on stdout.
#[test]
fn child_sends_one_request() {
    let (Some(socket), Some(value)) = (
        std::env::var_os(CHILD_SOCKET),
        std::env::var(CHILD_SIGNATURE).ok(),
    ) else {
        return;
    };
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        println!("CHILD-UID-WAS-NOT-ROOT");
    }
    let mut stream = std::os::unix::net::UnixStream::connect(&socket)
        .expect("the child can open the socket (mode 0660, group root)");
    write!(
        stream,
        "GET /api/trades HTTP/1.1\r\nhost: localhost\r\n{PRINCIPAL}: key:user-0\r\n\
         {REQUEST_ID}: rid-1\r\n{SIGNATURE}: {value}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    println!("CHILD-STATUS: {}", answer.lines().next().unwrap_or(""));
}

/// The worker's metrics, asked directly with a signed request.
async fn direct_metrics(socket: &Path, key: &Key) -> String {
    let signed = Signed {
        method: "GET",
        path_and_query: "/internal/metrics",
        headers: [None; 4],
    };
    let value = signature::sign(key, signature::now_unix(), &signed);
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get("/internal/metrics")
        .header("host", "localhost")
        .header(SIGNATURE, value)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A plain-HTTP GET to the admin listener: status and body.
async fn plain_get(addr: std::net::SocketAddr, path: &str) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
