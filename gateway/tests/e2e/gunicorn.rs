//! The gateway in front of a real gunicorn (the legacy backend's server) on
//! a Unix socket and on a TCP port, with both of its common worker classes: `sync` closes the
//! connection after every answer (`Connection: close`), `gthread` keeps it
//! alive. Answers framed by length, chunked (a WSGI generator) and bodiless
//! (204) reach clients of both protocols whole, bodiless requests through
//! the gateway's own upstream exchange (`proxy/h1.rs`) and requests with a
//! body through hyper's client, each several times in a row so that kept
//! and closed connections are both taken again.
//!
//! gunicorn is installed by `scripts/test.sh` (`pip install gunicorn`); a
//! missing one fails this test with how to install it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The WSGI application: JSON with a length, a chunked stream, a 204.
const APP: &str = r#"
import json

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/api/stream":
        start_response("200 OK", [("Content-Type", "application/json")])
        def parts():
            yield b'{"parts":'
            yield b'[1,2,'
            yield b'3]}'
        return parts()
    if path == "/api/empty":
        start_response("204 No Content", [])
        return [b""]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    reply = json.dumps({
        "method": environ["REQUEST_METHOD"],
        "bytes": len(body),
        "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
    }).encode()
    start_response("200 OK", [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(reply))),
    ])
    return [reply]
"#;

/// Where gunicorn listens.
enum Bind {
    Unix(std::path::PathBuf),
    Tcp(u16),
}

impl Bind {
    /// gunicorn's `--bind` value.
    fn gunicorn(&self) -> String {
        match self {
            Bind::Unix(path) => format!("unix:{}", path.display()),
            Bind::Tcp(port) => format!("127.0.0.1:{port}"),
        }
    }

    async fn accepts(&self) -> bool {
        match self {
            Bind::Unix(path) => tokio::net::UnixStream::connect(path).await.is_ok(),
            Bind::Tcp(port) => tokio::net::TcpStream::connect(("127.0.0.1", *port))
                .await
                .is_ok(),
        }
    }
}

/// A TCP port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// gunicorn serving [`APP`] on `bind` with `worker_class`; killed on drop.
struct Gunicorn(Child);

impl Gunicorn {
    async fn start(dir: &Path, bind: &Bind, worker_class: &str) -> Gunicorn {
        let installed = Command::new("python3")
            .args(["-m", "gunicorn", "--version"])
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            installed,
            "gunicorn is missing: run scripts/test.sh, or python3 -m pip install gunicorn"
        );
        std::fs::write(dir.join("legacy_app.py"), APP).unwrap();
        let child = Command::new("python3")
            .args(["-m", "gunicorn", "--workers", "1", "--threads", "2"])
            .args(["--worker-class", worker_class])
            .arg("--bind")
            .arg(bind.gunicorn())
            .arg("--chdir")
            .arg(dir)
            .arg("legacy_app:app")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let gunicorn = Gunicorn(child);
        for _ in 0..200 {
            if bind.accepts().await {
                return gunicorn;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gunicorn did not bind {}", bind.gunicorn());
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn every_answer_of_a_real_gunicorn_reaches_both_protocols_whole() {
    for (worker_class, tcp) in [("sync", false), ("gthread", false), ("gthread", true)] {
        let port = free_port();
        let gw = TestGateway::without_upstream(Policy {
            server: "threads = 1".into(),
            upstream_address: tcp.then(|| format!("http://127.0.0.1:{port}")),
            ..Policy::default()
        })
        .await;
        let bind = match tcp {
            true => Bind::Tcp(port),
            false => Bind::Unix(TestGateway::socket_in(gw.dir.path())),
        };
        let _gunicorn = Gunicorn::start(gw.dir.path(), &bind, worker_class).await;
        let client = gw.client();
        for proto in [Proto::H1, Proto::H2] {
            for _ in 0..3 {
                let context = format!("{worker_class} on {} over {proto:?}", bind.gunicorn());
                let reply = client.send(proto, request("GET", "/api/echo", "")).await;
                assert_eq!(reply.status, 200, "{context}");
                let json = reply.json();
                assert_eq!(json["method"], "GET", "{context}");
                assert_eq!(json["forwarded_for"], "127.0.0.1", "{context}");
                assert_security_headers(&reply);

                let reply = client.send(proto, request("GET", "/api/stream", "")).await;
                assert_eq!(reply.status, 200, "{context}");
                assert_eq!(reply.body, "{\"parts\":[1,2,3]}", "chunked, {context}");

                let reply = client.send(proto, request("GET", "/api/empty", "")).await;
                assert_eq!(reply.status, 204, "{context}");
                assert!(reply.body.is_empty(), "{context}");

                let reply = client
                    .send(proto, request("POST", "/api/echo", "{\"a\":1}"))
                    .await;
                assert_eq!(reply.status, 200, "{context}");
                assert_eq!(reply.json()["bytes"], 7, "the body arrived, {context}");

                let reply = client.send(proto, request("POST", "/api/echo", "")).await;
                assert_eq!(reply.status, 200, "{context}");
                assert_eq!(reply.json()["bytes"], 0, "no body, {context}");
            }
        }
    }
}
