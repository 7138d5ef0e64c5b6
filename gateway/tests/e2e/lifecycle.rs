//! Reload, graceful shutdown, and the supervised upstream.

use std::path::Path;
use std::time::Duration;

use tradehabit_gateway::{Config, Gateway, ReloadError};

use crate::support::*;

const EXTRA_ROUTE: &str = r#"
[[routes]]
name = "added"
path = "/added"
methods = ["GET"]
auth = "none"
"#;

#[tokio::test]
async fn a_valid_reload_takes_effect_for_new_requests() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    assert_eq!(client.get("/added").await.status, 404);
    let policy = Policy {
        routes: format!("{ROUTES}{EXTRA_ROUTE}"),
        ..Policy::default()
    };
    TestGateway::write_policy(gw.dir.path(), &policy);
    gw.handle().reload().expect("valid policy reloads");
    assert_eq!(client.get("/added").await.status, 200);
    assert_eq!(up.seen().last().unwrap().target, "/added");
}

#[tokio::test]
async fn an_invalid_reload_is_refused_and_the_running_policy_stays() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    let path = gw.dir.path().join("gateway.toml");

    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replace("body_limit = 1024", "body_limit = 0")).unwrap();
    match gw.handle().reload() {
        Err(ReloadError::Config(error)) => {
            let problems = error.problems();
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("routes[\"echo\"].body_limit")),
                "{problems:?}"
            );
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("routes[\"api\"].body_limit")),
                "{problems:?}"
            );
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    std::fs::write(&path, format!("{good}\n[limits]\nno_such_key = 1\n")).unwrap();
    assert!(matches!(gw.handle().reload(), Err(ReloadError::Config(_))));
    std::fs::write(&path, good.replacen("127.0.0.1:0", "127.0.0.1:1", 1)).unwrap();
    match gw.handle().reload() {
        Err(ReloadError::NeedsRestart(keys)) => assert_eq!(keys, ["server.listen"]),
        other => panic!("expected needs-restart, got {other:?}"),
    }
    // Still the old policy: the body limit is 1024, not refused config.
    assert_eq!(
        client
            .send(Proto::H1, request("POST", "/api/echo", "abc"))
            .await
            .status,
        200
    );
    assert_eq!(
        client
            .send(Proto::H1, request("POST", "/api/echo", &"x".repeat(1025)))
            .await
            .status,
        413
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let (gw, up) = TestGateway::with_upstream(Policy::default()).await;
    let client = gw.client();
    let addr = gw.addr();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .send(Proto::H2, request("GET", "/api/gated", ""))
                .await
        }
    });
    up.arrival().await;
    let shutdown = tokio::spawn(gw.shutdown());
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener kept accepting during shutdown");
    up.release();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["gated"], true);
    tokio::time::timeout(SAFETY, shutdown)
        .await
        .expect("shutdown finished")
        .unwrap();
}

#[tokio::test]
async fn shutdown_gives_up_on_stragglers_at_the_deadline() {
    let policy = Policy {
        server: "shutdown_timeout = \"200ms\"".into(),
        ..Policy::default()
    };
    let (gw, up) = TestGateway::with_upstream(policy).await;
    let client = gw.client();
    let stuck = tokio::spawn(async move {
        let stream = client.tls(Proto::H1).await;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = request("GET", "/api/slow", "");
        req.headers_mut()
            .insert("host", "localhost".parse().unwrap());
        sender.send_request(req).await
    });
    up.arrival().await;
    tokio::time::timeout(SAFETY, gw.shutdown())
        .await
        .expect("shutdown met its deadline");
    assert!(stuck.await.unwrap().is_err(), "the straggler was cut off");
}

// ------------------------------------------------------ supervised upstream

/// Runs only as the child process of the supervision tests (the test
/// binary re-executed through a shell wrapper): serves the recording
/// upstream on the socket named in the environment. `/api/exit` makes the
/// process exit, to be restarted.
#[test]
fn child_upstream() {
    let Ok(socket) = std::env::var("GATEWAY_TEST_CHILD_SOCKET") else {
        return;
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/api/exit" {
                            std::process::exit(3);
                        }
                        let pid = std::process::id().to_string();
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(pid)),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A shell wrapper that re-executes this test binary as [`child_upstream`];
/// it takes the worker's calling convention, `--socket PATH`.
fn child_command(dir: &Path) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let wrapper = dir.join("child-upstream.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --socket ] || exit 64\nGATEWAY_TEST_CHILD_SOCKET=\"$2\" exec '{}' --exact lifecycle::child_upstream --quiet --test-threads 1\n",
            exe.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[tokio::test]
async fn the_spawned_upstream_is_started_restarted_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let wrapper = child_command(dir.path());
    let policy = Policy {
        upstream: format!(
            "\n[upstream.spawn]\ncommand = [\"{}\", \"--socket\", \"{{socket}}\"]\nrestart_backoff_max = \"100ms\"\n",
            wrapper.display()
        ),
        ..Policy::default()
    };
    let cert = Cert::generate();
    cert.write(dir.path());
    let path = TestGateway::write_policy(dir.path(), &policy);
    let handle = Gateway::start(Config::from_file(&path).unwrap())
        .await
        .expect("starts once the child is ready");
    let client = Client::new(handle.https_addr(), &cert.der);

    let first = client.get("/api/pid").await;
    assert_eq!(first.status, 200);
    let first_pid = String::from_utf8(first.body.to_vec()).unwrap();

    let reply = client.get("/api/exit").await;
    assert_eq!(reply.status, 502, "the child died mid-request");
    // Wait for the restart (readiness, not a fixed sleep).
    let mut second_pid = None;
    for _ in 0..500 {
        let reply = client.get("/api/pid").await;
        if reply.status == 200 {
            second_pid = Some(String::from_utf8(reply.body.to_vec()).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second_pid = second_pid.expect("the child was restarted");
    assert_ne!(first_pid, second_pid);
    assert_eq!(handle.upstream_restarts(), 1);
    let (_, metrics) = crate::audit::admin_get(handle.admin_addr(), "/metrics").await;
    assert_eq!(
        crate::audit::sample(&metrics, "tradehabit_gateway_worker_restarts_total"),
        1.0,
        "{metrics}"
    );

    handle.shutdown().await;
    let is_alive = Path::new(&format!("/proc/{second_pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{second_pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!is_alive, "the child outlived the gateway");
}

#[tokio::test]
async fn start_fails_when_the_spawned_upstream_never_gets_ready() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy {
        upstream: "\n[upstream.spawn]\ncommand = [\"/bin/true\"]\nready_timeout = \"300ms\"\nrestart_backoff_max = \"50ms\"\n".into(),
        ..Policy::default()
    };
    Cert::generate().write(dir.path());
    let path = TestGateway::write_policy(dir.path(), &policy);
    let error = Gateway::start(Config::from_file(&path).unwrap())
        .await
        .err()
        .expect("start refused");
    assert!(
        error.to_string().contains("did not accept connections"),
        "{error}"
    );
}

#[tokio::test]
async fn the_dev_stack_serves_through_its_supervised_worker() {
    let dir = tempfile::tempdir().unwrap();
    let options = tradehabit_gateway::dev::DevOptions {
        dir: dir.path().join(".dev"),
        worker_command: vec![child_command(dir.path()).into_os_string()],
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
    };
    let handle = tradehabit_gateway::dev::start(&options)
        .await
        .expect("dev stack starts");
    let cert_pem = std::fs::read(options.dir.join("cert.pem")).unwrap();
    let der = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    let client = Client::new(handle.https_addr(), &der);
    let reply = client.get("/api/health").await;
    assert_eq!(reply.status, 200);
    assert_security_headers(&reply);
    assert_eq!(
        client.get("/internal/ready").await.status,
        404,
        "internal paths are not routed"
    );
    handle.shutdown().await;
}

/// `[upstream] ready_path` applies on reload: `/readyz` asks the new path
/// (here one the upstream answers 503) from the next probe on.
#[tokio::test]
async fn a_reload_applies_a_new_ready_path() {
    let (gw, _up) = TestGateway::with_upstream(Policy::default()).await;
    let admin = gw.handle().admin_addr();
    assert_eq!(crate::audit::admin_get(admin, "/readyz").await.0, 200);
    let policy = Policy {
        upstream: "ready_path = \"/api/busy\"\n".to_owned(),
        ..Policy::default()
    };
    TestGateway::write_policy(gw.dir.path(), &policy);
    gw.handle().reload().expect("valid policy reloads");
    assert_eq!(crate::audit::admin_get(admin, "/readyz").await.0, 503);
}
